"""The Space over HTTP with gradio_client: same results as ``lavida detect``, clear errors, concurrent requests."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av
import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from lavida.cli import main as lavida_main
from lavida.processing.result_writers import overlay_frame_size

from .conftest import MAX_DURATION_S


@pytest.fixture(autouse=True)
def _downloads_stage_in_tmp_path(tmp_path):
    """gradio_client stages each download in a folder of its own in the system temp folder and leaves that folder
    behind: keep those in the test's own folder (a patch of its own, which a test's ``monkeypatch.undo()`` keeps)."""
    import tempfile

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tempfile, "tempdir", str(tmp_path))
        yield


def _client(live_app, tmp_path: Path) -> Client:
    return Client(live_app.url, verbose=False, download_files=str(tmp_path / "downloads"))


def _detect(client: Client, video: Path, names: str, stride: int, threshold: float,
            calibration: Path | None = None):
    return client.predict(handle_file(str(video)), names, stride, threshold,
                          None if calibration is None else handle_file(str(calibration)), api_name="/detect")


def _frames(path: str | Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def _cli_detect(video: Path, names: str, checkpoint: Path, out: Path, stride: int, threshold: float) -> Path:
    status = lavida_main(["detect", str(video), "--anomalies", names, "--model", str(checkpoint), "--out", str(out),
                          "--stride", str(stride), "--threshold", repr(threshold)])
    assert status == 0
    return out / video.stem


def test_api_agrees_with_lavida_detect(live_app, videos, tiny_checkpoint, reference_detector, tmp_path):
    names, stride = "red square, fighting", 1
    # A threshold at the median score splits the video into events instead of covering all of it or none.
    scores = reference_detector(str(videos["walk"]), anomalies=names, stride=stride).scores
    threshold = float(np.median(scores))
    expected = _cli_detect(videos["walk"], names, tiny_checkpoint, tmp_path / "cli", stride, threshold)
    expected_json = json.loads((expected / "result.json").read_text())
    assert 0 < sum(scores >= threshold) < len(scores) and expected_json["num_events"] > 0

    plot, overlay, table, files, summary = _detect(_client(live_app, tmp_path), videos["walk"], names, stride,
                                                   threshold)
    downloaded = {Path(f).name: Path(f) for f in files}
    assert sorted(downloaded) == ["result.json", "scores.csv"]
    assert json.loads(downloaded["result.json"].read_text()) == expected_json  # scores, events, settings, model
    assert downloaded["scores.csv"].read_bytes() == (expected / "scores.csv").read_bytes()
    assert Path(plot).read_bytes() == (expected / "scores.png").read_bytes()
    # the events table is result.json's events, rounded for display
    rows = [[i + 1, e["anomaly"] or "", round(e["start_s"], 3), round(e["end_s"], 3), e["start_frame"],
             e["end_frame"], round(e["peak_score"], 3), round(e["mean_score"], 3)]
            for i, e in enumerate(expected_json["events"])]
    assert table["data"] == rows
    assert f"{expected_json['num_events']} event" in summary
    shown, reference = _frames(overlay), _frames(expected / "overlay.mp4")
    assert shown.shape == reference.shape == (16, *overlay_frame_size(64, 80), 3)
    assert np.abs(shown.astype(int) - reference.astype(int)).mean() < 1.0


def test_api_agrees_with_lavida_detect_given_the_same_calibration(live_app, videos, tiny_checkpoint, tmp_path):
    from lavida.processing.calibration import Calibration, CalibrationTarget, FalseAlarms, FittedOn

    calibration = tmp_path / "site.json"
    Calibration(threshold=0.0, min_event_frames=2, smoothing_sigma=1.0, target=CalibrationTarget(frame_fpr=0.01),
                reached=FalseAlarms(0, 0.0, 0.0),
                fitted_on=FittedOn(num_videos=1, num_frames=10, hours=0.001, model_id=str(tiny_checkpoint),
                                   anomalies=["fighting"])).save(calibration)
    status = lavida_main(["detect", str(videos["walk"]), "--anomalies", "fighting", "--model", str(tiny_checkpoint),
                          "--out", str(tmp_path / "cli"), "--calibration", str(calibration)])
    assert status == 0
    expected = json.loads((tmp_path / "cli" / "walk" / "result.json").read_text())
    _, _, table, files, _ = _detect(_client(live_app, tmp_path), videos["walk"], "fighting", 1, 0.8, calibration)
    shown = json.loads(next(Path(f) for f in files if f.endswith("result.json")).read_text())
    assert shown["threshold"] == 0.0 and shown["settings"]["min_event_frames"] == 2  # the calibration's, not 0.8
    assert shown["scores"] == expected["scores"] and shown["events"] == expected["events"]
    assert shown["settings"]["calibration"]["sha256"] == expected["settings"]["calibration"]["sha256"]
    assert shown["settings"]["calibration"]["file"] == "site.json"
    assert len(table["data"]) == expected["num_events"] > 0


def test_odd_sized_video_gets_a_browser_playable_overlay(live_app, videos, tmp_path):
    plot, overlay, table, files, summary = _detect(_client(live_app, tmp_path), videos["odd"], "blue square", 1, 0.5)
    with av.open(overlay) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.format.name) == ("h264", "yuv420p")
        assert (stream.height, stream.width) == overlay_frame_size(45, 61)  # the score band below, even sides
    result = json.loads(next(Path(f) for f in files if f.endswith("result.json")).read_text())
    assert (result["video"]["width"], result["video"]["height"], result["video"]["name"]) == (61, 45, "odd size.mp4")


def test_bad_requests_show_their_message_and_the_app_keeps_serving(live_app, videos, tmp_path):
    client = _client(live_app, tmp_path)
    with pytest.raises(AppError, match=r"notes\.txt could not be opened as a video") as caught:
        _detect(client, videos["text"], "fighting", 1, 0.5)
    assert str(live_app.work_dir) not in str(caught.value)  # the server path is not shown to the visitor
    with pytest.raises(AppError, match=rf"long\.mp4 is 4\.0 s long; this demo accepts videos up to "
                                       rf"{MAX_DURATION_S:g} s"):
        _detect(client, videos["long"], "fighting", 1, 0.5)
    with pytest.raises(AppError, match="No anomaly names: type at least one in the names box"):
        _detect(client, videos["walk"], " , ", 1, 0.5)
    with pytest.raises(AppError, match="less than minimum value 1"):
        _detect(client, videos["walk"], "fighting", 0, 0.5)
    with pytest.raises(Exception, match=r"(?i)exceeds the maximum|too large|maximum allowed size"):
        _detect(client, videos["big"], "fighting", 1, 0.5)
    plot, overlay, table, files, summary = _detect(client, videos["walk"], "fighting", 4, 0.5)
    assert Path(plot).stat().st_size > 0 and len(_frames(overlay)) == 16


def test_eight_concurrent_requests_complete_with_correct_results(live_app, videos, reference_detector, tmp_path):
    jobs = [(videos["walk" if i % 2 == 0 else "odd"], ["fighting", "red square", "blue star", "fire"][i % 4],
             1 + i % 3) for i in range(8)]
    expected = [[round(float(score), 6)  # as result.json rounds
                 for score in reference_detector(str(video), anomalies=[names], stride=stride).scores]
                for video, names, stride in jobs]
    assert len({tuple(scores) for scores in expected}) == len(jobs)  # every request has its own answer

    def request(job):
        video, names, stride = job
        client = Client(live_app.url, verbose=False, download_files=str(tmp_path / f"downloads-{names}-{stride}"))
        return _detect(client, video, names, stride, 0.5)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(request, jobs))
    for (video, names, stride), reference, (plot, overlay, table, files, summary) in zip(jobs, expected, results):
        result = json.loads(next(Path(f) for f in files if f.endswith("result.json")).read_text())
        assert (result["video"]["name"], result["anomalies"], result["settings"]["stride"]) == (video.name, [names],
                                                                                                 stride)
        assert result["scores"] == reference
        assert Path(plot).stat().st_size > 0 and Path(overlay).stat().st_size > 0


def test_a_frame_bomb_is_refused_from_its_header_and_the_app_keeps_serving(live_app, tmp_path):
    """A short video at a huge frame rate passes the duration limit but not the frame limit, before decoding."""
    from .conftest import MAX_FRAMES, moving_square_video

    bomb = moving_square_video(tmp_path / "bomb.mp4", MAX_FRAMES + 100, 16, 16, 200.0, seed=6)  # 2.5 s
    client = _client(live_app, tmp_path)
    with pytest.raises(AppError, match=rf"bomb\.mp4 has {MAX_FRAMES + 100} frames; this demo accepts videos of up "
                                       rf"to {MAX_FRAMES} frames"):
        _detect(client, bomb, "fire", 1, 0.5)


def test_a_request_whose_client_cancels_stops_running(live_app, videos, tmp_path, monkeypatch):
    """An abandoned request must not hold its worker: the detection stops within a batch or two of clips."""
    import math
    import time

    from lavida.processing.pipeline_lavida import VideoAnomalyDetectionPipeline

    from .conftest import moving_square_video

    calls: list[float] = []
    original = VideoAnomalyDetectionPipeline._forward

    def slow_forward(self, *args, **kwargs):  # the app runs in this process: every model call is seen here
        calls.append(time.monotonic())
        time.sleep(0.25)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(VideoAnomalyDetectionPipeline, "_forward", slow_forward)
    frames = 290  # 2.9 s at 100 fps: within the limits
    video = moving_square_video(tmp_path / "busy.mp4", frames, 16, 16, 100.0, seed=5)
    total_calls = math.ceil(math.ceil(frames / 8) / live_app.settings.clip_batch_size)
    job = _client(live_app, tmp_path).submit(handle_file(str(video)), "fire", 1, 0.5, api_name="/detect")
    deadline = time.monotonic() + 120
    while len(calls) < 2:
        assert time.monotonic() < deadline, "the request never started"
        time.sleep(0.05)
    job.cancel()
    while not calls or time.monotonic() - calls[-1] < 3.0:  # until no model call for 3 s
        assert time.monotonic() < deadline, "the detection kept running"
        time.sleep(0.1)
    assert len(calls) < total_calls / 2, f"{len(calls)} of the {total_calls} model calls ran despite the cancel"
    monkeypatch.undo()
    plot, overlay, table, files, summary = _detect(_client(live_app, tmp_path), videos["walk"], "fire", 4, 0.5)
    assert Path(plot).stat().st_size > 0  # the next request is served
