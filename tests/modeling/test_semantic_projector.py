"""The semantic projector's two-way Q-Former: the authors' block (SAM2's) by default, the earlier one when pinned."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from lavida import LavidaConfig
from lavida.model_factory import default_model_path
from lavida.semantic_projector import DownsampledAttention, SemanticProjector, TwoWayQFormerBlock


def projector_inputs(config: LavidaConfig, batch: int = 2, frames: int = 3, names: int = 4, seed: int = 0
                     ) -> dict[str, torch.Tensor | int]:
    """Random projector inputs; the last name of the second sample is padding."""
    generator = torch.Generator().manual_seed(seed)
    size = config.sam_prompt_size
    class_mask = torch.ones(batch, names, dtype=torch.bool)
    class_mask[1, -1] = False
    return {
        "seg_hidden_state": torch.randn(batch, config.mllm_hidden_size, generator=generator),
        "class_embeddings": torch.randn(batch, names, config.text_embedding_size, generator=generator),
        "class_mask": class_mask,
        "frame_features": torch.randn(batch * frames, size, 8, 8, generator=generator),
        "frame_positional": torch.randn(1, size, 8, 8, generator=generator),
        "frames_per_sample": frames,
    }


def seeded_projector(**overrides) -> SemanticProjector:
    torch.manual_seed(0)
    projector = SemanticProjector(LavidaConfig.tiny(**overrides))
    nn.init.normal_(projector.queries, std=0.5)  # the model's _init_weights does this; zeros would hide the re-add
    return projector.eval()


def sam2_two_way_block_reference(block: TwoWayQFormerBlock, queries: torch.Tensor, keys: torch.Tensor,
                                 key_mask: torch.Tensor, query_pe: torch.Tensor, key_pe: torch.Tensor
                                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """SAM2's ``TwoWayAttentionBlock.forward`` (``skip_first_layer_pe=False``), with ``block``'s weights."""
    q = queries + query_pe
    queries = block.norm1(queries + block.self_attn(q, q, queries))
    q = queries + query_pe
    k = keys + key_pe
    queries = block.norm2(queries + block.cross_attn_query_to_token(q, k, keys, key_mask))
    queries = block.norm3(queries + block.mlp(queries))
    q = queries + query_pe
    k = keys + key_pe
    keys = block.norm4(keys + block.cross_attn_token_to_query(k, q, queries))
    return queries, keys


def test_defaults_are_the_authors_block():
    config = LavidaConfig()
    assert config.qformer_activation == "relu" and config.qformer_readd_positions is True
    assert config.qformer_dropout == 0.0
    projector = SemanticProjector(LavidaConfig.tiny())
    assert projector.readd_positions
    for block in projector.blocks:
        assert isinstance(block.mlp[1], nn.ReLU)
        assert all(m.p == 0.0 for m in block.modules() if isinstance(m, nn.Dropout))
        assert all(m.dropout == 0.0 for m in block.modules() if isinstance(m, DownsampledAttention))


def test_block_matches_sam2_two_way_attention_block():
    torch.manual_seed(0)
    block = TwoWayQFormerBlock(dim=16, num_heads=2, mlp_dim=32, downsample_rate=2, dropout=0.0).eval()
    generator = torch.Generator().manual_seed(1)
    queries, keys = torch.randn(3, 4, 16, generator=generator), torch.randn(3, 5, 16, generator=generator)
    query_pe, key_pe = torch.randn(1, 4, 16, generator=generator), torch.randn(3, 5, 16, generator=generator)
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[2, 3:] = False
    got = block(queries, keys, mask, query_pe, key_pe)
    expected = sam2_two_way_block_reference(block, queries, keys, mask, query_pe, key_pe)
    torch.testing.assert_close(got, expected)
    # without positional embeddings it is the plain block; the values never carry them
    torch.testing.assert_close(block(queries, keys, mask), block(queries, keys, mask, torch.zeros_like(query_pe),
                                                                 torch.zeros_like(key_pe)))
    assert not torch.allclose(got[0], block(queries, keys, mask)[0])


def test_projector_re_adds_its_inputs_as_positions_before_every_block():
    """Q-Former with re-add == the blocks fed the learnable queries and the entering tokens as query_pe / key_pe."""
    config = LavidaConfig.tiny()
    projector = seeded_projector()
    inputs = projector_inputs(config)
    captured: list[tuple[torch.Tensor | None, torch.Tensor | None]] = []
    hooks = [block.register_forward_hook(lambda module, args, output: captured.append((args[3], args[4])))
             for block in projector.blocks]
    with torch.no_grad():
        projector(**inputs)
    for hook in hooks:
        hook.remove()
    assert len(captured) == config.qformer_layers
    first_query_pe, first_token_pe = captured[0]
    assert torch.equal(first_query_pe[0], projector.queries)
    assert first_token_pe.shape[1] == 1 + inputs["class_embeddings"].shape[1]
    for query_pe, token_pe in captured[1:]:  # the same embeddings at every block, not the updated sequences
        assert query_pe is first_query_pe and token_pe is first_token_pe


@pytest.mark.parametrize("change", [{"qformer_activation": "gelu"}, {"qformer_readd_positions": False}])
def test_activation_and_re_add_change_the_prompts_with_the_same_weights(change):
    authors = seeded_projector()
    other = seeded_projector(**change)
    assert authors.state_dict().keys() == other.state_dict().keys()
    assert sum(p.numel() for p in authors.parameters()) == sum(p.numel() for p in other.parameters())
    other.load_state_dict(authors.state_dict())
    inputs = projector_inputs(LavidaConfig.tiny())
    with torch.no_grad():
        difference = (authors(**inputs) - other(**inputs)).abs().max().item()
    assert difference > 1e-3


def test_dropout_acts_only_when_set_and_training():
    inputs = projector_inputs(LavidaConfig.tiny())
    projector = seeded_projector().train()
    torch.testing.assert_close(projector(**inputs), projector(**inputs))
    dropped = seeded_projector(qformer_dropout=0.5).train()
    assert not torch.allclose(dropped(**inputs), dropped(**inputs))
    dropped.eval()
    torch.testing.assert_close(dropped(**inputs), dropped(**inputs))


def test_unknown_qformer_activation_is_refused():
    with pytest.raises(ValueError, match="qformer_activation"):
        LavidaConfig.tiny(qformer_activation="swish")


def test_embedded_lavida_tiny_keeps_the_block_and_loss_it_was_trained_with():
    shipped = json.loads((default_model_path() / "config.json").read_text())
    pinned = {"qformer_activation": "gelu", "qformer_readd_positions": False, "qformer_dropout": 0.0,
              "mask_loss_normalization": "positive_frames"}
    assert {key: shipped.get(key) for key in pinned} == pinned
    config = LavidaConfig.from_pretrained(default_model_path())
    assert {key: getattr(config, key) for key in pinned} == pinned
