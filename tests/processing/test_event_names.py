"""Which anomaly each event names, in result.json and from the pipeline of a name-grounding model (an object-score
model names none); the naming itself (``name_events``) is tested with the rest of the post-processing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lavida.processing.detection import VideoDetection
from lavida.processing.video_io import FrameArray

NAMES = ["fire", "fighting", "bicycle"]
# Five sampled frames (stride 4) of a 20-frame video; each row is the names' probabilities, the score their maximum.
NAME_PROBABILITIES = np.array([[0.10, 0.02, 0.05],   # frames 0-2
                               [0.20, 0.70, 0.05],   # frames 3-6   (ties go to the earlier sampled frame)
                               [0.90, 0.30, 0.10],   # frames 7-10
                               [0.05, 0.10, 0.20],   # frames 11-14: below the threshold, outside the events
                               [0.10, 0.8123456789, 0.30]], np.float32)  # frames 15-19


def _pipeline(frame_score: str):
    from lavida import LavidaConfig, LavidaForVideoAnomalyDetection
    from lavida.processing.factories import build_tiny_processor
    from lavida.processing.pipeline_lavida import TASK, VideoAnomalyDetectionPipeline

    torch.manual_seed(0)
    config = LavidaConfig.tiny(frame_score=frame_score, initializer_range=0.2)
    model = LavidaForVideoAnomalyDetection(config).eval()
    return VideoAnomalyDetectionPipeline(model=model, processor=build_tiny_processor(), device="cpu", task=TASK)


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(3)
    video = rng.integers(0, 255, (21, 64, 80, 3), dtype=np.uint8)
    video[6:15, 10:40, 20:50] = (220, 40, 40)
    return video


def test_result_json_events_say_which_anomaly_with_each_names_rounded_peak():
    per_frame = NAME_PROBABILITIES[[0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 4]]  # (20, 3)
    detection = VideoDetection.from_frame_scores(per_frame.max(axis=1), 10.0, NAMES, name_probabilities=per_frame)
    content = json.loads(json.dumps(detection.to_dict()))
    first, second = content["events"]
    assert first["anomaly"] == "fire" and second["anomaly"] == "fighting"
    assert second["name_scores"] == {"fighting": 0.812346, "bicycle": 0.3, "fire": 0.1}
    assert list(second["name_scores"]) == ["fighting", "bicycle", "fire"]
    plain = VideoDetection.from_frame_scores(per_frame.max(axis=1), 10.0, NAMES).to_dict()["events"]
    assert len(plain) == 2 and all(event["anomaly"] is None and event["name_scores"] is None for event in plain)


def test_a_name_grounding_model_names_each_event_and_an_object_score_model_none(frames):
    detector = _pipeline("name_grounding")
    names = ["red square", "blue star"]
    first = detector(FrameArray(frames, fps=10.0), anomalies=names, stride=2)
    threshold = float(np.median(first.sampled_scores))
    result = detector(FrameArray(frames, fps=10.0), anomalies=names, stride=2, threshold=threshold)
    assert result.name_probabilities.shape == (len(result.sampled_frames), 2)  # (S, N): sampled frames only
    np.testing.assert_allclose(result.name_probabilities.max(axis=1), result.sampled_scores, rtol=1e-6)
    assert result.events
    for event in result.events:
        rows = [np.abs(result.sampled_frames - frame).argmin() for frame in range(event.start_frame,
                                                                                   event.end_frame + 1)]
        peaks = result.name_probabilities[sorted(set(rows))].max(axis=0)
        assert event.anomaly == names[int(np.argmax(peaks))]
        np.testing.assert_allclose([event.name_scores[name] for name in names], peaks)
    saved = result.to_dict()["events"]
    assert [event["anomaly"] for event in saved] == [event.anomaly for event in result.events]

    plain = _pipeline("object_score")(FrameArray(frames, fps=10.0), anomalies=names, stride=2, threshold=0.0)
    assert plain.name_probabilities is None and plain.events
    assert all(event["anomaly"] is None for event in plain.to_dict()["events"])
