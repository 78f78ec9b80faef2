"""Site calibration: the threshold fitted for a false-alarm target on normal scores, the minimum event length taken
only where it helps, the calibration file, and ``lavida calibrate`` -> ``lavida detect --calibration``."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from lavida.errors import UserInputError
from lavida.processing.calibration import (CALIBRATION_FORMAT_VERSION, CalibrationSearch, CalibrationTarget, FittedOn,
                                           candidate_thresholds, false_alarms, fit_calibration, load_calibration,
                                           resolution_note, score_rise_detected)

FPS = 25.0
FITTED_ON = FittedOn(num_videos=1, num_frames=0, hours=0.0, model_id="tiny", anomalies=["fire"])


def _normal(seed: int, frames: int = 2000) -> tuple[np.ndarray, float]:
    return np.random.default_rng(seed).beta(2, 5, frames).astype(np.float32), FPS


def test_the_frame_target_is_met_by_the_lowest_threshold_that_meets_it():
    videos = [_normal(0), _normal(1)]
    target = CalibrationTarget(frame_fpr=0.02)
    calibration = fit_calibration(videos, target, FITTED_ON, search=CalibrationSearch(min_event_frames=1))
    scores = np.concatenate([scores for scores, _ in videos])
    flagged = np.mean(scores >= np.float32(calibration.threshold))
    assert flagged <= 0.02 and calibration.reached.frame_fpr == pytest.approx(flagged)
    lower = candidate_thresholds(videos)
    below = lower[lower < calibration.threshold][-1]  # the next candidate down flags too many frames
    assert np.mean(scores >= below) > 0.02


def test_the_event_target_counts_events_per_hour_and_never_takes_one_merged_event():
    scores = np.full(9000, 0.1, np.float32)  # 6 minutes at 25 fps
    scores[100] = 0.9  # a one-frame blip
    scores[6000:6010] = 0.7  # a longer bump
    scores[[2000, 4000]] = 0.5  # two weaker blips
    videos = [(scores, FPS)]
    fit = fit_calibration(videos, CalibrationTarget(false_alarms_per_hour=10.0), FITTED_ON,
                          search=CalibrationSearch(min_event_frames=1))
    # 10 per hour of 0.1 h allows one event: the blip at 0.9 (above 0.7); above 0.5 the bump makes it two. Above 0.1
    # (every frame at or above 0.1: one event as long as the footage) would count once too, but is never taken.
    assert fit.threshold == float(np.nextafter(np.float32(0.7), np.float32(1)))
    assert (fit.reached.false_alarms, fit.reached.false_alarms_per_hour) == (1, pytest.approx(10.0))
    assert false_alarms(videos, 0.1, 1).false_alarms == 1


def test_the_score_rise_an_event_needs():
    flat = [(np.full(100, 0.3, np.float32), FPS)]
    assert score_rise_detected(flat, 0.5, 1, anomaly_frames=10) == pytest.approx(0.2, abs=2e-4)
    assert score_rise_detected(flat, 0.2, 1, anomaly_frames=10) == 0.0  # the footage already fires
    assert score_rise_detected(flat, 0.5, 20, anomaly_frames=10) == 1.0  # longer than any stretch: never
    flicker = np.tile(np.array([0.3, 0.1], np.float32), 50)  # every other frame low: a run of 4 needs the low ones up
    assert score_rise_detected([(flicker, FPS)], 0.5, 1, 10) == pytest.approx(0.2, abs=2e-4)
    assert score_rise_detected([(flicker, FPS)], 0.5, 4, 10) == pytest.approx(0.4, abs=2e-4)


def test_a_longer_minimum_event_is_taken_only_when_it_lets_the_threshold_drop():
    rng = np.random.default_rng(0)
    scores = (rng.random(20_000) * 0.4).astype(np.float32)  # normal frames stay below 0.4...
    scores[rng.choice(20_000, 30, replace=False)] = 0.95  # ...but for single-frame flickers
    videos = [(scores, FPS)]
    target = CalibrationTarget(false_alarms_per_hour=0.0)
    fit = fit_calibration(videos, target, FITTED_ON)
    assert fit.min_event_frames > 1 and fit.threshold < 0.5  # ignoring 1-frame flickers keeps it sensitive
    only_one = fit_calibration(videos, target, FITTED_ON, search=CalibrationSearch(min_event_frames=1))
    assert only_one.min_event_frames == 1 and only_one.threshold > 0.95
    # scores that drift slowly (runs far longer than any minimum tried): a longer minimum gains nothing
    drift = (0.3 + 0.1 * np.sin(np.arange(20_000) * 2 * np.pi / 500)).astype(np.float32)
    assert fit_calibration([(drift, FPS)], target, FITTED_ON).min_event_frames == 1


def test_the_fitted_settings_reach_the_target_they_report():
    videos = [_normal(seed, 3000) for seed in range(3)]
    for target in (CalibrationTarget(false_alarms_per_hour=100.0), CalibrationTarget(frame_fpr=0.001)):
        fit = fit_calibration(videos, target, FITTED_ON)
        again = false_alarms(videos, fit.threshold, fit.min_event_frames)
        assert again == fit.reached and again.meets(target)


def test_an_unreachable_target_keeps_the_highest_threshold():
    scores = np.ones(100, np.float32)
    fit = fit_calibration([(scores, FPS)], CalibrationTarget(frame_fpr=0.0), FITTED_ON)
    assert fit.threshold == 1.0 and not fit.reached.meets(fit.target)


def test_short_footage_says_it_cannot_show_the_target():
    fit = fit_calibration([_normal(0, 500)], CalibrationTarget(false_alarms_per_hour=1.0),
                          replace(FITTED_ON, hours=500 / FPS / 3600, num_frames=500))
    assert fit.reached.false_alarms == 0
    assert "cannot show 1 false alarms/hour" in resolution_note(fit)


@pytest.mark.parametrize("values, message", [
    ({}, "Give exactly one target"),
    ({"false_alarms_per_hour": 1.0, "frame_fpr": 0.1}, "Give exactly one target"),
    ({"frame_fpr": 1.0}, r"frame_fpr must be a number in \[0, 1\)"),
    ({"false_alarms_per_hour": -1}, "must be a number >= 0"),
])
def test_bad_targets(values, message):
    with pytest.raises(UserInputError, match=message):
        CalibrationTarget(**values)


def test_the_search_lengths():
    assert CalibrationSearch(max_min_event_frames=12).lengths() == [1, 2, 3, 4, 6, 8, 12]
    assert CalibrationSearch(min_event_frames=5).lengths() == [5]


# ---------------------------------------------------------------------------------------------------------------------
# The file
# ---------------------------------------------------------------------------------------------------------------------


def _saved(tmp_path):
    fitted = FittedOn(num_videos=2, num_frames=4000, hours=0.0444, model_id="tiny", anomalies=["fire", "smoke"])
    calibration = fit_calibration([_normal(0), _normal(1)], CalibrationTarget(frame_fpr=0.01), fitted)
    return calibration, calibration.save(tmp_path / "site.json")


def test_the_file_round_trips_and_is_versioned(tmp_path):
    calibration, path = _saved(tmp_path)
    payload = json.loads(path.read_text())
    assert payload["format"] == "lavida-calibration" and payload["format_version"] == CALIBRATION_FORMAT_VERSION
    assert set(payload) == {"format", "format_version", "threshold", "min_event_frames", "smoothing_sigma",
                            "target", "reached", "fitted_on"}
    assert payload["fitted_on"]["anomalies"] == ["fire", "smoke"] and payload["target"] == {"frame_fpr": 0.01}
    assert load_calibration(path) == calibration


@pytest.mark.parametrize("change, message", [
    (lambda p: p.write_text("{not json"), "is not readable JSON"),
    (lambda p: p.write_text(json.dumps({"threshold": 0.5})), "is not a calibration file"),
    (lambda p: p.write_text(p.read_text().replace('"format_version": 1', '"format_version": 99')),
     "format version 99; this lavida reads version 1"),
    (lambda p: p.write_text(p.read_text().replace('"min_event_frames"', '"min_frames"')),
     "is damaged \\(missing 'min_event_frames'\\)"),
    (lambda p: p.write_text(p.read_text().replace('"threshold": 0.', '"threshold": 7.')),
     r"is damaged \(threshold must be a number in \[0, 1\]"),
    (lambda p: p.unlink(), "does not exist: make one with lavida calibrate"),
])
def test_bad_calibration_files_are_one_clear_error(tmp_path, change, message):
    _, path = _saved(tmp_path)
    change(path)
    with pytest.raises(UserInputError, match=message):
        load_calibration(path)


def test_mismatches_name_what_differs(tmp_path):
    calibration, _ = _saved(tmp_path)
    assert calibration.mismatches("tiny", ["fire", "smoke"], 1, None) == []
    problems = calibration.mismatches("other-model", ["fire"], 2, None)
    assert [problem.split(" ")[4:6] for problem in problems] == [["model", "'tiny',"], ["the", "anomaly"],
                                                                  ["stride", "1,"]]


# ---------------------------------------------------------------------------------------------------------------------
# The commands
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def normal_videos(tmp_path_factory):
    from lavida.processing.video_io import write_video

    folder = tmp_path_factory.mktemp("normal")
    rng = np.random.default_rng(0)
    paths = []
    for index in range(2):
        path = folder / f"quiet-{index}.mp4"
        write_video(path, rng.integers(0, 255, (12, 64, 80, 3), dtype=np.uint8), fps=FPS)
        paths.append(path)
    return paths


def test_calibrate_then_detect_with_the_calibration(tmp_path, normal_videos, tiny_lavida_checkpoint, capsys):
    from lavida.cli import main

    site = tmp_path / "site.json"
    model = str(tiny_lavida_checkpoint)
    assert main(["calibrate", *map(str, normal_videos), "--anomalies", "fire, smoke", "--model", model,
                 "--target-fpr", "0.05", "--smoothing", "1", "--out", str(site)]) == 0
    printed = capsys.readouterr().out
    assert f"{site}: threshold" in printed and "frame false-positive rate" in printed
    calibration = load_calibration(site)
    fitted = calibration.fitted_on
    assert (fitted.num_videos, fitted.num_frames, fitted.model_id) == (2, 24, model)
    assert fitted.anomalies == ["fire", "smoke"] and fitted.hours == pytest.approx(24 / FPS / 3600, rel=1e-4)
    assert calibration.smoothing_sigma == 1.0 and calibration.reached.meets(calibration.target)

    out = tmp_path / "results"
    assert main(["detect", str(normal_videos[0]), "--anomalies", "fire, smoke", "--model", model, "--no-overlay",
                 "--calibration", str(site), "--out", str(out)]) == 0
    result = json.loads((out / "quiet-0" / "result.json").read_text())
    assert result["threshold"] == calibration.threshold
    assert result["settings"]["min_event_frames"] == calibration.min_event_frames
    assert result["settings"]["smoothing_sigma"] == 1.0
    record = result["settings"]["calibration"]
    assert record["file"] == str(site) and len(record["sha256"]) == 16 and record["target"] == {"frame_fpr": 0.05}
    assert json.loads((out / "index.json").read_text())["settings"]["calibration"] == record
    assert "warning" not in capsys.readouterr().err

    # a flag given explicitly wins; other names than the calibration's get a warning line
    assert main(["detect", str(normal_videos[0]), "--anomalies", "fire", "--model", model, "--no-overlay",
                 "--calibration", str(site), "--threshold", "0.9", "--out", str(out)]) == 0
    result = json.loads((out / "quiet-0" / "result.json").read_text())
    assert result["threshold"] == 0.9 and result["settings"]["smoothing_sigma"] == 1.0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert warnings == [f"lavida detect: warning: calibration {site}: it was made for the anomaly names "
                        "'fire, smoke', not 'fire'; its threshold may not fit"]


def test_detect_flags_default_to_the_calibration_else_the_options(tmp_path):
    from lavida.commands.detect import detection_options
    from lavida.processing.options import DetectionOptions
    from tests.processing.test_options import _parse

    calibration, path = _saved(tmp_path)
    args = _parse("detect", ["clip.mp4", "--anomalies", "fire", "--calibration", str(path), "--min-event-frames", "7"])
    assert detection_options(args) == DetectionOptions(threshold=calibration.threshold, min_event_frames=7,
                                                       smoothing_sigma=calibration.smoothing_sigma,
                                                       return_masks=True)
    assert detection_options(_parse("detect", ["clip.mp4", "--anomalies", "fire"])) == DetectionOptions(
        return_masks=True)


@pytest.mark.parametrize("argv, message", [
    (["quiet.mp4", "--anomalies", "fire"], "Give exactly one target"),
    (["quiet.mp4", "--anomalies", "fire", "--target-fpr", "0.1", "--false-alarms-per-hour", "1"],
     "Give exactly one target"),
    (["missing.mp4", "--anomalies", "fire", "--target-fpr", "0.1"], "Video missing.mp4 does not exist"),
    (["quiet.mp4", "--anomalies", "fire", "--target-fpr", "0.1", "--out", "{tmp}"], "is a folder"),
], ids=["no-target", "two-targets", "missing-video", "out-folder"])
def test_calibrate_refuses_bad_input_in_one_line_before_torch(tmp_path, argv, message, monkeypatch):
    from tests.test_cli_startup import _run_cli

    monkeypatch.chdir(tmp_path)
    (tmp_path / "quiet.mp4").write_bytes(b"checked when read")
    result = _run_cli(["calibrate", *[word.format(tmp=tmp_path) for word in argv]])
    assert result["status"] == 2 and result["imported"] == []


def test_calibrate_errors_are_one_line(tmp_path, capsys):
    from lavida.cli import main

    assert main(["calibrate", str(tmp_path / "missing.mp4"), "--anomalies", "fire", "--target-fpr", "0.1"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("lavida calibrate: error: Video ")
