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
6. ``name_events`` (a model that scores each anomaly name, ``frame_score="name_grounding"``): each event names the
   anomaly that drove it, the listed name with the highest probability at any sampled frame the event's frames take
   their scores from (``nearest_samples``), with every name's peak probability there. The frame score is the largest
   name probability, so the named anomaly is the one that reached the event's raw peak. ``rank_names`` orders one
   event's per-name scores; ``lavida watch`` names its live events with it too.

``postprocess_scores`` chains 2, 3 and 5. Masks: ``resize_masks`` is the one bilinear resize (logits, probabilities or
training targets), and ``mask_probabilities`` brings the decoder's low-resolution mask logits to anomaly probabilities
at the native frame size.

This file is copied next to saved checkpoints with the pipeline: it imports only numpy, torch and its sibling
``options`` (the argument checks).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace

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
        anomaly: the listed name that drove the event (``name_events``); None when the model does not score each
            name (``frame_score="object_score"``).
        name_scores: every listed name's peak probability over the event, best first (None with ``anomaly``).
    """

    start_frame: int
    end_frame: int
    start_s: float
    end_s: float
    peak_score: float
    mean_score: float
    anomaly: str | None = None
    name_scores: Mapping[str, float] | None = field(default=None, hash=False)  # a dict: left out of the hash

    @property
    def num_frames(self) -> int:
        return self.end_frame - self.start_frame + 1

    def to_dict(self, decimals: int | None = None) -> dict[str, int | float | str | dict | None]:
        """``{"start_frame", "end_frame", "start_s", "end_s", "peak_score", "mean_score", "anomaly",
        "name_scores"}``, floats (the name scores too) rounded to ``decimals`` when given."""

        def number(value):
            return round(value, decimals) if decimals is not None and isinstance(value, float) else value

        content = {spec.name: number(getattr(self, spec.name)) for spec in fields(self)}
        if self.name_scores is not None:
            content["name_scores"] = {name: number(float(score)) for name, score in self.name_scores.items()}
        return content


# ---------------------------------------------------------------------------------------------------------------------
# Frame scores
# ---------------------------------------------------------------------------------------------------------------------


def frame_probabilities(frame_logits: torch.Tensor) -> torch.Tensor:
    """``[B, T]`` (any shape) object-score logits -> float32 anomaly probabilities in [0, 1], same shape."""
    return torch.sigmoid(frame_logits.detach().float())


def nearest_samples(sampled_indices: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """The row of each frame's nearest sampled frame: the sampled frame whose score it takes.

    Args:
        sampled_indices: ``[S]`` strictly increasing decoded-frame indices the model scored (S >= 1).
        frames: ``[K]`` decoded-frame indices.

    Returns:
        ``int64 [K]`` rows into ``sampled_indices``. A frame halfway between two sampled frames takes the earlier
        one; frames before the first or after the last sampled frame take that one.
    """
    indices = np.asarray(sampled_indices, dtype=np.int64).reshape(-1)
    frames = np.asarray(frames, dtype=np.int64).reshape(-1)
    right = np.clip(np.searchsorted(indices, frames), 0, indices.size - 1)  # first sample at or after the frame
    left = np.clip(right - 1, 0, indices.size - 1)
    use_left = np.abs(frames - indices[left]) <= np.abs(indices[right] - frames)
    return np.where(use_left, left, right)


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
    return scores[nearest_samples(indices, np.arange(num_frames))]


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
# Event names
# ---------------------------------------------------------------------------------------------------------------------


def rank_names(name_scores: np.ndarray, names: Sequence[str], limit: int | None = None) -> dict[str, float]:
    """One event's per-name scores as ``{name: score}``, best first (ties in the order the names were listed).

    Args:
        name_scores: ``[N]`` a score per listed name (extra entries beyond ``names`` are ignored).
        names: the listed anomaly names.
        limit: keep only the best ``limit`` names (None: all).

    Returns:
        The ranked names; its first key is the event's anomaly. Empty when there are no scores.
    """
    scores = np.asarray(name_scores, dtype=np.float32).reshape(-1)[: len(names)]
    order = np.argsort(-scores, kind="stable")[:limit]
    return {names[int(row)]: float(scores[int(row)]) for row in order}


def name_events(events: Sequence[Event], sampled_indices: np.ndarray, name_probabilities: np.ndarray,
                names: Sequence[str]) -> list[Event]:
    """Name each event after the anomaly that drove it (step 6 of the module docstring).

    An event's name scores are each name's peak probability over the sampled frames whose scores its frames carry
    (``nearest_samples`` of its first and last frame and every sampled frame between), so they follow the same
    filling as the scores; ``anomaly`` is the best of them (``rank_names``).

    Args:
        events: events found on the video's filled (and smoothed) scores.
        sampled_indices: ``[S]`` the decoded-frame indices the model scored, increasing.
        name_probabilities: ``float [S, N]`` each listed name's probability at each sampled frame.
        names: the ``N`` listed anomaly names.

    Returns:
        The events with ``anomaly`` and ``name_scores`` set (frames, times and scores unchanged).
    """
    probabilities = np.asarray(name_probabilities, dtype=np.float32)
    indices = np.asarray(sampled_indices, dtype=np.int64).reshape(-1)
    if probabilities.ndim != 2 or len(probabilities) != indices.size:
        raise ValueError(f"name_probabilities must be [S={indices.size}, N], got {list(probabilities.shape)}.")
    named = []
    for event in events:
        first, last = nearest_samples(indices, [event.start_frame, event.end_frame]).tolist()
        ranked = rank_names(probabilities[first:last + 1].max(axis=0), names)
        named.append(replace(event, anomaly=next(iter(ranked), None), name_scores=ranked or None))
    return named


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
           "fill_skipped_frames", "find_events", "frame_probabilities", "mask_probabilities", "name_events",
           "nearest_samples", "postprocess_scores", "rank_names", "resize_masks", "smooth_scores", "threshold_scores"]
