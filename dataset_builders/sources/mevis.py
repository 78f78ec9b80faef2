"""MeViS: motion expressions over video objects, masks as COCO RLE, in 8-frame clips.

Layout, with ``DATA_ROOT`` the extracted release::

    DATA_ROOT/{train,valid_u}/meta_expressions.json
        {"videos": {<vid>: {"expressions": {"0": {"exp": str, "obj_id": [int], "anno_id": [int]}, ...},
                            "frames": ["00000", ...]}}}
    DATA_ROOT/{train,valid_u}/mask_dict.json
        {"<anno_id>": [RLE or null, one per frame]}   (RLE = {"size": [H, W], "counts": compressed string})
    DATA_ROOT/{train,valid_u}/JPEGImages/<vid>/<frame>.jpg

An expression may refer to several objects; its mask is the union of its ``anno_id`` masks. One object per distinct
set of ``anno_id``, named by all expressions referring to exactly that set. Every expression of the video counts as
present. ``valid`` (no masks) is not readable; ``val`` means ``valid_u``.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from ..source_item import SourceItem, SourceObject
from .base import Layout, iter_video_clips, sorted_unique
from .masks import decode_coco_rle
from .ref_youtube_vos import read_meta_expressions

logger = logging.getLogger(__name__)

_SPLITS = {"train": "train", "val": "valid_u", "valid_u": "valid_u"}


class MevisReader:
    """Reads MeViS (see the module docstring for the layout).

    Args:
        data_root: the release folder holding ``train/`` (and ``valid_u/``).
        split: "train" or "val" (= ``valid_u``).
        clip_length: frames per clip.
    """

    name = "mevis"
    max_names = 30
    is_video = True

    def __init__(self, data_root: Path, split: str = "train", clip_length: int = 8) -> None:
        self.clip_length = clip_length
        self.layout = Layout(
            self.name,
            Path(data_root),
            "DATA_ROOT/{train,valid_u}/meta_expressions.json, DATA_ROOT/{train,valid_u}/mask_dict.json and "
            "DATA_ROOT/{train,valid_u}/JPEGImages/<video>/*.jpg (MeViS)",
        )
        folder = self.layout.resolve_split(split, _SPLITS)
        self.image_dir = self.layout.require_dir(f"{folder}/JPEGImages")
        self._videos = read_meta_expressions(self.layout, f"{folder}/meta_expressions.json", "anno_id")
        self._mask_dict = self.layout.read_json(f"{folder}/mask_dict.json")
        if not isinstance(self._mask_dict, dict):
            raise self.layout.error(f"{folder}/mask_dict.json must map anno ids to per-frame RLE lists")
        for video in self._videos.values():
            for expression in video["expressions"].values():
                missing = [a for a in expression["anno_id"] if str(a) not in self._mask_dict]
                if missing:
                    raise self.layout.error(
                        f"expression {expression['exp']!r} refers to anno ids {missing} that "
                        f"{folder}/mask_dict.json lacks"
                    )

    def name_pool(self) -> list[str]:
        """Every expression of the split."""
        return sorted_unique(
            e["exp"].strip() for video in self._videos.values() for e in video["expressions"].values()
        )

    def _objects_for(self, groups: dict[tuple[int, ...], list[str]]) -> Callable[[list[int]], list[SourceObject]]:
        """``objects_for`` of ``iter_video_clips``: decode each group's RLEs on the clip's frames."""
        size = self._video_size(groups)

        def objects_for(indices: list[int]) -> list[SourceObject]:
            objects = []
            for anno_ids, names in groups.items():
                masks = np.zeros((len(indices), *size), dtype=bool)  # [T, H, W]
                for t, frame in enumerate(indices):
                    for anno_id in anno_ids:
                        per_frame = self._mask_dict[str(anno_id)]
                        rle = per_frame[frame] if frame < len(per_frame) else None
                        if rle is not None:
                            masks[t] |= decode_coco_rle(rle)
                if masks.any():
                    objects.append(SourceObject(names=names, masks=masks))
            return objects

        return objects_for

    def _video_size(self, groups: dict[tuple[int, ...], list[str]]) -> tuple[int, int]:
        """(H, W) of the video's masks, from its first RLE."""
        for anno_ids in groups:
            for anno_id in anno_ids:
                for rle in self._mask_dict[str(anno_id)]:
                    if rle is not None:
                        return int(rle["size"][0]), int(rle["size"][1])
        return 0, 0

    def iter_items(self) -> Iterator[SourceItem]:
        """The clips of each video, videos in id order."""
        for video_id in sorted(self._videos):
            video = self._videos[video_id]
            frames = [self.image_dir / video_id / f"{frame}.jpg" for frame in video["frames"]]
            if not frames or not all(p.is_file() for p in frames):
                logger.debug("%s: video %s has missing frames, skipped", self.name, video_id)
                continue
            expressions: dict[tuple[int, ...], list[str]] = defaultdict(list)
            for expression in video["expressions"].values():
                if expression["exp"].strip() and expression["anno_id"]:
                    key = tuple(sorted(int(a) for a in expression["anno_id"]))
                    expressions[key].append(expression["exp"].strip())
            groups = {key: list(dict.fromkeys(names)) for key, names in sorted(expressions.items())}
            if not groups:
                continue
            present = {e["exp"].strip() for e in video["expressions"].values() if e["exp"].strip()}
            yield from iter_video_clips(
                self.name, video_id, frames, self.clip_length, self._objects_for(groups), present
            )


__all__ = ["MevisReader"]
