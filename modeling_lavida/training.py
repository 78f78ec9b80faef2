"""Training from a YAML config: ``lavida train --config configs/NAME.yaml``.

A config has five sections (see ``configs/lavida-tiny.yaml`` and ``configs/lavida-7b.yaml``):

    model:     ModelSpec (init tiny | components | pretrained, sizes, text encoder, processor sizes)
    freeze:    which towers stay frozen (the paper: vision tower, SAM2 image encoder, text encoder)
    lora:      LoRA on the LLM (r, alpha, dropout, projections) or null for full training of the unfrozen parts
    data:      train / eval corpora (a built corpus folder, a mix YAML, or the synthetic world on the fly)
    training:  transformers.TrainingArguments fields (optimiser, schedule, batch, precision, DeepSpeed, ...)
    export:    where the final model + processor are written (safetensors), optional

The same file runs on one CPU, on several GPUs or nodes through ``accelerate launch`` (``TrainingArguments`` read the
distributed environment), and with DeepSpeed ZeRO-2 when ``training.deepspeed`` names a JSON config.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import UserInputError
from .model_factory import ModelSpec

logger = logging.getLogger(__name__)


@dataclass
class FreezeSpec:
    """Which parts stay frozen.

    Attributes:
        vision_tower, sam_image_encoder, text_encoder: the towers the paper keeps frozen.
        train_only: when given, only these modules (attribute names of the model, e.g. ``[name_grounding_head]``)
            train and everything else is frozen: a second stage that adds a head to a trained checkpoint.
    """

    vision_tower: bool = True
    sam_image_encoder: bool = True
    text_encoder: bool = True
    train_only: list[str] | None = None

    def apply(self, model) -> None:
        from torch import nn

        model.freeze_towers(self.vision_tower, self.sam_image_encoder, self.text_encoder)
        if self.train_only is None:
            return
        unknown = [name for name in self.train_only if not isinstance(getattr(model, name, None), nn.Module)]
        if unknown:
            raise UserInputError(f"freeze.train_only names {unknown}, which are not modules of this model.")
        model.requires_grad_(False)
        for name in self.train_only:
            getattr(model, name).requires_grad_(True)


@dataclass
class LoraSpec:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    projections: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])


@dataclass
class DataSpec:
    """One corpus.

    Attributes:
        source: ``synthetic`` (rendered on the fly), a folder written by ``lavida build-dataset``, or a mix YAML.
        num_samples: length of an on-the-fly corpus (ignored for built folders).
        seed: corpus seed (on-the-fly rendering, mixing).
        options: source options (for ``synthetic``: ``SyntheticWorldConfig`` fields and sampler options).
    """

    source: str = "synthetic"
    num_samples: int = 1000
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainConfig:
    model: ModelSpec = field(default_factory=ModelSpec)
    freeze: FreezeSpec = field(default_factory=FreezeSpec)
    lora: LoraSpec | None = None
    train_data: DataSpec = field(default_factory=DataSpec)
    eval_data: DataSpec | None = None
    training: dict[str, Any] = field(default_factory=dict)
    export: str | None = None
    seed: int = 0
    object_score_warmup_steps: int = 0

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> "TrainConfig":
        path = Path(path)
        if not path.is_file():
            raise UserInputError(f"Training config {path} does not exist; see configs/lavida-tiny.yaml for the format.")
        raw = yaml.safe_load(path.read_text()) or {}
        known = {"model", "freeze", "lora", "data", "training", "export", "seed", "object_score_warmup_steps"}
        unknown = set(raw) - known
        if unknown:
            raise UserInputError(f"Training config {path} has unknown sections {sorted(unknown)}; "
                                 f"allowed: {sorted(known)}.")
        data = raw.get("data") or {}
        try:
            return cls(
                model=ModelSpec(**(raw.get("model") or {})),
                freeze=FreezeSpec(**(raw.get("freeze") or {})),
                lora=LoraSpec(**raw["lora"]) if raw.get("lora") else None,
                train_data=DataSpec(**(data.get("train") or {})),
                eval_data=DataSpec(**data["eval"]) if data.get("eval") else None,
                training=dict(raw.get("training") or {}),
                export=raw.get("export"),
                seed=int(raw.get("seed", 0)),
                object_score_warmup_steps=int(raw.get("object_score_warmup_steps", 0)),
            )
        except TypeError as error:
            raise UserInputError(f"Training config {path}: {error}") from error


def build_corpus(spec: DataSpec, split: str):
    """A ``torch.utils.data.Dataset``-like object of corpus rows (``frames``, ``masks``, ``names``, ``sample_id``)."""
    if spec.source == "synthetic":
        from .dataset_builders.synthetic_training import SyntheticTrainingCorpus

        return SyntheticTrainingCorpus(num_samples=spec.num_samples, seed=spec.seed, split=split, **spec.options)
    path = Path(spec.source)
    if path.suffix in (".yaml", ".yml"):
        from .dataset_builders.corpus_loading import load_mixed_corpus

        return load_mixed_corpus(path, seed=spec.seed)
    if path.is_dir():
        from .dataset_builders.corpus_loading import load_built_corpus

        return load_built_corpus(path, split=split)
    raise UserInputError(f"data source {spec.source!r} is neither 'synthetic', a mix YAML, nor a built corpus folder.")


def train(config: TrainConfig, output_dir: str | None = None, resume: str | bool | None = None,
          max_steps: int | None = None):
    """Run training; returns the ``LavidaTrainer`` (its state holds the log history)."""
    import torch
    from transformers import TrainingArguments, set_seed

    from .lora import add_lora, lavida_lora_config
    from .model_factory import build_model_and_processor
    from .trainer_lavida import LavidaDataCollator, LavidaTrainer, compute_frame_metrics

    set_seed(config.seed)
    model, processor = build_model_and_processor(config.model)
    config.freeze.apply(model)
    if config.lora is not None:
        model = add_lora(model, lavida_lora_config(config.lora.r, config.lora.alpha, config.lora.dropout,
                                                   config.lora.projections))
    arguments = {
        "output_dir": output_dir or "outputs/train",
        "remove_unused_columns": False,
        "report_to": [],
        "seed": config.seed,
        "data_seed": config.seed,
        **config.training,
    }
    if output_dir:
        arguments["output_dir"] = output_dir
    if max_steps is not None:
        arguments["max_steps"] = max_steps
    if config.eval_data is None:
        arguments["eval_strategy"] = "no"
        arguments.pop("load_best_model_at_end", None)
        arguments.pop("metric_for_best_model", None)
    args = TrainingArguments(**arguments)
    train_corpus = build_corpus(config.train_data, "train")
    eval_corpus = build_corpus(config.eval_data, "validation") if config.eval_data else None
    trainer = LavidaTrainer(
        model=model,
        args=args,
        train_dataset=train_corpus,
        eval_dataset=eval_corpus,
        data_collator=LavidaDataCollator(processor, seed=config.seed),
        processing_class=processor,  # checkpoints then hold the processor too and load with AutoProcessor
        compute_metrics=compute_frame_metrics if eval_corpus is not None else None,
        object_score_warmup_steps=config.object_score_warmup_steps,
    )
    torch.set_num_threads(max(1, torch.get_num_threads()))
    trainer.train(resume_from_checkpoint=resume)
    if config.export and trainer.is_world_process_zero():
        export_model(trainer.model, processor, config.export)
    return trainer


def export_model(model, processor, destination: str | os.PathLike,
                 half_precision_prefixes: tuple[str, ...] = ("text_encoder.",)) -> Path:
    """Write model (merged if LoRA) + processor to ``destination`` atomically (temp folder, then rename).

    Weights under ``half_precision_prefixes`` (the frozen text encoder) are stored in float16 to keep shipped
    checkpoints small; they load back into the model's float32 parameters."""
    import torch

    destination = Path(destination)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    state_dict = {name: (tensor.half() if name.startswith(half_precision_prefixes) and tensor.is_floating_point()
                         else tensor)
                  for name, tensor in model.state_dict().items()}
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}-", dir=destination.parent))
    try:
        with torch.no_grad():
            model.save_pretrained(staging, state_dict=state_dict)
        processor.save_pretrained(staging)
        if destination.exists():
            shutil.rmtree(destination)
        staging.rename(destination)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    logger.info("exported model and processor to %s", destination)
    return destination


__all__ = ["DataSpec", "FreezeSpec", "LoraSpec", "TrainConfig", "build_corpus", "export_model", "train"]
