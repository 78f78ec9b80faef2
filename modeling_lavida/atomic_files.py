"""Files and folders that appear whole or not at all, and the checks and clean-up around them.

A file is written to a hidden sibling, flushed, then renamed over the target (``write_bytes_atomic``); a result folder
is filled in a hidden sibling folder and renamed into place (``lavida.processing.result_writers.atomic_directory``).
Readers (a resumed evaluation, another process, a user opening the folder) never see half a file, and a failed write
leaves nothing behind.

A process killed outright (SIGKILL, power loss) cannot clean up, so every hidden sibling is named after its owner:

    .<target name>.partial-<host>-<pid>-<token>     the file or folder being written
    .<target name>.old-<host>-<pid>-<token>         a folder being replaced, kept until its successor is in place

(``<host>`` 8 hex digits of this machine's name, ``<pid>`` the writing process, ``<token>`` 8 random hex digits).
``remove_stale_staging`` deletes the ones whose process is gone, on this machine, and nothing else, so the next run
into a folder cleans up after a killed one. ``check_output_folder`` refuses an output path that cannot become a
folder before any work is done.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import uuid
import zlib
from pathlib import Path
from typing import Any

from .errors import UserInputError

logger = logging.getLogger(__name__)

# A hidden sibling of ours; nothing else in a folder matches it (the token is the last of exactly four parts).
STAGING_PATTERN = re.compile(r"^\.(?P<target>.+)\.(?P<kind>partial|old)-(?P<host>[0-9a-f]{8})-(?P<pid>[0-9]+)"
                             r"-(?P<token>[0-9a-f]{8})$")


def _host_tag() -> str:
    """8 hex digits naming this machine, so a folder shared between machines is cleaned only by the machine whose
    processes wrote it (process ids of another machine mean nothing here)."""
    return f"{zlib.crc32(socket.gethostname().encode('utf-8')):08x}"


def staging_path(target: str | os.PathLike, kind: str = "partial", token: str | None = None) -> Path:
    """The hidden sibling of ``target`` this process writes (``kind`` ``"partial"``) or retires an old folder to
    (``"old"``); ``token`` (8 hex digits, default random) pairs the two of one replacement."""
    if kind not in ("partial", "old"):
        raise ValueError(f"kind must be 'partial' or 'old', got {kind!r}.")
    target = Path(target)
    token = token or uuid.uuid4().hex[:8]
    return target.with_name(f".{target.name}.{kind}-{_host_tag()}-{os.getpid()}-{token}")


def _process_alive(pid: int) -> bool:
    """Whether process ``pid`` of this machine may still run (when unsure: yes, so nothing in use is removed)."""
    if pid == os.getpid():
        return True
    if os.name != "posix":  # no harmless liveness probe (os.kill would end the process): keep everything
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, owned by someone else
        return True
    return True


def remove_stale_staging(folder: str | os.PathLike) -> list[Path]:
    """Remove the hidden siblings (see the module docstring) directly inside ``folder`` whose writing process, on this
    machine, is gone; returns what was removed.

    A retired ``.old-`` folder whose target is missing (the run was killed between the two renames of a replacement)
    is renamed back to its target instead: those are complete results. Entries of other machines, of live processes
    and anything not matching the pattern are never touched; a missing ``folder`` is fine.
    """
    folder = Path(folder)
    try:
        entries = sorted(folder.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    host, removed = _host_tag(), []
    matches = [(entry, STAGING_PATTERN.match(entry.name)) for entry in entries]
    stale = [(entry, match) for entry, match in matches
             if match is not None and match["host"] == host and not _process_alive(int(match["pid"]))]
    # retired folders first, so a restored target is in place before its stale successor is removed
    for entry, match in sorted(stale, key=lambda item: item[1]["kind"] != "old"):
        target = folder / match["target"]
        if match["kind"] == "old" and entry.is_dir() and not target.exists():
            try:
                entry.rename(target)
                logger.warning("Restored %s from a replacement interrupted by a killed run", target)
                continue
            except OSError:
                pass
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            try:
                entry.unlink(missing_ok=True)
            except OSError:
                pass
        if not entry.exists() and not entry.is_symlink():
            removed.append(entry)
    if removed:
        logger.info("Removed %d leftover temporary file(s) of killed runs from %s", len(removed), folder)
    return removed


def check_output_folder(path: str | os.PathLike, flag: str = "--out") -> None:
    """Raise ``UserInputError`` unless ``path`` is a folder, or can be created as one, that this process may write.

    Cheap (a few ``stat`` calls), so commands call it before loading anything.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserInputError(f"{flag} {path} is a file, not a folder: choose a folder path for {flag}.")
    existing = path
    while not existing.exists():  # the nearest existing ancestor must be a folder we may write into
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise UserInputError(f"{flag} {path} cannot be created: {existing} is a file, not a folder; choose another "
                             f"{flag}.")
    if existing.is_dir() and not os.access(existing, os.W_OK | os.X_OK):
        raise UserInputError(f"{flag} {path} cannot be written: no write permission in {existing}; choose another "
                             f"{flag}.")


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (parent folders are created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = staging_path(path)
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as error:
        if error.errno is None or error.filename not in (None, str(temporary)):
            raise
        # name the file the caller asked for (a failed write names none; the temporary file is gone once this returns)
        raise OSError(error.errno, error.strerror, str(path)) from error
    finally:
        temporary.unlink(missing_ok=True)
    return path


def write_json_atomic(path: str | os.PathLike, payload: Any, indent: int = 1, allow_nan: bool = True) -> Path:
    """Write ``payload`` as indented JSON (with a final newline) atomically; returns the path."""
    text = json.dumps(payload, indent=indent, allow_nan=allow_nan) + "\n"
    return write_bytes_atomic(path, text.encode("utf-8"))


__all__ = ["STAGING_PATTERN", "check_output_folder", "remove_stale_staging", "staging_path", "write_bytes_atomic",
           "write_json_atomic"]
