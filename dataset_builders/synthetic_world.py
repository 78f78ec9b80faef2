"""The synthetic world: coloured shapes moving over low-saturation textures (an offline pseudo-anomaly source).

Fixed by specification:

- colours (RGB), in order: red (220,40,40), green (40,180,60), blue (40,80,220), yellow (235,215,40),
  purple (150,60,190), orange (245,140,30), white (245,245,245), black (20,20,20);
- shapes, in order: circle, square, triangle, star, hexagon, cross, ring, diamond, all filled (ring = annulus), with a
  bounding-box side of 16-56 px at 256x256 (scaled with the frame size);
- an object is named "<colour> <shape>"; composition (colour i, shape j) is **held out** iff ``(i + j) % 4 == 0``
  (16 of 64). Training output never contains a held-out composition, as target or as distractor;
- backgrounds are low-saturation procedural textures (smooth noise, gradients, stripes) with a small global jitter
  per frame; 1-4 objects per clip move at 0-6 px/frame (at 256 px), bounce at the borders and occlude each other;
- clips of 8 frames at 256x256 by default.

Rendering is numpy + PIL (shape masks are drawn by PIL's C rasteriser), a few milliseconds per frame, so trainers can
render clips on the fly.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

from .source_item import SourceItem, SourceObject

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 215, 40),
    "purple": (150, 60, 190),
    "orange": (245, 140, 30),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "hexagon", "cross", "ring", "diamond")
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)
REFERENCE_SIZE = 256  # sizes and speeds of the specification are given at this frame size


def composition_name(colour_index: int, shape_index: int) -> str:
    return f"{COLOUR_NAMES[colour_index]} {SHAPES[shape_index]}"


def is_held_out(colour_index: int, shape_index: int) -> bool:
    """The zero-shot rule: (colour i, shape j) is held out iff (i + j) % 4 == 0."""
    return (colour_index + shape_index) % 4 == 0


ALL_COMPOSITIONS: tuple[tuple[int, int], ...] = tuple((i, j) for i in range(len(COLOURS)) for j in range(len(SHAPES)))
TRAINING_COMPOSITIONS: tuple[tuple[int, int], ...] = tuple(c for c in ALL_COMPOSITIONS if not is_held_out(*c))
HELD_OUT_COMPOSITIONS: tuple[tuple[int, int], ...] = tuple(c for c in ALL_COMPOSITIONS if is_held_out(*c))
TRAINING_NAMES: tuple[str, ...] = tuple(composition_name(*c) for c in TRAINING_COMPOSITIONS)
HELD_OUT_NAMES: tuple[str, ...] = tuple(composition_name(*c) for c in HELD_OUT_COMPOSITIONS)


@dataclass
class SyntheticWorldConfig:
    """Knobs of the synthetic world (defaults = the specification).

    Attributes:
        size: frame side in pixels; object sizes and speeds scale with ``size / 256``.
        clip_length: frames per clip.
        min_objects, max_objects: objects per clip.
        min_object_size, max_object_size: bounding-box side at 256 px.
        max_speed: pixels per frame at 256 px.
        jitter: global background jitter (pixels of shift, at 256 px).
        compositions: ``"training"``, ``"held_out"`` or ``"all"``: which compositions objects may take.
    """

    size: int = 256
    clip_length: int = 8
    min_objects: int = 1
    max_objects: int = 4
    min_object_size: int = 16
    max_object_size: int = 56
    max_speed: float = 6.0
    jitter: float = 1.5
    compositions: str = "training"

    def __post_init__(self) -> None:
        if self.compositions not in ("training", "held_out", "all"):
            raise ValueError(f"compositions must be 'training', 'held_out' or 'all', got {self.compositions!r}.")
        if not 1 <= self.min_objects <= self.max_objects:
            raise ValueError(f"need 1 <= min_objects <= max_objects, got {self.min_objects}, {self.max_objects}.")
        if self.size < 32 or self.clip_length < 1:
            raise ValueError(f"size must be >= 32 and clip_length >= 1, got {self.size}, {self.clip_length}.")

    @property
    def scale(self) -> float:
        return self.size / REFERENCE_SIZE

    def allowed_compositions(self) -> tuple[tuple[int, int], ...]:
        return {"training": TRAINING_COMPOSITIONS, "held_out": HELD_OUT_COMPOSITIONS,
                "all": ALL_COMPOSITIONS}[self.compositions]


# ----------------------------------------------------------------------------------------------------------- shapes
def _polygon(sides: int, radius: float, rotation: float = -math.pi / 2) -> list[tuple[float, float]]:
    return [(radius * math.cos(rotation + 2 * math.pi * k / sides), radius * math.sin(rotation + 2 * math.pi * k / sides))
            for k in range(sides)]


def _star(radius: float) -> list[tuple[float, float]]:
    points = []
    for k in range(10):
        r = radius if k % 2 == 0 else radius * 0.45
        angle = -math.pi / 2 + math.pi * k / 5
        points.append((r * math.cos(angle), r * math.sin(angle)))
    return points


def _cross(half: float) -> list[tuple[float, float]]:
    arm = half / 3
    return [(-arm, -half), (arm, -half), (arm, -arm), (half, -arm), (half, arm), (arm, arm), (arm, half),
            (-arm, half), (-arm, arm), (-half, arm), (-half, -arm), (-arm, -arm)]


def draw_shape_mask(shape: str, centre: tuple[float, float], side: float, size: int) -> np.ndarray:
    """``bool [size, size]`` mask of a filled ``shape`` whose bounding box has side ``side``, centred at ``centre``."""
    image = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(image)
    cx, cy = centre
    half = side / 2
    box = (cx - half, cy - half, cx + half, cy + half)
    if shape == "circle":
        draw.ellipse(box, fill=255)
    elif shape == "square":
        draw.rectangle(box, fill=255)
    elif shape == "ring":
        draw.ellipse(box, fill=255)
        inner = half * 0.5
        draw.ellipse((cx - inner, cy - inner, cx + inner, cy + inner), fill=0)
    else:
        if shape == "triangle":
            local = [(0.0, -half), (half, half), (-half, half)]
        elif shape == "star":
            local = _star(half)
        elif shape == "hexagon":
            local = _polygon(6, half, rotation=0.0)
        elif shape == "cross":
            local = _cross(half)
        elif shape == "diamond":
            local = [(0.0, -half), (half * 0.75, 0.0), (0.0, half), (-half * 0.75, 0.0)]
        else:
            raise ValueError(f"Unknown shape {shape!r}; known: {SHAPES}.")
        draw.polygon([(cx + x, cy + y) for x, y in local], fill=255)
    return np.asarray(image) > 127


# ----------------------------------------------------------------------------------------------------------- scenes
def render_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """``float32 [size, size, 3]`` low-saturation texture: smooth noise, a gradient or stripes."""
    kind = rng.integers(3)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    if kind == 0:  # smooth noise: a coarse random grid upsampled
        cells = int(rng.integers(3, 9))
        coarse = rng.uniform(0, 1, size=(cells, cells)).astype(np.float32)
        gray = np.asarray(Image.fromarray((coarse * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC),
                          dtype=np.float32) / 255
    elif kind == 1:  # linear gradient at a random angle
        angle = rng.uniform(0, 2 * math.pi)
        gray = (np.cos(angle) * xx + np.sin(angle) * yy)
        gray = (gray - gray.min()) / max(float(np.ptp(gray)), 1e-6)
    else:  # stripes
        angle = rng.uniform(0, math.pi)
        frequency = rng.uniform(3, 12)
        gray = 0.5 + 0.5 * np.sin(2 * math.pi * frequency * (np.cos(angle) * xx + np.sin(angle) * yy))
    low, high = sorted(rng.uniform(70, 190, size=2))
    high = max(high, low + 25)
    gray = low + (high - low) * gray
    tint = 1.0 + rng.uniform(-0.08, 0.08, size=3).astype(np.float32)  # low saturation
    return np.clip(gray[..., None] * tint[None, None, :], 0, 255).astype(np.float32)


@dataclass
class MovingObject:
    """One object of a clip: composition, size, and its trajectory (positions per frame)."""

    colour_index: int
    shape_index: int
    side: float
    positions: np.ndarray  # (T, 2) centre x, y per frame

    @property
    def name(self) -> str:
        return composition_name(self.colour_index, self.shape_index)

    @property
    def colour(self) -> tuple[int, int, int]:
        return COLOURS[COLOUR_NAMES[self.colour_index]]

    @property
    def shape(self) -> str:
        return SHAPES[self.shape_index]


def bouncing_trajectory(rng: np.random.Generator, frames: int, size: int, side: float, max_speed: float,
                        start: tuple[float, float] | None = None, velocity: tuple[float, float] | None = None
                        ) -> np.ndarray:
    """``(frames, 2)`` centres moving at constant speed, reflected at the borders (the whole shape stays inside)."""
    half = side / 2
    low, high = half, size - half
    position = np.array(start if start is not None else rng.uniform(low, high, size=2), dtype=np.float64)
    if velocity is None:
        speed = rng.uniform(0, max_speed)
        angle = rng.uniform(0, 2 * math.pi)
        velocity = (speed * math.cos(angle), speed * math.sin(angle))
    step = np.array(velocity, dtype=np.float64)
    out = np.zeros((frames, 2))
    for t in range(frames):  # a handful of frames: a loop over time, not pixels
        out[t] = position
        position = position + step
        for axis in range(2):
            if position[axis] < low:
                position[axis] = 2 * low - position[axis]
                step[axis] = -step[axis]
            elif position[axis] > high:
                position[axis] = 2 * high - position[axis]
                step[axis] = -step[axis]
    return out


def render_frames(background: np.ndarray, objects: list[MovingObject], rng: np.random.Generator,
                  jitter: float, frame_indices: range | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Render frames and each object's *visible* mask (later objects occlude earlier ones).

    Returns:
        frames ``uint8 [T, H, W, 3]`` and masks ``bool [K, T, H, W]`` for the K objects.
    """
    size = background.shape[0]
    count = len(objects[0].positions) if objects else 1
    indices = list(frame_indices) if frame_indices is not None else list(range(count))
    frames = np.zeros((len(indices), size, size, 3), dtype=np.uint8)
    masks = np.zeros((len(objects), len(indices), size, size), dtype=bool)
    for out_t, t in enumerate(indices):
        shift = np.round(rng.uniform(-jitter, jitter, size=2)).astype(int)
        frame = np.roll(background, shift=tuple(shift), axis=(0, 1)) + rng.normal(0, 2.0)
        covered = np.zeros((size, size), dtype=bool)
        shape_masks = [draw_shape_mask(o.shape, tuple(o.positions[t]), o.side, size) for o in objects]
        for k in range(len(objects) - 1, -1, -1):  # top-most object first: it hides those below
            visible = shape_masks[k] & ~covered
            masks[k, out_t] = visible
            covered |= shape_masks[k]
        for k, obj in enumerate(objects):
            frame[masks[k, out_t]] = obj.colour
        frames[out_t] = np.clip(frame, 0, 255).astype(np.uint8)
    return frames, masks


def random_objects(rng: np.random.Generator, config: SyntheticWorldConfig, count: int,
                   compositions: tuple[tuple[int, int], ...], frames: int | None = None) -> list[MovingObject]:
    """``count`` objects of distinct compositions drawn from ``compositions``."""
    frames = frames or config.clip_length
    chosen = rng.choice(len(compositions), size=min(count, len(compositions)), replace=False)
    objects = []
    for index in chosen:
        colour, shape = compositions[int(index)]
        side = rng.uniform(config.min_object_size, config.max_object_size) * config.scale
        positions = bouncing_trajectory(rng, frames, config.size, side, config.max_speed * config.scale)
        objects.append(MovingObject(colour, shape, side, positions))
    return objects


@dataclass
class SyntheticClip:
    """A rendered clip: frames ``uint8 [T, H, W, 3]``, visible masks ``bool [K, T, H, W]``, object names."""

    frames: np.ndarray
    masks: np.ndarray
    names: list[str]
    objects: list[MovingObject] = field(default_factory=list)


class SyntheticWorld:
    """Renders clips of the synthetic world, deterministically from a seed."""

    def __init__(self, config: SyntheticWorldConfig | None = None):
        self.config = config or SyntheticWorldConfig()

    def render_clip(self, rng: np.random.Generator) -> SyntheticClip:
        config = self.config
        count = int(rng.integers(config.min_objects, config.max_objects + 1))
        objects = random_objects(rng, config, count, config.allowed_compositions())
        background = render_background(rng, config.size)
        frames, masks = render_frames(background, objects, rng, config.jitter * config.scale)
        return SyntheticClip(frames, masks, [o.name for o in objects], objects)

    def source_item(self, index: int, seed: int) -> SourceItem:
        """Clip ``index`` of the stream with ``seed`` as a ``SourceItem`` (one object per composition name)."""
        rng = np.random.default_rng([seed, index])
        clip = self.render_clip(rng)
        objects = [SourceObject(names=[name], masks=clip.masks[k]) for k, name in enumerate(clip.names)]
        return SourceItem(item_id=f"synthetic-{seed}-{index}", source="synthetic", load_frames=lambda: clip.frames,
                          objects=objects, present_names=set(clip.names), group_size=(1, 2))

    def iter_items(self, count: int, seed: int) -> Iterator[SourceItem]:
        for index in range(count):
            yield self.source_item(index, seed)

    def name_pool(self) -> list[str]:
        """Distractor pool: the names of the allowed compositions (training ones never include held-out names)."""
        return [composition_name(*c) for c in self.config.allowed_compositions()]




def related_names(present: set[str], pool: list[str] | tuple[str, ...]) -> list[str]:
    """Hard negatives: names of ``pool`` sharing a colour or a shape with a present object (and not present)."""
    colours = {name.split(" ", 1)[0] for name in present}
    shapes = {name.split(" ", 1)[1] for name in present if " " in name}
    return [name for name in pool if name not in present
            and (name.split(" ", 1)[0] in colours or name.split(" ", 1)[-1] in shapes)]

__all__ = ["ALL_COMPOSITIONS", "COLOURS", "COLOUR_NAMES", "HELD_OUT_COMPOSITIONS", "HELD_OUT_NAMES", "MovingObject",
           "SHAPES", "SyntheticClip", "SyntheticWorld", "SyntheticWorldConfig", "TRAINING_COMPOSITIONS",
           "TRAINING_NAMES", "bouncing_trajectory", "composition_name", "draw_shape_mask", "is_held_out",
           "random_objects", "related_names", "render_background", "render_frames"]
