"""Video reading and writing with PyAV (the FFmpeg bindings that ship their own codecs).

Reading streams: one ``VideoReader`` opens a video once and decodes it frame by frame, so memory stays flat however
long the video is, and the exact frame count is known when the pass ends (no counting pass first).

    reader = VideoReader("clip.mp4")
    reader.header.num_frames        # the container's estimate (progress bars); None when it declares none
    for index, image in reader.frames(stride=2):   # uint8 [H, W, 3] RGB, every 2nd decoded frame
        ...
    reader.info                     # exact VideoInfo (decoded count, fps, size, frame times...), after the pass

    for clip in iter_clips("clip.mp4", stride=2):   # 8 sampled frames at a time (one reader underneath)
        clip.frames        # uint8 [8, H, W, 3]
        clip.frame_indices # int64 [8], decoded-frame index of each sampled frame
        clip.real          # bool [8], False for the padding that completes the last clip

A source is a path, the bytes of a video file, a ``uint8 [F, H, W, 3]`` array or a list of ``uint8 [H, W, 3]`` frames
(at ``DEFAULT_ARRAY_FPS``), a ``FrameArray`` (frames with their fps) or a ``VideoReader`` not yet read. Anything a user
can get wrong (a missing or empty file, a file that is not a video, a video with fewer than two frames) raises
``UserInputError`` naming the input.

Frames come out upright and timed as the file says: a rotation the container asks for (the display matrix phones
write, in quarter turns; mirroring is not applied) is applied to every frame, and a stream whose presentation
timestamps are not evenly spaced (a variable frame rate) keeps its real frame times in ``VideoInfo.frame_times_s``.

Size: a reader hands frames out at their upright size, or at the size a ``size`` function picks from it (``frames``,
``iter_frames`` and ``iter_clips`` take one): FFmpeg's scaler then shrinks each frame as it is converted to RGB, so a
huge video never exists at full size in numpy (the pipeline asks for what its processor needs,
``LavidaProcessor.decoding_size``; the overlay for at most ``OutputOptions.overlay_max_side`` pixels).

Damaged videos: a file whose container cannot be opened (for instance an mp4 cut before its index) is an error. A file
that opens but has packets that do not decode (an mp4 cut after its index, a damaged stream) is read with those
packets skipped and a warning; ``probe_video`` and the readers use the same decoder, so their frame counts always
agree. Frame indices count decoded frames, so frames lost in the middle of a damaged file shift the indices of the
frames after them (not their times, which come from their timestamps).

Writing: ``write_video`` encodes H.264 into a temporary file and renames it into place, so a failed write leaves
nothing behind; given frame times it keeps them (a variable-frame-rate overlay stays in step with its source).

This file is copied next to saved checkpoints with the pipeline: its top-level imports are numpy and its siblings;
PyAV is imported when a file or bytes are read, a video is written or frame arrays are scaled.
"""

from __future__ import annotations

import io
import logging
import math
import os
import tempfile
import uuid
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np

from .errors import UserInputError
from .options import check_positive_int

logger = logging.getLogger(__name__)

DEFAULT_ARRAY_FPS = 25.0  # frame rate assumed for a bare frame array
DEFAULT_CLIP_LENGTH = 8  # sampled frames per clip, as the model is trained
MIN_FRAMES = 2
FALLBACK_FPS = 25.0  # used when a container declares no frame rate at all
SUPPORTED_FORMATS_HINT = "mp4 (H.264), webm, avi, mkv, mov or gif"
# File suffixes taken for videos when a folder is searched (any file given by name is simply tried with FFmpeg).
VIDEO_SUFFIXES: tuple[str, ...] = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".gif", ".mpg", ".mpeg", ".wmv",
                                   ".flv", ".ts")
# FFmpeg's scaler when frames are shrunk while decoding: area averaging keeps every source pixel's weight (no aliasing
# however large the reduction), as the processors' own antialiased resizes do.
DOWNSCALE_INTERPOLATION = "AREA"
TIMESTAMP_CLOCK = Fraction(1, 90000)  # time base of videos written with explicit frame times (MPEG's 90 kHz clock)

SizeFn = Callable[[int, int], tuple[int, int]]  # upright (height, width) -> (height, width) to hand frames out at


# ---------------------------------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------------------------------

_FORMAT_BY_SUFFIX = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}


def _temporary_sibling(path: Path) -> Path:
    """A hidden file next to ``path`` with the same suffix (FFmpeg picks the muxer from it)."""
    return path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.partial{path.suffix}")


def _frame_rate(fps: float) -> Fraction:
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive finite number, got {fps!r}.")
    # 1001 keeps NTSC rates exact (29.97 -> 30000/1001) while 25, 12.5 or 30 stay integral fractions.
    return Fraction(fps).limit_denominator(1001)


def write_video(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float, *, crf: int = 18,
                preset: str = "medium", odd_size: Literal["pad", "exact"] = "pad",
                frame_times_s: Sequence[float] | np.ndarray | None = None, x264_params: str | None = None) -> None:
    """Encode RGB frames into an H.264 video, atomically (temporary file, then rename).

    Args:
        path: the output file; ``.mp4`` (default choice), ``.m4v``, ``.mov`` or ``.mkv``.
        frames: ``uint8 [H, W, 3]`` RGB frames, all the same size, consumed lazily (a generator keeps memory flat).
        fps: frames per second (any positive rate; ``30000 / 1001`` is stored exactly as an NTSC rate).
        crf: x264 quality (0 lossless, 18 visually lossless, 23 x264's default).
        preset: x264 speed/size trade-off (``ultrafast`` ... ``veryslow``).
        odd_size: H.264 in 4:2:0 (``yuv420p``, the format every player and browser accepts) needs an even width and
            height. ``"pad"`` (default) repeats the last row/column to reach an even size; ``"exact"`` keeps an odd
            size by encoding 4:4:4 (``yuv444p``), which many browsers do not play. Even sizes are always ``yuv420p``.
        frame_times_s: ``[F]`` strictly increasing presentation time of each frame in seconds (a variable frame
            rate, e.g. ``VideoInfo.frame_times_s``), kept to 1/90000 s; None: frame ``i`` at ``i / fps``.
        x264_params: extra x264 settings as ``key=value:key=value`` (e.g. ``"mbtree=0"``), or None.

    Raises:
        ValueError: no frames, frames of different sizes, frames that are not ``uint8 [H, W, 3]``, or frame times
            that are not increasing or not one per frame.
    """
    path = Path(path)
    if path.suffix.lower() not in _FORMAT_BY_SUFFIX:
        raise ValueError(f"Cannot write {path.name!r}: use one of {sorted(_FORMAT_BY_SUFFIX)} as the file suffix.")
    if odd_size not in ("pad", "exact"):
        raise ValueError(f"odd_size must be 'pad' or 'exact', got {odd_size!r}.")
    rate = _frame_rate(fps)
    timestamps = None if frame_times_s is None else _timestamps(frame_times_s)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary_sibling(path)
    try:
        count = _encode(temporary, iter(frames), rate, crf=crf, preset=preset, odd_size=odd_size,
                        container_format=_FORMAT_BY_SUFFIX[path.suffix.lower()], timestamps=timestamps,
                        x264_params=x264_params)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    logger.debug("Wrote %d frames to %s", count, path)


def h264_roundtrip(frames: np.ndarray, crf: int = 18, fps: float = 25.0, preset: str = "veryfast") -> np.ndarray:
    """``uint8 [T, H, W, 3]`` frames as they come back from an H.264 file written by ``write_video`` (4:2:0 chroma,
    ``crf``): what a model meets in a real video file (colour edges blurred over two pixels, block noise), for training
    data rendered in memory. Even ``H`` and ``W`` only (no padding row to remove)."""
    if frames.ndim != 4 or frames.shape[1] % 2 or frames.shape[2] % 2:
        raise ValueError(f"h264_roundtrip needs uint8 [T, H, W, 3] frames of even size, got {frames.shape}.")
    with tempfile.TemporaryDirectory(prefix="lavida-h264-") as folder:
        path = Path(folder) / "clip.mp4"
        write_video(path, iter(frames), fps=fps, crf=crf, preset=preset)
        return np.stack([frame.image for frame in iter_frames(path)])


def _timestamps(frame_times_s: Sequence[float] | np.ndarray) -> np.ndarray:
    """``int64 [F]`` presentation timestamps in ``TIMESTAMP_CLOCK`` ticks, or ValueError."""
    times = np.asarray(frame_times_s, dtype=np.float64).reshape(-1)
    ticks = np.round(times / float(TIMESTAMP_CLOCK)).astype(np.int64)
    if times.size == 0 or not np.all(np.isfinite(times)) or np.any(np.diff(ticks) <= 0):
        raise ValueError("frame_times_s must be finite, strictly increasing times in seconds, one per frame.")
    return ticks


def _check_frame(frame: np.ndarray, index: int, shape: tuple[int, ...] | None) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"Frame {index}: expected uint8 [H, W, 3], got {frame.dtype} {list(frame.shape)}.")
    if shape is not None and frame.shape != shape:
        raise ValueError(f"Frame {index} is {list(frame.shape)} but the first frame is {list(shape)}; "
                         "all frames of a video must have the same size.")
    return frame


def _encode(target: Path, frames: Iterator[np.ndarray], rate: Fraction, *, crf: int, preset: str,
            odd_size: str, container_format: str, timestamps: np.ndarray | None = None,
            x264_params: str | None = None) -> int:
    first = next(frames, None)
    if first is None:
        raise ValueError("No frames to write: a video needs at least one frame.")
    first = _check_frame(first, 0, None)
    height, width = first.shape[:2]
    odd = height % 2 == 1 or width % 2 == 1
    pad = (height % 2, width % 2) if odd and odd_size == "pad" else (0, 0)
    pixel_format = "yuv444p" if odd and odd_size == "exact" else "yuv420p"
    options = {"movflags": "+faststart"} if container_format in ("mp4", "mov") else {}
    av = _av()
    with av.open(str(target), mode="w", format=container_format, options=options) as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height = width + pad[1], height + pad[0]
        stream.pix_fmt = pixel_format
        stream.options = {"crf": str(crf), "preset": preset, **({"x264-params": x264_params} if x264_params else {})}
        # Constant rate: frame i at pts i in units of 1/rate. Given times: pts on a 90 kHz clock.
        clock = 1 / rate if timestamps is None else TIMESTAMP_CLOCK
        if timestamps is not None:
            stream.codec_context.time_base = clock
        count = 0
        for index, frame in enumerate(_chain(first, frames)):
            frame = _check_frame(frame, index, first.shape)
            if timestamps is not None and index >= len(timestamps):
                raise ValueError(f"Got more frames than the {len(timestamps)} frame times.")
            if pad != (0, 0):
                frame = np.pad(frame, ((0, pad[0]), (0, pad[1]), (0, 0)), mode="edge")
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            video_frame.pts = index if timestamps is None else int(timestamps[index])
            video_frame.time_base = clock
            container.mux(stream.encode(video_frame))
            count += 1
        if timestamps is not None and count != len(timestamps):
            raise ValueError(f"Got {count} frames for {len(timestamps)} frame times.")
        container.mux(stream.encode(None))  # flush delayed frames
    return count


def _chain(first: np.ndarray, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    yield first
    yield from rest


# ---------------------------------------------------------------------------------------------------------------------
# Sources and metadata
# ---------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FrameArray:
    """Decoded frames with their frame rate: ``frames`` is ``uint8 [F, H, W, 3]`` RGB, as one array or a list of
    ``[H, W, 3]`` frames (a list is read frame by frame, never stacked)."""

    frames: np.ndarray | Sequence[np.ndarray]
    fps: float = DEFAULT_ARRAY_FPS


@dataclass(frozen=True)
class VideoInfo:
    """What a video holds, as decoded.

    Attributes:
        num_frames: the exact number of frames the decoder produces (counted, not read from the header).
        fps: frames per second (the stream's average rate).
        width, height: the upright frame size in pixels (after the container's rotation; never a decoding size).
        duration_s: from the first frame's start to the last frame's end: ``num_frames / fps`` at a constant rate.
        codec: the decoder's name (``h264``, ``vp9``, ``gif``...; ``rawvideo`` for frame arrays).
        damaged: some packets did not decode (the frames that did are used; a warning is logged).
        frame_times_s: ``float64 [F]`` the frames' presentation times in seconds (the first at 0) when they are not
            ``i / fps`` to within a timestamp tick: a variable frame rate, or a gap left by frames that did not
            decode. None at a constant rate, where frame ``i`` is shown at ``i / fps``. Not part of ``to_dict``.
    """

    num_frames: int
    fps: float
    width: int
    height: int
    duration_s: float
    codec: str
    damaged: bool = False
    frame_times_s: np.ndarray | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, int | float | str]:
        return {"num_frames": self.num_frames, "fps": self.fps, "width": self.width, "height": self.height,
                "duration_s": self.duration_s, "codec": self.codec, "damaged": self.damaged}

    def frame_edges_s(self) -> np.ndarray:
        """``float64 [F + 1]``: frame ``i`` is shown from ``edges[i]`` to ``edges[i + 1]`` seconds (the last edge is
        ``duration_s``). ``i / fps`` at a constant rate, else the frames' own times."""
        if self.frame_times_s is None:
            return np.arange(self.num_frames + 1) / self.fps
        return np.append(np.asarray(self.frame_times_s, dtype=np.float64), self.duration_s)


@dataclass(frozen=True)
class VideoHeader:
    """What a video declares before any frame is decoded (read when a ``VideoReader`` opens it).

    Attributes:
        num_frames: the container's frame count, or ``duration * fps`` when it stores none (an estimate for progress
            bars: the exact count is ``VideoReader.info.num_frames``); None when neither is declared.
        duration_s: the declared duration in seconds, or None.
        width, height: the coded frame size the stream declares (a rotation, known from the first decoded frame,
            may swap them: ``VideoInfo`` has the upright size).
        fps, codec: as in ``VideoInfo``.
    """

    num_frames: int | None
    duration_s: float | None
    fps: float
    width: int
    height: int
    codec: str


def describe_source(source: VideoSource) -> str:
    """A short name of ``source`` for messages: the path, or what kind of in-memory video it is."""
    if isinstance(source, VideoReader):
        return describe_source(source.source)
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"the video data ({len(source)} bytes)"
    frames = source.frames if isinstance(source, FrameArray) else source
    if isinstance(frames, (list, tuple)):
        shape = list(np.shape(frames[0])) if frames else []
        return f"the list of {len(frames)} frames {shape}"
    return f"the frame array {list(np.shape(frames))}"


def is_frame_list(value: object) -> bool:
    """True for a non-empty list/tuple of ``[H, W, C]`` arrays: the frames of one video (not a list of videos)."""
    return (isinstance(value, (list, tuple)) and len(value) > 0
            and all(isinstance(item, np.ndarray) and item.ndim == 3 for item in value))


def _check_array(source: np.ndarray | FrameArray | Sequence[np.ndarray]
                 ) -> tuple[np.ndarray | Sequence[np.ndarray], float]:
    """The frames (an array, or a list checked frame by frame on reading) and their fps."""
    frames, fps = (source.frames, source.fps) if isinstance(source, FrameArray) else (source, DEFAULT_ARRAY_FPS)
    name = describe_source(source)
    if isinstance(frames, (list, tuple)):
        first = np.asarray(frames[0]) if frames else np.zeros(0, np.uint8)
        if first.dtype != np.uint8 or first.ndim != 3 or first.shape[-1] != 3:
            raise UserInputError(f"Video frames {name} must be uint8 RGB [height, width, 3] each, got "
                                 f"{first.dtype} {list(first.shape)}: convert them with np.asarray(..., np.uint8).")
    else:
        frames = np.asarray(frames)
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise UserInputError(f"Video frames {name} must be uint8 RGB [frames, height, width, 3], got "
                                 f"{frames.dtype} {list(frames.shape)}: convert them with np.asarray(..., np.uint8).")
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise UserInputError(f"The fps of {name} must be a positive number, got {fps!r}.")
    return frames, float(fps)


def _list_frame(frames: Sequence[np.ndarray], index: int, shape: tuple[int, ...], name: str) -> np.ndarray:
    frame = np.asarray(frames[index])
    if frame.dtype != np.uint8 or frame.shape != shape:
        raise UserInputError(f"Frame {index} of {name} is {frame.dtype} {list(frame.shape)}; every frame must be "
                             f"uint8 {list(shape)} like the first.")
    return frame


def _check_path(path: Path) -> None:
    if not path.exists():
        raise UserInputError(f"Video {path} does not exist: check the path.")
    if not path.is_file():
        raise UserInputError(f"Video {path} is not a file: give the path of a video file.")
    if path.stat().st_size == 0:
        raise UserInputError(f"Video {path} is empty (0 bytes): re-export or re-download it.")


def _av():
    """The PyAV module (imported when a file is read or written)."""
    try:
        import av
    except ImportError:
        raise ImportError("Reading or writing video files needs PyAV: pip install av (frame arrays need nothing).") \
            from None
    return av


def _open_container(source: str | os.PathLike | bytes):
    """Open a file or bytes for decoding and return the container and its first video stream."""
    av = _av()
    name = describe_source(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise UserInputError("The video data is empty (0 bytes): upload or pass a non-empty video file.")
        target = io.BytesIO(bytes(source))
    else:
        _check_path(Path(source))
        target = str(source)
    try:
        container = av.open(target, mode="r")
    except (av.FFmpegError, OSError) as error:
        raise UserInputError(
            f"Video {name} could not be opened as a video ({_short(error)}): check that it is a complete, "
            f"untruncated file in a format FFmpeg reads ({SUPPORTED_FORMATS_HINT}).") from None
    if not container.streams.video:
        container.close()
        raise UserInputError(f"Video {name} has no video stream (it may be audio only, or truncated): "
                             f"give a video file ({SUPPORTED_FORMATS_HINT}).")
    # FFmpeg's default threading: frame threading would make which frames a damaged packet takes with it timing
    # dependent, and probe and iteration must agree frame for frame.
    return container, container.streams.video[0]


def _short(error: BaseException) -> str:
    text = getattr(error, "strerror", None) or str(error)
    return text.split(":")[0].strip() if text else type(error).__name__


@dataclass
class _DecodeReport:
    rejected_packets: int = 0
    stopped_early: bool = False

    @property
    def damaged(self) -> bool:
        return self.rejected_packets > 0 or self.stopped_early


def _decode(container, stream, name: str, report: _DecodeReport | None = None) -> Iterator:
    """Every frame (``av.VideoFrame``) the decoder can produce, skipping packets it rejects (a damaged or truncated
    file).

    Rejected packets are skipped rather than ending the read so that a single bad packet does not lose the rest
    of the video; probe and iteration share this function, so they always see the same frames.
    """
    av = _av()
    report = report if report is not None else _DecodeReport()
    try:
        for packet in container.demux(stream):
            try:
                yield from packet.decode()
            except av.FFmpegError:
                report.rejected_packets += 1
    except av.FFmpegError as error:  # the demuxer itself gave up: keep what was decoded
        report.stopped_early = True
        logger.warning("Video %s: reading stopped early (%s); using the frames decoded so far.", name, _short(error))
    if report.rejected_packets:
        logger.warning("Video %s is damaged: %d packet(s) could not be decoded and were skipped.", name,
                       report.rejected_packets)


def _stream_fps(stream) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and rate > 0:
            return float(rate)
    logger.warning("The video declares no frame rate; assuming %.0f fps.", FALLBACK_FPS)
    return FALLBACK_FPS


def _declared_duration(container, stream) -> float | None:
    """Seconds the stream (else the container) declares, or None."""
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        return float(stream.duration * stream.time_base)
    if container.duration is not None and container.duration > 0:
        return container.duration / 1_000_000  # AV_TIME_BASE
    return None


def _check_count(count: int, damaged: bool, name: str) -> None:
    if count < MIN_FRAMES and damaged:
        raise UserInputError(f"Video {name} is damaged or truncated: only {count} frame(s) decode and at least "
                             f"{MIN_FRAMES} are needed: re-export or re-download it.")
    if count < MIN_FRAMES:
        raise UserInputError(f"Video {name} has {count} decodable frame(s); at least {MIN_FRAMES} are needed to "
                             "score a video: give a longer video.")


class DecodedFrame(NamedTuple):
    """One decoded frame: ``index`` counts decoded frames from 0; ``image`` is ``uint8 [H, W, 3]`` RGB, upright."""

    index: int
    image: np.ndarray


def _quarter_turns(rotation: float) -> int:
    """Counter-clockwise quarter turns (``np.rot90``'s ``k``) that show a frame as the container's display matrix
    asks: ``rotation`` is that matrix's angle in degrees, counter-clockwise (PyAV's ``VideoFrame.rotation``; a phone
    held upright records -90)."""
    return int(round(rotation / 90.0)) % 4


def _output_size(size: SizeFn | None, height: int, width: int, name: str) -> tuple[int, int]:
    """``size(height, width)`` checked (two positive ints), or the upright size itself when there is no ``size``."""
    if size is None:
        return height, width
    out = tuple(int(side) for side in size(height, width))
    if len(out) != 2 or min(out) < 1:
        raise ValueError(f"The frame size chosen for {name} must be a positive (height, width), got {out!r}.")
    return out


class _DecodingPass:
    """What one pass over a decoded stream learns frame by frame: the count, the first frame's upright size and
    rotation, and every frame's presentation time (8 bytes a frame). ``probe_video`` and ``VideoReader.frames``
    share it, so their ``VideoInfo`` agree."""

    def __init__(self, time_base: Fraction | None):
        self.count = 0
        self.turns = 0
        self.height = self.width = 0
        self.times = array("d")  # seconds; NaN where a frame has no timestamp
        self.tick = float(time_base) if time_base else 0.0

    def add(self, frame) -> None:
        if self.count == 0:
            self.turns = _quarter_turns(getattr(frame, "rotation", 0))  # older PyAV has no VideoFrame.rotation
            height, width = frame.height, frame.width
            self.height, self.width = (width, height) if self.turns % 2 else (height, width)
        time = frame.time
        self.times.append(math.nan if time is None else float(time))
        self.count += 1

    def info(self, fps: float, codec: str, damaged: bool) -> VideoInfo:
        times = self.frame_times(fps)
        duration = self.count / fps if times is None else float(times[-1]) + 1.0 / fps  # the last frame: 1/fps
        return VideoInfo(num_frames=self.count, fps=fps, width=int(self.width), height=int(self.height),
                         duration_s=duration, codec=codec, damaged=damaged, frame_times_s=times)

    def frame_times(self, fps: float) -> np.ndarray | None:
        """``float64 [F]`` times from 0 when they are not ``i / fps`` to within a tick (and 1 us); else None. Missing
        or non-increasing timestamps (some AVI and raw streams) also give None: then ``i / fps`` is the best guess."""
        times = np.frombuffer(self.times, dtype=np.float64)
        if times.size < 2 or not np.all(np.isfinite(times)):
            return None
        times = times - times[0]
        if np.any(np.diff(times) <= 0):
            logger.debug("Timestamps that do not increase; frame times taken as index / fps.")
            return None
        if np.max(np.abs(times - np.arange(times.size) / fps)) <= max(self.tick, 1e-6):
            return None
        return times


def _scale_rgb(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """An in-memory ``uint8 [h, w, 3]`` frame at ``(height, width)``, through FFmpeg's scaler as decoded frames."""
    av = _av()
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
    shrink = height * width < image.shape[0] * image.shape[1]
    interpolation = {"interpolation": DOWNSCALE_INTERPOLATION} if shrink else {}
    return frame.reformat(width=width, height=height, format="rgb24", **interpolation).to_ndarray()


class VideoReader:
    """One pass over one video: opened once (the header is read then), decoded frame by frame.

    Files and bytes are opened on construction (an unreadable file fails here, before any work); the container is
    closed when the pass ends or the reader is closed. ``info`` (the exact decoded count) is known after the pass.

    Raises:
        UserInputError: a missing, empty or unreadable file, a bad frame array, or fewer than 2 decodable frames
            (at the end of the pass).
    """

    def __init__(self, source: VideoSource):
        if isinstance(source, VideoReader):
            raise TypeError("source is already a VideoReader.")
        if is_frame_list(source):
            source = FrameArray(source)
        self.source = source
        self.name = describe_source(source)
        self._container = self._stream = None
        self._info: VideoInfo | None = None
        self._started = False
        if isinstance(source, (np.ndarray, FrameArray)):
            self._frames, fps = _check_array(source)
            first = np.asarray(self._frames[0]) if len(self._frames) else np.zeros((0, 0, 3), np.uint8)
            count = len(self._frames)
            self.header = VideoHeader(num_frames=count, duration_s=count / fps, fps=fps, width=int(first.shape[1]),
                                      height=int(first.shape[0]), codec="rawvideo")
        elif isinstance(source, (str, os.PathLike, bytes, bytearray, memoryview)):
            self._container, self._stream = _open_container(source)
            stream = self._stream
            fps = _stream_fps(stream)
            duration = _declared_duration(self._container, stream)
            declared = int(stream.frames or 0)
            estimate = declared if declared > 0 else (round(duration * fps) if duration else None)
            self.header = VideoHeader(num_frames=estimate, duration_s=duration, fps=fps,
                                      width=int(stream.codec_context.width), height=int(stream.codec_context.height),
                                      codec=stream.codec_context.name)
        else:
            raise UserInputError(f"Cannot read a video from a {type(source).__name__}: give a path, the bytes of a "
                                 "video file or uint8 frames [frames, height, width, 3].")

    @property
    def info(self) -> VideoInfo:
        """The exact metadata, once ``frames`` has run to the end."""
        if self._info is None:
            raise RuntimeError(f"{self.name} has not been read to the end yet: iterate over frames() first.")
        return self._info

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def frames(self, stride: int = 1, size: SizeFn | None = None) -> Iterator[DecodedFrame]:
        """Decode every frame and yield every ``stride``-th one (indices 0, stride, 2*stride...); one pass only.

        Only the current frame is held in memory. Frames are turned upright (the container's rotation) and handed
        out at the first frame's upright size, or at ``size(height, width)`` of it: FFmpeg's scaler converts each
        decoded frame straight to that size (area averaging when it shrinks), so a huge frame is never held as a
        full-size RGB array; in-memory frames go through the same scaler. Frames that change size mid-stream are
        brought to the same size. ``info`` (with the upright size, not ``size``'s) is set when the pass ends (a video
        with fewer than 2 frames raises ``UserInputError`` then).
        """
        stride = _check_stride(stride)
        if self._started:
            raise RuntimeError(f"{self.name} was already read: a VideoReader makes one pass.")
        self._started = True
        if self._container is None and isinstance(self.source, (np.ndarray, FrameArray)):
            yield from self._array_frames(stride, size)
            return
        if self._container is None:
            raise RuntimeError(f"{self.name} is closed.")
        report = _DecodeReport()
        decoding = _DecodingPass(self._stream.time_base)
        convert: dict[str, object] = {}
        try:
            for index, frame in enumerate(_decode(self._container, self._stream, self.name, report)):
                decoding.add(frame)
                if index == 0:
                    convert = self._conversion(frame, decoding, size)
                if index % stride == 0:
                    image = frame.to_ndarray(format="rgb24", **convert)
                    if decoding.turns:
                        image = np.ascontiguousarray(np.rot90(image, decoding.turns))
                    yield DecodedFrame(index, image)
        finally:
            self.close()
        _check_count(decoding.count, report.damaged, self.name)
        self._info = decoding.info(self.header.fps, self.header.codec, report.damaged)

    def _conversion(self, first, decoding: _DecodingPass, size: SizeFn | None) -> dict[str, object]:
        """``to_ndarray`` arguments for every frame: the coded size to scale to (before the rotation) and, when
        shrinking, the scaler. At the native size the conversion is exactly the unscaled one."""
        height, width = _output_size(size, decoding.height, decoding.width, self.name)
        if (height, width) == (decoding.height, decoding.width):
            return {"width": first.width, "height": first.height}
        coded = (width, height) if decoding.turns % 2 else (height, width)
        convert: dict[str, object] = {"width": coded[1], "height": coded[0]}
        if height * width < decoding.height * decoding.width:
            convert["interpolation"] = DOWNSCALE_INTERPOLATION
        return convert

    def _array_frames(self, stride: int, size: SizeFn | None) -> Iterator[DecodedFrame]:
        frames, header = self._frames, self.header
        _check_count(len(frames), False, self.name)
        shape = (header.height, header.width, 3)
        height, width = _output_size(size, header.height, header.width, self.name)
        for index in range(0, len(frames), stride):
            image = frames[index] if isinstance(frames, np.ndarray) else _list_frame(frames, index, shape, self.name)
            if (height, width) != image.shape[:2]:
                image = _scale_rgb(image, height, width)
            yield DecodedFrame(index, image)
        self._info = VideoInfo(num_frames=len(frames), fps=header.fps, width=header.width, height=header.height,
                               duration_s=len(frames) / header.fps, codec="rawvideo")


VideoSource = str | os.PathLike | bytes | np.ndarray | FrameArray | Sequence[np.ndarray] | VideoReader


def read_header(source: VideoSource) -> VideoHeader:
    """What ``source`` declares, without decoding a frame (opens and closes the container)."""
    with VideoReader(source) as reader:
        return reader.header


def probe_video(source: VideoSource) -> VideoInfo:
    """Metadata of ``source`` with the exact decoded frame count (a full decoding pass; results for files are cached
    by path, size and modification time).

    Container headers often miss or misstate the frame count (webm and mkv store none; damaged files claim frames
    that do not decode), so the frames are counted by decoding them (without colour conversion). Detection does not
    call this: its one decoding pass counts the frames as it goes.

    Raises:
        UserInputError: a missing, empty or unreadable file, a bad frame array, or fewer than 2 decodable frames.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        _check_path(path)
        stat = path.stat()
        return _probe_file(str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    reader = VideoReader(source)
    if reader._container is None:
        for _ in reader.frames(stride=reader.header.num_frames or 1):
            pass
        return reader.info
    return _count_frames(reader)


@lru_cache(maxsize=64)
def _probe_file(path: str, size: int, mtime_ns: int) -> VideoInfo:
    return _count_frames(VideoReader(path))


def _count_frames(reader: VideoReader) -> VideoInfo:
    """Decode without colour conversion, counting frames and reading their times (closes the reader)."""
    report = _DecodeReport()
    decoding = _DecodingPass(reader._stream.time_base)
    with reader:
        for frame in _decode(reader._container, reader._stream, reader.name, report):
            decoding.add(frame)
    _check_count(decoding.count, report.damaged, reader.name)
    return decoding.info(reader.header.fps, reader.header.codec, report.damaged)


# ---------------------------------------------------------------------------------------------------------------------
# Streaming frames and clips
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class Clip:
    """``clip_length`` sampled frames, the unit the model scores.

    Attributes:
        frames: ``uint8 [T, H, W, 3]`` RGB.
        frame_indices: ``int64 [T]`` decoded-frame index of each frame (padding repeats the last real index).
        real: ``bool [T]``; False marks padding that completes the last clip (a copy of its last real frame).
        mask_frames: ``uint8 [K, H, W, 3]``, the frames the scores skip but the masks read (``iter_clips``'
            ``mask_stride``): those after this clip's first sampled frame and before the next clip's; None without.
        mask_frame_indices: ``int64 [K]`` their decoded-frame indices, increasing (None without).
    """

    frames: np.ndarray
    frame_indices: np.ndarray
    real: np.ndarray
    mask_frames: np.ndarray | None = None
    mask_frame_indices: np.ndarray | None = None

    @property
    def num_real(self) -> int:
        return int(self.real.sum())


def _check_stride(stride: int) -> int:
    try:
        return check_positive_int("stride", stride)
    except ValueError as error:
        raise UserInputError(str(error)) from None


def _reader(source: VideoSource) -> VideoReader:
    return source if isinstance(source, VideoReader) else VideoReader(source)


def iter_frames(source: VideoSource, stride: int = 1, size: SizeFn | None = None) -> Iterator[DecodedFrame]:
    """Decode ``source`` one frame at a time and yield every ``stride``-th frame, upright, at its own size or at
    ``size(height, width)`` (see ``VideoReader.frames``)."""
    stride = _check_stride(stride)
    yield from _reader(source).frames(stride, size)


def iter_clips(source: VideoSource, stride: int = 1, clip_length: int = DEFAULT_CLIP_LENGTH,
               size: SizeFn | None = None, mask_stride: int | None = None) -> Iterator[Clip]:
    """Group the frames of ``iter_frames(source, stride, size)`` into clips of ``clip_length`` sampled frames.

    The last clip is completed by repeating its last frame; ``Clip.real`` tells real frames from padding. With
    ``mask_stride``, every ``mask_stride``-th decoded frame that is not sampled also travels, in the clip whose
    sampled frames it follows (``Clip.mask_frames``): the frames a mask is computed on besides the scored ones.
    Holds one clip in memory (with ``mask_stride``, its frames in between too). Give a ``VideoReader`` to read
    ``info`` after the last clip.
    """
    if isinstance(clip_length, bool) or not isinstance(clip_length, (int, np.integer)) or clip_length < 1:
        raise ValueError(f"clip_length must be a positive integer, got {clip_length!r}.")
    stride = _check_stride(stride)
    step = stride if mask_stride is None else math.gcd(stride, _check_stride(mask_stride))
    images: list[np.ndarray] = []
    indices: list[int] = []
    between: list[np.ndarray] | None = None if mask_stride is None else []
    between_indices: list[int] = []
    for index, image in iter_frames(source, step, size):
        if index % stride:  # not sampled: only with mask_stride (step < stride), a frame the masks read or neither
            if index % mask_stride == 0:
                between.append(image)
                between_indices.append(index)
            continue
        if len(images) == clip_length:
            yield make_clip(images, indices, clip_length, between, between_indices)
            images, indices, between_indices = [], [], []
            between = None if between is None else []
        images.append(image)
        indices.append(index)
    if images:
        yield make_clip(images, indices, clip_length, between, between_indices)


def make_clip(images: list[np.ndarray], indices: list[int], clip_length: int,
              mask_frames: list[np.ndarray] | None = None, mask_frame_indices: list[int] | None = None) -> Clip:
    """A ``Clip`` of ``clip_length`` frames from up to ``clip_length`` sampled ones (the last repeated as padding), with
    the frames only its masks read when ``mask_frames`` is a list (an empty one: ``uint8 [0, H, W, 3]``)."""
    real = np.zeros(clip_length, dtype=bool)
    real[: len(images)] = True
    missing = clip_length - len(images)
    between = between_indices = None
    if mask_frames is not None:
        between = (np.stack(mask_frames) if mask_frames
                   else np.zeros((0, *images[0].shape), dtype=images[0].dtype))  # (K, H, W, 3)
        between_indices = np.asarray(mask_frame_indices or [], dtype=np.int64)  # (K,)
    return Clip(frames=np.stack(images + [images[-1]] * missing),  # (T, H, W, 3)
                frame_indices=np.asarray(indices + [indices[-1]] * missing, dtype=np.int64),
                real=real, mask_frames=between, mask_frame_indices=between_indices)


__all__ = ["DEFAULT_ARRAY_FPS", "DEFAULT_CLIP_LENGTH", "DOWNSCALE_INTERPOLATION", "MIN_FRAMES", "VIDEO_SUFFIXES",
           "Clip", "DecodedFrame", "FrameArray", "SizeFn", "VideoHeader", "VideoInfo", "VideoReader", "VideoSource",
           "describe_source", "is_frame_list", "iter_clips", "iter_frames", "make_clip", "probe_video", "read_header",
           "write_video"]
