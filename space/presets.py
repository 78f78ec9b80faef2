"""Anomaly-name presets of the Space: the prompt lists LAVIDA uses on each benchmark, and the synthetic world's.

The lists themselves are defined once, next to the benchmark loaders (and the synthetic world's rule for held-out
compositions); this module only gives them the labels shown in the page.
"""

from __future__ import annotations

from lavida.dataset_builders.benchmarks import (SHANGHAITECH_ANOMALY_NAMES, UBNORMAL_ANOMALY_NAMES,
                                                UCF_CRIME_ANOMALY_NAMES, UCSD_ANOMALY_NAMES,
                                                XD_VIOLENCE_ANOMALY_NAMES)
from lavida.dataset_builders.synthetic_world import HELD_OUT_NAMES

SYNTHETIC_PRESET = "Synthetic world (held-out shapes)"
CUSTOM_PRESET = "Custom"

PRESETS: dict[str, tuple[str, ...]] = {
    SYNTHETIC_PRESET: tuple(HELD_OUT_NAMES),
    "UCF-Crime": tuple(UCF_CRIME_ANOMALY_NAMES),
    "ShanghaiTech": tuple(SHANGHAITECH_ANOMALY_NAMES),
    "XD-Violence": tuple(XD_VIOLENCE_ANOMALY_NAMES),
    "UBnormal": tuple(UBNORMAL_ANOMALY_NAMES),
    "UCSD Ped": tuple(UCSD_ANOMALY_NAMES),
}


def preset_text(label: str) -> str:
    """The comma-separated names of preset ``label`` (as typed in the names box).

    Raises:
        KeyError: an unknown label.
    """
    return ", ".join(PRESETS[label])


def matching_preset(text: str) -> str:
    """The label of the preset whose names ``text`` spells exactly (case and spacing aside), else ``Custom``."""
    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    for label, preset in PRESETS.items():
        if names == [name.lower() for name in preset]:
            return label
    return CUSTOM_PRESET


__all__ = ["CUSTOM_PRESET", "PRESETS", "SYNTHETIC_PRESET", "matching_preset", "preset_text"]
