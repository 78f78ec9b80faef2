"""What an overlay frame shows: a mask only as strong as the frame's score, the score legible at any video size, and
the picture itself never covered by the score bar."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from lavida.processing.detection import VideoDetection
from lavida.processing.result_writers import OutputOptions, render_overlay_frame, write_overlay
from lavida.processing.video_io import write_video

THRESHOLD = 0.5


def _scene(height: int = 120, width: int = 160) -> tuple[np.ndarray, np.ndarray]:
    """A grey gradient picture and a full-probability box mask over its middle."""
    ramp = np.linspace(70, 150, width, dtype=np.float32)[None, :, None]
    image = np.broadcast_to(ramp, (height, width, 3)).astype(np.uint8)
    mask = np.zeros((height, width), dtype=np.float32)
    mask[height // 4: height // 2, width // 4: width // 2] = 1.0
    return image, mask


def _change(frame: np.ndarray, image: np.ndarray) -> np.ndarray:
    """``[H, W]`` mean absolute colour change of the picture part of an overlay frame."""
    height, width = image.shape[:2]
    return np.abs(frame[:height, :width].astype(int) - image.astype(int)).mean(axis=-1)


def test_a_frame_far_below_the_threshold_shows_no_mask():
    image, mask = _scene()
    for score in (0.04, 0.2):  # below threshold / 2 (OutputOptions.mask_hidden_below)
        change = _change(render_overlay_frame(image, score, THRESHOLD, mask), image)
        assert change[mask > 0].mean() < 0.5 and change[mask == 0].mean() < 0.5


def test_the_mask_grows_with_the_score_and_is_strong_in_an_event():
    image, mask = _scene()
    inside = {score: _change(render_overlay_frame(image, score, THRESHOLD, mask), image)[mask > 0].mean()
              for score in (0.3, 0.4, 0.49, 0.8)}
    assert inside[0.3] < inside[0.4] < inside[0.49] < inside[0.8]
    assert inside[0.49] < 0.5 * inside[0.8]  # near the threshold: a hint only
    assert inside[0.8] > 45  # in an event: clearly marked
    outside = _change(render_overlay_frame(image, 0.8, THRESHOLD, mask), image)[mask == 0]
    assert outside.mean() < 0.5  # the tint stays on the object


def test_only_an_event_frame_outlines_the_object():
    image, mask = _scene()
    color = np.asarray(OutputOptions().mask_outline_color)
    edge = (slice(30, 31), slice(40, 80))  # the box's top row
    event = render_overlay_frame(image, 0.8, THRESHOLD, mask)
    near = render_overlay_frame(image, 0.49, THRESHOLD, mask)
    assert (event[edge] == color).all()
    assert not (near[edge] == color).all(axis=-1).any()


def test_a_last_bit_difference_in_the_score_leaves_the_frame_unchanged():
    # Two processes can score a frame a few float32 steps apart; their overlays must still be byte-identical.
    image = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    mask = np.full((240, 320), 0.5, dtype=np.float32)
    for score in (0.4999658, 0.3712, 0.81):
        nearby = float(np.float32(score) + np.float32(2e-6))
        np.testing.assert_array_equal(render_overlay_frame(image, score, THRESHOLD, mask),
                                      render_overlay_frame(image, nearby, THRESHOLD, mask))


@pytest.mark.parametrize("score", [0.1, 0.9])
def test_the_score_bar_leaves_every_picture_row_untouched(score):
    image, _ = _scene()
    frame = render_overlay_frame(image, score, THRESHOLD, None)
    np.testing.assert_array_equal(frame[:image.shape[0], :image.shape[1]], image)
    assert frame.shape[0] > image.shape[0]  # the bar lies on a band of its own below the picture


@pytest.mark.parametrize("height, width", [(120, 160), (64, 80), (45, 61), (720, 1280)])
def test_the_score_is_written_at_every_video_size_on_even_sides(height, width):
    image = np.full((height, width, 3), 90, dtype=np.uint8)
    frame = render_overlay_frame(image, 0.37, THRESHOLD, None)
    assert frame.shape[0] % 2 == 0 and frame.shape[1] % 2 == 0  # H.264 4:2:0 needs even sides
    tick = round(THRESHOLD * width)
    text = frame[:, : tick - 3].min(axis=-1) >= 200  # white text; the threshold tick (also white) is left out
    assert text.sum() >= 20
    # The text reads the score: another score draws other pixels there.
    other = render_overlay_frame(image, 0.81, THRESHOLD, None)[:, : tick - 3].min(axis=-1) >= 200
    assert (text != other).any()


def test_an_overlay_encodes_to_the_same_bytes_every_time(tmp_path):
    # One process or several must write byte-identical overlays, whatever each process did before (here: memory
    # filled with other values between the writes).
    rng = np.random.default_rng(0)
    write_video(tmp_path / "noise.mp4", rng.integers(0, 255, (20, 48, 64, 3), dtype=np.uint8), fps=10.0)
    detection = VideoDetection.from_frame_scores(
        np.full(20, 0.4999658, np.float32), 10.0, ["fire"], size=(48, 64),
        masks=np.full((20, 48, 64), 0.5, np.float32), source=str(tmp_path / "noise.mp4"))
    digests = set()
    for _ in range(5):
        other_work = [np.full(int(rng.integers(1000, 200000)), int(rng.integers(0, 255)), np.uint8) for _ in range(50)]
        write_overlay(tmp_path / "overlay.mp4", detection, OutputOptions(progress=False))
        digests.add(hashlib.md5((tmp_path / "overlay.mp4").read_bytes()).hexdigest())
        del other_work
    assert len(digests) == 1
