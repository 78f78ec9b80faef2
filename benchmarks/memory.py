"""Memory benchmark: peak resident memory of ``lavida detect`` on the same video at 1x, 10x and 20x its length.

Usage (from the repository root):
    python -m benchmarks.memory                      # lavida-tiny architecture, random weights, 32-frame base video
    python -m benchmarks.memory --model path/to/lavida-tiny --base-frames 48 --no-overlay

Each run is a fresh ``python -m lavida.cli detect`` process; its peak RSS is read from the kernel when it exits
(``wait4``), so nothing measured is left over from another run. A process that only imports the package and loads
the model gives the fixed part. The longer videos repeat the base video's content (the synthetic scene loops every
48 frames), so the model sees the same kind of clips and only the length changes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lavida.atomic_files import write_json_atomic

from .common import (Column, REPO_ROOT, environment, format_table, load_or_build_tiny, save_checkpoint,
                     write_synthetic_video)

ANOMALIES = "red square, fighting, fire"
TARGET_RATIO = 1.1
LOAD_ONLY = ("import sys\nfrom lavida.model_factory import load_model_and_processor\n"
             "load_model_and_processor(sys.argv[1])\n")


@dataclass
class MemoryConfig:
    model: str | None = None
    base_frames: int = 32
    multiples: tuple[int, ...] = (1, 10, 20)
    height: int = 240
    width: int = 320
    overlay: bool = True
    stride: int = 1
    seed: int = 0


def peak_rss_of(command: list[str], env: dict[str, str], log: Path) -> tuple[int, float]:
    """Run ``command`` (stderr into ``log``) and return its peak RSS in bytes and its wall seconds."""
    start = time.perf_counter()
    with open(log, "wb") as stderr:
        child = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        tail = log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{' '.join(command[:5])} ... exited with status {code}: {tail}")
    return usage.ru_maxrss * 1024, seconds  # ru_maxrss is in KiB on Linux


def run_benchmark(config: MemoryConfig) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="lavida-memory-"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    try:
        model, processor, description = load_or_build_tiny(config.model, config.seed)
        checkpoint = (Path(config.model).resolve() if config.model
                      else save_checkpoint(model, processor, workdir / "checkpoint"))
        mask_side = model.config.sam_image_size // 4
        del model
        rows: list[dict[str, Any]] = []
        load_rss, load_s = peak_rss_of([sys.executable, "-c", LOAD_ONLY, str(checkpoint)], env,
                                       workdir / "load.log")
        rows.append({"run": "import + load model only", "frames": 0, "peak_rss_mib": load_rss / 2**20,
                     "seconds": load_s, "ratio_to_1x": None})
        base_rss = None
        for multiple in config.multiples:
            frames = config.base_frames * multiple
            video = write_synthetic_video(workdir / f"video-{multiple}x.mp4", frames, config.height, config.width,
                                          seed=config.seed)
            command = [sys.executable, "-m", "lavida.cli", "detect", str(video), "--anomalies", ANOMALIES,
                       "--model", str(checkpoint), "--out", str(workdir / f"out-{multiple}x")]
            command += ["--stride", str(config.stride)]
            if not config.overlay:
                command.append("--no-overlay")
            rss, seconds = peak_rss_of(command, env, workdir / f"detect-{multiple}x.log")
            base_rss = base_rss or rss
            rows.append({"run": f"lavida detect, {multiple}x length", "frames": frames,
                         "peak_rss_mib": rss / 2**20, "seconds": seconds, "ratio_to_1x": rss / base_rss,
                         "above_load_mib": (rss - load_rss) / 2**20})
            video.unlink()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    longest = rows[-1]
    return {
        "benchmark": "memory", "model": description, "overlay": config.overlay, "stride": config.stride,
        "video": {"base_frames": config.base_frames, "height_width": [config.height, config.width],
                  "multiples": list(config.multiples)},
        "kept_mask_bytes_per_frame": {"this model": mask_side * mask_side * 2,
                                      "full size (SAM2 at 1024 px)": 256 * 256 * 2},
        "environment": environment("cpu"), "rows": rows,
        "target": {"multiple": config.multiples[-1], "ratio_to_1x": longest["ratio_to_1x"], "target": TARGET_RATIO,
                   "met": longest["ratio_to_1x"] <= TARGET_RATIO},
    }


COLUMNS = [Column("run", "run"), Column("frames", "frames"), Column("peak_rss_mib", "peak RSS MiB", "{:.0f}"),
           Column("above_load_mib", "above load MiB", "{:.0f}"), Column("ratio_to_1x", "x 1x", "{:.3f}"),
           Column("seconds", "seconds", "{:.1f}")]


def parse_args(argv: list[str] | None) -> tuple[MemoryConfig, str]:
    defaults = MemoryConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="checkpoint folder (default: lavida-tiny, random weights)")
    parser.add_argument("--base-frames", type=int, default=defaults.base_frames, help="frames of the 1x video")
    parser.add_argument("--multiples", type=int, nargs="+", default=list(defaults.multiples))
    parser.add_argument("--height", type=int, default=defaults.height)
    parser.add_argument("--width", type=int, default=defaults.width)
    parser.add_argument("--no-overlay", action="store_true", help="run lavida detect with --no-overlay")
    parser.add_argument("--stride", type=int, default=defaults.stride,
                        help="lavida detect --stride; above 1 with the overlay, the frames between scored ones get "
                             "their own masks too (mask_stride 1)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--json", default="outputs/benchmarks/memory.json", help="report file")
    args = parser.parse_args(argv)
    config = MemoryConfig(model=args.model, base_frames=args.base_frames, multiples=tuple(args.multiples),
                          height=args.height, width=args.width, overlay=not args.no_overlay, stride=args.stride,
                          seed=args.seed)
    return config, args.json


def main(argv: list[str] | None = None) -> int:
    config, json_path = parse_args(argv)
    report = run_benchmark(config)
    print(f"Peak memory of lavida detect ({'with' if report['overlay'] else 'without'} overlay, stride "
          f"{report['stride']}): {report['model']}")
    print(format_table(report["rows"], COLUMNS))
    target = report["target"]
    print(f"{target['multiple']}x length: {target['ratio_to_1x']:.3f}x the 1x peak (target <= {TARGET_RATIO}x: "
          f"{'met' if target['met'] else 'NOT met'})")
    masks = report["kept_mask_bytes_per_frame"]
    print(f"masks kept for the overlay (in an unnamed temporary file, memory-mapped): {masks['this model']} bytes per "
          f"frame here, {masks['full size (SAM2 at 1024 px)']} at full size")
    print(f"wrote {write_json_atomic(json_path, report)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
