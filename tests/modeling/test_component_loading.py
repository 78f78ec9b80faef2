"""``build_model_from_components`` on checkpoints in the real Hub layouts, training precision, attention routing,
round trips.

The three checkpoints (``tests/fixtures/component_checkpoints.py``) carry the quirks of the real repositories: a flat
Qwen2-VL config with a vocabulary padded past its tokenizer and bfloat16 weights, SAM 2.1 published as ``sam2_video``,
and a full ``CLIPModel``.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from transformers import AutoModel, PreTrainedModel, TrainerCallback

from lavida import LavidaForVideoAnomalyDetection
from lavida.lora import add_lora
from lavida.model_factory import build_model_from_components
from lavida.processing.factories import processor_from_components
from lavida.training import export_model, keep_trainable_weights_in_float32
from tests.fixtures.component_checkpoints import write_component_checkpoints

HEAD = {"projector_hidden_size": 32, "num_queries": 4, "qformer_layers": 2, "qformer_heads": 2, "qformer_mlp_dim": 64,
        "cross_attention_heads": 2, "lof_k": 4}
FLASH_ATTN_INSTALLED = importlib.util.find_spec("flash_attn") is not None


@pytest.fixture(scope="module")
def components(tmp_path_factory) -> dict[str, Path]:
    return write_component_checkpoints(tmp_path_factory.mktemp("components"), size="tiny", seed=0)


@pytest.fixture(scope="module")
def processor(components):
    return processor_from_components(components["mllm"], components["sam2"], components["text_encoder"])


@pytest.fixture(scope="module")
def batch(processor) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(0)
    clip = rng.integers(0, 255, (8, 64, 64, 3), dtype=np.uint8)
    masks = np.zeros((8, 64, 64))
    masks[2:5, 10:30, 10:30] = 1
    return dict(processor([clip], ["red circle", "blue star"], target_masks=[masks], seed=0))


def _build(components, **kwargs) -> LavidaForVideoAnomalyDetection:
    torch.manual_seed(0)
    return build_model_from_components(components["mllm"], components["sam2"], components["text_encoder"], **HEAD,
                                       **kwargs)


def _checkpoint(folder: Path) -> dict[str, torch.Tensor]:
    with safe_open(folder / "model.safetensors", "pt") as weights:
        return {key: weights.get_tensor(key) for key in weights.keys()}


def _inference(model, batch) -> dict[str, torch.Tensor]:
    inputs = {key: value for key, value in batch.items() if key not in ("labels", "target_masks")}
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=_mixed(model)):
        out = model.eval()(**inputs)
    return {"frame_logits": out.frame_logits, "mask_logits": out.mask_logits, "iou_scores": out.iou_scores,
            "seg_hidden_state": out.seg_hidden_state}


def _mixed(model) -> bool:
    return len({p.dtype for p in model.parameters()}) > 1


def _dtypes(model) -> dict[str, torch.dtype]:
    return {name: parameter.dtype for name, parameter in model.named_parameters()}


# ----------------------------------------------------------------------------------------------------------- loading
def test_the_hub_layouts_load_into_the_parts_lavida_uses(components, processor, batch):
    from transformers import CLIPTextModel, Sam2Model

    model = _build(components)
    # SAM 2.1 as published (sam2_video) -> the image model, config converted, memory modules left out
    assert type(model.sam) is Sam2Model and model.config.sam_config.model_type == "sam2"
    assert not any(name.startswith(("memory_", "mask_downsample", "object_pointer_proj"))
                   for name, _ in model.sam.named_parameters())
    sam_weights = _checkpoint(components["sam2"])
    for name, parameter in model.sam.state_dict().items():
        assert torch.equal(parameter, sam_weights[name]), name
    assert type(AutoModel.from_config(model.config.sam_config)) is Sam2Model  # a saved config rebuilds the same
    # a full CLIPModel -> its text tower, weights from the text_model.* keys
    assert type(model.text_encoder) is CLIPTextModel and model.config.text_pooling == "pooler"
    clip_weights = _checkpoint(components["text_encoder"])
    for name, parameter in model.text_encoder.state_dict().items():
        if name in clip_weights or f"text_model.{name}" in clip_weights:
            assert torch.equal(parameter, clip_weights.get(name, clip_weights.get(f"text_model.{name}"))), name
    # the flat Qwen2-VL config, bfloat16 weights under the legacy key names
    assert model.config.mllm_config.text_config.hidden_size == 64
    assert model.config.mllm_config.text_config.rope_parameters["mrope_section"] == [4, 2, 2]
    qwen = _checkpoint(components["mllm"])
    torch.testing.assert_close(model.mllm.model.language_model.layers[1].mlp.up_proj.weight,
                               qwen["model.layers.1.mlp.up_proj.weight"], rtol=0, atol=0)
    torch.testing.assert_close(model.mllm.model.visual.blocks[0].attn.qkv.weight,
                               qwen["visual.blocks.0.attn.qkv.weight"], rtol=0, atol=0)
    # the padded vocabulary: <SEG> takes the next tokenizer id, which fits, so nothing is resized
    assert len(processor.tokenizer) == 271 and model.config.seg_token_id == processor.seg_token_id == 270
    assert model.mllm.get_input_embeddings().weight.shape[0] == 320 == qwen["model.embed_tokens.weight"].shape[0]
    assert model.mllm.get_output_embeddings().weight.shape[0] == 320
    assert torch.equal(model.mllm.get_input_embeddings().weight, qwen["model.embed_tokens.weight"])
    # the towers are frozen and the model runs on the components' processor
    assert not any(p.requires_grad for p in model.sam.vision_encoder.parameters())
    assert not any(p.requires_grad for p in model.text_encoder.parameters())
    out = model.train()(**batch)
    assert torch.isfinite(out.loss) and out.frame_logits.shape == (1, 8)


def test_a_seg_token_that_does_not_fit_resizes_the_embeddings(components, tmp_path):
    import shutil

    from transformers import AutoModelForImageTextToText

    folder = tmp_path / "mllm"
    shutil.copytree(components["mllm"], folder)
    flat = json.loads((folder / "config.json").read_text())
    flat["vocab_size"] = 270  # exactly the tokenizer: no spare row
    (folder / "config.json").write_text(json.dumps(flat))
    mllm = AutoModelForImageTextToText.from_pretrained(components["mllm"])
    embeddings = mllm.get_input_embeddings().weight[:270].clone()
    mllm.resize_token_embeddings(270)
    mllm.save_pretrained(folder)
    (folder / "config.json").write_text(json.dumps(flat))
    model = build_model_from_components(folder, components["sam2"], components["text_encoder"], **HEAD)
    assert model.config.seg_token_id == 270 and model.mllm.get_input_embeddings().weight.shape[0] == 271
    assert torch.equal(model.mllm.get_input_embeddings().weight[:270], embeddings)


def test_the_towers_are_the_loaded_ones_not_copies(components, monkeypatch):
    """No second full model: each tower is the object its from_pretrained returned, and nothing stays on meta."""
    loaded: list[PreTrainedModel] = []
    original = PreTrainedModel.from_pretrained.__func__

    def recording(cls, *args, **kwargs):
        result = original(cls, *args, **kwargs)
        loaded.append(result[0] if isinstance(result, tuple) else result)  # (model, loading info)
        return result

    monkeypatch.setattr(PreTrainedModel, "from_pretrained", classmethod(recording))
    model = _build(components)
    assert [type(m).__name__ for m in loaded] == ["Qwen2VLForConditionalGeneration", "Sam2Model", "CLIPTextModel"]
    assert model.mllm is loaded[0] and model.sam is loaded[1] and model.text_encoder is loaded[2]
    assert model.config.mllm_config is model.mllm.config and model.config.sam_config is model.sam.config
    assert not any(t.is_meta for t in [*model.parameters(), *model.buffers()])
    projector = model.semantic_projector
    assert projector.queries.abs().sum() > 0 and projector.queries.std() < 0.1  # initialised, not empty memory


def test_dtype_device_map_and_hub_arguments_reach_every_tower(components, monkeypatch):
    calls: list[tuple[str, dict]] = []
    original = PreTrainedModel.from_pretrained.__func__

    def recording(cls, *args, **kwargs):
        calls.append((cls.__name__, dict(kwargs)))
        return original(cls, *args, **kwargs)  # (local folders: the Hub arguments change nothing)

    monkeypatch.setattr(PreTrainedModel, "from_pretrained", classmethod(recording))
    model = _build(components, dtype=torch.bfloat16, device_map="cpu", token="hf_test", revision="v1")
    assert [name for name, _ in calls] == ["Qwen2VLForConditionalGeneration", "Sam2Model", "CLIPTextModel"]
    for name, kwargs in calls:
        assert kwargs["dtype"] is torch.bfloat16 and kwargs["device_map"] == "cpu", name
        assert kwargs["token"] == "hf_test" and kwargs["revision"] == "v1", name
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}  # the new modules too, when a dtype is given
    auto = _build(components)  # default: each checkpoint's own dtype, new modules float32
    assert {p.dtype for p in auto.mllm.parameters()} == {torch.bfloat16}
    assert {p.dtype for n, p in auto.named_parameters() if not n.startswith("mllm.")} == {torch.float32}


# --------------------------------------------------------------------------------------------------------- precision
GROUPS = {"lora": ("lora_A", "lora_B"), "embed_tokens": ("embed_tokens",), "lm_head": ("lm_head",),
          "prompt_encoder": ("sam.prompt_encoder",), "mask_decoder": ("sam.mask_decoder",),
          "semantic_projector": ("semantic_projector",)}


class ChangedWeights(TrainerCallback):
    """Per group of trainable parameters, the share of elements an optimizer step moved, among those that got a
    gradient AdamW acts on (``|grad| >= adam_epsilon`` in some step; ``fractions``) and among all those that got a
    non-zero gradient (``fractions_any_gradient``).

    AdamW moves an element by about ``lr * g / (|g| + eps)``: for gradients far below ``eps`` (1e-8; attention
    projections at initialisation get 1e-14) that is below float32's resolution whatever the precision policy, so
    ``fractions`` is the figure that says whether the weights' dtype can hold the updates."""

    def __init__(self):
        self.previous: dict[str, torch.Tensor] = {}
        self.touched: dict[str, torch.Tensor] = {}
        self.acted: dict[str, torch.Tensor] = {}
        self.moved: dict[str, torch.Tensor] = {}
        self.dtypes: dict[str, torch.dtype] = {}
        self.fractions: dict[str, float] = {}
        self.fractions_any_gradient: dict[str, float] = {}

    @staticmethod
    def _group(name: str) -> str | None:
        return next((group for group, parts in GROUPS.items() if any(part in name for part in parts)), None)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        for name, parameter in model.named_parameters():
            if parameter.requires_grad and self._group(name) is not None:
                self.previous[name] = parameter.detach().clone()
                for store in (self.touched, self.acted, self.moved):
                    store[name] = torch.zeros_like(parameter, dtype=torch.bool)
                self.dtypes[name] = parameter.dtype

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        for name, parameter in model.named_parameters():
            if name in self.touched and parameter.grad is not None:
                self.touched[name] |= parameter.grad != 0
                self.acted[name] |= parameter.grad.abs() >= args.adam_epsilon

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):
        for name, parameter in model.named_parameters():
            if name in self.moved:
                self.moved[name] |= parameter.detach() != self.previous[name]
                self.previous[name] = parameter.detach().clone()

    def on_train_end(self, args, state, control, model=None, **kwargs):
        counts: dict[str, list[int]] = {}
        for name, moved in self.moved.items():
            group = counts.setdefault(self._group(name), [0, 0, 0, 0])
            group[0] += int((moved & self.acted[name]).sum())
            group[1] += int(self.acted[name].sum())
            group[2] += int((moved & self.touched[name]).sum())
            group[3] += int(self.touched[name].sum())
        self.fractions = {group: c[0] / c[1] for group, c in counts.items() if c[1]}
        self.fractions_any_gradient = {group: c[2] / c[3] for group, c in counts.items() if c[3]}


@pytest.mark.parametrize("bf16", [True, False], ids=["bf16-autocast", "no-mixed-precision"])
def test_training_updates_every_trainable_weight_at_lr_1e5(components, tmp_path, bf16):
    """A bfloat16 model built from components trains with float32 master weights: after 3 AdamW steps at lr 1e-5
    every trainable element with a gradient has moved, in every group."""
    from lavida.model_factory import ModelSpec
    from lavida.training import DataSpec, LoraSpec, TrainConfig, train

    recorder = ChangedWeights()
    config = TrainConfig(
        model=ModelSpec(init="components", mllm=str(components["mllm"]), sam2=str(components["sam2"]),
                        text_encoder=str(components["text_encoder"]), dtype="bfloat16", config=dict(HEAD)),
        lora=LoraSpec(),
        train_data=DataSpec(source="synthetic", num_samples=6,
                            options={"max_names": 3, "world": {"size": 64, "clip_length": 8}}),
        training={"max_steps": 3, "per_device_train_batch_size": 2, "learning_rate": 1e-5,
                  "lr_scheduler_type": "constant", "use_cpu": True, "bf16": bf16, "save_strategy": "no",
                  "logging_steps": 1, "dataloader_num_workers": 0, "report_to": []},
    )
    trainer = train(config, output_dir=str(tmp_path / "run"), callbacks=[recorder])
    assert set(recorder.fractions) == set(GROUPS), recorder.fractions
    assert all(fraction == 1.0 for fraction in recorder.fractions.values()), str(recorder.fractions)
    assert min(recorder.fractions_any_gradient.values()) > 0.8, str(recorder.fractions_any_gradient)
    assert set(recorder.dtypes.values()) == {torch.float32}
    frozen = {p.dtype for n, p in trainer.model.named_parameters() if ".visual." in n or "vision_encoder" in n}
    assert frozen == ({torch.bfloat16} if bf16 else {torch.float32})


def test_without_mixed_precision_everything_is_float32_and_runs(components, batch):
    model = add_lora(_build(components, dtype=torch.bfloat16))
    upcast = keep_trainable_weights_in_float32(model, mixed_precision=False)
    assert upcast > 0 and {p.dtype for p in model.parameters()} == {torch.float32}
    assert all(b.dtype == torch.float32 for b in model.buffers() if b.is_floating_point())
    model.train()(**batch).loss.backward()


def test_with_mixed_precision_only_trainable_weights_are_upcast(components, batch):
    model = add_lora(_build(components, dtype=torch.bfloat16))
    keep_trainable_weights_in_float32(model, mixed_precision=True)
    for name, parameter in model.named_parameters():
        assert parameter.dtype == (torch.float32 if parameter.requires_grad else torch.bfloat16), name
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model.train()(**batch).loss
    loss.backward()
    assert torch.isfinite(loss)


# --------------------------------------------------------------------------------------------------------- attention
@pytest.mark.skipif(FLASH_ATTN_INSTALLED, reason="flash_attn is installed here")
def test_flash_attention_is_refused_only_for_the_missing_package(components, tmp_path):
    with pytest.raises(ImportError, match="FlashAttention2 .*doesn't seem to be installed"):
        _build(components, attn_implementation="flash_attention_2")
    model = _build(components)
    model.save_pretrained(tmp_path)
    with pytest.raises(ImportError, match="FlashAttention2 .*doesn't seem to be installed"):
        LavidaForVideoAnomalyDetection.from_pretrained(tmp_path, attn_implementation="flash_attention_2")
    with pytest.raises(ImportError, match="FlashAttention2 .*doesn't seem to be installed"):
        model.set_attn_implementation("flash_attention_2")


def test_the_attention_implementation_goes_to_the_mllm(components, batch, tmp_path):
    def implementations(model) -> dict[str, str]:
        return {"lavida": model.config._attn_implementation,
                "language_model": model.mllm.model.language_model.config._attn_implementation,
                "vision_tower": model.mllm.model.visual.config._attn_implementation,
                "sam": model.sam.config._attn_implementation,
                "text_encoder": model.text_encoder.config._attn_implementation}

    expected = {"lavida": "sdpa", "language_model": "eager", "vision_tower": "eager", "sam": "sdpa",
                "text_encoder": "sdpa"}
    model = _build(components, attn_implementation="eager")
    assert implementations(model) == expected
    model.save_pretrained(tmp_path)
    assert implementations(LavidaForVideoAnomalyDetection.from_pretrained(tmp_path)) == {**expected,
                                                                                        "language_model": "sdpa",
                                                                                        "vision_tower": "sdpa"}
    assert implementations(AutoModel.from_pretrained(tmp_path, attn_implementation="eager")) == expected
    model.set_attn_implementation("sdpa")
    assert implementations(model)["language_model"] == "sdpa"
    per_part = _build(components, attn_implementation={"mllm": "sdpa", "sam2": "eager"})
    assert implementations(per_part)["sam"] == "eager" and implementations(per_part)["language_model"] == "sdpa"
    assert torch.isfinite(model(**batch).loss)


# -------------------------------------------------------------------------------------------------------- round trip
def test_an_export_in_float32_loads_back_bit_identical(components, processor, batch, tmp_path):
    model = _build(components, dtype=torch.float32)
    before = _inference(model, batch)
    export_model(model, processor, tmp_path / "export")
    for loaded in (AutoModel.from_pretrained(tmp_path / "export"),
                   LavidaForVideoAnomalyDetection.from_pretrained(tmp_path / "export")):
        assert type(loaded) is LavidaForVideoAnomalyDetection
        assert _dtypes(loaded) == _dtypes(model)
        for key, value in _inference(loaded, batch).items():
            torch.testing.assert_close(value, before[key], rtol=0, atol=0, msg=key)


def test_an_export_of_a_mixed_precision_model_keeps_each_parts_dtype(components, processor, batch, tmp_path):
    """bfloat16 towers stay bfloat16 and float32 trained weights (embeddings, LM head, decoder, projector) float32."""
    model = add_lora(_build(components))
    keep_trainable_weights_in_float32(model, mixed_precision=True)
    with torch.no_grad():  # as after training: the LoRA update is not zero
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.02)
    before = _inference(model, batch)
    export_model(model, processor, tmp_path / "export")
    merged = model.get_base_model()  # export merged LoRA into these weights
    config = json.loads((tmp_path / "export" / "config.json").read_text())
    assert config["module_dtypes"][""] in ("float32", "bfloat16") and "mllm.lm_head" in config["module_dtypes"]
    for loaded in (AutoModel.from_pretrained(tmp_path / "export"),
                   LavidaForVideoAnomalyDetection.from_pretrained(tmp_path / "export")):
        dtypes = _dtypes(loaded)
        assert dtypes == _dtypes(merged)
        assert dtypes["mllm.model.language_model.layers.0.self_attn.q_proj.weight"] == torch.bfloat16
        assert dtypes["mllm.model.visual.blocks.0.attn.qkv.weight"] == torch.bfloat16
        for trained in ("mllm.model.language_model.embed_tokens.weight", "mllm.lm_head.weight",
                        "sam.mask_decoder.iou_token.weight", "semantic_projector.queries"):
            assert dtypes[trained] == torch.float32, trained
        after = _inference(loaded, batch)
        for key, value in _inference(merged, batch).items():  # exactly the merged model that was saved
            torch.testing.assert_close(after[key], value, rtol=0, atol=0, msg=key)
        # against the model before the export, LoRA unmerged: merging rounds the LoRA update into bfloat16 weights
        # (the MLLM's hidden state moves by ~0.3% of its scale, one bfloat16 step)
        for key in before:
            torch.testing.assert_close(after[key].float(), before[key].float(), rtol=1.6e-2, atol=2e-2, msg=key)
    # an explicit dtype loads every part in that dtype
    assert {p.dtype for p in LavidaForVideoAnomalyDetection.from_pretrained(
        tmp_path / "export", dtype=torch.float32).parameters()} == {torch.float32}


def test_a_half_precision_text_encoder_is_a_storage_format(components, processor, tmp_path):
    model = _build(components, dtype=torch.float32)
    export_model(model, processor, tmp_path / "export", half_precision_prefixes=("text_encoder.",))
    stored = _checkpoint(tmp_path / "export")
    assert {v.dtype for k, v in stored.items() if k.startswith("text_encoder.")} == {torch.float16}
    loaded = LavidaForVideoAnomalyDetection.from_pretrained(tmp_path / "export")
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}  # the dtype it had when exported
    torch.testing.assert_close(loaded.text_encoder.embeddings.token_embedding.weight,
                               model.text_encoder.embeddings.token_embedding.weight.half().float(), rtol=0, atol=0)
