"""TokenCompressor against a loop-based reference written from the equations of the method page.

Exact ties (duplicate tokens) go to the lowest index in both: neighbours, centres and the nearest centre; a centre
always heads its own cluster.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lavida.token_compressor import (TokenCompressor, compress_sequence, density_merge, static_unit_keep_mask,
                                     token_distances)


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
        lrd.append(k / max(total, 1e-12))
    count = max(1, int(math.floor(length * ratio)))
    centres = sorted(sorted(range(length), key=lambda p: -lrd[p])[:count])
    clusters = {c: [] for c in centres}
    for p in range(length):
        nearest = p if p in clusters else min(centres, key=lambda c: d[p, c])
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
        sequence = compress_sequence(model.mllm, model.token_compressor, batch["input_ids"], batch["attention_mask"],
                                     batch["mm_token_type_ids"], batch["pixel_values_videos"], batch["video_grid_thw"])
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
        sequence = compress_sequence(model.mllm, model.token_compressor, batch["input_ids"], batch["attention_mask"],
                                     batch["mm_token_type_ids"], batch["pixel_values_videos"], batch["video_grid_thw"])
    t, h, w = batch["video_grid_thw"][0].tolist()
    assert int(sequence.num_visual_tokens[0]) == (h // 2) * (w // 2)  # only the first group of a static video


# ------------------------------------------------------------------ uniform frames: identical and near-identical tokens
def zero_rows(tokens: torch.Tensor) -> int:
    """How many rows of ``[N, C]`` are all-zero vectors."""
    return int((tokens == 0).all(dim=-1).sum())


def test_token_distances_are_zero_between_identical_tokens():
    z = torch.full((1, 64, 32), 0.37)  # more than 25 rows: where cdist's matrix-multiply shortcut would kick in
    assert token_distances(z, z).abs().max().item() == 0.0


def test_identical_tokens_merge_into_themselves():
    token = torch.randn(32, generator=torch.Generator().manual_seed(8))
    z = token.expand(64, 32).clone()[None]
    out = density_merge(z, torch.ones(1, 64, dtype=torch.bool), 0.5, 8)
    assert out.valid.all() and out.tokens.shape == (1, 32, 32)
    assert torch.isfinite(out.tokens).all() and zero_rows(out.tokens[0]) == 0
    assert out.kept_index[0].tolist() == list(range(32))  # equal densities: the earliest tokens, deterministically
    torch.testing.assert_close(out.tokens[0], token.expand(32, 32), rtol=0, atol=1e-6)


def test_near_duplicate_tokens_never_give_zero_vectors():
    generator = torch.Generator().manual_seed(9)
    base = torch.randn(1, 32, generator=generator)
    z = (base + 1e-6 * torch.randn(64, 32, generator=generator))[None]
    out = density_merge(z, torch.ones(1, 64, dtype=torch.bool), 0.5, 8)
    assert out.valid.all() and len(set(out.kept_index[0].tolist())) == 32
    assert torch.isfinite(out.tokens).all() and zero_rows(out.tokens[0]) == 0
    torch.testing.assert_close(out.tokens[0], base.expand(32, 32), rtol=0, atol=1e-4)
    again = density_merge(z, torch.ones(1, 64, dtype=torch.bool), 0.5, 8)
    assert torch.equal(again.kept_index, out.kept_index) and torch.equal(again.tokens, out.tokens)


def test_duplicate_groups_match_the_reference_and_keep_padding_zero():
    # two exact duplicates interleaved (a, b, a, b, ...): every density ties, every centre has a twin centre
    a, b = np.linspace(-1.0, 1.0, 6), np.linspace(2.0, 0.5, 6)
    z = np.stack([a if i % 2 == 0 else b for i in range(20)])
    centres, merged, _ = reference_merge(z, 0.5, 4)
    assert centres == list(range(10))
    rng = np.random.default_rng(10)
    videos = [torch.tensor(z, dtype=torch.float32), torch.tensor(rng.normal(size=(7, 6)), dtype=torch.float32)]
    out = TokenCompressor(ratio=0.5, k=4, static_threshold=-1)(videos)
    assert out.kept_index[0].tolist() == centres
    np.testing.assert_allclose(out.tokens[0].numpy(), merged, atol=1e-6)
    assert out.valid[1].sum() == 3 and zero_rows(out.tokens[1][out.valid[1]]) == 0
    assert (out.tokens[1][~out.valid[1]] == 0).all() and (out.kept_index[1][~out.valid[1]] == -1).all()
    assert torch.isfinite(out.tokens).all()


@pytest.mark.parametrize("grey", [0, 128], ids=["black", "grey"])
def test_uniform_clip_gives_no_zero_visual_token_to_the_llm(tiny_model, byte_tokenizer, grey):
    """A black or grey clip through the tiny model: every merged token handed to the LLM is a real vector."""
    from transformers import Qwen2VLVideoProcessor

    from tests.conftest import build_tiny_batch

    model = tiny_model.eval()
    # no pruning, so all 64 tokens of the uniform clip reach the merge (a static clip keeps only its first group)
    model.config.static_threshold = -1.0
    model.token_compressor.static_threshold = -1.0
    processor = Qwen2VLVideoProcessor(size={"shortest_edge": 112 * 112, "longest_edge": 112 * 112},
                                      cap_pixels_per_frame=False)  # grid (4, 8, 8): 64 video tokens
    clip = np.full((8, 112, 112, 3), grey, dtype=np.uint8)
    batch = build_tiny_batch(byte_tokenizer, processor, batch=1, with_targets=False)
    video = processor(videos=[clip], return_tensors="pt")
    assert torch.equal(video["video_grid_thw"], batch["video_grid_thw"])
    captured = []
    hook = model.token_compressor.register_forward_hook(lambda module, args, output: captured.append(output))
    try:
        with torch.no_grad():
            sequence = compress_sequence(model.mllm, model.token_compressor, batch["input_ids"],
                                         batch["attention_mask"], batch["mm_token_type_ids"],
                                         video["pixel_values_videos"], batch["video_grid_thw"])
    finally:
        hook.remove()
    compressed = captured[0]
    merged = compressed.tokens[compressed.valid]
    assert len(merged) == 32 and torch.isfinite(merged).all() and zero_rows(merged) == 0
    is_video = (sequence.input_ids == model.config.mllm_config.video_token_id) & sequence.attention_mask.bool()
    llm_visual = sequence.inputs_embeds[is_video]
    assert len(llm_visual) == 32 and zero_rows(llm_visual) == 0


# ------------------------------------------------------------------------ static pruning followed by density merging
def partly_static_patches(rng: np.random.Generator, groups: int, side: int, dim: int, moving: list[int]) -> np.ndarray:
    """Patch embeddings ``[groups * side * side, dim]`` in the Qwen patch order; only the listed units change."""
    units = (side // 2) ** 2
    patches = np.repeat(rng.normal(size=(1, units, 4, dim)), groups, axis=0)
    patches[1:, moving] = rng.normal(size=(groups - 1, len(moving), 4, dim))
    return patches.reshape(-1, dim)


def test_pruning_then_merging_reports_centres_in_the_original_token_order():
    rng = np.random.default_rng(11)
    grid = torch.tensor([[4, 4, 4], [4, 4, 4]])  # 4 temporal groups of 4 units: 16 tokens per video
    patches = np.concatenate([partly_static_patches(rng, 4, 4, 3, [1, 2]),  # units 0 and 3 static
                              partly_static_patches(rng, 4, 4, 3, [3])])
    # the tokens of later groups are tight clusters (dense), those of the first group spread out
    videos = []
    for _ in range(2):
        tokens = rng.normal(size=(16, 5)) * 3.0
        tokens[4:] = tokens[4:8][None].repeat(3, axis=0).reshape(12, 5) + 0.01 * rng.normal(size=(12, 5))
        videos.append(torch.tensor(tokens, dtype=torch.float32))
    compressor = TokenCompressor(ratio=0.5, k=3, static_threshold=0.01)
    masks = compressor.static_keep_mask(torch.tensor(patches), grid)
    assert [int(m.sum()) for m in masks] == [10, 7] and not all(m.all() for m in masks)
    out = compressor(videos, masks)
    shifted = False
    for v, (tokens, keep) in enumerate(zip(videos, masks)):
        original = keep.nonzero().squeeze(-1)
        centres, merged, _ = reference_merge(tokens[original].double().numpy(), 0.5, 3)
        expected = original[centres].tolist()
        valid = out.valid[v]
        assert out.kept_index[v][valid].tolist() == expected  # indexes of the unpruned video, not of the pruned list
        assert all(keep[i] for i in expected)
        np.testing.assert_allclose(out.tokens[v][valid].numpy(), merged, atol=1e-5)
        shifted |= expected != centres
    assert shifted  # some centre sits after a pruned token: pruned-list positions would be wrong


def test_partly_static_clip_keeps_the_rotary_positions_of_the_merged_centres(tiny_model, byte_tokenizer,
                                                                           tiny_video_processor):
    """Through the model: a clip whose top half is still is pruned, merged, and each centre keeps its position."""
    from tests.conftest import build_tiny_batch

    model = tiny_model.eval()
    batch = build_tiny_batch(byte_tokenizer, tiny_video_processor, batch=1, with_targets=False)
    rng = np.random.default_rng(12)
    clip = rng.integers(0, 255, size=(8, 56, 56, 3), dtype=np.uint8)
    clip[:, :28] = clip[:1, :28]  # the top row of merge units never changes
    video = tiny_video_processor(videos=[clip], return_tensors="pt")
    pixels, grid = video["pixel_values_videos"], batch["video_grid_thw"]
    captured = []
    hook = model.token_compressor.register_forward_hook(lambda module, args, output: captured.append((args, output)))
    try:
        with torch.no_grad():
            sequence = compress_sequence(model.mllm, model.token_compressor, batch["input_ids"],
                                         batch["attention_mask"], batch["mm_token_type_ids"], pixels, grid)
    finally:
        hook.remove()
    (video_tokens, keep_masks), compressed = captured[0]
    keep = keep_masks[0]
    assert keep.tolist() == [True] * 4 + [False, False, True, True] * 3  # units 0 and 1 (top row) pruned
    original = keep.nonzero().squeeze(-1)
    pruned = density_merge(video_tokens[0][original][None], torch.ones(1, len(original), dtype=torch.bool),
                           model.token_compressor.ratio, model.token_compressor.k)
    kept = compressed.kept_index[0][compressed.valid[0]]
    assert kept.tolist() == original[pruned.kept_index[0]].tolist() and bool(keep[kept].all())
    assert kept.tolist() != pruned.kept_index[0].tolist()  # pruned-list positions would differ
    # each merged token sits at the 3-D rotary position of its centre in the uncompressed sequence
    base = model.mllm.model
    full_positions, _ = base.get_rope_index(batch["input_ids"], batch["mm_token_type_ids"], video_grid_thw=grid,
                                            attention_mask=batch["attention_mask"])
    video_id = model.config.mllm_config.video_token_id
    video_columns = (batch["input_ids"][0] == video_id).nonzero().squeeze(-1)
    new_columns = ((sequence.input_ids[0] == video_id) & sequence.attention_mask[0].bool()).nonzero().squeeze(-1)
    assert torch.equal(sequence.position_ids[:, 0, new_columns], full_positions[:, 0, video_columns[kept]])
    torch.testing.assert_close(sequence.inputs_embeds[0, new_columns], compressed.tokens[0][compressed.valid[0]])


def test_density_merge_with_one_neighbour_matches_the_reference():
    """k = 1: each token's density comes from its nearest neighbour alone (still a real LOF density, not a constant)."""
    rng = np.random.default_rng(13)
    z = rng.normal(size=(15, 4))
    centres, merged, _ = reference_merge(z, 0.4, 1)
    out = density_merge(torch.tensor(z)[None], torch.ones(1, 15, dtype=torch.bool), 0.4, 1)
    assert out.kept_index[0].tolist() == centres and centres != list(range(len(centres)))
    np.testing.assert_allclose(out.tokens[0].numpy(), merged, atol=1e-6)


def test_density_merge_gives_a_video_without_tokens_no_centre():
    """A row with no valid token gets no merged token, beside a real video and when the whole batch is empty."""
    tokens = torch.tensor(np.random.default_rng(14).normal(size=(2, 6, 3)), dtype=torch.float32)
    valid = torch.tensor([[True] * 6, [False] * 6])
    out = density_merge(tokens, valid, 0.5, 2)
    assert out.valid.tolist() == [[True] * 3, [False] * 3] and out.kept_index[1].tolist() == [-1] * 3
    assert (out.tokens[1] == 0).all()
    none = density_merge(tokens, torch.zeros(2, 6, dtype=torch.bool), 0.5, 2)
    assert none.tokens.shape == (2, 0, 3) and none.tokens.dtype == tokens.dtype
    assert none.kept_index.shape == none.valid.shape == (2, 0)
    assert none.kept_index.dtype == torch.long and none.valid.dtype == torch.bool
    assert none.lengths().tolist() == [0, 0]


def test_compress_sequence_keeps_the_labels_of_the_kept_positions(tiny_model, byte_tokenizer, tiny_video_processor):
    """LM labels follow their tokens through compression (text labels kept in order, -100 on the padding of the row
    that keeps fewer visual tokens), and no labels stay None."""
    from tests.conftest import build_tiny_batch

    model = tiny_model.eval()
    moving = build_tiny_batch(byte_tokenizer, tiny_video_processor, batch=1)
    still = build_tiny_batch(byte_tokenizer, tiny_video_processor, batch=1, moving=False)  # pruned to its first group
    keys = ("input_ids", "attention_mask", "mm_token_type_ids", "pixel_values_videos", "video_grid_thw", "labels")
    batch = {key: torch.cat([moving[key], still[key]]) for key in keys}
    inputs = (model.mllm, model.token_compressor, batch["input_ids"], batch["attention_mask"],
              batch["mm_token_type_ids"], batch["pixel_values_videos"], batch["video_grid_thw"])
    with torch.no_grad():
        sequence = compress_sequence(*inputs, labels=batch["labels"])
        unlabelled = compress_sequence(*inputs)
    assert unlabelled.labels is None
    video_id = model.config.mllm_config.video_token_id
    assert sequence.labels.shape == sequence.input_ids.shape
    for row in range(batch["input_ids"].shape[0]):
        ids, labels = batch["input_ids"][row], batch["labels"][row]
        new_len = int(sequence.attention_mask[row].sum())
        new_ids, new_labels = sequence.input_ids[row, :new_len], sequence.labels[row, :new_len]
        assert torch.equal(new_labels[new_ids != video_id], labels[ids != video_id])
        assert (new_labels[new_ids == video_id] == -100).all() and (labels >= 0).sum() > 5
        assert (sequence.labels[row, new_len:] == -100).all()
    assert int(sequence.attention_mask.sum(dim=1).min()) < sequence.labels.shape[1]  # one row is padded
