"""LAVIDA's mixed loss (section 4 of the method).

``loss = w_lm * LM + w_focal * focal + w_dice * dice + w_iou * |IoU_pred - IoU| + s * w_obj * BCE(object score)``

``LavidaLoss`` returns the unweighted terms (``LavidaLossTerms``); ``LavidaLoss.total`` weights and sums them, with
``s`` (``object_score_scale``, 1 by default) scaling the frame-score term for a warm-up schedule. With
``config.frame_score = "name_grounding"`` the frame-score term is the name-grounding head's loss (``grounding_loss``)
instead of the object-score BCE, with the same weight.

- Of the three candidate masks only the one with the lowest ``w_focal * focal + w_dice * dice`` is trained (the
  paper), or all three (``config.mask_candidate_training = "all"``: each term is then the mean over candidates).
- Focal, dice and IoU terms count only on frames whose target mask is non-empty; the object-score BCE counts on every
  frame (its target is 1 where the frame's mask is non-empty).
- Focal is the sigmoid focal loss averaged over a frame's pixels (alpha weights the target's positive pixels, 1 - alpha
  the negative ones); dice is ``1 - (2|P.T| + 1) / (|P| + |T| + 1)`` on sigmoid probabilities; the IoU target is the
  IoU of the chosen binarised mask (logit > 0) with the target.
- The focal, dice and IoU sums over the frames they count on are divided by every frame of the batch
  (``config.mask_loss_normalization = "all_frames"``, the authors' code, SAM2-style: a batch with normal frames gives
  the mask terms less weight) or by the frames they count on (``"positive_frames"``: a mean over those frames, 0 when
  there is none). The object-score BCE is a mean over every frame either way.
- Predicted masks are upsampled (bilinear) to the target size before the losses.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .configuration_lavida import LavidaConfig


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    """Per-mask sigmoid focal loss: ``[..., H, W]`` -> ``[...]`` (mean over pixels)."""
    probability = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = probability * targets + (1 - probability) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.flatten(-2).mean(-1)


def dice_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-mask dice loss: ``[..., H, W]`` -> ``[...]``."""
    probability = torch.sigmoid(logits).flatten(-2)
    targets = targets.flatten(-2)
    numerator = 2 * (probability * targets).sum(-1)
    denominator = probability.sum(-1) + targets.sum(-1)
    return 1 - (numerator + 1) / (denominator + 1)


def mask_iou(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """IoU of ``logits > 0`` with ``targets > 0.5``: ``[..., H, W]`` -> ``[...]`` (1 when both are empty)."""
    predicted = (logits > 0).flatten(-2)
    truth = (targets > 0.5).flatten(-2)
    intersection = (predicted & truth).sum(-1).float()
    union = (predicted | truth).sum(-1).float()
    return torch.where(union > 0, intersection / union.clamp_min(1), torch.ones_like(union))


@dataclass
class LavidaLossTerms:
    """The unweighted terms of the mixed loss (scalars; ``LavidaLoss.total`` weights and sums them).

    Attributes:
        lm_loss: LM cross-entropy (0 when the batch has no LM labels).
        focal_loss, dice_loss, iou_loss: the mask terms.
        object_score_loss: BCE of the frame logits against "the target mask is non-empty" (``frame_score
            "object_score"``), else None.
        grounding_loss: the name-grounding head's loss (``frame_score "name_grounding"``), else None.
        chosen_mask: ``[BT]`` index of the trained candidate mask of each frame.
    """

    lm_loss: torch.Tensor
    focal_loss: torch.Tensor
    dice_loss: torch.Tensor
    iou_loss: torch.Tensor
    object_score_loss: torch.Tensor | None
    grounding_loss: torch.Tensor | None
    chosen_mask: torch.Tensor

    @property
    def frame_score_loss(self) -> torch.Tensor:
        """The frame-score term: ``grounding_loss`` when computed, else ``object_score_loss``."""
        return self.grounding_loss if self.grounding_loss is not None else self.object_score_loss


class LavidaLoss(nn.Module):
    """The mixed loss of the module docstring, with weights, focal parameters, candidate training and mask-loss
    normalisation read from ``LavidaConfig``."""

    def __init__(self, config: LavidaConfig):
        super().__init__()
        self.lm_weight = config.lm_loss_weight
        self.focal_weight = config.focal_loss_weight
        self.dice_weight = config.dice_loss_weight
        self.iou_weight = config.iou_loss_weight
        self.object_weight = config.object_score_loss_weight
        self.alpha = config.focal_alpha
        self.gamma = config.focal_gamma
        self.train_all_candidates = config.mask_candidate_training == "all"
        self.normalize_by_positive_frames = config.mask_loss_normalization == "positive_frames"

    def forward(self, mask_logits: torch.Tensor, iou_scores: torch.Tensor, object_logits: torch.Tensor,
                target_masks: torch.Tensor, lm_loss: torch.Tensor | None = None,
                grounding_loss: torch.Tensor | None = None) -> LavidaLossTerms:
        """The unweighted terms (``total`` sums them).

        Args:
            mask_logits: ``[BT, 3, h, w]`` candidate mask logits.
            iou_scores: ``[BT, 3]`` predicted IoUs.
            object_logits: ``[BT]`` frame logits (SAM2's object score); unused when ``grounding_loss`` is given.
            target_masks: ``[BT, H, W]`` binary targets (float).
            lm_loss: scalar LM cross-entropy, or None (counts as 0).
            grounding_loss: the name-grounding head's loss (``frame_score="name_grounding"``); when given it is the
                frame-score term instead of the frame-logit BCE.
        """
        targets = target_masks.float()
        if mask_logits.shape[-2:] != targets.shape[-2:]:
            mask_logits = F.interpolate(mask_logits.float(), size=targets.shape[-2:], mode="bilinear",
                                        align_corners=False)
        mask_logits = mask_logits.float()
        expanded = targets[:, None].expand_as(mask_logits)
        focal = sigmoid_focal_loss(mask_logits, expanded, self.alpha, self.gamma)  # (BT, 3)
        dice = dice_loss(mask_logits, expanded)  # (BT, 3)
        chosen = (self.focal_weight * focal + self.dice_weight * dice).argmin(dim=-1)  # (BT,)
        rows = torch.arange(len(chosen), device=chosen.device)
        positive = targets.flatten(1).amax(dim=1) > 0.5  # (BT,)
        weight = positive.float()  # (BT,)
        count = (weight.sum() if self.normalize_by_positive_frames else weight.new_tensor(float(len(weight))))
        count = count.clamp_min(1.0)

        if self.train_all_candidates:
            trained_focal, trained_dice = focal.mean(-1), dice.mean(-1)  # (BT,)
            with torch.no_grad():
                true_iou = mask_iou(mask_logits, expanded)  # (BT, 3)
            iou_error = (iou_scores.float() - true_iou).abs().mean(-1)
        else:
            trained_focal, trained_dice = focal[rows, chosen], dice[rows, chosen]
            with torch.no_grad():
                true_iou = mask_iou(mask_logits[rows, chosen], targets)
            iou_error = (iou_scores[rows, chosen].float() - true_iou).abs()
        focal_term = (trained_focal * weight).sum() / count
        dice_term = (trained_dice * weight).sum() / count
        iou_term = (iou_error * weight).sum() / count
        object_term = grounding_term = None
        if grounding_loss is not None:
            grounding_term = grounding_loss.float()
        else:
            object_term = F.binary_cross_entropy_with_logits(object_logits.float(), weight)
        lm_term = lm_loss.float() if lm_loss is not None else focal_term.new_zeros(())
        return LavidaLossTerms(lm_term, focal_term, dice_term, iou_term, object_term, grounding_term, chosen)

    def total(self, terms: LavidaLossTerms, object_score_scale: float = 1.0) -> torch.Tensor:
        """The weighted sum of ``terms`` (a scalar).

        Args:
            terms: the output of ``forward``.
            object_score_scale: factor on the frame-score term's configured weight (``object_score_loss`` or
                ``grounding_loss``): 1 is the configured loss, below 1 a warm-up schedule's ramp.
        """
        if object_score_scale < 0:
            raise ValueError(f"object_score_scale must be >= 0, got {object_score_scale}.")
        return (self.lm_weight * terms.lm_loss + self.focal_weight * terms.focal_loss
                + self.dice_weight * terms.dice_loss + self.iou_weight * terms.iou_loss
                + object_score_scale * self.object_weight * terms.frame_score_loss)


__all__ = ["LavidaLoss", "LavidaLossTerms", "dice_loss", "mask_iou", "sigmoid_focal_loss"]
