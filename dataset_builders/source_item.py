"""What a source reader hands to the Anomaly Exposure Sampler.

Every pseudo-anomaly source (COCO-style referring sets, ADE20K, Cityscapes, Mapillary Vistas, YouTube-VOS,
Ref-YouTube-VOS, MeViS, Ref-DAVIS17, the synthetic world, synthesised pastes) reads its official layout into a
stream of ``SourceItem``s. The sampler (``sampler.AnomalyExposureSampler``) then decides, per item, whether it
becomes an anomalous or a normal sample and which absent names join the list as distractors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass
class SourceObject:
    """One segmentation target that can play the anomaly.

    Attributes:
        names: the name(s) that describe it: a category ("bicycle"), a class ("traffic light") or one referring
            expression ("the man in the red coat"). The sampler puts one of them in the prompt list.
        masks: ``bool [T, H, W]``, the object's mask on each frame of the item (all-False where it is absent).
    """

    names: list[str]
    masks: np.ndarray


@dataclass
class SourceItem:
    """One image (T = 1) or one clip (T = 8 by default) with its candidate targets.

    Attributes:
        item_id: stable id inside the source (file stem, video id + start frame, ...).
        source: the source name ("refcoco", "ade20k", "synthetic", ...).
        load_frames: callable returning ``uint8 [T, H, W, 3]`` RGB frames; lazy so readers stay cheap.
        objects: the candidate targets present in the item.
        present_names: every name that describes something visible in the item, targets included. Distractors are
            drawn only from names *not* in this set.
        group_size: how many objects of ``objects`` form one true target (1-2 for category videos, else 1).
    """

    item_id: str
    source: str
    load_frames: Callable[[], np.ndarray]
    objects: list[SourceObject]
    present_names: set[str] = field(default_factory=set)
    group_size: tuple[int, int] = (1, 1)


__all__ = ["SourceItem", "SourceObject"]
