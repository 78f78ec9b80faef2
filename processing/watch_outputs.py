"""The files ``lavida watch`` keeps up to date in its output folder, and the webhook.

- ``events.jsonl``: one JSON object per line, ``"type": "open"`` when an event opens and ``"type": "close"`` when it
  closes (see ``event_record``); each line is written whole and flushed, and a close line is written only once the
  event's clip is complete on disk;
- ``scores.csv``: ``frame,time_s,score,is_anomaly,wall_time`` (the columns of ``lavida detect``'s ``scores.csv`` plus
  when the frame arrived, in UTC), appended and flushed as scores become final; frames of clips dropped because the
  model fell behind have no row;
- ``clips/<event id>.mp4``: written by ``EventClipRecorder``.

Both files are appended to, so a watch restarted into the same folder continues them (frame numbers start again at 0;
the event ids and ``wall_time`` tell the runs apart). ``WebhookPoster`` posts each event line to a URL from a thread
of its own, so a slow or failing receiver never holds up the watch (a failure is reported, the watch goes on).
"""

from __future__ import annotations

import csv
import datetime
import json
import logging
import os
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .detection import SCORE_DECIMALS
from .live_events import LiveEvent, LiveUpdate
from .postprocessing import rank_names

logger = logging.getLogger(__name__)

EVENTS_JSONL, WATCH_SCORES_CSV, CLIPS_DIR = "events.jsonl", "scores.csv", "clips"
SCORES_COLUMNS = ("frame", "time_s", "score", "is_anomaly", "wall_time")
MAX_NAME_SCORES = 5  # names listed with their scores in an event line, best first
WEBHOOK_QUEUE = 256  # event lines waiting to be posted; beyond, the oldest waiting one is dropped (and reported)


def utc_text(unix_time: float) -> str:
    """``2026-11-30T23:35:12.345Z``: a Unix time as UTC to the millisecond."""
    moment = datetime.datetime.fromtimestamp(unix_time, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def event_record(kind: str, event_id: str, live: LiveEvent, names: Sequence[str], started_unix: float,
                 threshold: float, clip: str | None = None, decimals: int = SCORE_DECIMALS) -> dict[str, Any]:
    """One line of ``events.jsonl``.

    ``{"type": "open"|"close", "id", "start_frame", "end_frame", "start_s", "end_s", "peak_score", "mean_score",
    "wall_time", "anomaly", "name_scores", "anomalies", "threshold", "clip"}``: frames and times (seconds from the
    start of the watch; ``end_frame``/``end_s`` so far for an open line), ``wall_time`` the UTC time of the event's
    first frame (open) or last frame (close), ``anomaly`` the name the model scores highest over the event (a
    name-grounding model; else null) with up to ``MAX_NAME_SCORES`` names and their scores in ``name_scores``,
    ``anomalies`` the names watched for, and ``clip`` the event's video (relative to the output folder) on the close
    line, once it is complete (null on open lines, or when it could not be written).
    """
    event = live.event
    numbers = {key: round(value, decimals) if isinstance(value, float) else value
               for key, value in event.to_dict().items()}
    anomaly, name_scores = None, None
    if live.name_scores is not None and len(live.name_scores):
        ranked = rank_names(live.name_scores, names, MAX_NAME_SCORES)  # as lavida detect names its events
        anomaly = next(iter(ranked))
        name_scores = {name: round(score, decimals) for name, score in ranked.items()}
    moment = event.start_s if kind == "open" else event.end_s
    return {"type": kind, "id": event_id, **numbers, "wall_time": utc_text(started_unix + moment),
            "anomaly": anomaly, "name_scores": name_scores, "anomalies": list(names), "threshold": threshold,
            "clip": clip}


class EventLog:
    """``events.jsonl``, appended one whole line at a time (from any thread), flushed and synced to disk; each line
    also goes to the webhook when there is one."""

    def __init__(self, path: str | Path, webhook: WebhookPoster | None = None):
        self.path = Path(path)
        self.webhook = webhook
        self._lock = threading.Lock()
        self._handle = open(self.path, "a", encoding="utf-8")
        self.lines = 0

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, allow_nan=False) + "\n"
        with self._lock:
            self._handle.write(line)
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self.lines += 1
        if self.webhook is not None:
            self.webhook.post(line)

    def close(self) -> None:
        with self._lock:
            self._handle.close()


class ScoresCsv:
    """``scores.csv`` of a watch, appended as scores become final (a header when the file is new) and flushed after
    each update, so a reader always sees whole rows."""

    def __init__(self, path: str | Path, started_unix: float, decimals: int = SCORE_DECIMALS):
        self.path = Path(path)
        self.started_unix = started_unix
        self.decimals = decimals
        new = not self.path.exists() or self.path.stat().st_size == 0
        self._handle = open(self.path, "a", encoding="utf-8", newline="")
        self._writer = csv.writer(self._handle)
        if new:
            self._writer.writerow(SCORES_COLUMNS)
            self._handle.flush()

    def append(self, update: LiveUpdate) -> int:
        """The scored frames of ``update`` (frames of dropped clips are left out); returns the rows written."""
        rows = 0
        for frame, time_s, score, flag, scored in zip(update.frames.tolist(), update.times_s.tolist(),
                                                      update.scores.tolist(), update.anomalous.tolist(),
                                                      update.scored.tolist()):
            if not scored:
                continue
            self._writer.writerow([frame, f"{time_s:.{self.decimals}f}", f"{score:.{self.decimals}f}", int(flag),
                                   utc_text(self.started_unix + time_s)])
            rows += 1
        if rows:
            self._handle.flush()
        return rows

    def close(self) -> None:
        self._handle.close()


class WebhookPoster:
    """POSTs each event line (``application/json``) to ``url`` from a thread of its own; failures are reported
    through ``report`` and never stop the watch."""

    def __init__(self, url: str, timeout_s: float = 5.0, report: Callable[[str], None] | None = None):
        self.url = url
        self.timeout_s = timeout_s
        self.report = report or (lambda message: logger.warning("%s", message))
        self.posted = self.failed = self.dropped = 0
        self._queue: queue.Queue = queue.Queue(maxsize=WEBHOOK_QUEUE)
        self._thread = threading.Thread(target=self._run, name="webhook", daemon=True)
        self._thread.start()

    def post(self, line: str) -> None:
        while True:
            try:
                self._queue.put_nowait(line)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass

    def close(self, wait_s: float = 10.0) -> None:
        """Post what is waiting (for at most ``wait_s`` seconds), then stop."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                self._queue.put(None, timeout=max(0.01, deadline - time.monotonic()))
                break
            except queue.Full:
                if time.monotonic() >= deadline:
                    break
        self._thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def _run(self) -> None:
        while True:
            line = self._queue.get()
            if line is None:
                return
            request = urllib.request.Request(self.url, data=line.encode("utf-8"), method="POST",
                                             headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    response.read()
                self.posted += 1
            except (urllib.error.URLError, OSError, ValueError) as error:
                self.failed += 1
                reason = getattr(error, "reason", None) or error
                self.report(f"webhook {self.url}: the event line could not be posted ({reason}); the watch goes on")


__all__ = ["CLIPS_DIR", "EVENTS_JSONL", "EventLog", "SCORES_COLUMNS", "ScoresCsv", "WATCH_SCORES_CSV",
           "WebhookPoster", "event_record", "utc_text"]
