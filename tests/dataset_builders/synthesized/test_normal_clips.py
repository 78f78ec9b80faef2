"""Normal videos: files and frame folders are found, cut into clips and decoded in the right order."""

from __future__ import annotations

import numpy as np
import pytest

from lavida.dataset_builders.synthesized.normal_clips import clip_indices, find_normal_videos, normal_clips
from lavida.errors import UserInputError

from .conftest import gradient_frames


def test_finds_video_files_and_frame_folders(normal_videos):
    videos = find_normal_videos(normal_videos)
    assert [v.video_id for v in videos] == ["indoor", "street/cam1.mp4"]
    indoor = videos[0]
    assert [p.name for p in indoor.frame_files[:3]] == ["frame1.png", "frame2.png", "frame3.png"]
    assert indoor.frame_files[-1].name == "frame12.png"  # natural order: frame12 after frame2
    assert [v.num_frames() for v in videos] == [12, 20]
    single = find_normal_videos(normal_videos / "street" / "cam1.mp4")
    assert [v.video_id for v in single] == ["cam1"]


def test_clips_decode_the_right_frames(normal_videos):
    clips = normal_clips(find_normal_videos(normal_videos), clip_length=4, frame_stride=2)
    # a clip spans 7 frames: 12 frames hold one clip, 20 frames two (0-6, 7-13; 14-20 would need a 21st frame)
    assert [c.clip_id for c in clips] == ["indoor@000000", "street/cam1.mp4@000000", "street/cam1.mp4@000007"]
    assert clips[2].frame_indices == (7, 9, 11, 13)
    indoor = clips[0].load()
    assert indoor.shape == (4, 48, 64, 3) and indoor.dtype == np.uint8
    assert np.array_equal(indoor, gradient_frames(12, seed=2)[[0, 2, 4, 6]])  # PNG frames: exact
    street = clips[2].load().astype(np.float32)
    expected = gradient_frames(20, seed=1)[[7, 9, 11, 13]].astype(np.float32)
    assert np.abs(street - expected).mean() < 6  # H.264 is lossy; wrong frames would differ by the 2 px/frame drift
    assert np.abs(street - gradient_frames(20, seed=1)[[0, 2, 4, 6]]).mean() > np.abs(street - expected).mean()


def test_clip_indices_cover_short_videos_and_cap_the_count():
    assert clip_indices(3, 4, 1, None) == [(0, 1, 1, 2)]  # shorter than a clip: spread with repeats
    assert clip_indices(100, 4, 1, None)[:2] == [(0, 1, 2, 3), (4, 5, 6, 7)]
    capped = clip_indices(100, 4, 1, 3)
    assert len(capped) == 3 and capped[0][0] == 0 and capped[-1][0] == 96  # evenly spread, first and last kept


def test_missing_or_empty_inputs_are_user_errors(tmp_path):
    with pytest.raises(UserInputError, match="does not exist"):
        find_normal_videos(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserInputError, match="no video file"):
        find_normal_videos(tmp_path / "empty")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UserInputError, match="not a video file"):
        find_normal_videos(tmp_path / "notes.txt")
