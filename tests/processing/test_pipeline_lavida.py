"""The video-anomaly-detection pipeline against processor + model called by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import pipeline

import lavida  # noqa: F401  (registers the task)
from lavida.processing.video_io import FrameArray, write_video


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(0)
    video = rng.integers(0, 255, (21, 64, 80, 3), dtype=np.uint8)
    video[8:14, 10:40, 20:50] = (220, 40, 40)
    return video


def _by_hand(model, processor, frames, names, stride):
    sampled = np.arange(0, len(frames), stride)
    scores = {}
    for start in range(0, len(sampled), 8):
        index = sampled[start:start + 8]
        clip = frames[index]
        if len(clip) < 8:  # the last clip is completed by repeating its last frame
            clip = np.concatenate([clip, np.repeat(clip[-1:], 8 - len(clip), axis=0)])
        with torch.no_grad():
            out = model(**processor([clip], names))
        for i, frame in enumerate(index):
            scores[int(frame)] = float(torch.sigmoid(out.frame_logits[0, i]))
    keys = np.array(sorted(scores))
    filled = []
    for frame in range(len(frames)):  # nearest sampled frame, ties to the earlier one
        nearest = keys[np.argmin(np.abs(keys - frame))]
        filled.append(scores[int(nearest)])
    return np.array(filled)


@pytest.mark.parametrize("stride", [1, 3])
def test_pipeline_equals_processor_plus_model(tiny_lavida_checkpoint, frames, stride):
    detector = pipeline("video-anomaly-detection", model=str(tiny_lavida_checkpoint))
    names = ["red square", "blue star"]
    result = detector(FrameArray(frames, fps=10.0), anomalies=names, stride=stride)
    assert result["num_frames"] == len(frames) and len(result["scores"]) == len(frames)
    assert result["fps"] == 10.0
    expected = _by_hand(detector.model, detector.processor, frames, names, stride)
    np.testing.assert_allclose(result["scores"], expected, rtol=1e-5, atol=1e-6)


def test_pipeline_accepts_path_and_bytes_and_returns_masks(tiny_lavida_checkpoint, frames, tmp_path):
    path = tmp_path / "clip.mp4"
    write_video(path, frames, fps=10.0)
    detector = pipeline("video-anomaly-detection", model=str(tiny_lavida_checkpoint))
    from_path = detector(str(path), anomalies="red square, blue star", return_masks=True)
    from_bytes = detector(path.read_bytes(), anomalies=["red square", "blue star"])
    assert from_path["scores"] == from_bytes["scores"]
    assert from_path["masks"].shape == (len(frames), 64, 80)
    assert 0.0 <= float(from_path["masks"].min()) and float(from_path["masks"].max()) <= 1.0


def test_pipeline_rejects_missing_names(tiny_lavida_checkpoint, frames):
    detector = pipeline("video-anomaly-detection", model=str(tiny_lavida_checkpoint))
    with pytest.raises(ValueError, match="anomaly"):
        detector(FrameArray(frames), anomalies=" , ")
