"""The synthetic VAD benchmark (held-out colour-shape compositions crossing synthetic scenes) as a benchmark loader.

Layout (what ``lavida.dataset_builders.synthetic_vad.write_vad_video`` writes, one triple per video):

    <video_id>.mp4              H.264 video
    <video_id>.labels.json      {"video_id", "fps", "frame_labels": [0/1 per frame], "prompt": [...], ...}
    <video_id>.masks.npz        packed bool masks [frames, height, width] (union of the visible held-out objects)

``build_synthetic_vad_split`` renders a split deterministically into such a folder (atomically: a temporary folder
renamed into place). The prompt list is the 16 held-out composition names. The stride is 2: anomalous objects stay in
view for at least a fifth of a video (12 frames or more), so every other frame keeps each crossing well sampled.

Two benchmarks share this layout, prompt and stride: ``synthetic-vad`` (normal objects: any training compositions)
and ``synthetic-vad-near-miss`` (normal objects sharing the colour or the shape of a listed name, next to it or in its
place; see ``synthetic_near_miss``).
"""

from __future__ import annotations

import json
import logging
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from lavida.errors import UserInputError

from ..synthetic_world import HELD_OUT_NAMES
from .base import Benchmark, BenchmarkVideo

logger = logging.getLogger(__name__)

DEFAULT_NUM_VIDEOS = 32
LABELS_SUFFIX = ".labels.json"
MASKS_SUFFIX = ".masks.npz"


@dataclass
class SyntheticVADMasks:
    """A video's ``<id>.masks.npz``, unpacked on first use and kept until ``release``."""

    path: str
    kind: ClassVar[str] = "synthetic_npz"

    def _masks(self) -> np.ndarray:
        if not hasattr(self, "_cache"):
            from lavida.dataset_builders.synthetic_vad import load_vad_masks

            self._cache = load_vad_masks(self.path)
        return self._cache

    @property
    def num_frames(self) -> int:
        return int(self._masks().shape[0])

    def frame(self, index: int, shape: tuple[int, int] | None = None) -> np.ndarray:
        return self._masks()[index]

    def release(self) -> None:
        self.__dict__.pop("_cache", None)


def is_synthetic_vad_folder(folder: str | Path) -> bool:
    """True when ``folder`` holds at least one ``<id>.labels.json`` of the synthetic VAD layout."""
    folder = Path(folder)
    return folder.is_dir() and any(folder.glob(f"*{LABELS_SUFFIX}"))


def build_synthetic_vad_split(folder: str | Path, num_videos: int = DEFAULT_NUM_VIDEOS, split: str = "test",
                              config=None, benchmark: str = "synthetic-vad") -> Path:
    """Render ``num_videos`` videos of ``split`` into ``folder`` (which must not exist or be empty).

    Args:
        folder: the target folder.
        num_videos: how many videos (video ``i`` is the same whatever the count).
        split: the split name, which fixes the seed (``"test"`` for the benchmark).
        config: a ``SyntheticVADConfig`` (default: the specification).
        benchmark: ``"synthetic-vad"`` or ``"synthetic-vad-near-miss"`` (``SYNTHETIC_BENCHMARKS``).

    Returns:
        ``folder``.
    """
    from lavida.dataset_builders.synthetic_vad import render_vad_video, write_vad_video

    from .synthetic_near_miss import render_near_miss_video

    renderers = {SyntheticVAD.name: render_vad_video, SyntheticVADNearMiss.name: render_near_miss_video}
    if benchmark not in renderers:
        raise UserInputError(f"Unknown synthetic benchmark {benchmark!r}: choose one of {', '.join(renderers)}.")
    render = renderers[benchmark]
    folder = Path(folder)
    if num_videos < 1:
        raise UserInputError(f"The synthetic VAD split needs at least one video, got {num_videos}.")
    if folder.exists() and any(folder.iterdir()):
        raise UserInputError(f"Cannot build the synthetic VAD benchmark in {folder}: the folder is not empty.")
    staging = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        for index in range(num_videos):
            write_vad_video(render(index, split, config), staging)
        if folder.exists():
            folder.rmdir()
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("Rendered %d %s %s videos into %s", num_videos, benchmark, split, folder)
    return folder


class SyntheticVAD(Benchmark):
    """The synthetic VAD benchmark read from a folder of ``write_vad_video`` outputs (frame labels and masks)."""

    name = "synthetic-vad"
    anomaly_names = tuple(HELD_OUT_NAMES)
    stride = 2
    has_masks = True
    layout = "<video_id>.mp4 + <video_id>.labels.json + <video_id>.masks.npz per video"

    def _index(self) -> list[BenchmarkVideo]:
        videos = []
        for labels_file in sorted(self.data_root.glob(f"*{LABELS_SUFFIX}")):
            video_id = labels_file.name.removesuffix(LABELS_SUFFIX)
            video = self.data_root / f"{video_id}.mp4"
            masks = self.data_root / f"{video_id}{MASKS_SUFFIX}"
            if not video.is_file():
                raise self.error(f"{video.name} is missing next to {labels_file.name}")
            content = json.loads(labels_file.read_text(encoding="utf-8"))
            videos.append(BenchmarkVideo(video_id=video_id, video=video, is_frame_folder=False,
                                         labels=np.asarray(content["frame_labels"], dtype=np.int8),
                                         masks=SyntheticVADMasks(str(masks)) if masks.is_file() else None))
        return videos


class SyntheticVADNearMiss(SyntheticVAD):
    """The near-miss split of the synthetic VAD benchmark (``synthetic_near_miss``): the same layout, prompt and stride;
    its normal objects share the colour or the shape of a listed name."""

    name = "synthetic-vad-near-miss"


# the benchmarks ``build_synthetic_vad_split`` renders (``lavida evaluate`` renders them on first use)
SYNTHETIC_BENCHMARKS = (SyntheticVAD.name, SyntheticVADNearMiss.name)

__all__ = ["DEFAULT_NUM_VIDEOS", "SYNTHETIC_BENCHMARKS", "SyntheticVAD", "SyntheticVADMasks", "SyntheticVADNearMiss",
           "build_synthetic_vad_split", "is_synthetic_vad_folder"]
