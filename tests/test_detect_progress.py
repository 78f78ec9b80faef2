"""``lavida detect`` without a terminal (output to a file or a pipe, as under CI): plain progress lines."""

from __future__ import annotations

import re

import numpy as np
import pytest

from lavida.cli import main
from lavida.processing.video_io import write_video

LINE = r"(?m)^{what} (\d+) % \((\d+)/(\d+) frames\), \d+\.\d s elapsed$"


@pytest.fixture(scope="module")
def two_videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    rng = np.random.default_rng(1)
    for name in ("first", "second"):
        write_video(folder / f"{name}.mp4", rng.integers(0, 255, (12, 32, 48, 3), dtype=np.uint8), fps=10.0)
    return sorted(folder.iterdir())


def test_detect_writes_progress_lines_when_its_output_is_not_a_terminal(two_videos, tiny_lavida_checkpoint,
                                                                         tmp_path, capsys):
    status = main(["detect", *map(str, two_videos), "--anomalies", "fire", "--model", str(tiny_lavida_checkpoint),
                   "--out", str(tmp_path / "out"), "--device", "cpu"])
    err = capsys.readouterr().err  # captured: not a terminal
    assert status == 0
    mentions = [line for line in err.split("\n") if "first.mp4" in line or "second.mp4" in line]
    assert mentions and not any("\r" in line for line in mentions)  # plain lines, no bar redrawn in place
    for position, name in enumerate(("first.mp4", "second.mp4"), start=1):
        scoring = re.findall(LINE.format(what=re.escape(f"video {position}/2 {name}: scoring")), err)
        overlay = re.findall(LINE.format(what=re.escape(f"{name}: overlay")), err)
        for lines in (scoring, overlay):
            assert lines, err
            assert lines[-1] == ("100", "12", "12")  # the last line says the work is done
            percents = [int(percent) for percent, _, _ in lines]
            assert percents == sorted(set(percents))  # each step once, in order
