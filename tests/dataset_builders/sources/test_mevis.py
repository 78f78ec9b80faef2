"""MeViS: meta_expressions.json + mask_dict.json (COCO compressed RLE per anno id and frame) + JPEGImages."""

from __future__ import annotations

import numpy as np
import pytest

from lavida.dataset_builders.sources import get_source
from lavida.dataset_builders.sources.masks import encode_coco_rle
from lavida.errors import UserInputError

H, W = 12, 10


def _box(y0, y1, x0, x1):
    mask = np.zeros((H, W), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return encode_coco_rle(mask)


def _write_mevis(root, files):
    frames = [f"{i:05d}" for i in range(8)]
    for frame in frames:
        files.jpeg(root / "train" / "JPEGImages" / "v1" / f"{frame}.jpg", H, W)
    files.json(root / "train" / "meta_expressions.json", {"videos": {"v1": {
        "expressions": {
            "0": {"exp": "two birds flying", "obj_id": [0, 1], "anno_id": [5, 6]},
            "1": {"exp": "bird flying to the left", "obj_id": [0], "anno_id": [5]},
            "2": {"exp": "the birds moving", "obj_id": [1, 0], "anno_id": [6, 5]},
        },
        "vid_id": 0, "frames": frames,
    }}})
    files.json(root / "train" / "mask_dict.json", {
        "5": [_box(0, 2, 0, 3) for _ in frames],  # 6 px on every frame
        "6": [None] * 4 + [_box(6, 10, 6, 8) for _ in range(4)],  # 8 px, from frame 4 on
    })


def test_reads_rle_masks_and_multi_object_expressions(tmp_path, files):
    _write_mevis(tmp_path, files)
    reader = get_source("mevis", tmp_path)
    assert (reader.max_names, reader.is_video) == (30, True)
    assert reader.name_pool() == ["bird flying to the left", "the birds moving", "two birds flying"]
    (item,) = reader.iter_items()
    assert item.item_id == "v1/00000" and item.load_frames().shape == (8, H, W, 3)
    by_names = {tuple(obj.names): obj for obj in item.objects}
    both = by_names[("two birds flying", "the birds moving")]  # same anno set {5, 6}, listed in either order
    one = by_names[("bird flying to the left",)]
    assert both.masks.shape == (8, H, W)
    assert both.masks.sum(axis=(1, 2)).tolist() == [6] * 4 + [14] * 4
    assert one.masks.sum(axis=(1, 2)).tolist() == [6] * 8
    assert item.present_names == {"two birds flying", "bird flying to the left", "the birds moving"}


def test_missing_or_inconsistent_mask_dict(tmp_path, files):
    (tmp_path / "train" / "JPEGImages").mkdir(parents=True)
    files.json(tmp_path / "train" / "meta_expressions.json", {"videos": {}})
    with pytest.raises(UserInputError, match=r"missing file train/mask_dict\.json.*MeViS"):
        get_source("mevis", tmp_path)
    _write_mevis(tmp_path, files)
    files.json(tmp_path / "train" / "mask_dict.json", {"5": []})
    with pytest.raises(UserInputError, match=r"anno ids \[6\] that train/mask_dict\.json lacks"):
        get_source("mevis", tmp_path)
