"""LAVIDA Gradio Space: name anomalies in words, upload a video, get scores, events and masks.

Run it as a Space (``python app.py``), with ``lavida demo``, or from Python:

    from lavida.space.app import build_app, launch
    from lavida.space.settings import SpaceSettings
    launch(SpaceSettings.from_env(), server_name="127.0.0.1", server_port=7860)

The page is thin: every request goes through ``DetectionService`` (the ``video-anomaly-detection`` pipeline and
``write_result_folder``, the route ``lavida detect`` takes). The API endpoint ``/detect`` takes (video, anomaly names,
stride, threshold[, calibration.json]) and returns (plot, overlay video, events table, [result.json, scores.csv],
summary). A calibration.json from ``lavida calibrate`` gives the request its threshold, minimum event length and
smoothing (as ``lavida detect --calibration``); the page shows its threshold on the slider, locked while it is loaded.
Clicking an example runs it (``ExampleResults``: detected on its first click, shown again on the next ones). Every
request first clears the previous one's results, so a failed request leaves none of them under its error.

``settings.concurrency_limit`` detections run at once (the Detect button and the examples share these slots), each
in a pipeline of its own around the one loaded model; ``launch`` gives torch ``settings.threads_to_use()`` CPU
threads (a per-process setting), by default the cores divided among the detections that may run together.

The handler is a generator: the detection runs in a worker thread while the handler yields "no change" every
``HEARTBEAT_S``, which is where Gradio stops iterating a request whose visitor has gone (page closed, client
cancelled). The detection stops at its next batch of clips once the handler is closed or has not been asked for more
for ``ABANDONED_AFTER_S`` (Gradio closes only its own wrapper around the handler, so the second sign is the one that
does not depend on when the handler is garbage-collected): an abandoned request does not hold its place in the queue.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path

import gradio as gr
import pandas as pd

from lavida.errors import UserInputError
from lavida.space.examples import ExampleResults, ensure_examples
from lavida.space.presets import CUSTOM_PRESET, PRESETS, SYNTHETIC_PRESET, matching_preset, preset_text
from lavida.space.service import EVENT_COLUMNS, DetectionService, RequestCancelled, visitor_message
from lavida.space.settings import SpaceSettings

logger = logging.getLogger(__name__)

TITLE = "LAVIDA: zero-shot video anomaly detection"
API_NAME = "detect"
HEARTBEAT_S = 0.5  # how often a running request gives Gradio the chance to stop it
ABANDONED_AFTER_S = 4 * HEARTBEAT_S  # a request Gradio has not asked for more for this long has lost its visitor
WORKER_THREAD_NAME = "lavida-space-detection"
_OUTPUTS = 5  # plot, overlay, events, files, summary


def _no_results() -> tuple:
    """The outputs of no run (plot, overlay, events, files, summary), which replace the previous run's."""
    return None, None, pd.DataFrame(columns=EVENT_COLUMNS), None, ""


def _intro(settings: SpaceSettings, model_id: str, training_domain: str | None = None) -> str:
    from lavida.processing.detection import training_domain_notice

    notice = f"\n\n{training_domain_notice(training_domain)}" if settings.model is None and training_domain else ""
    return (
        f"# {TITLE}\n"
        "Name the anomalies in words, upload a video, and get a score per frame, the anomalous events and a mask of "
        "where they happen. The model never saw real anomaly videos in training; it learned from pseudo-anomalies "
        "cut from segmentation data.\n\n"
        f"Videos up to **{settings.max_upload_mb:g} MB**, **{settings.max_duration_s:g} s**, "
        f"**{settings.max_frames} frames** and **{settings.max_megapixels:.1f} megapixels** a frame (e.g. 1920x1080) "
        f"(mp4, webm, avi, mkv, mov, gif). Model: `{model_id}`.{notice}"
    )


def _visitor_error(error: BaseException, video: str | None, root: Path) -> gr.Error:
    """What the page shows for a failed request: the message without server paths."""
    if isinstance(error, UserInputError):
        return gr.Error(visitor_message(str(error), video or "", root), duration=None,
                        title="Cannot run the detection", print_exception=False)
    if isinstance(error, RequestCancelled):  # stopped as abandoned; whoever is still there may run it again
        return gr.Error(visitor_message(f"{error} Run it again.", video or "", root), duration=None,
                        title="Detection stopped", print_exception=False)
    # keep serving; the visitor sees what failed, the log has the traceback
    logger.error("Detection failed for %s", video, exc_info=error)
    return gr.Error(visitor_message(f"The detection failed ({type(error).__name__}: {error}). Try another video or "
                                    "settings.", video or "", root),
                    duration=None, title="Detection failed", print_exception=False)


class _Visitor:
    """Whether the visitor of a request still waits for it: Gradio asks the handler for more every ``HEARTBEAT_S``
    while they do."""

    def __init__(self) -> None:
        self.last_asked = time.monotonic()
        self.gone = threading.Event()

    def asked(self) -> None:
        self.last_asked = time.monotonic()

    def has_left(self) -> bool:
        return self.gone.is_set() or time.monotonic() - self.last_asked > ABANDONED_AFTER_S


def _handler(service: DetectionService | ExampleResults, root: Path):
    unchanged = tuple(gr.skip() for _ in range(_OUTPUTS))

    def detect(video: str | None, anomalies: str, stride: float, threshold: float, calibration: str | None = None,
               progress: gr.Progress = gr.Progress()):
        """Detect the named anomalies (comma-separated) in the video, scoring every ``stride``-th frame; with a
        calibration.json its threshold, minimum event length and smoothing replace ``threshold``."""
        messages: queue.SimpleQueue = queue.SimpleQueue()
        visitor = _Visitor()

        def work() -> None:
            try:
                result = service.run(video, anomalies, stride, threshold, cancelled=visitor.has_left,
                                     progress=lambda fraction, text: messages.put(("progress", (fraction, text))),
                                     calibration=calibration)
                messages.put(("result", result))
            except BaseException as error:  # shown by the request below, if it is still there
                if isinstance(error, RequestCancelled):
                    logger.info("Stopped the detection of %s: its visitor has gone.", video)
                messages.put(("error", error))

        threading.Thread(target=work, name=WORKER_THREAD_NAME, daemon=True).start()
        beat = time.monotonic()
        try:
            yield _no_results()  # the previous run's results go, whether this one succeeds or fails
            while True:
                try:
                    kind, value = messages.get(timeout=HEARTBEAT_S)
                except queue.Empty:
                    kind, value = None, None
                if kind == "progress":
                    progress(value[0], desc=value[1])
                elif kind == "error":
                    raise _visitor_error(value, video, root)
                elif kind == "result":
                    table = pd.DataFrame(value.events, columns=EVENT_COLUMNS)
                    summary = f"**{value.summary}**" if value.events else value.summary
                    yield (str(value.plot), str(value.overlay), table,
                           [str(value.result_json), str(value.scores_csv)], summary)
                    return
                if time.monotonic() - beat >= HEARTBEAT_S:
                    beat = time.monotonic()
                    yield unchanged  # Gradio stops iterating here once the visitor has gone
                    visitor.asked()
        finally:
            visitor.gone.set()  # the request is over (done, failed or abandoned): a detection still running stops

    return detect


THRESHOLD_INFO = "event when the score reaches it"


def _calibration_threshold(service: DetectionService, root: Path):
    """The slider's answer to a calibration upload: its threshold, locked (the request uses the calibration's); free
    again when the file is removed, or unreadable (the request then says why)."""

    def update(calibration: str | None):
        if not calibration:
            return gr.update(interactive=True, info=THRESHOLD_INFO)
        try:
            threshold = service.load_calibration(calibration).threshold
        except UserInputError as error:
            gr.Warning(visitor_message(str(error), calibration, root))
            return gr.update(interactive=True, info=THRESHOLD_INFO)
        return gr.update(value=threshold, interactive=False, info="from the calibration file (remove it to choose)")

    return update


def _names_of_preset(label: str, names: str):
    """The names box's answer to a preset choice: the preset's names, unless it is "Custom" or the box already
    spells them (the box, which the preset follows as it is edited, is then left as typed)."""
    if label == CUSTOM_PRESET or matching_preset(names or "") == label:
        return gr.update()
    return preset_text(label)


def build_app(settings: SpaceSettings | None = None, service: DetectionService | None = None) -> gr.Blocks:
    """The Blocks app (model loaded, examples rendered, queue configured); launch it with ``launch``.

    Raises:
        UserInputError: the model cannot be loaded (missing embedded checkpoint, bad ``LAVIDA_MODEL``).
    """
    settings = settings or SpaceSettings.from_env()
    root = settings.prepare_root()
    service = service or DetectionService(settings)
    examples = ensure_examples(root)
    requests = ExampleResults(service, examples)
    with gr.Blocks(title=TITLE, delete_cache=(1800, 3600)) as app:
        model = getattr(getattr(service, "detector", None), "model", None)
        gr.Markdown(_intro(settings, service.model_id, getattr(getattr(model, "config", None), "training_domain", None)))
        with gr.Row():
            with gr.Column(scale=2):
                video = gr.Video(label="Video", sources=["upload"], elem_id="input-video")
                preset = gr.Dropdown([*PRESETS, CUSTOM_PRESET], value=SYNTHETIC_PRESET, label="Anomaly name preset",
                                     elem_id="preset")
                names = gr.Textbox(value=preset_text(SYNTHETIC_PRESET), lines=3, label="Anomaly names",
                                   info="comma separated, e.g. fighting, fire, car accident", elem_id="names")
                with gr.Row():
                    stride = gr.Slider(1, settings.max_stride, value=settings.default_stride, step=1, precision=0,
                                       label="Stride",
                                       info="score every N-th frame (faster with larger N); each frame still "
                                            "gets a mask of its own", elem_id="stride")
                    threshold = gr.Slider(0.0, 1.0, value=settings.default_threshold, step=0.01, label="Threshold",
                                          info=THRESHOLD_INFO, elem_id="threshold")
                calibration = gr.File(label="Site calibration (optional): calibration.json from lavida calibrate",
                                      file_types=[".json"], type="filepath", elem_id="calibration", height=60)
                run = gr.Button("Detect anomalies", variant="primary", elem_id="run-button")
                # the preset column keeps the dropdown in step with the names an example fills in
                example_rows = gr.Examples([[*example.row(), matching_preset(example.anomalies)]
                                            for example in examples],
                                           inputs=[video, names, stride, threshold, preset], visible_columns=[0],
                                           example_labels=[example.label for example in examples],
                                           cache_examples=False, label="Examples (synthetic world): click to run")
            with gr.Column(scale=3):
                summary = gr.Markdown(elem_id="summary")
                plot = gr.Image(label="Anomaly score over time", show_label=False, type="filepath",
                                elem_id="score-plot", interactive=False)
                overlay = gr.Video(label="Overlay (anomaly mask and score bar)", elem_id="overlay-video",
                                   interactive=False, height=420)
                events = gr.Dataframe(headers=EVENT_COLUMNS, label="Events", elem_id="events", interactive=False)
                files = gr.File(label="result.json and scores.csv", file_count="multiple", elem_id="downloads",
                                interactive=False)
        # Light UI updates skip the queue, so they stay instant while detections are running.
        preset.change(_names_of_preset, inputs=[preset, names], outputs=names, api_visibility="private", queue=False)
        # any change of the names (typed, pasted, dropped, autofilled), not only a key press, moves the preset
        names.change(matching_preset, inputs=names, outputs=preset, api_visibility="private", queue=False)
        calibration.change(_calibration_threshold(service, root), inputs=calibration, outputs=threshold,
                           api_visibility="private", queue=False)
        detect = _handler(requests, root)
        inputs, results = [video, names, stride, threshold, calibration], [plot, overlay, events, files, summary]
        run.click(detect, inputs=inputs, outputs=results, api_name=API_NAME,
                  concurrency_limit=settings.concurrency_limit, concurrency_id=API_NAME)
        # an example click fills in the inputs, then runs them in the same detection slots as the button
        example_rows.load_input_event.then(detect, inputs=inputs, outputs=results, api_visibility="private",
                                           concurrency_limit=settings.concurrency_limit, concurrency_id=API_NAME)
    app.queue(max_size=settings.max_queue_size, default_concurrency_limit=settings.concurrency_limit)
    return app


def launch(settings: SpaceSettings | None = None, app: gr.Blocks | None = None, block: bool = True,
           **launch_kwargs) -> gr.Blocks:
    """Build (unless given) and launch the app with the settings' upload limit, folders and torch CPU threads
    (``SpaceSettings.threads_to_use``, set for the whole process).

    Args:
        block: wait until the server stops (False: return once it serves, e.g. in tests).
        launch_kwargs: passed to ``gr.Blocks.launch`` (``server_name``, ``server_port``, ...).
    """
    import torch

    settings = settings or SpaceSettings.from_env()
    torch.set_num_threads(settings.threads_to_use())  # per process: every running detection shares these
    app = app or build_app(settings)
    root = settings.prepare_root()
    launch_kwargs.setdefault("ssr_mode", False)
    app.launch(max_file_size=settings.max_upload_bytes, allowed_paths=[str(root)],
               prevent_thread_lock=not block, **launch_kwargs)
    return app


def main() -> None:
    """Entry point of the Space (``python app.py``): settings from the environment, host/port from Gradio's."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        launch(SpaceSettings.from_env())
    except UserInputError as error:  # a bad LAVIDA_MODEL or setting: one line in the Space's log
        raise SystemExit(f"LAVIDA Space: error: {error}") from None


if __name__ == "__main__":
    main()


__all__ = ["API_NAME", "build_app", "launch", "main"]
