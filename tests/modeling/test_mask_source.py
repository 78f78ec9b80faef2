"""Where the returned anomaly map comes from (``LavidaConfig.mask_source``): the decoder, the name-grounding map, or
the decoder's objects scored by the names."""

from __future__ import annotations

import pytest
import torch

from lavida import LavidaConfig, LavidaForVideoAnomalyDetection
from lavida.name_grounding_head import name_anomaly_map, object_gated_logits


def test_each_decoded_object_takes_the_best_name_match_found_on_it():
    # two objects the decoder outlines equally; the names match one cell of the first strongly, the second weakly
    decoder = torch.full((1, 8, 8), -5.0)
    decoder[0, 1:3, 1:4] = 3.0
    decoder[0, 5:7, 5:7] = 3.0
    names = torch.full((1, 8, 8), -4.0)
    names[0, 1, 1] = 2.0
    names[0, 6, 6] = -1.0
    names[0, 3, 7] = 1.5  # a name match off every object
    gated = object_gated_logits(decoder, names, object_logit=-2.0)
    assert bool((gated[0, 1:3, 1:4] == 2.0).all())  # the whole first object, not only its best cell
    assert bool((gated[0, 5:7, 5:7] == -1.0).all())
    outside = torch.ones(8, 8, dtype=torch.bool)
    outside[1:3, 1:4] = outside[5:7, 5:7] = False
    torch.testing.assert_close(gated[0][outside], torch.minimum(decoder, names)[0][outside])  # both must agree
    assert gated.max() <= names.max()  # never above the frame's best name match
    # gated_or_names: the same objects, and the name map where the decoder outlines nothing (the off-object match)
    with_names = object_gated_logits(decoder, names, object_logit=-2.0, names_outside=True)
    torch.testing.assert_close(with_names[0][~outside], gated[0][~outside])
    torch.testing.assert_close(with_names[0][outside], names[0][outside])
    assert with_names[0, 3, 7] == 1.5 and gated[0, 3, 7] == -5.0


def test_objects_touching_diagonally_are_one_object():
    decoder = torch.full((1, 4, 4), -5.0)
    decoder[0, 0, 0] = decoder[0, 1, 1] = decoder[0, 2, 2] = 1.0
    names = torch.full((1, 4, 4), -3.0)
    names[0, 2, 2] = 0.5
    gated = object_gated_logits(decoder, names, object_logit=0.0)
    assert gated[0, 0, 0] == gated[0, 1, 1] == gated[0, 2, 2] == 0.5


def test_the_name_map_is_the_best_listed_name_and_ignores_padding_names():
    logits = torch.tensor([[[[0.0, 1.0]], [[2.0, -1.0]], [[9.0, 9.0]]]])  # (1 frame, 3 names, 1 x 2)
    listed = torch.tensor([[True, True, False]])  # the third is padding
    torch.testing.assert_close(name_anomaly_map(logits, listed), torch.tensor([[[2.0, 1.0]]]))
    assert name_anomaly_map(logits, listed, size=(4, 4)).shape == (1, 4, 4)


def test_config_refuses_mask_sources_it_cannot_serve(tiny_batch):
    with pytest.raises(ValueError, match="mask_source must be one of"):
        LavidaConfig.tiny(frame_score="name_grounding", mask_source="grounding")
    with pytest.raises(ValueError, match="frame_score='name_grounding'"):
        LavidaConfig.tiny(mask_source="gated")  # no name-grounding head
    with pytest.raises(ValueError, match="mask_object_threshold"):
        LavidaConfig.tiny(frame_score="name_grounding", mask_source="gated", mask_object_threshold=1.0)
    model = LavidaForVideoAnomalyDetection(LavidaConfig.tiny()).eval()
    model.config.mask_source = "name_grounding"  # set after building: refused at the forward, not ignored
    batch = {k: v for k, v in tiny_batch.items() if k not in ("labels", "target_masks")}
    with torch.no_grad(), pytest.raises(ValueError, match="needs the name-grounding head"):
        model(**batch)


@pytest.mark.parametrize("source", ["decoder", "name_grounding", "gated", "gated_or_names"])
def test_the_mask_source_changes_only_the_mask_and_never_outscores_the_frame(tiny_batch, source):
    torch.manual_seed(0)
    model = LavidaForVideoAnomalyDetection(LavidaConfig.tiny(frame_score="name_grounding")).eval()
    batch = {k: v for k, v in tiny_batch.items() if k not in ("labels", "target_masks")}
    with torch.no_grad():
        model.name_grounding_head.logit_scale.fill_(1e4)  # similarities are ~1e-5 at the tiny init std
        reference = model(**batch)  # mask_source "decoder"
        model.config.mask_source = source
        out = model(**batch)
    torch.testing.assert_close(out.frame_logits, reference.frame_logits)
    torch.testing.assert_close(out.candidate_mask_logits, reference.candidate_mask_logits)
    assert out.mask_logits.shape == reference.mask_logits.shape
    best = reference.iou_scores.argmax(dim=-1)[..., None, None, None].expand(-1, -1, 1, 32, 32)
    decoder_mask = reference.candidate_mask_logits.gather(2, best)[:, :, 0]
    if source == "decoder":
        torch.testing.assert_close(out.mask_logits, decoder_mask)
        return
    assert not torch.allclose(out.mask_logits, decoder_mask)
    peak = out.mask_logits.flatten(2).amax(dim=-1)  # (B, T)
    assert bool((peak <= out.frame_logits + 1e-4).all())  # the map never claims more than the frame score
    if source == "name_grounding":  # same resolution here: the map's peak is the frame logit
        torch.testing.assert_close(peak, out.frame_logits)
