"""Every real source builds into a corpus (`lavida build-dataset SOURCE --data-root ...`) from its layout fixture."""

from __future__ import annotations

import argparse
import json
import shutil

import pytest

from lavida.dataset_builders.corpus_loading import load_built_corpus
from lavida.commands import build_dataset
from tests.dataset_builders.sources import (test_ade20k, test_cityscapes, test_mapillary, test_mevis, test_ref_davis,
                                            test_ref_youtube_vos, test_refcoco, test_youtube_vos)

def _vistas_with_an_absent_class(root, files):
    """The reader fixture shows every class of its config; one more class gives the sampler a distractor."""
    test_mapillary._write_vistas(root, files)
    config = json.loads((root / "config_v2.0.json").read_text())
    config["labels"].append({"name": "object--bench", "readable": "Bench", "instances": True, "color": [9, 9, 9]})
    files.json(root / "config_v2.0.json", config)


def _mevis_with_a_second_video(root, files):
    """Distractors of a referring video source are other videos' expressions: add a second video."""
    test_mevis._write_mevis(root, files)
    meta = json.loads((root / "train" / "meta_expressions.json").read_text())
    second = json.loads(json.dumps(meta["videos"]["v1"]))
    second["expressions"] = {"0": {"exp": "a cat sleeping", "obj_id": [0], "anno_id": [5]}}
    meta["videos"]["v2"] = second
    files.json(root / "train" / "meta_expressions.json", meta)
    shutil.copytree(root / "train" / "JPEGImages" / "v1", root / "train" / "JPEGImages" / "v2")


FIXTURES = {
    "refcoco": lambda root, files: test_refcoco._write_refer(root, files),
    "refclef": lambda root, files: test_refcoco._write_refclef(root, files),
    "ade20k": test_ade20k._write_scene_parsing,
    "cityscapes": test_cityscapes._write_cityscapes,
    "mapillary": _vistas_with_an_absent_class,
    "youtube-vos": test_youtube_vos._write_ytvos,
    "ref-youtube-vos": test_ref_youtube_vos._write_ref_ytvos,
    "mevis": _mevis_with_a_second_video,
    "ref-davis": test_ref_davis._write_ref_davis,
}


@pytest.mark.parametrize("source", sorted(FIXTURES))
def test_source_builds_into_a_loadable_corpus(source, tmp_path, files):
    root = tmp_path / "release"
    FIXTURES[source](root, files)
    out = tmp_path / f"corpus-{source}"
    parser = argparse.ArgumentParser()
    build_dataset.add_arguments(parser)
    args = parser.parse_args([source, "--data-root", str(root), "--out", str(out), "--seed", "1"])
    assert build_dataset.run(args) == 0
    dataset = load_built_corpus(out, split="train")
    assert len(dataset) >= 1 and set(dataset["source"]) == {source}
    for row in dataset:
        assert len(row["frames"]) == len(row["masks"]) == len(row["frame_labels"])
        assert row["is_anomalous"] == any(row["frame_labels"]) == any(row["name_labels"])
        assert 1 <= len(row["names"]) and sum(row["name_labels"]) < len(row["names"])
