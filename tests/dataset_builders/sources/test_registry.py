"""get_source: names, lazy imports, and an empty data root giving a message that names each expected layout."""

from __future__ import annotations

import importlib
import sys

import pytest

from lavida.dataset_builders import sources
from lavida.dataset_builders.sources import SOURCE_NAMES, get_source
from lavida.errors import UserInputError

# a piece of each source's expected layout that the error message must show
EXPECTED_LAYOUT = {
    "refcoco": "refs(unc).p",
    "refcoco+": "DATA_ROOT/refcoco+/{instances.json",
    "refcocog": "refs(umd).p",
    "refclef": "images/saiapr_tc-12",
    "ade20k": "annotations/{training,validation}/*.png",
    "cityscapes": "gtFine/{train,val}/<city>/",
    "mapillary": "config_v2.0.json",
    "youtube-vos": "train/Annotations/<video>/*.png",
    "ref-youtube-vos": "meta_expressions/train/meta_expressions.json",
    "mevis": "mask_dict.json",
    "ref-davis": "davis_text_annotations/Davis17_annot*.txt",
}


def test_every_source_is_registered():
    assert set(SOURCE_NAMES) == set(EXPECTED_LAYOUT)


@pytest.mark.parametrize("name", SOURCE_NAMES)
def test_empty_data_root_names_the_expected_layout(name, tmp_path):
    with pytest.raises(UserInputError) as error:
        get_source(name, tmp_path)
    message = str(error.value)
    assert message.startswith(f"{name}: missing ")
    assert "Expected the official layout" in message and EXPECTED_LAYOUT[name] in message
    assert "\n" not in message  # printed as one line by the CLI


def test_unknown_source_lists_the_valid_names(tmp_path):
    with pytest.raises(UserInputError, match=r"unknown source 'coco'.*refcoco\+, refcocog.*ref-davis"):
        get_source("coco", tmp_path)


def test_reader_modules_are_imported_lazily(monkeypatch, tmp_path):
    readers = [f"{sources.__name__}.{module}" for module, _, _ in sources._REGISTRY.values()]
    for module in readers:
        if module in sys.modules:
            monkeypatch.delitem(sys.modules, module)  # restored after the test
    importlib.reload(sources)
    assert not [module for module in readers if module in sys.modules]
    with pytest.raises(UserInputError):
        sources.get_source("mevis", tmp_path)
    assert f"{sources.__name__}.mevis" in sys.modules
