"""The ``video-anomaly-detection`` transformers pipeline: the one route from a video to its ``VideoDetection``.

    from transformers import pipeline
    import lavida; lavida.register_with_transformers()   # the task (a saved checkpoint also declares it, so
                                                         # trust_remote_code=True needs no package)
    detector = pipeline("video-anomaly-detection", model="path/or/hub-id")
    result = detector("video.mp4", anomalies=["fighting", "fire"], stride=2)
    result.scores                  # float32 [F], one probability per decoded frame
    result.events                  # [Event(start_frame, end_frame, start_s, end_s, peak_score, mean_score,
                                   #        anomaly, name_scores), ...]
    result.to_dict()               # the content of result.json
    detector(["a.mp4", "b.mp4"], anomalies="fighting", batch_size=2)   # a list of videos -> a list of results
    detector(list_of_frames, anomalies="fighting", return_masks=True).masks[10]   # float16 [H, W]

Input: a path, bytes, ``uint8 [F, H, W, 3]`` frames, a list of ``uint8 [H, W, 3]`` frames, a ``FrameArray`` (frames
with their fps) or an unread ``VideoReader``; a list of these is a list of videos. Keyword arguments: ``anomalies``,
the ``DetectionOptions`` fields (``stride``, ``threshold``, ``min_event_frames``, ``smoothing_sigma``,
``return_masks``, ``mask_stride``, ``llm_frame_pixels``), ``progress`` (called with ``(frames done, frames
expected)`` after each model call) and transformers' ``batch_size`` (clips per model call, ``DEFAULT_BATCH_SIZE``
by default; clips of consecutive videos share calls) and ``num_workers``. Anything else raises ``TypeError`` naming
the allowed arguments.

It is a chunk pipeline, as transformers' mask-generation pipeline: ``preprocess`` decodes the video once, streaming
(with the model on an accelerator, in a background thread ``prefetch_batches`` model calls ahead, so that
decoding overlaps the model),
at the size the processor needs (``LavidaProcessor.decoding_size``: a huge video is scaled by the decoder, so memory
does not grow with resolution) and upright, and yields one clip of ``clip_length`` sampled frames at a time as model
tensors (``LavidaProcessor``); ``_forward``
is the model's forward on a batch of clips (the anomaly names are encoded once per name list), which appends the
clips' low-resolution mask logits to a memory-mapped store when masks are asked for (those of the frames between the
scored ones too, every ``mask_stride``-th, through the model's per-frame path alone, ``segment_frames``, with their
clip's prompt encoding); ``postprocess`` fills the skipped frames' scores, smooths and finds the events (timed by the
frames' own timestamps) through the processor's ``post_process_*`` methods, names each event after the anomaly that
drove it when the model scores each name (``postprocessing.name_events`` on the sampled frames' per-name
probabilities, ``float32 [S, N]``, which the result keeps) and returns a ``VideoDetection`` whose ``masks`` are read
one frame at a time at the video's upright size.

This file and its siblings (``detection``, ``options``, ``video_io``, ``postprocessing``, ``anomaly_names``,
``processing_lavida``, ``prefetch``, ``errors``) are copied next to saved checkpoints (``declare_pipeline``): they
import only torch, numpy and transformers (PyAV when a video file is decoded).
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset
from transformers import AutoModel
from transformers.dynamic_module_utils import custom_object_save
from transformers.pipelines import PIPELINE_REGISTRY
from transformers.pipelines.base import ChunkPipeline, no_collate_fn
from transformers.pipelines.pt_utils import PipelineIterator, PipelinePackIterator

from .anomaly_names import parse_anomaly_names
from .detection import FrameMasks, LowResMaskStore, VideoDetection
from .options import DEFAULT_BATCH_SIZE, DEFAULT_PREFETCH_BATCHES, DetectionOptions, check_positive_int
from .postprocessing import name_events
from .prefetch import Prefetched
from .video_io import Clip, FrameArray, VideoInfo, VideoReader, VideoSource, is_frame_list, iter_clips

logger = logging.getLogger(__name__)

TASK = "video-anomaly-detection"
ProgressFn = Callable[[int, int | None], None]  # (frames done, frames the container declares or None)
# Model inputs padded to the longest prompt when clips are batched; every other tensor is concatenated on dim 0.
_TEXT_PADDING = {"input_ids": None, "attention_mask": 0, "mm_token_type_ids": 0}  # None: the tokenizer's pad id
_CLASS_CACHE_SIZE = 8  # name lists whose embeddings are kept between calls


@dataclass
class ClipInfo:
    """What the pipeline steps need to know about one clip besides its tensors.

    Attributes:
        video_key: identifies the clip's video while its clips travel through the batches.
        names: the anomaly names.
        frame_indices: ``int64 [T]`` decoded-frame index of each frame (padding repeats the last real one).
        real: ``bool [T]``, False for the padding of a video's last clip.
        return_masks: keep this clip's masks.
        mask_frames: with masks, ``uint8 [K, H, W, 3]`` the decoded frames after the clip's sampled ones that only
            the masks read (``Clip.mask_frames``; K may be 0), else None.
        mask_frame_indices: ``int64 [K]`` their decoded-frame indices, or None.
        expected_frames: the frame count the container declares (progress only), or None.
        name: the video's name for the result.
        video: on the video's last clip, the exact ``VideoInfo`` of the finished decoding pass.
        source: on the video's last clip, what was read (for a second pass such as the overlay).
    """

    video_key: str
    names: tuple[str, ...]
    frame_indices: np.ndarray
    real: np.ndarray
    return_masks: bool
    expected_frames: int | None
    name: str
    video: VideoInfo | None = None
    source: VideoSource | None = None
    mask_frames: np.ndarray | None = None
    mask_frame_indices: np.ndarray | None = None


@dataclass
class ClipScores:
    """One clip's scores from ``score_clips``, before any video-level post-processing.

    Attributes:
        clip: the clip as given.
        frame_indices: ``int64 [n]`` the decoded-frame indices of its real frames (padding left out).
        probabilities: ``float32 [n]`` their anomaly probabilities.
        name_probabilities: ``float32 [n, N]`` each anomaly name's probability per frame when the model grounds the
            names (``frame_score="name_grounding"``; ``probabilities`` is then their maximum), else None.
    """

    clip: Clip
    frame_indices: np.ndarray
    probabilities: np.ndarray
    name_probabilities: np.ndarray | None = None


class VideoAnomalyDetectionPipeline(ChunkPipeline):
    """Per-frame anomaly scores, events and (optionally) masks for user-named anomalies (see the module docstring)."""

    _load_processor = True
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = False
    _load_tokenizer = False

    def __init__(self, *args, model_id: str | None = None, prefetch_batches: int | None = None, **kwargs):
        """
        Args:
            model_id: recorded in each result (default: the checkpoint path or Hub id the model was loaded from).
            prefetch_batches: model calls' worth of clips decoded and preprocessed ahead in a background thread while
                the model runs (0: in the calling thread, one clip at a time); None: ``DEFAULT_PREFETCH_BATCHES`` when
                the model is on an accelerator, 0 on CPU. The results do not depend on it.
            Others: as ``transformers.Pipeline`` (``model``, ``processor``, ``device``, ``batch_size``...), plus
                default call arguments.
        """
        super().__init__(*args, **kwargs)
        if self._batch_size is None:
            self._batch_size = DEFAULT_BATCH_SIZE
        if prefetch_batches is None:
            prefetch_batches = 0 if self.device.type == "cpu" else DEFAULT_PREFETCH_BATCHES
        elif prefetch_batches != 0:
            check_positive_int("prefetch_batches", prefetch_batches)
        self.prefetch_batches = int(prefetch_batches)
        self.model_id = model_id or str(getattr(self.model, "name_or_path", "") or type(self.model).__name__)
        self._mask_stores: dict[str, LowResMaskStore] = {}
        self._class_cache: dict[tuple[tuple[str, ...], ...], dict[str, torch.Tensor]] = {}

    # ------------------------------------------------------------------------------------------------ call
    def __call__(self, videos: VideoSource | list[VideoSource], anomalies: list[str] | str | None = None,
                 **kwargs) -> VideoDetection | list[VideoDetection]:
        """Detect ``anomalies`` in one video (returns a ``VideoDetection``) or in a list of videos (a list).

        A list of ``[H, W, 3]`` arrays is the frames of one video; a list of anything else is a list of videos.
        """
        if is_frame_list(videos):
            videos = FrameArray(videos)
        elif isinstance(videos, (list, tuple)):
            videos = [FrameArray(video) if is_frame_list(video) else video for video in videos]
        if anomalies is not None:
            kwargs["anomalies"] = anomalies
        started = set(self._mask_stores)
        try:
            return super().__call__(videos, **kwargs)
        except BaseException:  # a call stopped early (an error, a cancelled request) keeps none of its masks
            for key in set(self._mask_stores) - started:
                self._mask_stores.pop(key, None)
            raise

    def _sanitize_parameters(self, anomalies: list[str] | str | None = None, progress: ProgressFn | None = None,
                             **options) -> tuple[dict, dict, dict]:
        """Route the call's arguments: the options to every step (each builds its ``DetectionOptions``), the names to
        ``preprocess``, ``progress`` to ``_forward``; unknown names raise ``TypeError``, bad values
        ``UserInputError``, before any decoding."""
        unknown = sorted(set(options) - set(DetectionOptions.names()))
        if unknown:
            allowed = ", ".join(["anomalies", *DetectionOptions.names(), "progress", "batch_size", "num_workers"])
            raise TypeError(f"The {TASK} pipeline got unknown argument(s) {', '.join(map(repr, unknown))}; "
                            f"allowed: {allowed}.")
        DetectionOptions(**options)
        preprocess = dict(options)
        if anomalies is not None:
            preprocess["anomalies"] = anomalies
        forward = {"progress": progress} if progress is not None else {}
        return preprocess, forward, dict(options)

    # ------------------------------------------------------------------------------------------------ steps
    def preprocess(self, video: VideoSource, anomalies: list[str] | str | None = None, **options
                   ) -> Iterator[dict[str, Any]]:
        """Decode ``video`` once, streaming, and yield one clip at a time as model inputs.

        Each item: the processor's tensors for one clip (``input_ids [1, L]``, ``attention_mask``,
        ``mm_token_type_ids``, ``pixel_values_videos [patches, D]``, ``video_grid_thw [1, 3]``,
        ``sam_pixel_values [1, T, 3, S, S]``), ``clip`` (a ``ClipInfo``) and ``is_last``. The last clip is held back
        until the decoder is exhausted, so it carries the exact ``VideoInfo``.
        """
        settings = DetectionOptions(**options)
        names = tuple(parse_anomaly_names(anomalies))
        reader = video if isinstance(video, VideoReader) else VideoReader(video)
        name = Path(reader.source).name if isinstance(reader.source, (str, os.PathLike)) else reader.name
        key = uuid.uuid4().hex
        budget = {} if settings.llm_frame_pixels is None else {"llm_frame_pixels": list(settings.llm_frame_pixels)}
        size = partial(self.processor.decoding_size, llm_frame_pixels=settings.llm_frame_pixels)
        held: dict[str, Any] | None = None
        try:
            mask_stride = settings.mask_stride if settings.return_masks else None
            for clip in iter_clips(reader, settings.stride, self.processor.clip_length, size=size,
                                   mask_stride=mask_stride):
                item = self._clip_inputs(clip, names, budget)
                item["clip"] = ClipInfo(video_key=key, names=names, frame_indices=clip.frame_indices, real=clip.real,
                                        return_masks=settings.return_masks,
                                        expected_frames=reader.header.num_frames, name=name,
                                        mask_frames=clip.mask_frames, mask_frame_indices=clip.mask_frame_indices)
                item["is_last"] = False
                if held is not None:
                    yield held
                held = item
        except BaseException:
            self._mask_stores.pop(key, None)
            raise
        held["clip"].video = reader.info  # the pass is over: the exact frame count
        held["clip"].source = reader.source
        held["is_last"] = True
        yield held

    def _clip_inputs(self, clip: Clip, names: tuple[str, ...], budget: dict[str, Any]) -> dict[str, Any]:
        """The processor's tensors for one clip, without the names' (they are encoded once per name list in
        ``_forward``, not per clip)."""
        inputs = self.processor([clip.frames], [list(names)], **budget)
        return {field: value for field, value in inputs.items() if not field.startswith("class_")}

    def score_clips(self, clips: Iterable[Clip], anomalies: list[str] | str, **options) -> Iterator[ClipScores]:
        """Score clips one at a time as they come (a live stream: ``lavida watch``), with the processor and model
        calls ``preprocess`` and ``_forward`` make for each clip of a video, and none of the video-level
        post-processing (filling, smoothing, events), which the caller does as the scores come.

        Args:
            clips: ``Clip``s of ``processor.clip_length`` frames, decoded at ``processor.decoding_size`` (as
                ``iter_clips`` gives them in ``preprocess``).
            anomalies: the names.
            options: ``DetectionOptions`` fields; ``llm_frame_pixels`` is the one that changes the scores.

        Yields:
            One ``ClipScores`` per clip, in order.
        """
        settings = DetectionOptions(**options)
        names = tuple(parse_anomaly_names(anomalies))
        budget = {} if settings.llm_frame_pixels is None else {"llm_frame_pixels": list(settings.llm_frame_pixels)}
        for clip in clips:
            item = self._clip_inputs(clip, names, budget)
            item["clip"] = ClipInfo(video_key="", names=names, frame_indices=clip.frame_indices, real=clip.real,
                                    return_masks=False, expected_frames=None, name="")
            item["is_last"] = False
            output = self.forward(item)
            real = np.asarray(clip.real, dtype=bool)
            named = output.get("name_probabilities")
            yield ClipScores(clip=clip, frame_indices=np.asarray(clip.frame_indices)[real],
                             probabilities=output["frame_probabilities"].reshape(-1).numpy()[real],
                             name_probabilities=None if named is None else named[0, :, :len(names)].numpy()[real])

    def _forward(self, model_inputs: dict[str, Any], progress: ProgressFn | None = None) -> dict[str, Any]:
        """The model on a batch of clips: ``frame_probabilities [b, T]``; masks go to the video's store."""
        clips = model_inputs.pop("clip")
        is_last = model_inputs.pop("is_last")
        infos: list[ClipInfo] = clips if isinstance(clips, list) else [clips]
        output = self.model(**model_inputs, **self._class_inputs([info.names for info in infos]))
        probabilities = self.processor.post_process_frame_scores(output.frame_logits)  # (b, T)
        for row, info in enumerate(infos):
            if info.return_masks:
                store = self._mask_stores.get(info.video_key)
                if store is None:
                    store = self._mask_stores[info.video_key] = LowResMaskStore()
                real = torch.from_numpy(info.real).to(output.mask_logits.device)
                masks = output.mask_logits[row][real].float().cpu().numpy()  # (real T, h, w)
                indices = info.frame_indices[info.real]
                if info.mask_frames is not None and len(info.mask_frames):
                    between = self._between_masks(output.seg_hidden_state[row: row + 1], info)  # (K, h, w)
                    indices = np.concatenate([indices, info.mask_frame_indices])
                    masks = np.concatenate([masks, between])
                info.mask_frames = None  # the clip's info stays until its video ends: memory must not grow with it
                order = np.argsort(indices, kind="stable")
                store.append(masks[order], indices[order])
        if progress is not None:
            last = infos[-1]
            progress(int(last.frame_indices[last.real].max()) + 1, last.expected_frames)
        outputs = {"frame_probabilities": probabilities, "clip": clips, "is_last": is_last}
        if output.name_logits is not None:  # a name-grounding model: each name's probability per frame (b, T, N)
            outputs["name_probabilities"] = self.processor.post_process_frame_scores(output.name_logits)
        return outputs

    def _between_masks(self, seg_hidden_state: torch.Tensor, info: ClipInfo) -> np.ndarray:
        """``float32 [K, h, w]`` mask logits of the clip's frames between its scored ones (``info.mask_frames``),
        from the model's per-frame path with the clip's ``f_sem`` ``seg_hidden_state [1, D]`` (``segment_frames``:
        no MLLM), ``clip_length`` times the batch size frames per call."""
        chunk = self.processor.clip_length * self._batch_size
        names = self._class_inputs([info.names])
        pieces = []
        for start in range(0, len(info.mask_frames), chunk):
            inputs = self.processor.segmenter_inputs(info.mask_frames[start: start + chunk])
            inputs = {key: value.to(self.device) for key, value in inputs.items()}
            out = self.model.segment_frames(seg_hidden_state, **inputs, **names)
            pieces.append(out.mask_logits[0].float().cpu().numpy())  # (k, h, w)
        return np.concatenate(pieces)

    def postprocess(self, model_outputs: list[dict[str, Any]], **options) -> VideoDetection:
        """One video's clips -> its ``VideoDetection`` (scores for every decoded frame, named events, lazy
        masks)."""
        settings = DetectionOptions(**options)
        infos: list[ClipInfo] = [output["clip"] for output in model_outputs]
        probabilities = [output["frame_probabilities"].reshape(-1).numpy() for output in model_outputs]  # (T,) each
        sampled_frames = np.concatenate([info.frame_indices[info.real] for info in infos])  # (S,)
        sampled_scores = np.concatenate([p[info.real] for p, info in zip(probabilities, infos)])  # (S,)
        last = infos[-1]
        video = last.video
        scores, events = self.processor.post_process_video_scores(
            sampled_frames, sampled_scores, video.num_frames, video.fps, threshold=settings.threshold,
            min_event_frames=settings.min_event_frames, smoothing_sigma=settings.smoothing_sigma,
            frame_edges_s=video.frame_edges_s())
        name_probabilities = None
        if all("name_probabilities" in output for output in model_outputs):
            count = len(last.names)  # a batch pads its name lists to the longest: keep this video's names
            name_probabilities = np.concatenate([  # (S, N)
                output["name_probabilities"].reshape(-1, output["name_probabilities"].shape[-1])[:, :count]
                .numpy()[info.real] for output, info in zip(model_outputs, infos)])
            events = name_events(events, sampled_frames, name_probabilities, list(last.names))
        store = self._mask_stores.pop(last.video_key, None)
        masks = None
        if settings.return_masks and store is not None:
            masks = FrameMasks(store.array(), store.frame_indices(), video.num_frames, (video.height, video.width))
        return VideoDetection(video=video, name=last.name, anomalies=list(last.names), options=settings,
                              model_id=self.model_id, scores=scores, events=events, sampled_frames=sampled_frames,
                              sampled_scores=sampled_scores, name_probabilities=name_probabilities, masks=masks,
                              source=last.source,
                              training_domain=getattr(self.model.config, "training_domain", None))

    # ------------------------------------------------------------------------------------------------ batching
    def get_iterator(self, inputs, num_workers: int, batch_size: int, preprocess_params: dict, forward_params: dict,
                     postprocess_params: dict):
        """``ChunkPipeline.get_iterator`` with this pipeline's collate function (clips of one or several videos)."""
        if "TOKENIZERS_PARALLELISM" not in os.environ:
            os.environ["TOKENIZERS_PARALLELISM"] = "false"
        if num_workers > 1:
            logger.warning("A chunk pipeline reads its inputs in order: using num_workers=1 instead of %d.",
                           num_workers)
            num_workers = 1
        chunks = _VideoChunks(inputs, self.preprocess, preprocess_params)
        dataset = Prefetched(chunks, self.prefetch_batches * batch_size) if self.prefetch_batches else chunks
        collate = no_collate_fn if batch_size == 1 else self._collate_clips
        loader = DataLoader(dataset, num_workers=num_workers, batch_size=batch_size, collate_fn=collate)
        model_iterator = PipelinePackIterator(loader, self.forward, forward_params, loader_batch_size=batch_size)
        return PipelineIterator(model_iterator, self.postprocess, postprocess_params)

    def _collate_clips(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        """Clips from ``preprocess`` -> one model batch: prompts right-padded to the longest (as the processor pads a
        batch), other tensors concatenated on dim 0; ``clip`` and ``is_last`` become lists."""
        batch: dict[str, Any] = {"clip": [item["clip"] for item in items],
                                 "is_last": [item["is_last"] for item in items]}
        length = max(item["input_ids"].shape[1] for item in items)
        for key in items[0]:
            if key in batch:
                continue
            values = [item[key] for item in items]
            if key in _TEXT_PADDING:
                fill = _TEXT_PADDING[key]
                fill = (self.processor.tokenizer.pad_token_id or 0) if fill is None else fill
                padded = values[0].new_full((len(values), length), fill)  # (b, L)
                for row, value in enumerate(values):
                    padded[row, : value.shape[1]] = value[0]
                batch[key] = padded
            else:
                batch[key] = torch.cat(values)
        return batch

    def _class_inputs(self, names_per_clip: list[tuple[str, ...]]) -> dict[str, torch.Tensor]:
        """The names of a batch of clips as the model takes them, encoded once per batch of name lists (a video's
        batches share theirs): ``class_embeddings [b, N, E]``, ``class_mask [b, N]`` and the token ids
        ``class_input_ids`` / ``class_attention_mask [b, N, Lc]`` (a grounding head that reads each word of a name
        encodes the words from them)."""
        key = tuple(names_per_clip)
        if key not in self._class_cache:
            if len(self._class_cache) >= _CLASS_CACHE_SIZE:
                self._class_cache.clear()
            encoded = {name: value.to(self.device)
                       for name, value in self.processor.encode_names([list(names) for names in key]).items()}
            encoded["class_embeddings"] = self.model.encode_class_names(encoded["class_input_ids"],
                                                                        encoded["class_attention_mask"])
            self._class_cache[key] = encoded
        return self._class_cache[key]

    # ------------------------------------------------------------------------------------------------ saving
    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> None:
        """``Pipeline.save_pretrained`` (model, its code and this pipeline's code, declared in ``config.json``) plus
        the processor, which ``Pipeline`` does not save."""
        super().save_pretrained(save_directory, **kwargs)
        self.processor.save_pretrained(save_directory)
        declare_pipeline(save_directory)


class _VideoChunks(IterableDataset):
    """Every clip ``preprocess`` yields for each video of ``videos``, in order (``PipelineChunkIterator``'s items, as
    one generator, so that closing it closes the video being decoded)."""

    def __init__(self, videos: Iterable[Any], preprocess: Callable[..., Iterator[dict[str, Any]]],
                 params: dict[str, Any]):
        self.videos, self.preprocess, self.params = videos, preprocess, params

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for video in self.videos:
            yield from self.preprocess(video, **self.params)


def declare_pipeline(save_directory: str | os.PathLike) -> list[Path]:
    """Copy this file and its sibling files into ``save_directory`` and declare the task in its ``config.json`` (when
    there is one) under ``custom_pipelines``, so that ``pipeline(TASK, model=save_directory, trust_remote_code=True)``
    works in a process without the package.

    Returns:
        The files copied.
    """
    copied = custom_object_save(VideoAnomalyDetectionPipeline, save_directory)
    config_file = Path(save_directory) / "config.json"
    if config_file.is_file():
        config = json.loads(config_file.read_text(encoding="utf-8"))
        module = VideoAnomalyDetectionPipeline.__module__.rsplit(".", 1)[-1]
        config.setdefault("custom_pipelines", {})[TASK] = {
            "impl": f"{module}.{VideoAnomalyDetectionPipeline.__name__}", "pt": ["AutoModel"], "type": "multimodal"}
        staging = config_file.with_name(f".{config_file.name}.{uuid.uuid4().hex[:8]}.partial")
        staging.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(staging, config_file)
    return sorted({Path(path) for path in copied})


def register_pipeline() -> None:
    """Make ``pipeline("video-anomaly-detection", ...)`` available in this process (done when ``lavida`` is
    imported)."""
    PIPELINE_REGISTRY.register_pipeline(TASK, pipeline_class=VideoAnomalyDetectionPipeline, pt_model=AutoModel,
                                        type="multimodal")


__all__ = ["DEFAULT_BATCH_SIZE", "TASK", "ClipInfo", "ClipScores", "VideoAnomalyDetectionPipeline", "declare_pipeline",
           "register_pipeline"]
