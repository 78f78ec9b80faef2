"""Masks between scored frames: what ``mask_stride=1`` costs and gives against masks on the scored frames only.

At ``stride`` above 1 the MLLM reads every ``stride``-th frame. With ``mask_stride`` equal to the stride, the frames in
between take their nearest scored frame's mask; with ``mask_stride=1`` (the default) each frame gets its own, from
SAM2 and the mask decoder alone with its clip's prompt encoding (``segment_frames``). This script runs the pipeline
both ways on the shipped sample video, whose ground-truth masks it has, and for reference with every frame scored
(stride 1, the MLLM on every frame too), side by side in one process: the settings alternate over ``--repeats`` rounds
and each one's median time is reported with its ratio to the first.

Reported per setting: seconds per call (median), frames with a mask of their own, the pixel criterion AUC on the
sample's frames (an anomalous frame is detected when 40 % of its anomaly's pixels reach the threshold, a normal frame
is a false alarm when any pixel does), pixel AUC, and the mean fraction of the anomaly's pixels at or above 0.5 on
the anomalous frames. The frame scores at ``--stride`` are the same with either ``mask_stride`` (checked).

Usage (from the repository root):
    python -m benchmarks.mask_stride                     # the embedded lavida-tiny at stride 2
    python -m benchmarks.mask_stride --model PATH_OR_HUB_ID --stride 4 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

import numpy as np
import torch

from lavida.atomic_files import write_json_atomic

from .common import SAMPLE_VIDEO, environment, resolve_device


def sample_ground_truth() -> tuple[str, list[str], np.ndarray]:
    """The shipped sample: its path, its anomaly names and its ground-truth masks ``bool [F, H, W]``."""
    from lavida.dataset_builders.synthetic_vad import load_vad_masks
    from lavida.processing.anomaly_names import parse_anomaly_names

    names = parse_anomaly_names(SAMPLE_VIDEO.with_suffix(".anomalies.txt").read_text())
    return str(SAMPLE_VIDEO), names, load_vad_masks(SAMPLE_VIDEO.with_suffix(".masks.npz"))


def mask_figures(masks, truth: np.ndarray) -> dict[str, float]:
    """Pixel criterion AUC / EER, pixel AUC and mean anomaly coverage at 0.5 of one detection's masks."""
    from lavida.metrics import PixelAUCAccumulator, PixelCriterionAccumulator

    pixels, criterion = PixelAUCAccumulator(), PixelCriterionAccumulator()
    coverage = []
    for index, target in enumerate(truth):
        mask = masks[index][: target.shape[0], : target.shape[1]].astype(np.float32)  # (H, W)
        pixels.update(mask, target)
        criterion.update(mask, target)
        if target.any():
            coverage.append(float((mask[target] >= 0.5).mean()))
    result = criterion.result()
    return {"criterion_auc": result["auc"], "criterion_eer": result["eer"], "pixel_auc": pixels.auc(),
            "anomaly_coverage": float(np.mean(coverage))}


def compare(model: str | None, device: torch.device, stride: int, repeats: int) -> dict[str, Any]:
    """Both settings at ``stride`` and, for reference, every frame scored (stride 1), alternating over ``repeats``
    rounds after one warm-up call."""
    from lavida.processing.factories import load_detection_pipeline

    video, names, truth = sample_ground_truth()
    detector = load_detection_pipeline(model, device=device)
    runs = {"scored frames only": {"stride": stride, "mask_stride": stride},
            "every frame (mask_stride 1)": {"stride": stride, "mask_stride": 1},
            "every frame scored (stride 1)": {"stride": 1, "mask_stride": 1}}
    times: dict[str, list[float]] = {label: [] for label in runs}
    results = {}
    detector(video, anomalies=names, stride=stride, return_masks=True)  # warm-up
    for _ in range(max(1, repeats)):
        for label, settings in runs.items():
            start = time.perf_counter()
            results[label] = detector(video, anomalies=names, return_masks=True, **settings)
            times[label].append(time.perf_counter() - start)
    first, second = (results[label] for label in list(runs)[:2])
    if not np.array_equal(first.scores, second.scores):
        raise AssertionError("The frame scores changed with mask_stride; they must not.")
    rows = {label: {**runs[label], "seconds": statistics.median(times[label]),
                    "frames_with_own_mask": int(len(results[label].masks.mask_frames)),
                    **mask_figures(results[label].masks, truth)} for label in runs}
    base = rows["scored frames only"]["seconds"]
    for row in rows.values():
        row["time_ratio"] = row["seconds"] / base
    return {"video": SAMPLE_VIDEO.name, "frames": int(len(truth)),
            "anomalous_frames": int(truth.any(axis=(1, 2)).sum()), "stride": stride, "repeats": repeats,
            "runs": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="checkpoint folder or Hub id (default: the embedded model)")
    parser.add_argument("--stride", type=int, default=2, help="scoring stride, at least 2 (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds of both settings (default 3)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--json", default="outputs/benchmarks/mask_stride.json")
    args = parser.parse_args(argv)
    if args.stride < 2 or args.repeats < 1:
        parser.error("--stride must be at least 2 and --repeats at least 1")

    torch.manual_seed(0)
    device = resolve_device(args.device)
    figures = compare(args.model, device, args.stride, args.repeats)
    report = {"model": args.model or "embedded lavida-tiny", **figures, "environment": environment(device)}
    print(f"Masks of {report['model']} on {figures['video']} ({figures['frames']} frames, "
          f"{figures['anomalous_frames']} anomalous), median of {figures['repeats']} alternating rounds:")
    print(f"  {'masks on':<30} {'stride':>6} {'s / call':>9} {'x':>5} {'own masks':>10} {'criterion AUC':>13} "
          f"{'criterion EER':>13} {'pixel AUC':>10} {'coverage':>9}")
    for label, row in figures["runs"].items():
        print(f"  {label:<30} {row['stride']:>6} {row['seconds']:>9.2f} {row['time_ratio']:>5.2f} "
              f"{row['frames_with_own_mask']:>10} {row['criterion_auc']:>13.4f} {row['criterion_eer']:>13.4f} "
              f"{row['pixel_auc']:>10.4f} {row['anomaly_coverage']:>9.3f}")
    print(f"wrote {write_json_atomic(args.json, report)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
