"""COCO RLE and polygon codecs, checked against strings worked out by hand from the format's definition."""

from __future__ import annotations

import numpy as np
import pytest

from lavida.dataset_builders.sources.masks import (
    coco_segmentation_to_mask,
    decode_coco_rle,
    encode_coco_rle,
    rasterize_polygons,
)


@pytest.mark.parametrize(
    ("counts", "runs"),
    [
        ("325", [3, 2, 5]),  # small runs: one character each (value + 48)
        ("0T3", [0, 100]),  # 100 = 4 + 3 * 32: "T" (4 | more-bit 32, + 48), then "3"
        ("2347", [2, 3, 4, 10]),  # 4th run stored as 10 - 3 = 7
        ("2:4G", [2, 10, 4, 1]),  # 4th run stored as 1 - 10 = -9: one group 23 with the sign bit, "G"
    ],
)
def test_decode_hand_worked_strings(counts, runs):
    size = [sum(runs), 1]
    mask = decode_coco_rle({"size": size, "counts": counts})
    expected = np.repeat(np.arange(len(runs)) % 2 == 1, runs)[:, None]
    np.testing.assert_array_equal(mask, expected)
    assert encode_coco_rle(mask)["counts"] == counts


def test_column_major_order_and_uncompressed_counts():
    # 2x3 mask, column-major: column 0 = [0, 1], column 1 = [1, 1], column 2 = [0, 0] -> runs 1, 3, 2
    expected = np.array([[0, 1, 0], [1, 1, 0]], dtype=bool)
    np.testing.assert_array_equal(decode_coco_rle({"size": [2, 3], "counts": [1, 3, 2]}), expected)
    np.testing.assert_array_equal(decode_coco_rle(encode_coco_rle(expected)), expected)


def test_round_trip_random_masks():
    rng = np.random.default_rng(0)
    for shape in [(1, 1), (7, 5), (33, 64)]:
        for density in (0.0, 0.3, 1.0):
            mask = rng.random(shape) < density
            np.testing.assert_array_equal(decode_coco_rle(encode_coco_rle(mask)), mask)


def test_decode_rejects_wrong_total():
    with pytest.raises(ValueError, match="expected 2x2"):
        decode_coco_rle({"size": [2, 2], "counts": "325"})


def test_polygon_fill_includes_the_outline():
    mask = rasterize_polygons([[2, 3, 9, 3, 9, 8, 2, 8]], height=12, width=12)
    assert mask.sum() == 8 * 6
    assert mask[3:9, 2:10].all()


def test_segmentation_dispatch():
    polygons = [[0, 0, 1, 0, 1, 1, 0, 1], [5, 5, 6, 5, 6, 6, 5, 6]]  # union of two 2x2 squares
    assert coco_segmentation_to_mask(polygons, 8, 8).sum() == 8
    rle = encode_coco_rle(np.eye(4, dtype=bool))
    assert coco_segmentation_to_mask(rle, 4, 4).sum() == 4


def test_lists_of_rles_are_their_union_and_an_empty_list_is_empty():
    # RefCLEF's instances.json: "segmentation": [{"size": [h, w], "counts": "..."}, ...] (REFER.getMask sums them)
    first, second = np.zeros((5, 6), dtype=bool), np.zeros((5, 6), dtype=bool)
    first[0:2, 0:2] = True
    second[1:4, 4:6] = True
    union = coco_segmentation_to_mask([encode_coco_rle(first), encode_coco_rle(second)], 5, 6)
    np.testing.assert_array_equal(union, first | second)
    assert not coco_segmentation_to_mask([], 5, 6).any() and coco_segmentation_to_mask([], 5, 6).shape == (5, 6)
    with pytest.raises(ValueError, match=r"RLE size \[5, 6\] differs from the image size \[6, 5\]"):
        coco_segmentation_to_mask([encode_coco_rle(first)], 6, 5)
    with pytest.raises(ValueError, match="expected polygons"):
        coco_segmentation_to_mask(["abc"], 5, 6)
