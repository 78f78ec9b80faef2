"""Mapillary Vistas v2.0: semantic label PNGs named by ``config_v2.0.json``.

Layout, with ``DATA_ROOT`` the extracted release::

    DATA_ROOT/config_v2.0.json                                   ({"labels": [{"name", "readable", ...}, ...]})
    DATA_ROOT/{training,validation}/images/<key>.jpg
    DATA_ROOT/{training,validation}/v2.0/labels/<key>.png        (palette PNG: index = position in "labels")

Names are the labels' ``readable`` strings in lower case; labels sharing a readable name form one object. The
``void--*`` labels (unlabeled, ego vehicle, car mount, ...) name nothing a user would ask about and are skipped.
One item per image; one object per class visible.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..source_item import SourceItem
from .base import FrameFiles, Layout, objects_from_label_maps, read_label_png, sorted_unique

logger = logging.getLogger(__name__)

_SPLITS = {"train": "training", "training": "training", "val": "validation", "validation": "validation"}
_VOID_PREFIX = "void--"


class MapillaryReader:
    """Reads Mapillary Vistas v2.0 (see the module docstring for the layout).

    Args:
        data_root: the extracted release, holding ``config_v2.0.json``.
        split: "train" or "val".
        clip_length: unused (images give T = 1).
    """

    name = "mapillary"
    max_names = 20
    is_video = False

    def __init__(self, data_root: Path, split: str = "train", clip_length: int = 8) -> None:
        self.layout = Layout(
            self.name,
            Path(data_root),
            "DATA_ROOT/config_v2.0.json, DATA_ROOT/{training,validation}/images/*.jpg and "
            "DATA_ROOT/{training,validation}/v2.0/labels/*.png (Mapillary Vistas v2.0)",
        )
        folder = self.layout.resolve_split(split, _SPLITS)
        config = self.layout.read_json("config_v2.0.json")
        labels = config.get("labels") if isinstance(config, dict) else None
        if not isinstance(labels, list) or not all(isinstance(x, dict) and "readable" in x for x in labels):
            raise self.layout.error("config_v2.0.json has no 'labels' list of {'name', 'readable'} entries")
        ids_by_name: dict[str, list[int]] = defaultdict(list)
        self._all_names: dict[int, str] = {}
        for label_id, label in enumerate(labels):
            readable = label["readable"].strip().lower()
            self._all_names[label_id] = readable
            if not label.get("name", "").startswith(_VOID_PREFIX):
                ids_by_name[readable].append(label_id)
        self._groups = {tuple(ids): (name,) for name, ids in ids_by_name.items()}

        image_dir = self.layout.require_dir(f"{folder}/images")
        label_dir = self.layout.require_dir(f"{folder}/v2.0/labels")
        self._pairs = [
            (image, label_dir / f"{image.stem}.png")
            for image in sorted(image_dir.glob("*.jpg"))
            if (label_dir / f"{image.stem}.png").is_file()
        ]
        if not self._pairs:
            raise self.layout.error(f"no image in {folder}/images with a label PNG in {folder}/v2.0/labels")

    def name_pool(self) -> list[str]:
        """Every non-void class."""
        return sorted_unique(names[0] for names in self._groups.values())

    def iter_items(self) -> Iterator[SourceItem]:
        """One item per labelled image, in file-name order."""
        for image, label_path in self._pairs:
            labels = read_label_png(label_path)[None]  # [1, H, W]
            objects = objects_from_label_maps(labels, self._groups)
            if not objects:
                continue
            present = {self._all_names[label] for label in np.unique(labels).tolist() if label in self._all_names}
            yield SourceItem(
                item_id=image.stem,
                source=self.name,
                load_frames=FrameFiles((image,)),
                objects=objects,
                present_names=present,
            )


__all__ = ["MapillaryReader"]
