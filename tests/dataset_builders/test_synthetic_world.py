"""The synthetic world and the synthetic VAD benchmark follow their specification."""

from __future__ import annotations

import numpy as np

from lavida.dataset_builders.synthetic_vad import (HELD_OUT_NAMES, load_vad_masks, make_sample_video,
                                                   render_vad_video)
from lavida.dataset_builders.synthetic_world import (COLOURS, SHAPES, SyntheticWorld, SyntheticWorldConfig,
                                                     draw_shape_mask, is_held_out)


def test_palette_shapes_and_held_out_rule():
    assert list(COLOURS.values())[:3] == [(220, 40, 40), (40, 180, 60), (40, 80, 220)]
    assert SHAPES[0] == "circle" and SHAPES[-1] == "diamond"
    held = [(i, j) for i in range(8) for j in range(8) if is_held_out(i, j)]
    assert len(held) == 16 and (0, 0) in held and (1, 3) in held and (0, 1) not in held


def test_ring_is_an_annulus_and_shapes_fit_their_box():
    ring = draw_shape_mask("ring", (32, 32), 40, 64)
    disc = draw_shape_mask("circle", (32, 32), 40, 64)
    assert not ring[32, 32] and disc[32, 32] and ring.sum() < disc.sum()
    for shape in SHAPES:
        mask = draw_shape_mask(shape, (32, 32), 40, 64)
        ys, xs = np.nonzero(mask)
        assert mask.sum() > 100 and ys.min() >= 11 and ys.max() <= 53 and xs.min() >= 11 and xs.max() <= 53


def test_clips_are_deterministic_and_objects_have_their_colour():
    world = SyntheticWorld(SyntheticWorldConfig(size=96, clip_length=8))
    a = world.render_clip(np.random.default_rng(5))
    b = world.render_clip(np.random.default_rng(5))
    assert np.array_equal(a.frames, b.frames) and a.frames.shape == (8, 96, 96, 3)
    for k, obj in enumerate(a.objects):
        visible = a.masks[k]
        if visible.any():
            assert np.all(a.frames[visible] == obj.colour)
    # occlusion: visible masks of different objects never overlap
    assert (a.masks.sum(axis=0) <= 1).all()


def test_vad_video_labels_follow_held_out_visibility(tmp_path):
    video = render_vad_video(1, "test")
    assert 64 <= len(video.frames) <= 256
    assert np.array_equal(video.frame_labels, video.masks.reshape(len(video.masks), -1).any(axis=1))
    assert video.prompt_names == list(HELD_OUT_NAMES)
    assert set(video.anomaly_names) <= set(HELD_OUT_NAMES) and not set(video.normal_names) & set(HELD_OUT_NAMES)
    other = render_vad_video(1, "validation")
    assert len(other.frames) != len(video.frames) or not np.array_equal(other.frames[0], video.frames[0])
    path = make_sample_video(tmp_path, num_frames=64)
    masks = load_vad_masks(tmp_path / "sample.masks.npz")
    assert path.is_file() and masks.shape == (64, 256, 256) and masks.any()
