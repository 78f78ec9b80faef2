"""XD-Violence (Wu et al., ECCV 2020), test split: 800 videos (500 violent, 300 normal).

Official layout (the data root holds the annotation and the test videos):

    annotations.txt                         one line per violent test video: "<video name> s1 e1 s2 e2 ..." (frame
                                            pairs, start and end of each violent event)
    videos/<name>_label_A.mp4, videos/<name>_label_B2-0-0.mp4, ...     the test videos ("label_A" = normal)

The test videos are the ``.mp4`` files of the first of ``test_videos/``, ``videos/``, ``test/`` or the data root itself
that holds any. A video whose name carries a violence label must be annotated; ``label_A`` videos are all normal.
Event bounds are read as 0-based frame indices, inclusive at both ends.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .base import Benchmark, BenchmarkVideo

logger = logging.getLogger(__name__)

XD_VIOLENCE_ANOMALY_NAMES = ("fighting", "shooting", "riot", "abuse", "car accident", "explosion")
VIDEO_FOLDERS = ("test_videos", "videos", "test", ".")
NORMAL_TAG = "_label_A"


def parse_annotations(text: str) -> dict[str, list[tuple[int, int]]]:
    """Video name (without ``.mp4``) -> ``[(start, end), ...]`` from XD-Violence's ``annotations.txt``."""
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


class XDViolence(Benchmark):
    """XD-Violence test split (stride 128, frame labels from annotations.txt; no masks)."""

    name = "xd-violence"
    anomaly_names = XD_VIOLENCE_ANOMALY_NAMES
    stride = 128
    layout = "annotations.txt and videos/<name>_label_<A|B...>.mp4"

    def _index(self) -> list[BenchmarkVideo]:
        annotation = self.data_root / "annotations.txt"
        if not annotation.is_file():
            raise self.error("annotations.txt is missing")
        try:
            events = parse_annotations(annotation.read_text(encoding="utf-8", errors="replace"))
        except ValueError as error:
            raise self.error(f"annotations.txt: {error}") from error
        files: list[Path] = []
        for folder in VIDEO_FOLDERS:
            candidate = self.data_root / folder
            if candidate.is_dir():
                files = sorted(p for p in candidate.glob("*.mp4") if not p.name.startswith("."))
            if files:
                break
        videos = []
        unannotated = []
        for path in files:
            ranges = events.get(path.stem)
            if ranges is None and NORMAL_TAG not in path.stem:
                unannotated.append(path.name)
            videos.append(BenchmarkVideo(video_id=path.stem, video=path, is_frame_folder=False, ranges=ranges or []))
        if unannotated:
            raise self.error(f"{len(unannotated)} violent test videos have no line in annotations.txt, e.g. "
                             f"{unannotated[0]}")
        known = {v.video_id for v in videos}
        absent = sorted(set(events) - known)
        if absent and videos:
            logger.warning("xd-violence: %d annotated videos are not among the test videos (e.g. %s)", len(absent),
                           absent[0])
        return videos


__all__ = ["NORMAL_TAG", "VIDEO_FOLDERS", "XDViolence", "XD_VIOLENCE_ANOMALY_NAMES", "parse_annotations"]
