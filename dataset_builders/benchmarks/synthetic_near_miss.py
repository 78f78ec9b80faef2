"""The near-miss split of the synthetic VAD benchmark: normal objects that share a colour or a shape with a listed name.

In the main split the normal objects are any training compositions. Here every video is built around one held-out
composition, its *pivot* (say "purple hexagon"), and its normal objects are near misses of the pivot: one training
composition of its colour ("purple circle"), one of its shape ("red hexagon"), and up to one more of either kind. In
about half of the videos the pivot itself crosses the scene (the anomaly, as in the main split); in the others the scene
holds both halves of a listed name and never the name itself. The prompt is the main split's (the 16 held-out names),
so the two splits are scored with the same list and compare directly: a frame score or a mask that answers to one
shared word instead of the whole name raises false alarms here.

Rendering is deterministic per (split, index) and uses its own seeds, so video ``i`` of this split is unrelated to video
``i`` of the main split.
"""

from __future__ import annotations

import numpy as np

from ..synthetic_vad import (SyntheticVADConfig, SyntheticVADVideo, assemble_vad_video, crossing_trajectory,
                             split_seed)
from ..synthetic_world import HELD_OUT_COMPOSITIONS, TRAINING_COMPOSITIONS, MovingObject, bouncing_trajectory

NEAR_MISS_BENCHMARK = "synthetic-vad-near-miss"
MIN_NEAR_MISSES = 2  # one object sharing the pivot's colour, one sharing its shape


def near_misses(colour: int, shape: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """The training compositions sharing the colour of ``(colour, shape)`` and those sharing its shape."""
    same_colour = [c for c in TRAINING_COMPOSITIONS if c[0] == colour and c[1] != shape]
    same_shape = [c for c in TRAINING_COMPOSITIONS if c[1] == shape and c[0] != colour]
    return same_colour, same_shape


def render_near_miss_video(index: int, split: str = "test", config: SyntheticVADConfig | None = None,
                           force_anomalous: bool | None = None) -> SyntheticVADVideo:
    """Render video ``index`` of the near-miss ``split`` deterministically (see the module docstring).

    ``config`` gives the frame size, the frame count range, the share of anomalous videos and the most normal objects
    (at least ``MIN_NEAR_MISSES`` are always drawn); one held-out object at most (the pivot) appears.
    """
    config = config or SyntheticVADConfig()
    world = config.world()
    rng = np.random.default_rng([split_seed(f"{NEAR_MISS_BENCHMARK}-{split}"), index])
    frames = int(rng.integers(config.min_frames, config.max_frames + 1))
    anomalous = rng.random() < config.anomalous_share if force_anomalous is None else force_anomalous
    pivot = HELD_OUT_COMPOSITIONS[int(rng.integers(len(HELD_OUT_COMPOSITIONS)))]
    same_colour, same_shape = near_misses(*pivot)
    chosen = [same_colour[int(rng.integers(len(same_colour)))], same_shape[int(rng.integers(len(same_shape)))]]
    count = max(MIN_NEAR_MISSES, int(rng.integers(config.min_normal_objects, config.max_normal_objects + 1)))
    rest = [c for c in same_colour + same_shape if c not in chosen]
    chosen += [rest[int(k)] for k in rng.choice(len(rest), size=count - len(chosen), replace=False)]

    def new_side() -> float:
        return rng.uniform(world.min_object_size, world.max_object_size) * world.scale

    objects = []
    for colour, shape in chosen:
        side = new_side()
        objects.append(MovingObject(colour, shape, side, bouncing_trajectory(rng, frames, world.size, side,
                                                                             world.max_speed * world.scale)))
    if anomalous:
        side = new_side()
        objects.append(MovingObject(*pivot, side, crossing_trajectory(rng, frames, world.size, side)))
    return assemble_vad_video(f"{NEAR_MISS_BENCHMARK}-{split}-{index:04d}", rng, config, objects, len(chosen))

__all__ = ["MIN_NEAR_MISSES", "NEAR_MISS_BENCHMARK", "near_misses", "render_near_miss_video"]
