"""Fit a site's threshold on footage that is normal there, for a target false-alarm rate (calibration.json).

Examples:
    lavida calibrate quiet-day/ --anomalies "fighting, fire" --false-alarms-per-hour 1 --out site.json
    lavida calibrate a.mp4 b.mp4 @more.txt --anomalies "fighting" --target-fpr 0.001 --smoothing 2 --out site.json
    lavida detect street.mp4 --anomalies "fighting, fire" --calibration site.json
    lavida watch rtsp://camera/stream --anomalies "fighting, fire" --calibration site.json --out watch

Every video is scored through the video-anomaly-detection pipeline, as lavida detect scores it (the same model,
names, stride and smoothing), and the threshold is the lowest that meets the target on them (see
lavida.processing.calibration): --false-alarms-per-hour counts events per hour of the footage, --target-fpr the share
of its frames inside events. Unless --min-event-frames fixes it, the shortest event length is raised (up to
--max-min-event-frames) only where that lets the threshold drop. The file records the threshold, min_event_frames and
smoothing it gives lavida detect and lavida watch (--calibration; flags given explicitly win), the target, what it
reached on this footage, and what it was fitted on (videos, frames, hours, model, names). The videos should hold no
anomaly: each one raises the threshold.
"""

from __future__ import annotations

import argparse
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from lavida.errors import UserInputError
from lavida.processing.options import DEFAULT_BATCH_SIZE, DetectionOptions, check_positive_int

from .arguments import add_dataclass_arguments, add_scoring_arguments

# The detection settings a calibration gives; their flags default to None ("the calibration's, else the default").
CALIBRATED_FIELDS = ("threshold", "min_event_frames", "smoothing_sigma")


# ---------------------------------------------------------------------------------------------------------------------
# --calibration for lavida detect and lavida watch
# ---------------------------------------------------------------------------------------------------------------------


def calibrated_flag_settings() -> tuple[dict[str, Any], dict[str, str]]:
    """``defaults`` and ``helps`` for ``add_dataclass_arguments(..., DetectionOptions)``: the calibrated fields
    default to None, filled by ``calibrated_options`` from ``--calibration`` or the dataclass."""
    defaults, helps = {}, {}
    for spec in fields(DetectionOptions):
        if spec.name in CALIBRATED_FIELDS:
            defaults[spec.name] = None
            helps[spec.name] = f"{spec.metadata['help']} (default: {spec.default}, or the --calibration file's)"
    return defaults, helps


def add_calibration_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--calibration", default=None, metavar="FILE",
                        help="calibration.json from lavida calibrate: sets --threshold, --min-event-frames and "
                             "--smoothing-sigma unless they are given")


def loaded_calibration(args: argparse.Namespace):
    """The ``Calibration`` of ``--calibration`` (None without it); raises ``UserInputError`` for a bad file."""
    if getattr(args, "calibration", None) is None:
        return None
    from lavida.processing.calibration import load_calibration

    return load_calibration(args.calibration)


def calibrated_options(args: argparse.Namespace, **overrides: Any) -> DetectionOptions:
    """``DetectionOptions`` from the flags; the calibrated fields not given explicitly come from ``--calibration``,
    else from the dataclass defaults. Raises ``UserInputError``."""
    calibration = loaded_calibration(args)
    values: dict[str, Any] = {}
    for spec in fields(DetectionOptions):
        value = getattr(args, spec.name, None if spec.name in CALIBRATED_FIELDS else spec.default)
        if spec.name in CALIBRATED_FIELDS and value is None:
            value = calibration.settings()[spec.name] if calibration is not None else spec.default
        if value is not MISSING:
            values[spec.name] = value
    return DetectionOptions(**{**values, **overrides})


def calibration_warnings(args: argparse.Namespace, model_id: str, names: list[str],
                         options: DetectionOptions) -> list[str]:
    """One line per way the run differs from the one the calibration was fitted with (another model, other
    names...), for the command to print; empty without --calibration."""
    calibration = loaded_calibration(args)
    if calibration is None:
        return []
    problems = calibration.mismatches(model_id, names, options.stride, options.llm_frame_pixels)
    return [f"warning: calibration {args.calibration}: {problem}; its threshold may not fit" for problem in problems]


def calibration_settings(args: argparse.Namespace) -> dict[str, Any] | None:
    """What ``result.json`` records of the calibration used (``calibration_record``), or None."""
    calibration = loaded_calibration(args)
    if calibration is None:
        return None
    from lavida.processing.calibration import calibration_record

    return calibration_record(args.calibration, calibration)


# ---------------------------------------------------------------------------------------------------------------------
# lavida calibrate
# ---------------------------------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lavida.processing.calibration import CalibrationSearch, CalibrationTarget

    parser.add_argument("videos", nargs="+", metavar="NORMAL_VIDEO",
                        help="videos of the site with no anomaly (files, folders of videos or @list.txt files)")
    parser.add_argument("--out", default="calibration.json", help="the calibration file (default: calibration.json)")
    add_dataclass_arguments(parser, CalibrationTarget, aliases={"frame_fpr": ["--target-fpr"]},
                            metavars={"false_alarms_per_hour": "N", "frame_fpr": "F"})
    add_scoring_arguments(parser, exclude=["threshold", "min_event_frames", "mask_stride"])
    add_dataclass_arguments(parser, CalibrationSearch)
    parser.add_argument("--clip-batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                        help=f"clips per model call (default: {DEFAULT_BATCH_SIZE})")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")


def _parts(args: argparse.Namespace):
    """The target, search and detection options of the flags (validated; ``UserInputError``)."""
    from lavida.processing.calibration import CalibrationSearch, CalibrationTarget

    from .arguments import dataclass_from_args

    target = dataclass_from_args(CalibrationTarget, args)
    search = dataclass_from_args(CalibrationSearch, args)
    # min_event_frames is the search's (fixed or chosen), not a detection flag here; the threshold is what is fitted
    options = DetectionOptions(stride=args.stride, smoothing_sigma=args.smoothing_sigma,
                               llm_frame_pixels=args.llm_frame_pixels)
    return target, search, options


def check_args(args: argparse.Namespace) -> None:
    """Validate the flags, the videos and --out before anything heavy is imported."""
    from lavida.processing.distributed_detect import check_video_files, expand_video_inputs

    _parts(args)
    try:
        check_positive_int("--clip-batch-size", args.clip_batch_size)
        if args.threads is not None:
            check_positive_int("--threads", args.threads)
    except ValueError as error:
        raise UserInputError(str(error)) from None
    check_video_files(expand_video_inputs(args.videos))
    out = Path(args.out)
    if out.is_dir():
        raise UserInputError(f"--out {out} is a folder: give the path of the calibration file, e.g. "
                             f"{out / 'calibration.json'}.")
    parent = out.parent if str(out.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise UserInputError(f"--out {out} cannot be written: {parent} is not a folder.")


def run(args: argparse.Namespace) -> int:
    import torch

    from lavida.processing.anomaly_names import parse_anomaly_names
    from lavida.processing.calibration import FittedOn, fit_calibration, resolution_note
    from lavida.processing.distributed_detect import expand_video_inputs
    from lavida.processing.factories import load_detection_pipeline
    from lavida.processing.progress import Progress
    from lavida.processing.video_io import read_header

    target, search, options = _parts(args)
    names = parse_anomaly_names(args.anomalies)
    videos = expand_video_inputs(args.videos)
    for video in videos:  # every video must open before any is scored: a calibration misses none of its footage
        read_header(video)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    detector = load_detection_pipeline(args.model, device=args.device, batch_size=args.clip_batch_size)
    scored: list[tuple[Any, float]] = []
    frames = 0
    seconds = 0.0
    with Progress("scoring normal footage", total=len(videos), unit="video", enabled=True) as progress:
        for video in videos:
            detection = detector(video, anomalies=names, **vars(options))
            scored.append((detection.scores, detection.video.fps))
            frames += detection.video.num_frames
            seconds += detection.video.duration_s
            progress.advance()
    fitted_on = FittedOn(num_videos=len(videos), num_frames=frames, hours=round(seconds / 3600.0, 9),
                         model_id=detector.model_id, anomalies=names, stride=options.stride,
                         llm_frame_pixels=None if options.llm_frame_pixels is None else list(options.llm_frame_pixels))
    calibration = fit_calibration(scored, target, fitted_on, smoothing_sigma=options.smoothing_sigma, search=search)
    path = calibration.save(args.out)
    reached = calibration.reached
    print(f"{path}: threshold {calibration.threshold:.6g}, min_event_frames {calibration.min_event_frames}, "
          f"smoothing {calibration.smoothing_sigma:g} for {target.describe()}; on the {len(videos)} normal "
          f"video(s) ({seconds / 3600.0:.3g} h, {frames} frames): {reached.false_alarms} false alarm(s), "
          f"{reached.false_alarms_per_hour:.3g}/hour, frame false-positive rate {reached.frame_fpr:.3g}")
    if not reached.meets(target):
        print(f"lavida calibrate: warning: no threshold reaches {target.describe()} on this footage (the highest, "
              f"{calibration.threshold:.6g}, was kept): its scores reach the top of the range.")
    note = resolution_note(calibration)
    if note is not None:
        print(f"lavida calibrate: note: {note}")
    return 0
