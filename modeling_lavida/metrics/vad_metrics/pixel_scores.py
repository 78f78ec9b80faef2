"""Pixel-level metrics at the native frame resolution, computed frame by frame in bounded memory.

**Pixel AUC** (``PixelAUCAccumulator``): the ROC-AUC of all pixels of all frames pooled. Holding every pixel of a
benchmark (Ped2: 2 M pixels per 24 frames; ShanghaiTech: 0.4 M per frame) is not needed: ROC-AUC only depends on how
many positive and negative pixels share each score value. Scores are therefore rounded to **float16** and counted in
two 65,536-bin histograms (one per class), indexed by a key that orders float16 values. The AUC computed from the
histograms is *exactly* sklearn's ``roc_auc_score`` on the same float16 scores (ties count half, as in sklearn), with
memory fixed at 1 MiB whatever the number of frames. The LAVIDA pipeline returns float16 masks, so for its output the
number is exact; wider inputs are rounded to float16 first (a relative change of at most 2**-11 in each score, which
can only merge nearly-equal scores into ties).

**Traditional pixel criterion** (Mahadevan et al., CVPR 2010; Li et al., TPAMI 2014): at a threshold t, an anomalous
frame counts as detected when at least 40 % of its ground-truth anomalous pixels have a score >= t, and a normal frame
counts as a false positive when any of its pixels has a score >= t. Sweeping t gives an ROC of detected anomalous
frames against falsely flagged normal frames. Each frame reduces to one number: an anomalous frame is detected exactly
while t is at most the k-th largest score among its anomalous pixels (k = ceil(0.4 n) for n anomalous pixels), and a
normal frame is flagged exactly while t is at most its largest pixel score. The sweep is then the ordinary ROC of these
per-frame numbers, so its AUC and EER come from sklearn without choosing a threshold grid.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from .frame_scores import eer_from_roc

logger = logging.getLogger(__name__)

NUM_KEYS = 1 << 16  # one key per float16 bit pattern
DEFAULT_COVERAGE = 0.4  # fraction of anomalous pixels a detection must cover (the traditional criterion)


def float16_keys(scores: np.ndarray) -> np.ndarray:
    """``uint16`` keys whose integer order is the numeric order of ``scores`` rounded to float16 (any shape).

    -0.0 and +0.0 share a key. NaN scores raise ``ValueError``.
    """
    half = np.asarray(scores).astype(np.float16) + np.float16(0.0)  # + 0.0 turns -0.0 into +0.0
    if np.isnan(half).any():
        raise ValueError("Pixel scores contain NaN.")
    bits = half.view(np.uint16)
    negative = (bits & 0x8000) != 0
    # positive floats sort like their bit patterns; negative ones in reverse, below all positives
    return np.where(negative, ~bits, bits | 0x8000).astype(np.uint16)


def keys_to_float16(keys: np.ndarray) -> np.ndarray:
    """The inverse of ``float16_keys``: the float16 value of each key."""
    keys = np.asarray(keys, dtype=np.uint16)
    high = (keys & 0x8000) != 0
    bits = np.where(high, keys & 0x7FFF, ~keys).astype(np.uint16)
    return bits.view(np.float16)


def _histogram_auc(positives: np.ndarray, negatives: np.ndarray) -> float:
    """Mann-Whitney AUC from per-value counts ordered by increasing value (ties count half)."""
    total_positive = float(positives.sum())
    total_negative = float(negatives.sum())
    if total_positive == 0 or total_negative == 0:
        return float("nan")
    positives = positives.astype(np.float64)
    negatives = negatives.astype(np.float64)
    positives_above = total_positive - np.cumsum(positives)  # positives with a strictly higher value
    pairs = np.dot(negatives, positives_above + 0.5 * positives)
    return float(pairs / (total_positive * total_negative))


@dataclass
class PixelAUCAccumulator:
    """Pooled pixel ROC-AUC over many frames in constant memory (see the module docstring).

    Attributes:
        positives: ``int64 [65536]`` count of anomalous pixels per float16 key.
        negatives: ``int64 [65536]`` count of normal pixels per float16 key.
    """

    positives: np.ndarray = field(default_factory=lambda: np.zeros(NUM_KEYS, dtype=np.int64))
    negatives: np.ndarray = field(default_factory=lambda: np.zeros(NUM_KEYS, dtype=np.int64))

    def update(self, scores: np.ndarray, targets: np.ndarray) -> None:
        """Add pixels: ``scores`` float ``[...]`` (e.g. ``[H, W]`` or ``[F, H, W]``) and ``targets`` of the same shape
        (bool or {0, 1}; nonzero = anomalous)."""
        scores = np.asarray(scores)
        targets = np.asarray(targets)
        if scores.shape != targets.shape:
            raise ValueError(f"Pixel scores {list(scores.shape)} and ground-truth masks {list(targets.shape)} differ "
                             "in shape; compare them at the same (native) resolution.")
        keys = float16_keys(scores).reshape(-1)
        anomalous = targets.reshape(-1) != 0
        self.positives += np.bincount(keys[anomalous], minlength=NUM_KEYS)
        self.negatives += np.bincount(keys[~anomalous], minlength=NUM_KEYS)

    def merge(self, other: PixelAUCAccumulator) -> None:
        """Add the counts of another accumulator (e.g. of another video)."""
        self.positives += other.positives
        self.negatives += other.negatives

    @property
    def num_pixels(self) -> int:
        return int(self.positives.sum() + self.negatives.sum())

    @property
    def num_anomalous_pixels(self) -> int:
        return int(self.positives.sum())

    def auc(self) -> float:
        """The pooled pixel ROC-AUC; NaN when one class has no pixel."""
        return _histogram_auc(self.positives, self.negatives)

    def to_sparse(self) -> dict[str, np.ndarray]:
        """Compact arrays for storage: ``keys`` (uint16), ``positives`` and ``negatives`` (int64) of non-empty keys."""
        keys = np.flatnonzero((self.positives > 0) | (self.negatives > 0)).astype(np.uint16)
        return {"keys": keys, "positives": self.positives[keys], "negatives": self.negatives[keys]}

    @classmethod
    def from_sparse(cls, keys: np.ndarray, positives: np.ndarray, negatives: np.ndarray) -> PixelAUCAccumulator:
        accumulator = cls()
        keys = np.asarray(keys, dtype=np.int64)
        accumulator.positives[keys] = np.asarray(positives, dtype=np.int64)
        accumulator.negatives[keys] = np.asarray(negatives, dtype=np.int64)
        return accumulator


def pixel_auc(scores: np.ndarray, targets: np.ndarray) -> float:
    """Pooled pixel ROC-AUC of ``scores`` against ``targets`` (same shape, e.g. ``[F, H, W]``), via the accumulator."""
    accumulator = PixelAUCAccumulator()
    accumulator.update(scores, targets)
    return accumulator.auc()


def _required_pixels(num_anomalous: int, coverage: float) -> int:
    # ceil(coverage * n) without float noise (0.4 * 5 must give 2, not 3)
    return max(1, math.ceil(round(coverage * num_anomalous, 9)))


def criterion_frame_score(scores: np.ndarray, target: np.ndarray, coverage: float = DEFAULT_COVERAGE
                          ) -> tuple[float, bool]:
    """Reduce one frame to its traditional-criterion score.

    Args:
        scores: ``float [H, W]`` pixel anomaly scores.
        target: ``[H, W]`` ground-truth mask (nonzero = anomalous).
        coverage: the fraction of anomalous pixels that must reach the threshold (0.4 traditionally).

    Returns:
        ``(score, anomalous)``: for an anomalous frame the highest threshold at which it counts as detected (the
        ``ceil(coverage * n)``-th largest score among its n anomalous pixels); for a normal frame the highest
        threshold at which it counts as a false positive (its largest pixel score).
    """
    scores = np.asarray(scores, dtype=np.float64)
    target = np.asarray(target) != 0
    if scores.shape != target.shape:
        raise ValueError(f"Pixel scores {list(scores.shape)} and ground-truth mask {list(target.shape)} differ in "
                         "shape; compare them at the same (native) resolution.")
    if not 0 < coverage <= 1:
        raise ValueError(f"coverage must be in (0, 1], got {coverage!r}.")
    inside = scores[target]
    if inside.size == 0:
        return float(scores.max()), False
    k = _required_pixels(inside.size, coverage)
    return float(np.partition(inside, inside.size - k)[inside.size - k]), True


@dataclass
class PixelCriterionAccumulator:
    """Per-frame criterion scores (two floats per frame), turned into the criterion's ROC-AUC and EER."""

    coverage: float = DEFAULT_COVERAGE
    frame_scores: list[float] = field(default_factory=list)
    frame_anomalous: list[bool] = field(default_factory=list)

    def update(self, scores: np.ndarray, target: np.ndarray) -> None:
        """Add one frame: ``scores`` ``[H, W]``, ``target`` ``[H, W]``."""
        score, anomalous = criterion_frame_score(scores, target, self.coverage)
        self.frame_scores.append(score)
        self.frame_anomalous.append(anomalous)

    def extend(self, frame_scores: np.ndarray, frame_anomalous: np.ndarray) -> None:
        """Add frames already reduced by ``criterion_frame_score``."""
        self.frame_scores.extend(float(s) for s in np.asarray(frame_scores).reshape(-1))
        self.frame_anomalous.extend(bool(a) for a in np.asarray(frame_anomalous).reshape(-1))

    def result(self) -> dict[str, float | int]:
        """``{"auc", "eer", "num_frames", "num_anomalous_frames"}`` (NaN AUC/EER when a class is missing)."""
        return pixel_criterion_metrics(np.asarray(self.frame_scores), np.asarray(self.frame_anomalous, dtype=bool))


def pixel_criterion_metrics(frame_scores: np.ndarray, frame_anomalous: np.ndarray) -> dict[str, float | int]:
    """ROC-AUC and EER of the traditional pixel criterion from per-frame reduced scores.

    Args:
        frame_scores: ``float [N]`` from ``criterion_frame_score``.
        frame_anomalous: ``bool [N]``, True for frames with ground-truth anomalous pixels.

    Returns:
        ``{"auc", "eer", "num_frames", "num_anomalous_frames"}``. The ROC is TPR = detected anomalous frames /
        anomalous frames against FPR = flagged normal frames / normal frames.
    """
    frame_scores = np.asarray(frame_scores, dtype=np.float64)
    frame_anomalous = np.asarray(frame_anomalous, dtype=bool)
    result: dict[str, float | int] = {"num_frames": int(frame_scores.size),
                                      "num_anomalous_frames": int(frame_anomalous.sum())}
    if frame_anomalous.all() or not frame_anomalous.any():
        result.update(auc=float("nan"), eer=float("nan"))
        return result
    fpr, tpr, _ = roc_curve(frame_anomalous, frame_scores, drop_intermediate=False)
    result.update(auc=float(roc_auc_score(frame_anomalous, frame_scores)), eer=eer_from_roc(fpr, tpr)[0])
    return result


__all__ = ["DEFAULT_COVERAGE", "NUM_KEYS", "PixelAUCAccumulator", "PixelCriterionAccumulator", "criterion_frame_score",
           "float16_keys", "keys_to_float16", "pixel_auc", "pixel_criterion_metrics"]
