"""``lavida watch`` against real streaming processes on this machine (``tests.fixtures.stream_pusher``: the sample video
sent in real time over TCP or RTSP): events, complete clips, scores, the status, the webhook, reconnection after the
source is killed and restarted, clean stops on SIGTERM/SIGINT, and one-line errors for bad sources. UDP and a growing
file are watched in ``tests/processing/test_live_scoring.py``."""

from __future__ import annotations

import functools
import http.server
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lavida.processing.video_io import probe_video
from tests.fixtures.stream_pusher import ROOT, SAMPLE_FRAMES, process_environment, start_pusher, wait_for
from tests.processing.test_stream_source import QuietFileHandler, free_port

NAMES = "red circle, purple hexagon"


def start_watch(source: str, out: Path, checkpoint: Path, *extra: str) -> subprocess.Popen:
    argv = [sys.executable, "-m", "lavida.cli", "watch", source, "--anomalies", NAMES, "--model", str(checkpoint),
            "--out", str(out), "--threads", "1", "--status-interval-s", "1", "--pre-event-s", "0.4",
            "--post-event-s", "0.4", "--read-timeout-s", "2", "--reconnect-delay-s", "0.5", *extra]
    return subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=process_environment())


def events(out: Path) -> list[dict]:
    path = out / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def stop(process: subprocess.Popen, signum: int = signal.SIGTERM, timeout: float = 60.0) -> tuple[str, str]:
    process.send_signal(signum)
    out, err = process.communicate(timeout=timeout)
    return out, err


def check_outputs_complete(out: Path) -> list[dict]:
    """Every line of events.jsonl is whole JSON, every event that opened closed, every clip a close line names
    decodes fully, and no temporary file is left; returns the lines."""
    lines = events(out)
    opened = [line["id"] for line in lines if line["type"] == "open"]
    closed = [line for line in lines if line["type"] == "close"]
    assert sorted(opened) == sorted(line["id"] for line in closed)
    for line in closed:
        clip = out / line["clip"]
        info = probe_video(clip)
        assert info.num_frames >= 2 and not info.damaged
    clips = sorted(path.name for path in (out / "clips").iterdir()) if (out / "clips").exists() else []
    assert clips == sorted(Path(line["clip"]).name for line in closed)  # nothing half-written, no stray file
    rows = (out / "scores.csv").read_text().splitlines()
    assert rows[0] == "frame,time_s,score,is_anomaly,wall_time"
    frames = [int(row.split(",")[0]) for row in rows[1:]]
    assert frames == sorted(set(frames)) and all(len(row.split(",")) == 5 for row in rows[1:])
    return lines


class _Receiver(http.server.BaseHTTPRequestHandler):
    received: list[str] = []

    def do_POST(self) -> None:  # noqa: N802
        type(self).received.append(self.rfile.read(int(self.headers["Content-Length"])).decode())
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def webhook():
    _Receiver.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/events", _Receiver.received
    server.shutdown()
    server.server_close()


def test_a_tcp_stream_gives_events_clips_scores_status_and_webhook_posts(tmp_path, tiny_lavida_checkpoint, webhook):
    port = free_port()
    pusher = start_pusher(f"tcp://127.0.0.1:{port}?listen=1")
    out = tmp_path / "watch"
    url, received = webhook
    # threshold 0: every scored frame is anomalous, so the stream is one event that closes when the stream ends
    watch = start_watch(f"tcp://127.0.0.1:{port}", out, tiny_lavida_checkpoint, "--threshold", "0", "--webhook", url)
    try:
        wait_for(lambda: any(line["type"] == "close" for line in events(out)), process=watch)
    finally:
        stdout, stderr = stop(watch)
        pusher.wait(timeout=30)
    assert watch.returncode == 0, stderr
    lines = check_outputs_complete(out)
    assert [line["type"] for line in lines] == ["open", "close"]
    opening, closing = lines
    assert opening["clip"] is None and closing["clip"].startswith("clips/") and closing["id"] == opening["id"]
    assert opening["anomaly"] is None and opening["anomalies"] == ["red circle", "purple hexagon"]  # no name head
    assert closing["start_frame"] == opening["start_frame"] <= closing["end_frame"] <= SAMPLE_FRAMES - 1
    assert 0 <= opening["peak_score"] <= closing["peak_score"] <= 1 and closing["threshold"] == 0.0
    assert "frames/s decoded" in stdout and "stream lost (the stream ended)" in stdout
    assert "SIGTERM received, stopping" in stdout and f"{SAMPLE_FRAMES} frames decoded" in stdout
    assert received == (out / "events.jsonl").read_text().splitlines(keepends=True)


def test_the_watch_reconnects_when_the_source_is_killed_and_restarted(tmp_path, tiny_lavida_checkpoint):
    port = free_port()
    out = tmp_path / "watch"
    first = start_pusher(f"tcp://127.0.0.1:{port}?listen=1", "--loops", "50")
    watch = start_watch(f"tcp://127.0.0.1:{port}", out, tiny_lavida_checkpoint, "--threshold", "0")
    try:
        wait_for(lambda: len(events(out)) >= 1, process=watch)  # scoring: an event is open
        first.kill()  # the source dies mid-event, without a goodbye
        first.wait(timeout=30)
        second = start_pusher(f"tcp://127.0.0.1:{port}?listen=1")
        wait_for(lambda: second.poll() is not None, timeout=120)  # the restarted source sent its frames
        wait_for(lambda: any(line["type"] == "close" and line["start_frame"] > 0 for line in events(out)),
                 process=watch)
    finally:
        stdout, stderr = stop(watch, signal.SIGINT)
    assert watch.returncode == 0, stderr
    assert "stream lost" in stdout and "reconnected" in stdout and "1 reconnection(s)" in stdout
    lines = check_outputs_complete(out)
    assert [line["type"] for line in lines] == ["open", "close"] * (len(lines) // 2)  # one event per connection
    assert len(lines) >= 4


@pytest.mark.slow
def test_an_rtsp_sender_is_received_in_listen_mode(tmp_path, tiny_lavida_checkpoint):
    port = free_port()
    url = f"rtsp://127.0.0.1:{port}/live"
    out = tmp_path / "watch"
    watch = start_watch(url, out, tiny_lavida_checkpoint, "--input-option", "rtsp_flags=listen",
                        "--open-timeout-s", "60")
    try:
        deadline = time.monotonic() + 120
        while True:  # the sender is refused until the watch listens
            pusher = start_pusher(url, "--format", "rtsp", "--loops", "2")
            if pusher.wait(timeout=120) == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert pusher.returncode == 0, pusher.stdout.read()
        wait_for(lambda: (out / "scores.csv").exists() and len((out / "scores.csv").read_text().splitlines()) > 8,
                 process=watch)
    finally:
        stdout, stderr = stop(watch)
    assert watch.returncode == 0, stderr
    check_outputs_complete(out)


# ---------------------------------------------------------------------------------------------------------------------
# Bad sources: one line, exit status 2, nothing written
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture
def not_video_url(tmp_path):
    (tmp_path / "page.html").write_text("<html>a web page, not a video</html>")
    handler = functools.partial(QuietFileHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/page.html"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("source, message", [
    ("tcp://127.0.0.1:{port}", "Connection refused"),
    ("{not_video}", "it is not a video stream FFmpeg can read"),
    ("/dev/video97", "Capture device /dev/video97 does not exist"),
    ("{tmp}", "it is a folder"),
], ids=["unreachable", "not-video", "no-device", "folder"])
def test_bad_sources_are_one_line_and_exit_2(tmp_path, capsys, not_video_url, source, message):
    from lavida.cli import main

    source = source.format(port=free_port(), not_video=not_video_url, tmp=tmp_path)
    out = tmp_path / "watch"
    assert main(["watch", source, "--anomalies", "fire", "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("lavida watch: error: ") and error.count("\n") == 1 and message in error, error
    assert not out.exists()


def test_watch_and_calibrate_help_and_a_missing_device_skip_torch(tmp_path):
    from tests.test_cli_startup import _run_cli

    for argv in (["watch", "--help"], ["calibrate", "--help"]):
        result = _run_cli(argv)
        assert result["status"] == 0 and result["imported"] == []
    result = _run_cli(["watch", "/dev/video97", "--anomalies", "fire", "--out", str(tmp_path / "w")])
    assert result["status"] == 2 and result["imported"] == []


# ---------------------------------------------------------------------------------------------------------------------
# The status line
# ---------------------------------------------------------------------------------------------------------------------


class _Stream:
    def __init__(self, tty: bool):
        self.tty, self.text = tty, ""

    def isatty(self) -> bool:
        return self.tty

    def write(self, text: str) -> None:
        self.text += text

    def flush(self) -> None:
        pass


def _state(elapsed: float, **values):
    from lavida.processing.live_scoring import WatchStatus

    return WatchStatus(**{"elapsed_s": elapsed, "decoded_fps": 25.0, "scored_fps": 12.5, "dropped_frames": 40,
                          "score": 0.42, "connected": True, **values})


def test_the_status_is_a_plain_line_every_interval_when_not_a_terminal():
    from lavida.commands.watch import _Terminal

    stream = _Stream(tty=False)
    terminal = _Terminal(interval=1.0, stream=stream)
    for elapsed in (0.0, 0.5, 1.2, 1.9, 2.3):
        terminal.status(_state(elapsed))
    terminal.message("event opened")
    lines = stream.text.splitlines()
    assert len(lines) == 4 and lines[-1] == "event opened" and "\r" not in stream.text
    assert lines[0].split() == ["0.0", "s", "25.0", "frames/s", "decoded,", "12.5", "scored,", "40", "dropped,",
                                "score", "0.42,", "0", "event(s)"]
    assert [line.split()[0] for line in lines[:3]] == ["0.0", "1.2", "2.3"]


def test_the_status_is_rewritten_in_place_on_a_terminal_and_messages_go_above_it():
    from lavida.commands.watch import _Terminal

    stream = _Stream(tty=True)
    terminal = _Terminal(interval=10.0, stream=stream)
    terminal.status(_state(0.5))
    terminal.status(_state(1.0, connected=False))
    terminal.message("stream lost")
    assert stream.text.count("\n") == 1 and stream.text.endswith("stream lost\n")
    assert "reconnecting" in stream.text and stream.text.count("\r") == 4  # each rewrite clears the line first
