"""Streaming detection over one video: the engine behind the pipeline, ``lavida detect``, evaluation and the Space.

Frames are decoded one at a time, sampled at ``stride``, grouped into clips of ``clip_length`` sampled frames and run
through the model in batches of ``clip_batch_size`` clips; the whole video is never held in memory. The class-name
features are computed once per video. Every decoded frame gets the score of its nearest sampled frame.

Masks are kept, when asked for, at the decoder's low resolution (``[S, h, w]`` float16 for S sampled frames) and
resized to the native frame size one frame at a time (``VideoDetection.mask``). They are appended to an anonymous
temporary file and memory-mapped (``LowResMaskStore``), so a long video's masks (128 KiB per sampled frame at SAM2's
1024 px input) stay on disk rather than in memory; the file has no name and disappears with the result.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .postprocessing import fill_skipped_frames, find_events, smooth_scores
from ..errors import UserInputError
from .video_io import VideoInfo, VideoSource, describe_source, iter_clips, probe_video

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]  # (frames done, total frames)


@dataclass
class DetectionOptions:
    """Knobs of one detection run (CLI flags, pipeline kwargs and Space controls map onto these)."""

    stride: int = 1
    threshold: float = 0.5
    min_event_frames: int = 1
    smoothing_sigma: float = 0.0  # 0 = no temporal smoothing (the default)
    clip_batch_size: int = 2
    keep_masks: bool = False
    # [min, max] MLLM pixel area per frame; None = the processor's inference budget (saved with the checkpoint)
    llm_frame_pixels: tuple[int, int] | None = None


class LowResMaskStore:
    """Low-resolution mask logits of the sampled frames, appended batch by batch to an unnamed temporary file.

    ``array()`` memory-maps what was written as ``float16 [S, h, w]``; pages are read on demand, so memory does not
    grow with the video's length. The file is unlinked on creation and freed when the store and its arrays are gone.
    """

    def __init__(self):
        self._file = tempfile.TemporaryFile(prefix="lavida-masks-")
        self._shape: tuple[int, int] | None = None
        self._count = 0

    def append(self, masks: np.ndarray) -> None:
        """Add ``[n, h, w]`` masks (any float dtype; stored as float16)."""
        masks = np.ascontiguousarray(masks, dtype=np.float16)
        if self._shape is None:
            self._shape = masks.shape[1:]
        elif masks.shape[1:] != self._shape:
            raise ValueError(f"Mask size changed within one video: {masks.shape[1:]} after {self._shape}.")
        self._file.write(masks.tobytes())
        self._count += len(masks)

    def array(self) -> np.ndarray | None:
        """``float16 [S, h, w]`` read-only memory map (None when nothing was appended)."""
        if self._count == 0:
            return None
        self._file.flush()
        return np.memmap(self._file, dtype=np.float16, mode="r", shape=(self._count, *self._shape))


@dataclass
class VideoDetection:
    """Result of ``detect_video``.

    Attributes:
        info: the video's metadata (frame count, fps, size).
        anomalies: the names the model was prompted with.
        sampled_frames: ``[S]`` indices of the frames the model saw.
        sampled_scores: ``[S]`` their anomaly probabilities.
        scores: ``[F]`` one probability per decoded frame (nearest sampled frame; smoothed if asked).
        events: maximal runs above the threshold (``postprocessing.Event``).
        lowres_masks: ``[S, h, w]`` float16 mask logits of the sampled frames when masks were kept (memory-mapped
            from an unnamed temporary file: see ``LowResMaskStore``).
    """

    info: VideoInfo
    anomalies: list[str]
    options: DetectionOptions
    sampled_frames: np.ndarray
    sampled_scores: np.ndarray
    scores: np.ndarray
    events: list[Any]
    lowres_masks: np.ndarray | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def nearest_sample(self, frame_index: int) -> int:
        position = int(np.searchsorted(self.sampled_frames, frame_index))
        if position >= len(self.sampled_frames):
            return len(self.sampled_frames) - 1
        if position > 0 and frame_index - self.sampled_frames[position - 1] <= self.sampled_frames[position] - frame_index:
            return position - 1
        return position

    def mask(self, frame_index: int) -> np.ndarray:
        """``float32 [H, W]`` anomaly probability of one frame at the native size (from its nearest sampled frame)."""
        if self.lowres_masks is None:
            raise ValueError("Masks were not kept: run detection with keep_masks=True.")
        logits = torch.from_numpy(self.lowres_masks[self.nearest_sample(frame_index)].astype(np.float32))
        resized = torch.nn.functional.interpolate(logits[None, None], size=(self.info.height, self.info.width),
                                                  mode="bilinear", align_corners=False)[0, 0]
        return torch.sigmoid(resized).numpy()

    def masks(self) -> np.ndarray:
        """``float16 [F, H, W]`` all masks at the native size (memory grows with the video; prefer ``mask``)."""
        return np.stack([self.mask(i).astype(np.float16) for i in range(self.info.num_frames)])


def _batched(clips: Iterator, size: int) -> Iterator[list]:
    batch = []
    for clip in clips:
        batch.append(clip)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@torch.no_grad()
def detect_video(model, processor, source: VideoSource, anomalies: list[str], options: DetectionOptions | None = None,
                 progress: ProgressCallback | None = None) -> VideoDetection:
    """Score every frame of ``source`` for the named ``anomalies``.

    Args:
        model: a ``LavidaForVideoAnomalyDetection`` in eval mode.
        processor: its ``LavidaProcessor``.
        source: a path, bytes, or ``uint8 [F, H, W, 3]`` frames.
        anomalies: the anomaly names (validated by the processor).
        options: stride, threshold, batching, masks.
        progress: called with (frames done, total) after each batch.
    """
    options = options or DetectionOptions()
    info = probe_video(source)
    device = next(model.parameters()).device
    names = list(anomalies)
    class_inputs = processor.encode_names([names])
    class_embeddings = model.encode_class_names(class_inputs["class_input_ids"].to(device),
                                                class_inputs["class_attention_mask"].to(device))  # (1, N, E)

    sampled_frames: list[np.ndarray] = []
    sampled_scores: list[np.ndarray] = []
    masks = LowResMaskStore() if options.keep_masks else None
    clip_length = processor.clip_length
    for batch in _batched(iter_clips(source, stride=options.stride, clip_length=clip_length), options.clip_batch_size):
        budget = {} if options.llm_frame_pixels is None else {"llm_frame_pixels": list(options.llm_frame_pixels)}
        inputs = processor([clip.frames for clip in batch], [names] * len(batch), **budget)
        inputs = {k: v.to(device) for k, v in inputs.items() if k not in ("class_input_ids", "class_attention_mask")}
        inputs["class_embeddings"] = class_embeddings.expand(len(batch), -1, -1)
        output = model(**inputs)
        probabilities = torch.sigmoid(output.frame_logits.float()).cpu().numpy()  # (b, T)
        for row, clip in enumerate(batch):
            real = clip.real  # (T,) bool, False for padding frames of the last clip
            sampled_frames.append(clip.frame_indices[real])
            sampled_scores.append(probabilities[row][real])
            if options.keep_masks:
                masks.append(output.mask_logits[row][torch.from_numpy(real)].float().cpu().numpy())
        if progress is not None:
            progress(int(batch[-1].frame_indices[batch[-1].real].max()) + 1, info.num_frames)

    frames = np.concatenate(sampled_frames) if sampled_frames else np.zeros(0, dtype=np.int64)
    scores_sampled = np.concatenate(sampled_scores) if sampled_scores else np.zeros(0, dtype=np.float32)
    if len(frames) == 0:
        raise UserInputError(f"No frame could be decoded from {describe_source(source)}.")
    scores = fill_skipped_frames(frames, scores_sampled, info.num_frames)
    if options.smoothing_sigma > 0:
        scores = smooth_scores(scores, options.smoothing_sigma)
    events = find_events(scores, info.fps, options.threshold, options.min_event_frames)
    return VideoDetection(info=info, anomalies=names, options=options, sampled_frames=frames,
                          sampled_scores=scores_sampled, scores=scores, events=events,
                          lowres_masks=masks.array() if masks is not None else None)


__all__ = ["DetectionOptions", "LowResMaskStore", "VideoDetection", "detect_video"]
