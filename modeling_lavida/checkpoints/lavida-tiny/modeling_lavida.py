"""LAVIDA as a transformers model (Dai et al., "LAVIDA", CVPR 2026, arXiv 2602.19248).

A video MLLM (Qwen2-VL / Qwen2.5-VL / Qwen3-VL) reads the clip and the list of anomaly names in one forward pass;
the last-layer hidden state at ``<SEG>`` (``f_sem``), the class-name embeddings and SAM2's frame features go through
the semantic projector, which yields one sparse prompt per frame for SAM2's mask decoder: its object-score logit is
the frame's anomaly score and its best mask the pixel-level anomaly map (``config.frame_score`` and
``config.mask_source`` take them from the name-grounding head instead, for models that have one).

Departures from the authors' code (see the method page): visual token compression keeps the multimodal (3-D) rotary
positions of the surviving tokens and runs in training as well as inference.

This file is copied next to saved weights for ``trust_remote_code`` loading: it imports only torch, transformers and,
relatively, its sibling files.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import inspect
import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NotRequired, TypedDict

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, AutoModelForImageTextToText, PreTrainedModel
from transformers.utils import ModelOutput
from transformers.utils import logging as hf_logging

from .anomaly_mask_decoder import AnomalyMaskPrediction, SamFrameFeatures, decode_anomaly_masks, encode_frames
from .configuration_lavida import LavidaConfig
from .loss_lavida import LavidaLoss, LavidaLossTerms
from .name_grounding_head import (NameGroundingHead, WordAttributeGroundingHead,
                                  listed_name_targets, name_anomaly_map, name_grounding_loss, name_presence_logits,
                                  object_gated_logits)
from .semantic_projector import NamePromptEncoder, SemanticProjector
from .token_compressor import TokenCompressor, compress_sequence


logger = hf_logging.get_logger(__name__)

MAX_CACHED_NAMES = 50_000  # class-name vectors kept by a frozen text encoder's cache
# the keys of a ``grounding_labels`` input (see ``GroundingLabels``), then the optional ones
GROUNDING_LABEL_KEYS = ("input_ids", "attention_mask", "name_mask", "targets")
OPTIONAL_GROUNDING_LABEL_KEYS = ("word_ids",)


def module_dtype_map(model: nn.Module) -> dict[str, str] | None:
    """The dtypes of ``model``'s floating-point parameters and buffers as a compact map
    (``LavidaConfig.module_dtypes``), None when they all share one dtype.

    ``""`` holds the dtype with the most elements; below it, a module (or tensor) is listed where its majority dtype
    differs from its parent's, recursing only into modules that mix dtypes (float32 rotary frequencies inside a
    bfloat16 tower, float32 trained embeddings inside a bfloat16 MLLM)."""
    tensors = list(_floating_tensors(model))
    if len({tensor.dtype for _, tensor in tensors}) <= 1:
        return None
    root = _majority_dtype(tensors)
    entries = {"": _dtype_name(root)}

    def visit(prefix: str, module: nn.Module, inherited: torch.dtype) -> None:
        for name, tensor in _floating_tensors(module, recurse=False):
            if tensor.dtype != inherited:
                entries[prefix + name] = _dtype_name(tensor.dtype)
        for name, child in module.named_children():
            child_tensors = list(_floating_tensors(child))
            if not child_tensors:
                continue
            majority = _majority_dtype(child_tensors)
            if majority != inherited:
                entries[prefix + name] = _dtype_name(majority)
            if any(tensor.dtype != majority for _, tensor in child_tensors):
                visit(prefix + name + ".", child, majority)

    visit("", model, root)
    return entries


def apply_module_dtypes(model: nn.Module, module_dtypes: Mapping[str, str]) -> None:
    """Cast each floating-point parameter and buffer of ``model`` to the dtype of its deepest entry in
    ``module_dtypes`` (once, so no value passes through a narrower dtype on the way). Parameters are cast in place,
    which keeps tied weights tied."""

    def dtype_of(name: str) -> torch.dtype | None:
        key = name
        while key not in module_dtypes:
            if not key:
                return None
            key = key.rpartition(".")[0]
        return getattr(torch, module_dtypes[key])

    for name, parameter in model.named_parameters():
        dtype = dtype_of(name)
        if dtype is not None and parameter.is_floating_point() and parameter.dtype != dtype:
            parameter.data = parameter.data.to(dtype)
    for module_name, module in model.named_modules():
        for name, buffer in list(module._buffers.items()):
            dtype = dtype_of(f"{module_name}.{name}" if module_name else name)
            if buffer is not None and dtype is not None and buffer.is_floating_point() and buffer.dtype != dtype:
                module._buffers[name] = buffer.to(dtype)


def _align_cpu_tensors(model: nn.Module, alignment: int = 64) -> None:
    """Copy the CPU parameters and buffers that are not ``alignment``-byte aligned into fresh (aligned) memory.

    Weights read from a memory-mapped safetensors file sit wherever the file puts them (a bfloat16 tensor of odd length
    shifts every tensor after it), and CPU kernels sum in another (equally valid) order on unaligned data: a loaded
    model would differ from the one that was saved in the last bits. Tensors on accelerators are unaffected."""
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.device.type == "cpu" and parameter.numel() and parameter.data_ptr() % alignment:
                parameter.data = parameter.data.clone()
        for module in model.modules():
            for name, buffer in list(module._buffers.items()):
                if (buffer is not None and buffer.device.type == "cpu" and buffer.numel()
                        and buffer.data_ptr() % alignment):
                    module._buffers[name] = buffer.clone()


def _floating_tensors(module: nn.Module, recurse: bool = True):
    """``(name, tensor)`` of the floating-point parameters and buffers of ``module``."""
    for name, parameter in module.named_parameters(recurse=recurse):
        if parameter.is_floating_point():
            yield name, parameter
    for name, buffer in module.named_buffers(recurse=recurse):
        if buffer.is_floating_point():
            yield name, buffer


def _majority_dtype(tensors: list[tuple[str, torch.Tensor]]) -> torch.dtype:
    counts: dict[torch.dtype, int] = {}
    for _, tensor in tensors:
        counts[tensor.dtype] = counts.get(tensor.dtype, 0) + tensor.numel()
    return max(counts, key=counts.get)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def route_attn_implementation(attn_implementation: str | Mapping[str, str] | None) -> dict[str, str] | None:
    """An ``attn_implementation`` for LAVIDA's config: a plain string is the MLLM's (``{"mllm_config": ...}``), so
    ``"flash_attention_2"`` reaches the language model while SAM2 and the text encoder keep their defaults; a mapping
    of sub-config names (``mllm_config``, ``sam_config``, ``text_encoder_config``, ``""`` for LAVIDA itself) is kept."""
    if attn_implementation is None:
        return None
    if isinstance(attn_implementation, str):
        return {"mllm_config": attn_implementation}
    return dict(attn_implementation)


class GroundingLabels(TypedDict):
    """Training labels of the name-grounding head (``frame_score="name_grounding"``): M names per sample, each with
    its own mask (every object in view and the prompt's distractors; ``LavidaDataCollator`` builds them), instead of
    the prompt's names with the one target mask.

    Keys:
        input_ids: ``[B, M, Lc]`` the names' token ids (text-encoder tokenizer).
        attention_mask: ``[B, M, Lc]``.
        name_mask: ``[B, M]`` bool, False for padding names.
        targets: ``[B, M, T, H, W]`` each name's binary mask per frame (all zeros for a name not in view).
        word_ids (optional): ``[B, M, Lc]`` the word of each token (``-1`` for special and padding tokens).
    """

    input_ids: torch.LongTensor
    attention_mask: torch.LongTensor
    name_mask: torch.BoolTensor
    targets: torch.FloatTensor
    word_ids: NotRequired[torch.LongTensor]


@dataclass
class LavidaOutput(ModelOutput):
    """Output of ``LavidaForVideoAnomalyDetection``; ``to_tuple()`` (``return_dict=False``) keeps the fields that are
    not None, in this order.

    Attributes:
        loss: total mixed loss (when ``target_masks`` are given): the weighted sum of the terms below.
        lm_loss, focal_loss, dice_loss, iou_loss: the unweighted terms (when computed).
        object_score_loss: the unweighted BCE of the frame logits (training with
            ``config.frame_score="object_score"``).
        grounding_loss: the unweighted name-grounding head's loss (training with ``frame_score="name_grounding"``; it
            takes the object-score term's place and weight).
        frame_logits: ``[B, T]`` the per-frame anomaly score before the sigmoid (SAM2's object-score logit, or with
            ``config.frame_score="name_grounding"`` the largest of ``name_logits``).
        name_logits: ``[B, T, N]`` with ``frame_score="name_grounding"``: each name's presence logit per frame
            (padding names hold the dtype's minimum).
        mask_logits: ``[B, T, h, w]`` anomaly map logits, low resolution, from ``config.mask_source``: the decoder's
            candidate with the highest predicted IoU (``"decoder"``, the paper's), the name-grounding head's map of
            the listed names (``"name_grounding"``), or the decoder's objects each scored by its best match to a listed
            name (``"gated"``; ``"gated_or_names"`` with the name map outside them).
        iou_scores: ``[B, T, 3]`` predicted IoU of the decoder's three candidate masks.
        candidate_mask_logits: ``[B, T, 3, h, w]`` the decoder's three candidates (whatever ``mask_source``).
        seg_hidden_state: ``[B, D]`` the MLLM's last-layer hidden state at ``<SEG>``.
        num_visual_tokens: ``[B]`` visual tokens the LLM saw after compression.
        hidden_states: with ``output_hidden_states=True``, the MLLM's language model hidden states: a tuple of
            ``num_hidden_layers + 1`` tensors ``[B, S', D]`` (embeddings, then each layer's output) on the compressed
            sequence of ``S'`` tokens (right-padded).
        attentions: with ``output_attentions=True``, the language model's attention weights: a tuple of
            ``num_hidden_layers`` tensors ``[B, heads, S', S']``. Only the ``"eager"`` attention implementation
            returns them (transformers gives an empty tuple for the others).
    """

    loss: torch.FloatTensor | None = None
    lm_loss: torch.FloatTensor | None = None
    focal_loss: torch.FloatTensor | None = None
    dice_loss: torch.FloatTensor | None = None
    iou_loss: torch.FloatTensor | None = None
    object_score_loss: torch.FloatTensor | None = None
    grounding_loss: torch.FloatTensor | None = None
    frame_logits: torch.FloatTensor | None = None
    name_logits: torch.FloatTensor | None = None
    mask_logits: torch.FloatTensor | None = None
    iou_scores: torch.FloatTensor | None = None
    candidate_mask_logits: torch.FloatTensor | None = None
    seg_hidden_state: torch.FloatTensor | None = None
    num_visual_tokens: torch.LongTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class LavidaFrameOutput(ModelOutput):
    """Output of ``LavidaForVideoAnomalyDetection.segment_frames``: ``forward``'s per-frame fields for frames of clips
    whose prompts were encoded before.

    Attributes:
        frame_logits: ``[B, K]`` each frame's anomaly score before the sigmoid.
        name_logits: ``[B, K, N]`` each name's presence logit per frame (with ``frame_score="name_grounding"``).
        mask_logits: ``[B, K, h, w]`` anomaly map logits (``config.mask_source``), low resolution.
    """

    frame_logits: torch.FloatTensor | None = None
    name_logits: torch.FloatTensor | None = None
    mask_logits: torch.FloatTensor | None = None


@dataclass
class _PromptEncoding:
    """What the MLLM gives for a batch of prompts (``LavidaForVideoAnomalyDetection._encode_prompts``)."""

    seg_hidden_state: torch.Tensor  # (B, D)
    lm_loss: torch.Tensor | None  # scalar, with LM labels
    num_visual_tokens: torch.Tensor  # (B,)
    hidden_states: tuple[torch.Tensor, ...] | None  # num_layers + 1 x (B, S', D)
    attentions: tuple[torch.Tensor, ...] | None  # num_layers x (B, heads, S', S')


@dataclass
class _FramePredictions:
    """Per real frame (``BT`` = the batch's real frames, sample-major) predictions of the decoder and heads."""

    decoded: AnomalyMaskPrediction  # mask_logits (BT, 3, h, w), iou_scores (BT, 3), object_logits (BT,)
    mask_logits: torch.Tensor  # (BT, h, w) the returned anomaly map (config.mask_source)
    frame_logits: torch.Tensor  # (BT,)
    name_logits: torch.Tensor | None  # (BT, N), with the name-grounding head
    pixel_embeddings: torch.Tensor | None  # (BT, D, h, w), with the name-grounding head
    grounding_maps: torch.Tensor | None  # (BT, N, h, w), with the name-grounding head

    def per_frame(self, frame_mask: torch.Tensor | None, batch: int, frames: int) -> dict[str, torch.Tensor | None]:
        """The fields ``forward`` and ``segment_frames`` return, ``[B, T, ...]``: ``frame_logits``, ``name_logits``
        and ``mask_logits`` (padding frames score the lowest logit and have a zero mask)."""
        lowest = torch.finfo(self.frame_logits.dtype).min
        return {"frame_logits": _per_frame(self.frame_logits, frame_mask, batch, frames, lowest),
                "name_logits": (None if self.name_logits is None
                                else _per_frame(self.name_logits, frame_mask, batch, frames, lowest)),
                "mask_logits": _per_frame(self.mask_logits, frame_mask, batch, frames)}


def _name_words(tokens: list[int], word_ids: list[int]) -> list[list[int]]:
    """One name's token ids and word ids (``-1``: a special token) -> each word's tokens between the name's leading
    and trailing special tokens; a name without a word (a padding name) gives one, its second token (or its first)."""
    words = [position for position, word in enumerate(word_ids) if word >= 0]
    if not words:
        return [[tokens[0], tokens[1], tokens[-1]] if len(tokens) > 2 else tokens[:1]]
    head, tail = tokens[: words[0]], tokens[words[-1] + 1:]
    groups: dict[int, list[int]] = {}
    for position in words:
        groups.setdefault(word_ids[position], []).append(tokens[position])
    return [head + pieces + tail for pieces in groups.values()]


def _real_frames(values: torch.Tensor, frame_mask: torch.Tensor | None) -> torch.Tensor:
    """``[B, T, ...]`` -> ``[BT_real, ...]``: the real frames, sample-major."""
    return values.flatten(0, 1) if frame_mask is None else values[frame_mask]


def _per_frame(values: torch.Tensor, frame_mask: torch.Tensor | None, batch: int, frames: int,
               fill: float = 0.0) -> torch.Tensor:
    """``[BT_real, ...]`` -> ``[B, T, ...]``, padding frames filled with ``fill``."""
    if frame_mask is None:
        return values.reshape(batch, frames, *values.shape[1:])
    full = values.new_full((batch, frames, *values.shape[1:]), fill)
    full[frame_mask] = values
    return full


class LavidaPreTrainedModel(PreTrainedModel):
    config: LavidaConfig
    config_class = LavidaConfig
    base_model_prefix = "lavida"
    main_input_name = "input_ids"
    input_modalities = ("video", "text")
    supports_gradient_checkpointing = True
    # The loss is a mean over the batch, not a sum to be divided by ``num_items_in_batch``: without this the Trainer
    # (seeing ``**kwargs`` in ``forward``) would skip its division by the gradient-accumulation steps and, across
    # processes, multiply by their number.
    accepts_loss_kwargs = False
    _supports_sdpa = True
    _no_split_modules = [
        "Qwen2VLDecoderLayer", "Qwen2VLVisionBlock", "Qwen2_5_VLDecoderLayer", "Qwen2_5_VLVisionBlock",
        "Qwen3VLTextDecoderLayer", "Qwen3VLVisionBlock", "TwoWayQFormerBlock", "Sam2MaskDecoder",
    ]

    def save_pretrained(self, save_directory, *args, save_original_format: bool = False, **kwargs):
        """Save with the modules' own key names. transformers would otherwise rename the Qwen-VL keys back to their
        legacy layout (``mllm.visual.*``), which ``Trainer``'s resume (a plain ``load_state_dict``) cannot read.

        The dtype of each part is recorded in ``config.module_dtypes`` (when the parts differ), so ``from_pretrained``
        restores a bfloat16 tower as bfloat16 and float32 trained weights as float32. It is the dtype of the
        parameters in memory that is recorded, whatever dtype a ``state_dict`` argument stores them in."""
        self.config.module_dtypes = module_dtype_map(self)
        return super().save_pretrained(save_directory, *args, save_original_format=save_original_format, **kwargs)

    def _apply_recorded_dtypes(self) -> None:
        """Give each part the dtype ``config.module_dtypes`` records (from ``from_pretrained`` on the meta device,
        before the weights are read, so each tensor is materialised once, in its own dtype)."""
        if self.config.module_dtypes:
            apply_module_dtypes(self, self.config.module_dtypes)

    def set_attn_implementation(self, attn_implementation: str | dict, allow_all_kernels: bool = False):
        """As ``PreTrainedModel.set_attn_implementation``, but a plain string sets the MLLM's implementation only
        (see ``route_attn_implementation``); LAVIDA's own modules and SAM2 keep theirs."""
        return super().set_attn_implementation(route_attn_implementation(attn_implementation),
                                               allow_all_kernels=allow_all_kernels)

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, SemanticProjector):
            nn.init.normal_(module.queries, std=self.config.initializer_range)
        if isinstance(module, (NameGroundingHead, WordAttributeGroundingHead)):
            nn.init.ones_(module.logit_scale)
            nn.init.constant_(module.logit_bias, module.initial_logit_bias)


class LavidaForVideoAnomalyDetection(LavidaPreTrainedModel):
    """Zero-shot video anomaly detector: per-frame anomaly scores and pixel masks for user-named anomalies.

    Built from a saved checkpoint with ``from_pretrained``, or from three pretrained towers (MLLM, SAM2, text encoder)
    with ``lavida.model_factory.build_model_from_components``.
    """

    def __init__(self, config: LavidaConfig):
        super().__init__(config)
        self.mllm = AutoModelForImageTextToText.from_config(config.mllm_config)
        self.sam = AutoModel.from_config(config.sam_config)
        self.text_encoder = AutoModel.from_config(config.text_encoder_config)
        self.token_compressor = TokenCompressor(
            ratio=config.compression_ratio,
            k=config.lof_k,
            static_threshold=config.static_threshold,
            spatial_merge_size=config.mllm_config.vision_config.spatial_merge_size,
        )
        self.semantic_projector = SemanticProjector(config)
        self.name_prompt_encoder = NamePromptEncoder(config) if config.name_prompt_tokens else None
        self.name_grounding_head = None
        if config.frame_score == "name_grounding":
            head_class = WordAttributeGroundingHead if config.grounding_head == "word_attributes" else NameGroundingHead
            self.name_grounding_head = head_class(config)
        self.loss_function_lavida = LavidaLoss(config)
        self.text_encoder.register_load_state_dict_post_hook(self._clear_class_embedding_cache)
        self._apply_recorded_dtypes()
        self.post_init()

    # ------------------------------------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """``PreTrainedModel.from_pretrained`` that loads safetensors only and refuses a checkpoint whose keys do not
        match this architecture (instead of silently initialising the missing weights at random).

        ``new_modules`` (keyword, default none) names modules the checkpoint may lack because a config override
        switches them on (``name_grounding_head`` with ``frame_score="name_grounding"``, to fine-tune a checkpoint
        into one); they start from their initialisation.

        Without ``dtype`` (or with ``"auto"``) every part gets back the dtype it was saved with
        (``config.module_dtypes``: a bfloat16 MLLM stays bfloat16 next to float32 trained weights); an explicit
        ``dtype`` loads everything in that one dtype. ``attn_implementation`` as a string sets the MLLM's attention
        implementation only (SAM2 and the text encoder keep theirs; ``LavidaConfig`` routes it, so
        ``AutoModel.from_pretrained`` does the same); a mapping of sub-config names sets each part."""
        want_info = kwargs.pop("output_loading_info", False)
        new_modules = tuple(kwargs.pop("new_modules", ()) or ())
        kwargs.setdefault("use_safetensors", True)
        if kwargs.get("dtype", kwargs.get("torch_dtype")) not in (None, "auto"):
            config = kwargs.get("config")
            if isinstance(config, LavidaConfig):
                kwargs["config"] = config = copy.deepcopy(config)
                config.module_dtypes = None
            elif config is None:
                kwargs["module_dtypes"] = None  # a config override: one dtype for every part
        model, info = super().from_pretrained(pretrained_model_name_or_path, *model_args,
                                              output_loading_info=True, **kwargs)
        _align_cpu_tensors(model)
        missing = sorted(key for key in (info.get("missing_keys") or [])
                         if not any(key == module or key.startswith(module + ".") for module in new_modules))
        unexpected = sorted(info.get("unexpected_keys") or [])
        mismatched = sorted(str(m) for m in (info.get("mismatched_keys") or []))
        if missing or unexpected or mismatched:
            parts = []
            for label, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                                ("shape-mismatched keys", mismatched)):
                if keys:
                    shown = ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")
                    parts.append(f"{label}: {shown}")
            raise ValueError(
                f"Checkpoint {pretrained_model_name_or_path} does not match {cls.__name__} ({'; '.join(parts)}). "
                "Use a folder written by save_pretrained for this architecture and config."
            )
        return (model, info) if want_info else model

    def freeze_towers(self, vision_tower: bool = True, sam_image_encoder: bool = True, text_encoder: bool = True
                      ) -> None:
        """Freeze the parts the paper keeps frozen: the MLLM's vision tower, SAM2's image encoder, the text encoder."""
        if vision_tower:
            self.mllm.model.visual.requires_grad_(False)
        if sam_image_encoder:
            self.sam.vision_encoder.requires_grad_(False)
        if text_encoder:
            self.text_encoder.requires_grad_(False)

    # ------------------------------------------------------------------------------------------------ encoders
    def encode_class_names(self, class_input_ids: torch.Tensor, class_attention_mask: torch.Tensor) -> torch.Tensor:
        """One vector per anomaly name.

        Args:
            class_input_ids: ``[B, N, Lc]`` token ids of each name (text-encoder tokenizer).
            class_attention_mask: ``[B, N, Lc]``.

        Returns:
            ``[B, N, E]``.
        """
        batch, names, length = class_input_ids.shape
        ids = class_input_ids.reshape(batch * names, length)
        mask = class_attention_mask.reshape(batch * names, length)
        return self._encode_texts(ids, mask).reshape(batch, names, -1)

    def _encode_texts(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``[M, L]`` token ids -> ``[M, E]``: through the cache when the text encoder is frozen."""
        if not self._text_encoder_trainable():
            return self._cached_class_embeddings(ids, mask)
        return self._pool_text(ids, mask)

    def encode_name_words(self, class_input_ids: torch.Tensor, class_attention_mask: torch.Tensor,
                          class_word_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Each word of each name encoded alone (``grounding_head="word_attributes"``).

        With the tokenizer's word ids, a name tokenised as ``[CLS] he ##xa ##gon ... [SEP]`` gives one vector per word,
        each word's pieces encoded between the name's own leading and trailing special tokens (``[CLS] he ##xa ##gon
        [SEP]``), so that no word's vector depends on the other words of its name and a word split into pieces is
        still read as the word. Without word ids, every token between the name's first and last is a word of its own
        (``[CLS] t_i [SEP]``). A name with no word (a padding name) gets one, its second token.

        Args:
            class_input_ids, class_attention_mask: ``[B, N, Lc]``.
            class_word_ids: ``[B, N, Lc]`` the word each token belongs to (``LavidaProcessor.encode_names``:
                ``-1`` for special and padding tokens), or None.

        Returns:
            ``[B, N, W, E]`` word vectors (zeros where there is no word) and ``[B, N, W]`` bool, the real words.
        """
        batch, names, length = class_input_ids.shape
        device = class_input_ids.device
        rows = class_input_ids.reshape(batch * names, length).tolist()
        lengths = class_attention_mask.reshape(batch * names, length).sum(dim=1).tolist()
        if class_word_ids is None:  # every token between the first and the last is a word
            word_rows = [[-1] + list(range(n - 2)) + [-1] if n >= 2 else [-1] for n in lengths]
        else:
            word_rows = class_word_ids.reshape(batch * names, length).tolist()
        texts = [_name_words(row[:n], words[:n]) for row, words, n in zip(rows, word_rows, lengths)]  # M x [tokens]
        flat = [word for words in texts for word in words]  # (K,) every word's tokens, name-major
        order = sorted(range(len(flat)), key=lambda k: len(flat[k]))
        vectors = []
        for size, group in itertools.groupby(order, key=lambda k: len(flat[k])):  # one length: no padding needed
            ids = torch.tensor([flat[k] for k in group], device=device)
            vectors.append(self._encode_texts(ids, torch.ones_like(ids)))
        vectors = torch.cat(vectors)[torch.tensor(order, device=device).argsort()]  # (K, E) back in name order
        count = max(len(words) for words in texts)
        word_mask = torch.tensor([[k < len(words) for k in range(count)] for words in texts], device=device)
        out = vectors.new_zeros(batch * names, count, vectors.shape[-1])
        out[word_mask] = vectors  # row-major, as ``flat``
        return out.reshape(batch, names, count, -1), word_mask.reshape(batch, names, count)

    def _grounding_names(self, class_embeddings: torch.Tensor | None, class_input_ids: torch.Tensor | None,
                         class_attention_mask: torch.Tensor | None, class_word_ids: torch.Tensor | None = None
                         ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """What the name-grounding head matches: the names' vectors ``[B, N, E]`` (``pooled_name``), or their words
        (``word_attributes``, from ``encode_name_words``, which needs the token ids and reads the word ids)."""
        if self.config.grounding_head != "word_attributes":
            if class_embeddings is None:
                class_embeddings = self.encode_class_names(class_input_ids, class_attention_mask)
            return class_embeddings
        if class_input_ids is None:
            raise ValueError("This model's name-grounding head (grounding_head='word_attributes') reads each word of "
                             "the names: pass class_input_ids and class_attention_mask (LavidaProcessor.encode_names) "
                             "as well as or instead of class_embeddings.")
        if class_attention_mask is None:
            class_attention_mask = torch.ones_like(class_input_ids)
        return self.encode_name_words(class_input_ids, class_attention_mask, class_word_ids)

    def _text_encoder_trainable(self) -> bool:
        return any(p.requires_grad for p in self.text_encoder.parameters())

    def _cached_class_embeddings(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """A frozen encoder maps the same name to the same vector, so each distinct name is encoded once.

        Keyed by the name's tokens; cleared whenever the text encoder's weights are loaded (training draws names from
        a small vocabulary, and inference encodes a video's names once)."""
        cache: dict[tuple[int, ...], torch.Tensor] = self.__dict__.setdefault("_class_embedding_cache", {})
        keys = [tuple(row[row_mask.bool()].tolist()) for row, row_mask in zip(ids, mask)]
        new_rows: dict[tuple[int, ...], int] = {}
        for row, key in enumerate(keys):
            if key not in cache:
                new_rows.setdefault(key, row)
        if new_rows:
            if len(cache) + len(new_rows) > MAX_CACHED_NAMES:  # open vocabularies (referring expressions)
                cache.clear()
            index = torch.tensor(list(new_rows.values()), device=ids.device)
            with torch.no_grad():
                pooled = self._pool_text(ids[index], mask[index])
            cache.update(zip(new_rows, pooled.detach()))
        return torch.stack([cache[key] for key in keys])

    def _clear_class_embedding_cache(self, *args) -> None:
        self.__dict__.pop("_class_embedding_cache", None)

    def _pool_text(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``[M, Lc]`` token ids -> ``[M, E]`` one vector per name (see ``config.text_pooling``)."""
        out = self.text_encoder(input_ids=ids, attention_mask=mask)
        if self.config.text_pooling == "pooler":
            return out.pooler_output
        if self.config.text_pooling == "cls":
            return out.last_hidden_state[:, 0]
        weights = mask[..., None].to(out.last_hidden_state.dtype)
        return (out.last_hidden_state * weights).sum(1) / weights.sum(1).clamp_min(1.0)

    def train(self, mode: bool = True):
        """A frozen text encoder stays in eval mode (no dropout), so its name vectors are fixed."""
        super().train(mode)
        if not self._text_encoder_trainable():
            self.text_encoder.eval()
        return self

    def encode_frames(self, sam_pixel_values: torch.Tensor) -> SamFrameFeatures:
        """SAM2 image features for ``[B, T, 3, S, S]`` frames (computed once per frame)."""
        return encode_frames(self.sam, sam_pixel_values.flatten(0, 1))

    # ------------------------------------------------------------------------------------------------ forward
    def forward(
        self,
        input_ids: torch.LongTensor,
        pixel_values_videos: torch.FloatTensor,
        video_grid_thw: torch.LongTensor,
        sam_pixel_values: torch.FloatTensor,
        mm_token_type_ids: torch.IntTensor | None = None,
        attention_mask: torch.LongTensor | None = None,
        class_input_ids: torch.LongTensor | None = None,
        class_attention_mask: torch.LongTensor | None = None,
        class_word_ids: torch.LongTensor | None = None,
        class_mask: torch.BoolTensor | None = None,
        class_embeddings: torch.FloatTensor | None = None,
        frame_mask: torch.BoolTensor | None = None,
        labels: torch.LongTensor | None = None,
        target_masks: torch.FloatTensor | None = None,
        name_labels: torch.FloatTensor | None = None,
        grounding_labels: GroundingLabels | None = None,
        grounding_pixel_values: torch.FloatTensor | None = None,
        object_score_scale: float = 1.0,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> LavidaOutput | tuple[torch.Tensor, ...]:
        """
        Args:
            input_ids: ``[B, S]`` chat prompt with the video placeholder tokens and one ``<SEG>`` in the answer.
            pixel_values_videos: ``[sum patches, C*tp*p*p]``; video_grid_thw: ``[B, 3]`` (MLLM video processor).
            sam_pixel_values: ``[B, T, 3, S_sam, S_sam]`` the same T frames for SAM2.
            mm_token_type_ids: ``[B, S]`` (0 text, 2 video), needed for the multimodal rotary positions (default:
                read from ``input_ids``).
            attention_mask: ``[B, S]``.
            class_input_ids, class_attention_mask: ``[B, N, Lc]`` anomaly names for the text encoder, or
            class_embeddings: ``[B, N, E]`` precomputed with ``encode_class_names`` (once per video).
            class_word_ids: ``[B, N, Lc]`` the word of each name token (``-1`` for special and padding tokens), read
                by the ``word_attributes`` grounding head so that a word split into pieces is one word
                (``encode_name_words``); ``LavidaProcessor.encode_names`` gives them.
            class_mask: ``[B, N]`` bool, False for padding names (default: all real).
            frame_mask: ``[B, T]`` bool, False for padding frames, in a batch whose samples have different frame
                counts (image samples, T = 1, beside 8-frame clips; ``LavidaProcessor`` pads them and gives the mask).
                Padding frames are never computed; in the outputs their frame logits hold the dtype's minimum and
                their masks zeros. None: every frame is real.
            labels: ``[B, S]`` LM labels (-100 where not trained); gives ``lm_loss``.
            target_masks: ``[B, T, H, W]`` binary anomaly masks; gives the segmentation terms and ``loss``.
            name_labels: ``[B, N]`` 1 for the clip's true target names, 0 for distractors; with
                ``frame_score="name_grounding"`` training needs them or ``grounding_labels`` (the frame-score term is
                then the grounding head's per-(frame, name, pixel) loss). Unused by other models.
            grounding_labels: ``GroundingLabels`` (a dict: ``input_ids``, ``attention_mask``, ``name_mask``,
                ``targets``): names with their own masks for the grounding head's loss instead of the prompt's.
                Unused by models without the name-grounding head.
            grounding_pixel_values: ``[B, T, 3, G, G]`` the same frames at another size (normalised as SAM2's) for
                the name-grounding head to read instead of SAM2's (``LavidaProcessor(grounding_image_size=G)``);
                unused by models without the head.
            object_score_scale: factor on the frame-score term's weight in ``loss`` (a warm-up schedule's ramp);
                the terms themselves are unweighted either way.
            output_hidden_states: return the MLLM language model's hidden states (default
                ``config.output_hidden_states``).
            output_attentions: return its attention weights (default ``config.output_attentions``).
            return_dict: a ``LavidaOutput`` (default ``config.return_dict``), else its ``to_tuple()``.

        Returns:
            ``LavidaOutput`` (see its fields), or the tuple of its fields that are not None.
        """
        if kwargs:
            raise ValueError(self._unknown_inputs_message(kwargs))
        return_dict = self.config.return_dict if return_dict is None else return_dict
        if output_hidden_states is None:
            output_hidden_states = bool(self.config.output_hidden_states)
        if output_attentions is None:
            output_attentions = bool(self.config.output_attentions)
        with self._precision(input_ids.device.type):
            batch, frames = sam_pixel_values.shape[:2]
            frame_mask = None if frame_mask is None else frame_mask.bool()
            self._check_inputs(input_ids, video_grid_thw, frames, class_input_ids, class_embeddings, class_mask,
                               target_masks, frame_mask, grounding_labels, sam_pixel_values, grounding_pixel_values)
            prompts = self._encode_prompts(input_ids, attention_mask, mm_token_type_ids, pixel_values_videos,
                                           video_grid_thw, labels, output_hidden_states, output_attentions)
            class_embeddings, class_mask = self._class_names(class_input_ids, class_attention_mask, class_mask,
                                                             class_embeddings)
            # frames per sample: T for all, or [B] counts; per-frame work runs on the real frames only, sample-major
            per_sample = frames if frame_mask is None else frame_mask.sum(dim=1)
            predictions = self._predict_frames(prompts.seg_hidden_state, class_embeddings, class_mask,
                                               sam_pixel_values, per_sample, frame_mask, class_input_ids,
                                               class_attention_mask, class_word_ids, grounding_pixel_values)

            losses: dict[str, torch.Tensor | None] = {"lm_loss": prompts.lm_loss}
            if target_masks is not None:
                terms = self._loss_terms(predictions, class_mask, per_sample, frame_mask, target_masks,
                                         prompts.lm_loss, name_labels, grounding_labels)
                losses = {"loss": self.loss_function_lavida.total(terms, object_score_scale=object_score_scale),
                          "lm_loss": terms.lm_loss, "focal_loss": terms.focal_loss, "dice_loss": terms.dice_loss,
                          "iou_loss": terms.iou_loss, "object_score_loss": terms.object_score_loss,
                          "grounding_loss": terms.grounding_loss}
            decoded = predictions.decoded
            # built in one go: a ModelOutput field set after construction would come last in to_tuple()
            output = LavidaOutput(
                **losses,
                **predictions.per_frame(frame_mask, batch, frames),
                iou_scores=_per_frame(decoded.iou_scores, frame_mask, batch, frames),
                candidate_mask_logits=_per_frame(decoded.mask_logits, frame_mask, batch, frames),
                seg_hidden_state=prompts.seg_hidden_state,
                num_visual_tokens=prompts.num_visual_tokens,
                hidden_states=prompts.hidden_states,
                attentions=prompts.attentions,
            )
        return output if return_dict else output.to_tuple()

    def segment_frames(
        self,
        seg_hidden_state: torch.FloatTensor,
        sam_pixel_values: torch.FloatTensor,
        class_input_ids: torch.LongTensor | None = None,
        class_attention_mask: torch.LongTensor | None = None,
        class_word_ids: torch.LongTensor | None = None,
        class_mask: torch.BoolTensor | None = None,
        class_embeddings: torch.FloatTensor | None = None,
        grounding_pixel_values: torch.FloatTensor | None = None,
    ) -> LavidaFrameOutput:
        """``forward``'s per-frame path (projector, mask decoder, name heads) on frames of clips whose prompts were
        already encoded: the MLLM does not run, each clip's ``f_sem`` is given. Every frame is decoded on its own
        (no memory between frames), so on a frame ``forward`` saw this gives ``forward``'s outputs for it; on the frames
        between two scored ones it gives their masks without scoring them through the MLLM (the pipeline's
        ``mask_stride``).

        Args:
            seg_hidden_state: ``[B, D]`` ``f_sem`` of each clip (``forward``'s ``seg_hidden_state``).
            sam_pixel_values: ``[B, K, 3, S_sam, S_sam]`` K frames per clip for SAM2 (``LavidaProcessor``'s
                ``segmenter_inputs``), any K >= 1.
            class_input_ids, class_attention_mask, class_word_ids, class_mask, class_embeddings: the anomaly names,
                as ``forward`` takes them.
            grounding_pixel_values: ``[B, K, 3, G, G]`` the same frames at the name-grounding head's size, for a
                processor with ``grounding_image_size``.

        Returns:
            ``LavidaFrameOutput``: ``frame_logits [B, K]``, ``name_logits [B, K, N]`` (with the name-grounding head)
            and ``mask_logits [B, K, h, w]``, as ``forward``'s.
        """
        batch, frames = sam_pixel_values.shape[:2]
        if seg_hidden_state.dim() != 2 or seg_hidden_state.shape[0] != batch:
            raise ValueError(f"seg_hidden_state must be [B, D] with B = {batch} (sam_pixel_values' clips); got shape "
                             f"{tuple(seg_hidden_state.shape)}.")
        self._check_names(class_input_ids, class_embeddings, class_mask)
        self._check_grounding_inputs(frames, None, sam_pixel_values, grounding_pixel_values)
        with self._precision(sam_pixel_values.device.type):
            class_embeddings, class_mask = self._class_names(class_input_ids, class_attention_mask, class_mask,
                                                             class_embeddings)
            predictions = self._predict_frames(seg_hidden_state, class_embeddings, class_mask, sam_pixel_values,
                                               frames, None, class_input_ids, class_attention_mask, class_word_ids,
                                               grounding_pixel_values)
        return LavidaFrameOutput(**predictions.per_frame(None, batch, frames))

    def grounding_head_loss(self, sam_pixel_values: torch.FloatTensor, grounding_labels: GroundingLabels,
                            grounding_pixel_values: torch.FloatTensor | None = None,
                            frame_mask: torch.BoolTensor | None = None) -> torch.Tensor:
        """The name-grounding head's loss alone (``forward``'s ``grounding_loss`` on ``grounding_labels``), for a stage
        that trains only the head (``train_step: grounding_head`` in a recipe).

        When nothing but the head trains, the other terms of ``forward``'s loss have no gradient: this runs only what
        the head reads. The MLLM, the projector and the mask decoder are not run; SAM2's image encoder only for a head
        that reads its features (``NameGroundingHead``; the ``word_attributes`` head reads the frames alone).

        Args:
            sam_pixel_values: ``[B, T, 3, S, S]`` SAM2's frames.
            grounding_labels: ``GroundingLabels`` (names with their own masks, ``targets [B, M, T, H, W]``).
            grounding_pixel_values: ``[B, T, 3, G, G]`` the frames at the head's own size, when the processor gives
                them.
            frame_mask: ``[B, T]`` bool, False for padding frames.

        Returns:
            The scalar unweighted grounding loss.
        """
        head = self.name_grounding_head
        if head is None:
            raise ValueError("grounding_head_loss needs the name-grounding head (config.frame_score='name_grounding'); "
                             "this model has none.")
        if grounding_labels is None:
            raise ValueError("grounding_head_loss trains on grounding_labels (every object in view with its own mask): "
                             "build the corpus with object_labels and pass its rows through LavidaDataCollator.")
        frames = sam_pixel_values.shape[1]
        frame_mask = None if frame_mask is None else frame_mask.bool()
        self._check_grounding_inputs(frames, grounding_labels, sam_pixel_values, grounding_pixel_values)
        per_sample = frames if frame_mask is None else frame_mask.sum(dim=1)
        sam_frames = _real_frames(sam_pixel_values, frame_mask)  # (BT, 3, S, S)
        features = encode_frames(self.sam, sam_frames).feature_maps if head.reads_sam_features else None
        pixels = head.pixel_embeddings(
            features, sam_frames if grounding_pixel_values is None else _real_frames(grounding_pixel_values, frame_mask))
        return self._labelled_grounding_loss(pixels, grounding_labels, per_sample, frame_mask)

    # ------------------------------------------------------------------------------------------------ forward steps
    def _class_names(self, class_input_ids: torch.Tensor | None, class_attention_mask: torch.Tensor | None,
                     class_mask: torch.Tensor | None, class_embeddings: torch.Tensor | None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """The names as ``class_embeddings [B, N, E]`` (encoded here unless given) and ``class_mask [B, N]`` bool
        (all real unless given)."""
        if class_embeddings is None:
            class_embeddings = self.encode_class_names(class_input_ids, class_attention_mask)  # (B, N, E)
        class_mask = (torch.ones(class_embeddings.shape[:2], dtype=torch.bool, device=class_embeddings.device)
                      if class_mask is None else class_mask.bool())  # (B, N)
        return class_embeddings, class_mask

    def _encode_prompts(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                        mm_token_type_ids: torch.Tensor | None, pixel_values_videos: torch.Tensor,
                        video_grid_thw: torch.Tensor, labels: torch.Tensor | None, output_hidden_states: bool,
                        output_attentions: bool) -> _PromptEncoding:
        """The prompts through the MLLM (vision tower, token compression, LLM) in one pass: ``f_sem`` ``[B, D]`` at
        ``<SEG>``, and the LM loss when ``labels [B, S]`` are given."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if mm_token_type_ids is None:
            mm_token_type_ids = self._mm_token_type_ids(input_ids)
        sequence = compress_sequence(self.mllm, self.token_compressor, input_ids, attention_mask, mm_token_type_ids,
                                     pixel_values_videos, video_grid_thw, labels)
        llm_inputs = {"inputs_embeds": sequence.inputs_embeds, "attention_mask": sequence.attention_mask,
                      "position_ids": sequence.position_ids, "use_cache": False,
                      "output_attentions": output_attentions}
        if labels is not None:  # the LM head and loss, with the last hidden state for <SEG>
            llm_out = self.mllm(**llm_inputs, labels=sequence.labels, output_hidden_states=True)
            last_hidden, lm_loss = llm_out.hidden_states[-1], llm_out.loss  # (B, S', D)
        else:  # no LM head needed: only the hidden state at <SEG>
            llm_out = self.mllm.model(**llm_inputs, output_hidden_states=output_hidden_states)
            last_hidden, lm_loss = llm_out.last_hidden_state, None  # (B, S', D)
        return _PromptEncoding(
            seg_hidden_state=self._seg_hidden_state(last_hidden, sequence.input_ids, sequence.attention_mask),
            lm_loss=lm_loss,
            num_visual_tokens=sequence.num_visual_tokens,
            hidden_states=llm_out.hidden_states if output_hidden_states else None,
            attentions=llm_out.attentions if output_attentions else None,
        )

    def _predict_frames(self, seg_hidden: torch.Tensor, class_embeddings: torch.Tensor, class_mask: torch.Tensor,
                        sam_pixel_values: torch.Tensor, per_sample: int | torch.Tensor,
                        frame_mask: torch.Tensor | None, class_input_ids: torch.Tensor | None,
                        class_attention_mask: torch.Tensor | None, class_word_ids: torch.Tensor | None,
                        grounding_pixel_values: torch.Tensor | None) -> _FramePredictions:
        """Projector, mask decoder and (when configured) the name heads on the real frames.

        Args:
            seg_hidden: ``[B, D]`` ``f_sem``.
            class_embeddings: ``[B, N, E]``; class_mask: ``[B, N]`` bool.
            sam_pixel_values: ``[B, T, 3, S, S]``; frame_mask: ``[B, T]`` bool or None (all real).
            per_sample: T, or ``[B]`` real frames per sample.
            class_input_ids, class_attention_mask, class_word_ids: the names' tokens, for a grounding head that reads
                them (``_grounding_names``).
            grounding_pixel_values: ``[B, T, 3, G, G]`` the frames the head reads, when not SAM2's.
        """
        sam_frames = _real_frames(sam_pixel_values, frame_mask)  # (BT, 3, S, S)
        features = encode_frames(self.sam, sam_frames)
        prompts = self.semantic_projector(seg_hidden, class_embeddings, class_mask, features.lowest,
                                          features.lowest_positional, per_sample)  # (BT, S)
        real_names = class_mask.repeat_interleave(per_sample, dim=0)  # (BT, N)
        name_prompts = name_mask = None
        if self.name_prompt_encoder is not None:
            name_prompts = self.name_prompt_encoder(class_embeddings).repeat_interleave(per_sample, dim=0)  # (BT,N,S)
            name_mask = real_names
        decoded = decode_anomaly_masks(self.sam, features, prompts, name_prompts, name_mask)
        if self.name_grounding_head is None:
            return _FramePredictions(decoded, self._anomaly_map(decoded, None, real_names), decoded.object_logits,
                                     None, None, None)
        grounding_names = self._grounding_names(class_embeddings, class_input_ids, class_attention_mask,
                                                class_word_ids)
        pixels = self.name_grounding_head.pixel_embeddings(
            features.feature_maps,
            sam_frames if grounding_pixel_values is None else _real_frames(grounding_pixel_values, frame_mask))
        grounding_maps = self.name_grounding_head(pixels, grounding_names, per_sample)  # (BT, N, h, w)
        # a padding name is never the most present one
        presence = name_presence_logits(grounding_maps).masked_fill(
            ~real_names, torch.finfo(grounding_maps.dtype).min)  # (BT, N)
        return _FramePredictions(decoded, self._anomaly_map(decoded, grounding_maps, real_names),
                                 presence.amax(dim=-1), presence, pixels, grounding_maps)

    def _anomaly_map(self, decoded: AnomalyMaskPrediction, grounding_maps: torch.Tensor | None,
                     real_names: torch.Tensor) -> torch.Tensor:
        """``[BT, h, w]`` logits of the anomaly map ``forward`` returns, as ``config.mask_source`` says (at the
        decoder's mask size).

        Args:
            decoded: the mask decoder's output.
            grounding_maps: ``[BT, N, h', w']`` the name-grounding head's per-name pixel logits (None without it).
            real_names: ``[BT, N]`` bool, False for padding names.
        """
        decoder_map = decoded.best_by_predicted_iou()  # (BT, h, w)
        source = self.config.mask_source
        if source == "decoder":
            return decoder_map
        if grounding_maps is None:
            raise ValueError(f"config.mask_source {source!r} needs the name-grounding head "
                             "(frame_score='name_grounding'); this model has none: use mask_source='decoder'.")
        names_map = name_anomaly_map(grounding_maps, real_names, tuple(decoder_map.shape[-2:]))  # (BT, h, w)
        if source == "name_grounding":
            return names_map
        object_logit = math.log(self.config.mask_object_threshold / (1.0 - self.config.mask_object_threshold))
        return object_gated_logits(decoder_map, names_map, object_logit, names_outside=source == "gated_or_names")

    def _loss_terms(self, predictions: _FramePredictions, class_mask: torch.Tensor, per_sample: int | torch.Tensor,
                    frame_mask: torch.Tensor | None, target_masks: torch.Tensor, lm_loss: torch.Tensor | None,
                    name_labels: torch.Tensor | None, grounding_labels: GroundingLabels | None) -> LavidaLossTerms:
        """The unweighted loss terms for ``target_masks [B, T, H, W]`` (the grounding head's loss as the frame-score
        term when the model has the head)."""
        grounding_loss = None
        if self.name_grounding_head is not None:
            grounding_loss = self._grounding_loss(predictions, class_mask, per_sample, frame_mask, target_masks,
                                                  name_labels, grounding_labels)
        decoded = predictions.decoded
        return self.loss_function_lavida(decoded.mask_logits, decoded.iou_scores, predictions.frame_logits,
                                         _real_frames(target_masks, frame_mask), lm_loss, grounding_loss)

    def _grounding_loss(self, predictions: _FramePredictions, class_mask: torch.Tensor,
                        per_sample: int | torch.Tensor, frame_mask: torch.Tensor | None, target_masks: torch.Tensor,
                        name_labels: torch.Tensor | None, grounding_labels: GroundingLabels | None) -> torch.Tensor:
        """The name-grounding head's loss: on the ``grounding_labels`` names and masks when given (matched against the
        same pixel embeddings ``[BT, D, h, w]``), else on the prompt's names (``class_mask [B, N]``) with the target
        mask ``[B, T, H, W]`` for the true ones (``name_labels [B, N]``)."""
        weight = self.config.grounding_positive_weight
        if grounding_labels is not None:
            return self._labelled_grounding_loss(predictions.pixel_embeddings, grounding_labels, per_sample, frame_mask)
        if name_labels is None:
            raise ValueError("frame_score 'name_grounding' trains on name_labels ([B, N], 1 for the clip's true "
                             "target names) or on grounding_labels: pass the corpus rows' name_labels (or "
                             "object_names and object_masks) through LavidaDataCollator.")
        targets = listed_name_targets(_real_frames(target_masks, frame_mask),
                                      name_labels.repeat_interleave(per_sample, dim=0))  # (BT, N, H, W)
        return name_grounding_loss(predictions.grounding_maps, class_mask.repeat_interleave(per_sample, dim=0),
                                   targets, weight)

    def _labelled_grounding_loss(self, pixels: torch.Tensor, grounding_labels: GroundingLabels,
                                 per_sample: int | torch.Tensor, frame_mask: torch.Tensor | None) -> torch.Tensor:
        """The head's loss on the ``grounding_labels`` names and masks, matched against the pixel embeddings
        ``[BT, D, h, w]`` of the real frames."""
        names = self._grounding_names(None, grounding_labels["input_ids"], grounding_labels["attention_mask"],
                                      grounding_labels.get("word_ids"))
        maps = self.name_grounding_head(pixels, names, per_sample)  # (BT, M, h, w)
        targets = _real_frames(grounding_labels["targets"].transpose(1, 2), frame_mask)  # (BT, M, H, W)
        name_mask = grounding_labels["name_mask"].bool().repeat_interleave(per_sample, dim=0)  # (BT, M)
        return name_grounding_loss(maps, name_mask, targets, self.config.grounding_positive_weight)

    # ------------------------------------------------------------------------------------------------ helpers
    def _unknown_inputs_message(self, unknown: Mapping[str, object]) -> str:
        """The error for inputs ``forward`` does not take, naming them (with the closest accepted names) and the
        accepted ones."""
        accepted = [name for name, parameter in inspect.signature(self.forward).parameters.items()
                    if parameter.kind is not inspect.Parameter.VAR_KEYWORD]
        hints = []
        for name in sorted(unknown):
            close = difflib.get_close_matches(name, accepted, n=1)
            hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        return (f"{type(self).__name__}.forward got unknown input(s) {', '.join(hints)}. "
                f"Accepted inputs: {', '.join(accepted)}.")

    def _precision(self, device_type: str) -> contextlib.AbstractContextManager:
        """A checkpoint saved from mixed-precision training (frozen towers in bf16, trainable parts in fp32) runs as it
        trained: under autocast to its lower precision, so no layer meets an input of the other dtype."""
        compute_dtype = self._mixed_precision_dtype(device_type)
        return (contextlib.nullcontext() if compute_dtype is None
                else torch.autocast(device_type=device_type, dtype=compute_dtype))

    def _mixed_precision_dtype(self, device_type: str) -> torch.dtype | None:
        """The lowest floating dtype of the parameters when they mix several and autocast is off, else None."""
        if torch.is_autocast_enabled(device_type):
            return None
        dtypes = {parameter.dtype for parameter in self.parameters() if parameter.is_floating_point()}
        if len(dtypes) < 2:
            return None
        return min(dtypes, key=lambda dtype: torch.finfo(dtype).bits)

    def _mm_token_type_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        types = torch.zeros_like(input_ids, dtype=torch.int)
        types[input_ids == self.config.mllm_config.image_token_id] = 1
        types[input_ids == self.config.mllm_config.video_token_id] = 2
        return types

    def _seg_hidden_state(self, hidden: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
                          ) -> torch.Tensor:
        """``[B, D]`` hidden state at the last ``<SEG>`` of each row."""
        is_seg = (input_ids == self.config.seg_token_id) & attention_mask.bool()
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)[None, :]
        last = torch.where(is_seg, positions, torch.full_like(positions, -1)).amax(dim=1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]

    def _check_inputs(self, input_ids: torch.Tensor, video_grid_thw: torch.Tensor, frames: int,
                      class_input_ids: torch.Tensor | None, class_embeddings: torch.Tensor | None,
                      class_mask: torch.Tensor | None, target_masks: torch.Tensor | None,
                      frame_mask: torch.Tensor | None = None, grounding_labels: GroundingLabels | None = None,
                      sam_pixel_values: torch.Tensor | None = None, grounding_pixel_values: torch.Tensor | None = None
                      ) -> None:
        """ValueErrors naming what is wrong with ``forward``'s inputs (shapes as in ``forward``)."""
        seg_id = self.config.seg_token_id
        if seg_id is None:
            raise ValueError("config.seg_token_id is not set: add the <SEG> token to the tokenizer "
                             "(lavida.model_factory.build_model_from_components does) and record its id.")
        missing = (~(input_ids == seg_id).any(dim=1)).nonzero().flatten().tolist()
        if missing:
            raise ValueError(f"No <SEG> token (id {seg_id}) in input_ids of sample(s) {missing}: the prompt's "
                             "answer must contain <SEG>; build inputs with LavidaProcessor.")
        self._check_names(class_input_ids, class_embeddings, class_mask)
        temporal_patch = self.config.mllm_config.vision_config.temporal_patch_size
        # a single frame (an image sample) is one temporal patch: the video processor repeats it to fill the patch
        groups = video_grid_thw[:, 0].tolist()
        counts = [frames] * len(groups) if frame_mask is None else frame_mask.sum(dim=1).tolist()
        if frame_mask is not None and (frame_mask.shape != (input_ids.shape[0], frames) or min(counts) < 1
                                       or not torch.equal(frame_mask.int(), frame_mask.int().cummin(dim=1).values)):
            raise ValueError(f"frame_mask must be [B, T] = [{input_ids.shape[0]}, {frames}] with each sample's real "
                             f"frames first (at least one); got shape {tuple(frame_mask.shape)}.")
        if any(g != -(-count // temporal_patch) for g, count in zip(groups, counts)):
            raise ValueError(f"Frame count mismatch: sam_pixel_values has {counts} frames per sample but the MLLM "
                             f"video input has {groups} temporal patches of {temporal_patch} frames "
                             "(video_grid_thw[:, 0]); give the same frames to both.")
        if target_masks is not None and target_masks.shape[1] != frames:
            raise ValueError(f"Frame count mismatch: target_masks has {target_masks.shape[1]} frames, "
                             f"sam_pixel_values has {frames}.")
        self._check_grounding_inputs(frames, grounding_labels, sam_pixel_values, grounding_pixel_values)

    @staticmethod
    def _check_names(class_input_ids: torch.Tensor | None, class_embeddings: torch.Tensor | None,
                     class_mask: torch.Tensor | None) -> None:
        """ValueErrors for missing or empty anomaly name lists (shapes as in ``forward``)."""
        if class_embeddings is None and class_input_ids is None:
            raise ValueError("Give the anomaly names as class_input_ids (+ class_attention_mask) or class_embeddings.")
        names = class_embeddings if class_embeddings is not None else class_input_ids
        if names.shape[1] == 0:
            raise ValueError("The class (anomaly name) list is empty: give at least one anomaly name.")
        if class_mask is not None and not bool(class_mask.bool().any(dim=1).all()):
            empty = (~class_mask.bool().any(dim=1)).nonzero().flatten().tolist()
            raise ValueError(f"The class (anomaly name) list of sample(s) {empty} is empty: give at least one name.")

    @staticmethod
    def _check_grounding_inputs(frames: int, grounding_labels: GroundingLabels | None, sam_pixel_values: torch.Tensor,
                                grounding_pixel_values: torch.Tensor | None) -> None:
        """ValueErrors naming what is wrong with the name-grounding head's inputs (shapes as in ``forward``)."""
        if grounding_labels is not None:
            if (not isinstance(grounding_labels, Mapping) or not set(GROUNDING_LABEL_KEYS) <= set(grounding_labels)
                    or not set(grounding_labels) <= {*GROUNDING_LABEL_KEYS, *OPTIONAL_GROUNDING_LABEL_KEYS}):
                given = sorted(grounding_labels) if isinstance(grounding_labels, Mapping) else type(grounding_labels)
                raise ValueError(f"grounding_labels must be a dict with the keys {list(GROUNDING_LABEL_KEYS)} "
                                 f"and optionally {list(OPTIONAL_GROUNDING_LABEL_KEYS)} (GroundingLabels), got {given}.")
            targets = grounding_labels["targets"]
            names = tuple(grounding_labels["name_mask"].shape)
            if targets.dim() != 5 or tuple(targets.shape[:3]) != (*names, frames):
                raise ValueError(f"grounding_labels['targets'] must be [B, M, T, H, W] with [B, M] = {list(names)} "
                                 f"(name_mask) and T = {frames}; got shape {tuple(targets.shape)}.")
        if grounding_pixel_values is not None and (grounding_pixel_values.dim() != 5 or tuple(
                grounding_pixel_values.shape[:3]) != tuple(sam_pixel_values.shape[:3])):
            raise ValueError(f"grounding_pixel_values must be [B, T, 3, G, G] with [B, T, 3] = "
                             f"{list(sam_pixel_values.shape[:3])} (sam_pixel_values'); got shape "
                             f"{tuple(grounding_pixel_values.shape)}.")


__all__ = ["GroundingLabels", "LavidaForVideoAnomalyDetection", "LavidaFrameOutput", "LavidaOutput",
           "LavidaPreTrainedModel"]
