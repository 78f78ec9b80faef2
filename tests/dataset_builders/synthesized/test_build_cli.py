"""`lavida build-dataset synthesized` writes a corpus in the common schema."""

from __future__ import annotations

import numpy as np

from lavida.dataset_builders.corpus_loading import load_built_corpus
from lavida.cli import main
from lavida.processing.video_io import write_video


def test_build_dataset_synthesized_copy_paste(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "street.mp4", np.random.default_rng(0).integers(80, 160, (24, 64, 64, 3), dtype=np.uint8),
                fps=10)
    out = tmp_path / "synthesized-corpus"
    code = main(["build-dataset", "synthesized", "--normal-videos", str(videos), "--objects", "synthetic",
                 "--method", "copy-paste", "--out", str(out), "--num-samples", "3", "--clip-length", "8"])
    assert code == 0
    dataset = load_built_corpus(out, split="train")
    assert len(dataset) == 3 and set(dataset["source"]) == {"synthesized"}
    for row in dataset:
        assert len(row["frames"]) == 8 and row["is_anomalous"] == any(row["frame_labels"])
