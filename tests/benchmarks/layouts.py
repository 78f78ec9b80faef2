"""Tiny copies of each benchmark's official download layout, built by the tests, and a scorer test double.

Every frame is a dark background (value 40); an anomaly is a bright square (value 230) drawn exactly where the ground
truth marks it. The ``oracle_score_fn`` double scores a frame by its fraction of bright pixels and returns the bright
pixels as its mask, so a loader whose labels, masks or frame order are off by even one frame scores below 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
from PIL import Image
from scipy.io import savemat

from lavida.processing.video_io import iter_frames, write_video

DARK, BRIGHT, GREY = 40, 230, 120


def frames_with_squares(num_frames: int, height: int, width: int, boxes: dict[int, tuple[int, int, int, int]]
                        ) -> tuple[np.ndarray, np.ndarray]:
    """``uint8 [F, H, W, 3]`` frames and ``bool [F, H, W]`` masks with a bright box ``(x0, y0, x1, y1)`` per frame."""
    frames = np.full((num_frames, height, width, 3), DARK, dtype=np.uint8)
    masks = np.zeros((num_frames, height, width), dtype=bool)
    for index, (x0, y0, x1, y1) in boxes.items():
        frames[index, y0:y1, x0:x1] = BRIGHT
        masks[index, y0:y1, x0:x1] = True
    return frames, masks


def square_boxes(anomalous: list[int], size: int = 8, start: tuple[int, int] = (4, 4)) -> dict[int, tuple]:
    """A square moving one pixel right per frame, present in the ``anomalous`` frames."""
    x, y = start
    return {f: (x + f, y, x + f + size, y + size) for f in anomalous}


def write_avi(path: Path, frames: np.ndarray, fps: int = 25) -> None:
    """An MPEG-4 Part 2 ``.avi`` (Avenue's container), near-lossless."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w", format="avi") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"qscale": "1"}
        for index, frame in enumerate(frames):
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            video_frame.pts = index
            container.mux(stream.encode(video_frame))
        container.mux(stream.encode(None))


def save_frames(folder: Path, frames: np.ndarray, pattern: str, gray: bool = False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(frames):
        image = Image.fromarray(frame[..., 0] if gray else frame)
        image.save(folder / pattern.format(index=index, number=index + 1))


@dataclass
class Layout:
    """A built layout: its data root and the expected test videos (id -> frame labels, mask presence)."""

    root: Path
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    has_masks: dict[str, bool] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------------------------
# One builder per benchmark
# ---------------------------------------------------------------------------------------------------------------------


def build_ucsd(tmp: Path, subset: str = "ped2") -> Layout:
    """UCSD_Anomaly_Dataset.v1p2/UCSDped2/Test/{Test001, Test001_gt, UCSDped2.m}; Ped1 leaves Test002 without masks."""
    root = tmp / "ucsd"
    test = root / "UCSD_Anomaly_Dataset.v1p2" / f"UCSD{subset}" / "Test"
    layout = Layout(root)
    specs = {"Test001": [2, 3, 4], "Test002": [0, 1, 6]}  # 0-based anomalous frames, 7 frames each
    for name, anomalous in specs.items():
        frames, masks = frames_with_squares(7, 24, 36, square_boxes(anomalous, size=6))
        save_frames(test / name, frames, "{number:03d}.tif", gray=True)
        (test / name / "._001.tif").write_bytes(b"not an image")  # macOS archive debris, ignored
        with_masks = subset == "ped2" or name == "Test001"
        if with_masks:
            gt = test / f"{name}_gt"
            gt.mkdir(parents=True)
            for index, mask in enumerate(masks):
                Image.fromarray(mask.astype(np.uint8) * 255).save(gt / f"frame{index + 1:03d}.bmp")
        labels = np.zeros(7, np.int8)
        labels[anomalous] = 1
        layout.labels[name] = labels
        layout.has_masks[name] = with_masks
    (test / f"UCSD{subset}.m").write_text(
        "TestVideoFile = {};\n"
        "% frame-level ground truth (1-based)\n"
        "TestVideoFile{end+1}.gt_frame = [3:5];\n"
        "TestVideoFile{end+1}.gt_frame = [1:2, 7];\n")
    return layout


def build_shanghaitech(tmp: Path) -> Layout:
    """testing/{frames/<video>/000.jpg, test_frame_mask/<video>.npy, test_pixel_mask/<video>.npy}."""
    root = tmp / "shanghaitech"
    testing = root / "testing"
    layout = Layout(root)
    for video_id, anomalous in {"01_0014": [3, 4, 5], "02_0128": []}.items():
        frames, masks = frames_with_squares(8, 32, 48, square_boxes(anomalous, size=10))
        save_frames(testing / "frames" / video_id, frames, "{index:03d}.jpg")
        labels = masks.any(axis=(1, 2)).astype(np.int8)
        (testing / "test_frame_mask").mkdir(parents=True, exist_ok=True)
        (testing / "test_pixel_mask").mkdir(parents=True, exist_ok=True)
        np.save(testing / "test_frame_mask" / f"{video_id}.npy", labels.astype(np.int64))
        np.save(testing / "test_pixel_mask" / f"{video_id}.npy", masks.astype(np.uint8))
        layout.labels[video_id] = labels
        layout.has_masks[video_id] = True
    return layout


def build_ubnormal(tmp: Path) -> Layout:
    """Scene1/abnormal_scene_1_scenario_1.mp4 + annotations (object 1 anomalous in frames 3-6, object 2 normal),
    Scene2/normal_scene_2_scenario2_1.mp4, and scripts/{abnormal,normal}_test_video_names.txt."""
    root = tmp / "UBnormal"
    layout = Layout(root)
    num_frames, height, width = 10, 48, 64
    abnormal = "abnormal_scene_1_scenario_1"
    anomalous = [3, 4, 5, 6]
    frames, _ = frames_with_squares(num_frames, height, width, square_boxes(anomalous, size=12, start=(6, 8)))
    annotations = root / "Scene1" / f"{abnormal}_annotations"
    annotations.mkdir(parents=True)
    for index in range(num_frames):
        objects = np.zeros((height, width), np.uint8)
        x0 = 6 + index
        objects[8:20, x0:x0 + 12] = 1  # object 1 is present all along, anomalous only in its track's frames
        objects[30:40, 40:50] = 2  # object 2: a normal object, never part of the anomaly mask
        frames[index, 30:40, 40:50] = GREY
        Image.fromarray(objects).save(annotations / f"{abnormal}_{index:04d}_gt.png")
    (annotations / f"{abnormal}_tracks.txt").write_text("1,3,6\n")
    write_video(root / "Scene1" / f"{abnormal}.mp4", frames, fps=25, crf=0)
    normal = "normal_scene_2_scenario2_1"
    normal_frames, _ = frames_with_squares(8, height, width, {})
    write_video(root / "Scene2" / f"{normal}.mp4", normal_frames, fps=25, crf=0)
    scripts = root / "scripts"
    scripts.mkdir()
    (scripts / "abnormal_test_video_names.txt").write_text(f"{abnormal}\n")
    (scripts / "normal_test_video_names.txt").write_text(f"{normal}\n")
    (scripts / "abnormal_training_video_names.txt").write_text("abnormal_scene_3_scenario_1\n")  # not a test video
    labels = np.zeros(num_frames, np.int8)
    labels[anomalous] = 1
    layout.labels = {abnormal: labels, normal: np.zeros(8, np.int8)}
    layout.has_masks = {abnormal: True, normal: True}
    return layout


def build_ucf_crime(tmp: Path) -> Layout:
    """Temporal_Anomaly_Annotation_for_Testing_Videos.txt + Anomaly-Videos-Part-1/Arson/*.mp4 + normal videos."""
    root = tmp / "UCF_Crime"
    layout = Layout(root)
    arson, _ = frames_with_squares(12, 32, 48, square_boxes([2, 3, 4, 8, 9], size=8))
    write_video(root / "Anomaly-Videos-Part-1" / "Arson" / "Arson011_x264.mp4", arson, fps=30, crf=0)
    normal, _ = frames_with_squares(9, 32, 48, {})
    write_video(root / "Testing_Normal_Videos_Anomaly" / "Normal_Videos_003_x264.mp4", normal, fps=30, crf=0)
    (root / "Temporal_Anomaly_Annotation_for_Testing_Videos.txt").write_text(
        "Arson011_x264.mp4  Arson  2  4  8  9\n"
        "Normal_Videos_003_x264.mp4  Normal  -1  -1  -1  -1\n")
    labels = np.zeros(12, np.int8)
    labels[[2, 3, 4, 8, 9]] = 1
    layout.labels = {"Arson011_x264": labels, "Normal_Videos_003_x264": np.zeros(9, np.int8)}
    layout.has_masks = {"Arson011_x264": False, "Normal_Videos_003_x264": False}
    return layout


def build_xd_violence(tmp: Path) -> Layout:
    """annotations.txt + videos/<name>_label_B2-0-0.mp4 (violent) and videos/<name>_label_A.mp4 (normal)."""
    root = tmp / "XD-Violence"
    layout = Layout(root)
    violent = "Bad.Boys.1995__#01-11-55_01-12-40_label_G-B2-B6"
    frames, _ = frames_with_squares(12, 32, 48, square_boxes([1, 2, 3, 9, 10], size=8))
    write_video(root / "videos" / f"{violent}.mp4", frames, fps=24, crf=0)
    normal = "A.Beautiful.Mind.2001__#00-25-20_00-26-10_label_A"
    calm, _ = frames_with_squares(10, 32, 48, {})
    write_video(root / "videos" / f"{normal}.mp4", calm, fps=24, crf=0)
    (root / "annotations.txt").write_text(f"{violent} 1 3 9 10\n")
    labels = np.zeros(12, np.int8)
    labels[[1, 2, 3, 9, 10]] = 1
    layout.labels = {violent: labels, normal: np.zeros(10, np.int8)}
    layout.has_masks = {violent: False, normal: False}
    return layout


def build_avenue(tmp: Path) -> Layout:
    """testing_videos/01.avi, frames of video 02 in testing/frames/02/, ground_truth_demo/testing_label_mask/*.mat."""
    root = tmp / "Avenue Dataset"
    layout = Layout(root)
    gt = root / "ground_truth_demo" / "testing_label_mask"
    gt.mkdir(parents=True)
    for number, anomalous in ((1, [4, 5, 6]), (2, [0, 1])):
        frames, masks = frames_with_squares(9, 32, 48, square_boxes(anomalous, size=10))
        if number == 1:
            write_avi(root / "testing_videos" / "01.avi", frames)
        else:
            save_frames(root / "testing" / "frames" / "02", frames, "{index:04d}.jpg")
        cells = np.empty((1, len(masks)), dtype=object)
        for index, mask in enumerate(masks):
            cells[0, index] = mask.astype(np.uint8)
        savemat(gt / f"{number}_label.mat", {"volLabel": cells})
        layout.labels[f"{number:02d}"] = masks.any(axis=(1, 2)).astype(np.int8)
        layout.has_masks[f"{number:02d}"] = True
    return layout


BUILDERS = {"ped1": lambda tmp: build_ucsd(tmp, "ped1"), "ped2": lambda tmp: build_ucsd(tmp, "ped2"),
            "shanghaitech": build_shanghaitech, "ubnormal": build_ubnormal, "ucf-crime": build_ucf_crime,
            "xd-violence": build_xd_violence, "avenue": build_avenue}


# ---------------------------------------------------------------------------------------------------------------------
# The scorer test double
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class OracleScorer:
    """``score_fn`` double: bright pixels are the anomaly. Records every call (video kind, names, stride)."""

    calls: list[dict] = field(default_factory=list)
    fail_after: int | None = None  # raise KeyboardInterrupt on this call (0-based), to simulate an interruption

    def __call__(self, video, names: list[str], stride: int, need_masks: bool) -> dict:
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise KeyboardInterrupt
        frames = video if isinstance(video, np.ndarray) else np.stack([f.image for f in iter_frames(video)])
        self.calls.append({"kind": "frames" if isinstance(video, np.ndarray) else "file", "names": list(names),
                           "stride": stride, "need_masks": need_masks})
        bright = frames.mean(axis=-1) > (DARK + BRIGHT) / 2  # (F, H, W)
        result = {"scores": bright.mean(axis=(1, 2)).tolist(), "num_frames": int(frames.shape[0]), "fps": 25.0,
                  "events": []}
        if need_masks:
            result["masks"] = np.where(bright, 0.9, 0.05).astype(np.float16)
        return result
