"""Smooth paths and compositing: the object stays in frame, moves smoothly, and its mask is what was pasted."""

from __future__ import annotations

import numpy as np
import pytest

from lavida.dataset_builders.synthesized.blending import Cutout, carry, crop_to_mask, feathered_alpha, paste
from lavida.dataset_builders.synthesized.trajectories import (
    TrajectoryConfig,
    cubic_bezier,
    random_trajectory,
    visible_frames,
)


def test_bezier_passes_through_its_end_points():
    control = np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 10.0]])
    points = cubic_bezier(control, np.array([0.0, 0.5, 1.0]))
    np.testing.assert_allclose(points[0], control[0])
    np.testing.assert_allclose(points[-1], control[-1])
    np.testing.assert_allclose(points[1], [7.5, 5.0])  # (p0 + 3 p1 + 3 p2 + p3) / 8


def test_trajectories_keep_the_object_inside_and_move_smoothly():
    config = TrajectoryConfig(max_travel=0.5, max_scale_change=2.0)
    for seed in range(50):
        rng = np.random.default_rng(seed)
        trajectory = random_trajectory(rng, 8, (48, 64), (10.0, 14.0), config)
        assert trajectory.centres.shape == (8, 2) and trajectory.scales.shape == (8,)
        assert trajectory.scales[0] == pytest.approx(1.0)
        assert 0.5 - 1e-9 <= trajectory.scales[-1] <= 2.0 + 1e-9
        steps = np.diff(trajectory.scales)
        assert np.all(steps >= -1e-12) or np.all(steps <= 1e-12)  # scale changes in one direction
        largest = trajectory.scales.max()
        half = np.array([14.0, 10.0]) * largest / 2
        assert np.all(trajectory.centres >= half - 1e-9) and np.all(trajectory.centres <= [64, 48] - half + 1e-9)
        # smooth: |B'(t)| <= 3 max |p_i+1 - p_i| <= 3 * 2 sqrt(2) * travel, so one step of 1/7 moves at most that / 7
        jumps = np.linalg.norm(np.diff(trajectory.centres, axis=0), axis=1)
        assert jumps.max() <= 6 * np.sqrt(2) * config.max_travel * 48 / 7 + 1e-6


def test_visible_frames_are_a_long_enough_run():
    for seed in range(100):
        shown = visible_frames(np.random.default_rng(seed), 8, 0.5)
        assert len(shown) >= 4 and shown == list(range(shown[0], shown[0] + len(shown))) and shown[-1] < 8
    assert visible_frames(np.random.default_rng(0), 8, 1.0) == list(range(8))


def test_feathered_alpha_ramps_inside_the_mask_only():
    mask = np.zeros((21, 21), dtype=bool)
    mask[3:18, 3:18] = True
    alpha = feathered_alpha(mask, radius=4.0)
    assert alpha.dtype == np.float32 and alpha.min() >= 0 and alpha.max() <= 1
    assert not alpha[~mask].any()  # never reaches outside: no original background is carried
    assert alpha[10, 10] == pytest.approx(1.0, abs=1e-3) and alpha[3, 10] < 0.5  # soft border, solid centre
    sliver = np.zeros((9, 9), dtype=bool)
    sliver[4, :] = True
    assert np.array_equal(feathered_alpha(sliver, radius=4.0) > 0, sliver)  # too thin to ramp: kept hard


def test_paste_changes_only_the_patch_and_clips_at_the_border():
    frame = np.full((10, 12, 3), 50, dtype=np.uint8)
    rgb = np.full((4, 4, 3), 200, dtype=np.uint8)
    alpha = np.ones((4, 4), dtype=np.float32)
    out, mask = paste(frame, rgb, alpha, centre=(1.0, 1.0))  # top-left corner: half of it outside
    assert mask.sum() == 9 and np.array_equal(np.argwhere(mask).max(axis=0), [2, 2])
    assert (out[mask] == 200).all() and (out[~mask] == 50).all()
    assert (frame == 50).all()  # the input frame is untouched
    _, outside = paste(frame, rgb, alpha, centre=(-10.0, 5.0))
    assert not outside.any()


def test_carry_pastes_on_the_given_frames_only():
    frames = np.zeros((5, 32, 32, 3), dtype=np.uint8)
    rgb = np.full((8, 8, 3), 255, dtype=np.uint8)
    mask = np.zeros((8, 8), dtype=bool)
    mask[2:6, 1:7] = True
    cutout = crop_to_mask(rgb, mask, ["box"])
    assert cutout.mask.shape == (4, 6) and cutout.mask.all()
    trajectory = random_trajectory(np.random.default_rng(0), 3, (32, 32), (8.0, 12.0))
    out, masks = carry(frames, cutout, (8.0, 12.0), trajectory, [1, 2, 3], feather=0.0)
    assert [bool(m.any()) for m in masks] == [False, True, True, True, False]
    assert np.array_equal(out.any(axis=-1), masks)  # with hard edges, exactly the masked pixels changed
    with pytest.raises(ValueError, match="empty mask"):
        Cutout(["ghost"], rgb, np.zeros((8, 8), dtype=bool))
