"""RefCOCO family: a REFER ``data/`` folder with refs(unc).p (protocol-2 pickle) and COCO instances.json."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from lavida.dataset_builders.sources import get_source
from lavida.dataset_builders.sources.masks import encode_coco_rle
from lavida.errors import UserInputError

COCO_IMAGES = "images/mscoco/images/train2014"


def _ref(ref_id, ann_id, image_id, split, *sentences):
    return {
        "ref_id": ref_id, "ann_id": ann_id, "image_id": image_id, "split": split, "category_id": 1,
        "sent_ids": list(range(len(sentences))), "file_name": f"COCO_train2014_{image_id:012d}_{ann_id}.jpg",
        "sentences": [{"sent": s, "raw": s, "tokens": s.split(), "sent_id": i} for i, s in enumerate(sentences)],
    }


def _write_refer(root, files, dataset="refcoco", image_folder=COCO_IMAGES):
    """Image 1 (20x24): a polygon (48 px) and a compressed-RLE (24 px) target; image 2 (16x16): a crowd RLE."""
    rle_mask = np.zeros((20, 24), dtype=bool)
    rle_mask[12:16, 4:10] = True
    crowd = np.zeros((16, 16), dtype=bool)
    crowd[0:5, 0:2] = True  # 10 px
    crowd_runs = [0, 5, 11, 5, 256 - 21]  # column-major: 5 ones, 11 zeros, 5 ones, rest zeros
    images = [
        {"id": 1, "file_name": "COCO_train2014_000000000001.jpg", "height": 20, "width": 24},
        {"id": 2, "file_name": "COCO_train2014_000000000002.jpg", "height": 16, "width": 16},
        {"id": 3, "file_name": "COCO_train2014_000000000003.jpg", "height": 16, "width": 16},
    ]
    annotations = [
        {"id": 10, "image_id": 1, "category_id": 1, "iscrowd": 0, "segmentation": [[2, 3, 9, 3, 9, 8, 2, 8]]},
        {"id": 11, "image_id": 1, "category_id": 3, "iscrowd": 0, "segmentation": encode_coco_rle(rle_mask)},
        {"id": 20, "image_id": 2, "category_id": 1, "iscrowd": 1,
         "segmentation": {"size": [16, 16], "counts": crowd_runs}},
        {"id": 30, "image_id": 3, "category_id": 1, "iscrowd": 0, "segmentation": [[0, 0, 3, 0, 3, 3]]},
    ]
    files.json(root / dataset / "instances.json", {
        "images": images, "annotations": annotations,
        "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}],
    })
    refs = [
        _ref(1, 10, 1, "train", "man on left", "left guy"),
        _ref(2, 11, 1, "train", "red car"),
        _ref(3, 10, 1, "train", "the tall man", "left guy"),
        _ref(4, 20, 2, "train", "people in the crowd"),
        _ref(5, 30, 3, "val", "a val expression"),
    ]
    with (root / dataset / "refs(unc).p").open("wb") as handle:
        pickle.dump(refs, handle, protocol=2)  # the release's files are Python-2 pickles
    for image in images:
        files.jpeg(root / image_folder / image["file_name"], image["height"], image["width"])


def test_reads_images_expressions_and_masks(tmp_path, files):
    _write_refer(tmp_path, files)
    reader = get_source("refcoco", tmp_path)
    assert (reader.name, reader.max_names, reader.is_video) == ("refcoco", 30, False)
    assert reader.name_pool() == sorted(["man on left", "left guy", "red car", "the tall man", "people in the crowd"])

    items = list(reader.iter_items())
    assert [item.item_id for item in items] == ["1", "2"]
    first = items[0]
    assert first.source == "refcoco" and first.group_size == (1, 1)
    assert first.load_frames().shape == (1, 20, 24, 3)
    by_name = {obj.names[0]: obj for obj in first.objects}
    # refs 1 and 3 point at the same annotation: one object with all their (unique) expressions
    assert by_name["man on left"].names == ["man on left", "left guy", "the tall man"]
    assert by_name["man on left"].masks.shape == (1, 20, 24)
    assert by_name["man on left"].masks.sum() == 8 * 6
    assert by_name["man on left"].masks[0, 3:9, 2:10].all()
    assert by_name["red car"].masks.sum() == 24 and by_name["red car"].masks[0, 12:16, 4:10].all()
    assert first.present_names == {"man on left", "left guy", "red car", "the tall man"}
    crowd = items[1].objects[0]
    assert crowd.masks.sum() == 10 and crowd.masks[0, 0:5, 0:2].all()

    val_items = list(get_source("refcoco", tmp_path, split="val").iter_items())
    assert [item.item_id for item in val_items] == ["3"]


def test_refclef_images_folder(tmp_path, files):
    _write_refer(tmp_path, files, dataset="refclef", image_folder="images/saiapr_tc-12")
    reader = get_source("refclef", tmp_path)
    assert reader.name == "refclef"
    assert len(list(reader.iter_items())) == 2


def test_missing_files_name_the_layout(tmp_path, files):
    with pytest.raises(UserInputError, match=r"missing folder refcocog.*instances\.json, refs\(umd\)\.p"):
        get_source("refcocog", tmp_path)
    _write_refer(tmp_path, files)
    with pytest.raises(UserInputError, match=r"no refs in split 'testA'.*\['train', 'val'\]"):
        get_source("refcoco", tmp_path, split="testA")
    (tmp_path / COCO_IMAGES / "COCO_train2014_000000000001.jpg").unlink()
    with pytest.raises(UserInputError, match="COCO_train2014_000000000001.jpg not found"):
        get_source("refcoco", tmp_path)


def test_refs_pickle_with_a_global_is_refused(tmp_path, files):
    _write_refer(tmp_path, files)
    with (tmp_path / "refcoco" / "refs(unc).p").open("wb") as handle:
        pickle.dump([{"ref_id": os.getcwd}], handle, protocol=2)  # a callable: needs a global to unpickle
    with pytest.raises(UserInputError, match=r"not a REFER refs pickle .*getcwd is not allowed"):
        get_source("refcoco", tmp_path)
