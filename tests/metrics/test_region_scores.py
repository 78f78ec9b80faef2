"""RBDC / TBDC on hand-built detections and tracks with answers worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lavida.metrics import (Detections, Track, box_iou, largest_component_box, rbdc_tbdc_from_detections,
                            regions_from_map)

BOX = [0, 0, 10, 10]
FAR = [50, 50, 60, 60]


def test_box_iou():
    iou = box_iou(np.array([BOX]), np.array([BOX, [5, 0, 15, 10], FAR, [0, 0, 0, 0]]))
    np.testing.assert_allclose(iou, [[1.0, 50 / 150, 0.0, 0.0]])


def test_ten_frame_track_with_two_hits_and_one_false_positive():
    track = Track(0, np.arange(10), np.tile(BOX, (10, 1)))
    detections = Detections([0, 1, 5], [BOX, [1, 1, 11, 11], FAR], [0.9, 0.9, 0.8])
    result = rbdc_tbdc_from_detections([detections], [[track]], num_frames=10)
    # t = 0.9: 2 of 10 regions, track detected (2 >= ceil(0.1 * 10)), no FP; t = 0.8: one FP -> FPR 0.1
    # RBDR stays 0.2 to FPR 1 (flat extension), TBDR is 1 from FPR 0
    assert result["rbdc"] == pytest.approx(0.2, abs=1e-12)
    assert result["tbdc"] == pytest.approx(1.0, abs=1e-12)
    assert (result["num_regions"], result["num_tracks"]) == (10, 1)


def test_curve_is_cut_at_max_fpr_by_interpolation():
    track = Track(3, [0, 1], [BOX, BOX])
    detections = Detections([0, 0, 1, 1, 1], [BOX, FAR, FAR, BOX, FAR], [0.9, 0.8, 0.7, 0.6, 0.5])
    # points (FPR, RBDR): (0,0) (0,.5) (.5,.5) (1,.5) (1,1) (1.5,1)
    full = rbdc_tbdc_from_detections([detections], [[track]], num_frames=2)
    assert full["rbdc"] == pytest.approx(0.5, abs=1e-12)
    assert full["tbdc"] == pytest.approx(1.0, abs=1e-12)
    cut = rbdc_tbdc_from_detections([detections], [[track]], num_frames=2, max_fpr=0.75)
    assert cut["rbdc"] == pytest.approx(0.375, abs=1e-12)
    # beyond a kept point: (0,.5) -> (.5,.5) -> (1.0,.5): cut at .25 -> area .125
    assert rbdc_tbdc_from_detections([detections], [[track]], 2, max_fpr=0.25)["rbdc"] == pytest.approx(0.125)


def test_track_needs_ten_percent_of_its_regions_and_iou_threshold_applies():
    long_track = Track(1, np.arange(20), np.tile(BOX, (20, 1)))  # needs ceil(0.1 * 20) = 2 regions
    one_hit = Detections([4], [BOX], [0.7])
    result = rbdc_tbdc_from_detections([one_hit], [[long_track]], num_frames=20)
    assert result["rbdc"] == pytest.approx(1 / 20, abs=1e-12)
    assert result["tbdc"] == 0.0
    # IoU 0.05 < 0.1: not a match, so it is a false positive instead
    sliver = Detections([4], [[9.5, 0, 19.5, 10]], [0.7])
    assert box_iou(np.array([BOX]), np.array([[9.5, 0, 19.5, 10]]))[0, 0] < 0.1
    missed = rbdc_tbdc_from_detections([sliver], [[long_track]], num_frames=20)
    assert missed["rbdc"] == 0.0 and missed["tbdc"] == 0.0


def test_videos_are_pooled_and_normal_videos_only_add_frames():
    track = Track(0, [0], [BOX])
    hit = Detections([0], [BOX], [0.9])
    normal_fp = Detections([2], [FAR], [0.95])  # a normal video: its FP comes before the hit
    result = rbdc_tbdc_from_detections([hit, normal_fp], [[track], []], num_frames=4)
    # (0,0) -> t=.95: (.25, 0) -> t=.9: (.25, 1) -> flat to (1, 1): area .75
    assert result["rbdc"] == pytest.approx(0.75, abs=1e-12)
    assert math.isnan(rbdc_tbdc_from_detections([hit], [[]], num_frames=1)["rbdc"])


def test_regions_from_map_and_largest_component():
    scores = np.zeros((20, 30))
    scores[2:5, 3:8] = 0.6
    scores[3, 4] = 0.95
    scores[10:18, 20:22] = 0.7
    scores[0, 29] = 0.8  # one-pixel speck
    boxes, region_scores = regions_from_map(scores, level=0.5, min_area=2)
    order = np.argsort(region_scores)
    np.testing.assert_array_equal(boxes[order], [[20, 10, 22, 18], [3, 2, 8, 5]])
    np.testing.assert_allclose(region_scores[order], [0.7, 0.95])
    assert largest_component_box(scores > 0.5) == (20, 10, 22, 18)  # 2x8 box beats 5x3
    assert largest_component_box(np.zeros((3, 3))) is None


def test_box_iou_of_boxes_that_are_not_square():
    iou = box_iou(np.array([[0, 0, 4, 2]]), np.array([[0, 0, 2, 2], [0, 1, 4, 3]]))
    np.testing.assert_allclose(iou, [[4 / 8, 4 / 12]])


def test_regions_from_map_joins_diagonal_neighbours():
    scores = np.zeros((4, 4))
    scores[0, 0] = scores[1, 1] = 0.9  # touching at a corner: one 8-connected region
    boxes, region_scores = regions_from_map(scores, level=0.5)
    np.testing.assert_array_equal(boxes, [[0, 0, 2, 2]])
    np.testing.assert_allclose(region_scores, [0.9])


def test_a_track_without_regions_does_not_hide_the_next_one():
    from lavida.metrics.vad_metrics.region_scores import VideoRegionMatch, rbdc_tbdc

    match = VideoRegionMatch(region_scores=np.array([0.9, 0.8]), region_tracks=np.array([1, 1]),
                             false_positive_scores=np.array([0.5]), num_tracks=2)
    result = rbdc_tbdc([match], num_frames=10)
    assert {key: result[key] for key in ("num_regions", "num_tracks", "num_detections")} == {
        "num_regions": 2, "num_tracks": 1, "num_detections": 3}
    assert result["rbdc"] == result["tbdc"] > 0
