"""Compositing a cut-out object into frames: resizing, feathered edges, and carrying it along a trajectory.

Used by both synthesis methods: copy-paste carries a cut-out from a segmentation source, inpainting carries the patch
it generated on the key frame. The object's mask on a frame is where the pasted object dominates (alpha >= 0.5),
clipped to the frame, so the label matches what is visible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from .trajectories import Trajectory

ALPHA_THRESHOLD = 0.5  # a pixel belongs to the pasted object where the object outweighs the background


@dataclass
class Cutout:
    """An object cut with its mask.

    Attributes:
        names: the names that describe it (the first is its main name).
        rgb: ``uint8 [h, w, 3]``, the object's bounding box.
        mask: ``bool [h, w]``, the object's pixels inside that box (non-empty).
    """

    names: list[str]
    rgb: np.ndarray
    mask: np.ndarray

    def __post_init__(self) -> None:
        if self.rgb.ndim != 3 or self.rgb.shape[:2] != self.mask.shape:
            raise ValueError(f"Cutout rgb {self.rgb.shape} and mask {self.mask.shape} must share [h, w].")
        if not self.mask.any():
            raise ValueError(f"Cutout {self.names} has an empty mask.")


def crop_to_mask(rgb: np.ndarray, mask: np.ndarray, names: list[str]) -> Cutout:
    """The bounding box of ``mask`` (``bool [H, W]``, non-empty) in ``rgb`` (``uint8 [H, W, 3]``) as a ``Cutout``."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise ValueError(f"Cannot cut {names}: the mask is empty.")
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    return Cutout(names=list(names), rgb=np.ascontiguousarray(rgb[top:bottom, left:right]),
                  mask=np.ascontiguousarray(mask[top:bottom, left:right]))


def feathered_alpha(mask: np.ndarray, radius: float) -> np.ndarray:
    """Soft opacity ``float32 [h, w]`` in [0, 1] of a binary mask ``bool [h, w]``.

    The ramp lies *inside* the mask (0 on its border, 1 at ``radius`` pixels in), so the pasted object never carries
    pixels of its original background. ``radius <= 0`` gives the hard mask.
    """
    hard = mask.astype(np.float32)
    if radius <= 0:
        return hard
    blurred = ndimage.gaussian_filter(hard, sigma=radius / 2, mode="constant")  # 0.5 on the border
    alpha = np.clip(2.0 * blurred - 1.0, 0.0, 1.0) * hard
    if not (alpha >= ALPHA_THRESHOLD).any():  # a sliver thinner than the ramp: keep it hard rather than lose it
        return hard
    return alpha.astype(np.float32)


def resize_cutout(cutout: Cutout, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The cut-out at ``height x width``: ``uint8 [height, width, 3]`` pixels and ``bool [height, width]`` mask."""
    size = (max(1, width), max(1, height))
    rgb = np.asarray(Image.fromarray(cutout.rgb).resize(size, Image.BILINEAR))
    soft = np.asarray(Image.fromarray(cutout.mask.astype(np.float32)).resize(size, Image.BILINEAR))
    mask = soft >= 0.5
    if not mask.any():  # a thin object shrunk below a pixel: keep its strongest pixel
        mask = soft >= soft.max()
    return rgb, mask


def paste(frame: np.ndarray, rgb: np.ndarray, alpha: np.ndarray, centre: tuple[float, float]
          ) -> tuple[np.ndarray, np.ndarray]:
    """Alpha-blend a patch into a frame with the patch centred at ``centre`` (x, y); parts outside are clipped.

    Args:
        frame: ``uint8 [H, W, 3]``.
        rgb: ``uint8 [h, w, 3]`` patch; alpha: ``float32 [h, w]`` its opacity.
        centre: patch centre in frame pixels.

    Returns:
        the new frame ``uint8 [H, W, 3]`` and the object's mask ``bool [H, W]`` (alpha >= 0.5).
    """
    height, width = frame.shape[:2]
    h, w = alpha.shape
    top = int(round(centre[1] - h / 2))
    left = int(round(centre[0] - w / 2))
    y0, y1 = max(0, top), min(height, top + h)
    x0, x1 = max(0, left), min(width, left + w)
    out = frame.copy()
    mask = np.zeros((height, width), dtype=bool)
    if y0 >= y1 or x0 >= x1:
        return out, mask
    a = alpha[y0 - top:y1 - top, x0 - left:x1 - left, None]  # (h', w', 1)
    patch = rgb[y0 - top:y1 - top, x0 - left:x1 - left].astype(np.float32)
    region = out[y0:y1, x0:x1].astype(np.float32)
    out[y0:y1, x0:x1] = np.clip(np.rint(a * patch + (1.0 - a) * region), 0, 255).astype(np.uint8)
    mask[y0:y1, x0:x1] = a[..., 0] >= ALPHA_THRESHOLD
    return out, mask


def carry(frames: np.ndarray, cutout: Cutout, size: tuple[float, float], trajectory: Trajectory,
          frame_indices: list[int], feather: float) -> tuple[np.ndarray, np.ndarray]:
    """Paste ``cutout`` on ``frame_indices`` of ``frames`` following ``trajectory``.

    Args:
        frames: ``uint8 [T, H, W, 3]`` normal frames (not modified).
        cutout: the object.
        size: ``(height, width)`` of the object at trajectory scale 1.
        trajectory: one centre and scale per entry of ``frame_indices``.
        frame_indices: the frames the object is shown on.
        feather: edge softness as a fraction of the pasted object's shorter side.

    Returns:
        frames ``uint8 [T, H, W, 3]`` and masks ``bool [T, H, W]`` (empty on frames without the object).
    """
    if len(trajectory) != len(frame_indices):
        raise ValueError(f"trajectory has {len(trajectory)} steps for {len(frame_indices)} frames.")
    out = frames.copy()
    masks = np.zeros(frames.shape[:3], dtype=bool)
    for step, t in enumerate(frame_indices):
        scale = float(trajectory.scales[step])
        height = max(1, int(round(size[0] * scale)))
        width = max(1, int(round(size[1] * scale)))
        rgb, mask = resize_cutout(cutout, height, width)
        alpha = feathered_alpha(mask, feather * min(height, width))
        out[t], masks[t] = paste(out[t], rgb, alpha, tuple(trajectory.centres[step]))
    return out, masks


__all__ = ["ALPHA_THRESHOLD", "Cutout", "carry", "crop_to_mask", "feathered_alpha", "paste", "resize_cutout"]
