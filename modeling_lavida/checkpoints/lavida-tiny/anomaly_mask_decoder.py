"""The anomaly mask decoder path: SAM2 features + one projected prompt per frame -> frame score and mask.

Section 1, step 6 of the method. The projected prompt is SAM2's sparse prompt (next to one "not-a-point" padding
embedding, as SAM2 pads a single point), the dense prompt is the no-mask embedding, and every frame is decoded
independently (no memory bank). The object-score logit is the frame's anomaly score; of the three candidate masks
the one with the highest predicted IoU is the anomaly map (``LavidaConfig.frame_score`` and ``mask_source`` let a model
with the name-grounding head take either from that head instead).

``Sam2Model.forward`` cannot take prompt embeddings, so the decoder is called directly with features prepared the
way ``Sam2Model`` prepares them (``conv_s0``/``conv_s1`` on the two high-resolution levels, the no-memory embedding
on the lowest level).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import Sam2Model


@dataclass
class SamFrameFeatures:
    """SAM2 image-encoder output for ``B*T`` frames, computed once per frame and reused by every prompt.

    Attributes:
        feature_maps: three levels ``[BT, C, H_i, W_i]``, highest resolution first (raw FPN, before conv_s0/s1).
        lowest_positional: ``[BT, C, h, w]`` positional encoding of the lowest-resolution level.
    """

    feature_maps: list[torch.Tensor]
    lowest_positional: torch.Tensor

    @property
    def lowest(self) -> torch.Tensor:
        return self.feature_maps[-1]

    def index_select(self, index: torch.Tensor) -> "SamFrameFeatures":
        return SamFrameFeatures([f.index_select(0, index) for f in self.feature_maps],
                                self.lowest_positional.index_select(0, index))


@dataclass
class AnomalyMaskPrediction:
    """Decoder output for ``B*T`` frames.

    Attributes:
        mask_logits: ``[BT, 3, h, w]`` the three candidate masks (low resolution, 4x the lowest level).
        iou_scores: ``[BT, 3]`` predicted IoU of each candidate.
        object_logits: ``[BT]`` object-score logits (the frame anomaly score before the sigmoid).
    """

    mask_logits: torch.Tensor
    iou_scores: torch.Tensor
    object_logits: torch.Tensor

    def best_by_predicted_iou(self) -> torch.Tensor:
        """``[BT, h, w]`` the candidate with the highest predicted IoU."""
        best = self.iou_scores.argmax(dim=-1)
        return self.mask_logits[torch.arange(len(best), device=best.device), best]


def encode_frames(sam: Sam2Model, pixel_values: torch.Tensor) -> SamFrameFeatures:
    """Run SAM2's image encoder on ``[BT, 3, S, S]`` normalised frames."""
    vision = sam.vision_encoder(pixel_values, return_dict=True)
    return SamFrameFeatures(list(vision.fpn_hidden_states), vision.fpn_position_encoding[-1])


def decode_anomaly_masks(sam: Sam2Model, features: SamFrameFeatures, prompts: torch.Tensor,
                         name_prompts: torch.Tensor | None = None, name_mask: torch.Tensor | None = None
                         ) -> AnomalyMaskPrediction:
    """Decode one prompt per frame.

    Args:
        sam: the SAM2 model (its prompt encoder and mask decoder are used).
        features: ``SamFrameFeatures`` for ``BT`` frames.
        prompts: ``[BT, S]`` projected prompts (S = SAM2's prompt width).
        name_prompts: optional ``[BT, N, S]`` one more sparse token per anomaly name (``config.name_prompt_tokens``).
        name_mask: ``[BT, N]`` bool, False for padding names: those tokens become SAM2's "not-a-point" embedding,
            the way SAM2 itself pads a prompt.
    """
    decoder = sam.mask_decoder
    frames = prompts.shape[0]
    high_resolution = [decoder.conv_s0(features.feature_maps[0]), decoder.conv_s1(features.feature_maps[1])]
    image_embeddings = features.lowest + sam.no_memory_embedding.reshape(1, -1, 1, 1)
    positional = sam.get_image_wide_positional_embeddings().expand(frames, -1, -1, -1)
    not_a_point = sam.prompt_encoder.not_a_point_embed.weight.reshape(1, -1).expand(frames, -1)
    tokens = [prompts[:, None], not_a_point.to(prompts.dtype)[:, None]]
    if name_prompts is not None:
        if name_mask is not None:
            name_prompts = torch.where(name_mask[..., None], name_prompts, tokens[1].to(name_prompts.dtype))
        tokens.insert(1, name_prompts.to(prompts.dtype))
    sparse = torch.cat(tokens, dim=1)[:, None]  # (BT, 1, 2 [+ N], S)
    dense = sam.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(frames, -1, *image_embeddings.shape[-2:])
    masks, iou, _, object_logits = decoder(
        image_embeddings=image_embeddings,
        image_positional_embeddings=positional.to(image_embeddings.dtype),
        sparse_prompt_embeddings=sparse.to(image_embeddings.dtype),
        dense_prompt_embeddings=dense.to(image_embeddings.dtype),
        multimask_output=True,
        high_resolution_features=high_resolution,
    )
    return AnomalyMaskPrediction(masks[:, 0], iou[:, 0], object_logits.reshape(frames))


__all__ = ["AnomalyMaskPrediction", "SamFrameFeatures", "decode_anomaly_masks", "encode_frames"]
