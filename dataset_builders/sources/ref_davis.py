"""Ref-DAVIS17: DAVIS 2017 videos with the referring expressions of Khoreva et al., in 8-frame clips.

Layout, with ``DATA_ROOT`` the folder holding the DAVIS release and the expression files side by side::

    DATA_ROOT/DAVIS/ImageSets/2017/{train,val}.txt                       (one video name per line)
    DATA_ROOT/DAVIS/JPEGImages/480p/<video>/00000.jpg ...
    DATA_ROOT/DAVIS/Annotations_unsupervised/480p/<video>/00000.png ...  (palette PNG: index = object id)
    DATA_ROOT/DAVIS/Annotations/480p/<video>/00000.png ...               (used for a video only without the above)
    DATA_ROOT/davis_text_annotations/Davis17_annot{1,2}.txt and Davis17_annot{1,2}_full_video.txt
        one line per object: <video> <object id> "<expression>"

Masks: the RVOS code that pairs the expression files with DAVIS (ReferFormer's ``tools/data/convert_davis_to_ytvos.py``
and the repositories that follow it) takes the object ids of the expressions from ``Annotations_unsupervised/480p``,
the annotation set of ``DAVIS-2017-Unsupervised-trainval-480p.zip``, so that set is preferred. The semi-supervised
set (``Annotations/480p`` of ``DAVIS-2017-trainval-480p.zip``) annotates the objects of some videos differently (the
unsupervised set was annotated anew), so its ids need not match; it is read for a video only when
``Annotations_unsupervised/480p`` has no folder for it.

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
# the annotation sets, preferred first: the one the expression files' object ids are paired with, then the other
ANNOTATION_DIRS = ("DAVIS/Annotations_unsupervised/480p", "DAVIS/Annotations/480p")


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
            "Annotations_unsupervised/480p/<video>/*.png (or Annotations/480p)} and "
            "DATA_ROOT/davis_text_annotations/Davis17_annot*.txt (Ref-DAVIS17)",
        )
        folder = self.layout.resolve_split(split, _SPLITS)
        split_file = self.layout.require_file(f"DAVIS/ImageSets/2017/{folder}.txt")
        self.image_dir = self.layout.require_dir("DAVIS/JPEGImages/480p")
        root = self.layout.data_root
        self.annotation_dirs = [root / d for d in ANNOTATION_DIRS if (root / d).is_dir()]
        if not self.annotation_dirs:
            raise self.layout.error(f"missing folder {' or '.join(ANNOTATION_DIRS)}")
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

    def annotation_dir(self, video_id: str) -> Path | None:
        """The folder of ``video_id``'s masks: in the first of ``ANNOTATION_DIRS`` that has one, else None."""
        for root in self.annotation_dirs:
            if (root / video_id).is_dir():
                return root / video_id
        return None

    def iter_items(self) -> Iterator[SourceItem]:
        """The clips of each video, videos in name order."""
        for video_id, objects in self._videos.items():
            annotation_dir = self.annotation_dir(video_id)
            if annotation_dir is None:
                logger.debug("%s: video %s has no annotation folder, skipped", self.name, video_id)
                continue
            annotations = sorted(annotation_dir.glob("*.png"))
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


__all__ = ["ANNOTATION_DIRS", "EXPRESSION_FILES", "RefDavisReader", "parse_expression_file"]
