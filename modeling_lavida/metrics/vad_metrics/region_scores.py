"""Region- and track-based detection criteria RBDC and TBDC (Ramachandra and Jones, WACV 2020), as UBnormal uses them.

Inputs are boxes ``(x_min, y_min, x_max, y_max)`` in pixels, max exclusive:

* **detections**: predicted anomalous regions, each with a frame index and a score (``regions_from_map`` turns a pixel
  anomaly map into such regions: connected components of the pixels at or above a binarisation level, each scored by
  its highest pixel score);
* **ground-truth tracks**: one box per frame along each anomalous object's track.

At a score threshold t, the detections with score >= t are kept:

* a ground-truth region (one box of one track) is **detected** when a kept detection in the same frame overlaps it with
  IoU >= alpha (0.1);
* a track is **detected** when at least beta (10 %) of its regions are detected;
* a kept detection that overlaps no ground-truth region of its frame with IoU >= alpha is a **false positive**.

RBDR(t) = detected regions / all regions, TBDR(t) = detected tracks / all tracks, FPR(t) = false positives / number
of frames (all frames of all test videos, normal videos included). RBDC and TBDC are the areas under RBDR and TBDR as
functions of FPR, for FPR from 0 to ``max_fpr`` (1.0): the curve starts at (0, 0), takes one point per distinct
detection score, is cut at ``max_fpr`` by linear interpolation and, when every detection is kept before FPR reaches
``max_fpr``, continues flat at its last detection rate (no threshold can detect more).

As in the reference implementation, each region's status is decided per threshold independently of the others, so
the whole sweep reduces to one number per region (the highest score of a detection matching it) and one per track
(the ceil(beta n)-th highest of its regions' numbers), and the curves are exact.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

DEFAULT_IOU = 0.1  # alpha: overlap for a detection to match a ground-truth region
DEFAULT_TRACK_FRACTION = 0.1  # beta: fraction of a track's regions that must be detected
DEFAULT_MAX_FPR = 1.0


@dataclass
class Detections:
    """Predicted anomalous regions of one video.

    Attributes:
        frames: ``int64 [D]`` frame index of each region.
        boxes: ``float64 [D, 4]`` ``(x_min, y_min, x_max, y_max)``, max exclusive.
        scores: ``float64 [D]`` region scores (higher = more anomalous).
    """

    frames: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        self.frames = np.asarray(self.frames, dtype=np.int64).reshape(-1)
        self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        self.scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        if not (len(self.frames) == len(self.boxes) == len(self.scores)):
            raise ValueError(f"Detections need one frame, box and score each; got {len(self.frames)} frames, "
                             f"{len(self.boxes)} boxes and {len(self.scores)} scores.")

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros(0, np.int64), np.zeros((0, 4)), np.zeros(0))

    @classmethod
    def concatenate(cls, parts: Sequence[Detections]) -> Detections:
        if not parts:
            return cls.empty()
        return cls(np.concatenate([p.frames for p in parts]), np.concatenate([p.boxes for p in parts]),
                   np.concatenate([p.scores for p in parts]))


@dataclass
class Track:
    """One anomalous object's ground-truth track.

    Attributes:
        track_id: the object's id in the annotation.
        frames: ``int64 [R]`` frame index of each region of the track.
        boxes: ``float64 [R, 4]`` ``(x_min, y_min, x_max, y_max)``, max exclusive.
    """

    track_id: int
    frames: np.ndarray
    boxes: np.ndarray

    def __post_init__(self) -> None:
        self.frames = np.asarray(self.frames, dtype=np.int64).reshape(-1)
        self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        if len(self.frames) != len(self.boxes):
            raise ValueError(f"Track {self.track_id}: {len(self.frames)} frames but {len(self.boxes)} boxes.")


def box_iou(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Pairwise IoU of ``first [A, 4]`` and ``second [B, 4]`` boxes (max exclusive) as ``float64 [A, B]``."""
    first = np.asarray(first, dtype=np.float64).reshape(-1, 4)[:, None]
    second = np.asarray(second, dtype=np.float64).reshape(-1, 4)[None]
    width = np.clip(np.minimum(first[..., 2], second[..., 2]) - np.maximum(first[..., 0], second[..., 0]), 0, None)
    height = np.clip(np.minimum(first[..., 3], second[..., 3]) - np.maximum(first[..., 1], second[..., 1]), 0, None)
    inter = width * height
    area_first = (first[..., 2] - first[..., 0]) * (first[..., 3] - first[..., 1])
    area_second = (second[..., 2] - second[..., 0]) * (second[..., 3] - second[..., 1])
    union = area_first + area_second - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def regions_from_map(scores: np.ndarray, level: float = 0.5, min_area: int = 1
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Anomalous regions of one pixel anomaly map.

    Args:
        scores: ``float [H, W]`` pixel anomaly scores.
        level: pixels with a score >= ``level`` form the regions (8-connected components).
        min_area: components with fewer pixels are dropped.

    Returns:
        ``(boxes, region_scores)``: ``float64 [D, 4]`` boxes (max exclusive) and ``float64 [D]`` the highest pixel
        score inside each component.
    """
    scores = np.asarray(scores, dtype=np.float64)
    components, count = ndimage.label(scores >= level, structure=np.ones((3, 3), dtype=bool))
    if count == 0:
        return np.zeros((0, 4)), np.zeros(0)
    ids = np.arange(1, count + 1)
    sizes = ndimage.sum_labels(np.ones_like(scores), components, ids)
    peaks = ndimage.maximum(scores, components, ids)
    boxes = []
    region_scores = []
    for index, region in enumerate(ndimage.find_objects(components)):
        if region is None or sizes[index] < min_area:
            continue
        rows, cols = region
        boxes.append((cols.start, rows.start, cols.stop, rows.stop))
        region_scores.append(float(peaks[index]))
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4), np.asarray(region_scores, dtype=np.float64)


def largest_component_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Box (max exclusive) of the 8-connected component of ``mask`` with the largest box area; None when empty.

    Ground-truth track boxes are built this way from per-frame object masks, as the UBnormal authors do."""
    components, count = ndimage.label(np.asarray(mask) != 0, structure=np.ones((3, 3), dtype=bool))
    best, best_area = None, -1
    for region in ndimage.find_objects(components):
        if region is None:
            continue
        rows, cols = region
        area = (rows.stop - rows.start) * (cols.stop - cols.start)
        if area > best_area:
            best, best_area = (cols.start, rows.start, cols.stop, rows.stop), area
    return best


@dataclass
class VideoRegionMatch:
    """One video reduced for the sweep (see the module docstring).

    Attributes:
        region_scores: ``float64 [R]`` per ground-truth region, the highest score of a matching detection (-inf if
            none).
        region_tracks: ``int64 [R]`` index of the region's track within the video.
        false_positive_scores: ``float64 [P]`` scores of detections that match no ground-truth region.
        num_tracks: number of tracks in the video.
    """

    region_scores: np.ndarray
    region_tracks: np.ndarray
    false_positive_scores: np.ndarray
    num_tracks: int


def match_video(detections: Detections, tracks: Sequence[Track], iou_threshold: float = DEFAULT_IOU
                ) -> VideoRegionMatch:
    """Match one video's detections to its ground-truth regions, frame by frame."""
    region_frames = np.concatenate([t.frames for t in tracks]) if tracks else np.zeros(0, np.int64)
    region_boxes = np.concatenate([t.boxes for t in tracks]) if tracks else np.zeros((0, 4))
    region_tracks = (np.concatenate([np.full(len(t.frames), i, np.int64) for i, t in enumerate(tracks)])
                     if tracks else np.zeros(0, np.int64))
    region_scores = np.full(len(region_frames), -np.inf)
    matched = np.zeros(len(detections.frames), dtype=bool)
    for frame in np.intersect1d(np.unique(detections.frames), np.unique(region_frames)):
        det_index = np.flatnonzero(detections.frames == frame)
        gt_index = np.flatnonzero(region_frames == frame)
        overlaps = box_iou(detections.boxes[det_index], region_boxes[gt_index]) >= iou_threshold  # (d, g)
        matched[det_index] = overlaps.any(axis=1)
        candidate = np.where(overlaps, detections.scores[det_index][:, None], -np.inf).max(axis=0)
        region_scores[gt_index] = candidate
    return VideoRegionMatch(region_scores=region_scores, region_tracks=region_tracks,
                            false_positive_scores=detections.scores[~matched], num_tracks=len(tracks))


def _track_scores(match: VideoRegionMatch, track_fraction: float) -> np.ndarray:
    scores = []
    for track in range(match.num_tracks):
        regions = np.sort(match.region_scores[match.region_tracks == track])[::-1]
        if regions.size == 0:
            continue
        needed = max(1, math.ceil(round(track_fraction * regions.size, 9)))
        scores.append(regions[needed - 1])
    return np.asarray(scores, dtype=np.float64)


def _area_under_rate(thresholds: np.ndarray, positive_scores: np.ndarray, false_positive_scores: np.ndarray,
                     num_frames: int, max_fpr: float) -> tuple[float, np.ndarray, np.ndarray]:
    """Area under detection-rate(FPR) for the threshold sweep; also returns the curve's points."""
    positive_sorted = np.sort(positive_scores)
    false_sorted = np.sort(false_positive_scores)
    # counts of scores >= t for every threshold t
    rate = (positive_sorted.size - np.searchsorted(positive_sorted, thresholds, side="left")) / positive_sorted.size
    fpr = (false_sorted.size - np.searchsorted(false_sorted, thresholds, side="left")) / num_frames
    fpr = np.concatenate(([0.0], fpr))
    rate = np.concatenate(([0.0], rate))
    if fpr[-1] < max_fpr:
        fpr = np.append(fpr, max_fpr)
        rate = np.append(rate, rate[-1])
    beyond = int(np.searchsorted(fpr, max_fpr, side="right"))  # first point past max_fpr
    if beyond < fpr.size:
        left = beyond - 1
        weight = (max_fpr - fpr[left]) / (fpr[beyond] - fpr[left])
        cut_rate = rate[left] + weight * (rate[beyond] - rate[left])
        fpr = np.append(fpr[:beyond], max_fpr)
        rate = np.append(rate[:beyond], cut_rate)
    return float(np.trapezoid(rate, fpr)), fpr, rate


def rbdc_tbdc(matches: Sequence[VideoRegionMatch], num_frames: int, track_fraction: float = DEFAULT_TRACK_FRACTION,
              max_fpr: float = DEFAULT_MAX_FPR) -> dict[str, float | int]:
    """RBDC and TBDC over videos already matched with ``match_video``.

    Args:
        matches: one ``VideoRegionMatch`` per test video.
        num_frames: total number of frames of all test videos (the FPR denominator).
        track_fraction: beta, the fraction of a track's regions that must be detected.
        max_fpr: the FPR up to which the area is taken.

    Returns:
        ``{"rbdc", "tbdc", "num_regions", "num_tracks", "num_detections"}``; NaN when there is no ground-truth region.
    """
    if num_frames <= 0:
        raise ValueError(f"num_frames must be positive, got {num_frames}.")
    region_scores = np.concatenate([m.region_scores for m in matches]) if matches else np.zeros(0)
    track_scores = (np.concatenate([_track_scores(m, track_fraction) for m in matches]) if matches
                    else np.zeros(0))
    false_scores = np.concatenate([m.false_positive_scores for m in matches]) if matches else np.zeros(0)
    all_scores = np.concatenate([region_scores[np.isfinite(region_scores)], false_scores])
    thresholds = np.unique(all_scores)[::-1]  # decreasing
    result: dict[str, float | int] = {"num_regions": int(region_scores.size), "num_tracks": int(track_scores.size),
                                      "num_detections": int(np.isfinite(region_scores).sum() + false_scores.size)}
    if region_scores.size == 0:
        result.update(rbdc=float("nan"), tbdc=float("nan"))
        return result
    result["rbdc"] = _area_under_rate(thresholds, region_scores, false_scores, num_frames, max_fpr)[0]
    result["tbdc"] = _area_under_rate(thresholds, track_scores, false_scores, num_frames, max_fpr)[0]
    return result


def rbdc_tbdc_from_detections(detections: Sequence[Detections], tracks: Sequence[Sequence[Track]], num_frames: int,
                              iou_threshold: float = DEFAULT_IOU, track_fraction: float = DEFAULT_TRACK_FRACTION,
                              max_fpr: float = DEFAULT_MAX_FPR) -> dict[str, float | int]:
    """RBDC and TBDC from raw per-video detections and tracks (``detections[i]`` and ``tracks[i]`` of video i)."""
    if len(detections) != len(tracks):
        raise ValueError(f"{len(detections)} detection sets but {len(tracks)} track lists; give one per video.")
    matches = [match_video(d, t, iou_threshold) for d, t in zip(detections, tracks)]
    return rbdc_tbdc(matches, num_frames, track_fraction, max_fpr)


__all__ = ["DEFAULT_IOU", "DEFAULT_MAX_FPR", "DEFAULT_TRACK_FRACTION", "Detections", "Track", "VideoRegionMatch",
           "box_iou", "largest_component_box", "match_video", "rbdc_tbdc", "rbdc_tbdc_from_detections",
           "regions_from_map"]
