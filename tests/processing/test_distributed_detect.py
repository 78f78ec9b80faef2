"""Multi-process ``lavida detect``: input expansion, sharding, the index, and a real 2-process launch whose output
folder equals the one-process run's."""

from __future__ import annotations

import filecmp
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lavida.cli import main as lavida_main
from lavida.errors import UserInputError
from lavida.processing.distributed_detect import (INDEX_JSON, ProcessInfo, VideoOutcome, expand_video_inputs,
                                                  index_dict, merge_outcomes, output_folder_names, pick_device,
                                                  shard_indices, threads_per_process)
from lavida.processing.video_io import write_video

REPO_ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------------------------------------ inputs
def test_folder_expands_to_its_videos_sorted_skipping_other_and_hidden_files(tmp_path):
    for name in ("b.mp4", "a.WEBM", "c.avi", ".hidden.mp4", "notes.txt", "cover.png"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.mp4").write_bytes(b"x")
    assert expand_video_inputs([str(tmp_path)]) == [str(tmp_path / n) for n in ("a.WEBM", "b.mp4", "c.avi")]


def test_list_file_paths_are_relative_to_the_list_and_keep_order(tmp_path):
    (tmp_path / "lists").mkdir()
    listing = tmp_path / "lists" / "videos.txt"
    listing.write_text(f"# comment\nz.mp4\n\n  ../a.mp4  \n{tmp_path / 'abs.mkv'}\n")
    videos = expand_video_inputs(["first.mp4", f"@{listing}", "last.mp4"])
    assert videos == ["first.mp4", str(tmp_path / "lists" / "z.mp4"), str(tmp_path / "lists" / ".." / "a.mp4"),
                      str(tmp_path / "abs.mkv"), "last.mp4"]


@pytest.mark.parametrize("make, message", [
    (lambda d: str(d), "holds no video files"),
    (lambda d: f"@{d / 'missing.txt'}", "does not exist"),
    (lambda d: (d / "empty.txt").write_text("# nothing\n\n") and f"@{d / 'empty.txt'}", "names no videos"),
])
def test_bad_folders_and_lists_are_user_errors(tmp_path, make, message):
    with pytest.raises(UserInputError, match=message):
        expand_video_inputs([make(tmp_path)])


# ------------------------------------------------------------------------------------------------------------ names
def test_every_input_gets_its_own_folder_even_when_stems_and_suffixes_collide():
    names = output_folder_names(["a/x.mp4", "b/x.gif", "x-2.mp4", "c/X.webm", "x.mkv"])
    assert names == ["x", "x-2", "x-2-2", "X-3", "x-4"]
    assert len({name.casefold() for name in names}) == len(names)


@pytest.mark.parametrize("video", ["..mp4", "...mp4", ".mp4", ". .mp4", "dir/..mp4", "index.json.mp4",
                                   "a\\b.mp4", "tab\there.mp4", "trailing..mp4"])
def test_no_input_name_addresses_anything_but_a_plain_child_folder(video, tmp_path):
    (name,) = output_folder_names([video])
    assert name not in ("", ".", "..") and not name.startswith(".") and name.casefold() != INDEX_JSON
    assert "/" not in name and "\\" not in name and name.isprintable()
    assert (tmp_path / name).resolve().parent == tmp_path.resolve()


@pytest.mark.parametrize("world", [1, 2, 3, 5])
def test_shards_cover_every_video_once_in_input_order(world):
    sizes = list(np.random.default_rng(world).integers(1, 1000, size=11))
    shards = shard_indices(sizes, world)
    assert len(shards) == world
    assert sorted(i for shard in shards for i in shard) == list(range(11))
    assert all(shard == sorted(shard) for shard in shards)
    assert shards == shard_indices(sizes, world)  # deterministic: every process computes the same split


def test_shards_balance_sizes_not_counts():
    # one big video against four small ones: round-robin would give shard 0 the big one plus two small ones
    shards = shard_indices([100, 10, 10, 10, 10], 2)
    assert shards == [[0], [1, 2, 3, 4]]


def test_process_info_reads_the_launcher_environment():
    env = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}
    info = ProcessInfo.from_environment(env)
    assert (info.rank, info.world_size, info.local_rank, info.local_world_size) == (3, 4, 1, 2)
    assert info.distributed and not info.is_main
    assert ProcessInfo.from_environment({}) == ProcessInfo()
    with pytest.raises(UserInputError, match="RANK=4"):
        ProcessInfo.from_environment({"RANK": "4", "WORLD_SIZE": "4"})
    with pytest.raises(UserInputError, match="WORLD_SIZE"):
        ProcessInfo.from_environment({"WORLD_SIZE": "two"})


def test_devices_and_threads_follow_the_local_rank():
    second = ProcessInfo(rank=1, world_size=2, local_rank=1, local_world_size=2)
    assert pick_device(None, second, cuda_devices=2) == "cuda:1"
    assert pick_device("cuda", second, cuda_devices=2) == "cuda:1"
    assert pick_device(None, second, cuda_devices=0) == "cpu"
    assert pick_device("cuda:0", second, cuda_devices=2) == "cuda:0"  # an explicit device is kept
    assert pick_device(None, ProcessInfo(), cuda_devices=1) == "cuda"
    assert threads_per_process(second, cores=16) == 8
    assert threads_per_process(ProcessInfo(local_world_size=4), cores=2) == 1


def test_merge_restores_input_order_and_rejects_overlaps():
    a = VideoOutcome(0, "a.mp4", "a", "ok")
    b = VideoOutcome(1, "b.mp4", "b", "error", error="bad")
    c = VideoOutcome(2, "c.mp4", "c", "ok")
    assert merge_outcomes([[b], [a, c]]) == [a, b, c]
    with pytest.raises(ValueError, match="two processes"):
        merge_outcomes([[a], [a]])
    index = index_dict([a, b, c], ["fire"], "model", {"stride": 1})
    assert index["num_videos"] == 3 and index["num_failed"] == 1
    assert [entry["folder"] for entry in index["videos"]] == ["a", "b", "c"]
    assert "position" not in index["videos"][0]


# ------------------------------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def video_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    rng = np.random.default_rng(0)
    for index, frames in enumerate((12, 20, 9)):
        video = rng.integers(0, 255, (frames, 48, 64, 3), dtype=np.uint8)
        video[2:6, 10:30, 20:40] = (220, 40, 40)
        write_video(folder / f"clip{index}.mp4", video, fps=10.0)
    (folder / "broken.mp4").write_bytes(b"not a video")  # fails on every process count alike
    return folder


def _files(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())


def test_two_processes_write_the_output_folder_of_one_process(tiny_lavida_checkpoint, video_folder, tmp_path):
    args = ["detect", str(video_folder), "--anomalies", "red square, fire", "--model", str(tiny_lavida_checkpoint),
            "--threads", "1", "--clip-batch-size", "1"]
    threads = torch.get_num_threads()
    try:
        single_status = lavida_main([*args, "--out", str(tmp_path / "single")])
    finally:
        torch.set_num_threads(threads)
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "--main_process_port", "29671", "-m", "lavida.cli", *args, "--out", str(tmp_path / "sharded")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(launch, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)

    assert single_status == 2  # the broken video fails ...
    assert result.returncode != 0, result.stdout + result.stderr  # ... and the launch reports it too
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    index = json.loads((single / INDEX_JSON).read_text())
    assert [entry["folder"] for entry in index["videos"]] == ["broken", "clip0", "clip1", "clip2"]
    assert [entry["status"] for entry in index["videos"]] == ["error", "ok", "ok", "ok"]
    assert [entry["num_frames"] for entry in index["videos"][1:]] == [12, 20, 9]
    assert _files(single) == _files(sharded)
    assert len(_files(single)) == 1 + 3 * 4  # index + result.json, scores.csv, scores.png, overlay.mp4 per video
    differing = [name for name in _files(single) if not filecmp.cmp(single / name, sharded / name, shallow=False)]
    assert differing == []
    # both processes really worked: each printed the summary of its own share
    assert result.stdout.count("-> ") == 3, result.stdout


def test_a_video_named_dot_dot_mp4_leaves_the_rest_of_out_untouched(tiny_lavida_checkpoint, video_folder, tmp_path):
    out = tmp_path / "out"
    (out / "keep").mkdir(parents=True)
    (out / "keep" / "precious.txt").write_text("x")
    (tmp_path / "inputs").mkdir()
    for name in ("..mp4", "...mp4"):
        (tmp_path / "inputs" / name).write_bytes((video_folder / "clip2.mp4").read_bytes())
    status = lavida_main(["detect", str(tmp_path / "inputs" / "..mp4"), str(tmp_path / "inputs" / "...mp4"),
                          "--anomalies", "red square", "--model", str(tiny_lavida_checkpoint), "--no-overlay",
                          "--out", str(out)])
    assert status == 0
    assert (out / "keep" / "precious.txt").read_text() == "x"
    index = json.loads((out / INDEX_JSON).read_text())
    folders = [entry["folder"] for entry in index["videos"]]
    assert folders == ["video", "video-2"]
    assert all((out / folder / "result.json").is_file() for folder in folders)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["inputs", "out"]  # nothing written beside --out


def test_the_next_run_removes_what_a_killed_run_left_in_out(tiny_lavida_checkpoint, video_folder, tmp_path):
    from tests.fixtures.killed_writes import leave_killed_write

    out = tmp_path / "out"
    leftovers = leave_killed_write(out / "clip2", "folder") + leave_killed_write(out / INDEX_JSON, "file")
    (out / ".clip2.partial-mine").mkdir()  # hidden, but not named like ours: never touched
    assert len(leftovers) == 2 and all(path.exists() for path in leftovers)
    status = lavida_main(["detect", str(video_folder / "clip2.mp4"), "--anomalies", "red square", "--model",
                          str(tiny_lavida_checkpoint), "--no-overlay", "--out", str(out)])
    assert status == 0
    assert sorted(path.name for path in out.iterdir()) == [".clip2.partial-mine", "clip2", INDEX_JSON]


def test_missing_videos_are_named_before_any_work(tmp_path):
    from lavida.processing.distributed_detect import check_video_files

    present = tmp_path / "present.mp4"
    present.write_bytes(b"x")
    check_video_files([str(present)])
    with pytest.raises(UserInputError, match=r"^Video .*gone\.mp4 does not exist"):
        check_video_files([str(present), str(tmp_path / "gone.mp4")])
    missing = [str(tmp_path / f"gone{index}.mp4") for index in range(7)]
    with pytest.raises(UserInputError, match=r"^7 videos do not exist: .*gone4\.mp4 and 2 more; check the paths"):
        check_video_files(missing)
