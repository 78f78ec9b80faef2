"""Video reading and writing with PyAV (the FFmpeg bindings that ship their own codecs).

Reading streams: frames are decoded one at a time, so memory stays flat however long the video is.

    info = probe_video("clip.mp4")                       # exact frame count, fps, size, codec
    for clip in iter_clips("clip.mp4", stride=2):        # 8 sampled frames at a time
        clip.frames        # uint8 [8, H, W, 3]
        clip.frame_indices # int64 [8], decoded-frame index of each sampled frame
        clip.real          # bool [8], False for the padding that completes the last clip

A source is a path, the bytes of a video file, a ``uint8 [F, H, W, 3]`` array (at ``DEFAULT_ARRAY_FPS``) or a
``FrameArray`` (an array with its fps). Anything a user can get wrong (a missing or empty file, a file that is not a
video, a video with fewer than two frames) raises ``lavida.errors.UserInputError`` naming the input.

Damaged videos: a file whose container cannot be opened (for instance an mp4 cut before its index) is an error. A file
that opens but stops decoding part-way is read up to the last frame that decodes, with a warning; ``probe_video`` and
the frame iterators use the same decoder, so their frame counts always agree.

Writing: ``write_video`` encodes H.264 into a temporary file and renames it into place, so a failed write leaves
nothing behind.
"""

from __future__ import annotations

import io
import logging
import math
import os
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Literal, NamedTuple

import av
import numpy as np

from ..errors import UserInputError

logger = logging.getLogger(__name__)

DEFAULT_ARRAY_FPS = 25.0  # frame rate assumed for a bare frame array
DEFAULT_CLIP_LENGTH = 8  # sampled frames per clip, as the model is trained
MIN_FRAMES = 2
FALLBACK_FPS = 25.0  # used when a container declares no frame rate at all
SUPPORTED_FORMATS_HINT = "mp4 (H.264), webm, avi, mkv, mov or gif"


# ----------------------------------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------------------------------

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
                preset: str = "medium", odd_size: Literal["pad", "exact"] = "pad") -> None:
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

    Raises:
        ValueError: no frames, frames of different sizes, or frames that are not ``uint8 [H, W, 3]``.
    """
    path = Path(path)
    if path.suffix.lower() not in _FORMAT_BY_SUFFIX:
        raise ValueError(f"Cannot write {path.name!r}: use one of {sorted(_FORMAT_BY_SUFFIX)} as the file suffix.")
    if odd_size not in ("pad", "exact"):
        raise ValueError(f"odd_size must be 'pad' or 'exact', got {odd_size!r}.")
    rate = _frame_rate(fps)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary_sibling(path)
    try:
        count = _encode(temporary, iter(frames), rate, crf=crf, preset=preset, odd_size=odd_size,
                        container_format=_FORMAT_BY_SUFFIX[path.suffix.lower()])
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    logger.debug("Wrote %d frames to %s", count, path)


def _check_frame(frame: np.ndarray, index: int, shape: tuple[int, ...] | None) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"Frame {index}: expected uint8 [H, W, 3], got {frame.dtype} {list(frame.shape)}.")
    if shape is not None and frame.shape != shape:
        raise ValueError(f"Frame {index} is {list(frame.shape)} but the first frame is {list(shape)}; "
                         "all frames of a video must have the same size.")
    return frame


def _encode(target: Path, frames: Iterator[np.ndarray], rate: Fraction, *, crf: int, preset: str,
            odd_size: str, container_format: str) -> int:
    first = next(frames, None)
    if first is None:
        raise ValueError("No frames to write: a video needs at least one frame.")
    first = _check_frame(first, 0, None)
    height, width = first.shape[:2]
    odd = height % 2 == 1 or width % 2 == 1
    pad = (height % 2, width % 2) if odd and odd_size == "pad" else (0, 0)
    pixel_format = "yuv444p" if odd and odd_size == "exact" else "yuv420p"
    options = {"movflags": "+faststart"} if container_format in ("mp4", "mov") else {}
    with av.open(str(target), mode="w", format=container_format, options=options) as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height = width + pad[1], height + pad[0]
        stream.pix_fmt = pixel_format
        stream.options = {"crf": str(crf), "preset": preset}
        count = 0
        for index, frame in enumerate(_chain(first, frames)):
            frame = _check_frame(frame, index, first.shape)
            if pad != (0, 0):
                frame = np.pad(frame, ((0, pad[0]), (0, pad[1]), (0, 0)), mode="edge")
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            video_frame.pts = index  # in units of 1/rate: frame i shows at i / fps
            video_frame.time_base = 1 / rate
            container.mux(stream.encode(video_frame))
            count += 1
        container.mux(stream.encode(None))  # flush delayed frames
    return count


def _chain(first: np.ndarray, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    yield first
    yield from rest


__all__ = ["DEFAULT_ARRAY_FPS", "DEFAULT_CLIP_LENGTH", "write_video"]
