"""Writing one video's detection (a ``VideoDetection``) to an output folder: ``write_result_folder``.

    detection = detector("walk.mp4", anomalies=["fighting"], return_masks=True)   # the pipeline
    write_result_folder("out/walk", detection)

``lavida detect`` (one or several processes), ``lavida evaluate`` (per-video results, without plot and overlay) and
the Space all write through it. The folder holds:

- ``result.json``: ``VideoDetection.to_dict()`` (video metadata, anomaly names, model id, threshold, settings,
  per-frame ``scores`` and ``events``);
- ``scores.csv``: ``frame,time_s,score,is_anomaly``, one row per decoded frame (the same rounded scores as the JSON);
- ``scores.png``: the score over time with the threshold line and the events shaded, the strongest labelled with
  the anomaly they name and their peak;
- ``overlay.mp4``: H.264 4:2:0 at the original frame rate (and frame times), upright: each picture with the anomaly
  mask tinted as strongly as the frame's score warrants (``mask_tint``) above a band carrying the score bar and the
  score as text; the picture at the original size up to ``OutputOptions.overlay_max_side`` (1280) pixels on the long
  side, larger videos scaled down to it (even sides, aspect ratio kept) while decoding; the band and, for an odd
  width, one column make both sides even (``overlay_frame_size``). The source is decoded a second time (the only
  second read) and masks are taken one frame at a time at the picture's size, so memory stays flat for long and for
  huge videos.

Everything is written into a hidden temporary folder next to the target and renamed into place at the end: a failure
leaves no half-written folder, and an existing folder is replaced only once the new one is complete.
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..atomic_files import staging_path
from .detection import SCORE_DECIMALS, FrameMasks, VideoDetection
from .errors import UserInputError
from .postprocessing import resize_masks, threshold_scores
from .prefetch import Prefetched
from .progress import Progress
from .video_io import iter_frames, write_video

logger = logging.getLogger(__name__)

RESULT_JSON, SCORES_CSV, SCORES_PNG, OVERLAY_MP4 = "result.json", "scores.csv", "scores.png", "overlay.mp4"
MAX_PEAK_LABELS = 12
OVERLAY_PREFETCH_FRAMES = 8  # overlay frames decoded and drawn ahead of the encoder
MAX_LABEL_NAME = 24  # characters of an anomaly name in an event's label on the plot (longer ones end in "...")
# The plot's fonts, in the order matplotlib looks for each glyph: matplotlib's own DejaVu Sans (Latin, Greek,
# Cyrillic), then the first of these CJK fonts that is installed (Debian's fonts-noto-cjk: `make system-deps`; the
# Space's packages.txt), so anomaly names in Chinese, Japanese or Korean are drawn rather than as boxes.
PLOT_FONT_FAMILIES = ("DejaVu Sans", "Noto Sans CJK JP", "Noto Sans CJK SC", "Noto Sans CJK TC", "Noto Sans CJK KR",
                      "Source Han Sans", "WenQuanYi Zen Hei", "Droid Sans Fallback")



@dataclass
class OutputOptions:
    """Which files to write and how the overlay looks.

    The overlay tints the anomaly mask only as strongly as the frame's score warrants (``mask_tint``): not at all on a
    frame far below the threshold (score < ``mask_hidden_below`` x threshold), a faint hint growing with the score up
    to the threshold (at most ``mask_hint_strength`` of the full tint, no outline), and on a frame in an event (score
    >= threshold) the full tint (``mask_opacity``) with an outline where the mask too reaches the threshold. The
    score bar and the score as text lie on a band below the picture (``overlay_frame_size``), so no picture row is
    hidden.
    """

    overlay: bool = True
    plot: bool = True
    score_decimals: int = SCORE_DECIMALS  # rounding shared by result.json and scores.csv, so the two agree
    mask_color: tuple[int, int, int] = (255, 48, 48)  # RGB tint of the anomaly mask
    mask_outline_color: tuple[int, int, int] = (255, 255, 255)  # the anomalous object's outline in an event
    mask_opacity: float = 0.6  # tint opacity of the anomalous object (mask and frame at or above the threshold)
    # "Far below the threshold": a frame scoring under this share of the threshold shows no mask at all (the model's
    # map there is what it weighed and rejected, not an anomaly).
    mask_hidden_below: float = 0.5
    mask_hint_strength: float = 0.4  # share of the full tint reached just below the threshold
    bar_color_normal: tuple[int, int, int] = (64, 200, 96)
    bar_color_anomaly: tuple[int, int, int] = (235, 64, 52)
    band_color: tuple[int, int, int] = (24, 24, 24)  # the band below the picture carrying the score bar and text
    band_fraction: float = 0.06  # the band's height as a share of the picture's height ...
    min_band_px: int = 20  # ... and at least this, so the score text stays legible on small videos
    overlay_crf: int = 20
    # x264's speed. The overlay pass is CPU-bound (decoding, drawing and encoding share the cores): on a 10 s 720p
    # clip on 2 cores "veryfast" took 3.7 s (6.3 CPU s) against "medium"'s 4.9 s (8.4 CPU s), for a file about a
    # third larger at the same quality (crf)
    overlay_preset: str = "veryfast"
    # x264's macroblock tree reads memory it has not written on frames with large still areas (the score band), so
    # the same frames could encode to different bytes from one process to the next; without it they do not.
    overlay_x264_params: str = "mbtree=0"
    overlay_max_side: int = 1280  # longest overlay side in pixels; larger videos are scaled down (see overlay_size)
    progress: bool | None = None  # the overlay pass (``Progress``): None a bar on a terminal; True lines elsewhere too
    # called with (frames written, frames in all) after each overlay frame, e.g. to move a web page's progress bar
    overlay_progress: Callable[[int, int], None] | None = None
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


@lru_cache(maxsize=1)
def plot_font_families() -> tuple[str, ...]:
    """The fonts the plot draws with: ``PLOT_FONT_FAMILIES[0]`` and the first other one installed.

    matplotlib keeps a cache of the system's fonts made when it first ran; fonts installed since (fonts-noto-cjk
    after the virtualenv's first plot) are not in it. When no fallback is known, the system font files the cache
    lacks are added to it for this process, so a newly installed font is found without deleting the cache.
    """
    from matplotlib import font_manager

    manager = font_manager.fontManager
    fallbacks = PLOT_FONT_FAMILIES[1:]
    if not {entry.name for entry in manager.ttflist} & set(fallbacks):
        listed = {entry.fname for entry in manager.ttflist}
        for path in font_manager.findSystemFonts():
            if path not in listed:
                try:
                    manager.addfont(path)
                except (OSError, RuntimeError, ValueError):  # a file FreeType cannot read is not a font to use
                    continue
    installed = {entry.name for entry in manager.ttflist}
    return (PLOT_FONT_FAMILIES[0], *[family for family in fallbacks if family in installed][:1])


def _event_label(event) -> str:
    """An event's label on the plot: the anomaly it names (when the model names one) and its peak score."""
    peak = f"{event.peak_score:.2f}"
    return peak if event.anomaly is None else f"{_names_line([event.anomaly], width=MAX_LABEL_NAME)} {peak}"


def plot_scores(path: str | Path, detection: VideoDetection) -> None:
    """``scores.png``: score over time (seconds, frames on the top axis), threshold line, events shaded, the
    strongest ``MAX_PEAK_LABELS`` labelled at their peak with the anomaly they name; text in any script the
    installed fonts cover (``plot_font_families``)."""
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
    with plt.rc_context({"font.size": 10, "font.family": list(plot_font_families()), "axes.spines.top": False,
                         "axes.spines.right": False}):
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
                axis.annotate(_event_label(event), ((times[peak_frame] + times[peak_frame + 1]) / 2,
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
    """The ``(height, width)`` of the picture in the overlay of a ``height x width`` video: its own size when the
    long side is at most ``max_side``, else scaled down to that long side with the aspect ratio kept and even sides.
    The overlay's frames add the score band below it and keep even sides (``overlay_frame_size``)."""
    if max(height, width) <= max_side:
        return height, width
    scale = max_side / max(height, width)
    return max(2, 2 * round(height * scale / 2)), max(2, 2 * round(width * scale / 2))


def _band_height(height: int, options: OutputOptions) -> int:
    """Rows of the score band below a picture ``height`` rows high: a share of it, at least ``min_band_px``, one
    more when that makes the frame's height even."""
    band = max(options.min_band_px, round(height * options.band_fraction))
    return band + (height + band) % 2


def overlay_frame_size(height: int, width: int, options: OutputOptions | None = None) -> tuple[int, int]:
    """The ``(height, width)`` of the overlay frames around a ``height x width`` picture (``overlay_size``): the score
    band below it and one column of the band's colour on the right of an odd width, so both sides are even (H.264
    4:2:0, which every player and browser takes)."""
    options = options or OutputOptions()
    return height + _band_height(height, options), width + width % 2


def _mask_at_frame_size(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """``float32 [H, W]`` probabilities in [0, 1] from a mask at any size (masks from a detection are already
    ``[H, W]``)."""
    if isinstance(mask, np.ndarray) and mask.dtype == np.float16:  # torch converts it several times faster
        mask = torch.from_numpy(mask).float().numpy()
    mask = np.asarray(mask, dtype=np.float32)
    if mask.shape != (height, width):
        mask = resize_masks(mask, (height, width))
    return np.clip(mask, 0.0, 1.0)


def _outline(binary: np.ndarray, thickness: int = 1) -> np.ndarray:
    """``bool [H, W]``: mask pixels within ``thickness`` 4-neighbour steps of a pixel outside the mask."""
    inside = binary
    for _ in range(thickness):
        padded = np.pad(inside, 1, mode="edge")
        inside = inside & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return binary & ~inside


def mask_tint(score: float, threshold: float, mask: np.ndarray, options: OutputOptions | None = None
              ) -> tuple[np.ndarray, np.ndarray | None]:
    """How an overlay frame shows its anomaly mask: each pixel as strongly as the frame's score and its own
    probability both warrant.

    A pixel of mask probability ``p`` is the anomalous object when the frame is in an event (``score >= threshold``)
    and ``p`` reaches the threshold too: it is tinted in ``options.mask_color`` at ``options.mask_opacity`` and
    outlined in ``options.mask_outline_color`` (thicker on larger frames). Every other pixel gets at most a hint: its
    level ``v = min(p, score)`` (no pixel says more than its frame) gives no tint below ``options.mask_hidden_below *
    threshold`` and a tint rising linearly to ``options.mask_hint_strength`` of the full one as ``v`` nears the
    threshold. So a frame far below the threshold shows no mask whatever its map holds, and objects the map rates
    below the threshold never look like the anomaly. The score enters the hint as the band shows it (two decimals):
    a last-bit difference in a score (another batch, another process) leaves the frame unchanged.

    Args:
        score: the frame's anomaly score.
        threshold: the detection's threshold.
        mask: ``float [H, W]`` anomaly probabilities in [0, 1] at the frame's size.
        options: the colour and strengths.

    Returns:
        ``(alpha, outline)``: ``float32 [H, W]`` tint opacity in ``[0, mask_opacity]`` and ``bool [H, W]`` pixels to
        paint in ``mask_outline_color`` (None on a frame below the threshold).
    """
    options = options or OutputOptions()
    probability = np.clip(np.asarray(mask, dtype=np.float32), 0.0, 1.0)
    event = score >= threshold
    level = np.minimum(probability, np.float32(round(float(score), 2)))
    hidden_below = options.mask_hidden_below * threshold
    hint = np.clip((level - hidden_below) / max(threshold - hidden_below, 1e-9), 0.0, 1.0) * options.mask_hint_strength
    if not event:
        return (options.mask_opacity * hint).astype(np.float32), None
    marked = (probability >= threshold) & (probability > 0)  # a pixel at 0 is no object, even at threshold 0
    alpha = options.mask_opacity * np.where(marked, 1.0, hint)
    thickness = max(1, min(marked.shape) // 240)  # about 1 px per 240 px of the short side, still seen when scaled
    return alpha.astype(np.float32), _outline(marked, thickness)


def render_overlay_frame(image: np.ndarray, score: float, threshold: float, mask: np.ndarray | None,
                         options: OutputOptions | None = None) -> np.ndarray:
    """One overlay frame: the picture with its mask tinted (``mask_tint``) above a band with the score bar and text.

    Args:
        image: ``uint8 [H, W, 3]`` RGB frame.
        score: the frame's anomaly score.
        threshold: the detection's threshold: the mask's strength, the bar's colour and its tick follow it.
        mask: ``float [h, w]`` anomaly probability (resized to ``[H, W]`` if needed), or None.
        options: colours, strengths and the band's size.

    Returns:
        ``uint8 [H', W', 3]`` with ``(H', W') = overlay_frame_size(H, W, options)``: rows ``:H`` and columns ``:W``
        are the picture (untouched where the mask is not tinted), the rows below are the band: the score as text
        (shortened to fit narrow videos) over a bar filled to the score, red from the threshold on, with a white
        tick at the threshold.
    """
    options = options or OutputOptions()
    height, width = image.shape[:2]
    frame_height, frame_width = overlay_frame_size(height, width, options)
    frame = np.empty((frame_height, frame_width, 3), dtype=np.uint8)
    frame[:height, :width] = image
    frame[height:] = options.band_color  # the band, and the column that evens an odd width
    frame[:height, width:] = options.band_color
    if mask is not None:
        alpha, outline = mask_tint(score, threshold, _mask_at_frame_size(mask, height, width), options)
        tinted = alpha > 0
        if tinted.any():  # blend the tinted pixels only: elsewhere the picture stays as it is
            color = np.asarray(options.mask_color, np.float32)
            pixels = image[tinted].astype(np.float32)  # (n, 3)
            pixels += (color - pixels) * alpha[tinted][:, None]
            frame[:height, :width][tinted] = np.clip(pixels + 0.5, 0, 255).astype(np.uint8)
        if outline is not None:
            frame[:height, :width][outline] = options.mask_outline_color
    _draw_score_band(frame[height:], width, score, threshold, options)
    return frame


def _draw_score_band(band: np.ndarray, width: int, score: float, threshold: float, options: OutputOptions) -> None:
    """Draw the score text and bar on ``band`` (``uint8 [B, W', 3]``, the rows below a picture ``width`` wide), in
    place: the text on the upper rows, the bar on the lower quarter."""
    rows = band.shape[0]
    bar = max(3, round(rows * 0.25))
    track = band[rows - bar:, :width]
    band_color = np.asarray(options.band_color, np.float32)
    track[...] = band_color + (255 - band_color) * 0.15  # the bar's empty part: a little lighter than the band
    filled = int(round(float(np.clip(score, 0.0, 1.0)) * width))
    event = score >= threshold
    track[:, :filled] = options.bar_color_anomaly if event else options.bar_color_normal
    tick = min(width - 1, int(round(threshold * width)))
    track[:, max(0, tick - 1):tick + 1] = 255
    text_rows = rows - bar - 1
    if text_rows < 8:  # a band made too thin (min_band_px) carries the bar only
        return
    prefix = "ANOMALY " if event else ""
    candidates = (f"{prefix}score {score:.2f} (threshold {threshold:.2f})", f"{prefix}score {score:.2f}",
                  f"{score:.2f}")
    margin = max(2, rows // 8)
    text, size = _fitted_label(candidates, width - 2 * margin, text_rows)
    band[:text_rows] = _text_strip(text, size, text_rows, band.shape[1], margin, tuple(options.band_color))


@lru_cache(maxsize=256)
def _text_strip(text: str, size: int, rows: int, width: int, margin: int, band_color: tuple[int, int, int]
                ) -> np.ndarray:
    """``uint8 [rows, width, 3]``: ``text`` in white on the band's colour, vertically centred, ``margin`` px from the
    left. Cached: a video shows at most a few hundred different score texts, and drawing text is most of a band's
    cost."""
    from PIL import Image, ImageDraw

    strip = Image.new("RGB", (width, rows), band_color)
    ImageDraw.Draw(strip).text((margin, rows / 2), text, fill=(255, 255, 255), font=_font(size), anchor="lm")
    array = np.asarray(strip)
    array.flags.writeable = False
    return array


@lru_cache(maxsize=32)
def _font(size: int):
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


@lru_cache(maxsize=1024)
def _fitted_label(candidates: tuple[str, ...], width: int, height: int) -> tuple[str, int]:
    """The first of ``candidates`` (longest first) that fits ``width x height`` pixels at a font size no smaller than
    two thirds of the size that fills the height, and that size; the last one shrinks to 8 px (then clipped)."""
    full = max(8, round(height * 0.9))
    for position, text in enumerate(candidates):
        smallest = 8 if position == len(candidates) - 1 else max(8, full * 2 // 3)
        for size in range(full, smallest - 1, -1):
            left, top, right, bottom = _font(size).getbbox(text, anchor="lm")
            if right - left <= width and bottom - top <= height:
                return text, size
    return candidates[-1], 8


def write_overlay(path: str | Path, detection: VideoDetection, options: OutputOptions | None = None) -> None:
    """``overlay.mp4``: ``detection.source`` decoded again frame by frame (upright, its picture at ``overlay_size``),
    each frame rendered by ``render_overlay_frame`` with frame ``i``'s mask (when kept) at that size.

    Same frame count and frame rate as the source (and its frame times, ``VideoInfo.frame_times_s``, at a variable
    rate); frames of ``overlay_frame_size`` (the picture, the score band below it, even sides). Raises ``ValueError``
    (and writes nothing) if the source is unknown or decodes to a different number of frames than
    ``detection.scores`` has.
    """
    options = options or OutputOptions()
    video, masks = detection.video, detection.masks
    if detection.source is None:
        raise ValueError(f"{detection.name}: the detection does not say which video it read; no overlay possible.")

    def size(height: int, width: int) -> tuple[int, int]:
        return overlay_size(height, width, options.overlay_max_side)

    def frames() -> Iterator[np.ndarray]:
        count = 0
        with Progress(f"{detection.name}: overlay", total=video.num_frames, enabled=options.progress) as progress:
            for index, image in iter_frames(detection.source, size=size):
                if index >= video.num_frames:
                    raise ValueError(f"{detection.name} decodes to more frames than the {video.num_frames} scored.")
                mask = None
                if masks is not None:  # at the overlay's size: a native-size mask of a huge video is never made
                    mask = masks.frame(index, image.shape[:2]) if isinstance(masks, FrameMasks) else masks[index]
                yield render_overlay_frame(image, float(detection.scores[index]), detection.threshold, mask, options)
                count += 1
                progress.advance()
                if options.overlay_progress is not None:
                    options.overlay_progress(count, video.num_frames)
        if count != video.num_frames:
            raise ValueError(f"{detection.name} decoded to {count} frames but {video.num_frames} were scored.")

    # frames are decoded and rendered in a background thread while the encoder compresses the previous ones
    write_video(path, Prefetched(frames(), OVERLAY_PREFETCH_FRAMES, name="lavida-overlay"), video.fps,
                crf=options.overlay_crf, preset=options.overlay_preset, frame_times_s=video.frame_times_s,
                x264_params=options.overlay_x264_params)


def format_summary(detection: VideoDetection, max_events: int = 5) -> str:
    """A one-line summary of the events, strongest (highest peak) first; past ``max_events`` only a count of the
    weaker ones, so a long video's main event is never cut off behind brief early ones.

    Example: ``walk.mp4: 2 events (fire, fighting) at 1.2-3.4 s (fire, peak 0.91), 5.0 s (fighting, peak 0.62)``:
    the anomalies the events name (``VideoDetection.anomalies_found``, all events' names, strongest first), then
    each event; a model that scores no names gives ``walk.mp4: 2 events at 1.2-3.4 s (peak 0.91), ...``. Without
    events the line says which names were searched for. An event whose start and end print alike (a single frame)
    prints one time. A damaged video (frames that did not decode) says so at the end.
    """
    damaged = "; damaged video: some frames did not decode" if detection.video.damaged else ""
    if not detection.events:
        best = float(detection.scores.max()) if detection.scores.size else 0.0
        return (f"{detection.name}: no events (searched for {_names_line(detection.anomalies, width=60)}); highest "
                f"score {best:.2f} < threshold {detection.threshold:g}{damaged}")
    strongest = sorted(detection.events, key=lambda event: (-event.peak_score, event.start_frame))
    found = detection.anomalies_found

    def span(event) -> str:
        start, end = f"{event.start_s:.1f}", f"{event.end_s:.1f}"
        return f"{start} s" if start == end else f"{start}-{end} s"

    def described(event) -> str:
        named = "" if event.anomaly is None else f"{_names_line([event.anomaly], width=MAX_LABEL_NAME)}, "
        return f"{span(event)} ({named}peak {event.peak_score:.2f})"

    spans = ", ".join(described(event) for event in strongest[:max_events])
    more = f" and {len(detection.events) - max_events} weaker" if len(detection.events) > max_events else ""
    plural = "event" if len(detection.events) == 1 else "events"
    names = f" ({_names_line(found, width=60)})" if found else ""
    return f"{detection.name}: {len(detection.events)} {plural}{names} at {spans}{more}{damaged}"


__all__ = ["OVERLAY_MP4", "RESULT_JSON", "SCORES_CSV", "SCORES_PNG", "OutputOptions", "atomic_directory",
           "format_summary", "mask_tint", "overlay_frame_size", "overlay_size", "plot_scores", "render_overlay_frame",
           "write_overlay", "write_result_folder", "write_result_json", "write_scores_csv"]
