"""``lavida detect`` when the system refuses a write (disk full, device busy): one line per failed video, the other
videos go on, index.json records every outcome, nothing half-written stays behind."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np
import pytest

from lavida.cli import main
from lavida.processing.distributed_detect import INDEX_JSON
from lavida.processing.video_io import write_video


@pytest.fixture(scope="module")
def two_videos(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("videos")
    rng = np.random.default_rng(0)
    for name in ("first", "second"):
        write_video(folder / f"{name}.mp4", rng.integers(0, 255, (9, 32, 48, 3), dtype=np.uint8), fps=10.0)
    return sorted(folder.iterdir())


def _error_lines(stderr: str) -> list[str]:
    """The CLI's error lines (stderr also carries the progress bars of the weight loading)."""
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.replace("\r", "\n").splitlines() if line.startswith("lavida detect: error: ")]


def _detect(videos: list[Path], out: Path, checkpoint: Path) -> int:
    return main(["detect", *map(str, videos), "--anomalies", "fire", "--model", str(checkpoint), "--out", str(out),
                 "--no-overlay", "--device", "cpu"])


def test_a_full_disk_fails_one_video_and_the_others_go_on(two_videos, tiny_lavida_checkpoint, tmp_path, monkeypatch,
                                                           capsys):
    from lavida.processing import result_writers

    real = result_writers.write_scores_csv

    def disk_full_for_the_first(path, detection, decimals):
        real(path, detection, decimals)  # half of the folder is written when the disk fills up
        if detection.name == "first.mp4":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(result_writers, "write_scores_csv", disk_full_for_the_first)
    out = tmp_path / "out"
    assert _detect(two_videos, out, tiny_lavida_checkpoint) == 2  # some inputs failed
    captured = capsys.readouterr()
    errors = _error_lines(captured.err)
    assert len(errors) == 1
    assert str(two_videos[0]) in errors[0] and "No space left on device" in errors[0]
    assert "second.mp4" in captured.out  # its summary line
    assert sorted(path.name for path in out.iterdir()) == [INDEX_JSON, "second"]  # no partial folder of "first"
    index = json.loads((out / INDEX_JSON).read_text())
    assert [entry["status"] for entry in index["videos"]] == ["error", "ok"]
    assert "No space left on device" in index["videos"][0]["error"] and index["num_failed"] == 1
    assert (out / "second" / "result.json").is_file()


def test_an_index_that_cannot_be_written_is_one_line_and_a_failed_run(two_videos, tiny_lavida_checkpoint, tmp_path,
                                                                      monkeypatch, capsys):
    from lavida.processing import distributed_detect

    def busy(path, payload, **kwargs):
        raise OSError(errno.EBUSY, "Device or resource busy", str(path))

    monkeypatch.setattr(distributed_detect, "write_json_atomic", busy)
    out = tmp_path / "out"
    status = _detect(two_videos[:1], out, tiny_lavida_checkpoint)
    captured = capsys.readouterr()
    assert status == 1
    errors = _error_lines(captured.err)
    assert len(errors) == 1
    assert INDEX_JSON in errors[0] and "Device or resource busy" in errors[0]
    assert sorted(path.name for path in out.iterdir()) == ["first"]  # the video's results are kept
