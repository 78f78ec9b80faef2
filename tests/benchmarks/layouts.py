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

from lavida.processing.detection import VideoDetection
from lavida.processing.options import DetectionOptions
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


def truncate_file(path: Path, keep: float = 0.5) -> None:
    """Cut ``path`` to the first ``keep`` of its bytes, as a download or an archive cut short leaves a file."""
    data = path.read_bytes()
    path.write_bytes(data[: max(1, int(len(data) * keep))])


UCSD_PED1_DAMAGED_FRAME = ("Test002", 4)  # the release's Ped1 has a truncated frame: UCSDped1/Test/Test017/142.tif


def build_ucsd(tmp: Path, subset: str = "ped2") -> Layout:
    """UCSD_Anomaly_Dataset.v1p2/UCSDped2/Test/{Test001, Test001_gt, UCSDped2.m}; Ped1 leaves Test002 without masks
    and, like the release (whose ``Test017/142.tif`` is truncated), has one truncated frame: ``Test002/005.tif``."""
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
        if subset == "ped1" and name == UCSD_PED1_DAMAGED_FRAME[0]:  # frame 4 is normal, as is frame 3 before it
            truncate_file(test / name / f"{UCSD_PED1_DAMAGED_FRAME[1] + 1:03d}.tif")
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
        Image.fromarray(np.repeat(objects[..., None], 3, axis=-1)).save(annotations / f"{abnormal}_{index:04d}_gt.png")
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


UCF_ANNOTATION = ("Temporal_Anomaly_Annotation_For_Testing_Videos", "Txt_formate", "Temporal_Anomaly_Annotation.txt")


def build_ucf_crime(tmp: Path) -> Layout:
    """Anomaly-Videos-Part-1/Arson/*.mp4, Testing_Normal_Videos_Anomaly/*.mp4 and the annotation archive's
    Temporal_Anomaly_Annotation_For_Testing_Videos/Txt_formate/Temporal_Anomaly_Annotation.txt, whose bounds are
    1-based and inclusive (the authors' Evaluate_Anomaly_Detector.m: GT(st_fr:end_fr) = 1)."""
    root = tmp / "UCF_Crime"
    layout = Layout(root)
    arson, _ = frames_with_squares(12, 32, 48, square_boxes([2, 3, 4, 8, 9], size=8))
    write_video(root / "Anomaly-Videos-Part-1" / "Arson" / "Arson011_x264.mp4", arson, fps=30, crf=0)
    normal, _ = frames_with_squares(9, 32, 48, {})
    write_video(root / "Testing_Normal_Videos_Anomaly" / "Normal_Videos_003_x264.mp4", normal, fps=30, crf=0)
    annotation = root.joinpath(*UCF_ANNOTATION)
    annotation.parent.mkdir(parents=True)
    annotation.write_text(
        "Arson011_x264.mp4  Arson  3  5  9  10  \n"  # 1-based frames 3-5 and 9-10: 0-based 2-4 and 8-9
        "Normal_Videos_003_x264.mp4  Normal  -1  -1  -1  -1  \n")
    labels = np.zeros(12, np.int8)
    labels[[2, 3, 4, 8, 9]] = 1
    layout.labels = {"Arson011_x264": labels, "Normal_Videos_003_x264": np.zeros(9, np.int8)}
    layout.has_masks = {"Arson011_x264": False, "Normal_Videos_003_x264": False}
    return layout


def build_xd_violence(tmp: Path) -> Layout:
    """annotations.txt + TestClips/Videos/<name>_label_B2-0-0.mp4 (violent) and <name>_label_A.mp4 (normal), where
    the authors' make_gt.py reads them; event ends are excluded (make_gt.py: gt_vec[start:end] = 1)."""
    root = tmp / "XD-Violence"
    layout = Layout(root)
    videos = root / "TestClips" / "Videos"
    violent = "Bad.Boys.1995__#01-11-55_01-12-40_label_G-B2-B6"
    frames, _ = frames_with_squares(12, 32, 48, square_boxes([1, 2, 3, 9, 10], size=8))
    write_video(videos / f"{violent}.mp4", frames, fps=24, crf=0)
    normal = "A.Beautiful.Mind.2001__#00-25-20_00-26-10_label_A"
    calm, _ = frames_with_squares(10, 32, 48, {})
    write_video(videos / f"{normal}.mp4", calm, fps=24, crf=0)
    (root / "annotations.txt").write_text(f"{violent} 1 4 9 11\n")  # frames 1-3 and 9-10
    labels = np.zeros(12, np.int8)
    labels[[1, 2, 3, 9, 10]] = 1
    layout.labels = {violent: labels, normal: np.zeros(10, np.int8)}
    layout.has_masks = {violent: False, normal: False}
    return layout


AVENUE_DATASET = "Avenue Dataset"  # Avenue_Dataset.zip unpacks to this folder; ground_truth_demo.zip beside it


def build_avenue(tmp: Path) -> Layout:
    """The two official downloads unpacked side by side: 'Avenue Dataset/testing_videos/{01,02}.avi' and
    'ground_truth_demo/testing_label_mask/{1,2}_label.mat'; the data root is the folder holding both."""
    root = tmp / "avenue"
    layout = Layout(root)
    gt = root / "ground_truth_demo" / "testing_label_mask"
    gt.mkdir(parents=True)
    for number, anomalous in ((1, [4, 5, 6]), (2, [0, 1])):
        frames, masks = frames_with_squares(9, 32, 48, square_boxes(anomalous, size=10))
        write_avi(root / AVENUE_DATASET / "testing_videos" / f"{number:02d}.avi", frames)
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

    def __call__(self, video, names: list[str], stride: int, return_masks: bool) -> VideoDetection:
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise KeyboardInterrupt
        frames = video if isinstance(video, np.ndarray) else np.stack([f.image for f in iter_frames(video)])
        self.calls.append({"kind": "frames" if isinstance(video, np.ndarray) else "file", "names": list(names),
                           "stride": stride, "return_masks": return_masks})
        bright = frames.mean(axis=-1) > (DARK + BRIGHT) / 2  # (F, H, W)
        masks = np.where(bright, 0.9, 0.05).astype(np.float16) if return_masks else None
        return VideoDetection.from_frame_scores(bright.mean(axis=(1, 2)), 25.0, names, size=frames.shape[1:3],
                                                options=DetectionOptions(stride=stride, return_masks=return_masks),
                                                masks=masks, name="oracle", model_id="oracle")
