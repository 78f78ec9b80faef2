"""Run by the two-process test: a few LavidaTrainer steps under DDP on CPU; each rank writes its losses."""

from __future__ import annotations

import json
import os
import sys

import torch


def main(out_dir: str) -> None:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    from transformers import TrainingArguments, set_seed

    from lavida import LavidaConfig, LavidaForVideoAnomalyDetection
    from lavida.processing.factories import build_tiny_processor
    from lavida.trainer_lavida import LavidaDataCollator, LavidaTrainer
    from tests.training.toy_rows import toy_rows

    torch.set_num_threads(1)
    set_seed(0)
    model = LavidaForVideoAnomalyDetection(LavidaConfig.tiny())
    processor = build_tiny_processor()
    args = TrainingArguments(output_dir=out_dir, max_steps=3, per_device_train_batch_size=1, logging_steps=1,
                             use_cpu=True, report_to=[], remove_unused_columns=False, save_strategy="no",
                             ddp_find_unused_parameters=True, seed=0, learning_rate=1e-3)
    trainer = LavidaTrainer(model=model, args=args, train_dataset=toy_rows(8), data_collator=LavidaDataCollator(processor))
    trainer.train()
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    weights_sum = float(sum(p.detach().double().sum() for p in trainer.model.parameters()))
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as handle:
        json.dump({"rank": rank, "world": world, "logs": logged, "weights_sum": weights_sum}, handle)


if __name__ == "__main__":
    main(sys.argv[1])
