"""The evaluation runner: interrupt + resume, cache safety, frame-count alignment, the CLI, a tiny real model."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from lavida.cli import main
from lavida.dataset_builders.benchmarks import get_benchmark
from lavida.errors import UserInputError
from lavida.evaluation import EvaluationConfig, evaluate_benchmark, safe_file_name
from lavida.processing.detection import VideoDetection

from .layouts import BUILDERS, OracleScorer


@pytest.mark.parametrize("name", ["ubnormal", "ped1"])
def test_interrupt_and_resume_give_the_same_metrics(name, tmp_path):
    bench = get_benchmark(name, BUILDERS[name](tmp_path).root)
    config = EvaluationConfig(progress=False, smoothing_sigma=1.0)
    evaluate_benchmark(bench, OracleScorer(), tmp_path / "straight", config)

    resumed = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        evaluate_benchmark(bench, OracleScorer(fail_after=1), resumed, config)
    assert len(list((resumed / "videos").glob("*.npz"))) == 1
    assert not (resumed / "metrics.json").exists()
    assert not [p for p in resumed.rglob("*") if ".partial" in p.name]  # nothing half-written
    second = OracleScorer()
    evaluate_benchmark(bench, second, resumed, config)
    assert len(second.calls) == len(bench) - 1  # only the video that was not finished
    assert (resumed / "metrics.json").read_bytes() == (tmp_path / "straight" / "metrics.json").read_bytes()
    assert (resumed / "metrics.md").read_bytes() == (tmp_path / "straight" / "metrics.md").read_bytes()


def test_cached_results_are_reused_for_metric_only_changes_and_guarded_otherwise(tmp_path):
    bench = get_benchmark("ped2", BUILDERS["ped2"](tmp_path).root)
    out = tmp_path / "out"
    first = evaluate_benchmark(bench, OracleScorer(), out, EvaluationConfig(progress=False))
    again = OracleScorer()
    smoothed = evaluate_benchmark(bench, again, out, EvaluationConfig(progress=False, smoothing_sigma=2.0))
    assert again.calls == []  # smoothing only changes the metrics
    assert first["frame"]["smoothing"] is None and smoothed["frame"]["smoothing"]["sigma"] == 2.0
    with pytest.raises(UserInputError, match="stride"):
        evaluate_benchmark(bench, OracleScorer(), out, EvaluationConfig(progress=False, stride=3))


def test_frame_count_mismatch_is_aligned_and_reported(tmp_path, caplog):
    bench = get_benchmark("shanghaitech", BUILDERS["shanghaitech"](tmp_path).root)

    def short_scorer(video, names, stride, return_masks):
        return OracleScorer()(video[:-1], names, stride, return_masks)  # a decoder that loses the last frame

    with caplog.at_level(logging.WARNING):
        metrics = evaluate_benchmark(bench, short_scorer, tmp_path / "out", EvaluationConfig(progress=False))
    assert "scored frames but" in caplog.text
    video = next(v for v in metrics["per_video"] if v["video_id"] == "01_0014")
    assert (video["num_frames"], video["num_frames_scored"], video["num_frames_labelled"]) == (7, 7, 8)
    assert metrics["frame"]["micro_auc"] == 1.0 and metrics["pixel"]["num_frames"] == 14


def test_undefined_metrics_are_null_in_json(tmp_path):
    bench = get_benchmark("xd-violence", BUILDERS["xd-violence"](tmp_path).root)

    def constant(video, names, stride, return_masks):
        result = OracleScorer()(video, names, stride, return_masks)
        return VideoDetection.from_frame_scores(np.full(result.video.num_frames, 0.5), 25.0, names)

    # the first test video (in name order) is the normal one: no anomalous frame, so AUC and AP are undefined
    evaluate_benchmark(bench, constant, tmp_path / "out", EvaluationConfig(progress=False, max_videos=1))
    stored = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert stored["num_videos"] == 1 and stored["num_test_videos"] == 2
    assert stored["frame"]["micro_auc"] is None and stored["frame"]["ap"] is None
    assert stored["frame"]["macro_auc"] == 1.0  # padded: defined on an all-normal video
    assert "| frame AUC (micro, all frames pooled) | n/a |" in (tmp_path / "out" / "metrics.md").read_text()
    both = evaluate_benchmark(bench, constant, tmp_path / "both", EvaluationConfig(progress=False))
    assert both["frame"]["micro_auc"] == 0.5  # all tied


def test_safe_file_names_stay_distinct():
    assert safe_file_name("Arson011_x264") == "Arson011_x264"
    names = {safe_file_name(v) for v in ("a b#1", "a_b_1", "a/b#1", "a b/1")}
    assert len(names) == 4 and all("/" not in n and " " not in n for n in names)


def test_cli_writes_outputs_and_reports_user_errors(tmp_path, monkeypatch, capsys):
    from lavida import evaluation

    layout = BUILDERS["shanghaitech"](tmp_path)
    scorer, loaded = OracleScorer(), {}
    monkeypatch.setattr(evaluation, "load_pipeline_score_fn",
                        lambda model=None, device=None, **settings: loaded.update(settings) or scorer)
    out = tmp_path / "out"
    status = main(["evaluate", "--benchmark", "ShanghaiTech", "--data-root", str(layout.root), "--out", str(out),
                   "--stride", "3", "--anomalies", "bicycle, skateboard", "--device", "cpu", "--mask-stride", "3"])
    assert status == 0
    printed = capsys.readouterr().out
    assert "| frame AUC (micro, all frames pooled) | 1.0000 |" in printed and "stride 3" in printed
    assert {c["stride"] for c in scorer.calls} == {3} and scorer.calls[0]["names"] == ["bicycle", "skateboard"]
    assert (out / "metrics.json").is_file() and len(list((out / "plots").glob("*.png"))) == 2
    assert loaded["mask_stride"] == 3 and json.loads((out / "run.json").read_text())["mask_stride"] == 3
    # masks from other frames are other cached results: refused in one line
    assert main(["evaluate", "--benchmark", "ShanghaiTech", "--data-root", str(layout.root), "--out", str(out),
                 "--stride", "3", "--anomalies", "bicycle, skateboard", "--device", "cpu"]) == 2
    assert "a different mask_stride" in capsys.readouterr().err

    assert main(["evaluate", "--benchmark", "ped2", "--data-root", str(tmp_path / "nowhere")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "nowhere" in error and "UCSDped2" in error
    assert main(["evaluate", "--benchmark", "kitti", "--data-root", str(tmp_path)]) == 2
    assert "choose one of" in capsys.readouterr().err


def test_end_to_end_with_a_tiny_model(tmp_path):
    """A tiny random LAVIDA checkpoint through the video-anomaly-detection pipeline on a built Ped2 layout."""
    pytest.importorskip("lavida.processing.pipeline_lavida")
    torch = pytest.importorskip("torch")
    from transformers import pipeline

    from lavida import LavidaConfig, LavidaForVideoAnomalyDetection
    from lavida.evaluation import load_pipeline_score_fn, pipeline_score_fn
    from lavida.processing.factories import build_tiny_processor

    checkpoint = tmp_path / "tiny"
    torch.manual_seed(0)
    LavidaForVideoAnomalyDetection(LavidaConfig.tiny()).save_pretrained(checkpoint)
    build_tiny_processor().save_pretrained(checkpoint)
    bench = get_benchmark("ped2", BUILDERS["ped2"](tmp_path).root)

    metrics = evaluate_benchmark(bench, load_pipeline_score_fn(str(checkpoint), device="cpu"), tmp_path / "out",
                                 EvaluationConfig(progress=False))
    assert metrics["frame"]["num_frames"] == 14 and 0 <= metrics["frame"]["micro_auc"] <= 1
    assert metrics["pixel"]["num_pixels"] == 14 * 24 * 36  # masks at the native frame size
    assert 0 <= metrics["pixel"]["pixel_auc"] <= 1
    cached = np.load(tmp_path / "out" / "videos" / "Test001.npz")
    assert cached["scores"].shape == (7,) and ((cached["scores"] >= 0) & (cached["scores"] <= 1)).all()

    direct = pipeline("video-anomaly-detection", model=str(checkpoint), trust_remote_code=True)
    again = evaluate_benchmark(bench, pipeline_score_fn(direct), tmp_path / "again",
                               EvaluationConfig(progress=False, max_videos=1))
    assert again["per_video"][0]["auc"] == pytest.approx(metrics["per_video"][0]["auc"], abs=1e-6)


class OneFrameAtATime:
    """Masks that can only be read one frame at a time (as the pipeline's ``FrameMasks``); records the reads."""

    def __init__(self, stack: np.ndarray):
        self.stack, self.reads = stack, []

    def __len__(self) -> int:
        return len(self.stack)

    def __getitem__(self, index: int) -> np.ndarray:
        if not isinstance(index, int):
            raise TypeError(f"one frame at a time, got {index!r}")
        self.reads.append(index)
        return self.stack[index]


def test_masks_are_read_one_frame_at_a_time(tmp_path):
    bench = get_benchmark("ped2", BUILDERS["ped2"](tmp_path).root)
    handed_out = []

    def lazy(video, names, stride, return_masks):
        detection = OracleScorer()(video, names, stride, return_masks)
        detection.masks = OneFrameAtATime(detection.masks)
        handed_out.append(detection.masks)
        return detection

    metrics = evaluate_benchmark(bench, lazy, tmp_path / "out", EvaluationConfig(progress=False))
    assert metrics["pixel"]["pixel_auc"] > 0.99 and metrics["pixel"]["criterion_auc"] == 1.0
    assert [masks.reads for masks in handed_out] == [list(range(7)), list(range(7))]


def test_detect_and_evaluate_give_a_video_the_same_smoothed_scores(varied_lavida_checkpoint, tmp_path):
    """One video through ``lavida detect --smoothing-sigma 5`` and ``lavida evaluate --smoothing 5``: the same
    post-processing, so the same result.json scores and events."""
    from lavida.processing.postprocessing import smooth_scores

    root = BUILDERS["ucf-crime"](tmp_path).root
    video = next(root.rglob("Arson011_x264.mp4"))
    names, model = "fighting, fire", str(varied_lavida_checkpoint)
    assert main(["detect", str(video), "--anomalies", names, "--model", model, "--out", str(tmp_path / "detect"),
                 "--smoothing-sigma", "5", "--no-overlay", "--device", "cpu"]) == 0
    assert main(["evaluate", "--benchmark", "ucf-crime", "--data-root", str(root), "--model", model, "--out",
                 str(tmp_path / "evaluate"), "--anomalies", names, "--stride", "1", "--smoothing", "5",
                 "--no-plots", "--device", "cpu"]) == 0
    detected = json.loads((tmp_path / "detect" / video.stem / "result.json").read_text())
    evaluated = json.loads((tmp_path / "evaluate" / "results" / video.stem / "result.json").read_text())
    settings = {"stride": 1, "min_event_frames": 1, "smoothing_sigma": 5.0}
    assert detected["settings"] == evaluated["settings"] == settings
    assert evaluated["scores"] == detected["scores"] and evaluated["events"] == detected["events"]
    assert evaluated["video"] == {**detected["video"], "name": video.stem}  # evaluation names videos by their id
    raw = np.load(tmp_path / "evaluate" / "videos" / f"{video.stem}.npz")["scores"]  # cached unsmoothed
    assert np.ptp(raw) > 1e-4 and np.abs(raw - detected["scores"]).max() > 1e-5  # the smoothing shows
    np.testing.assert_allclose(detected["scores"], smooth_scores(raw, 5.0), atol=5e-7)  # the metrics' smoothing


def test_the_next_run_removes_what_a_killed_run_left_in_out(tmp_path):
    from tests.fixtures.killed_writes import leave_killed_write

    bench = get_benchmark("ped2", BUILDERS["ped2"](tmp_path).root)
    out = tmp_path / "out"
    leftovers = (leave_killed_write(out / "videos" / "Test001.npz", "file")
                 + leave_killed_write(out / "results" / "Test001", "folder")
                 + leave_killed_write(out / "metrics.json", "file"))
    assert len(leftovers) == 3
    evaluate_benchmark(bench, OracleScorer(), out, EvaluationConfig(progress=False))
    assert not [path for path in out.rglob(".*")]
    assert (out / "results" / "Test001" / "result.json").is_file()


def test_a_second_model_into_the_same_out_never_gets_the_first_ones_metrics(tiny_lavida_checkpoint,
                                                                            varied_lavida_checkpoint, tmp_path,
                                                                            capsys, monkeypatch):
    from lavida import evaluation

    root = BUILDERS["ped2"](tmp_path).root

    def evaluate(model, out, *extra: str) -> int:
        return main(["evaluate", "--benchmark", "ped2", "--data-root", str(root), "--model", str(model), "--out",
                     str(out), "--no-plots", "--no-masks", "--device", "cpu", *extra])

    shared = tmp_path / "shared"
    assert evaluate(tiny_lavida_checkpoint, shared) == 0
    first = json.loads((shared / "metrics.json").read_text())
    first_scores = np.load(shared / "videos" / "Test001.npz")["scores"]
    capsys.readouterr()

    with monkeypatch.context() as patch:  # refused before the model is loaded: the cache holds the other one's
        patch.setattr(evaluation, "load_pipeline_score_fn", lambda *args, **kwargs: pytest.fail("model loaded"))
        assert evaluate(varied_lavida_checkpoint, shared) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and str(tiny_lavida_checkpoint) in error and str(varied_lavida_checkpoint) in error
    assert "--restart" in error and "--out" in error
    assert json.loads((shared / "metrics.json").read_text()) == first  # untouched

    assert evaluate(varied_lavida_checkpoint, shared, "--restart") == 0
    second = json.loads((shared / "metrics.json").read_text())
    assert evaluate(varied_lavida_checkpoint, tmp_path / "alone") == 0
    assert second == json.loads((tmp_path / "alone" / "metrics.json").read_text())  # as if evaluated alone
    assert np.abs(np.load(shared / "videos" / "Test001.npz")["scores"] - first_scores).max() > 1e-4

    assert first["model"]["name"] == str(tiny_lavida_checkpoint)
    assert second["model"]["name"] == str(varied_lavida_checkpoint)
    assert first["model"]["fingerprint"] != second["model"]["fingerprint"]
    run = json.loads((shared / "run.json").read_text())
    assert run["model"] == str(varied_lavida_checkpoint)
    assert run["model_fingerprint"] == second["model"]["fingerprint"]
    assert f"Model: {varied_lavida_checkpoint}" in (shared / "metrics.md").read_text()


def test_rewritten_weights_change_the_model_fingerprint(tmp_path):
    import os
    import shutil

    from lavida.evaluation import model_identity

    folder = tmp_path / "checkpoint"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "lavida"}')
    (folder / "model.safetensors").write_bytes(b"weights of run 1")
    identity = model_identity(folder)
    assert identity.name == str(folder) and len(identity.fingerprint) == 16
    (folder / "README.md").write_text("a model card edit changes no score")
    (folder / "__pycache__").mkdir()  # nor does importing its code
    (folder / "__pycache__" / "modeling_lavida.cpython-311.pyc").write_bytes(b"compiled")
    assert model_identity(folder) == identity
    moved = shutil.move(folder, tmp_path / "moved")  # a move keeps the files, so the cached scores still apply
    assert model_identity(moved).fingerprint == identity.fingerprint
    stat = os.stat(tmp_path / "moved" / "model.safetensors")
    (tmp_path / "moved" / "model.safetensors").write_bytes(b"weights of run 2")  # same size, trained further
    os.utime(tmp_path / "moved" / "model.safetensors", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert model_identity(moved).fingerprint != identity.fingerprint
    assert model_identity("org/lavida-7b", revision="abc").fingerprint != model_identity("org/lavida-7b").fingerprint


def test_a_scorer_without_a_model_identity_is_recorded_as_unknown(tmp_path):
    bench = get_benchmark("ped2", BUILDERS["ped2"](tmp_path).root)
    metrics = evaluate_benchmark(bench, OracleScorer(), tmp_path / "out", EvaluationConfig(progress=False))
    assert metrics["model"] is None
    assert json.loads((tmp_path / "out" / "run.json").read_text())["model"] is None
    assert "Model: unknown" in (tmp_path / "out" / "metrics.md").read_text()


def test_cache_writes_that_fail_on_a_full_disk_end_the_run_in_one_line(tmp_path, monkeypatch, capsys):
    import errno

    from lavida import evaluation

    layout = BUILDERS["ped2"](tmp_path)
    monkeypatch.setattr(evaluation, "load_pipeline_score_fn",
                        lambda model=None, device=None, **settings: OracleScorer())

    def disk_full(path, arrays):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(evaluation, "_save_arrays", disk_full)
    status = main(["evaluate", "--benchmark", "ped2", "--data-root", str(layout.root), "--out", str(tmp_path / "out")])
    error = capsys.readouterr().err  # with the progress bar
    lines = [line for line in error.replace("\r", "\n").splitlines() if line.startswith("lavida evaluate: error: ")]
    assert status == 1 and "Traceback" not in error and len(lines) == 1, error
    assert "No space left on device" in lines[0] and "Test001.npz" in lines[0]


def test_evaluate_benchmark_keys_its_cache_on_the_scorers_model(tmp_path, caplog):
    from lavida.evaluation import ModelIdentity

    bench = get_benchmark("ped2", BUILDERS["ped2"](tmp_path).root)
    out, config = tmp_path / "out", EvaluationConfig(progress=False, plots=False)
    first = OracleScorer()
    first.model_identity = ModelIdentity("org/model-a", "a" * 16)
    evaluate_benchmark(bench, first, out, config)
    second = OracleScorer()
    second.model_identity = ModelIdentity("org/model-b", "b" * 16)
    with pytest.raises(UserInputError, match=r"model \(cached: org/model-a; this run: org/model-b\)"):
        evaluate_benchmark(bench, second, out, config)
    assert second.calls == []
    rewritten = OracleScorer()
    rewritten.model_identity = ModelIdentity("org/model-a", "c" * 16)
    with pytest.raises(UserInputError, match="whose files have changed since"):
        evaluate_benchmark(bench, rewritten, out, config)
    with caplog.at_level(logging.WARNING):
        metrics = evaluate_benchmark(bench, second, out, EvaluationConfig(progress=False, plots=False, restart=True))
    assert "Discarding the results cached in" in caplog.text and len(second.calls) == len(bench)
    assert metrics["model"] == {"name": "org/model-b", "fingerprint": "b" * 16}
    again = OracleScorer()
    again.model_identity = second.model_identity
    evaluate_benchmark(bench, again, out, config)
    assert again.calls == []  # the same model reuses its cache


def _calibration(path, threshold: float, anomalies: list[str]):
    from lavida.processing.calibration import Calibration, CalibrationTarget, FalseAlarms, FittedOn

    Calibration(threshold=threshold, min_event_frames=2, smoothing_sigma=1.0,
                target=CalibrationTarget(false_alarms_per_hour=2.0), reached=FalseAlarms(0, 0.0, 0.0),
                fitted_on=FittedOn(num_videos=1, num_frames=50, hours=0.01, model_id="oracle",
                                   anomalies=anomalies)).save(path)
    return path


def test_evaluate_applies_a_calibration_records_it_and_keeps_its_cache(tmp_path, monkeypatch, capsys):
    """--calibration sets the threshold, event length and smoothing of the events, their metrics and the per-video
    results (flags given explicitly win); it changes no cached score, so a cached run is reused."""
    from lavida import evaluation

    layout = BUILDERS["ped2"](tmp_path)
    scorer = OracleScorer()
    monkeypatch.setattr(evaluation, "load_pipeline_score_fn", lambda model=None, device=None, **settings: scorer)
    out = tmp_path / "out"
    run = ["evaluate", "--benchmark", "ped2", "--data-root", str(layout.root), "--out", str(out), "--no-plots"]
    assert main([*run, "--threshold", "0.01"]) == 0  # the oracle's scores reach 0.042 on anomalous frames
    plain = json.loads((out / "metrics.json").read_text())
    assert plain["events"]["calibration"] is None and plain["events"]["threshold"] == 0.01
    assert plain["events"]["num_events"] > 0
    scored = len(scorer.calls)

    site = _calibration(tmp_path / "site.json", 0.95, ["bicycle"])
    assert main([*run, "--calibration", str(site)]) == 0
    assert len(scorer.calls) == scored  # the cached scores still hold
    assert "warning: calibration" in capsys.readouterr().err  # made for other names than the benchmark's
    metrics = json.loads((out / "metrics.json").read_text())
    events = metrics["events"]
    assert (events["threshold"], events["min_event_frames"], events["smoothing_sigma"]) == (0.95, 2, 1.0)
    assert events["calibration"]["file"] == str(site) and len(events["calibration"]["sha256"]) == 16
    assert metrics["frame"]["smoothing"]["sigma"] == 1.0
    result = json.loads((out / "results" / "Test001" / "result.json").read_text())
    assert result["threshold"] == 0.95 and result["settings"]["min_event_frames"] == 2
    assert result["settings"]["calibration"] == events["calibration"]
    assert "site.json" in (out / "metrics.md").read_text()
    assert events["num_events"] == 0  # no score reaches the calibration's threshold

    assert main([*run, "--calibration", str(site), "--threshold", "0.3"]) == 0  # an explicit flag wins
    assert json.loads((out / "metrics.json").read_text())["events"]["threshold"] == 0.3
    capsys.readouterr()
    (tmp_path / "broken.json").write_text("{")
    assert main([*run, "--calibration", str(tmp_path / "broken.json")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "broken.json" in error and "lavida calibrate" in error


def test_event_metrics_count_false_alarms_and_the_anomalies_caught(tmp_path):
    """Events at the run's threshold against the labels: frame precision and recall, false alarms (events on normal
    frames only) per hour of normal footage, and the anomalies (runs of anomalous frames) an event overlaps."""
    from lavida.evaluation import event_metrics

    labels = np.zeros(100, np.int64)
    labels[20:30] = 1  # caught by the first event
    labels[60:70] = 1  # missed
    scores = np.zeros(100)
    scores[25:35] = 0.9  # 5 anomalous frames and 5 normal ones
    scores[80:84] = 0.9  # a false alarm
    metrics = event_metrics([labels], [scores], [10.0], EvaluationConfig(threshold=0.5))
    assert metrics["num_events"] == 2 and metrics["false_alarms"] == 1
    assert metrics["false_alarms_per_hour"] == pytest.approx(1 / (80 / 10.0 / 3600))
    assert metrics["frame_precision"] == pytest.approx(5 / 14) and metrics["frame_recall"] == pytest.approx(5 / 20)
    assert (metrics["anomalies"], metrics["anomalies_detected"]) == (2, 1)
    longer = event_metrics([labels], [scores], [10.0], EvaluationConfig(threshold=0.5, min_event_frames=5))
    assert longer["num_events"] == 1 and longer["false_alarms"] == 0  # the 4-frame blip is no event


def test_evaluated_results_name_each_events_anomaly(tmp_path):
    bench = get_benchmark("ped2", BUILDERS["ped2"](tmp_path).root)

    def naming(video, names, stride, return_masks):
        detection = OracleScorer()(video, names, stride, return_masks)
        probabilities = np.zeros((detection.video.num_frames, len(names)), np.float32)
        probabilities[:, -1] = detection.sampled_scores  # the last name explains every score
        return VideoDetection.from_frame_scores(detection.sampled_scores, 25.0, names, name_probabilities=probabilities,
                                                size=(detection.video.height, detection.video.width),
                                                masks=detection.masks, options=detection.options)

    evaluate_benchmark(bench, naming, tmp_path / "out", EvaluationConfig(progress=False, plots=False, threshold=0.01))
    events = json.loads((tmp_path / "out" / "results" / "Test001" / "result.json").read_text())["events"]
    assert events and {event["anomaly"] for event in events} == {bench.anomaly_names[-1]}
