"""Smooth paths for a pasted object: a random cubic Bezier curve for the centre and a smooth scale change.

A pasted object must move like something filmed, not jump: its centre follows a cubic Bezier curve whose four control
points lie inside a safe box, so the whole path does too (a Bezier curve stays in the convex hull of its control
points). Its size changes smoothly from a start scale to an end scale (geometric interpolation with a smoothstep
easing), as when an object approaches or moves away from the camera.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class TrajectoryConfig:
    """Knobs of a random trajectory.

    Attributes:
        max_travel: largest offset of a control point from the start point, as a fraction of the frame's shorter
            side (how far the object may travel over the clip).
        max_scale_change: the end scale is the start scale times a factor drawn log-uniformly in
            ``[1 / max_scale_change, max_scale_change]``.
        margin: fraction of the object's half size that must stay inside the frame (1 = wholly inside).
    """

    max_travel: float = 0.35
    max_scale_change: float = 1.5
    margin: float = 1.0

    def __post_init__(self) -> None:
        if self.max_travel < 0:
            raise ValueError(f"max_travel must be >= 0, got {self.max_travel}.")
        if self.max_scale_change < 1:
            raise ValueError(f"max_scale_change must be >= 1, got {self.max_scale_change}.")
        if not 0 <= self.margin <= 1:
            raise ValueError(f"margin must be in [0, 1], got {self.margin}.")


@dataclass
class Trajectory:
    """Where the object is on each frame it is shown.

    Attributes:
        centres: ``float64 [K, 2]``, the object's centre (x, y) in pixels on each of the K frames.
        scales: ``float64 [K]``, the object's size factor on each frame (1 = its size on the first frame).
    """

    centres: np.ndarray
    scales: np.ndarray

    def __len__(self) -> int:
        return len(self.centres)


def cubic_bezier(control: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Points of the cubic Bezier curve with ``control`` points ``float [4, 2]`` at parameters ``steps`` ``[K]``.

    Returns:
        ``float64 [K, 2]``.
    """
    t = np.asarray(steps, dtype=np.float64)[:, None]  # (K, 1)
    p0, p1, p2, p3 = np.asarray(control, dtype=np.float64)
    return (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t ** 2 * p2 + t ** 3 * p3


def smoothstep(steps: np.ndarray) -> np.ndarray:
    """``3t^2 - 2t^3``: starts and ends with zero speed, so scale changes ease in and out."""
    t = np.clip(np.asarray(steps, dtype=np.float64), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def random_trajectory(rng: np.random.Generator, num_frames: int, frame_size: tuple[int, int],
                      object_size: tuple[float, float], config: TrajectoryConfig | None = None,
                      start: tuple[float, float] | None = None) -> Trajectory:
    """A random smooth path for an object over ``num_frames`` frames.

    Args:
        rng: the source of randomness (seed it per item for reproducible builds).
        num_frames: K, frames the object is shown on (>= 1).
        frame_size: ``(height, width)`` of the frames.
        object_size: ``(height, width)`` of the object at scale 1 (its size on the first frame).
        config: travel and scale limits.
        start: the centre on the first frame (default: drawn inside the safe box).

    Returns:
        a ``Trajectory`` whose centres keep the object (at its largest scale) inside the frame up to ``margin``.
    """
    config = config or TrajectoryConfig()
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}.")
    height, width = frame_size
    factor = math.exp(rng.uniform(-1.0, 1.0) * math.log(config.max_scale_change))
    steps = np.linspace(0.0, 1.0, num_frames) if num_frames > 1 else np.zeros(1)
    scales = np.exp(smoothstep(steps) * math.log(factor))  # (K,), 1 -> factor
    largest = max(1.0, float(scales.max()))
    # the safe box for the centre: half the (largest) object inside the frame, times the margin
    half_h = min(object_size[0] * largest / 2 * config.margin, height / 2)
    half_w = min(object_size[1] * largest / 2 * config.margin, width / 2)
    low = np.array([half_w, half_h])
    high = np.array([width - half_w, height - half_h])
    p0 = np.asarray(start, dtype=np.float64) if start is not None else rng.uniform(low, high)
    travel = config.max_travel * min(height, width)
    offsets = rng.uniform(-travel, travel, size=(3, 2))  # three more control points around the start
    control = np.clip(np.vstack([p0[None], p0[None] + offsets]), low, high)
    control[0] = p0  # a given start is kept even if it lies outside the safe box
    return Trajectory(centres=cubic_bezier(control, steps), scales=scales)


def visible_frames(rng: np.random.Generator, num_frames: int, min_fraction: float) -> list[int]:
    """A random run of consecutive frames the object is shown on, at least ``ceil(min_fraction * T)`` long.

    Objects that enter late or leave early give clips whose frame labels are not all 1, as in real footage.
    """
    if not 0 < min_fraction <= 1:
        raise ValueError(f"min_fraction must be in (0, 1], got {min_fraction}.")
    shortest = max(1, math.ceil(min_fraction * num_frames))
    length = int(rng.integers(shortest, num_frames + 1))
    start = int(rng.integers(0, num_frames - length + 1))
    return list(range(start, start + length))


__all__ = ["Trajectory", "TrajectoryConfig", "cubic_bezier", "random_trajectory", "smoothstep", "visible_frames"]
