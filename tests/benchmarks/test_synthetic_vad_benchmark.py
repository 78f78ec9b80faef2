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
    monkeypatch.setattr(evaluation, "load_pipeline_score_fn", lambda model=None, device=None: scorer)
    data = tmp_path / "data"
    status = main(["evaluate", "--benchmark", "synthetic-vad", "--data-root", str(data), "--synthetic-videos", "2",
                   "--out", str(tmp_path / "out"), "--device", "cpu", "--no-plots"])
    assert status == 0 and len(list(data.glob("*.mp4"))) == 2 and len(scorer.calls) == 2
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["benchmark"] == "synthetic-vad"
