"""Diffusion inpainting end to end on CPU with a tiny random pipeline loaded through ``from_pretrained``."""

from __future__ import annotations

import numpy as np
import pytest

from lavida.dataset_builders.synthesized import (
    InpaintConfig,
    Inpainter,
    PasteConfig,
    SynthesisConfig,
    build_synthesized_source,
    inpaint,
    load_inpaint_pipeline,
)
from lavida.dataset_builders.synthesized.inpaint import changed_mask, ellipse_mask, pick_device_and_dtype, plan_inpaint
from lavida.errors import UserInputError

from .conftest import gradient_frames

TINY = InpaintConfig(resolution=32, num_inference_steps=2, guidance_scale=1.0)  # no guidance: one UNet pass per step
PLACEMENT = PasteConfig(min_size=0.3, max_size=0.5, feather=0.0)


@pytest.fixture(scope="module")
def inpainter(tiny_inpaint_model):
    config = InpaintConfig(**{**TINY.__dict__, "model_id": str(tiny_inpaint_model)})
    return Inpainter(config)


def test_device_and_dtype_follow_the_hardware(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device_and_dtype() == (torch.device("cpu"), torch.float32)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device_and_dtype() == (torch.device("cuda"), torch.float16)
    assert pick_device_and_dtype("cpu", "bfloat16") == (torch.device("cpu"), torch.bfloat16)


def test_pipeline_loads_from_a_saved_folder(inpainter):
    import torch

    pipeline = inpainter.load()
    assert type(pipeline).__name__ == "StableDiffusionInpaintPipeline"
    assert pipeline.unet.dtype == torch.float32 and pipeline.device.type == "cpu"  # no GPU here


def test_an_unloadable_checkpoint_is_a_user_error(tmp_path):
    with pytest.raises(UserInputError, match="could not be loaded as an inpainting pipeline"):
        load_inpaint_pipeline(str(tmp_path / "no-such-checkpoint"))


def test_paint_returns_the_painted_region_and_is_seeded(inpainter):
    frame = gradient_frames(1, seed=4)[0]
    box = (10, 20, 20, 20)
    first = inpainter.paint(frame, box, "dog", seed=3)
    assert first.names == ["dog"] and first.rgb.shape == (20, 20, 3) and first.mask.shape == (20, 20)
    assert first.mask.any() and not (first.mask & ~ellipse_mask(20, 20, (0, 0, 20, 20))).any()  # inside the ellipse
    assert np.abs(first.rgb.astype(int) - frame[10:30, 20:40]).mean() > 5  # a random model repaints the region
    assert not np.array_equal(first.rgb, inpainter.paint(frame, box, "dog", seed=4).rgb)  # (same seed: see below)


def test_patch_is_painted_on_the_key_frame_and_carried(inpainter):
    frames = gradient_frames(8, seed=5)
    shown = [2, 3, 4, 5, 6, 7]
    out, masks = inpaint(frames, "kite", shown, np.random.default_rng(11), inpainter, PLACEMENT)
    assert out.shape == frames.shape and masks.shape == (8, 48, 64)
    assert [bool(m.any()) for m in masks] == [False, False] + [True] * 6
    assert np.array_equal(out[:2], frames[:2])
    assert not ((out != frames).any(axis=-1) & ~masks).any()  # hard edges: changes only inside the masks
    # replay the same draws (and seed): the key frame shows exactly the painted patch, where it was painted
    rng = np.random.default_rng(11)
    plan = plan_inpaint(rng, (48, 64), shown, PLACEMENT)
    cutout = inpainter.paint(frames[2], plan.box, "kite", int(rng.integers(0, 2**31 - 1)))
    top, left, h, w = plan.box
    key_mask = masks[2, top:top + h, left:left + w]
    assert np.array_equal(key_mask, cutout.mask) and masks[2].sum() == cutout.mask.sum()
    assert np.array_equal(out[2, top:top + h, left:left + w][key_mask], cutout.rgb[cutout.mask])


def test_inpaint_source_end_to_end(tiny_inpaint_model, frame_folder):
    config = SynthesisConfig(inpaint=InpaintConfig(**{**TINY.__dict__}), paste=PLACEMENT)
    source = build_synthesized_source(frame_folder, "bicycle, red kite, dog", method="inpaint",
                                      inpaint_model=str(tiny_inpaint_model), seed=2, config=config)
    assert source.inpainter.config.model_id == str(tiny_inpaint_model)
    assert source.name_pool() == ["bicycle", "dog", "red kite"]
    items = list(source.iter_items())
    assert len(items) == 1
    names = items[0].objects[0].names
    assert len(names) == 1 and names[0] in source.name_pool() and items[0].present_names == set(names)
    frames, masks = items[0].load_frames(), items[0].objects[0].masks  # one synthesis serves both
    assert frames.shape == (8, 48, 64, 3) and masks.any(axis=(1, 2)).sum() >= 4
    assert (frames != source.synthesize(0).original).any(axis=-1)[masks].mean() > 0.5
    source.inpainter.close()


def test_changed_mask_keeps_the_object_not_the_repainted_background():
    original = np.full((24, 24, 3), 100, dtype=np.uint8)
    region = ellipse_mask(24, 24, (0, 0, 24, 24))
    painted = original.copy()
    painted[region] += np.random.default_rng(0).integers(0, 8, size=(int(region.sum()), 3), dtype=np.uint8)  # noise
    yy, xx = np.mgrid[0:24, 0:24]
    disk = (yy - 12) ** 2 + (xx - 12) ** 2 <= 36
    painted[disk] = (250, 250, 20)
    mask = changed_mask(original, painted, region, threshold=0.08, min_fraction=0.1)
    assert np.array_equal(mask, disk)
    unchanged = changed_mask(original, original, region, threshold=0.08, min_fraction=0.1)
    assert np.array_equal(unchanged, region)  # nothing changed: fall back to the whole region
