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

from lavida.processing.detection import RESULT_FORMAT_VERSION, FrameMasks, VideoDetection
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


def test_frames_between_scored_ones_get_masks_from_their_own_pixels(varied_lavida_checkpoint):
    """At stride 2, frame 2i+1 repeats frame 2i+2: with ``mask_stride=1`` its mask is frame 2i+2's when both share a
    clip (each frame is decoded on its own with its clip's prompt), not frame 2i's, which ``mask_stride=2`` gives it;
    the scores do not depend on ``mask_stride``."""
    from lavida.model_factory import load_model_and_processor

    model, processor = load_model_and_processor(str(varied_lavida_checkpoint), device="cpu")
    detector = VideoAnomalyDetectionPipeline(model=model, processor=processor, device="cpu", task=TASK, batch_size=1)
    rng = np.random.default_rng(1)
    video = rng.integers(0, 255, (22, 64, 80, 3), dtype=np.uint8)
    video[1:21:2] = video[2:22:2]  # each odd frame repeats the next even one
    dense = detector(FrameArray(video, fps=10.0), anomalies=NAMES, stride=2, return_masks=True, mask_stride=1)
    sparse = detector(FrameArray(video, fps=10.0), anomalies=NAMES, stride=2, return_masks=True, mask_stride=2)
    np.testing.assert_array_equal(dense.scores, sparse.scores)
    np.testing.assert_array_equal(dense.masks.mask_frames, np.arange(22))
    np.testing.assert_array_equal(sparse.masks.mask_frames, np.arange(0, 22, 2))
    rows = dense.masks.lowres_logits.astype(np.float32)  # (22, h, w): one row per frame
    same_clip = [1, 3, 5, 7, 9, 11, 13, 17, 19]  # frames 0-14 are clip 1's scored frames, 16-20 clip 2's
    for odd in same_clip:
        np.testing.assert_allclose(rows[odd], rows[odd + 1], atol=2e-3)
        assert np.abs(rows[odd] - rows[odd - 1]).max() > 1e-2  # not the previous scored frame's mask
        np.testing.assert_array_equal(sparse.masks[odd], sparse.masks[odd - 1])  # scored frames only: the nearest's
    np.testing.assert_array_equal(dense.masks[4], sparse.masks[4])  # a scored frame's mask is the same either way


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
    assert content["format_version"] == RESULT_FORMAT_VERSION == 2
    assert all(event["anomaly"] is None for event in content["events"])  # an object-score model names none
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


def test_smoothing_sigma_smooths_the_pipelines_scores_before_the_events(detector, frames, monkeypatch):
    """The model's frame logits get a shape in each clip (high on frames 2-5 and on frame 7, a one-frame flicker);
    ``smoothing_sigma`` must smooth that curve and the events must be cut from the smoothed one."""
    from lavida.processing.postprocessing import find_events, smooth_scores

    forward = detector.model.forward

    def blocky(*args, **kwargs):
        output = forward(*args, **kwargs)
        pattern = torch.full_like(output.frame_logits, -3.0)
        pattern[:, 2:6] = 3.0
        pattern[:, 7] = 3.0
        output.frame_logits = output.frame_logits + pattern  # (b, T)
        return output

    monkeypatch.setattr(detector.model, "forward", blocky)
    video = FrameArray(frames, fps=10.0)
    plain = detector(video, anomalies=NAMES)
    smoothed = detector(video, anomalies=NAMES, smoothing_sigma=1.5)
    assert np.ptp(plain.scores) > 0.8  # the blocks show
    np.testing.assert_allclose(smoothed.scores, smooth_scores(plain.scores, 1.5), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(smoothed.sampled_scores, plain.sampled_scores)
    spans = [(event.start_frame, event.end_frame) for event in smoothed.events]
    assert spans == [(event.start_frame, event.end_frame) for event in find_events(smoothed.scores, 10.0)]
    assert spans != [(event.start_frame, event.end_frame) for event in plain.events]
    assert smoothed.to_dict()["settings"]["smoothing_sigma"] == 1.5


# ---------------------------------------------------------------------------------------------------------------------
# Video geometry and time: huge, rotated and variable-frame-rate videos
# ---------------------------------------------------------------------------------------------------------------------


def _spy_on_clip_sizes(monkeypatch) -> list[tuple[int, ...]]:
    """The shapes of the clips the pipeline hands to the processor."""
    from lavida.processing import pipeline_lavida

    shapes: list[tuple[int, ...]] = []
    original = pipeline_lavida.iter_clips

    def spying(*args, **kwargs):
        for clip in original(*args, **kwargs):
            shapes.append(clip.frames.shape)
            yield clip

    monkeypatch.setattr(pipeline_lavida, "iter_clips", spying)
    return shapes


def test_a_huge_video_is_decoded_at_the_size_the_processor_needs(detector, tmp_path, monkeypatch):
    """Memory must not grow with resolution: frames reach the processor at ``decoding_size``, results keep the
    video's own size."""
    side = 1100
    video = np.random.default_rng(1).integers(0, 255, (9, side, side, 3), dtype=np.uint8)
    path = tmp_path / "huge.mp4"
    write_video(path, video, fps=10.0, preset="ultrafast")
    expected = detector.processor.decoding_size(side, side)
    assert max(expected) < side // 2  # the tiny processor needs 128 px for SAM2, 56 x 56 px for the MLLM
    shapes = _spy_on_clip_sizes(monkeypatch)
    result = detector(str(path), anomalies=NAMES, return_masks=True)
    assert set(shapes) == {(8, *expected, 3)}
    assert (result.video.width, result.video.height, result.video.num_frames) == (side, side, 9)
    assert result.masks.shape == (9, side, side)  # masks map back to the video's own size
    assert result.masks.frame(3, (40, 30)).shape == (40, 30)  # ... or to any other (the overlay's)
    shapes.clear()
    detector(FrameArray(video[:, ::8, ::8].copy()), anomalies=NAMES)  # 138 px: below the margin, untouched
    assert set(shapes) == {(8, 138, 138, 3)}


def test_decoding_size_keeps_normal_videos_and_the_mllm_grid():
    from lavida.processing.factories import build_tiny_processor
    from lavida.processing.processing_lavida import DECODING_MARGIN

    processor = build_tiny_processor(llm_frame_pixels=112 * 112, sam_size=128)
    for size in [(64, 80), (256, 256), (480, 640), (511, 300), (1, 64)]:
        assert processor.decoding_size(*size) == size  # nothing to gain: decoded as they are
    for height, width in [(8000, 8000), (2160, 3840), (3000, 1000), (1080, 1920)]:
        small = processor.decoding_size(height, width)
        assert small[0] < height and small[1] < width
        assert min(small) >= DECODING_MARGIN * 128 - 1  # still at least twice SAM2's input
        assert abs(small[0] / small[1] - height / width) < 0.02 * height / width  # aspect ratio kept
        patches = processor.video_processor.get_num_of_video_patches
        assert patches(8, *small, {}) == patches(8, height, width, {})  # the MLLM sees the same grid
    wide_budget = processor.decoding_size(2160, 3840, llm_frame_pixels=[300 * 28 * 28, 400 * 28 * 28])
    assert wide_budget > processor.decoding_size(2160, 3840)  # a larger MLLM budget keeps more pixels


def _rotated_video(path: Path, rotation: int, height: int, width: int, frames: int = 10) -> Path:
    import av
    from fractions import Fraction

    rng = np.random.default_rng(2)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(10))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.set_display_rotation(rotation)
        for _ in range(frames):
            image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    return path


def test_a_phone_video_is_scored_and_overlaid_upright(detector, tmp_path, monkeypatch):
    from lavida.processing.result_writers import OutputOptions, overlay_frame_size, write_result_folder
    from lavida.processing.video_io import probe_video

    path = _rotated_video(tmp_path / "portrait.mp4", -90, height=48, width=80)  # stored landscape, shown portrait
    shapes = _spy_on_clip_sizes(monkeypatch)
    result = detector(str(path), anomalies=NAMES, return_masks=True)
    assert set(shapes) == {(8, 80, 48, 3)}  # the model sees the picture upright
    assert (result.video.height, result.video.width) == (80, 48) and result.masks.shape == (10, 80, 48)
    folder = write_result_folder(tmp_path / "out", result, OutputOptions(plot=False, progress=False))
    overlay = probe_video(folder / "overlay.mp4")
    assert (overlay.height, overlay.width, overlay.num_frames) == (*overlay_frame_size(80, 48), 10)  # band below
    assert json.loads((folder / "result.json").read_text())["video"]["height"] == 80


VFR_TIMES = [0.0, 0.05, 0.1, 0.15, 1.0, 1.05, 1.1, 2.4, 2.45, 2.5, 2.55]  # bursts and pauses, in seconds


def test_variable_frame_rate_times_come_from_the_frames(detector, frames, tmp_path):
    """Event, scores.csv and overlay times follow the frames' timestamps, not ``index / average fps``."""
    import csv

    import av
    from fractions import Fraction

    from lavida.processing.result_writers import OutputOptions, write_result_folder
    from lavida.processing.video_io import probe_video

    path = tmp_path / "screen.mkv"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(10))
        stream.width, stream.height, stream.pix_fmt = 80, 64, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        for index, time in enumerate(VFR_TIMES):
            frame = av.VideoFrame.from_ndarray(frames[index], format="rgb24")
            frame.pts, frame.time_base = round(time * 1000), Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    result = detector(str(path), anomalies=NAMES, threshold=0.0, stride=2)  # every frame anomalous: one event
    np.testing.assert_allclose(result.frame_times_s, VFR_TIMES, atol=1e-6)
    (event,) = result.events
    assert (event.start_frame, event.end_frame) == (0, len(VFR_TIMES) - 1)
    assert event.start_s == 0.0 and event.end_s == pytest.approx(VFR_TIMES[-1] + 1 / result.video.fps)
    assert result.video.duration_s == pytest.approx(event.end_s)
    folder = write_result_folder(tmp_path / "out", result, OutputOptions(progress=False))
    with open(folder / "scores.csv", newline="") as handle:
        times = [float(row["time_s"]) for row in csv.DictReader(handle)]
    np.testing.assert_allclose(times, VFR_TIMES, atol=1e-6)
    np.testing.assert_allclose(probe_video(folder / "overlay.mp4").frame_times_s, VFR_TIMES, atol=1e-4)
