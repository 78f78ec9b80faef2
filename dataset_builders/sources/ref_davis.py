"""Ref-DAVIS17: DAVIS 2017 videos with the referring expressions of Khoreva et al., in 8-frame clips.

Layout, with ``DATA_ROOT`` the folder holding the DAVIS release and the expression files side by side::

    DATA_ROOT/DAVIS/ImageSets/2017/{train,val}.txt          (one video name per line)
    DATA_ROOT/DAVIS/JPEGImages/480p/<video>/00000.jpg ...
    DATA_ROOT/DAVIS/Annotations/480p/<video>/00000.png ...  (palette PNG: index = object id)
    DATA_ROOT/davis_text_annotations/Davis17_annot{1,2}.txt and Davis17_annot{1,2}_full_video.txt
        one line per object: <video> <object id> "<expression>"

The two annotators each wrote a first-frame and a full-video expression per object; all the files found are read,
and an object is named by all its expressions (the sampler picks one). Every expression of the video counts as
present.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

from ..source_item import SourceItem
from .base import Layout, iter_video_clips, palette_objects, sorted_unique

logger = logging.getLogger(__name__)

EXPRESSION_FILES = (
    "Davis17_annot1.txt",
    "Davis17_annot1_full_video.txt",
    "Davis17_annot2.txt",
    "Davis17_annot2_full_video.txt",
)
# video names the expression files spell differently from the DAVIS folders
_VIDEO_NAME_FIXES = {"clasic-car": "classic-car", "dog-scale": "dogs-scale", "motor-bike": "motorbike"}
_SPLITS = {"train": "train", "val": "val", "validation": "val"}


def parse_expression_file(text: str) -> dict[str, dict[int, list[str]]]:
    """The lines ``<video> <object id> "<expression>"`` -> ``{video: {object id: [expressions]}}``."""
    expressions: dict[str, dict[int, list[str]]] = defaultdict(lambda: defaultdict(list))
    for number, line in enumerate(text.splitlines(), 1):
        parts = line.strip().split(maxsplit=2)
        if len(parts) < 3 or not parts[1].isdigit():
            if line.strip():
                logger.debug("skipping malformed expression line %d: %r", number, line)
            continue
        video, obj_id, expression = parts
        expression = expression.strip().strip('"').strip()
        if expression:
            expressions[_VIDEO_NAME_FIXES.get(video, video)][int(obj_id)].append(expression)
    return expressions


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:  # annotator 2's files are Latin-1
        return raw.decode("latin-1")


class RefDavisReader:
    """Reads Ref-DAVIS17 (see the module docstring for the layout).

    Args:
        data_root: the folder holding ``DAVIS/`` and ``davis_text_annotations/``.
        split: "train" or "val" (DAVIS 2017 ImageSets).
        clip_length: frames per clip.
    """

    name = "ref-davis"
    max_names = 30
    is_video = True

    def __init__(self, data_root: Path, split: str = "train", clip_length: int = 8) -> None:
        self.clip_length = clip_length
        self.layout = Layout(
            self.name,
            Path(data_root),
            "DATA_ROOT/DAVIS/{ImageSets/2017/{train,val}.txt, JPEGImages/480p/<video>/*.jpg, "
            "Annotations/480p/<video>/*.png} and DATA_ROOT/davis_text_annotations/Davis17_annot*.txt (Ref-DAVIS17)",
        )
        folder = self.layout.resolve_split(split, _SPLITS)
        split_file = self.layout.require_file(f"DAVIS/ImageSets/2017/{folder}.txt")
        self.image_dir = self.layout.require_dir("DAVIS/JPEGImages/480p")
        self.annotation_dir = self.layout.require_dir("DAVIS/Annotations/480p")
        text_dir = self.layout.require_dir("davis_text_annotations")
        files = [text_dir / name for name in EXPRESSION_FILES if (text_dir / name).is_file()]
        if not files:
            raise self.layout.error(f"davis_text_annotations/ holds none of {list(EXPRESSION_FILES)}")
        merged: dict[str, dict[int, list[str]]] = defaultdict(lambda: defaultdict(list))
        for path in files:
            for video, objects in parse_expression_file(_read_text(path)).items():
                for obj_id, expressions in objects.items():
                    merged[video][obj_id] += expressions
        video_names = [v.strip() for v in split_file.read_text(encoding="utf-8").splitlines() if v.strip()]
        # video -> {object id: unique expressions}, only videos of the split that have expressions
        self._videos = {
            video: {obj_id: list(dict.fromkeys(names)) for obj_id, names in sorted(merged[video].items())}
            for video in sorted(video_names)
            if video in merged
        }
        if not self._videos:
            raise self.layout.error(f"no video of ImageSets/2017/{folder}.txt has expressions")

    def name_pool(self) -> list[str]:
        """Every expression of the split's videos."""
        return sorted_unique(name for objects in self._videos.values() for names in objects.values() for name in names)

    def iter_items(self) -> Iterator[SourceItem]:
        """The clips of each video, videos in name order."""
        for video_id, objects in self._videos.items():
            annotations = sorted((self.annotation_dir / video_id).glob("*.png"))
            annotations = [p for p in annotations if (self.image_dir / video_id / f"{p.stem}.jpg").is_file()]
            if not annotations:
                logger.debug("%s: video %s has no annotated frames with images, skipped", self.name, video_id)
                continue
            frames = [self.image_dir / video_id / f"{p.stem}.jpg" for p in annotations]
            groups = {(obj_id,): names for obj_id, names in objects.items()}
            yield from iter_video_clips(
                self.name, video_id, frames, self.clip_length, palette_objects(annotations, groups),
                present_names={name for names in objects.values() for name in names},
            )


__all__ = ["EXPRESSION_FILES", "RefDavisReader", "parse_expression_file"]
