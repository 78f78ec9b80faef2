"""Start-up benchmark: how long ``lavida detect`` takes before its first decoded frame, and where the time goes.

Usage (from the repository root):
    python -m benchmarks.startup                     # embedded lavida-tiny, 48-frame synthetic video, 3 repeats
    python -m benchmarks.startup --repeats 5 --frames 96 --model path/to/checkpoint

Every figure comes from a fresh Python process (nothing is imported or cached in memory from an earlier run; the
operating system's file cache is warm after the first repeat, as it is for a user running the command twice), and
each row is the median over ``--repeats`` runs:

- ``import torch`` alone, and ``import transformers`` alone;
- the imports ``lavida detect`` makes before its first frame (the CLI, the registration with transformers, the
  pipeline, the result writers, the model factory);
- those imports plus loading the checkpoint (``load_model_and_processor``) and building the detection pipeline;
- ``lavida detect --no-overlay`` on a small synthetic video: total wall time, and the time from process start to the
  first frame the decoder hands out (read in the process by wrapping ``VideoReader.frames`` once its module is
  imported, so nothing is imported earlier than the command itself would import it).

"wall" is the parent's clock around the whole child process (interpreter start and exit included); "step" is the
child's own clock around the step the row is about, and "step after torch" the same step in a process that imported
torch first, i.e. what the step adds on top of torch; "modules" counts ``sys.modules`` at the end of the step (for
the detect run: at its first frame), a figure that does not move with the machine's load. Nothing here is compared
with a target: the figures are printed and written to ``outputs/benchmarks/startup.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lavida.atomic_files import write_json_atomic

from .common import REPO_ROOT, Column, environment, format_table, write_synthetic_video

ANOMALIES = "red square, fighting, fire"
# Packages that are large to import; the report lists which of them a detect run has loaded by its first frame.
HEAVY_PACKAGES = ("torch", "transformers", "torchvision", "torch._dynamo", "scipy", "sklearn", "pandas", "PIL",
                  "matplotlib", "av", "datasets", "peft", "gradio", "accelerate", "diffusers", "trl", "evaluate",
                  "deepspeed", "safetensors", "tokenizers", "huggingface_hub")

# What ``lavida detect`` imports before its first frame: the CLI and the command, the registration with
# transformers (``lavida.cli`` runs it before ``run``) and the imports at the top of ``commands.detect._run_share``.
DETECT_IMPORTS = textwrap.dedent("""
    import lavida.cli
    import lavida.commands.detect
    import lavida
    lavida.register_with_transformers()
    import lavida.atomic_files, lavida.processing.anomaly_names, lavida.processing.detection
    import lavida.processing.distributed_detect, lavida.processing.progress
    from lavida.processing.factories import load_detection_pipeline
    from lavida.processing.result_writers import write_result_folder
    import lavida.model_factory, lavida.processing.pipeline_lavida
""")

LOAD_MODEL = textwrap.dedent("""
    from lavida.model_factory import load_model_and_processor
    load_model_and_processor(MODEL, device="cpu")
""")

LOAD_PIPELINE = "load_detection_pipeline(MODEL, device='cpu')\n"

# A child that times one step (``STEP``) after an optional prelude, and prints its figures as one JSON line.
TIMED_STEP = textwrap.dedent("""
    import json, sys, time
    MODEL = json.loads(sys.argv[1])
    PRELUDE, STEP = json.loads(sys.argv[2]), json.loads(sys.argv[3])
    scope = {"MODEL": MODEL}
    start = time.perf_counter()
    exec(PRELUDE, scope)
    middle = time.perf_counter()
    exec(STEP, scope)
    end = time.perf_counter()
    print(json.dumps({"prelude_s": middle - start, "step_s": end - middle, "modules": len(sys.modules)}))
""")

# A child that runs ``lavida detect`` (``lavida.cli.main``, as ``python -m lavida.cli``) and records, on the same clock
# as the parent (``time.time``), when the first decoded frame comes out of ``VideoReader.frames``. The wrapper is put
# on the class by an import hook when ``video_io`` is first imported, so the command's import order is unchanged.
DETECT_WITH_FIRST_FRAME = textwrap.dedent("""
    import importlib.abc, importlib.util, json, sys, time

    MARKS_PATH, HEAVY = sys.argv[1], json.loads(sys.argv[2])
    ARGV = json.loads(sys.argv[3])
    marks = {}

    def wrap(module):
        original = module.VideoReader.frames

        def frames(self, *args, **kwargs):
            for item in original(self, *args, **kwargs):
                if "first_frame" not in marks:
                    marks["first_frame"] = time.time()
                    marks["loaded_at_first_frame"] = [name for name in HEAVY if name in sys.modules]
                    marks["modules_at_first_frame"] = len(sys.modules)
                yield item

        module.VideoReader.frames = frames

    class AfterImport(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name != "lavida.processing.video_io":
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(name)
            execute = spec.loader.exec_module

            def exec_module(module):
                execute(module)
                wrap(module)

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, AfterImport())
    from lavida.cli import main

    try:
        status = main(ARGV)
    finally:
        with open(MARKS_PATH, "w") as file:
            json.dump(marks, file)
    sys.exit(status)
""")


@dataclass
class StartupConfig:
    """What to measure.

    Attributes:
        model: checkpoint folder or Hub id; None is the embedded lavida-tiny (``lavida detect`` without ``--model``).
        repeats: fresh processes per row (the median is reported).
        frames, height, width: the synthetic video ``lavida detect`` runs on.
        device: ``--device`` of the detect run and the device the load rows load onto.
    """

    model: str | None = None
    repeats: int = 3
    frames: int = 48
    height: int = 240
    width: int = 320
    device: str = "cpu"


def _child_env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def _run_child(command: list[str], what: str) -> tuple[float, str]:
    """Run ``command`` from the repository root; returns its wall seconds and stdout (raises with its stderr)."""
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO_ROOT, env=_child_env(), capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{what} exited with status {done.returncode}: {done.stderr[-2000:]}")
    return seconds, done.stdout


def time_step(prelude: str, step: str, model: str | None, what: str) -> dict[str, float]:
    """One fresh process: its wall seconds, and the child's own seconds for ``prelude`` and then ``step``."""
    command = [sys.executable, "-c", TIMED_STEP, json.dumps(model), json.dumps(prelude), json.dumps(step)]
    wall, stdout = _run_child(command, what)
    return {"wall_s": wall, **json.loads(stdout.strip().splitlines()[-1])}


def time_detect(video: Path, out: Path, config: StartupConfig, marks_path: Path) -> dict[str, Any]:
    """One fresh ``lavida detect --no-overlay`` process: wall seconds and seconds from spawn to the first frame."""
    argv = ["detect", str(video), "--anomalies", ANOMALIES, "--out", str(out), "--no-overlay",
            "--device", config.device]
    if config.model:
        argv += ["--model", config.model]
    command = [sys.executable, "-c", DETECT_WITH_FIRST_FRAME, str(marks_path), json.dumps(HEAVY_PACKAGES),
               json.dumps(argv)]
    spawned = time.time()
    wall, _ = _run_child(command, "lavida detect")
    marks = json.loads(marks_path.read_text())
    shutil.rmtree(out, ignore_errors=True)
    return {"wall_s": wall, "first_frame_s": marks["first_frame"] - spawned,
            "loaded_at_first_frame": marks["loaded_at_first_frame"],
            "modules_at_first_frame": marks["modules_at_first_frame"]}


def _median(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [run[key] for run in runs if run.get(key) is not None]
    return statistics.median(values) if values else None


# (row name, prelude, step, also measured after ``import torch``)
STEPS = [
    ("python, nothing imported", "", "pass", False),
    ("import torch", "", "import torch", False),
    ("import transformers", "", "import transformers", True),
    ("detect's imports (before the first frame)", "", DETECT_IMPORTS, True),
    ("detect's imports + load model and processor", DETECT_IMPORTS, LOAD_MODEL, False),
    ("detect's imports + load the detection pipeline", DETECT_IMPORTS, LOAD_PIPELINE, False),
]


def run_benchmark(config: StartupConfig) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for name, prelude, step, after_torch in STEPS:
        runs = [time_step(prelude, step, config.model, name) for _ in range(config.repeats)]
        row = {"run": name, "wall_s": _median(runs, "wall_s"), "step_s": _median(runs, "step_s"),
               "modules": runs[-1]["modules"], "runs": runs}
        if prelude:  # a load row: the step is the load alone, the imports before it are the prelude
            row["imports_s"] = _median(runs, "prelude_s")
        if after_torch:
            torch_runs = [time_step("import torch", step, config.model, f"{name} after torch")
                          for _ in range(config.repeats)]
            row["step_after_torch_s"] = _median(torch_runs, "step_s")
            row["runs_after_torch"] = torch_runs
        rows.append(row)
    workdir = Path(tempfile.mkdtemp(prefix="lavida-startup-"))
    try:
        video = write_synthetic_video(workdir / "video.mp4", config.frames, config.height, config.width)
        runs = [time_detect(video, workdir / "out", config, workdir / "marks.json") for _ in range(config.repeats)]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    rows.append({"run": f"lavida detect --no-overlay ({config.frames} frames)", "wall_s": _median(runs, "wall_s"),
                 "first_frame_s": _median(runs, "first_frame_s"), "modules": runs[-1]["modules_at_first_frame"],
                 "runs": runs})
    return {
        "benchmark": "startup",
        "config": asdict(config),
        "model": config.model or "lavida-tiny (embedded)",
        "environment": environment(config.device),
        "loaded_at_first_frame": runs[-1]["loaded_at_first_frame"],
        "rows": rows,
    }


COLUMNS = [Column("run", "run"), Column("wall_s", "wall s", "{:.2f}"), Column("imports_s", "imports s", "{:.2f}"),
           Column("step_s", "step s", "{:.2f}"), Column("step_after_torch_s", "step after torch s", "{:.2f}"),
           Column("first_frame_s", "start -> first frame s", "{:.2f}"), Column("modules", "modules")]


def parse_args(argv: list[str] | None) -> tuple[StartupConfig, str]:
    defaults = StartupConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="checkpoint folder or Hub id (default: embedded lavida-tiny)")
    parser.add_argument("--repeats", type=int, default=defaults.repeats, help="fresh processes per row (median)")
    parser.add_argument("--frames", type=int, default=defaults.frames, help="frames of the synthetic video")
    parser.add_argument("--height", type=int, default=defaults.height)
    parser.add_argument("--width", type=int, default=defaults.width)
    parser.add_argument("--device", default=defaults.device, help="device of the detect run and the loads")
    parser.add_argument("--json", default="outputs/benchmarks/startup.json", help="report file")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.frames < 2:
        parser.error("--repeats must be >= 1 and --frames >= 2")
    config = StartupConfig(model=args.model, repeats=args.repeats, frames=args.frames, height=args.height,
                           width=args.width, device=args.device)
    return config, args.json


def main(argv: list[str] | None = None) -> int:
    config, json_path = parse_args(argv)
    report = run_benchmark(config)
    print(f"Start-up of lavida detect ({report['model']}, {config.device}, median of {config.repeats} fresh "
          f"processes each)")
    print(format_table(report["rows"], COLUMNS))
    print(f"large packages loaded by the first frame: {', '.join(report['loaded_at_first_frame'])}")
    print(f"wrote {write_json_atomic(json_path, report)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
