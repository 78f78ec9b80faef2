"""Ref-YouTube-VOS: referring expressions over YouTube-VOS objects, in 8-frame clips.

Layout, with ``DATA_ROOT`` the extracted release::

    DATA_ROOT/meta_expressions/train/meta_expressions.json
        {"videos": {<vid>: {"expressions": {"0": {"exp": str, "obj_id": "1"}, ...}, "frames": ["00000", ...]}}}
    DATA_ROOT/train/JPEGImages/<vid>/<frame>.jpg
    DATA_ROOT/train/Annotations/<vid>/<frame>.png   (palette PNG: index = obj_id)

Clips are taken over each video's ``frames`` list (the annotated frames). One object per ``obj_id``, named by all
its expressions (the sampler picks one). Every expression of the video counts as present, so a distractor is always
an expression of another video. Only the train split has masks.
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


def read_meta_expressions(layout: Layout, relative: str, target_key: str = "obj_id") -> dict[str, dict]:
    """``meta_expressions.json`` -> ``{video: {"expressions": {id: {"exp", target_key, ...}}, "frames": [...]}}``.

    Args:
        layout: the source's layout (for errors).
        relative: the file, relative to the data root.
        target_key: the key naming what an expression refers to ("obj_id"; MeViS: "anno_id").

    Raises:
        UserInputError: if the file is missing or not in the release's shape.
    """
    meta = layout.read_json(relative)
    videos = meta.get("videos") if isinstance(meta, dict) else None
    if not isinstance(videos, dict) or not all(
        isinstance(v, dict) and isinstance(v.get("expressions"), dict) and isinstance(v.get("frames"), list)
        for v in videos.values()
    ):
        raise layout.error(f"{relative} must map 'videos' to {{video: {{'expressions': {{...}}, 'frames': [...]}}}}")
    for video_id, video in videos.items():
        for expression in video["expressions"].values():
            if not isinstance(expression, dict) or not isinstance(expression.get("exp"), str) or (
                target_key not in expression
            ):
                raise layout.error(f"{relative}: an expression of video {video_id} lacks 'exp' or {target_key!r}")
    return videos


class RefYoutubeVosReader:
    """Reads Ref-YouTube-VOS (see the module docstring for the layout).

    Args:
        data_root: the release folder holding ``train/`` and ``meta_expressions/``.
        split: "train".
        clip_length: frames per clip.
    """

    name = "ref-youtube-vos"
    max_names = 30
    is_video = True

    def __init__(self, data_root: Path, split: str = "train", clip_length: int = 8) -> None:
        self.clip_length = clip_length
        self.layout = Layout(
            self.name,
            Path(data_root),
            "DATA_ROOT/meta_expressions/train/meta_expressions.json, DATA_ROOT/train/JPEGImages/<video>/*.jpg "
            "and DATA_ROOT/train/Annotations/<video>/*.png (Ref-YouTube-VOS)",
        )
        folder = self.layout.resolve_split(split, _SPLITS)
        self._videos = read_meta_expressions(self.layout, f"meta_expressions/{folder}/meta_expressions.json")
        self.image_dir = self.layout.require_dir(f"{folder}/JPEGImages")
        self.annotation_dir = self.layout.require_dir(f"{folder}/Annotations")
        if not any((self.annotation_dir / video_id).is_dir() for video_id in self._videos):
            raise self.layout.error(f"no video of meta_expressions.json has a folder in {folder}/Annotations")

    def name_pool(self) -> list[str]:
        """Every expression of the split."""
        return sorted_unique(
            e["exp"].strip() for video in self._videos.values() for e in video["expressions"].values()
        )

    def iter_items(self) -> Iterator[SourceItem]:
        """The clips of each video, videos in id order."""
        for video_id in sorted(self._videos):
            video = self._videos[video_id]
            frames = [self.image_dir / video_id / f"{frame}.jpg" for frame in video["frames"]]
            annotations = [self.annotation_dir / video_id / f"{frame}.png" for frame in video["frames"]]
            if not frames or not all(p.is_file() for p in (*frames, *annotations)):
                logger.debug("%s: video %s has missing frames or annotations, skipped", self.name, video_id)
                continue
            expressions: dict[int, list[str]] = defaultdict(list)
            for expression in video["expressions"].values():
                if expression["exp"].strip():
                    expressions[int(expression["obj_id"])].append(expression["exp"].strip())
            groups = {(obj_id,): list(dict.fromkeys(names)) for obj_id, names in sorted(expressions.items())}
            yield from iter_video_clips(
                self.name, video_id, frames, self.clip_length, palette_objects(annotations, groups),
                present_names={name for names in groups.values() for name in names},
            )


__all__ = ["RefYoutubeVosReader", "read_meta_expressions"]
