"""XD-Violence (Wu et al., ECCV 2020), test split: 800 videos (500 violent, 300 normal).

Official downloads (https://roc-ng.github.io/XD-Violence/) and the authors' ground-truth script
(Roc-Ng/XDVioDet ``list/make_gt.py``, which reads ``xx/annotations.txt`` and the videos of ``xx/TestClips/Videos``)::

    annotations.txt                               one line per violent test video: "<video name> s1 e1 s2 e2 ..."
    TestClips/Videos/<name>_label_A.mp4, TestClips/Videos/<name>_label_B2-0-0.mp4, ...   ("label_A" = normal)

The test videos are the ``.mp4`` files of the first of ``TestClips/Videos``, ``test_videos``, ``videos``, ``test`` or
the data root itself that holds any. A video whose name carries a violence label must be annotated; ``label_A`` videos
are all normal.

Event bounds follow ``make_gt.py`` (``gt_vec[start:end] = 1``): 0-based frame indices with the end excluded, so
``1 4`` marks the frames 1, 2 and 3.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .base import Benchmark, BenchmarkVideo

logger = logging.getLogger(__name__)

XD_VIOLENCE_ANOMALY_NAMES = ("fighting", "shooting", "riot", "abuse", "car accident", "explosion")
VIDEO_FOLDERS = ("TestClips/Videos", "test_videos", "videos", "test", ".")
ANNOTATION_FILE = "annotations.txt"
NORMAL_TAG = "_label_A"


def parse_annotations(text: str) -> dict[str, list[tuple[int, int]]]:
    """Video name (without ``.mp4``) -> ``[(start, end), ...]`` as written in XD-Violence's ``annotations.txt``.

    The pairs are returned as written (0-based start, excluded end); see ``annotation_to_ranges``.
    """
    events: dict[str, list[tuple[int, int]]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 3 or len(fields) % 2 == 0:
            raise ValueError(f"line {number}: expected '<video> start end [start end ...]', got {line.strip()!r}.")
        name = fields[0].removesuffix(".mp4")
        bounds = [int(f) for f in fields[1:]]
        events.setdefault(name, []).extend((bounds[i], bounds[i + 1]) for i in range(0, len(bounds), 2))
    return events


def annotation_to_ranges(events: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``(start, end)`` pairs of ``annotations.txt`` (end excluded) -> 0-based inclusive frame ranges."""
    return [(max(start, 0), end - 1) for start, end in events if end - 1 >= max(start, 0)]


class XDViolence(Benchmark):
    """XD-Violence test split (stride 128, frame labels from annotations.txt; no masks)."""

    name = "xd-violence"
    anomaly_names = XD_VIOLENCE_ANOMALY_NAMES
    stride = 128
    layout = "annotations.txt and TestClips/Videos/<name>_label_<A|B...>.mp4 (or videos/)"

    def _test_videos(self) -> list[Path]:
        """The ``.mp4`` files of the first of ``VIDEO_FOLDERS`` that holds any."""
        for folder in VIDEO_FOLDERS:
            candidate = self.data_root / folder
            if candidate.is_dir():
                files = sorted(p for p in candidate.glob("*.mp4") if not p.name.startswith("."))
                if files:
                    return files
        looked = ", ".join("the data root" if f == "." else f for f in VIDEO_FOLDERS)
        raise self.error(f"no test videos (.mp4); looked in {looked}")

    def _index(self) -> list[BenchmarkVideo]:
        annotation = self.data_root / ANNOTATION_FILE
        if not annotation.is_file():
            raise self.error(f"{ANNOTATION_FILE} is missing; looked for {annotation}")
        try:
            events = parse_annotations(annotation.read_text(encoding="utf-8", errors="replace"))
        except ValueError as error:
            raise self.error(f"{ANNOTATION_FILE}: {error}") from error
        videos = []
        unannotated = []
        for path in self._test_videos():
            ranges = events.get(path.stem)
            if ranges is None and NORMAL_TAG not in path.stem:
                unannotated.append(path.name)
            videos.append(BenchmarkVideo(video_id=path.stem, video=path, is_frame_folder=False,
                                         ranges=annotation_to_ranges(ranges or [])))
        if unannotated:
            raise self.error(f"{len(unannotated)} violent test videos have no line in {ANNOTATION_FILE}, e.g. "
                             f"{unannotated[0]}")
        known = {v.video_id for v in videos}
        absent = sorted(set(events) - known)
        if absent:
            logger.warning("xd-violence: %d annotated videos are not among the test videos (e.g. %s)", len(absent),
                           absent[0])
        return videos


__all__ = ["ANNOTATION_FILE", "NORMAL_TAG", "VIDEO_FOLDERS", "XDViolence", "XD_VIOLENCE_ANOMALY_NAMES",
           "annotation_to_ranges", "parse_annotations"]
