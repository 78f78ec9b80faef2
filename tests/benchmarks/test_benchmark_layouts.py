"""Every benchmark: an official-layout fixture is loaded, exposed as a datasets.Dataset and evaluated end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lavida.dataset_builders.benchmarks import BENCHMARKS, get_benchmark, open_mask_source
from lavida.evaluation import EvaluationConfig, evaluate_benchmark

from .layouts import BUILDERS, OracleScorer

FRAME_FOLDER_BENCHMARKS = {"ped1", "ped2", "shanghaitech"}


@pytest.fixture(params=sorted(BUILDERS))
def built(request, tmp_path):
    name = request.param
    return name, BUILDERS[name](tmp_path)


def test_loader_reads_labels_masks_names_and_stride(built):
    name, layout = built
    bench = get_benchmark(name, layout.root)
    assert [v.video_id for v in bench] == sorted(layout.labels) or {v.video_id for v in bench} == set(layout.labels)
    assert bench.anomaly_names == BENCHMARKS[name].anomaly_names and len(bench.anomaly_names) >= 5
    assert bench.stride == {"ped1": 1, "ped2": 1, "shanghaitech": 2, "ubnormal": 4, "ucf-crime": 128,
                            "xd-violence": 128, "avenue": 2}[name]
    for video in bench:
        expected = layout.labels[video.video_id]
        np.testing.assert_array_equal(video.frame_labels(len(expected)), expected, err_msg=video.video_id)
        assert (video.masks is not None) == layout.has_masks[video.video_id]
        if name in FRAME_FOLDER_BENCHMARKS:
            assert video.is_frame_folder
            assert video.load().shape[:1] == expected.shape


def test_dataset_view_round_trips_labels_and_masks(built):
    name, layout = built
    bench = get_benchmark(name, layout.root)
    dataset = bench.to_dataset(embed_videos=True)
    assert len(dataset) == len(layout.labels)
    for row, video in zip(dataset, bench):
        assert row["video_id"] == video.video_id and row["benchmark"] == name
        np.testing.assert_array_equal(row["labels"], layout.labels[video.video_id])
        assert row["num_frames"] == len(layout.labels[video.video_id])
        assert row["anomaly_names"] == list(bench.anomaly_names) and row["stride"] == bench.stride
        if row["video_kind"] == "file":
            assert row["video_bytes"] == video.video.read_bytes()
        else:
            assert row["video_bytes"] is None
        reopened = open_mask_source(row["mask_kind"], row["mask_path"])
        assert (reopened is not None) == layout.has_masks[video.video_id]
        if reopened is not None and video.masks is not None:
            shape = video.load().shape[1:3] if video.is_frame_folder else (48, 64)
            for index in range(row["num_frames"]):
                np.testing.assert_array_equal(reopened.frame(index, shape), video.masks.frame(index, shape))
        if name == "ubnormal" and video.video_id.startswith("abnormal"):
            assert [t["track_id"] for t in row["tracks"]] == [1] and row["tracks"][0]["frames"] == [3, 4, 5, 6]


def test_end_to_end_with_scorer_double(built, tmp_path):
    name, layout = built
    bench = get_benchmark(name, layout.root)
    scorer = OracleScorer()
    metrics = evaluate_benchmark(bench, scorer, tmp_path / "out", EvaluationConfig(progress=False))
    assert metrics["benchmark"] == name and metrics["num_videos"] == len(layout.labels)
    # labels aligned with the frames they describe: the oracle separates them perfectly
    assert metrics["frame"]["micro_auc"] == 1.0
    assert metrics["frame"]["num_frames"] == sum(len(v) for v in layout.labels.values())
    assert {c["stride"] for c in scorer.calls} == {bench.stride}
    assert all(c["names"] == list(bench.anomaly_names) for c in scorer.calls)
    if name in FRAME_FOLDER_BENCHMARKS:
        assert {c["kind"] for c in scorer.calls} == {"frames"}
    if bench.has_masks:
        assert all(c["return_masks"] for c in scorer.calls)
        assert metrics["pixel"]["pixel_auc"] > 0.99
        assert metrics["pixel"]["criterion_auc"] == 1.0
    else:
        assert metrics["pixel"] is None
    if name == "ubnormal":
        assert metrics["region"]["rbdc"] == pytest.approx(1.0) and metrics["region"]["tbdc"] == pytest.approx(1.0)
        assert metrics["region"]["num_tracks"] == 1 and metrics["region"]["num_regions"] == 4
    out = tmp_path / "out"
    assert json.loads((out / "metrics.json").read_text())["frame"]["micro_auc"] == 1.0
    assert "| frame AUC (micro, all frames pooled) | 1.0000 |" in (out / "metrics.md").read_text()
    plots = sorted(p.name for p in (out / "plots").glob("*.png"))
    assert len(plots) == len(layout.labels)
    assert (out / "plots" / plots[0]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
