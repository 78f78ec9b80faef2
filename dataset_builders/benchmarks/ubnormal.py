"""UBnormal (Acsintoae et al., CVPR 2022), test split: all 211 test videos (abnormal and normal).

Official layout (the download, https://github.com/lilygeorgescu/UBnormal: the data root holds the scene folders; the
split lists come from the repository's ``scripts/`` folder and may sit in the data root, ``scripts/`` or ``splits/``)::

    Scene1/abnormal_scene_1_scenario_1.mp4
    Scene1/abnormal_scene_1_scenario_1_annotations/abnormal_scene_1_scenario_1_tracks.txt
        one line per anomalous object: "object_id,start_frame,end_frame" (0-based, inclusive)
    Scene1/abnormal_scene_1_scenario_1_annotations/abnormal_scene_1_scenario_1_new_tracks.txt   (some videos)
    Scene1/abnormal_scene_1_scenario_1_annotations/abnormal_scene_1_scenario_1_0123_gt.png
        per-frame object maps: each pixel holds its object's id (0 = background)
    Scene1/normal_scene_1_scenario_2.mp4
    abnormal_test_video_names.txt, normal_test_video_names.txt    names without extension, one per line

As the authors' scripts do (``scripts/readme.md``, ``write_frame_level_ground_truth.py``,
``create_tracks_for_tbdc_rbdc.py``):

- frame labels come from ``*_tracks.txt`` only: ``ground_truth[start:end + 1] = 1`` for each line;
- the ground-truth tracks of RBDC/TBDC come from ``*_new_tracks.txt`` when the video has one, else ``*_tracks.txt``;
  a track's box in a frame is the bounding box of the largest connected piece of its object's pixels there;
- object maps are read as grayscale (``cv2.imread(path, 0)``): a colour PNG is converted with the ITU-R 601 luma
  weights, which leave an id stored in all three channels unchanged.

The anomaly mask of a frame (for pixel-level metrics, which UBnormal does not define) is the union of the pixels of
the objects whose ``*_tracks.txt`` line covers the frame, so it agrees with the frame labels. The number of decoded
frames of each video fixes the label length.
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
    """``(object_id, start, end)`` per line of a UBnormal tracks file (comma separated, numbers may be floats).

    Numbers are truncated to integers as the authors' scripts do (``int(track[1])``, ``np.loadtxt`` floats)."""
    tracks = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        fields = [f for f in re.split(r"[,\s]+", line.strip()) if f]
        if not fields:
            continue
        if len(fields) < 3:
            raise ValueError(f"{path}: expected 'object_id,start,end', got {line!r}.")
        object_id, start, end = (int(float(f)) for f in fields[:3])
        tracks.append((object_id, start, end))
    return tracks


LABEL_TRACKS_SUFFIX = "_tracks.txt"  # frame-level ground truth
REGION_TRACKS_SUFFIXES = ("_new_tracks.txt", "_tracks.txt")  # RBDC/TBDC ground truth, the first that exists


def read_object_map(path: str | Path) -> np.ndarray:
    """A ``*_gt.png`` object map as the authors read it, grayscale (``cv2.imread(path, 0)``): ``uint8 [H, W]``.

    Single-channel maps are returned as stored (16-bit ones reduced to their high byte, as OpenCV's 8-bit read
    does); colour and palette maps are converted to luma (ITU-R 601-2), which keeps an id written in all channels.
    """
    with Image.open(path) as image:
        if image.mode in ("L", "1"):
            return np.asarray(image.convert("L"), dtype=np.uint8)
        if image.mode.startswith("I"):  # 16- or 32-bit grey
            return (np.asarray(image, dtype=np.int64) >> 8).clip(0, 255).astype(np.uint8)
        return np.asarray(image.convert("RGB").convert("L"), dtype=np.uint8)


def _first_file(annotation_dir: Path, video_name: str, suffixes: tuple[str, ...]) -> Path | None:
    for suffix in suffixes:
        path = annotation_dir / f"{video_name}{suffix}"
        if path.is_file():
            return path
    return None


@dataclass
class UBnormalMasks:
    """Anomaly masks of one abnormal UBnormal video from its ``*_annotations`` folder (object maps + tracks).

    Attributes:
        object_tracks: ``(object_id, start, end)`` of ``*_tracks.txt``: the frame labels and the anomaly masks.
        region_tracks: the same from ``*_new_tracks.txt`` when present, else ``object_tracks``: the RBDC/TBDC tracks.
    """

    path: str
    kind: ClassVar[str] = "ubnormal"
    num_frames: ClassVar[None] = None  # only annotated frames have images

    def __post_init__(self) -> None:
        folder = Path(self.path)
        self.video_name = folder.name.removesuffix("_annotations")
        labels_file = _first_file(folder, self.video_name, (LABEL_TRACKS_SUFFIX,))
        self.object_tracks = read_tracks_file(labels_file) if labels_file is not None else []
        regions_file = _first_file(folder, self.video_name, REGION_TRACKS_SUFFIXES)
        self.region_tracks = (read_tracks_file(regions_file) if regions_file not in (None, labels_file)
                              else list(self.object_tracks))

    def object_ids(self, index: int) -> list[int]:
        """Ids of the anomalous objects whose ``*_tracks.txt`` line covers frame ``index``."""
        return [object_id for object_id, start, end in self.object_tracks if start <= index <= end]

    def object_map(self, index: int) -> np.ndarray | None:
        """``uint8 [H, W]`` object-id map of frame ``index`` (read as grayscale), None when the frame has none."""
        path = Path(self.path) / f"{self.video_name}_{index:04d}_gt.png"
        if not path.is_file():
            return None
        return read_object_map(path)

    def frame(self, index: int, shape: tuple[int, int] | None = None) -> np.ndarray:
        ids = self.object_ids(index)
        objects = self.object_map(index) if ids else None
        if objects is None:
            if shape is None:
                raise ValueError(f"{self.path}: frame {index} has no annotation image; pass the frame shape.")
            return np.zeros(shape, dtype=bool)
        return np.isin(objects, ids)


def _load_tracks(masks: UBnormalMasks) -> list:
    """The RBDC/TBDC ground-truth tracks (``lavida.metrics.Track``) of one abnormal video."""
    from lavida.metrics import Track, largest_component_box

    tracks = []
    for object_id, start, end in masks.region_tracks:
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
    layout = ("Scene<N>/<video>.mp4, Scene<N>/<video>_annotations/{<video>_tracks.txt, [<video>_new_tracks.txt], "
              "<video>_<frame:04d>_gt.png}, and the split lists abnormal_test_video_names.txt + "
              "normal_test_video_names.txt")

    def _split_file(self, file_name: str) -> Path:
        """The split list ``file_name``, in the data root or a ``scripts``/``splits`` folder of it."""
        folders = (".", "scripts", "splits", "UBnormal/scripts")
        for folder in folders:
            path = self.data_root / folder / file_name
            if path.is_file():
                return path
        looked = ", ".join("the data root" if f == "." else f"{f}/" for f in folders)
        raise self.error(f"the official split list {file_name} is missing; looked in {looked} (copy it from the "
                         "UBnormal repository's scripts/ folder into the data root)")

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
                    raise self.error(f"abnormal test video {video_name} has no (or an empty) "
                                     f"{video_name}{LABEL_TRACKS_SUFFIX} in {annotation_dir}")
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


__all__ = ["LABEL_TRACKS_SUFFIX", "REGION_TRACKS_SUFFIXES", "SPLIT_FILES", "UBNORMAL_ANOMALY_NAMES", "UBnormal",
           "UBnormalMasks", "read_object_map", "read_tracks_file"]
