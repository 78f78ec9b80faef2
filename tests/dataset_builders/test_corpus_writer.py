"""Corpus building: deterministic shards, load_dataset round trip, publishing, resume after a kill, CLI, sheet."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from datasets import load_dataset

from lavida.dataset_builders.corpus_loading import load_built_corpus
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
    a = _build(tmp_path / "loaded-by-plain-load-dataset")  # a name no other test uses: see load_built_corpus
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


def test_a_corpus_rebuilt_in_place_loads_its_new_rows_not_a_stale_cache(tmp_path):

    folder = tmp_path / "corpus"
    _build(folder, count=4, seed=1)
    first = load_built_corpus(folder)
    shutil.rmtree(folder)
    _build(folder, count=6, seed=2)
    second = load_built_corpus(folder)
    assert (len(first), len(second)) == (4, 6)
    assert second.features["frames"] == first.features["frames"]  # Image features survive the parquet route
    assert second[0]["names"] == SyntheticTrainingCorpus(num_samples=6, seed=2, world={"size": 48, "clip_length": 2})[0]["names"]


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
    reloaded = load_built_corpus(hub / "me" / "lavida-synthetic", split="train")
    assert len(reloaded) == 12 and reloaded[3]["names"] == load_built_corpus(built, split="train")[3]["names"]


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
    assert len(load_built_corpus(out, split="train")) == 12


def test_build_dataset_cli_and_contact_sheet(tmp_path, capsys):
    from PIL import Image

    from lavida.cli import main

    built = tmp_path / "cli"
    assert main(["build-dataset", "synthetic", "--out", str(built), "--num-samples", "6", "--size", "48",
                 "--clip-length", "2"]) == 0
    sheet = tmp_path / "sheet.png"
    assert main(["contact-sheet", str(built), "--out", str(sheet), "--samples", "3"]) == 0
    image = np.asarray(Image.open(sheet))
    assert image.shape[0] >= 3 * 160 and (image == (255, 40, 200)).all(axis=-1).any()  # mask outlines drawn
    capsys.readouterr()
    assert main(["build-dataset", "mevis", "--out", str(tmp_path / "m")]) == 2
    assert "--data-root" in capsys.readouterr().err
    assert main(["build-dataset", "mevis", "--data-root", str(tmp_path), "--out", str(tmp_path / "m")]) == 2
    assert "Expected" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_mix_interleaves_built_corpora_with_the_yaml_probabilities(tmp_path, capsys):
    from lavida.cli import main
    from lavida.dataset_builders.corpus_loading import load_mixed_corpus, read_mix

    a = _build(tmp_path / "corpora" / "a", count=10, seed=1, shard_size=10)
    b = _build(tmp_path / "corpora" / "b", count=10, seed=2, shard_size=10)
    names_a = {tuple(r["names"]) for r in load_built_corpus(a, split="train")}
    names_b = {tuple(r["names"]) for r in load_built_corpus(b, split="train")}
    mix = tmp_path / "configs" / "mix.yaml"
    mix.parent.mkdir()
    mix.write_text("seed: 3\nsources:\n  - {path: ../corpora/a, probability: 0.3}\n"
                   "  - {path: ../corpora/b, probability: 0.1}\n")
    sources, probabilities, seed = read_mix(mix)
    assert sources == [str(a), str(b)] and probabilities == pytest.approx([0.75, 0.25]) and seed == 3
    mixed = load_mixed_corpus(mix)
    drawn = [tuple(r["names"]) for r in mixed]
    from_a = sum(n in names_a for n in drawn)
    assert set(drawn) == names_a | names_b  # all_exhausted: every row of both corpora is seen
    assert from_a > 2 * (len(drawn) - from_a)  # corpus a is drawn about three times as often
    assert [tuple(r["names"]) for r in load_mixed_corpus(mix)] == drawn  # seeded
    out = tmp_path / "mixed"
    assert main(["build-dataset", "mix", "--mix", str(mix), "--out", str(out), "--num-samples", "8"]) == 0
    rows = load_built_corpus(out, split="train")
    assert [tuple(r["names"]) for r in rows] == drawn[:8]
    ended = tmp_path / "ended"  # asks for more rows than the mix holds: the build stops when it runs out
    assert main(["build-dataset", "mix", "--mix", str(mix), "--out", str(ended), "--num-samples", "1000",
                 "--shard-size", "8"]) == 0
    shards = sorted(p.name for p in (ended / "data").glob("*.parquet"))
    total = -(-len(drawn) // 8)
    assert shards == [f"train-{i:05d}-of-{total:05d}.parquet" for i in range(total)]
    assert len(load_built_corpus(ended, split="train")) == len(drawn)
    capsys.readouterr()
    assert main(["build-dataset", "mix", "--out", str(out)]) == 2 and "--mix" in capsys.readouterr().err


def test_synthetic_vad_dataset_round_trip(tmp_path):
    from lavida.dataset_builders.synthetic_vad import SyntheticVADConfig, decode_mask_png, render_vad_video, \
        write_vad_dataset

    config = SyntheticVADConfig(size=48, min_frames=8, max_frames=12)
    write_vad_dataset(tmp_path / "vad", num_videos=3, split="test", config=config)
    dataset = load_built_corpus(tmp_path / "vad", split="test")
    assert len(dataset) == 3
    row, video = dataset[1], render_vad_video(1, "test", config)
    assert row["frame_labels"] == video.frame_labels.tolist()
    assert np.array_equal(np.stack([decode_mask_png(m) for m in row["masks"]]), video.masks)
