"""The package builds without setuptools warnings, and the wheel carries the checkpoint, its code copies and the
assets."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_builds_quietly_with_checkpoint_and_assets(tmp_path):
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                             str(REPO_ROOT), "-w", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "absent from the `packages` configuration" not in result.stdout + result.stderr
    assert "Warning" not in result.stdout + result.stderr
    (wheel,) = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    checkpoint = REPO_ROOT / "modeling_lavida" / "checkpoints" / "lavida-tiny"
    expected = {f"lavida/checkpoints/lavida-tiny/{path.relative_to(checkpoint).as_posix()}"
                for path in checkpoint.rglob("*") if path.is_file() and "__pycache__" not in path.parts}
    assert expected <= names, sorted(expected - names)
    assert any(name.endswith("lavida-tiny/modeling_lavida.py") for name in names)
    assert {"lavida/assets/sample.mp4", "lavida/assets/sample.anomalies.txt"} <= names
