"""The video-anomaly-detection pipeline: against processor + model called by hand, batching across videos, frame
lists, argument checking, lazy masks, one decoding pass, and loading from a checkpoint without the package."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from lavida.processing.detection import FrameMasks, VideoDetection
from lavida.processing.pipeline_lavida import TASK, VideoAnomalyDetectionPipeline
from lavida.processing.video_io import FrameArray, write_video
from tests.fixtures.without_package import WITHOUT_PACKAGE

NAMES = ["red square", "blue star"]


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(0)
    video = rng.integers(0, 255, (21, 64, 80, 3), dtype=np.uint8)
    video[8:14, 10:40, 20:50] = (220, 40, 40)
    return video


@pytest.fixture(scope="module")
def detector(tiny_lavida_checkpoint):
    from lavida.model_factory import load_model_and_processor

    model, processor = load_model_and_processor(str(tiny_lavida_checkpoint), device="cpu")
    return VideoAnomalyDetectionPipeline(model=model, processor=processor, device="cpu", task=TASK)


@pytest.fixture(scope="module")
def clip_files(frames, tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("clips")
    first, second = folder / "first.mp4", folder / "second.mp4"
    write_video(first, frames, fps=10.0)
    write_video(second, frames[::-1][:13].copy(), fps=10.0)
    return [first, second]


def _by_hand(model, processor, frames, names, stride):
    sampled = np.arange(0, len(frames), stride)
    scores = {}
    for start in range(0, len(sampled), 8):
        index = sampled[start:start + 8]
        clip = frames[index]
        if len(clip) < 8:  # the last clip is completed by repeating its last frame
            clip = np.concatenate([clip, np.repeat(clip[-1:], 8 - len(clip), axis=0)])
        with torch.no_grad():
            out = model(**processor([clip], names))
        for i, frame in enumerate(index):
            scores[int(frame)] = float(torch.sigmoid(out.frame_logits[0, i]))
    keys = np.array(sorted(scores))
    filled = []
    for frame in range(len(frames)):  # nearest sampled frame, ties to the earlier one
        nearest = keys[np.argmin(np.abs(keys - frame))]
        filled.append(scores[int(nearest)])
    return np.array(filled)


@pytest.mark.parametrize("stride", [1, 3])
def test_pipeline_equals_processor_plus_model(detector, frames, stride):
    result = detector(FrameArray(frames, fps=10.0), anomalies=NAMES, stride=stride)
    assert isinstance(result, VideoDetection)
    assert result.video.num_frames == len(frames) and len(result.scores) == len(frames)
    assert result.video.fps == 10.0 and result.options.stride == stride
    expected = _by_hand(detector.model, detector.processor, frames, NAMES, stride)
    np.testing.assert_allclose(result.scores, expected, rtol=1e-5, atol=1e-6)


def test_path_and_bytes_agree_and_masks_come_one_frame_at_a_time(detector, frames, clip_files):
    from_path = detector(str(clip_files[0]), anomalies="red square, blue star", return_masks=True)
    from_bytes = detector(clip_files[0].read_bytes(), anomalies=NAMES)
    np.testing.assert_array_equal(from_path.scores, from_bytes.scores)
    assert from_path.name == "first.mp4" and from_bytes.masks is None
    masks = from_path.masks
    assert isinstance(masks, FrameMasks) and masks.shape == (len(frames), 64, 80) and len(masks) == len(frames)
    assert isinstance(masks.lowres_logits, np.memmap)  # the low-resolution store stays on disk
    assert not hasattr(masks, "__array__")  # never stacked to [F, H, W] behind the caller's back
    frame = masks[9]
    assert frame.shape == (64, 80) and frame.dtype == np.float16 and 0.0 <= frame.min() <= frame.max() <= 1.0
    with pytest.raises(IndexError):
        masks[len(frames)]
    expected = detector.processor.post_process_masks(torch.from_numpy(masks.lowres_logits[9].astype(np.float32)),
                                                     (64, 80))
    np.testing.assert_array_equal(frame, expected.numpy().astype(np.float16))


def test_batch_size_two_on_two_videos_equals_one_video_at_a_time(detector, clip_files):
    one_by_one = [detector(str(path), anomalies=NAMES, batch_size=1) for path in clip_files]
    together = detector([str(path) for path in clip_files], anomalies=NAMES, batch_size=2)
    assert [result.name for result in together] == ["first.mp4", "second.mp4"]
    assert [result.video.num_frames for result in together] == [21, 13]
    for alone, batched in zip(one_by_one, together):
        np.testing.assert_allclose(batched.scores, alone.scores, rtol=1e-5, atol=1e-6)


def test_a_list_of_frames_is_one_video(detector, frames):
    from_list = detector(list(frames), anomalies=NAMES, stride=2)
    from_array = detector(frames, anomalies=NAMES, stride=2)
    assert from_list.video.num_frames == len(frames) and from_list.video.fps == 25.0
    np.testing.assert_array_equal(from_list.scores, from_array.scores)
    several = detector([list(frames), frames[:9]], anomalies=NAMES)  # a list of frame lists: several videos
    assert [result.video.num_frames for result in several] == [len(frames), 9]


def test_unknown_arguments_are_rejected_naming_the_allowed_ones(detector, frames):
    with pytest.raises(TypeError, match=r"unknown argument\(s\) 'strde'; allowed: anomalies, stride, threshold"):
        detector(frames, anomalies=NAMES, strde=10)


@pytest.mark.parametrize("kwargs, message", [
    ({"anomalies": " , "}, "anomaly"),
    ({"anomalies": NAMES, "stride": 0}, "stride must be a positive whole number"),
    ({"anomalies": NAMES, "smoothing_sigma": -1}, "smoothing_sigma must be a non-negative number"),
    ({"anomalies": NAMES, "threshold": 1.5}, r"threshold must be a number in \[0, 1\]"),
])
def test_bad_values_raise_one_clear_error(detector, frames, kwargs, message):
    with pytest.raises(ValueError, match=message):
        detector(FrameArray(frames), **kwargs)


def test_a_file_is_opened_once(detector, clip_files, monkeypatch):
    import av

    opened = []
    original = av.open

    def counting(target, *args, **kwargs):
        opened.append(str(target))
        return original(target, *args, **kwargs)

    monkeypatch.setattr(av, "open", counting)
    result = detector(str(clip_files[1]), anomalies=NAMES, return_masks=True, smoothing_sigma=2.0)
    assert opened == [str(clip_files[1])] and result.video.num_frames == 13


def test_result_dict_is_the_result_json_format(detector, frames):
    result = detector(FrameArray(frames, fps=10.0), anomalies=NAMES, stride=2, smoothing_sigma=1.0)
    content = result.to_dict()
    assert content["format_version"] == 1
    assert content["video"] == {"name": "the frame array [21, 64, 80, 3]", "num_frames": 21, "fps": 10.0,
                                "width": 80, "height": 64, "duration_s": 2.1, "codec": "rawvideo", "damaged": False}
    assert content["settings"] == {"stride": 2, "min_event_frames": 1, "smoothing_sigma": 1.0}
    assert content["anomalies"] == NAMES and content["threshold"] == 0.5
    assert content["model_id"] == detector.model_id and len(content["scores"]) == 21
    json.dumps(content)  # plain Python only


RUN_WITHOUT_PACKAGE = WITHOUT_PACKAGE + textwrap.dedent("""
    import json

    from transformers import pipeline

    try:
        import lavida  # noqa: F401
        raise SystemExit("the package is importable")
    except ModuleNotFoundError:
        pass
    checkpoint, video, out_file = sys.argv[1:4]
    detector = pipeline("video-anomaly-detection", model=checkpoint, trust_remote_code=True, device="cpu")
    result = detector(video, anomalies=["red square", "blue star"], stride=2, return_masks=True)
    json.dump({"module": type(detector).__module__, "result": result.to_dict(), "mask": result.masks[4].tolist(),
               "lavida_modules": [name for name in sys.modules if name.startswith("lavida")]}, open(out_file, "w"))
""")


def test_a_saved_checkpoint_runs_the_pipeline_without_the_package(tiny_lavida_checkpoint, detector, clip_files,
                                                                  tmp_path):
    """The fixture saves model and processor as training does; the checkpoint declares and carries the pipeline."""
    config = json.loads((tiny_lavida_checkpoint / "config.json").read_text())
    assert config["custom_pipelines"][TASK]["impl"] == "pipeline_lavida.VideoAnomalyDetectionPipeline"
    out_file = tmp_path / "out.json"
    subprocess.run([sys.executable, "-c", RUN_WITHOUT_PACKAGE, str(tiny_lavida_checkpoint), str(clip_files[0]),
                    str(out_file)], check=True, capture_output=True, text=True, timeout=300)
    remote = json.loads(out_file.read_text())
    assert remote["module"].startswith("transformers_modules.") and remote["lavida_modules"] == []
    local = detector(str(clip_files[0]), anomalies=NAMES, stride=2, return_masks=True)
    expected = local.to_dict()
    assert remote["result"].pop("model_id") and expected.pop("model_id")
    assert remote["result"] == expected
    np.testing.assert_allclose(remote["mask"], local.masks[4], atol=1e-6)
