"""Scale-out benchmark: ``lavida detect`` over a folder of videos in 1 and 2 processes (``accelerate launch``).

Usage (from the repository root):
    python -m benchmarks.scale_out                     # 6 synthetic videos, lavida-tiny architecture, random weights
    python -m benchmarks.scale_out --model path/to/lavida-tiny --videos 16 --processes 1 2 4

Each process count runs the real command on the same folder: one process as ``python -m lavida.cli detect``, several
with ``accelerate launch`` (``--multi_gpu`` is what makes accelerate start several processes even on a CPU-only
machine; the detect command itself only needs the launcher's environment variables). Torch threads per process are
``cores / processes``. Throughput counts the whole command: start-up, model loading, detection and writing.

A sharded run is compared file by file with the one-process run. With different thread counts, float sums may differ
in the last bits and a printed score in its 6th decimal, so the comparison is repeated against a one-process run with
the sharded run's threads per process, which must be byte-identical. Figures are reported; no speed-up is targeted.
"""

from __future__ import annotations

import argparse
import filecmp
import json
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

from .common import (Column, REPO_ROOT, cpu_cores, environment, format_table, load_or_build_tiny, save_checkpoint,
                     write_synthetic_video)

ANOMALIES = "red square, fighting, fire"
BASE_PORT = 29650


@dataclass
class ScaleOutConfig:
    model: str | None = None
    videos: int = 6
    frames: int = 48
    height: int = 240
    width: int = 320
    processes: tuple[int, ...] = (1, 2)
    overlay: bool = False
    seed: int = 0


def detect_command(processes: int, folder: Path, checkpoint: Path, out: Path, threads: int, overlay: bool,
                   port: int) -> list[str]:
    """The command line of one run: plain ``python -m lavida.cli`` for one process, ``accelerate launch`` else."""
    detect = ["detect", str(folder), "--anomalies", ANOMALIES, "--model", str(checkpoint), "--out", str(out),
              "--threads", str(threads)]
    if not overlay:
        detect.append("--no-overlay")
    if processes == 1:
        return [sys.executable, "-m", "lavida.cli", *detect]
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
            str(port), "-m", "lavida.cli", *detect]


def run_detect(command: list[str], env: dict[str, str], log: Path) -> float:
    """Run one detect command; returns its wall seconds."""
    start = time.perf_counter()
    with open(log, "wb") as stream:
        result = subprocess.run(command, cwd=REPO_ROOT, env=env, stdout=stream, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:6])} ... exited with {result.returncode}: "
                           f"{log.read_text(errors='replace')[-2000:]}")
    return seconds


def compare_outputs(reference: Path, candidate: Path) -> dict[str, Any]:
    """File-by-file comparison of two ``--out`` folders.

    Returns:
        ``identical`` (every file byte-equal, same file set), ``differing`` files and, for differing
        ``result.json`` files, ``max_score_difference``.
    """
    files = sorted(str(path.relative_to(reference)) for path in reference.rglob("*") if path.is_file())
    others = sorted(str(path.relative_to(candidate)) for path in candidate.rglob("*") if path.is_file())
    differing = [name for name in files if name in others
                 and not filecmp.cmp(reference / name, candidate / name, shallow=False)]
    largest = 0.0
    for name in differing:
        if name.endswith("result.json"):
            a = json.loads((reference / name).read_text())["scores"]
            b = json.loads((candidate / name).read_text())["scores"]
            largest = max([largest] + [abs(x - y) for x, y in zip(a, b)])
    return {"identical": files == others and not differing, "files": len(files),
            "missing_or_extra": sorted(set(files) ^ set(others)), "differing": differing,
            "max_score_difference": largest}


def run_benchmark(config: ScaleOutConfig) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="lavida-scale-out-"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cores = cpu_cores()
    try:
        model, processor, description = load_or_build_tiny(config.model, config.seed)
        checkpoint = Path(config.model).resolve() if config.model else save_checkpoint(model, processor,
                                                                                       workdir / "checkpoint")
        del model
        folder = workdir / "videos"
        for index in range(config.videos):
            write_synthetic_video(folder / f"video{index:03d}.mp4", config.frames, config.height, config.width,
                                  seed=index)
        total_frames = config.videos * config.frames
        rows: list[dict[str, Any]] = []
        outputs: dict[int, Path] = {}
        for position, processes in enumerate(config.processes):
            threads = max(1, cores // processes)
            out = workdir / f"out-{processes}"
            command = detect_command(processes, folder, checkpoint, out, threads, config.overlay,
                                     BASE_PORT + position)
            seconds = run_detect(command, env, workdir / f"run-{processes}.log")
            outputs[processes] = out
            rows.append({"processes": processes, "threads_per_process": threads, "videos": config.videos,
                         "frames": total_frames, "seconds": seconds, "frames_per_s": total_frames / seconds,
                         "videos_per_s": config.videos / seconds})
        base = rows[0]
        for row in rows:
            row["speedup"] = base["seconds"] / row["seconds"]
        comparisons = []
        reference = outputs[config.processes[0]]
        for row in rows[1:]:
            processes, threads = row["processes"], row["threads_per_process"]
            check = {"processes": processes, "against": f"1 process, {base['threads_per_process']} threads",
                     **compare_outputs(reference, outputs[processes])}
            comparisons.append(check)
            # same threads per process: the sharded output must be byte-identical
            same_threads = workdir / f"out-1-{threads}threads"
            run_detect(detect_command(1, folder, checkpoint, same_threads, threads, config.overlay, BASE_PORT),
                       env, workdir / f"run-1-{threads}threads.log")
            comparisons.append({"processes": processes, "against": f"1 process, {threads} threads",
                                **compare_outputs(same_threads, outputs[processes])})
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {"benchmark": "scale_out", "model": description, "overlay": config.overlay,
            "videos": {"count": config.videos, "frames": config.frames, "height_width": [config.height, config.width]},
            "environment": environment("cpu"), "rows": rows, "comparisons": comparisons}


COLUMNS = [Column("processes", "processes"), Column("threads_per_process", "threads/process"),
           Column("videos", "videos"), Column("frames", "frames"), Column("seconds", "seconds", "{:.1f}"),
           Column("frames_per_s", "frames/s", "{:.2f}"), Column("videos_per_s", "videos/s", "{:.3f}"),
           Column("speedup", "speed-up", "{:.2f}x")]


def parse_args(argv: list[str] | None) -> tuple[ScaleOutConfig, str]:
    defaults = ScaleOutConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="checkpoint folder (default: lavida-tiny, random weights)")
    parser.add_argument("--videos", type=int, default=defaults.videos)
    parser.add_argument("--frames", type=int, default=defaults.frames, help="frames per video")
    parser.add_argument("--height", type=int, default=defaults.height)
    parser.add_argument("--width", type=int, default=defaults.width)
    parser.add_argument("--processes", type=int, nargs="+", default=list(defaults.processes),
                        help="process counts to compare, the first is the reference (default: 1 2)")
    parser.add_argument("--overlay", action="store_true", help="also write overlay.mp4 (x264 adds its own threads)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--json", default="outputs/benchmarks/scale_out.json", help="report file")
    args = parser.parse_args(argv)
    if args.processes[0] != 1:
        parser.error("--processes must start with 1 (the reference run).")
    config = ScaleOutConfig(model=args.model, videos=args.videos, frames=args.frames, height=args.height,
                            width=args.width, processes=tuple(args.processes), overlay=args.overlay, seed=args.seed)
    return config, args.json


def main(argv: list[str] | None = None) -> int:
    config, json_path = parse_args(argv)
    report = run_benchmark(config)
    print(f"Scale-out of lavida detect over {config.videos} videos x {config.frames} frames "
          f"({'with' if config.overlay else 'without'} overlay), {report['environment']['cpu_cores']} cores: "
          f"{report['model']}")
    print(format_table(report["rows"], COLUMNS))
    for check in report["comparisons"]:
        verdict = "identical" if check["identical"] else (
            f"differs in {len(check['differing'])} of {check['files']} files "
            f"(max score difference {check['max_score_difference']:.1e})")
        print(f"{check['processes']} processes vs {check['against']}: {verdict}")
    print(f"wrote {write_json_atomic(json_path, report)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
