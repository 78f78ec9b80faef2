"""Frame-level video anomaly detection metrics: micro/macro ROC-AUC, AP (two ways), EER, Gaussian smoothing.

Every function takes per-video arrays (``labels[i]``: ``int [F_i]`` in {0, 1}; ``scores[i]``: ``float [F_i]``, higher
= more anomalous) so that pooled ("micro") and per-video ("macro") numbers come from the same inputs. sklearn does the
counting; this module only fixes the conventions the VAD literature uses:

* **micro AUC**: ROC-AUC over all frames of all videos pooled (what LAVIDA and most papers report as "frame AUC").
* **macro AUC**: the mean over videos of the per-video ROC-AUC. A video whose frames are all normal (or all anomalous)
  has no ROC curve of its own, so two policies are offered:

  - ``"pad"`` (default, the convention of the UBnormal authors' evaluation script): every video's labels are extended
    with one normal frame scored at the lowest possible score and one anomalous frame scored at the highest possible
    score (0 and 1 for probabilities; the video's own minimum / maximum if they lie outside ``[0, 1]``). Every video
    then has a defined AUC; an all-normal video scores 1.0 exactly when none of its frames reaches the top score, and
    lower the more of its frames tie with it.
  - ``"skip"``: videos with a single class are left out of the mean; the number of videos used is reported.

* **AP** both ways: ``average_precision_score`` (sklearn's step-wise sum, no interpolation) and the trapezoid area
  under the precision-recall curve (``auc(recall, precision)``), which is what the XD-Violence authors' code reports.
* **smoothing** (``smoothing_sigma`` > 0): ``lavida.processing.postprocessing.smooth_scores``, the function detection
  uses, so the module needs the ``lavida`` package (installed with it).
* **EER**: the point where the false-positive rate equals the miss rate, found on the ROC polygon by linear
  interpolation between the two ROC points that bracket it (so the value is exact for the ROC curve sklearn returns).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

# The one temporal smoothing of the package: detection smooths with it too, so a video's smoothed scores are the same
# in ``lavida detect`` and in these metrics (a Gaussian truncated at 4 sigma, mirrored edges, float64).
from lavida.processing.postprocessing import SMOOTHING_TRUNCATE, smooth_scores

logger = logging.getLogger(__name__)

MACRO_POLICIES = ("pad", "skip")


def _as_pair(labels: np.ndarray | Sequence[int], scores: np.ndarray | Sequence[float], name: str = "video"
             ) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if labels.shape != scores.shape:
        raise ValueError(f"{name}: {labels.size} labels but {scores.size} scores; give one score per frame.")
    if labels.size and not np.isin(labels, (0, 1)).all():
        raise ValueError(f"{name}: labels must be 0 (normal) or 1 (anomalous), got {np.unique(labels)[:5].tolist()}.")
    if not np.isfinite(scores).all():
        raise ValueError(f"{name}: scores contain NaN or infinity.")
    return labels.astype(np.int64), scores


def _pooled(labels: Sequence[np.ndarray], scores: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    if len(labels) != len(scores):
        raise ValueError(f"{len(labels)} label arrays but {len(scores)} score arrays; give one pair per video.")
    pairs = [_as_pair(label, score, f"video {i}") for i, (label, score) in enumerate(zip(labels, scores))]
    if not pairs:
        raise ValueError("No videos given.")
    return np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs])


def _two_classes(labels: np.ndarray) -> bool:
    return labels.size > 0 and 0 < labels.sum() < labels.size


def micro_auc(labels: Sequence[np.ndarray], scores: Sequence[np.ndarray]) -> float:
    """ROC-AUC over all frames of all videos pooled; NaN when the pooled labels hold a single class."""
    pooled_labels, pooled_scores = _pooled(labels, scores)
    if not _two_classes(pooled_labels):
        logger.warning("Frame AUC is undefined: all %d frames have the same label.", pooled_labels.size)
        return float("nan")
    return float(roc_auc_score(pooled_labels, pooled_scores))


@dataclass(frozen=True)
class MacroAUC:
    """Per-video ROC-AUC and their mean.

    Attributes:
        value: the mean over the videos used (NaN when none could be used).
        per_video: ``[V]`` each video's AUC (NaN for videos left out under ``"skip"``).
        num_videos_used: how many videos entered the mean.
        policy: ``"pad"`` or ``"skip"`` (see the module docstring).
    """

    value: float
    per_video: np.ndarray
    num_videos_used: int
    policy: str


def video_auc(labels: np.ndarray | Sequence[int], scores: np.ndarray | Sequence[float], policy: str = "pad"
              ) -> float:
    """ROC-AUC of one video under a macro policy (NaN for a single-class video under ``"skip"``)."""
    if policy not in MACRO_POLICIES:
        raise ValueError(f"macro AUC policy must be one of {MACRO_POLICIES}, got {policy!r}.")
    labels, scores = _as_pair(labels, scores)
    if policy == "pad":
        low = min(0.0, float(scores.min())) if scores.size else 0.0
        high = max(1.0, float(scores.max())) if scores.size else 1.0
        labels = np.concatenate(([0], labels, [1]))
        scores = np.concatenate(([low], scores, [high]))
    elif not _two_classes(labels):
        return float("nan")
    return float(roc_auc_score(labels, scores))


def macro_auc(labels: Sequence[np.ndarray], scores: Sequence[np.ndarray], policy: str = "pad") -> MacroAUC:
    """Mean of the per-video ROC-AUCs (see the module docstring for how single-class videos are handled)."""
    if len(labels) != len(scores):
        raise ValueError(f"{len(labels)} label arrays but {len(scores)} score arrays; give one pair per video.")
    per_video = np.array([video_auc(label, score, policy) for label, score in zip(labels, scores)], dtype=np.float64)
    used = per_video[np.isfinite(per_video)]
    value = float(used.mean()) if used.size else float("nan")
    return MacroAUC(value=value, per_video=per_video, num_videos_used=int(used.size), policy=policy)


def average_precision(labels: Sequence[np.ndarray], scores: Sequence[np.ndarray]) -> float:
    """sklearn's step-wise average precision over pooled frames; NaN when no frame is anomalous."""
    pooled_labels, pooled_scores = _pooled(labels, scores)
    if pooled_labels.sum() == 0:
        logger.warning("Average precision is undefined: no anomalous frame among %d.", pooled_labels.size)
        return float("nan")
    return float(average_precision_score(pooled_labels, pooled_scores))


def pr_auc_trapezoid(labels: Sequence[np.ndarray], scores: Sequence[np.ndarray]) -> float:
    """Trapezoid area under the pooled precision-recall curve (the XD-Violence authors' "AP"); NaN if no positive."""
    pooled_labels, pooled_scores = _pooled(labels, scores)
    if pooled_labels.sum() == 0:
        return float("nan")
    precision, recall, _ = precision_recall_curve(pooled_labels, pooled_scores)
    return float(auc(recall, precision))


def eer_from_roc(fpr: np.ndarray, tpr: np.ndarray, thresholds: np.ndarray | None = None
                 ) -> tuple[float, float]:
    """Equal error rate of an ROC polygon.

    Args:
        fpr, tpr: ``[K]`` ROC points ordered by decreasing threshold (as ``sklearn.metrics.roc_curve`` returns them),
            from (0, 0) to (1, 1).
        thresholds: ``[K]`` the thresholds of those points, optional.

    Returns:
        ``(eer, threshold)``: the rate where ``fpr == 1 - tpr`` on the polygon, and the threshold of the ROC point
        nearest to that crossing (NaN when ``thresholds`` is not given).
    """
    fpr = np.asarray(fpr, dtype=np.float64)
    fnr = 1.0 - np.asarray(tpr, dtype=np.float64)
    gap = fpr - fnr  # rises from -1 at (0, 0) to +1 at (1, 1)
    after = int(np.argmax(gap >= 0))
    if after == 0:
        eer, nearest = float(fpr[0]), 0
    else:
        before = after - 1
        # the crossing on the segment between the two bracketing ROC points
        weight = -gap[before] / (gap[after] - gap[before])
        eer = float(fpr[before] + weight * (fpr[after] - fpr[before]))
        nearest = after if weight >= 0.5 else before
    if thresholds is None:
        return eer, float("nan")
    if not np.isfinite(thresholds[nearest]) and len(thresholds) > 1:
        nearest = 1  # sklearn's first point sits at +inf; report the first real threshold instead
    return eer, float(thresholds[nearest])


def equal_error_rate(labels: Sequence[np.ndarray], scores: Sequence[np.ndarray]) -> tuple[float, float]:
    """EER of the pooled frames (NaN, NaN when one class is missing) and the threshold nearest to it."""
    pooled_labels, pooled_scores = _pooled(labels, scores)
    if not _two_classes(pooled_labels):
        return float("nan"), float("nan")
    fpr, tpr, thresholds = roc_curve(pooled_labels, pooled_scores, drop_intermediate=False)
    return eer_from_roc(fpr, tpr, thresholds)


def frame_metrics(labels: Sequence[np.ndarray], scores: Sequence[np.ndarray], smoothing_sigma: float = 0.0
                  ) -> dict[str, float | int | dict | None]:
    """Every frame-level metric at once, on scores smoothed with ``smoothing_sigma`` (frames) when it is > 0.

    Returns:
        ``{"micro_auc", "macro_auc", "macro_auc_skip", "macro_videos_skip", "ap", "pr_auc_trapezoid", "eer",
        "eer_threshold", "num_videos", "num_frames", "num_anomalous_frames", "smoothing"}``; ``smoothing`` is
        ``None`` or ``{"kind": "gaussian", "sigma": ..., "edges": "reflect", "truncate": 4.0}``.
    """
    if smoothing_sigma:
        scores = [smooth_scores(score, smoothing_sigma) for score in scores]
    pooled_labels, _ = _pooled(labels, scores)
    padded = macro_auc(labels, scores, "pad")
    skipped = macro_auc(labels, scores, "skip")
    eer, eer_threshold = equal_error_rate(labels, scores)
    return {
        "micro_auc": micro_auc(labels, scores),
        "macro_auc": padded.value,
        "macro_auc_skip": skipped.value,
        "macro_videos_skip": skipped.num_videos_used,
        "ap": average_precision(labels, scores),
        "pr_auc_trapezoid": pr_auc_trapezoid(labels, scores),
        "eer": eer,
        "eer_threshold": eer_threshold,
        "num_videos": len(labels),
        "num_frames": int(pooled_labels.size),
        "num_anomalous_frames": int(pooled_labels.sum()),
        "smoothing": ({"kind": "gaussian", "sigma": float(smoothing_sigma), "edges": "reflect",
                       "truncate": SMOOTHING_TRUNCATE}
                      if smoothing_sigma else None),
    }


__all__ = ["MACRO_POLICIES", "MacroAUC", "average_precision", "eer_from_roc", "equal_error_rate", "frame_metrics",
           "macro_auc", "micro_auc", "pr_auc_trapezoid", "smooth_scores", "video_auc"]
