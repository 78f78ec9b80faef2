"""LavidaTrainer: per-term logging, resume with optimizer state, two-process DDP on CPU, frame metrics."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import EvalPrediction, TrainerCallback, TrainingArguments, set_seed

from lavida import LavidaConfig, LavidaForVideoAnomalyDetection, LavidaProcessor
from lavida.processing.factories import build_tiny_processor
from lavida.trainer_lavida import LOSS_TERMS, LavidaDataCollator, LavidaTrainer, compute_frame_metrics, loss_terms
from tests.training.toy_rows import toy_rows

ROOT = Path(__file__).resolve().parents[2]


class StopAfterStep(TrainerCallback):
    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            control.should_training_stop = True
        return control


def _trainer(out_dir, max_steps, save_steps=None, eval_rows=None):
    set_seed(0)
    model = LavidaForVideoAnomalyDetection(LavidaConfig.tiny())
    args = TrainingArguments(
        output_dir=str(out_dir), max_steps=max_steps, per_device_train_batch_size=2, logging_steps=1,
        use_cpu=True, report_to=[], remove_unused_columns=False, seed=0, learning_rate=1e-3,
        save_strategy="steps" if save_steps else "no", save_steps=save_steps or 500,
        eval_strategy="steps" if eval_rows else "no", eval_steps=2, per_device_eval_batch_size=2,
        dataloader_num_workers=0,
    )
    return LavidaTrainer(model=model, args=args, train_dataset=toy_rows(16), eval_dataset=eval_rows,
                         data_collator=LavidaDataCollator(build_tiny_processor()),
                         compute_metrics=compute_frame_metrics if eval_rows else None)


def test_every_loss_term_is_logged_and_finite(tmp_path):
    trainer = _trainer(tmp_path, max_steps=3, eval_rows=toy_rows(4, seed=9))
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == 3
    for entry in logs:
        for term in LOSS_TERMS:
            assert term in entry and np.isfinite(entry[term]), (term, entry)
    evals = [entry for entry in trainer.state.log_history if "eval_frame_auc" in entry]
    assert evals and 0.0 <= evals[-1]["eval_frame_auc"] <= 1.0


def test_resume_continues_at_the_saved_step_with_the_optimizer_state(tmp_path):
    straight = _trainer(tmp_path / "straight", max_steps=4)
    straight.train()

    interrupted = _trainer(tmp_path / "resumed", max_steps=4, save_steps=2)
    interrupted.add_callback(StopAfterStep(2))  # a run killed after its step-2 checkpoint
    interrupted.train()
    checkpoint = tmp_path / "resumed" / "checkpoint-2"
    assert (checkpoint / "optimizer.pt").is_file() and (checkpoint / "model.safetensors").is_file()

    assert not (tmp_path / "resumed" / "checkpoint-4").exists()
    resumed = _trainer(tmp_path / "resumed", max_steps=4, save_steps=2)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    steps = [entry["step"] for entry in resumed.state.log_history if "loss" in entry]
    assert steps[-2:] == [3, 4] and resumed.state.global_step == 4
    # same final weights only if the Adam moments and the data order were restored
    for (name, a), (_, b) in zip(straight.model.named_parameters(), resumed.model.named_parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


def test_frame_metrics_match_sklearn():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 8))
    labels = rng.integers(0, 2, size=(6, 8))
    metrics = compute_frame_metrics(EvalPrediction(predictions=logits, label_ids=labels))
    assert metrics["frame_auc"] == pytest.approx(roc_auc_score(labels.ravel(), logits.ravel()), abs=1e-12)


def test_two_process_cpu_training_has_identical_losses_on_both_ranks(tmp_path):
    accelerate = shutil.which("accelerate", path=os.path.dirname(sys.executable))
    if accelerate is None:
        pytest.skip("accelerate launcher not installed next to this interpreter")
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    command = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29531",
               str(ROOT / "tests" / "training" / "ddp_smoke.py"), str(tmp_path)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert run.returncode == 0, run.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    losses = [[entry["loss"] for entry in r["logs"]] for r in ranks]
    assert len(losses[0]) == 3 and losses[0] == losses[1]
    assert ranks[0]["weights_sum"] == pytest.approx(ranks[1]["weights_sum"], rel=1e-9)


def _record_forward_kwargs(model) -> list[dict]:
    """The keyword inputs of every forward call of ``model`` (non-tensor ones only)."""
    calls: list[dict] = []
    model.register_forward_pre_hook(
        lambda module, args, kwargs: calls.append({k: v for k, v in kwargs.items() if not torch.is_tensor(v)}),
        with_kwargs=True)
    return calls


def test_object_score_warmup_switches_the_bce_off_then_ramps_it(tmp_path):
    trainer = _trainer(tmp_path, max_steps=6)
    trainer.object_score_warmup_steps = 2
    weight = trainer.model.loss_function_lavida.object_weight
    calls = _record_forward_kwargs(trainer.model)
    trainer.train()
    # scale used at steps 1..6 (global_step 0..5 when computed): 0, 0, 0, 0.5, 1, 1 of the configured weight
    assert [call["object_score_scale"] for call in calls] == [0.0, 0.0, 0.0, 0.5, 1.0, 1.0]
    # the schedule goes to forward: the loss module is never changed
    assert trainer.model.loss_function_lavida.object_weight == weight == trainer.model.config.object_score_loss_weight
    # each logged loss is the weighted sum of its terms at that step's scale
    config = trainer.model.config
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    for entry, scale in zip(logs, [0.0, 0.0, 0.0, 0.5, 1.0, 1.0]):
        expected = (config.lm_loss_weight * entry["lm_loss"] + config.focal_loss_weight * entry["focal_loss"]
                    + config.dice_loss_weight * entry["dice_loss"] + config.iou_loss_weight * entry["iou_loss"]
                    + scale * weight * entry["object_score_loss"])
        assert entry["loss"] == pytest.approx(expected, rel=1e-3, abs=1e-5), (scale, entry)


def test_evaluation_loss_uses_the_full_object_score_weight_during_the_warmup(tmp_path):
    """Validation losses must compare across the BCE warm-up, or best-checkpoint selection favours warm-up steps."""
    eval_rows = toy_rows(4, seed=9)
    trainer = _trainer(tmp_path, max_steps=1)
    trainer.object_score_warmup_steps = 100
    calls = _record_forward_kwargs(trainer.model)
    trainer.train()
    assert calls[-1]["object_score_scale"] == 0.0  # the training step ran inside the warm-up
    during_warmup = trainer.evaluate(eval_dataset=eval_rows)["eval_loss"]
    assert "object_score_scale" not in calls[-1]  # evaluation: the model's configured loss
    trainer.object_score_warmup_steps = 0
    without_warmup = trainer.evaluate(eval_dataset=eval_rows)["eval_loss"]
    assert during_warmup == pytest.approx(without_warmup, rel=1e-6)
    assert trainer.model.loss_function_lavida.object_weight == trainer.model.config.object_score_loss_weight


def test_the_grounding_loss_is_logged_under_its_own_name(tmp_path):
    """With frame_score "name_grounding" the frame-score term is the grounding head's loss: logged as grounding_loss,
    with no object_score_loss entry, and warmed up like the object score. (Rows with every object's own mask: the
    batches carry grounding_labels, a nested dict, through the Trainer.)"""
    from lavida.dataset_builders.synthetic_training import SyntheticTrainingCorpus

    set_seed(0)
    model = LavidaForVideoAnomalyDetection(LavidaConfig.tiny(frame_score="name_grounding"))
    rows = SyntheticTrainingCorpus(num_samples=6, seed=3, max_names=4, object_labels=True,
                                   world={"size": 64, "clip_length": 8})
    calls = _record_forward_kwargs(model)
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=2, logging_steps=1,
                             use_cpu=True, report_to=[], remove_unused_columns=False, seed=0, save_strategy="no",
                             dataloader_num_workers=0)
    trainer = LavidaTrainer(model=model, args=args, train_dataset=rows, object_score_warmup_steps=1,
                            data_collator=LavidaDataCollator(build_tiny_processor()))
    trainer.train()
    assert all(set(call["grounding_labels"]) == {"input_ids", "attention_mask", "word_ids", "name_mask", "targets"}
               for call in calls)
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == 3
    config = model.config
    for entry, scale in zip(logs, [0.0, 0.0, 1.0]):
        assert set(loss_terms("name_grounding")) <= set(entry) and "object_score_loss" not in entry, entry
        assert np.isfinite(entry["grounding_loss"]) and entry["grounding_loss"] > 0
        expected = (config.lm_loss_weight * entry["lm_loss"] + config.focal_loss_weight * entry["focal_loss"]
                    + config.dice_loss_weight * entry["dice_loss"] + config.iou_loss_weight * entry["iou_loss"]
                    + scale * config.object_score_loss_weight * entry["grounding_loss"])
        assert entry["loss"] == pytest.approx(expected, rel=1e-3, abs=1e-5), (scale, entry)


def test_loss_terms_name_the_frame_score_term_of_each_config():
    assert LOSS_TERMS == loss_terms("object_score") == ("lm_loss", "focal_loss", "dice_loss", "iou_loss",
                                                        "object_score_loss")
    assert loss_terms("name_grounding")[-1] == "grounding_loss"
    with pytest.raises(ValueError, match="frame_score"):
        loss_terms("objectness")


def test_in_order_corpus_is_read_sequentially_and_pairs_need_an_even_batch(tmp_path):
    from lavida.dataset_builders.synthetic_training import SyntheticTrainingCorpus

    trainer = _trainer(tmp_path, max_steps=1)
    corpus = SyntheticTrainingCorpus(num_samples=8, contrast_pairs=True, world={"size": 64, "clip_length": 4})
    assert list(trainer._get_train_sampler(corpus)) == list(range(8))
    assert not isinstance(trainer._get_train_sampler(toy_rows(4)), torch.utils.data.SequentialSampler)
    trainer.args.per_device_train_batch_size = 3
    with pytest.raises(ValueError, match="multiple of the corpus group size 2"):
        trainer._get_train_sampler(corpus)


def test_a_second_stage_trains_only_the_name_grounding_head(tmp_path):
    """configs/lavida-tiny-grounding.yaml's recipe on a tiny model: the head is added to a trained checkpoint and is
    the only thing that changes; the export carries it and loads without new_modules. A processor setting given in the
    recipe (grounding frames at their own size) reaches the training batches and the export."""
    from safetensors.torch import load_file

    from lavida.model_factory import ModelSpec
    from lavida.training import DataSpec, FreezeSpec, TrainConfig, train

    set_seed(0)
    stage1 = tmp_path / "stage1"
    LavidaForVideoAnomalyDetection(LavidaConfig.tiny()).save_pretrained(stage1)
    build_tiny_processor().save_pretrained(stage1)
    config = TrainConfig(
        model=ModelSpec(init="pretrained", pretrained=str(stage1), config={"frame_score": "name_grounding"},
                        new_modules=["name_grounding_head"], processor={"grounding_image_size": 96}),
        freeze=FreezeSpec(train_only=["name_grounding_head"]),
        train_data=DataSpec(source="synthetic", num_samples=4,
                            options={"max_names": 4, "world": {"size": 64, "clip_length": 8}}),
        training={"max_steps": 2, "per_device_train_batch_size": 2, "learning_rate": 1e-2, "use_cpu": True,
                  "save_strategy": "no", "logging_steps": 1, "dataloader_num_workers": 0},
        export=str(tmp_path / "stage2"),
    )
    train(config, output_dir=str(tmp_path / "run"))
    before, after = load_file(stage1 / "model.safetensors"), load_file(tmp_path / "stage2" / "model.safetensors")
    head = {k for k in after if k.startswith("name_grounding_head.")}
    assert head and set(after) - head == set(before)
    for key in before:
        torch.testing.assert_close(after[key].float(), before[key].float(), rtol=0, atol=1e-3 if
                                   key.startswith("text_encoder.") else 0)  # text encoder is stored in float16
    initial = LavidaForVideoAnomalyDetection(LavidaConfig.tiny(frame_score="name_grounding")).name_grounding_head
    assert not torch.equal(after["name_grounding_head.name_encoder.0.weight"], initial.name_encoder[0].weight)
    loaded = LavidaForVideoAnomalyDetection.from_pretrained(tmp_path / "stage2")
    assert loaded.config.frame_score == "name_grounding"
    assert LavidaProcessor.from_pretrained(tmp_path / "stage2").grounding_image_size == 96
    for tokenizer_config in ("tokenizer_config.json", "class_tokenizer/tokenizer_config.json"):
        # the setting is the processor's: its tokenizers are saved as they were
        assert "grounding_image_size" not in json.loads((tmp_path / "stage2" / tokenizer_config).read_text())


def test_train_only_must_name_modules_of_the_model():
    from lavida.errors import UserInputError
    from lavida.training import FreezeSpec

    with pytest.raises(UserInputError, match="no_such_head"):
        FreezeSpec(train_only=["no_such_head"]).apply(LavidaForVideoAnomalyDetection(LavidaConfig.tiny()))


def test_the_collator_passes_name_labels_padded_to_the_longest_list():
    rows = toy_rows(2)
    rows[0]["name_labels"], rows[1]["name_labels"] = [1, 0], [0]
    rows[1]["names"] = ["green star"]
    batch = LavidaDataCollator(build_tiny_processor())(rows)
    torch.testing.assert_close(batch["name_labels"], torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    assert batch["class_mask"].tolist() == [[True, True], [True, False]]
    assert "name_labels" not in LavidaDataCollator(build_tiny_processor())(toy_rows(2))


def test_attribute_labels_name_each_colour_and_shape_with_the_objects_that_hold_it():
    from lavida.dataset_builders.synthetic_training import SyntheticTrainingCorpus
    from lavida.dataset_builders.synthetic_world import COLOUR_NAMES, SHAPES

    plain = SyntheticTrainingCorpus(num_samples=6, seed=3, max_names=6, object_labels=True,
                                    world={"size": 64, "clip_length": 8})
    corpus = SyntheticTrainingCorpus(num_samples=6, seed=3, max_names=6, object_labels=True, attribute_labels=True,
                                     world={"size": 64, "clip_length": 8})
    for index in range(6):
        before, row = plain[index], corpus[index]
        objects = len(before["object_names"])
        # the object labels are unchanged, the 16 words follow them
        assert row["object_names"][:objects] == before["object_names"]
        assert np.array_equal(row["object_masks"][:objects], before["object_masks"])
        assert row["object_names"][objects:] == [*COLOUR_NAMES, *SHAPES]
        for word, mask in zip(row["object_names"][objects:], row["object_masks"][objects:]):
            holders = [k for k, name in enumerate(before["object_names"]) if word in name.split()]
            expected = before["object_masks"][holders].any(axis=0) if holders else np.zeros_like(mask)
            assert np.array_equal(mask, expected), word
    with pytest.raises(ValueError, match="object_labels"):
        SyntheticTrainingCorpus(num_samples=2, attribute_labels=True)


def test_compressed_frames_are_the_clean_clip_through_h264_with_everything_else_unchanged():
    from lavida.dataset_builders.synthetic_training import SyntheticTrainingCorpus
    from lavida.processing.video_io import h264_roundtrip

    options = dict(num_samples=4, seed=3, max_names=6, object_labels=True, world={"size": 64, "clip_length": 4})
    clean, compressed = SyntheticTrainingCorpus(**options), SyntheticTrainingCorpus(**options, compress_frames=True)
    for index in range(4):
        before, row = clean[index], compressed[index]
        assert row["names"] == before["names"] and np.array_equal(row["masks"], before["masks"])
        assert row["object_names"] == before["object_names"]
        assert row["frames"].shape == before["frames"].shape and row["frames"].dtype == np.uint8
        assert np.array_equal(row["frames"], h264_roundtrip(before["frames"]))  # deterministic
        difference = np.abs(row["frames"].astype(int) - before["frames"].astype(int))
        assert 0.3 < difference.mean() < 8 and difference.max() > 20  # close, but the codec left its marks


def test_object_labels_give_every_object_in_view_its_own_grounding_mask():
    from lavida.dataset_builders.synthetic_training import SyntheticTrainingCorpus

    corpus = SyntheticTrainingCorpus(num_samples=6, seed=3, max_names=6, object_labels=True,
                                     world={"size": 64, "clip_length": 8})
    rows = [corpus[i] for i in range(6)]
    for row in rows:
        assert len(row["object_names"]) == len(row["object_masks"]) >= 1
        assert all(mask.any() for mask in row["object_masks"])
        for name, label in zip(row["names"], row["name_labels"]):
            if label:  # a true name is an object in view, and the target is inside that object's mask
                mask = row["object_masks"][row["object_names"].index(name)]
                assert not (row["masks"] & ~mask).any() or sum(row["name_labels"]) > 1
            else:
                assert name not in row["object_names"]
    batch = LavidaDataCollator(build_tiny_processor())(rows[:2])
    size = batch["sam_pixel_values"].shape[-2:]
    for i, row in enumerate(rows[:2]):
        count = len(row["object_names"]) + sum(1 for label in row["name_labels"] if not label)
        assert int(batch["grounding_labels"]["name_mask"][i].sum()) == count
        targets = batch["grounding_labels"]["targets"][i]
        assert targets.shape[1:] == (8, *size)
        # objects first, each with its own (resized) mask; then the distractors, empty
        for k, mask in enumerate(row["object_masks"]):
            resized = torch.nn.functional.interpolate(torch.as_tensor(mask, dtype=torch.float32)[:, None], size=size,
                                                      mode="bilinear", align_corners=False)[:, 0] > 0.5
            assert torch.equal(targets[k] > 0.5, resized)
        assert not targets[len(row["object_names"]):].any()
    assert set(batch["grounding_labels"]) == {"input_ids", "attention_mask", "word_ids", "name_mask", "targets"}
    assert not any(key.startswith("grounding_") for key in batch if key != "grounding_labels")
    model = LavidaForVideoAnomalyDetection(LavidaConfig.tiny(frame_score="name_grounding"))
    out = model(**batch)
    assert torch.isfinite(out.grounding_loss) and out.object_score_loss is None


def test_with_gradient_accumulation_the_logged_loss_is_the_weighted_mean_of_its_terms(tmp_path):
    set_seed(0)
    model = LavidaForVideoAnomalyDetection(LavidaConfig.tiny())
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=1,
                             gradient_accumulation_steps=2, logging_steps=1, use_cpu=True, report_to=[],
                             remove_unused_columns=False, seed=0, save_strategy="no", dataloader_num_workers=0)
    trainer = LavidaTrainer(model=model, args=args, train_dataset=toy_rows(4),
                            data_collator=LavidaDataCollator(build_tiny_processor()))
    trainer.train()
    config = model.config
    weights = {"lm_loss": config.lm_loss_weight, "focal_loss": config.focal_loss_weight,
               "dice_loss": config.dice_loss_weight, "iou_loss": config.iou_loss_weight,
               "object_score_loss": config.object_score_loss_weight}
    for entry in [entry for entry in trainer.state.log_history if "loss" in entry]:
        expected = sum(weight * entry[term] for term, weight in weights.items())
        # a sum over the two micro-batches (twice the gradient) would log twice this
        assert entry["loss"] == pytest.approx(expected, rel=1e-3), entry


def _grounding_rows(count: int):
    from lavida.dataset_builders.synthetic_training import SyntheticTrainingCorpus

    return SyntheticTrainingCorpus(num_samples=count, seed=3, max_names=4, object_labels=True,
                                   world={"size": 64, "clip_length": 4})


@pytest.mark.parametrize("head", ["pooled_name", "word_attributes"])
def test_the_grounding_head_step_is_forwards_grounding_loss_without_the_mllm(head):
    set_seed(0)
    options = {"grounding_image_channels": 8, "grounding_image_input": "oriented_edges",
               "grounding_image_stem_channels": 4} if head == "word_attributes" else {}
    model = LavidaForVideoAnomalyDetection(LavidaConfig.tiny(frame_score="name_grounding", grounding_head=head,
                                                             **options)).eval()
    processor = build_tiny_processor()
    processor.grounding_image_size = 96
    corpus = _grounding_rows(2)
    batch = LavidaDataCollator(processor)([corpus[0], corpus[1]])
    with torch.no_grad():
        for parameter in model.name_grounding_head.parameters():  # the tiny init's maps are nearly flat
            parameter.add_(torch.randn_like(parameter) * 0.3)
        expected = model(**batch).grounding_loss
        mllm_calls = []
        model.mllm.register_forward_pre_hook(lambda *args: mllm_calls.append(1))
        loss = model.grounding_head_loss(batch["sam_pixel_values"], batch["grounding_labels"],
                                         batch["grounding_pixel_values"])
    torch.testing.assert_close(loss, expected)
    assert not mllm_calls
    with pytest.raises(ValueError, match="grounding_labels"):
        model.grounding_head_loss(batch["sam_pixel_values"], None)


def test_a_grounding_head_step_trains_the_head_alone_and_logs_its_loss(tmp_path):
    from lavida.training import FreezeSpec

    set_seed(0)
    model = LavidaForVideoAnomalyDetection(LavidaConfig.tiny(frame_score="name_grounding"))
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=2, logging_steps=1,
                             use_cpu=True, report_to=[], remove_unused_columns=False, seed=0, save_strategy="no",
                             learning_rate=1e-2, dataloader_num_workers=0)
    collator = LavidaDataCollator(build_tiny_processor())
    with pytest.raises(ValueError, match="trains the name-grounding head alone"):
        LavidaTrainer(model=model, args=args, train_dataset=_grounding_rows(4), data_collator=collator,
                      train_step="grounding_head")
    FreezeSpec(train_only=["name_grounding_head"]).apply(model)
    before = {name: value.clone() for name, value in model.state_dict().items()}
    trainer = LavidaTrainer(model=model, args=args, train_dataset=_grounding_rows(4), data_collator=collator,
                            train_step="grounding_head")
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == 2
    for entry in logs:  # the head's loss is the step's whole loss
        assert entry["loss"] == pytest.approx(entry["grounding_loss"], rel=1e-5)
        assert not {"lm_loss", "focal_loss", "dice_loss", "iou_loss"} & set(entry)
    after = model.state_dict()
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed and all(name.startswith("name_grounding_head.") for name in changed)
    with pytest.raises(ValueError, match="train_step"):
        LavidaTrainer(model=model, args=args, train_dataset=_grounding_rows(4), data_collator=collator,
                      train_step="head")
