"""Evaluate a model on a video anomaly detection benchmark's test split.

Examples:
    lavida evaluate --benchmark ped2 --data-root data/UCSD_Anomaly_Dataset.v1p2 --model path/to/checkpoint
    lavida evaluate --benchmark ubnormal --data-root data/UBnormal --out outputs/eval/ubnormal --stride 4
    lavida evaluate --benchmark ucf-crime --data-root data/UCF_Crime --smoothing-sigma 15 --max-videos 20
    lavida evaluate --benchmark ped2 --data-root data/UCSD_Anomaly_Dataset.v1p2 --calibration site.json

Benchmarks: ped1, ped2, shanghaitech, ubnormal, ucf-crime, xd-violence, avenue (official download layouts),
synthetic-vad and synthetic-vad-near-miss (rendered into --data-root on first use). The model runs over every test video
at the benchmark's stride with its standard prompt names (override with --stride / --anomalies), with a progress
bar, through the ``video-anomaly-detection`` pipeline (masks are read one frame at a time). Results per video are
cached in OUT/videos/, so an interrupted run continues where it stopped when started again with the same OUT. Writes
OUT/run.json (the model and the settings the cache depends on), OUT/metrics.json and OUT/metrics.md (a table; both
name the model), OUT/results/<video>/ (result.json and scores.csv, as lavida detect writes them with the same settings)
and OUT/plots/<video>.png (score against ground truth). Without --model the embedded default model (lavida-tiny) is
used. The detection flags are the fields of ``DetectionOptions``, as for lavida detect; --calibration (a
calibration.json from lavida calibrate) sets --threshold, --min-event-frames and --smoothing-sigma unless they are
given, as for lavida detect, and metrics.json (under "events") and each result.json record it. Those three enter only
the metrics (the frame metrics' smoothing, the event metrics at the threshold: frame precision and recall, false alarms
per hour of normal footage, anomalies detected) and the per-video results, never the cached scores.

The cache belongs to one model: an OUT holding results of another --model (or of the same checkpoint whose files
have been rewritten since), another --stride, --anomalies, --masks or --llm-frame-pixels is refused before anything
is scored, with one line naming what differs, so a run never reports another model's metrics. Choose another --out,
or pass --restart to discard the cached results and score again. Settings that only enter the metrics (smoothing,
threshold, event length) may change freely. A killed run's hidden temporary files are removed by the next run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lavida.atomic_files import check_output_folder
from lavida.processing.options import DetectionOptions

from .arguments import LLM_FRAME_PIXELS_HELP, add_dataclass_arguments, pixel_budget
from .calibrate import (add_calibration_argument, calibrated_flag_settings, calibrated_options, calibration_settings,
                        calibration_warnings)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--benchmark", required=True, help="benchmark name (ped2, shanghaitech, ubnormal, ...)")
    parser.add_argument("--data-root", default=None, help="folder holding the benchmark's official download layout")
    parser.add_argument("--model", default=None,
                        help="checkpoint folder or Hub id (default: the embedded lavida-tiny)")
    parser.add_argument("--out", default=None, help="output folder (default: outputs/evaluate/<benchmark>)")
    parser.add_argument("--anomalies", default=None,
                        help="comma-separated prompt names (default: the benchmark's standard list)")
    calibrated, calibrated_helps = calibrated_flag_settings()  # --threshold etc. default to the --calibration file's
    add_dataclass_arguments(
        parser, DetectionOptions, defaults={"stride": None, "return_masks": None, **calibrated},
        aliases={"smoothing_sigma": ["--smoothing"], "return_masks": ["--masks"]},
        types={"llm_frame_pixels": pixel_budget}, metavars={"llm_frame_pixels": "MIN,MAX"},
        helps={**calibrated_helps,
               "stride": "score every N-th decoded frame (default: the benchmark's standard)",
               "smoothing_sigma": "Gaussian temporal smoothing sigma in frames, truncated at 4 sigma, before the "
                                  "frame metrics and in the per-video results (default: 0 = off, or the "
                                  "--calibration file's)",
               "return_masks": "pixel masks and the pixel/region metrics; --no-masks is faster (default: when the "
                               "benchmark has pixel labels)",
               "llm_frame_pixels": LLM_FRAME_PIXELS_HELP})
    add_calibration_argument(parser)
    parser.add_argument("--max-videos", type=int, default=None, help="evaluate only the first N test videos")
    parser.add_argument("--no-plots", action="store_true", help="skip the per-video plots")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--restart", action="store_true",
                        help="discard the results cached in --out (from another model or settings) and score again")
    parser.add_argument("--synthetic-videos", type=int, default=None,
                        help="synthetic-vad(-near-miss) only: render this many test videos into --data-root when it "
                             "is empty (default: 32)")


def detection_options(args: argparse.Namespace) -> DetectionOptions:
    """The detection flags as ``DetectionOptions`` (stride 1 standing for the benchmark's), the calibrated ones from
    --calibration unless given; raises ``UserInputError`` (a bad value or calibration file)."""
    return calibrated_options(args, stride=1 if args.stride is None else args.stride, return_masks=False)


def check_args(args: argparse.Namespace) -> None:
    """Validate the detection flags, --calibration and --out before anything heavy is imported (raises
    ``UserInputError``)."""
    detection_options(args)
    if args.out is not None:
        check_output_folder(args.out, "--out")


def _prepare_synthetic(args: argparse.Namespace, name: str) -> None:
    """Default the synthetic benchmark's folder and render its test split there when it is missing or empty."""
    import logging

    from lavida.dataset_builders.benchmarks import build_synthetic_vad_split, is_synthetic_vad_folder
    from lavida.dataset_builders.benchmarks.synthetic import DEFAULT_NUM_VIDEOS

    if args.data_root is None:
        args.data_root = str(Path("outputs") / name / "test")
    folder = Path(args.data_root)
    if not is_synthetic_vad_folder(folder):
        count = args.synthetic_videos or DEFAULT_NUM_VIDEOS
        logging.getLogger(__name__).warning("rendering %d %s test videos into %s", count, name, folder)
        build_synthetic_vad_split(folder, num_videos=count, benchmark=name)


def run(args: argparse.Namespace) -> int:
    from lavida import evaluation
    from lavida.dataset_builders.benchmarks import SYNTHETIC_BENCHMARKS, canonical_name, get_benchmark
    from lavida.errors import UserInputError
    from lavida.processing.anomaly_names import parse_anomaly_names

    name = canonical_name(args.benchmark)
    if name in SYNTHETIC_BENCHMARKS:
        _prepare_synthetic(args, name)
    elif args.data_root is None:
        raise UserInputError(f"--data-root is required for benchmark {name!r}: pass the folder holding its "
                             "official download.")
    benchmark = get_benchmark(name, args.data_root)
    options = detection_options(args)
    config = evaluation.EvaluationConfig(
        stride=args.stride, anomaly_names=parse_anomaly_names(args.anomalies) if args.anomalies else None,
        return_masks=args.return_masks, mask_stride=options.mask_stride, threshold=options.threshold,
        min_event_frames=options.min_event_frames, smoothing_sigma=options.smoothing_sigma, plots=not args.no_plots, max_videos=args.max_videos,
        llm_frame_pixels=args.llm_frame_pixels, restart=args.restart, calibration=calibration_settings(args))
    out_dir = Path(args.out) if args.out else Path("outputs") / "evaluate" / name
    check_output_folder(out_dir, "--out")  # the default one too, before the model is loaded
    if args.model is not None and Path(args.model).is_dir():  # a cache of another model is refused before loading
        evaluation.check_cached_results(benchmark, out_dir, config, evaluation.model_identity(args.model))
    budget = {} if args.llm_frame_pixels is None else {"llm_frame_pixels": args.llm_frame_pixels}
    score_fn = evaluation.load_pipeline_score_fn(args.model, device=args.device, mask_stride=options.mask_stride,
                                                 **budget)
    model = getattr(score_fn, "model_identity", None)
    names = list(config.anomaly_names or benchmark.anomaly_names)
    stride = config.stride or benchmark.stride
    for warning in calibration_warnings(args, model.name if model else "an unnamed scorer", names,
                                        config.detection_options(stride)):
        print(f"lavida evaluate: {warning}", file=sys.stderr)
    metrics = evaluation.evaluate_benchmark(benchmark, score_fn, out_dir, config)
    sys.stdout.write(evaluation.metrics_table(evaluation.json_ready(metrics)))
    sys.stdout.write(f"\nWrote {out_dir / evaluation.METRICS_JSON}, {out_dir / evaluation.METRICS_MD}, "
                     f"{out_dir / evaluation.RESULTS_DIR}/ and {out_dir / 'plots'}/\n")
    return 0
