"""The parts of ``lavida watch`` around the model: the bounded clip queue, the event clips (ring buffer, complete files
before their line), events.jsonl, scores.csv and the webhook (against an http.server on 127.0.0.1)."""

from __future__ import annotations

import http.server
import json
import threading
import time

import numpy as np
import pytest

from lavida.processing.event_clips import EventClipRecorder
from lavida.processing.live_events import LiveEvent, LiveUpdate
from lavida.processing.live_scoring import ClipQueue, LiveClip, Segment, SegmentEnd
from lavida.processing.postprocessing import Event
from lavida.processing.video_io import make_clip, probe_video
from lavida.processing.watch_outputs import (SCORES_COLUMNS, EventLog, ScoresCsv, WebhookPoster, event_record,
                                             utc_text)

SEGMENT = Segment(number=1, first_frame=0, start_s=0.0, fps=25.0)


def _clip(first: int, length: int = 8) -> LiveClip:
    images = [np.zeros((4, 4, 3), np.uint8)] * length
    return LiveClip(make_clip(images, list(range(first, first + length)), 8), SEGMENT)


def test_a_full_queue_drops_its_oldest_clip_and_counts_its_frames():
    queue = ClipQueue(capacity=2)
    for first in (0, 8, 16):
        queue.put(_clip(first))
    queue.put(_clip(24, length=5))  # a connection's last, shorter clip
    assert (queue.dropped_clips, queue.dropped_frames) == (2, 16)
    assert [queue.get(0.1).clip.frame_indices[0] for _ in range(2)] == [16, 24]
    assert queue.get(0.05) is None


def test_segment_ends_are_never_dropped_and_keep_their_place():
    queue = ClipQueue(capacity=1)
    queue.put(_clip(0))
    queue.put(SegmentEnd(SEGMENT, 7))
    queue.put(_clip(8))  # drops clip 0, not the marker
    queue.put(_clip(16))  # drops clip 8
    items = [queue.get(0.1) for _ in range(2)]
    assert isinstance(items[0], SegmentEnd) and items[1].clip.frame_indices[0] == 16
    assert queue.dropped_frames == 16


def test_get_waits_for_a_clip_from_another_thread():
    queue = ClipQueue(capacity=2)
    threading.Timer(0.1, queue.put, args=(_clip(0),)).start()
    assert queue.get(timeout=5).clip.frame_indices[0] == 0


def _frame(index: int) -> np.ndarray:
    """A 32 x 48 frame whose brightness encodes its index (to check which frames a clip holds)."""
    return np.full((32, 48, 3), (index * 5) % 250, dtype=np.uint8)


def _wait(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_an_event_clip_spans_the_pre_and_post_frames_and_exists_whole_before_its_callback(tmp_path):
    recorder = EventClipRecorder(tmp_path / "clips", fps=25.0, pre_frames=5, post_frames=4, history_frames=20)
    done: list = []

    def on_done(path):
        assert path is not None and path.is_file()  # complete and in place when the close line would be written
        done.append((path, probe_video(path).num_frames))

    for index in range(30):
        recorder.push(index, _frame(index))
    path = recorder.start("event-1", start_frame=20)  # found 10 frames after it started: the ring still has 15-29
    for index in range(30, 34):
        recorder.push(index, _frame(index))
    recorder.stop(end_frame=33, on_done=on_done)  # ends 4 frames later, at 37
    for index in range(34, 45):
        recorder.push(index, _frame(index))
    _wait(lambda: done)
    recorder.close()
    assert done == [(path, 23)]  # frames 15..37
    assert probe_video(path).num_frames == 23
    assert not [entry for entry in path.parent.iterdir() if entry.name.startswith(".")]  # no temporary file left


def test_closing_ends_a_clip_with_the_frames_it_has(tmp_path):
    recorder = EventClipRecorder(tmp_path, fps=25.0, pre_frames=2, post_frames=50, history_frames=10)
    done: list = []
    for index in range(10):
        recorder.push(index, _frame(index))
    recorder.start("open-at-stop", start_frame=8)
    recorder.stop(end_frame=9, on_done=done.append)  # its 50 frames after will never come
    recorder.close()
    assert len(done) == 1 and probe_video(done[0]).num_frames == 4  # frames 6..9


def test_a_lost_connection_cuts_the_frames_after_a_closed_event(tmp_path):
    recorder = EventClipRecorder(tmp_path, fps=25.0, pre_frames=0, post_frames=100, history_frames=10)
    done: list = []
    for index in range(6):
        recorder.push(index, _frame(index))
    recorder.start("cut", start_frame=2)
    recorder.stop(end_frame=5, on_done=done.append)
    recorder.cut()
    _wait(lambda: done)
    assert probe_video(done[0]).num_frames == 4
    recorder.close()


def test_the_ring_buffer_is_allocated_once_at_its_fixed_size(tmp_path):
    recorder = EventClipRecorder(tmp_path, fps=25.0, pre_frames=10, post_frames=10, history_frames=40)
    for index in range(500):
        recorder.push(index, _frame(index))
    assert recorder._ring.shape == (51, 32, 48, 3)
    kept = sorted(int(index) for index in recorder._ring_index)
    assert kept == list(range(449, 500))


def _live(number: int = 3, names: np.ndarray | None = None) -> LiveEvent:
    event = Event(start_frame=40, end_frame=52, start_s=1.6, end_s=2.12, peak_score=0.912345678,
                  mean_score=0.8)
    return LiveEvent(number=number, event=event, name_scores=names)


def test_event_lines_name_the_best_scoring_anomaly_or_none():
    names = ["fire", "fighting", "bicycle"]
    record = event_record("close", "run-0003", _live(names=np.array([0.2, 0.95, 0.4], np.float32)), names,
                          started_unix=1_800_000_000.0, threshold=0.6, clip="clips/run-0003.mp4")
    assert record["type"] == "close" and record["anomaly"] == "fighting"
    assert list(record["name_scores"]) == ["fighting", "bicycle", "fire"]
    assert record["peak_score"] == 0.912346 and record["end_frame"] == 52 and record["clip"] == "clips/run-0003.mp4"
    assert record["wall_time"] == utc_text(1_800_000_000.0 + 2.12)
    plain = event_record("open", "run-0003", _live(), names, started_unix=0.0, threshold=0.6)
    assert plain["anomaly"] is None and plain["name_scores"] is None and plain["anomalies"] == names
    assert plain["clip"] is None and plain["wall_time"] == "1970-01-01T00:00:01.600Z"


def test_events_jsonl_gets_whole_lines_from_several_threads(tmp_path):
    log = EventLog(tmp_path / "events.jsonl")
    threads = [threading.Thread(target=lambda n=n: [log.write({"n": n, "i": i, "pad": "x" * 500}) for i in range(50)])
               for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close()
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    assert len(lines) == 200 and all(json.loads(line)["pad"] == "x" * 500 for line in lines)


def test_scores_csv_appends_scored_frames_under_one_header(tmp_path):
    path = tmp_path / "scores.csv"
    update = LiveUpdate(frames=np.arange(4), times_s=np.arange(4) / 25.0,
                        scores=np.array([0.1, 0.7, 0.8, 0.2], np.float32),
                        anomalous=np.array([False, True, True, False]), scored=np.array([True, False, True, True]))
    for _ in range(2):  # a second watch into the same folder appends
        table = ScoresCsv(path, started_unix=0.0)
        assert table.append(update) == 3
        table.close()
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(SCORES_COLUMNS) and lines.count(lines[0]) == 1
    assert lines[1:4] == ["0,0.000000,0.100000,0,1970-01-01T00:00:00.000Z", "2,0.080000,0.800000,1,"
                          "1970-01-01T00:00:00.080Z", "3,0.120000,0.200000,0,1970-01-01T00:00:00.120Z"]
    assert len(lines) == 7


class _Receiver(http.server.BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((self.headers["Content-Type"], body.decode()))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def receiver():
    _Receiver.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", _Receiver.received
    server.shutdown()
    server.server_close()


def test_the_webhook_gets_each_event_line(tmp_path, receiver):
    url, received = receiver
    webhook = WebhookPoster(url)
    log = EventLog(tmp_path / "events.jsonl", webhook)
    for number in (1, 2):
        log.write({"type": "open", "id": f"run-{number}"})
    webhook.close()
    log.close()
    assert [body for _, body in received] == (tmp_path / "events.jsonl").read_text().splitlines(keepends=True)
    assert {kind for kind, _ in received} == {"application/json"}
    assert (webhook.posted, webhook.failed) == (2, 0)


def test_a_failing_webhook_is_reported_and_the_watch_goes_on(tmp_path):
    from tests.processing.test_stream_source import free_port

    messages: list[str] = []
    webhook = WebhookPoster(f"http://127.0.0.1:{free_port()}/hook", timeout_s=2, report=messages.append)
    log = EventLog(tmp_path / "events.jsonl", webhook)
    log.write({"type": "open"})
    webhook.close()
    log.close()
    assert webhook.failed == 1 and len(messages) == 1 and "could not be posted" in messages[0]
    assert (tmp_path / "events.jsonl").read_text().count("\n") == 1
