"""One Space request, without any user interface: check the upload, detect, write the results.

It takes the same route as ``lavida detect``: the ``video-anomaly-detection`` pipeline with the same
``DetectionOptions``, then ``write_result_folder``, so a video gives the same ``result.json`` and ``scores.csv`` in the
page and on the command line for the same model and settings. The upload is opened once (its header gives the
duration, frame-count and frame-size checks, before any decoding) and that open reader is what the pipeline decodes;
the overlay is the only second read. The overlay's frames always have even sides (the score band below the picture),
so overlay.mp4 is H.264 4:2:0, which browsers play as it is: the page shows that one file (its x264 preset is
``settings.overlay_preset``, by default the command's; the scores and result files do not depend on it). A request
stops at its next batch of clips (or, while the overlay is written, its next frame) once its caller says it is
cancelled (the visitor left), and once it has decoded more frames than the limit (a container that declared fewer); a
stopped request leaves no files.

Requests may run at the same time, each in a detection pipeline of its own (``settings.concurrency_limit`` of them,
all around the one loaded model): a pipeline keeps state between its steps (the name embeddings it has encoded, the
masks of the video it is scoring) and its processor's tokenizer is not made to be used by two threads at once.

A request may bring a site calibration (the calibration.json ``lavida calibrate`` writes): its threshold, minimum event
length and smoothing replace the threshold control, as ``lavida detect --calibration`` takes them, and result.json
records it by its file name; a calibration made for another model or other names adds a note to the summary.

Messages shown to visitors never carry server paths (``visitor_message``).
"""

from __future__ import annotations

import copy
import logging
import queue
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lavida.errors import UserInputError
from lavida.processing.anomaly_names import parse_anomaly_names
from lavida.processing.calibration import Calibration, calibration_record, load_calibration
from lavida.processing.options import DetectionOptions
from lavida.processing.pipeline_lavida import TASK, VideoAnomalyDetectionPipeline
from lavida.processing.result_writers import (OVERLAY_MP4, RESULT_JSON, SCORES_CSV, SCORES_PNG, OutputOptions,
                                              format_summary, write_result_folder)
from lavida.processing.video_io import VideoReader

from .settings import SpaceSettings

logger = logging.getLogger(__name__)

ProgressFn = Callable[[float, str], None]  # (fraction done in [0, 1], what is happening)
CancelledFn = Callable[[], bool]  # True once the request's result is no longer wanted
SCORING_SHARE = 0.8  # part of the progress bar given to scoring; writing the plot and the overlay take the rest
OVERLAY_PROGRESS_STEPS = 100  # progress updates at most while the overlay is written (one per frame for short videos)
# "anomaly": the name the event names (empty for a model that scores no names)
EVENT_COLUMNS = ["#", "anomaly", "start (s)", "end (s)", "start frame", "end frame", "peak score", "mean score"]


class RequestCancelled(Exception):
    """The caller gave up on the request (the visitor closed the page or cancelled): the detection stopped early."""


@dataclass
class SpaceResult:
    """What one request produced (all files inside ``folder``)."""

    folder: Path
    plot: Path
    overlay: Path  # overlay.mp4 (H.264 4:2:0, even sides: browsers play it as it is)
    result_json: Path
    scores_csv: Path
    events: list[list[float | int]]  # rows of the events table, EVENT_COLUMNS
    summary: str


def embedded_model_id() -> str:
    """The model id ``lavida detect`` records when no --model is given."""
    from lavida.model_factory import default_model_path

    return f"lavida-tiny ({default_model_path().name}, embedded)"


class DetectionService:
    """The detection pipeline, loaded once, and the request handler around it.

    Requests may run in parallel threads (the queue's concurrency limit): each borrows a pipeline of its own for its
    detection (the model inside is shared and only read), and every request writes into its own folder.
    """

    def __init__(self, settings: SpaceSettings, model=None, processor=None) -> None:
        """Load ``settings.model`` (the embedded lavida-tiny when None), or wrap an already loaded ``model`` and
        ``processor``."""
        self.settings = settings
        if model is None or processor is None:
            from lavida.processing.factories import load_detection_pipeline

            self.detector = load_detection_pipeline(settings.model, device=settings.device,
                                                    batch_size=settings.clip_batch_size)
        else:
            self.detector = VideoAnomalyDetectionPipeline(model=model, processor=processor, device=model.device,
                                                          task=TASK, batch_size=settings.clip_batch_size,
                                                          model_id=settings.model or embedded_model_id())
        self.model_id = self.detector.model_id
        self.results_root = settings.root / "results"  # request folders; the oldest are removed (keep_results)
        self.kept_root = settings.root / "kept-results"  # results kept while the app runs (the examples')
        self._idle_detectors: queue.SimpleQueue = queue.SimpleQueue()
        self._idle_detectors.put(self.detector)
        for _ in range(settings.concurrency_limit - 1):
            self._idle_detectors.put(self._companion(self.detector))

    def _companion(self, detector: VideoAnomalyDetectionPipeline) -> VideoAnomalyDetectionPipeline:
        """Another pipeline around ``detector``'s model (the same weights), with a processor of its own."""
        return type(detector)(model=detector.model, processor=copy.deepcopy(detector.processor),
                              device=detector.device, task=TASK, batch_size=self.settings.clip_batch_size,
                              model_id=detector.model_id)

    @contextmanager
    def _borrowed_detector(self) -> Iterator[VideoAnomalyDetectionPipeline]:
        """A pipeline no other request is using, for one detection (waits for one to be free when more requests
        than ``concurrency_limit`` run at once)."""
        detector = self._idle_detectors.get()
        try:
            yield detector
        finally:
            self._idle_detectors.put(detector)

    # -- checks ---------------------------------------------------------------------------------------------------

    def check_video(self, video: str | Path | None) -> VideoReader:
        """Size, readability and what the header declares (duration, frame count, frame size) of an upload; returns
        it opened, not yet decoded.

        Raises:
            UserInputError: no video, a file over the upload limit, a file that is not a readable video, or a video
                over the duration, frame or pixel limit. Messages name the file by its name only (not the server
                path).
        """
        if video is None or str(video).strip() == "":
            raise UserInputError("No video: upload one (or click an example) before running the detection.")
        path = Path(video)
        if not path.is_file():
            raise UserInputError(f"The uploaded video {path.name} is no longer on the server: upload it again.")
        size = path.stat().st_size
        if size > self.settings.max_upload_bytes:
            raise UserInputError(f"{path.name} is {size / 2**20:.1f} MB; this demo accepts videos up to "
                                 f"{self.settings.max_upload_mb:g} MB: trim or compress it, or run `lavida detect` "
                                 "locally.")
        with _named(path):
            reader = VideoReader(path)
        header = reader.header
        try:
            self.check_pixels(path.name, header.width, header.height)
            self.check_duration(path.name, header.duration_s)
            self.check_frames(path.name, header.num_frames)
        except UserInputError:
            reader.close()
            raise
        return reader

    def check_pixels(self, name: str, width: int, height: int) -> None:
        """UserInputError when a frame is larger (width x height) than the Space accepts."""
        if width * height > self.settings.max_pixels:
            raise UserInputError(f"{name} is {width}x{height} ({width * height / 1e6:.1f} megapixels a frame); this "
                                 f"demo accepts frames up to {self.settings.max_megapixels:.1f} megapixels (e.g. "
                                 "1920x1080): scale it down, or run `lavida detect` locally.")

    def check_frames(self, name: str, num_frames: int | None, *, at_least: bool = False) -> None:
        """UserInputError when a video has more frames than the Space accepts (None: not declared, checked while
        decoding; ``at_least``: the count so far of a video still being decoded)."""
        if num_frames is not None and num_frames > self.settings.max_frames:
            count = f"more than {self.settings.max_frames}" if at_least else str(num_frames)
            raise UserInputError(f"{name} has {count} frames; this demo accepts videos of up to "
                                 f"{self.settings.max_frames} frames: trim it or lower its frame rate, or run "
                                 "`lavida detect` locally.")

    def check_duration(self, name: str, duration_s: float | None) -> None:
        """UserInputError when a video is longer than the Space accepts (None: not declared, checked later)."""
        if duration_s is not None and duration_s > self.settings.max_duration_s:
            raise UserInputError(f"{name} is {duration_s:.1f} s long; this demo accepts videos up to "
                                 f"{self.settings.max_duration_s:g} s: trim it, or run `lavida detect` locally for "
                                 "longer videos.")

    def detection_options(self, stride: float, threshold: float,
                          calibration: Calibration | None = None) -> DetectionOptions:
        """The controls as ``DetectionOptions`` (masks kept for the overlay): the stride a whole number within the
        Space's [1, max_stride], the threshold (or, with a ``calibration``, its threshold, minimum event length and
        smoothing) validated by ``DetectionOptions``; else UserInputError."""
        if stride is None or float(stride) != int(stride) or not 1 <= int(stride) <= self.settings.max_stride:
            raise UserInputError(f"Stride must be a whole number of frames from 1 to {self.settings.max_stride}, "
                                 f"got {stride!r}.")
        settings = {"threshold": threshold} if calibration is None else calibration.settings()
        return DetectionOptions(stride=int(stride), return_masks=True, **settings)

    @staticmethod
    def load_calibration(path: str | Path) -> Calibration:
        """A calibration.json upload, read with ``load_calibration``; UserInputError (naming the file by its name
        only) for a file that is not one."""
        with _named(Path(path)):
            return load_calibration(path)

    # -- the request ----------------------------------------------------------------------------------------------

    def run(self, video: str | Path | None, anomalies: str, stride: float, threshold: float,
            progress: ProgressFn | None = None, cancelled: CancelledFn | None = None,
            calibration: str | Path | None = None, keep: bool = False) -> SpaceResult:
        """Detect ``anomalies`` (comma-separated text) in ``video`` and write the four result files.

        Args:
            calibration: an uploaded calibration.json (None or empty: none); its settings replace ``threshold``.
            progress: called with (fraction done, what is happening) as the work goes on: per batch of clips while
                scoring, per frame (at most ``OVERLAY_PROGRESS_STEPS`` times) while the overlay is written.
            cancelled: asked after every batch of clips and every overlay frame; once it returns True the request
                stops there.
            keep: write the results where they stay while the app runs (``kept_root``), instead of a request folder
                that newer requests remove in time.

        Raises:
            UserInputError: anything wrong with the inputs (see ``check_video``, ``detection_options``,
                ``load_calibration`` and ``parse_anomaly_names``).
            RequestCancelled: ``cancelled`` said so (nothing is written).
        """
        report = progress or (lambda fraction, text: None)
        is_cancelled = cancelled or (lambda: False)
        site = self.load_calibration(calibration) if calibration else None
        options = self.detection_options(stride, threshold, site)
        if not any(part.strip() for part in (anomalies or "").split(",")):
            raise UserInputError("No anomaly names: type at least one in the names box (comma separated, e.g. "
                                 "\"fighting, fire\") or pick a preset.")
        names = parse_anomaly_names(anomalies)
        notes = []
        if site is not None:
            name = Path(calibration).name
            notes = [f"calibration {name}: {problem}; its threshold may not fit" for problem in
                     site.mismatches(self.model_id, names, options.stride, options.llm_frame_pixels)]
        reader = self.check_video(video)
        path = Path(video)
        report(0.0, "Reading the video")

        def scored(done: int, expected: int | None) -> None:
            # Raising here stops the pipeline between two model calls: the decoder goes no further.
            if is_cancelled():
                raise RequestCancelled(f"{path.name}: the request was cancelled.")
            self.check_frames(path.name, done, at_least=True)
            total = max(done, expected or 0)
            report(SCORING_SHARE * done / max(total, 1), f"Scoring frames ({done}/{total})")

        started = time.perf_counter()
        with reader, _named(path), self._borrowed_detector() as detector:
            scoring = time.perf_counter()
            detection = detector(reader, anomalies=names, progress=scored, **vars(options))
        writing = time.perf_counter()
        if site is not None:  # recorded by the file's name: result.json never carries a server path
            detection.calibration = calibration_record(calibration, site, name=Path(calibration).name)
        info = detection.video
        self.check_duration(path.name, info.duration_s)  # a container that declared no duration
        self.check_frames(path.name, info.num_frames)
        if is_cancelled():
            raise RequestCancelled(f"{path.name}: the request was cancelled.")
        report(SCORING_SHARE, "Writing the plot and the overlay video")
        every = max(1, info.num_frames // OVERLAY_PROGRESS_STEPS)

        def written(done: int, total: int) -> None:
            if is_cancelled():  # raised inside the overlay writer: nothing of the folder is kept
                raise RequestCancelled(f"{path.name}: the request was cancelled.")
            if done % every == 0 or done == total:
                report(SCORING_SHARE + (1.0 - SCORING_SHARE) * done / max(total, 1),
                       f"Writing the overlay video ({done}/{total} frames)")

        request_folder = self._kept_folder() if keep else self._new_request_folder()
        folder = request_folder / (path.stem or "video")
        outputs = OutputOptions(progress=False, overlay_progress=written, overlay_preset=self.settings.overlay_preset)
        try:
            write_result_folder(folder, detection, outputs)
        except BaseException:
            shutil.rmtree(request_folder, ignore_errors=True)
            raise
        report(1.0, "Done")
        done = time.perf_counter()
        # where a request's time goes, to tell waiting for a pipeline from the work (benchmarks.space_concurrency)
        logger.info("%s: %d frames in %.2f s (waited %.2f s for a pipeline, scored in %.2f s, wrote the files in "
                    "%.2f s)", path.name, info.num_frames, done - started, scoring - started, writing - scoring,
                    done - writing)
        rows = [[number, event.anomaly or "", round(event.start_s, 3), round(event.end_s, 3), event.start_frame,
                 event.end_frame, round(event.peak_score, 3), round(event.mean_score, 3)]
                for number, event in enumerate(detection.events, start=1)]
        summary = "; ".join([format_summary(detection), *notes])
        return SpaceResult(folder=folder, plot=folder / SCORES_PNG, overlay=folder / OVERLAY_MP4,
                           result_json=folder / RESULT_JSON, scores_csv=folder / SCORES_CSV, events=rows,
                           summary=summary)

    def _new_request_folder(self) -> Path:
        """A fresh folder for one request; the oldest ones beyond ``keep_results`` are removed first."""
        self.results_root.mkdir(parents=True, exist_ok=True)
        existing = sorted((p for p in self.results_root.iterdir() if p.is_dir() and not p.name.startswith(".")),
                          key=lambda p: p.stat().st_mtime)
        for old in existing[:max(0, len(existing) - self.settings.keep_results + 1)]:
            shutil.rmtree(old, ignore_errors=True)
        folder = self.results_root / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
        folder.mkdir()
        return folder

    def _kept_folder(self) -> Path:
        """A fresh folder below ``kept_root``, which no request prunes."""
        folder = self.kept_root / uuid.uuid4().hex[:12]
        folder.mkdir(parents=True)
        return folder


# An absolute path (POSIX, or Windows with a drive letter) up to its last component, which is kept.
_ABSOLUTE_PATH = re.compile(r"(?:[A-Za-z]:)?[\\/](?:[^\s'\"<>|:\\/]+[\\/])+")


def visitor_message(text: str, *paths: str | Path) -> str:
    """``text`` with every server path cut to its last component (a file's name), for messages shown in the page.

    The given ``paths`` (an upload, the work folder) are replaced whole first, so a name with spaces stays whole;
    any other absolute path (from a library's error, a temporary file) loses its folders."""
    for path in sorted({str(path) for path in paths if str(path)}, key=len, reverse=True):
        text = text.replace(path, Path(path).name)
    return _ABSOLUTE_PATH.sub("", text)


@contextmanager
def _named(path: Path) -> Iterator[None]:
    """Show a user error about ``path`` with the file's name only (not its server path)."""
    try:
        yield
    except UserInputError as error:
        raise UserInputError(visitor_message(str(error), path)) from None


__all__ = ["EVENT_COLUMNS", "DetectionService", "RequestCancelled", "SpaceResult", "embedded_model_id",
           "visitor_message"]
