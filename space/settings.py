"""Settings of the Space: the model, the limits a visitor meets, the queue and where files go.

Every field can be set from the environment (the way a Hugging Face Space is configured), for example
``LAVIDA_MODEL=path/or/hub-id LAVIDA_SPACE_MAX_DURATION_S=30 python app.py``; ``lavida demo`` flags override them.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path

from lavida.errors import UserInputError
from lavida.processing.options import DEFAULT_BATCH_SIZE, DetectionOptions

MODEL_ENV = "LAVIDA_MODEL"
ENV_PREFIX = "LAVIDA_SPACE_"


@dataclass(frozen=True)
class SpaceSettings:
    """Knobs of the demo app.

    Attributes:
        model: checkpoint folder or Hub id; None = the embedded lavida-tiny (env ``LAVIDA_MODEL``).
        device: torch device; None = cuda if available, else cpu (as ``lavida detect``).
        max_upload_mb: largest accepted upload, in megabytes (enforced by the server and checked again per request).
        max_duration_s: longest accepted video, in seconds.
        concurrency_limit: detections run at the same time; further requests wait in the queue.
        max_queue_size: requests allowed to wait; more are refused with a "queue full" message.
        default_stride, default_threshold: initial values of the controls (``lavida detect``'s defaults).
        max_stride: upper end of the stride slider (and of what the API accepts).
        clip_batch_size: clips per model call (``lavida detect --clip-batch-size``).
        work_dir: where examples and results are written (default: ``<system temp>/lavida-space``).
        keep_results: result folders kept on disk; older ones are deleted as new requests arrive.
    """

    model: str | None = None
    device: str | None = None
    max_upload_mb: float = 100.0
    max_duration_s: float = 60.0
    concurrency_limit: int = 1
    max_queue_size: int = 20
    default_stride: int = DetectionOptions.stride
    default_threshold: float = DetectionOptions.threshold
    max_stride: int = 32
    clip_batch_size: int = DEFAULT_BATCH_SIZE
    work_dir: str | None = None
    keep_results: int = 64

    def __post_init__(self) -> None:
        for name in ("max_upload_mb", "max_duration_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise UserInputError(f"Space setting {name} must be a positive number, got {value!r}.")
        for name in ("concurrency_limit", "max_queue_size", "default_stride", "max_stride", "clip_batch_size",
                     "keep_results"):
            if getattr(self, name) < 1:
                raise UserInputError(f"Space setting {name} must be at least 1, got {getattr(self, name)!r}.")
        if self.default_stride > self.max_stride:
            raise UserInputError(f"Space setting default_stride ({self.default_stride}) exceeds max_stride "
                                 f"({self.max_stride}).")
        if not 0.0 <= self.default_threshold <= 1.0:
            raise UserInputError(f"Space setting default_threshold must be between 0 and 1, got "
                                 f"{self.default_threshold!r}.")
        if self.keep_results < self.concurrency_limit:
            # a folder still being served must never be pruned by a newer request
            raise UserInputError(f"Space setting keep_results ({self.keep_results}) must be at least "
                                 f"concurrency_limit ({self.concurrency_limit}).")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def root(self) -> Path:
        """The working folder (examples and results live below it)."""
        return Path(self.work_dir) if self.work_dir else Path(tempfile.gettempdir()) / "lavida-space"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> SpaceSettings:
        """Settings from ``LAVIDA_MODEL`` and ``LAVIDA_SPACE_<FIELD>`` variables (e.g. ``LAVIDA_SPACE_MAX_UPLOAD_MB``),
        then ``overrides`` (None values are ignored).

        Raises:
            UserInputError: a variable that does not parse as its field's type, or an out-of-range value.
        """
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        if environ.get(MODEL_ENV, "").strip():
            values["model"] = environ[MODEL_ENV].strip()
        for spec in fields(cls):
            key = ENV_PREFIX + spec.name.upper()
            if spec.name == "model" or not environ.get(key, "").strip():
                continue
            values[spec.name] = _parse(key, environ[key].strip(), spec.type)
        values.update({key: value for key, value in overrides.items() if value is not None})
        return replace(cls(), **values)


def _parse(key: str, text: str, annotation: str) -> object:
    kind = annotation.split("|")[0].strip()  # "int", "float", "str" (annotations are strings here)
    try:
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
    except ValueError:
        raise UserInputError(f"Environment variable {key}={text!r} is not a valid {kind}: fix or unset it.") from None
    return text


__all__ = ["ENV_PREFIX", "MODEL_ENV", "SpaceSettings"]
