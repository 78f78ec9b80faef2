"""ADE20K in the SceneParsing (ADEChallengeData2016) layout: 150 classes, minus 20 background ones.

Layout, with ``DATA_ROOT`` the ``ADEChallengeData2016`` folder::

    DATA_ROOT/images/{training,validation}/ADE_{train,val}_XXXXXXXX.jpg
    DATA_ROOT/annotations/{training,validation}/ADE_{train,val}_XXXXXXXX.png   (8-bit: 0 = other, k = class k)

One item per image; one object per (non-background) class visible in it, named by the class (semantic source).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..source_item import SourceItem
from .base import FrameFiles, Layout, objects_from_label_maps, read_label_png, sorted_unique

logger = logging.getLogger(__name__)

# The 150 SceneParsing classes in label order (label k is ADE20K_CLASSES[k - 1]); the first synonym of each line
# of the release's objectInfo150.txt.
ADE20K_CLASSES: tuple[str, ...] = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair",
    "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field",
    "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion",
    "base", "box", "column", "signboard", "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace",
    "refrigerator", "grandstand", "path", "stairs", "runway", "case", "pool table", "pillow", "screen door",
    "stairway", "river", "bridge", "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill",
    "bench", "countertop", "stove", "palm", "kitchen island", "computer", "swivel chair", "boat", "bar",
    "arcade machine", "hovel", "bus", "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight",
    "booth", "television receiver", "airplane", "dirt track", "apparel", "pole", "land", "bannister", "escalator",
    "ottoman", "bottle", "buffet", "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy",
    "washer", "plaything", "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike",
    "cradle", "oven", "ball", "food", "step", "tank", "trade name", "microwave", "pot", "animal",
    "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture", "hood", "sconce", "vase", "traffic light",
    "tray", "ashcan", "fan", "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator",
    "glass", "clock", "flag",
)  # fmt: skip

# The 20 classes LAVIDA never uses as anomaly targets nor as distractors: ground, sky, terrain, water surfaces and
# building shells that fill a scene rather than stand out in it. This is the list of the authors' reference code
# (ADE20K dataset of the paper's training data).
ADE20K_BACKGROUND_CLASSES: tuple[str, ...] = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "grass", "sidewalk", "earth",
    "mountain", "field", "sea", "sand", "path", "runway", "river", "hill", "land", "lake",
)  # fmt: skip

_SPLITS = {"train": "training", "training": "training", "val": "validation", "validation": "validation"}


class Ade20kReader:
    """Reads ADE20K SceneParsing (see the module docstring for the layout).

    Args:
        data_root: the ``ADEChallengeData2016`` folder.
        split: "train" or "val".
        clip_length: unused (images give T = 1).
    """

    name = "ade20k"
    max_names = 30
    is_video = False

    def __init__(self, data_root: Path, split: str = "train", clip_length: int = 8) -> None:
        self.layout = Layout(
            self.name,
            Path(data_root),
            "DATA_ROOT/images/{training,validation}/*.jpg and DATA_ROOT/annotations/{training,validation}/*.png "
            "(the ADEChallengeData2016 folder of the SceneParsing release)",
        )
        folder = self.layout.resolve_split(split, _SPLITS)
        self.image_dir = self.layout.require_dir(f"images/{folder}")
        self.annotation_dir = self.layout.require_dir(f"annotations/{folder}")
        self._pairs = [
            (image, self.annotation_dir / f"{image.stem}.png")
            for image in sorted(self.image_dir.glob("*.jpg"))
            if (self.annotation_dir / f"{image.stem}.png").is_file()
        ]
        if not self._pairs:
            raise self.layout.error(f"no image with a matching annotation PNG in images/{folder}")
        background = set(ADE20K_BACKGROUND_CLASSES)
        # label id -> class name, background classes excluded
        self._groups = {
            (label,): (name,) for label, name in enumerate(ADE20K_CLASSES, start=1) if name not in background
        }

    def name_pool(self) -> list[str]:
        """The 130 object classes."""
        return sorted_unique(names[0] for names in self._groups.values())

    def iter_items(self) -> Iterator[SourceItem]:
        """One item per annotated image, in file-name order."""
        for image_path, annotation_path in self._pairs:
            labels = read_label_png(annotation_path)[None]  # [1, H, W]
            objects = objects_from_label_maps(labels, self._groups)
            if not objects:
                continue
            present = {ADE20K_CLASSES[label - 1] for label in np.unique(labels).tolist()
                       if 1 <= label <= len(ADE20K_CLASSES)}
            yield SourceItem(
                item_id=image_path.stem,
                source=self.name,
                load_frames=FrameFiles((image_path,)),
                objects=objects,
                present_names=present,
            )


__all__ = ["ADE20K_BACKGROUND_CLASSES", "ADE20K_CLASSES", "Ade20kReader"]
