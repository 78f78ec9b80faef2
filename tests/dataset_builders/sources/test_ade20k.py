"""ADE20K SceneParsing: images/ + annotations/ with 8-bit class-index PNGs (0 = other, k = class k)."""

from __future__ import annotations

import numpy as np
import pytest

from lavida.dataset_builders.sources import get_source
from lavida.dataset_builders.sources.ade20k import ADE20K_BACKGROUND_CLASSES, ADE20K_CLASSES
from lavida.errors import UserInputError

WALL, SKY, PERSON, CHAIR, FLAG = 1, 3, 13, 20, 150


def _write_scene_parsing(root, files):
    first = np.zeros((16, 20), dtype=np.uint8)
    first[0:4] = WALL  # background class: present, never a target
    first[5:9, 2:7] = PERSON  # 20 px
    first[10:13, 10:13] = CHAIR  # 9 px
    only_background = np.full((16, 20), SKY, dtype=np.uint8)
    third = np.zeros((16, 20), dtype=np.uint8)
    third[0:2, 0:2] = FLAG
    for index, labels in enumerate([first, only_background, third], start=1):
        stem = f"ADE_train_{index:08d}"
        files.jpeg(root / "images" / "training" / f"{stem}.jpg", 16, 20)
        files.label_png(root / "annotations" / "training" / f"{stem}.png", labels)


def test_reads_object_classes_without_background(tmp_path, files):
    _write_scene_parsing(tmp_path, files)
    reader = get_source("ade20k", tmp_path)
    assert (reader.max_names, reader.is_video) == (30, False)
    pool = reader.name_pool()
    assert len(ADE20K_CLASSES) == 150 and len(ADE20K_BACKGROUND_CLASSES) == 20
    assert len(pool) == 130 and not set(pool) & set(ADE20K_BACKGROUND_CLASSES)

    items = list(reader.iter_items())
    assert [item.item_id for item in items] == ["ADE_train_00000001", "ADE_train_00000003"]  # sky-only image skipped
    first = items[0]
    assert first.load_frames().shape == (1, 16, 20, 3)
    areas = {obj.names[0]: int(obj.masks.sum()) for obj in first.objects}
    assert areas == {"person": 20, "chair": 9}
    assert all(obj.masks.shape == (1, 16, 20) for obj in first.objects)
    assert first.present_names == {"wall", "person", "chair"}
    assert [obj.names for obj in items[1].objects] == [["flag"]]


def test_missing_annotations_name_the_layout(tmp_path, files):
    files.jpeg(tmp_path / "images" / "training" / "ADE_train_00000001.jpg", 8, 8)
    with pytest.raises(UserInputError, match=r"missing folder annotations/training.*ADEChallengeData2016"):
        get_source("ade20k", tmp_path)
    with pytest.raises(UserInputError, match=r"unknown split 'test'"):
        get_source("ade20k", tmp_path, split="test")
