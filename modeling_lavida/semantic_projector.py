"""LAVIDA's semantic projector: class names meet frames, then a two-way Q-Former yields one SAM2 prompt per frame.

Section 1, step 5 of the method:

- class names -> text encoder (outside) -> ``Linear(text -> P)``: ``[N, P]``;
- lowest-resolution SAM2 level + its positional encoding -> ``Linear(sam -> P)``: ``[T, hw, P]``;
- name-to-frame cross-attention (queries = names, keys/values = frame tokens), residual + LayerNorm + Linear;
- ``f_sem`` (the ``<SEG>`` hidden state) -> ``Linear(D -> P)``, put in front of the names: ``[T, 1 + N, P]``;
- a two-way Q-Former (SAM-style blocks) with learnable queries; the output queries are flattened and projected to
  one SAM2 prompt vector per frame.

The Q-Former block follows SAM2's ``TwoWayAttentionBlock`` (``sam2/modeling/sam/transformer.py``), as the authors'
code does: ReLU MLP, no dropout, and each sequence's positional embedding added to the attention queries and keys
(not the values) before every attention. The sequences have no spatial layout, so their positional embeddings are
their inputs: the learnable queries (SAM2 likewise uses its prompt tokens as ``query_pe``) and the
``[f_sem; names]`` tokens as they enter the Q-Former. ``LavidaConfig.qformer_activation``, ``qformer_dropout`` and
``qformer_readd_positions`` select the earlier variant (GELU, dropout, no positional re-add), which the
embedded lavida-tiny was trained with.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .configuration_lavida import LavidaConfig


class DownsampledAttention(nn.Module):
    """Multi-head attention whose internal width is ``dim / downsample_rate`` (as in SAM), with a key padding mask."""

    def __init__(self, dim: int, num_heads: int, downsample_rate: int = 1, dropout: float = 0.0):
        super().__init__()
        self.internal_dim = dim // downsample_rate
        self.num_heads = num_heads
        self.q_proj = nn.Linear(dim, self.internal_dim)
        self.k_proj = nn.Linear(dim, self.internal_dim)
        self.v_proj = nn.Linear(dim, self.internal_dim)
        self.out_proj = nn.Linear(self.internal_dim, dim)
        self.dropout = dropout

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.reshape(b, n, self.num_heads, -1).transpose(1, 2)  # (B, heads, N, d)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """query ``[B, Nq, dim]``, key/value ``[B, Nk, dim]``, key_padding_mask ``[B, Nk]`` (True = real key)."""
        q, k, v = self._heads(self.q_proj(query)), self._heads(self.k_proj(key)), self._heads(self.v_proj(value))
        mask = None if key_padding_mask is None else key_padding_mask[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                             dropout_p=self.dropout if self.training else 0.0)
        b, _, n, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, self.internal_dim))


QFORMER_ACTIVATION_LAYERS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU}


class TwoWayQFormerBlock(nn.Module):
    """One SAM-style two-way block: query self-attention, query->token cross-attention, MLP, token->query
    cross-attention, each with a residual and a LayerNorm.

    With ``query_pe`` / ``token_pe`` given (SAM2's ``TwoWayAttentionBlock``), ``query_pe`` is added to the queries and
    ``token_pe`` to the tokens wherever they are attention queries or keys, never where they are values.
    """

    def __init__(self, dim: int, num_heads: int, mlp_dim: int, downsample_rate: int, dropout: float,
                 activation: str = "relu"):
        super().__init__()
        if activation not in QFORMER_ACTIVATION_LAYERS:
            raise ValueError(f"activation must be one of {tuple(QFORMER_ACTIVATION_LAYERS)}, got {activation!r}.")
        self.self_attn = DownsampledAttention(dim, num_heads, 1, dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn_query_to_token = DownsampledAttention(dim, num_heads, downsample_rate, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), QFORMER_ACTIVATION_LAYERS[activation](), nn.Dropout(dropout),
                                 nn.Linear(mlp_dim, dim))
        self.norm3 = nn.LayerNorm(dim)
        self.cross_attn_token_to_query = DownsampledAttention(dim, num_heads, downsample_rate, dropout)
        self.norm4 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, queries: torch.Tensor, tokens: torch.Tensor, token_mask: torch.Tensor,
                query_pe: torch.Tensor | None = None, token_pe: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            queries: ``[B, Q, dim]``.
            tokens: ``[B, K, dim]``.
            token_mask: ``[B, K]`` bool, True for real tokens.
            query_pe: ``[B or 1, Q, dim]`` positional embedding of the queries, or None (none added).
            token_pe: ``[B or 1, K, dim]`` positional embedding of the tokens, or None (none added).

        Returns:
            The updated ``(queries [B, Q, dim], tokens [B, K, dim])``.
        """
        q = queries if query_pe is None else queries + query_pe  # (B, Q, dim)
        queries = self.norm1(queries + self.dropout(self.self_attn(q, q, queries)))
        q = queries if query_pe is None else queries + query_pe
        k = tokens if token_pe is None else tokens + token_pe  # (B, K, dim)
        queries = self.norm2(queries + self.dropout(self.cross_attn_query_to_token(q, k, tokens, token_mask)))
        queries = self.norm3(queries + self.dropout(self.mlp(queries)))
        q = queries if query_pe is None else queries + query_pe
        tokens = self.norm4(tokens + self.dropout(self.cross_attn_token_to_query(k, q, queries)))
        return queries, tokens


class SemanticProjector(nn.Module):
    """Turns (``f_sem``, class-name embeddings, SAM2 frame features) into one SAM2 sparse prompt per frame."""

    def __init__(self, config: LavidaConfig):
        super().__init__()
        dim = config.projector_hidden_size
        sam_dim = config.sam_prompt_size
        self.class_proj = nn.Linear(config.text_embedding_size, dim)
        self.frame_proj = nn.Linear(sam_dim, dim)
        self.name_to_frame_attn = DownsampledAttention(dim, config.cross_attention_heads,
                                                       config.attention_downsample_rate)
        self.name_norm = nn.LayerNorm(dim)
        self.name_out = nn.Linear(dim, dim)
        self.seg_proj = nn.Linear(config.mllm_hidden_size, dim)
        self.queries = nn.Parameter(torch.zeros(config.num_queries, dim))
        self.blocks = nn.ModuleList(
            TwoWayQFormerBlock(dim, config.qformer_heads, config.qformer_mlp_dim, config.attention_downsample_rate,
                               config.qformer_dropout, config.qformer_activation)
            for _ in range(config.qformer_layers)
        )
        self.readd_positions = config.qformer_readd_positions
        self.prompt_proj = nn.Linear(config.num_queries * dim, sam_dim)

    def forward(self, seg_hidden_state: torch.Tensor, class_embeddings: torch.Tensor, class_mask: torch.Tensor,
                frame_features: torch.Tensor, frame_positional: torch.Tensor, frames_per_sample: int
                ) -> torch.Tensor:
        """
        Args:
            seg_hidden_state: ``[B, D]`` last-layer hidden state at ``<SEG>``.
            class_embeddings: ``[B, N, E]`` one vector per anomaly name.
            class_mask: ``[B, N]`` bool, False for padding names.
            frame_features: ``[B*T, S, h, w]`` lowest-resolution SAM2 features.
            frame_positional: ``[B*T or 1, S, h, w]`` their positional encoding.
            frames_per_sample: T.

        Returns:
            ``[B*T, S]`` one prompt per frame.
        """
        bt = frame_features.shape[0]
        t = frames_per_sample
        frame_tokens = (frame_features + frame_positional).flatten(2).transpose(1, 2)  # (BT, hw, S)
        frame_tokens = self.frame_proj(frame_tokens)  # (BT, hw, P)
        names = self.class_proj(class_embeddings.to(frame_tokens.dtype))  # (B, N, P)
        names = names.repeat_interleave(t, dim=0)  # (BT, N, P)
        name_mask = class_mask.repeat_interleave(t, dim=0)  # (BT, N)
        attended = self.name_to_frame_attn(names, frame_tokens, frame_tokens)
        names = self.name_out(self.name_norm(names + attended))  # (BT, N, P)
        seg = self.seg_proj(seg_hidden_state.to(names.dtype)).repeat_interleave(t, dim=0)[:, None, :]  # (BT, 1, P)
        tokens = torch.cat([seg, names], dim=1)  # (BT, 1+N, P)
        token_mask = torch.cat([torch.ones_like(name_mask[:, :1]), name_mask], dim=1)
        queries = self.queries[None].expand(bt, -1, -1)  # (BT, Q, P)
        # SAM2-style: the Q-Former's inputs are also its positional embeddings, re-added before every attention
        query_pe, token_pe = (queries, tokens) if self.readd_positions else (None, None)
        for block in self.blocks:
            queries, tokens = block(queries, tokens, token_mask, query_pe, token_pe)
        return self.prompt_proj(queries.flatten(1))  # (BT, S)


class NamePromptEncoder(nn.Module):
    """One SAM2 sparse prompt token per anomaly name: ``Linear(E -> P)``, GELU, ``Linear(P -> S)``.

    Used when ``config.name_prompt_tokens`` is set (a departure from the paper, see ``LavidaConfig``): the projector
    folds all names into a single prompt, and a projector trained from scratch learns to drop the names from it.
    """

    def __init__(self, config: LavidaConfig):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(config.text_embedding_size, config.projector_hidden_size), nn.GELU(),
                                 nn.Linear(config.projector_hidden_size, config.sam_prompt_size))

    def forward(self, class_embeddings: torch.Tensor) -> torch.Tensor:
        """``[B, N, E]`` name vectors -> ``[B, N, S]`` prompt tokens."""
        return self.mlp(class_embeddings.to(self.mlp[0].weight.dtype))


__all__ = ["DownsampledAttention", "NamePromptEncoder", "SemanticProjector", "TwoWayQFormerBlock"]
