"""What every benchmark loader shares: the test-video record, lazy ground-truth masks, frame folders, the dataset view.

A loader reads a benchmark's official download layout and lists its test videos as ``BenchmarkVideo`` records. A
record holds references, not pixels: the video (a file, or a folder of frame images), the frame labels (or the
annotated frame ranges when the frame count is only known once the video is decoded), a ``MaskSource`` that reads
ground-truth masks one frame at a time, and for UBnormal the ground-truth tracks of the anomalous objects.

Frame indices are 0-based decoded-frame indices everywhere; annotated ranges are inclusive at both ends.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
from PIL import Image

from lavida.errors import UserInputError
from lavida.processing.video_io import VIDEO_SUFFIXES

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


# ---------------------------------------------------------------------------------------------------------------------
# Frame folders
# ---------------------------------------------------------------------------------------------------------------------


def _number_key(path: Path) -> tuple:
    """Sort ``frame2.jpg`` before ``frame10.jpg``: compare the digit runs of the stem as numbers."""
    parts = re.split(r"(\d+)", path.stem)
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in parts if p)


def list_frame_files(folder: str | Path) -> list[Path]:
    """The image files of a frame folder in frame order (numeric order of the digits in their names).

    Hidden files (such as the ``._001.tif`` resource forks of archives made on macOS) are skipped."""
    folder = Path(folder)
    files = [p for p in folder.iterdir()
             if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")]
    return sorted(files, key=_number_key)


def read_frame(path: str | Path) -> np.ndarray:
    """One frame image as ``uint8 [H, W, 3]`` RGB (grayscale frames, such as UCSD's, are replicated).

    Raises:
        OSError, ValueError: the file is not an image or is damaged (PIL reports a truncated file as ``OSError``, or
            as ``ValueError`` when it memory-maps an uncompressed one).
    """
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


# damaged frame files already reported in this process: each is reported once, however often its video is read
_REPORTED_DAMAGED: set[str] = set()


def _report_damaged(path: Path, error: BaseException, index: int, substitute: int) -> None:
    """Warn, once per file and process, that frame ``index`` (``path``) is replaced by frame ``substitute``."""
    key = str(path.resolve())
    if key in _REPORTED_DAMAGED:
        return
    _REPORTED_DAMAGED.add(key)
    logger.warning("Frame %s is damaged and cannot be decoded (%s); frame %d of the video repeats frame %d so the "
                   "frame count and the ground truth stay aligned.", path, error, index, substitute)


def read_frame_folder(folder: str | Path) -> np.ndarray:
    """Every frame of a frame folder as ``uint8 [F, H, W, 3]`` RGB, in frame order.

    A frame file that cannot be decoded (a release can hold a truncated one, such as UCSD Ped1's
    ``Test017/142.tif``) is reported once, with a warning, and replaced by the closest earlier readable frame (the
    first readable one when no earlier frame is): the video keeps its frame count, so the per-frame ground truth stays
    aligned, as a damaged packet of a video file does not stop ``lavida detect``.

    Raises:
        UserInputError: the folder holds no images, no frame decodes, or the frames differ in size.
    """
    files = list_frame_files(folder)
    if not files:
        raise UserInputError(f"Frame folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)}).")
    frames: np.ndarray | None = None  # (F, H, W, 3), allocated at the first frame that decodes
    reference = last_good = -1
    leading: list[tuple[int, BaseException]] = []  # damaged frames before the first readable one
    for index, path in enumerate(files):
        try:
            frame = read_frame(path)
        except (OSError, SyntaxError, ValueError) as error:  # PIL's errors for unreadable or truncated files
            if frames is None:
                leading.append((index, error))
            else:
                _report_damaged(path, error, index, last_good)
                frames[index] = frames[last_good]
            continue
        if frames is None:
            frames = np.empty((len(files), *frame.shape), dtype=np.uint8)
            reference = index
            for damaged, error in leading:
                _report_damaged(files[damaged], error, damaged, index)
                frames[damaged] = frame
        elif frame.shape != frames.shape[1:]:
            raise UserInputError(f"Frame {path} is {list(frame.shape)} but {files[reference].name} is "
                                 f"{list(frames.shape[1:])}: all frames of a video must have the same size.")
        frames[index] = frame
        last_good = index
    if frames is None:
        raise UserInputError(f"No frame of {folder} can be decoded (e.g. {files[0].name}: {leading[0][1]}).")
    return frames


# ---------------------------------------------------------------------------------------------------------------------
# Ground-truth masks, read lazily
# ---------------------------------------------------------------------------------------------------------------------


class MaskSource(Protocol):
    """Ground-truth anomaly masks of one video, read one frame at a time.

    ``kind`` and ``path`` describe where the masks are (stored in the dataset view); ``num_frames`` is the number of
    annotated frames when the source knows it (None for sources that only store anomalous frames)."""

    kind: str
    path: str
    num_frames: int | None

    def frame(self, index: int, shape: tuple[int, int] | None = None) -> np.ndarray:
        """``bool [H, W]`` mask of frame ``index``; ``shape`` is the frame size to use when the source has no image
        for that frame (an all-normal frame)."""
        ...


def _binary(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    return image.any(axis=-1) if image.ndim == 3 else image != 0


@dataclass
class FolderMasks:
    """One mask image per frame in a folder (UCSD's ``Test001_gt/*.bmp``); nonzero pixels are anomalous."""

    path: str
    kind: ClassVar[str] = "image_folder"

    def __post_init__(self) -> None:
        self._files = list_frame_files(self.path)

    @property
    def num_frames(self) -> int:
        return len(self._files)

    def frame(self, index: int, shape: tuple[int, int] | None = None) -> np.ndarray:
        with Image.open(self._files[index]) as image:
            return _binary(np.asarray(image))


@dataclass
class NpyMasks:
    """An ``[F, H, W]`` array in a ``.npy`` file (ShanghaiTech's ``test_pixel_mask``), memory-mapped."""

    path: str
    kind: ClassVar[str] = "npy"

    def _array(self) -> np.ndarray:
        if not hasattr(self, "_cache"):
            self._cache = np.load(self.path, mmap_mode="r")
            if self._cache.ndim != 3:
                raise UserInputError(f"Pixel mask {self.path} has shape {list(self._cache.shape)}; expected "
                                     "[frames, height, width].")
        return self._cache

    @property
    def num_frames(self) -> int:
        return int(self._array().shape[0])

    def frame(self, index: int, shape: tuple[int, int] | None = None) -> np.ndarray:
        return np.asarray(self._array()[index]) != 0


@dataclass
class MatVolumeMasks:
    """A MATLAB cell array of per-frame masks (Avenue's ``testing_label_mask/N_label.mat``, variable ``volLabel``).

    The file is read on first use and kept for the video (MATLAB v5 files cannot be read partially)."""

    path: str
    variable: str = "volLabel"
    kind: ClassVar[str] = "mat"

    def _frames(self) -> list[np.ndarray]:
        if not hasattr(self, "_cache"):
            from scipy.io import loadmat

            content = loadmat(self.path)
            if self.variable not in content:
                raise UserInputError(f"Ground-truth file {self.path} has no variable {self.variable!r} (found "
                                     f"{sorted(k for k in content if not k.startswith('__'))}).")
            cells = np.asarray(content[self.variable]).reshape(-1)
            self._cache = [np.asarray(cell) != 0 for cell in cells]
        return self._cache

    @property
    def num_frames(self) -> int:
        return len(self._frames())

    def frame(self, index: int, shape: tuple[int, int] | None = None) -> np.ndarray:
        return self._frames()[index]

    def any_per_frame(self) -> np.ndarray:
        """``bool [F]``: which frames have an anomalous pixel."""
        return np.array([cell.any() for cell in self._frames()], dtype=bool)

    def release(self) -> None:
        """Drop the decoded masks (a whole video's worth) until they are needed again."""
        self.__dict__.pop("_cache", None)


@dataclass
class EmptyMasks:
    """All-normal masks (a normal video of a benchmark with pixel annotations); the size comes from the caller."""

    num_frames: int | None = None
    kind: ClassVar[str] = "empty"
    path: str = ""

    def frame(self, index: int, shape: tuple[int, int] | None = None) -> np.ndarray:
        if shape is None:
            raise ValueError("An all-normal mask source needs the frame shape.")
        return np.zeros(shape, dtype=bool)


# ---------------------------------------------------------------------------------------------------------------------
# Test videos
# ---------------------------------------------------------------------------------------------------------------------


def ranges_to_labels(ranges: Sequence[tuple[int, int]], num_frames: int) -> np.ndarray:
    """``int8 [num_frames]`` labels, 1 inside the inclusive ``(start, end)`` ranges (clipped to the video)."""
    labels = np.zeros(num_frames, dtype=np.int8)
    for start, end in ranges:
        labels[max(0, start): max(0, min(end + 1, num_frames))] = 1
    return labels


def labels_to_ranges(labels: np.ndarray) -> list[tuple[int, int]]:
    """The inclusive ``(start, end)`` runs of 1s in ``labels`` ``[F]``."""
    labels = np.asarray(labels).astype(bool).astype(np.int8)
    edges = np.diff(np.concatenate(([0], labels, [0])))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1) - 1
    return [(int(s), int(e)) for s, e in zip(starts, ends)]


@dataclass
class BenchmarkVideo:
    """One test video of a benchmark.

    Attributes:
        video_id: unique within the benchmark (the official name, without extension).
        video: a video file, or a folder of frame images when ``is_frame_folder``.
        is_frame_folder: True for benchmarks released as frames (UCSD, ShanghaiTech test set, Avenue frames).
        labels: ``int8 [F]`` frame labels when the annotation gives one per frame; None when it gives ``ranges``.
        ranges: inclusive 0-based ``(start, end)`` anomalous frame ranges (always filled).
        masks: ground-truth pixel masks, or None when the benchmark (or this video) has none.
        tracks_fn: returns the ground-truth tracks (``lavida.metrics.Track``) of the anomalous objects (UBnormal).
        num_frames: the frame count when known without decoding the video.
    """

    video_id: str
    video: Path
    is_frame_folder: bool
    labels: np.ndarray | None = None
    ranges: list[tuple[int, int]] = field(default_factory=list)
    masks: MaskSource | None = None
    tracks_fn: Callable[[], list[Any]] | None = None
    num_frames: int | None = None

    def __post_init__(self) -> None:
        if self.labels is not None:
            self.labels = np.asarray(self.labels, dtype=np.int8)
            self.ranges = labels_to_ranges(self.labels)
            self.num_frames = int(self.labels.size)

    def frame_labels(self, num_frames: int | None = None) -> np.ndarray:
        """``int8 [F]`` frame labels. ``num_frames`` (the decoded count) is needed when the annotation gives ranges
        and the count is not known; per-frame annotations are returned as annotated (callers align lengths)."""
        if self.labels is not None:
            return self.labels
        count = num_frames if num_frames is not None else self.num_frames
        if count is None:
            count = count_video_frames(self.video)
        return ranges_to_labels(self.ranges, count)

    def tracks(self) -> list[Any]:
        """Ground-truth tracks (empty for benchmarks without them and for normal videos)."""
        return self.tracks_fn() if self.tracks_fn is not None else []

    def load(self) -> str | np.ndarray:
        """What a scorer takes: the video file's path, or the decoded frames ``uint8 [F, H, W, 3]`` of a folder."""
        return read_frame_folder(self.video) if self.is_frame_folder else str(self.video)


def count_video_frames(path: str | Path) -> int:
    """Number of decoded frames of a video file (the container's count when it declares one, else by decoding)."""
    import av

    try:
        with av.open(str(path)) as container:
            declared = int(container.streams.video[0].frames)
    except (av.error.FFmpegError, IndexError) as error:
        raise UserInputError(f"Cannot read video {path}: {error}") from error
    if declared > 0:
        return declared
    from lavida.processing.video_io import probe_video

    return probe_video(path).num_frames


# ---------------------------------------------------------------------------------------------------------------------
# Benchmarks
# ---------------------------------------------------------------------------------------------------------------------


class Benchmark:
    """A benchmark's test split read from its official layout.

    Subclasses set the class attributes and implement ``_index``. Building one lists the test videos and checks the
    layout (raising ``UserInputError`` that names the data root and the expected layout); nothing is decoded.

    Class attributes:
        name: the registry name.
        anomaly_names: the standard prompt name list.
        stride: the standard frame stride.
        has_masks: the benchmark has pixel-level ground truth.
        has_tracks: the benchmark has object tracks (RBDC/TBDC).
        layout: the expected download layout, one line, for error messages.
    """

    name: ClassVar[str] = ""
    anomaly_names: ClassVar[tuple[str, ...]] = ()
    stride: ClassVar[int] = 1
    has_masks: ClassVar[bool] = False
    has_tracks: ClassVar[bool] = False
    layout: ClassVar[str] = ""

    def __init__(self, data_root: str | Path) -> None:
        self.data_root = Path(data_root)
        if not self.data_root.is_dir():
            raise UserInputError(f"{self.name}: data root {self.data_root} is not a folder. Expected the official "
                                 f"layout: {self.layout}")
        self._videos = self._index()
        if not self._videos:
            raise self.error("no test videos found")
        ids = [v.video_id for v in self._videos]
        if len(set(ids)) != len(ids):
            raise self.error("two test videos share a name")
        logger.info("%s: %d test videos under %s", self.name, len(self._videos), self.data_root)

    def _index(self) -> list[BenchmarkVideo]:
        raise NotImplementedError

    def error(self, problem: str) -> UserInputError:
        """A one-line error naming the benchmark, the problem, the data root and the expected layout."""
        return UserInputError(f"{self.name}: {problem} (data root {self.data_root}). Expected the official layout: "
                              f"{self.layout}")

    def find_dir(self, *candidates: str) -> Path:
        """The first of ``candidates`` (paths relative to the data root, '.' for the root) that is a folder."""
        for candidate in candidates:
            path = self.data_root / candidate
            if path.is_dir():
                return path
        raise self.error(f"none of the folders {', '.join(candidates)} exists")

    @property
    def videos(self) -> list[BenchmarkVideo]:
        return list(self._videos)

    def __len__(self) -> int:
        return len(self._videos)

    def __iter__(self) -> Iterator[BenchmarkVideo]:
        return iter(self._videos)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(data_root={str(self.data_root)!r}, videos={len(self)})"

    def to_dataset(self, embed_videos: bool = False, with_tracks: bool = True):
        """The test split as a ``datasets.Dataset``, one row per video.

        Columns: ``video_id``, ``video_path`` (file or frame folder), ``video_kind`` (``"file"`` / ``"frames"``),
        ``video_bytes`` (the file's bytes when ``embed_videos``, else None), ``num_frames``, ``labels`` (int8 per
        frame), ``anomaly_ranges`` (inclusive ``[start, end]`` pairs), ``mask_kind`` / ``mask_path`` (reopen with
        ``open_mask_source``; empty when the video has no masks), ``tracks`` (UBnormal), ``anomaly_names``,
        ``stride``, ``benchmark``. Frame counts of video files come from the container (decoding only when it
        declares none).
        """
        from .dataset_view import benchmark_to_dataset

        return benchmark_to_dataset(self, embed_videos=embed_videos, with_tracks=with_tracks)


__all__ = ["IMAGE_SUFFIXES", "VIDEO_SUFFIXES", "Benchmark", "BenchmarkVideo", "EmptyMasks", "FolderMasks",
           "MaskSource", "MatVolumeMasks", "NpyMasks", "count_video_frames", "labels_to_ranges", "list_frame_files",
           "ranges_to_labels", "read_frame", "read_frame_folder"]
