"""UBnormal (Acsintoae et al., CVPR 2022), test split: all 211 test videos (abnormal and normal).

Official layout (the data root holds the scene folders; the split lists come from the UBnormal repository's
``scripts/`` folder and may sit in the data root, ``scripts/`` or ``splits/``):

    Scene1/abnormal_scene_1_scenario_1.mp4
    Scene1/abnormal_scene_1_scenario_1_annotations/abnormal_scene_1_scenario_1_tracks.txt
        one line per anomalous object: "object_id,start_frame,end_frame" (0-based, inclusive)
    Scene1/abnormal_scene_1_scenario_1_annotations/abnormal_scene_1_scenario_1_0123_gt.png
        per-frame object masks: each pixel holds its object's id (0 = background)
    Scene1/normal_scene_1_scenario_2.mp4
    abnormal_test_video_names.txt, normal_test_video_names.txt    names without extension, one per line

As in the authors' scripts: a frame is anomalous when an anomalous object's track covers it (``*_new_tracks.txt`` is
preferred over ``*_tracks.txt`` when both exist); the anomaly mask of a frame is the union of the pixels of the objects
whose track covers the frame; a track's box in a frame is the bounding box of the largest connected piece of its
object's mask there. The number of decoded frames of each video fixes the label length.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
from PIL import Image

from .base import Benchmark, BenchmarkVideo, EmptyMasks

logger = logging.getLogger(__name__)

UBNORMAL_ANOMALY_NAMES = ("running", "jumping", "falling", "fighting", "sleeping", "crawling", "having a seizure",
                          "laying down", "dancing", "stealing", "rotating 360 degrees", "shuffling", "injured",
                          "drunk", "stumbling walk", "car accident", "fire", "smoke", "jaywalking",
                          "driving outside lane")
SPLIT_FILES = ("abnormal_test_video_names.txt", "normal_test_video_names.txt")
_SCENE = re.compile(r"^(?:abnormal|normal)_scene_(\d+)_")


def read_tracks_file(path: str | Path) -> list[tuple[int, int, int]]:
    """``(object_id, start, end)`` per line of a UBnormal tracks file (comma separated, numbers may be floats)."""
    tracks = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        fields = [f for f in re.split(r"[,\s]+", line.strip()) if f]
        if not fields:
            continue
        if len(fields) < 3:
            raise ValueError(f"{path}: expected 'object_id,start,end', got {line!r}.")
        object_id, start, end = (int(round(float(f))) for f in fields[:3])
        tracks.append((object_id, start, end))
    return tracks


def _tracks_file(annotation_dir: Path, video_name: str) -> Path | None:
    for suffix in ("_new_tracks.txt", "_tracks.txt"):
        path = annotation_dir / f"{video_name}{suffix}"
        if path.is_file():
            return path
    return None


@dataclass
class UBnormalMasks:
    """Anomaly masks of one abnormal UBnormal video from its ``*_annotations`` folder (object-id PNGs + tracks)."""

    path: str
    kind: ClassVar[str] = "ubnormal"
    num_frames: ClassVar[None] = None  # only annotated frames have images

    def __post_init__(self) -> None:
        folder = Path(self.path)
        self.video_name = folder.name.removesuffix("_annotations")
        tracks_file = _tracks_file(folder, self.video_name)
        self.object_tracks = read_tracks_file(tracks_file) if tracks_file is not None else []

    def object_ids(self, index: int) -> list[int]:
        """Ids of the anomalous objects whose track covers frame ``index``."""
        return [object_id for object_id, start, end in self.object_tracks if start <= index <= end]

    def object_map(self, index: int) -> np.ndarray | None:
        """``[H, W]`` object-id image of frame ``index``, None when the frame has no annotation image."""
        path = Path(self.path) / f"{self.video_name}_{index:04d}_gt.png"
        if not path.is_file():
            return None
        with Image.open(path) as image:
            array = np.asarray(image)
        return array[..., 0] if array.ndim == 3 else array

    def frame(self, index: int, shape: tuple[int, int] | None = None) -> np.ndarray:
        ids = self.object_ids(index)
        objects = self.object_map(index) if ids else None
        if objects is None:
            if shape is None:
                raise ValueError(f"{self.path}: frame {index} has no annotation image; pass the frame shape.")
            return np.zeros(shape, dtype=bool)
        return np.isin(objects, ids)


def _load_tracks(masks: UBnormalMasks) -> list:
    from lavida.metrics import Track, largest_component_box

    tracks = []
    for object_id, start, end in masks.object_tracks:
        frames, boxes = [], []
        for index in range(start, end + 1):
            objects = masks.object_map(index)
            box = largest_component_box(objects == object_id) if objects is not None else None
            if box is None:
                logger.debug("%s: object %d has no pixels in frame %d", masks.video_name, object_id, index)
                continue
            frames.append(index)
            boxes.append(box)
        tracks.append(Track(object_id, np.asarray(frames, dtype=np.int64), np.asarray(boxes, dtype=np.float64)))
    return tracks


class UBnormal(Benchmark):
    """UBnormal test split (stride 4): frame labels from tracks, object masks, tracks for RBDC/TBDC."""

    name = "ubnormal"
    anomaly_names = UBNORMAL_ANOMALY_NAMES
    stride = 4
    has_masks = True
    has_tracks = True
    layout = ("Scene<N>/<video>.mp4, Scene<N>/<video>_annotations/{<video>_tracks.txt, <video>_<frame:04d>_gt.png}, "
              "and the split lists abnormal_test_video_names.txt + normal_test_video_names.txt")

    def _split_file(self, file_name: str) -> Path:
        for folder in (".", "scripts", "splits", "UBnormal/scripts"):
            path = self.data_root / folder / file_name
            if path.is_file():
                return path
        raise self.error(f"the official split list {file_name} is missing (copy it from the UBnormal repository's "
                         "scripts/ folder into the data root)")

    def _index(self) -> list[BenchmarkVideo]:
        names = []
        for file_name in SPLIT_FILES:
            lines = self._split_file(file_name).read_text(encoding="utf-8").split()
            names += [line.strip() for line in lines if line.strip()]
        videos, missing = [], []
        for video_name in sorted(set(names)):
            match = _SCENE.match(video_name)
            if match is None:
                raise self.error(f"cannot read the scene of test video name {video_name!r}")
            scene_dir = self.data_root / f"Scene{match.group(1)}"
            path = scene_dir / f"{video_name}.mp4"
            if not path.is_file():
                missing.append(video_name)
                continue
            annotation_dir = scene_dir / f"{video_name}_annotations"
            if video_name.startswith("abnormal") and annotation_dir.is_dir():
                masks = UBnormalMasks(str(annotation_dir))
                if not masks.object_tracks:
                    raise self.error(f"abnormal test video {video_name} has no tracks file in {annotation_dir.name}")
                ranges = [(start, end) for _, start, end in masks.object_tracks]
                videos.append(BenchmarkVideo(video_id=video_name, video=path, is_frame_folder=False, ranges=ranges,
                                             masks=masks, tracks_fn=lambda m=masks: _load_tracks(m)))
            elif video_name.startswith("abnormal"):
                raise self.error(f"the annotations of abnormal test video {video_name} are missing ({annotation_dir})")
            else:
                videos.append(BenchmarkVideo(video_id=video_name, video=path, is_frame_folder=False,
                                             masks=EmptyMasks()))
        if missing:
            raise self.error(f"{len(missing)} of {len(set(names))} test videos listed in the split files are missing, "
                             f"e.g. {missing[0]}.mp4")
        return videos


__all__ = ["SPLIT_FILES", "UBNORMAL_ANOMALY_NAMES", "UBnormal", "UBnormalMasks", "read_tracks_file"]
