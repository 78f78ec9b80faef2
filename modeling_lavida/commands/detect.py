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
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .arguments import LLM_FRAME_PIXELS_HELP, pixel_budget


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("videos", nargs="+", metavar="VIDEO",
                        help="video files (mp4, webm, avi, mkv, gif, ...), folders of videos or @list.txt files")
    parser.add_argument("--anomalies", required=True, help='comma-separated anomaly names, e.g. "fighting, fire"')
    parser.add_argument("--model", default=None, help="checkpoint folder or Hub id (default: the embedded lavida-tiny)")
    parser.add_argument("--out", default="outputs", help="output folder (default: outputs)")
    parser.add_argument("--stride", type=int, default=1, help="score every N-th frame (default: 1)")
    parser.add_argument("--threshold", type=float, default=0.5, help="event threshold on the score (default: 0.5)")
    parser.add_argument("--min-event-frames", type=int, default=1, help="shortest event, in frames (default: 1)")
    parser.add_argument("--smoothing", type=float, default=0.0,
                        help="Gaussian temporal smoothing sigma in frames (default: 0 = off)")
    parser.add_argument("--clip-batch-size", type=int, default=2, help="clips per model call (default: 2)")
    parser.add_argument("--no-overlay", action="store_true", help="skip overlay.mp4 (faster)")
    parser.add_argument("--llm-frame-pixels", type=pixel_budget, default=None, metavar="MIN,MAX",
                        help=LLM_FRAME_PIXELS_HELP)
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads per process (default: torch's choice; cores / processes when "
                             "launched as several processes)")


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm.auto import tqdm

    from lavida.errors import UserInputError
    from lavida.model_factory import default_model_path, load_model_and_processor
    from lavida.processing.anomaly_names import parse_anomaly_names
    from lavida.processing.detection import DetectionOptions, detect_video
    from lavida.processing.distributed_detect import (ProcessGroup, ProcessInfo, VideoOutcome, expand_video_inputs,
                                                      index_dict, merge_outcomes, output_folder_names,
                                                      pick_device, shard_indices,
                                                      threads_per_process, video_cost, write_index)
    from lavida.processing.result_writers import DetectionRecord, OutputOptions, format_summary, write_results

    if args.stride < 1:
        raise UserInputError(f"--stride must be a positive number of frames, got {args.stride}.")
    if not 0.0 <= args.threshold <= 1.0:
        raise UserInputError(f"--threshold must be between 0 and 1, got {args.threshold}.")
    names = parse_anomaly_names(args.anomalies)
    videos = expand_video_inputs(args.videos)
    folders = output_folder_names(videos)
    process = ProcessInfo.from_environment()
    mine = shard_indices([video_cost(video) for video in videos], process.world_size)[process.rank]
    device = pick_device(args.device, process)
    if args.threads is not None and args.threads < 1:
        raise UserInputError(f"--threads must be a positive number, got {args.threads}.")
    if args.threads is not None or (process.distributed and device == "cpu"):
        torch.set_num_threads(args.threads or threads_per_process(process))
    group = ProcessGroup(process).open()
    model, processor = load_model_and_processor(args.model, device=device)
    model_id = args.model or f"lavida-tiny ({default_model_path().name}, embedded)"
    options = DetectionOptions(stride=args.stride, threshold=args.threshold, min_event_frames=args.min_event_frames,
                               smoothing_sigma=args.smoothing, clip_batch_size=args.clip_batch_size,
                               keep_masks=not args.no_overlay, llm_frame_pixels=args.llm_frame_pixels)
    settings = {"stride": args.stride, "min_event_frames": args.min_event_frames, "smoothing_sigma": args.smoothing}
    if args.llm_frame_pixels is not None:
        settings["llm_frame_pixels"] = list(args.llm_frame_pixels)
    outcomes = []
    for position in mine:
        video, folder = videos[position], folders[position]
        try:
            with tqdm(total=0, unit="frame", desc=Path(video).name, leave=False, disable=None) as bar:
                def progress(done: int, total: int) -> None:
                    bar.total = total
                    bar.n = done
                    bar.refresh()

                detection = detect_video(model, processor, video, names, options, progress=progress)
            record = DetectionRecord(
                source=video, info=detection.info, anomalies=names, scores=detection.scores, events=detection.events,
                threshold=args.threshold, model_id=model_id, settings=settings,
            )
            out_dir = write_results(Path(args.out) / folder, record,
                                    masks=None if args.no_overlay else detection.mask,
                                    options=OutputOptions(overlay=not args.no_overlay))
            print(f"{format_summary(record)} -> {out_dir}")
            outcomes.append(VideoOutcome(position, video, folder, "ok", num_frames=detection.info.num_frames,
                                         num_events=len(detection.events),
                                         max_score=round(float(detection.scores.max()), 6)))
        except (UserInputError, FileNotFoundError) as error:
            outcomes.append(VideoOutcome(position, video, folder, "error", error=str(error)))
            print(f"lavida detect: error: {error}", file=sys.stderr)
    merged = merge_outcomes(group.all_gather(outcomes))
    if process.is_main:
        write_index(args.out, index_dict(merged, names, model_id, {**settings, "threshold": args.threshold}))
    group.close()  # waits for every process, so none ends the launch before the index is written
    return 2 if any(outcome.status != "ok" for outcome in merged) else 0
