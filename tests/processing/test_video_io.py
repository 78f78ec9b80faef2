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
from lavida.processing.video_io import FrameArray, VideoReader, iter_clips, iter_frames, probe_video, write_video

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


def decoded_index(image: np.ndarray, band: float | None = None) -> int:
    """The index ``frame_image`` drew; ``band``: the band width in pixels when the frame was scaled."""
    band = band or image.shape[1] // BITS
    bits = [image[:, round(bit * band + band / 4):round((bit + 1) * band - band / 4)].mean() > 128
            for bit in range(BITS)]
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


@pytest.mark.parametrize("mask_stride, between", [
    (1, [[1, 2, 3, 5, 6, 7], [9, 10, 11, 13, 14, 15], [17, 18, 19, 21, 22]]),
    (2, [[2, 6], [10, 14], [18, 22]]),
    (3, [[3, 6], [9, 15], [18, 21]]),  # not a divisor of the stride: its frames besides the scored ones
    (4, [[], [], []]),  # every mask frame is scored
])
def test_clips_carry_the_frames_only_the_masks_read(mask_stride, between):
    frames = np.arange(23, dtype=np.uint8)[:, None, None, None].repeat(4, 1).repeat(6, 2).repeat(3, 3)  # value = index
    clips = list(iter_clips(FrameArray(frames), stride=4, clip_length=2, mask_stride=mask_stride))
    assert [clip.frame_indices.tolist() for clip in clips] == [[0, 4], [8, 12], [16, 20]]
    assert [clip.mask_frame_indices.tolist() for clip in clips] == between  # after the clip's frames, to the next's
    for clip in clips:
        assert clip.mask_frames.shape == (len(clip.mask_frame_indices), 4, 6, 3)
        np.testing.assert_array_equal(clip.mask_frames[:, 0, 0, 0], clip.mask_frame_indices)  # each its own frame
    assert all(clip.mask_frames is None for clip in iter_clips(FrameArray(frames), stride=4, clip_length=2))


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


def test_an_ntsc_frame_rate_is_read_exactly(tmp_path):
    """29.97 fps (30000/1001) stays 29.97: a rounded rate would put every event time 0.1 % off."""
    path = encode(tmp_path / "ntsc.mp4", 12, fps=Fraction(30000, 1001))
    ntsc = 30000 / 1001
    info = probe_video(path)
    assert info.fps == pytest.approx(ntsc, rel=1e-9) and info.duration_s == pytest.approx(12 / ntsc, rel=1e-9)
    reader = VideoReader(path)
    assert reader.header.fps == pytest.approx(ntsc, rel=1e-9)
    assert len(list(reader.frames())) == 12 and reader.info.fps == pytest.approx(ntsc, rel=1e-9)
    assert probe_video(path.read_bytes()).fps == pytest.approx(ntsc, rel=1e-9)


# ---------------------------------------------------------------------------------------------------------------------
# Size, rotation and frame times
# ---------------------------------------------------------------------------------------------------------------------


def test_frames_come_out_at_the_size_asked_while_info_keeps_the_video_size(h264_video):
    """A ``size`` function shrinks frames in the decoder's scaler; the metadata still describes the video."""
    from lavida.processing.video_io import VideoReader

    asked = []

    def quarter(height, width):
        asked.append((height, width))
        return height // 4, width // 4

    reader = VideoReader(h264_video)
    frames = list(reader.frames(stride=9, size=quarter))
    assert asked == [(HEIGHT, WIDTH)]  # decided once, from the upright size of the video
    assert {frame.image.shape for frame in frames} == {(HEIGHT // 4, WIDTH // 4, 3)}
    band = (WIDTH // BITS) * (WIDTH // 4) / WIDTH  # the bands, scaled with the frame
    assert [decoded_index(frame.image, band) for frame in frames] == [frame.index for frame in frames]  # same pictures
    assert (reader.info.width, reader.info.height, reader.info.num_frames) == (WIDTH, HEIGHT, NUM_FRAMES)
    array = np.stack([frame_image(index) for index in range(4)])  # in-memory frames go through the same scaler
    assert {frame.image.shape for frame in iter_frames(array, size=quarter)} == {(HEIGHT // 4, WIDTH // 4, 3)}
    with pytest.raises(ValueError, match="positive"):
        next(iter_frames(h264_video, size=lambda height, width: (0, width)))


def _arrow(height: int, width: int) -> np.ndarray:
    """An asymmetric picture: a white top row, a red left column, a green block in the bottom-right corner."""
    image = np.full((height, width, 3), 90, dtype=np.uint8)
    image[: height // 8] = 255
    image[:, : width // 8] = (255, 0, 0)
    image[-height // 4:, -width // 4:] = (0, 255, 0)
    return image


def encode_rotated(path: Path, rotation: int, height: int = 48, width: int = 80, num_frames: int = 4) -> Path:
    """A video whose container asks players to rotate it (``rotation`` degrees counter-clockwise, as a phone's)."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(FPS))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv444p"
        stream.options = {"qp": "0"}  # lossless: the test compares pixels
        stream.set_display_rotation(rotation)
        for _ in range(num_frames):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(_arrow(height, width), format="rgb24")))
        container.mux(stream.encode(None))
    return path


@pytest.mark.parametrize("rotation, turns", [(-90, -1), (90, 1), (180, 2)])
def test_rotated_video_is_read_upright(tmp_path, rotation, turns):
    path = encode_rotated(tmp_path / "phone.mp4", rotation)
    upright = np.rot90(_arrow(48, 80), turns)  # what a player shows
    frames = list(iter_frames(path))
    assert len(frames) == 4
    for frame in frames:
        assert frame.image.shape == upright.shape
        assert np.abs(frame.image.astype(int) - upright).max() <= 2
    info = probe_video(path)
    assert (info.height, info.width) == upright.shape[:2]
    small = next(iter_frames(path, size=lambda height, width: (height // 2, width // 2))).image
    assert small.shape == (upright.shape[0] // 2, upright.shape[1] // 2, 3)  # scaled, then turned: still upright
    for row, column in [(0, 0), (0, -1), (-1, 0), (-1, -1)]:  # each corner as the upright picture has it
        assert np.abs(small[row, column].astype(int) - upright[row, column]).max() <= 8


VFR_TIMES = [0.0, 0.04, 0.08, 0.5, 0.54, 1.3, 1.34, 2.0, 2.04, 2.8]  # seconds: bursts and pauses


def encode_vfr(path: Path, times: list[float], container_format: str = "matroska") -> Path:
    """Frames with explicit presentation times (a variable frame rate), as screen recorders and phones write."""
    with av.open(str(path), mode="w", format=container_format) as container:
        stream = container.add_stream("libx264", rate=Fraction(FPS))
        stream.width, stream.height, stream.pix_fmt = WIDTH + 1, HEIGHT + 1, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        for index, time in enumerate(times):
            frame = av.VideoFrame.from_ndarray(frame_image(index, HEIGHT + 1, WIDTH + 1), format="rgb24")
            frame.pts, frame.time_base = round(time * 1000), Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


@pytest.mark.parametrize("container_format, suffix", [("matroska", ".mkv"), ("mp4", ".mp4")])
def test_variable_frame_rate_video_keeps_its_frame_times(tmp_path, container_format, suffix):
    from lavida.processing.video_io import VideoReader

    path = encode_vfr(tmp_path / f"vfr{suffix}", VFR_TIMES, container_format)
    info = probe_video(path)
    assert info.num_frames == len(VFR_TIMES)
    np.testing.assert_allclose(info.frame_times_s, VFR_TIMES, atol=1e-6)
    assert info.duration_s == pytest.approx(VFR_TIMES[-1] + 1 / info.fps)
    np.testing.assert_allclose(info.frame_edges_s(), [*VFR_TIMES, info.duration_s])
    reader = VideoReader(path)
    assert [decoded_index(frame.image) for frame in reader.frames()] == list(range(len(VFR_TIMES)))
    np.testing.assert_allclose(reader.info.frame_times_s, VFR_TIMES, atol=1e-6)  # the decoding pass agrees


def test_constant_frame_rate_video_has_no_separate_frame_times(h264_video, tmp_path):
    info = probe_video(h264_video)
    assert info.frame_times_s is None
    np.testing.assert_array_equal(info.frame_edges_s(), np.arange(NUM_FRAMES + 1) / FPS)
    mkv = encode(tmp_path / "ms.mkv", 30, width=48, height=32, fps=30, container_format="matroska")
    assert probe_video(mkv).frame_times_s is None  # millisecond timestamps of 30 fps are still a constant rate


def test_write_video_keeps_given_frame_times(tmp_path):
    path = tmp_path / "timed.mp4"
    write_video(path, _frames(len(VFR_TIMES), 32, 48), fps=FPS, frame_times_s=VFR_TIMES)
    np.testing.assert_allclose(probe_video(path).frame_times_s, VFR_TIMES, atol=1e-4)
    with pytest.raises(ValueError, match="strictly increasing"):
        write_video(tmp_path / "bad.mp4", _frames(3, 32, 48), fps=FPS, frame_times_s=[0.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="frame times"):
        write_video(tmp_path / "short.mp4", _frames(3, 32, 48), fps=FPS, frame_times_s=[0.0, 1.0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["timed.mp4"]


def test_a_list_of_frames_is_read_and_checked_frame_by_frame():
    from lavida.processing.video_io import describe_source

    frames = [frame_image(index, 12, 14) for index in range(3)]
    assert describe_source(frames) == "the list of 3 frames [12, 14, 3]"
    read = list(iter_frames(frames))
    assert [frame.index for frame in read] == [0, 1, 2]
    assert all(np.array_equal(frame.image, image) for frame, image in zip(read, frames))
    with pytest.raises(UserInputError, match=r"uint8 RGB \[height, width, 3\] each"):  # refused before any reading
        VideoReader([frames[0].astype(np.float32)] + frames[1:])
    with pytest.raises(UserInputError, match="Frame 2 of the list"):
        list(iter_frames(frames[:2] + [frames[2][:, :10]]))
    with pytest.raises(UserInputError, match="fps"):
        VideoReader(FrameArray(np.stack(frames), fps=0))


def test_an_odd_height_alone_is_padded_too(tmp_path):
    path = tmp_path / "odd-height.mp4"
    write_video(path, _frames(4, height=9, width=16), fps=FPS)
    assert _read_back(path)[1:4] == (16, 10, "yuv420p")


@pytest.mark.parametrize("suffix", [".mp4", ".mov"])
def test_mp4_and_mov_files_put_their_index_first_for_streaming(tmp_path, suffix):
    """``+faststart``: the moov index precedes the media data, so a browser can play while downloading."""
    path = tmp_path / f"stream{suffix}"
    write_video(path, _frames(4, height=16, width=16), fps=FPS)
    data = path.read_bytes()
    assert 0 <= data.find(b"moov") < data.find(b"mdat")


def test_the_header_estimates_the_frame_count_when_the_container_stores_none(tmp_path):
    """Matroska stores a duration but no frame count: the header estimates it from duration x fps (the Space's
    duration check and the progress bar read it before decoding); mp4 declares its count."""
    from lavida.processing.video_io import read_header

    mkv = encode(tmp_path / "clip.mkv", 20, container_format="matroska")
    mp4 = encode(tmp_path / "clip.mp4", 20)
    for path in (mkv, mp4):
        header = read_header(path)
        assert header.num_frames == 20 and header.duration_s == pytest.approx(20 / FPS, abs=1.5 / FPS), path.suffix


def test_an_empty_frame_array_is_refused_as_too_short():
    with pytest.raises(UserInputError, match="frame"):
        list(iter_frames(np.zeros((0, 8, 8, 3), np.uint8)))


def test_h264_roundtrip_keeps_the_clip_shape_and_refuses_odd_sizes():
    from lavida.processing.video_io import h264_roundtrip

    rng = np.random.default_rng(0)
    frames = np.repeat(rng.integers(0, 255, size=(1, 32, 48, 3), dtype=np.uint8), 3, axis=0)
    out = h264_roundtrip(frames)
    assert out.shape == frames.shape and out.dtype == np.uint8
    assert not np.array_equal(out, frames)  # lossy: random pixels do not survive 4:2:0 chroma
    with pytest.raises(ValueError, match="even size"):
        h264_roundtrip(frames[:, :31])
