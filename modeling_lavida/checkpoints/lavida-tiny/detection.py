"""The one result type every route returns, and its masks.

- ``VideoDetection``: one video's detection, what the ``video-anomaly-detection`` pipeline returns; ``to_dict()`` is
  the content of ``result.json`` (``RESULT_FORMAT_VERSION``).
- ``LowResMaskStore`` and ``FrameMasks``: the masks of a detection, kept at the decoder's low resolution
  (``float16 [S, h, w]`` for S sampled frames) in an unnamed temporary file that is memory-mapped, and handed out one
  frame at a time at the native size (a long video's masks, 128 KiB per sampled frame at SAM2's 1024 px input, stay on
  disk rather than in memory; the file has no name and disappears with the result).

Its settings are ``options.DetectionOptions``. This file is copied next to saved checkpoints with the pipeline: it
imports only numpy, torch and its siblings.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from .options import DetectionOptions
from .postprocessing import Event, mask_probabilities, name_events, nearest_samples, postprocess_scores
from .video_io import VideoInfo, VideoSource

RESULT_FORMAT_VERSION = 2  # result.json layout (see VideoDetection.to_dict); 2: events name their anomaly
SCORE_DECIMALS = 6  # rounding of result.json and scores.csv, so the two agree exactly


# ---------------------------------------------------------------------------------------------------------------------
# Masks
# ---------------------------------------------------------------------------------------------------------------------


class LowResMaskStore:
    """Low-resolution mask logits of the frames a mask was computed on, appended batch by batch to an unnamed
    temporary file, with each one's decoded-frame index.

    ``array()`` memory-maps what was written as ``float16 [M, h, w]``; pages are read on demand, so memory does not
    grow with the video's length. The file is unlinked on creation and freed when the store and its arrays are gone.
    """

    def __init__(self):
        self._file = tempfile.TemporaryFile(prefix="lavida-masks-")
        self._shape: tuple[int, int] | None = None
        self._count = 0
        self._indices: list[np.ndarray] = []

    def __len__(self) -> int:
        return self._count

    def append(self, masks: np.ndarray, frame_indices: np.ndarray) -> None:
        """Add ``[n, h, w]`` masks (any float dtype; stored as float16) of the decoded frames ``frame_indices [n]``,
        which come after every frame appended before."""
        masks = np.ascontiguousarray(masks, dtype=np.float16)
        frame_indices = np.asarray(frame_indices, dtype=np.int64).reshape(-1)
        if len(frame_indices) != len(masks):
            raise ValueError(f"{len(masks)} masks for {len(frame_indices)} frame indices.")
        if self._shape is None:
            self._shape = masks.shape[1:]
        elif masks.shape[1:] != self._shape:
            raise ValueError(f"Mask size changed within one video: {masks.shape[1:]} after {self._shape}.")
        self._file.write(masks.tobytes())
        self._count += len(masks)
        self._indices.append(frame_indices)

    def frame_indices(self) -> np.ndarray:
        """``int64 [M]``: the decoded-frame index of each stored mask, in order."""
        return np.concatenate(self._indices) if self._indices else np.zeros(0, dtype=np.int64)

    def array(self) -> np.ndarray | None:
        """``float16 [M, h, w]`` read-only memory map (None when nothing was appended)."""
        if self._count == 0:
            return None
        self._file.flush()
        return np.memmap(self._file, dtype=np.float16, mode="r", shape=(self._count, *self._shape))


class MaskFrames(Protocol):
    """Masks handed out one frame at a time: ``len`` frames, ``masks[i]`` is ``float [H, W]`` in [0, 1]."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> np.ndarray: ...


class FrameMasks:
    """The anomaly masks of one video, one frame at a time at the native size (never a ``[F, H, W]`` stack).

    ``masks[i]`` is ``float16 [H, W]``: the low-resolution logits of frame ``i``, or of its nearest frame a mask was
    computed on (the scored frames and every ``DetectionOptions.mask_stride``-th frame), resized and passed through
    the sigmoid (``LavidaProcessor.post_process_masks``), stored as float16 (the pixel metrics count
    float16 values exactly). Iterating yields the frames in order; ``frame(i, size)`` gives one at another size (the
    overlay's) without making the native-size one.
    """

    def __init__(self, lowres_logits: np.ndarray, mask_frames: np.ndarray, num_frames: int,
                 size: tuple[int, int]):
        """
        Args:
            lowres_logits: ``float16 [M, h, w]`` (a memory map from ``LowResMaskStore``).
            mask_frames: ``int64 [M]`` the decoded-frame index of each row, increasing.
            num_frames: ``F``, decoded frames.
            size: the native ``(height, width)``.
        """
        if len(lowres_logits) != len(mask_frames):
            raise ValueError(f"{len(lowres_logits)} masks for {len(mask_frames)} frame indices.")
        self.lowres_logits = lowres_logits
        self.mask_frames = np.asarray(mask_frames, dtype=np.int64)
        if np.any(np.diff(self.mask_frames) <= 0):
            raise ValueError("The masks' frame indices must increase.")
        self.num_frames = int(num_frames)
        self.size = (int(size[0]), int(size[1]))

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(F, H, W)``: the shape the masks would have stacked."""
        return (self.num_frames, *self.size)

    def __len__(self) -> int:
        return self.num_frames

    def nearest_row(self, frame_index: int) -> int:
        """Row of the frame with a mask nearest to ``frame_index`` (ties to the earlier one, as the scores)."""
        return int(nearest_samples(self.mask_frames, [frame_index])[0])

    def __getitem__(self, frame_index: int) -> np.ndarray:
        return self.frame(frame_index)

    def frame(self, frame_index: int, size: tuple[int, int] | None = None) -> np.ndarray:
        """Frame ``frame_index``'s mask, ``float16 [h, w]`` at ``size = (h, w)`` (default: the native size)."""
        if isinstance(frame_index, slice) or not 0 <= int(frame_index) < self.num_frames:
            raise IndexError(f"Frame index {frame_index!r} outside [0, {self.num_frames}): masks are read one frame "
                             "at a time.")
        logits = torch.from_numpy(np.asarray(self.lowres_logits[self.nearest_row(int(frame_index))],
                                             dtype=np.float32))
        size = self.size if size is None else (int(size[0]), int(size[1]))
        # torch's float16 conversion rounds as numpy's does (to nearest even) and is several times faster
        return mask_probabilities(logits, size).to(torch.float16).numpy()  # (h, w)

    def __iter__(self) -> Iterator[np.ndarray]:
        for index in range(self.num_frames):
            yield self[index]


# ---------------------------------------------------------------------------------------------------------------------
# The result
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class VideoDetection:
    """One video's detection: what the ``video-anomaly-detection`` pipeline returns and ``result.json`` holds.

    Attributes:
        video: the video as decoded (exact frame count, fps, size, codec).
        name: the name shown in ``result.json`` and the plot (a file name, or a description of in-memory input).
        anomalies: the names the model was prompted with.
        options: the settings of the run.
        model_id: the checkpoint path or Hub id.
        scores: ``float32 [F]`` one anomaly probability per decoded frame (filled from the nearest sampled frame,
            smoothed when asked).
        events: runs of frames at or above ``options.threshold`` (``postprocessing.Event``), each naming the
            anomaly that drove it when ``name_probabilities`` are known (``postprocessing.name_events``).
        sampled_frames: ``int64 [S]`` the decoded-frame indices the model scored.
        sampled_scores: ``float32 [S]`` their probabilities, before filling and smoothing.
        name_probabilities: ``float32 [S, N]`` each listed name's probability at each sampled frame, from a model
            that scores each name (``frame_score="name_grounding"``; ``sampled_scores`` is their maximum); None for
            a model that gives one score per frame (``"object_score"``), whose events name no anomaly.
        masks: the anomaly masks, one frame at a time (``FrameMasks``) when ``options.return_masks``, else None.
        source: what was read (a path, bytes or frames), for a second pass (the overlay video); None when unknown.
        calibration: the site calibration the threshold, ``min_event_frames`` and smoothing came from (a record
            naming its file, recorded in ``to_dict()["settings"]["calibration"]``), or None.
        training_domain: the footage the model was trained on (its config's ``training_domain``), recorded as
            ``model_training_domain`` so a result of a narrow model says so; None when the model does not say.
    """

    video: VideoInfo
    name: str
    anomalies: list[str]
    options: DetectionOptions
    model_id: str
    scores: np.ndarray
    events: list[Event]
    sampled_frames: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    sampled_scores: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    name_probabilities: np.ndarray | None = None
    masks: MaskFrames | None = None
    source: VideoSource | None = None
    calibration: dict[str, Any] | None = None
    training_domain: str | None = None

    def __post_init__(self) -> None:
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        if self.scores.size != self.video.num_frames:
            raise ValueError(f"Got {self.scores.size} scores for a video of {self.video.num_frames} frames; "
                             "there must be exactly one score per decoded frame.")
        if self.masks is not None and len(self.masks) < self.video.num_frames:
            raise ValueError(f"Got masks for {len(self.masks)} frames for a video of {self.video.num_frames}.")
        if self.name_probabilities is not None:
            self.name_probabilities = np.asarray(self.name_probabilities, dtype=np.float32)
            expected = (len(self.sampled_frames), len(self.anomalies))
            if self.name_probabilities.shape != expected:
                raise ValueError(f"Got name probabilities of shape {list(self.name_probabilities.shape)}; they must be "
                                 f"[sampled frames, names] = {list(expected)}.")

    @property
    def threshold(self) -> float:
        return self.options.threshold

    @property
    def frame_times_s(self) -> np.ndarray:
        """``float64 [F]`` when each decoded frame is shown, in seconds: ``i / fps``, or the frames' own timestamps
        at a variable frame rate (``VideoInfo.frame_times_s``); the ``time_s`` of ``scores.csv``."""
        return self.video.frame_edges_s()[:-1]

    @classmethod
    def from_frame_scores(cls, scores: np.ndarray, fps: float, anomalies: list[str], *,
                          options: DetectionOptions | None = None, size: tuple[int, int] = (0, 0),
                          masks: MaskFrames | None = None, name: str = "", model_id: str = "",
                          source: VideoSource | None = None,
                          name_probabilities: np.ndarray | None = None) -> VideoDetection:
        """A detection from probabilities scored elsewhere (another scorer, a test double), one per decoded frame
        (``[F]``): smoothed and cut into events by the pipeline's post-processing with ``options``.

        Args:
            size: the frames' ``(height, width)``; masks: ``masks[i]`` is frame ``i``'s ``float [H, W]`` mask.
            name_probabilities: ``float [F, N]`` each of the ``N`` anomaly names' probability per frame, which names
                the events (None: the events name no anomaly).
        """
        options = options or DetectionOptions()
        raw = np.asarray(scores, dtype=np.float32).reshape(-1)  # (F,)
        frames = np.arange(raw.size)
        filled, events = postprocess_scores(frames, raw, raw.size, fps, options.threshold, options.min_event_frames,
                                            options.smoothing_sigma)
        if name_probabilities is not None:
            events = name_events(events, frames, name_probabilities, list(anomalies))
        video = VideoInfo(num_frames=int(raw.size), fps=float(fps), width=int(size[1]), height=int(size[0]),
                          duration_s=raw.size / float(fps), codec="rawvideo")
        return cls(video=video, name=name, anomalies=list(anomalies), options=options, model_id=model_id,
                   scores=filled, events=events, sampled_frames=frames, sampled_scores=raw,
                   name_probabilities=name_probabilities, masks=masks, source=source)

    @property
    def anomalies_found(self) -> list[str]:
        """The anomaly names the events name, each once, in the order of their strongest event (highest peak
        first); empty without events or when the model does not score each name."""
        strongest = sorted(self.events, key=lambda event: (-event.peak_score, event.start_frame))
        return list(dict.fromkeys(event.anomaly for event in strongest if event.anomaly is not None))

    def to_dict(self, decimals: int = SCORE_DECIMALS) -> dict[str, Any]:
        """The content of ``result.json`` (format ``RESULT_FORMAT_VERSION``), scores and event floats rounded to
        ``decimals``:

        ``{"format_version", "video": {"name", "num_frames", "fps", "width", "height", "duration_s", "codec",
        "damaged"}, "anomalies", "model_id", "model_training_domain", "threshold", "settings": {"stride", "min_event_frames",
        "smoothing_sigma"[, "llm_frame_pixels"][, "calibration"]}, "num_events", "events": [{"start_frame",
        "end_frame", "start_s", "end_s", "peak_score", "mean_score", "anomaly", "name_scores"}, ...],
        "scores": [F floats]}``

        An event's ``anomaly`` is the listed name with the highest probability over the event and ``name_scores``
        every listed name's peak probability there, best first (``postprocessing.name_events``); both are null for
        a model that gives one score per frame and none per name (``frame_score="object_score"``).
        """
        events = [event.to_dict(decimals) for event in self.events]
        return {
            "format_version": RESULT_FORMAT_VERSION,
            "video": {"name": self.name, **self.video.to_dict()},
            "anomalies": list(self.anomalies),
            "model_id": self.model_id,
            "model_training_domain": self.training_domain,
            "threshold": self.options.threshold,
            "settings": {**self.options.settings(),
                         **({"calibration": self.calibration} if self.calibration is not None else {})},
            "num_events": len(events),
            "events": events,
            "scores": [round(float(value), decimals) for value in self.scores],
        }


def training_domain_notice(training_domain: str, model_flag: str = "--model") -> str:
    """One plain sentence for the users of the default model, which knows only ``training_domain``: what it was
    trained on, what that means on other footage, and how to use a real checkpoint (``model_flag``)."""
    return (f"The default model (lavida-tiny) was trained on {training_domain}: on real footage it scores "
            f"almost everything near 0 and reports no events. Use {model_flag} PATH_OR_HUB_ID for a checkpoint "
            "trained on real video.")


__all__ = ["RESULT_FORMAT_VERSION", "SCORE_DECIMALS", "DetectionOptions", "FrameMasks", "LowResMaskStore",
           "MaskFrames", "VideoDetection", "training_domain_notice"]
