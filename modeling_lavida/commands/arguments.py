"""Argument types shared by several ``lavida`` subcommands."""

from __future__ import annotations

import argparse

LLM_FRAME_PIXELS_HELP = ("MLLM pixel budget per frame as MIN,MAX areas, or MIN,MAX followed by 'x28' for units of "
                         "28x28 px (one LLM token), e.g. 160,192x28 = the paper's inference budget (default: the "
                         "checkpoint's processor)")


def pixel_budget(text: str) -> tuple[int, int]:
    """``"MIN,MAX"`` pixel areas, or ``"MIN,MAXx28"`` in units of 28 x 28 px -> ``(min_area, max_area)``."""
    value = text.strip().lower()
    unit = 1
    if value.endswith("x28"):
        value, unit = value[:-3], 28 * 28
    try:
        low, high = (int(part) * unit for part in value.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN,MAX (e.g. 125440,150528 or 160,192x28), got {text!r}") from None
    if not 0 < low <= high:
        raise argparse.ArgumentTypeError(f"expected 0 < MIN <= MAX, got {text!r}")
    return low, high


__all__ = ["LLM_FRAME_PIXELS_HELP", "pixel_budget"]
