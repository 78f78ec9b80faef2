"""Copy-paste on fixtures: objects from the synthetic world and from a real source layout (ADE20K)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lavida.dataset_builders.synthesized import PasteConfig, SynthesisConfig, build_synthesized_source
from lavida.dataset_builders.synthesized.objects import SourceBank, SyntheticShapeBank, resolve_objects
from lavida.dataset_builders.synthetic_world import COLOURS, HELD_OUT_NAMES, TRAINING_NAMES
from lavida.errors import UserInputError

PERSON, CHAIR, BED = 13, 20, 8  # ADE20K SceneParsing label ids


@pytest.fixture
def ade20k_root(tmp_path):
    """Two ADE20K images: a red person (two blobs, the larger one 10x8), a tiny chair, a bed covering most of one."""
    labels = np.zeros((40, 48), dtype=np.uint8)
    labels[5:15, 4:12] = PERSON  # 80 px: the largest part
    labels[30:33, 40:43] = PERSON  # 9 px, disconnected: not cut
    labels[20:24, 20:23] = CHAIR  # 12 px: under min_area
    image = np.full((40, 48, 3), 128, dtype=np.uint8)
    image[labels == PERSON] = (230, 20, 20)
    big_bed = np.full((40, 48), BED, dtype=np.uint8)  # 100 % of the frame: stuff, not an object to paste
    for index, (lab, img) in enumerate([(labels, image), (big_bed, image)], start=1):
        stem = f"ADE_train_{index:08d}"
        (tmp_path / "images" / "training").mkdir(parents=True, exist_ok=True)
        (tmp_path / "annotations" / "training").mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(tmp_path / "images" / "training" / f"{stem}.jpg", quality=100, subsampling=0)
        Image.fromarray(lab).save(tmp_path / "annotations" / "training" / f"{stem}.png")
    return tmp_path


def test_source_bank_cuts_the_largest_part_of_real_objects(ade20k_root):
    from lavida.dataset_builders.sources import get_source

    bank = SourceBank(get_source("ade20k", ade20k_root), min_area=64, max_fraction=0.5)
    assert len(bank) == 1 and bank.names(0) == ["person"]  # chair too small, bed too large
    assert "chair" in bank.name_pool() and len(bank.name_pool()) == 130
    cutout = bank.cutout(0, np.random.default_rng(0))
    assert cutout.mask.shape == (10, 8) and cutout.mask.all()
    assert np.abs(cutout.rgb.astype(int) - (230, 20, 20)).max() < 40  # the person's pixels (JPEG)


def test_copy_paste_from_a_real_source_end_to_end(ade20k_root, frame_folder):
    source = build_synthesized_source(frame_folder, "ade20k", data_root=ade20k_root, seed=1, clip_length=8,
                                      config=SynthesisConfig(items_per_clip=3, paste=PasteConfig(feather=0.0)))
    item = next(source.iter_items())
    assert item.item_id == "clip@000000/0" and len(source) == 3
    assert item.source == "synthesized" and item.present_names == {"person"}
    frames = item.load_frames()
    masks = item.objects[0].masks
    assert frames.shape == (8, 48, 64, 3) and masks.shape == (8, 48, 64)
    assert masks.any(axis=(1, 2)).sum() >= 4  # shown on at least half the clip
    red = np.abs(frames.astype(int) - (230, 20, 20)).max(axis=-1) < 60
    assert (red == masks).mean() > 0.99  # the pasted region is the red person, and only it


def test_copy_paste_changes_only_the_masked_frames_and_is_deterministic(frame_folder):
    config = SynthesisConfig(items_per_clip=6, min_visible_fraction=0.5, paste=PasteConfig(feather=0.0))
    source = build_synthesized_source(frame_folder, "synthetic", seed=7, config=config)
    again = build_synthesized_source(frame_folder, "synthetic", seed=7, config=config)
    other = build_synthesized_source(frame_folder, "synthetic", seed=8, config=config)
    for index in range(len(source)):
        result = source.synthesize(index)
        assert result.names[0] in TRAINING_NAMES and result.names[0] not in HELD_OUT_NAMES
        changed = (result.frames != result.original).any(axis=-1)
        assert not (changed & ~result.masks).any()  # hard edges: nothing outside the mask changes
        colour = np.asarray(COLOURS[result.names[0].split(" ")[0]])
        assert np.abs(result.frames[result.masks].astype(int) - colour).mean() < 10  # the mask holds the object
        shown = result.masks.any(axis=(1, 2))
        run = np.flatnonzero(shown)
        assert len(run) >= 4 and np.array_equal(run, np.arange(run[0], run[-1] + 1))  # one run of frames
        assert np.array_equal(result.frames, again.synthesize(index).frames)
    assert any(not np.array_equal(source.synthesize(i).masks, other.synthesize(i).masks) for i in range(len(source)))


def test_feathered_paste_blends_the_edges(frame_folder):
    placement = PasteConfig(min_size=0.6, max_size=0.6, feather=0.2)
    source = build_synthesized_source(frame_folder, "synthetic", seed=0, config=SynthesisConfig(paste=placement))
    result = source.synthesize(0)
    t = int(np.flatnonzero(result.masks.any(axis=(1, 2)))[0])
    colour = np.asarray(COLOURS[result.names[0].split(" ")[0]], dtype=float)
    original, frame = result.original[t].astype(float), result.frames[t].astype(float)
    changed = (frame != original).any(axis=-1)
    weight = np.clip(((frame - original) * (colour - original)).sum(-1)
                     / np.maximum(((colour - original) ** 2).sum(-1), 1.0), 0, 1.2)
    assert changed.sum() > result.masks[t].sum()  # the soft rim outside the label mask is blended too
    assert ((weight > 0.1) & (weight < 0.6) & changed).sum() > 0  # partial opacity: a blend, not a hard cut


def test_names_cannot_be_copy_pasted(frame_folder):
    with pytest.raises(UserInputError, match="--method inpaint"):
        build_synthesized_source(frame_folder, "bicycle, dog")
    with pytest.raises(UserInputError, match="--data-root"):
        resolve_objects("ade20k", "copy-paste")
    assert isinstance(resolve_objects("synthetic", "copy-paste"), SyntheticShapeBank)
