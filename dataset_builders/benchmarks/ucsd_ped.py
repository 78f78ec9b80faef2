"""UCSD Anomaly Detection Dataset, Ped1 and Ped2 (Mahadevan et al., CVPR 2010), test split.

Official layout (``UCSD_Anomaly_Dataset.v1p2``; the data root may be that folder, its parent, or ``UCSDped2`` itself):

    UCSDped2/Test/Test001/001.tif ...        frames (grayscale .tif), one folder per test video
    UCSDped2/Test/Test001_gt/001.bmp ...     pixel masks (Ped2: every test video; Ped1: 10 of the 36)
    UCSDped2/Test/UCSDped2.m                 frame-level ground truth, one line per test video in order:
                                             TestVideoFile{end+1}.gt_frame = [61:180];   (1-based, inclusive)

Official download: ``UCSD_Anomaly_Dataset.tar.gz`` from http://www.svcl.ucsd.edu/projects/anomaly/dataset.htm.
Frame labels come from the ``.m`` file (the official frame-level annotation); masks are read lazily from the ``_gt``
folders. Videos are frame folders: ``BenchmarkVideo.load`` reads them into ``uint8 [F, H, W, 3]``. The release's
``UCSDped1/Test/Test017/142.tif`` is truncated: a frame that does not decode is reported once and replaced by the
previous frame, so the video keeps its 200 frames and its labels (``base.read_frame_folder``).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import ClassVar


from .base import Benchmark, BenchmarkVideo, FolderMasks, list_frame_files, ranges_to_labels

logger = logging.getLogger(__name__)

UCSD_ANOMALY_NAMES = ("car", "cart", "wheelchair", "skate", "bicycle")
_GT_LINE = re.compile(r"gt_frame\s*=\s*\[([^\]]*)\]")
_TEST_FOLDER = re.compile(r"^Test\d+$")


def parse_gt_frames(text: str) -> list[list[tuple[int, int]]]:
    """The anomalous frame ranges of each ``gt_frame = [...]`` line of a UCSD ``.m`` file, 0-based inclusive.

    ``[61:180]`` gives ``[(60, 179)]``; ``[1:30, 90:120]`` gives two ranges; a bare number is a one-frame range."""
    videos = []
    for body in _GT_LINE.findall(text):
        ranges = []
        for token in re.split(r"[,\s]+", body.strip()):
            if not token:
                continue
            bounds = [int(float(part)) for part in token.split(":")]
            start, end = bounds[0], bounds[-1]  # "a:b" or "a:step:b" or "a"
            ranges.append((start - 1, end - 1))
        videos.append(ranges)
    return videos


class _UCSDPed(Benchmark):
    """Shared reader of the two UCSD subsets."""

    subset: ClassVar[str] = ""
    anomaly_names = UCSD_ANOMALY_NAMES
    stride = 1
    has_masks = True

    def _subset_dir(self) -> Path:
        folder = f"UCSD{self.subset}"
        for candidate in (self.data_root / folder, self.data_root / "UCSD_Anomaly_Dataset.v1p2" / folder,
                          self.data_root):
            if (candidate / "Test").is_dir():
                return candidate
        raise self.error(f"no {folder}/Test folder")

    def _index(self) -> list[BenchmarkVideo]:
        test_dir = self._subset_dir() / "Test"
        folders = sorted(p for p in test_dir.iterdir() if p.is_dir() and _TEST_FOLDER.match(p.name))
        gt_file = test_dir / f"UCSD{self.subset}.m"
        if not gt_file.is_file():
            raise self.error(f"the frame-level ground truth {gt_file.name} is missing from {test_dir}")
        annotated = parse_gt_frames(gt_file.read_text(encoding="utf-8", errors="replace"))
        if len(annotated) != len(folders):
            raise self.error(f"{gt_file.name} annotates {len(annotated)} videos but {test_dir} has {len(folders)} "
                             "Test### folders")
        videos = []
        for folder, ranges in zip(folders, annotated):
            num_frames = len(list_frame_files(folder))
            if num_frames == 0:
                raise self.error(f"test video folder {folder.name} holds no frames")
            gt_dir = test_dir / f"{folder.name}_gt"
            masks = FolderMasks(str(gt_dir)) if gt_dir.is_dir() else None
            if masks is not None and masks.num_frames != num_frames:
                raise self.error(f"{gt_dir.name} has {masks.num_frames} masks for {num_frames} frames")
            videos.append(BenchmarkVideo(video_id=folder.name, video=folder, is_frame_folder=True,
                                         labels=ranges_to_labels(ranges, num_frames), masks=masks))
        return videos


class UCSDPed1(_UCSDPed):
    """UCSD Ped1 test split: 36 videos of 200 frames (158x238); pixel masks for 10 of them."""

    name = "ped1"
    subset = "ped1"
    layout = ("UCSD_Anomaly_Dataset.v1p2/UCSDped1/Test/{Test001/*.tif, Test001_gt/*.bmp (some videos), "
              "UCSDped1.m}")


class UCSDPed2(_UCSDPed):
    """UCSD Ped2 test split: 12 videos (240x360) with pixel masks for all of them."""

    name = "ped2"
    subset = "ped2"
    layout = "UCSD_Anomaly_Dataset.v1p2/UCSDped2/Test/{Test001/*.tif, Test001_gt/*.bmp, UCSDped2.m}"


__all__ = ["UCSDPed1", "UCSDPed2", "UCSD_ANOMALY_NAMES", "parse_gt_frames"]
