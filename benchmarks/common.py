"""Shared pieces of the benchmark scripts: timing, tables, JSON reports, models and videos to measure on.

Every script prints a human table and writes the same figures, with the environment they were measured in, to a JSON
file. Ratios are always measured side by side in one run, so a loaded or throttled machine skews both sides alike.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch


REPO_ROOT = Path(__file__).resolve().parent.parent
TINY_TRAINING_CONFIG = REPO_ROOT / "configs" / "lavida-tiny.yaml"
# the shipped sample (``make demo``'s video) with its ground truth: sample.anomalies.txt, sample.masks.npz
SAMPLE_VIDEO = REPO_ROOT / "modeling_lavida" / "assets" / "sample.mp4"


# ---------------------------------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------------------------------


def synchronize(device: torch.device | str) -> None:
    """Wait for queued GPU work so a wall-clock reading covers it."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], Any], device: torch.device | str = "cpu", repeats: int = 1, warmup: int = 0
              ) -> float:
    """Median wall-clock seconds of ``fn()`` over ``repeats`` calls, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def cpu_cores() -> int:
    """Cores this process may run on (the affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def environment(device: torch.device | str) -> dict[str, Any]:
    """Where a figure was measured: versions, threads, cores, load, accelerator, commit."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "cpu_cores": cpu_cores(),
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    if torch.device(device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    try:
        info["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                                        text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        info["commit"] = None
    return info


def resolve_device(name: str | None) -> torch.device:
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


def resolve_dtype(name: str) -> torch.dtype:
    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if name not in dtypes:
        raise ValueError(f"--dtype must be one of {sorted(dtypes)}, got {name!r}.")
    return dtypes[name]


# ---------------------------------------------------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class Column:
    """One table column: the row key, its header and how to format the value."""

    key: str
    header: str
    fmt: str = "{}"

    def render(self, row: dict[str, Any]) -> str:
        value = row.get(self.key)
        if value is None:
            return "-"
        return self.fmt.format(value)


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[Column]) -> str:
    """Rows as an aligned plain-text table (right-aligned, one header line and a rule)."""
    cells = [[column.header for column in columns]] + [[column.render(row) for column in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(line, widths)) for line in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------------
# Models and videos
# ---------------------------------------------------------------------------------------------------------------------


def build_tiny_random(seed: int = 0):
    """lavida-tiny's architecture with random weights: the ``model:`` section of configs/lavida-tiny.yaml, or
    ``LavidaConfig.tiny()`` when the config is not next to this script (an installed package).

    Returns:
        ``(model, processor, description)``.
    """
    from lavida.model_factory import ModelSpec, build_tiny_model_and_processor

    torch.manual_seed(seed)
    if TINY_TRAINING_CONFIG.is_file():
        from lavida.training import TrainConfig

        spec = TrainConfig.from_yaml(TINY_TRAINING_CONFIG).model
        description = "lavida-tiny architecture (configs/lavida-tiny.yaml), random weights"
    else:
        spec = ModelSpec(init="tiny")
        description = "LavidaConfig.tiny(), random weights"
    model, processor = build_tiny_model_and_processor(spec)
    return model.eval(), processor, description


def load_or_build_tiny(model_path: str | None, seed: int = 0):
    """A given checkpoint (``--model``), or lavida-tiny's architecture with random weights.

    Returns:
        ``(model, processor, description)`` with the model in eval mode.
    """
    if model_path:
        from lavida.model_factory import load_model_and_processor

        model, processor = load_model_and_processor(model_path)
        return model, processor, f"checkpoint {model_path}"
    return build_tiny_random(seed)


def save_checkpoint(model, processor, folder: str | os.PathLike) -> Path:
    """``save_pretrained`` model + processor into ``folder`` so that ``lavida detect --model folder`` loads it."""
    folder = Path(folder)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def synthetic_frames(num_frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """``uint8 [F, H, W, 3]``: a fixed textured background with a bright square crossing it (a surveillance-like
    shot: mostly static, one moving object), repeating every 48 frames so a longer video is the same content."""
    rng = np.random.default_rng(seed)
    background = rng.integers(40, 200, size=(height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    background = np.repeat(np.repeat(background, 8, axis=0), 8, axis=1)[:height, :width]
    frames = np.repeat(background[None], num_frames, axis=0)
    side = max(4, min(height, width) // 6)
    for index in range(num_frames):
        phase = (index % 48) / 48
        top = int((height - side) * 0.5)
        left = int((width - side) * phase)
        frames[index, top:top + side, left:left + side] = (230, 40, 40)
    return frames


def write_synthetic_video(path: str | os.PathLike, num_frames: int, height: int = 240, width: int = 320,
                          fps: float = 25.0, seed: int = 0) -> Path:
    """Encode ``synthetic_frames`` as an H.264 mp4 (streamed in chunks: long videos never sit in memory)."""
    from lavida.processing.video_io import write_video

    chunk = 48

    def frames():
        for start in range(0, num_frames, chunk):
            block = synthetic_frames(min(chunk, num_frames - start), height, width, seed)
            yield from block

    write_video(path, frames(), fps, preset="ultrafast")
    return Path(path)


__all__ = ["Column", "REPO_ROOT", "build_tiny_random", "cpu_cores", "environment", "format_table",
           "load_or_build_tiny", "resolve_device", "resolve_dtype", "save_checkpoint", "synchronize",
           "synthetic_frames", "time_call", "write_synthetic_video"]
