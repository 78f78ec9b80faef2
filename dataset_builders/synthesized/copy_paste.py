"""Copy-paste pseudo-anomalies: an object cut with its mask moves through a normal clip.

The object is resized to a random size relative to the frame, follows a smooth random trajectory (cubic Bezier path,
gradual scale change) and is blended in with feathered edges. Its mask on each frame is the pasted region, so the
frame label is 1 exactly where the object is visible.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .blending import Cutout, carry
from .trajectories import TrajectoryConfig, random_trajectory


@dataclass
class PasteConfig:
    """How a pasted object is placed (also used for the inpainted patch).

    Attributes:
        min_size, max_size: the object's longer side on its first frame, as a fraction of the frame's shorter side.
        feather: edge softness as a fraction of the object's shorter side (0 = hard edges).
        trajectory: path and scale-change limits.
    """

    min_size: float = 0.15
    max_size: float = 0.4
    feather: float = 0.04
    trajectory: TrajectoryConfig = field(default_factory=TrajectoryConfig)

    def __post_init__(self) -> None:
        if isinstance(self.trajectory, dict):
            self.trajectory = TrajectoryConfig(**self.trajectory)
        if not 0 < self.min_size <= self.max_size <= 1:
            raise ValueError(f"need 0 < min_size <= max_size <= 1, got {self.min_size}, {self.max_size}.")
        if not 0 <= self.feather < 0.5:
            raise ValueError(f"feather must be in [0, 0.5), got {self.feather}.")

    def object_size(self, rng: np.random.Generator, aspect: float, frame_size: tuple[int, int]) -> tuple[float, float]:
        """A random ``(height, width)`` in pixels for an object of ``aspect`` = height / width."""
        longest = rng.uniform(self.min_size, self.max_size) * min(frame_size)
        if aspect >= 1:
            return longest, longest / aspect
        return longest * aspect, longest


def copy_paste(frames: np.ndarray, cutout: Cutout, frame_indices: list[int], rng: np.random.Generator,
               config: PasteConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Paste ``cutout`` into ``frames`` on ``frame_indices`` along a random smooth trajectory.

    Args:
        frames: ``uint8 [T, H, W, 3]`` normal frames (not modified).
        cutout: the object and its mask.
        frame_indices: consecutive frames showing the object (see ``trajectories.visible_frames``).
        rng: randomness for the size and the path.
        config: placement knobs.

    Returns:
        frames ``uint8 [T, H, W, 3]`` and masks ``bool [T, H, W]`` (the pasted region; empty on other frames).
    """
    config = config or PasteConfig()
    frame_size = frames.shape[1:3]
    size = config.object_size(rng, cutout.mask.shape[0] / cutout.mask.shape[1], frame_size)
    trajectory = random_trajectory(rng, len(frame_indices), frame_size, size, config.trajectory)
    return carry(frames, cutout, size, trajectory, frame_indices, config.feather)


__all__ = ["PasteConfig", "copy_paste"]
