"""Progress of long work for a person at a terminal and for a log file alike: ``Progress``.

    with Progress("video 2/5 clip.mp4: scoring", total=300, unit="frame", enabled=True) as progress:
        for ...:
            progress.update(done)          # frames done so far (or progress.advance(1))

On a terminal (the stream is a tty) it is a tqdm bar, redrawn in place and removed at the end. Elsewhere (stderr sent
to a file or a pipe: CI, a scheduler, ``nohup``) a redrawn bar is carriage-return noise, so it writes plain lines:

    video 2/5 clip.mp4: scoring 40 % (120/300 frames), 3.1 s elapsed

one when the work passes another ``ProgressOptions.line_every_percent`` (unless the previous line is younger than
``min_line_gap_s``), one at least every ``line_interval_s`` while the work advances (long steps, unknown totals), and
always one when it is done. ``lavida detect`` (its scoring and overlay passes), ``lavida evaluate`` and ``lavida
calibrate`` report their progress this way; ``lavida watch`` keeps a status line of its own (a live stream has no
total to count towards).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO


@dataclass(frozen=True)
class ProgressOptions:
    """How often the plain progress lines are written (a terminal's bar is tqdm's own).

    Attributes:
        line_every_percent: a line each time the work passes another multiple of this percentage of its total.
        line_interval_s: a line at least this often, in seconds, while the work advances (a heartbeat for long steps
            and for work whose total is unknown).
        min_line_gap_s: quick work writes fewer lines: a percentage line waits until this many seconds after the
            previous line (the last one, at 100 %, is always written).
    """

    line_every_percent: float = 10.0
    line_interval_s: float = 30.0
    min_line_gap_s: float = 1.0


class Progress:
    """One piece of work's progress: a tqdm bar on a terminal, plain lines elsewhere, nothing when disabled.

    Args:
        description: what is done, starting each line (e.g. ``"video 2/5 clip.mp4: scoring"``).
        total: the amount of work (``unit``s), or None when unknown; ``update`` may raise it.
        unit: what is counted (``"frame"``, ``"video"``); lines use its plural.
        enabled: True: a bar on a terminal, lines elsewhere; None: a bar on a terminal, nothing elsewhere (quiet in
            logs, the default of library calls); False: nothing.
        options: how often lines are written.
        stream: where to write (default: ``sys.stderr`` at creation).
        clock: seconds, monotonic (tests pass their own).
    """

    def __init__(self, description: str, total: int | None = None, unit: str = "frame", enabled: bool | None = None,
                 options: ProgressOptions | None = None, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.description, self.total, self.unit = description, total, unit
        self.options = options or ProgressOptions()
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self.done = 0
        self._start = self._last_line = clock()
        self._next_percent = self.options.line_every_percent
        self._written_done = 0  # the work done the last line reported
        self._note = ""
        terminal = _is_terminal(self.stream)
        self._lines = enabled is True and not terminal
        self._bar = None
        if enabled is not False and terminal:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=description, unit=unit, leave=False, file=self.stream)

    def update(self, done: int, total: int | None = None) -> None:
        """Set the work done so far to ``done`` (and the total to ``total`` when given); a pipeline's ``progress``
        callback (``(frames done, frames expected)``)."""
        if total is not None:
            self.total = max(int(total), int(done))
        elif self.total is not None and done > self.total:
            self.total = int(done)  # an estimated total (a container's frame count) can be short
        self.done = int(done)
        if self._bar is not None:
            self._bar.total = self.total
            self._bar.n = self.done
            self._bar.refresh()
        elif self._lines:
            self._maybe_write_line()

    def advance(self, count: int = 1) -> None:
        """Add ``count`` to the work done."""
        self.update(self.done + count)

    def set_note(self, note: str) -> None:
        """Show ``note`` (e.g. the item being worked on) after the bar, or at the end of the next lines."""
        self._note = note
        if self._bar is not None:
            self._bar.set_postfix_str(note)

    def close(self) -> None:
        """Remove the bar (a terminal), or write a last line with the work done if the previous one says less (work
        that ended short of its estimated total or had none)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self._lines and self.done != self._written_done:
            self._write_line(self.clock())

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -----------------------------------------------------------------------------------------------------------------

    def _maybe_write_line(self) -> None:
        now = self.clock()
        finished = self.total is not None and self.done >= self.total > 0
        if finished:
            if self.done != self._written_done:
                self._write_line(now)
            return
        percent = self._percent()
        passed_step = percent is not None and percent >= self._next_percent
        if passed_step:
            step = self.options.line_every_percent
            self._next_percent = (math.floor(percent / step) + 1) * step
        since = now - self._last_line
        if self.done != self._written_done and (
                (passed_step and since >= self.options.min_line_gap_s) or since >= self.options.line_interval_s):
            self._write_line(now)

    def _percent(self) -> float | None:
        if not self.total:
            return None
        return 100.0 * self.done / self.total

    def _write_line(self, now: float) -> None:
        self._last_line, self._written_done = now, self.done
        units = self.unit if self.done == 1 and self.total in (None, 1) else f"{self.unit}s"
        counted = f"{self.done}/{self.total} {units}" if self.total else f"{self.done} {units}"
        percent = self._percent()
        shown = f"{math.floor(percent):d} % ({counted})" if percent is not None else counted
        note = f" ({self._note})" if self._note else ""
        print(f"{self.description} {shown}, {now - self._start:.1f} s elapsed{note}", file=self.stream, flush=True)


def _is_terminal(stream: TextIO) -> bool:
    """Whether ``stream`` is a terminal (a stream without ``isatty`` is not)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no such method, or a closed file
        return False


__all__ = ["Progress", "ProgressOptions"]
