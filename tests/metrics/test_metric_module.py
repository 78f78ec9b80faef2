"""The local ``evaluate`` module loads from its folder and returns what the plain functions return."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from lavida.metrics import METRIC_MODULE_DIR, frame_metrics, load_vad_metric

evaluate = pytest.importorskip("evaluate")


def test_frame_config_matches_plain_functions():
    rng = np.random.default_rng(0)
    labels = [(rng.random(30) < 0.3).astype(int) for _ in range(3)] + [np.zeros(10, int)]
    scores = [rng.random(len(y)) + 0.4 * y for y in labels]
    metric = evaluate.load(str(METRIC_MODULE_DIR))
    for y, s in zip(labels, scores):
        metric.add(predictions=s.tolist(), references=y.tolist())  # one video at a time
    result = metric.compute(smoothing_sigma=1.5)
    expected = frame_metrics(labels, scores, smoothing_sigma=1.5)
    for key in ("micro_auc", "macro_auc", "ap", "pr_auc_trapezoid", "eer"):
        assert result[key] == pytest.approx(expected[key], abs=1e-9)
    assert result["smoothing"]["sigma"] == 1.5
    assert result["micro_auc"] != pytest.approx(roc_auc_score(np.concatenate(labels), np.concatenate(scores)))


def test_pixel_config_is_exact_for_float16_scores():
    rng = np.random.default_rng(1)
    frames = [rng.random(48).astype(np.float16) for _ in range(6)]
    masks = [(rng.random(48) < 0.25 * (i % 2)).astype(np.int8) for i in range(6)]
    result = load_vad_metric("pixel").compute(predictions=[f.astype(np.float32) for f in frames], references=masks)
    expected = roc_auc_score(np.concatenate(masks), np.concatenate(frames).astype(np.float64))
    assert result["pixel_auc"] == pytest.approx(expected, abs=1e-9)
    assert result["num_frames"] == 6 and 0 <= result["pixel_criterion_auc"] <= 1


def test_region_config_hand_case():
    box, far = [0, 0, 10, 10], [50, 50, 60, 60]
    result = load_vad_metric("region").compute(
        predictions=[{"frames": [0, 1, 5], "boxes": [box, box, far], "scores": [0.9, 0.9, 0.8]}],
        references=[{"track_ids": [7] * 10, "frames": list(range(10)), "boxes": [box] * 10, "num_frames": 10}])
    assert result["rbdc"] == pytest.approx(0.2) and result["tbdc"] == pytest.approx(1.0)
