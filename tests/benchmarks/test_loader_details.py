"""Loader details: annotation parsers, layout errors that name what is missing, UBnormal masks and tracks."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lavida.dataset_builders.benchmarks import canonical_name, get_benchmark, list_frame_files, read_frame_folder
from lavida.dataset_builders.benchmarks.base import labels_to_ranges, ranges_to_labels
from lavida.dataset_builders.benchmarks.ubnormal import read_object_map, read_tracks_file
from lavida.dataset_builders.benchmarks.ucf_crime import annotation_to_ranges as ucf_ranges
from lavida.dataset_builders.benchmarks.ucf_crime import parse_temporal_annotation
from lavida.dataset_builders.benchmarks.ucsd_ped import parse_gt_frames
from lavida.dataset_builders.benchmarks.xd_violence import annotation_to_ranges as xd_ranges
from lavida.dataset_builders.benchmarks.xd_violence import parse_annotations
from lavida.errors import UserInputError

from .layouts import (AVENUE_DATASET, BUILDERS, UCF_ANNOTATION, UCSD_PED1_DAMAGED_FRAME, build_ubnormal, build_ucsd,
                      truncate_file)


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


def test_ucf_crime_bounds_are_matlab_frame_numbers():
    # Temporal_Anomaly_Annotation.txt, first line; Evaluate_Anomaly_Detector.m: st_fr = max(start, 1), GT(st_fr:end_fr)
    [(_, _, events)] = parse_temporal_annotation("Abuse028_x264.mp4  Abuse  165  240  -1  -1  \n")
    assert ucf_ranges(events) == [(164, 239)]  # MATLAB frames 165..240 are the 0-based frames 164..239
    matlab_gt = np.zeros(300, np.int8)
    matlab_gt[165 - 1: 240] = 1  # GT(165:240) = 1, 1-based and inclusive
    np.testing.assert_array_equal(ranges_to_labels(ucf_ranges(events), 300), matlab_gt)
    assert ucf_ranges([(0, 3)]) == [(0, 2)]  # a 0 start counts as frame 1


def test_xd_violence_bounds_exclude_the_end():
    # make_gt.py: gt_vec[frag[0]:frag[1]] = 1 for each pair of an annotations.txt line
    line = "Bad.Boys.1995__#01-11-55_01-12-40_label_G-B2-B6 6 41 84 111\n"
    [(name, events)] = parse_annotations(line).items()
    gt_vec = np.zeros(120, np.float32)
    for start, end in events:
        gt_vec[start:end] = 1.0
    assert xd_ranges(events) == [(6, 40), (84, 110)]
    np.testing.assert_array_equal(ranges_to_labels(xd_ranges(events), 120), gt_vec.astype(np.int8))


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

    (layout.root / "scripts" / "normal_test_video_names.txt").write_text("normal_scene_2_scenario2_1\n"
                                                                         "normal_scene_5_scenario_3\n")
    with pytest.raises(UserInputError, match="1 of 3 test videos .* missing, e.g. normal_scene_5_scenario_3.mp4"):
        get_benchmark("ubnormal", layout.root)
    (layout.root / "scripts" / "normal_test_video_names.txt").unlink()
    with pytest.raises(UserInputError, match="normal_test_video_names.txt is missing; looked in the data root, "
                                             "scripts/, splits/, UBnormal/scripts/"):
        get_benchmark("ubnormal", layout.root)


def test_ubnormal_labels_come_from_tracks_and_regions_from_new_tracks(tmp_path):
    # write_frame_level_ground_truth.py reads <video>_tracks.txt only: ground_truth[int(start):int(end + 1)] = 1;
    # create_tracks_for_tbdc_rbdc.py reads <video>_new_tracks.txt when it exists
    layout = build_ubnormal(tmp_path)
    annotations = layout.root / "Scene1" / "abnormal_scene_1_scenario_1_annotations"
    assert (annotations / "abnormal_scene_1_scenario_1_tracks.txt").read_text() == "1,3,6\n"
    (annotations / "abnormal_scene_1_scenario_1_new_tracks.txt").write_text("1.000000e+00,4.0,5.0\n")
    assert read_tracks_file(annotations / "abnormal_scene_1_scenario_1_new_tracks.txt") == [(1, 4, 5)]
    abnormal = next(iter(get_benchmark("ubnormal", layout.root)))
    ground_truth = np.zeros(10)
    ground_truth[3: 6 + 1] = 1
    np.testing.assert_array_equal(abnormal.frame_labels(10), ground_truth.astype(np.int8))
    assert abnormal.ranges == [(3, 6)] and abnormal.masks.frame(6).any()  # masks agree with the frame labels
    [track] = abnormal.tracks()
    assert track.frames.tolist() == [4, 5]  # the corrected tracks serve RBDC/TBDC

    (annotations / "abnormal_scene_1_scenario_1_tracks.txt").unlink()
    with pytest.raises(UserInputError, match="abnormal_scene_1_scenario_1_tracks.txt in"):
        get_benchmark("ubnormal", layout.root)


def test_ubnormal_object_maps_are_read_as_grayscale(tmp_path):
    # create_tracks_for_tbdc_rbdc.py: gt_map = cv.imread(path, 0); mask = gt_map == track_id
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[0, 0] = (2, 2, 2)  # an id written in every channel keeps its value
    rgb[1, 1] = (0, 0, 9)  # channels that differ give their luma: round(0.114 * 9) = 1, not the red channel's 0
    Image.fromarray(rgb).save(tmp_path / "v_0000_gt.png")
    gray = read_object_map(tmp_path / "v_0000_gt.png")
    assert gray.shape == (4, 5) and gray[0, 0] == 2 and gray[1, 1] == 1
    Image.fromarray(rgb[..., 0]).save(tmp_path / "v_0001_gt.png")  # single-channel maps as stored
    np.testing.assert_array_equal(read_object_map(tmp_path / "v_0001_gt.png"), rgb[..., 0])


def test_ucf_and_xd_report_missing_or_unannotated_videos(tmp_path):
    ucf = BUILDERS["ucf-crime"](tmp_path).root
    with open(ucf.joinpath(*UCF_ANNOTATION), "a") as handle:
        handle.write("Burglary005_x264.mp4  Burglary  10  20  -1  -1\n")
    with pytest.raises(UserInputError, match="1 of 3 annotated test videos are missing, e.g. Burglary005_x264.mp4"):
        get_benchmark("ucf-crime", ucf)
    xd = BUILDERS["xd-violence"](tmp_path).root
    (xd / "annotations.txt").write_text("")
    with pytest.raises(UserInputError, match="violent test videos have no line in annotations.txt"):
        get_benchmark("xd-violence", xd)


def test_ucf_crime_annotation_is_found_where_the_downloads_put_it(tmp_path):
    root = BUILDERS["ucf-crime"](tmp_path).root
    nested = root.joinpath(*UCF_ANNOTATION)
    assert [v.video_id for v in get_benchmark("ucf-crime", root)] == ["Arson011_x264", "Normal_Videos_003_x264"]
    # one folder further down (the archive unpacked into a folder of its own), and the dataset's own file name
    moved = root / "annotations" / UCF_ANNOTATION[0]
    moved.parent.mkdir()
    nested.parent.parent.rename(moved)
    assert get_benchmark("ucf-crime", root).videos[0].ranges == [(2, 4), (8, 9)]
    flat = root / "Temporal_Anomaly_Annotation_for_Testing_Videos.txt"
    (moved / "Txt_formate" / UCF_ANNOTATION[2]).rename(flat)
    assert get_benchmark("ucf-crime", root).videos[0].ranges == [(2, 4), (8, 9)]
    flat.unlink()
    with pytest.raises(UserInputError, match=r"looked for Temporal_Anomaly_Annotation_For_Testing_Videos/"
                                             r"Txt_formate/Temporal_Anomaly_Annotation\.txt and \*/Temporal_"):
        get_benchmark("ucf-crime", root)


def test_xd_violence_reads_the_authors_test_clips_folder(tmp_path):
    root = BUILDERS["xd-violence"](tmp_path).root
    videos = get_benchmark("xd-violence", root).videos
    assert {v.video.parent for v in videos} == {root / "TestClips" / "Videos"}
    violent = next(v for v in videos if "label_G" in v.video_id)
    assert violent.ranges == [(1, 3), (9, 10)]  # "1 4 9 11", ends excluded
    for video in videos:
        video.video.unlink()
    with pytest.raises(UserInputError, match="no test videos .*looked in TestClips/Videos, test_videos, videos, test, "
                                             "the data root"):
        get_benchmark("xd-violence", root)


def test_avenue_reads_the_two_downloads_side_by_side(tmp_path):
    root = BUILDERS["avenue"](tmp_path).root
    assert sorted(p.name for p in root.iterdir()) == [AVENUE_DATASET, "ground_truth_demo"]
    for data_root in (root, root / AVENUE_DATASET):  # their parent, or the dataset folder with its sibling
        videos = {v.video_id: v for v in get_benchmark("avenue", data_root)}
        assert videos["01"].video == root / AVENUE_DATASET / "testing_videos" / "01.avi"
        assert videos["02"].frame_labels().tolist() == [1, 1, 0, 0, 0, 0, 0, 0, 0]
    (root / "ground_truth_demo").rename(root / AVENUE_DATASET / "ground_truth_demo")  # moved inside: found too
    assert len(get_benchmark("avenue", root / AVENUE_DATASET)) == 2
    (root / AVENUE_DATASET / "ground_truth_demo").rename(tmp_path / "elsewhere")
    with pytest.raises(UserInputError, match=r"testing_label_mask/ is missing; looked in .*avenue/ground_truth_demo/"
                                             r"testing_label_mask, .*Avenue Dataset/ground_truth_demo/"):
        get_benchmark("avenue", root)
    (root / AVENUE_DATASET).rename(tmp_path / "videos elsewhere")
    with pytest.raises(UserInputError, match=r"no test videos folder; looked for .*avenue/Avenue Dataset/"
                                             r"testing_videos, .*avenue/testing_videos"):
        get_benchmark("avenue", root)


def test_avenue_uses_frames_when_extracted_and_the_avi_otherwise(tmp_path):
    root = BUILDERS["avenue"](tmp_path).root
    dataset = root / AVENUE_DATASET
    (dataset / "testing" / "frames" / "02").mkdir(parents=True)
    for index in range(9):  # a preprocessed copy's frames of video 02
        frame = Image.fromarray(np.full((32, 48, 3), 40, np.uint8))
        frame.save(dataset / "testing" / "frames" / "02" / f"{index:04d}.jpg")
    videos = {v.video_id: v for v in get_benchmark("avenue", root)}
    assert not videos["01"].is_frame_folder and videos["01"].video.name == "01.avi"
    assert videos["02"].is_frame_folder and videos["02"].load().shape == (9, 32, 48, 3)
    assert videos["01"].masks.frame(5).sum() == 100
    (dataset / "testing_videos" / "01.avi").unlink()
    with pytest.raises(UserInputError, match="test video 01 is missing: no .*01.avi and no frame folder 01"):
        get_benchmark("avenue", root)


def test_ucsd_ped1_truncated_frame_is_reported_once_and_repeats_the_previous_one(tmp_path, caplog):
    layout = build_ucsd(tmp_path, "ped1")
    name, index = UCSD_PED1_DAMAGED_FRAME
    video = next(v for v in get_benchmark("ped1", layout.root) if v.video_id == name)
    damaged = video.video / f"{index + 1:03d}.tif"
    with pytest.raises((OSError, ValueError)), Image.open(damaged) as image:  # PIL: "truncated" / "buffer too small"
        image.load()
    with caplog.at_level("WARNING", logger="lavida.dataset_builders.benchmarks.base"):
        frames = video.load()
        again = video.load()
    assert frames.shape == (7, 24, 36, 3) and video.frame_labels().size == 7  # the count stays aligned
    np.testing.assert_array_equal(frames[index], frames[index - 1])
    np.testing.assert_array_equal(again, frames)
    reports = [r.getMessage() for r in caplog.records if "damaged" in r.getMessage()]
    assert len(reports) == 1 and f"{index + 1:03d}.tif" in reports[0] and "repeats frame 3" in reports[0]

    truncate_file(video.video / "001.tif")  # a damaged first frame takes the first readable one
    first = video.load()
    np.testing.assert_array_equal(first[0], first[1])
    for path in video.video.glob("*.tif"):
        truncate_file(path, keep=0.0)
    with pytest.raises(UserInputError, match="No frame of .* can be decoded"):
        video.load()


def test_registry_names_and_aliases(tmp_path):
    assert canonical_name("UCSD_Ped2") == "ped2" and canonical_name("XD Violence") == "xd-violence"
    assert canonical_name("UCF") == "ucf-crime"
    with pytest.raises(UserInputError, match="Unknown benchmark 'kitti'"):
        get_benchmark("kitti", tmp_path)
    with pytest.raises(UserInputError, match="is not a folder"):
        get_benchmark("avenue", tmp_path / "missing")
