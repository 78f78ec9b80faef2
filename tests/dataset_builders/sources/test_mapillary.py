"""Mapillary Vistas v2.0: config_v2.0.json + palette label PNGs (index = position in "labels")."""

from __future__ import annotations

import numpy as np
import pytest

from lavida.dataset_builders.sources import get_source
from lavida.errors import UserInputError

LABELS = [
    {"name": "animal--bird", "readable": "Bird", "instances": True, "evaluate": True, "color": [165, 42, 42]},
    {"name": "construction--flat--road", "readable": "Road", "instances": False, "color": [128, 64, 128]},
    {"name": "object--traffic-light--general-single", "readable": "Traffic Light", "color": [250, 170, 30]},
    {"name": "object--traffic-light--pedestrians", "readable": "Traffic Light", "color": [250, 170, 31]},
    {"name": "void--unlabeled", "readable": "Unlabeled", "instances": False, "color": [0, 0, 0]},
]


def _write_vistas(root, files):
    files.json(root / "config_v2.0.json", {"labels": LABELS, "version": "2.0", "mapping": "public"})
    first = np.full((10, 12), 1, dtype=np.uint8)  # road everywhere ...
    first[0:2, 0:3] = 0  # bird: 6 px
    first[5:7, 5:7] = 2  # traffic light (general): 4 px
    first[9, 0:2] = 3  # traffic light (pedestrians): 2 px
    first[9, 10:12] = 4  # unlabeled
    second = np.full((10, 12), 4, dtype=np.uint8)  # nothing but void: skipped
    for key, labels in [("aaa", first), ("bbb", second)]:
        files.jpeg(root / "training" / "images" / f"{key}.jpg", 10, 12)
        files.palette_png(root / "training" / "v2.0" / "labels" / f"{key}.png", labels)


def test_reads_classes_from_config(tmp_path, files):
    _write_vistas(tmp_path, files)
    reader = get_source("mapillary", tmp_path)
    assert (reader.max_names, reader.is_video) == (20, False)
    assert reader.name_pool() == ["bird", "road", "traffic light"]
    (item,) = reader.iter_items()
    assert item.item_id == "aaa" and item.load_frames().shape == (1, 10, 12, 3)
    areas = {obj.names[0]: int(obj.masks.sum()) for obj in item.objects}
    assert areas == {"bird": 6, "road": 120 - 6 - 4 - 2 - 2, "traffic light": 6}
    assert item.present_names == {"bird", "road", "traffic light", "unlabeled"}


def test_malformed_or_missing_config(tmp_path, files):
    with pytest.raises(UserInputError, match=r"missing file config_v2\.0\.json.*v2\.0/labels"):
        get_source("mapillary", tmp_path)
    (tmp_path / "config_v2.0.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(UserInputError, match=r"config_v2\.0\.json is not valid JSON"):
        get_source("mapillary", tmp_path)
    files.json(tmp_path / "config_v2.0.json", {"classes": []})
    with pytest.raises(UserInputError, match="no 'labels' list"):
        get_source("mapillary", tmp_path)


def test_colour_label_png_is_refused(tmp_path, files):
    _write_vistas(tmp_path, files)
    files.rgb_png(tmp_path / "training" / "v2.0" / "labels" / "aaa.png", 10, 12)  # a colour rendering
    with pytest.raises(UserInputError, match="expected a palette"):
        next(get_source("mapillary", tmp_path).iter_items())
