"""Mask codecs the source releases use: COCO run-length encoding and polygons.

COCO (and everything built on its tools: RefCOCO, MeViS's ``mask_dict.json``) stores a mask either as polygons,
as uncompressed RLE (``counts`` a list of ints, used for crowd regions) or as compressed RLE (``counts`` a string);
RefCLEF stores a list of compressed RLEs per annotation.
The codecs here are written from the format's definition so the project does not depend on ``pycocotools``:

- RLE runs are taken over the mask in **column-major** (Fortran) order and alternate 0-runs and 1-runs, starting
  with a (possibly empty) 0-run.
- The compressed string stores each run as a little-endian sequence of 5-bit groups, one printable character per
  group (value + 48); bit 0x20 says another group follows, bit 0x10 of the last group is the sign. From the
  fourth run on, the value stored is the difference to the run two places earlier (runs of the same kind).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

logger = logging.getLogger(__name__)

_CHAR_OFFSET = 48  # compressed RLE characters start at "0"
_GROUP_BITS = 5
_GROUP_MASK = 0x1F
_MORE_BIT = 0x20
_SIGN_BIT = 0x10


def _decode_counts(counts: str) -> list[int]:
    """Compressed RLE string -> run lengths."""
    runs: list[int] = []
    position = 0
    while position < len(counts):
        value = 0
        shift = 0
        more = True
        while more:
            if position >= len(counts):
                raise ValueError("compressed RLE string ends in the middle of a run")
            group = ord(counts[position]) - _CHAR_OFFSET
            value |= (group & _GROUP_MASK) << shift
            more = bool(group & _MORE_BIT)
            position += 1
            shift += _GROUP_BITS
            if not more and group & _SIGN_BIT:
                value |= -1 << shift  # sign-extend the last group
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
    return runs


def _encode_counts(runs: Sequence[int]) -> str:
    """Run lengths -> compressed RLE string (inverse of ``_decode_counts``)."""
    characters: list[str] = []
    for index, run in enumerate(runs):
        value = int(run) - (int(runs[index - 2]) if index > 2 else 0)
        more = True
        while more:
            group = value & _GROUP_MASK
            value >>= _GROUP_BITS
            more = value != -1 if group & _SIGN_BIT else value != 0
            if more:
                group |= _MORE_BIT
            characters.append(chr(group + _CHAR_OFFSET))
    return "".join(characters)


def decode_coco_rle(rle: dict) -> np.ndarray:
    """Decode one COCO RLE (compressed string or uncompressed list counts).

    Args:
        rle: ``{"size": [H, W], "counts": str | list[int]}``.

    Returns:
        ``bool [H, W]``.

    Raises:
        ValueError: if the runs do not add up to ``H * W`` or the dict lacks ``size``/``counts``.
    """
    try:
        height, width = (int(v) for v in rle["size"])
        counts = rle["counts"]
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"not a COCO RLE dict with 'size' and 'counts': {type(rle).__name__}") from error
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    runs = _decode_counts(counts) if isinstance(counts, str) else [int(c) for c in counts]
    if sum(runs) != height * width or any(r < 0 for r in runs):
        raise ValueError(f"RLE runs add up to {sum(runs)} pixels, expected {height}x{width}={height * width}")
    values = np.zeros(len(runs), dtype=bool)
    values[1::2] = True  # runs alternate 0, 1, 0, ... starting with zeros
    flat = np.repeat(values, runs)
    return flat.reshape((height, width), order="F")


def encode_coco_rle(mask: np.ndarray) -> dict:
    """Encode ``bool [H, W]`` as a COCO compressed RLE ``{"size": [H, W], "counts": str}``."""
    mask = np.asarray(mask, dtype=bool)
    flat = mask.reshape(-1, order="F").astype(np.int8)
    change = np.flatnonzero(np.diff(flat)) + 1
    boundaries = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(boundaries).tolist()
    if flat.size and flat[0]:
        runs = [0, *runs]  # the first run always counts zeros
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": _encode_counts(runs)}


def rasterize_polygons(polygons: Sequence[Sequence[float]], height: int, width: int) -> np.ndarray:
    """Fill polygons (union) with PIL.

    PIL rounds vertices to pixels and fills the outline too, which is how the Cityscapes scripts render their
    polygons; for COCO polygons it gives about half a pixel more along the border than ``pycocotools``.

    Args:
        polygons: each a flat ``[x1, y1, x2, y2, ...]`` list (COCO) of at least 3 points.
        height, width: the image size.

    Returns:
        ``bool [H, W]``.
    """
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for polygon in polygons:
        points = [(float(polygon[i]), float(polygon[i + 1])) for i in range(0, len(polygon) - 1, 2)]
        if len(points) < 3:
            logger.debug("skipping a degenerate polygon with %d points", len(points))
            continue
        draw.polygon(points, fill=1, outline=1)
    return np.asarray(canvas, dtype=bool)


def coco_segmentation_to_mask(segmentation: list | dict, height: int, width: int) -> np.ndarray:
    """A COCO-style ``annotation["segmentation"]`` -> ``bool [H, W]``, in every shape the REFER releases use.

    - a list of polygons (flat ``[x1, y1, ...]`` lists): RefCOCO, RefCOCO+, RefCOCOg;
    - one RLE dict (uncompressed or compressed counts): COCO crowd regions;
    - a list of RLE dicts: RefCLEF (the REFER toolkit's ``getMask`` treats a list whose first element is not a list
      as RLEs and sums the decoded maps, so the mask is their union);
    - an empty list: an annotation without a mask (RefCLEF has some); the result is all zero.

    Raises:
        ValueError: for an element that is neither a polygon nor an RLE dict, or an RLE whose ``size`` is not the
            image's ``[height, width]``.
    """
    if isinstance(segmentation, dict):
        return _rle_for_image(segmentation, height, width)
    if not isinstance(segmentation, list):
        raise ValueError(f"unknown COCO segmentation type {type(segmentation).__name__}")
    mask = np.zeros((height, width), dtype=bool)
    polygons = [part for part in segmentation if isinstance(part, (list, tuple))]
    rles = [part for part in segmentation if isinstance(part, dict)]
    if len(polygons) + len(rles) != len(segmentation):
        kinds = sorted({type(part).__name__ for part in segmentation if not isinstance(part, (list, tuple, dict))})
        raise ValueError(f"a segmentation list holds {kinds}; expected polygons (lists) or RLE dicts")
    if polygons:
        mask |= rasterize_polygons(polygons, height, width)
    for rle in rles:
        mask |= _rle_for_image(rle, height, width)
    return mask


def _rle_for_image(rle: dict, height: int, width: int) -> np.ndarray:
    """Decode ``rle``, which must cover the whole ``height x width`` image."""
    mask = decode_coco_rle(rle)
    if mask.shape != (height, width):
        raise ValueError(f"RLE size {list(mask.shape)} differs from the image size {[height, width]}")
    return mask


__all__ = ["coco_segmentation_to_mask", "decode_coco_rle", "encode_coco_rle", "rasterize_polygons"]
