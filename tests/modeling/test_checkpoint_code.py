"""The shipped checkpoint's code copies (loaded with trust_remote_code) are the package's current sources."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECKPOINTS = sorted((ROOT / "modeling_lavida" / "checkpoints").glob("*/config.json"))


def _source_of(copy: Path) -> Path:
    for folder in ("processing", "modeling_lavida"):
        if (ROOT / folder / copy.name).is_file():
            return ROOT / folder / copy.name
    raise AssertionError(f"{copy} has no source file in processing/ or modeling_lavida/")


@pytest.mark.parametrize("checkpoint", [path.parent for path in CHECKPOINTS], ids=lambda path: path.name)
def test_checkpoint_code_copies_equal_their_sources(checkpoint):
    copies = sorted(checkpoint.glob("*.py"))
    assert {"modeling_lavida.py", "configuration_lavida.py", "processing_lavida.py"} <= {c.name for c in copies}
    stale = [copy.name for copy in copies if copy.read_bytes() != _source_of(copy).read_bytes()]
    assert not stale, f"stale code copies in {checkpoint.name}: {stale}; run `make sync-checkpoint-code`"
