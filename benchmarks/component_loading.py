"""Component-loading benchmark: peak resident memory of ``lavida.model_factory.build_model_from_components``.

Usage (from the repository root):
    python -m benchmarks.component_loading                 # mid-size random checkpoints (~560 MB on disk)
    python -m benchmarks.component_loading --size tiny     # a quick check of the script itself

The three checkpoints are written in the Hub layout of Qwen2-VL-7B-Instruct, SAM 2.1 and CLIP
(``tests/fixtures/component_checkpoints.py``: a bfloat16 MLLM, float32 SAM2 and CLIP). Each measurement is a fresh
process: it imports everything first (its resident memory then is the baseline), builds the model, reads every
weight once (weights memory-mapped from a safetensors file are resident only once read, as in any use of the model),
and reports its peak resident memory (``resource.getrusage(...).ru_maxrss``). The figure that matters is the peak
*above the baseline* divided by the checkpoints' size on disk. Side by side, in one run:

- ``from_components``: the method as it is (towers read once, handed to a shell built on the meta device);
- ``full shell + copy``: the strategy the method used before, re-created here as a reference: the towers are read,
  then a complete model is allocated and the towers' weights are copied into it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lavida.atomic_files import write_json_atomic

from .common import REPO_ROOT, Column, environment, format_table

TARGET_RATIO = 1.3
# LAVIDA's own modules kept small next to the mid-size towers (their weights are not on disk; the paper's projector
# alone would be ~120 MB in float32 and swamp the comparison).
SMALL_HEAD = {"projector_hidden_size": 256, "num_queries": 8, "qformer_layers": 2, "qformer_heads": 4,
              "qformer_mlp_dim": 512, "cross_attention_heads": 4}

WORKER = r"""
import json, os, resource, sys

def resident_bytes():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

import torch
import transformers
from transformers import AutoModelForImageTextToText, CLIPTextModel, Sam2Model
import lavida
from lavida import LavidaForVideoAnomalyDetection
from lavida.model_factory import build_model_from_components
torch.set_num_threads(1)
mode, mllm, sam2, text_encoder, head = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], json.loads(sys.argv[5])
baseline = resident_bytes()
if mode == "from_components":
    model = build_model_from_components(mllm, sam2, text_encoder, **head)
elif mode == "full shell + copy":
    from lavida.model_factory import _add_seg_token, _load_sam2_image_model, _load_text_encoder
    from lavida import LavidaConfig
    from transformers import AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(mllm)
    mllm_model = AutoModelForImageTextToText.from_pretrained(mllm)
    seg_id = _add_seg_token(tokenizer, mllm_model, "<SEG>")
    loading = {"dtype": "auto", "token": None, "revision": None}
    sam_model = _load_sam2_image_model(sam2, loading)
    text_model, pooling = _load_text_encoder(text_encoder, loading)
    config = LavidaConfig(mllm_config=mllm_model.config, sam_config=sam_model.config,
                          text_encoder_config=text_model.config, seg_token_id=seg_id, text_pooling=pooling, **head)
    model = LavidaForVideoAnomalyDetection(config)
    model.mllm.load_state_dict(mllm_model.state_dict())
    model.sam.load_state_dict(sam_model.state_dict())
    model.text_encoder.load_state_dict(text_model.state_dict())
elif mode != "imports only":
    raise SystemExit(f"unknown mode {mode}")
if mode != "imports only":
    with torch.no_grad():  # read every weight once: memory-mapped weights are resident only once they are read
        checksum = sum(float(p.sum()) for p in model.parameters())
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
parameters = 0 if mode == "imports only" else sum(p.numel() * p.element_size() for p in model.parameters())
new_modules = 0 if mode == "imports only" else sum(
    p.numel() * p.element_size() for name, p in model.named_parameters()
    if name.split(".")[0] not in ("mllm", "sam", "text_encoder"))
print(json.dumps({"baseline": baseline, "peak": peak, "parameter_bytes": parameters, "new_module_bytes": new_modules}))
"""

MODES = ("imports only", "full shell + copy", "from_components")


def measure(mode: str, folders: dict[str, Path], head: dict[str, Any], env: dict[str, str], log: Path
            ) -> dict[str, Any]:
    """One fresh process building the model with ``mode``; its baseline and peak resident bytes."""
    command = [sys.executable, "-c", WORKER, mode, str(folders["mllm"]), str(folders["sam2"]),
               str(folders["text_encoder"]), json.dumps(head)]
    start = time.perf_counter()
    with open(log, "wb") as stderr:
        run = subprocess.run(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=stderr, check=False)
    seconds = time.perf_counter() - start
    if run.returncode != 0:
        raise RuntimeError(f"{mode} exited with status {run.returncode}: {log.read_text(errors='replace')[-2000:]}")
    result = json.loads(run.stdout.decode().strip().splitlines()[-1])
    result["seconds"] = seconds
    return result


WRITER = r"""
import json, sys
from pathlib import Path
from tests.fixtures.component_checkpoints import write_component_checkpoints
folders = write_component_checkpoints(Path(sys.argv[1]), size=sys.argv[2], seed=int(sys.argv[3]))
print(json.dumps({name: str(folder) for name, folder in folders.items()}))
"""


def write_checkpoints(root: Path, size: str, seed: int, env: dict[str, str]) -> dict[str, Path]:
    """The three checkpoints, written by a child process: Linux carries a process's peak resident memory over to the
    children it starts, so this process must stay small for the measurements to be its children's own."""
    run = subprocess.run([sys.executable, "-c", WRITER, str(root), size, str(seed)], cwd=REPO_ROOT, env=env,
                         capture_output=True, text=True, check=False)
    if run.returncode != 0:
        raise RuntimeError(f"writing the checkpoints failed: {run.stderr[-2000:]}")
    return {name: Path(folder) for name, folder in json.loads(run.stdout.strip().splitlines()[-1]).items()}


def run_benchmark(size: str, seed: int = 0) -> dict[str, Any]:
    sys.path.insert(0, str(REPO_ROOT))
    from tests.fixtures.component_checkpoints import checkpoint_bytes

    workdir = Path(tempfile.mkdtemp(prefix="lavida-component-loading-"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(REPO_ROOT)}
    head = SMALL_HEAD
    try:
        folders = write_checkpoints(workdir / "checkpoints", size, seed, env)
        disk = checkpoint_bytes(folders)
        per_folder = {name: checkpoint_bytes({name: folder}) for name, folder in folders.items()}
        rows: list[dict[str, Any]] = []
        for mode in MODES:
            result = measure(mode, folders, head, env, workdir / f"{mode.replace(' ', '-')}.log")
            above = result["peak"] - result["baseline"]
            rows.append({"run": mode, "baseline_mib": result["baseline"] / 2**20, "peak_mib": result["peak"] / 2**20,
                         "above_baseline_mib": above / 2**20 if mode != "imports only" else None,
                         "ratio_to_disk": above / disk if mode != "imports only" else None,
                         "model_mib": result["parameter_bytes"] / 2**20 if mode != "imports only" else None,
                         "new_modules_mib": result["new_module_bytes"] / 2**20 if mode != "imports only" else None,
                         "seconds": result["seconds"]})
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    current = next(row for row in rows if row["run"] == "from_components")
    return {
        "benchmark": "component_loading", "size": size,
        "checkpoint_mib": {name: value / 2**20 for name, value in {**per_folder, "total": disk}.items()},
        "lavida_head": head, "environment": environment("cpu"), "rows": rows,
        "target": {"ratio_to_disk": current["ratio_to_disk"], "target": TARGET_RATIO,
                   "met": current["ratio_to_disk"] <= TARGET_RATIO},
    }


COLUMNS = [Column("run", "run"), Column("baseline_mib", "baseline MiB", "{:.0f}"),
           Column("peak_mib", "peak MiB", "{:.0f}"), Column("above_baseline_mib", "above baseline MiB", "{:.0f}"),
           Column("ratio_to_disk", "x disk", "{:.2f}"), Column("model_mib", "model MiB", "{:.0f}"),
           Column("new_modules_mib", "new modules MiB", "{:.1f}"), Column("seconds", "seconds", "{:.1f}")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("tiny", "mid"), default="mid", help="checkpoint sizes (default: mid)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default="outputs/benchmarks/component_loading.json", help="report file")
    args = parser.parse_args(argv)
    report = run_benchmark(args.size, args.seed)
    sizes = report["checkpoint_mib"]
    print(f"Peak memory of building LAVIDA from three {args.size} checkpoints: MLLM {sizes['mllm']:.0f} MiB, "
          f"SAM2 {sizes['sam2']:.0f} MiB, CLIP {sizes['text_encoder']:.0f} MiB on disk ({sizes['total']:.0f} MiB)")
    print(format_table(report["rows"], COLUMNS))
    target = report["target"]
    print(f"from_components: {target['ratio_to_disk']:.2f}x the checkpoints' size above the baseline "
          f"(target <= {TARGET_RATIO}x: {'met' if target['met'] else 'NOT met'})")
    print(f"wrote {write_json_atomic(args.json, report)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
