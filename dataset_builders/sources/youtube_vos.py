"""YouTube-VOS 2019 (video object segmentation): category-named objects in 8-frame clips.

Layout, with ``DATA_ROOT`` the extracted release::

    DATA_ROOT/train/meta.json                       ({"videos": {<vid>: {"objects": {"1": {"category", "frames"}}}}})
    DATA_ROOT/train/JPEGImages/<vid>/<frame>.jpg
    DATA_ROOT/train/Annotations/<vid>/<frame>.png   (palette PNG: index = object id, every 5th frame)

Clips are taken over the annotated frames. Instances of the same category are merged into one object named by the
category, and a target is 1-2 such objects (category video source). Every category annotated anywhere in the video
counts as present. Only the train split has masks on every annotated frame.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

from ..source_item import SourceItem
from .base import Layout, iter_video_clips, palette_objects, sorted_unique

logger = logging.getLogger(__name__)

_SPLITS = {"train": "train"}


class YoutubeVosReader:
    """Reads YouTube-VOS 2019 (see the module docstring for the layout).

    Args:
        data_root: the release folder holding ``train/``.
        split: "train".
        clip_length: frames per clip.
    """

    name = "youtube-vos"
    max_names = 30
    is_video = True

    def __init__(self, data_root: Path, split: str = "train", clip_length: int = 8) -> None:
        self.clip_length = clip_length
        self.layout = Layout(
            self.name,
            Path(data_root),
            "DATA_ROOT/train/meta.json, DATA_ROOT/train/JPEGImages/<video>/*.jpg and "
            "DATA_ROOT/train/Annotations/<video>/*.png (YouTube-VOS 2019)",
        )
        self.folder = self.layout.resolve_split(split, _SPLITS)
        meta = self.layout.read_json(f"{self.folder}/meta.json")
        self.image_dir = self.layout.require_dir(f"{self.folder}/JPEGImages")
        self.annotation_dir = self.layout.require_dir(f"{self.folder}/Annotations")
        videos = meta.get("videos") if isinstance(meta, dict) else None
        if not isinstance(videos, dict):
            raise self.layout.error(f"{self.folder}/meta.json has no 'videos' mapping")
        # video -> {category: object ids}
        self._videos: dict[str, dict[str, list[int]]] = {}
        try:
            for video_id, video in sorted(videos.items()):
                categories: dict[str, list[int]] = defaultdict(list)
                for obj_id, obj in video["objects"].items():
                    categories[obj["category"]].append(int(obj_id))
                self._videos[video_id] = dict(categories)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            problem = f"{self.folder}/meta.json: a video lacks objects/<id>/category ({error!r})"
            raise self.layout.error(problem) from error
        if not any((self.annotation_dir / video_id).is_dir() for video_id in self._videos):
            raise self.layout.error(f"no video of meta.json has a folder in {self.folder}/Annotations")

    def name_pool(self) -> list[str]:
        """Every category of the split."""
        return sorted_unique(category for categories in self._videos.values() for category in categories)

    def iter_items(self) -> Iterator[SourceItem]:
        """The clips of each video, videos in id order."""
        for video_id, categories in self._videos.items():
            annotations = sorted((self.annotation_dir / video_id).glob("*.png"))
            annotations = [p for p in annotations if (self.image_dir / video_id / f"{p.stem}.jpg").is_file()]
            if not annotations:
                logger.debug("%s: video %s has no annotated frames with images, skipped", self.name, video_id)
                continue
            frames = [self.image_dir / video_id / f"{p.stem}.jpg" for p in annotations]
            groups = {tuple(ids): (category,) for category, ids in categories.items()}
            yield from iter_video_clips(
                self.name, video_id, frames, self.clip_length, palette_objects(annotations, groups),
                present_names=set(categories), group_size=(1, 2),
            )


__all__ = ["YoutubeVosReader"]
