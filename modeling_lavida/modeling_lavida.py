"""LAVIDA as a transformers model (Dai et al., "LAVIDA", CVPR 2026, arXiv 2602.19248).

A video MLLM (Qwen2-VL / Qwen2.5-VL / Qwen3-VL) reads the clip and the list of anomaly names in one forward pass;
the last-layer hidden state at ``<SEG>`` (``f_sem``), the class-name embeddings and SAM2's frame features go through
the semantic projector, which yields one sparse prompt per frame for SAM2's mask decoder: its object-score logit is
the frame's anomaly score and its best mask the pixel-level anomaly map.

Departures from the authors' code (see the method page): visual token compression keeps the multimodal (3-D) rotary
positions of the surviving tokens and runs in training as well as inference.

This file is copied next to saved weights for ``trust_remote_code`` loading: it imports only torch, transformers and,
relatively, its sibling files.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoModel, AutoModelForImageTextToText, PreTrainedModel
from transformers.utils import ModelOutput
from transformers.utils import logging as hf_logging

from .anomaly_mask_decoder import SamFrameFeatures, decode_anomaly_masks, encode_frames
from .configuration_lavida import LavidaConfig
from .loss_lavida import LavidaLoss
from .name_grounding_head import (INITIAL_LOGIT_BIAS, NameGroundingHead, listed_name_targets, name_grounding_loss,
                                  name_presence_logits)
from .semantic_projector import NamePromptEncoder, SemanticProjector
from .token_compressor import TokenCompressor


logger = hf_logging.get_logger(__name__)

MAX_CACHED_NAMES = 50_000  # class-name vectors kept by a frozen text encoder's cache
TOWER_MODULES = ("mllm", "sam", "text_encoder")  # the pretrained parts, the rest is LAVIDA's own
# ``attn_implementation`` keys of the towers' sub-configs; a plain string names the MLLM's implementation
TOWER_ATTENTION_KEYS = {"mllm": "mllm_config", "sam2": "sam_config", "text_encoder": "text_encoder_config"}
# weights of a full CLIPModel checkpoint that its text tower does not use
CLIP_KEYS_OUTSIDE_TEXT_TOWER = ("vision_model.", "visual_projection.", "text_projection.", "logit_scale")


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


def _component_attn_implementations(attn_implementation: str | Mapping[str, str] | None) -> dict[str, str | None]:
    """``from_components``' ``attn_implementation`` per tower (``mllm``, ``sam2``, ``text_encoder``)."""
    routed = route_attn_implementation(attn_implementation) or {}
    by_config = {config_key: component for component, config_key in TOWER_ATTENTION_KEYS.items()}
    result: dict[str, str | None] = {}
    for key, value in routed.items():
        component = by_config.get(key, key)
        if component not in TOWER_ATTENTION_KEYS:
            raise ValueError(f"attn_implementation names {key!r}; use a string (the MLLM's implementation) or a "
                             f"mapping with keys among {sorted(TOWER_ATTENTION_KEYS)}.")
        result[component] = value
    return result


def _config_tree(config) -> list:
    """``config`` and all its sub-configs, at any depth."""
    configs = [config]
    for key in getattr(config, "sub_configs", {}) or {}:
        sub_config = getattr(config, key, None)
        if sub_config is not None and not isinstance(sub_config, dict):
            configs += _config_tree(sub_config)
    return configs


def _add_seg_token(tokenizer, mllm: PreTrainedModel, seg_token: str) -> int:
    """Add ``seg_token`` to ``tokenizer`` (if new) and return its id, resizing the MLLM's embeddings only when the id
    is past the embedding matrix (a vocabulary padded past the tokenizer already has a row for it)."""
    if seg_token not in tokenizer.get_vocab():
        tokenizer.add_tokens([seg_token], special_tokens=True)
    seg_token_id = tokenizer.convert_tokens_to_ids(seg_token)
    if seg_token_id >= mllm.get_input_embeddings().weight.shape[0]:
        mllm.resize_token_embeddings(max(len(tokenizer), seg_token_id + 1))
    return seg_token_id


def sam2_image_config(config):
    """A SAM2 config as ``Sam2Config`` (``model_type: sam2``, the image model LAVIDA uses). A ``sam2_video`` config (the
    Hub's SAM 2.1 checkpoints) keeps its vision, prompt-encoder and mask-decoder settings; the memory settings, which
    only the video model has, are dropped."""
    import dataclasses

    from transformers import Sam2Config, Sam2MaskDecoderConfig, Sam2PromptEncoderConfig

    if isinstance(config, Sam2Config) and config.model_type == "sam2":
        return config
    if config.model_type not in ("sam2", "sam2_video"):
        raise ValueError(f"Expected a SAM2 checkpoint (model_type sam2 or sam2_video), got {config.model_type!r}.")
    data = config.to_dict()

    def fields_of(config_class, values: dict) -> dict:
        names = {field.name for field in dataclasses.fields(config_class)} - {"model_type", "transformers_version",
                                                                              "architectures"}
        return {key: value for key, value in values.items() if key in names}

    converted = Sam2Config(
        vision_config=data["vision_config"],
        prompt_encoder_config=fields_of(Sam2PromptEncoderConfig, data["prompt_encoder_config"]),
        mask_decoder_config=fields_of(Sam2MaskDecoderConfig, data["mask_decoder_config"]),
        initializer_range=data.get("initializer_range", 0.02),
    )
    converted.dtype = config.dtype
    converted._name_or_path = config._name_or_path
    return converted


def _load_sam2_image_model(source: str | os.PathLike, loading: dict) -> PreTrainedModel:
    """``Sam2Model`` from a ``sam2`` or ``sam2_video`` checkpoint (the video model's memory weights are skipped)."""
    from transformers import AutoConfig, Sam2Model

    hub = {key: loading[key] for key in ("token", "revision")}
    config = sam2_image_config(AutoConfig.from_pretrained(source, **hub))
    return Sam2Model.from_pretrained(source, config=config, **loading)


class _BelowErrorFilter(logging.Filter):
    """Drops a logger's records below ERROR (a filter, not a level: transformers reads its loggers' levels)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


def _load_text_encoder(source: str | os.PathLike, loading: dict) -> tuple[PreTrainedModel, str]:
    """The class-name encoder and its pooling: a CLIP checkpoint's text tower (``CLIPTextModel``, also from a full
    ``CLIPModel`` checkpoint, whose vision weights are not read) or a sentence encoder without its pooling layer."""
    from transformers import AutoConfig, CLIPTextModel

    hub = {key: loading[key] for key in ("token", "revision")}
    config = AutoConfig.from_pretrained(source, **hub)
    if config.model_type not in ("clip", "clip_text_model"):
        return AutoModel.from_pretrained(source, add_pooling_layer=False, **loading), "mean"
    # A full CLIPModel checkpoint holds the vision tower and projections too: they are expected to stay unread, so
    # transformers' loading report (a table of every such key) is kept quiet and the keys are checked here instead.
    report = hf_logging.get_logger("transformers.modeling_utils")
    quiet = _BelowErrorFilter()
    report.addFilter(quiet)
    try:
        model, info = CLIPTextModel.from_pretrained(source, output_loading_info=True, **loading)
    finally:
        report.removeFilter(quiet)
    if info["missing_keys"] or info["mismatched_keys"]:
        raise ValueError(f"Text encoder {source} lacks weights of CLIP's text tower: "
                         f"{sorted(info['missing_keys'])[:10]} {sorted(map(str, info['mismatched_keys']))[:10]}")
    unread = sorted(key for key in info["unexpected_keys"] if not key.startswith(CLIP_KEYS_OUTSIDE_TEXT_TOWER))
    if unread:
        logger.warning("Text encoder %s: weights not used by CLIP's text tower: %s", source, unread[:10])
    return model, "pooler"


@dataclass
class LavidaOutput(ModelOutput):
    """Output of ``LavidaForVideoAnomalyDetection``.

    Attributes:
        loss: total mixed loss (when ``target_masks`` are given).
        lm_loss, focal_loss, dice_loss, iou_loss, object_score_loss: the unweighted terms (when computed).
        frame_logits: ``[B, T]`` the per-frame anomaly score before the sigmoid (SAM2's object-score logit, or with
            ``config.frame_score="name_grounding"`` the largest of ``name_logits``).
        name_logits: ``[B, T, N]`` with ``frame_score="name_grounding"``: each name's presence logit per frame
            (padding names hold the dtype's minimum).
        mask_logits: ``[B, T, h, w]`` anomaly map logits (best of 3 by predicted IoU), low resolution.
        iou_scores: ``[B, T, 3]`` predicted IoU of the three candidate masks.
        candidate_mask_logits: ``[B, T, 3, h, w]`` all three candidates.
        seg_hidden_state: ``[B, D]`` the MLLM's last-layer hidden state at ``<SEG>``.
        num_visual_tokens: ``[B]`` visual tokens the LLM saw after compression.
    """

    loss: torch.FloatTensor | None = None
    lm_loss: torch.FloatTensor | None = None
    focal_loss: torch.FloatTensor | None = None
    dice_loss: torch.FloatTensor | None = None
    iou_loss: torch.FloatTensor | None = None
    object_score_loss: torch.FloatTensor | None = None
    frame_logits: torch.FloatTensor | None = None
    name_logits: torch.FloatTensor | None = None
    mask_logits: torch.FloatTensor | None = None
    iou_scores: torch.FloatTensor | None = None
    candidate_mask_logits: torch.FloatTensor | None = None
    seg_hidden_state: torch.FloatTensor | None = None
    num_visual_tokens: torch.LongTensor | None = None


@dataclass
class CompressedSequence:
    """The LLM input after visual token compression (right-padded)."""

    inputs_embeds: torch.Tensor  # (B, S', D)
    attention_mask: torch.Tensor  # (B, S')
    position_ids: torch.Tensor  # (3, B, S') rotary positions taken from the uncompressed sequence
    input_ids: torch.Tensor  # (B, S') ids at the kept positions (merged video tokens keep the video token id)
    labels: torch.Tensor | None  # (B, S')
    num_visual_tokens: torch.Tensor  # (B,)


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
        if isinstance(module, NameGroundingHead):
            nn.init.ones_(module.logit_scale)
            nn.init.constant_(module.logit_bias, INITIAL_LOGIT_BIAS)


class LavidaForVideoAnomalyDetection(LavidaPreTrainedModel):
    """Zero-shot video anomaly detector: per-frame anomaly scores and pixel masks for user-named anomalies."""

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
        self.name_grounding_head = NameGroundingHead(config) if config.frame_score == "name_grounding" else None
        self.loss_function_lavida = LavidaLoss(config)
        self.text_encoder.register_load_state_dict_post_hook(self._clear_class_embedding_cache)
        self._apply_recorded_dtypes()
        self.post_init()

    # ------------------------------------------------------------------------------------------------ building
    @classmethod
    def from_components(cls, mllm: str | os.PathLike, sam2: str | os.PathLike, text_encoder: str | os.PathLike, *,
                        dtype: torch.dtype | str | None = None,
                        device_map: str | int | torch.device | dict[str, str | int | torch.device] | None = None,
                        attn_implementation: str | Mapping[str, str] | None = None,
                        token: str | bool | None = None, revision: str | Mapping[str, str] | None = None,
                        **lavida_kwargs) -> "LavidaForVideoAnomalyDetection":
        """Build a full model from three pretrained checkpoints (Hub ids or local folders).

        - ``mllm``: a Qwen-VL family checkpoint, including the Hub's flat Qwen2-VL config layout. ``<SEG>`` is added to
          its tokenizer and takes the next free id; the embedding matrix (and LM head) are resized only when that id
          does not fit, so a checkpoint whose vocabulary is padded past its tokenizer (Qwen2-VL: 152064 rows for
          151657 tokens) keeps its shape, and ``<SEG>`` uses the checkpoint's row for that id.
        - ``sam2``: a SAM2 checkpoint; a ``sam2_video`` one (how SAM 2.1 is published for transformers) is read as the
          image model LAVIDA uses (``Sam2Model``: its config converted, the memory modules' weights left out).
        - ``text_encoder``: a CLIP checkpoint (full ``CLIPModel`` or text tower only; the text tower is used, pooled
          output) or a BERT-style sentence encoder (mean pooling).

        Each tower is read once, by its own ``from_pretrained``, and handed to a model shell built on the meta device,
        so building takes about the towers' size in memory (no second copy; ``benchmarks/component_loading.py``).
        LAVIDA's new modules (projector, heads) are initialised on the device of SAM2's mask decoder. The model comes
        back with the towers frozen (``freeze_towers``) and in eval mode, as ``from_pretrained`` gives it.

        Args:
            dtype: dtype of the towers (``None`` or ``"auto"``: each checkpoint's own, e.g. a bfloat16 MLLM next to a
                float32 SAM2) and, when given, of LAVIDA's new modules too (float32 otherwise).
            device_map: passed to each tower's ``from_pretrained``.
            attn_implementation: a string is the MLLM's attention implementation (``"flash_attention_2"``,
                ``"sdpa"``, ...); SAM2 and the text encoder keep their default. A mapping may set each part:
                ``{"mllm": ..., "sam2": ..., "text_encoder": ...}`` (or the sub-config names ``mllm_config``,
                ``sam_config``, ``text_encoder_config``).
            token, revision: Hub access for every ``from_pretrained``; ``revision`` may be one value or a mapping
                ``{"mllm": ..., "sam2": ..., "text_encoder": ...}``.
            lavida_kwargs: LAVIDA's own config fields (``compression_ratio=...``, ``seg_token=...``).
        """
        from transformers import AutoTokenizer

        if dtype is not None and not isinstance(dtype, torch.dtype) and dtype != "auto":
            dtype = getattr(torch, str(dtype))
        seg_token = lavida_kwargs.pop("seg_token", LavidaConfig.seg_token)
        attention = _component_attn_implementations(attn_implementation)

        def loading(component: str) -> dict:
            """Keyword arguments of one tower's ``from_pretrained``."""
            kwargs = {"dtype": "auto" if dtype is None else dtype, "token": token,
                      "revision": revision.get(component) if isinstance(revision, Mapping) else revision}
            if device_map is not None:
                kwargs["device_map"] = device_map
            if attention.get(component) is not None:
                kwargs["attn_implementation"] = attention[component]
            return kwargs

        hub = {"token": token, "revision": revision.get("mllm") if isinstance(revision, Mapping) else revision}
        tokenizer = AutoTokenizer.from_pretrained(mllm, **hub)
        mllm_model = AutoModelForImageTextToText.from_pretrained(mllm, **loading("mllm"))
        seg_token_id = _add_seg_token(tokenizer, mllm_model, seg_token)
        sam_model = _load_sam2_image_model(sam2, loading("sam2"))
        text_model, pooling = _load_text_encoder(text_encoder, loading("text_encoder"))
        lavida_kwargs.setdefault("text_pooling", pooling)
        attention_set = [(tower_config, tower_config._attn_implementation_internal)
                         for tower in (mllm_model, sam_model, text_model)
                         for tower_config in _config_tree(tower.config)]
        config = LavidaConfig(mllm_config=mllm_model.config, sam_config=sam_model.config,
                              text_encoder_config=text_model.config, seg_token=seg_token,
                              seg_token_id=seg_token_id, **lavida_kwargs)
        for tower_config, implementation in attention_set:  # a new composite config resets its parts' attention
            tower_config._attn_implementation_internal = implementation
        model = cls._from_loaded_towers(config, {"mllm": mllm_model, "sam": sam_model, "text_encoder": text_model},
                                        new_modules_dtype=None if dtype in (None, "auto") else dtype)
        model.freeze_towers()
        return model.eval()

    @classmethod
    def _from_loaded_towers(cls, config: LavidaConfig, towers: dict[str, nn.Module],
                            new_modules_dtype: torch.dtype | None = None) -> "LavidaForVideoAnomalyDetection":
        """The model around already loaded towers: the shell is built on the meta device (nothing allocated), the
        towers take their places as they are, and only LAVIDA's own modules are materialised and initialised."""
        with torch.device("meta"):
            model = cls(config)
        for name, tower in towers.items():
            setattr(model, name, tower)
        # the towers' configs are the shell's sub-configs (set_attn_implementation matches sub-models to them)
        model.config.mllm_config = towers["mllm"].config
        model.config.sam_config = towers["sam"].config
        model.config.text_encoder_config = towers["text_encoder"].config
        model.text_encoder.register_load_state_dict_post_hook(model._clear_class_embedding_cache)
        device = next(model.sam.mask_decoder.parameters()).device
        new_modules = [child for name, child in model.named_children() if name not in TOWER_MODULES]
        with torch.no_grad():
            for module in new_modules:
                if new_modules_dtype is not None:
                    module.to(new_modules_dtype)
                module.to_empty(device=device)
                module.apply(model._initialize_weights)
        return model

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
        if not self._text_encoder_trainable():
            return self._cached_class_embeddings(ids, mask).reshape(batch, names, -1)
        return self._pool_text(ids, mask).reshape(batch, names, -1)

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

    def _patch_embeddings(self, pixel_values_videos: torch.Tensor) -> torch.Tensor:
        """The vision tower's patch embeddings ``[num_patches, D]`` that static pruning compares."""
        visual = self.mllm.model.visual
        with torch.no_grad():
            return visual.patch_embed(pixel_values_videos.to(visual.dtype))

    def compress_sequence(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                          mm_token_type_ids: torch.Tensor, pixel_values_videos: torch.Tensor,
                          video_grid_thw: torch.Tensor, labels: torch.Tensor | None = None) -> CompressedSequence:
        """Vision tower + token compression, giving the LLM's input with correct 3-D rotary positions.

        Each sample holds exactly one video. Rotary positions are computed on the full sequence first, then every
        token that survives (text, and the centre of each merged visual cluster) keeps its own position.
        """
        base = self.mllm.model
        video_token_id = self.config.mllm_config.video_token_id
        position_ids, _ = base.get_rope_index(input_ids, mm_token_type_ids, video_grid_thw=video_grid_thw,
                                              attention_mask=attention_mask)  # (3, B, S)
        video_tokens = list(base.get_video_features(pixel_values_videos, video_grid_thw).pooler_output)
        is_video = input_ids == video_token_id  # (B, S)
        per_row = is_video.sum(dim=1)
        expected = torch.tensor([len(t) for t in video_tokens], device=per_row.device)
        if len(video_tokens) != input_ids.shape[0] or not torch.equal(per_row, expected):
            raise ValueError(
                f"Each sample must hold exactly one video: got {len(video_tokens)} videos for {input_ids.shape[0]} "
                f"samples, video tokens per sample {per_row.tolist()} vs features {expected.tolist()}."
            )
        keep_masks = None
        if self.config.static_threshold >= 0:
            keep_masks = self.token_compressor.static_keep_mask(self._patch_embeddings(pixel_values_videos),
                                                                video_grid_thw)
        compressed = self.token_compressor(video_tokens, keep_masks)

        # which sequence positions survive: all non-video tokens, and video tokens that are cluster centres
        video_rank = (is_video.cumsum(dim=1) - 1).clamp(min=0)  # (B, S) index among the row's video tokens
        centre = torch.zeros(input_ids.shape[0], int(per_row.max()), dtype=torch.bool, device=input_ids.device)
        rows = torch.arange(input_ids.shape[0], device=input_ids.device)[:, None].expand_as(compressed.kept_index)
        centre[rows[compressed.valid], compressed.kept_index[compressed.valid]] = True
        keep = ~is_video | centre.gather(1, video_rank)
        lengths = keep.sum(dim=1)
        new_len = int(lengths.max())
        order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)[:, :new_len]  # kept first, in order
        in_range = torch.arange(new_len, device=input_ids.device)[None, :] < lengths[:, None]

        new_ids = input_ids.gather(1, order)
        new_mask = attention_mask.gather(1, order) * in_range
        new_positions = position_ids.gather(2, order[None].expand(position_ids.shape[0], -1, -1))
        new_labels = None
        if labels is not None:
            new_labels = labels.gather(1, order).masked_fill(~in_range, -100)
        embeds = self.mllm.get_input_embeddings()(new_ids)
        new_is_video = (new_ids == video_token_id) & in_range
        merged = compressed.tokens[compressed.valid].to(embeds.dtype)
        embeds = embeds.masked_scatter(new_is_video[..., None], merged)
        return CompressedSequence(embeds, new_mask, new_positions, new_ids, new_labels, compressed.lengths())

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
        class_mask: torch.BoolTensor | None = None,
        class_embeddings: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        target_masks: torch.FloatTensor | None = None,
        name_labels: torch.FloatTensor | None = None,
        grounding_input_ids: torch.LongTensor | None = None,
        grounding_attention_mask: torch.LongTensor | None = None,
        grounding_mask: torch.BoolTensor | None = None,
        grounding_targets: torch.FloatTensor | None = None,
        frame_mask: torch.BoolTensor | None = None,
        **kwargs,
    ) -> LavidaOutput:
        """
        Args:
            input_ids: ``[B, S]`` chat prompt with the video placeholder tokens and one ``<SEG>`` in the answer.
            pixel_values_videos: ``[sum patches, C*tp*p*p]``; video_grid_thw: ``[B, 3]`` (MLLM video processor).
            sam_pixel_values: ``[B, T, 3, S_sam, S_sam]`` the same T frames for SAM2.
            frame_mask: ``[B, T]`` bool, False for padding frames, in a batch whose samples have different frame
                counts (image samples, T = 1, beside 8-frame clips; ``LavidaProcessor`` pads them and gives the mask).
                Padding frames are never computed; in the outputs their frame logits hold the dtype's minimum and
                their masks zeros. None: every frame is real.
            mm_token_type_ids: ``[B, S]`` (0 text, 2 video), needed for the multimodal rotary positions.
            attention_mask: ``[B, S]``.
            class_input_ids, class_attention_mask: ``[B, N, Lc]`` anomaly names for the text encoder, or
            class_embeddings: ``[B, N, E]`` precomputed with ``encode_class_names`` (once per video).
            class_mask: ``[B, N]`` bool, False for padding names (default: all real).
            labels: ``[B, S]`` LM labels (-100 where not trained); gives ``lm_loss``.
            target_masks: ``[B, T, H, W]`` binary anomaly masks; gives the segmentation terms and ``loss``.
            name_labels: ``[B, N]`` 1 for the clip's true target names, 0 for distractors; with
                ``frame_score="name_grounding"`` training needs them or the ``grounding_*`` labels (the object-score
                term is then the grounding head's per-(frame, name, pixel) loss).
            grounding_input_ids, grounding_attention_mask: ``[B, M, Lc]``, grounding_mask: ``[B, M]``,
            grounding_targets: ``[B, M, T, H, W]``: names with their own masks for the grounding head's loss instead
                of the prompt's (every object in view and the distractors; ``LavidaDataCollator`` builds them).
        """
        compute_dtype = self._mixed_precision_dtype(input_ids.device.type)
        if compute_dtype is not None:
            # A checkpoint saved from mixed-precision training (frozen towers in bf16, trainable parts in fp32) runs
            # as it trained: under autocast to its lower precision, so no layer meets an input of the other dtype.
            arguments = {name: value for name, value in locals().items()
                         if name not in ("self", "kwargs", "compute_dtype", "__class__")}
            with torch.autocast(device_type=input_ids.device.type, dtype=compute_dtype):
                return self.forward(**arguments, **kwargs)
        batch, frames = sam_pixel_values.shape[:2]
        if frame_mask is not None:
            frame_mask = frame_mask.bool()
        self._check_inputs(input_ids, video_grid_thw, frames, class_input_ids, class_embeddings, class_mask,
                           target_masks, frame_mask)
        # frames per sample: T for all, or [B] counts; per-frame work runs on the real frames only, sample-major
        per_sample = frames if frame_mask is None else frame_mask.sum(dim=1)
        real = (lambda x: x.flatten(0, 1)) if frame_mask is None else (lambda x: x[frame_mask])
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if mm_token_type_ids is None:
            mm_token_type_ids = self._mm_token_type_ids(input_ids)

        sequence = self.compress_sequence(input_ids, attention_mask, mm_token_type_ids, pixel_values_videos,
                                          video_grid_thw, labels)
        if labels is not None:
            llm_out = self.mllm(inputs_embeds=sequence.inputs_embeds, attention_mask=sequence.attention_mask,
                                position_ids=sequence.position_ids, labels=sequence.labels,
                                output_hidden_states=True, use_cache=False)
            last_hidden, lm_loss = llm_out.hidden_states[-1], llm_out.loss
        else:  # no LM head needed: only the hidden state at <SEG>
            llm_out = self.mllm.model(inputs_embeds=sequence.inputs_embeds, attention_mask=sequence.attention_mask,
                                      position_ids=sequence.position_ids, use_cache=False)
            last_hidden, lm_loss = llm_out.last_hidden_state, None
        seg_hidden = self._seg_hidden_state(last_hidden, sequence.input_ids, sequence.attention_mask)  # (B, D)

        if class_embeddings is None:
            class_embeddings = self.encode_class_names(class_input_ids, class_attention_mask)
        if class_mask is None:
            class_mask = torch.ones(class_embeddings.shape[:2], dtype=torch.bool, device=class_embeddings.device)

        features = encode_frames(self.sam, real(sam_pixel_values))
        prompts = self.semantic_projector(seg_hidden, class_embeddings, class_mask.bool(), features.lowest,
                                          features.lowest_positional, per_sample)  # (BT, S)
        name_prompts = name_mask = None
        if self.name_prompt_encoder is not None:
            name_prompts = self.name_prompt_encoder(class_embeddings).repeat_interleave(per_sample, dim=0)  # (BT,N,S)
            name_mask = class_mask.bool().repeat_interleave(per_sample, dim=0)
        prediction = decode_anomaly_masks(self.sam, features, prompts, name_prompts, name_mask)
        frame_logits, presence = prediction.object_logits, None  # (BT,)
        if self.name_grounding_head is not None:
            real_names = class_mask.bool().repeat_interleave(per_sample, dim=0)  # (BT, N)
            pixels = self.name_grounding_head.pixel_embeddings(features.feature_maps)  # (BT, D, h, w)
            grounding_maps = self.name_grounding_head(pixels, class_embeddings, per_sample)  # (BT, N, h, w)
            # a padding name is never the most present one
            presence = name_presence_logits(grounding_maps).masked_fill(~real_names, torch.finfo(
                grounding_maps.dtype).min)  # (BT, N)
            frame_logits = presence.amax(dim=-1)

        def per_frame(values: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
            """``[BT_real, ...]`` -> ``[B, T, ...]``, padding frames filled with ``fill``."""
            if frame_mask is None:
                return values.reshape(batch, frames, *values.shape[1:])
            full = values.new_full((batch, frames, *values.shape[1:]), fill)
            full[frame_mask] = values
            return full

        lowest = torch.finfo(frame_logits.dtype).min
        output = LavidaOutput(
            lm_loss=lm_loss,
            frame_logits=per_frame(frame_logits, lowest),
            name_logits=None if presence is None else per_frame(presence, lowest),
            mask_logits=per_frame(prediction.best_by_predicted_iou()),
            iou_scores=per_frame(prediction.iou_scores),
            candidate_mask_logits=per_frame(prediction.mask_logits),
            seg_hidden_state=seg_hidden,
            num_visual_tokens=sequence.num_visual_tokens,
        )
        if target_masks is not None:
            grounding_loss = None
            if presence is not None:
                grounding_loss = self._grounding_loss(pixels, per_sample, real, grounding_maps, real_names,
                                                      name_labels, target_masks, grounding_input_ids,
                                                      grounding_attention_mask, grounding_mask, grounding_targets)
            terms = self.loss_function_lavida(prediction.mask_logits, prediction.iou_scores, frame_logits,
                                              real(target_masks), lm_loss, grounding_loss)
            output.loss = terms.loss
            output.lm_loss = terms.lm_loss
            output.focal_loss = terms.focal_loss
            output.dice_loss = terms.dice_loss
            output.iou_loss = terms.iou_loss
            output.object_score_loss = terms.object_score_loss
        return output

    # ------------------------------------------------------------------------------------------------ helpers
    def _grounding_loss(self, pixels: torch.Tensor, frames: int | torch.Tensor, real, listed_maps: torch.Tensor,
                        real_names: torch.Tensor, name_labels: torch.Tensor | None, target_masks: torch.Tensor,
                        grounding_input_ids: torch.Tensor | None, grounding_attention_mask: torch.Tensor | None,
                        grounding_mask: torch.Tensor | None, grounding_targets: torch.Tensor | None) -> torch.Tensor:
        """The name-grounding head's loss: on the ``grounding_*`` names and masks when given (matched against the same
        ``pixels [BT, D, h, w]``), else on the prompt's names (``listed_maps [BT, N, h, w]``, ``real_names [BT, N]``)
        with the target mask for the true ones. ``frames``: T or ``[B]`` real frames per sample; ``real`` picks the real
        frames of a ``[B, T, ...]`` tensor as ``[BT, ...]``."""
        weight = self.config.grounding_positive_weight
        if grounding_targets is not None:
            embeddings = self.encode_class_names(grounding_input_ids, grounding_attention_mask)
            maps = self.name_grounding_head(pixels, embeddings, frames)  # (BT, M, h, w)
            targets = real(grounding_targets.transpose(1, 2))  # (BT, M, H, W)
            return name_grounding_loss(maps, grounding_mask.bool().repeat_interleave(frames, dim=0), targets, weight)
        if name_labels is None:
            raise ValueError("frame_score 'name_grounding' trains on name_labels ([B, N], 1 for the clip's true target "
                             "names) or on grounding_* labels: pass the corpus rows' name_labels (or object_names and "
                             "object_masks) through LavidaDataCollator.")
        targets = listed_name_targets(real(target_masks), name_labels.repeat_interleave(frames, dim=0))
        return name_grounding_loss(listed_maps, real_names, targets, weight)

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

    def _check_inputs(self, input_ids, video_grid_thw, frames, class_input_ids, class_embeddings, class_mask,
                      target_masks, frame_mask=None) -> None:
        seg_id = self.config.seg_token_id
        if seg_id is None:
            raise ValueError("config.seg_token_id is not set: add the <SEG> token to the tokenizer "
                             "(LavidaForVideoAnomalyDetection.from_components does) and record its id.")
        missing = (~(input_ids == seg_id).any(dim=1)).nonzero().flatten().tolist()
        if missing:
            raise ValueError(f"No <SEG> token (id {seg_id}) in input_ids of sample(s) {missing}: the prompt's "
                             "answer must contain <SEG>; build inputs with LavidaProcessor.")
        if class_embeddings is None and class_input_ids is None:
            raise ValueError("Give the anomaly names as class_input_ids (+ class_attention_mask) or class_embeddings.")
        names = class_embeddings if class_embeddings is not None else class_input_ids
        if names.shape[1] == 0:
            raise ValueError("The class (anomaly name) list is empty: give at least one anomaly name.")
        if class_mask is not None and not bool(class_mask.bool().any(dim=1).all()):
            empty = (~class_mask.bool().any(dim=1)).nonzero().flatten().tolist()
            raise ValueError(f"The class (anomaly name) list of sample(s) {empty} is empty: give at least one name.")
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


__all__ = ["CompressedSequence", "LavidaForVideoAnomalyDetection", "LavidaOutput", "LavidaPreTrainedModel"]
