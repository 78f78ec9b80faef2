"""LoRA on the LLM of a LAVIDA model, as in the paper (r 8, alpha 16, dropout 0.05, q_proj/v_proj).

The target is a regex on full module names: a plain ``["q_proj", "v_proj"]`` list would also wrap the attention
projections of SAM2's mask decoder and of the semantic projector. The parts the paper trains in full (token
embeddings and LM head, SAM2 prompt encoder and mask decoder, the semantic projector) are ``modules_to_save``.
"""

from __future__ import annotations

from collections.abc import Sequence

from peft import LoraConfig, PeftModel, get_peft_model

from .modeling_lavida import LavidaForVideoAnomalyDetection

LLM_LAYER_PATTERN = r".*mllm\.model\.language_model\.layers\.\d+\.self_attn\.({projections})"
FULLY_TRAINED_MODULES = (
    "semantic_projector", "name_prompt_encoder", "name_grounding_head", "prompt_encoder", "mask_decoder",
    "embed_tokens", "lm_head",
)


def lavida_lora_config(r: int = 8, alpha: int = 16, dropout: float = 0.05,
                       projections: Sequence[str] = ("q_proj", "v_proj"),
                       modules_to_save: Sequence[str] = FULLY_TRAINED_MODULES) -> LoraConfig:
    """A ``LoraConfig`` that adapts only the LLM's attention ``projections``."""
    if not projections:
        raise ValueError("projections must name at least one attention projection, e.g. ('q_proj', 'v_proj').")
    return LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=LLM_LAYER_PATTERN.format(projections="|".join(projections)),
        modules_to_save=list(modules_to_save),
    )


def add_lora(model: LavidaForVideoAnomalyDetection, config: LoraConfig | None = None) -> PeftModel:
    """Wrap ``model`` with LoRA; everything else not in ``modules_to_save`` is frozen."""
    return get_peft_model(model, config or lavida_lora_config())


__all__ = ["FULLY_TRAINED_MODULES", "LLM_LAYER_PATTERN", "add_lora", "lavida_lora_config"]
