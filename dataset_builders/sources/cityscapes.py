"""Cityscapes fine annotations: the 8 object classes LAVIDA uses as anomaly targets.

Layout, with ``DATA_ROOT`` the folder holding ``leftImg8bit/`` and ``gtFine/``::

    DATA_ROOT/leftImg8bit/{train,val}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    DATA_ROOT/gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png     (label ids, preferred)
    DATA_ROOT/gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_polygons.json    (used when no labelIds PNG)

The polygons are drawn in file order, each over the ones before, exactly as the release's ``json2labelImg`` does, so
both annotation forms give the same label map. One item per image; one object per target class visible.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..source_item import SourceItem
from .base import FrameFiles, Layout, objects_from_label_maps, read_label_png

logger = logging.getLogger(__name__)

# Cityscapes label id -> name, for the 8 classes of the paper's recipe (ids from the release's labels.py)
CITYSCAPES_CLASSES: dict[int, str] = {
    19: "traffic light",
    20: "traffic sign",
    22: "terrain",
    27: "truck",
    28: "bus",
    31: "train",
    32: "motorcycle",
    33: "bicycle",
}
_UNDRAWN_LABELS = frozenset({"license plate"})  # negative id in the release: never drawn into label maps
_GROUP_SUFFIX = "group"  # "bicyclegroup" = a crowd of bicycles, drawn with the bicycle id
_SPLITS = {"train": "train", "val": "val", "validation": "val"}
_IMAGE_SUFFIX = "_leftImg8bit.png"


def polygons_to_label_map(annotation: dict) -> np.ndarray:
    """Render a ``*_gtFine_polygons.json`` into ``int32 [H, W]`` ids of the 8 target classes (0 elsewhere).

    Every other label is drawn as 0, so it still hides the target objects it covers.
    """
    ids_by_name = {name: label for label, name in CITYSCAPES_CLASSES.items()}
    canvas = Image.new("I", (int(annotation["imgWidth"]), int(annotation["imgHeight"])), 0)
    draw = ImageDraw.Draw(canvas)
    for obj in annotation["objects"]:
        if obj.get("deleted"):
            continue
        label = obj["label"]
        if label not in ids_by_name and label.endswith(_GROUP_SUFFIX):
            label = label[: -len(_GROUP_SUFFIX)]
        if label in _UNDRAWN_LABELS or len(obj["polygon"]) < 3:
            continue
        points = [(float(x), float(y)) for x, y in obj["polygon"]]
        value = ids_by_name.get(label, 0)
        draw.polygon(points, fill=value, outline=value)
    return np.asarray(canvas, dtype=np.int32)


class CityscapesReader:
    """Reads Cityscapes gtFine (see the module docstring for the layout).

    Args:
        data_root: the folder with ``leftImg8bit/`` and ``gtFine/``.
        split: "train" or "val" (the test split has no public labels).
        clip_length: unused (images give T = 1).
    """

    name = "cityscapes"
    max_names = 6
    is_video = False

    def __init__(self, data_root: Path, split: str = "train", clip_length: int = 8) -> None:
        self.layout = Layout(
            self.name,
            Path(data_root),
            "DATA_ROOT/leftImg8bit/{train,val}/<city>/*_leftImg8bit.png and DATA_ROOT/gtFine/{train,val}/<city>/"
            "*_gtFine_labelIds.png or *_gtFine_polygons.json",
        )
        folder = self.layout.resolve_split(split, _SPLITS)
        image_dir = self.layout.require_dir(f"leftImg8bit/{folder}")
        label_dir = self.layout.require_dir(f"gtFine/{folder}")
        self._samples: list[tuple[Path, Path]] = []
        for image in sorted(image_dir.glob(f"*/*{_IMAGE_SUFFIX}")):
            stem = image.name[: -len(_IMAGE_SUFFIX)]
            for suffix in ("_gtFine_labelIds.png", "_gtFine_polygons.json"):
                annotation = label_dir / image.parent.name / f"{stem}{suffix}"
                if annotation.is_file():
                    self._samples.append((image, annotation))
                    break
        if not self._samples:
            raise self.layout.error(f"no leftImg8bit image with a gtFine annotation in split {folder!r}")
        self._groups = {(label,): (name,) for label, name in CITYSCAPES_CLASSES.items()}

    def name_pool(self) -> list[str]:
        """The 8 target classes."""
        return sorted(CITYSCAPES_CLASSES.values())

    def _label_map(self, path: Path) -> np.ndarray:
        if path.suffix == ".png":
            return read_label_png(path)
        try:
            annotation = json.loads(path.read_text(encoding="utf-8"))
            return polygons_to_label_map(annotation)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise self.layout.error(f"{path.name} is not a gtFine polygons file ({error!r})") from error

    def iter_items(self) -> Iterator[SourceItem]:
        """One item per image showing at least one target class, in file-name order."""
        for image, annotation in self._samples:
            labels = self._label_map(annotation)[None]  # [1, H, W]
            objects = objects_from_label_maps(labels, self._groups)
            if not objects:
                continue
            yield SourceItem(
                item_id=image.name[: -len(_IMAGE_SUFFIX)],
                source=self.name,
                load_frames=FrameFiles((image,)),
                objects=objects,
                present_names={name for obj in objects for name in obj.names},
            )


__all__ = ["CITYSCAPES_CLASSES", "CityscapesReader", "polygons_to_label_map"]
