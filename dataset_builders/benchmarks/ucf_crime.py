"""UCF-Crime (Sultani et al., CVPR 2018), test split: 290 videos with temporal annotations.

Official downloads (https://www.crcv.ucf.edu/projects/real-world/, and the authors' repository
WaqasSultani/AnomalyDetectionCVPR2018): the video archives (``Anomaly-Videos-Part-1/Arson/Arson011_x264.mp4``, ...,
``Testing_Normal_Videos_Anomaly/Normal_Videos_003_x264.mp4``) and the temporal annotation of the test videos, one line
per video::

    Arson011_x264.mp4  Arson  150  420  680  1267
        video, class, then the first and last frame of up to two anomalous events (-1 when absent); normal videos
        have class "Normal" and four -1

The annotation is found where the downloads put it, in the data root or one folder below it: the annotation archive
unpacks it two folders deep,
``Temporal_Anomaly_Annotation_For_Testing_Videos/Txt_formate/Temporal_Anomaly_Annotation.txt``; the dataset archive
holds ``Temporal_Anomaly_Annotation_for_Testing_Videos.txt``; the authors' repository holds
``Temporal_Anomaly_Annotation.txt``. The test videos are the annotation's lines; each is found by file name anywhere
under the data root.

Event bounds follow the authors' evaluation (``Evaluate_Anomaly_Detector.m``: ``GT(st_fr:end_fr) = 1`` with
``st_fr = max(start, 1)``): MATLAB frame numbers, 1-based and inclusive at both ends, so ``150 420`` marks the 0-based
frames 149 to 419.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from .base import Benchmark, BenchmarkVideo

logger = logging.getLogger(__name__)

UCF_CRIME_ANOMALY_NAMES = ("abuse", "arrest", "arson", "assault", "burglary", "explosion", "fighting",
                           "road accidents", "robbery", "shooting", "shoplifting", "stealing", "vandalism")
# where the official downloads put the annotation, relative to the data root (or to one folder below it)
ANNOTATION_PATHS = (
    "Temporal_Anomaly_Annotation_For_Testing_Videos/Txt_formate/Temporal_Anomaly_Annotation.txt",
    "Temporal_Anomaly_Annotation_for_Testing_Videos.txt",
    "Temporal_Anomaly_Annotation.txt",
)
ANNOTATION_FILES = tuple(dict.fromkeys(Path(path).name for path in ANNOTATION_PATHS))


def parse_temporal_annotation(text: str) -> list[tuple[str, str, list[tuple[int, int]]]]:
    """``(file name, class, [(start, end), ...])`` per line of the UCF-Crime temporal annotation.

    The bounds are returned as written: 1-based frame numbers, inclusive at both ends (``-1`` pairs dropped); see
    ``annotation_to_ranges`` for the 0-based frame ranges.
    """
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 6 or len(fields) % 2:
            raise ValueError(f"line {number}: expected 'video class start1 end1 start2 end2', got {line.strip()!r}.")
        bounds = [int(f) for f in fields[2:]]
        pairs = zip(bounds[0::2], bounds[1::2])
        ranges = [(start, end) for start, end in pairs if start >= 0 and end >= 0]
        entries.append((fields[0], fields[1], ranges))
    return entries


def annotation_to_ranges(events: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """1-based inclusive event bounds of the annotation -> 0-based inclusive frame ranges.

    As ``Evaluate_Anomaly_Detector.m``: a start below 1 counts as frame 1; the end is clipped to the video later.
    """
    ranges = []
    for start, end in events:
        first, last = max(start, 1) - 1, end - 1
        if last >= first:
            ranges.append((first, last))
    return ranges


def index_files(root: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    """File name -> path of every file under ``root`` with one of ``suffixes`` (the first found wins)."""
    found: dict[str, Path] = {}
    for folder, subfolders, files in os.walk(root):
        subfolders.sort()
        for name in sorted(files):
            if name.lower().endswith(suffixes) and not name.startswith("."):
                found.setdefault(name, Path(folder) / name)
    return found


class UCFCrime(Benchmark):
    """UCF-Crime test split (stride 128, frame labels from the temporal annotation; no masks)."""

    name = "ucf-crime"
    anomaly_names = UCF_CRIME_ANOMALY_NAMES
    stride = 128
    layout = ("Temporal_Anomaly_Annotation_For_Testing_Videos/Txt_formate/Temporal_Anomaly_Annotation.txt (or "
              "Temporal_Anomaly_Annotation_for_Testing_Videos.txt) in the data root or one folder below, and the test "
              "videos (e.g. Anomaly-Videos-Part-1/Arson/Arson011_x264.mp4, Testing_Normal_Videos_Anomaly/*.mp4) "
              "anywhere below")

    def _annotation_file(self) -> Path:
        """The first annotation found, in the order of ``ANNOTATION_PATHS``, in the data root then one folder down."""
        subfolders = sorted(p for p in self.data_root.iterdir() if p.is_dir() and not p.name.startswith("."))
        for relative in ANNOTATION_PATHS:
            for base in (self.data_root, *subfolders):
                if (base / relative).is_file():
                    return base / relative
        looked = ", ".join(f"{relative} and */{relative}" for relative in ANNOTATION_PATHS)
        raise self.error(f"the temporal annotation is missing; looked for {looked} under the data root")

    def _index(self) -> list[BenchmarkVideo]:
        annotation = self._annotation_file()
        try:
            entries = parse_temporal_annotation(annotation.read_text(encoding="utf-8", errors="replace"))
        except ValueError as error:
            raise self.error(f"{annotation.name}: {error}") from error
        files = index_files(self.data_root, (".mp4",))
        missing = [name for name, _, _ in entries if name not in files]
        if missing:
            raise self.error(f"{len(missing)} of {len(entries)} annotated test videos are missing, e.g. {missing[0]}")
        return [BenchmarkVideo(video_id=Path(name).stem, video=files[name], is_frame_folder=False,
                               ranges=annotation_to_ranges(events))
                for name, _, events in entries]


__all__ = ["ANNOTATION_FILES", "ANNOTATION_PATHS", "UCFCrime", "UCF_CRIME_ANOMALY_NAMES", "annotation_to_ranges",
           "index_files", "parse_temporal_annotation"]
