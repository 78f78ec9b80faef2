"""The synthetic VAD benchmark as a loader: rendered split, dataset view, evaluation end to end, the CLI path."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest

from lavida.cli import main
from lavida.dataset_builders import benchmarks
from lavida.dataset_builders.benchmarks import build_synthetic_vad_split, get_benchmark, open_mask_source
from lavida.dataset_builders.synthetic_vad import SyntheticVADConfig, load_vad_masks
from lavida.dataset_builders.synthetic_world import HELD_OUT_NAMES
from lavida.errors import UserInputError
from lavida.evaluation import EvaluationConfig, evaluate_benchmark
from lavida.processing.detection import VideoDetection

SMALL = SyntheticVADConfig(size=64, min_frames=16, max_frames=24, anomalous_share=0.5)


class SidecarOracle:
    """Reads the ground truth next to the video file: a perfect scorer, to check the wiring (not the model)."""

    def __init__(self) -> None:
        self.calls = []

    def __call__(self, video, names, stride, return_masks):
        path = Path(video)
        labels = json.loads(path.with_name(path.stem + ".labels.json").read_text())["frame_labels"]
        self.calls.append((path.name, stride, len(names)))
        masks = None
        if return_masks:
            masks = load_vad_masks(path.with_name(path.stem + ".masks.npz")).astype(np.float16)
        return VideoDetection.from_frame_scores([0.2 + 0.6 * y for y in labels], 25.0, names, masks=masks,
                                                size=(0, 0) if masks is None else masks.shape[1:])


def test_rendered_split_loads_and_evaluates(tmp_path):
    folder = build_synthetic_vad_split(tmp_path / "svad", num_videos=3, config=SMALL)
    bench = get_benchmark("synthetic-vad", folder)
    assert bench.anomaly_names == tuple(HELD_OUT_NAMES) and bench.stride == 2 and len(bench) == 3
    dataset = bench.to_dataset()
    for row, video in zip(dataset, bench):
        masks = open_mask_source(row["mask_kind"], row["mask_path"])
        np.testing.assert_array_equal(row["labels"], [int(masks.frame(i).any()) for i in range(row["num_frames"])])
    scorer = SidecarOracle()
    metrics = evaluate_benchmark(bench, scorer, tmp_path / "out", EvaluationConfig(progress=False))
    assert {c[1] for c in scorer.calls} == {2} and {c[2] for c in scorer.calls} == {16}
    if 0 < metrics["frame"]["num_anomalous_frames"] < metrics["frame"]["num_frames"]:
        assert metrics["frame"]["micro_auc"] == 1.0
    assert metrics["pixel"]["pixel_auc"] == 1.0 or metrics["pixel"]["num_anomalous_pixels"] == 0
    with pytest.raises(UserInputError, match="not empty"):
        build_synthetic_vad_split(folder, num_videos=1, config=SMALL)


def test_cli_renders_the_split_when_the_folder_is_empty(tmp_path, monkeypatch):
    from lavida import evaluation

    monkeypatch.setattr(benchmarks, "build_synthetic_vad_split",
                        functools.partial(build_synthetic_vad_split, config=SMALL))
    scorer = SidecarOracle()
    monkeypatch.setattr(evaluation, "load_pipeline_score_fn", lambda model=None, device=None, **settings: scorer)
    data = tmp_path / "data"
    status = main(["evaluate", "--benchmark", "synthetic-vad", "--data-root", str(data), "--synthetic-videos", "2",
                   "--out", str(tmp_path / "out"), "--device", "cpu", "--no-plots"])
    assert status == 0 and len(list(data.glob("*.mp4"))) == 2 and len(scorer.calls) == 2
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["benchmark"] == "synthetic-vad"


def test_near_miss_split_surrounds_each_pivot_with_objects_sharing_its_colour_or_shape(tmp_path):
    from lavida.dataset_builders.benchmarks.synthetic_near_miss import render_near_miss_video

    videos = [render_near_miss_video(index, config=SMALL) for index in range(8)]
    again = render_near_miss_video(3, config=SMALL)
    np.testing.assert_array_equal(again.frames, videos[3].frames)  # seeded: the same video every time
    assert any(v.anomaly_names for v in videos) and any(not v.anomaly_names for v in videos)
    for video in videos:
        colours = [name.split()[0] for name in video.normal_names]
        shapes = [name.split()[1] for name in video.normal_names]
        assert not set(video.normal_names) & set(HELD_OUT_NAMES) and len(video.normal_names) >= 2
        if video.anomaly_names:  # the pivot crosses: a near miss of each kind is in view with it
            (pivot,) = video.anomaly_names
            colour, shape = pivot.split()
            assert pivot in HELD_OUT_NAMES and colour in colours and shape in shapes
            assert all(c == colour or s == shape for c, s in zip(colours, shapes))
            assert video.frame_labels.any() and video.masks.any()
        else:  # both halves of one listed name in view, never the name itself
            assert any(f"{c} {s}" in HELD_OUT_NAMES for c in colours for s in shapes)
            assert not video.frame_labels.any() and not video.masks.any()
    main_split = build_synthetic_vad_split(tmp_path / "main", num_videos=1, config=SMALL)
    near_miss = build_synthetic_vad_split(tmp_path / "near", num_videos=1, config=SMALL,
                                          benchmark="synthetic-vad-near-miss")
    bench = get_benchmark("synthetic-vad-near-miss", near_miss)
    assert bench.anomaly_names == get_benchmark("synthetic-vad", main_split).anomaly_names and bench.stride == 2
    assert [v.video_id for v in bench] == ["synthetic-vad-near-miss-test-0000"]
    with pytest.raises(UserInputError, match="synthetic-vad-near-miss"):
        build_synthetic_vad_split(tmp_path / "other", num_videos=1, benchmark="synthetic-vad-near-misses")


def test_cli_renders_the_near_miss_split_on_first_use(tmp_path, monkeypatch):
    from lavida import evaluation

    monkeypatch.setattr(benchmarks, "build_synthetic_vad_split",
                        functools.partial(build_synthetic_vad_split, config=SMALL))
    scorer = SidecarOracle()
    monkeypatch.setattr(evaluation, "load_pipeline_score_fn", lambda model=None, device=None, **settings: scorer)
    data = tmp_path / "data"
    status = main(["evaluate", "--benchmark", "synthetic-vad-near-miss", "--data-root", str(data),
                   "--synthetic-videos", "2", "--out", str(tmp_path / "out"), "--device", "cpu", "--no-plots"])
    assert status == 0 and sorted(p.name for p in data.glob("*.mp4")) == [
        "synthetic-vad-near-miss-test-0000.mp4", "synthetic-vad-near-miss-test-0001.mp4"]
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["benchmark"] == "synthetic-vad-near-miss" and len(scorer.calls) == 2
    table = (tmp_path / "out" / "metrics.md").read_text()  # the criterion next to the pixel AUC, both explained
    assert "| pixel AUC (native resolution) |" in table and "| pixel criterion AUC (40% coverage) |" in table
    assert "Pixel AUC ranks every pixel" in table and "the pixel criterion counts an anomalous frame" in table
