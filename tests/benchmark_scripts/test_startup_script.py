"""The start-up benchmark's children report honest marks, and ``lavida detect`` reaches its first frame without the
large packages only other commands or later steps need."""

from __future__ import annotations

from benchmarks import startup
from benchmarks.common import write_synthetic_video

# Imported by other commands (evaluate, train, demo) or after the first frame (scores.png): ``lavida detect`` must not
# pay for them before it decodes.
NOT_NEEDED_BEFORE_THE_FIRST_FRAME = ("matplotlib", "sklearn", "pandas", "datasets", "peft", "gradio", "diffusers",
                                     "trl", "evaluate", "deepspeed")


def test_timed_step_times_the_step_after_its_prelude():
    figures = startup.time_step("import json", "import xml.dom.minidom", None, "a stdlib import")
    assert set(figures) == {"wall_s", "prelude_s", "step_s", "modules"}
    assert 0 <= figures["step_s"] < figures["wall_s"] and 0 <= figures["prelude_s"] < figures["wall_s"]
    assert figures["modules"] > 1


def test_detect_reaches_its_first_frame_without_optional_packages(tmp_path):
    video = write_synthetic_video(tmp_path / "clip.mp4", num_frames=16, height=48, width=64)
    config = startup.StartupConfig(frames=16, height=48, width=64)
    figures = startup.time_detect(video, tmp_path / "out", config, tmp_path / "marks.json")
    assert 0 < figures["first_frame_s"] < figures["wall_s"]
    loaded = set(figures["loaded_at_first_frame"])
    assert {"torch", "transformers", "av"} <= loaded  # the hook saw the real decoding pass, after the model load
    assert not loaded & set(NOT_NEEDED_BEFORE_THE_FIRST_FRAME), sorted(loaded)
    assert not (tmp_path / "out").exists()  # the benchmark leaves no results behind
