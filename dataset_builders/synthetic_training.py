"""Training corpora rendered on the fly from the synthetic world (the data of the embedded lavida-tiny).

``SyntheticTrainingCorpus`` is a map-style dataset: row ``i`` is rendered from ``(seed, i)`` and passed through the
Anomaly Exposure Sampler, so the same index always gives the same sample (on every process, after a resume) and no
corpus has to be stored. Only training compositions appear, as targets and as distractors; the ``validation`` split
uses another seed (held-out *data* of the same compositions, for checkpoint selection). Held-out compositions are
reserved for the zero-shot benchmark (``synthetic_vad``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .sampler import AnomalyExposureSampler
from .synthetic_world import SyntheticWorld, SyntheticWorldConfig, related_names

SPLIT_SEED_OFFSETS = {"train": 0, "validation": 1_000_003, "test": 2_000_029}


class SyntheticTrainingCorpus:
    """``num_samples`` pseudo-anomaly rows of the synthetic world.

    Args:
        num_samples: corpus length; seed: corpus seed; split: ``train``/``validation``/``test`` (different seeds).
        max_names: name-list bound of the sampler (30 as in the paper).
        anomaly_probability: share of anomalous samples (0.5).
        hard_negative_share: share of distractors that share a colour or shape with a visible object (0 = paper).
        curriculum_samples: for rows below this index the name list is shorter (its bound grows linearly from 2 to
            ``max_names``) and hard negatives are phased in, so the presence decision starts easy (0 = off).
        world: ``SyntheticWorldConfig`` fields (``size``, ``clip_length``, ...).
    """

    def __init__(self, num_samples: int = 1000, seed: int = 0, split: str = "train", max_names: int = 30,
                 anomaly_probability: float = 0.5, hard_negative_share: float = 0.0, curriculum_samples: int = 0,
                 world: dict[str, Any] | None = None):
        if split not in SPLIT_SEED_OFFSETS:
            raise ValueError(f"split must be one of {sorted(SPLIT_SEED_OFFSETS)}, got {split!r}.")
        config = SyntheticWorldConfig(**{**(world or {}), "compositions": "training"})
        self.world = SyntheticWorld(config)
        self.sampler = AnomalyExposureSampler(max_names=max_names, anomaly_probability=anomaly_probability,
                                              hard_negatives=related_names if hard_negative_share > 0 else None,
                                              hard_negative_share=hard_negative_share)
        self.max_names = max_names
        self.hard_negative_share = hard_negative_share
        self.anomaly_probability = anomaly_probability
        self.curriculum_samples = curriculum_samples
        self.pool = self.world.name_pool()
        self.num_samples = num_samples
        self.seed = seed + SPLIT_SEED_OFFSETS[split]
        self.split = split

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self.num_samples:
            raise IndexError(f"index {index} out of range for {self.num_samples} samples")
        item = self.world.source_item(index, self.seed)
        sampler = self.sampler
        if index < self.curriculum_samples:
            progress = index / self.curriculum_samples
            sampler = AnomalyExposureSampler(
                max_names=max(2, int(round(2 + (self.max_names - 2) * progress))),
                anomaly_probability=self.anomaly_probability,
                hard_negatives=related_names if self.hard_negative_share > 0 else None,
                hard_negative_share=self.hard_negative_share * progress)
        sample = sampler.sample(item, self.pool, np.random.default_rng([self.seed, index, 7]))
        row = sample.to_row()
        row["sample_id"] = f"synthetic-{self.split}-{self.seed}-{index}"
        return row


__all__ = ["SPLIT_SEED_OFFSETS", "SyntheticTrainingCorpus"]
