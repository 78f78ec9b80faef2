"""The Anomaly Exposure Sampler's invariants hold on the synthesized source, and its corpus has the common schema."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lavida.dataset_builders.corpus_loading import load_built_corpus
from lavida.dataset_builders.corpus_writer import CorpusInfo, source_row_factories, write_corpus
from lavida.dataset_builders.sampler import AnomalyExposureSampler
from lavida.dataset_builders.synthesized import SynthesisConfig, build_synthesized_source

COUNT = 300
DECLARED = "red circle"  # declared visible in the normal videos: never a distractor


@pytest.fixture(scope="module")
def source(frame_folder):
    config = SynthesisConfig(items_per_clip=COUNT, max_names=12, normal_present_names=[DECLARED])
    return build_synthesized_source(frame_folder, "synthetic", seed=4, config=config)


@pytest.fixture(scope="module")
def samples(source):
    sampler = AnomalyExposureSampler(max_names=source.max_names)
    pool = source.name_pool()
    out = []
    for index, item in enumerate(source.iter_items()):
        sample = sampler.sample(item, pool, np.random.default_rng([9, index]))
        out.append((item, sample, source.synthesize(index)))
    return out


def test_anomalous_share_is_one_half_within_three_sigma(samples):
    share = np.mean([sample.is_anomalous for _, sample, _ in samples])
    assert abs(share - 0.5) < 3 * math.sqrt(0.25 / len(samples))


def test_list_sizes_and_labels(samples, source):
    for _, sample, _ in samples:
        true_count = sum(sample.name_labels)
        assert 1 <= len(sample.names) <= source.max_names and len(sample.names) - true_count >= 1
        assert len(set(sample.names)) == len(sample.names) and true_count <= 1  # one pasted object per item


def test_true_names_are_the_object_and_distractors_are_absent(samples):
    for item, sample, result in samples:
        assert item.present_names == set(result.names) | {DECLARED}
        for name, label in zip(sample.names, sample.name_labels):
            if label:
                assert name in result.names
            else:
                assert name not in item.present_names and name != DECLARED


def test_mask_is_non_empty_iff_anomalous_and_frame_labels_follow_it(samples):
    for _, sample, result in samples:
        assert sample.is_anomalous == bool(sample.masks.any()) == (sum(sample.name_labels) > 0)
        assert sample.frame_labels == [int(m.any()) for m in sample.masks]
        if sample.is_anomalous:
            assert np.array_equal(sample.masks, result.masks)  # the mask is the pasted region
            assert 0 < sum(sample.frame_labels) <= len(sample.frame_labels)
        assert np.array_equal(sample.frames, result.frames)  # normal samples show the object, unlisted
    partial = [s for _, s, _ in samples if s.is_anomalous and not all(s.frame_labels)]
    assert partial, "objects entering late or leaving early should give some frames labelled 0"


def test_corpus_of_the_source_has_the_common_schema(frame_folder, tmp_path):
    source = build_synthesized_source(frame_folder, "synthetic", seed=1, config=SynthesisConfig(items_per_clip=4))
    sampler = AnomalyExposureSampler(max_names=source.max_names)
    info = CorpusInfo(name="lavida-synthesized", sources=["synthesized"], seed=1)
    out = write_corpus(source_row_factories(source, sampler, seed=1), 4, tmp_path / "synthesized-corpus", info,
                       progress=False)
    dataset = load_built_corpus(out)
    assert set(dataset.column_names) == {"sample_id", "source", "frames", "masks", "names", "name_labels",
                                         "frame_labels", "is_anomalous"}
    assert len(dataset) == 4 and set(dataset["source"]) == {"synthesized"}
    for index in range(4):
        row = dataset[index]
        masks = np.stack([np.asarray(m.convert("L")) > 127 for m in row["masks"]])
        assert len(row["frames"]) == 8 and row["frames"][0].size == (64, 48)
        assert row["frame_labels"] == [int(m.any()) for m in masks]
        assert row["is_anomalous"] == bool(masks.any()) == (sum(row["name_labels"]) > 0)
