"""What every source reader shares: the reader protocol, layout checks with clear errors, image I/O and clips."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from lavida.errors import UserInputError

from ..source_item import SourceItem, SourceObject

logger = logging.getLogger(__name__)

# PIL modes whose pixel values are label ids / palette indices (not colours)
_INDEX_MODES = ("P", "L", "I", "I;16")


class SourceReader(Protocol):
    """A reader of one source's official release layout (the sampler only needs these members)."""

    name: str
    max_names: int
    is_video: bool

    def name_pool(self) -> list[str]:
        """Every name usable as a distractor (categories, classes or expressions), sorted, no duplicates."""
        ...

    def iter_items(self) -> Iterator[SourceItem]:
        """Images (T = 1) or clips (T = clip_length), in a fixed order."""
        ...


@dataclass(frozen=True)
class Layout:
    """How a source's release is laid out on disk; every layout error names it.

    Attributes:
        source: the source name.
        data_root: the folder the user passed.
        description: the expected layout on one line, relative to ``data_root``.
    """

    source: str
    data_root: Path
    description: str

    def error(self, problem: str) -> UserInputError:
        """A one-line error naming the data root, what is wrong and the expected layout."""
        return UserInputError(
            f"{self.source}: {problem} (data root {self.data_root}). Expected the official layout: "
            f"{self.description}"
        )

    def require_dir(self, relative: str | Path) -> Path:
        """``data_root / relative``, which must be a folder."""
        path = self.data_root / relative
        if not path.is_dir():
            raise self.error(f"missing folder {relative}")
        return path

    def require_file(self, relative: str | Path) -> Path:
        """``data_root / relative``, which must be a file."""
        path = self.data_root / relative
        if not path.is_file():
            raise self.error(f"missing file {relative}")
        return path

    def read_json(self, relative: str | Path) -> Any:
        """The parsed JSON file ``data_root / relative``; missing or invalid JSON is a layout error."""
        path = self.require_file(relative)
        try:
            with path.open(encoding="utf-8") as handle:
                return json.load(handle)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise self.error(f"{relative} is not valid JSON ({error})") from error

    def resolve_split(self, split: str, folders: Mapping[str, str]) -> str:
        """Map a user split name ("train", "val", ...) to the release's folder/split name."""
        if split not in folders:
            raise self.error(f"unknown split {split!r}; use one of {sorted(folders)}")
        return folders[split]


def read_rgb(path: Path) -> np.ndarray:
    """An image file -> ``uint8 [H, W, 3]`` RGB."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def read_label_png(path: Path) -> np.ndarray:
    """A palette or label-id PNG -> ``int32 [H, W]`` of indices (the palette is ignored, never applied).

    Raises:
        UserInputError: if the PNG is a colour image rather than indices.
    """
    with Image.open(path) as image:
        if image.mode not in _INDEX_MODES:
            raise UserInputError(
                f"{path}: expected a palette (mode P) or label-id PNG, got mode {image.mode}; use the release's "
                "annotation PNGs, not colour renderings"
            )
        return np.asarray(image, dtype=np.int32)


@dataclass(frozen=True)
class FrameFiles:
    """The lazy ``load_frames`` of a ``SourceItem``: a picklable callable holding the frame paths.

    Returns ``uint8 [T, H, W, 3]`` RGB when called.
    """

    paths: tuple[Path, ...]

    def __call__(self) -> np.ndarray:
        return np.stack([read_rgb(path) for path in self.paths])


def clip_windows(num_frames: int, clip_length: int) -> list[list[int]]:
    """Split a video's (annotated) frames into non-overlapping clips of ``clip_length`` frame indices.

    A video shorter than one clip gives one clip whose indices are spread over it with repeats, so every clip has
    exactly ``clip_length`` frames; the tail shorter than a clip is dropped.
    """
    if clip_length < 1:
        raise ValueError(f"clip_length must be >= 1, got {clip_length}")
    if num_frames <= 0:
        return []
    if num_frames < clip_length:
        return [np.linspace(0, num_frames - 1, clip_length).round().astype(int).tolist()]
    return [list(range(start, start + clip_length)) for start in range(0, num_frames - clip_length + 1, clip_length)]


def objects_from_label_maps(
    label_maps: np.ndarray, groups: Mapping[tuple[int, ...], Sequence[str]]
) -> list[SourceObject]:
    """One ``SourceObject`` per group of label ids that is visible somewhere in the item.

    Args:
        label_maps: ``int [T, H, W]`` label ids / palette indices of each frame.
        groups: label ids forming one object (e.g. all instances of a category, or one palette index) -> its names.

    Returns:
        objects in the order of ``groups``, each with ``bool [T, H, W]`` masks that are non-empty on some frame.
    """
    present = set(np.unique(label_maps).tolist())
    objects = []
    for ids, names in groups.items():
        if present.isdisjoint(ids):
            continue
        masks = np.isin(label_maps, ids)
        objects.append(SourceObject(names=list(names), masks=masks))
    return objects


def iter_video_clips(
    source: str,
    video_id: str,
    frame_paths: Sequence[Path],
    clip_length: int,
    objects_for: Callable[[list[int]], list[SourceObject]],
    present_names: set[str],
    group_size: tuple[int, int] = (1, 1),
) -> Iterator[SourceItem]:
    """The clips of one video that show at least one object.

    Args:
        source: the source name.
        video_id: the video's id; item ids are ``<video_id>/<first frame stem>``.
        frame_paths: the video's (annotated) frames in time order.
        clip_length: frames per clip (see ``clip_windows``).
        objects_for: frame indices of a clip -> the objects visible in it (``bool [T, H, W]`` masks).
        present_names: names of everything in the video; distractors are never drawn from them.
        group_size: objects forming one target (1-2 for category videos).
    """
    for indices in clip_windows(len(frame_paths), clip_length):
        objects = objects_for(indices)
        if not objects:
            continue
        yield SourceItem(
            item_id=f"{video_id}/{frame_paths[indices[0]].stem}",
            source=source,
            load_frames=FrameFiles(tuple(frame_paths[i] for i in indices)),
            objects=objects,
            present_names=set(present_names),
            group_size=group_size,
        )


def palette_objects(
    annotation_paths: Sequence[Path], groups: Mapping[tuple[int, ...], Sequence[str]]
) -> Callable[[list[int]], list[SourceObject]]:
    """``objects_for`` of ``iter_video_clips`` for palette-PNG annotations (DAVIS, YouTube-VOS): index = object id."""

    def objects_for(indices: list[int]) -> list[SourceObject]:
        label_maps = np.stack([read_label_png(annotation_paths[i]) for i in indices])  # [T, H, W]
        return objects_from_label_maps(label_maps, groups)

    return objects_for


def sorted_unique(names: Iterator[str] | Sequence[str]) -> list[str]:
    """A deterministic name pool: sorted, duplicates and empty strings removed."""
    return sorted({name for name in names if name})


__all__ = [
    "FrameFiles",
    "Layout",
    "SourceReader",
    "clip_windows",
    "iter_video_clips",
    "objects_from_label_maps",
    "palette_objects",
    "read_label_png",
    "read_rgb",
    "sorted_unique",
]
