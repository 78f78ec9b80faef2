"""Short videos of the events of a live stream (``lavida watch``): a ring buffer of the recent frames and, per event,
an encoder thread writing the frames from a little before the event to a little after it.

    recorder = EventClipRecorder(folder, fps=25.0, pre_frames=50, post_frames=50, history_frames=500)
    recorder.push(index, image)                  # every decoded frame, uint8 [H, W, 3] (the decoding thread)
    path = recorder.start("event-0001", start_frame=120)       # an event opened: its clip begins 50 frames earlier
    recorder.stop(end_frame=180, on_done=callback)             # it closed: the clip ends 50 frames after
    recorder.close()                             # stop now: the clip in progress ends with the frames it has

An event is known only once its frames are scored, some time after they arrived, so the ring keeps
``pre_frames + history_frames`` frames: a clip starts ``pre_frames`` before its event as long as the event was
found within ``history_frames`` of its start (else with the oldest frame kept). The ring is allocated, and its memory
taken, when the first frame arrives, so memory does not creep up as the stream goes on. One clip is written at a
time: an event that opens while the previous clip still records its frames after the end cuts them short there.

Each clip is H.264 written by ``write_video`` (a temporary file renamed into place): the file is complete once it
has its name, and ``on_done`` is called only then (with None if it could not be written).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .video_io import write_video

logger = logging.getLogger(__name__)

CLIP_SUFFIX = ".mp4"
CLIP_CRF = 23
CLIP_PRESET = "veryfast"
_PUT_RETRY_S = 0.5  # how often a full clip queue is retried while its encoder still runs

DoneFn = Callable[[Path | None], None]


class _Recording:
    """One clip being encoded: frames go through a bounded queue to an encoder thread."""

    def __init__(self, path: Path, first_frame: int, fps: float, queue_frames: int):
        self.path = path
        self.first_frame = first_frame
        self.end_frame: int | None = None  # the last frame the clip takes, once its event closed
        self.on_done: DoneFn | None = None
        self.frames_lost = 0
        self.finished = False
        self.written: Path | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=queue_frames)
        self._thread = threading.Thread(target=self._encode, args=(fps,), name=f"clip {path.name}", daemon=True)
        self._thread.start()

    def offer(self, index: int, image: np.ndarray) -> None:
        """Frame ``index`` for the clip (copied); frames past its end are ignored, and its last one finishes it."""
        if self.finished or index < self.first_frame or (self.end_frame is not None and index > self.end_frame):
            return
        try:
            self._queue.put_nowait(image.copy())
        except queue.Full:  # the encoder fell behind: this frame is left out of the clip, the stream goes on
            self.frames_lost += 1
        if self.end_frame is not None and index >= self.end_frame:
            self.finish()

    def finish(self) -> None:
        """No more frames: the encoder writes what it has and renames the file into place."""
        if self.finished:
            return
        self.finished = True
        while self._thread.is_alive():
            try:
                self._queue.put(None, timeout=_PUT_RETRY_S)
                return
            except queue.Full:
                continue

    def join(self) -> None:
        self._thread.join()

    def _frames(self):
        while True:
            image = self._queue.get()
            if image is None:
                return
            yield image

    def _encode(self, fps: float) -> None:
        try:
            write_video(self.path, self._frames(), fps, crf=CLIP_CRF, preset=CLIP_PRESET)
            self.written = self.path
        except Exception as error:  # noqa: BLE001 - a clip that cannot be written must not stop the watch
            logger.warning("Event clip %s could not be written: %s", self.path.name, error)
            while not self.finished or not self._queue.empty():  # drain, so offer/finish never block
                try:
                    if self._queue.get(timeout=_PUT_RETRY_S) is None:
                        break
                except queue.Empty:
                    continue
        if self.frames_lost:
            logger.warning("Event clip %s misses %d frame(s): its encoder fell behind.", self.path.name,
                           self.frames_lost)
        callback = self.on_done
        if callback is not None:
            callback(self.written)


class EventClipRecorder:
    """Event clips from a ring buffer of recent frames (see the module docstring). ``push`` is called from the
    decoding thread, ``start``/``stop``/``close`` from the scoring thread."""

    def __init__(self, folder: str | Path, fps: float, pre_frames: int, post_frames: int, history_frames: int):
        self.folder = Path(folder)
        self.fps = float(fps)
        self.pre_frames = max(0, int(pre_frames))
        self.post_frames = max(0, int(post_frames))
        self.capacity = self.pre_frames + max(0, int(history_frames)) + 1
        self._lock = threading.Lock()
        self._ring: np.ndarray | None = None  # (capacity, H, W, 3)
        self._ring_index = np.full(self.capacity, -1, dtype=np.int64)
        self._newest = -1
        self._recording: _Recording | None = None
        self._done: list[_Recording] = []

    def push(self, index: int, image: np.ndarray) -> None:
        """The decoded frame ``index`` (consecutive indices; ``uint8 [H, W, 3]``, the clips' size)."""
        with self._lock:
            if self._ring is None or self._ring.shape[1:] != image.shape:
                self._allocate(image.shape)
            slot = index % self.capacity
            self._ring[slot] = image
            self._ring_index[slot] = index
            self._newest = index
            if self._recording is not None:
                self._recording.offer(index, image)

    def _allocate(self, shape: tuple[int, ...]) -> None:
        """A ring for frames of ``shape``, its pages touched now (a fixed footprint from the first frame on); a clip
        in progress ends, since one clip has one frame size."""
        self._finish_current()
        ring = np.empty((self.capacity, *shape), dtype=np.uint8)
        ring.fill(0)
        self._ring = ring
        self._ring_index.fill(-1)

    def start(self, name: str, start_frame: int) -> Path:
        """An event starting at ``start_frame`` opened: record ``folder/name.mp4`` from ``pre_frames`` before it.
        Returns the clip's path (it exists once ``on_done`` is called)."""
        path = self.folder / f"{name}{CLIP_SUFFIX}"
        self.folder.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self._finish_current()
            recording = _Recording(path, int(start_frame) - self.pre_frames, self.fps, queue_frames=self.capacity)
            if self._ring is not None:
                oldest = max(recording.first_frame, self._newest - self.capacity + 1, 0)
                for index in range(oldest, self._newest + 1):
                    slot = index % self.capacity
                    if self._ring_index[slot] == index:
                        recording.offer(index, self._ring[slot])
            self._recording = recording
        return path

    def stop(self, end_frame: int, on_done: DoneFn | None = None) -> None:
        """The event closed at ``end_frame``: the clip ends ``post_frames`` later; ``on_done(path or None)`` runs in
        the encoder thread once the file is complete."""
        with self._lock:
            recording = self._recording
            if recording is None:
                if on_done is not None:
                    on_done(None)
                return
            recording.on_done = on_done
            recording.end_frame = int(end_frame) + self.post_frames
            if self._newest >= recording.end_frame:
                self._finish_current()

    def cut(self) -> None:
        """The connection ended: a clip whose event has closed ends now, without waiting for frames after it that
        would come from another connection."""
        with self._lock:
            if self._recording is not None and self._recording.end_frame is not None:
                self._finish_current()

    def close(self) -> None:
        """End the clip in progress with the frames it has and wait until every clip is written."""
        with self._lock:
            self._finish_current()
            done, self._done = self._done, []
        for recording in done:
            recording.join()

    def _finish_current(self) -> None:
        recording, self._recording = self._recording, None
        if recording is not None:
            recording.finish()
            self._done = [item for item in self._done if item._thread.is_alive()] + [recording]


__all__ = ["CLIP_SUFFIX", "EventClipRecorder"]
