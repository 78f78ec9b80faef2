"""The pipeline decodes and preprocesses ahead in a background thread: same results as without it, errors raised to
the caller, nothing left running when a call stops early, the caller's torch thread count untouched."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from lavida.errors import UserInputError
from lavida.processing.pipeline_lavida import TASK, VideoAnomalyDetectionPipeline
from lavida.processing.video_io import write_video

NAMES = ["red square", "blue star"]


def _prefetch_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "lavida-prefetch" and thread.is_alive()]


@pytest.fixture(scope="module")
def model_and_processor(tiny_lavida_checkpoint):
    from lavida.model_factory import load_model_and_processor

    return load_model_and_processor(str(tiny_lavida_checkpoint), device="cpu")


def _detector(model_and_processor, prefetch_batches: int) -> VideoAnomalyDetectionPipeline:
    model, processor = model_and_processor
    return VideoAnomalyDetectionPipeline(model=model, processor=processor, device="cpu", task=TASK, batch_size=2,
                                         prefetch_batches=prefetch_batches)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> list[Path]:
    rng = np.random.default_rng(3)
    folder = tmp_path_factory.mktemp("prefetch")
    paths = []
    for index, count in enumerate((37, 29)):
        frames = rng.integers(0, 255, (count, 48, 64, 3), dtype=np.uint8)
        frames[10:20, 8:30, 10:40] = (220, 40, 40)
        paths.append(folder / f"video{index}.mp4")
        write_video(paths[-1], frames, fps=10.0)
    return paths


def test_prefetching_changes_nothing_in_the_results(model_and_processor, videos):
    plain = _detector(model_and_processor, 0)([str(path) for path in videos], anomalies=NAMES, return_masks=True)
    ahead = _detector(model_and_processor, 2)([str(path) for path in videos], anomalies=NAMES, return_masks=True)
    for expected, got in zip(plain, ahead):
        np.testing.assert_array_equal(got.scores, expected.scores)
        np.testing.assert_array_equal(got.sampled_frames, expected.sampled_frames)
        assert [event.to_dict() for event in got.events] == [event.to_dict() for event in expected.events]
        for frame in (0, 15, expected.video.num_frames - 1):
            np.testing.assert_array_equal(got.masks[frame], expected.masks[frame])
    assert not _prefetch_threads()


def test_an_error_in_the_prefetch_thread_reaches_the_caller(model_and_processor, videos, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    detector = _detector(model_and_processor, 2)
    with pytest.raises(UserInputError, match="broken.mp4"):
        detector([str(videos[0]), str(broken)], anomalies=NAMES)
    assert not _prefetch_threads()


def test_a_call_stopped_early_stops_decoding_and_keeps_no_masks(model_and_processor, videos):
    detector = _detector(model_and_processor, 2)
    calls = []

    def stop_after_first_batch(done: int, expected: int | None) -> None:
        calls.append(done)
        raise KeyboardInterrupt("stop")

    with pytest.raises(KeyboardInterrupt):
        detector(str(videos[0]), anomalies=NAMES, return_masks=True, progress=stop_after_first_batch)
    assert calls == [16]  # the first model call (2 clips of 8 frames)
    assert not _prefetch_threads()
    assert detector._mask_stores == {}


def test_the_callers_torch_thread_count_is_kept(model_and_processor, videos):
    before = torch.get_num_threads()
    _detector(model_and_processor, 2)(str(videos[1]), anomalies=NAMES)
    assert torch.get_num_threads() == before
    seen = []
    thread = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    thread.start()
    thread.join()
    assert seen == [before]  # the process-wide default new threads start from


def test_prefetch_batches_must_be_a_whole_number(model_and_processor):
    with pytest.raises(ValueError, match="prefetch_batches"):
        _detector(model_and_processor, -1)


def test_on_cpu_the_pipeline_decodes_in_the_calling_thread_by_default(model_and_processor):
    model, processor = model_and_processor
    detector = VideoAnomalyDetectionPipeline(model=model, processor=processor, device="cpu", task=TASK)
    assert detector.prefetch_batches == 0
