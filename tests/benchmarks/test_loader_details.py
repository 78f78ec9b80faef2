"""Loader details: annotation parsers, layout errors that name what is missing, UBnormal masks and tracks."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lavida.dataset_builders.benchmarks import canonical_name, get_benchmark, list_frame_files, read_frame_folder
from lavida.dataset_builders.benchmarks.base import labels_to_ranges, ranges_to_labels
from lavida.dataset_builders.benchmarks.ubnormal import read_tracks_file
from lavida.dataset_builders.benchmarks.ucf_crime import parse_temporal_annotation
from lavida.dataset_builders.benchmarks.ucsd_ped import parse_gt_frames
from lavida.dataset_builders.benchmarks.xd_violence import parse_annotations
from lavida.errors import UserInputError

from .layouts import BUILDERS, build_ubnormal, build_ucsd


def test_annotation_parsers():
    text = "TestVideoFile{end+1}.gt_frame = [61:180];\nTestVideoFile{end+1}.gt_frame = [1:30, 90:120];\n" \
           "TestVideoFile{end+1}.gt_frame = [5];"
    assert parse_gt_frames(text) == [[(60, 179)], [(0, 29), (89, 119)], [(4, 4)]]
    assert parse_temporal_annotation("Arson011_x264.mp4  Arson  150  420  680  1267\n\n"
                                     "Normal_Videos_003_x264.mp4  Normal  -1  -1  -1  -1\n") == [
        ("Arson011_x264.mp4", "Arson", [(150, 420), (680, 1267)]), ("Normal_Videos_003_x264.mp4", "Normal", [])]
    with pytest.raises(ValueError, match="line 1"):
        parse_temporal_annotation("Arson011_x264.mp4 Arson 150\n")
    assert parse_annotations("v1_label_B1-0-0 10 20 30 40\nv2.mp4 5 6\n") == {"v1_label_B1-0-0": [(10, 20), (30, 40)],
                                                                             "v2": [(5, 6)]}
    with pytest.raises(ValueError, match="line 1"):
        parse_annotations("v1 10\n")


def test_label_ranges_round_trip():
    labels = ranges_to_labels([(2, 4), (8, 20)], 10)
    np.testing.assert_array_equal(labels, [0, 0, 1, 1, 1, 0, 0, 0, 1, 1])
    assert labels_to_ranges(labels) == [(2, 4), (8, 9)]


def test_frame_folder_order_and_errors(tmp_path):
    for name in ("frame10.png", "frame2.png", "frame1.png", ".frame3.png", "notes.txt"):
        if name.endswith(".png"):
            Image.fromarray(np.full((4, 6, 3), int(name.strip(".")[5:-4]), np.uint8)).save(tmp_path / name)
        else:
            (tmp_path / name).write_text("x")
    assert [p.name for p in list_frame_files(tmp_path)] == ["frame1.png", "frame2.png", "frame10.png"]
    frames = read_frame_folder(tmp_path)
    assert frames.shape == (3, 4, 6, 3) and frames[:, 0, 0, 0].tolist() == [1, 2, 10]
    Image.fromarray(np.zeros((5, 6, 3), np.uint8)).save(tmp_path / "frame11.png")
    with pytest.raises(UserInputError, match="same size"):
        read_frame_folder(tmp_path)


def test_ucsd_layout_errors_name_the_missing_piece(tmp_path):
    layout = build_ucsd(tmp_path)
    test_dir = layout.root / "UCSD_Anomaly_Dataset.v1p2" / "UCSDped2" / "Test"
    assert len(get_benchmark("ped2", test_dir.parent)) == 2  # the subset folder itself is accepted too
    (test_dir / "UCSDped2.m").write_text("TestVideoFile{end+1}.gt_frame = [3:5];\n")
    with pytest.raises(UserInputError, match="annotates 1 videos but .* has 2"):
        get_benchmark("ped2", layout.root)
    (test_dir / "UCSDped2.m").unlink()
    with pytest.raises(UserInputError, match="UCSDped2.m is missing"):
        get_benchmark("ped2", layout.root)
    with pytest.raises(UserInputError, match="no UCSDped1/Test folder"):
        get_benchmark("ped1", layout.root)


def test_shanghaitech_label_count_must_match_frames(tmp_path):
    root = BUILDERS["shanghaitech"](tmp_path).root
    np.save(root / "testing" / "test_frame_mask" / "01_0014.npy", np.zeros(5, np.int64))
    with pytest.raises(UserInputError, match="labels 5 frames but .* holds 8"):
        get_benchmark("shanghaitech", root)


def test_ubnormal_masks_tracks_and_split_lists(tmp_path):
    layout = build_ubnormal(tmp_path)
    bench = get_benchmark("ubnormal", layout.root)
    abnormal = next(v for v in bench if v.video_id.startswith("abnormal"))
    assert abnormal.ranges == [(3, 6)]
    assert abnormal.frame_labels(10).tolist() == layout.labels[abnormal.video_id].tolist()
    mask = abnormal.masks.frame(4)
    ys, xs = np.nonzero(mask)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (8, 19, 10, 21)  # object 1 only, not the normal object 2
    assert not abnormal.masks.frame(2, shape=(48, 64)).any()  # object 1 present but not anomalous yet
    [track] = abnormal.tracks()
    assert track.track_id == 1 and track.frames.tolist() == [3, 4, 5, 6]
    np.testing.assert_array_equal(track.boxes[0], [9, 8, 21, 20])
    normal = next(v for v in bench if v.video_id.startswith("normal"))
    assert normal.tracks() == [] and not normal.masks.frame(0, shape=(48, 64)).any()

    annotations = layout.root / "Scene1" / "abnormal_scene_1_scenario_1_annotations"
    (annotations / "abnormal_scene_1_scenario_1_new_tracks.txt").write_text("1.000000e+00,4.0,5.0\n")
    assert read_tracks_file(annotations / "abnormal_scene_1_scenario_1_new_tracks.txt") == [(1, 4, 5)]
    assert next(iter(get_benchmark("ubnormal", layout.root))).ranges == [(4, 5)]  # the corrected tracks win

    (layout.root / "scripts" / "normal_test_video_names.txt").write_text("normal_scene_2_scenario2_1\n"
                                                                         "normal_scene_5_scenario_3\n")
    with pytest.raises(UserInputError, match="1 of 3 test videos .* missing, e.g. normal_scene_5_scenario_3.mp4"):
        get_benchmark("ubnormal", layout.root)
    (layout.root / "scripts" / "normal_test_video_names.txt").unlink()
    with pytest.raises(UserInputError, match="normal_test_video_names.txt is missing .*scripts/"):
        get_benchmark("ubnormal", layout.root)


def test_ucf_and_xd_report_missing_or_unannotated_videos(tmp_path):
    ucf = BUILDERS["ucf-crime"](tmp_path).root
    with open(ucf / "Temporal_Anomaly_Annotation_for_Testing_Videos.txt", "a") as handle:
        handle.write("Burglary005_x264.mp4  Burglary  10  20  -1  -1\n")
    with pytest.raises(UserInputError, match="1 of 3 annotated test videos are missing, e.g. Burglary005_x264.mp4"):
        get_benchmark("ucf-crime", ucf)
    xd = BUILDERS["xd-violence"](tmp_path).root
    (xd / "annotations.txt").write_text("")
    with pytest.raises(UserInputError, match="violent test videos have no line in annotations.txt"):
        get_benchmark("xd-violence", xd)


def test_avenue_uses_frames_when_extracted_and_the_avi_otherwise(tmp_path):
    root = BUILDERS["avenue"](tmp_path).root
    videos = {v.video_id: v for v in get_benchmark("avenue", root)}
    assert not videos["01"].is_frame_folder and videos["01"].video.name == "01.avi"
    assert videos["02"].is_frame_folder and videos["02"].load().shape == (9, 32, 48, 3)
    assert videos["01"].masks.frame(5).sum() == 100
    (root / "testing_videos" / "01.avi").unlink()
    with pytest.raises(UserInputError, match="test video 01 is missing"):
        get_benchmark("avenue", root)


def test_registry_names_and_aliases(tmp_path):
    assert canonical_name("UCSD_Ped2") == "ped2" and canonical_name("XD Violence") == "xd-violence"
    assert canonical_name("UCF") == "ucf-crime"
    with pytest.raises(UserInputError, match="Unknown benchmark 'kitti'"):
        get_benchmark("kitti", tmp_path)
    with pytest.raises(UserInputError, match="is not a folder"):
        get_benchmark("avenue", tmp_path / "missing")
