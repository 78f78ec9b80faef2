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
    ({"LAVIDA_SPACE_TORCH_THREADS": "0"}, "torch_threads must be at least 1"),
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
def test_too_many_frames_or_pixels_are_refused_before_decoding(reference_model, videos, tmp_path, monkeypatch,
                                                              limits, message):
    from lavida.processing.pipeline_lavida import VideoAnomalyDetectionPipeline

    service = _limited_service(reference_model, tmp_path, **limits)

    def no_detection(*args, **kwargs):
        raise AssertionError("the video was decoded")

    monkeypatch.setattr(VideoAnomalyDetectionPipeline, "__call__", no_detection)
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


# -- the page's events ----------------------------------------------------------------------------------------------


class _RecordingService:
    """Stands in for ``DetectionService`` in the page: records each request and answers it with fixed file names."""

    model_id = "recording"

    def __init__(self, folder: Path):
        self.folder = folder
        self.calls: list[tuple] = []

    def run(self, video, anomalies, stride, threshold, progress=None, cancelled=None, calibration=None, keep=False):
        from lavida.space.service import SpaceResult

        self.calls.append((Path(video).name, anomalies, stride, threshold, calibration, keep))
        (self.folder / "result.json").write_text("{}")
        return SpaceResult(folder=self.folder, plot=self.folder / "scores.png", overlay=self.folder / "overlay.mp4",
                           result_json=self.folder / "result.json", scores_csv=self.folder / "scores.csv",
                           events=[[1, "", 0.0, 1.0, 0, 25, 0.9, 0.7]], summary=f"{Path(video).name}: 1 event")


def _components(app) -> dict[str, object]:
    return {block.elem_id: block for block in app.blocks.values() if getattr(block, "elem_id", None)}


def _triggered_by(app, component, event: str):
    """The one event handler ``component``'s ``event`` starts."""
    matches = [fn for fn in app.fns.values() if (component._id, event) in fn.targets]
    assert len(matches) == 1, f"{len(matches)} handlers of {component.elem_id or type(component).__name__}.{event}"
    return matches[0]


RESULT_IDS = ["score-plot", "overlay-video", "events", "downloads", "summary"]


def test_clicking_an_example_runs_it_once_and_shows_the_same_results_again(tmp_path):
    import gradio as gr

    from lavida.space.app import API_NAME, build_app
    from lavida.space.examples import ensure_examples

    service = _RecordingService(tmp_path)
    settings = SpaceSettings(work_dir=str(tmp_path / "work"))
    app = build_app(settings, service=service)
    dataset = next(block for block in app.blocks.values() if isinstance(block, gr.Dataset))
    load = _triggered_by(app, dataset, "click")  # fills in the inputs
    runs = [fn for fn in app.fns.values() if fn.trigger_after == load._id]
    assert len(runs) == 1, "an example click only loads the video"
    run = runs[0]
    assert [c.elem_id for c in run.inputs] == ["input-video", "names", "stride", "threshold", "calibration"]
    assert [c.elem_id for c in run.outputs] == RESULT_IDS
    detect = next(fn for fn in app.fns.values() if fn.api_name == API_NAME)
    assert run.queue and run.concurrency_id == detect.concurrency_id  # examples take the detections' slots

    example = ensure_examples(settings.root)[0]
    upload = tmp_path / "gradio-cache" / example.video.name  # the page hands the handler a copy of the example
    upload.parent.mkdir()
    upload.write_bytes(example.video.read_bytes())
    shown = [list(run.fn(str(upload), example.anomalies, example.stride, example.threshold, None))[-1]
             for _ in range(2)]
    assert service.calls == [(example.video.name, example.anomalies, example.stride, example.threshold, None, True)]
    for plot, overlay, table, files, summary in shown:  # the second click shows the first click's results
        assert (plot, overlay) == (str(tmp_path / "scores.png"), str(tmp_path / "overlay.mp4"))
        assert table.values.tolist() == [[1, "", 0.0, 1.0, 0, 25, 0.9, 0.7]]
        assert files == [str(tmp_path / "result.json"), str(tmp_path / "scores.csv")]
        assert "held-out-crossing.mp4: 1 event" in summary


def test_an_examples_result_is_detected_on_first_use_and_kept(service, tmp_path, monkeypatch):
    import shutil

    from lavida.processing.pipeline_lavida import VideoAnomalyDetectionPipeline
    from lavida.space.examples import ExampleResults, ensure_examples

    examples = ensure_examples(tmp_path / "examples", num_frames=16)
    requests = ExampleResults(service, examples)
    calls = []
    original = VideoAnomalyDetectionPipeline.__call__

    def counted(self, *args, **kwargs):
        calls.append(args[0])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(VideoAnomalyDetectionPipeline, "__call__", counted)
    upload = tmp_path / "upload" / examples[0].video.name
    upload.parent.mkdir()
    shutil.copy(examples[0].video, upload)
    values = examples[0].row()[1:]
    first = requests.run(str(upload), *values)
    assert len(calls) == 1 and requests.run(str(upload), *values).folder == first.folder and len(calls) == 1
    assert json.loads(first.result_json.read_text())["video"]["name"] == examples[0].video.name

    assert requests.run(str(upload), examples[0].anomalies, 1, 0.3).folder != first.folder  # another threshold
    renamed = upload.with_name("my clip.mp4")
    shutil.copy(upload, renamed)  # the same pixels under another name: result.json must name this file
    assert json.loads(requests.run(str(renamed), *values).result_json.read_text())["video"]["name"] == "my clip.mp4"
    assert len(calls) == 3
    for _ in range(service.settings.keep_results + 1):  # newer requests remove the oldest request folders...
        service._new_request_folder()
    assert first.result_json.is_file()  # ... but not an example's
    assert requests.run(str(upload), *values).folder == first.folder and len(calls) == 3


def test_a_failed_request_clears_the_previous_results_from_the_page(tmp_path):
    import gradio as gr

    from lavida.space.app import _handler

    class FailingService:
        def run(self, video, *args, **kwargs):
            raise UserInputError(f"{video} could not be opened as a video")

    updates = []
    with pytest.raises(gr.Error, match="clip.mp4 could not be opened"):
        for update in _handler(FailingService(), tmp_path)("clip.mp4", "fire", 1, 0.5):
            updates.append(update)
    assert updates, "the previous run's plot, overlay, events and files stay on the page under the error"
    plot, overlay, table, files, summary = updates[-1]
    assert (plot, overlay, files, summary) == (None, None, None, "")
    assert table.empty


def test_a_new_request_clears_the_previous_results_before_it_runs(tmp_path):
    from lavida.space.app import _handler

    first, *_, last = _handler(_RecordingService(tmp_path), tmp_path)("clip.mp4", "fire", 1, 0.5)
    assert first[:2] == (None, None) and first[2].empty and first[3:] == (None, "")
    assert last[0] == str(tmp_path / "scores.png")


def test_names_edited_away_from_the_preset_show_custom(tmp_path):
    import gradio as gr

    from lavida.space.app import build_app
    from lavida.space.presets import CUSTOM_PRESET, preset_text

    app = build_app(SpaceSettings(work_dir=str(tmp_path)), service=_RecordingService(tmp_path))
    parts = _components(app)
    # any change of the names (typed, pasted, dropped, autofilled), not only key presses, moves the preset
    follow = _triggered_by(app, parts["names"], "change")
    assert follow.outputs == [parts["preset"]]
    assert follow.fn(preset_text("UCSD Ped") + ", bus") == CUSTOM_PRESET
    assert follow.fn(preset_text("UCSD Ped")) == "UCSD Ped"
    fill = _triggered_by(app, parts["preset"], "change")
    assert fill.inputs == [parts["preset"], parts["names"]] and fill.outputs == [parts["names"]]
    assert fill.fn("UCSD Ped", "red circle") == preset_text("UCSD Ped")
    # names that already spell the preset stay as typed: the box is not rewritten under the visitor's cursor
    assert fill.fn("UCSD Ped", "Car, cart,wheelchair, skate, bicycle") == gr.update()
    assert fill.fn(CUSTOM_PRESET, "red circle") == gr.update()


# -- requests running at once ---------------------------------------------------------------------------------------


def test_two_detections_run_at_once_each_with_its_share_of_the_cores():
    assert SpaceSettings().concurrency_limit == 2
    assert SpaceSettings().threads_to_use(cores=2) == 1  # two detections on 2 cores: one thread each
    assert SpaceSettings(concurrency_limit=1).threads_to_use(cores=2) == 2
    assert SpaceSettings(concurrency_limit=4).threads_to_use(cores=2) == 1
    assert SpaceSettings.from_env({"LAVIDA_SPACE_TORCH_THREADS": "3"}).threads_to_use(cores=2) == 3


def test_launch_gives_torch_the_settings_threads(tmp_path):
    import torch

    from lavida.space.app import launch

    class Server:
        def launch(self, **kwargs):
            self.kwargs = kwargs

    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            launch(SpaceSettings(work_dir=str(tmp_path), torch_threads=threads), app=Server(), block=False)
            assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)


def test_detections_running_at_once_have_their_own_pipelines_and_share_the_model(reference_model, videos,
                                                                                 tmp_path, monkeypatch):
    """A pipeline keeps per-call state (name-embedding cache, the masks of the video it scores): two requests must
    not score through the same one, while the model's weights are loaded once."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from lavida.processing.pipeline_lavida import VideoAnomalyDetectionPipeline

    service = _limited_service(reference_model, tmp_path, concurrency_limit=2)
    jobs = [("walk", "fire"), ("odd", "red square")]
    alone = [json.loads(service.run(videos[key], names, 1, 0.5).result_json.read_text())["scores"]
             for key, names in jobs]
    inside: dict[int, tuple[object, object]] = {}
    both_inside = threading.Barrier(2, timeout=60)
    original = VideoAnomalyDetectionPipeline._forward

    def forward(self, *args, **kwargs):
        if threading.get_ident() not in inside:  # hold each request at its first model call until both are there
            inside[threading.get_ident()] = (self, self.model)
            both_inside.wait()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(VideoAnomalyDetectionPipeline, "_forward", forward)
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda job: service.run(videos[job[0]], job[1], 1, 0.5), jobs))
    pipelines, models = zip(*inside.values())
    assert len({id(p) for p in pipelines}) == 2 and len({id(m) for m in models}) == 1
    assert [json.loads(r.result_json.read_text())["scores"] for r in results] == alone


# -- progress of the writing step -----------------------------------------------------------------------------------


def test_the_overlay_step_reports_its_progress_frame_by_frame(service, videos):
    from lavida.space.service import SCORING_SHARE

    seen = []
    service.run(videos["walk"], "fighting", 1, 0.5, progress=lambda fraction, text: seen.append((fraction, text)))
    overlay = [(fraction, text) for fraction, text in seen if text.startswith("Writing the overlay video")]
    assert [text for _, text in overlay] == [f"Writing the overlay video ({n}/16 frames)" for n in range(1, 17)]
    fractions = [fraction for fraction, _ in overlay]
    assert fractions == sorted(set(fractions)) and SCORING_SHARE < fractions[0] and fractions[-1] == 1.0


def test_a_request_cancelled_while_its_overlay_is_written_stops_and_leaves_nothing(reference_model, videos,
                                                                                   tmp_path):
    from lavida.space.service import RequestCancelled

    service = _limited_service(reference_model, tmp_path)
    seen: list[str] = []
    with pytest.raises(RequestCancelled):
        service.run(videos["walk"], "fire", 1, 0.5, progress=lambda fraction, text: seen.append(text),
                    cancelled=lambda: "Writing the overlay video (4/16 frames)" in seen)
    assert "Writing the overlay video (6/16 frames)" not in seen
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())


# -- the overlay shown in the page ----------------------------------------------------------------------------------


def test_an_odd_sized_video_is_shown_with_its_one_overlay_written_once(service, videos, monkeypatch):
    """The overlay's frames always have even sides (the score band below, a column on the right of an odd width), so
    overlay.mp4 plays in browsers as it is: no second copy is decoded and encoded from it."""
    import av

    import lavida.processing.result_writers as writers

    encoded = []
    original = writers.write_video
    monkeypatch.setattr(writers, "write_video", lambda path, *a, **k: (encoded.append(Path(path).name),
                                                                       original(path, *a, **k))[1])
    result = service.run(videos["odd"], "blue square", 1, 0.5)
    assert sorted(p.name for p in result.folder.iterdir()) == ["overlay.mp4", "result.json", "scores.csv",
                                                               "scores.png"]
    assert result.overlay == result.folder / "overlay.mp4" and len(encoded) == 1
    with av.open(str(result.overlay)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.format.name) == ("h264", "yuv420p")
        assert (stream.height, stream.width) == writers.overlay_frame_size(45, 61)


def test_the_overlay_is_encoded_with_the_settings_preset(reference_model, videos, tmp_path, monkeypatch):
    """By default the page's overlay is encoded as ``lavida detect`` encodes it; a faster preset can be chosen."""
    import lavida.processing.result_writers as writers

    presets = []
    original = writers.write_video
    monkeypatch.setattr(writers, "write_video", lambda *a, **k: (presets.append(k["preset"]), original(*a, **k))[1])
    assert SpaceSettings().overlay_preset == writers.OutputOptions().overlay_preset
    for preset in ("ultrafast", "medium"):
        service = _limited_service(reference_model, tmp_path / preset, overlay_preset=preset)
        service.run(videos["walk"], "fire", 2, 0.5)
    assert presets == ["ultrafast", "medium"]


@pytest.mark.parametrize("value", ["speedy", ""])
def test_an_unknown_overlay_preset_names_the_setting_and_the_choices(value):
    with pytest.raises(UserInputError, match=r"overlay_preset must be one of ultrafast, .*veryslow, got"):
        SpaceSettings(overlay_preset=value)
    assert SpaceSettings.from_env({"LAVIDA_SPACE_OVERLAY_PRESET": "ultrafast"}).overlay_preset == "ultrafast"


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads /proc")
def test_the_concurrency_benchmark_reads_a_process_cpu_time():
    import os

    from benchmarks.space_concurrency import _cpu_seconds

    sum(i * i for i in range(300_000))  # some CPU time of this process's own
    reported, times = _cpu_seconds(os.getpid()), os.times()
    assert reported == pytest.approx(sum(times[:4]), abs=0.05)  # user + system, own and children's
    assert _cpu_seconds(2**22 + 1) is None  # above the kernel's largest pid: no such process
