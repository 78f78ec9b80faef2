"""Detect user-named anomalies in videos: per-frame scores, events, a plot and a mask overlay.

Examples:
    lavida detect street.mp4 --anomalies "fighting, fire, bicycle"
    lavida detect a.mp4 b.webm --anomalies "red circle" --model path/to/checkpoint --stride 2 --out results
    lavida detect videos/ @more.txt --anomalies "fighting"          # a folder of videos and a list file
    lavida detect street.mp4 --anomalies "fighting" --calibration site.json   # the site's threshold (lavida calibrate)
    lavida detect videos/ --anomalies "fighting" --processes 2     # 2 processes on this machine

Writes DIR/<video stem>/result.json, scores.csv, scores.png and overlay.mp4 (unless --no-overlay) and DIR/index.json
(one entry per input video), and prints a one-line summary per video. Missing videos, an empty folder or list and an
--out that is a file are refused before the model is loaded. A video that fails (not decodable, or its results
cannot be written: disk full, device busy) is reported on one line, leaves no half-written folder, and the others
still run; index.json records every outcome and the exit status is 2 if any input failed (1 if index.json itself
cannot be written). A run killed outright leaves hidden temporary folders that the next run into DIR removes. Without
--model the embedded default model (lavida-tiny) is used; it knows only the synthetic world it was trained on, which
the run says once. With --processes N (or launched as several processes by torchrun / accelerate launch --multi_gpu),
each process scores a share of the videos and the output folder is the one a single process writes; --processes ends
with the exit status and lines of a single process, while a launcher reports any non-zero status (a failed video) as
a crash of its own.

Every video takes the route of the ``video-anomaly-detection`` pipeline (one decoding pass to score, a second one for
the overlay) and ``write_result_folder``; the detection flags are the fields of ``DetectionOptions``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lavida.atomic_files import check_output_folder
from lavida.errors import UserInputError
from lavida.processing.options import DEFAULT_BATCH_SIZE, DetectionOptions, check_positive_int

from .arguments import add_scoring_arguments
from .calibrate import (add_calibration_argument, calibrated_flag_settings, calibrated_options, calibration_settings,
                        calibration_warnings)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("videos", nargs="+", metavar="VIDEO",
                        help="video files (mp4, webm, avi, mkv, gif, ...), folders of videos or @list.txt files")
    parser.add_argument("--out", default="outputs", help="output folder (default: outputs)")
    defaults, helps = calibrated_flag_settings()  # --threshold etc. default to the --calibration file's
    add_scoring_arguments(parser, defaults=defaults, helps=helps)
    add_calibration_argument(parser)
    parser.add_argument("--clip-batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                        help=f"clips per model call (the pipeline's batch_size; default: {DEFAULT_BATCH_SIZE})")
    parser.add_argument("--no-overlay", action="store_true", help="skip overlay.mp4 and the masks (faster)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--processes", type=int, default=1,
                        help="processes to split the videos across on this machine (default: 1; one per GPU on a "
                             "multi-GPU machine)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads per process (default: torch's choice; cores / processes when "
                             "launched as several processes)")


def detection_options(args: argparse.Namespace) -> DetectionOptions:
    """The flags as ``DetectionOptions`` (masks only when the overlay is written); raises ``UserInputError``."""
    return calibrated_options(args, return_masks=not args.no_overlay)


def check_args(args: argparse.Namespace) -> None:
    """Validate the flags, the videos (they exist) and --out (a folder, or creatable) before anything heavy is
    imported."""
    detection_options(args)
    try:
        check_positive_int("--clip-batch-size", args.clip_batch_size)
        check_positive_int("--processes", args.processes)
        if args.threads is not None:
            check_positive_int("--threads", args.threads)
    except ValueError as error:
        raise UserInputError(str(error)) from None
    from lavida.processing.distributed_detect import check_video_files, expand_video_inputs  # numpy, not torch

    check_video_files(expand_video_inputs(args.videos))
    check_output_folder(args.out, "--out")


def _run_in_process(args: argparse.Namespace) -> int:
    """One process of ``--processes N``: the command as the CLI runs it (errors as one line)."""
    from lavida.cli import configure_logging, run_command

    configure_logging(args.verbose)
    return run_command("detect", sys.modules[__name__], args)


def run(args: argparse.Namespace) -> int:
    from lavida.processing.distributed_detect import ProcessInfo, launch_processes

    process = ProcessInfo.from_environment()
    if args.processes > 1:
        if process.distributed:
            raise UserInputError(f"--processes {args.processes} starts its own processes, but this one was started "
                                 f"by a launcher as one of {process.world_size}: leave out --processes or the "
                                 "launcher.")
        return launch_processes(_run_in_process, argparse.Namespace(**{**vars(args), "processes": 1}), args.processes)
    return _run_share(args, process)


def _run_share(args: argparse.Namespace, process) -> int:
    """Score this process's share of the videos; the main process writes index.json and returns the run's status
    (the others return 0 once it is written: a launcher takes any non-zero status of a process for a crash)."""
    import torch

    from lavida.atomic_files import remove_stale_staging
    from lavida.cli import describe_os_error
    from lavida.processing.anomaly_names import parse_anomaly_names
    from lavida.processing.detection import training_domain_notice
    from lavida.processing.distributed_detect import (INDEX_JSON, ProcessGroup, VideoOutcome, collect_warnings,
                                                      expand_video_inputs, index_dict, merge_outcomes,
                                                      output_folder_names, pick_device, shard_indices,
                                                      threads_per_process, video_cost, write_index)
    from lavida.processing.factories import load_detection_pipeline
    from lavida.processing.progress import Progress
    from lavida.processing.result_writers import OutputOptions, format_summary, write_result_folder

    options = detection_options(args)
    names = parse_anomaly_names(args.anomalies)
    videos = expand_video_inputs(args.videos)
    folders = output_folder_names(videos)
    mine = shard_indices([video_cost(video) for video in videos], process.world_size)[process.rank]
    device = pick_device(args.device, process)
    if args.threads is not None or (process.distributed and device == "cpu"):
        torch.set_num_threads(args.threads or threads_per_process(process))
    if process.is_main:
        processes = "1 process" if process.world_size == 1 else f"{process.world_size} processes"
        plural = "video" if len(videos) == 1 else "videos"
        print(f"lavida detect: {len(videos)} {plural} in {processes} ({device})", file=sys.stderr)
    group = ProcessGroup(process).open()
    if process.is_main:  # the other processes' own temporary folders are alive, so they are kept
        remove_stale_staging(args.out)
    detector = load_detection_pipeline(args.model, device=device, batch_size=args.clip_batch_size)
    training_domain = getattr(detector.model.config, "training_domain", None)
    if process.is_main and args.model is None and training_domain:
        print(f"lavida detect: note: {training_domain_notice(training_domain)}", file=sys.stderr)
    calibration = calibration_settings(args)  # recorded in result.json's settings
    for warning in calibration_warnings(args, detector.model_id, names, options) if process.is_main else []:
        print(f"lavida detect: {warning}", file=sys.stderr)
    outputs = OutputOptions(overlay=not args.no_overlay, progress=True)  # a bar on a terminal, lines in a log
    outcomes = []

    def failed(position: int, message: str, warnings: list[str]) -> None:
        outcomes.append(VideoOutcome(position, videos[position], folders[position], "error", error=message,
                                     warnings=list(warnings) or None))
        print(f"lavida detect: error: {message}", file=sys.stderr)

    for position in mine:
        video, target = videos[position], Path(args.out) / folders[position]
        with collect_warnings() as warnings:  # a damaged video warns once, not once per decoding pass
            try:
                with Progress(f"video {position + 1}/{len(videos)} {Path(video).name}: scoring", enabled=True) as bar:
                    detection = detector(video, anomalies=names, progress=bar.update, **vars(options))
                    detection.calibration = calibration
            except UserInputError as error:
                failed(position, str(error), warnings)
                continue
            except OSError as error:  # e.g. a video that cannot be read (permissions, a device error)
                failed(position, f"{video}: {describe_os_error(error)}", warnings)
                continue
            try:
                out_dir = write_result_folder(target, detection, outputs)
            except UserInputError as error:
                failed(position, str(error), warnings)
                continue
            except OSError as error:  # a full disk or a busy device fails this video only (nothing half-written stays)
                failed(position, f"{video}: cannot write its results to {target}: "
                                 f"{describe_os_error(error, name_file=False)}", warnings)
                continue
        print(f"{format_summary(detection)} -> {out_dir}")
        outcomes.append(VideoOutcome(position, video, folders[position], "ok",
                                     num_frames=detection.video.num_frames, num_events=len(detection.events),
                                     max_score=round(float(detection.scores.max()), 6),
                                     warnings=list(warnings) or None))
    merged = merge_outcomes(group.all_gather(outcomes))
    status = 2 if any(outcome.status != "ok" for outcome in merged) else 0
    try:
        if process.is_main:
            try:
                settings = {**options.settings(), "threshold": options.threshold}
                if calibration is not None:
                    settings["calibration"] = calibration
                write_index(args.out, index_dict(merged, names, detector.model_id, settings))
            except OSError as error:
                print(f"lavida detect: error: cannot write {Path(args.out) / INDEX_JSON}: "
                      f"{describe_os_error(error, name_file=False)}", file=sys.stderr)
                status = 1
    finally:
        group.close()  # waits for every process, so none ends the launch before the index is written
    return status if process.is_main else 0
