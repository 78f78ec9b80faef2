"""CUHK Avenue (Lu et al., ICCV 2013), test split: 21 videos with pixel masks in MATLAB files.

Official layout (the data root is the dataset folder, e.g. ``Avenue Dataset``):

    testing_videos/01.avi ... 21.avi
    ground_truth_demo/testing_label_mask/1_label.mat ... 21_label.mat    variable volLabel: 1 x F cell of H x W masks

Frames extracted to folders are used instead of the ``.avi`` files when present (``testing/frames/01/*.jpg`` or
``testing_videos_frame/01/*.jpg``), as many preprocessed copies ship them. A frame is anomalous when its mask has any
anomalous pixel.

Avenue is not part of LAVIDA's reported evaluation, so its prompt name list and stride are this project's choice:
the anomalies annotated in the test set are people running, throwing objects (papers, a bag), walking in the wrong
direction, dancing or jumping, loitering, and unusual objects carried or pushed (a bag left on the grass, a bicycle);
the list names those actions and objects. The stride is 2, as for ShanghaiTech, whose frame rate (24-25 fps) and
campus scenes Avenue shares.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from .base import Benchmark, BenchmarkVideo, MatVolumeMasks, list_frame_files

logger = logging.getLogger(__name__)

AVENUE_ANOMALY_NAMES = ("running", "throwing objects", "throwing papers", "throwing a bag", "walking in the wrong "
                        "direction", "dancing", "jumping", "loitering", "abandoned bag", "bicycle")
FRAME_FOLDERS = ("testing/frames", "testing_videos_frame", "testing/testing_videos_frame")
_LABEL_FILE = re.compile(r"^(\d+)_label\.mat$")


class Avenue(Benchmark):
    """CUHK Avenue test split (stride 2, labels and pixel masks from the .mat ground truth)."""

    name = "avenue"
    anomaly_names = AVENUE_ANOMALY_NAMES
    stride = 2
    has_masks = True
    layout = "testing_videos/<NN>.avi and ground_truth_demo/testing_label_mask/<N>_label.mat (volLabel)"

    def _frame_folder(self, number: int) -> Path | None:
        for parent in FRAME_FOLDERS:
            for name in (f"{number:02d}", str(number)):
                folder = self.data_root / parent / name
                if folder.is_dir() and list_frame_files(folder):
                    return folder
        return None

    def _index(self) -> list[BenchmarkVideo]:
        gt_dir = self.data_root / "ground_truth_demo" / "testing_label_mask"
        if not gt_dir.is_dir():
            raise self.error(f"{gt_dir.relative_to(self.data_root)} is missing")
        label_files = sorted((int(m.group(1)), p) for p in gt_dir.iterdir() if (m := _LABEL_FILE.match(p.name)))
        videos = []
        for number, label_file in label_files:
            masks = MatVolumeMasks(str(label_file))
            labels = masks.any_per_frame().astype(np.int8)
            masks.release()  # keep one video's masks in memory at a time
            folder = self._frame_folder(number)
            if folder is not None:
                video, is_folder = folder, True
            else:
                video, is_folder = self.data_root / "testing_videos" / f"{number:02d}.avi", False
                if not video.is_file():
                    raise self.error(f"test video {number:02d} is missing (no testing_videos/{number:02d}.avi and no "
                                     "frame folder)")
            videos.append(BenchmarkVideo(video_id=f"{number:02d}", video=video, is_frame_folder=is_folder,
                                         labels=labels, masks=masks))
        return videos


__all__ = ["AVENUE_ANOMALY_NAMES", "Avenue"]
