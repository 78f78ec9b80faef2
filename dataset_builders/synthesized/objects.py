"""Where synthesised objects come from: a segmentation source, the synthetic world, or a list of names.

``--objects`` is resolved by ``resolve_objects``:

- a source name of ``lavida.dataset_builders.sources`` (``ade20k``, ``mevis``, ...; read from ``--data-root``): objects
  are cut with their masks from its items (``SourceBank``);
- ``synthetic``: coloured shapes of the synthetic world, training compositions only (``SyntheticShapeBank``);
- otherwise a list of names: a ``.txt`` file with one name per line, or comma-separated names (``NameBank``). Names
  have no appearance, so they serve diffusion inpainting only (the name is the prompt).

Every bank gives ``name_pool()`` (the distractor pool) and ``names(index)``; banks with an appearance also give
``cutout(index, rng)``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from scipy import ndimage

from lavida.errors import UserInputError

from ..synthetic_world import COLOURS, COLOUR_NAMES, SHAPES, TRAINING_COMPOSITIONS, composition_name, draw_shape_mask
from .blending import Cutout, crop_to_mask

logger = logging.getLogger(__name__)

SYNTHETIC_OBJECTS = "synthetic"


class ObjectBank(Protocol):
    """Objects a synthesised item can show; ``index`` is taken modulo ``len(bank)``."""

    has_appearance: bool

    def __len__(self) -> int: ...

    def name_pool(self) -> list[str]:
        """Every name usable as a distractor, sorted, no duplicates."""
        ...

    def names(self, index: int) -> list[str]:
        """The names of object ``index`` (the first is the prompt for inpainting)."""
        ...

    def cutout(self, index: int, rng: np.random.Generator) -> Cutout:
        """Object ``index`` cut with its mask (banks with an appearance only)."""
        ...


class NameBank:
    """Objects known by name only (for diffusion inpainting, where the name is the prompt)."""

    has_appearance = False

    def __init__(self, names: list[str]):
        self._names = list(dict.fromkeys(n.strip() for n in names if n.strip()))
        if not self._names:
            raise UserInputError("--objects gave no names: pass comma-separated names, a .txt file with one name per "
                                 "line, a source name or 'synthetic'.")

    def __len__(self) -> int:
        return len(self._names)

    def name_pool(self) -> list[str]:
        return sorted(self._names)

    def names(self, index: int) -> list[str]:
        return [self._names[index % len(self._names)]]

    def cutout(self, index: int, rng: np.random.Generator) -> Cutout:
        raise UserInputError("Copy-paste needs objects with masks, and a list of names has none: pass a source name "
                             "(with --data-root) or 'synthetic' as --objects, or use --method inpaint.")


class SyntheticShapeBank:
    """Coloured shapes of the synthetic world (training compositions only, so held-out ones stay unseen).

    Args:
        side: the shape's bounding-box side in pixels when cut (it is rescaled when pasted).
        shading: standard deviation of the per-pixel brightness noise, so shapes are not perfectly flat.
    """

    has_appearance = True

    def __init__(self, side: int = 64, shading: float = 6.0):
        self.side = side
        self.shading = shading
        self._compositions = TRAINING_COMPOSITIONS

    def __len__(self) -> int:
        return len(self._compositions)

    def name_pool(self) -> list[str]:
        return sorted(composition_name(*c) for c in self._compositions)

    def names(self, index: int) -> list[str]:
        return [composition_name(*self._compositions[index % len(self)])]

    def cutout(self, index: int, rng: np.random.Generator) -> Cutout:
        colour, shape = self._compositions[index % len(self)]
        size = self.side + 2
        mask = draw_shape_mask(SHAPES[shape], (size / 2, size / 2), self.side, size)
        base = np.asarray(COLOURS[COLOUR_NAMES[colour]], dtype=np.float32)
        rgb = base[None, None, :] + rng.normal(0.0, self.shading, size=(size, size, 1))  # (size, size, 3)
        rgb = np.clip(rgb, 0, 255).astype(np.uint8)
        return crop_to_mask(rgb, mask, self.names(index))


@dataclass(frozen=True)
class _SourceObjectRef:
    """Where one object of a source lies: the item's lazy frames, the frame with most of it, and its mask there
    cropped to its box (full-frame masks of hundreds of video objects would not fit in memory)."""

    names: tuple[str, ...]
    load_frames: Callable[[], np.ndarray]
    frame: int
    box: tuple[int, int, int, int]  # top, left, height, width
    mask: np.ndarray  # bool [height, width]


class SourceBank:
    """Objects cut with their masks from a segmentation source reader.

    Each object of the reader's items gives one entry: its frame with the largest mask, keeping the largest connected
    part (a category mask may cover several instances; one is pasted). Objects smaller than ``min_area`` pixels or
    covering more than ``max_fraction`` of their frame (stuff such as a wall) are skipped. Frames load lazily.

    Args:
        reader: a source reader (``name_pool()``, ``iter_items()``).
        max_objects: stop scanning the source after this many objects.
        min_area: smallest object in pixels.
        max_fraction: largest object as a fraction of its frame.
    """

    has_appearance = True

    def __init__(self, reader, max_objects: int = 500, min_area: int = 64, max_fraction: float = 0.5):
        self.reader = reader
        self._pool = list(reader.name_pool())
        self._objects: list[_SourceObjectRef] = []
        for item in reader.iter_items():
            for obj in item.objects:
                masks = np.asarray(obj.masks, dtype=bool)  # (T, H, W)
                areas = masks.reshape(len(masks), -1).sum(axis=1)
                frame = int(areas.argmax())
                mask = _largest_component(masks[frame])
                if mask.sum() < min_area or mask.mean() > max_fraction:  # also skips empty masks
                    continue
                rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
                box = (int(rows[0]), int(cols[0]), int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1))
                crop = mask[box[0]:box[0] + box[2], box[1]:box[1] + box[3]].copy()
                self._objects.append(_SourceObjectRef(tuple(obj.names), item.load_frames, frame, box, crop))
            if len(self._objects) >= max_objects:
                break
        if not self._objects:
            raise UserInputError(f"Source {reader.name!r} has no object of at least {min_area} pixels and at most "
                                 f"{max_fraction:.0%} of its frame to cut: check --data-root.")
        logger.info("%s: %d objects to paste", reader.name, len(self._objects))

    def __len__(self) -> int:
        return len(self._objects)

    def name_pool(self) -> list[str]:
        return self._pool

    def names(self, index: int) -> list[str]:
        return list(self._objects[index % len(self)].names)

    def cutout(self, index: int, rng: np.random.Generator) -> Cutout:
        ref = self._objects[index % len(self)]
        top, left, height, width = ref.box
        rgb = ref.load_frames()[ref.frame][top:top + height, left:left + width]  # (h, w, 3)
        return Cutout(names=list(ref.names), rgb=np.ascontiguousarray(rgb), mask=ref.mask)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, count = ndimage.label(mask)
    if count <= 1:
        return mask
    sizes = np.bincount(labels.ravel())[1:]
    return labels == int(sizes.argmax()) + 1


def parse_names(spec: str) -> list[str]:
    """Names from a ``.txt`` file (one per line, ``#`` comments) or a comma-separated string."""
    path = Path(spec)
    if path.suffix.lower() == ".txt":
        if not path.is_file():
            raise UserInputError(f"--objects {spec}: no such names file.")
        lines = path.read_text(encoding="utf-8").splitlines()
        return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return [name.strip() for name in spec.split(",") if name.strip()]


def resolve_objects(spec: str, method: str, data_root: str | Path | None = None, **source_kwargs) -> ObjectBank:
    """The object bank named by ``--objects`` (see the module docstring).

    Args:
        spec: a source name, ``synthetic``, a ``.txt`` file of names or comma-separated names.
        method: ``copy-paste`` or ``inpaint``. Inpainting from a source uses its name pool as prompts (no cut-outs).
        data_root: the source's release folder (source names only).
        **source_kwargs: passed to ``get_source`` (``split``, ``clip_length``...).

    Raises:
        UserInputError: a source without ``--data-root``, or names with copy-paste.
    """
    from ..sources import SOURCE_NAMES, get_source

    key = spec.strip().lower().replace("_", "-")
    if key == SYNTHETIC_OBJECTS:
        return SyntheticShapeBank()
    if key in SOURCE_NAMES:
        if data_root is None:
            raise UserInputError(f"--objects {spec} reads the source's release folder: pass --data-root DIR.")
        reader = get_source(key, data_root, **source_kwargs)
        return NameBank(reader.name_pool()) if method == "inpaint" else SourceBank(reader)
    bank = NameBank(parse_names(spec))
    if method != "inpaint":
        bank.cutout(0, np.random.default_rng(0))  # raises the copy-paste error now, not mid-build
    return bank


__all__ = ["NameBank", "ObjectBank", "SYNTHETIC_OBJECTS", "SourceBank", "SyntheticShapeBank", "parse_names",
           "resolve_objects"]
