"""The settings of a detection, validated once, here: ``DetectionOptions`` and the checks the steps share.

Every route takes these names and defaults: the pipeline's keyword arguments, the ``lavida detect`` and
``lavida evaluate`` flags (built from the fields, see ``lavida.commands.arguments``), the Space's controls and
``EvaluationConfig``.

This file is copied next to saved checkpoints with the pipeline; it imports only the standard library and its sibling
``errors`` (the command line builds its flags from it without loading torch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from numbers import Integral, Real
from typing import Any

from .errors import UserInputError

DEFAULT_THRESHOLD = 0.5
DEFAULT_BATCH_SIZE = 2  # clips per model call: the pipeline's ``batch_size``, ``lavida detect --clip-batch-size``
# model calls' worth of clips the pipeline decodes and preprocesses ahead, in a background thread, while the model runs
# on an accelerator (the pipeline's ``prefetch_batches``). On CPU it decodes in the calling thread by default: the
# model's own threads already keep the cores busy, and on 2 cores prefetching measured from 10 % faster to 7 % slower.
DEFAULT_PREFETCH_BATCHES = 2


def check_threshold(threshold: float) -> float:
    """``threshold`` as a float, or ``ValueError`` unless it is a number in [0, 1]."""
    if isinstance(threshold, bool) or not isinstance(threshold, Real) or not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be a number in [0, 1], got {threshold!r}.")
    return float(threshold)


def check_smoothing_sigma(sigma: float) -> float:
    """``sigma`` as a float, or ``ValueError`` unless it is a finite number >= 0 (frames)."""
    if isinstance(sigma, bool) or not isinstance(sigma, Real) or not (math.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"smoothing_sigma must be a non-negative number of frames, got {sigma!r}.")
    return float(sigma)


def check_positive_int(name: str, value: int) -> int:
    """``value`` as an int, or ``ValueError`` naming ``name`` unless it is a whole number >= 1."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ValueError(f"{name} must be a positive whole number, got {value!r}.")
    return int(value)


def check_pixel_budget(name: str, value: tuple[int, int] | list[int] | None) -> tuple[int, int] | None:
    """``[min, max]`` pixel areas as a tuple of two ints with ``0 < min <= max`` (None stays None), else
    ``ValueError`` naming ``name``."""
    if value is None:
        return None
    try:
        low, high = (int(item) for item in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be [min, max] pixel areas, e.g. [{160 * 28 * 28}, {192 * 28 * 28}]; "
                         f"got {value!r}.") from None
    if not 0 < low <= high:
        raise ValueError(f"{name} must hold 0 < min <= max pixel areas; got {value!r}.")
    return low, high


@dataclass(frozen=True)
class DetectionOptions:
    """Knobs of one detection.

    The ``help`` metadata becomes the CLI flag's help (``--min-event-frames`` for ``min_event_frames``). Invalid
    values raise ``UserInputError`` naming the setting.

    Attributes:
        stride: score every N-th decoded frame (the others take their nearest scored frame's score).
        threshold: a frame is anomalous when its score reaches this; runs of such frames are the events.
        min_event_frames: shortest event kept, in frames.
        smoothing_sigma: Gaussian temporal smoothing of the scores, in frames (0: none).
        return_masks: keep the anomaly masks (memory-mapped, handed out one frame at a time).
        mask_stride: with ``return_masks``, a mask is computed from the pixels of every N-th decoded frame as well as
            of every scored frame; the other frames take their nearest such frame's mask. The frames in between the
            scored ones go through SAM2 and the mask decoder with their clip's prompt (not through the MLLM), so 1,
            the default, follows an anomaly that moves between scored frames; ``stride`` keeps to the scored frames.
            A clip's frames in between are held in memory until its masks are computed: at a large stride, a larger
            ``mask_stride`` keeps that bounded.
        llm_frame_pixels: ``(min, max)`` MLLM pixel area per frame; None: the checkpoint processor's budget.
    """

    stride: int = field(default=1, metadata={"help": "score every N-th decoded frame (1 = every frame)"})
    threshold: float = field(default=DEFAULT_THRESHOLD,
                             metadata={"help": "a frame is anomalous when its score reaches this (events)"})
    min_event_frames: int = field(default=1, metadata={"help": "shortest event kept, in frames"})
    smoothing_sigma: float = field(default=0.0, metadata={
        "help": "Gaussian temporal smoothing sigma in frames, truncated at 4 sigma (0 = off)"})
    return_masks: bool = field(default=False, metadata={
        "help": "keep the anomaly masks (memory-mapped, read one frame at a time)"})
    mask_stride: int = field(default=1, metadata={
        "help": "with masks, compute a mask on every N-th decoded frame besides the scored ones (1 = every frame; "
                "the stride = the scored frames only, faster)"})
    llm_frame_pixels: tuple[int, int] | None = field(default=None, metadata={
        "help": "MLLM pixel area per frame as MIN,MAX (default: the checkpoint processor's budget)"})

    def __post_init__(self) -> None:
        try:
            values = {"stride": check_positive_int("stride", self.stride),
                      "threshold": check_threshold(self.threshold),
                      "min_event_frames": check_positive_int("min_event_frames", self.min_event_frames),
                      "smoothing_sigma": check_smoothing_sigma(self.smoothing_sigma),
                      "return_masks": bool(self.return_masks),
                      "mask_stride": check_positive_int("mask_stride", self.mask_stride),
                      "llm_frame_pixels": check_pixel_budget("llm_frame_pixels", self.llm_frame_pixels)}
        except ValueError as error:
            raise UserInputError(str(error)) from None
        for name, value in values.items():
            object.__setattr__(self, name, value)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The field names, i.e. the keyword arguments every route accepts."""
        return tuple(spec.name for spec in fields(cls))

    def settings(self) -> dict[str, Any]:
        """What changes the scores besides the model and the names (``result.json``'s ``settings``; the threshold is
        stored on its own)."""
        settings: dict[str, Any] = {"stride": self.stride, "min_event_frames": self.min_event_frames,
                                    "smoothing_sigma": self.smoothing_sigma}
        if self.llm_frame_pixels is not None:
            settings["llm_frame_pixels"] = list(self.llm_frame_pixels)
        return settings


__all__ = ["DEFAULT_BATCH_SIZE", "DEFAULT_PREFETCH_BATCHES", "DEFAULT_THRESHOLD", "DetectionOptions",
           "check_pixel_budget", "check_positive_int", "check_smoothing_sigma", "check_threshold"]
