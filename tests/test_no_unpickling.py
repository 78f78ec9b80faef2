"""Checkpoints and data load from safetensors/parquet/JSON only: nothing in the project unpickles freely."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT_FOLDERS = ("modeling_lavida", "processing", "dataset_builders", "space")
FORBIDDEN = [
    (re.compile(r"\bpickle\.loads?\("), "pickle.load"),
    (re.compile(r"\bdill\.|\bcloudpickle\."), "dill/cloudpickle"),
    (re.compile(r"allow_pickle\s*=\s*True"), "numpy allow_pickle=True"),
]


def _python_files():
    for folder in PROJECT_FOLDERS:
        yield from (ROOT / folder).rglob("*.py")


def test_torch_load_only_with_weights_only():
    offenders = []
    for path in _python_files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if "torch.load(" in line and "weights_only=True" not in line:
                offenders.append(f"{path.relative_to(ROOT)}:{number}")
    assert not offenders, offenders


def test_no_free_unpickling():
    """A format that is a pickle (RefCOCO's refs(*).p) may only be read by a restricted ``pickle.Unpickler``."""
    offenders = []
    for path in _python_files():
        text = path.read_text(encoding="utf-8")
        for pattern, label in FORBIDDEN:
            for match in pattern.finditer(text):
                line = text[: match.start()].count("\n") + 1
                offenders.append(f"{path.relative_to(ROOT)}:{line} ({label})")
        if "pickle.Unpickler" in text and "def find_class" not in text:
            offenders.append(f"{path.relative_to(ROOT)} (Unpickler without a restricted find_class)")
    assert not offenders, offenders
