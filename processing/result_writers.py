"""Writing one video's detection (a ``VideoDetection``) to an output folder: ``write_result_folder``.

    detection = detector("walk.mp4", anomalies=["fighting"], return_masks=True)   # the pipeline
    write_result_folder("out/walk", detection)

``lavida detect`` (one or several processes), ``lavida evaluate`` (per-video results, without plot and overlay) and
the Space all write through it. The folder holds:

- ``result.json``: ``VideoDetection.to_dict()`` (video metadata, anomaly names, model id, threshold, settings,
  per-frame ``scores`` and ``events``);
- ``scores.csv``: ``frame,time_s,score,is_anomaly``, one row per decoded frame (the same rounded scores as the JSON);
- ``scores.png``: the score over time with the threshold line and the events shaded;
- ``overlay.mp4``: H.264 at the original frame rate (and frame times), upright, the anomaly mask tinted over each
  frame and a score bar along the bottom; at the original size up to ``OutputOptions.overlay_max_side`` (1280) pixels
  on the long side, larger videos scaled down to it (even sides, aspect ratio kept) while decoding. The source is
  decoded a second time (the only second read) and masks are taken one frame at a time at the overlay's size, so
  memory stays flat for long and for huge videos. An odd-sized video that is not scaled keeps its size by being
  encoded 4:4:4 (see ``write_video``).

Everything is written into a hidden temporary folder next to the target and renamed into place at the end: a failure
leaves no half-written folder, and an existing folder is replaced only once the new one is complete.
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..atomic_files import staging_path
from .detection import SCORE_DECIMALS, FrameMasks, VideoDetection
from .errors import UserInputError
from .postprocessing import resize_masks, threshold_scores
from .video_io import iter_frames, write_video

logger = logging.getLogger(__name__)

RESULT_JSON, SCORES_CSV, SCORES_PNG, OVERLAY_MP4 = "result.json", "scores.csv", "scores.png", "overlay.mp4"
MAX_PEAK_LABELS = 12



@dataclass
class OutputOptions:
    """Which files to write and how the overlay looks."""

    overlay: bool = True
    plot: bool = True
    score_decimals: int = SCORE_DECIMALS  # rounding shared by result.json and scores.csv, so the two agree
    mask_color: tuple[int, int, int] = (255, 48, 48)  # RGB tint of the anomaly mask
    mask_opacity: float = 0.55  # tint strength where the mask probability is 1
    mask_outline_threshold: float = 0.5  # the mask boundary is outlined at this probability
    bar_color_normal: tuple[int, int, int] = (64, 200, 96)
    bar_color_anomaly: tuple[int, int, int] = (235, 64, 52)
    min_bar_px_for_text: int = 12  # the bar (5% of the height) carries the score as text from this height up
    overlay_crf: int = 20
    overlay_preset: str = "medium"
    overlay_max_side: int = 1280  # longest overlay side in pixels; larger videos are scaled down (see overlay_size)
    progress: bool | None = None  # None: a progress bar only when writing to a terminal
    overwrite: bool = True


# ---------------------------------------------------------------------------------------------------------------------
# The folder
# ---------------------------------------------------------------------------------------------------------------------


@contextmanager
def atomic_directory(target: str | Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary folder that becomes ``target`` when the block succeeds and is deleted when it fails.

    The temporary folder is the hidden sibling ``lavida.atomic_files.staging_path`` names after this process, so a
    run killed outright leaves something ``remove_stale_staging`` recognises and removes on the next run. A failure
    anywhere (the block, a full disk, a busy folder during the renames) removes it and leaves ``target`` as it was.

    Raises:
        UserInputError: ``target`` exists and ``overwrite`` is False, or it exists and is not a folder.
    """
    target = Path(target)
    if target.name in ("", ".", "..") or target.name.startswith("."):
        # "out/.." would swap out (and delete) the parent folder: only a plain child folder may be replaced.
        raise ValueError(f"Result folder {target} must end in a plain folder name (not empty, '.', '..' or hidden).")
    if target.exists() and not target.is_dir():
        raise UserInputError(f"Output {target} exists and is not a folder: choose another --out folder.")
    if target.exists() and not overwrite:
        raise UserInputError(f"Output folder {target} already exists: remove it or choose another --out folder.")
    target.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:8]
    staging = staging_path(target, "partial", token)
    staging.mkdir()
    try:
        yield staging
        if target.exists():
            # Swap rather than delete first, so the old results survive until the new ones are in place.
            retired = staging_path(target, "old", token)
            target.rename(retired)
            try:
                staging.rename(target)
            except BaseException:
                retired.rename(target)  # the new results could not take its place: the old ones go back
                raise
            shutil.rmtree(retired, ignore_errors=True)
        else:
            staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_result_folder(out_dir: str | Path, detection: VideoDetection, options: OutputOptions | None = None) -> Path:
    """Write ``result.json``, ``scores.csv``, ``scores.png`` and ``overlay.mp4`` into ``out_dir``, atomically.

    Args:
        out_dir: the folder to create (replaced if it exists and ``options.overwrite``).
        detection: the result; its ``masks`` (when kept) are tinted over the overlay one frame at a time, and its
            ``source`` is decoded again for the overlay.
        options: which files and how they look.

    Returns:
        ``out_dir`` as a Path.
    """
    options = options or OutputOptions()
    out_dir = Path(out_dir)
    with atomic_directory(out_dir, overwrite=options.overwrite) as staging:
        write_result_json(staging / RESULT_JSON, detection, options.score_decimals)
        write_scores_csv(staging / SCORES_CSV, detection, options.score_decimals)
        if options.plot:
            plot_scores(staging / SCORES_PNG, detection)
        if options.overlay:
            write_overlay(staging / OVERLAY_MP4, detection, options)
    logger.info("Wrote results for %s to %s", detection.name, out_dir)
    return out_dir


# ---------------------------------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------------------------------


def write_result_json(path: str | Path, detection: VideoDetection, decimals: int = SCORE_DECIMALS) -> None:
    """``result.json``: ``detection.to_dict(decimals)``."""
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(detection.to_dict(decimals), handle, indent=1)
        handle.write("\n")


def write_scores_csv(path: str | Path, detection: VideoDetection, decimals: int = SCORE_DECIMALS) -> None:
    """``scores.csv``: ``frame,time_s,score,is_anomaly`` per decoded frame (``is_anomaly`` is 0 or 1)."""
    anomalous = threshold_scores(detection.scores, detection.threshold)
    times = detection.frame_times_s.tolist()  # i / fps, or the frames' own times at a variable frame rate
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["frame", "time_s", "score", "is_anomaly"])
        for frame, (score, flag) in enumerate(zip(detection.scores.tolist(), anomalous.tolist())):
            writer.writerow([frame, f"{times[frame]:.{decimals}f}", f"{score:.{decimals}f}", int(flag)])


# ---------------------------------------------------------------------------------------------------------------------
# Plot
# ---------------------------------------------------------------------------------------------------------------------


def _names_line(names: list[str], width: int = 110) -> str:
    """The names joined by commas, cut after ``width`` characters with a ``(+N more)`` count."""
    shown: list[str] = []
    length = 0
    for name in names:
        if shown and length + len(name) + 2 > width:
            break
        shown.append(name)
        length += len(name) + 2
    if len(shown[0]) > width:
        shown[0] = shown[0][: width - 1] + "\u2026"
    if len(shown) == len(names):
        return ", ".join(shown)
    return f"{', '.join(shown)} (+{len(names) - len(shown)} more)"


def plot_scores(path: str | Path, detection: VideoDetection) -> None:
    """``scores.png``: score over time (seconds, frames on the top axis), threshold line, events shaded."""
    import matplotlib

    matplotlib.use("Agg")  # files only; no display needed or wanted
    from matplotlib import pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    fps = detection.video.fps
    # Frame i covers [times[i], times[i + 1]) (i / fps at a constant rate): repeat the last score so the last frame's
    # step is drawn too.
    times = detection.video.frame_edges_s()
    curve = np.append(detection.scores, detection.scores[-1])
    score_color, event_color, threshold_color = "#1f5fa8", "#e0483a", "#555555"
    with plt.rc_context({"font.size": 10, "axes.spines.top": False, "axes.spines.right": False}):
        figure, axis = plt.subplots(figsize=(10, 3.6), dpi=130, layout="constrained")
        try:
            for event in detection.events:
                axis.axvspan(event.start_s, event.end_s, color=event_color, alpha=0.16, lw=0)
            axis.fill_between(times, curve, step="post", color=score_color, alpha=0.12, lw=0)
            axis.step(times, curve, where="post", color=score_color, lw=1.6)
            axis.axhline(detection.threshold, color=threshold_color, ls="--", lw=1.1)
            # Label the highest peaks only: dozens of labels on a long video would hide the curve.
            for event in sorted(detection.events, key=lambda e: e.peak_score, reverse=True)[:MAX_PEAK_LABELS]:
                peak = detection.scores[event.start_frame:event.end_frame + 1]
                peak_frame = event.start_frame + int(np.argmax(peak))
                axis.annotate(f"{event.peak_score:.2f}", ((times[peak_frame] + times[peak_frame + 1]) / 2,
                                                           event.peak_score),
                              xytext=(0, 4), textcoords="offset points", ha="center", fontsize=8, color=event_color)
            axis.set_xlim(0, times[-1])
            axis.set_ylim(0, 1.08)
            axis.set_xlabel("time (s)")
            axis.set_ylabel("anomaly score")
            axis.grid(axis="y", alpha=0.25)
            frames = np.arange(times.size)
            frames_axis = axis.secondary_xaxis("top", functions=(
                (lambda t: t * fps, lambda f: f / fps) if detection.video.frame_times_s is None
                else (lambda t: np.interp(t, times, frames), lambda f: np.interp(f, frames, times))))
            frames_axis.set_xlabel("frame", fontsize=9, color="#666666")
            frames_axis.tick_params(labelsize=8, colors="#666666")
            handles = [Line2D([], [], color=score_color, lw=1.6, label="score"),
                       Line2D([], [], color=threshold_color, ls="--", lw=1.1,
                                  label=f"threshold {detection.threshold:g}"),
                       Patch(color=event_color, alpha=0.3, label=f"events ({len(detection.events)})")]
            axis.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize=9)
            figure.suptitle(f"Anomaly score: {detection.name}", x=0.01, ha="left", fontsize=12,
                            fontweight="bold")
            axis.set_title(f"anomalies: {_names_line(detection.anomalies)}", loc="left", fontsize=9.5, color="#333333")
            figure.savefig(path)
        finally:
            plt.close(figure)


# ---------------------------------------------------------------------------------------------------------------------
# Overlay video
# ---------------------------------------------------------------------------------------------------------------------


def overlay_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """The overlay's ``(height, width)`` for a ``height x width`` video: its own size when the long side is at most
    ``max_side``, else scaled down to that long side with the aspect ratio kept and even sides (H.264 4:2:0, which
    browsers play)."""
    if max(height, width) <= max_side:
        return height, width
    scale = max_side / max(height, width)
    return max(2, 2 * round(height * scale / 2)), max(2, 2 * round(width * scale / 2))


def _mask_at_frame_size(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """``float32 [H, W]`` probabilities in [0, 1] from a mask at any size (masks from a detection are already
    ``[H, W]``)."""
    mask = np.asarray(mask, dtype=np.float32)
    if mask.shape != (height, width):
        mask = resize_masks(mask, (height, width))
    return np.clip(mask, 0.0, 1.0)


def _outline(binary: np.ndarray) -> np.ndarray:
    """``bool [H, W]``: mask pixels with a 4-neighbour outside the mask."""
    padded = np.pad(binary, 1, mode="edge")
    inside = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return binary & ~inside


def render_overlay_frame(image: np.ndarray, score: float, threshold: float, mask: np.ndarray | None,
                         options: OutputOptions | None = None) -> np.ndarray:
    """One overlay frame.

    Args:
        image: ``uint8 [H, W, 3]`` RGB frame.
        score: the frame's anomaly probability.
        threshold: where the bar switches colour and draws its tick.
        mask: ``float [h, w]`` anomaly probability (resized to ``[H, W]`` if needed), or None.

    Returns:
        ``uint8 [H, W, 3]``: the frame with the mask tinted (strength proportional to the probability, boundary
        outlined) and a score bar along the bottom rows.
    """
    options = options or OutputOptions()
    height, width = image.shape[:2]
    canvas = image.astype(np.float32)
    if mask is not None:
        probability = _mask_at_frame_size(mask, height, width)
        alpha = (options.mask_opacity * probability)[..., None]  # (H, W, 1)
        canvas = canvas * (1.0 - alpha) + np.asarray(options.mask_color, np.float32) * alpha
        canvas[_outline(probability >= options.mask_outline_threshold)] = options.mask_color
    # Score bar: darkened strip, filled to the score, a white tick at the threshold.
    bar = max(4, round(height * 0.05))
    canvas[height - bar:] *= 0.35
    filled = int(round(float(np.clip(score, 0.0, 1.0)) * width))
    color = options.bar_color_anomaly if score >= threshold else options.bar_color_normal
    canvas[height - bar + 1:, :filled] = color
    tick = min(width - 1, int(round(threshold * width)))
    canvas[height - bar:, max(0, tick - 1):tick + 1] = 255.0
    frame = np.clip(canvas + 0.5, 0, 255).astype(np.uint8)
    if bar >= options.min_bar_px_for_text:
        _label_bar(frame, bar, f"score {score:.2f}")
    return frame


@lru_cache(maxsize=8)
def _font(size: int):
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def _label_bar(frame: np.ndarray, bar: int, text: str) -> None:
    """Write ``text`` in the score bar, in place (only the bar strip goes through PIL)."""
    from PIL import Image, ImageDraw

    strip = Image.fromarray(frame[-bar:])
    ImageDraw.Draw(strip).text((4, bar / 2), text, fill=(255, 255, 255), font=_font(max(8, bar - 3)), anchor="lm",
                               stroke_width=1, stroke_fill=(0, 0, 0))
    frame[-bar:] = np.asarray(strip)


def write_overlay(path: str | Path, detection: VideoDetection, options: OutputOptions | None = None) -> None:
    """``overlay.mp4``: ``detection.source`` decoded again frame by frame (upright, at ``overlay_size``), each frame
    rendered by ``render_overlay_frame`` with frame ``i``'s mask (when kept) at that size.

    Same frame count and frame rate as the source (and its frame times, ``VideoInfo.frame_times_s``, at a variable
    rate); the source's size up to ``options.overlay_max_side`` on the long side. Raises ``ValueError`` (and writes
    nothing) if the source is unknown or decodes to a different number of frames than ``detection.scores`` has.
    """
    options = options or OutputOptions()
    video, masks = detection.video, detection.masks
    if detection.source is None:
        raise ValueError(f"{detection.name}: the detection does not say which video it read; no overlay possible.")

    def size(height: int, width: int) -> tuple[int, int]:
        return overlay_size(height, width, options.overlay_max_side)

    def frames() -> Iterator[np.ndarray]:
        count = 0
        with tqdm(total=video.num_frames, desc=f"overlay {detection.name}", unit="frame", leave=False,
                  disable=None if options.progress is None else not options.progress) as bar:
            for index, image in iter_frames(detection.source, size=size):
                if index >= video.num_frames:
                    raise ValueError(f"{detection.name} decodes to more frames than the {video.num_frames} scored.")
                mask = None
                if masks is not None:  # at the overlay's size: a native-size mask of a huge video is never made
                    mask = masks.frame(index, image.shape[:2]) if isinstance(masks, FrameMasks) else masks[index]
                yield render_overlay_frame(image, float(detection.scores[index]), detection.threshold, mask, options)
                count += 1
                bar.update(1)
        if count != video.num_frames:
            raise ValueError(f"{detection.name} decoded to {count} frames but {video.num_frames} were scored.")

    write_video(path, frames(), video.fps, crf=options.overlay_crf, preset=options.overlay_preset, odd_size="exact",
                frame_times_s=video.frame_times_s)


def format_summary(detection: VideoDetection, max_events: int = 5) -> str:
    """A one-line summary of the events, strongest (highest peak) first; past ``max_events`` only a count of the
    weaker ones, so a long video's main event is never cut off behind brief early ones.

    Example: ``walk.mp4: 2 events (fighting, fire) at 1.2-3.4 s (peak 0.91), 5.0 s (peak 0.62)``; an event whose
    start and end print alike (a single frame) prints one time. A damaged video (frames that did not decode) says so
    at the end.
    """
    names = _names_line(detection.anomalies, width=60)
    damaged = "; damaged video: some frames did not decode" if detection.video.damaged else ""
    if not detection.events:
        best = float(detection.scores.max()) if detection.scores.size else 0.0
        return (f"{detection.name}: no events ({names}); highest score {best:.2f} < threshold "
                f"{detection.threshold:g}{damaged}")
    strongest = sorted(detection.events, key=lambda event: (-event.peak_score, event.start_frame))

    def span(event) -> str:
        start, end = f"{event.start_s:.1f}", f"{event.end_s:.1f}"
        return f"{start} s" if start == end else f"{start}-{end} s"

    spans = ", ".join(f"{span(event)} (peak {event.peak_score:.2f})" for event in strongest[:max_events])
    more = f" and {len(detection.events) - max_events} weaker" if len(detection.events) > max_events else ""
    plural = "event" if len(detection.events) == 1 else "events"
    return f"{detection.name}: {len(detection.events)} {plural} ({names}) at {spans}{more}{damaged}"


__all__ = ["OVERLAY_MP4", "RESULT_JSON", "SCORES_CSV", "SCORES_PNG", "OutputOptions", "atomic_directory",
           "format_summary", "overlay_size", "plot_scores", "render_overlay_frame", "write_overlay",
           "write_result_folder", "write_result_json", "write_scores_csv"]
