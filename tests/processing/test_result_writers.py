"""The output folder: result.json, scores.csv, scores.png and overlay.mp4."""

from __future__ import annotations

import csv
import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from lavida.errors import UserInputError
from lavida.processing.detection import VideoDetection
from lavida.processing.options import DetectionOptions
from lavida.processing.postprocessing import find_events
from lavida.processing.result_writers import (OutputOptions, format_summary, overlay_frame_size, render_overlay_frame,
                                              write_result_folder)
from lavida.processing.video_io import iter_frames, probe_video

HEIGHT, WIDTH, NUM_FRAMES, FPS = 97, 161, 100, 25
ANOMALY_FRAMES = slice(40, 60)


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    """H.264 4:4:4 (odd size), 100 frames of a grey gradient, 25 fps, encoded with PyAV."""
    path = tmp_path_factory.mktemp("videos") / "walk.mp4"
    gradient = np.linspace(60, 180, WIDTH, dtype=np.float32)[None, :, None]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(FPS))
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv444p"
        for index in range(NUM_FRAMES):
            image = np.broadcast_to(gradient + index % 7, (HEIGHT, WIDTH, 3)).astype(np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")))
        container.mux(stream.encode(None))
    return path


def hand_scores() -> np.ndarray:
    rng = np.random.default_rng(0)
    scores = (0.1 + 0.1 * rng.random(NUM_FRAMES)).astype(np.float32)
    scores[ANOMALY_FRAMES] = np.linspace(0.6, 0.95, 20)
    scores[80:82] = 0.7  # a short blip
    return scores


def make_record(video: Path, scores: np.ndarray | None = None, masks=None) -> VideoDetection:
    scores = hand_scores() if scores is None else scores
    info = probe_video(video)
    return VideoDetection(video=info, name=video.name, anomalies=["fighting", "fire"],
                          options=DetectionOptions(stride=2, return_masks=masks is not None),
                          model_id="local/lavida-tiny", scores=scores, events=find_events(scores, info.fps, 0.5),
                          masks=masks, source=video)


class BoxMasks:
    """Masks handed out one frame at a time (as ``FrameMasks``), recording which frames were asked for."""

    def __init__(self, fail_at: int | None = None):
        self.calls: list[int] = []
        self.fail_at = fail_at

    def __len__(self) -> int:
        return NUM_FRAMES

    def __getitem__(self, index: int) -> np.ndarray:
        if index == self.fail_at:
            raise RuntimeError("mask decoder failed")
        self.calls.append(index)
        return box_mask(index)


def box_mask(index: int) -> np.ndarray | None:
    """Low-resolution mask (as the decoder gives): a box in the anomaly frames, nothing elsewhere."""
    mask = np.zeros((24, 40), dtype=np.float32)
    if ANOMALY_FRAMES.start <= index < ANOMALY_FRAMES.stop:
        mask[4:14, 8:24] = 1.0
    return mask


def read_video(path: Path) -> tuple[list[np.ndarray], Fraction]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)], stream.average_rate


@pytest.fixture(scope="module")
def written(video, tmp_path_factory) -> tuple[Path, VideoDetection, list[int]]:
    masks = BoxMasks()
    record = make_record(video, masks=masks)
    out = write_result_folder(tmp_path_factory.mktemp("out") / "walk", record, OutputOptions(progress=False))
    return out, record, masks.calls


def test_folder_holds_the_four_outputs_and_nothing_else(written):
    out, _, _ = written
    assert sorted(path.name for path in out.iterdir()) == ["overlay.mp4", "result.json", "scores.csv", "scores.png"]
    assert [path.name for path in out.parent.iterdir()] == ["walk"]  # no staging folder left


def test_overlay_matches_input_frames_size_and_fps(written, video):
    out, _, calls = written
    frames, rate = read_video(out / "overlay.mp4")
    _, input_rate = read_video(video)
    assert len(frames) == NUM_FRAMES and rate == input_rate == FPS
    assert frames[0].shape == (*overlay_frame_size(HEIGHT, WIDTH), 3)  # the picture and the score band below it
    assert calls == list(range(NUM_FRAMES))  # masks requested lazily, once per frame, in order


def test_overlay_tints_the_mask_and_draws_the_score_bar(written, video):
    out, record, _ = written
    overlay, _ = read_video(out / "overlay.mp4")
    source = [frame.image for frame in iter_frames(video)]
    # The box (rows 4:14 of 24, cols 8:24 of 40 at low resolution) covers rows ~20-55, cols ~40-90 at full size.
    box = (slice(25, 50), slice(45, 85))
    inside, before = overlay[50][box].astype(int), source[50][box].astype(int)
    assert (inside[..., 0] - inside[..., 2]).mean() > 60 > (before[..., 0] - before[..., 2]).mean() + 40
    assert np.abs(overlay[10][box].astype(int) - source[10][box].astype(int)).mean() < 4  # no mask: untouched
    # Score bar on the band's bottom rows: frame 50 (score ~0.78) is red up to ~78% of the width; frame 10 green and
    # short.
    bottom = -2
    red = overlay[50][bottom, :, 0].astype(int) - overlay[50][bottom, :, 1].astype(int) > 80
    assert abs(red.sum() / WIDTH - record.scores[50]) < 0.05
    green = overlay[10][bottom, :, 1].astype(int) - overlay[10][bottom, :, 0].astype(int) > 60
    assert abs(green.sum() / WIDTH - record.scores[10]) < 0.05


def test_csv_and_json_agree(written):
    out, record, _ = written
    result = json.loads((out / "result.json").read_text())
    with open(out / "scores.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["frame", "time_s", "score", "is_anomaly"]
    assert len(rows) == len(result["scores"]) == NUM_FRAMES
    assert [float(row["score"]) for row in rows] == result["scores"]
    assert [int(row["frame"]) for row in rows] == list(range(NUM_FRAMES))
    assert float(rows[30]["time_s"]) == pytest.approx(30 / FPS)
    flagged = [int(row["frame"]) for row in rows if row["is_anomaly"] == "1"]
    in_events = [f for event in result["events"] for f in range(event["start_frame"], event["end_frame"] + 1)]
    assert flagged == in_events == list(range(40, 60)) + [80, 81]
    assert result["video"] == {"name": "walk.mp4", "num_frames": NUM_FRAMES, "fps": FPS, "width": WIDTH,
                               "height": HEIGHT, "duration_s": NUM_FRAMES / FPS, "codec": "h264", "damaged": False}
    assert (result["anomalies"], result["model_id"], result["threshold"]) == (["fighting", "fire"],
                                                                              "local/lavida-tiny", 0.5)
    assert result["settings"] == {"stride": 2, "min_event_frames": 1, "smoothing_sigma": 0.0}
    assert result["num_events"] == 2 and result == record.to_dict()
    assert result["events"][0] == {"start_frame": 40, "end_frame": 59, "start_s": 1.6, "end_s": 2.4,
                                   "peak_score": 0.95, "mean_score": pytest.approx(0.775, abs=1e-6),
                                   "anomaly": None, "name_scores": None}  # a record without per-name scores
    np.testing.assert_allclose(result["scores"], record.scores, atol=5e-7)


def test_plot_is_a_readable_png(written):
    out, _, _ = written
    with Image.open(out / "scores.png") as image:
        assert image.format == "PNG" and image.width >= 1000 and image.height >= 400
        pixels = np.asarray(image.convert("RGB")).astype(int)
    # Event shading (light red) is present.
    reddish = (pixels[..., 0] > 230) & (pixels[..., 1] < 225) & (pixels[..., 2] < 225)
    assert reddish.sum() > 1000


def test_failure_leaves_no_folder_and_keeps_old_results(video, tmp_path):
    record = make_record(video, masks=BoxMasks(fail_at=50))
    with pytest.raises(RuntimeError, match="mask decoder failed"):
        write_result_folder(tmp_path / "walk", record, OutputOptions(progress=False, plot=False))
    assert list(tmp_path.iterdir()) == []

    # A finished folder survives a failed rewrite untouched.
    first = write_result_folder(tmp_path / "walk", make_record(video),
                                OutputOptions(progress=False, plot=False, overlay=False))
    before = (first / "result.json").read_text()
    with pytest.raises(RuntimeError):
        write_result_folder(tmp_path / "walk", make_record(video, np.zeros(NUM_FRAMES, np.float32), BoxMasks(50)),
                            OutputOptions(progress=False, plot=False))
    assert [path.name for path in tmp_path.iterdir()] == ["walk"]
    assert (first / "result.json").read_text() == before


def test_existing_folder_and_wrong_score_count(video, tmp_path):
    (tmp_path / "walk").mkdir()
    with pytest.raises(UserInputError, match="already exists"):
        write_result_folder(tmp_path / "walk", make_record(video), OutputOptions(overwrite=False, overlay=False))
    with pytest.raises(ValueError, match="99 scores for a video of 100 frames"):
        make_record(video, np.zeros(99, np.float32))


def test_render_overlay_frame_resizes_masks():
    image = np.full((30, 50, 3), 100, dtype=np.uint8)
    mask = np.zeros((3, 5), dtype=np.float32)
    mask[1, 2] = 1.0
    frame = render_overlay_frame(image, score=0.8, threshold=0.5, mask=mask)
    assert frame.shape == (*overlay_frame_size(30, 50), 3) and frame.dtype == np.uint8
    assert frame[15, 25, 0] > 150 and frame[15, 25, 2] < 90  # the centre is tinted red
    np.testing.assert_array_equal(frame[2, 2], image[2, 2])  # far from the mask: untouched


def test_summary_names_events(video):
    record = make_record(video)
    assert format_summary(record) == "walk.mp4: 2 events at 1.6-2.4 s (peak 0.95), 3.2-3.3 s (peak 0.70)"
    quiet = make_record(video, np.full(NUM_FRAMES, 0.2, np.float32))
    assert format_summary(quiet).startswith("walk.mp4: no events (searched for fighting, fire); highest score 0.20")
    # past max_events the strongest are shown first, so the main event is never the one cut off
    assert format_summary(record, max_events=1) == "walk.mp4: 2 events at 1.6-2.4 s (peak 0.95) and 1 weaker"
    late_main = make_record(video, np.r_[np.full(NUM_FRAMES // 2, 0.6), np.full(NUM_FRAMES - NUM_FRAMES // 2, 0.9)])
    late_main.events[:] = [late_main.events[0]] if len(late_main.events) == 1 else late_main.events


@pytest.mark.parametrize("name", ["..", ".hidden"])
def test_result_folder_must_be_a_plain_child(video, tmp_path, name):
    from lavida.processing.result_writers import atomic_directory

    (tmp_path / "out" / "keep").mkdir(parents=True)
    with pytest.raises(ValueError, match="plain folder name"):
        with atomic_directory(Path(str(tmp_path / "out") + "/" + name)):
            pass
    assert (tmp_path / "out" / "keep").is_dir()


def test_stale_staging_of_killed_runs_is_removed_and_nothing_else(tmp_path):
    import os

    from lavida.atomic_files import remove_stale_staging, staging_path
    from tests.fixtures.killed_writes import leave_killed_write

    out = tmp_path / "out"
    killed_folder = leave_killed_write(out / "walk", "folder")
    killed_file = leave_killed_write(out / "index.json", "file")
    assert len(killed_folder) == len(killed_file) == 1 and killed_folder[0].name.startswith(".walk.partial-")
    dead_pid = int(killed_folder[0].name.split("-")[-2])
    kept = [staging_path(out / "run", "partial"),  # this process is alive
            out / f".walk.partial-00000000-{dead_pid}-0123abcd",  # another machine's process
            out / ".walk.partial-0123abcd",  # not our naming
            out / ".notes.txt", out / "walk-results"]
    for path in kept:
        path.mkdir()
    removed = remove_stale_staging(out)
    assert sorted(removed) == sorted(killed_folder + killed_file)
    assert sorted(out.iterdir()) == sorted(kept)
    assert remove_stale_staging(tmp_path / "nowhere") == []
    assert os.getpid() != dead_pid


def test_a_replacement_killed_between_its_renames_gets_its_old_results_back(tmp_path):
    from lavida.atomic_files import remove_stale_staging
    from tests.fixtures.killed_writes import leave_killed_write

    out = tmp_path / "out"
    (out / "walk").mkdir(parents=True)
    (out / "walk" / "result.json").write_text("complete")
    staging = leave_killed_write(out / "walk", "folder")[0]
    # as if killed after the old folder was moved aside: only the retired copy holds the results
    retired = staging.with_name(staging.name.replace(".partial-", ".old-"))
    (out / "walk").rename(retired)
    remove_stale_staging(out)
    assert sorted(path.name for path in out.iterdir()) == ["walk"]
    assert (out / "walk" / "result.json").read_text() == "complete"


def test_a_failed_swap_keeps_the_old_results_in_place(video, tmp_path, monkeypatch):
    import errno

    first = write_result_folder(tmp_path / "walk", make_record(video),
                                OutputOptions(progress=False, plot=False, overlay=False))
    real_rename = Path.rename

    def busy(self, target):
        if self.name.startswith(".walk.partial-"):
            raise OSError(errno.EBUSY, "Device or resource busy", str(self))
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", busy)
    with pytest.raises(OSError, match="busy"):
        write_result_folder(tmp_path / "walk", make_record(video, np.zeros(NUM_FRAMES, np.float32)),
                            OutputOptions(progress=False, plot=False, overlay=False))
    assert [path.name for path in tmp_path.iterdir()] == ["walk"]
    assert sorted(path.name for path in first.iterdir()) == ["result.json", "scores.csv"]
