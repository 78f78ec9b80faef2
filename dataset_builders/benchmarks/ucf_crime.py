"""UCF-Crime (Sultani et al., CVPR 2018), test split: 290 videos with temporal annotations.

Official layout (the data root holds the videos in any sub-folders, as the archives unpack them, and the annotation):

    Temporal_Anomaly_Annotation_for_Testing_Videos.txt
        "Arson011_x264.mp4  Arson  150  420  680  1267": video, class, then the start and end frame of up to two
        anomalous events (-1 when absent); normal videos have class "Normal" and four -1
    Anomaly-Videos-Part-1/Arson/Arson011_x264.mp4, Testing_Normal_Videos_Anomaly/Normal_Videos_003_x264.mp4, ...

The test videos are the annotation file's lines; each is found by file name anywhere under the data root. Event bounds
are read as 0-based frame indices, inclusive at both ends (the release does not say; one frame either way).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from .base import Benchmark, BenchmarkVideo

logger = logging.getLogger(__name__)

UCF_CRIME_ANOMALY_NAMES = ("abuse", "arrest", "arson", "assault", "burglary", "explosion", "fighting",
                           "road accidents", "robbery", "shooting", "shoplifting", "stealing", "vandalism")
ANNOTATION_FILES = ("Temporal_Anomaly_Annotation_for_Testing_Videos.txt", "Temporal_Anomaly_Annotation.txt")


def parse_temporal_annotation(text: str) -> list[tuple[str, str, list[tuple[int, int]]]]:
    """``(file name, class, [(start, end), ...])`` per line of the UCF-Crime temporal annotation."""
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
    layout = ("Temporal_Anomaly_Annotation_for_Testing_Videos.txt and the test videos (e.g. "
              "Anomaly-Videos-Part-1/Arson/Arson011_x264.mp4, Testing_Normal_Videos_Anomaly/*.mp4) anywhere below")

    def _annotation_file(self) -> Path:
        for name in ANNOTATION_FILES:
            for candidate in (self.data_root / name, *sorted(self.data_root.glob(f"*/{name}"))):
                if candidate.is_file():
                    return candidate
        raise self.error(f"the temporal annotation {ANNOTATION_FILES[0]} is missing")

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
        return [BenchmarkVideo(video_id=Path(name).stem, video=files[name], is_frame_folder=False, ranges=ranges)
                for name, _, ranges in entries]


__all__ = ["ANNOTATION_FILES", "UCFCrime", "UCF_CRIME_ANOMALY_NAMES", "index_files", "parse_temporal_annotation"]
