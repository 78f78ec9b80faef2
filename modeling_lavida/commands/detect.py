"""Detect user-named anomalies in videos: per-frame scores, events, a plot and a mask overlay.

Examples:
    lavida detect street.mp4 --anomalies "fighting, fire, bicycle"
    lavida detect a.mp4 b.webm --anomalies "red circle" --model path/to/checkpoint --stride 2 --out results
    lavida detect videos/ @more.txt --anomalies "fighting"          # a folder of videos and a list file
    accelerate launch --num_processes 2 -m lavida.cli detect videos/ --anomalies "fighting"  # 2 processes

Writes DIR/<video stem>/result.json, scores.csv, scores.png and overlay.mp4 (unless --no-overlay) and DIR/index.json
(one entry per input video), and prints a one-line summary per video. A bad video is reported on one line and the
others still run; the exit status is 2 if any input failed. Without --model the embedded default model (lavida-tiny)
is used. Launched as several processes (accelerate launch, torchrun), each process scores a share of the videos and
the output folder is the one a single process writes.

Every video takes the route of the ``video-anomaly-detection`` pipeline (one decoding pass to score, a second one for
the overlay) and ``write_result_folder``; the detection flags are the fields of ``DetectionOptions``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lavida.errors import UserInputError
from lavida.processing.options import DEFAULT_BATCH_SIZE, DetectionOptions, check_positive_int

from .arguments import LLM_FRAME_PIXELS_HELP, add_dataclass_arguments, dataclass_from_args, pixel_budget


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("videos", nargs="+", metavar="VIDEO",
                        help="video files (mp4, webm, avi, mkv, gif, ...), folders of videos or @list.txt files")
    parser.add_argument("--anomalies", required=True, help='comma-separated anomaly names, e.g. "fighting, fire"')
    parser.add_argument("--model", default=None,
                        help="checkpoint folder or Hub id (default: the embedded lavida-tiny)")
    parser.add_argument("--out", default="outputs", help="output folder (default: outputs)")
    add_dataclass_arguments(parser, DetectionOptions, exclude=["return_masks"],
                            aliases={"smoothing_sigma": ["--smoothing"]}, types={"llm_frame_pixels": pixel_budget},
                            helps={"llm_frame_pixels": LLM_FRAME_PIXELS_HELP},
                            metavars={"llm_frame_pixels": "MIN,MAX"})
    parser.add_argument("--clip-batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                        help=f"clips per model call (the pipeline's batch_size; default: {DEFAULT_BATCH_SIZE})")
    parser.add_argument("--no-overlay", action="store_true", help="skip overlay.mp4 and the masks (faster)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads per process (default: torch's choice; cores / processes when "
                             "launched as several processes)")


def detection_options(args: argparse.Namespace) -> DetectionOptions:
    """The flags as ``DetectionOptions`` (masks only when the overlay is written); raises ``UserInputError``."""
    return dataclass_from_args(DetectionOptions, args, return_masks=not args.no_overlay)


def check_args(args: argparse.Namespace) -> None:
    """Validate the flags before anything heavy is imported."""
    detection_options(args)
    try:
        check_positive_int("--clip-batch-size", args.clip_batch_size)
        if args.threads is not None:
            check_positive_int("--threads", args.threads)
    except ValueError as error:
        raise UserInputError(str(error)) from None


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm.auto import tqdm

    from lavida.processing.anomaly_names import parse_anomaly_names
    from lavida.processing.distributed_detect import (ProcessGroup, ProcessInfo, VideoOutcome, expand_video_inputs,
                                                      index_dict, merge_outcomes, output_folder_names,
                                                      pick_device, shard_indices,
                                                      threads_per_process, video_cost, write_index)
    from lavida.processing.factories import load_detection_pipeline
    from lavida.processing.result_writers import OutputOptions, format_summary, write_result_folder

    options = detection_options(args)
    names = parse_anomaly_names(args.anomalies)
    videos = expand_video_inputs(args.videos)
    folders = output_folder_names(videos)
    process = ProcessInfo.from_environment()
    mine = shard_indices([video_cost(video) for video in videos], process.world_size)[process.rank]
    device = pick_device(args.device, process)
    if args.threads is not None or (process.distributed and device == "cpu"):
        torch.set_num_threads(args.threads or threads_per_process(process))
    group = ProcessGroup(process).open()
    detector = load_detection_pipeline(args.model, device=device, batch_size=args.clip_batch_size)
    outputs = OutputOptions(overlay=not args.no_overlay)
    outcomes = []
    for position in mine:
        video, folder = videos[position], folders[position]
        try:
            with tqdm(total=0, unit="frame", desc=Path(video).name, leave=False, disable=None) as bar:
                def progress(done: int, expected: int | None) -> None:
                    bar.total = max(done, expected or 0)
                    bar.n = done
                    bar.refresh()

                detection = detector(video, anomalies=names, progress=progress, **vars(options))
            out_dir = write_result_folder(Path(args.out) / folder, detection, outputs)
            print(f"{format_summary(detection)} -> {out_dir}")
            outcomes.append(VideoOutcome(position, video, folder, "ok", num_frames=detection.video.num_frames,
                                         num_events=len(detection.events),
                                         max_score=round(float(detection.scores.max()), 6)))
        except (UserInputError, FileNotFoundError) as error:
            outcomes.append(VideoOutcome(position, video, folder, "error", error=str(error)))
            print(f"lavida detect: error: {error}", file=sys.stderr)
    merged = merge_outcomes(group.all_gather(outcomes))
    if process.is_main:
        write_index(args.out, index_dict(merged, names, detector.model_id,
                                         {**options.settings(), "threshold": options.threshold}))
    group.close()  # waits for every process, so none ends the launch before the index is written
    return 2 if any(outcome.status != "ok" for outcome in merged) else 0
