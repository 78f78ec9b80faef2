"""The ``video-anomaly-detection`` transformers pipeline.

    from transformers import pipeline
    import lavida  # registers the task
    detector = pipeline("video-anomaly-detection", model="path/or/hub-id")
    detector = load_detection_pipeline()   # the embedded default, lavida-tiny
    result = detector("video.mp4", anomalies=["fighting", "fire"], stride=2)
    result["scores"]   # one probability per decoded frame
    result["events"]   # [{"start_frame", "end_frame", "start_s", "end_s", "peak_score", "mean_score"}, ...]

Input: a path, bytes, or decoded frames (``uint8 [F, H, W, 3]``). With ``return_masks=True`` the output also has
``masks``: ``float16 [F, H, W]`` anomaly probabilities at the native frame size. The three pipeline steps stay thin:
``preprocess`` validates and describes the job, ``_forward`` streams the video through ``detect_video`` (the same
engine ``lavida detect`` uses), ``postprocess`` turns the result into plain Python.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np
from transformers import AutoModel, Pipeline
from transformers.pipelines import PIPELINE_REGISTRY

from .detection import DetectionOptions, VideoDetection, detect_video
from .anomaly_names import parse_anomaly_names

TASK = "video-anomaly-detection"


class VideoAnomalyDetectionPipeline(Pipeline):
    """Per-frame anomaly scores, events and (optionally) masks for user-named anomalies."""

    _load_processor = True
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = False
    _load_tokenizer = False

    def __call__(self, video, anomalies: list[str] | str | None = None, **kwargs) -> dict[str, Any]:
        return super().__call__(video, anomalies=anomalies, **kwargs)

    def _sanitize_parameters(self, anomalies=None, stride=None, threshold=None, min_event_frames=None,
                             smoothing_sigma=None, clip_batch_size=None, return_masks=None, progress=None,
                             llm_frame_pixels=None, **kwargs):
        preprocess = {}
        if anomalies is not None:
            preprocess["anomalies"] = anomalies
        options = {}
        for key, value in (("stride", stride), ("threshold", threshold), ("min_event_frames", min_event_frames),
                           ("smoothing_sigma", smoothing_sigma), ("clip_batch_size", clip_batch_size),
                           ("llm_frame_pixels", llm_frame_pixels)):
            if value is not None:
                options[key] = value
        if return_masks is not None:
            options["keep_masks"] = bool(return_masks)
        preprocess["options"] = options
        forward = {"progress": progress} if progress is not None else {}
        postprocess = {"return_masks": bool(return_masks)} if return_masks is not None else {}
        return preprocess, forward, postprocess

    def preprocess(self, video, anomalies: list[str] | str | None = None, options: dict | None = None
                   ) -> dict[str, Any]:
        names = parse_anomaly_names(anomalies)
        if isinstance(video, list):
            video = np.stack(video)
        return {"video": video, "anomalies": names, "options": DetectionOptions(**(options or {}))}

    def _forward(self, job: dict[str, Any], progress=None) -> dict[str, Any]:
        detection = detect_video(self.model, self.processor, job["video"], job["anomalies"], job["options"],
                                 progress=progress)
        return {"detection": detection}

    def postprocess(self, model_outputs: dict[str, Any], return_masks: bool = False) -> dict[str, Any]:
        detection: VideoDetection = model_outputs["detection"]
        result = detection_to_dict(detection)
        if return_masks:
            result["masks"] = detection.masks()
        return result


def detection_to_dict(detection: VideoDetection) -> dict[str, Any]:
    """Plain-Python summary of a ``VideoDetection`` (what the pipeline returns, minus masks)."""
    return {
        "scores": [float(s) for s in detection.scores],
        "events": [asdict(event) for event in detection.events],
        "fps": float(detection.info.fps),
        "num_frames": int(detection.info.num_frames),
        "width": int(detection.info.width),
        "height": int(detection.info.height),
        "anomalies": list(detection.anomalies),
        "stride": int(detection.options.stride),
        "threshold": float(detection.options.threshold),
    }


def register_pipeline() -> None:
    """Make ``pipeline("video-anomaly-detection", ...)`` available (done when ``lavida`` is imported)."""
    PIPELINE_REGISTRY.register_pipeline(TASK, pipeline_class=VideoAnomalyDetectionPipeline, pt_model=AutoModel,
                                        type="multimodal")


def load_detection_pipeline(model: str | None = None, device: str | int | None = None
                            ) -> VideoAnomalyDetectionPipeline:
    """The pipeline for a checkpoint folder / Hub id, or for the embedded lavida-tiny when ``model`` is None.

    Unreadable checkpoints raise ``lavida.errors.UserInputError`` naming the folder."""
    from lavida.model_factory import load_model_and_processor

    loaded, processor = load_model_and_processor(model)
    return VideoAnomalyDetectionPipeline(model=loaded, processor=processor, device=device, task=TASK)


__all__ = ["TASK", "VideoAnomalyDetectionPipeline", "detection_to_dict", "load_detection_pipeline",
           "register_pipeline"]
