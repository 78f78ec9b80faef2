"""Video reading and writing on videos the tests encode with PyAV."""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from lavida.errors import UserInputError
from lavida.processing.postprocessing import fill_skipped_frames
from lavida.processing.video_io import FrameArray, iter_clips, iter_frames, probe_video, write_video

HEIGHT, WIDTH, NUM_FRAMES, FPS = 97, 161, 100, 25


BITS = 7  # frame indices up to 127


def frame_image(index: int, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """A frame that shows its index in binary as black/white vertical bands (robust to lossy coding)."""
    image = np.zeros((height, width, 3), dtype=np.uint8)
    band = width // BITS
    for bit in range(BITS):
        if index >> bit & 1:
            image[:, bit * band:(bit + 1) * band] = 255
    return image


def decoded_index(image: np.ndarray) -> int:
    band = image.shape[1] // BITS
    bits = [image[:, bit * band + band // 4:(bit + 1) * band - band // 4].mean() > 128 for bit in range(BITS)]
    return sum(int(value) << bit for bit, value in enumerate(bits))


def encode(path: Path, num_frames: int, *, width: int = WIDTH, height: int = HEIGHT, fps: int = FPS,
           container_format: str = "mp4", codec: str = "libx264", pix_fmt: str = "yuv444p",
           options: dict | None = None) -> Path:
    """Frames from ``frame_image``, encoded with PyAV."""
    with av.open(str(path), mode="w", format=container_format, options=options or {}) as container:
        stream = container.add_stream(codec, rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        for index in range(num_frames):
            image = frame_image(index, height, width)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    return path


@pytest.fixture(scope="module")
def h264_video(tmp_path_factory) -> Path:
    """H.264, 100 frames, 161x97 (odd: 4:4:4, the only way H.264 stores an odd size), 25 fps."""
    return encode(tmp_path_factory.mktemp("videos") / "odd.mp4", NUM_FRAMES)


def test_probe_reports_exact_metadata(h264_video):
    info = probe_video(h264_video)
    assert (info.num_frames, info.fps, info.width, info.height, info.codec) == (NUM_FRAMES, FPS, WIDTH, HEIGHT, "h264")
    assert info.duration_s == pytest.approx(NUM_FRAMES / FPS)
    assert not info.damaged


@pytest.mark.parametrize("stride", [1, 2, 5])
def test_iter_frames_samples_every_stride_th_frame_in_order(h264_video, stride):
    frames = list(iter_frames(h264_video, stride=stride))
    assert [frame.index for frame in frames] == list(range(0, NUM_FRAMES, stride))
    assert all(frame.image.shape == (HEIGHT, WIDTH, 3) and frame.image.dtype == np.uint8 for frame in frames)
    # The pixels really are the frame with that index (decoding did not skip or repeat frames).
    assert [decoded_index(frame.image) for frame in frames] == [frame.index for frame in frames]


@pytest.mark.parametrize("stride", [1, 2, 5])
def test_one_score_per_decoded_frame(h264_video, stride):
    """Clip sampling + nearest fill gives exactly one score per decoded frame, from a nearby sampled frame."""
    info = probe_video(h264_video)
    indices, scores = [], []
    for clip in iter_clips(h264_video, stride=stride):
        real_indices = clip.frame_indices[clip.real]
        indices.append(real_indices)
        scores.append(real_indices / NUM_FRAMES)  # a score that remembers which frame it came from
    sampled = np.concatenate(indices)
    assert sampled.tolist() == list(range(0, NUM_FRAMES, stride))
    filled = fill_skipped_frames(sampled, np.concatenate(scores), info.num_frames)
    assert filled.shape == (NUM_FRAMES,)
    # Brute force: the nearest sampled frame, the earlier one on ties.
    nearest = [min(sampled.tolist(), key=lambda s: (abs(s - frame), s)) for frame in range(NUM_FRAMES)]
    np.testing.assert_allclose(filled * NUM_FRAMES, nearest, atol=1e-3)


def test_iter_clips_pads_last_clip_with_its_last_frame(h264_video):
    clips = list(iter_clips(h264_video, stride=5, clip_length=8))  # 20 sampled frames -> 8 + 8 + 4
    assert [clip.num_real for clip in clips] == [8, 8, 4]
    last = clips[-1]
    assert last.frames.shape == (8, HEIGHT, WIDTH, 3)
    assert last.real.tolist() == [True] * 4 + [False] * 4
    assert last.frame_indices.tolist() == [80, 85, 90, 95, 95, 95, 95, 95]
    assert all(np.array_equal(last.frames[i], last.frames[3]) for i in range(4, 8))


def test_bytes_path_and_array_sources_agree(h264_video):
    from_path = np.stack([frame.image for frame in iter_frames(h264_video, stride=7)])
    from_bytes = np.stack([frame.image for frame in iter_frames(h264_video.read_bytes(), stride=7)])
    np.testing.assert_array_equal(from_path, from_bytes)
    assert probe_video(h264_video.read_bytes()).num_frames == NUM_FRAMES

    array = np.stack([frame.image for frame in iter_frames(h264_video)])  # (100, 97, 161, 3)
    from_array = np.stack([frame.image for frame in iter_frames(array, stride=7)])
    np.testing.assert_array_equal(from_path, from_array)
    assert probe_video(FrameArray(array, fps=12.5)).fps == 12.5
    assert [clip.num_real for clip in iter_clips(array, stride=7)] == [8, 7]


@pytest.mark.parametrize("container_format, codec, pix_fmt, suffix", [
    ("mp4", "libx264", "yuv420p", ".mp4"),
    ("webm", "libvpx-vp9", "yuv420p", ".webm"),
    ("avi", "mpeg4", "yuv420p", ".avi"),
    ("matroska", "libx264", "yuv420p", ".mkv"),
    ("gif", "gif", "rgb8", ".gif"),
])
def test_reads_common_formats(tmp_path, container_format, codec, pix_fmt, suffix):
    path = encode(tmp_path / f"clip{suffix}", 12, width=48, height=32, container_format=container_format,
                  codec=codec, pix_fmt=pix_fmt)
    info = probe_video(path)  # webm and mkv headers carry no frame count: this one is counted
    assert (info.num_frames, info.width, info.height) == (12, 48, 32)
    assert info.fps == pytest.approx(FPS)
    frames = list(iter_frames(path, stride=3))
    assert [frame.index for frame in frames] == [0, 3, 6, 9]
    assert [decoded_index(frame.image) for frame in frames] == [0, 3, 6, 9]


# ---------------------------------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(UserInputError, match=r"missing\.mp4 does not exist: check the path"):
        probe_video(tmp_path / "missing.mp4")


def test_zero_byte_file(tmp_path):
    (tmp_path / "empty.mp4").touch()
    with pytest.raises(UserInputError, match=r"empty\.mp4 is empty \(0 bytes\)"):
        probe_video(tmp_path / "empty.mp4")
    with pytest.raises(UserInputError, match="video data is empty"):
        probe_video(b"")


def test_text_file_named_mp4(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("these are meeting notes, not a video\n" * 20)
    with pytest.raises(UserInputError, match=r"notes\.mp4 could not be opened as a video .*format FFmpeg reads"):
        probe_video(path)
    with pytest.raises(UserInputError, match="could not be opened"):
        next(iter_frames(path))


def test_truncated_mp4_without_index_is_an_error(tmp_path):
    # PyAV's mp4 muxer writes the index (moov) last: cutting the file loses it, and nothing can be decoded.
    data = encode(tmp_path / "full.mp4", 30, width=64, height=48).read_bytes()
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserInputError, match=r"cut\.mp4 (could not be opened|has no video stream).*truncated"):
        probe_video(path)


def test_truncated_mp4_decodes_what_it_can(tmp_path, caplog):
    # With the index first (faststart), the frames before the cut still decode: they are used, with a warning.
    full = encode(tmp_path / "full.mp4", 30, width=64, height=48, options={"movflags": "+faststart"})
    data = full.read_bytes()
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: int(len(data) * 0.7)])
    with caplog.at_level(logging.WARNING):
        info = probe_video(path)
    assert 2 <= info.num_frames < 30 and info.damaged
    assert "damaged" in caplog.text
    frames = list(iter_frames(path))
    assert len(frames) == info.num_frames  # probe and iteration agree frame for frame
    shown = [decoded_index(frame.image) for frame in frames]
    assert shown[0] == 0 and all(later > earlier for earlier, later in zip(shown, shown[1:]))


def test_video_with_one_frame(tmp_path):
    path = encode(tmp_path / "still.mp4", 1, width=32, height=32)
    with pytest.raises(UserInputError, match=r"still\.mp4 has 1 decodable frame\(s\); at least 2 are needed"):
        probe_video(path)


def test_bad_arrays_and_stride():
    with pytest.raises(UserInputError, match=r"must be uint8 RGB \[frames, height, width, 3\]"):
        probe_video(np.zeros((4, 8, 8, 3), dtype=np.float32))
    with pytest.raises(UserInputError, match="at least 2 are needed"):
        probe_video(np.zeros((1, 8, 8, 3), dtype=np.uint8))
    with pytest.raises(UserInputError, match="stride must be a positive whole number, got 0"):
        next(iter_frames(np.zeros((4, 8, 8, 3), dtype=np.uint8), stride=0))
    with pytest.raises(UserInputError, match="Cannot read a video from a dict"):
        probe_video({"video": "x.mp4"})


# ---------------------------------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------------------------------


def _read_back(path: Path) -> tuple[int, int, int, str, Fraction]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        count = sum(1 for _ in container.decode(stream))
        return count, stream.codec_context.width, stream.codec_context.height, stream.codec_context.pix_fmt, \
            stream.average_rate


def _frames(count: int, height: int = HEIGHT, width: int = WIDTH):
    for index in range(count):
        yield frame_image(index, height, width)


def test_write_video_pads_odd_sizes_to_even_yuv420p(tmp_path):
    path = tmp_path / "out.mp4"
    write_video(path, _frames(10), fps=FPS)
    assert _read_back(path) == (10, WIDTH + 1, HEIGHT + 1, "yuv420p", FPS)
    frames = list(iter_frames(path))
    assert [decoded_index(frame.image) for frame in frames] == list(range(10))
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_write_video_keeps_exact_odd_size_and_ntsc_rate(tmp_path):
    path = tmp_path / "exact.mkv"
    write_video(path, _frames(6), fps=30000 / 1001, odd_size="exact")
    assert _read_back(path) == (6, WIDTH, HEIGHT, "yuv444p", Fraction(30000, 1001))


def test_write_video_is_atomic_on_failure(tmp_path):
    def failing():
        yield from _frames(3)
        raise RuntimeError("source broke")

    with pytest.raises(RuntimeError, match="source broke"):
        write_video(tmp_path / "out.mp4", failing(), fps=FPS)
    with pytest.raises(ValueError, match="all frames of a video must have the same size"):
        write_video(tmp_path / "out.mp4", [np.zeros((8, 8, 3), np.uint8), np.zeros((8, 10, 3), np.uint8)], fps=FPS)
    with pytest.raises(ValueError, match="No frames"):
        write_video(tmp_path / "out.mp4", [], fps=FPS)
    assert list(tmp_path.iterdir()) == []

