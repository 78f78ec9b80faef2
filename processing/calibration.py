"""Site calibration: the threshold (and, when it helps, the minimum event length) that gives a chosen false-alarm rate
on footage the user says is normal for the site, and the small versioned file that carries them.

    target = CalibrationTarget(false_alarms_per_hour=1.0)        # or CalibrationTarget(frame_fpr=0.001)
    calibration = fit_calibration([(scores, fps), ...], target, FittedOn(...), smoothing_sigma=0.0)
    calibration.save("calibration.json")
    calibration = load_calibration("calibration.json")          # UserInputError for a file that is not one
    calibration.threshold, calibration.min_event_frames, calibration.smoothing_sigma

``scores`` are one normal video's per-frame scores as ``lavida detect`` computes them (the pipeline's
``VideoDetection.scores``: filled and smoothed with the same ``smoothing_sigma``), so the threshold applies to the scores
detection compares with it. Two targets:

- ``false_alarms_per_hour``: events (runs of at least ``min_event_frames`` frames at or above the threshold, as
  ``find_events`` finds them) per hour of the normal footage;
- ``frame_fpr``: the share of normal frames inside such events (the frame-level false-positive rate of the events).

The threshold is the lowest that meets the target on the footage, searched over the footage's distinct scores (each
candidate is the next float32 above a score, so it separates the scores exactly as detection compares them) from the
top down: steps that double until one misses the target, then bisection. False alarms per hour do not always fall as
the threshold rises (a low threshold can merge everything into one long event, which counts once); searching down
from the top stops at the first threshold that misses, never reaching such a merged one.

Unless the user fixes ``min_event_frames``, each length up to ``max_min_event_frames`` gets its own threshold, and the
length kept is the one that catches the smallest anomaly: the smallest rise of the score, added to stretches of
``anomaly_frames`` frames of the normal footage itself, that makes an event in at least half of them
(``score_rise_detected``). A longer minimum lowers the threshold, but it also asks the anomaly's scores to stay above
it that many frames in a row; which matters more depends on how much the model's scores flicker from frame to frame,
and the normal footage shows that. Ties go to the shorter length (it delays events less).

The file (``CALIBRATION_FORMAT_VERSION``)::

    {"format": "lavida-calibration", "format_version": 1, "threshold", "min_event_frames", "smoothing_sigma",
     "target": {"false_alarms_per_hour": N} | {"frame_fpr": F},
     "reached": {"false_alarms", "false_alarms_per_hour", "frame_fpr"},          # on the footage it was fitted on
     "fitted_on": {"num_videos", "num_frames", "hours", "model_id", "anomalies", "stride", "llm_frame_pixels"}}

This module imports only the standard library and numpy (``find_events`` is imported when fitting), so the command line
reads calibration files before loading any model.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic_files import write_json_atomic
from .errors import UserInputError

CALIBRATION_FORMAT = "lavida-calibration"
CALIBRATION_FORMAT_VERSION = 1
SECONDS_PER_HOUR = 3600.0
MAX_STRETCHES = 2000  # stretches of normal footage the minimum event lengths are compared on (evenly spread)


@dataclass(frozen=True)
class CalibrationTarget:
    """The false-alarm rate to reach on normal footage: exactly one of

    Attributes:
        false_alarms_per_hour: events per hour of normal footage.
        frame_fpr: share of normal frames inside events (0 <= F < 1).
    """

    false_alarms_per_hour: float | None = field(default=None, metadata={
        "help": "target false alarms (events) per hour of the normal footage (default: none; this or --target-fpr)"})
    frame_fpr: float | None = field(default=None, metadata={
        "help": "target share of normal frames inside events, the frame-level false-positive rate, e.g. 0.001 "
                "(default: none; this or --false-alarms-per-hour)"})

    def __post_init__(self) -> None:
        given = [name for name in ("false_alarms_per_hour", "frame_fpr") if getattr(self, name) is not None]
        if len(given) != 1:
            raise UserInputError("Give exactly one target: --false-alarms-per-hour N or --target-fpr F.")
        value = getattr(self, given[0])
        upper = math.inf if given[0] == "false_alarms_per_hour" else 1.0
        if isinstance(value, bool) or not isinstance(value, Real) or not (0 <= value < upper):
            bound = ">= 0" if upper == math.inf else "in [0, 1)"
            raise UserInputError(f"The target {given[0]} must be a number {bound}, got {value!r}.")
        object.__setattr__(self, given[0], float(value))

    def to_dict(self) -> dict[str, float]:
        return {key: value for key, value in asdict(self).items() if value is not None}

    def describe(self) -> str:
        if self.false_alarms_per_hour is not None:
            return f"{self.false_alarms_per_hour:g} false alarms/hour"
        return f"frame false-positive rate {self.frame_fpr:g}"


@dataclass(frozen=True)
class CalibrationSearch:
    """How the minimum event length is chosen.

    Attributes:
        min_event_frames: fix it (only the threshold is fitted); None: chosen.
        max_min_event_frames: the longest minimum tried.
        anomaly_frames: the shortest anomaly to catch, in frames: lengths are compared on stretches this long.
    """

    min_event_frames: int | None = field(default=None, metadata={
        "help": "fix the shortest event kept, in frames, and fit only the threshold (default: chosen)"})
    max_min_event_frames: int = field(default=12, metadata={
        "help": "the longest shortest-event length tried, in frames"})
    anomaly_frames: int = field(default=25, metadata={
        "help": "the shortest anomaly to catch, in frames: the minimum event length kept catches the smallest score "
                "rise over this many frames of the normal footage"})

    def __post_init__(self) -> None:
        for name in ("min_event_frames", "max_min_event_frames", "anomaly_frames"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise UserInputError(f"{name} must be a positive whole number, got {value!r}.")

    def lengths(self) -> list[int]:
        """The minimum event lengths tried: 1, 2, 3, 4, 6, 8, 12, 16, ... up to ``max_min_event_frames``."""
        if self.min_event_frames is not None:
            return [self.min_event_frames]
        lengths, step = [1, 2, 3], 4
        while step <= self.max_min_event_frames:
            lengths += [step, step * 3 // 2]
            step *= 2
        longest = min(self.max_min_event_frames, self.anomaly_frames)
        return sorted({length for length in lengths if length <= longest})


@dataclass(frozen=True)
class FalseAlarms:
    """What a threshold and minimum event length give on normal footage: ``false_alarms`` (events),
    ``false_alarms_per_hour``, ``frame_fpr`` (share of frames inside events)."""

    false_alarms: int
    false_alarms_per_hour: float
    frame_fpr: float

    def meets(self, target: CalibrationTarget) -> bool:
        if target.false_alarms_per_hour is not None:
            return self.false_alarms_per_hour <= target.false_alarms_per_hour
        return self.frame_fpr <= target.frame_fpr

    def to_dict(self) -> dict[str, float | int]:
        return {"false_alarms": self.false_alarms, "false_alarms_per_hour": round(self.false_alarms_per_hour, 6),
                "frame_fpr": round(self.frame_fpr, 9)}


@dataclass(frozen=True)
class FittedOn:
    """The footage and the settings a calibration was fitted with."""

    num_videos: int
    num_frames: int
    hours: float
    model_id: str
    anomalies: list[str]
    stride: int = 1
    llm_frame_pixels: list[int] | None = None


@dataclass(frozen=True)
class Calibration:
    """A site calibration (see the module docstring): the settings it gives detection, the target, what it reached
    on the footage it was fitted on, and that footage."""

    threshold: float
    min_event_frames: int
    smoothing_sigma: float
    target: CalibrationTarget
    reached: FalseAlarms
    fitted_on: FittedOn

    def to_dict(self) -> dict[str, Any]:
        return {"format": CALIBRATION_FORMAT, "format_version": CALIBRATION_FORMAT_VERSION,
                "threshold": self.threshold, "min_event_frames": self.min_event_frames,
                "smoothing_sigma": self.smoothing_sigma, "target": self.target.to_dict(),
                "reached": self.reached.to_dict(), "fitted_on": asdict(self.fitted_on)}

    def save(self, path: str | os.PathLike) -> Path:
        """Write the calibration file atomically (a temporary sibling renamed into place)."""
        return write_json_atomic(path, self.to_dict(), indent=1, allow_nan=False)

    def settings(self) -> dict[str, Any]:
        """What detection applies: ``threshold``, ``min_event_frames``, ``smoothing_sigma``."""
        return {"threshold": self.threshold, "min_event_frames": self.min_event_frames,
                "smoothing_sigma": self.smoothing_sigma}

    def mismatches(self, model_id: str, anomalies: Sequence[str], stride: int,
                   llm_frame_pixels: Sequence[int] | None) -> list[str]:
        """What differs between the run about to use this calibration and the one it was fitted with (each a
        reason its threshold may not fit); empty when nothing does."""
        fitted, problems = self.fitted_on, []
        if not _same_model(fitted.model_id, model_id):
            problems.append(f"it was made for model {fitted.model_id!r}, not {model_id!r}")
        if list(fitted.anomalies) != list(anomalies):
            problems.append(f"it was made for the anomaly names {', '.join(fitted.anomalies)!r}, not "
                            f"{', '.join(anomalies)!r}")
        if fitted.stride != stride:
            problems.append(f"it was made with stride {fitted.stride}, not {stride}")
        budget = None if llm_frame_pixels is None else list(llm_frame_pixels)
        if (fitted.llm_frame_pixels or None) != budget:
            problems.append(f"it was made with llm_frame_pixels {fitted.llm_frame_pixels}, not {budget}")
        return problems


def _same_model(fitted: str, used: str) -> bool:
    """Model ids name the same model (checkpoint folders compared by their resolved paths)."""
    if fitted == used:
        return True
    fitted_path, used_path = Path(fitted), Path(used)
    return fitted_path.exists() and used_path.exists() and fitted_path.resolve() == used_path.resolve()


def calibration_record(path: str | os.PathLike, calibration: Calibration, name: str | None = None) -> dict[str, Any]:
    """How ``result.json`` (and ``lavida evaluate``'s metrics.json) names the calibration a run used: the file as
    given (or ``name``, e.g. an upload's file name instead of its server path), the SHA-256 of its content (first 16
    hex digits), its target and the model it was fitted for."""
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    return {"file": str(path) if name is None else name, "sha256": digest, "target": calibration.target.to_dict(),
            "model_id": calibration.fitted_on.model_id}


def load_calibration(path: str | os.PathLike) -> Calibration:
    """Read a calibration file.

    Raises:
        UserInputError: a missing file, not JSON, not a calibration, a newer format or invalid values (naming the
            file and what to do).
    """
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"Calibration file {path} does not exist: make one with lavida calibrate.")
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserInputError(f"Calibration file {path} is not readable JSON ({error}): make it again with "
                             "lavida calibrate.") from None
    if not isinstance(payload, dict) or payload.get("format") != CALIBRATION_FORMAT:
        raise UserInputError(f"{path} is not a calibration file (no \"format\": \"{CALIBRATION_FORMAT}\"): give the "
                             "file lavida calibrate wrote.")
    version = payload.get("format_version")
    if not isinstance(version, int) or version > CALIBRATION_FORMAT_VERSION or version < 1:
        raise UserInputError(f"Calibration file {path} has format version {version!r}; this lavida reads version "
                             f"{CALIBRATION_FORMAT_VERSION}: upgrade lavida or make the file again.")
    try:
        from .options import DetectionOptions

        checked = DetectionOptions(threshold=payload["threshold"], min_event_frames=payload["min_event_frames"],
                                   smoothing_sigma=payload["smoothing_sigma"])
        fitted = payload["fitted_on"]
        reached = payload["reached"]
        return Calibration(
            threshold=checked.threshold, min_event_frames=checked.min_event_frames,
            smoothing_sigma=checked.smoothing_sigma, target=CalibrationTarget(**payload["target"]),
            reached=FalseAlarms(int(reached["false_alarms"]), float(reached["false_alarms_per_hour"]),
                                float(reached["frame_fpr"])),
            fitted_on=FittedOn(num_videos=int(fitted["num_videos"]), num_frames=int(fitted["num_frames"]),
                               hours=float(fitted["hours"]), model_id=str(fitted["model_id"]),
                               anomalies=[str(name) for name in fitted["anomalies"]],
                               stride=int(fitted.get("stride", 1)),
                               llm_frame_pixels=fitted.get("llm_frame_pixels")))
    except (KeyError, TypeError, ValueError) as error:
        reason = f"missing {error}" if isinstance(error, KeyError) else str(error)
        raise UserInputError(f"Calibration file {path} is damaged ({reason}): make it again with lavida "
                             "calibrate.") from None


# ---------------------------------------------------------------------------------------------------------------------
# Fitting
# ---------------------------------------------------------------------------------------------------------------------


def false_alarms(videos: Sequence[tuple[np.ndarray, float]], threshold: float,
                 min_event_frames: int) -> FalseAlarms:
    """The events (``find_events``) ``threshold`` and ``min_event_frames`` give on normal videos, given as
    ``(scores [F], fps)`` pairs: their count, count per hour and the share of frames inside them."""
    from .postprocessing import find_events

    events = frames_in_events = frames = 0
    seconds = 0.0
    for scores, fps in videos:
        found = find_events(scores, fps, threshold, min_event_frames)
        events += len(found)
        frames_in_events += sum(event.num_frames for event in found)
        frames += len(scores)
        seconds += len(scores) / fps
    hours = seconds / SECONDS_PER_HOUR
    return FalseAlarms(false_alarms=events, false_alarms_per_hour=events / hours if hours else 0.0,
                       frame_fpr=frames_in_events / frames if frames else 0.0)


def candidate_thresholds(videos: Sequence[tuple[np.ndarray, float]]) -> np.ndarray:
    """``float32 [C]`` ascending thresholds that split the scores every way: the next float32 above each distinct
    score (that score and all below it are under the threshold), within ``[0, 1]``."""
    values = np.unique(np.concatenate([np.asarray(scores, dtype=np.float32).reshape(-1) for scores, _ in videos]))
    candidates = np.unique(np.nextafter(values, np.float32(np.inf)))
    candidates = candidates[(candidates >= 0) & (candidates <= 1)]
    return candidates if candidates.size else np.ones(1, dtype=np.float32)


def lowest_threshold(videos: Sequence[tuple[np.ndarray, float]], candidates: np.ndarray, min_event_frames: int,
                     target: CalibrationTarget) -> tuple[float, FalseAlarms]:
    """The lowest candidate threshold that meets ``target``, searched from the highest down (doubling steps until
    one misses, then bisection; see the module docstring), with what it reaches; the highest candidate when none
    meets it."""
    def reached(position: int) -> FalseAlarms:
        return false_alarms(videos, float(candidates[position]), min_event_frames)

    good = len(candidates) - 1
    at_good = reached(good)
    if not at_good.meets(target):
        return float(candidates[good]), at_good
    bad, step = None, 1
    while good > 0:
        probe = max(0, good - step)
        at_probe = reached(probe)
        if not at_probe.meets(target):
            bad = probe
            break
        good, at_good, step = probe, at_probe, step * 2
    while bad is not None and good - bad > 1:  # candidates[bad] misses the target, candidates[good] meets it
        middle = (good + bad) // 2
        at_middle = reached(middle)
        if at_middle.meets(target):
            good, at_good = middle, at_middle
        else:
            bad = middle
    return float(candidates[good]), at_good


def fit_calibration(videos: Sequence[tuple[np.ndarray, float]], target: CalibrationTarget, fitted_on: FittedOn,
                    smoothing_sigma: float = 0.0, search: CalibrationSearch | None = None) -> Calibration:
    """Fit the threshold (and the minimum event length, unless fixed) on normal videos (see the module docstring).

    Args:
        videos: ``(scores [F], fps)`` of each normal video, scored as detection scores (smoothed with
            ``smoothing_sigma``).
        target: the false-alarm rate to reach.
        fitted_on: what the scores come from (recorded in the file).
        smoothing_sigma: the smoothing the scores had (recorded: detection must smooth the same way).
        search: how the minimum event length is chosen.
    """
    search = search or CalibrationSearch()
    if not videos or not any(len(scores) for scores, _ in videos):
        raise UserInputError("No normal frames to calibrate on: give at least one normal video.")
    candidates = candidate_thresholds(videos)
    fits = {length: lowest_threshold(videos, candidates, length, target) for length in search.lengths()}
    if len(fits) == 1:
        length = next(iter(fits))
    else:
        rises = {length: score_rise_detected(videos, threshold, length, search.anomaly_frames)
                 for length, (threshold, _) in fits.items()}
        length = min(rises, key=lambda candidate: (rises[candidate], candidate))
    threshold, reached = fits[length]
    return Calibration(threshold=threshold, min_event_frames=length, smoothing_sigma=float(smoothing_sigma),
                       target=target, reached=reached, fitted_on=fitted_on)


def score_rise_detected(videos: Sequence[tuple[np.ndarray, float]], threshold: float, min_event_frames: int,
                        anomaly_frames: int, share: float = 0.5, tolerance: float = 1e-4) -> float:
    """The smallest rise of the score that, added to stretches of ``anomaly_frames`` frames of the normal videos
    (one every half stretch, at most ``MAX_STRETCHES``), makes an event in at least ``share`` of them: a run of
    ``min_event_frames`` frames at or above ``threshold``, as ``find_events`` keeps. It says how large an anomaly must
    be for these settings to catch it, judged on the footage's own frame-to-frame variation. Found by bisection to
    ``tolerance``; at most 1 (a rise of 1 takes any score to the top)."""
    from .postprocessing import threshold_scores

    stretches: dict[int, list[np.ndarray]] = {}  # stretch length -> stretches (videos shorter than anomaly_frames)
    for scores, _ in videos:
        scores = np.asarray(scores, dtype=np.float32).reshape(-1)
        length = min(anomaly_frames, scores.size)
        step = max(1, length // 2)
        stretches.setdefault(length, []).extend(scores[start:start + length]
                                                for start in range(0, scores.size - length + 1, step))
    total = sum(len(group) for group in stretches.values())
    keep = MAX_STRETCHES / total if total > MAX_STRETCHES else 1.0
    groups = [np.stack(group)[np.linspace(0, len(group) - 1, max(1, round(len(group) * keep))).astype(int)]
              for group in stretches.values()]  # (n, length) each
    counted = sum(len(group) for group in groups)

    def caught(rise: float) -> bool:
        found = 0
        for group in groups:
            if group.shape[1] < min_event_frames:
                continue
            above = threshold_scores(np.minimum(group + np.float32(rise), np.float32(1)), threshold)  # (n, length)
            runs = np.cumsum(np.pad(above, ((0, 0), (1, 0))), axis=1, dtype=np.int64)
            window = runs[:, min_event_frames:] - runs[:, :-min_event_frames]  # frames above in each m-frame window
            found += int(np.any(window == min_event_frames, axis=1).sum())
        return found >= share * counted

    low, high = 0.0, 1.0
    if caught(low):
        return low
    if not caught(high):
        return high
    while high - low > tolerance:
        middle = (low + high) / 2
        low, high = (low, middle) if caught(middle) else (middle, high)
    return high


def resolution_note(calibration: Calibration) -> str | None:
    """A warning when the footage is too short to tell the target from zero: one false alarm on it is already
    above the target, so the threshold is fitted to allow none (more footage gives a finer fit); else None."""
    fitted, target = calibration.fitted_on, calibration.target
    if target.false_alarms_per_hour is not None and fitted.hours > 0:
        one = 1.0 / fitted.hours
        if target.false_alarms_per_hour < one:
            return (f"{fitted.hours:.3g} h of footage cannot show {target.describe()}: one false alarm on it is "
                    f"already {one:.3g}/hour, so the threshold allows none on it; calibrate on at least "
                    f"{1.0 / max(target.false_alarms_per_hour, 1e-12):.3g} h for a finer fit.")
    if target.frame_fpr is not None and fitted.num_frames > 0 and target.frame_fpr * fitted.num_frames < 1:
        return (f"{fitted.num_frames} frames cannot show a frame false-positive rate of {target.frame_fpr:g}: one "
                f"frame is already {1.0 / fitted.num_frames:.3g}, so the threshold allows none; calibrate on at "
                f"least {math.ceil(1.0 / max(target.frame_fpr, 1e-12))} frames for a finer fit.")
    return None


__all__ = ["CALIBRATION_FORMAT", "CALIBRATION_FORMAT_VERSION", "Calibration", "CalibrationSearch",
           "CalibrationTarget", "FalseAlarms", "FittedOn", "calibration_record", "candidate_thresholds",
           "false_alarms", "fit_calibration", "load_calibration", "lowest_threshold", "resolution_note",
           "score_rise_detected"]
