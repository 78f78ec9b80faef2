"""LavidaLoss against values computed by hand on a 2-frame, 2x2-pixel toy example."""

from __future__ import annotations

import math

import pytest
import torch

from lavida import LavidaConfig
from lavida.loss_lavida import LavidaLoss


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def focal(logit: float, target: float, alpha: float = 0.25, gamma: float = 2.0) -> float:
    p = sigmoid(logit)
    ce = -(target * math.log(p) + (1 - target) * math.log(1 - p))
    p_t = p * target + (1 - p) * (1 - target)
    a = alpha * target + (1 - alpha) * (1 - target)
    return a * ce * (1 - p_t) ** gamma


def dice(logits: list[float], targets: list[float]) -> float:
    probs = [sigmoid(x) for x in logits]
    return 1 - (2 * sum(p * t for p, t in zip(probs, targets)) + 1) / (sum(probs) + sum(targets) + 1)


def test_mixed_loss_matches_hand_computation():
    # frame 0: target has two positive pixels; frame 1: empty target (normal frame)
    target = torch.tensor([[[1.0, 1.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
    candidates_f0 = [[2.0, 1.0, -1.0, -2.0],   # good mask
                     [-2.0, -2.0, 2.0, 2.0],   # inverted mask
                     [0.0, 0.0, 0.0, 0.0]]     # undecided
    candidates_f1 = [[-3.0, -3.0, -3.0, -3.0], [1.0, 1.0, 1.0, 1.0], [0.5, -0.5, 0.5, -0.5]]
    mask_logits = torch.tensor([candidates_f0, candidates_f1]).reshape(2, 3, 2, 2)
    iou_scores = torch.tensor([[0.9, 0.1, 0.5], [0.2, 0.3, 0.4]])
    object_logits = torch.tensor([1.5, -0.5])
    lm = torch.tensor(0.7)

    out = LavidaLoss(LavidaConfig.tiny())(mask_logits, iou_scores, object_logits, target, lm)

    t0 = [1.0, 1.0, 0.0, 0.0]
    combined = []
    for cand in candidates_f0:
        f = sum(focal(x, t) for x, t in zip(cand, t0)) / 4
        combined.append((20 * f + 2 * dice(cand, t0), f, dice(cand, t0)))
    best = min(range(3), key=lambda i: combined[i][0])
    assert best == 0
    expected_focal, expected_dice = combined[best][1], combined[best][2]
    predicted = [x > 0 for x in candidates_f0[best]]
    truth = [t > 0.5 for t in t0]
    true_iou = sum(p and t for p, t in zip(predicted, truth)) / sum(p or t for p, t in zip(predicted, truth))
    assert true_iou == 1.0
    expected_iou = abs(0.9 - true_iou)  # only frame 0 counts (frame 1 is empty)
    bce = (-math.log(sigmoid(1.5)) - math.log(1 - sigmoid(-0.5))) / 2  # every frame counts
    expected_total = 0.7 + 20 * expected_focal + 2 * expected_dice + 1 * expected_iou + 2 * bce

    assert out.chosen_mask[0].item() == 0
    assert out.focal_loss.item() == pytest.approx(expected_focal, rel=1e-5)
    assert out.dice_loss.item() == pytest.approx(expected_dice, rel=1e-5)
    assert out.iou_loss.item() == pytest.approx(expected_iou, rel=1e-5)
    assert out.object_score_loss.item() == pytest.approx(bce, rel=1e-5)
    assert out.lm_loss.item() == pytest.approx(0.7)
    assert out.loss.item() == pytest.approx(expected_total, rel=1e-5)


def test_best_of_three_trains_only_the_chosen_candidate():
    target = torch.zeros(1, 4, 4)
    target[0, :2] = 1
    logits = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(0)) * 0.1
    logits[0, 2] = torch.where(target[0] > 0, 4.0, -4.0)  # candidate 2 is nearly perfect
    logits.requires_grad_(True)
    out = LavidaLoss(LavidaConfig.tiny())(logits, torch.full((1, 3), 0.5), torch.zeros(1), target)
    out.loss.backward()
    assert out.chosen_mask.tolist() == [2]
    assert logits.grad[0, :2].abs().sum() == 0 and logits.grad[0, 2].abs().sum() > 0


def test_normal_frames_train_only_the_object_score():
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    iou = torch.rand(2, 3, requires_grad=True)
    obj = torch.zeros(2, requires_grad=True)
    out = LavidaLoss(LavidaConfig.tiny())(logits, iou, obj, torch.zeros(2, 4, 4))
    assert out.focal_loss.item() == 0 and out.dice_loss.item() == 0 and out.iou_loss.item() == 0
    assert out.object_score_loss.item() == pytest.approx(math.log(2), rel=1e-6)
    out.loss.backward()
    assert logits.grad is None or logits.grad.abs().sum() == 0
    assert obj.grad.abs().sum() > 0


def test_masks_are_upsampled_to_the_target_size():
    logits = torch.full((1, 3, 2, 2), 5.0)
    target = torch.ones(1, 8, 8)
    out = LavidaLoss(LavidaConfig.tiny())(logits, torch.ones(1, 3), torch.zeros(1), target)
    assert out.dice_loss.item() < 0.01


def test_all_candidates_mode_trains_every_candidate_on_the_target():
    """With mask_candidate_training="all" a perfect third candidate no longer hides two wrong ones."""
    target = torch.zeros(1, 4, 4)
    target[0, :2] = 1
    perfect = torch.where(target[0] > 0, 8.0, -8.0)
    logits = torch.stack([-perfect, -perfect, perfect])[None].clone().requires_grad_(True)  # (1, 3, 4, 4)
    iou = torch.tensor([[0.0, 0.0, 1.0]], requires_grad=True)
    lowest = LavidaLoss(LavidaConfig.tiny())(logits, iou, torch.zeros(1), target)
    every = LavidaLoss(LavidaConfig.tiny(mask_candidate_training="all"))(logits, iou, torch.zeros(1), target)
    assert lowest.dice_loss.item() < 0.01 and lowest.iou_loss.item() < 1e-6
    flat_target = target.flatten().tolist()
    expected_dice = sum(dice(candidate.flatten().tolist(), flat_target) for candidate in logits[0].detach()) / 3
    assert every.dice_loss.item() == pytest.approx(expected_dice, rel=1e-5)
    assert every.iou_loss.item() == pytest.approx(0.0, abs=1e-6)  # each candidate's IoU (0, 0, 1) is predicted
    every.loss.backward()
    assert logits.grad[0, 0].abs().sum() > 0 and logits.grad[0, 1].abs().sum() > 0


def test_unknown_mask_candidate_training_is_refused():
    with pytest.raises(ValueError, match="mask_candidate_training"):
        LavidaConfig.tiny(mask_candidate_training="best")


def test_name_grounding_loss_rewards_the_right_name_at_the_right_pixels():
    from lavida.name_grounding_head import listed_name_targets, name_grounding_loss

    target = torch.zeros(1, 16, 16)
    target[0, 4:12, 4:12] = 1  # the target covers cells (1..2, 1..2) of a 4x4 map
    names = torch.tensor([[True, True, False]])  # a target, a distractor, a padding slot
    labels = torch.tensor([[1.0, 0.0, 0.0]])
    right = torch.full((1, 3, 4, 4), -8.0)
    right[0, 0, 1:3, 1:3] = 8.0
    wrong_pixels = torch.full((1, 3, 4, 4), -8.0)
    wrong_pixels[0, 0, 0, 0] = 8.0  # present, but elsewhere
    wrong_name = torch.full((1, 3, 4, 4), -8.0)
    wrong_name[0, 1, 1:3, 1:3] = 8.0  # the distractor fires on the target
    padding_fires = right.clone()
    padding_fires[0, 2] = 8.0  # padding slots do not count
    targets = listed_name_targets(target, labels)
    assert targets[0, 0].equal(target[0]) and not targets[0, 1:].any()
    loss = [name_grounding_loss(x, names, targets, positive_weight=10.0)
            for x in (right, wrong_pixels, wrong_name, padding_fires)]
    assert loss[0] < 0.01
    assert loss[1] > 1.0 and loss[2] > 5.0
    assert torch.isclose(loss[3], loss[0])
