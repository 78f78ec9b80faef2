"""The live route: ``score_clips`` gives the scores the pipeline gives a video; ``LiveWatcher`` on real streams from
another process (UDP, a growing file) with the tiny model; frames dropped when the model falls behind are counted and
the delay stays bounded; a name-grounding model names the anomaly in the event lines."""

from __future__ import annotations

import json
import socket
import threading
import time

import numpy as np
import pytest
import torch

from lavida.processing.live_options import StreamOptions, WatchOptions
from lavida.processing.live_scoring import LiveClip, LiveWatcher
from lavida.processing.options import DetectionOptions
from lavida.processing.pipeline_lavida import TASK, VideoAnomalyDetectionPipeline
from lavida.processing.stream_source import LiveSource
from lavida.processing.video_io import FrameArray, iter_clips, probe_video, write_video
from tests.processing.test_stream_source import free_port
from tests.fixtures.stream_pusher import SAMPLE_FRAMES, start_pusher, wait_for

NAMES = ["red square", "blue star"]
FAST_STREAM = StreamOptions(read_timeout_s=1.5, open_timeout_s=20, reconnect_delay_s=0.5)


def _pipeline(frame_score: str) -> VideoAnomalyDetectionPipeline:
    from lavida import LavidaConfig, LavidaForVideoAnomalyDetection
    from lavida.processing.factories import build_tiny_processor

    torch.manual_seed(0)
    model = LavidaForVideoAnomalyDetection(LavidaConfig.tiny(frame_score=frame_score)).eval()
    return VideoAnomalyDetectionPipeline(model=model, processor=build_tiny_processor(), device="cpu", task=TASK)


@pytest.fixture(scope="module")
def detector():
    return _pipeline("object_score")


@pytest.fixture(scope="module")
def naming_detector():
    return _pipeline("name_grounding")


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (21, 64, 80, 3), dtype=np.uint8)


@pytest.mark.parametrize("stride", [1, 2])
def test_score_clips_gives_the_scores_the_pipeline_gives_the_video(detector, frames, stride):
    whole = detector(FrameArray(frames), anomalies=NAMES, stride=stride)
    size = detector.processor.decoding_size
    scored = list(detector.score_clips(iter_clips(frames, stride, detector.processor.clip_length, size=size),
                                       NAMES, stride=stride))
    np.testing.assert_array_equal(np.concatenate([item.frame_indices for item in scored]), whole.sampled_frames)
    np.testing.assert_allclose(np.concatenate([item.probabilities for item in scored]), whole.sampled_scores,
                               rtol=1e-6, atol=1e-7)
    assert all(item.name_probabilities is None for item in scored)  # an object-score model has no per-name scores


def test_a_name_grounding_model_scores_each_name(naming_detector, frames):
    clips = iter_clips(frames, 1, naming_detector.processor.clip_length)
    first = next(naming_detector.score_clips(clips, NAMES))
    assert first.name_probabilities.shape == (8, 2)
    np.testing.assert_allclose(first.name_probabilities.max(axis=1), first.probabilities, rtol=1e-6)


class _Slow:
    """A detector whose clips take ``seconds`` each."""

    def __init__(self, detector, seconds: float):
        self.detector, self.seconds = detector, seconds
        self.processor = detector.processor

    def score_clips(self, clips, anomalies, **options):
        for result in self.detector.score_clips(clips, anomalies, **options):
            time.sleep(self.seconds)
            yield result


def test_frames_are_dropped_and_counted_when_the_model_falls_behind_and_the_delay_stays_bounded(detector, tmp_path):
    from tests.fixtures.stream_pusher import SAMPLE, read_frames

    source = tmp_path / "recorded.mkv"  # Matroska: read as a stream, far faster than 0.3 s a clip
    write_video(source, read_frames(SAMPLE) * 2, fps=25.0)
    watch = WatchOptions(queue_clips=1, pre_event_s=0, post_event_s=0)
    watcher = LiveWatcher(_Slow(detector, seconds=0.3), LiveSource(str(source), FAST_STREAM), NAMES,
                          DetectionOptions(), watch, tmp_path / "out", report=lambda message: None)
    lags: list[int] = []  # how far the decoder is past a clip's first frame when the model takes it
    take = watcher.queue.get

    def recording_take(timeout):
        item = take(timeout)
        if isinstance(item, LiveClip):
            lags.append(watcher.state.decoded_frames - int(item.clip.frame_indices[0]))
        return item

    watcher.queue.get = recording_take
    state = watcher.run()
    assert state.decoded_frames == 2 * SAMPLE_FRAMES
    assert state.dropped_frames > 0
    assert state.scored_frames + state.dropped_frames == state.decoded_frames  # every frame scored or counted
    rows = (tmp_path / "out" / "scores.csv").read_text().splitlines()[1:]
    assert len(rows) == state.scored_frames
    # the clip taken is never older than the clips the queue holds, the clip being filled and itself
    assert max(lags) <= (watch.queue_clips + 2) * detector.processor.clip_length


def test_a_udp_stream_from_another_process(detector, tmp_path):
    port = free_port(socket.SOCK_DGRAM)
    pusher = start_pusher(f"udp://127.0.0.1:{port}?pkt_size=1316", "--loops", "40")
    out = tmp_path / "out"
    stop = threading.Event()
    watcher = LiveWatcher(detector, LiveSource(f"udp://127.0.0.1:{port}", FAST_STREAM), NAMES,
                          DetectionOptions(threshold=0.0), WatchOptions(max_seconds=120), out,
                          report=lambda message: None)
    runner = threading.Thread(target=watcher.run, args=(stop,))
    try:
        runner.start()
        wait_for(lambda: watcher.state.scored_frames >= 16)
    finally:
        stop.set()
        runner.join(timeout=60)
        pusher.kill()
        pusher.wait()
    assert not runner.is_alive()
    lines = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert [line["type"] for line in lines] == ["open", "close"]  # the event open at the stop closed
    assert probe_video(out / lines[1]["clip"]).num_frames >= 2


def test_a_file_being_written_is_followed_and_its_events_name_the_anomaly(naming_detector, tmp_path):
    recording = tmp_path / "recording.ts"
    pusher = start_pusher(str(recording))
    wait_for(lambda: recording.exists() and recording.stat().st_size > 0, timeout=60)
    messages: list[str] = []
    watcher = LiveWatcher(naming_detector, LiveSource(str(recording), FAST_STREAM), NAMES,
                          DetectionOptions(threshold=0.0), WatchOptions(), tmp_path / "out", report=messages.append)
    state = watcher.run()
    pusher.wait(timeout=30)
    assert state.decoded_frames == SAMPLE_FRAMES  # every frame, read as the file grew
    assert any(message.endswith("the file stopped growing for 1.5 s; the watch ends") for message in messages)
    lines = [json.loads(line) for line in (tmp_path / "out" / "events.jsonl").read_text().splitlines()]
    assert [line["type"] for line in lines] == ["open", "close"]
    assert lines[1]["anomaly"] in NAMES and list(lines[1]["name_scores"])[0] == lines[1]["anomaly"]
    assert sorted(lines[1]["name_scores"]) == sorted(NAMES)
