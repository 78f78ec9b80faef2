"""The overlay of a large video is written at a capped size, with its masks made at that size."""

from __future__ import annotations

import numpy as np
import pytest

from lavida.processing.detection import FrameMasks, VideoDetection
from lavida.processing.result_writers import OutputOptions, overlay_frame_size, overlay_size, write_overlay
from lavida.processing.video_io import iter_frames, probe_video, write_video


@pytest.mark.parametrize("size, max_side, expected", [
    ((1080, 1920), 1280, (720, 1280)),
    ((720, 1280), 1280, (720, 1280)),  # at the cap: kept
    ((45, 61), 1280, (45, 61)),  # small and odd: kept exactly
    ((8000, 8000), 1280, (1280, 1280)),
    ((3001, 1001), 1280, (1280, 426)),  # scaled: even sides for a browser-playable 4:2:0 overlay
])
def test_overlay_size(size, max_side, expected):
    assert overlay_size(*size, max_side) == expected


def test_a_large_overlay_is_scaled_down_with_masks_made_at_its_size(tmp_path, monkeypatch):
    height, width, count = 240, 360, 9
    path = tmp_path / "wide.mp4"
    write_video(path, np.full((count, height, width, 3), 128, dtype=np.uint8), fps=10.0, preset="ultrafast")
    logits = np.full((count, 16, 16), -12.0, dtype=np.float16)
    logits[:, :, :8] = 12.0  # the left half is anomalous
    masks = FrameMasks(logits, np.arange(count), count, (height, width))
    detection = VideoDetection.from_frame_scores(np.full(count, 0.9), 10.0, ["grey wall"], size=(height, width),
                                                 masks=masks, source=str(path))
    asked = []
    original = FrameMasks.frame

    def spying(self, index, size=None):
        asked.append(size)
        return original(self, index, size)

    monkeypatch.setattr(FrameMasks, "frame", spying)
    options = OutputOptions(overlay_max_side=100, progress=False)
    write_overlay(tmp_path / "overlay.mp4", detection, options)
    assert asked == [(66, 100)] * count  # never at the native 240 x 360
    info = probe_video(tmp_path / "overlay.mp4")
    assert (info.height, info.width, info.num_frames, info.fps) == (*overlay_frame_size(66, 100, options), count, 10.0)
    frame = next(iter_frames(tmp_path / "overlay.mp4")).image.astype(int)
    left, right = frame[10:50, 5:40], frame[10:50, 60:95]
    assert left[..., 0].mean() > right[..., 0].mean() + 40  # the tint sits where the mask is, at the new size
