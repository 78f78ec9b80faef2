"""Train a LAVIDA model from a YAML config (single process, or under `accelerate launch` / DeepSpeed).

Examples:
    lavida train --config configs/lavida-tiny.yaml
    accelerate launch --multi_gpu --num_processes 8 -m lavida.cli train --config configs/lavida-7b.yaml
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="YAML training config (see configs/)")
    parser.add_argument("--output-dir", help="checkpoints folder (overrides training.output_dir)")
    parser.add_argument("--resume", nargs="?", const=True, default=None,
                        help="resume from the last checkpoint in the output folder, or from the given checkpoint")
    parser.add_argument("--max-steps", type=int, help="override training.max_steps (smoke runs)")


def run(args: argparse.Namespace) -> int:
    from lavida.training import TrainConfig, train

    config = TrainConfig.from_yaml(args.config)
    trainer = train(config, output_dir=args.output_dir, resume=args.resume, max_steps=args.max_steps)
    if trainer.is_world_process_zero():
        history = [entry for entry in trainer.state.log_history if "loss" in entry]
        if history:
            first, last = history[0], history[-1]
            print(f"trained {trainer.state.global_step} steps: loss {first['loss']:.4f} (step {first['step']}) -> "
                  f"{last['loss']:.4f} (step {last['step']})")
        if config.export:
            print(f"exported model and processor to {config.export}")
    return 0
