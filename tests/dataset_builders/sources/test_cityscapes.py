"""Cityscapes gtFine: labelIds PNGs, or polygons JSON drawn in order (later objects hide earlier ones)."""

from __future__ import annotations

import numpy as np
import pytest

from lavida.dataset_builders.sources import get_source
from lavida.errors import UserInputError

TRAFFIC_LIGHT, CAR, BICYCLE = 19, 26, 33


def _rectangle(x0, y0, x1, y1):
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def _write_cityscapes(root, files):
    # aachen: a labelIds PNG with a traffic light (6 px), a car (not a target) and a bicycle (4 px)
    labels = np.zeros((12, 16), dtype=np.uint8)
    labels[0:3, 0:2] = TRAFFIC_LIGHT
    labels[5:8, 5:9] = CAR
    labels[10:12, 14:16] = BICYCLE
    files.rgb_png(root / "leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png", 12, 16)
    files.label_png(root / "gtFine/train/aachen/aachen_000000_000019_gtFine_labelIds.png", labels)
    # bochum: polygons only
    polygons = {"imgHeight": 12, "imgWidth": 16, "objects": [
        {"label": "bicycle", "polygon": _rectangle(2, 2, 7, 6)},  # 30 px ...
        {"label": "car", "polygon": _rectangle(5, 2, 9, 6)},  # ... of which the car hides columns 5-7: 15 left
        {"label": "license plate", "polygon": _rectangle(2, 2, 3, 3)},  # never drawn
        {"label": "bicyclegroup", "polygon": _rectangle(10, 10, 11, 11)},  # + 4 px of bicycle
        {"label": "truck", "polygon": _rectangle(0, 8, 3, 11), "deleted": 1},  # deleted: not drawn
    ]}
    files.rgb_png(root / "leftImg8bit/train/bochum/bochum_000000_000313_leftImg8bit.png", 12, 16)
    files.json(root / "gtFine/train/bochum/bochum_000000_000313_gtFine_polygons.json", polygons)
    # an image without any target class
    files.rgb_png(root / "leftImg8bit/train/bremen/bremen_000000_000019_leftImg8bit.png", 12, 16)
    files.label_png(root / "gtFine/train/bremen/bremen_000000_000019_gtFine_labelIds.png", np.zeros((12, 16)))


def test_reads_label_ids_and_polygons(tmp_path, files):
    _write_cityscapes(tmp_path, files)
    reader = get_source("cityscapes", tmp_path)
    assert (reader.max_names, reader.is_video) == (6, False)
    assert reader.name_pool() == sorted(
        ["traffic light", "traffic sign", "terrain", "truck", "bus", "train", "motorcycle", "bicycle"])

    items = list(reader.iter_items())
    assert [item.item_id for item in items] == ["aachen_000000_000019", "bochum_000000_000313"]
    assert items[0].load_frames().shape == (1, 12, 16, 3)
    assert {obj.names[0]: int(obj.masks.sum()) for obj in items[0].objects} == {"traffic light": 6, "bicycle": 4}
    assert items[0].present_names == {"traffic light", "bicycle"}
    (bicycle,) = items[1].objects
    assert bicycle.names == ["bicycle"] and bicycle.masks.shape == (1, 12, 16)
    assert bicycle.masks.sum() == 15 + 4
    assert bicycle.masks[0, 2:7, 2:5].all() and not bicycle.masks[0, :, 5:8].any()


def test_missing_gtfine_names_the_layout(tmp_path, files):
    files.rgb_png(tmp_path / "leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png", 4, 4)
    with pytest.raises(UserInputError, match=r"missing folder gtFine/train.*_gtFine_labelIds\.png"):
        get_source("cityscapes", tmp_path)
    (tmp_path / "gtFine/train/aachen").mkdir(parents=True)
    with pytest.raises(UserInputError, match="no leftImg8bit image with a gtFine annotation"):
        get_source("cityscapes", tmp_path)
