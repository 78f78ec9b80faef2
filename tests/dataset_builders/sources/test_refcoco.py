"""RefCOCO family: a REFER ``data/`` folder with refs(unc).p (protocol-2 pickle) and COCO instances.json.

RefCOCO, RefCOCO+ and RefCOCOg store polygons (plus COCO crowd RLEs); RefCLEF stores lists of compressed RLEs.
"""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from lavida.dataset_builders.sources import get_source
from lavida.dataset_builders.sources.masks import encode_coco_rle
from lavida.errors import UserInputError

COCO_IMAGES = "images/mscoco/images/train2014"
SAIAPR_IMAGES = "images/saiapr_tc-12"


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


def _write_refclef(root, files, image_folder=SAIAPR_IMAGES):
    """RefCLEF as the REFER toolkit's refclef.zip ships it: every segmentation a list of compressed RLE dicts
    (sometimes several parts, sometimes none), images under ``saiapr_tc-12/<NN>/images/<id>.jpg``.

    Image 25000 (20x24): a one-part mask (56 px), a two-part mask (24 + 9 px) and an empty one; image 25001 (16x16):
    only an empty mask; image 25002: the test split.
    """
    tree = np.zeros((20, 24), dtype=bool)
    tree[2:9, 2:10] = True
    ground, cloud = np.zeros((20, 24), dtype=bool), np.zeros((20, 24), dtype=bool)
    ground[12:16, 4:10] = True
    cloud[0:3, 20:23] = True
    grass = np.zeros((16, 16), dtype=bool)
    grass[10:14, 0:6] = True
    images = [
        {"id": 25000, "file_name": "25/images/25000.jpg", "height": 20, "width": 24},
        {"id": 25001, "file_name": "25/images/25001.jpg", "height": 16, "width": 16},
        {"id": 25002, "file_name": "25/images/25002.jpg", "height": 16, "width": 16},
    ]
    annotations = [
        {"id": 1, "image_id": 25000, "category_id": 2, "area": 56, "bbox": [2, 2, 8, 7],
         "segmentation": [encode_coco_rle(tree)]},
        {"id": 2, "image_id": 25000, "category_id": 5, "area": 33, "bbox": [4, 0, 19, 16],
         "segmentation": [encode_coco_rle(ground), encode_coco_rle(cloud)]},
        {"id": 3, "image_id": 25000, "category_id": 5, "area": 0, "bbox": [0, 0, 0, 0], "segmentation": []},
        {"id": 4, "image_id": 25001, "category_id": 7, "area": 0, "bbox": [0, 0, 0, 0], "segmentation": []},
        {"id": 5, "image_id": 25002, "category_id": 7, "area": 24, "bbox": [0, 10, 6, 4],
         "segmentation": [encode_coco_rle(grass)]},
    ]
    files.json(root / "refclef" / "instances.json", {
        "images": images, "annotations": annotations,
        "categories": [{"id": 2, "name": "tree"}, {"id": 5, "name": "sky"}, {"id": 7, "name": "grass"}],
    })
    refs = [
        _ref(1, 1, 25000, "train", "left tree"),
        _ref(2, 2, 25000, "train", "sky and cloud"),
        _ref(3, 3, 25000, "train", "nothing here"),
        _ref(4, 4, 25001, "train", "the grass on the left"),
        _ref(5, 5, 25002, "test", "grass"),
    ]
    for ref in refs:
        ref["file_name"] = f"{ref['image_id']}_{ref['ann_id']}.jpg"
    with (root / "refclef" / "refs(unc).p").open("wb") as handle:
        pickle.dump(refs, handle, protocol=2)
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


def test_refclef_reads_lists_of_rle_masks_and_drops_empty_ones(tmp_path, files):
    _write_refclef(tmp_path, files)
    reader = get_source("refclef", tmp_path)
    assert reader.name == "refclef"
    items = list(reader.iter_items())
    assert [item.item_id for item in items] == ["25000"]  # image 25001 only has an empty mask: skipped
    item = items[0]
    assert item.load_frames().shape == (1, 20, 24, 3)
    by_name = {obj.names[0]: obj for obj in item.objects}
    assert sorted(by_name) == ["left tree", "sky and cloud"]  # "nothing here" (segmentation []) left out
    assert by_name["left tree"].masks.sum() == 7 * 8 and by_name["left tree"].masks[0, 2:9, 2:10].all()
    cloud = by_name["sky and cloud"].masks[0]  # the union of the annotation's two RLE parts
    assert cloud.sum() == 4 * 6 + 3 * 3 and cloud[12:16, 4:10].all() and cloud[0:3, 20:23].all()
    assert "nothing here" in item.present_names  # still something of the image, so never its distractor
    assert reader.name_pool() == sorted(["left tree", "sky and cloud", "nothing here", "the grass on the left"])
    assert [i.item_id for i in get_source("refclef", tmp_path, split="test").iter_items()] == ["25002"]


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
