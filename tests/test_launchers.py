"""``lavida detect --processes N`` ends as a one-process run does (its lines, its exit status), and a process that
dies stops the others instead of leaving them waiting."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lavida.processing.distributed_detect import launch_processes

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE = REPO_ROOT / "modeling_lavida" / "assets" / "sample.mp4"


def test_a_process_that_exits_abnormally_gives_its_status():
    assert launch_processes(os._exit, 3, 2) == 3  # os._exit: picklable, and no cleanup that could hide the status


@pytest.mark.slow
def test_two_processes_with_a_broken_video_end_like_one_process(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "a.mp4").write_bytes(SAMPLE.read_bytes())
    (videos / "broken.mp4").write_bytes(b"not a video")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "lavida.cli", "detect", str(videos), "--anomalies", "purple hexagon",
               "--no-overlay", "--out", str(out), "--processes", "2"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)

    assert result.returncode == 2, result.stderr  # as a single process: a failed input is exit status 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "broken.mp4" in errors[0]
    assert "lavida detect: 2 videos in 2 processes (cpu)" in result.stderr
    assert result.stderr.count("lavida detect: note:") == 1  # the default model's notice: once per run, not per process
    assert result.stdout.count("-> ") == 1
    index = json.loads((out / "index.json").read_text())
    assert [entry["status"] for entry in index["videos"]] == ["ok", "error"]
    assert json.loads((out / "a" / "result.json").read_text())["model_training_domain"]
