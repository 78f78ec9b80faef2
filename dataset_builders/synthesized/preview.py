"""A PNG comparing normal and synthesised frames: per item, the original frames, the synthesised frames, and the
synthesised frames with the object's mask outlined, side by side in time."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .source import SynthesisResult

OUTLINE = (255, 40, 200)
ROW_LABELS = ("original", "synthesised", "mask outline")
LABEL_WIDTH = 96
HEADER = 18
GAP = 4


def mask_outline(mask: np.ndarray, width: int = 2) -> np.ndarray:
    """``bool [H, W]``: pixels within ``width`` of the border of ``mask`` ``bool [H, W]``, on its inside."""
    inner = mask.copy()
    for _ in range(width):
        eroded = inner.copy()
        eroded[1:, :] &= inner[:-1, :]
        eroded[:-1, :] &= inner[1:, :]
        eroded[:, 1:] &= inner[:, :-1]
        eroded[:, :-1] &= inner[:, 1:]
        inner = eroded
    return mask & ~inner


def _tile(frame: np.ndarray, tile: int) -> np.ndarray:
    """``frame`` resized so its longest side is ``tile``."""
    height, width = frame.shape[:2]
    scale = tile / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(frame).resize(size, Image.BILINEAR)).copy()


def draw_synthesis_preview(results: list[SynthesisResult], out_path: str | os.PathLike, frames_per_row: int = 4,
                           tile: int = 160) -> Path:
    """Write the comparison PNG (written to a temporary file, then renamed into place).

    Args:
        results: synthesised items (``SynthesizedSource.synthesize``).
        out_path: the PNG to write.
        frames_per_row: frames shown per item, evenly spaced over the clip.
        tile: longest side of a frame tile in pixels.
    """
    if not results:
        raise ValueError("No synthesised item to draw.")
    if frames_per_row < 1 or tile < 8:
        raise ValueError(f"frames_per_row must be >= 1 and tile >= 8, got {frames_per_row}, {tile}.")
    heights = [_tile(result.frames[0], tile).shape[0] for result in results]  # row height follows the aspect
    blocks = [HEADER + len(ROW_LABELS) * (h + GAP) + 2 * GAP for h in heights]
    sheet = Image.new("RGB", (LABEL_WIDTH + frames_per_row * (tile + GAP), sum(blocks)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    y0 = 0
    for result, row_height, block in zip(results, heights, blocks):
        shown = [t for t in range(len(result.masks)) if result.masks[t].any()]
        caption = f"{result.item_id} | object: {result.names[0]} | shown on {len(shown)}/{len(result.masks)} frames"
        draw.text((4, y0 + 3), caption[:120], fill=(0, 0, 0))
        picks = np.linspace(0, len(result.frames) - 1, num=min(frames_per_row, len(result.frames)))
        for c, t in enumerate(picks.round().astype(int)):
            x = LABEL_WIDTH + c * (tile + GAP)
            original = _tile(result.original[t], tile)
            synthesised = _tile(result.frames[t], tile)
            mask = np.asarray(Image.fromarray(result.masks[t]).resize(synthesised.shape[1::-1], Image.NEAREST))
            outlined = synthesised.copy()
            outlined[mask_outline(mask)] = OUTLINE
            for k, image in enumerate((original, synthesised, outlined)):
                sheet.paste(Image.fromarray(image), (x, y0 + HEADER + k * (row_height + GAP)))
            draw.text((x + 2, y0 + HEADER + 2), f"t={t}", fill=(255, 255, 0))
        for k, label in enumerate(ROW_LABELS):
            draw.text((4, y0 + HEADER + k * (row_height + GAP) + row_height // 2 - 6), label, fill=(60, 60, 60))
        y0 += block
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = out_path.with_name(f".{out_path.name}.{uuid.uuid4().hex}.partial")
    try:
        sheet.save(partial, format="PNG")
        os.replace(partial, out_path)
    finally:
        partial.unlink(missing_ok=True)
    return out_path


__all__ = ["draw_synthesis_preview", "mask_outline"]
