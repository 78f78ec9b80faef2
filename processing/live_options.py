"""The settings of ``lavida watch`` besides the detection's own (``DetectionOptions``): how a live source is opened
and reconnected (``StreamOptions``) and how the watch queues clips, records events and reports (``WatchOptions``).

Both are validated once, here, and are the source of the ``lavida watch`` flags (``lavida.commands.arguments``); this
module imports only the standard library, so ``lavida watch --help`` loads nothing heavy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from numbers import Real

from .errors import UserInputError
from .options import check_positive_int


def _positive_seconds(name: str, value: float, allow_zero: bool = False) -> float:
    """``value`` as a float, or ``UserInputError`` naming ``name`` unless it is a finite number > 0 (>= 0)."""
    good = (not isinstance(value, bool) and isinstance(value, Real) and math.isfinite(value)
            and (value >= 0 if allow_zero else value > 0))
    if not good:
        bound = ">= 0" if allow_zero else "> 0"
        raise UserInputError(f"{name} must be a number of seconds {bound}, got {value!r}.")
    return float(value)


def _positive_int(name: str, value: int) -> int:
    try:
        return check_positive_int(name, value)
    except ValueError as error:
        raise UserInputError(str(error)) from None


@dataclass(frozen=True)
class StreamOptions:
    """How a live source is opened, read and reopened.

    Attributes:
        open_timeout_s: a source that gives no answer for this long when opened is unreachable.
        read_timeout_s: a stream that sends nothing for this long has dropped (and is reopened); a growing file that
            stops growing for this long has ended.
        reconnect_delay_s: the first wait before reopening a dropped stream; each failed attempt doubles it...
        max_reconnect_delay_s: ... up to this.
        input_format: FFmpeg's name of the input format or device (``v4l2``, ``lavfi``, ``mpegts``...), as
            ``ffmpeg -f``; None: guessed (``v4l2`` for ``/dev/video*``).
        input_options: FFmpeg options of the input as ``KEY=VALUE`` texts (``rtsp_transport=tcp``,
            ``rtsp_flags=listen``, ``video_size=1280x720``...).
    """

    open_timeout_s: float = field(default=10.0, metadata={
        "help": "seconds to wait for a source to answer when it is opened"})
    read_timeout_s: float = field(default=5.0, metadata={
        "help": "seconds without data after which a stream counts as dropped (a growing file as finished)"})
    reconnect_delay_s: float = field(default=1.0, metadata={
        "help": "first wait before reopening a dropped stream, doubled after each failed attempt"})
    max_reconnect_delay_s: float = field(default=30.0, metadata={"help": "longest wait between reconnection attempts"})
    input_format: str | None = field(default=None, metadata={
        "help": "FFmpeg input format or device, as ffmpeg -f: v4l2, lavfi, mpegts... (default: guessed from the "
                "source)"})
    input_options: tuple[str, ...] = field(default=(), metadata={
        "help": "FFmpeg input option KEY=VALUE, e.g. rtsp_transport=tcp (repeatable)"})

    def __post_init__(self) -> None:
        for name in ("open_timeout_s", "read_timeout_s", "reconnect_delay_s", "max_reconnect_delay_s"):
            object.__setattr__(self, name, _positive_seconds(name, getattr(self, name)))
        options = tuple(self.input_options or ())
        for item in options:
            key, separator, _ = str(item).partition("=")
            if not key.strip() or not separator:
                raise UserInputError(f"Input option {item!r} is not KEY=VALUE: write it as e.g. "
                                     "--input-option rtsp_transport=tcp.")
        object.__setattr__(self, "input_options", options)

    def ffmpeg_options(self) -> dict[str, str]:
        """``input_options`` as the ``{key: value}`` dict PyAV takes."""
        return dict(item.split("=", 1) for item in self.input_options)


@dataclass(frozen=True)
class WatchOptions:
    """How ``lavida watch`` queues clips for the model, records the events and reports.

    Attributes:
        queue_clips: clips waiting for the model; when scoring falls behind, the oldest waiting clip is dropped (and
            its frames counted), so the delay between a frame and its score stays bounded.
        pre_event_s, post_event_s: seconds of video kept before an event's first frame and after its last in its clip.
        clip_max_side: the event clips' longest side in pixels (frames are shrunk to it, never enlarged).
        history_s: how far back, besides ``pre_event_s``, the recent frames are kept for the clips: an event is
            known only once its frames are scored, this long after they arrived at most (the memory of the ring
            buffer is ``(pre_event_s + history_s) x fps`` frames of at most ``clip_max_side`` px).
        status_interval_s: seconds between status lines when the output is not a terminal.
        max_seconds: stop after this many seconds (None: run until interrupted).
        webhook_timeout_s: seconds one webhook POST may take.
    """

    queue_clips: int = field(default=2, metadata={
        "help": "clips waiting for the model; when full, the oldest is dropped so the delay stays bounded"})
    pre_event_s: float = field(default=2.0, metadata={"help": "seconds of video before an event in its clip"})
    post_event_s: float = field(default=2.0, metadata={"help": "seconds of video after an event in its clip"})
    clip_max_side: int = field(default=320, metadata={"help": "longest side of the event clips in pixels"})
    history_s: float = field(default=20.0, metadata={
        "help": "seconds of recent frames kept besides the pre-event ones, to cover the scoring delay"})
    status_interval_s: float = field(default=10.0, metadata={
        "help": "seconds between status lines when stdout is not a terminal"})
    max_seconds: float | None = field(default=None, metadata={
        "help": "stop after this many seconds (default: run until stopped)"})
    webhook_timeout_s: float = field(default=5.0, metadata={"help": "seconds one webhook POST may take"})

    def __post_init__(self) -> None:
        object.__setattr__(self, "queue_clips", _positive_int("queue_clips", self.queue_clips))
        object.__setattr__(self, "clip_max_side", _positive_int("clip_max_side", self.clip_max_side))
        for name in ("pre_event_s", "post_event_s", "history_s"):
            object.__setattr__(self, name, _positive_seconds(name, getattr(self, name), allow_zero=True))
        for name in ("status_interval_s", "webhook_timeout_s"):
            object.__setattr__(self, name, _positive_seconds(name, getattr(self, name)))
        if self.max_seconds is not None:
            object.__setattr__(self, "max_seconds", _positive_seconds("max_seconds", self.max_seconds))


__all__ = ["StreamOptions", "WatchOptions"]
