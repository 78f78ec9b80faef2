"""The name-grounding head's slots (``grounding_name_slots``): K queries per name that must all match at a pixel."""

import pytest
import torch

from lavida import LavidaConfig
from lavida.model_factory import default_model_path
from lavida.name_grounding_head import NameGroundingHead, conjunction_logits


def test_the_conjunction_is_the_product_of_the_probabilities():
    logits = torch.tensor([[2.0, -1.0], [5.0, 5.0], [-3.0, 0.5]])
    expected = torch.logit(torch.sigmoid(logits).prod(dim=1))
    torch.testing.assert_close(conjunction_logits(logits, dim=1), expected, atol=1e-5, rtol=1e-5)


def test_one_strong_slot_does_not_make_the_name_present():
    # a purple circle seen by a "purple hexagon" name: the colour query matches, the shape query does not
    one_attribute = conjunction_logits(torch.tensor([8.0, -6.0]), dim=0)
    both = conjunction_logits(torch.tensor([8.0, 6.0]), dim=0)
    assert one_attribute < -5.0 < 5.0 < both


@pytest.fixture
def grounding_config():
    return LavidaConfig.from_pretrained(default_model_path())  # the embedded model's sizes


def _head(config, slots):
    config.grounding_name_slots = slots
    torch.manual_seed(0)
    return NameGroundingHead(config).eval()


def test_one_slot_is_a_single_dot_product(grounding_config):
    head = _head(grounding_config, 1)
    pixels = torch.randn(2, grounding_config.grounding_embedding_size, 4, 4)
    names = torch.randn(1, 3, grounding_config.text_embedding_size)
    queries = head.name_encoder(names).repeat_interleave(2, dim=0)
    expected = head.logit_scale * torch.einsum("bnd,bdhw->bnhw", queries, pixels) / queries.shape[-1] ** 0.5
    torch.testing.assert_close(head(pixels, names, 2), expected + head.logit_bias)


def test_slots_multiply_each_querys_probability(grounding_config):
    head = _head(grounding_config, 2)
    dim = grounding_config.grounding_embedding_size
    assert head.name_encoder[-1].out_features == 2 * dim
    pixels = torch.randn(2, dim, 4, 4)
    names = torch.randn(1, 3, grounding_config.text_embedding_size)
    queries = head.name_encoder(names).repeat_interleave(2, dim=0).unflatten(-1, (2, dim))  # (BT, N, K, D)
    per_slot = head.logit_scale * torch.einsum("bnkd,bdhw->bnkhw", queries, pixels) / dim ** 0.5 + head.logit_bias / 2
    expected = torch.logit(torch.sigmoid(per_slot).prod(dim=2))
    torch.testing.assert_close(head(pixels, names, 2), expected, atol=1e-4, rtol=1e-4)


def test_config_refuses_zero_slots():
    with pytest.raises(ValueError, match="grounding_name_slots"):
        LavidaConfig(grounding_name_slots=0)


def test_the_image_encoder_joins_the_fpn_features_and_its_frames_are_required(grounding_config):
    grounding_config.grounding_image_channels = 8
    torch.manual_seed(0)
    head = NameGroundingHead(grounding_config).eval()
    size = grounding_config.sam_config.vision_config.backbone_feature_sizes
    fpn = grounding_config.sam_config.vision_config.fpn_hidden_size
    levels = [torch.randn(2, fpn, h, w) for h, w in size]
    frames = torch.randn(2, 3, 4 * size[0][0], 4 * size[0][1])
    pixels = head.pixel_embeddings(levels, frames)
    assert pixels.shape == (2, grounding_config.grounding_embedding_size, *size[0])
    # the frames change the pixel embeddings (the shape evidence reaches the head)
    assert not torch.allclose(pixels, head.pixel_embeddings(levels, frames.flip(-1)))
    with pytest.raises(ValueError, match="grounding_image_channels"):
        head.pixel_embeddings(levels)


def test_frame_edges_outline_an_object_the_same_whatever_its_colour():
    from lavida.name_grounding_head import frame_edges

    red, blue = torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 16, 16)
    red[0, 0, 4:10, 5:12] = 2.0  # a red box on a grey background (SAM2's normalised units)
    blue[0, 2, 4:10, 5:12] = -1.5  # the same box, darker, in blue
    edges = frame_edges(red)
    assert edges.shape == (1, 1, 16, 16) and set(edges.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(edges, frame_edges(blue))
    assert edges[0, 0, 6, 8] == 0 and edges[0, 0, 0, 0] == 0  # inside and far outside: no edge
    assert edges[0, 0, 6, 4] == 1 and edges[0, 0, 6, 11] == 1  # both sides of the box
    assert frame_edges(red * 0.2).sum() == 0  # steps below EDGE_STEP are no edge


def test_an_edge_input_encoder_sees_the_outline_only(grounding_config):
    grounding_config.grounding_image_channels = 8
    grounding_config.grounding_image_input = "edges"
    torch.manual_seed(0)
    head = NameGroundingHead(grounding_config).eval()
    assert head.image_encoder.layers[0].in_channels == 1
    size = grounding_config.sam_config.vision_config.backbone_feature_sizes
    fpn = grounding_config.sam_config.vision_config.fpn_hidden_size
    levels = [torch.zeros(1, fpn, h, w) for h, w in size]
    red, blue = torch.zeros(1, 3, 4 * size[0][0], 4 * size[0][1]), torch.zeros(1, 3, 4 * size[0][0], 4 * size[0][1])
    red[0, 0, 8:20, 8:20], blue[0, 2, 8:20, 8:20] = 2.0, 2.0
    torch.testing.assert_close(head.pixel_embeddings(levels, red), head.pixel_embeddings(levels, blue))
    moved = torch.roll(red, shifts=6, dims=-1)
    assert not torch.allclose(head.pixel_embeddings(levels, red), head.pixel_embeddings(levels, moved))


def test_config_refuses_an_unknown_image_input():
    with pytest.raises(ValueError, match="grounding_image_input"):
        LavidaConfig(grounding_image_input="grey")
