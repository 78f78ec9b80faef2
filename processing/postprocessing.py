"""From model outputs to per-frame scores, events and full-size masks: one function per step.

The steps, in the order detection applies them (``LavidaProcessor.post_process_*`` are the public entry points and
call these; detection, evaluation, the Space and the pipeline all go through them):

1. ``frame_probabilities``: sigmoid of the frame logits (one probability per sampled frame).
2. ``fill_skipped_frames``: every decoded frame takes the score of its nearest sampled frame, so a video of F frames
   always gets exactly F scores whatever the stride.
3. ``smooth_scores`` (optional, off by default): a Gaussian filter over time (truncated at 4 sigma, mirrored edges,
   computed in float64). It trades onset precision for fewer one-frame flickers; use a sigma of about half the
   shortest event you care about, in frames. The frame metrics smooth with this same function.
4. ``threshold_scores``: a frame is anomalous when its score is at least the threshold (default 0.5).
5. ``find_events``: maximal runs of anomalous frames at least ``min_length`` frames long.

``postprocess_scores`` chains 2, 3 and 5. Masks: ``resize_masks`` is the one bilinear resize (logits, probabilities or
training targets), and ``mask_probabilities`` brings the decoder's low-resolution mask logits to anomaly probabilities
at the native frame size.

This file is copied next to saved checkpoints with the pipeline: it imports only numpy, torch and its sibling
``options`` (the argument checks).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from .options import DEFAULT_THRESHOLD, check_smoothing_sigma, check_threshold

SMOOTHING_TRUNCATE = 4.0  # the Gaussian kernel reaches this many sigmas on each side (scipy's default)


@dataclass(frozen=True)
class Event:
    """A maximal run of frames whose score is at least the threshold.

    Attributes:
        start_frame, end_frame: first and last frame of the run (inclusive), as decoded-frame indices.
        start_s, end_s: the run's time span, from the start of its first frame to the end of its last:
            ``start_frame / fps`` to ``(end_frame + 1) / fps`` at a constant frame rate, the frames' own times
            otherwise (``VideoInfo.frame_edges_s``), so ``end_s - start_s`` is the event's duration.
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


# ---------------------------------------------------------------------------------------------------------------------
# Frame scores
# ---------------------------------------------------------------------------------------------------------------------


def frame_probabilities(frame_logits: torch.Tensor) -> torch.Tensor:
    """``[B, T]`` (any shape) object-score logits -> float32 anomaly probabilities in [0, 1], same shape."""
    return torch.sigmoid(frame_logits.detach().float())


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
    """Gaussian smoothing of one video's scores over time.

    The kernel is truncated at ``SMOOTHING_TRUNCATE`` (4) sigmas and normalised; edges are mirrored including the edge
    sample (``d c b a | a b c d``, repeated when the kernel is longer than the video). This is
    ``scipy.ndimage.gaussian_filter1d(scores, sigma, mode="reflect", truncate=4.0)`` in float64, without scipy.

    Args:
        scores: ``[F]`` per-frame scores.
        sigma: standard deviation of the Gaussian in frames; 0 returns the scores unchanged.

    Returns:
        ``float64 [F]``; a constant curve stays constant and probabilities stay in ``[0, 1]``.
    """
    sigma = check_smoothing_sigma(sigma)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if sigma == 0 or scores.size < 2:
        return scores.copy()
    radius = int(SMOOTHING_TRUNCATE * sigma + 0.5)
    if radius == 0:
        return scores.copy()
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(scores, radius, mode="symmetric")  # (F + 2 radius,)
    return np.convolve(padded, kernel, mode="valid")


def threshold_scores(scores: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """``bool [F]``: True where ``scores >= threshold``."""
    check_threshold(threshold)
    return np.asarray(scores) >= threshold


def find_events(scores: np.ndarray, fps: float, threshold: float = DEFAULT_THRESHOLD,
                min_length: int = 1, frame_edges_s: np.ndarray | None = None) -> list[Event]:
    """Maximal runs of frames with ``score >= threshold`` lasting at least ``min_length`` frames.

    Args:
        scores: ``[F]`` per-frame scores.
        fps: frames per second, for the event times.
        threshold: score at or above which a frame is anomalous.
        min_length: shortest run kept, in frames (1 keeps every run).
        frame_edges_s: ``[F + 1]`` frame ``i`` lasts from ``edges[i]`` to ``edges[i + 1]`` seconds (a variable frame
            rate, ``VideoInfo.frame_edges_s()``); None: ``i / fps``.

    Returns:
        The events in time order.
    """
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be positive, got {fps!r}.")
    if min_length < 1:
        raise ValueError(f"min_length must be at least 1 frame, got {min_length}.")
    if frame_edges_s is None:
        times = np.arange(scores.size + 1) / fps
    else:
        times = np.asarray(frame_edges_s, dtype=np.float64).reshape(-1)
        if times.size != scores.size + 1:
            raise ValueError(f"frame_edges_s must hold {scores.size + 1} times (one more than the scores), got "
                             f"{times.size}.")
    above = threshold_scores(scores, threshold).astype(np.int8)
    edges = np.diff(np.concatenate([[0], above, [0]]))  # +1 where a run starts, -1 one past where it ends
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    events = []
    for start, stop in zip(starts.tolist(), stops.tolist()):
        if stop - start < min_length:
            continue
        run = scores[start:stop]
        events.append(Event(start_frame=start, end_frame=stop - 1, start_s=float(times[start]),
                            end_s=float(times[stop]), peak_score=float(run.max()), mean_score=float(run.mean())))
    return events


def postprocess_scores(sampled_indices: np.ndarray, sampled_scores: np.ndarray, num_frames: int, fps: float,
                       threshold: float = DEFAULT_THRESHOLD, min_event_frames: int = 1,
                       smoothing_sigma: float = 0.0, frame_edges_s: np.ndarray | None = None
                       ) -> tuple[np.ndarray, list[Event]]:
    """Steps 2-5: fill the skipped frames, smooth (when ``smoothing_sigma`` > 0), find the events.

    Args:
        sampled_indices, sampled_scores: ``[S]`` the frames the model scored and their probabilities.
        num_frames: ``F``, decoded frames; fps: their rate.
        threshold, min_event_frames: what makes an event (see ``find_events``).
        smoothing_sigma: Gaussian sigma in frames (0: none).
        frame_edges_s: ``[F + 1]`` the frames' time spans for the event times (see ``find_events``).

    Returns:
        ``(scores, events)``: ``float32 [F]`` one score per decoded frame, and the events found on them.
    """
    scores = fill_skipped_frames(sampled_indices, sampled_scores, num_frames)
    if smoothing_sigma:
        scores = smooth_scores(scores, smoothing_sigma).astype(np.float32)
    return scores, find_events(scores, fps, threshold, min_event_frames, frame_edges_s)


# ---------------------------------------------------------------------------------------------------------------------
# Masks
# ---------------------------------------------------------------------------------------------------------------------


def resize_masks(masks: np.ndarray | torch.Tensor, size: tuple[int, int]) -> np.ndarray | torch.Tensor:
    """Bilinear resize of masks to ``size = (height, width)`` (the one mask resize of the package).

    Resize logits or probabilities, never binarised masks: interpolating the continuous values and thresholding
    afterwards keeps smooth boundaries.

    Args:
        masks: ``[..., h, w]`` float (numpy or torch), at least 2-D.
        size: target ``(height, width)``.

    Returns:
        ``float32 [..., H, W]``, numpy for numpy input, torch (on the input's device) for torch input.
    """
    tensor = masks.detach() if isinstance(masks, torch.Tensor) else torch.from_numpy(np.asarray(masks))
    if tensor.ndim < 2:
        raise ValueError(f"masks must be [..., h, w], got {list(tensor.shape)}.")
    height, width = int(size[0]), int(size[1])
    if height < 1 or width < 1:
        raise ValueError(f"size must be a positive (height, width), got {size!r}.")
    flat = tensor.float().reshape(-1, 1, *tensor.shape[-2:])  # (N, 1, h, w)
    resized = torch.nn.functional.interpolate(flat, size=(height, width), mode="bilinear", align_corners=False)
    resized = resized.reshape(*tensor.shape[:-2], height, width)
    return resized if isinstance(masks, torch.Tensor) else resized.numpy()


def mask_probabilities(mask_logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``[..., h, w]`` mask logits -> float32 ``[..., H, W]`` anomaly probabilities at the native frame size.

    SAM2's image processor resizes frames without padding, so a plain bilinear resize maps back."""
    return torch.sigmoid(resize_masks(torch.as_tensor(mask_logits), size))


__all__ = ["DEFAULT_THRESHOLD", "Event", "SMOOTHING_TRUNCATE", "check_smoothing_sigma", "check_threshold",
           "fill_skipped_frames", "find_events", "frame_probabilities", "mask_probabilities", "postprocess_scores",
           "resize_masks", "smooth_scores", "threshold_scores"]
