"""The Space's parts without a server: settings, presets, examples, the request service, the Space files, the CLI."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
import yaml

from lavida.errors import UserInputError
from lavida.space.settings import SpaceSettings

SPACE_DIR = Path(__file__).resolve().parents[2] / "space"
SETUP_PY = Path(__file__).resolve().parents[2] / "setup.py"


# -- settings -------------------------------------------------------------------------------------------------------


def test_settings_from_environment_and_overrides():
    environ = {"LAVIDA_MODEL": " some/model ", "LAVIDA_SPACE_MAX_UPLOAD_MB": "12.5",
               "LAVIDA_SPACE_CONCURRENCY_LIMIT": "3", "LAVIDA_SPACE_WORK_DIR": "/data/space",
               "LAVIDA_SPACE_MAX_DURATION_S": ""}
    settings = SpaceSettings.from_env(environ, max_queue_size=7, device=None)
    assert (settings.model, settings.max_upload_mb, settings.concurrency_limit, settings.max_queue_size) == (
        "some/model", 12.5, 3, 7)
    assert settings.max_duration_s == SpaceSettings().max_duration_s  # blank = unset
    assert settings.max_upload_bytes == int(12.5 * 2**20) and settings.root == Path("/data/space")
    assert SpaceSettings.from_env({}).model is None  # the embedded default


@pytest.mark.parametrize("environ, message", [
    ({"LAVIDA_SPACE_MAX_UPLOAD_MB": "ten"}, "LAVIDA_SPACE_MAX_UPLOAD_MB='ten' is not a valid float"),
    ({"LAVIDA_SPACE_CONCURRENCY_LIMIT": "0"}, "concurrency_limit must be at least 1"),
    ({"LAVIDA_SPACE_MAX_DURATION_S": "nan"}, "max_duration_s must be a positive number"),
    ({"LAVIDA_SPACE_DEFAULT_THRESHOLD": "1.5"}, "default_threshold must be between 0 and 1"),
    ({"LAVIDA_SPACE_CONCURRENCY_LIMIT": "8", "LAVIDA_SPACE_KEEP_RESULTS": "4"}, "keep_results"),
])
def test_bad_settings_name_the_variable_or_field(environ, message):
    with pytest.raises(UserInputError, match=re.escape(message)):
        SpaceSettings.from_env(environ)


# -- presets --------------------------------------------------------------------------------------------------------


def test_presets_hold_the_benchmark_prompts_and_the_held_out_shapes():
    from lavida.space.presets import CUSTOM_PRESET, PRESETS, SYNTHETIC_PRESET, matching_preset, preset_text

    colours = ["red", "green", "blue", "yellow", "purple", "orange", "white", "black"]
    shapes = ["circle", "square", "triangle", "star", "hexagon", "cross", "ring", "diamond"]
    held_out = {f"{c} {s}" for i, c in enumerate(colours) for j, s in enumerate(shapes) if (i + j) % 4 == 0}
    assert len(held_out) == 16 and set(PRESETS[SYNTHETIC_PRESET]) == held_out
    assert {label: len(names) for label, names in PRESETS.items() if label != SYNTHETIC_PRESET} == {
        "UCF-Crime": 13, "ShanghaiTech": 18, "XD-Violence": 6, "UBnormal": 20, "UCSD Ped": 5}
    assert preset_text("UCSD Ped") == "car, cart, wheelchair, skate, bicycle"
    assert matching_preset(" Car,cart , wheelchair, skate, bicycle") == "UCSD Ped"
    assert matching_preset("car, cart") == CUSTOM_PRESET


# -- examples -------------------------------------------------------------------------------------------------------


def test_examples_are_rendered_once_one_with_a_visible_anomaly(tmp_path):
    from lavida.dataset_builders.synthetic_world import HELD_OUT_NAMES, TRAINING_NAMES
    from lavida.processing.video_io import probe_video
    from lavida.space.examples import ensure_examples

    examples = ensure_examples(tmp_path, num_frames=24)
    assert [e.video.name for e in examples] == ["held-out-crossing.mp4", "normal-scene.mp4"]
    assert sorted(p.name for p in examples[0].video.parent.iterdir()) == [
        "examples.json", "held-out-crossing.labels.json", "held-out-crossing.mp4", "normal-scene.labels.json",
        "normal-scene.mp4"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging folder left
    for example in examples:
        info = probe_video(example.video)
        assert (info.num_frames, info.width, info.height) == (24, 256, 256)
        assert example.row()[1:] == [example.anomalies, 1, 0.5]
        assert example.anomalies.split(", ") == list(HELD_OUT_NAMES)
    anomalous, normal = (json.loads(e.video.with_suffix(".labels.json").read_text()) for e in examples)
    assert len(anomalous["anomalies"]) == 1 and anomalous["anomalies"][0] in HELD_OUT_NAMES
    assert sum(anomalous["frame_labels"]) >= 24 // 4  # visible for a good stretch
    assert normal["anomalies"] == [] and sum(normal["frame_labels"]) == 0
    assert set(normal["normal_objects"]) <= set(TRAINING_NAMES)
    stamp = examples[0].video.stat().st_mtime_ns
    assert ensure_examples(tmp_path, num_frames=24)[0].video.stat().st_mtime_ns == stamp  # reused, not re-rendered


# -- the request service --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def service(reference_model, tmp_path_factory):
    from lavida.space.service import DetectionService

    settings = SpaceSettings(model="tiny-test", work_dir=str(tmp_path_factory.mktemp("service")), max_duration_s=3.0,
                             max_upload_mb=1.0, keep_results=2)
    return DetectionService(settings, *reference_model)


def test_service_writes_the_four_files_and_reports_progress(service, videos):
    seen = []
    result = service.run(videos["walk"], "fighting", 2, 0.5, progress=lambda f, text: seen.append((f, text)))
    assert sorted(p.name for p in result.folder.iterdir()) == ["overlay.mp4", "result.json", "scores.csv",
                                                               "scores.png"]
    assert result.overlay == result.folder / "overlay.mp4"  # even size: no browser copy needed
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0
    assert any(text.startswith("Scoring frames") for _, text in seen)
    assert json.loads(result.result_json.read_text())["model_id"] == "tiny-test"


def test_service_reads_the_upload_twice_to_score_and_to_draw_the_overlay(service, videos, monkeypatch):
    import av

    reads = []
    original = av.open

    def counting(target, *args, **kwargs):
        if kwargs.get("mode", "r") == "r":
            reads.append(Path(str(target)).name)
        return original(target, *args, **kwargs)

    monkeypatch.setattr(av, "open", counting)
    service.run(videos["walk"], "fighting", 1, 0.5)
    assert reads == ["walk.mp4", "walk.mp4"]  # the header check and scoring share one open; the overlay reads again


def test_service_keeps_only_the_newest_result_folders(service):
    folders = []
    for _ in range(3):
        folders.append(service._new_request_folder())
        (folders[-1] / "scores.csv").write_text("frame\n")
    assert [folder.exists() for folder in folders] == [False, True, True]  # keep_results=2


@pytest.mark.parametrize("key, anomalies, stride, threshold, message", [
    (None, "fire", 1, 0.5, "No video: upload one"),
    ("text", "fire", 1, 0.5, "notes.txt could not be opened as a video"),
    ("long", "fire", 1, 0.5, "long.mp4 is 4.0 s long; this demo accepts videos up to 3 s"),
    ("big", "fire", 1, 0.5, "big.mp4 is 1.5 MB; this demo accepts videos up to 1 MB"),
    ("walk", "", 1, 0.5, "No anomaly names"),
    ("walk", "fire", 1.5, 0.5, "Stride must be a whole number of frames from 1 to 32"),
    ("walk", "fire", 1, -0.1, "threshold must be a number in [0, 1], got -0.1"),
])
def test_service_rejects_bad_inputs_with_one_clear_message(service, videos, key, anomalies, stride, threshold,
                                                           message):
    with pytest.raises(UserInputError, match=re.escape(message)) as caught:
        service.run(videos[key] if key else None, anomalies, stride, threshold)
    assert "/" not in str(caught.value).split(":")[0]  # names the file, not its server path


# -- the Space files and the demo command ---------------------------------------------------------------------------


def test_space_card_front_matter():
    import gradio

    text = (SPACE_DIR / "README.md").read_text(encoding="utf-8")
    card = yaml.safe_load(text.split("---\n")[1])
    assert card["sdk"] == "gradio" and card["sdk_version"] == gradio.__version__
    assert (SPACE_DIR / card["app_file"]).is_file()
    assert card["license"] == "mit" and card["models"] and card["datasets"]
    assert 0 < len(card["short_description"]) <= 60  # the Hub's limit


def test_space_requirements_match_setup_pins():
    tree = ast.parse(SETUP_PY.read_text(encoding="utf-8"))
    install = next(node.value for node in ast.walk(tree) if isinstance(node, ast.Assign)
                   and any(getattr(t, "id", None) == "INSTALL_REQUIRES" for t in node.targets))
    pins = dict(item.split("==") for item in ast.literal_eval(install) if "==" in item)
    version = re.search(r'version="([^"]+)"', SETUP_PY.read_text(encoding="utf-8")).group(1)
    lines = [line.strip() for line in (SPACE_DIR / "requirements.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    required = dict(line.split("==") if "==" in line else (line, None) for line in lines)
    assert required.pop("lavida-hf") == version
    for name, pin in required.items():
        assert pin is None or pins.get(name) == pin, f"{name}=={pin} differs from setup.py's {pins.get(name)}"


def test_demo_command_launches_the_app_with_flags_over_environment(monkeypatch, tmp_path):
    from lavida import cli
    from lavida.space import app

    launched = {}
    monkeypatch.setattr(app, "launch", lambda settings, **kwargs: launched.update(settings=settings, **kwargs))
    monkeypatch.setenv("LAVIDA_MODEL", "from/env")
    monkeypatch.setenv("LAVIDA_SPACE_MAX_DURATION_S", "30")
    assert cli.main(["demo", "--port", "7999", "--max-upload-mb", "5", "--work-dir", str(tmp_path)]) == 0
    settings = launched["settings"]
    assert (settings.model, settings.max_duration_s, settings.max_upload_mb, settings.root) == (
        "from/env", 30.0, 5.0, tmp_path)
    assert (launched["server_name"], launched["server_port"]) == ("127.0.0.1", 7999)
    assert cli.main(["demo", "--model", "from/flag", "--port", "7999"]) == 0
    assert launched["settings"].model == "from/flag"


def test_demo_command_reports_a_missing_model_on_one_line(tmp_path, capsys):
    from lavida import cli

    assert cli.main(["demo", "--model", str(tmp_path / "nowhere"), "--work-dir", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("lavida demo: error: Cannot load checkpoint") and "\n" not in error
