#!/usr/bin/env bash
# The full-size benchmarks on one CUDA GPU, in one command (run from the repository root):
#
#     benchmarks/gpu.sh [OUT_DIR]        # default OUT_DIR: outputs/benchmarks/gpu
#
# 1. python -m benchmarks.token_compression: LLM prefill of Qwen2-VL-7B's text model (all 28 layers, bfloat16) at
#    L = 1024 / 2048 / 4096 / 6144 visual tokens and compression ratios 1 / 0.75 / 0.5 / 0.25;
# 2. python -m benchmarks.end_to_end: detect frames/s (stride 1) of lavida-tiny and of the full-width model
#    (Qwen2-VL-7B widths with 28 LLM layers and 32 vision blocks, SAM2 Hiera-S blocks [1, 2, 11, 2] at 1024 px,
#    bfloat16) against the backbones' forward alone.
# Each writes its JSON report and its printed table (.log) into OUT_DIR; a short summary follows. Sized to take
# under 10 minutes on one H200-class GPU (not yet timed on one); the summary states how long each step took.
#
# Installs nothing: run `make install` first. Environment:
#     PYTHON=...                   the interpreter (default: .venv/bin/python)
#     LAVIDA_GPU_SH_ALLOW_CPU=1    run without a GPU, on CPU at toy sizes (a few frames, 1 LLM layer, 1 vision block,
#                                  a small SAM2; default OUT_DIR outputs/benchmarks/gpu-cpu-check). This checks the
#                                  script's plumbing only: its figures say nothing about the full-size model.
# Without a CUDA GPU and without LAVIDA_GPU_SH_ALLOW_CPU=1 it stops at once with a one-line message (exit status 2).
# The reports of a run are moved into OUT_DIR only once both benchmarks have finished, so a failed run never leaves
# a mixed or half-written set behind.
set -euo pipefail

case "${1:-}" in
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
esac
[ $# -le 1 ] || { echo "benchmarks/gpu.sh: expected at most one argument (OUT_DIR), got $#; see --help." >&2; exit 2; }

PYTHON="${PYTHON:-.venv/bin/python}"
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"  # random weights only: nothing to download

die() {
    echo "benchmarks/gpu.sh: $*" >&2
    exit 2
}

[ -f benchmarks/token_compression.py ] || die "run it from the repository root (benchmarks/token_compression.py not found here)."
command -v "$PYTHON" >/dev/null 2>&1 || die "python interpreter '$PYTHON' not found; run 'make install' or set PYTHON=/path/to/python."

# The accelerator torch sees: its name, or nothing (no CUDA device, or torch not importable).
gpu_name="$("$PYTHON" -c 'import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")' \
    2>/dev/null)" || die "'$PYTHON' cannot import torch or query CUDA; run 'make install' or set PYTHON to the project's interpreter."

if [ -n "$gpu_name" ]; then
    mode=gpu
    out="${1:-outputs/benchmarks/gpu}"
    device_args=(--device cuda --dtype bfloat16)
    # The 28 layers of the full depth, at token_compression's full-size lengths; 3 timed calls per figure (median).
    compression_args=(--lengths 1024 2048 4096 6144 --layers 28 --repeats 3)
    # The full sizes, spelled out (end_to_end also picks them by default on cuda). 128 frames = 16 clips of 8: several
    # batches past the warm-up for a steady throughput; 3 interleaved repeats (median) against noise.
    end_to_end_args=(--full-llm-layers 28 --full-vision-depth 32 --full-sam-size 1024 --full-sam-blocks 1 2 11 2
                     --full-frames 128 --repeats 3)
elif [ "${LAVIDA_GPU_SH_ALLOW_CPU:-}" = "1" ]; then
    mode=cpu
    out="${1:-outputs/benchmarks/gpu-cpu-check}"
    device_args=(--device cpu --dtype bfloat16)
    compression_args=(--lengths 64 128 --layers 1 --hidden-size 64 --intermediate-size 128 --num-heads 4
                      --num-kv-heads 2 --text-tokens 8)
    end_to_end_args=(--tiny-frames 8 --full-frames 8 --full-llm-layers 1 --full-vision-depth 1 --full-sam-size 128
                     --full-sam-blocks 1 1 2 1 --full-frame-pixels 12544 --clip-batch-size 1 --skip-cli)
else
    die "no CUDA GPU visible to torch (torch.cuda.is_available() is False); run it on a machine with a CUDA GPU, or set LAVIDA_GPU_SH_ALLOW_CPU=1 for a toy-size CPU check of the script."
fi

mkdir -p "$(dirname "$out")"
work="$(mktemp -d "${out%/}.partial.XXXXXX")"
trap 'rm -rf "$work"' EXIT

echo "== token compression ($mode) =="
start=$SECONDS
"$PYTHON" -m benchmarks.token_compression "${device_args[@]}" "${compression_args[@]}" \
    --json "$work/token_compression.json" | tee "$work/token_compression.log"
compression_s=$((SECONDS - start))

echo "== end to end ($mode) =="
start=$SECONDS
"$PYTHON" -m benchmarks.end_to_end "${device_args[@]}" "${end_to_end_args[@]}" \
    --json "$work/end_to_end.json" | tee "$work/end_to_end.log"
end_to_end_s=$((SECONDS - start))

mkdir -p "$out"
for name in token_compression end_to_end; do
    mv -f "$work/$name.json" "$work/$name.log" "$out/"
done

"$PYTHON" - "$out" "$mode" "$compression_s" "$end_to_end_s" <<'EOF'
import json
import sys
from pathlib import Path

out, mode, compression_s, end_to_end_s = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
REAL_TIME_FPS = 25.0  # the real-time goal of the full-width detect engine at stride 1
compression = json.loads((out / "token_compression.json").read_text())
end_to_end = json.loads((out / "end_to_end.json").read_text())
environment = end_to_end["environment"]
print(f"== summary: {environment.get('gpu', environment['device'])}, {end_to_end['dtype']}, commit "
      f"{environment['commit']} ==")
if mode == "cpu":
    print("CPU check at toy sizes (LAVIDA_GPU_SH_ALLOW_CPU=1): these figures say nothing about the full-size model.")
print(f"token compression ({compression_s} s): {compression['model']}")
for check in compression["targets"]:
    print(f"  L={check['L']}: r=0.5 prefill speed-up {check['llm_speedup']:.2f}x (target >= 1.8x), compression "
          f"{check['compress_share_full_depth']:.2%} of the 28-layer LLM (target < 5%)")
print(f"end to end ({end_to_end_s} s):")
for name, description in end_to_end["models"].items():
    print(f"  {name}: {description}")
for row in end_to_end["rows"]:
    print(f"  {row['model']:>11}  {row['measure']:<32}  {row['frames']:>4} frames  {row['fps']:8.2f} frames/s  "
          f"{row['ratio_to_limit']:.2f}x limit")
engine = [row for row in end_to_end["rows"]
          if row["model"] == "full width" and row["measure"] == "detect engine (pipeline)"]
if not engine:
    sys.exit("end_to_end.json has no full-width detect engine row.")
fps = engine[0]["fps"]
print(f"full-width detect engine, stride 1: {fps:.2f} frames/s (real-time goal >= {REAL_TIME_FPS:g}: "
      f"{'met' if fps >= REAL_TIME_FPS else 'NOT met'})")
print(f"reports in {out}/")
EOF
