"""YouTube-VOS 2019: train/meta.json + JPEGImages + palette PNG Annotations every 5th frame."""

from __future__ import annotations

import numpy as np
import pytest

from lavida.dataset_builders.sources import get_source
from lavida.errors import UserInputError

H, W = 12, 16


def _write_video(root, files, video, num_frames, draw):
    for index in range(num_frames):
        frame = f"{index * 5:05d}"  # annotated every 5th frame, as the release
        files.jpeg(root / "train" / "JPEGImages" / video / f"{frame}.jpg", H, W)
        files.palette_png(root / "train" / "Annotations" / video / f"{frame}.png", draw(index))


def _first_video(index):
    labels = np.zeros((H, W), dtype=np.uint8)
    labels[0:2, 0:3] = 1  # person instance 1: 6 px on every frame
    labels[4:6, 0:2] = 3  # person instance 3: 4 px on every frame
    if index >= 8:
        labels[8:11, 8:12] = 2  # the dog enters at frame 8: 12 px
    return labels


def _second_video(index):
    labels = np.zeros((H, W), dtype=np.uint8)
    labels[0:1, 0:index + 1] = 1
    return labels


def _write_ytvos(root, files):
    files.json(root / "train" / "meta.json", {"videos": {
        "0a1b2c3d4e": {"objects": {
            "1": {"category": "person", "frames": []}, "2": {"category": "dog", "frames": []},
            "3": {"category": "person", "frames": []},
        }},
        "ffee001122": {"objects": {"1": {"category": "skateboard", "frames": []}}},
        "not-on-disk": {"objects": {"1": {"category": "zebra", "frames": []}}},
    }})
    _write_video(root, files, "0a1b2c3d4e", 17, _first_video)
    _write_video(root, files, "ffee001122", 3, _second_video)


def test_reads_category_clips(tmp_path, files):
    _write_ytvos(tmp_path, files)
    reader = get_source("youtube-vos", tmp_path)
    assert (reader.name, reader.max_names, reader.is_video) == ("youtube-vos", 30, True)
    assert reader.name_pool() == ["dog", "person", "skateboard", "zebra"]

    items = list(reader.iter_items())
    # 17 annotated frames -> two 8-frame clips (the 17th is dropped); 3 frames -> one clip with repeated frames
    assert [item.item_id for item in items] == ["0a1b2c3d4e/00000", "0a1b2c3d4e/00040", "ffee001122/00000"]
    assert all(item.group_size == (1, 2) for item in items)
    first, second, short = items
    assert first.load_frames().shape == (8, H, W, 3)
    # the two person instances form one "person" object; the dog is not yet visible in the first clip
    assert [obj.names for obj in first.objects] == [["person"]]
    assert first.objects[0].masks.shape == (8, H, W)
    assert first.objects[0].masks.sum(axis=(1, 2)).tolist() == [10] * 8
    assert first.present_names == {"person", "dog"}
    dog = next(obj for obj in second.objects if obj.names == ["dog"])
    assert dog.masks.sum(axis=(1, 2)).tolist() == [12] * 8
    assert short.load_frames().shape == (8, H, W, 3)
    # frames 0..2 spread evenly over 8 slots: 0 0 1 1 1 1 2 2 (frame k draws k + 1 px)
    assert short.objects[0].masks.sum(axis=(1, 2)).tolist() == [1, 1, 2, 2, 2, 2, 3, 3]


def test_missing_meta_names_the_layout(tmp_path):
    (tmp_path / "train" / "JPEGImages").mkdir(parents=True)
    with pytest.raises(UserInputError, match=r"missing file train/meta\.json.*Annotations/<video>/\*\.png"):
        get_source("youtube_vos", tmp_path)
