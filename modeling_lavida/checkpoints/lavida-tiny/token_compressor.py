"""LAVIDA's visual token compression (section 2 of the method): static-token pruning + density-based merging.

Two steps, both on the visual tokens only, in training and in inference:

1. **Temporal static-token pruning.** Each LLM video token comes from one 2x2 merge unit of vision patches in one
   temporal group. For every unit, the patch embeddings of each later temporal group are compared with the first
   group (``1 - cos``); a unit whose mean difference is below ``static_threshold`` is static background and is kept
   only in the first group.
2. **Density-based background merging with reverse attention.** On the L remaining tokens ``Z`` (L x C) of one
   video, the local reachability density (LOF, ``k`` neighbours) of every token is computed; the
   ``R = max(1, floor(L * ratio))`` densest tokens become cluster centres (kept in their original order), every token
   joins its nearest centre, and each cluster is merged with *reverse* attention
   ``z'_i = sum_j softmax_j(-(z_i . z_j) / sqrt(C)) z_j`` so that the members least like the background dominate.

Uniform frames (a black or grey frame, a dark scene) give many identical or near-identical tokens. Distances are
therefore computed from exact differences (``torch.cdist``'s matrix-multiply shortcut turns them into rounding noise,
even between a token and itself), exact ties go to the lowest token index (stable sorts), and every centre is put in
its own cluster explicitly, so no cluster is empty and no merged token is ever a zero vector.

Everything is batched over videos with padding masks; there is no Python loop over tokens. The compressor returns,
with the merged tokens, the index of each centre in the original visual-token order: the caller gives each merged
token the multimodal rotary position of its centre, so surviving tokens keep their 3-D positions.

Departure from the paper: pruning is decided on the patch embeddings as in the paper, but the vision tower itself
still runs on all patches (any Qwen-VL tower can be used unchanged); the pruned tokens are removed before the LLM.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class CompressedTokens:
    """Result of ``TokenCompressor`` for a batch of videos.

    Attributes:
        tokens: ``[B, R_max, C]`` merged tokens, padded (padding rows are zero).
        kept_index: ``[B, R_max]`` index of each merged token's centre in the *original* visual-token order of its
            video (before pruning); padding entries are -1. Sorted ascending in the valid part.
        valid: ``[B, R_max]`` bool, which rows are real.
    """

    tokens: torch.Tensor
    kept_index: torch.Tensor
    valid: torch.Tensor

    def lengths(self) -> torch.Tensor:
        return self.valid.sum(dim=1)


def static_unit_keep_mask(unit_embeddings: torch.Tensor, threshold: float) -> torch.Tensor:
    """Which (temporal group, unit) tokens survive static pruning, for one video.

    Args:
        unit_embeddings: ``[T_g, U, D]`` patch embeddings of each 2x2 merge unit (its 4 patches concatenated) for
            each of the ``T_g`` temporal groups.
        threshold: a unit whose mean ``1 - cos`` against the first group is below this is static.

    Returns:
        ``[T_g, U]`` bool; the first group is always kept.
    """
    num_groups, num_units, _ = unit_embeddings.shape
    keep = torch.ones(num_groups, num_units, dtype=torch.bool, device=unit_embeddings.device)
    if num_groups < 2 or threshold < 0:
        return keep
    difference = 1.0 - F.cosine_similarity(unit_embeddings[1:].float(), unit_embeddings[:1].float(), dim=-1)
    moving = difference.mean(dim=0) >= threshold  # (U,)
    keep[1:] = moving[None, :]
    return keep


def token_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Euclidean distances between the tokens of each video, without gradient, robust to near-identical tokens.

    ``torch.cdist`` switches to ``||x||^2 + ||y||^2 - 2 x.y`` for more than 25 rows, whose cancellation leaves
    rounding noise of the size of ``||x||^2 * eps``: for near-identical tokens (a black or grey frame) this noise is
    larger than the true distances, and a token is no longer at distance 0 from itself. Distances do not change under
    a shift, so both sides are first moved by the video's first token: the noise then scales with the tokens'
    spread, identical tokens are exactly 0 apart, and the fast matrix-multiply form is kept (the difference form costs
    about 12x more at full size on CPU).

    Args:
        x: ``[B, N, C]`` (row 0 of each video is a real token); y: ``[B, M, C]``.

    Returns:
        ``[B, N, M]`` distances.
    """
    with torch.no_grad():
        reference = x[:, :1].detach()
        return torch.cdist(x.detach() - reference, y.detach() - reference).clamp_min(0.0)


def local_reachability_density(tokens: torch.Tensor, valid: torch.Tensor, k: int) -> torch.Tensor:
    """LOF local reachability density of every token.

    ``d(p, o) = ||z_p - z_o|| / sqrt(C)``; ``reach(p, o) = max(kdist(o), d(p, o))``;
    ``LRD(p) = k / sum_{o in N_k(p)} reach(p, o)``, with ``k`` reduced to ``n - 1`` for a video of ``n`` tokens.
    Neighbours at equal distance are taken in token order, so ties are resolved deterministically.

    Args:
        tokens: ``[B, L, C]``; valid: ``[B, L]`` bool.

    Returns:
        ``[B, L]`` densities; ``-inf`` on padding.
    """
    batch, length, channels = tokens.shape
    z = tokens.float()
    distance = token_distances(z, z) / math.sqrt(channels)  # (B, L, L)
    pair_valid = valid[:, :, None] & valid[:, None, :]
    eye = torch.eye(length, dtype=torch.bool, device=tokens.device)[None]
    neighbour_distance = distance.masked_fill(~pair_valid | eye, float("inf"))
    counts = valid.sum(dim=1)  # (B,)
    k_eff = torch.clamp(torch.minimum(counts - 1, torch.full_like(counts, k)), min=0)  # (B,)
    k_top = max(1, min(k, length - 1)) if length > 1 else 1
    # a stable sort instead of topk: equal distances (duplicate tokens) keep token order, on every device
    knn_distance, knn_index = neighbour_distance.sort(dim=-1, stable=True)
    knn_distance, knn_index = knn_distance[..., :k_top], knn_index[..., :k_top]  # (B, L, k)
    take = torch.clamp(k_eff - 1, min=0)[:, None, None].expand(batch, length, 1)
    k_distance = knn_distance.gather(-1, take).squeeze(-1)  # (B, L): distance to the k-th neighbour
    neighbour_kdist = k_distance.gather(1, knn_index.reshape(batch, -1)).reshape(batch, length, k_top)
    reach = torch.maximum(neighbour_kdist, knn_distance)  # (B, L, k)
    in_k = torch.arange(k_top, device=tokens.device)[None, None, :] < k_eff[:, None, None]
    reach_sum = reach.masked_fill(~in_k, 0.0).sum(dim=-1)
    density = k_eff[:, None].float() / reach_sum.clamp_min(1e-12)
    density = torch.where(k_eff[:, None] > 0, density, torch.ones_like(density))  # a lone token: any finite value
    return density.masked_fill(~valid, float("-inf"))


def density_merge(tokens: torch.Tensor, valid: torch.Tensor, ratio: float, k: int) -> CompressedTokens:
    """Merge each video's tokens into its ``max(1, floor(n * ratio))`` densest centres with reverse attention.

    Args:
        tokens: ``[B, L, C]`` padded visual tokens; valid: ``[B, L]`` bool.
        ratio: share of tokens kept; k: LOF neighbours.

    Returns:
        ``CompressedTokens`` whose ``kept_index`` indexes positions of ``tokens`` (the caller maps them back).

    Ties are resolved towards the lowest index: among equally dense tokens the earliest become centres, and a token at
    equal distance from several centres joins the earliest. Each centre always belongs to its own cluster, so every
    valid merged token is a convex combination of at least its centre (never an empty softmax, never a zero vector).
    """
    batch, length, channels = tokens.shape
    counts = valid.sum(dim=1)
    num_centres = torch.clamp(torch.floor(counts.float() * ratio).long(), min=1)
    num_centres = torch.where(counts > 0, num_centres, torch.zeros_like(num_centres))
    max_centres = int(num_centres.max().item()) if batch else 0
    if max_centres == 0:
        empty = tokens.new_zeros(batch, 0, channels)
        return CompressedTokens(empty, torch.zeros(batch, 0, dtype=torch.long, device=tokens.device),
                                torch.zeros(batch, 0, dtype=torch.bool, device=tokens.device))

    density = local_reachability_density(tokens, valid, k)
    # stable descending sort: equally dense tokens (uniform frames) are taken in token order; padding (-inf) last
    densest = density.sort(dim=1, descending=True, stable=True).indices[:, :max_centres]  # (B, R_max)
    centre_valid = torch.arange(max_centres, device=tokens.device)[None, :] < num_centres[:, None]
    # keep the original order of the centres; padding sorts last
    centre_index, _ = torch.where(centre_valid, densest, torch.full_like(densest, length)).sort(dim=1)
    centre_valid = centre_index < length
    centre_index = centre_index.clamp(max=length - 1)

    z = tokens.float()
    centres = z.gather(1, centre_index[..., None].expand(-1, -1, channels))  # (B, R, C)
    to_centre = token_distances(z, centres)  # (B, L, R); the 1/sqrt(C) scale does not change the argmin
    to_centre = to_centre.masked_fill(~centre_valid[:, None, :], float("inf"))
    assignment = to_centre.argmin(dim=-1)  # (B, L); argmin returns the first (earliest) centre among equals
    # Every centre joins its own cluster, whatever the distances say: with duplicate tokens an earlier centre is as
    # near as the centre itself, and a centre taken by another cluster would leave its own cluster empty.
    slots = torch.arange(max_centres, device=tokens.device)[None, :].expand(batch, -1)
    own = torch.full((batch, length + 1), -1, dtype=torch.long, device=tokens.device)  # column `length`: padding
    own.scatter_(1, torch.where(centre_valid, centre_index, torch.full_like(centre_index, length)), slots)
    own = own[:, :length]  # (B, L): the cluster a centre token heads, -1 for the other tokens
    assignment = torch.where(own >= 0, own, assignment)

    members = (assignment[:, None, :] == torch.arange(max_centres, device=tokens.device)[None, :, None])
    members = members & valid[:, None, :] & centre_valid[:, :, None]  # (B, R, L); every valid row holds its centre
    logits = -(centres @ z.transpose(1, 2)) / math.sqrt(channels)  # (B, R, L): reverse attention
    # Padding centres have no members: let them attend to everything (finite softmax, no NaN) and zero them after.
    attend = members | ~centre_valid[:, :, None]
    weights = torch.softmax(logits.masked_fill(~attend, float("-inf")), dim=-1)
    weights = weights.masked_fill(~centre_valid[:, :, None], 0.0)
    merged = (weights @ z).to(tokens.dtype)  # (B, R, C); padding rows are zero
    kept_index = torch.where(centre_valid, centre_index, torch.full_like(centre_index, -1))
    return CompressedTokens(merged, kept_index, centre_valid)


class TokenCompressor(nn.Module):
    """Static-token pruning followed by density-based merging, for a batch of videos (no parameters).

    Args:
        ratio: share of the (pruned) tokens kept by merging; 1.0 skips merging.
        k: LOF neighbours.
        static_threshold: pruning threshold; negative disables pruning.
        spatial_merge_size: side of the merge unit (2 for the Qwen-VL family).
    """

    def __init__(self, ratio: float = 0.5, k: int = 8, static_threshold: float = 0.01, spatial_merge_size: int = 2):
        super().__init__()
        self.ratio = ratio
        self.k = k
        self.static_threshold = static_threshold
        self.spatial_merge_size = spatial_merge_size

    def static_keep_mask(self, patch_embeddings: torch.Tensor, grid_thw: torch.Tensor) -> list[torch.Tensor]:
        """Per video, which visual tokens survive static pruning.

        Args:
            patch_embeddings: ``[sum_v t*h*w, D]`` patch embeddings of all videos, in the Qwen-VL patch order
                (temporal group, unit row, unit column, then the 2x2 patches of the unit).
            grid_thw: ``[V, 3]`` patch grid per video.

        Returns:
            one ``[t * h/2 * w/2]`` bool tensor per video, in LLM video-token order.
        """
        unit = self.spatial_merge_size ** 2
        masks, start = [], 0
        for t, h, w in grid_thw.tolist():  # one iteration per video, not per token
            count = t * h * w
            units = patch_embeddings[start:start + count].reshape(t, (h * w) // unit, -1)
            masks.append(static_unit_keep_mask(units, self.static_threshold).reshape(-1))
            start += count
        return masks

    def forward(self, video_tokens: list[torch.Tensor], keep_masks: list[torch.Tensor] | None = None
                ) -> CompressedTokens:
        """Compress each video's tokens.

        Args:
            video_tokens: one ``[L_v, C]`` tensor per video (the vision tower's output tokens).
            keep_masks: optional ``[L_v]`` bool per video from ``static_keep_mask``.

        Returns:
            ``CompressedTokens`` with ``kept_index`` into each video's original token order.
        """
        if keep_masks is None:
            keep_masks = [torch.ones(len(t), dtype=torch.bool, device=t.device) for t in video_tokens]
        # pack the surviving tokens of each video into a padded batch
        lengths = torch.stack([m.sum() for m in keep_masks])
        max_len = int(lengths.max().item())
        channels = video_tokens[0].shape[-1]
        packed = video_tokens[0].new_zeros(len(video_tokens), max_len, channels)
        original = torch.full((len(video_tokens), max_len), -1, dtype=torch.long, device=packed.device)
        for v, (tokens, keep) in enumerate(zip(video_tokens, keep_masks)):
            index = keep.nonzero().squeeze(-1)
            packed[v, : len(index)] = tokens[index]
            original[v, : len(index)] = index
        valid = original >= 0
        if self.ratio >= 1.0:
            return CompressedTokens(packed, original, valid)
        merged = density_merge(packed, valid, self.ratio, self.k)
        kept = original.gather(1, merged.kept_index.clamp(min=0))
        kept = torch.where(merged.valid, kept, torch.full_like(kept, -1))
        return CompressedTokens(merged.tokens, kept, merged.valid)


@dataclass
class CompressedSequence:
    """The LLM input after visual token compression (right-padded).

    Attributes:
        inputs_embeds: ``[B, S', D]`` token embeddings, merged visual tokens in place of the kept video tokens.
        attention_mask: ``[B, S']``.
        position_ids: ``[3, B, S']`` rotary positions taken from the uncompressed sequence.
        input_ids: ``[B, S']`` ids at the kept positions (merged video tokens keep the video token id).
        labels: ``[B, S']`` LM labels at the kept positions (-100 on padding), or None.
        num_visual_tokens: ``[B]`` visual tokens per sample after compression.
    """

    inputs_embeds: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    input_ids: torch.Tensor
    labels: torch.Tensor | None
    num_visual_tokens: torch.Tensor


def compress_sequence(mllm: nn.Module, compressor: TokenCompressor, input_ids: torch.Tensor,
                      attention_mask: torch.Tensor, mm_token_type_ids: torch.Tensor,
                      pixel_values_videos: torch.Tensor, video_grid_thw: torch.Tensor,
                      labels: torch.Tensor | None = None) -> CompressedSequence:
    """Vision tower + token compression, giving the LLM's input with correct 3-D rotary positions.

    Each sample holds exactly one video. Rotary positions are computed on the full sequence first, then every token
    that survives (text, and the centre of each merged visual cluster) keeps its own position.

    Args:
        mllm: a Qwen-VL family ``*ForConditionalGeneration`` (its ``model`` has ``get_rope_index``,
            ``get_video_features`` and the vision tower ``visual``).
        compressor: the ``TokenCompressor`` (static pruning when its ``static_threshold`` is >= 0, then merging).
        input_ids: ``[B, S]`` prompts with the video placeholder tokens.
        attention_mask: ``[B, S]``.
        mm_token_type_ids: ``[B, S]`` (0 text, 1 image, 2 video).
        pixel_values_videos: ``[sum patches, C*tp*p*p]`` the MLLM video processor's patches.
        video_grid_thw: ``[B, 3]`` patch grid per video.
        labels: ``[B, S]`` LM labels, or None.

    Returns:
        ``CompressedSequence`` of length ``S' <= S``.
    """
    base = mllm.model
    video_token_id = mllm.config.video_token_id
    position_ids, _ = base.get_rope_index(input_ids, mm_token_type_ids, video_grid_thw=video_grid_thw,
                                          attention_mask=attention_mask)  # (3, B, S)
    video_tokens = list(base.get_video_features(pixel_values_videos, video_grid_thw).pooler_output)
    is_video = input_ids == video_token_id  # (B, S)
    per_row = is_video.sum(dim=1)
    expected = torch.tensor([len(t) for t in video_tokens], device=per_row.device)
    if len(video_tokens) != input_ids.shape[0] or not torch.equal(per_row, expected):
        raise ValueError(
            f"Each sample must hold exactly one video: got {len(video_tokens)} videos for {input_ids.shape[0]} "
            f"samples, video tokens per sample {per_row.tolist()} vs features {expected.tolist()}."
        )
    keep_masks = None
    if compressor.static_threshold >= 0:
        visual = base.visual
        with torch.no_grad():  # the patch embeddings that static pruning compares: (num_patches, D)
            patch_embeddings = visual.patch_embed(pixel_values_videos.to(visual.dtype))
        keep_masks = compressor.static_keep_mask(patch_embeddings, video_grid_thw)
    compressed = compressor(video_tokens, keep_masks)

    # which sequence positions survive: all non-video tokens, and video tokens that are cluster centres
    video_rank = (is_video.cumsum(dim=1) - 1).clamp(min=0)  # (B, S) index among the row's video tokens
    centre = torch.zeros(input_ids.shape[0], int(per_row.max()), dtype=torch.bool, device=input_ids.device)
    rows = torch.arange(input_ids.shape[0], device=input_ids.device)[:, None].expand_as(compressed.kept_index)
    centre[rows[compressed.valid], compressed.kept_index[compressed.valid]] = True
    keep = ~is_video | centre.gather(1, video_rank)  # (B, S)
    lengths = keep.sum(dim=1)  # (B,)
    new_len = int(lengths.max())
    order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)[:, :new_len]  # (B, S') kept first, in order
    in_range = torch.arange(new_len, device=input_ids.device)[None, :] < lengths[:, None]  # (B, S')

    new_ids = input_ids.gather(1, order)
    new_mask = attention_mask.gather(1, order) * in_range
    new_positions = position_ids.gather(2, order[None].expand(position_ids.shape[0], -1, -1))  # (3, B, S')
    new_labels = None
    if labels is not None:
        new_labels = labels.gather(1, order).masked_fill(~in_range, -100)
    embeds = mllm.get_input_embeddings()(new_ids)  # (B, S', D)
    new_is_video = (new_ids == video_token_id) & in_range
    merged = compressed.tokens[compressed.valid].to(embeds.dtype)
    embeds = embeds.masked_scatter(new_is_video[..., None], merged)
    return CompressedSequence(embeds, new_mask, new_positions, new_ids, new_labels, compressed.lengths())


__all__ = ["CompressedSequence", "CompressedTokens", "TokenCompressor", "compress_sequence", "density_merge",
           "local_reachability_density", "static_unit_keep_mask", "token_distances"]
