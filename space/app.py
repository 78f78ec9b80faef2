"""LAVIDA Gradio Space: name anomalies in words, upload a video, get scores, events and masks.

Run it as a Space (``python app.py``), with ``lavida demo``, or from Python:

    from lavida.space.app import build_app, launch
    from lavida.space.settings import SpaceSettings
    launch(SpaceSettings.from_env(), server_name="127.0.0.1", server_port=7860)

The page is thin: every request goes through ``DetectionService`` (the ``video-anomaly-detection`` pipeline and
``write_result_folder``, the route ``lavida detect`` takes). The API endpoint ``/detect`` takes (video, anomaly names,
stride, threshold) and returns (plot, overlay video, events table, [result.json, scores.csv], summary).
"""

from __future__ import annotations

import logging

import gradio as gr
import pandas as pd

from lavida.errors import UserInputError
from lavida.space.examples import ensure_examples
from lavida.space.presets import CUSTOM_PRESET, PRESETS, SYNTHETIC_PRESET, matching_preset, preset_text
from lavida.space.service import EVENT_COLUMNS, DetectionService
from lavida.space.settings import SpaceSettings

logger = logging.getLogger(__name__)

TITLE = "LAVIDA: zero-shot video anomaly detection"
API_NAME = "detect"


def _intro(settings: SpaceSettings, model_id: str) -> str:
    return (
        f"# {TITLE}\n"
        "Name the anomalies in words, upload a video, and get a score per frame, the anomalous events and a mask of "
        "where they happen. The model never saw real anomaly videos in training; it learned from pseudo-anomalies "
        "cut from segmentation data.\n\n"
        f"Videos up to **{settings.max_upload_mb:g} MB** and **{settings.max_duration_s:g} s** "
        f"(mp4, webm, avi, mkv, mov, gif). Model: `{model_id}`."
    )


def _handler(service: DetectionService):
    def detect(video: str | None, anomalies: str, stride: float, threshold: float,
               progress: gr.Progress = gr.Progress()):
        """Detect the named anomalies (comma-separated) in the video, scoring every ``stride``-th frame."""
        def report(fraction: float, text: str) -> None:
            progress(fraction, desc=text)

        try:
            result = service.run(video, anomalies, stride, threshold, progress=report)
        except UserInputError as error:
            raise gr.Error(str(error), duration=None, title="Cannot run the detection",
                           print_exception=False) from None
        except Exception as error:  # keep serving; the visitor sees what failed, the log has the traceback
            logger.exception("Detection failed for %s", video)
            raise gr.Error(f"The detection failed ({type(error).__name__}: {error}). Try another video or "
                           "settings.", duration=None, title="Detection failed", print_exception=False) from None
        table = pd.DataFrame(result.events, columns=EVENT_COLUMNS)
        summary = f"**{result.summary}**" if result.events else result.summary
        return (str(result.plot), str(result.overlay), table, [str(result.result_json), str(result.scores_csv)],
                summary)

    return detect


def build_app(settings: SpaceSettings | None = None, service: DetectionService | None = None) -> gr.Blocks:
    """The Blocks app (model loaded, examples rendered, queue configured); launch it with ``launch``.

    Raises:
        UserInputError: the model cannot be loaded (missing embedded checkpoint, bad ``LAVIDA_MODEL``).
    """
    settings = settings or SpaceSettings.from_env()
    service = service or DetectionService(settings)
    examples = ensure_examples(settings.root)
    with gr.Blocks(title=TITLE, delete_cache=(1800, 3600)) as app:
        gr.Markdown(_intro(settings, service.model_id))
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
                                       info="score every N-th frame (faster with larger N)", elem_id="stride")
                    threshold = gr.Slider(0.0, 1.0, value=settings.default_threshold, step=0.01, label="Threshold",
                                          info="event when the score reaches it", elem_id="threshold")
                run = gr.Button("Detect anomalies", variant="primary", elem_id="run-button")
                # the preset column keeps the dropdown in step with the names an example fills in
                gr.Examples([[*example.row(), matching_preset(example.anomalies)] for example in examples],
                            inputs=[video, names, stride, threshold, preset], visible_columns=[0],
                            example_labels=[example.label for example in examples], cache_examples=False,
                            label="Examples (synthetic world)")
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
        preset.change(lambda label: gr.update() if label == CUSTOM_PRESET else preset_text(label),
                      inputs=preset, outputs=names, api_visibility="private", queue=False)
        names.input(matching_preset, inputs=names, outputs=preset, api_visibility="private", queue=False)
        run.click(_handler(service), inputs=[video, names, stride, threshold],
                  outputs=[plot, overlay, events, files, summary], api_name=API_NAME,
                  concurrency_limit=settings.concurrency_limit)
    app.queue(max_size=settings.max_queue_size, default_concurrency_limit=settings.concurrency_limit)
    return app


def launch(settings: SpaceSettings | None = None, app: gr.Blocks | None = None, block: bool = True,
           **launch_kwargs) -> gr.Blocks:
    """Build (unless given) and launch the app with the settings' upload limit and folders.

    Args:
        block: wait until the server stops (False: return once it serves, e.g. in tests).
        launch_kwargs: passed to ``gr.Blocks.launch`` (``server_name``, ``server_port``, ...).
    """
    settings = settings or SpaceSettings.from_env()
    app = app or build_app(settings)
    settings.root.mkdir(parents=True, exist_ok=True)
    launch_kwargs.setdefault("ssr_mode", False)
    app.launch(max_file_size=settings.max_upload_bytes, allowed_paths=[str(settings.root)],
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
