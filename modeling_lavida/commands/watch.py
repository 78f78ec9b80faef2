"""Watch a live stream, camera or growing file for user-named anomalies: events, clips and scores as they happen.

Examples:
    lavida watch rtsp://camera.local/stream --anomalies "fighting, fire" --out watch
    lavida watch udp://0.0.0.0:5000 --anomalies "fighting" --calibration site.json --webhook http://alerts/hook
    lavida watch /dev/video0 --anomalies "fire" --out watch --max-seconds 3600
    lavida watch recording.ts --anomalies "bicycle" --out watch          # a file still being written

SOURCE is a stream URL (rtsp, rtmp, http(s), udp, tcp, srt...), a capture device (/dev/video*, or any FFmpeg device
with --input-format, e.g. lavfi) or a file still being written (MPEG-TS, Matroska). A decoding thread feeds clips to a
bounded queue and the model scores them as they come, through the video-anomaly-detection pipeline (the processor and
model calls of lavida detect); when the model falls behind, the oldest waiting clip is dropped and counted, so the
delay stays bounded. OUT gets:

  events.jsonl   a line when an event opens and one when it closes (frames, times, peak score, the anomaly name when
                 the model tells names apart, the clip)
  clips/         a short video of each event, from --pre-event-s before it to --post-event-s after, complete before
                 its close line is written
  scores.csv     frame,time_s,score,is_anomaly,wall_time, appended as scores are known

and the terminal a status line (frames/s, dropped frames, current score; a plain line every --status-interval-s
seconds when stdout is not a terminal). A stream that drops is reopened with a growing delay. --max-seconds, Ctrl-C
and SIGTERM stop it cleanly: an open event closes, its clip is finished and every file is complete. --calibration sets
the threshold, minimum event length and smoothing from lavida calibrate unless given. An unreachable source, one that
is not video or a missing device is reported on one line (exit status 2).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from lavida.errors import UserInputError
from lavida.processing.live_options import StreamOptions, WatchOptions
from lavida.processing.options import DetectionOptions, check_positive_int

from .arguments import add_dataclass_arguments, add_scoring_arguments, dataclass_from_args
from .calibrate import (add_calibration_argument, calibrated_flag_settings, calibrated_options,
                        calibration_warnings)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="SOURCE",
                        help="stream URL (rtsp://, udp://, tcp://, http://...), capture device or growing file")
    parser.add_argument("--out", default="watch", help="output folder (default: watch)")
    defaults, helps = calibrated_flag_settings()
    add_scoring_arguments(parser, exclude=["mask_stride"], defaults=defaults, helps=helps)  # scores only
    add_calibration_argument(parser)
    add_dataclass_arguments(parser, WatchOptions)
    add_dataclass_arguments(parser, StreamOptions, exclude=["input_options"])
    parser.add_argument("--input-option", dest="input_options", action="append", default=[], metavar="KEY=VALUE",
                        help=StreamOptions.__dataclass_fields__["input_options"].metadata["help"])
    parser.add_argument("--webhook", default=None, metavar="URL", help="POST each event line (JSON) to this URL")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")


def _settings(args: argparse.Namespace) -> tuple[DetectionOptions, WatchOptions, StreamOptions]:
    """The flags as options (validated; ``UserInputError``)."""
    return (calibrated_options(args), dataclass_from_args(WatchOptions, args),
            dataclass_from_args(StreamOptions, args, input_options=tuple(args.input_options)))


def check_args(args: argparse.Namespace) -> None:
    """Validate the flags, the source (a missing file or device) and --out before anything heavy is imported."""
    from lavida.atomic_files import check_output_folder
    from lavida.processing.stream_source import LiveSource

    _, _, stream = _settings(args)
    if args.threads is not None:
        try:
            check_positive_int("--threads", args.threads)
        except ValueError as error:
            raise UserInputError(str(error)) from None
    if args.webhook is not None and not args.webhook.startswith(("http://", "https://")):
        raise UserInputError(f"--webhook {args.webhook} is not an http:// or https:// URL.")
    LiveSource(args.source, stream).check()
    check_output_folder(args.out, "--out")


class _Terminal:
    """The status line (rewritten in place on a terminal; a plain line every ``interval`` seconds otherwise) and the
    message lines printed above it."""

    def __init__(self, interval: float, stream=None):
        self.stream = stream or sys.stdout
        self.interactive = self.stream.isatty()
        self.interval = interval
        self._last_plain = None
        self._width = 0
        self._lock = threading.Lock()

    def message(self, text: str) -> None:
        with self._lock:
            self._clear()
            print(text, file=self.stream, flush=True)

    def status(self, state) -> None:
        score = "-" if state.score is None else f"{state.score:.2f}"
        link = "" if state.connected else ", reconnecting"
        text = (f"{state.elapsed_s:7.1f} s  {state.decoded_fps:5.1f} frames/s decoded, {state.scored_fps:5.1f} "
                f"scored, {state.dropped_frames} dropped, score {score}, {state.events} event(s){link}")
        with self._lock:
            if self.interactive:
                self._clear()
                self.stream.write(text)
                self.stream.flush()
                self._width = len(text)
            elif self._last_plain is None or state.elapsed_s - self._last_plain >= self.interval:
                self._last_plain = state.elapsed_s
                print(text, file=self.stream, flush=True)

    def _clear(self) -> None:
        if self.interactive and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self._width = 0


def run(args: argparse.Namespace) -> int:
    import torch

    from lavida.processing.anomaly_names import parse_anomaly_names
    from lavida.processing.factories import load_detection_pipeline
    from lavida.processing.live_scoring import LiveWatcher
    from lavida.processing.stream_source import LiveSource

    options, watch, stream = _settings(args)
    names = parse_anomaly_names(args.anomalies)
    source = LiveSource(args.source, stream)
    stop = threading.Event()
    connection = source.open(stop)  # a bad source is reported before the model is loaded
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    detector = load_detection_pipeline(args.model, device=args.device, batch_size=1)
    for warning in calibration_warnings(args, detector.model_id, names, options):
        print(f"lavida watch: {warning}", file=sys.stderr)
    terminal = _Terminal(watch.status_interval_s)
    watcher = LiveWatcher(detector, source, names, options, watch, Path(args.out), webhook=args.webhook,
                          report=terminal.message, status=terminal.status)
    previous = {}

    def request_stop(signum, frame) -> None:
        if stop.is_set():  # a second Ctrl-C: stop at once (the files written so far stay complete)
            raise KeyboardInterrupt
        terminal.message(f"lavida watch: {signal.Signals(signum).name} received, stopping")
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, request_stop)
    try:
        state = watcher.run(stop, connection)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    terminal.message(f"lavida watch: stopped ({state.end_reason}): {state.decoded_frames} frames decoded, "
                     f"{state.scored_frames} scored, {state.dropped_frames} dropped, {state.events} event(s), "
                     f"{state.reconnects} reconnection(s) -> {args.out}")
    return 0
