"""RefCOCO, RefCOCO+, RefCOCOg and RefCLEF: referring expressions over COCO-format instance masks.

Layout (the REFER toolkit's ``data/`` folder), with ``DATA_ROOT`` the folder passed as ``--data-root``::

    DATA_ROOT/refcoco/{instances.json, refs(unc).p, refs(google).p}
    DATA_ROOT/refcoco+/{instances.json, refs(unc).p}
    DATA_ROOT/refcocog/{instances.json, refs(umd).p, refs(google).p}
    DATA_ROOT/refclef/{instances.json, refs(unc).p, refs(berkeley).p}
    DATA_ROOT/images/mscoco/images/train2014/COCO_train2014_*.jpg   (RefCOCO, RefCOCO+, RefCOCOg)
    DATA_ROOT/images/saiapr_tc-12/...                               (RefCLEF; file_name from instances.json)

``refs(<split_by>).p`` is a pickle (that is the release's format): a list of dicts with ``ref_id``, ``ann_id``,
``image_id``, ``category_id``, ``split`` ("train", "val", "testA", ...) and ``sentences`` (``[{"sent": ...}]``).
``instances.json`` is COCO instances: ``images``, ``annotations`` and ``categories``. An annotation's
``segmentation`` is a list of polygons (RefCOCO, RefCOCO+, RefCOCOg), a list of compressed RLE dicts (RefCLEF; their
union is the mask, as in the toolkit's ``REFER.getMask``), or empty (some RefCLEF annotations).

One item per image of the split; one object per referred annotation with a non-empty mask, named by all its
expressions (the sampler picks one); images without one are skipped. ``present_names`` holds every expression of
every ref in the image, whatever its split.
"""

from __future__ import annotations

import builtins
import logging
import pickle
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

from ..source_item import SourceItem, SourceObject
from .base import FrameFiles, Layout, sorted_unique
from .masks import coco_segmentation_to_mask

logger = logging.getLogger(__name__)

# dataset -> (default split_by, image folder relative to DATA_ROOT)
_COCO_IMAGES = "images/mscoco/images/train2014"
DATASETS: dict[str, tuple[str, str]] = {
    "refcoco": ("unc", _COCO_IMAGES),
    "refcoco+": ("unc", _COCO_IMAGES),
    "refcocog": ("umd", _COCO_IMAGES),
    "refclef": ("unc", "images/saiapr_tc-12"),
}
_REF_KEYS = ("ref_id", "ann_id", "image_id", "split", "sentences")


class _ContainersOnlyUnpickler(pickle.Unpickler):
    """Unpickles the REFER ``refs(*).p`` files, which are plain lists of dicts of strings and numbers.

    The release is a pickle, and a pickle can name any importable callable and have it run while loading. Those
    files need no global at all (only builtin container opcodes, plus ``set``/``frozenset`` in protocol 2), so any
    other global is refused: a tampered or wrong file fails with ``UnpicklingError`` instead of executing code.
    """

    _ALLOWED = frozenset(
        (module, name)
        for module in ("builtins", "__builtin__")  # the release was written by Python 2
        for name in ("list", "dict", "tuple", "set", "frozenset")
    )

    def find_class(self, module: str, name: str) -> type:
        if (module, name) in self._ALLOWED:
            return getattr(builtins, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a refs(*).p file")


def load_refs(path: Path) -> list[dict]:
    """Read a ``refs(*).p`` file with the restricted unpickler (Python-2 byte strings decoded as UTF-8)."""
    with path.open("rb") as handle:
        return _ContainersOnlyUnpickler(handle, encoding="utf-8", errors="replace").load()


class RefCocoReader:
    """Reads one of RefCOCO / RefCOCO+ / RefCOCOg / RefCLEF (see the module docstring for the layout).

    Args:
        data_root: the REFER ``data/`` folder.
        split: a split of the refs file ("train", "val", "test", "testA", "testB", ...).
        clip_length: unused (images give T = 1); accepted so every reader has the same signature.
        dataset: one of ``DATASETS``.
        split_by: which refs file, ``refs(<split_by>).p``; the dataset's usual one by default.
        image_root: where the images are, if not in the REFER layout.
    """

    max_names = 30
    is_video = False

    def __init__(
        self,
        data_root: Path,
        split: str = "train",
        clip_length: int = 8,
        dataset: str = "refcoco",
        split_by: str | None = None,
        image_root: Path | None = None,
    ) -> None:
        if dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {sorted(DATASETS)}, got {dataset!r}")
        default_split_by, image_folder = DATASETS[dataset]
        self.name = dataset
        self.split = split
        self.split_by = split_by or default_split_by
        refs_name = f"refs({self.split_by}).p"
        self.layout = Layout(
            dataset,
            Path(data_root),
            f"DATA_ROOT/{dataset}/{{instances.json, {refs_name}}} and images under DATA_ROOT/{image_folder}/ "
            "(the REFER toolkit's data/ folder)",
        )
        self.layout.require_dir(dataset)
        refs_path = self.layout.require_file(f"{dataset}/{refs_name}")
        self.image_root = Path(image_root) if image_root is not None else self.layout.require_dir(image_folder)
        self._refs = self._read_refs(refs_path)
        instances = self.layout.read_json(f"{dataset}/instances.json")
        if not isinstance(instances, dict) or not {"images", "annotations"} <= instances.keys():
            raise self.layout.error(f"{dataset}/instances.json lacks the COCO 'images' and 'annotations' lists")
        self._images = {image["id"]: image for image in instances["images"]}
        self._annotations = {annotation["id"]: annotation for annotation in instances["annotations"]}

        self._split_refs = [ref for ref in self._refs if ref["split"] == split]
        if not self._split_refs:
            splits = sorted({str(ref["split"]) for ref in self._refs})
            raise self.layout.error(f"no refs in split {split!r} of {refs_name}; its splits are {splits}")
        first_image = self._images.get(self._split_refs[0]["image_id"])
        if first_image is None or not (self.image_root / first_image["file_name"]).is_file():
            missing = first_image["file_name"] if first_image else f"image id {self._split_refs[0]['image_id']}"
            raise self.layout.error(f"image {missing} not found under {self.image_root}")

    def _read_refs(self, path: Path) -> list[dict]:
        try:
            refs = load_refs(path)
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as error:
            raise self.layout.error(f"{path.name} is not a REFER refs pickle ({error})") from error
        if not isinstance(refs, list) or not all(isinstance(r, dict) and set(_REF_KEYS) <= r.keys() for r in refs):
            raise self.layout.error(f"{path.name} must be a list of dicts with keys {list(_REF_KEYS)}")
        return refs

    @staticmethod
    def _sentences(ref: dict) -> list[str]:
        return [s["sent"].strip() for s in ref["sentences"] if s.get("sent", "").strip()]

    def name_pool(self) -> list[str]:
        """Every expression of the split."""
        return sorted_unique(sentence for ref in self._split_refs for sentence in self._sentences(ref))

    def iter_items(self) -> Iterator[SourceItem]:
        """One item per image of the split, by increasing image id."""
        refs_by_image: dict[int, list[dict]] = defaultdict(list)
        for ref in self._split_refs:
            refs_by_image[ref["image_id"]].append(ref)
        all_refs_by_image: dict[int, list[dict]] = defaultdict(list)
        for ref in self._refs:
            all_refs_by_image[ref["image_id"]].append(ref)
        skipped = 0
        left_out: Counter[str] = Counter()  # referred objects left out: "empty" or "unreadable" masks
        for image_id in sorted(refs_by_image):
            item = self._build_item(image_id, refs_by_image[image_id], all_refs_by_image[image_id], left_out)
            if item is None:
                skipped += 1
                continue
            yield item
        if left_out["empty"]:
            logger.info("%s: left out %d referred objects with an empty mask", self.name, left_out["empty"])
        if left_out["unreadable"]:
            logger.warning("%s: left out %d referred objects whose mask could not be read", self.name,
                           left_out["unreadable"])
        if skipped:
            logger.warning("%s: skipped %d images with missing files or without a non-empty referred mask",
                           self.name, skipped)

    def _build_item(self, image_id: int, refs: list[dict], all_refs: list[dict],
                    left_out: Counter[str]) -> SourceItem | None:
        """The item of one image, or None when its file is missing or no referred object has a non-empty mask.

        ``left_out`` counts the referred objects dropped for an "empty" or "unreadable" mask.
        """
        image = self._images.get(image_id)
        if image is None or not (self.image_root / image["file_name"]).is_file():
            return None
        height, width = int(image["height"]), int(image["width"])
        names_by_annotation: dict[int, list[str]] = defaultdict(list)
        for ref in refs:
            names_by_annotation[ref["ann_id"]] += self._sentences(ref)
        objects = []
        for ann_id, names in names_by_annotation.items():
            annotation = self._annotations.get(ann_id)
            if annotation is None or not names:
                continue
            try:
                mask = coco_segmentation_to_mask(annotation.get("segmentation", []), height, width)
            except ValueError as error:
                logger.debug("%s: annotation %s of image %s has an unreadable mask (%s)", self.name, ann_id,
                             image_id, error)
                left_out["unreadable"] += 1
                continue
            if not mask.any():  # RefCLEF has annotations with an empty segmentation list
                left_out["empty"] += 1
                continue
            objects.append(SourceObject(names=list(dict.fromkeys(names)), masks=mask[None]))  # [1, H, W]
        if not objects:
            return None
        present = {sentence for ref in all_refs for sentence in self._sentences(ref)}
        return SourceItem(
            item_id=str(image_id),
            source=self.name,
            load_frames=FrameFiles((self.image_root / image["file_name"],)),
            objects=objects,
            present_names=present,
        )


__all__ = ["DATASETS", "RefCocoReader", "load_refs"]
