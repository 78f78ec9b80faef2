"""``LavidaProcessor``: turns clips + anomaly names into LAVIDA model inputs, and model outputs into scores/masks.

It wraps four sub-processors and adds only what LAVIDA needs (the prompt with ``<SEG>``, placeholder expansion,
per-name tokenisation):

- ``video_processor``: the MLLM's video processor (Qwen2-VL family) -> ``pixel_values_videos``, ``video_grid_thw``;
- ``tokenizer``: the MLLM's tokenizer, which knows ``<SEG>``; the chat prompt keeps ``mm_token_type_ids``;
- ``sam_image_processor``: SAM2's image processor -> ``sam_pixel_values [B, T, 3, S, S]`` (and, with
  ``grounding_image_size``, the same frames at that side for the name-grounding head, ``grounding_pixel_values``);
- ``class_tokenizer``: the class-name text encoder's tokenizer -> ``class_input_ids [B, N, Lc]``.

Prompt (section 1 of the method): a user turn with the video and "Detect anomalies in this video. Anomalies include
{names}." and an assistant answer containing ``<SEG>``. Inference uses one fixed phrasing; training samples one of
several (``phrasing="random"`` with a seeded generator). The whole conversation is one forward pass.

This file is copied next to saved processors for ``trust_remote_code`` loading: it imports only numpy, torch,
transformers and its siblings ``options`` and ``postprocessing`` (the ``post_process_*`` methods are the public entry
points of the post-processing steps every route takes); saving also writes the pipeline's files (``save_pretrained``).
"""

from __future__ import annotations

import math
import random

import numpy as np
import torch
from transformers import BatchEncoding, BatchFeature
from transformers.processing_utils import ProcessorMixin

from .options import check_pixel_budget
from .postprocessing import (DEFAULT_THRESHOLD, Event, frame_probabilities, mask_probabilities, postprocess_scores,
                             resize_masks)

INFERENCE_QUESTION = "Detect anomalies in this video. Anomalies include {names}."
INFERENCE_ANSWER = "Sure, it is {seg}."
TRAINING_QUESTIONS = (
    INFERENCE_QUESTION,
    "Are there any anomalies in this video? Possible anomalies: {names}.",
    "Find the abnormal events in the video. Candidates are {names}.",
    "Watch the video and segment any of these anomalies: {names}.",
    "Which of the following anomalies occur in this video: {names}? Segment them.",
)
TRAINING_ANSWERS = (
    INFERENCE_ANSWER,
    "It is {seg}.",
    "Sure, {seg}.",
    "The anomaly is {seg}.",
)
MAX_NAMES = 256
MAX_NAME_CHARS = 200
# Frames are decoded at least this many times larger (per side) than the largest size a sub-processor resizes them to,
# so their own antialiased resize still does the final reduction (see ``LavidaProcessor.decoding_size``); and only
# frames that this at least halves (per side) are scaled at all: a frame slightly above the margin is left as it is.
DECODING_MARGIN = 2.0
DECODING_MIN_REDUCTION = 0.5
_DECODING_SIZE_TRIES = 32  # slightly larger sizes tried until the MLLM's patch grid is the native size's


class LavidaProcessor(ProcessorMixin):
    """Processor of ``LavidaForVideoAnomalyDetection`` (see module docstring)."""

    return_mm_token_type_ids = True

    def __init__(self, video_processor=None, tokenizer=None, sam_image_processor=None, class_tokenizer=None,
                 chat_template: str | None = None, clip_length: int = 8, seg_token: str = "<SEG>",
                 llm_frame_pixels: list[int] | None = None, llm_train_frame_pixels: list[int] | None = None,
                 llm_image_pixels: list[int] | None = None, grounding_image_size: int | None = None, **kwargs):
        """
        Args:
            clip_length: frames per clip the model scores (8).
            llm_frame_pixels: ``[min, max]`` pixel area of one video frame for the MLLM at inference (the paper:
                160..192 x 28 x 28); None keeps the video processor's own ``size``.
            llm_train_frame_pixels: the same for training batches, i.e. calls with ``target_masks`` (the paper:
                32..64 x 28 x 28); None: as at inference.
            llm_image_pixels: ``[min, max]`` area of a single-frame sample (an image source, T = 1) for the MLLM (the
                paper: 32..1024 x 28 x 28); None: as for video frames.
            grounding_image_size: side of the frames the name-grounding head reads (``grounding_pixel_values``,
                resized and normalised as SAM2's), for a head whose evidence needs more pixels than SAM2's input
                (the shape of small objects); None: the head reads SAM2's frames.
        """
        if chat_template is None and tokenizer is not None:
            chat_template = getattr(tokenizer, "chat_template", None)
        super().__init__(video_processor, tokenizer, sam_image_processor, class_tokenizer,
                         chat_template=chat_template)
        self.clip_length = clip_length
        self.seg_token = seg_token
        self.llm_frame_pixels = _pixel_budget(llm_frame_pixels, "llm_frame_pixels")
        self.llm_train_frame_pixels = _pixel_budget(llm_train_frame_pixels, "llm_train_frame_pixels")
        self.llm_image_pixels = _pixel_budget(llm_image_pixels, "llm_image_pixels")
        if grounding_image_size is not None and (isinstance(grounding_image_size, bool)
                                                 or not isinstance(grounding_image_size, int) or grounding_image_size < 1):
            raise ValueError(f"grounding_image_size must be a positive int or None, got {grounding_image_size!r}.")
        self.grounding_image_size = grounding_image_size
        self.video_token = getattr(tokenizer, "video_token", "<|video_pad|>")

    # the processor's own settings (``__init__``'s keyword arguments besides its components)
    SETTINGS = ("clip_length", "seg_token", "llm_frame_pixels", "llm_train_frame_pixels", "llm_image_pixels",
                "grounding_image_size")

    def with_settings(self, **settings) -> "LavidaProcessor":
        """A processor with the same components (tokenizers, image and video processors, chat template) and these
        settings changed (names from ``SETTINGS``), e.g. a recipe's ``model.processor`` on top of a checkpoint's.

        Unlike ``from_pretrained(path, **settings)``, which also hands them to every component (a tokenizer then saves
        them in its own config), the components are left as they are.
        """
        unknown = sorted(set(settings) - set(self.SETTINGS))
        if unknown:
            raise ValueError(f"Unknown processor settings {unknown}; allowed: {list(self.SETTINGS)}.")
        current = {name: getattr(self, name) for name in self.SETTINGS}
        return type(self)(self.video_processor, self.tokenizer, self.sam_image_processor, self.class_tokenizer,
                          chat_template=self.chat_template, **{**current, **settings})

    # ------------------------------------------------------------------------------------------------ ids
    @property
    def seg_token_id(self) -> int:
        return self.tokenizer.convert_tokens_to_ids(self.seg_token)

    @property
    def video_token_id(self) -> int:
        return self.tokenizer.convert_tokens_to_ids(self.video_token)

    @property
    def temporal_patch_size(self) -> int:
        return int(getattr(self.video_processor, "temporal_patch_size", 2))

    def llm_pixel_budget(self, frames: int, training: bool = False,
                         override: list[int] | tuple[int, int] | None = None) -> list[int] | None:
        """``[min, max]`` MLLM pixel area per frame for clips of ``frames`` frames (None: the video processor's own
        ``size``). A single frame is an image sample and takes ``llm_image_pixels``; ``override`` (a call's
        ``llm_frame_pixels``) wins for video clips."""
        if frames == 1 and self.llm_image_pixels is not None:
            return self.llm_image_pixels
        if override is not None:
            return _pixel_budget(override, "llm_frame_pixels")
        if training and self.llm_train_frame_pixels is not None:
            return self.llm_train_frame_pixels
        return self.llm_frame_pixels

    def decoding_size(self, height: int, width: int,
                      llm_frame_pixels: list[int] | tuple[int, int] | None = None) -> tuple[int, int]:
        """The ``(height, width)`` to decode a ``height x width`` video's frames at: what the model needs, so memory
        does not grow with the video's resolution.

        The sub-processors shrink every frame anyway: SAM2 to its input size, the MLLM to its pixel budget per frame
        (``llm_frame_pixels`` overrides it, as in ``__call__``). A frame more than twice ``DECODING_MARGIN`` (2)
        times larger per side than both is scaled down, keeping its aspect ratio, to that margin, at a size where
        the MLLM gets the same patch grid as at the native size; any other frame keeps its size, so what the model
        sees changes only for such large frames, and only by the decoder's scaler going first.
        """
        native = (int(height), int(width))
        sam = self.sam_image_processor.size
        sam_height = _size_entry(sam, "height") or _size_entry(sam, "longest_edge")
        sam_width = _size_entry(sam, "width") or _size_entry(sam, "longest_edge")
        if sam_height and sam_width and self.grounding_image_size:  # the grounding head's frames may be larger
            sam_height, sam_width = max(sam_height, self.grounding_image_size), max(sam_width, self.grounding_image_size)
        budget = self.llm_pixel_budget(self.clip_length, override=llm_frame_pixels)
        llm_max = budget[1] if budget is not None else _size_entry(self.video_processor.size, "longest_edge")
        if not (sam_height and sam_width and llm_max) or min(native) < 1:
            return native  # a sub-processor whose sizes are unknown: nothing is safe to drop
        scale = DECODING_MARGIN * max(sam_height / native[0], sam_width / native[1],
                                      math.sqrt(llm_max / (native[0] * native[1])))
        if scale > DECODING_MIN_REDUCTION:
            return native
        grid = self._llm_patches(*native, budget)
        for attempt in range(_DECODING_SIZE_TRIES):
            factor = scale * (1.0 + 0.01 * attempt)
            if factor > DECODING_MIN_REDUCTION:
                break
            size = (max(1, math.ceil(native[0] * factor)), max(1, math.ceil(native[1] * factor)))
            if grid is None or self._llm_patches(*size, budget) == grid:
                return size
        return native

    def _llm_patches(self, height: int, width: int, budget: list[int] | None) -> int | None:
        """MLLM patches of one clip of ``height x width`` frames (None when the video processor cannot say)."""
        count = getattr(self.video_processor, "get_num_of_video_patches", None)
        if count is None:
            return None
        size = {} if budget is None else {"size": {"shortest_edge": budget[0], "longest_edge": budget[1]}}
        try:
            return int(count(self.clip_length, height, width, size))
        except (ValueError, TypeError, KeyError):  # e.g. an aspect ratio the MLLM rejects: the call will say so
            return None

    # ------------------------------------------------------------------------------------------------ prompt
    def build_prompt(self, names: list[str], phrasing: str | int = "inference", rng: random.Random | None = None
                     ) -> tuple[str, str]:
        """The chat text (with one video placeholder) and its assistant answer.

        Args:
            names: anomaly names, in the order they are listed.
            phrasing: ``"inference"`` (fixed), ``"random"`` (one of the training phrasings) or an index.
        """
        if phrasing == "inference":
            question, answer = INFERENCE_QUESTION, INFERENCE_ANSWER
        elif phrasing == "random":
            rng = rng or random.Random()
            question, answer = rng.choice(TRAINING_QUESTIONS), rng.choice(TRAINING_ANSWERS)
        else:
            question = TRAINING_QUESTIONS[int(phrasing) % len(TRAINING_QUESTIONS)]
            answer = TRAINING_ANSWERS[int(phrasing) % len(TRAINING_ANSWERS)]
        answer = answer.format(seg=self.seg_token)
        messages = [
            {"role": "user", "content": [{"type": "video"},
                                         {"type": "text", "text": question.format(names=", ".join(names))}]},
            {"role": "assistant", "content": [{"type": "text", "text": answer}]},
        ]
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, chat_template=self.chat_template)
        return text, answer

    # ------------------------------------------------------------------------------------------------ call
    def __call__(self, videos: list[np.ndarray] | np.ndarray, anomalies: list[list[str]] | list[str],
                 target_masks: list[np.ndarray] | np.ndarray | None = None, phrasing: str | int = "inference",
                 seed: int | None = None, return_tensors: str = "pt",
                 llm_frame_pixels: list[int] | tuple[int, int] | None = None, **kwargs) -> BatchFeature:
        """Build a batch.

        Args:
            videos: B clips, each ``uint8 [T_i, H, W, 3]``; T_i is 1 (an image sample, which the MLLM sees as one
                temporal patch) or a multiple of the temporal patch size (8 by default). Clips of different lengths
                may share a batch: the SAM2 frames and targets are padded to the longest and ``frame_mask`` says
                which frames are real.
            anomalies: one list of names per clip (or one list shared by all clips).
            target_masks: optional B arrays ``[T, H, W]`` (bool/0-1) for training; resized to SAM2's mask size.
            phrasing: ``"inference"``, ``"random"`` (training) or an index; seed: for ``"random"``.
            llm_frame_pixels: ``[min, max]`` MLLM pixel area per video frame for this call (see ``__init__``).

        Returns:
            ``BatchFeature`` with ``input_ids, attention_mask, mm_token_type_ids, pixel_values_videos,
            video_grid_thw, sam_pixel_values, class_input_ids, class_attention_mask, class_word_ids, class_mask``
            (and ``grounding_pixel_values [B, T, 3, G, G]`` with ``grounding_image_size``), with
            targets ``labels`` (assistant answer only) and ``target_masks [B, T, S, S]``, and, when the clips differ
            in length, ``frame_mask [B, T]``.
        """
        if isinstance(videos, np.ndarray) and videos.ndim == 4:
            videos = [videos]
        videos = [np.asarray(v) for v in videos]
        if not videos:
            raise ValueError("videos is empty: give at least one clip of shape [T, H, W, 3].")
        if not anomalies or isinstance(anomalies[0], str):
            anomalies = [list(anomalies)] * len(videos)
        if len(anomalies) != len(videos):
            raise ValueError(f"Got {len(videos)} clips but {len(anomalies)} anomaly lists: give one list per clip.")
        for names in anomalies:
            validate_names(names)
        for i, clip in enumerate(videos):
            if clip.ndim != 4 or clip.shape[-1] != 3:
                raise ValueError(f"Clip {i} has shape {clip.shape}; expected [T, H, W, 3] uint8 RGB frames.")
            if clip.shape[0] != 1 and clip.shape[0] % self.temporal_patch_size:
                raise ValueError(f"Clip {i} has {clip.shape[0]} frames; give 1 (an image) or a multiple of "
                                 f"{self.temporal_patch_size} (clip_length is {self.clip_length}).")
        counts = [clip.shape[0] for clip in videos]
        frames = max(counts)

        rng = random.Random(seed)
        video_inputs = self._mllm_video_inputs(videos, training=target_masks is not None,
                                               llm_frame_pixels=llm_frame_pixels)
        merge = int(getattr(self.video_processor, "merge_size", 2)) ** 2
        texts, answers = [], []
        for names, grid in zip(anomalies, video_inputs["video_grid_thw"]):
            text, answer = self.build_prompt(list(names), phrasing, rng)
            placeholder = self.video_token * (int(grid.prod()) // merge)
            texts.append(text.replace(self.video_token, placeholder, 1))
            answers.append(answer)
        self.tokenizer.padding_side = "right"
        encoded = self.tokenizer(texts, padding=True, return_tensors="pt")
        input_ids = encoded["input_ids"]
        mm_token_type_ids = torch.zeros_like(input_ids, dtype=torch.int)
        mm_token_type_ids[input_ids == self.video_token_id] = 2

        frame_pixels = self._frame_pixels(videos, counts, frames)
        sam_pixel_values = frame_pixels["sam_pixel_values"]  # (B, T, 3, S, S)

        class_batch = self.encode_names(anomalies)
        data = {
            "input_ids": input_ids,
            "attention_mask": encoded["attention_mask"],
            "mm_token_type_ids": mm_token_type_ids,
            "pixel_values_videos": video_inputs["pixel_values_videos"],
            "video_grid_thw": video_inputs["video_grid_thw"],
            **frame_pixels,
            **class_batch,
        }
        if len(set(counts)) > 1:
            data["frame_mask"] = torch.arange(frames)[None, :] < torch.tensor(counts)[:, None]
        if target_masks is not None:
            data["labels"] = self._answer_labels(input_ids, encoded["attention_mask"], texts, answers)
            size = tuple(sam_pixel_values.shape[-2:])
            targets = torch.zeros(len(videos), frames, *size)
            for row, masks in enumerate(target_masks):
                resized = self.resize_target_masks(masks, size)
                if resized.shape[0] != counts[row]:
                    raise ValueError(f"target_masks[{row}] has {resized.shape[0]} frames; clip {row} has "
                                     f"{counts[row]}.")
                targets[row, : counts[row]] = resized
            data["target_masks"] = targets
        return BatchFeature(data=data, tensor_type=return_tensors)

    def _mllm_video_inputs(self, videos: list[np.ndarray], training: bool,
                           llm_frame_pixels: list[int] | tuple[int, int] | None) -> dict[str, torch.Tensor]:
        """The MLLM's ``pixel_values_videos [sum patches, D]`` and ``video_grid_thw [B, 3]``, in clip order.

        Clips of each frame count go through the video processor together, with that count's pixel budget (an image
        sample has its own)."""
        by_count: dict[int, list[int]] = {}
        for index, clip in enumerate(videos):
            by_count.setdefault(clip.shape[0], []).append(index)
        pieces: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        for count, indices in by_count.items():
            budget = self.llm_pixel_budget(count, training=training, override=llm_frame_pixels)
            size = {} if budget is None else {"size": {"shortest_edge": budget[0], "longest_edge": budget[1]}}
            clips = [videos[i] for i in indices]
            # The layout and the frame size are given rather than guessed from the shape (which reads a 1- or
            # 3-pixel-high frame as channels-first, with a warning per clip).
            metadata = [{"total_num_frames": len(clip), "fps": None, "duration": None,
                         "frames_indices": list(range(len(clip))), "height": clip.shape[1], "width": clip.shape[2]}
                        for clip in clips]
            out = self.video_processor(videos=clips, return_tensors="pt", input_data_format="channels_last",
                                       video_metadata=metadata, **size)
            grids = out["video_grid_thw"]
            for index, grid, patches in zip(indices, grids, out["pixel_values_videos"].split(grids.prod(-1).tolist())):
                pieces[index] = (patches, grid)
        order = range(len(videos))
        return {"pixel_values_videos": torch.cat([pieces[i][0] for i in order]),
                "video_grid_thw": torch.stack([pieces[i][1] for i in order])}

    def segmenter_inputs(self, frames: np.ndarray, return_tensors: str = "pt") -> BatchFeature:
        """The inputs of the per-frame path alone (``LavidaForVideoAnomalyDetection.segment_frames``), for frames
        that take an already-encoded clip's prompt: ``sam_pixel_values [1, K, 3, S, S]`` (and
        ``grounding_pixel_values [1, K, 3, G, G]`` with ``grounding_image_size``), as ``__call__`` gives them.

        Args:
            frames: ``uint8 [K, H, W, 3]`` RGB, any K >= 1.
        """
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
            raise ValueError(f"frames has shape {frames.shape}; expected [K, H, W, 3] uint8 RGB with K >= 1.")
        return BatchFeature(data=self._frame_pixels([frames], [len(frames)], len(frames)),
                            tensor_type=return_tensors)

    def _frame_pixels(self, videos: list[np.ndarray], counts: list[int], frames: int) -> dict[str, torch.Tensor]:
        """What the per-frame path reads of the clips: ``sam_pixel_values [B, T, 3, S, S]`` and, with
        ``grounding_image_size``, ``grounding_pixel_values [B, T, 3, G, G]``."""
        pixels = {"sam_pixel_values": self._sam_frames(videos, counts, frames)}
        if self.grounding_image_size is not None:
            pixels["grounding_pixel_values"] = self._sam_frames(videos, counts, frames, self.grounding_image_size)
        return pixels

    def _sam_frames(self, videos: list[np.ndarray], counts: list[int], frames: int, side: int | None = None
                    ) -> torch.Tensor:
        """The clips' frames through SAM2's image processor (at ``side`` x ``side`` when given, else its own size),
        ``[B, T, 3, S, S]``, clips shorter than ``frames`` padded with zeros."""
        # Frames are always [H, W, 3]: saying so keeps a 1- or 3-pixel-high frame from being read as channels-first.
        size = {} if side is None else {"size": {"height": side, "width": side}}
        flat = self.sam_image_processor(images=[f for clip in videos for f in clip], return_tensors="pt",
                                        input_data_format="channels_last", **size)["pixel_values"]  # (sum T_i, 3, S, S)
        out = flat.new_zeros(len(videos), frames, *flat.shape[1:])
        for row, chunk in enumerate(flat.split(counts)):
            out[row, : len(chunk)] = chunk
        return out

    def encode_names(self, anomalies: list[list[str]]) -> dict[str, torch.Tensor]:
        """Tokenise each name for the class-name encoder: ``class_input_ids/attention_mask [B, N, Lc]``,
        ``class_word_ids [B, N, Lc]`` (the word of each token, ``-1`` for special and padding tokens; each token its own
        word for a tokenizer that does not track words), ``class_mask [B, N]`` (False for padding slots when lists
        differ in length)."""
        flat = [name for names in anomalies for name in names]
        eos = self.class_tokenizer.eos_token
        probe = self.class_tokenizer("a")["input_ids"]
        if eos is not None and probe[-1] != self.class_tokenizer.eos_token_id:
            flat = [name + eos for name in flat]  # pooled text towers read the EOS position
        tokens = self.class_tokenizer(flat, padding=True, truncation=True, return_tensors="pt")
        width = tokens["input_ids"].shape[1]
        most = max(len(names) for names in anomalies)
        ids = torch.full((len(anomalies), most, width), self.class_tokenizer.pad_token_id or 0, dtype=torch.long)
        mask = torch.zeros(len(anomalies), most, width, dtype=torch.long)
        real = torch.zeros(len(anomalies), most, dtype=torch.bool)
        special = set(self.class_tokenizer.all_special_ids)
        flat_words = torch.tensor([self._word_ids(tokens, k, special) for k in range(len(flat))],
                                  dtype=torch.long).reshape(len(flat), width)
        words = torch.full((len(anomalies), most, width), -1, dtype=torch.long)
        start = 0
        for row, names in enumerate(anomalies):
            ids[row, : len(names)] = tokens["input_ids"][start:start + len(names)]
            mask[row, : len(names)] = tokens["attention_mask"][start:start + len(names)]
            words[row, : len(names)] = flat_words[start:start + len(names)]
            mask[row, len(names):, 0] = 1  # padding names attend to one token so encoders stay finite
            real[row, : len(names)] = True
            start += len(names)
        return {"class_input_ids": ids, "class_attention_mask": mask, "class_word_ids": words, "class_mask": real}

    @staticmethod
    def _word_ids(tokens: BatchEncoding, index: int, special: set[int]) -> list[int]:
        """Name ``index``'s word of each token (from a fast tokenizer; otherwise each token its own word), -1 for the
        ``special`` token ids (an end-of-text token appended to the name is not a word) and for padding."""
        ids = tokens["input_ids"][index].tolist()
        words = tokens.word_ids(index) if getattr(tokens, "encodings", None) else list(range(len(ids)))
        return [-1 if token in special or word is None else word for token, word in zip(ids, words)]

    def _answer_labels(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, texts: list[str],
                       answers: list[str]) -> torch.Tensor:
        """LM labels on the assistant answer (and its end-of-turn token) only."""
        labels = torch.full_like(input_ids, -100)
        for row, (text, answer) in enumerate(zip(texts, answers)):
            prefix = text[: text.rindex(answer)]
            start = len(self.tokenizer(prefix)["input_ids"])
            answer_len = len(self.tokenizer(answer)["input_ids"]) + 1  # + <|im_end|>
            end = min(start + answer_len, int(attention_mask[row].sum()))
            labels[row, start:end] = input_ids[row, start:end]
        return labels

    @staticmethod
    def resize_target_masks(masks: np.ndarray | torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Binary training masks ``[..., H, W]`` -> ``[..., S, S]`` float 0/1 at SAM2's mask size (bilinear, > 0.5)."""
        tensor = torch.as_tensor(np.asarray(masks), dtype=torch.float32)
        return (resize_masks(tensor, size) > 0.5).float()

    # ------------------------------------------------------------------------------------------------ outputs
    @staticmethod
    def post_process_frame_scores(frame_logits: torch.Tensor) -> torch.Tensor:
        """``[B, T]`` object-score logits -> float32 anomaly probabilities in [0, 1]."""
        return frame_probabilities(frame_logits)

    @staticmethod
    def post_process_masks(mask_logits: torch.Tensor, original_size: tuple[int, int]) -> torch.Tensor:
        """``[..., h, w]`` mask logits -> float32 ``[..., H, W]`` anomaly probabilities at the native frame size.

        SAM2's image processor resizes frames without padding, so a plain bilinear resize maps back."""
        return mask_probabilities(mask_logits, original_size)

    @staticmethod
    def post_process_video_scores(sampled_indices: np.ndarray, sampled_scores: np.ndarray, num_frames: int,
                                  fps: float, threshold: float = DEFAULT_THRESHOLD, min_event_frames: int = 1,
                                  smoothing_sigma: float = 0.0, frame_edges_s: np.ndarray | None = None
                                  ) -> tuple[np.ndarray, list[Event]]:
        """One video's sampled-frame probabilities ``[S]`` -> ``(float32 [F] scores, events)``: every decoded frame
        takes its nearest sampled frame's score, the curve is smoothed (``smoothing_sigma`` frames, 0 = off) and the
        runs at or above ``threshold`` lasting ``min_event_frames`` frames become events, timed by
        ``frame_edges_s`` (``[F + 1]``, a variable frame rate) or ``i / fps`` (see ``postprocessing``)."""
        return postprocess_scores(sampled_indices, sampled_scores, num_frames, fps, threshold=threshold,
                                  min_event_frames=min_event_frames, smoothing_sigma=smoothing_sigma,
                                  frame_edges_s=frame_edges_s)

    # ------------------------------------------------------------------------------------------------ saving
    def save_pretrained(self, save_directory, push_to_hub: bool = False, **kwargs):
        """``ProcessorMixin.save_pretrained``; a processor exported for ``trust_remote_code`` also writes the
        ``video-anomaly-detection`` pipeline's code next to it and declares the pipeline in the folder's
        ``config.json`` (see ``pipeline_lavida.declare_pipeline``), so ``pipeline(task, model=folder,
        trust_remote_code=True)`` works without the package. Save the model first: its ``save_pretrained`` writes
        ``config.json`` afresh."""
        saved = super().save_pretrained(save_directory, push_to_hub=push_to_hub, **kwargs)
        if getattr(self, "_auto_class", None) is not None:
            from .pipeline_lavida import declare_pipeline

            declare_pipeline(save_directory)
        return saved


def _size_entry(size, key: str) -> int | None:
    """``size[key]`` of an image processor's ``size`` (a dict or transformers' ``SizeDict``), None when absent."""
    value = size.get(key) if isinstance(size, dict) else getattr(size, key, None)
    return int(value) if value else None


def _pixel_budget(value: list[int] | tuple[int, int] | None, name: str) -> list[int] | None:
    """``[min, max]`` pixel areas as a list of two positive ints with min <= max (None stays None)."""
    budget = check_pixel_budget(name, value)
    return None if budget is None else list(budget)


def validate_names(names: list[str]) -> None:
    """Raise ``ValueError`` for an empty list, blank names, more than 256 names or a name over 200 characters."""
    if not names or not any(str(n).strip() for n in names):
        raise ValueError("The anomaly list is empty: give at least one anomaly name, e.g. 'fighting, fire'.")
    if len(names) > MAX_NAMES:
        raise ValueError(f"Got {len(names)} anomaly names; at most {MAX_NAMES} are supported.")
    for name in names:
        if not str(name).strip():
            raise ValueError("An anomaly name is blank: remove empty entries from the list.")
        if len(name) > MAX_NAME_CHARS:
            raise ValueError(f"Anomaly name {name[:40]!r}... is {len(name)} characters; at most {MAX_NAME_CHARS}.")


__all__ = ["INFERENCE_ANSWER", "INFERENCE_QUESTION", "LavidaProcessor", "TRAINING_ANSWERS", "TRAINING_QUESTIONS",
           "validate_names"]
