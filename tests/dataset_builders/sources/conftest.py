"""Writers of tiny files in the formats the source releases use (JPEG frames, palette / label-id PNGs, JSON)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

# the first DAVIS / YouTube-VOS palette colours: index 0 black, then red, green, yellow, ...
_PALETTE = [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0, 0, 0, 128, 128, 0, 128] + [0] * (256 * 3 - 18)


def write_jpeg(path: Path, height: int, width: int, value: int = 100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((height, width, 3), value, dtype=np.uint8)).save(path, quality=95)
    return path


def write_rgb_png(path: Path, height: int, width: int, value: int = 100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((height, width, 3), value, dtype=np.uint8)).save(path)
    return path


def write_palette_png(path: Path, indices: np.ndarray) -> Path:
    """A mode-P PNG whose pixel values are ``indices`` (as DAVIS / YouTube-VOS / Mapillary annotations)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    indices = np.ascontiguousarray(indices, dtype=np.uint8)
    image = Image.frombytes("P", (indices.shape[1], indices.shape[0]), indices.tobytes())
    image.putpalette(_PALETTE)
    image.save(path)
    return path


def write_label_png(path: Path, labels: np.ndarray) -> Path:
    """An 8-bit grey PNG of label ids (as ADE20K SceneParsing / Cityscapes labelIds)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(labels, dtype=np.uint8)).save(path)  # 2-D uint8 -> mode L
    return path


def write_json(path: Path, payload: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload), encoding="utf-8")
    return path


@pytest.fixture
def files() -> SimpleNamespace:
    return SimpleNamespace(
        jpeg=write_jpeg, rgb_png=write_rgb_png, palette_png=write_palette_png, label_png=write_label_png,
        json=write_json,
    )
