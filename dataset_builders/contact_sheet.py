"""Contact sheets of corpus samples: a row per sample, frames with their mask outlined, names on the right."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

OUTLINE = (255, 40, 200)


def _outline(mask: np.ndarray) -> np.ndarray:
    """Boundary pixels of a binary mask (the mask minus its 4-neighbour erosion)."""
    inner = mask.copy()
    inner[1:, :] &= mask[:-1, :]
    inner[:-1, :] &= mask[1:, :]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    return mask & ~inner


def draw_contact_sheet(rows: list[dict[str, Any]], out_path: str | os.PathLike, frames_per_row: int = 4,
                       tile: int = 160, text_width: int = 300) -> Path:
    """Write a PNG with one row per corpus sample (rows as ``datasets`` returns them: PIL frames and masks)."""
    if not rows:
        raise ValueError("No samples to draw.")
    height = tile + 8
    sheet = Image.new("RGB", (frames_per_row * (tile + 4) + text_width, len(rows) * height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for r, row in enumerate(rows):
        frames, masks = row["frames"], row["masks"]
        picks = np.linspace(0, len(frames) - 1, num=min(frames_per_row, len(frames))).round().astype(int)
        for c, index in enumerate(picks):
            frame = np.asarray(frames[index].convert("RGB").resize((tile, tile), Image.NEAREST)).copy()
            mask = np.asarray(masks[index].convert("L").resize((tile, tile), Image.NEAREST)) > 127
            edge = _outline(mask)
            for shift in ((0, 0), (1, 0), (0, 1)):  # a 2-px line
                frame[np.roll(edge, shift, axis=(0, 1))] = OUTLINE
            sheet.paste(Image.fromarray(frame), (c * (tile + 4), r * height + 4))
        x = frames_per_row * (tile + 4) + 6
        truth = [n for n, label in zip(row["names"], row["name_labels"]) if label]
        status = "ANOMALOUS: " + ", ".join(truth) if row["is_anomalous"] else "normal (no listed name present)"
        draw.text((x, r * height + 6), f"{row['source']} | {row['sample_id']}"[:48], fill=(90, 90, 90))
        draw.text((x, r * height + 22), status[:48], fill=(200, 30, 30) if row["is_anomalous"] else (30, 120, 30))
        names = ", ".join(row["names"])
        lines = [names[i:i + 46] for i in range(0, min(len(names), 46 * 7), 46)]
        for k, line in enumerate(lines):
            draw.text((x, r * height + 42 + 14 * k), line, fill=(0, 0, 0))
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out_path)
    return out_path


__all__ = ["draw_contact_sheet"]
