"""The paper's mix of the eight real sources, built from their layout fixtures, loads and collates.

Image sources give 1-frame rows and video sources 8-frame clips; both come out of one mixed corpus with the columns
``LavidaDataCollator`` reads (``frames``, ``masks``, ``names``, ``name_labels``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from lavida.dataset_builders.corpus_loading import load_mixed_corpus, read_mix
from lavida.processing.factories import build_tiny_processor
from lavida.trainer_lavida import LavidaDataCollator, corpus_frame_counts
from tests.fixtures.eight_sources import IMAGE_SOURCES, PAPER_MIX, VIDEO_SOURCES, build_eight_source_mix


@pytest.fixture(scope="module")
def mix(tmp_path_factory):
    return build_eight_source_mix(tmp_path_factory.mktemp("eight-sources"))


@pytest.fixture(scope="module")
def rows(mix):
    return list(load_mixed_corpus(mix, seed=0))


def test_mix_lists_every_source_with_the_paper_probabilities(mix):
    entries = yaml.safe_load(mix.read_text())["sources"]
    paper = yaml.safe_load(PAPER_MIX.read_text())
    assert entries == paper["sources"] and read_mix(mix)[2] == paper["seed"]  # same paths, probabilities, seed
    for entry in entries:  # relative paths, resolved against the YAML's folder
        assert not Path(entry["path"]).is_absolute() and (mix.parent / entry["path"] / "data").is_dir()
    assert sorted(Path(entry["path"]).name for entry in entries) == sorted(IMAGE_SOURCES + VIDEO_SOURCES)


def test_image_rows_have_one_frame_and_video_rows_eight(rows):
    counts = {row["source"]: set() for row in rows}
    for row in rows:
        counts[row["source"]].add(len(row["frames"]))
    assert set(counts) == set(IMAGE_SOURCES + VIDEO_SOURCES)
    assert all(counts[source] == {1} for source in IMAGE_SOURCES)
    assert all(counts[source] == {8} for source in VIDEO_SOURCES)


def test_rows_carry_names_masks_and_name_labels(rows):
    for row in rows:
        frames = [np.asarray(frame.convert("RGB")) for frame in row["frames"]]
        masks = [np.asarray(mask.convert("L")) for mask in row["masks"]]
        assert len(masks) == len(frames) == len(row["frame_labels"])
        assert all(mask.shape == frame.shape[:2] for mask, frame in zip(masks, frames))
        assert row["names"] and all(isinstance(name, str) and name for name in row["names"])
        assert len(row["name_labels"]) == len(row["names"]) and set(row["name_labels"]) <= {0, 1}
        assert sum(row["name_labels"]) < len(row["names"])  # at least one distractor
        anomalous = any(mask.any() for mask in masks)
        assert row["is_anomalous"] == anomalous == any(row["name_labels"]) == any(row["frame_labels"])
    assert any(row["is_anomalous"] for row in rows) and not all(row["is_anomalous"] for row in rows)


@pytest.mark.parametrize("frames", [1, 8])
def test_collator_batches_rows_of_one_frame_count(rows, frames):
    batch_rows = [row for row in rows if len(row["frames"]) == frames][:2]
    batch = LavidaDataCollator(build_tiny_processor())(batch_rows)
    assert batch["target_masks"].shape[:2] == (2, frames)
    assert batch["name_labels"].shape == batch["class_mask"].shape
    for i, row in enumerate(batch_rows):
        assert int(batch["class_mask"][i].sum()) == len(row["names"])
        assert batch["name_labels"][i].tolist()[: len(row["names"])] == row["name_labels"]
        assert bool(batch["target_masks"][i].any()) == row["is_anomalous"]


def test_frame_counts_are_read_from_the_mixed_corpus(mix):
    dataset = load_mixed_corpus(mix, seed=0)
    counts = corpus_frame_counts(dataset)  # what LavidaTrainer batches by, read without decoding an image
    assert counts is not None and set(counts) == {1, 8} and len(counts) == len(dataset)
