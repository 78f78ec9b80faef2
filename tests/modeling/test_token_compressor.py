"""TokenCompressor against a loop-based reference written from the equations of the method page."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lavida.token_compressor import TokenCompressor, density_merge, static_unit_keep_mask


def reference_merge(z: np.ndarray, ratio: float, k: int) -> tuple[list[int], np.ndarray, list[list[float]]]:
    """Brute force, one token at a time: returns (centres, merged tokens, per-cluster attention weights)."""
    length, channels = z.shape
    d = np.zeros((length, length))
    for p in range(length):
        for o in range(length):
            d[p, o] = math.sqrt(sum((z[p, c] - z[o, c]) ** 2 for c in range(channels))) / math.sqrt(channels)
    k = min(k, length - 1)
    neighbours, kdist = [], []
    for p in range(length):
        others = sorted((d[p, o], o) for o in range(length) if o != p)
        neighbours.append([o for _, o in others[:k]])
        kdist.append(others[k - 1][0])
    lrd = []
    for p in range(length):
        total = sum(max(kdist[o], d[p, o]) for o in neighbours[p])
        lrd.append(k / total)
    count = max(1, int(math.floor(length * ratio)))
    centres = sorted(sorted(range(length), key=lambda p: -lrd[p])[:count])
    clusters = {c: [] for c in centres}
    for p in range(length):
        nearest = min(centres, key=lambda c: d[p, c])
        clusters[nearest].append(p)
    merged, weights = [], []
    for c in centres:
        scores = [-(float(np.dot(z[c], z[j]))) / math.sqrt(channels) for j in clusters[c]]
        top = max(scores)
        exps = [math.exp(s - top) for s in scores]
        w = [e / sum(exps) for e in exps]
        weights.append(dict(zip(clusters[c], w)))
        merged.append(sum(wi * z[j] for wi, j in zip(w, clusters[c])))
    return centres, np.stack(merged), weights


@pytest.mark.parametrize("length,ratio,k,seed", [(40, 0.5, 8, 0), (33, 0.25, 4, 1), (17, 0.75, 8, 2), (9, 0.5, 8, 3)])
def test_density_merge_matches_reference(length, ratio, k, seed):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(length, 6))
    centres, merged, _ = reference_merge(z, ratio, k)
    out = density_merge(torch.tensor(z, dtype=torch.float64)[None], torch.ones(1, length, dtype=torch.bool), ratio, k)
    assert out.kept_index[0].tolist() == centres
    np.testing.assert_allclose(out.tokens[0].numpy(), merged, atol=1e-5)


def test_batched_videos_of_different_lengths_match_one_by_one():
    rng = np.random.default_rng(4)
    videos = [torch.tensor(rng.normal(size=(n, 5)), dtype=torch.float32) for n in (30, 21, 12)]
    compressor = TokenCompressor(ratio=0.5, k=8, static_threshold=-1)
    batched = compressor(videos)
    for v, tokens in enumerate(videos):
        centres, merged, _ = reference_merge(tokens.double().numpy(), 0.5, 8)
        valid = batched.valid[v]
        assert int(valid.sum()) == len(centres)
        assert batched.kept_index[v][valid].tolist() == centres
        np.testing.assert_allclose(batched.tokens[v][valid].numpy(), merged, atol=1e-5)


def test_reverse_attention_favours_the_outlier_in_a_cluster():
    rng = np.random.default_rng(5)
    background = rng.normal(loc=2.0, scale=0.05, size=(15, 4))
    outlier = np.array([[-2.0, -2.0, -1.5, -2.5]])
    z = np.concatenate([background, outlier])
    centres, _, weights = reference_merge(z, 1 / 16, 4)  # one cluster holding everything
    assert len(centres) == 1 and centres[0] != 15
    w = weights[0]
    assert w[15] > max(w[j] for j in range(15))
    out = density_merge(torch.tensor(z)[None], torch.ones(1, 16, dtype=torch.bool), 1 / 16, 4)
    plain_mean = z.mean(axis=0)
    # the merged token moves towards the outlier compared with a plain average
    assert np.linalg.norm(out.tokens[0, 0].numpy() - z[15]) < np.linalg.norm(plain_mean - z[15])


def test_static_pruning_removes_static_units_and_keeps_moving_ones():
    rng = np.random.default_rng(6)
    groups, units, dim = 4, 6, 8
    first = rng.normal(size=(units, dim))
    embeddings = np.repeat(first[None], groups, axis=0)
    embeddings[1:, [1, 4]] = rng.normal(size=(groups - 1, 2, dim))  # units 1 and 4 move
    keep = static_unit_keep_mask(torch.tensor(embeddings), threshold=0.01)
    assert keep[0].all()
    assert keep[1:, 1].all() and keep[1:, 4].all()
    static = [0, 2, 3, 5]
    assert not keep[1:, static].any()


def test_static_keep_mask_follows_qwen_patch_order():
    # one video, grid t=2, h=4, w=4 patches -> 4 units of 2x2 per temporal group, patch dim 3
    rng = np.random.default_rng(7)
    patches = rng.normal(size=(2, 4, 4, 3))  # (t, unit, patch-in-unit, dim) in the processor's order
    patches[1] = patches[0]
    patches[1, 2] = rng.normal(size=(4, 3))  # unit 2 changes
    compressor = TokenCompressor(static_threshold=0.01)
    masks = compressor.static_keep_mask(torch.tensor(patches.reshape(-1, 3)), torch.tensor([[2, 4, 4]]))
    assert masks[0].tolist() == [True, True, True, True, False, False, True, False]


def test_rotary_positions_survive_compression(tiny_model, tiny_batch):
    """Kept tokens keep the 3-D rotary position they had in the uncompressed sequence."""
    model = tiny_model.eval()
    batch = tiny_batch
    base = model.mllm.model
    full_positions, _ = base.get_rope_index(batch["input_ids"], batch["mm_token_type_ids"],
                                            video_grid_thw=batch["video_grid_thw"],
                                            attention_mask=batch["attention_mask"])
    with torch.no_grad():
        sequence = model.compress_sequence(batch["input_ids"], batch["attention_mask"], batch["mm_token_type_ids"],
                                           batch["pixel_values_videos"], batch["video_grid_thw"])
    video_id = model.config.mllm_config.video_token_id
    for row in range(batch["input_ids"].shape[0]):
        ids = batch["input_ids"][row]
        n_video = int((ids == video_id).sum())
        kept = int(sequence.num_visual_tokens[row])
        assert 0 < kept <= n_video // 2  # ratio 0.5 after pruning
        # reconstruct which original positions were kept: text tokens all, video tokens by matching positions
        new_len = int(sequence.attention_mask[row].sum())
        assert new_len == len(ids) - n_video + kept
        new_pos = sequence.position_ids[:, row, :new_len]
        full = full_positions[:, row]
        full_columns = {tuple(full[:, j].tolist()): j for j in range(full.shape[1])}
        originals = [full_columns[tuple(new_pos[:, j].tolist())] for j in range(new_len)]
        assert originals == sorted(originals)  # order preserved
        text_positions = [j for j in range(len(ids)) if ids[j] != video_id]
        assert set(text_positions) <= set(originals)  # every text token kept, with its own position
        # the text after the video keeps its original (video-aware) positions, not shifted 1-D ones
        last = len(ids) - 1
        assert tuple(new_pos[:, new_len - 1].tolist()) == tuple(full[:, last].tolist())
        assert torch.equal(sequence.input_ids[row, :new_len], ids[originals])


def test_static_video_is_pruned_to_the_first_temporal_group(tiny_model, byte_tokenizer, tiny_video_processor):
    from tests.conftest import build_tiny_batch

    model = tiny_model.eval()
    model.token_compressor.ratio = 1.0  # isolate pruning
    batch = build_tiny_batch(byte_tokenizer, tiny_video_processor, batch=1, moving=False, with_targets=False)
    with torch.no_grad():
        sequence = model.compress_sequence(batch["input_ids"], batch["attention_mask"], batch["mm_token_type_ids"],
                                           batch["pixel_values_videos"], batch["video_grid_thw"])
    t, h, w = batch["video_grid_thw"][0].tolist()
    assert int(sequence.num_visual_tokens[0]) == (h // 2) * (w // 2)  # only the first group of a static video
