"""Live sources: what a source is, the one-line errors of bad ones (against real local servers), a file followed as it
grows, and the frame conversion."""

from __future__ import annotations

import functools
import http.server
import socket
import threading
import time

import av
import numpy as np
import pytest

from lavida.errors import UserInputError
from lavida.processing.live_options import StreamOptions, WatchOptions
from lavida.processing.stream_source import (FrameConverter, GrowingFile, LiveSource, SourceUnavailable, fit_within,
                                             source_kind)


class QuietFileHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder without logging each request."""

    def log_message(self, *args) -> None:
        pass


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A local port nothing listens on."""
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def http_folder(tmp_path):
    """An http.server on 127.0.0.1 serving ``tmp_path``; yields its base URL."""
    handler = functools.partial(QuietFileHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("source, kind", [
    ("rtsp://camera.local/stream", "stream"), ("udp://0.0.0.0:5000", "stream"), ("tcp://127.0.0.1:9", "stream"),
    ("HTTP://host/live.m3u8", "stream"), ("/dev/video0", "device"), ("recording.ts", "file"),
])
def test_source_kinds(source, kind):
    assert source_kind(source) == kind
    assert LiveSource(source).reconnects == (kind != "file")


def test_an_input_format_makes_any_source_a_device():
    assert source_kind("testsrc=size=64x48:rate=25", StreamOptions(input_format="lavfi")) == "device"


@pytest.mark.parametrize("source, message", [
    ("/dev/video97", "Capture device /dev/video97 does not exist"),
    ("gopher://host/stream", "the URL scheme 'gopher' is not a stream protocol"),
    ("no-such-recording.ts", "no such file, and it is not a stream URL"),
])
def test_cheap_checks_name_the_source(source, message):
    with pytest.raises(UserInputError, match=message):
        LiveSource(source).check()


def test_a_folder_is_not_a_source(tmp_path):
    with pytest.raises(UserInputError, match="it is a folder"):
        LiveSource(str(tmp_path)).check()


def test_a_refused_connection_is_one_line():
    source = f"tcp://127.0.0.1:{free_port()}"
    with pytest.raises(SourceUnavailable) as caught:
        LiveSource(source).open()
    message = str(caught.value)
    assert message.startswith(f"Cannot watch {source}: Connection refused;") and "\n" not in message
    assert caught.value.reason == "Connection refused"


def test_a_stream_that_is_not_video_is_refused(http_folder, tmp_path):
    (tmp_path / "page.html").write_text("<html>not a video</html>")
    with pytest.raises(SourceUnavailable, match="it is not a video stream FFmpeg can read"):
        LiveSource(f"{http_folder}/page.html").open()


def test_a_missing_http_stream_is_refused(http_folder):
    with pytest.raises(SourceUnavailable, match="404 Not Found"):
        LiveSource(f"{http_folder}/missing.ts").open()


def test_a_silent_udp_source_times_out_with_the_flag_to_change():
    started = time.monotonic()
    with pytest.raises(SourceUnavailable, match=r"no answer within 1 s \(--open-timeout-s\)"):
        LiveSource(f"udp://127.0.0.1:{free_port(socket.SOCK_DGRAM)}", StreamOptions(open_timeout_s=1.0)).open()
    assert time.monotonic() - started < 10


def test_an_audio_only_file_has_no_video_stream(tmp_path):
    path = tmp_path / "tone.ts"
    with av.open(str(path), "w", format="mpegts") as output:
        stream = output.add_stream("mp2", rate=44100)
        for index in range(20):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1152), np.int16), format="s16", layout="mono")
            frame.sample_rate, frame.pts = 44100, index * 1152
            output.mux(stream.encode(frame))
        output.mux(stream.encode(None))
    with pytest.raises(SourceUnavailable, match="carries no video stream"):
        LiveSource(str(path), StreamOptions(read_timeout_s=0.5)).open()


def test_a_growing_file_is_read_as_it_grows_and_ends_when_it_stops(tmp_path):
    path = tmp_path / "growing.bin"
    path.write_bytes(b"")

    def writer() -> None:
        with open(path, "ab") as handle:
            for part in (b"one", b"two", b"three"):
                time.sleep(0.15)
                handle.write(part)
                handle.flush()

    thread = threading.Thread(target=writer)
    thread.start()
    growing = GrowingFile(path, stall_s=0.6)
    received = b""
    while (chunk := growing.read(1024)) != b"":
        received += chunk
    thread.join()
    growing.close()
    assert received == b"onetwothree"
    assert growing.end_reason == "the file stopped growing for 0.6 s"


def test_a_growing_file_stops_at_once_when_asked(tmp_path):
    path = tmp_path / "idle.bin"
    path.write_bytes(b"")
    stop = threading.Event()
    growing = GrowingFile(path, stall_s=30.0, stop=stop)
    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    assert growing.read(10) == b""
    assert time.monotonic() - started < 5 and growing.end_reason == "stopped"
    growing.close()


def test_frames_are_converted_to_the_size_asked_for():
    image = np.random.default_rng(0).integers(0, 255, (60, 100, 3), dtype=np.uint8)
    frame = av.VideoFrame.from_ndarray(image, format="rgb24")
    assert FrameConverter()(frame).shape == (60, 100, 3)
    np.testing.assert_array_equal(FrameConverter()(frame), image)
    converter = FrameConverter(fit_within(50))
    assert converter(frame).shape == (30, 50, 3) and converter.shape == (30, 50)
    assert fit_within(500)(60, 100) == (60, 100)  # never enlarged
    assert fit_within(33)(61, 99) == (20, 32)  # even sides for H.264


@pytest.mark.parametrize("values, message", [
    ({"read_timeout_s": 0}, "read_timeout_s must be a number of seconds > 0"),
    ({"input_options": ("rtsp_transport",)}, "is not KEY=VALUE"),
])
def test_bad_stream_options(values, message):
    with pytest.raises(UserInputError, match=message):
        StreamOptions(**values)


@pytest.mark.parametrize("values, message", [
    ({"queue_clips": 0}, "queue_clips must be a positive whole number"),
    ({"pre_event_s": -1}, "pre_event_s must be a number of seconds >= 0"),
    ({"max_seconds": 0}, "max_seconds must be a number of seconds > 0"),
])
def test_bad_watch_options(values, message):
    with pytest.raises(UserInputError, match=message):
        WatchOptions(**values)


def test_input_options_become_ffmpeg_options():
    options = StreamOptions(input_options=("rtsp_transport=tcp", "video_size=640x480"))
    assert options.ffmpeg_options() == {"rtsp_transport": "tcp", "video_size": "640x480"}
