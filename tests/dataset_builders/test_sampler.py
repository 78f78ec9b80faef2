"""Anomaly Exposure Sampler invariants (section 3 of the method) over 1000 synthetic samples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lavida.dataset_builders.sampler import AnomalyExposureSampler
from lavida.dataset_builders.source_item import SourceItem, SourceObject
from lavida.dataset_builders.synthetic_training import SyntheticTrainingCorpus
from lavida.dataset_builders.synthetic_world import HELD_OUT_NAMES, TRAINING_NAMES


@pytest.fixture(scope="module")
def rows():
    corpus = SyntheticTrainingCorpus(num_samples=1000, seed=3, world={"size": 64, "clip_length": 4})
    return [corpus[i] for i in range(len(corpus))]


def test_anomalous_share_is_one_half_within_three_sigma(rows):
    share = np.mean([row["is_anomalous"] for row in rows])
    sigma = math.sqrt(0.25 / len(rows))
    assert abs(share - 0.5) < 3 * sigma


def test_list_sizes_labels_and_masks(rows):
    for row in rows:
        names, labels, masks = row["names"], row["name_labels"], row["masks"]
        true_count = sum(labels)
        assert 1 <= len(names) <= 30 and len(names) - true_count >= 1  # at least one distractor
        assert len(set(names)) == len(names)
        assert row["is_anomalous"] == bool(masks.any()) == (true_count > 0)
        assert true_count <= 2
        assert row["frame_labels"] == [int(m.any()) for m in masks]


def test_distractors_are_absent_and_targets_are_present(rows):
    corpus = SyntheticTrainingCorpus(num_samples=1000, seed=3, world={"size": 64, "clip_length": 4})
    for index in range(0, 1000, 7):
        row = rows[index]
        item = corpus.world.source_item(index, corpus.seed)
        present = item.present_names
        for name, label in zip(row["names"], row["name_labels"]):
            assert (name in present) == bool(label), (name, label, present)


def test_held_out_compositions_never_appear_in_training_output(rows):
    seen = {name for row in rows for name in row["names"]}
    assert not seen & set(HELD_OUT_NAMES)
    assert seen <= set(TRAINING_NAMES)


def test_same_seed_same_samples_other_split_other_samples():
    a = SyntheticTrainingCorpus(num_samples=5, seed=1, world={"size": 64})
    b = SyntheticTrainingCorpus(num_samples=5, seed=1, world={"size": 64})
    c = SyntheticTrainingCorpus(num_samples=5, seed=1, split="validation", world={"size": 64})
    for i in range(5):
        assert np.array_equal(a[i]["frames"], b[i]["frames"]) and a[i]["names"] == b[i]["names"]
    assert not np.array_equal(a[0]["frames"], c[0]["frames"])


def test_distractor_count_respects_max_names_and_empty_targets_stay_normal():
    rng = np.random.default_rng(0)
    frames = np.zeros((2, 8, 8, 3), dtype=np.uint8)
    empty = SourceObject(names=["ghost"], masks=np.zeros((2, 8, 8), dtype=bool))
    item = SourceItem("x", "test", lambda: frames, [empty], present_names={"ghost"})
    sampler = AnomalyExposureSampler(max_names=6, anomaly_probability=1.0)
    pool = [f"name {i}" for i in range(20)] + ["ghost"]
    for _ in range(50):
        sample = sampler.sample(item, pool, rng)
        assert not sample.is_anomalous and "ghost" not in sample.names  # empty target -> normal
        assert 1 <= len(sample.names) <= 6


def test_hard_negatives_share_a_colour_or_shape():
    corpus = SyntheticTrainingCorpus(num_samples=50, seed=2, hard_negative_share=1.0, world={"size": 64})
    for i in range(50):
        row = corpus[i]
        item = corpus.world.source_item(i, corpus.seed)
        colours = {n.split()[0] for n in item.present_names}
        shapes = {n.split()[1] for n in item.present_names}
        distractors = [n for n, label in zip(row["names"], row["name_labels"]) if not label]
        related = [n for n in distractors if n.split()[0] in colours or n.split()[1] in shapes]
        assert len(related) >= min(len(distractors), 1)


def test_contrast_pairs_share_frames_and_distractors_and_differ_in_the_target():
    corpus = SyntheticTrainingCorpus(num_samples=80, seed=4, max_names=8, contrast_pairs=True,
                                     world={"size": 64, "clip_length": 4})
    assert corpus.group_size == 2 and corpus.train_in_order
    differing = 0
    for k in range(40):
        first, twin = corpus[2 * k], corpus[2 * k + 1]
        item = corpus.world.source_item(k, corpus.seed)
        np.testing.assert_array_equal(first["frames"], twin["frames"])
        assert twin["names"], "a twin always has a name"
        true_first = {n for n, label in zip(first["names"], first["name_labels"]) if label}
        true_twin = {n for n, label in zip(twin["names"], twin["name_labels"]) if label}
        assert not true_first & true_twin and len(true_twin) <= 1
        assert true_twin <= item.present_names
        first_distractors, twin_distractors = set(first["names"]) - true_first, set(twin["names"]) - true_twin
        assert twin_distractors <= first_distractors or not first_distractors  # same list, other target
        for name in true_twin:  # the twin's mask is exactly the named object's mask
            obj = next(o for o in item.objects if name in o.names)
            np.testing.assert_array_equal(twin["masks"], obj.masks.astype(bool))
        differing += not np.array_equal(first["masks"], twin["masks"])
    assert differing >= 30


def test_name_warmup_rows_name_one_visible_object_and_nothing_else():
    corpus = SyntheticTrainingCorpus(num_samples=60, seed=5, max_names=8, name_warmup_samples=40,
                                     world={"size": 64, "clip_length": 4})
    for i in range(40):
        row = corpus[i]
        item = corpus.world.source_item(i, corpus.seed)
        visible = any(o.masks.any() for o in item.objects)
        assert len(row["names"]) == 1
        assert row["is_anomalous"] == visible and (row["names"][0] in item.present_names) == visible
    assert max(len(corpus[i]["names"]) for i in range(40, 60)) > 1  # distractors come back after the warm-up


def test_min_distractors_bounds():
    with pytest.raises(ValueError, match="max_names"):
        AnomalyExposureSampler(max_names=1)
    AnomalyExposureSampler(max_names=1, min_distractors=0)


def test_name_replay_keeps_a_share_of_warmup_style_clips_after_the_warmup():
    """An anomalous row with a single name can only be a replayed warm-up row (otherwise lists hold a distractor)."""
    def single_name_share(replay: float) -> float:
        corpus = SyntheticTrainingCorpus(num_samples=400, seed=6, max_names=8, name_replay_share=replay,
                                         world={"size": 64, "clip_length": 4})
        visible = [i for i in range(400) if any(o.masks.any() for o in corpus.world.source_item(i, corpus.seed).objects)]
        return float(np.mean([corpus[i]["is_anomalous"] and len(corpus[i]["names"]) == 1 for i in visible]))

    assert single_name_share(0.0) == 0.0
    assert abs(single_name_share(0.5) - 0.5) < 3 * math.sqrt(0.25 / 300)


def _one_object_item(group_size: tuple[int, int] = (1, 1), objects: int = 1) -> SourceItem:
    """An image item with ``objects`` visible objects named ``object 0``, ``object 1``, ..."""
    frames = np.zeros((1, 4, 4, 3), dtype=np.uint8)
    mask = np.zeros((1, 4, 4), dtype=bool)
    mask[0, 1, 1] = True
    names = [f"object {k}" for k in range(objects)]
    return SourceItem("x", "test", lambda: frames, [SourceObject(names=[n], masks=mask) for n in names],
                      present_names=set(names), group_size=group_size)


@pytest.mark.parametrize("anomaly_probability", [1.0, 0.0])
def test_distractor_count_is_uniform_over_the_counts_a_small_pool_allows(anomaly_probability):
    """5 absent names and max_names 30: each count 1..5 has probability 1/5 (clipping [1, 29] would pile it on 5)."""
    item = _one_object_item()
    pool = ["object 0"] + [f"name {i}" for i in range(5)]
    sampler = AnomalyExposureSampler(max_names=30, anomaly_probability=anomaly_probability)
    draws = 4000
    counts = np.zeros(31, dtype=int)
    for index in range(draws):
        sample = sampler.sample(item, pool, np.random.default_rng([0, index]))
        assert sample.is_anomalous == (anomaly_probability == 1.0)
        counts[len(sample.name_labels) - sum(sample.name_labels)] += 1
    assert counts[0] == 0 and counts[6:].sum() == 0
    tolerance = 4 * math.sqrt(0.2 * 0.8 / draws)  # 4 sigma of a share of 1/5 over 4000 draws, about 0.025
    for count in range(1, 6):
        assert abs(counts[count] / draws - 0.2) < tolerance, (count, counts[1:6] / draws)


def test_normal_lists_are_bounded_by_the_target_count_the_sample_would_have_had():
    """A normal list holds 1 .. max_names - true_count names, true_count drawn as for an anomalous sample."""
    pool = [f"object {k}" for k in range(2)] + [f"name {i}" for i in range(50)]
    normal = AnomalyExposureSampler(max_names=6, anomaly_probability=0.0)
    for group_size, most in (((2, 2), 4), ((1, 1), 5)):
        item = _one_object_item(group_size=group_size, objects=2)
        sizes = {len(normal.sample(item, pool, np.random.default_rng([1, i])).names) for i in range(400)}
        assert sizes == set(range(1, most + 1)), (group_size, sizes)
    anomalous = AnomalyExposureSampler(max_names=6, anomaly_probability=1.0)
    item = _one_object_item(group_size=(2, 2), objects=2)
    distractors = {len(s.names) - sum(s.name_labels) for s in
                   (anomalous.sample(item, pool, np.random.default_rng([2, i])) for i in range(400))}
    assert distractors == set(range(1, 5))


def test_same_generator_seed_same_sample():
    item = _one_object_item(group_size=(1, 2), objects=2)
    pool = [f"object {k}" for k in range(2)] + [f"name {i}" for i in range(8)]
    sampler = AnomalyExposureSampler(max_names=30)
    for index in range(20):
        a = sampler.sample(item, pool, np.random.default_rng([3, index]))
        b = sampler.sample(item, pool, np.random.default_rng([3, index]))
        assert a.names == b.names and a.name_labels == b.name_labels
        np.testing.assert_array_equal(a.masks, b.masks)


def test_anomaly_probability_outside_zero_one_is_refused():
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="anomaly_probability"):
            AnomalyExposureSampler(anomaly_probability=bad)


def test_hard_negative_share_sets_how_many_distractors_are_related():
    """share 0.5 of 4 distractors: 2 are drawn from the hard negatives (6 on offer), 2 from all absent names."""
    item = _one_object_item()
    related = [f"related {i}" for i in range(6)]
    pool = ["object 0"] + related + [f"name {i}" for i in range(20)]
    sampler = AnomalyExposureSampler(max_names=30, hard_negatives=lambda present, absent: related,
                                     hard_negative_share=0.5)
    for index in range(20):
        names = sampler._distractors(item, sampler._absent(item, pool), 4, np.random.default_rng([4, index]))
        assert len(names) == len(set(names)) == 4 and sum(name in related for name in names) >= 2


def test_a_sample_carries_its_items_id_and_source():
    sample = AnomalyExposureSampler(anomaly_probability=1.0).sample(_one_object_item(), ["object 0", "name 0"],
                                                                     np.random.default_rng(5))
    assert (sample.sample_id, sample.source, sample.is_anomalous) == ("x", "test", True)


def test_contrast_twin_names_the_other_object_keeps_a_full_list_and_fills_an_empty_one():
    item = _one_object_item(objects=2)
    item.objects[1].masks = np.roll(item.objects[1].masks, 1, axis=-1)  # the two objects cover different pixels
    full = AnomalyExposureSampler(max_names=4, anomaly_probability=1.0)
    rng = np.random.default_rng(6)
    pool = ["object 0", "object 1"] + [f"name {i}" for i in range(10)]
    sample = full.sample(item, pool, rng)
    while len(sample.names) != 4:  # a list at max_names: the target and 3 distractors
        sample = full.sample(item, pool, rng)
    twin = full.contrast_twin(sample, item, pool, rng)
    target = next(name for name, label in zip(sample.names, sample.name_labels) if label)
    other = next(obj for obj in item.objects if target not in obj.names)
    assert twin.is_anomalous and twin.frame_labels == [1]
    assert sorted(twin.names) == sorted(other.names + [n for n in sample.names if n != target])  # nothing dropped
    np.testing.assert_array_equal(twin.masks, other.masks)
    # a list holding only its target (no distractor) and no other visible object: the twin gets one distractor
    alone = _one_object_item()
    bare = AnomalyExposureSampler(max_names=1, min_distractors=0, anomaly_probability=1.0,
                                  hard_negatives=lambda present, absent: [n for n in absent if n not in present],
                                  hard_negative_share=1.0)
    only_target = bare.sample(alone, ["object 0", "name 0"], np.random.default_rng(7))
    assert only_target.names == ["object 0"]
    empty_twin = bare.contrast_twin(only_target, alone, ["object 0", "name 0"], np.random.default_rng(8))
    assert empty_twin.names == ["name 0"] and empty_twin.name_labels == [0] and not empty_twin.is_anomalous
