"""LavidaLoss against values computed by hand on toy examples of a few frames of 2x2 or 4x4 pixels."""

from __future__ import annotations

import math

import pytest
import torch

from lavida import LavidaConfig
from lavida.loss_lavida import LavidaLoss, sigmoid_focal_loss


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


@pytest.mark.parametrize("normalization, divisor", [("all_frames", 2), ("positive_frames", 1)])
def test_mixed_loss_matches_hand_computation(normalization, divisor):
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

    loss = LavidaLoss(LavidaConfig.tiny(mask_loss_normalization=normalization))
    out = loss(mask_logits, iou_scores, object_logits, target, lm)

    t0 = [1.0, 1.0, 0.0, 0.0]
    combined = []
    for cand in candidates_f0:
        f = sum(focal(x, t) for x, t in zip(cand, t0)) / 4
        combined.append((20 * f + 2 * dice(cand, t0), f, dice(cand, t0)))
    best = min(range(3), key=lambda i: combined[i][0])
    assert best == 0
    # only frame 0 counts; "all_frames" divides its value by both frames, "positive_frames" by frame 0 alone
    expected_focal, expected_dice = combined[best][1] / divisor, combined[best][2] / divisor
    predicted = [x > 0 for x in candidates_f0[best]]
    truth = [t > 0.5 for t in t0]
    true_iou = sum(p and t for p, t in zip(predicted, truth)) / sum(p or t for p, t in zip(predicted, truth))
    assert true_iou == 1.0
    expected_iou = abs(0.9 - true_iou) / divisor
    bce = (-math.log(sigmoid(1.5)) - math.log(1 - sigmoid(-0.5))) / 2  # every frame counts
    expected_total = 0.7 + 20 * expected_focal + 2 * expected_dice + 1 * expected_iou + 2 * bce

    assert out.chosen_mask[0].item() == 0
    assert out.focal_loss.item() == pytest.approx(expected_focal, rel=1e-5)
    assert out.dice_loss.item() == pytest.approx(expected_dice, rel=1e-5)
    assert out.iou_loss.item() == pytest.approx(expected_iou, rel=1e-5)
    assert out.object_score_loss.item() == pytest.approx(bce, rel=1e-5)
    assert out.lm_loss.item() == pytest.approx(0.7)
    assert out.grounding_loss is None
    assert loss.total(out).item() == pytest.approx(expected_total, rel=1e-5)
    # a warm-up scale multiplies the object-score term's weight only
    half = loss.total(out, object_score_scale=0.5).item()
    assert half == pytest.approx(expected_total - 0.5 * 2 * bce, rel=1e-5)
    assert loss.object_weight == 2.0


def test_the_grounding_loss_is_its_own_term_in_the_frame_score_place():
    """Given the name-grounding head's loss, the terms carry it as grounding_loss (no object-score BCE) and the total
    weights it with the object-score weight (and its warm-up scale)."""
    loss = LavidaLoss(LavidaConfig.tiny())
    logits = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    target = torch.zeros(2, 4, 4)
    target[0, :2] = 1
    plain = loss(logits, torch.full((2, 3), 0.5), torch.zeros(2), target)
    grounded = loss(logits, torch.full((2, 3), 0.5), torch.zeros(2), target, grounding_loss=torch.tensor(0.3))
    assert grounded.object_score_loss is None and grounded.grounding_loss.item() == pytest.approx(0.3)
    assert plain.grounding_loss is None and plain.object_score_loss is not None
    mask_part = loss.total(plain, object_score_scale=0.0)
    assert loss.total(grounded).item() == pytest.approx(mask_part.item() + 2.0 * 0.3, rel=1e-6)
    assert loss.total(grounded, object_score_scale=0.25).item() == pytest.approx(mask_part.item() + 0.5 * 0.3,
                                                                                  rel=1e-6)
    with pytest.raises(ValueError, match="object_score_scale"):
        loss.total(grounded, object_score_scale=-1.0)


def test_all_frames_normalization_divides_the_mask_terms_by_every_frame():
    """5 frames, 2 with a target: every mask term (and its gradient) is 2/5 of the positive-frame mean."""
    generator = torch.Generator().manual_seed(0)
    target = torch.zeros(5, 2, 2)
    target[1, 0] = 1.0  # frame 1: top row
    target[3, :, 0] = 1.0  # frame 3: left column
    logits = (torch.randn(5, 3, 2, 2, generator=generator) * 2).requires_grad_(True)
    iou = torch.rand(5, 3, generator=generator)
    objects = torch.randn(5, generator=generator)
    by_frames = {}
    for normalization in ("all_frames", "positive_frames"):
        out = LavidaLoss(LavidaConfig.tiny(mask_loss_normalization=normalization))(logits, iou, objects, target)
        (20 * out.focal_loss + 2 * out.dice_loss + out.iou_loss).backward()
        by_frames[normalization] = (out, logits.grad.clone())
        logits.grad = None
    every, positive = by_frames["all_frames"][0], by_frames["positive_frames"][0]

    focal_sum = dice_sum = iou_sum = 0.0
    for frame in (1, 3):
        t = target[frame].flatten().tolist()
        candidates = logits[frame].detach().flatten(1).tolist()
        costs = [20 * sum(focal(x, y) for x, y in zip(c, t)) / 4 + 2 * dice(c, t) for c in candidates]
        best = min(range(3), key=costs.__getitem__)
        chosen = candidates[best]
        focal_sum += sum(focal(x, y) for x, y in zip(chosen, t)) / 4
        dice_sum += dice(chosen, t)
        inter = sum((x > 0) and (y > 0.5) for x, y in zip(chosen, t))
        union = sum((x > 0) or (y > 0.5) for x, y in zip(chosen, t))
        iou_sum += abs(iou[frame, best].item() - inter / union)
    for name, total in (("focal_loss", focal_sum), ("dice_loss", dice_sum), ("iou_loss", iou_sum)):
        assert getattr(every, name).item() == pytest.approx(total / 5, rel=1e-5), name
        assert getattr(positive, name).item() == pytest.approx(total / 2, rel=1e-5), name
    assert every.object_score_loss.item() == positive.object_score_loss.item()
    torch.testing.assert_close(by_frames["all_frames"][1], by_frames["positive_frames"][1] * (2 / 5))


def test_normalizations_agree_without_normal_frames_and_give_zero_without_targets():
    logits = torch.randn(3, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    full = torch.ones(3, 4, 4)
    empty = torch.zeros(3, 4, 4)
    for target, check in ((full, lambda a, b: a == pytest.approx(b, rel=1e-6)), (empty, lambda a, b: a == b == 0)):
        a, b = (LavidaLoss(LavidaConfig.tiny(mask_loss_normalization=n))(logits, torch.ones(3, 3), torch.zeros(3),
                                                                          target)
                for n in ("all_frames", "positive_frames"))
        for name in ("focal_loss", "dice_loss", "iou_loss"):
            assert check(getattr(a, name).item(), getattr(b, name).item()), name


def test_candidate_choice_weighs_focal_and_dice_when_their_rankings_disagree():
    """Candidate 0 has the lowest focal loss, candidate 1 the lowest dice loss; 20 * focal + 2 * dice picks 2."""
    t = [1.0, 1.0, 0.0, 0.0]
    candidates = [[-1.0, -1.0, 0.0, 0.0], [0.0, 3.0, 3.0, -3.0], [1.0, 1.0, 0.0, 1.0]]
    focal_by_hand = [sum(focal(x, y) for x, y in zip(c, t)) / 4 for c in candidates]
    dice_by_hand = [dice(c, t) for c in candidates]
    weighted = [20 * f + 2 * d for f, d in zip(focal_by_hand, dice_by_hand)]
    assert min(range(3), key=focal_by_hand.__getitem__) == 0
    assert min(range(3), key=dice_by_hand.__getitem__) == 1
    assert min(range(3), key=weighted.__getitem__) == 2 and sorted(weighted)[1] - weighted[2] > 0.1

    logits = torch.tensor(candidates).reshape(1, 3, 2, 2)
    out = LavidaLoss(LavidaConfig.tiny())(logits, torch.full((1, 3), 0.5), torch.zeros(1),
                                          torch.tensor(t).reshape(1, 2, 2))
    assert out.chosen_mask.tolist() == [2]
    assert out.focal_loss.item() == pytest.approx(focal_by_hand[2], rel=1e-5)
    assert out.dice_loss.item() == pytest.approx(dice_by_hand[2], rel=1e-5)


def test_candidate_choice_puts_the_focal_weight_on_focal_and_the_dice_weight_on_dice():
    """Candidate 0 is best under 20 * focal + 2 * dice, candidate 1 under the swapped 2 * focal + 20 * dice; the
    configured weights decide which one is trained."""
    t = [1.0, 1.0, 0.0, 0.0]
    candidates = [[-3.0, -3.0, 1.0, 1.0], [2.0, 3.0, 3.0, 3.0], [-3.0, -3.0, 3.0, 3.0]]
    focal_by_hand = [sum(focal(x, y) for x, y in zip(c, t)) / 4 for c in candidates]
    dice_by_hand = [dice(c, t) for c in candidates]
    paper = [20 * f + 2 * d for f, d in zip(focal_by_hand, dice_by_hand)]
    swapped = [2 * f + 20 * d for f, d in zip(focal_by_hand, dice_by_hand)]
    assert min(range(3), key=paper.__getitem__) == 0 and sorted(paper)[1] - paper[0] > 1.0
    assert min(range(3), key=swapped.__getitem__) == 1 and sorted(swapped)[1] - swapped[1] > 1.0

    logits = torch.tensor(candidates).reshape(1, 3, 2, 2)
    target = torch.tensor(t).reshape(1, 2, 2)
    for weights, best in (({}, 0), ({"focal_loss_weight": 2.0, "dice_loss_weight": 20.0}, 1)):
        out = LavidaLoss(LavidaConfig.tiny(**weights))(logits, torch.full((1, 3), 0.5), torch.zeros(1), target)
        assert out.chosen_mask.tolist() == [best], weights
        assert out.focal_loss.item() == pytest.approx(focal_by_hand[best], rel=1e-5)
        assert out.dice_loss.item() == pytest.approx(dice_by_hand[best], rel=1e-5)


def test_focal_alpha_weights_the_positive_pixels():
    """The same mistake costs alpha (0.25) on a target pixel and 1 - alpha (0.75) on a background pixel."""
    missed_target = sigmoid_focal_loss(torch.tensor([[-1.5]]), torch.tensor([[1.0]]), alpha=0.25, gamma=2.0)
    false_alarm = sigmoid_focal_loss(torch.tensor([[1.5]]), torch.tensor([[0.0]]), alpha=0.25, gamma=2.0)
    assert missed_target.item() == pytest.approx(focal(-1.5, 1.0), rel=1e-6)
    assert missed_target.item() == pytest.approx(0.25 * -math.log(sigmoid(-1.5)) * (1 - sigmoid(-1.5)) ** 2, rel=1e-6)
    assert missed_target.item() / false_alarm.item() == pytest.approx(1 / 3, rel=1e-6)
    unweighted = sigmoid_focal_loss(torch.tensor([[-1.5]]), torch.tensor([[1.0]]), alpha=-1.0, gamma=2.0)
    assert missed_target.item() == pytest.approx(0.25 * unweighted.item(), rel=1e-6)


def test_unknown_mask_loss_normalization_is_refused():
    with pytest.raises(ValueError, match="mask_loss_normalization"):
        LavidaConfig.tiny(mask_loss_normalization="positive")


def test_best_of_three_trains_only_the_chosen_candidate():
    target = torch.zeros(1, 4, 4)
    target[0, :2] = 1
    logits = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(0)) * 0.1
    logits[0, 2] = torch.where(target[0] > 0, 4.0, -4.0)  # candidate 2 is nearly perfect
    logits.requires_grad_(True)
    loss = LavidaLoss(LavidaConfig.tiny())
    out = loss(logits, torch.full((1, 3), 0.5), torch.zeros(1), target)
    loss.total(out).backward()
    assert out.chosen_mask.tolist() == [2]
    assert logits.grad[0, :2].abs().sum() == 0 and logits.grad[0, 2].abs().sum() > 0


def test_normal_frames_train_only_the_object_score():
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    iou = torch.rand(2, 3, requires_grad=True)
    obj = torch.zeros(2, requires_grad=True)
    loss = LavidaLoss(LavidaConfig.tiny())
    out = loss(logits, iou, obj, torch.zeros(2, 4, 4))
    assert out.focal_loss.item() == 0 and out.dice_loss.item() == 0 and out.iou_loss.item() == 0
    assert out.object_score_loss.item() == pytest.approx(math.log(2), rel=1e-6)
    loss.total(out).backward()
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
    every_loss = LavidaLoss(LavidaConfig.tiny(mask_candidate_training="all"))
    every = every_loss(logits, iou, torch.zeros(1), target)
    assert lowest.dice_loss.item() < 0.01 and lowest.iou_loss.item() < 1e-6
    flat_target = target.flatten().tolist()
    expected_dice = sum(dice(candidate.flatten().tolist(), flat_target) for candidate in logits[0].detach()) / 3
    assert every.dice_loss.item() == pytest.approx(expected_dice, rel=1e-5)
    assert every.iou_loss.item() == pytest.approx(0.0, abs=1e-6)  # each candidate's IoU (0, 0, 1) is predicted
    every_loss.total(every).backward()
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


def test_focal_alpha_zero_leaves_only_the_background_pixels():
    """alpha = 0 weights the target's pixels by 0 (and the background by 1); a negative alpha turns weighting off."""
    logits, targets = torch.tensor([[-1.5, 1.5]]), torch.tensor([[1.0, 0.0]])
    per_pixel = [focal(-1.5, 1.0, alpha=0.0), focal(1.5, 0.0, alpha=0.0)]
    assert per_pixel[0] == 0.0 and per_pixel[1] > 0.1
    loss = sigmoid_focal_loss(logits, targets, alpha=0.0, gamma=2.0)
    assert loss.item() == pytest.approx(sum(per_pixel) / 2, rel=1e-6)


def test_mask_iou_on_single_pixels():
    """IoU of logit > 0 with the target: 0 for one wrong pixel, 1 for one right pixel, 1 when both are empty."""
    from lavida.loss_lavida import mask_iou

    target = torch.tensor([[0.0, 1.0], [0.0, 0.0]])
    wrong_pixel = torch.tensor([[2.0, -2.0], [-2.0, -2.0]])
    right_pixel = torch.tensor([[-2.0, 2.0], [-2.0, -2.0]])
    false_alarm = torch.tensor([[2.0, -2.0], [-2.0, -2.0]])
    ious = mask_iou(torch.stack([wrong_pixel, right_pixel, false_alarm, -right_pixel.abs()]),
                    torch.stack([target, target, torch.zeros(2, 2), torch.zeros(2, 2)]))
    assert ious.tolist() == [0.0, 1.0, 0.0, 1.0]


def test_low_resolution_masks_are_upsampled_as_resize_masks_does():
    """A 2x2 mask against an 8x8 target costs what the mask resized with the package's one resize costs."""
    from lavida.processing.postprocessing import resize_masks

    logits = torch.tensor([[4.0, -4.0], [-1.0, 2.0]]).expand(1, 3, 2, 2).clone()
    target = torch.zeros(1, 8, 8)
    target[0, :4, :4] = 1.0
    loss = LavidaLoss(LavidaConfig.tiny())
    upsampled = loss(logits, torch.full((1, 3), 0.5), torch.zeros(1), target)
    full_size = loss(resize_masks(logits, (8, 8)), torch.full((1, 3), 0.5), torch.zeros(1), target)
    for name in ("focal_loss", "dice_loss", "iou_loss"):
        assert getattr(upsampled, name).item() == pytest.approx(getattr(full_size, name).item(), rel=1e-6), name


def test_all_candidates_mode_averages_each_frames_candidates():
    """With mask_candidate_training="all", each frame's term is the mean of its three candidates; two positive frames
    with different candidates, one normal frame."""
    target = torch.zeros(3, 2, 2)
    target[0, 0] = 1.0
    target[2, :, 1] = 1.0
    logits = torch.randn(3, 3, 2, 2, generator=torch.Generator().manual_seed(3)) * 3
    out = LavidaLoss(LavidaConfig.tiny(mask_candidate_training="all"))(logits, torch.full((3, 3), 0.5),
                                                                         torch.zeros(3), target)
    per_frame_dice = [sum(dice(c.flatten().tolist(), target[f].flatten().tolist()) for c in logits[f]) / 3
                      for f in (0, 2)]
    per_frame_focal = [sum(sum(focal(x, y) for x, y in zip(c.flatten().tolist(), target[f].flatten().tolist())) / 4
                           for c in logits[f]) / 3 for f in (0, 2)]
    assert abs(per_frame_dice[0] - per_frame_dice[1]) > 0.01
    assert out.dice_loss.item() == pytest.approx(sum(per_frame_dice) / 3, rel=1e-5)  # "all_frames": divided by 3
    assert out.focal_loss.item() == pytest.approx(sum(per_frame_focal) / 3, rel=1e-5)
