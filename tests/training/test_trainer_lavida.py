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

from lavida import LavidaConfig, LavidaForVideoAnomalyDetection
from lavida.processing.factories import build_tiny_processor
from lavida.trainer_lavida import LOSS_TERMS, LavidaDataCollator, LavidaTrainer, compute_frame_metrics
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


def test_object_score_warmup_switches_the_bce_off_then_ramps_it(tmp_path):
    trainer = _trainer(tmp_path, max_steps=6)
    trainer.object_score_warmup_steps = 2
    weights = []

    class Record(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            weights.append(trainer.model.loss_function_lavida.object_weight)

    trainer.add_callback(Record())
    trainer.train()
    # weight used at steps 1..6 (global_step 0..5 when computed): 0, 0, 0, 1, 2, 2 (times the configured 2.0)
    assert weights == [0.0, 0.0, 0.0, 1.0, 2.0, 2.0]


def test_evaluation_loss_uses_the_full_object_score_weight_during_the_warmup(tmp_path):
    """Validation losses must compare across the BCE warm-up, or best-checkpoint selection favours warm-up steps."""
    eval_rows = toy_rows(4, seed=9)
    trainer = _trainer(tmp_path, max_steps=1)
    trainer.object_score_warmup_steps = 100
    trainer.train()
    assert trainer.model.loss_function_lavida.object_weight == 0.0  # the training step ran inside the warm-up
    during_warmup = trainer.evaluate(eval_dataset=eval_rows)["eval_loss"]
    trainer.object_score_warmup_steps = 0
    without_warmup = trainer.evaluate(eval_dataset=eval_rows)["eval_loss"]
    assert during_warmup == pytest.approx(without_warmup, rel=1e-6)


def test_in_order_corpus_is_read_sequentially_and_pairs_need_an_even_batch(tmp_path):
    from lavida.dataset_builders.synthetic_training import SyntheticTrainingCorpus

    trainer = _trainer(tmp_path, max_steps=1)
    corpus = SyntheticTrainingCorpus(num_samples=8, contrast_pairs=True, world={"size": 64, "clip_length": 4})
    assert list(trainer._get_train_sampler(corpus)) == list(range(8))
    assert not isinstance(trainer._get_train_sampler(toy_rows(4)), torch.utils.data.SequentialSampler)
    trainer.args.per_device_train_batch_size = 3
    with pytest.raises(ValueError, match="multiple of the corpus group size 2"):
        trainer._get_train_sampler(corpus)
