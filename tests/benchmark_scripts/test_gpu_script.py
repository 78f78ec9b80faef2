"""benchmarks/gpu.sh: refuses to run without a GPU unless asked, runs both benchmarks and summarises them on CPU at
toy sizes, and leaves no partial reports behind when a benchmark fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "benchmarks" / "gpu.sh"


def run_script(*args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
    """The script from the repository root, with CUDA hidden so it behaves alike on machines with a GPU."""
    environment = {**os.environ, "PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": ""}
    environment.pop("LAVIDA_GPU_SH_ALLOW_CPU", None)
    environment.update(env)
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=REPO_ROOT, env=environment, capture_output=True,
                          text=True, timeout=timeout)


def test_script_is_executable():
    assert os.access(SCRIPT, os.X_OK)


def test_without_a_gpu_it_stops_with_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "reports"
    result = run_script(str(out))
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no CUDA GPU visible" in lines[0] and "LAVIDA_GPU_SH_ALLOW_CPU=1" in lines[0]
    assert not out.exists()


def test_a_missing_interpreter_is_named(tmp_path):
    result = run_script(str(tmp_path / "reports"), PYTHON=str(tmp_path / "no-such-python"))
    assert result.returncode == 2
    assert "no-such-python" in result.stderr and "make install" in result.stderr


def test_a_failing_benchmark_leaves_no_reports(tmp_path):
    # an interpreter stand-in: no GPU, token_compression writes its report, end_to_end fails
    fake = tmp_path / "fake-python"
    fake.write_text("#!/usr/bin/env bash\n"
                    "[ \"$1\" = -c ] && { echo; exit 0; }\n"
                    "if [ \"$2\" = benchmarks.token_compression ]; then\n"
                    "  while [ $# -gt 0 ]; do [ \"$1\" = --json ] && { echo '{}' > \"$2\"; exit 0; }; shift; done\n"
                    "fi\n"
                    "echo 'end_to_end failed' >&2; exit 1\n")
    fake.chmod(0o755)
    out = tmp_path / "reports"
    result = run_script(str(out), PYTHON=str(fake), LAVIDA_GPU_SH_ALLOW_CPU="1")
    assert result.returncode != 0 and "end_to_end failed" in result.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["fake-python"]  # no reports, no partial folder


@pytest.mark.slow
def test_cpu_check_writes_both_reports_and_the_summary(tmp_path):
    out = tmp_path / "reports"
    result = run_script(str(out), timeout=600, LAVIDA_GPU_SH_ALLOW_CPU="1")
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["reports"]  # the partial folder is gone
    assert sorted(path.name for path in out.iterdir()) == ["end_to_end.json", "end_to_end.log",
                                                          "token_compression.json", "token_compression.log"]
    compression = json.loads((out / "token_compression.json").read_text())
    assert compression["dtype"] == "bfloat16" and compression["layers"] == 1
    assert len(compression["rows"]) == 2 * 2 * 4  # lengths x static pruning x ratios
    end_to_end = json.loads((out / "end_to_end.json").read_text())
    assert end_to_end["dtype"] == "bfloat16" and end_to_end["environment"]["device"] == "cpu"
    engine = next(row for row in end_to_end["rows"]
                  if row["model"] == "full width" and row["measure"] == "detect engine (pipeline)")
    summary = result.stdout.split("== summary:", 1)[1]
    assert "toy sizes" in summary
    # the headline line carries the engine's measured figure from the JSON report
    assert f"full-width detect engine, stride 1: {engine['fps']:.2f} frames/s" in summary
    for check in compression["targets"]:
        assert f"L={check['L']}: r=0.5 prefill speed-up {check['llm_speedup']:.2f}x" in summary
