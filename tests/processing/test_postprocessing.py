"""Scores, events and masks from model outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lavida.processing.postprocessing import (Event, fill_skipped_frames, find_events, frame_probabilities,
                                              mask_probabilities, postprocess_scores, resize_masks, smooth_scores,
                                              threshold_scores)


def test_probabilities_match_sigmoid_and_survive_extremes():
    logits = torch.tensor([[-2000.0, -3.0, 0.0, 1.5, 2000.0]], dtype=torch.bfloat16)
    probabilities = frame_probabilities(logits)
    assert probabilities.dtype == torch.float32 and probabilities.shape == (1, 5)
    assert bool(torch.isfinite(probabilities).all())
    expected = 1 / (1 + np.exp(-logits.float().numpy()[0, 1:4]))
    np.testing.assert_allclose(probabilities[0, 1:4].numpy(), expected, rtol=1e-6)
    assert probabilities[0, 0] == 0.0 and probabilities[0, -1] == 1.0


def test_fill_gives_each_frame_its_nearest_sampled_score():
    # Samples at 0, 4, 8 of 11 frames: frame 2 is a tie (takes the earlier), 9 and 10 follow the last sample.
    filled = fill_skipped_frames(np.array([0, 4, 8]), np.array([0.1, 0.5, 0.9]), 11)
    np.testing.assert_allclose(filled, [0.1, 0.1, 0.1, 0.5, 0.5, 0.5, 0.5, 0.9, 0.9, 0.9, 0.9])
    # Samples need not start at frame 0.
    np.testing.assert_allclose(fill_skipped_frames([3], [0.7], 5), [0.7] * 5)


@pytest.mark.parametrize("indices, scores, num_frames, message", [
    ([], [], 5, "No sampled frames"),
    ([0, 2], [0.1], 5, "must match"),
    ([2, 1], [0.1, 0.2], 5, "strictly increasing"),
    ([0, 5], [0.1, 0.2], 5, r"must lie in \[0, 5\)"),
])
def test_fill_rejects_inconsistent_samples(indices, scores, num_frames, message):
    with pytest.raises(ValueError, match=message):
        fill_skipped_frames(np.array(indices), np.array(scores), num_frames)


def test_smoothing_is_off_at_zero_and_keeps_constants_and_mass():
    scores = np.full(15, 0.1, dtype=np.float32)
    scores[7] = 0.9
    np.testing.assert_array_equal(smooth_scores(scores, 0.0), scores)
    assert smooth_scores(scores, 1.0).dtype == np.float64
    np.testing.assert_allclose(smooth_scores(np.full(6, 0.3), 4.0), 0.3, rtol=1e-6)  # kernel wider than the video
    smoothed = smooth_scores(scores, 1.0)
    assert smoothed[7] < 0.5 < scores[7]  # a one-frame spike no longer crosses the threshold
    assert smoothed[6] == pytest.approx(smoothed[8])  # symmetric spread
    assert smoothed.sum() == pytest.approx(scores.sum(), rel=0.02)
    with pytest.raises(ValueError, match="non-negative"):
        smooth_scores(scores, -1.0)


@pytest.mark.parametrize("length", [2, 5, 40, 301])
@pytest.mark.parametrize("sigma", [0.1, 0.7, 2.0, 5.0, 33.0])
def test_smoothing_is_scipys_gaussian_filter_truncated_at_4_sigma(length, sigma):
    """The one smoothing of the package (detection and the frame metrics) is scipy's reflect-mode Gaussian filter."""
    from scipy.ndimage import gaussian_filter1d

    scores = np.random.default_rng(length).random(length).astype(np.float32)
    expected = gaussian_filter1d(scores.astype(np.float64), sigma, mode="reflect", truncate=4.0)
    np.testing.assert_allclose(smooth_scores(scores, sigma), expected, rtol=0, atol=1e-12)


def test_postprocess_scores_fills_smooths_and_finds_events_as_the_single_steps():
    sampled, probabilities = np.array([0, 3, 6, 9]), np.array([0.1, 0.9, 0.8, 0.2], np.float32)
    scores, events = postprocess_scores(sampled, probabilities, 11, fps=5.0, threshold=0.5, min_event_frames=2,
                                        smoothing_sigma=1.5)
    expected = smooth_scores(fill_skipped_frames(sampled, probabilities, 11), 1.5).astype(np.float32)
    np.testing.assert_array_equal(scores, expected)
    assert scores.dtype == np.float32 and events == find_events(expected, 5.0, 0.5, 2)


def test_events_on_a_hand_built_curve():
    scores = np.zeros(30, dtype=np.float32)
    scores[0:2] = 0.8             # a run at the very start
    scores[5:9] = [0.5, 0.9, 0.7, 0.6]   # starts exactly at the threshold (counts as anomalous)
    scores[12] = 0.95             # a single frame
    scores[15:18] = 0.49          # just below: not an event
    scores[25:30] = 0.6           # runs to the last frame
    events = find_events(scores, fps=10.0, threshold=0.5, min_length=1)
    assert [(e.start_frame, e.end_frame) for e in events] == [(0, 1), (5, 8), (12, 12), (25, 29)]
    second = events[1]
    assert second == Event(start_frame=5, end_frame=8, start_s=0.5, end_s=0.9, peak_score=pytest.approx(0.9),
                           mean_score=pytest.approx(0.675))
    assert events[-1].end_s == pytest.approx(3.0) and events[-1].num_frames == 5
    # min_length drops short runs; a higher threshold splits nothing but removes weak runs.
    assert [(e.start_frame, e.end_frame) for e in find_events(scores, 10.0, 0.5, min_length=3)] == [(5, 8), (25, 29)]
    assert [(e.start_frame, e.end_frame) for e in find_events(scores, 10.0, 0.75)] == [(0, 1), (6, 6), (12, 12)]
    assert find_events(np.full(10, 0.2), 25.0) == []
    assert threshold_scores(scores, 0.5).sum() == sum(e.num_frames for e in events)


def test_event_arguments_are_checked():
    with pytest.raises(ValueError, match="fps"):
        find_events(np.ones(3), fps=0.0)
    with pytest.raises(ValueError, match="min_length"):
        find_events(np.ones(3), fps=1.0, min_length=0)
    with pytest.raises(ValueError, match="threshold"):
        find_events(np.ones(3), fps=1.0, threshold=1.5)


def test_resize_masks_is_bilinear_to_native_size():
    rng = np.random.default_rng(0)
    masks = rng.normal(size=(2, 6, 10)).astype(np.float32)  # (N, h, w) logits
    resized = resize_masks(masks, (97, 161))
    assert resized.shape == (2, 97, 161) and resized.dtype == np.float32
    expected = torch.nn.functional.interpolate(torch.from_numpy(masks)[:, None], size=(97, 161), mode="bilinear",
                                               align_corners=False)[:, 0].numpy()
    np.testing.assert_allclose(resized, expected, rtol=1e-6)
    assert resized.min() >= masks.min() - 1e-6 and resized.max() <= masks.max() + 1e-6  # no overshoot
    single = resize_masks(torch.full((4, 4), 0.25), (9, 7))
    assert isinstance(single, torch.Tensor) and single.shape == (9, 7) and torch.allclose(single, torch.tensor(0.25))
    with pytest.raises(ValueError, match=r"\[\.\.\., h, w\]"):
        resize_masks(np.zeros(5), (4, 4))
    probabilities = mask_probabilities(torch.from_numpy(masks), (97, 161))
    torch.testing.assert_close(probabilities, torch.sigmoid(torch.from_numpy(expected)))


def test_a_detection_from_frame_scores_is_smoothed_with_its_options():
    """``VideoDetection.from_frame_scores`` applies the options' smoothing before cutting events."""
    from lavida.processing.detection import VideoDetection
    from lavida.processing.options import DetectionOptions

    raw = np.zeros(20, np.float32)
    raw[[4, 12, 13, 14, 15]] = 0.9  # a one-frame flicker and a four-frame event
    plain = VideoDetection.from_frame_scores(raw, 10.0, ["fire"])
    smoothed = VideoDetection.from_frame_scores(raw, 10.0, ["fire"], options=DetectionOptions(smoothing_sigma=1.0))
    np.testing.assert_array_equal(plain.scores, raw)
    np.testing.assert_array_equal(smoothed.scores, smooth_scores(raw, 1.0).astype(np.float32))
    np.testing.assert_array_equal(smoothed.sampled_scores, raw)  # the probabilities as scored, before smoothing
    assert [(e.start_frame, e.end_frame) for e in plain.events] == [(4, 4), (12, 15)]
    assert [(e.start_frame, e.end_frame) for e in smoothed.events] == [(12, 15)]  # the flicker is smoothed away
    assert smoothed.to_dict()["settings"]["smoothing_sigma"] == 1.0


def test_fill_keeps_every_frame_when_every_frame_was_scored():
    """Stride 1 (consecutive indices) and a one-frame video are valid inputs, returned as they are."""
    scores = np.array([0.1, 0.7, 0.4, 0.9], np.float32)
    np.testing.assert_array_equal(fill_skipped_frames(np.arange(4), scores, 4), scores)
    np.testing.assert_array_equal(fill_skipped_frames(np.array([0]), np.array([0.3]), 1), np.array([0.3], np.float32))


def test_resize_masks_to_a_single_row_or_column():
    """A one-pixel-high (or wide) target size is a size like any other: each output pixel averages its source span."""
    masks = np.array([[[1.0, 3.0], [5.0, 7.0]]], np.float32)  # (1, 2, 2)
    np.testing.assert_allclose(resize_masks(masks, (1, 2)), [[[3.0, 5.0]]])
    np.testing.assert_allclose(resize_masks(masks, (2, 1)), [[[2.0], [6.0]]])


# -- event names ----------------------------------------------------------------------------------------------------

EVENT_NAMES = ["fire", "fighting", "bicycle"]
# Five sampled frames (stride 4) of a 20-frame video; each row is the names' probabilities, the score their maximum.
EVENT_SAMPLES = np.array([0, 4, 8, 12, 16])
EVENT_NAME_PROBABILITIES = np.array([[0.10, 0.02, 0.05],   # frames 0-2
                                     [0.20, 0.70, 0.05],   # frames 3-6   (ties go to the earlier sampled frame)
                                     [0.90, 0.30, 0.10],   # frames 7-10
                                     [0.05, 0.10, 0.20],   # frames 11-14: below the threshold, outside the events
                                     [0.10, 0.80, 0.30]], np.float32)  # frames 15-19


def test_an_event_is_named_from_the_sampled_frames_its_frames_take_their_scores_from():
    from lavida.processing.postprocessing import name_events

    scores, events = postprocess_scores(EVENT_SAMPLES, EVENT_NAME_PROBABILITIES.max(axis=1), 20, 10.0, threshold=0.5)
    assert [(event.start_frame, event.end_frame) for event in events] == [(3, 10), (15, 19)]
    assert all(event.anomaly is None and event.name_scores is None for event in events)
    first, second = name_events(events, EVENT_SAMPLES, EVENT_NAME_PROBABILITIES, EVENT_NAMES)
    assert first.anomaly == "fire" and second.anomaly == "fighting"
    # rows 1-2 only: the neighbours' bicycle (0.05 before, 0.20 after) are not the event's
    assert first.name_scores == {"fire": pytest.approx(0.9), "fighting": pytest.approx(0.7),
                                 "bicycle": pytest.approx(0.1)}
    assert list(first.name_scores) == ["fire", "fighting", "bicycle"]  # best first
    assert (first.start_frame, first.end_frame, first.peak_score) == (3, 10, events[0].peak_score)
    with pytest.raises(ValueError, match=r"name_probabilities must be \[S=5, N\]"):
        name_events(events, EVENT_SAMPLES, EVENT_NAME_PROBABILITIES[:4], EVENT_NAMES)


def test_names_rank_best_first_ties_in_listed_order_and_limited():
    from lavida.processing.postprocessing import nearest_samples, rank_names

    ranked = rank_names(np.array([0.2, 0.9, 0.2, 0.5, 0.7]), ["a", "b", "c", "d"])  # a score without a name is dropped
    assert list(ranked.items()) == [("b", pytest.approx(0.9)), ("d", 0.5), ("a", pytest.approx(0.2)),
                                    ("c", pytest.approx(0.2))]
    assert list(rank_names(np.array([0.2, 0.9, 0.2, 0.5]), ["a", "b", "c", "d"], limit=2)) == ["b", "d"]
    assert rank_names(np.zeros(0), ["a"]) == {}
    # the rows the filling uses: ties to the earlier sampled frame, the ends to the first and last
    assert nearest_samples([2, 6, 10], [0, 4, 5, 8, 9, 15]).tolist() == [0, 0, 1, 1, 2, 2]
