"""Ref-YouTube-VOS: meta_expressions/train/meta_expressions.json + YouTube-VOS train frames and palette PNGs."""

from __future__ import annotations

import numpy as np
import pytest

from lavida.dataset_builders.sources import get_source
from lavida.errors import UserInputError

H, W = 10, 14


def _write_video(root, files, video, frames, draw):
    for index, frame in enumerate(frames):
        files.jpeg(root / "train" / "JPEGImages" / video / f"{frame}.jpg", H, W)
        files.palette_png(root / "train" / "Annotations" / video / f"{frame}.png", draw(index))


def _cat_video(index):
    labels = np.zeros((H, W), dtype=np.uint8)
    labels[2:5, 3:7] = 1  # the cat: 12 px; object 2 (the lamp) is never visible
    return labels


def _dog_video(index):
    labels = np.zeros((H, W), dtype=np.uint8)
    if index % 2 == 0:
        labels[0:2, 0:2] = 1  # visible on even frames only
    return labels


def _write_ref_ytvos(root, files):
    cat_frames = [f"{5 * i:05d}" for i in range(8)]
    dog_frames = [f"{5 * i:05d}" for i in range(10)]
    files.json(root / "meta_expressions" / "train" / "meta_expressions.json", {"videos": {
        "a1": {"expressions": {"0": {"exp": "a cat", "obj_id": "1"},
                               "1": {"exp": "the cat on the sofa", "obj_id": "1"},
                               "2": {"exp": "a lamp", "obj_id": "2"}}, "frames": cat_frames},
        "b2": {"expressions": {"0": {"exp": "a small dog", "obj_id": "1"}}, "frames": dog_frames},
    }})
    _write_video(root, files, "a1", cat_frames, _cat_video)
    _write_video(root, files, "b2", dog_frames, _dog_video)


def test_reads_expression_clips(tmp_path, files):
    _write_ref_ytvos(tmp_path, files)
    reader = get_source("ref-youtube-vos", tmp_path)
    assert (reader.max_names, reader.is_video) == (30, True)
    assert reader.name_pool() == ["a cat", "a lamp", "a small dog", "the cat on the sofa"]

    cat, dog = reader.iter_items()
    assert (cat.item_id, dog.item_id) == ("a1/00000", "b2/00000")
    assert cat.load_frames().shape == (8, H, W, 3)
    (cat_object,) = cat.objects  # the lamp is never visible: no object, but its expression stays present
    assert cat_object.names == ["a cat", "the cat on the sofa"]
    assert cat_object.masks.shape == (8, H, W) and cat_object.masks.sum() == 8 * 12
    assert cat.present_names == {"a cat", "the cat on the sofa", "a lamp"}
    assert dog.objects[0].masks.sum(axis=(1, 2)).tolist() == [4, 0] * 4


def test_missing_expressions_name_the_layout(tmp_path):
    with pytest.raises(UserInputError, match=r"missing file meta_expressions/train/meta_expressions\.json"):
        get_source("ref-youtube-vos", tmp_path)
    with pytest.raises(UserInputError, match=r"unknown split 'valid'"):
        get_source("ref-youtube-vos", tmp_path, split="valid")  # the valid split has no masks


def test_malformed_expressions_are_reported(tmp_path, files):
    _write_ref_ytvos(tmp_path, files)
    files.json(tmp_path / "meta_expressions" / "train" / "meta_expressions.json",
               {"videos": {"a1": {"expressions": {"0": {"expression": "a cat"}}, "frames": ["00000"]}}})
    with pytest.raises(UserInputError, match=r"an expression of video a1 lacks 'exp' or 'obj_id'"):
        get_source("ref-youtube-vos", tmp_path)
