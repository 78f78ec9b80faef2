"""Fixtures: tiny normal videos (an mp4 and a frame folder) and a tiny random inpainting pipeline saved to disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

HEIGHT, WIDTH = 48, 64


def gradient_frames(count: int, seed: int = 0) -> np.ndarray:
    """``uint8 [count, 48, 64, 3]``: a smooth gradient drifting 2 px per frame plus faint noise (a 'normal' scene)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    frames = []
    for t in range(count):
        frame = np.stack([(xx * 3 + 2 * t) % 256, yy * 4, np.full_like(xx, 90)], axis=-1).astype(np.float32)
        frames.append(np.clip(frame + rng.normal(0, 2, frame.shape), 0, 255).astype(np.uint8))
    return np.stack(frames)


def write_frame_folder(folder: Path, frames: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for t, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"frame{t + 1}.png")  # frame1 ... frame10: natural order matters
    return folder


@pytest.fixture(scope="session")
def normal_videos(tmp_path_factory) -> Path:
    """A folder with ``street/cam1.mp4`` (20 frames) and ``indoor/`` (a frame folder of 12 PNGs)."""
    from lavida.processing.video_io import write_video

    root = tmp_path_factory.mktemp("normal")
    (root / "street").mkdir()
    write_video(root / "street" / "cam1.mp4", list(gradient_frames(20, seed=1)), fps=10)
    write_frame_folder(root / "indoor", gradient_frames(12, seed=2))
    return root


@pytest.fixture(scope="session")
def frame_folder(tmp_path_factory) -> Path:
    """One normal video as a frame folder of 8 PNGs (exact pixels, fast to read)."""
    return write_frame_folder(tmp_path_factory.mktemp("frames") / "clip", gradient_frames(8, seed=3))


@pytest.fixture(autouse=True)
def one_torch_thread():
    """The tiny pipeline's kernels are too small to share: a second thread only spins waiting on a busy core."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_inpaint_model(tmp_path_factory) -> Path:
    """A randomly initialised Stable Diffusion inpainting pipeline built from configs and saved with
    ``save_pretrained``, so the code under test loads it through ``AutoPipelineForInpainting.from_pretrained``."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in "abcdefghijklmnopqrstuvwxyz":
        vocab[char] = len(vocab)
        vocab[char + "</w>"] = len(vocab)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=16)
    unet = UNet2DConditionModel(
        block_out_channels=(16, 32), layers_per_block=1, sample_size=16, in_channels=9, out_channels=4,
        norm_num_groups=8, attention_head_dim=4, cross_attention_dim=16,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    )  # in_channels 9 = 4 latent + 4 masked-image latent + 1 mask
    vae = AutoencoderKL(block_out_channels=[16, 32], in_channels=3, out_channels=3, latent_channels=4,
                        norm_num_groups=8, down_block_types=["DownEncoderBlock2D"] * 2,
                        up_block_types=["UpDecoderBlock2D"] * 2)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        max_position_embeddings=16, bos_token_id=0, eos_token_id=1, pad_token_id=1, projection_dim=16))
    pipeline = StableDiffusionInpaintPipeline(
        unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=DDIMScheduler(steps_offset=1),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    folder = tmp_path_factory.mktemp("tiny-inpaint")
    pipeline.save_pretrained(folder)
    return folder
