"""The Anomaly Exposure Sampler (section 3 of the method): any segmentation target can play the anomaly.

For each ``SourceItem``:

- with probability ``anomaly_probability`` (0.5), and only if the chosen target's mask is non-empty, the sample is
  **anomalous**: the name list holds the true target name(s) (``group_size`` objects: 1-2 for category videos, one
  class for semantic sources, one referring expression for referring sources) plus distractors, shuffled; the mask is
  the union of the targets' masks;
- otherwise it is **normal**: the list holds distractors only and the mask is empty;
- the number of distractors is uniform in ``[1, min(max_names - true_count, available)]`` (max_names 30; 20 for
  Mapillary, 6 for Cityscapes), where ``available`` is the number of names absent from the item (not in
  ``present_names``), the only ones that can be distractors: with a small pool every possible count is equally likely
  rather than the cap collecting the mass of the impossible ones. ``true_count`` is the size of the target group
  drawn for the item, also for a normal sample (the count it would have had), as in the authors' sampler, so a
  normal list of a 1-2 object video holds at most ``max_names - 1`` or ``max_names - 2`` names;
- frame label = 1 where the frame's mask is non-empty.

Deterministic: every draw comes from the ``numpy.random.Generator`` the caller passes (seed it per sample).
Optionally a share of the distractors can be *hard negatives* (names related to what is visible, e.g. sharing a colour
or a shape), through ``hard_negatives``; the paper's sampler has none (share 0, the default).

``contrast_twin`` (not in the paper) gives a sample's *name contrast*: the same frames and distractors, but another
visible object named (or none, or one when the sample was normal), so that only the names tell the two targets apart.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .source_item import SourceItem

HardNegativeFn = Callable[[set[str], Sequence[str]], list[str]]  # (present names, pool) -> candidate distractors


@dataclass
class PseudoAnomalySample:
    """One training sample in the corpus schema.

    Attributes:
        frames: ``uint8 [T, H, W, 3]``; masks: ``bool [T, H, W]`` (all False for a normal sample).
        names: the prompt list (shuffled); name_labels: 1 for a true target name, else 0.
        frame_labels: ``int [T]``, 1 where the mask is non-empty.
    """

    sample_id: str
    source: str
    frames: np.ndarray
    masks: np.ndarray
    names: list[str]
    name_labels: list[int]
    frame_labels: list[int]
    is_anomalous: bool

    def to_row(self) -> dict:
        return {"sample_id": self.sample_id, "source": self.source, "frames": self.frames, "masks": self.masks,
                "names": self.names, "name_labels": self.name_labels, "frame_labels": self.frame_labels,
                "is_anomalous": self.is_anomalous}


class AnomalyExposureSampler:
    """Turns ``SourceItem``s into anomalous / normal samples with distractor names.

    Args:
        max_names: size bound of the name list (30; Mapillary 20; Cityscapes 6).
        anomaly_probability: chance that an item with a non-empty target becomes anomalous (0.5).
        hard_negatives: optional function giving related absent names; ``hard_negative_share`` of the distractors
            are drawn from it when it has enough candidates.
        min_distractors: fewest distractors in a list that holds a true name (1, the paper's); a normal sample always
            gets at least one name.
    """

    def __init__(self, max_names: int = 30, anomaly_probability: float = 0.5,
                 hard_negatives: HardNegativeFn | None = None, hard_negative_share: float = 0.0,
                 min_distractors: int = 1):
        if min_distractors < 0 or max_names < 1 + min_distractors:
            raise ValueError(f"max_names must be >= 1 + min_distractors (one true name and the distractors), got "
                             f"max_names {max_names}, min_distractors {min_distractors}.")
        if not 0.0 <= anomaly_probability <= 1.0:
            raise ValueError(f"anomaly_probability must be in [0, 1], got {anomaly_probability}.")
        self.max_names = max_names
        self.anomaly_probability = anomaly_probability
        self.hard_negatives = hard_negatives
        self.hard_negative_share = hard_negative_share
        self.min_distractors = min_distractors

    @staticmethod
    def _absent(item: SourceItem, pool: Sequence[str]) -> list[str]:
        """The names of ``pool`` (deduplicated, in order) absent from ``item``: the possible distractors."""
        absent = [name for name in dict.fromkeys(pool) if name not in item.present_names]
        if not absent:
            raise ValueError(f"Item {item.item_id} of {item.source}: no absent name in the distractor pool.")
        return absent

    def _distractors(self, item: SourceItem, absent: Sequence[str], count: int, rng: np.random.Generator) -> list[str]:
        """``count`` (at most ``len(absent)``) distinct names of ``absent``, the hard-negative share first."""
        count = min(count, len(absent))
        chosen: list[str] = []
        if self.hard_negatives is not None and self.hard_negative_share > 0:
            related = [n for n in self.hard_negatives(item.present_names, absent) if n in set(absent)]
            take = min(len(related), int(round(count * self.hard_negative_share)))
            if take:
                chosen = [related[i] for i in rng.choice(len(related), size=take, replace=False)]
        rest = [name for name in absent if name not in set(chosen)]
        extra = count - len(chosen)
        if extra > 0:
            chosen += [rest[i] for i in rng.choice(len(rest), size=extra, replace=False)]
        return chosen

    def sample(self, item: SourceItem, pool: Sequence[str], rng: np.random.Generator) -> PseudoAnomalySample:
        frames = item.load_frames()
        length, height, width = frames.shape[:3]
        mask = np.zeros((length, height, width), dtype=bool)
        true_names: list[str] = []
        wants_anomaly = bool(item.objects) and rng.random() < self.anomaly_probability
        # the target group is drawn for every item: a normal list is bounded by the count the sample would have had
        low, high = item.group_size
        group = min(int(rng.integers(low, high + 1)), self.max_names - self.min_distractors)
        candidates = [k for k, obj in enumerate(item.objects) if obj.masks.any()]
        true_count = min(group, max(1, len(candidates)))
        if wants_anomaly and candidates:
            picked = rng.choice(candidates, size=true_count, replace=False)
            for k in picked:
                obj = item.objects[int(k)]
                true_names.append(obj.names[int(rng.integers(len(obj.names)))])
                mask |= obj.masks.astype(bool)
        anomalous = bool(mask.any())
        if not anomalous:
            true_names = []
        fewest = self.min_distractors if true_names else max(1, self.min_distractors)
        # uniform over the counts that can occur: the bound, capped by the names that can be distractors at all
        absent = self._absent(item, pool)
        most = min(max(fewest, self.max_names - true_count), len(absent))
        count = int(rng.integers(min(fewest, most), most + 1))
        names = true_names + self._distractors(item, absent, count, rng)
        labels = [1] * len(true_names) + [0] * (len(names) - len(true_names))
        order = rng.permutation(len(names))
        return PseudoAnomalySample(
            sample_id=item.item_id,
            source=item.source,
            frames=frames,
            masks=mask,
            names=[names[i] for i in order],
            name_labels=[labels[i] for i in order],
            frame_labels=[int(m.any()) for m in mask],
            is_anomalous=anomalous,
        )

    def contrast_twin(self, sample: PseudoAnomalySample, item: SourceItem, pool: Sequence[str],
                      rng: np.random.Generator) -> PseudoAnomalySample:
        """The same frames and distractors as ``sample`` (drawn from ``item``) with a different target.

        An anomalous sample's twin names one visible object that was not a target (normal when there is none); a
        normal sample's twin names one visible object (normal too when nothing is visible). A twin left without any
        name gets one distractor from ``pool``.
        """
        true_names = {name for name, label in zip(sample.names, sample.name_labels) if label}
        distractors = [name for name, label in zip(sample.names, sample.name_labels) if not label]
        others = [obj for obj in item.objects if obj.masks.any() and not true_names.intersection(obj.names)]
        mask = np.zeros_like(sample.masks)
        twin_names: list[str] = []
        if others:
            obj = others[int(rng.integers(len(others)))]
            twin_names = [obj.names[int(rng.integers(len(obj.names)))]]
            mask |= obj.masks.astype(bool)
            if len(distractors) + 1 > self.max_names:
                distractors = distractors[1:]
        elif not distractors:
            distractors = self._distractors(item, self._absent(item, pool), 1, rng)
        names = twin_names + distractors
        labels = [1] * len(twin_names) + [0] * len(distractors)
        order = rng.permutation(len(names))
        return PseudoAnomalySample(
            sample_id=f"{sample.sample_id}-twin",
            source=sample.source,
            frames=sample.frames,
            masks=mask,
            names=[names[i] for i in order],
            name_labels=[labels[i] for i in order],
            frame_labels=[int(m.any()) for m in mask],
            is_anomalous=bool(mask.any()),
        )


__all__ = ["AnomalyExposureSampler", "HardNegativeFn", "PseudoAnomalySample"]
