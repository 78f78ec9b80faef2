"""Frame-level metrics: equal to sklearn on random inputs, and hand-built cases with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_auc_score

from lavida.metrics import (average_precision, equal_error_rate, frame_metrics, macro_auc, micro_auc,
                            pr_auc_trapezoid, smooth_scores, video_auc)


def _random_videos(seed: int, num_videos: int = 5, ties: bool = False):
    rng = np.random.default_rng(seed)
    labels, scores = [], []
    for _ in range(num_videos):
        length = int(rng.integers(20, 60))
        label = (rng.random(length) < 0.3).astype(np.int64)
        score = rng.random(length) + 0.3 * label
        if ties:
            score = np.round(score, 1)
        labels.append(label)
        scores.append(score)
    return labels, scores


@pytest.mark.parametrize("seed,ties", [(0, False), (1, True), (2, False), (3, True)])
def test_pooled_metrics_equal_sklearn(seed, ties):
    labels, scores = _random_videos(seed, ties=ties)
    y, s = np.concatenate(labels), np.concatenate(scores)
    assert micro_auc(labels, scores) == pytest.approx(roc_auc_score(y, s), abs=1e-9)
    assert average_precision(labels, scores) == pytest.approx(average_precision_score(y, s), abs=1e-9)
    precision, recall, _ = precision_recall_curve(y, s)
    assert pr_auc_trapezoid(labels, scores) == pytest.approx(auc(recall, precision), abs=1e-9)


def test_macro_auc_equals_mean_of_sklearn_per_video():
    labels, scores = _random_videos(4)
    expected = np.mean([roc_auc_score(y, s) for y, s in zip(labels, scores)])
    assert macro_auc(labels, scores, "skip").value == pytest.approx(expected, abs=1e-9)
    padded = np.mean([roc_auc_score(np.r_[0, y, 1], np.r_[0.0, s, max(1.0, s.max())])
                      for y, s in zip(labels, scores)])
    assert macro_auc(labels, scores, "pad").value == pytest.approx(padded, abs=1e-9)


def test_macro_auc_on_all_normal_video_is_defined():
    # padded with (normal, 0) and (anomalous, 1): no frame reaches 1 -> a perfect 1.0
    assert video_auc([0, 0, 0], [0.2, 0.5, 0.9], "pad") == 1.0
    # one frame tied with the padded anomalous frame counts half: (2 + 0.5) / 3 pairs
    assert video_auc([0, 0], [1.0, 0.2], "pad") == pytest.approx(2.5 / 3, abs=1e-12)
    assert math.isnan(video_auc([0, 0], [1.0, 0.2], "skip"))
    result = macro_auc([np.array([0, 0]), np.array([0, 1])], [np.array([1.0, 0.2]), np.array([0.1, 0.9])], "skip")
    assert result.value == 1.0 and result.num_videos_used == 1 and math.isnan(result.per_video[0])
    padded = macro_auc([np.array([0, 0]), np.array([0, 1])], [np.array([1.0, 0.2]), np.array([0.1, 0.9])], "pad")
    assert padded.num_videos_used == 2 and padded.value == pytest.approx((2.5 / 3 + 1.0) / 2, abs=1e-12)


def test_ap_two_ways_differ_as_computed_by_hand():
    labels, scores = [np.array([1, 0, 1])], [np.array([0.9, 0.8, 0.7])]
    assert average_precision(labels, scores) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3, abs=1e-12)
    # PR points (R, P): (1, 2/3), (0.5, 0.5), (0.5, 1), (0, 1) -> 0.5 * (0.5 + 2/3) / 2 + 0.5 * 1
    assert pr_auc_trapezoid(labels, scores) == pytest.approx(0.25 * (0.5 + 2 / 3) + 0.5, abs=1e-12)


@pytest.mark.parametrize("labels,scores,expected", [
    ([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], 0.0),        # perfectly separated
    ([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1], 1.0),        # perfectly reversed
    ([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9], 0.5),        # crossing on an ROC point
    ([0, 0, 0, 1], [0.1, 0.2, 0.4, 0.3], 1 / 3),      # crossing inside a vertical ROC segment
    ([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5], 0.5),        # all tied: the diagonal
])
def test_eer_hand_built(labels, scores, expected):
    eer, threshold = equal_error_rate([np.array(labels)], [np.array(scores, dtype=float)])
    assert eer == pytest.approx(expected, abs=1e-12)
    assert math.isfinite(threshold)


def test_eer_interpolates_between_bracketing_points():
    # five negatives, one positive ranked third: ROC jumps from (2/5, 0) to (2/5, 1) -> EER = 2/5
    labels = np.array([0, 0, 0, 0, 0, 1])
    scores = np.array([0.9, 0.8, 0.1, 0.2, 0.3, 0.5])
    assert equal_error_rate([labels], [scores])[0] == pytest.approx(0.4, abs=1e-12)


def test_smoothing_is_reported_and_applied():
    labels, scores = _random_videos(5)
    plain = frame_metrics(labels, scores)
    smoothed = frame_metrics(labels, scores, smoothing_sigma=3.0)
    assert plain["smoothing"] is None
    assert smoothed["smoothing"] == {"kind": "gaussian", "sigma": 3.0, "edges": "reflect", "truncate": 4.0}
    expected = micro_auc(labels, [smooth_scores(s, 3.0) for s in scores])
    assert smoothed["micro_auc"] == pytest.approx(expected, abs=1e-12)
    assert smoothed["micro_auc"] != plain["micro_auc"]
    np.testing.assert_allclose(smooth_scores(np.full(9, 0.3), 2.0), 0.3, atol=1e-12)
    np.testing.assert_array_equal(smooth_scores(scores[0], 0.0), scores[0])


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="labels but"):
        micro_auc([np.array([0, 1])], [np.array([0.5])])
    with pytest.raises(ValueError, match="0 \\(normal\\) or 1"):
        micro_auc([np.array([0, 2])], [np.array([0.5, 0.1])])
    with pytest.raises(ValueError, match="NaN"):
        micro_auc([np.array([0, 1])], [np.array([np.nan, 0.1])])
    with pytest.raises(ValueError, match="sigma"):
        smooth_scores(np.zeros(3), -1.0)
    assert math.isnan(micro_auc([np.zeros(4, int)], [np.arange(4.0)]))


def test_frame_metrics_reports_each_metric_under_its_own_name():
    """Every key of ``frame_metrics`` against sklearn on the pooled frames; the two APs differ here, so a swap shows."""
    labels, scores = _random_videos(6, num_videos=3)
    labels.append(np.zeros(12, np.int64))  # an all-normal video: padded into the macro AUC, skipped by "skip"
    scores.append(np.random.default_rng(7).random(12))
    y, s = np.concatenate(labels), np.concatenate(scores)
    precision, recall, _ = precision_recall_curve(y, s)
    result = frame_metrics(labels, scores)
    assert result["ap"] == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert result["pr_auc_trapezoid"] == pytest.approx(auc(recall, precision), abs=1e-12)
    assert abs(result["ap"] - result["pr_auc_trapezoid"]) > 1e-3
    assert result["micro_auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert result["macro_auc"] == pytest.approx(macro_auc(labels, scores, "pad").value, abs=1e-12)
    assert result["macro_auc_skip"] == pytest.approx(np.mean([roc_auc_score(a, b) for a, b in
                                                              zip(labels[:3], scores[:3])]), abs=1e-12)
    assert result["macro_auc"] != pytest.approx(result["macro_auc_skip"], abs=1e-6)
    assert (result["eer"], result["eer_threshold"]) == equal_error_rate(labels, scores)
    assert (result["num_videos"], result["macro_videos_skip"], result["num_frames"],
            result["num_anomalous_frames"]) == (4, 3, len(y), int(y.sum()))


@pytest.mark.parametrize("labels,scores,threshold", [
    ([0, 1, 0, 0, 1, 1], [0.1, 0.2, 0.3, 0.5, 0.6, 0.9], 0.5),  # the crossing sits on the ROC point of 0.5
    ([0, 0, 1, 0, 1], [0.1, 0.3, 0.35, 0.4, 0.9], 0.4),        # a third of the way from the point of 0.4 to 0.35
])
def test_eer_threshold_is_the_roc_point_nearest_to_the_crossing(labels, scores, threshold):
    """Every threshold is on the ROC (none dropped), and the nearer of the two bracketing points gives it."""
    eer, found = equal_error_rate([np.array(labels)], [np.array(scores)])
    assert eer == pytest.approx(1 / 3, abs=1e-12) and found == threshold
