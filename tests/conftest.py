"""Shared fixtures: tiny LAVIDA configs and batches, built locally (no Hub access)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One scratch folder per test session, removed when the session ends (repeated runs must not fill the disk). It holds
# a fresh datasets cache (local folders of the same name must never hit an older cached build), the files the Space
# tests upload through gradio, and the temp folder of every process the tests start (the log folders that
# `accelerate launch` leaves behind, among others).
import atexit  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

SESSION_SCRATCH = tempfile.mkdtemp(prefix="lavida-tests-")
atexit.register(shutil.rmtree, SESSION_SCRATCH, ignore_errors=True)
os.environ["HF_DATASETS_CACHE"] = os.path.join(SESSION_SCRATCH, "datasets-cache")
os.environ["GRADIO_TEMP_DIR"] = os.path.join(SESSION_SCRATCH, "gradio")
os.environ["TMPDIR"] = os.path.join(SESSION_SCRATCH, "tmp")
os.makedirs(os.environ["TMPDIR"])

import numpy as np
import pytest
import torch

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def byte_tokenizer():
    from lavida.processing.byte_tokenizer import build_byte_tokenizer

    return build_byte_tokenizer()


@pytest.fixture(scope="session")
def tiny_video_processor():
    from transformers import Qwen2VLVideoProcessor

    # 8 frames at 56x56 -> grid (4, 4, 4): 16 video tokens per clip
    return Qwen2VLVideoProcessor(size={"shortest_edge": 56 * 56, "longest_edge": 56 * 56}, cap_pixels_per_frame=False)


def build_tiny_batch(tokenizer, video_processor, batch: int = 2, frames: int = 8, seed: int = 0,
                     names: tuple[str, ...] = ("red circle", "blue star"), with_targets: bool = True,
                     moving: bool = True) -> dict[str, torch.Tensor]:
    """A hand-built model batch (the processor tests check the processor builds the same kind of batch)."""
    rng = np.random.default_rng(seed)
    clips = rng.integers(0, 255, size=(batch, frames, 64, 64, 3), dtype=np.uint8)
    if not moving:
        clips[:] = clips[:, :1]
    video = video_processor(videos=list(clips), return_tensors="pt")
    tokens_per_video = int(video["video_grid_thw"][0].prod()) // 4
    messages = [
        {"role": "user", "content": [{"type": "video"},
                                      {"type": "text", "text": "Detect anomalies. Anomalies include " + ", ".join(names) + "."}]},
        {"role": "assistant", "content": "Sure, it is <SEG>."},
    ]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    text = text.replace("<|video_pad|>", "<|video_pad|>" * tokens_per_video)
    encoded = tokenizer([text] * batch, return_tensors="pt")
    ids = encoded.input_ids
    video_id = tokenizer.convert_tokens_to_ids("<|video_pad|>")
    name_batch = tokenizer([n + "<|endoftext|>" for n in names], padding=True, return_tensors="pt")
    generator = torch.Generator().manual_seed(seed)
    out = {
        "input_ids": ids,
        "attention_mask": encoded.attention_mask,
        "mm_token_type_ids": (ids == video_id).int() * 2,
        "pixel_values_videos": video["pixel_values_videos"],
        "video_grid_thw": video["video_grid_thw"],
        "sam_pixel_values": torch.randn(batch, frames, 3, 128, 128, generator=generator),
        "class_input_ids": name_batch.input_ids[None].expand(batch, -1, -1).clone(),
        "class_attention_mask": name_batch.attention_mask[None].expand(batch, -1, -1).clone(),
    }
    if with_targets:
        targets = torch.zeros(batch, frames, 128, 128)
        targets[0, 2:6, 20:60, 30:70] = 1.0
        labels = torch.full_like(ids, -100)
        answer_start = text.rindex("Sure")
        # train the answer tokens (byte tokenizer: one token per character after the prefix)
        prefix_len = len(tokenizer(text[:answer_start]).input_ids)
        labels[:, prefix_len:] = ids[:, prefix_len:]
        out["target_masks"] = targets
        out["labels"] = labels
    return out


@pytest.fixture
def tiny_batch(byte_tokenizer, tiny_video_processor):
    return build_tiny_batch(byte_tokenizer, tiny_video_processor)


@pytest.fixture
def tiny_model():
    from lavida import LavidaConfig, LavidaForVideoAnomalyDetection

    torch.manual_seed(0)
    return LavidaForVideoAnomalyDetection(LavidaConfig.tiny())


@pytest.fixture(scope="session")
def tiny_lavida_checkpoint(tmp_path_factory):
    """A folder holding a seeded random ``LavidaConfig.tiny()`` model and its tiny processor (``save_pretrained``)."""
    from lavida import LavidaConfig, LavidaForVideoAnomalyDetection
    from lavida.processing.factories import build_tiny_processor

    folder = tmp_path_factory.mktemp("tiny-checkpoint")
    torch.manual_seed(0)
    LavidaForVideoAnomalyDetection(LavidaConfig.tiny()).save_pretrained(folder)
    build_tiny_processor().save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def varied_lavida_checkpoint(tmp_path_factory):
    """Like ``tiny_lavida_checkpoint`` with a wider random init than the default 0.02: the scores then depend on the
    video, the frame and the names in the 3rd-4th decimal (with 0.02 they agree to 6 decimals), so a mixed-up request
    or a different post-processing shows in result.json."""
    from lavida import LavidaConfig, LavidaForVideoAnomalyDetection
    from lavida.processing.factories import build_tiny_processor

    folder = tmp_path_factory.mktemp("varied-checkpoint")
    config = LavidaConfig.tiny(initializer_range=0.2)
    config.sam_config.initializer_range = 0.2
    torch.manual_seed(0)
    LavidaForVideoAnomalyDetection(config).save_pretrained(folder)
    build_tiny_processor().save_pretrained(folder)
    return folder
