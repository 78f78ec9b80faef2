"""Evaluate a scorer on a benchmark's test split: resumable, streamed, with metrics, a table and per-video plots.

    from lavida.dataset_builders.benchmarks import get_benchmark
    from lavida.evaluation import EvaluationConfig, evaluate_benchmark, load_pipeline_score_fn

    bench = get_benchmark("ped2", "data/UCSD_Anomaly_Dataset.v1p2")
    metrics = evaluate_benchmark(bench, load_pipeline_score_fn("path/to/checkpoint"), "outputs/eval/ped2")

The scorer is any ``score_fn(video, names, stride, return_masks) -> VideoDetection``, the
``video-anomaly-detection`` pipeline's result: ``scores`` (one per decoded frame), ``video`` (frame count, fps, size)
and, when ``return_masks``, ``masks`` (``masks[i]``: ``float [H, W]`` anomaly probabilities of frame ``i`` at the
native frame size, read one frame at a time). ``video`` is a file path or, for benchmarks released as frame folders,
the decoded frames ``uint8 [F, H, W, 3]``. The scorer is called without smoothing; the run's smoothing, threshold and
minimum event length are applied afterwards with the same post-processing functions as detection
(``lavida.processing.postprocessing``), so ``lavida evaluate --smoothing-sigma 5`` and
``lavida detect --smoothing-sigma 5`` give a video the same scores. A site calibration (``lavida evaluate
--calibration``, ``EvaluationConfig.calibration``) gives these three settings as it gives them to ``lavida detect``;
they enter the metrics only (the frame metrics' smoothing, the event metrics at the threshold and the per-video
results), never the cached scores, so the cache does not depend on the calibration and a calibrated run reuses it.
When the scorer scores each anomaly name (a name-grounding model), the per-name probabilities of the sampled frames
are cached too, so the per-video results name each event's anomaly as ``lavida detect`` does.

Output folder:

    run.json              what the cached results depend on (the model, benchmark, stride, names, masks, pixel
                          budget, region settings)
    videos/<id>.npz       per-video reductions (scores, labels, pixel histograms, criterion scores, regions, tracks)
    results/<id>/         result.json and scores.csv as ``lavida detect`` writes them, with this run's settings
    plots/<id>.png        score against ground truth
    metrics.json          every metric (NaN written as null), with the events' settings and calibration
    metrics.md            the same as a table

Each video's file is written atomically once it is scored, so an interrupted run resumes where it stopped and gives
the same ``metrics.json`` as an uninterrupted one. Metrics and per-video results are always computed from the cached
files. Settings that only enter the metrics (smoothing, threshold and event length, IoU and track fraction of
RBDC/TBDC) can change between runs on the same folder; what changes the cached scores cannot: another model, or the
same checkpoint with rewritten files (``ModelIdentity``), another stride, names, masks or pixel budget. Such a run
stops with one error naming what differs, before scoring anything; ``EvaluationConfig.restart`` (``lavida evaluate
--restart``) discards the cached results instead and starts over. A run killed outright leaves hidden temporary files
that the next run into the folder removes (``lavida.atomic_files.remove_stale_staging``).

Pixel predictions are read and reduced one frame at a time (float16 histograms for the pixel AUC, one number per frame
for the 40 % criterion, connected regions for RBDC/TBDC), so no video's masks are ever held whole.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import re
import shutil
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .atomic_files import remove_stale_staging, write_bytes_atomic, write_json_atomic
from .errors import UserInputError
from .metrics import (DEFAULT_COVERAGE, DEFAULT_IOU, DEFAULT_TRACK_FRACTION, Detections, PixelAUCAccumulator,
                      Track, criterion_frame_score, frame_metrics, match_video, pixel_criterion_metrics, rbdc_tbdc,
                      regions_from_map, smooth_scores, video_auc)
from .processing.options import DetectionOptions

if TYPE_CHECKING:
    from .processing.detection import MaskFrames, VideoDetection

logger = logging.getLogger(__name__)

ScoreFn = Callable[[Any, list[str], int, bool], "VideoDetection"]  # (video, names, stride, return_masks)
RUN_FILE = "run.json"
RESULTS_DIR = "results"
METRICS_JSON = "metrics.json"
METRICS_MD = "metrics.md"
CACHE_DIR = "videos"
PLOTS_DIR = "plots"
# Everything a run writes into its output folder (``restart`` removes exactly these).
RUN_OUTPUTS = (RUN_FILE, METRICS_JSON, METRICS_MD, CACHE_DIR, RESULTS_DIR, PLOTS_DIR)


@dataclass
class EvaluationConfig:
    """Knobs of one evaluation run (``lavida evaluate`` flags map onto these).

    Attributes:
        stride: frame stride given to the scorer; None = the benchmark's standard stride.
        anomaly_names: prompt names; None = the benchmark's standard list.
        return_masks: ask the scorer for pixel masks; None = when the benchmark has pixel ground truth.
        mask_stride: with masks, the scorer computes one on every N-th decoded frame besides the scored ones
            (``DetectionOptions.mask_stride``; 1, the default, as pixel-level protocols score every frame's own mask).
        threshold, min_event_frames: the events of the per-video results and of the event metrics
            (``DetectionOptions``).
        region_level: pixel score at which a predicted map is cut into regions (RBDC/TBDC).
        region_min_area: smallest predicted region kept, in pixels.
        coverage: the traditional pixel criterion's fraction of anomalous pixels (0.4).
        smoothing_sigma: temporal Gaussian smoothing of frame scores before the frame metrics and in the per-video
            results (0 = none), as detection smooths.
        iou_threshold: RBDC/TBDC region IoU (0.1).
        track_fraction: RBDC/TBDC fraction of a track's regions (0.1).
        plots: write per-video plots.
        max_videos: evaluate only the first N test videos (quick checks; recorded in the output).
        progress: show the progress (a bar on a terminal, plain lines in a log: ``Progress``).
        llm_frame_pixels: ``[min, max]`` MLLM pixel area per frame given to the scorer (None: the checkpoint's
            processor budget); recorded in run.json since it changes the scores.
        restart: discard the results cached in the output folder (``run.json``, ``videos/``, ``results/``,
            ``plots/``, ``metrics.*``) and start over, instead of stopping when they came from another model or
            settings.
        calibration: the record (``calibration.calibration_record``) of the site calibration ``threshold``,
            ``min_event_frames`` and ``smoothing_sigma`` came from, or None; recorded in metrics.json and the
            per-video result.json (not in run.json: it changes no cached result).
    """

    stride: int | None = None
    anomaly_names: list[str] | None = None
    return_masks: bool | None = None
    mask_stride: int = DetectionOptions.mask_stride
    threshold: float = DetectionOptions.threshold
    min_event_frames: int = DetectionOptions.min_event_frames
    region_level: float = 0.5
    region_min_area: int = 1
    coverage: float = DEFAULT_COVERAGE
    smoothing_sigma: float = DetectionOptions.smoothing_sigma
    iou_threshold: float = DEFAULT_IOU
    track_fraction: float = DEFAULT_TRACK_FRACTION
    plots: bool = True
    max_videos: int | None = None
    progress: bool = True
    llm_frame_pixels: tuple[int, int] | None = None
    restart: bool = False
    calibration: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.detection_options(1 if self.stride is None else self.stride)  # validated where they are defined
        if self.max_videos is not None and self.max_videos < 1:
            raise UserInputError(f"--max-videos must be at least 1, got {self.max_videos!r}.")
        if self.anomaly_names is not None and not self.anomaly_names:
            raise UserInputError("The anomaly name list is empty: give at least one name.")
        for name, value in (("coverage", self.coverage), ("iou_threshold", self.iou_threshold),
                            ("track_fraction", self.track_fraction)):
            if not 0 < value <= 1:
                raise UserInputError(f"{name} must be in (0, 1], got {value!r}.")

    def detection_options(self, stride: int, return_masks: bool = False) -> DetectionOptions:
        """The detection settings of this run at ``stride`` (the per-video results record them)."""
        return DetectionOptions(stride=stride, threshold=self.threshold, min_event_frames=self.min_event_frames,
                                smoothing_sigma=self.smoothing_sigma, return_masks=return_masks,
                                mask_stride=self.mask_stride, llm_frame_pixels=self.llm_frame_pixels)


@dataclass(frozen=True)
class ModelIdentity:
    """Which model produced a set of scores, for keying cached results and recording it in the outputs.

    Attributes:
        name: the checkpoint folder or Hub id as given (or the embedded default's description); recorded only, since
            the same checkpoint may be named by another path.
        fingerprint: 16 hex digits that change whenever the model's files change (see ``model_identity``).
    """

    name: str
    fingerprint: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "fingerprint": self.fingerprint}


def _checkpoint_files(folder: Path) -> list[Path]:
    """The files of a checkpoint folder that make its scores: every file, recursively, but hidden ones, Markdown
    (model cards), Python's ``__pycache__`` and the ``checkpoint-*`` folders a trainer writes beside an exported
    model."""
    files = []
    for root, folders, names in os.walk(folder, followlinks=True):
        folders[:] = sorted(name for name in folders
                            if not name.startswith((".", "checkpoint-")) and name != "__pycache__")
        files += [Path(root) / name for name in sorted(names) if not name.startswith(".") and not name.endswith(".md")]
    return files


def model_identity(model: str | os.PathLike, name: str | None = None, revision: str | None = None) -> ModelIdentity:
    """The ``ModelIdentity`` of a checkpoint folder or Hub id.

    A folder's fingerprint hashes the relative name, size and modification time of each file that makes its scores
    (config, weights, processor and tokenizer files, code), not their content, so it is instant for multi-GB
    weights and still changes when a file is rewritten; moving the folder keeps it. A Hub id's hashes the id and the
    ``revision`` (the commit the files were downloaded from).

    Args:
        model: a checkpoint folder or a Hub id.
        name: the name to record (default: ``str(model)``).
        revision: the Hub commit of ``model`` (ignored for a folder).
    """
    digest = hashlib.sha256()
    folder = Path(model)
    if folder.is_dir():
        for path in _checkpoint_files(folder):
            stat = path.stat()
            digest.update(f"{path.relative_to(folder).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    else:
        digest.update(f"hub:{model}@{revision or ''}".encode())
    return ModelIdentity(name=str(model) if name is None else name, fingerprint=digest.hexdigest()[:16])


@dataclass(frozen=True)
class _RunPlan:
    """What the cached per-video results depend on (stored in run.json)."""

    benchmark: str
    stride: int
    anomaly_names: list[str]
    return_masks: bool
    tracks: bool
    region_level: float
    region_min_area: int
    coverage: float
    cache_version: int = 1
    llm_frame_pixels: tuple[int, int] | None = None
    mask_stride: int | None = None  # with masks only (it changes no frame score)
    model_fingerprint: str | None = None  # ``ModelIdentity.fingerprint``; None for a scorer that gives none


def json_ready(value: Any) -> Any:
    """NaN/inf -> None and numpy scalars -> Python, recursively (metrics.json stays strict JSON)."""
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def _write_json(path: Path, content: dict) -> None:
    write_json_atomic(path, json_ready(content), indent=2, allow_nan=False)


def safe_file_name(video_id: str) -> str:
    """A file name for a video id (ids may hold characters such as '/', '#' or spaces)."""
    cleaned = re.sub(r"[^A-Za-z0-9._=-]+", "_", video_id).strip("._") or "video"
    if cleaned != video_id:
        cleaned = f"{cleaned}-{uuid.uuid5(uuid.NAMESPACE_URL, video_id).hex[:8]}"  # keep distinct ids distinct
    return cleaned


# ---------------------------------------------------------------------------------------------------------------------
# One video
# ---------------------------------------------------------------------------------------------------------------------


def _align(scores: np.ndarray, labels: np.ndarray, video_id: str) -> int:
    if scores.size != labels.size:
        logger.warning("%s: %d scored frames but %d labelled frames; using the first %d", video_id, scores.size,
                       labels.size, min(scores.size, labels.size))
    return int(min(scores.size, labels.size))


def _tracks_arrays(tracks: list[Track]) -> dict[str, np.ndarray]:
    return {
        "track_ids": np.concatenate([np.full(len(t.frames), t.track_id, np.int64) for t in tracks])
        if tracks else np.zeros(0, np.int64),
        "track_frames": np.concatenate([t.frames for t in tracks]) if tracks else np.zeros(0, np.int64),
        "track_boxes": np.concatenate([t.boxes for t in tracks]) if tracks else np.zeros((0, 4)),
    }


def _tracks_from_arrays(arrays: dict[str, np.ndarray]) -> list[Track]:
    ids = arrays["track_ids"]
    return [Track(int(i), arrays["track_frames"][ids == i], arrays["track_boxes"][ids == i]) for i in np.unique(ids)]


def _reduce_masks(video, masks: MaskFrames, num_frames: int, plan: _RunPlan) -> dict[str, np.ndarray]:
    """Per-frame pixel reductions of one video's predicted masks against its ground truth, reading one frame at a time.

    Args:
        masks: ``masks[i]`` is frame ``i``'s ``float [H, W]`` prediction (``FrameMasks`` from the pipeline, or any
            sequence of frames), for at least ``num_frames`` frames.
    """
    if len(masks) < num_frames:
        raise ValueError(f"{video.video_id}: the scorer returned masks for {len(masks)} frames; expected "
                         f"{num_frames}.")
    pixels = PixelAUCAccumulator()
    criterion_scores, criterion_anomalous = [], []
    det_frames, det_boxes, det_scores = [], [], []
    for index in range(num_frames):
        prediction = np.asarray(masks[index], dtype=np.float32)  # (H, W)
        if prediction.ndim != 2:
            raise ValueError(f"{video.video_id}: the mask of frame {index} has shape {list(prediction.shape)}; "
                             "expected [height, width].")
        if video.masks is not None:
            target = video.masks.frame(index, shape=prediction.shape)
            if target.shape != prediction.shape:
                raise UserInputError(f"{video.video_id}: predicted mask of frame {index} is {list(prediction.shape)} "
                                     f"but the ground truth is {list(target.shape)}; the scorer must return masks at "
                                     "the native frame size.")
            pixels.update(prediction, target)
            score, anomalous = criterion_frame_score(prediction, target, plan.coverage)
            criterion_scores.append(score)
            criterion_anomalous.append(anomalous)
        if plan.tracks:
            boxes, scores = regions_from_map(prediction, plan.region_level, plan.region_min_area)
            det_frames.append(np.full(len(scores), index, np.int64))
            det_boxes.append(boxes)
            det_scores.append(scores)
    release = getattr(video.masks, "release", None)
    if release is not None:
        release()
    out: dict[str, np.ndarray] = {}
    if video.masks is not None:
        out.update({f"pixel_{k}": v for k, v in pixels.to_sparse().items()})
        out["criterion_scores"] = np.asarray(criterion_scores, dtype=np.float64)
        out["criterion_anomalous"] = np.asarray(criterion_anomalous, dtype=bool)
    if plan.tracks:
        out["det_frames"] = np.concatenate(det_frames) if det_frames else np.zeros(0, np.int64)
        out["det_boxes"] = np.concatenate(det_boxes) if det_boxes else np.zeros((0, 4))
        out["det_scores"] = np.concatenate(det_scores) if det_scores else np.zeros(0)
    return out


def score_video(video, score_fn: ScoreFn, plan: _RunPlan) -> dict[str, np.ndarray]:
    """Run the scorer on one test video and reduce its output to the arrays cached for it.

    ``scores`` and ``labels`` are cached as scored and as annotated; the metrics use their common length."""
    detection = score_fn(video.load(), list(plan.anomaly_names), plan.stride, plan.return_masks)
    scores = np.asarray(detection.scores, dtype=np.float32).reshape(-1)
    labels = video.frame_labels(detection.video.num_frames)
    count = _align(scores, labels, video.video_id)
    arrays: dict[str, np.ndarray] = {
        "video_id": np.array(video.video_id),
        "scores": scores,
        "labels": np.asarray(labels).astype(np.int8),
        "num_frames_scored": np.array(scores.size),
        "num_frames_labelled": np.array(labels.size),
        "fps": np.array(float(detection.video.fps)),
        "video": np.array(json.dumps(detection.video.to_dict())),
        "model_id": np.array(detection.model_id),
    }
    if detection.name_probabilities is not None:  # (S, N): names the per-video results' events
        arrays["sampled_frames"] = np.asarray(detection.sampled_frames, dtype=np.int64)
        arrays["name_probabilities"] = np.asarray(detection.name_probabilities, dtype=np.float32)
    if plan.return_masks:
        if detection.masks is None:
            raise ValueError(f"{video.video_id}: the scorer returned no masks although they were asked for.")
        arrays.update(_reduce_masks(video, detection.masks, count, plan))
    if plan.tracks:
        arrays.update(_tracks_arrays(video.tracks()))
    return arrays


def _aligned(cached: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``(labels int64 [n], scores float64 [n])`` over the frames both have (older caches store them aligned)."""
    count = min(cached["scores"].size, cached["labels"].size)
    return cached["labels"][:count].astype(np.int64), cached["scores"][:count].astype(np.float64)


def video_result(cached: dict[str, np.ndarray], plan: _RunPlan, config: EvaluationConfig) -> VideoDetection:
    """One cached video as the ``VideoDetection`` ``lavida detect`` gives it with this run's settings: the cached
    (unsmoothed, filled) scores go through the same post-processing as detection, and the events name their
    anomaly when the per-name probabilities were cached (each frame taking its nearest sampled frame's, as the
    scores)."""
    from .processing.detection import VideoDetection
    from .processing.postprocessing import nearest_samples
    from .processing.video_io import VideoInfo

    raw = cached["scores"].astype(np.float32)  # (F,)
    stored = json.loads(str(cached["video"])) if "video" in cached else {}
    names = None
    if "name_probabilities" in cached:
        names = cached["name_probabilities"][nearest_samples(cached["sampled_frames"], np.arange(raw.size))]  # (F, N)
    detection = VideoDetection.from_frame_scores(
        raw, float(stored.get("fps", cached["fps"])) or 25.0, plan.anomaly_names,
        options=config.detection_options(plan.stride), size=(stored.get("height", 0), stored.get("width", 0)),
        name=str(cached["video_id"]), model_id=str(cached.get("model_id", "")), name_probabilities=names)
    if stored.get("num_frames") == raw.size:  # the decoder's own description (older caches have none)
        detection.video = VideoInfo(**stored)
    detection.calibration = config.calibration
    return detection


def event_metrics(labels: list[np.ndarray], scores: list[np.ndarray], fps: list[float],
                  config: EvaluationConfig) -> dict[str, float | int]:
    """The events detection reports at the run's threshold, against the frame labels.

    Each video's scores (``[F]``, aligned with its labels) are smoothed and cut into events as detection does
    (``postprocess_scores`` with ``config.threshold``, ``min_event_frames`` and ``smoothing_sigma``).

    Returns:
        ``{"num_events", "false_alarms", "false_alarms_per_hour", "frame_precision", "frame_recall", "frame_f1",
        "anomalies", "anomalies_detected"}``: a false alarm is an event without an anomalous frame, counted per hour
        of normal frames (what ``lavida calibrate`` targets on a site's normal footage); the frame precision and
        recall are those of the frames inside events; an anomaly is a run of anomalous frames, detected when an
        event overlaps it. NaN where undefined (no event frame, no anomalous or no normal frame).
    """
    from .processing.postprocessing import postprocess_scores

    events = false_alarms = inside_total = hits = positives = anomalies = detected = 0
    normal_seconds = 0.0
    for truth, score, rate in zip(labels, scores, fps):
        truth = np.asarray(truth).astype(bool).reshape(-1)
        if truth.size == 0:
            continue
        _, found = postprocess_scores(np.arange(truth.size), np.asarray(score)[: truth.size], truth.size, rate,
                                      config.threshold, config.min_event_frames, config.smoothing_sigma)
        inside = np.zeros(truth.size, dtype=bool)  # (F,) frames inside an event
        for event in found:
            inside[event.start_frame:event.end_frame + 1] = True
            false_alarms += not truth[event.start_frame:event.end_frame + 1].any()
        events += len(found)
        inside_total += int(inside.sum())
        hits += int((inside & truth).sum())
        positives += int(truth.sum())
        normal_seconds += float((~truth).sum()) / rate
        edges = np.diff(np.concatenate([[0], truth.astype(np.int8), [0]]))  # +1 where a run starts, -1 past its end
        for start, stop in zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()):
            anomalies += 1
            detected += bool(inside[start:stop].any())
    precision = hits / inside_total if inside_total else math.nan
    recall = hits / positives if positives else math.nan
    if math.isnan(precision) or math.isnan(recall):
        f1 = math.nan
    else:
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"num_events": events, "false_alarms": false_alarms,
            "false_alarms_per_hour": false_alarms / (normal_seconds / 3600.0) if normal_seconds else math.nan,
            "frame_precision": precision, "frame_recall": recall, "frame_f1": f1, "anomalies": anomalies,
            "anomalies_detected": detected}


def _save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    write_bytes_atomic(path, buffer.getvalue())


def _load_arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as content:  # plain arrays only: no pickled objects are read
        return {key: content[key] for key in content.files}


# ---------------------------------------------------------------------------------------------------------------------
# Plots and tables
# ---------------------------------------------------------------------------------------------------------------------


def plot_video(path: Path, video_id: str, scores: np.ndarray, labels: np.ndarray, smoothed: np.ndarray | None,
               auc: float) -> None:
    """Score against ground truth for one video, as a PNG (matplotlib's Agg canvas; no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 2.6), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    frames = np.arange(scores.size)
    axes.fill_between(frames, 0, labels, step="mid", color="tab:red", alpha=0.2, linewidth=0,
                      label="ground truth anomaly")
    axes.plot(frames, scores, color="tab:blue", linewidth=1.0, label="score")
    if smoothed is not None:
        axes.plot(frames, smoothed, color="tab:orange", linewidth=1.0, label="smoothed score")
    axes.set_ylim(-0.02, 1.02)
    axes.set_xlim(0, max(1, scores.size - 1))
    axes.set_xlabel("frame")
    axes.set_ylabel("anomaly score")
    title = f"{video_id}  (AUC {auc:.3f})" if math.isfinite(auc) else video_id
    axes.set_title(title, fontsize=10)
    axes.legend(loc="upper right", fontsize=7, frameon=False)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    write_bytes_atomic(path, buffer.getvalue())


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if math.isfinite(value) else "n/a"
    return str(value)


def metrics_table(metrics: dict[str, Any]) -> str:
    """``metrics.json`` content as a Markdown report: a summary table, then the per-video AUCs."""
    frame = metrics["frame"]
    rows = [("frame AUC (micro, all frames pooled)", frame["micro_auc"]),
            ("frame AUC (macro, per-video mean, padded)", frame["macro_auc"]),
            (f"frame AUC (macro, {frame['macro_videos_skip']} two-class videos)", frame["macro_auc_skip"]),
            ("AP (sklearn, step-wise)", frame["ap"]),
            ("AP (trapezoid PR-AUC)", frame["pr_auc_trapezoid"]),
            ("frame EER", frame["eer"])]
    if metrics.get("pixel"):
        pixel = metrics["pixel"]
        rows += [("pixel AUC (native resolution)", pixel["pixel_auc"]),
                 (f"pixel criterion AUC ({pixel['coverage']:.0%} coverage)", pixel["criterion_auc"]),
                 ("pixel criterion EER", pixel["criterion_eer"])]
    if metrics.get("region"):
        region = metrics["region"]
        rows += [("RBDC", region["rbdc"]), ("TBDC", region["tbdc"])]
    events = metrics.get("events")
    if events:
        rows += [("event frame precision", events["frame_precision"]), ("event frame recall", events["frame_recall"]),
                 ("event frame F1", events["frame_f1"]),
                 ("false alarms per hour of normal footage", events["false_alarms_per_hour"]),
                 ("anomalies detected", f"{events['anomalies_detected']} of {events['anomalies']}")]
    smoothing = frame.get("smoothing")
    model = metrics.get("model")
    lines = [f"# {metrics['benchmark']}: evaluation", "",
             f"Model: {model['name']} (fingerprint {model['fingerprint']})." if model else "Model: unknown.", "",
             f"{metrics['num_videos']} test videos, {frame['num_frames']} frames ({frame['num_anomalous_frames']} "
             f"anomalous), stride {metrics['stride']}, "
             + (f"Gaussian smoothing sigma {smoothing['sigma']:g} frames." if smoothing else "no smoothing."),
             "", "| metric | value |", "|---|---|"]
    lines += [f"| {name} | {_fmt(value)} |" for name, value in rows]
    if events:
        calibration = events.get("calibration")
        lines += ["", f"Events: {events['num_events']} at threshold {events['threshold']:g}, at least "
                  f"{events['min_event_frames']} frame(s), {events['false_alarms']} of them false alarms (no anomalous "
                  "frame)" + (f"; settings from the calibration {calibration['file']} (sha256 "
                              f"{calibration['sha256']})." if calibration else ".")]
    if metrics.get("pixel"):
        lines += ["", "Pixel AUC ranks every pixel of every frame against the ground-truth masks (pooled), so the many "
                  "easy background pixels dominate it; the pixel criterion counts an anomalous frame as detected when "
                  f"at least {metrics['pixel']['coverage']:.0%} of its anomalous pixels reach the threshold and a "
                  "normal frame as a false alarm when any of its pixels does, so a mask that also marks normal "
                  "objects fails it."]
    lines += ["", f"Prompt names: {', '.join(metrics['anomaly_names'])}.", "", "## Per video", "",
              "| video | frames | anomalous | AUC (padded) |", "|---|---|---|---|"]
    lines += [f"| {v['video_id']} | {v['num_frames']} | {v['num_anomalous_frames']} | {_fmt(v['auc'])} |"
              for v in metrics["per_video"]]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------------------------------


def _plan(benchmark, config: EvaluationConfig, model: ModelIdentity | None = None) -> _RunPlan:
    masks = benchmark.has_masks if config.return_masks is None else bool(config.return_masks)
    return _RunPlan(benchmark=benchmark.name, stride=config.stride or benchmark.stride,
                    anomaly_names=list(config.anomaly_names or benchmark.anomaly_names), return_masks=masks,
                    tracks=masks and benchmark.has_tracks, region_level=float(config.region_level),
                    region_min_area=int(config.region_min_area), coverage=float(config.coverage),
                    llm_frame_pixels=None if config.llm_frame_pixels is None else tuple(config.llm_frame_pixels),
                    mask_stride=config.mask_stride if masks else None,
                    model_fingerprint=None if model is None else model.fingerprint)


def _cache_conflict(out_dir: Path, plan: _RunPlan, model: ModelIdentity | None) -> str | None:
    """What differs between this run and the results cached in ``out_dir``, as ``"a different stride"`` (None:
    nothing, or nothing cached)."""
    run_file = out_dir / RUN_FILE
    if not run_file.is_file():
        return None
    try:
        stored = json.loads(run_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        return f"an unreadable {RUN_FILE} ({error})"
    if not isinstance(stored, dict):
        return f"an unreadable {RUN_FILE}"
    wanted = json_ready(asdict(plan))
    changed = sorted(k for k in wanted if wanted.get(k) != stored.get(k))
    if not changed:
        return None
    described = []
    for key in changed:
        if key == "model_fingerprint":  # name both models; the same name means its files were rewritten since
            before, now = stored.get("model") or "an unrecorded model", model.name if model else "an unnamed scorer"
            described.append(f"model (cached: {before}; this run: {now}"
                             + (", whose files have changed since)" if before == now else ")"))
        else:
            described.append(key)
    return "a different " + ", ".join(described)


def check_cached_results(benchmark, out_dir: str | Path, config: EvaluationConfig,
                         model: ModelIdentity | None) -> None:
    """Raise ``UserInputError`` when ``out_dir`` holds results of another model or settings than a run of ``model``
    with ``config`` would cache (never when ``config.restart``); ``evaluate_benchmark`` checks this itself, a caller
    may check first to fail before loading the model."""
    if not config.restart:
        _refuse_conflict(Path(out_dir), _cache_conflict(Path(out_dir), _plan(benchmark, config, model), model))


def _refuse_conflict(out_dir: Path, conflict: str | None) -> None:
    if conflict is not None:
        raise UserInputError(f"Output folder {out_dir} holds results of a run with {conflict}; choose another --out "
                             "folder, or pass --restart to discard them and start over.")


def _prepare_out_dir(out_dir: Path, plan: _RunPlan, model: ModelIdentity | None, restart: bool) -> None:
    """Check the cached results against this run (or discard them when ``restart``), clean what a killed run left,
    and record the run in run.json.

    Raises:
        UserInputError: the folder holds results of another model or settings, naming what differs.
    """
    conflict = _cache_conflict(out_dir, plan, model)
    if not restart:
        _refuse_conflict(out_dir, conflict)
    if restart and any((out_dir / name).exists() for name in RUN_OUTPUTS):
        logger.warning("Discarding the results cached in %s%s and starting over (--restart)", out_dir,
                       f" (a run with {conflict})" if conflict else "")
        for name in RUN_OUTPUTS:
            path = out_dir / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
    for folder in (out_dir, out_dir / CACHE_DIR, out_dir / RESULTS_DIR, out_dir / PLOTS_DIR):
        remove_stale_staging(folder)
    if not (out_dir / RUN_FILE).is_file():
        _write_json(out_dir / RUN_FILE, {**json_ready(asdict(plan)), "model": model.name if model else None})


def compute_metrics(cached: list[dict[str, np.ndarray]], plan: _RunPlan, config: EvaluationConfig,
                    num_videos_total: int, model: ModelIdentity | None = None) -> dict[str, Any]:
    """Every metric from the per-video cached arrays (the same arrays give the same numbers); ``model`` is recorded
    as given."""
    labels, scores = (list(values) for values in zip(*map(_aligned, cached)))
    metrics: dict[str, Any] = {
        "benchmark": plan.benchmark,
        "model": None if model is None else model.to_dict(),
        "num_videos": len(cached),
        "num_test_videos": num_videos_total,
        "stride": plan.stride,
        "anomaly_names": plan.anomaly_names,
        "frame": frame_metrics(labels, scores, smoothing_sigma=config.smoothing_sigma),
        "events": {"threshold": config.threshold, "min_event_frames": config.min_event_frames,
                   "smoothing_sigma": config.smoothing_sigma, "calibration": config.calibration,
                   **event_metrics(labels, scores, [float(c["fps"]) or 25.0 for c in cached], config)},
        "pixel": None,
        "region": None,
    }
    with_masks = [c for c in cached if "criterion_scores" in c]
    if plan.return_masks and with_masks:
        pixels = PixelAUCAccumulator()
        for c in with_masks:
            pixels.merge(PixelAUCAccumulator.from_sparse(c["pixel_keys"], c["pixel_positives"],
                                                         c["pixel_negatives"]))
        criterion = pixel_criterion_metrics(np.concatenate([c["criterion_scores"] for c in with_masks]),
                                            np.concatenate([c["criterion_anomalous"] for c in with_masks]))
        metrics["pixel"] = {"pixel_auc": pixels.auc(), "criterion_auc": criterion["auc"],
                            "criterion_eer": criterion["eer"], "coverage": plan.coverage,
                            "num_videos": len(with_masks), "num_frames": criterion["num_frames"],
                            "num_anomalous_frames": criterion["num_anomalous_frames"],
                            "num_pixels": pixels.num_pixels, "num_anomalous_pixels": pixels.num_anomalous_pixels}
    if plan.tracks:
        matches = [match_video(Detections(c["det_frames"], c["det_boxes"], c["det_scores"]),
                               _tracks_from_arrays(c), config.iou_threshold) for c in cached]
        region = rbdc_tbdc(matches, num_frames=int(sum(label.size for label in labels)),
                           track_fraction=config.track_fraction)
        metrics["region"] = {**region, "iou_threshold": config.iou_threshold,
                             "track_fraction": config.track_fraction, "region_level": plan.region_level,
                             "region_min_area": plan.region_min_area}
    smoothed = [smooth_scores(s, config.smoothing_sigma) for s in scores] if config.smoothing_sigma else scores
    metrics["per_video"] = [{"video_id": str(c["video_id"]), "num_frames": int(y.size),
                             "num_anomalous_frames": int(y.sum()), "auc": video_auc(y, s, "pad"),
                             "num_frames_scored": int(c["num_frames_scored"]),
                             "num_frames_labelled": int(c["num_frames_labelled"])}
                            for c, y, s in zip(cached, labels, smoothed)]
    return metrics


def evaluate_benchmark(benchmark, score_fn: ScoreFn, out_dir: str | Path, config: EvaluationConfig | None = None
                       ) -> dict[str, Any]:
    """Score every test video (resuming from ``out_dir``), then write metrics.json, metrics.md, the per-video
    results (``write_result_folder``: result.json and scores.csv) and the plots.

    Args:
        benchmark: a ``lavida.dataset_builders.benchmarks.Benchmark`` (or anything with the same members).
        score_fn: ``score_fn(video, names, stride, return_masks) -> VideoDetection`` (see the module docstring). Its
            ``model_identity`` attribute (a ``ModelIdentity``; ``pipeline_score_fn`` sets it) keys the cache and is
            recorded in run.json and metrics.json; a scorer without one is recorded as unknown.
        out_dir: the output folder (created; reused to resume).
        config: the run's settings (defaults: the benchmark's stride and names, masks when it has pixel labels).

    Returns:
        The content of metrics.json (with NaN where a metric is undefined).

    Raises:
        UserInputError: ``out_dir`` holds results of another model or settings (and ``config.restart`` is not set).
    """
    from .processing.progress import Progress
    from .processing.result_writers import OutputOptions, write_result_folder

    config = config or EvaluationConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = getattr(score_fn, "model_identity", None)
    plan = _plan(benchmark, config, model)
    _prepare_out_dir(out_dir, plan, model, config.restart)
    videos = list(benchmark)[: config.max_videos] if config.max_videos else list(benchmark)
    cache_dir = out_dir / CACHE_DIR
    plot_dir = out_dir / PLOTS_DIR
    cached = []
    bar = Progress(f"evaluate {plan.benchmark}", total=len(videos), unit="video", enabled=config.progress)
    for video in videos:
        cache_file = cache_dir / f"{safe_file_name(video.video_id)}.npz"
        if cache_file.is_file():
            arrays = _load_arrays(cache_file)
        else:
            bar.set_note(video.video_id)
            _save_arrays(cache_file, score_video(video, score_fn, plan))
            arrays = _load_arrays(cache_file)  # metrics always come from what is on disk
        cached.append(arrays)
        plot_file = plot_dir / f"{safe_file_name(video.video_id)}.png"
        if config.plots and not plot_file.is_file():
            labels, scores = _aligned(arrays)
            smoothed = smooth_scores(scores, config.smoothing_sigma) if config.smoothing_sigma else None
            plot_video(plot_file, video.video_id, scores, labels, smoothed, video_auc(labels, scores, "pad"))
        bar.advance()
    bar.close()
    results = OutputOptions(plot=False, overlay=False, progress=False)
    for arrays in cached:
        write_result_folder(out_dir / RESULTS_DIR / safe_file_name(str(arrays["video_id"])),
                            video_result(arrays, plan, config), results)
    metrics = compute_metrics(cached, plan, config, num_videos_total=len(benchmark), model=model)
    _write_json(out_dir / METRICS_JSON, metrics)
    write_bytes_atomic(out_dir / METRICS_MD, metrics_table(json_ready(metrics)).encode("utf-8"))
    return metrics


# ---------------------------------------------------------------------------------------------------------------------
# The model side
# ---------------------------------------------------------------------------------------------------------------------


def pipeline_model_identity(pipe) -> ModelIdentity:
    """The ``ModelIdentity`` of a pipeline's model: its checkpoint folder's files, or its Hub id at the commit it was
    downloaded from; recorded under the pipeline's ``model_id``."""
    source = str(getattr(pipe.model, "name_or_path", "") or "")
    name = str(getattr(pipe, "model_id", "") or source or type(pipe.model).__name__)
    if source and os.path.isdir(source):
        return model_identity(source, name=name)
    revision = getattr(getattr(pipe.model, "config", None), "_commit_hash", None)
    return model_identity(source or name, name=name, revision=revision)


class PipelineScoreFn:
    """A ``score_fn`` calling a ``video-anomaly-detection`` pipeline (with an MLLM pixel budget when given, and the
    masks' ``mask_stride``); its ``model_identity`` keys the evaluation cache."""

    def __init__(self, pipe, llm_frame_pixels: tuple[int, int] | None = None,
                 mask_stride: int = DetectionOptions.mask_stride):
        self.pipe = pipe
        self.settings: dict[str, Any] = {"mask_stride": mask_stride}
        if llm_frame_pixels is not None:
            self.settings["llm_frame_pixels"] = tuple(llm_frame_pixels)
        self.model_identity = pipeline_model_identity(pipe)

    def __call__(self, video, names: list[str], stride: int, return_masks: bool) -> VideoDetection:
        return self.pipe(video, anomalies=names, stride=stride, return_masks=return_masks, **self.settings)


def pipeline_score_fn(pipe, llm_frame_pixels: tuple[int, int] | None = None,
                      mask_stride: int = DetectionOptions.mask_stride) -> PipelineScoreFn:
    """A ``score_fn`` calling a ``video-anomaly-detection`` pipeline (with an MLLM pixel budget when given)."""
    return PipelineScoreFn(pipe, llm_frame_pixels, mask_stride)


def load_pipeline_score_fn(model: str | None = None, device: str | int | None = None,
                           llm_frame_pixels: tuple[int, int] | None = None,
                           mask_stride: int = DetectionOptions.mask_stride) -> PipelineScoreFn:
    """The ``score_fn`` of a checkpoint folder / Hub id (None = the embedded default model)."""
    from .processing.factories import load_detection_pipeline

    return pipeline_score_fn(load_detection_pipeline(model, device=device), llm_frame_pixels, mask_stride)


__all__ = ["METRICS_JSON", "METRICS_MD", "RESULTS_DIR", "RUN_FILE", "EvaluationConfig", "ModelIdentity",
           "PipelineScoreFn", "ScoreFn", "check_cached_results", "compute_metrics", "evaluate_benchmark", "json_ready",
           "load_pipeline_score_fn", "metrics_table", "model_identity", "pipeline_model_identity",
           "pipeline_score_fn", "plot_video", "safe_file_name", "score_video", "video_result"]
