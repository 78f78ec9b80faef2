"""Corpus building: deterministic shards, load_dataset round trip, publishing, resume after a kill, CLI, sheet."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from datasets import load_dataset

from lavida.dataset_builders.corpus_writer import CorpusInfo, publish_corpus, write_corpus
from lavida.dataset_builders.synthetic_training import SyntheticTrainingCorpus


def _build(out: Path, count: int = 12, seed: int = 5, shard_size: int = 5) -> Path:
    corpus = SyntheticTrainingCorpus(num_samples=count, seed=seed, world={"size": 48, "clip_length": 2})
    info = CorpusInfo(name="test-synthetic", sources=["synthetic"], seed=seed, options={"size": 48})
    return write_corpus(((lambda i=i: corpus[i]) for i in range(count)), count, out, info, shard_size=shard_size,
                        progress=False)


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((folder / "data").glob("*.parquet"))}


def test_same_seed_gives_byte_identical_shards_and_load_dataset_returns_the_rows(tmp_path):
    a = _build(tmp_path / "a")
    b = _build(tmp_path / "b")
    assert len(_digests(a)) == 3 and _digests(a) == _digests(b)
    assert _digests(_build(tmp_path / "c", seed=6)) != _digests(a)
    dataset = load_dataset(str(a), split="train")
    corpus = SyntheticTrainingCorpus(num_samples=12, seed=5, world={"size": 48, "clip_length": 2})
    assert len(dataset) == 12
    for index in (0, 7, 11):
        row, expected = dataset[index], corpus[index]
        assert row["names"] == expected["names"] and row["frame_labels"] == expected["frame_labels"]
        assert np.array_equal(np.stack([np.asarray(f) for f in row["frames"]]), expected["frames"])
        assert np.array_equal(np.stack([np.asarray(m) > 127 for m in row["masks"]]), expected["masks"])
    card = (a / "README.md").read_text()
    assert "configs:" in card and "| synthetic | 12 |" in card and "data/train-*.parquet" in card


def test_publishing_uploads_the_folder_and_it_reloads(tmp_path, monkeypatch):
    from huggingface_hub import HfApi, RepoUrl

    built = _build(tmp_path / "built")
    hub = tmp_path / "hub"
    calls = {}

    def fake_create_repo(self, repo_id, repo_type=None, private=False, exist_ok=False, **kwargs):
        calls["create"] = (repo_id, repo_type)
        return RepoUrl(f"https://huggingface.co/datasets/{repo_id}")

    def fake_upload_folder(self, repo_id, folder_path, repo_type=None, ignore_patterns=None, **kwargs):
        calls["upload"] = (repo_id, repo_type)
        shutil.copytree(folder_path, hub / repo_id, ignore=shutil.ignore_patterns(*(ignore_patterns or [])))
        return None

    monkeypatch.setattr(HfApi, "create_repo", fake_create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", fake_upload_folder)
    publish_corpus(built, "me/lavida-synthetic")
    assert calls == {"create": ("me/lavida-synthetic", "dataset"), "upload": ("me/lavida-synthetic", "dataset")}
    reloaded = load_dataset(str(hub / "me" / "lavida-synthetic"), split="train")
    assert len(reloaded) == 12 and reloaded[3]["names"] == load_dataset(str(built), split="train")[3]["names"]


def test_a_build_killed_halfway_leaves_whole_shards_and_a_rerun_completes(tmp_path):
    out = tmp_path / "killed"
    script = (
        "import os, sys\n"
        "from lavida.dataset_builders.corpus_writer import CorpusInfo, write_corpus\n"
        "from lavida.dataset_builders.synthetic_training import SyntheticTrainingCorpus\n"
        "corpus = SyntheticTrainingCorpus(num_samples=12, seed=5, world={'size': 48, 'clip_length': 2})\n"
        "def rows():\n"
        "    for i in range(12):\n"
        "        if i == 8:\n"
        "            os._exit(9)  # killed in the middle of the second shard\n"
        "        yield lambda i=i: corpus[i]\n"
        f"write_corpus(rows(), 12, {str(out)!r}, CorpusInfo(name='test-synthetic', sources=['synthetic'], seed=5,"
        " options={'size': 48}), shard_size=5, progress=False)\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert run.returncode == 9
    shards = sorted((out / "data").glob("*.parquet"))
    assert [p.name for p in shards] == ["train-00000-of-00003.parquet"]  # only the complete shard is there
    assert not (out / "README.md").exists()
    _build(out)  # rerun: skips the complete shard, writes the rest
    assert _digests(out) == _digests(_build(tmp_path / "straight"))
    assert len(load_dataset(str(out), split="train")) == 12


def test_build_dataset_cli_and_contact_sheet(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    lavida = [sys.executable, "-m", "lavida.cli"]
    built = tmp_path / "cli"
    run = subprocess.run(lavida + ["build-dataset", "synthetic", "--out", str(built), "--num-samples", "6",
                                   "--size", "48", "--clip-length", "2"], capture_output=True, text=True, env=env,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    sheet = tmp_path / "sheet.png"
    run = subprocess.run(lavida + ["contact-sheet", str(built), "--out", str(sheet), "--samples", "3"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    from PIL import Image

    image = np.asarray(Image.open(sheet))
    assert image.shape[0] >= 3 * 160 and (image == (255, 40, 200)).all(axis=-1).any()  # mask outlines drawn
    missing = subprocess.run(lavida + ["build-dataset", "mevis", "--out", str(tmp_path / "m")], capture_output=True,
                             text=True, env=env, timeout=300)
    assert missing.returncode == 2 and "--data-root" in missing.stderr and "Traceback" not in missing.stderr
    layout = subprocess.run(lavida + ["build-dataset", "mevis", "--data-root", str(tmp_path), "--out",
                                      str(tmp_path / "m")], capture_output=True, text=True, env=env, timeout=300)
    assert layout.returncode == 2 and "Expected" in layout.stderr and "Traceback" not in layout.stderr


def test_synthetic_vad_dataset_round_trip(tmp_path):
    from lavida.dataset_builders.synthetic_vad import SyntheticVADConfig, decode_mask_png, render_vad_video, \
        write_vad_dataset

    config = SyntheticVADConfig(size=48, min_frames=8, max_frames=12)
    write_vad_dataset(tmp_path / "vad", num_videos=3, split="test", config=config)
    dataset = load_dataset(str(tmp_path / "vad"), split="test")
    assert len(dataset) == 3
    row, video = dataset[1], render_vad_video(1, "test", config)
    assert row["frame_labels"] == video.frame_labels.tolist()
    assert np.array_equal(np.stack([decode_mask_png(m) for m in row["masks"]]), video.masks)
