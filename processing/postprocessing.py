"""From model outputs to per-frame scores, events and full-size masks.

The steps, in the order detection applies them:

1. ``logits_to_probabilities``: sigmoid of the frame logits (one probability per sampled frame).
2. ``fill_skipped_frames``: every decoded frame takes the score of its nearest sampled frame, so a video of F frames
   always gets exactly F scores whatever the stride.
3. ``smooth_scores`` (optional, off by default): a Gaussian filter over time. It trades onset precision for fewer
   one-frame flickers; use a sigma of about half the shortest event you care about, in frames.
4. ``threshold_scores``: a frame is anomalous when its score is at least the threshold (default 0.5).
5. ``find_events``: maximal runs of anomalous frames at least ``min_length`` frames long.

``resize_masks`` brings the decoder's low-resolution mask logits or probabilities to the native frame size.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

logger = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True)
class Event:
    """A maximal run of frames whose score is at least the threshold.

    Attributes:
        start_frame, end_frame: first and last frame of the run (inclusive), as decoded-frame indices.
        start_s, end_s: the run's time span: ``start_frame / fps`` to ``(end_frame + 1) / fps`` (the end of the
            last frame), so ``end_s - start_s`` is the event's duration.
        peak_score, mean_score: the highest and the mean frame score inside the run.
    """

    start_frame: int
    end_frame: int
    start_s: float
    end_s: float
    peak_score: float
    mean_score: float

    @property
    def num_frames(self) -> int:
        return self.end_frame - self.start_frame + 1

    def to_dict(self) -> dict[str, int | float]:
        return asdict(self)


def logits_to_probabilities(logits: np.ndarray | torch.Tensor) -> np.ndarray:
    """Sigmoid of ``logits`` (any shape) as float32 numpy, without overflow for large magnitudes."""
    if isinstance(logits, torch.Tensor):
        return torch.sigmoid(logits.detach().float()).cpu().numpy()
    logits = np.asarray(logits, dtype=np.float64)
    # exp of a non-positive number only: stable for |x| in the thousands.
    exp = np.exp(-np.abs(logits))
    return np.where(logits >= 0, 1.0 / (1.0 + exp), exp / (1.0 + exp)).astype(np.float32)


def fill_skipped_frames(sampled_indices: np.ndarray, sampled_scores: np.ndarray, num_frames: int) -> np.ndarray:
    """Give every decoded frame the score of its nearest sampled frame.

    Args:
        sampled_indices: ``[S]`` strictly increasing frame indices in ``[0, num_frames)`` the model scored.
        sampled_scores: ``[S]`` their scores.
        num_frames: ``F``, the number of decoded frames.

    Returns:
        ``float32 [F]``. A frame halfway between two sampled frames takes the earlier one's score; frames after the
        last sampled frame take its score.
    """
    indices = np.asarray(sampled_indices, dtype=np.int64).reshape(-1)
    scores = np.asarray(sampled_scores, dtype=np.float32).reshape(-1)
    if indices.size == 0:
        raise ValueError("No sampled frames: at least one frame must be scored.")
    if indices.shape != scores.shape:
        raise ValueError(f"Got {indices.size} sampled indices but {scores.size} scores; they must match.")
    if num_frames < 1:
        raise ValueError(f"num_frames must be positive, got {num_frames}.")
    if np.any(np.diff(indices) <= 0):
        raise ValueError("sampled_indices must be strictly increasing.")
    if indices[0] < 0 or indices[-1] >= num_frames:
        raise ValueError(f"sampled_indices must lie in [0, {num_frames}), got {indices[0]}..{indices[-1]}.")
    frames = np.arange(num_frames)
    right = np.clip(np.searchsorted(indices, frames), 0, indices.size - 1)  # first sample at or after the frame
    left = np.clip(right - 1, 0, indices.size - 1)
    use_left = np.abs(frames - indices[left]) <= np.abs(indices[right] - frames)
    return scores[np.where(use_left, left, right)]


def smooth_scores(scores: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing over time (``sigma`` in frames; 0 returns a copy), edges mirrored.

    Args:
        scores: ``[F]`` per-frame scores.
        sigma: standard deviation of the Gaussian in frames.

    Returns:
        ``float32 [F]``, still in ``[0, 1]`` for inputs in ``[0, 1]`` (the kernel is normalised).
    """
    scores = np.asarray(scores, dtype=np.float32)
    if not (math.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"sigma must be a non-negative number of frames, got {sigma!r}.")
    if sigma == 0 or scores.size < 2:
        return scores.copy()
    radius = max(1, int(math.ceil(3 * sigma)))
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    # Mirrored edges (repeated when the kernel is wider than the video) keep the ends from sagging towards 0.
    padded = np.pad(scores.astype(np.float64), radius, mode="symmetric")
    return np.convolve(padded, kernel, mode="valid").astype(np.float32)


def threshold_scores(scores: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """``bool [F]``: True where ``scores >= threshold``."""
    _check_threshold(threshold)
    return np.asarray(scores) >= threshold


def _check_threshold(threshold: float) -> None:
    if not (isinstance(threshold, (int, float)) and 0.0 <= threshold <= 1.0):
        raise ValueError(f"threshold must be a number in [0, 1], got {threshold!r}.")


def find_events(scores: np.ndarray, fps: float, threshold: float = DEFAULT_THRESHOLD,
                min_length: int = 1) -> list[Event]:
    """Maximal runs of frames with ``score >= threshold`` lasting at least ``min_length`` frames.

    Args:
        scores: ``[F]`` per-frame scores.
        fps: frames per second, for the event times.
        threshold: score at or above which a frame is anomalous.
        min_length: shortest run kept, in frames (1 keeps every run).

    Returns:
        The events in time order.
    """
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be positive, got {fps!r}.")
    if min_length < 1:
        raise ValueError(f"min_length must be at least 1 frame, got {min_length}.")
    above = threshold_scores(scores, threshold).astype(np.int8)
    edges = np.diff(np.concatenate([[0], above, [0]]))  # +1 where a run starts, -1 one past where it ends
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    events = []
    for start, stop in zip(starts.tolist(), stops.tolist()):
        if stop - start < min_length:
            continue
        run = scores[start:stop]
        events.append(Event(start_frame=start, end_frame=stop - 1, start_s=start / fps, end_s=stop / fps,
                            peak_score=float(run.max()), mean_score=float(run.mean())))
    return events


def resize_masks(masks: np.ndarray | torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of masks to ``size = (height, width)``.

    Resize logits or probabilities, never binarised masks: interpolating the continuous values and thresholding
    afterwards keeps smooth boundaries. Logits and probabilities give the same mask after their thresholds only
    approximately (sigmoid is not linear), so resize logits when the caller has them.

    Args:
        masks: ``[h, w]`` or ``[N, h, w]`` float.
        size: target ``(height, width)``.

    Returns:
        ``float32 [H, W]`` or ``[N, H, W]`` (same leading shape as the input).
    """
    tensor = masks.detach() if isinstance(masks, torch.Tensor) else torch.from_numpy(np.asarray(masks))
    if tensor.ndim not in (2, 3):
        raise ValueError(f"masks must be [h, w] or [N, h, w], got {list(tensor.shape)}.")
    height, width = int(size[0]), int(size[1])
    if height < 1 or width < 1:
        raise ValueError(f"size must be a positive (height, width), got {size!r}.")
    batch = tensor.float().cpu().reshape(-1, 1, *tensor.shape[-2:])  # (N, 1, h, w)
    resized = torch.nn.functional.interpolate(batch, size=(height, width), mode="bilinear", align_corners=False)
    return resized.reshape(*tensor.shape[:-2], height, width).numpy()


__all__ = ["DEFAULT_THRESHOLD", "Event", "fill_skipped_frames", "find_events", "logits_to_probabilities",
           "resize_masks", "smooth_scores", "threshold_scores"]
