"""Training corpora rendered on the fly from the synthetic world (the data of the embedded lavida-tiny).

``SyntheticTrainingCorpus`` is a map-style dataset: row ``i`` is rendered from ``(seed, i)`` and passed through the
Anomaly Exposure Sampler, so the same index always gives the same sample (on every process, after a resume) and no
corpus has to be stored. Only training compositions appear, as targets and as distractors; the ``validation`` split
uses another seed (held-out *data* of the same compositions, for checkpoint selection). Held-out compositions are
reserved for the zero-shot benchmark (``synthetic_vad``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ..processing.video_io import h264_roundtrip
from .sampler import AnomalyExposureSampler
from .synthetic_world import COLOUR_NAMES, SHAPES, SyntheticWorld, SyntheticWorldConfig, related_names

SPLIT_SEED_OFFSETS = {"train": 0, "validation": 1_000_003, "test": 2_000_029}


class SyntheticTrainingCorpus:
    """``num_samples`` pseudo-anomaly rows of the synthetic world.

    Args:
        num_samples: corpus length; seed: corpus seed; split: ``train``/``validation``/``test`` (different seeds).
        max_names: name-list bound of the sampler (30 as in the paper).
        anomaly_probability: share of anomalous samples (0.5).
        hard_negative_share: share of distractors that share a colour or shape with a visible object (0 = paper).
        name_warmup_samples: the first rows name exactly one visible object and nothing else (no distractor, no
            normal sample): with ``contrast_pairs`` only the name tells which object is the target. Distractors slow
            down learning to read the names a lot, so they come after (0 = off).
        name_replay_share: after the warm-up, this share of the clips (pairs) is still drawn the warm-up way, so the
            harder lists do not wash out what the warm-up taught (0 = off).
        curriculum_samples: for the rows after the name warm-up the name list is shorter (its bound grows linearly
            from 2 to ``max_names``) and hard negatives are phased in, so the presence decision starts easy (0 = off).
        contrast_pairs: rows ``2k`` and ``2k + 1`` hold the same clip: a sampler draw and its ``contrast_twin``
            (another visible object named, or none), so only the names tell their targets apart; ``group_size`` is then
            2 and, reading the rows in order, ``LavidaTrainer`` keeps each pair in one batch (off = the paper's sampler
            alone).
        object_labels: rows also carry ``object_names`` and ``object_masks`` (``bool [K, T, H, W]``): every object
            of the clip visible in some frame, with its own mask, named or not. ``LavidaDataCollator`` turns them into
            labels for the name-grounding head (``frame_score: name_grounding``), which then learns from every
            object in view, not only from the prompt's target (off = rows as the sampler makes them).
        attribute_labels: with ``object_labels``, every word of the world's names (its 8 colours and 8 shapes) is
            also a label name of its own, its mask the union of the objects in view whose name holds that word (empty
            when none does): the head is told that a "hexagon" is one whatever its colour, so its pixel features must
            carry shape apart from colour, which names of whole compositions never demand (a purple hexagon can be
            told from everything else by a conjunction of features that no held-out composition shares).
        compress_frames: every clip's frames go through an H.264 encode and decode (``h264_roundtrip``: crf 18, 4:2:0
            chroma, as the synthetic VAD benchmark's videos and most users' files are), so the model trains on the
            blurred colour edges and block noise it meets in real files rather than on clean renders only.
        world: ``SyntheticWorldConfig`` fields (``size``, ``clip_length``, ...).
    """

    def __init__(self, num_samples: int = 1000, seed: int = 0, split: str = "train", max_names: int = 30,
                 anomaly_probability: float = 0.5, hard_negative_share: float = 0.0, curriculum_samples: int = 0,
                 contrast_pairs: bool = False, name_warmup_samples: int = 0, name_replay_share: float = 0.0,
                 object_labels: bool = False, attribute_labels: bool = False, compress_frames: bool = False,
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
        self.name_warmup_samples = name_warmup_samples
        self.name_replay_share = name_replay_share
        if attribute_labels and not object_labels:
            raise ValueError("attribute_labels needs object_labels: the attribute masks are made from the objects' "
                             "own masks.")
        self.object_labels = object_labels
        self.attribute_labels = attribute_labels
        self.compress_frames = compress_frames
        self.warmup_sampler = AnomalyExposureSampler(max_names=1, anomaly_probability=1.0, min_distractors=0)
        self.group_size = 2 if contrast_pairs else 1
        # rows are independent draws already; the curriculum and the pairs need them read in order (LavidaTrainer)
        self.train_in_order = True
        self.pool = self.world.name_pool()
        self.num_samples = num_samples
        self.seed = seed + SPLIT_SEED_OFFSETS[split]
        self.split = split

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self.num_samples:
            raise IndexError(f"index {index} out of range for {self.num_samples} samples")
        clip_index = index // self.group_size
        item = self.world.source_item(clip_index, self.seed)
        if self.compress_frames:
            clean = item.load_frames
            item = dataclasses.replace(item, load_frames=lambda: h264_roundtrip(clean()))
        sampler = self.sampler
        pair_start = clip_index * self.group_size  # both rows of a pair share the curriculum stage
        stage_row = pair_start - self.name_warmup_samples
        rng = np.random.default_rng([self.seed, clip_index, 7])
        # a stream of its own, so the replay share leaves every other draw of the corpus as it was
        replay = bool(np.random.default_rng([self.seed, clip_index, 11]).random() < self.name_replay_share)
        if stage_row < 0 or replay:
            sampler = self.warmup_sampler
        elif stage_row < self.curriculum_samples:
            progress = stage_row / self.curriculum_samples
            sampler = AnomalyExposureSampler(
                max_names=max(2, int(round(2 + (self.max_names - 2) * progress))),
                anomaly_probability=self.anomaly_probability,
                hard_negatives=related_names if self.hard_negative_share > 0 else None,
                hard_negative_share=self.hard_negative_share * progress)
        sample = sampler.sample(item, self.pool, rng)
        if self.group_size == 2 and index % 2:
            sample = sampler.contrast_twin(sample, item, self.pool, rng)
        row = sample.to_row()
        row["sample_id"] = f"synthetic-{self.split}-{self.seed}-{index}"
        if self.object_labels:
            visible = [obj for obj in item.objects if obj.masks.any()]
            row["object_names"] = [obj.names[0] for obj in visible]
            row["object_masks"] = np.stack([obj.masks.astype(bool) for obj in visible]) if visible else \
                np.zeros((0, *sample.masks.shape), dtype=bool)
            if self.attribute_labels:
                self._add_attribute_labels(row)
        return row

    @staticmethod
    def _add_attribute_labels(row: dict[str, Any]) -> None:
        """Append each colour and shape word to ``row``'s object labels with the union of its objects' masks."""
        names, masks = list(row["object_names"]), row["object_masks"]  # masks: (K, T, H, W)
        extra = []
        for word in (*COLOUR_NAMES, *SHAPES):
            holders = [k for k, name in enumerate(names) if word in name.split()]
            extra.append(masks[holders].any(axis=0) if holders else np.zeros(masks.shape[1:], dtype=bool))
        row["object_names"] = names + [*COLOUR_NAMES, *SHAPES]
        row["object_masks"] = np.concatenate([masks, np.stack(extra)]) if len(names) else np.stack(extra)


__all__ = ["SPLIT_SEED_OFFSETS", "SyntheticTrainingCorpus"]
