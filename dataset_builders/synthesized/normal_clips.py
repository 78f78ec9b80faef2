"""Normal clips to synthesise into: any video file or folder of frames, cut into fixed-length clips.

``--normal-videos`` may be a video file, a folder of frames (one video), or a folder searched recursively for video
files and frame folders (a folder directly holding at least two images is one video, its frames in natural order:
``2.jpg`` before ``10.jpg``). Videos decode with ``lavida.processing.video_io`` (PyAV).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from lavida.errors import UserInputError
from lavida.processing.video_io import VIDEO_SUFFIXES, iter_frames, probe_video

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


def natural_key(path: Path) -> list[int | str]:
    """Sort key that orders embedded numbers by value (``frame2`` before ``frame10``)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def _images_in(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES), key=natural_key)


@dataclass(frozen=True)
class NormalVideo:
    """One normal video: a file, or a folder of frames (``frame_files`` set).

    Attributes:
        video_id: its path relative to the ``--normal-videos`` root (posix), or its name when the root is the video.
        path: the file or folder.
        frame_files: the frames of a frame folder, in order; ``None`` for a video file.
    """

    video_id: str
    path: Path
    frame_files: tuple[Path, ...] | None = None

    def num_frames(self) -> int:
        """Frames of the video (decoded and counted for a video file)."""
        if self.frame_files is not None:
            return len(self.frame_files)
        return probe_video(self.path).num_frames

    def load(self, indices: tuple[int, ...]) -> np.ndarray:
        """Frames ``indices`` (may repeat) as ``uint8 [T, H, W, 3]`` RGB, all at the first frame's size."""
        wanted = sorted(set(indices))
        images: dict[int, np.ndarray] = {}
        if self.frame_files is not None:
            with Image.open(self.frame_files[0]) as first:
                size = first.size  # frames of another size are resized to it, as video_io does for files
            for index in wanted:
                with Image.open(self.frame_files[index]) as image:
                    image = image.convert("RGB")
                    images[index] = np.asarray(image if image.size == size else image.resize(size, Image.BILINEAR))
        else:
            chosen, last = set(wanted), wanted[-1]
            for frame in iter_frames(self.path):  # decode up to the last wanted frame only
                if frame.index in chosen:
                    images[frame.index] = frame.image
                if frame.index >= last:
                    break
            missing = [i for i in wanted if i not in images]
            if missing:
                raise UserInputError(f"Normal video {self.path} decoded fewer frames than it reported (frame "
                                     f"{missing[0]} is missing): re-encode the video.")
        return np.stack([images[i] for i in indices])  # (T, H, W, 3)


@dataclass(frozen=True)
class NormalClip:
    """A clip of a normal video: ``frame_indices`` of ``video`` (``clip_length`` of them)."""

    video: NormalVideo
    frame_indices: tuple[int, ...]

    @property
    def clip_id(self) -> str:
        return f"{self.video.video_id}@{self.frame_indices[0]:06d}"

    def load(self) -> np.ndarray:
        """``uint8 [T, H, W, 3]`` RGB."""
        return self.video.load(self.frame_indices)


def find_normal_videos(root: str | Path) -> list[NormalVideo]:
    """The normal videos under ``root`` (a video file, a frame folder, or a folder of either), in sorted order.

    Raises:
        UserInputError: if ``root`` does not exist or holds no video file and no frame folder.
    """
    root = Path(root)
    if not root.exists():
        raise UserInputError(f"--normal-videos {root} does not exist: give a video file or a folder of videos or "
                             "frame folders.")
    if root.is_file():
        if root.suffix.lower() not in VIDEO_SUFFIXES:
            raise UserInputError(f"--normal-videos {root} is not a video file ({', '.join(VIDEO_SUFFIXES)}).")
        return [NormalVideo(video_id=root.stem, path=root)]
    videos: list[NormalVideo] = []
    for folder in sorted([root, *(p for p in root.rglob("*") if p.is_dir())], key=lambda p: p.as_posix()):
        relative = folder.relative_to(root).as_posix()
        frames = _images_in(folder)
        if len(frames) >= 2:
            videos.append(NormalVideo(video_id=relative if relative != "." else root.name, path=folder,
                                      frame_files=tuple(frames)))
        for file in sorted(folder.iterdir(), key=natural_key):
            if file.is_file() and file.suffix.lower() in VIDEO_SUFFIXES:
                videos.append(NormalVideo(video_id=file.relative_to(root).as_posix(), path=file))
    if not videos:
        raise UserInputError(f"--normal-videos {root} holds no video file ({', '.join(VIDEO_SUFFIXES)}) and no folder "
                             "of at least two frames: point it at your normal videos.")
    return videos


def clip_indices(num_frames: int, clip_length: int, frame_stride: int, max_clips: int | None) -> list[tuple[int, ...]]:
    """Non-overlapping clips of ``clip_length`` frames taken every ``frame_stride`` frames.

    A video shorter than one clip gives one clip spread over it (frames repeat). With more than ``max_clips`` clips,
    ``max_clips`` evenly spaced ones are kept.
    """
    if clip_length < 1 or frame_stride < 1:
        raise ValueError(f"clip_length and frame_stride must be >= 1, got {clip_length}, {frame_stride}.")
    if num_frames <= 0:
        return []
    span = (clip_length - 1) * frame_stride + 1
    if num_frames < span:
        return [tuple(np.linspace(0, num_frames - 1, clip_length).round().astype(int).tolist())]
    starts = list(range(0, num_frames - span + 1, span))
    if max_clips is not None and len(starts) > max_clips:
        keep = np.unique(np.linspace(0, len(starts) - 1, max_clips).round().astype(int))
        starts = [starts[k] for k in keep]
    return [tuple(range(start, start + span, frame_stride)) for start in starts]


def normal_clips(videos: list[NormalVideo], clip_length: int, frame_stride: int = 1,
                 max_clips_per_video: int | None = None) -> list[NormalClip]:
    """Every clip of ``videos`` (see ``clip_indices``), video by video."""
    clips = []
    for video in videos:
        for indices in clip_indices(video.num_frames(), clip_length, frame_stride, max_clips_per_video):
            clips.append(NormalClip(video=video, frame_indices=indices))
    logger.info("%d normal clips from %d videos", len(clips), len(videos))
    return clips


__all__ = ["IMAGE_SUFFIXES", "NormalClip", "NormalVideo", "VIDEO_SUFFIXES", "clip_indices", "find_normal_videos",
           "natural_key", "normal_clips"]
