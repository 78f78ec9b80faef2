"""Files that appear whole or not at all: written to a hidden sibling, flushed, then renamed over the target.

Readers (a resumed evaluation, another process, a user opening the folder) never see half a file, and an interrupted
write leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (parent folders are created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def write_json_atomic(path: str | os.PathLike, payload: Any, indent: int = 1, allow_nan: bool = True) -> Path:
    """Write ``payload`` as indented JSON (with a final newline) atomically; returns the path."""
    text = json.dumps(payload, indent=indent, allow_nan=allow_nan) + "\n"
    return write_bytes_atomic(path, text.encode("utf-8"))


__all__ = ["write_bytes_atomic", "write_json_atomic"]
