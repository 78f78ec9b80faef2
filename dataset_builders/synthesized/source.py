"""``SynthesizedSource``: normal clips with a synthesised object, as a source of the Anomaly Exposure Sampler.

Item ``i`` takes normal clip ``i // items_per_clip``, an object of the bank, a run of consecutive frames showing it,
and pastes it (copy-paste) or paints it (inpaint) along a smooth trajectory. Items are lazy: nothing is decoded or
synthesised until the sampler asks for the frames or the masks, and the last few results are kept so the two requests
cost one synthesis. Everything is derived from ``(seed, i)``, so builds are reproducible.

The object is the only thing the source knows to be in the clip: distractors are drawn from the object pool minus the
object's names and ``normal_present_names`` (list there what the normal videos show, e.g. "person" for street
scenes, so it is never used as a distractor).
"""

from __future__ import annotations

import argparse
import logging
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field, fields, replace
from functools import partial
from pathlib import Path

import numpy as np

from lavida.errors import UserInputError

from ..source_item import SourceItem, SourceObject
from .copy_paste import PasteConfig, copy_paste
from .inpaint import DEFAULT_INPAINT_MODEL, InpaintConfig, Inpainter, inpaint
from .normal_clips import NormalClip, find_normal_videos, normal_clips
from .objects import ObjectBank, resolve_objects
from .trajectories import visible_frames

logger = logging.getLogger(__name__)

METHODS: tuple[str, ...] = ("copy-paste", "inpaint")
SOURCE_NAME = "synthesized"
_CACHED_RESULTS = 4  # the sampler reads frames then masks of one item; a few results cover that


@dataclass
class SynthesisConfig:
    """Every knob of a synthesised source (YAML: the same keys, ``paste`` and ``inpaint`` as mappings).

    Attributes:
        method: ``"copy-paste"`` or ``"inpaint"``.
        clip_length: frames per clip (T).
        frame_stride: take every ``frame_stride``-th frame of the normal videos.
        max_clips_per_video: at most this many evenly spaced clips per normal video (``None``: all).
        items_per_clip: synthesised items per normal clip (each with another object and path).
        min_visible_fraction: the object shows on a run of at least this share of the clip's frames.
        max_names: size bound of the sampler's name list.
        normal_present_names: names of what the normal videos show; never used as distractors.
        paste: size, feathering and trajectory of the object.
        inpaint: the inpainting pipeline's knobs (method ``inpaint``).
    """

    method: str = "copy-paste"
    clip_length: int = 8
    frame_stride: int = 1
    max_clips_per_video: int | None = 16
    items_per_clip: int = 1
    min_visible_fraction: float = 0.5
    max_names: int = 30
    normal_present_names: list[str] = field(default_factory=list)
    paste: PasteConfig = field(default_factory=PasteConfig)
    inpaint: InpaintConfig = field(default_factory=InpaintConfig)

    def __post_init__(self) -> None:
        if isinstance(self.paste, dict):
            self.paste = PasteConfig(**self.paste)
        if isinstance(self.inpaint, dict):
            self.inpaint = InpaintConfig(**self.inpaint)
        if self.method not in METHODS:
            raise UserInputError(f"--method {self.method!r} is unknown: use one of {', '.join(METHODS)}.")
        if self.clip_length < 1 or self.frame_stride < 1 or self.items_per_clip < 1:
            raise ValueError("clip_length, frame_stride and items_per_clip must be >= 1, got "
                             f"{self.clip_length}, {self.frame_stride}, {self.items_per_clip}.")
        if not 0 < self.min_visible_fraction <= 1:
            raise ValueError(f"min_visible_fraction must be in (0, 1], got {self.min_visible_fraction}.")
        if self.max_names < 2:
            raise ValueError(f"max_names must be >= 2, got {self.max_names}.")


def load_synthesis_config(path: str | Path) -> SynthesisConfig:
    """A ``SynthesisConfig`` from a YAML file of its fields.

    Raises:
        UserInputError: a missing file, or a key that is not a field.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"--synthesis-config {path} does not exist.")
    values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    known = {f.name for f in fields(SynthesisConfig)}
    unknown = sorted(set(values) - known) if isinstance(values, dict) else ["<not a mapping>"]
    if unknown:
        raise UserInputError(f"--synthesis-config {path}: unknown keys {unknown}; known keys: {sorted(known)}.")
    try:
        return SynthesisConfig(**values)
    except (TypeError, ValueError) as error:
        raise UserInputError(f"--synthesis-config {path}: {error}") from error


@dataclass
class SynthesisResult:
    """One synthesised item.

    Attributes:
        item_id: ``<video id>@<first frame>/<k>`` (see ``SynthesizedSource.item_id``).
        names: the object's names.
        original: ``uint8 [T, H, W, 3]``, the normal clip; frames: the same with the object.
        masks: ``bool [T, H, W]``, the object's region (empty on frames without it).
    """

    item_id: str
    names: list[str]
    original: np.ndarray
    frames: np.ndarray
    masks: np.ndarray


class _LazyObject(SourceObject):
    """A ``SourceObject`` whose masks are synthesised on first access (together with the frames)."""

    def __init__(self, names: list[str], source: SynthesizedSource, index: int):  # noqa: D107 - no dataclass init
        self.names = names
        self._source = source
        self._index = index

    @property
    def masks(self) -> np.ndarray:  # bool [T, H, W]
        return self._source.synthesize(self._index).masks


class SynthesizedSource:
    """Reader interface (``name``, ``max_names``, ``is_video``, ``name_pool()``, ``iter_items()``) over synthesised
    pseudo-anomalies.

    Args:
        clips: the normal clips.
        objects: the object bank (cut-outs for copy-paste, names for inpainting).
        config: method and knobs.
        seed: the synthesis seed (objects, paths, generator seeds).
        inpainter: the inpainting pipeline wrapper (method ``inpaint``; built from ``config.inpaint`` if omitted).
    """

    name = SOURCE_NAME
    is_video = True

    def __init__(self, clips: list[NormalClip], objects: ObjectBank, config: SynthesisConfig | None = None,
                 seed: int = 0, inpainter: Inpainter | None = None):
        self.config = config or SynthesisConfig()
        if not clips:
            raise UserInputError("No normal clip to synthesise into: check --normal-videos.")
        if self.config.method == "copy-paste" and not objects.has_appearance:
            objects.cutout(0, np.random.default_rng(0))  # raises the user-facing explanation
        self.clips = clips
        self.objects = objects
        self.seed = seed
        self.inpainter = inpainter
        if self.config.method == "inpaint" and self.inpainter is None:
            self.inpainter = Inpainter(self.config.inpaint)
        self._recent: OrderedDict[int, SynthesisResult] = OrderedDict()

    @property
    def max_names(self) -> int:
        return self.config.max_names

    def __len__(self) -> int:
        return len(self.clips) * self.config.items_per_clip

    def name_pool(self) -> list[str]:
        return self.objects.name_pool()

    def object_index(self, index: int) -> int:
        """Which object of the bank item ``index`` shows (cheap: the lazy item needs its names up front)."""
        return int(np.random.default_rng([self.seed, index, 0]).integers(len(self.objects)))

    def item_id(self, index: int) -> str:
        """``<video id>@<first frame>/<k>``: the k-th synthesised item of that normal clip."""
        per_clip = self.config.items_per_clip
        return f"{self.clips[index // per_clip].clip_id}/{index % per_clip}"

    def synthesize(self, index: int) -> SynthesisResult:
        """Item ``index``: the normal clip, the synthesised frames and the object's masks (cached for a few items)."""
        if index in self._recent:
            self._recent.move_to_end(index)
            return self._recent[index]
        if not 0 <= index < len(self):
            raise IndexError(f"item {index} out of range for {len(self)} items")
        config = self.config
        clip = self.clips[index // config.items_per_clip]
        original = clip.load()  # (T, H, W, 3)
        rng = np.random.default_rng([self.seed, index, 1])
        shown = visible_frames(rng, len(original), config.min_visible_fraction)
        obj = self.object_index(index)
        names = self.objects.names(obj)
        if config.method == "copy-paste":
            cutout = self.objects.cutout(obj, rng)
            frames, masks = copy_paste(original, cutout, shown, rng, config.paste)
        else:
            frames, masks = inpaint(original, names[0], shown, rng, self.inpainter, config.paste)
        result = SynthesisResult(item_id=self.item_id(index), names=names, original=original, frames=frames,
                                 masks=masks)
        self._recent[index] = result
        while len(self._recent) > _CACHED_RESULTS:
            self._recent.popitem(last=False)
        return result

    def _frames(self, index: int) -> np.ndarray:
        return self.synthesize(index).frames

    def item(self, index: int) -> SourceItem:
        """Item ``index`` as a lazy ``SourceItem`` (one object; its names and the declared normal names present)."""
        names = self.objects.names(self.object_index(index))
        return SourceItem(
            item_id=self.item_id(index),
            source=SOURCE_NAME,
            load_frames=partial(self._frames, index),
            objects=[_LazyObject(names, self, index)],
            present_names=set(names) | set(self.config.normal_present_names),
            group_size=(1, 1),
        )

    def iter_items(self) -> Iterator[SourceItem]:
        for index in range(len(self)):
            yield self.item(index)


def build_synthesized_source(normal_videos: str | Path, objects: str, method: str = "copy-paste",
                             inpaint_model: str | None = None, data_root: str | Path | None = None, seed: int = 0,
                             *, clip_length: int | None = None, config: SynthesisConfig | None = None,
                             inpainter: Inpainter | None = None) -> SynthesizedSource:
    """The ``synthesized`` source of ``lavida build-dataset``.

    Args:
        normal_videos: a video file, a frame folder, or a folder of videos / frame folders.
        objects: a source name (read from ``data_root``), ``synthetic``, a ``.txt`` file of names, or comma-separated
            names (inpainting only).
        method: ``copy-paste`` or ``inpaint``.
        inpaint_model: the inpainting checkpoint (Hub id or local folder); default ``DEFAULT_INPAINT_MODEL``.
        data_root: the object source's release folder.
        seed: the synthesis seed.
        clip_length: frames per clip (overrides ``config.clip_length``).
        config: the remaining knobs.
        inpainter: a ready inpainter (tests, or reuse across sources).

    Raises:
        UserInputError: bad inputs (no normal video, unknown method, names with copy-paste, fewer than two object
            names, an inpainting checkpoint that does not load).
    """
    config = config or SynthesisConfig()
    if method not in METHODS:
        raise UserInputError(f"--method {method!r} is unknown: use one of {', '.join(METHODS)}.")
    inpaint_config = replace(config.inpaint, model_id=inpaint_model) if inpaint_model else config.inpaint
    config = replace(config, method=method, clip_length=clip_length or config.clip_length, inpaint=inpaint_config)
    bank = resolve_objects(objects, method, data_root, clip_length=config.clip_length)
    pool_size = len(bank.name_pool())
    if pool_size < 2:
        raise UserInputError(f"--objects {objects!r} gives {pool_size} name(s); at least two are needed so that every "
                             "sample can list a name that is absent.")
    clips = normal_clips(find_normal_videos(normal_videos), config.clip_length, config.frame_stride,
                         config.max_clips_per_video)
    source = SynthesizedSource(clips, bank, config, seed=seed, inpainter=inpainter)
    if source.inpainter is not None:
        source.inpainter.load()  # a bad checkpoint fails now, not after the first shard
    return source


def add_synthesized_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of the ``synthesized`` source to ``parser``.

    Adds ``--normal-videos``, ``--objects``, ``--method``, ``--inpaint-model``, ``--inpaint-steps`` and
    ``--synthesis-config``. ``--data-root``, ``--seed`` and ``--clip-length`` are expected from the command itself
    (``synthesized_source_from_args`` reads them when present).
    """
    group = parser.add_argument_group("synthesized source (SOURCE 'synthesized')")
    group.add_argument("--normal-videos", metavar="DIR",
                       help="normal videos to synthesise into: a video file, a frame folder or a folder of either")
    group.add_argument("--objects", metavar="SOURCE_OR_NAMES",
                       help="objects: a source name (with --data-root), 'synthetic', a .txt file of names or "
                            "comma-separated names (inpaint only)")
    group.add_argument("--method", choices=METHODS, default=None,
                       help="copy-paste a cut-out object, or inpaint the named object (default: copy-paste, or the "
                            "method of --synthesis-config)")
    group.add_argument("--inpaint-model", metavar="ID", default=None,
                       help=f"inpainting checkpoint, Hub id or folder (default: {DEFAULT_INPAINT_MODEL})")
    group.add_argument("--inpaint-steps", type=int, default=None, help="denoising steps per object (default: 30)")
    group.add_argument("--synthesis-config", metavar="FILE.yaml", default=None,
                       help="YAML of SynthesisConfig fields (sizes, trajectory, feathering, prompts, device...)")


def synthesized_source_from_args(args: argparse.Namespace) -> SynthesizedSource:
    """``build_synthesized_source`` from the options of ``add_synthesized_arguments`` (plus ``data_root``, ``seed``
    and ``clip_length`` when the command has them; a missing or ``None`` seed is 0)."""
    if not args.normal_videos or not args.objects:
        raise UserInputError("SOURCE 'synthesized' needs --normal-videos DIR and --objects SOURCE_OR_NAMES.")
    config = load_synthesis_config(args.synthesis_config) if args.synthesis_config else SynthesisConfig()
    if args.inpaint_steps is not None:
        if args.inpaint_steps < 1:
            raise UserInputError(f"--inpaint-steps must be >= 1, got {args.inpaint_steps}.")
        config.inpaint.num_inference_steps = args.inpaint_steps
    seed = getattr(args, "seed", None)
    return build_synthesized_source(args.normal_videos, args.objects, method=args.method or config.method,
                                    inpaint_model=args.inpaint_model, data_root=getattr(args, "data_root", None),
                                    seed=0 if seed is None else seed, clip_length=getattr(args, "clip_length", None),
                                    config=config)


__all__ = ["METHODS", "SOURCE_NAME", "SynthesisConfig", "SynthesisResult", "SynthesizedSource",
           "add_synthesized_arguments", "build_synthesized_source", "load_synthesis_config",
           "synthesized_source_from_args"]
