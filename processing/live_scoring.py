"""``lavida watch``: a live source scored clip by clip as it arrives, with events, clips, scores and a status.

    watcher = LiveWatcher(detector, LiveSource(url, StreamOptions()), ["fighting", "fire"], DetectionOptions(),
                          WatchOptions(max_seconds=60), out_dir="watch")
    summary = watcher.run(stop_event)      # returns when stop_event is set, max_seconds pass or the source ends

Three kinds of threads share the work, so that a slow model never makes the stream back up:

- the decoding thread opens the source (and reopens it, with a growing delay, when it drops), converts each frame to
  the size the model needs (``LavidaProcessor.decoding_size``, as ``lavida detect`` decodes) and to the event clips'
  size (``EventClipRecorder``'s ring buffer gets every frame), groups every ``stride``-th frame into clips of
  ``clip_length`` (``make_clip``, as ``iter_clips`` does) and puts them on a ``ClipQueue``. The queue is bounded:
  when it is full, the oldest waiting clip is dropped and its frames are counted, so the model always gets recent
  frames and the delay from a frame to its score stays bounded however slow the model is;
- the calling thread scores the clips with the detection pipeline (``VideoAnomalyDetectionPipeline.score_clips``:
  the processor and model calls ``lavida detect`` makes per clip), turns the scores into events
  (``LiveEventTracker``: the filling, smoothing and event rule of ``post_process_video_scores``) and writes
  ``events.jsonl``, ``scores.csv`` and the status (``watch_outputs``);
- an encoder thread per event clip and a webhook thread.

Nothing kept grows with the stream: the queue, the ring buffer and the tracker are bounded, and the files are
appended to and flushed as the watch goes. On stop (``stop_event``, ``max_seconds``, the end of a followed file) an
open event closes at its last scored frame, its clip ends with the frames it has, and every file is complete.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from .event_clips import EventClipRecorder
from .live_events import LiveEventTracker, LiveUpdate
from .live_options import WatchOptions
from .options import DetectionOptions
from .stream_source import FrameConverter, LiveConnection, LiveSource, SourceUnavailable, fit_within
from .video_io import Clip, make_clip
from .watch_outputs import CLIPS_DIR, EVENTS_JSONL, WATCH_SCORES_CSV, EventLog, ScoresCsv, WebhookPoster, event_record

logger = logging.getLogger(__name__)

QUEUE_POLL_S = 0.2  # the scoring loop checks the stop conditions this often while it waits for clips
TERMINAL_STATUS_INTERVAL_S = 0.5
RATE_WINDOW_S = 10.0  # frames/s are measured over this many recent seconds


@dataclass(frozen=True)
class Segment:
    """One connection's frames: ``number`` (1, 2, ...), its first frame's index, when it started (seconds from the
    start of the watch) and its frame rate."""

    number: int
    first_frame: int
    start_s: float
    fps: float


@dataclass
class LiveClip:
    """A clip of ``segment`` for the model."""

    clip: Clip
    segment: Segment


@dataclass(frozen=True)
class SegmentEnd:
    """The connection of ``segment`` ended after frame ``last_frame``."""

    segment: Segment
    last_frame: int


class ClipQueue:
    """The clips waiting for the model, at most ``capacity`` of them: when a clip comes to a full queue, the oldest
    waiting clip is dropped (its real frames are counted in ``dropped_frames``). ``SegmentEnd`` markers are never
    dropped and do not count."""

    def __init__(self, capacity: int):
        self.capacity = int(capacity)
        self.dropped_clips = 0
        self.dropped_frames = 0
        self._items: deque[LiveClip | SegmentEnd] = deque()
        self._clips = 0
        self._condition = threading.Condition()

    def put(self, item: LiveClip | SegmentEnd) -> None:
        with self._condition:
            if isinstance(item, LiveClip):
                while self._clips >= self.capacity:
                    self._drop_oldest_clip()
                self._clips += 1
            self._items.append(item)
            self._condition.notify()

    def _drop_oldest_clip(self) -> None:
        for position, waiting in enumerate(self._items):
            if isinstance(waiting, LiveClip):
                del self._items[position]
                self._clips -= 1
                self.dropped_clips += 1
                self.dropped_frames += waiting.clip.num_real
                return

    def get(self, timeout: float) -> LiveClip | SegmentEnd | None:
        """The oldest waiting item, or None after ``timeout`` seconds without one."""
        with self._condition:
            if not self._items and not self._condition.wait_for(lambda: bool(self._items), timeout=timeout):
                return None
            item = self._items.popleft()
            if isinstance(item, LiveClip):
                self._clips -= 1
            return item

    def __len__(self) -> int:
        with self._condition:
            return len(self._items)


@dataclass
class WatchStatus:
    """The numbers of the status line: frames decoded and scored (and their rates over the last seconds), frames
    dropped, the latest final score, events so far, reconnections and whether the source is connected."""

    elapsed_s: float = 0.0
    decoded_frames: int = 0
    decoded_fps: float = 0.0
    scored_frames: int = 0
    scored_fps: float = 0.0
    dropped_frames: int = 0
    score: float | None = None
    events: int = 0
    reconnects: int = 0
    connected: bool = False
    end_reason: str | None = None


class _Rate:
    """Frames per second over the last ``RATE_WINDOW_S`` seconds (a few samples, not one per frame)."""

    def __init__(self):
        self._samples: deque[tuple[float, int]] = deque()

    def update(self, now: float, count: int) -> float:
        self._samples.append((now, count))
        while len(self._samples) > 2 and now - self._samples[1][0] >= RATE_WINDOW_S:
            self._samples.popleft()
        start, first = self._samples[0]
        return (count - first) / (now - start) if now > start else 0.0


class LiveWatcher:
    """Score a ``LiveSource`` as it arrives (see the module docstring).

    Args:
        detector: a ``VideoAnomalyDetectionPipeline`` (``load_detection_pipeline``).
        source: what to watch.
        names: the anomaly names.
        options: the detection settings (``threshold``, ``min_event_frames``, ``smoothing_sigma``, ``stride``,
            ``llm_frame_pixels``; masks are not used).
        watch: queueing, clips, status and stop settings.
        out_dir: the output folder (created once the source has opened).
        webhook: a URL each event line is POSTed to, or None.
        report: called with each message line (connection lost, reconnected, event opened...).
        status: called with a ``WatchStatus`` about twice a second.
    """

    def __init__(self, detector, source: LiveSource, names: Sequence[str], options: DetectionOptions,
                 watch: WatchOptions, out_dir: str | Path, webhook: str | None = None,
                 report: Callable[[str], None] | None = None, status: Callable[[WatchStatus], None] | None = None):
        self.detector = detector
        self.source = source
        self.names = list(names)
        self.options = options
        self.watch = watch
        self.out_dir = Path(out_dir)
        self.webhook_url = webhook
        self.report = report or (lambda message: logger.warning("%s", message))
        self.status = status
        self.queue = ClipQueue(watch.queue_clips)
        self.state = WatchStatus()
        self._decoder_error: BaseException | None = None

    # ------------------------------------------------------------------------------------------------ run
    def run(self, stop: threading.Event | None = None, connection: LiveConnection | None = None) -> WatchStatus:
        """Watch until ``stop`` is set, ``max_seconds`` pass or the source ends; returns the final status.

        Args:
            stop: set it (from a signal handler, another thread) to stop cleanly.
            connection: the source already opened (``source.open()``, e.g. before the model was loaded, so a bad
                source is reported at once); None: opened here.

        Raises:
            UserInputError: the source cannot be opened (nothing is written then).
        """
        stop = stop or threading.Event()
        connection = connection or self.source.open(stop)
        self._warm_up(connection)
        started_unix, self._t0 = time.time(), time.monotonic()
        self.run_id = datetime.datetime.fromtimestamp(started_unix, tz=datetime.timezone.utc).strftime(
            "%Y%m%dT%H%M%SZ")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        fps = connection.fps
        self.recorder = EventClipRecorder(self.out_dir / CLIPS_DIR, fps, pre_frames=round(self.watch.pre_event_s * fps),
                                          post_frames=round(self.watch.post_event_s * fps),
                                          history_frames=round(self.watch.history_s * fps))
        webhook = (WebhookPoster(self.webhook_url, self.watch.webhook_timeout_s, self.report)
                   if self.webhook_url else None)
        self.events = EventLog(self.out_dir / EVENTS_JSONL, webhook)
        self.scores = ScoresCsv(self.out_dir / WATCH_SCORES_CSV, started_unix)
        self.started_unix = started_unix
        self.tracker = LiveEventTracker(fps, self.options)
        self._segment: Segment | None = None
        decoder = threading.Thread(target=self._decode, args=(connection, stop), name="decoder", daemon=True)
        self.state.connected = True
        decoder.start()
        rates = (_Rate(), _Rate())
        last_status = 0.0
        try:
            while True:
                if self._decoder_error is not None:
                    raise self._decoder_error
                elapsed = time.monotonic() - self._t0
                if self.watch.max_seconds is not None and elapsed >= self.watch.max_seconds:
                    self.state.end_reason = f"{self.watch.max_seconds:g} s elapsed (--max-seconds)"
                    break
                if stop.is_set():
                    self.state.end_reason = self.state.end_reason or "stopped"
                    break
                item = self.queue.get(timeout=QUEUE_POLL_S)
                if item is None and not decoder.is_alive() and not len(self.queue):
                    self.state.end_reason = self.state.end_reason or ("stopped" if stop.is_set() else
                                                                      "the source ended")
                    break
                if item is not None:
                    self._handle(item)
                now = time.monotonic()
                if self.status is not None and now - last_status >= TERMINAL_STATUS_INTERVAL_S:
                    last_status = now
                    self._refresh_state(now, rates)
                    self.status(self.state)
        finally:
            stop.set()
            self._close(decoder)
        self._refresh_state(time.monotonic(), rates)
        return self.state

    def _warm_up(self, connection: LiveConnection) -> None:
        """Score one blank clip of the stream's size before its frames are read: the model's first call is the
        slowest (lazy initialisation), and it should not delay the first real clip."""
        processor = self.detector.processor
        context = connection.stream.codec_context
        if not (context.height and context.width):  # a size known only from the first frame: nothing to warm up at
            return
        height, width = processor.decoding_size(context.height, context.width,
                                                llm_frame_pixels=self.options.llm_frame_pixels)
        blank = make_clip([np.zeros((height, width, 3), dtype=np.uint8)], [0], processor.clip_length)
        for _ in self.detector.score_clips([blank], self.names, **self._score_options()):
            pass

    def _refresh_state(self, now: float, rates: tuple[_Rate, _Rate]) -> None:
        state = self.state
        state.elapsed_s = now - self._t0
        state.dropped_frames = self.queue.dropped_frames
        state.decoded_fps = rates[0].update(now, state.decoded_frames)
        state.scored_fps = rates[1].update(now, state.scored_frames)
        state.events = self.tracker.events_opened

    def _close(self, decoder: threading.Thread) -> None:
        """Close the open event at its last scored frame, finish its clip, and close every file."""
        try:
            self._apply(self.tracker.end_segment())
        finally:
            self.recorder.close()  # the clip in progress ends now; close lines are written as clips complete
            decoder.join(timeout=self.source.options.read_timeout_s + 1.0)
            self.scores.close()
            self.events.close()
            if self.events.webhook is not None:
                self.events.webhook.close(wait_s=self.watch.webhook_timeout_s * 2)

    # ------------------------------------------------------------------------------------------------ scoring
    def _handle(self, item: LiveClip | SegmentEnd) -> None:
        if isinstance(item, SegmentEnd):
            if self._segment is not None and item.segment.number == self._segment.number:
                self._apply(self.tracker.end_segment(item.last_frame))
                self._segment = None
            self.recorder.cut()
            return
        if self._segment is None or item.segment.number != self._segment.number:
            if self._segment is not None:  # the previous connection's last clips and marker were dropped
                self._apply(self.tracker.end_segment())
            self._segment = item.segment
            self.tracker.start_segment(item.segment.first_frame, item.segment.start_s, item.segment.fps)
        scored = next(iter(self.detector.score_clips([item.clip], self.names, **self._score_options())))
        self.state.scored_frames += len(scored.frame_indices)
        self._apply(self.tracker.add(scored.frame_indices, scored.probabilities, scored.name_probabilities))

    def _score_options(self) -> dict:
        return {"stride": self.options.stride, "llm_frame_pixels": self.options.llm_frame_pixels}

    def _apply(self, update: LiveUpdate) -> None:
        """Write what became final: the scores, then the events in the order they happened."""
        self.scores.append(update)
        if update.scores.size:
            self.state.score = float(update.scores[-1])
        changes = [(live.number, False, live) for live in update.opened]
        changes += [(live.number, True, live) for live in update.closed]
        for _, closing, live in sorted(changes, key=lambda change: change[:2]):  # an event opens before it closes
            event_id = f"{self.run_id}-{live.number:04d}"
            if not closing:
                self.recorder.start(event_id, live.event.start_frame)
                self.events.write(self._record("open", event_id, live))
                self.report(f"event {event_id} opened at {live.event.start_s:.1f} s (frame "
                            f"{live.event.start_frame}, score {live.event.peak_score:.2f})")
            else:
                self.recorder.stop(live.event.end_frame, on_done=partial(self._closed, event_id, live))

    def _closed(self, event_id: str, live, clip: Path | None) -> None:
        """An event's clip is complete (or could not be written): its close line."""
        relative = None if clip is None else clip.relative_to(self.out_dir).as_posix()
        self.events.write(self._record("close", event_id, live, relative))
        self.report(f"event {event_id} closed at {live.event.end_s:.1f} s (peak {live.event.peak_score:.2f})"
                    + (f" -> {relative}" if relative else ""))

    def _record(self, kind: str, event_id: str, live, clip: str | None = None) -> dict:
        return event_record(kind, event_id, live, self.names, self.started_unix, self.options.threshold, clip)

    # ------------------------------------------------------------------------------------------------ decoding
    def _decode(self, connection: LiveConnection, stop: threading.Event) -> None:
        """The decoding thread: frames -> ring buffer and clips, reconnecting when the stream drops."""
        try:
            processor = self.detector.processor
            model_size = partial(processor.decoding_size, llm_frame_pixels=self.options.llm_frame_pixels)
            clip_length, stride = processor.clip_length, self.options.stride
            index, number = 0, 0
            while connection is not None:
                number += 1
                segment = Segment(number, index, time.monotonic() - self._t0, connection.fps)
                to_model = FrameConverter(model_size, self.source.source)
                to_clip = FrameConverter(fit_within(self.watch.clip_max_side), self.source.source)
                images: list[np.ndarray] = []
                indices: list[int] = []
                for frame in connection.frames(stop):
                    image = to_model(frame)
                    self.recorder.push(index, to_clip(frame))
                    if (index - segment.first_frame) % stride == 0:
                        images.append(image)
                        indices.append(index)
                        if len(images) == clip_length:
                            self.queue.put(LiveClip(make_clip(images, indices, clip_length), segment))
                            images, indices = [], []
                    index += 1
                    self.state.decoded_frames += 1
                if images:  # the connection's last clip, completed as a video's last clip is
                    self.queue.put(LiveClip(make_clip(images, indices, clip_length), segment))
                if index > segment.first_frame:
                    self.queue.put(SegmentEnd(segment, index - 1))
                self.state.connected = False
                connection = self._reconnect(connection.end_reason, stop)
        except BaseException as error:  # noqa: BLE001 - handed to the scoring thread, which raises it
            self._decoder_error = error

    def _reconnect(self, reason: str | None, stop: threading.Event) -> LiveConnection | None:
        """Reopen the source after it ended (waiting longer after each failed attempt); None when the watch stops
        or the source does not reconnect (a followed file that stopped growing)."""
        if stop.is_set():
            return None
        if not self.source.reconnects:
            self.state.end_reason = f"{self.source.source}: {reason}"
            self.report(f"{self.source.source}: {reason}; the watch ends")
            return None
        delay = self.source.options.reconnect_delay_s
        self.report(f"{self.source.source}: stream lost ({reason}); reconnecting in {delay:g} s")
        while not stop.wait(delay):
            try:
                connection = self.source.open(stop)
            except SourceUnavailable as error:
                delay = min(delay * 2, self.source.options.max_reconnect_delay_s)
                self.report(f"{self.source.source}: reconnection failed ({error.reason}); retrying in {delay:g} s")
                continue
            self.state.reconnects += 1
            self.state.connected = True
            self.report(f"{self.source.source}: reconnected")
            return connection
        return None


__all__ = ["ClipQueue", "LiveClip", "LiveWatcher", "Segment", "SegmentEnd", "WatchStatus"]
