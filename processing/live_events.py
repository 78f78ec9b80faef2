"""Live post-processing for ``lavida watch``: per-frame scores and events computed as scored clips arrive, the
streaming counterpart of ``LavidaProcessor.post_process_video_scores`` (the same filling, smoothing and event rule, in
memory that does not grow with the stream).

    tracker = LiveEventTracker(fps=25.0, options=DetectionOptions(threshold=0.6, min_event_frames=3))
    tracker.start_segment(first_frame=0, start_s=0.0)
    update = tracker.add(frame_indices, probabilities, name_probabilities)   # one scored clip's real frames
    update.frames, update.scores, update.anomalous   # the frames whose score became final
    update.opened, update.closed                     # LiveEvents
    update = tracker.end_segment(last_frame)         # the connection ended, or the watch stops

A segment is what one connection delivers. On a segment whose clips all reach the model, the final scores and the
events are those ``post_process_video_scores`` gives for the segment read as one video (the tests check it); what
differs is only when each is known:

- filling: a frame between two scored frames takes the nearer one's score (the earlier on a tie), so it is final once
  the next scored frame is known. Frames of clips dropped because scoring fell behind keep the last score known
  before them (an open event stays open across them, and none starts inside them) and are marked ``scored=False``
  (``scores.csv`` leaves them out); frames before a segment's first scored one are left out;
- smoothing (``smoothing_sigma`` > 0) needs the ``4 sigma`` frames after a frame, so it delays every score that much;
- an event opens when its run of frames at or above the threshold reaches ``min_event_frames`` frames, and closes at
  the first frame below it or at the end of the segment.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from .options import DetectionOptions
from .postprocessing import SMOOTHING_TRUNCATE, Event, smooth_scores, threshold_scores


@dataclass(frozen=True)
class LiveEvent:
    """An event of a live stream, when it opens (``event`` up to the frame that made it an event) or when it closes
    (the whole event).

    Attributes:
        number: 1, 2, ... in the order the events opened (over all segments).
        event: frames, times (seconds from the start of the watch), peak and mean score.
        name_scores: ``float32 [N]`` the highest probability each anomaly name reached on the event's scored frames,
            when the model scores names (``frame_score="name_grounding"``); else None.
    """

    number: int
    event: Event
    name_scores: np.ndarray | None = None


@dataclass
class LiveUpdate:
    """What one call of ``LiveEventTracker`` made final: ``frames`` (``int64 [k]``), their ``times_s``
    (``float64 [k]``, seconds from the start of the watch), ``scores`` (``float32 [k]``), ``anomalous`` and
    ``scored`` (``bool [k]``; False for frames of dropped clips, filled only for the events), and the events that
    opened or closed, in order."""

    frames: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    times_s: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float64))
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    anomalous: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    scored: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    opened: list[LiveEvent] = field(default_factory=list)
    closed: list[LiveEvent] = field(default_factory=list)

    def extend(self, other: LiveUpdate) -> None:
        self.frames = np.concatenate([self.frames, other.frames])
        self.times_s = np.concatenate([self.times_s, other.times_s])
        self.scores = np.concatenate([self.scores, other.scores])
        self.anomalous = np.concatenate([self.anomalous, other.anomalous])
        self.scored = np.concatenate([self.scored, other.scored])
        self.opened += other.opened
        self.closed += other.closed


class LiveEventTracker:
    """Scores and events of a live stream, segment by segment (see the module docstring).

    Memory is bounded: the filled scores of ``2 x 4 sigma`` frames (smoothing), the name scores of the scored
    frames not yet final, and the running peak, sum and name maxima of the current event.
    """

    def __init__(self, fps: float, options: DetectionOptions | None = None):
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps!r}.")
        self.fps = float(fps)
        self.options = options or DetectionOptions()
        sigma = self.options.smoothing_sigma
        self.radius = int(SMOOTHING_TRUNCATE * sigma + 0.5) if sigma else 0  # as smooth_scores
        self.events_opened = 0
        self._segment: tuple[int, float] | None = None  # (first frame, start in seconds)

    # ------------------------------------------------------------------------------------------------ segments
    def start_segment(self, first_frame: int, start_s: float, fps: float | None = None) -> None:
        """A new connection: its first decoded frame's index and when it started (seconds from the start of the
        watch); ``fps`` if it differs. Ends the current segment first if one is open."""
        if self._segment is not None:
            raise RuntimeError("end_segment the current segment before starting another.")
        if fps is not None:
            self.fps = float(fps)
        self._segment = (int(first_frame), float(start_s))
        self._last_sample: tuple[int, float] | None = None
        self._values = np.zeros(0, dtype=np.float32)  # filled scores of frames [_values_start, _filled_end]
        self._scored = np.zeros(0, dtype=bool)
        self._values_start = int(first_frame)
        self._next_final = int(first_frame)
        self._names: deque[tuple[int, np.ndarray]] = deque()  # name scores of scored frames not yet final
        self._current_names: np.ndarray | None = None
        self._run: dict | None = None

    @property
    def in_segment(self) -> bool:
        return self._segment is not None

    def add(self, frame_indices: np.ndarray, probabilities: np.ndarray,
            name_probabilities: np.ndarray | None = None) -> LiveUpdate:
        """One scored clip: ``frame_indices`` (``int [n]``, increasing, after every frame added before),
        ``probabilities`` (``float [n]``) and, from a name-grounding model, ``name_probabilities`` (``float [n, N]``).
        Returns what became final."""
        if self._segment is None:
            raise RuntimeError("start_segment before adding scores.")
        indices = np.asarray(frame_indices, dtype=np.int64).reshape(-1)
        scores = np.asarray(probabilities, dtype=np.float32).reshape(-1)
        if indices.shape != scores.shape:
            raise ValueError(f"Got {indices.size} frame indices but {scores.size} scores.")
        last = self._last_sample[0] if self._last_sample is not None else self._segment[0] - 1
        if indices.size and (indices[0] <= last or np.any(np.diff(indices) <= 0)):
            raise ValueError(f"Frame indices must increase past {last}, got {indices.tolist()}.")
        names = None if name_probabilities is None else np.asarray(name_probabilities, dtype=np.float32)
        for position, (index, score) in enumerate(zip(indices.tolist(), scores.tolist())):
            self._fill_to(index, np.float32(score))
            if names is not None:
                self._names.append((index, names[position]))
        return self._finalize(at_end=False)

    def end_segment(self, last_frame: int | None = None) -> LiveUpdate:
        """The segment ended after ``last_frame`` (the last decoded frame; default: the last scored one): the frames
        after the last scored one take its score, every score becomes final (the smoothing mirrored at the end, as
        at the end of a video) and an open event closes."""
        if self._segment is None:
            return LiveUpdate()
        update = LiveUpdate()
        if self._last_sample is not None:
            last_sample, score = self._last_sample
            last_frame = last_sample if last_frame is None else max(int(last_frame), last_sample)
            if last_frame > last_sample:
                filled = np.full(last_frame - last_sample, score, dtype=np.float32)
                # frames after the last scored one within the stride belong to it; beyond, to dropped clips
                scored = np.arange(1, last_frame - last_sample + 1) < self.options.stride
                self._append(filled, scored)
            update = self._finalize(at_end=True)
            self._close_run(update)
        self._segment = None
        return update

    # ------------------------------------------------------------------------------------------------ steps
    def _fill_to(self, index: int, score: np.float32) -> None:
        """Fill the frames after the last scored one up to ``index``: the nearest scored frame's score (ties to the
        earlier) within the stride, the last known score across frames of dropped clips."""
        if self._last_sample is None:  # the curve starts at the segment's first scored frame
            self._values_start = self._next_final = index
            values, scored = np.array([score], dtype=np.float32), np.ones(1, dtype=bool)
        else:
            previous, previous_score = self._last_sample
            frames = np.arange(previous + 1, index + 1)
            within_stride = index - previous <= self.options.stride
            nearer_previous = frames - previous <= index - frames if within_stride else frames < index
            values = np.where(nearer_previous, previous_score, score).astype(np.float32)
            scored = np.full(frames.size, within_stride)
            scored[-1] = True
        self._append(values, scored)
        self._last_sample = (index, score)

    def _append(self, values: np.ndarray, scored: np.ndarray) -> None:
        self._values = np.concatenate([self._values, values])
        self._scored = np.concatenate([self._scored, scored])

    def _finalize(self, at_end: bool) -> LiveUpdate:
        """Make final every frame whose smoothing window is complete (all of them at the end of the segment)."""
        filled_end = self._values_start + self._values.size - 1
        last_final = filled_end if at_end else filled_end - self.radius
        if last_final < self._next_final:
            return LiveUpdate()
        first = self._next_final
        offset = first - self._values_start
        count = last_final - first + 1
        if self.radius:
            # the window reaches `radius` frames to each side (or the segment's edges, mirrored as offline)
            left = max(0, offset - self.radius)
            right = min(self._values.size, offset + count + self.radius)
            smoothed = smooth_scores(self._values[left:right], self.options.smoothing_sigma).astype(np.float32)
            final = smoothed[offset - left: offset - left + count]
        else:
            final = self._values[offset: offset + count].copy()
        frames = np.arange(first, last_final + 1, dtype=np.int64)
        update = LiveUpdate(frames=frames, times_s=self._times(frames), scores=final,
                            anomalous=threshold_scores(final, self.options.threshold),
                            scored=self._scored[offset: offset + count].copy())
        self._track_events(update)
        self._next_final = last_final + 1
        keep_from = max(0, self._next_final - self.radius - self._values_start)  # left context of later windows
        self._values, self._scored = self._values[keep_from:], self._scored[keep_from:]
        self._values_start += keep_from
        return update

    def _times(self, frames: np.ndarray) -> np.ndarray:
        first, start_s = self._segment
        return (frames - first) / self.fps + start_s

    def _track_events(self, update: LiveUpdate) -> None:
        for frame, value, above in zip(update.frames.tolist(), update.scores.tolist(), update.anomalous.tolist()):
            while self._names and self._names[0][0] <= frame:
                self._current_names = self._names.popleft()[1]
                if self._run is not None and self._run["names"] is not None:
                    self._run["names"] = np.maximum(self._run["names"], self._current_names)
            if not above:
                self._close_run(update)
                continue
            run = self._run
            if run is None:
                names = None if self._current_names is None else self._current_names.copy()
                run = self._run = {"start": frame, "count": 0, "peak": value, "sum": 0.0, "names": names,
                                   "number": None}
            run["count"] += 1
            run["peak"] = max(run["peak"], value)
            run["sum"] += value
            run["end"] = frame
            if run["number"] is None and run["count"] >= self.options.min_event_frames:
                self.events_opened += 1
                run["number"] = self.events_opened
                update.opened.append(self._live_event(run))

    def _close_run(self, update: LiveUpdate) -> None:
        run, self._run = self._run, None
        if run is not None and run["number"] is not None:
            update.closed.append(self._live_event(run))

    def _live_event(self, run: dict) -> LiveEvent:
        start, end = run["start"], run["end"]
        times = self._times(np.array([start, end + 1]))
        event = Event(start_frame=start, end_frame=end, start_s=float(times[0]), end_s=float(times[1]),
                      peak_score=float(run["peak"]), mean_score=float(run["sum"] / run["count"]))
        names = None if run["names"] is None else run["names"].copy()
        return LiveEvent(number=run["number"], event=event, name_scores=names)


__all__ = ["LiveEvent", "LiveEventTracker", "LiveUpdate"]
