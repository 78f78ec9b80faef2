"""Live video sources for ``lavida watch``: stream URLs, capture devices and files still being written.

    source = LiveSource("rtsp://camera.local/stream", StreamOptions())
    source.check()                          # cheap checks (a missing device or file, an unknown URL scheme)
    connection = source.open()              # UserInputError: unreachable, not a video, no video stream...
    converter = FrameConverter(size=None)   # or a (height, width) -> (height, width) function, as VideoReader takes
    for frame in connection.frames(stop):   # av.VideoFrame, until the stream ends, drops or stop is set
        image = converter(frame)            # uint8 [H, W, 3] RGB, upright
    connection.end_reason                   # why the frames ended ("the stream ended", "no data for 5 s", ...)

A source is one of:

- a stream URL (``rtsp``, ``rtmp``, ``http(s)``, ``udp``, ``tcp``, ``srt``, ``rtp``... any protocol FFmpeg reads);
  one that drops is reopened by the caller (``LiveSource.reconnects``);
- a capture device: a path under ``/dev`` (``v4l2`` on Linux) or any input with ``StreamOptions.input_format`` (an
  FFmpeg device such as ``lavfi`` test sources);
- a file still being written (MPEG-TS, Matroska, a raw H.264 stream...; not mp4, whose index comes last): it is read
  from its start and followed as it grows; when it stops growing for ``read_timeout_s`` the source has ended.

Frames are decoded one at a time and converted to RGB at the size the caller asks for (FFmpeg's scaler, as
``VideoReader`` does), so a high-resolution camera never exists at full size in numpy. PyAV is imported when a source
is opened.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np

from .errors import UserInputError
from .live_options import StreamOptions
from .video_io import DOWNSCALE_INTERPOLATION, SizeFn, _av, _output_size, _quarter_turns, _stream_fps

logger = logging.getLogger(__name__)

SourceKind = Literal["stream", "device", "file"]
# URL schemes taken for network streams (FFmpeg's protocols); anything else with "://" is refused with this list.
STREAM_SCHEMES: tuple[str, ...] = ("rtsp", "rtsps", "rtmp", "rtmps", "rtmpt", "http", "https", "udp", "tcp", "srt",
                                   "rtp", "hls", "mmsh", "mmst", "tls", "unix")
_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://")
GROWING_FILE_POLL_S = 0.05  # how often a followed file is checked for new data


class SourceUnavailable(UserInputError):
    """A live source that cannot be opened; ``reason`` is the short cause (``Connection refused``) for the
    reconnection messages, the message says what to do."""

    def __init__(self, source: str, reason: str, hint: str):
        super().__init__(f"Cannot watch {source}: {reason}; {hint}.")
        self.reason = reason


def source_kind(source: str, options: StreamOptions | None = None) -> SourceKind:
    """``"stream"`` for a URL, ``"device"`` for a capture device (a path under ``/dev`` or an explicit input
    format), ``"file"`` otherwise."""
    options = options or StreamOptions()
    if _URL.match(source):
        return "stream"
    if options.input_format is not None or source.startswith("/dev/"):
        return "device"
    return "file"


class LiveSource:
    """A live video source (see the module docstring) and how to open it; ``open`` may be called again after a
    drop."""

    def __init__(self, source: str, options: StreamOptions | None = None):
        self.source = str(source)
        self.options = options or StreamOptions()
        self.kind: SourceKind = source_kind(self.source, self.options)

    @property
    def reconnects(self) -> bool:
        """A stream or device that ends is reopened; a followed file that stops growing has ended."""
        return self.kind != "file"

    def check(self) -> None:
        """Cheap checks before anything is loaded: a missing file or device, an unknown URL scheme.

        Raises:
            UserInputError: naming the source and what to do.
        """
        match = _URL.match(self.source)
        if match is not None:
            scheme = match["scheme"].lower()
            if scheme not in STREAM_SCHEMES:
                raise UserInputError(f"Cannot watch {self.source}: the URL scheme {scheme!r} is not a stream "
                                     f"protocol; use one of {', '.join(STREAM_SCHEMES)}.")
            return
        if self.kind == "device":
            if self.options.input_format is None and not os.path.exists(self.source):
                raise UserInputError(f"Capture device {self.source} does not exist: check that the camera is "
                                     "connected (ls /dev/video*) and give its path.")
            return
        path = Path(self.source)
        if not path.exists():
            raise UserInputError(f"Cannot watch {self.source}: no such file, and it is not a stream URL "
                                 f"({', '.join(s + '://' for s in STREAM_SCHEMES[:8])}...) or a capture device.")
        if path.is_dir():
            raise UserInputError(f"Cannot watch {self.source}: it is a folder; give a stream URL, a capture device "
                                 "or a video file being written.")
        if not (path.is_file() or stat.S_ISFIFO(path.stat().st_mode)):
            raise UserInputError(f"Cannot watch {self.source}: it is not a regular file.")

    def open(self, stop: threading.Event | None = None) -> LiveConnection:
        """Open the source and its first video stream (blocks up to ``open_timeout_s`` for an unreachable stream).

        Raises:
            UserInputError: unreachable, refused, timed out, not a video FFmpeg reads, no video stream, no such
                device (one line naming the source and what to do).
        """
        self.check()
        av = _av()
        options = self.options
        ffmpeg_options = options.ffmpeg_options()
        kwargs: dict[str, object] = {"options": ffmpeg_options}
        if options.input_format is not None:
            kwargs["format"] = options.input_format
        elif self.kind == "device":
            kwargs["format"] = "v4l2"
        if ffmpeg_options.get("rtsp_flags") == "listen":
            # RTSP as a server waiting for a sender: FFmpeg's own listen timeout (PyAV's timeout breaks listen mode)
            ffmpeg_options.setdefault("listen_timeout", str(max(1, round(options.open_timeout_s))))
        else:
            kwargs["timeout"] = (options.open_timeout_s, options.read_timeout_s)
        growing = GrowingFile(self.source, stall_s=options.read_timeout_s, stop=stop) if self.kind == "file" else None
        try:
            container = self._open_container(av, growing or self.source, kwargs)
        except BaseException:
            if growing is not None:
                growing.close()
            raise
        return LiveConnection(self, container, growing)

    def _open_container(self, av, target: object, kwargs: dict[str, object]):
        """``av.open`` with its errors as one-line ``UserInputError``s; the container has a video stream."""
        options = self.options
        try:
            container = av.open(target, mode="r", **kwargs)
        except av.ExitError:
            raise SourceUnavailable(self.source, f"no answer within {options.open_timeout_s:g} s (--open-timeout-s)",
                                    self._hint()) from None
        except (av.InvalidDataError, av.PatchWelcomeError, av.DecoderNotFoundError, av.DemuxerNotFoundError):
            raise SourceUnavailable(self.source, "it is not a video stream FFmpeg can read",
                                    "give a stream that carries video (RTSP, HTTP, UDP or TCP with MPEG-TS...)") \
                from None
        except (av.FFmpegError, OSError) as error:
            raise SourceUnavailable(self.source, _reason(error), self._hint()) from None
        if not container.streams.video:
            container.close()
            raise SourceUnavailable(self.source, "it carries no video stream (audio or data only)",
                                    "give a source with video")
        return container

    def _hint(self) -> str:
        if self.kind == "device":
            return "check that the device exists and no other program holds it"
        if self.kind == "file":
            return "check that it is a video file being written (MPEG-TS, Matroska...)"
        return "check the address and that the stream is running and reachable from here"


def _reason(error: BaseException) -> str:
    """The short reason of an FFmpeg or OS error (``Connection refused``), without the repeated path."""
    text = getattr(error, "strerror", None) or str(error) or type(error).__name__
    return str(text).rstrip(".")


class LiveConnection:
    """One open connection to a ``LiveSource``: its video stream's frames, until it ends, drops or is stopped."""

    def __init__(self, source: LiveSource, container, growing: GrowingFile | None = None):
        self.source = source
        self.container = container
        self.stream = container.streams.video[0]
        self.fps = _stream_fps(self.stream)
        self.end_reason: str | None = None
        self.decode_errors = 0
        self._growing = growing

    def frames(self, stop: threading.Event | None = None) -> Iterator:
        """Decoded ``av.VideoFrame``s, in order, until the stream ends or drops (``end_reason`` says which) or
        ``stop`` is set; the connection is closed at the end. Packets the decoder rejects are skipped (counted in
        ``decode_errors``)."""
        av = _av()
        self.end_reason = "the stream ended"
        try:
            for packet in self.container.demux(self.stream):
                if stop is not None and stop.is_set():
                    self.end_reason = "stopped"
                    return
                try:
                    decoded = packet.decode()
                except av.FFmpegError:
                    self.decode_errors += 1
                    continue
                yield from decoded
            if self._growing is not None:
                self.end_reason = self._growing.end_reason or "the file ended"
        except av.ExitError:
            self.end_reason = f"no data for {self.source.options.read_timeout_s:g} s"
        except (av.FFmpegError, OSError) as error:
            self.end_reason = _reason(error)
        finally:
            self.close()

    def close(self) -> None:
        if self.container is not None:
            self.container.close()
            self.container = None
        if self._growing is not None:
            self._growing.close()


class GrowingFile:
    """A file read as it is being written: ``read`` waits for new data, and answers end of file once the file has
    not grown for ``stall_s`` seconds or ``stop`` is set. It has no ``seek``, so FFmpeg reads it as a stream."""

    def __init__(self, path: str | os.PathLike, stall_s: float, stop: threading.Event | None = None):
        self._handle = open(path, "rb")
        self.stall_s = stall_s
        self.stop = stop
        self.end_reason: str | None = None

    def read(self, size: int = -1) -> bytes:
        if self.end_reason is not None:
            return b""
        waited_since = time.monotonic()
        while True:
            data = self._handle.read(size)
            if data:
                return data
            if self.stop is not None and self.stop.is_set():
                self.end_reason = "stopped"
                return b""
            if time.monotonic() - waited_since >= self.stall_s:
                self.end_reason = f"the file stopped growing for {self.stall_s:g} s"
                return b""
            time.sleep(GROWING_FILE_POLL_S)

    def close(self) -> None:
        self._handle.close()


class FrameConverter:
    """``av.VideoFrame`` -> ``uint8 [H, W, 3]`` RGB, upright (the container's rotation), at the size fixed by the
    first frame: ``size(height, width)`` of its upright size, or that size itself. FFmpeg's scaler converts each
    frame straight to it (area averaging when shrinking), as ``VideoReader.frames`` does. ``reset`` before the
    frames of another connection."""

    def __init__(self, size: SizeFn | None = None, name: str = "the stream"):
        self.size = size
        self.name = name
        self.reset()

    def reset(self) -> None:
        self._convert: dict[str, object] | None = None
        self._turns = 0
        self.shape: tuple[int, int] | None = None  # (height, width) handed out

    def __call__(self, frame) -> np.ndarray:
        if self._convert is None:
            self._configure(frame)
        image = frame.to_ndarray(format="rgb24", **self._convert)
        if self._turns:
            image = np.ascontiguousarray(np.rot90(image, self._turns))
        return image

    def _configure(self, frame) -> None:
        self._turns = _quarter_turns(frame.rotation)
        upright = (frame.width, frame.height) if self._turns % 2 else (frame.height, frame.width)
        height, width = _output_size(self.size, upright[0], upright[1], self.name)
        coded = (width, height) if self._turns % 2 else (height, width)
        convert: dict[str, object] = {"width": coded[1], "height": coded[0]}
        if height * width < upright[0] * upright[1]:
            convert["interpolation"] = DOWNSCALE_INTERPOLATION
        self._convert = convert
        self.shape = (height, width)


def fit_within(max_side: int) -> SizeFn:
    """A ``SizeFn`` shrinking a frame, aspect kept, so its longer side is at most ``max_side`` (even sides, as
    H.264 wants; never enlarged)."""

    def size(height: int, width: int) -> tuple[int, int]:
        scale = min(1.0, max_side / max(height, width))
        return max(2, int(height * scale) // 2 * 2), max(2, int(width * scale) // 2 * 2)

    return size


__all__ = ["GROWING_FILE_POLL_S", "STREAM_SCHEMES", "FrameConverter", "GrowingFile", "LiveConnection", "LiveSource",
           "SourceKind", "SourceUnavailable", "fit_within", "source_kind"]
