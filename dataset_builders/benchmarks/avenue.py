"""CUHK Avenue (Lu et al., ICCV 2013), test split: 21 videos with pixel masks in MATLAB files.

Official downloads (http://www.cse.cuhk.edu.hk/leojia/projects/detectabnormal/dataset.html): ``Avenue_Dataset.zip``
unpacks to ``Avenue Dataset/`` and ``ground_truth_demo.zip`` to ``ground_truth_demo/``, side by side::

    Avenue Dataset/testing_videos/01.avi ... 21.avi
    ground_truth_demo/testing_label_mask/1_label.mat ... 21_label.mat    variable volLabel: 1 x F cell of H x W masks

The data root is the folder holding both, or ``Avenue Dataset`` itself (the ground truth is then read from its
sibling ``../ground_truth_demo``); a ``ground_truth_demo`` moved inside ``Avenue Dataset`` is found too. Frames
extracted to folders are used instead of the ``.avi`` files when present (``testing/frames/01/*.jpg`` or
``testing_videos_frame/01/*.jpg`` in the dataset folder), as many preprocessed copies ship them. A frame is anomalous
when its mask has any anomalous pixel.

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
DATASET_FOLDER = "Avenue Dataset"  # what Avenue_Dataset.zip unpacks to
GROUND_TRUTH_FOLDER = "ground_truth_demo"  # what ground_truth_demo.zip unpacks to
FRAME_FOLDERS = ("testing/frames", "testing_videos_frame", "testing/testing_videos_frame")
_LABEL_FILE = re.compile(r"^(\d+)_label\.mat$")


class Avenue(Benchmark):
    """CUHK Avenue test split (stride 2, labels and pixel masks from the .mat ground truth)."""

    name = "avenue"
    anomaly_names = AVENUE_ANOMALY_NAMES
    stride = 2
    has_masks = True
    layout = ("'Avenue Dataset/testing_videos/<NN>.avi' beside 'ground_truth_demo/testing_label_mask/<N>_label.mat' "
              "(volLabel), as Avenue_Dataset.zip and ground_truth_demo.zip unpack; the data root is their parent "
              "folder or 'Avenue Dataset'")

    def _dataset_dir(self) -> Path:
        """The folder holding ``testing_videos`` (or extracted frames): the data root or its ``Avenue Dataset``."""
        candidates = (self.data_root / DATASET_FOLDER, self.data_root)
        for candidate in candidates:
            if (candidate / "testing_videos").is_dir() or any((candidate / f).is_dir() for f in FRAME_FOLDERS):
                return candidate
        looked = ", ".join(str(candidate / "testing_videos") for candidate in candidates)
        raise self.error(f"no test videos folder; looked for {looked} (and extracted frames in "
                         f"{', '.join(FRAME_FOLDERS)})")

    def _ground_truth_dir(self, dataset_dir: Path) -> Path:
        """``testing_label_mask`` of the ground truth, looked for beside and inside the dataset folder."""
        candidates = [self.data_root / GROUND_TRUTH_FOLDER, dataset_dir / GROUND_TRUTH_FOLDER,
                      dataset_dir.parent / GROUND_TRUTH_FOLDER]
        looked = []
        for candidate in dict.fromkeys(candidates):  # de-duplicated, in order
            path = candidate / "testing_label_mask"
            if path.is_dir():
                return path
            looked.append(str(path))
        raise self.error(f"the ground truth testing_label_mask/ is missing; looked in {', '.join(looked)}")

    def _frame_folder(self, dataset_dir: Path, number: int) -> Path | None:
        for parent in FRAME_FOLDERS:
            for name in (f"{number:02d}", str(number)):
                folder = dataset_dir / parent / name
                if folder.is_dir() and list_frame_files(folder):
                    return folder
        return None

    def _index(self) -> list[BenchmarkVideo]:
        dataset_dir = self._dataset_dir()
        gt_dir = self._ground_truth_dir(dataset_dir)
        label_files = sorted((int(m.group(1)), p) for p in gt_dir.iterdir() if (m := _LABEL_FILE.match(p.name)))
        if not label_files:
            raise self.error(f"{gt_dir} holds no <N>_label.mat file")
        videos = []
        for number, label_file in label_files:
            masks = MatVolumeMasks(str(label_file))
            labels = masks.any_per_frame().astype(np.int8)
            masks.release()  # keep one video's masks in memory at a time
            folder = self._frame_folder(dataset_dir, number)
            if folder is not None:
                video, is_folder = folder, True
            else:
                video, is_folder = dataset_dir / "testing_videos" / f"{number:02d}.avi", False
                if not video.is_file():
                    raise self.error(f"test video {number:02d} is missing: no {video} and no frame folder "
                                     f"{number:02d} in {', '.join(str(dataset_dir / f) for f in FRAME_FOLDERS)}")
            videos.append(BenchmarkVideo(video_id=f"{number:02d}", video=video, is_frame_folder=is_folder,
                                         labels=labels, masks=masks))
        return videos


__all__ = ["AVENUE_ANOMALY_NAMES", "Avenue", "DATASET_FOLDER", "GROUND_TRUTH_FOLDER"]
