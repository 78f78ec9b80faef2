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


@pytest.fixture(scope="module")
def naming_service(tmp_path_factory):
    """The service around a model that scores each anomaly name (``frame_score="name_grounding"``)."""
    import torch

    from lavida import LavidaConfig, LavidaForVideoAnomalyDetection
    from lavida.processing.factories import build_tiny_processor
    from lavida.space.service import DetectionService

    torch.manual_seed(0)
    model = LavidaForVideoAnomalyDetection(LavidaConfig.tiny(frame_score="name_grounding",
                                                              initializer_range=0.2)).eval()
    settings = SpaceSettings(model="naming-test", work_dir=str(tmp_path_factory.mktemp("naming")),
                             max_duration_s=3.0, max_upload_mb=1.0)
    return DetectionService(settings, model, build_tiny_processor())


def test_the_events_table_names_each_events_anomaly(naming_service, service, videos):
    from lavida.space.service import EVENT_COLUMNS

    column = EVENT_COLUMNS.index("anomaly")
    result = naming_service.run(videos["walk"], "red square, fighting", 1, 0.0)
    saved = json.loads(result.result_json.read_text())["events"]
    assert saved and [row[column] for row in result.events] == [event["anomaly"] for event in saved]
    assert {row[column] for row in result.events} <= {"red square", "fighting"}
    plain = service.run(videos["walk"], "fighting", 1, 0.0)  # a model that scores no names names no anomaly
    assert plain.events and all(row[column] == "" for row in plain.events)


def _calibration_file(path: Path, anomalies: list[str]) -> Path:
    from lavida.processing.calibration import Calibration, CalibrationTarget, FalseAlarms, FittedOn

    Calibration(threshold=0.37, min_event_frames=3, smoothing_sigma=1.5,
                target=CalibrationTarget(false_alarms_per_hour=1.0), reached=FalseAlarms(0, 0.0, 0.0),
                fitted_on=FittedOn(num_videos=1, num_frames=100, hours=0.001, model_id="tiny-test",
                                   anomalies=anomalies)).save(path)
    return path


def test_a_calibration_file_gives_the_request_its_settings_and_is_recorded_by_name(service, videos, tmp_path):
    calibration = _calibration_file(tmp_path / "site calibration.json", ["fighting"])
    result = service.run(videos["walk"], "fighting", 1, 0.9, calibration=str(calibration))  # the slider gives way
    content = json.loads(result.result_json.read_text())
    assert content["threshold"] == 0.37
    assert (content["settings"]["min_event_frames"], content["settings"]["smoothing_sigma"]) == (3, 1.5)
    record = content["settings"]["calibration"]
    assert record["file"] == "site calibration.json" and str(tmp_path) not in json.dumps(content)
    assert "calibration" not in result.summary  # made for this model and these names: nothing to warn about

    other = _calibration_file(tmp_path / "other.json", ["fire"])
    noted = service.run(videos["walk"], "fighting", 1, 0.9, calibration=str(other))
    assert "calibration other.json: it was made for the anomaly names 'fire'" in noted.summary

    (tmp_path / "notes.json").write_text("{}")
    with pytest.raises(UserInputError, match="notes.json is not a calibration file") as caught:
        service.run(videos["walk"], "fighting", 1, 0.5, calibration=str(tmp_path / "notes.json"))
    assert str(tmp_path) not in str(caught.value)


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


def test_the_app_queue_takes_its_size_and_concurrency_from_the_settings(tmp_path):
    """A Space left with an unbounded queue would pile up requests instead of answering "queue full"."""
    from lavida.space.app import build_app

    class NoModel:  # build_app only needs the service's model id and request handler
        model_id = "no-model"

        def run(self, *args, **kwargs):
            raise AssertionError("no request is made")

    settings = SpaceSettings(work_dir=str(tmp_path), max_queue_size=5, concurrency_limit=3, keep_results=3)
    app = build_app(settings, service=NoModel())
    queue = app._queue  # gradio keeps the queue's settings on it
    assert (queue.max_size, queue.default_concurrency_limit) == (5, 3)
    detect = next(fn for fn in app.fns.values() if fn.api_name == "detect")
    assert detect.concurrency_limit == 3


# -- limits on the work a request causes ----------------------------------------------------------------------------


def test_frame_and_pixel_limits_come_from_the_environment_and_show_in_the_page():
    from lavida.space.app import _intro

    settings = SpaceSettings.from_env({"LAVIDA_SPACE_MAX_FRAMES": "900", "LAVIDA_SPACE_MAX_PIXELS": "921600"})
    assert (settings.max_frames, settings.max_pixels) == (900, 1280 * 720)
    assert (SpaceSettings().max_frames, SpaceSettings().max_pixels) == (3600, 1920 * 1080)
    intro = _intro(SpaceSettings(), "some/model")
    assert "**3600 frames**" in intro and "**2.1 megapixels** a frame" in intro
    with pytest.raises(UserInputError, match="max_frames must be at least 1"):
        SpaceSettings.from_env({"LAVIDA_SPACE_MAX_FRAMES": "0"})


def _limited_service(reference_model, tmp_path, **limits):
    from lavida.space.service import DetectionService

    settings = SpaceSettings(model="tiny-test", work_dir=str(tmp_path), max_duration_s=3.0, max_upload_mb=1.0,
                             **limits)
    return DetectionService(settings, *reference_model)


@pytest.mark.parametrize("limits, message", [
    ({"max_frames": 10}, "walk.mp4 has 16 frames; this demo accepts videos of up to 10 frames"),
    ({"max_pixels": 64 * 80 - 1}, "walk.mp4 is 80x64 (0.0 megapixels a frame); this demo accepts frames up to"),
])
def test_too_many_frames_or_pixels_are_refused_before_decoding(reference_model, videos, tmp_path, limits, message):
    service = _limited_service(reference_model, tmp_path, **limits)

    def no_detection(*args, **kwargs):
        raise AssertionError("the video was decoded")

    service.detector = no_detection
    with pytest.raises(UserInputError, match=re.escape(message)):
        service.run(videos["walk"], "fire", 1, 0.5)
    assert not (tmp_path / "results").exists()


def test_frames_beyond_the_limit_stop_a_video_that_declares_no_count(reference_model, tmp_path):
    """A raw H.264 stream declares neither frames nor duration: the limit is enforced while decoding."""
    import av
    import numpy as np

    from lavida.processing.video_io import read_header

    path = tmp_path / "stream.h264"
    with av.open(str(path), mode="w", format="h264") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for index in range(48):
            image = np.full((32, 32, 3), index * 5, dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    assert read_header(path).num_frames is None
    service = _limited_service(reference_model, tmp_path / "work", max_frames=20)
    scored = []
    with pytest.raises(UserInputError, match=r"stream\.h264 has more than 20 frames"):
        service.run(path, "fire", 1, 0.5, progress=lambda fraction, text: scored.append(text))
    assert len(scored) < 4  # stopped after the batch that crossed the limit, not at the end (48 frames)
    assert not (tmp_path / "work" / "results").exists() or not any((tmp_path / "work" / "results").iterdir())


def test_a_cancelled_request_stops_at_its_next_batch(reference_model, videos, tmp_path):
    from lavida.space.service import RequestCancelled

    service = _limited_service(reference_model, tmp_path, clip_batch_size=1)
    scored = []

    def progress(fraction, text):
        if text.startswith("Scoring"):
            scored.append(text)

    with pytest.raises(RequestCancelled):
        service.run(videos["walk"], "fire", 1, 0.5, progress=progress, cancelled=lambda: bool(scored))
    assert scored == ["Scoring frames (8/16)"]  # the second clip was never scored
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())


# -- what visitors see, and where files go ----------------------------------------------------------------------------


def test_visitor_messages_carry_no_server_paths():
    from lavida.space.service import visitor_message

    upload = "/srv/uploads/0a1b2c/odd size.mp4"
    assert visitor_message(f"Video {upload} is damaged", upload) == "Video odd size.mp4 is damaged"
    text = "FileNotFoundError: [Errno 2] No such file or directory: '/srv/space/results/x-1/overlay.mp4'"
    assert visitor_message(text) == "FileNotFoundError: [Errno 2] No such file or directory: 'overlay.mp4'"
    assert visitor_message(r"cannot read C:\Users\me\clip.mp4") == "cannot read clip.mp4"
    assert visitor_message("threshold must be in [0, 1]; rate 30000/1001") == \
        "threshold must be in [0, 1]; rate 30000/1001"


def test_a_failed_request_shows_no_server_path(tmp_path):
    import gradio as gr

    from lavida.space.app import _handler

    upload = tmp_path / "uploads" / "clip.mp4"

    class FailingService:
        def run(self, video, *args, **kwargs):
            raise RuntimeError(f"decoder crashed on {video} while writing {tmp_path}/results/x/overlay.mp4")

    with pytest.raises(gr.Error) as caught:
        list(_handler(FailingService(), tmp_path)(str(upload), "fire", 1, 0.5))
    shown = caught.value.message
    assert "decoder crashed on clip.mp4" in shown and "overlay.mp4" in shown
    assert str(tmp_path) not in shown and "/" not in shown.split("(", 1)[1]


def test_the_default_work_dir_is_private_to_the_user(tmp_path, monkeypatch):
    import os
    import stat
    import tempfile

    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path))
    settings = SpaceSettings()
    root = settings.prepare_root()
    assert root.parent == tmp_path and root.name == f"lavida-space-{os.getuid()}"
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert settings.prepare_root() == root  # reused as it is

    root.chmod(0o755)  # readable by others: uploads and results would be
    with pytest.raises(UserInputError, match=r"is open to other users \(mode 755\).*LAVIDA_SPACE_WORK_DIR"):
        settings.prepare_root()
    root.chmod(0o700)
    monkeypatch.setattr(os, "getuid", lambda: os.geteuid() + 1)  # as if another user had made it first
    with pytest.raises(UserInputError, match="belongs to another user"):
        SpaceSettings().prepare_root()
    monkeypatch.undo()

    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path / "elsewhere"))
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / f"lavida-space-{os.getuid()}").symlink_to(root)  # planted link
    with pytest.raises(UserInputError, match="is not a folder"):
        SpaceSettings().prepare_root()


def test_a_chosen_work_dir_must_not_be_writable_by_others(tmp_path):
    chosen = tmp_path / "space"
    assert SpaceSettings(work_dir=str(chosen)).prepare_root() == chosen  # created
    chosen.chmod(0o755)
    assert SpaceSettings(work_dir=str(chosen)).prepare_root() == chosen  # readable is the owner's choice
    chosen.chmod(0o777)
    with pytest.raises(UserInputError, match="is open to other users"):
        SpaceSettings(work_dir=str(chosen)).prepare_root()


@pytest.mark.parametrize("leave", ["close", "stop asking"])
def test_the_detection_stops_when_the_page_stops_asking_for_the_request(tmp_path, leave):
    """Gradio closes (or simply stops iterating) a request whose visitor has gone; the detection must then stop."""
    import threading
    import time

    from lavida.space.app import ABANDONED_AFTER_S, _handler
    from lavida.space.service import RequestCancelled

    stopped = threading.Event()

    class EndlessService:
        def run(self, video, anomalies, stride, threshold, progress=None, cancelled=None, calibration=None):
            while not cancelled():
                progress(0.5, "Scoring frames")
                time.sleep(0.01)
            stopped.set()
            raise RequestCancelled("gone")

    request = _handler(EndlessService(), tmp_path)("clip.mp4", "fire", 1, 0.5)
    next(request)  # the first "no change" update: the detection is running
    assert not stopped.wait(0.2)
    if leave == "close":
        request.close()
        assert stopped.wait(5.0)
    else:  # the generator is neither asked for more nor closed
        assert stopped.wait(ABANDONED_AFTER_S + 5.0)
