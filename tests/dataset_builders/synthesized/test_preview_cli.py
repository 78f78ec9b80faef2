"""``lavida synthesize-preview`` writes the comparison PNG; the source's options plug into ``build-dataset``."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
from PIL import Image

from lavida.cli import main
from lavida.dataset_builders.synthesized import load_synthesis_config
from lavida.dataset_builders.synthesized.preview import OUTLINE, ROW_LABELS, mask_outline
from lavida.dataset_builders.synthesized.source import synthesized_source_from_args
from lavida.errors import UserInputError


def test_copy_paste_preview_png(normal_videos, tmp_path, capsys):
    out = tmp_path / "preview.png"
    code = main(["synthesize-preview", "--normal-videos", str(normal_videos), "--objects", "synthetic",
                 "--out", str(out), "--samples", "2", "--frames", "3", "--tile", "64", "--clip-length", "4"])
    assert code == 0 and "wrote" in capsys.readouterr().out
    image = np.asarray(Image.open(out).convert("RGB"))
    tile_height = 48  # 48x64 frames in 64-px tiles
    assert image.shape[1] == 96 + 3 * (64 + 4)
    assert image.shape[0] == 2 * (18 + len(ROW_LABELS) * (tile_height + 4) + 8)
    assert (image == OUTLINE).all(axis=-1).sum() > 20  # mask outlines are drawn
    assert not list(tmp_path.glob(".*partial"))


def test_inpaint_preview_with_a_yaml_config(frame_folder, tiny_inpaint_model, tmp_path):
    config = tmp_path / "synthesis.yaml"
    config.write_text("method: inpaint\ninpaint:\n  resolution: 32\n  num_inference_steps: 2\n  guidance_scale: 1.0\n"
                      "paste:\n  min_size: 0.3\n  max_size: 0.5\n")
    out = tmp_path / "inpaint.png"
    code = main(["synthesize-preview", "--normal-videos", str(frame_folder), "--objects", "dog, kite",
                 "--inpaint-model", str(tiny_inpaint_model), "--synthesis-config", str(config), "--samples", "1",
                 "--out", str(out)])
    assert code == 0 and out.is_file()


def test_user_errors_exit_2_with_one_line(frame_folder, tmp_path, capsys):
    code = main(["synthesize-preview", "--normal-videos", str(frame_folder), "--objects", "dog, kite",
                 "--out", str(tmp_path / "x.png")])
    error = capsys.readouterr().err
    assert code == 2 and "--method inpaint" in error and len(error.strip().splitlines()) == 1
    code = main(["synthesize-preview", "--normal-videos", str(tmp_path / "missing"), "--objects", "synthetic",
                 "--out", str(tmp_path / "x.png")])
    assert code == 2 and "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_options_plug_into_the_build_dataset_parser(frame_folder):
    from lavida.commands import build_dataset

    parser = argparse.ArgumentParser()
    build_dataset.add_arguments(parser)  # includes the synthesized source's options, no clash with --seed etc.
    args = parser.parse_args(["synthesized", "--out", "x", "--normal-videos", str(frame_folder), "--objects",
                              "synthetic", "--clip-length", "4", "--seed", "3"])
    source = synthesized_source_from_args(args)
    assert (source.name, source.is_video, source.seed, source.config.clip_length) == ("synthesized", True, 3, 4)
    assert source.synthesize(0).frames.shape == (4, 48, 64, 3)
    defaults = parser.parse_args(["synthesized", "--out", "x", "--normal-videos", str(frame_folder), "--objects",
                                  "synthetic"])
    assert synthesized_source_from_args(defaults).seed == 0


def test_yaml_with_an_unknown_key_is_a_user_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("metod: inpaint\n")
    with pytest.raises(UserInputError, match=r"unknown keys \['metod'\]"):
        load_synthesis_config(path)


def test_mask_outline_is_the_inner_border():
    mask = np.zeros((8, 8), dtype=bool)
    mask[1:7, 1:7] = True
    edge = mask_outline(mask, width=1)
    assert edge.sum() == 20 and not edge[2:6, 2:6].any() and not (edge & ~mask).any()
