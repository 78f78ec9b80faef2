"""Ref-DAVIS17: DAVIS 2017 as DAVIS-2017-Unsupervised-trainval-480p.zip unpacks (masks in
DAVIS/Annotations_unsupervised/480p) plus davis_text_annotations/Davis17_annot*.txt, the pairing of ReferFormer's
tools/data/convert_davis_to_ytvos.py."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from lavida.dataset_builders.sources import get_source
from lavida.errors import UserInputError

H, W = 10, 12


UNSUPERVISED = "Annotations_unsupervised"  # DAVIS-2017-Unsupervised-trainval-480p.zip
SEMI_SUPERVISED = "Annotations"  # DAVIS-2017-trainval-480p.zip


def _write_video(root, files, video, num_frames, draw, annotations=UNSUPERVISED):
    for index in range(num_frames):
        files.jpeg(root / "DAVIS" / "JPEGImages" / "480p" / video / f"{index:05d}.jpg", H, W)
        files.palette_png(root / "DAVIS" / annotations / "480p" / video / f"{index:05d}.png", draw(index))


def _bike(index):
    labels = np.zeros((H, W), dtype=np.uint8)
    labels[0:3, 0:4] = 1  # bike: 12 px
    labels[5:9, 8:10] = 2  # rider: 8 px
    return labels


def _car(index):
    labels = np.zeros((H, W), dtype=np.uint8)
    labels[4:6, 4:6] = 1
    return labels


def _bike_semi_supervised(index):
    """The same video numbered the other way round, as another annotation set may number it."""
    labels = _bike(index)
    return np.where(labels == 1, 2, np.where(labels == 2, 1, 0)).astype(np.uint8)


def _write_ref_davis(root, files, annotations=UNSUPERVISED):
    sets = root / "DAVIS" / "ImageSets" / "2017"
    sets.mkdir(parents=True)
    (sets / "train.txt").write_text("bike-packing\nclassic-car\n", encoding="utf-8")
    (sets / "val.txt").write_text("blackswan\n", encoding="utf-8")
    _write_video(root, files, "bike-packing", 8, _bike, annotations)
    _write_video(root, files, "classic-car", 8, _car, annotations)
    text = root / "davis_text_annotations"
    text.mkdir()
    (text / "Davis17_annot1.txt").write_text(
        'bike-packing 1 "a black bike"\nbike-packing 2 "a man riding a bike"\nclasic-car 1 "a white car"\n'
        'blackswan 1 "a black swan"\n', encoding="utf-8")
    # annotator 2's files are Latin-1 encoded
    (text / "Davis17_annot2.txt").write_bytes('bike-packing 1 "a bike with a café bag"\n'.encode("latin-1"))


def test_reads_davis_videos_with_expressions(tmp_path, files):
    _write_ref_davis(tmp_path, files)
    reader = get_source("ref-davis", tmp_path)
    assert (reader.max_names, reader.is_video) == (30, True)
    assert reader.name_pool() == sorted(
        ["a black bike", "a bike with a café bag", "a man riding a bike", "a white car"])  # no val video

    bike, car = reader.iter_items()
    assert (bike.item_id, car.item_id) == ("bike-packing/00000", "classic-car/00000")  # "clasic-car" mapped
    assert bike.load_frames().shape == (8, H, W, 3)
    by_name = {obj.names[0]: obj for obj in bike.objects}
    assert by_name["a black bike"].names == ["a black bike", "a bike with a café bag"]
    assert by_name["a black bike"].masks.shape == (8, H, W)
    assert by_name["a black bike"].masks.sum() == 8 * 12
    assert by_name["a man riding a bike"].masks.sum() == 8 * 8
    assert car.objects[0].masks.sum() == 8 * 4
    assert bike.present_names == {"a black bike", "a bike with a café bag", "a man riding a bike"}


def test_missing_expressions_name_the_layout(tmp_path, files):
    _write_ref_davis(tmp_path, files)
    for path in (tmp_path / "davis_text_annotations").iterdir():
        path.unlink()
    with pytest.raises(UserInputError, match=r"holds none of \['Davis17_annot1\.txt'"):
        get_source("ref-davis", tmp_path)
    (tmp_path / "davis_text_annotations").rmdir()
    with pytest.raises(UserInputError, match=r"missing folder davis_text_annotations.*Ref-DAVIS17"):
        get_source("ref-davis", tmp_path)


def _mask_sizes(reader):
    bike = next(iter(reader.iter_items()))
    return {obj.names[0]: int(obj.masks.sum()) for obj in bike.objects}


def test_unsupervised_annotations_are_preferred_and_semi_supervised_ones_accepted(tmp_path, files):
    _write_ref_davis(tmp_path, files)
    for index in range(8):  # the semi-supervised set next to it, numbering bike-packing's objects differently
        files.palette_png(tmp_path / "DAVIS" / SEMI_SUPERVISED / "480p" / "bike-packing" / f"{index:05d}.png",
                          _bike_semi_supervised(index))
    expected = {"a black bike": 8 * 12, "a man riding a bike": 8 * 8}  # object 1 = bike, 2 = rider
    reader = get_source("ref-davis", tmp_path)
    assert _mask_sizes(reader) == expected
    assert [item.item_id for item in reader.iter_items()] == ["bike-packing/00000", "classic-car/00000"]

    only_semi = tmp_path / "semi"
    _write_ref_davis(only_semi, files, annotations=SEMI_SUPERVISED)
    assert _mask_sizes(get_source("ref-davis", only_semi)) == expected


def test_missing_annotations_name_both_sets(tmp_path, files):
    _write_ref_davis(tmp_path, files)
    shutil.rmtree(tmp_path / "DAVIS" / UNSUPERVISED)
    with pytest.raises(UserInputError, match=r"missing folder DAVIS/Annotations_unsupervised/480p or "
                                             r"DAVIS/Annotations/480p.*Ref-DAVIS17"):
        get_source("ref-davis", tmp_path)
