"""Pixel metrics: the histogram AUC is exactly sklearn's on float16 scores; the 40 % criterion vs a brute sweep."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from lavida.metrics import PixelAUCAccumulator, PixelCriterionAccumulator, criterion_frame_score, pixel_auc
from lavida.metrics.vad_metrics.pixel_scores import float16_keys, keys_to_float16


def test_float16_keys_order_like_values():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(0, 3, 500), [0.0, -0.0, np.inf, -np.inf, 1e-8, -1e-8, 65504.0]])
    half = values.astype(np.float16)
    keys = float16_keys(half).astype(np.int64)
    order = np.argsort(half.astype(np.float64), kind="stable")
    assert (np.diff(keys[order]) >= 0).all()
    # equal values share a key (including -0.0 and +0.0), different values do not
    same_value = half[:, None] == half[None, :]
    assert ((keys[:, None] == keys[None, :]) == same_value).all()
    np.testing.assert_array_equal(keys_to_float16(float16_keys(half)), half + np.float16(0))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pixel_auc_is_exactly_sklearn_on_float16(seed):
    rng = np.random.default_rng(seed)
    accumulator = PixelAUCAccumulator()
    all_scores, all_targets = [], []
    for _ in range(4):  # frames of different sizes, accumulated one by one
        height, width = rng.integers(5, 30, size=2)
        targets = rng.random((height, width)) < 0.2
        scores = (rng.random((height, width)) * 0.7 + 0.3 * targets).astype(np.float16)
        scores[rng.random((height, width)) < 0.1] = np.float16(0.5)  # plenty of ties
        accumulator.update(scores, targets)
        all_scores.append(scores.ravel())
        all_targets.append(targets.ravel())
    expected = roc_auc_score(np.concatenate(all_targets), np.concatenate(all_scores).astype(np.float64))
    assert accumulator.auc() == pytest.approx(expected, abs=1e-9)
    restored = PixelAUCAccumulator.from_sparse(**accumulator.to_sparse())
    assert restored.auc() == accumulator.auc()
    merged = PixelAUCAccumulator()
    merged.merge(accumulator)
    merged.merge(accumulator)  # doubling every count leaves the AUC unchanged
    assert merged.auc() == pytest.approx(accumulator.auc(), abs=1e-12)
    assert merged.num_pixels == 2 * accumulator.num_pixels


def test_pixel_auc_float32_is_close_to_sklearn():
    rng = np.random.default_rng(3)
    targets = rng.random((6, 20, 20)) < 0.1
    scores = rng.random((6, 20, 20)).astype(np.float32) + 0.2 * targets
    assert pixel_auc(scores, targets) == pytest.approx(roc_auc_score(targets.ravel(), scores.ravel()), abs=1e-3)


def test_pixel_auc_checks_shapes_and_single_class():
    with pytest.raises(ValueError, match="native"):
        pixel_auc(np.zeros((4, 4)), np.zeros((4, 5)))
    assert math.isnan(pixel_auc(np.random.default_rng(0).random((4, 4)), np.zeros((4, 4))))


def test_criterion_frame_score_hand_built():
    target = np.zeros((10, 10), bool)
    target[0, :10] = True  # 10 anomalous pixels: 4 must be covered
    scores = np.zeros((10, 10))
    scores[0, :4] = 0.9
    scores[0, 4:] = 0.1
    assert criterion_frame_score(scores, target) == (0.9, True)  # exactly 40 % at t <= 0.9
    scores[0, 3] = 0.2
    assert criterion_frame_score(scores, target) == (0.2, True)  # only 3 pixels reach 0.9
    normal = np.zeros((10, 10))
    normal[5, 5] = 0.7
    assert criterion_frame_score(normal, np.zeros((10, 10), bool)) == (0.7, False)
    # 5 anomalous pixels need ceil(0.4 * 5) = 2
    small = np.zeros((3, 3), bool)
    small.flat[:5] = True
    assert criterion_frame_score(np.arange(9, dtype=float).reshape(3, 3), small) == (3.0, True)


def _brute_force_criterion_auc(frames, masks, coverage=0.4):
    values = np.unique(np.concatenate([f.ravel() for f in frames]))
    points = {(0.0, 0.0), (1.0, 1.0)}
    anomalous = [m.any() for m in masks]
    for t in values:
        tp = sum(1 for f, m, a in zip(frames, masks, anomalous) if a and (f[m] >= t).sum() >= coverage * m.sum())
        fp = sum(1 for f, a in zip(frames, anomalous) if not a and (f >= t).any())
        points.add((fp / (len(frames) - sum(anomalous)), tp / sum(anomalous)))
    # the ROC staircase over all thresholds, sorted; the area of the upper envelope per FPR
    xs = sorted({p[0] for p in points})
    curve = [(x, y) for x in xs
             for y in (min(p[1] for p in points if p[0] == x), max(p[1] for p in points if p[0] == x))]
    return float(np.trapezoid([c[1] for c in curve], [c[0] for c in curve]))


@pytest.mark.parametrize("seed", [0, 1])
def test_criterion_auc_matches_brute_force_sweep(seed):
    rng = np.random.default_rng(seed)
    frames, masks = [], []
    accumulator = PixelCriterionAccumulator()
    for index in range(14):
        mask = np.zeros((8, 8), bool)
        if index % 2:
            y, x = rng.integers(0, 5, size=2)
            mask[y:y + 3, x:x + 3] = True
        frame = np.round(rng.random((8, 8)) * 0.6 + 0.4 * mask * rng.random(), 2)
        frames.append(frame)
        masks.append(mask)
        accumulator.update(frame, mask)
    result = accumulator.result()
    assert result["num_frames"] == 14 and result["num_anomalous_frames"] == 7
    assert result["auc"] == pytest.approx(_brute_force_criterion_auc(frames, masks), abs=1e-9)
    assert 0 <= result["eer"] <= 1


def test_criterion_needs_the_ceiling_of_coverage_times_the_anomalous_pixels():
    """6 anomalous pixels at coverage 0.4: ceil(2.4) = 3 must reach the threshold, so the frame scores its 3rd best."""
    scores = np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    assert criterion_frame_score(scores, np.ones((2, 3)), coverage=0.4) == (0.4, True)


def test_pixel_criterion_takes_zero_one_labels_and_gives_nan_for_one_class():
    from lavida.metrics.vad_metrics.pixel_scores import pixel_criterion_metrics

    scores = np.array([0.9, 0.2, 0.7, 0.4])
    as_ints = pixel_criterion_metrics(scores, np.array([1, 0, 0, 1]))
    assert as_ints == pixel_criterion_metrics(scores, np.array([True, False, False, True]))
    assert as_ints["auc"] == pytest.approx(roc_auc_score([1, 0, 0, 1], scores)) and as_ints["num_anomalous_frames"] == 2
    single = pixel_criterion_metrics(scores, np.ones(4, dtype=bool))
    assert math.isnan(single["auc"]) and math.isnan(single["eer"]) and single["num_frames"] == 4
