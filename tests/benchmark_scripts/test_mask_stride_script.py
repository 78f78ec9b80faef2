"""The mask-stride benchmark's mask figures: the pixel criterion, pixel AUC and coverage of masks against truth."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.mask_stride import mask_figures


@pytest.fixture
def truth():
    masks = np.zeros((6, 8, 8), dtype=bool)
    masks[1:4, 2:5, 2:5] = True  # an anomaly in frames 1-3, frames 0, 4 and 5 normal
    return masks


def test_the_truth_itself_scores_perfectly(truth):
    figures = mask_figures(list(truth.astype(np.float16)), truth)
    assert figures == {"criterion_auc": 1.0, "criterion_eer": 0.0, "pixel_auc": 1.0, "anomaly_coverage": 1.0}


def test_a_mask_a_frame_behind_loses_coverage_and_a_normal_frame_with_mask_is_a_false_alarm(truth):
    behind = [truth[max(index - 1, 0)].astype(np.float16) for index in range(len(truth))]  # the previous frame's
    figures = mask_figures(behind, truth)
    assert figures["anomaly_coverage"] == pytest.approx(2 / 3)  # frame 1 takes normal frame 0's empty mask
    assert figures["criterion_auc"] < 1.0  # and normal frame 4 takes anomalous frame 3's
    shifted = [np.roll(mask, 2, axis=1).astype(np.float16) for mask in truth]  # two pixels to the right
    assert mask_figures(shifted, truth)["anomaly_coverage"] == pytest.approx(1 / 3)
