"""``LiveEventTracker``: the live scores and events are those of ``post_process_video_scores`` on the same frames, in
any chunking; dropped clips neither invent nor cut events; memory stays bounded."""

from __future__ import annotations

import numpy as np
import pytest

from lavida.processing.live_events import LiveEventTracker, LiveUpdate
from lavida.processing.options import DetectionOptions
from lavida.processing.postprocessing import postprocess_scores

FPS = 25.0


def _feed(tracker: LiveEventTracker, indices: np.ndarray, scores: np.ndarray, chunks: list[int],
          last_frame: int | None, names: np.ndarray | None = None) -> LiveUpdate:
    """Add the scored frames chunk by chunk, then end the segment; everything that became final, in order."""
    total = LiveUpdate()
    position = 0
    for size in chunks:
        part = slice(position, position + size)
        total.extend(tracker.add(indices[part], scores[part], None if names is None else names[part]))
        position += size
    total.extend(tracker.end_segment(last_frame))
    return total


@pytest.mark.parametrize("seed", range(12))
def test_live_scores_and_events_equal_the_offline_post_processing(seed):
    rng = np.random.default_rng(seed)
    frames = int(rng.integers(2, 150))
    stride = int(rng.integers(1, 4))
    options = DetectionOptions(stride=stride, threshold=float(rng.uniform(0.3, 0.7)),
                               min_event_frames=int(rng.integers(1, 5)),
                               smoothing_sigma=float(rng.choice([0.0, 0.7, 2.0, 4.5])))
    sampled = np.arange(0, frames, stride)
    raw = rng.random(sampled.size).astype(np.float32)
    scores, events = postprocess_scores(sampled, raw, frames, FPS, options.threshold, options.min_event_frames,
                                        options.smoothing_sigma)

    tracker = LiveEventTracker(FPS, options)
    tracker.start_segment(first_frame=0, start_s=0.0)
    chunks = []
    while sum(chunks) < sampled.size:  # clips of any size, as the queue hands them over
        chunks.append(int(rng.integers(1, 10)))
    live = _feed(tracker, sampled, raw, chunks, frames - 1)

    assert live.frames.tolist() == list(range(frames))
    np.testing.assert_allclose(live.scores, scores, atol=1e-6)
    assert live.scored.all()
    assert [(e.event.start_frame, e.event.end_frame) for e in live.closed] == \
           [(e.start_frame, e.end_frame) for e in events]
    for got, want in zip(live.closed, events):
        assert got.event.start_s == pytest.approx(want.start_s) and got.event.end_s == pytest.approx(want.end_s)
        assert got.event.peak_score == pytest.approx(want.peak_score, abs=1e-6)
        assert got.event.mean_score == pytest.approx(want.mean_score, abs=1e-5)
    assert [e.number for e in live.opened] == [e.number for e in live.closed] == list(range(1, len(events) + 1))


def test_an_event_opens_as_soon_as_its_run_reaches_min_event_frames():
    tracker = LiveEventTracker(FPS, DetectionOptions(threshold=0.5, min_event_frames=3))
    tracker.start_segment(0, 0.0)
    first = tracker.add(np.arange(8), np.array([0.1, 0.2, 0.9, 0.9, 0.1, 0.8, 0.8, 0.8], np.float32))
    assert [(e.event.start_frame, e.event.end_frame) for e in first.opened] == [(5, 7)]  # 2-3 is too short
    assert first.closed == []
    second = tracker.add(np.arange(8, 10), np.array([0.7, 0.2], np.float32))
    assert [(e.event.start_frame, e.event.end_frame, e.number) for e in second.closed] == [(5, 8, 1)]


def test_smoothing_delays_scores_by_its_radius_only():
    sigma = 1.0  # radius int(4 * 1 + 0.5) = 4 frames
    tracker = LiveEventTracker(FPS, DetectionOptions(smoothing_sigma=sigma))
    tracker.start_segment(0, 0.0)
    update = tracker.add(np.arange(16), np.linspace(0, 1, 16).astype(np.float32))
    assert update.frames.tolist() == list(range(12))


def test_dropped_clips_neither_start_nor_cut_events_and_are_not_scored():
    options = DetectionOptions(threshold=0.5)
    tracker = LiveEventTracker(FPS, options)
    tracker.start_segment(0, 0.0)
    low, high = np.full(8, 0.1, np.float32), np.full(8, 0.9, np.float32)
    update = tracker.add(np.arange(8), low)
    update.extend(tracker.add(np.arange(40, 48), high))  # frames 8-39 were dropped
    update.extend(tracker.add(np.arange(80, 88), high))  # and 48-79
    update.extend(tracker.end_segment(87))
    # the event starts at the first frame scored anomalous, not inside the gap before it, and spans the second gap
    assert [(e.event.start_frame, e.event.end_frame) for e in update.closed] == [(40, 87)]
    scored = update.frames[update.scored]
    assert scored.tolist() == [*range(8), *range(40, 48), *range(80, 88)]
    assert update.frames.tolist() == list(range(88))


def test_frames_before_a_segments_first_scored_clip_are_left_out():
    tracker = LiveEventTracker(FPS, DetectionOptions(threshold=0.5))
    tracker.start_segment(first_frame=100, start_s=10.0)
    update = tracker.add(np.arange(116, 124), np.full(8, 0.9, np.float32))  # the segment's first two clips dropped
    update.extend(tracker.end_segment(123))
    assert update.frames.tolist() == list(range(116, 124))
    (event,) = update.closed
    assert (event.event.start_frame, event.event.start_s) == (116, pytest.approx(10.0 + 16 / FPS))


def test_segments_restart_the_curve_and_close_open_events():
    tracker = LiveEventTracker(FPS, DetectionOptions(threshold=0.5))
    tracker.start_segment(0, 0.0)
    first = tracker.add(np.arange(8), np.full(8, 0.9, np.float32))
    assert len(first.opened) == 1 and first.closed == []
    ended = tracker.end_segment(9)  # the stream dropped: the event closes at the segment's last frame
    assert [(e.event.start_frame, e.event.end_frame) for e in ended.closed] == [(0, 9)]
    tracker.start_segment(10, 5.0)
    second = tracker.add(np.arange(10, 18), np.full(8, 0.9, np.float32))
    assert [(e.number, e.event.start_frame, e.event.start_s) for e in second.opened] == [(2, 10, 5.0)]


def test_an_event_names_the_best_scoring_name_over_its_frames():
    tracker = LiveEventTracker(FPS, DetectionOptions(threshold=0.5))
    tracker.start_segment(0, 0.0)
    names = np.zeros((8, 3), np.float32)
    names[2:6, 1] = [0.6, 0.9, 0.7, 0.6]  # name 1 grows during the event
    names[2:6, 2] = 0.55
    names[0, 0] = 0.45  # before the event (below the threshold): not part of it
    scores = names.max(axis=1)
    update = _feed(tracker, np.arange(8), scores, [3, 5], 7, names)
    (event,) = update.closed
    np.testing.assert_allclose(event.name_scores, [0.0, 0.9, 0.55])


def test_memory_does_not_grow_with_the_stream():
    tracker = LiveEventTracker(FPS, DetectionOptions(smoothing_sigma=2.0, threshold=0.5))
    tracker.start_segment(0, 0.0)
    rng = np.random.default_rng(0)
    names = rng.random((8, 4)).astype(np.float32)
    for start in range(0, 20_000, 8):
        tracker.add(np.arange(start, start + 8), rng.random(8).astype(np.float32), names)
    assert tracker._values.size <= 2 * tracker.radius + 8
    assert len(tracker._names) <= tracker.radius + 8


def test_frame_indices_must_increase():
    tracker = LiveEventTracker(FPS)
    tracker.start_segment(0, 0.0)
    tracker.add(np.arange(8), np.zeros(8))
    with pytest.raises(ValueError, match="must increase"):
        tracker.add(np.arange(4, 12), np.zeros(8))
