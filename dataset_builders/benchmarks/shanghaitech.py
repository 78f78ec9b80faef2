"""ShanghaiTech Campus (Luo et al., ICCV 2017), test split: 107 videos released as frames.

Official layout (the data root may be the dataset folder or its parent ``shanghaitech``):

    testing/frames/01_0014/000.jpg ...       frames of each test video
    testing/test_frame_mask/01_0014.npy      frame labels, one 0/1 value per frame
    testing/test_pixel_mask/01_0014.npy      pixel masks, [frames, height, width], nonzero = anomalous

The test videos are the ``test_frame_mask`` entries. Pixel masks are memory-mapped and read one frame at a time.
"""

from __future__ import annotations

import logging

import numpy as np

from .base import Benchmark, BenchmarkVideo, NpyMasks, list_frame_files

logger = logging.getLogger(__name__)

SHANGHAITECH_ANOMALY_NAMES = ("bicycle", "fight", "throw", "pick", "hand truck", "run", "skate", "falling", "jumping",
                              "motorcycle", "tricycle", "cart", "waving stick", "hurdle", "vehicle", "play",
                              "baby carriage", "truck")


class ShanghaiTech(Benchmark):
    """ShanghaiTech Campus test split (stride 2, frame labels and pixel masks)."""

    name = "shanghaitech"
    anomaly_names = SHANGHAITECH_ANOMALY_NAMES
    stride = 2
    has_masks = True
    layout = "testing/{frames/<video>/*.jpg, test_frame_mask/<video>.npy, test_pixel_mask/<video>.npy}"

    def _index(self) -> list[BenchmarkVideo]:
        testing = self.find_dir("testing", "shanghaitech/testing")
        label_dir = testing / "test_frame_mask"
        if not label_dir.is_dir():
            raise self.error(f"{label_dir} is missing")
        pixel_dir = testing / "test_pixel_mask"
        videos = []
        for label_file in sorted(label_dir.glob("*.npy")):
            video_id = label_file.stem
            frames = testing / "frames" / video_id
            if not frames.is_dir():
                raise self.error(f"frames of test video {video_id} are missing ({frames})")
            labels = np.load(label_file).reshape(-1)
            num_frames = len(list_frame_files(frames))
            if labels.size != num_frames:
                raise self.error(f"{label_file.name} labels {labels.size} frames but {frames} holds {num_frames}")
            mask_file = pixel_dir / f"{video_id}.npy"
            masks = NpyMasks(str(mask_file)) if mask_file.is_file() else None
            videos.append(BenchmarkVideo(video_id=video_id, video=frames, is_frame_folder=True,
                                         labels=(labels != 0).astype(np.int8), masks=masks))
        return videos


__all__ = ["SHANGHAITECH_ANOMALY_NAMES", "ShanghaiTech"]
