"""Train a LAVIDA model from a YAML config (single process, or under `accelerate launch` / DeepSpeed).

Examples:
    lavida train --config configs/lavida-tiny.yaml
    lavida train --config configs/lavida-7b.yaml --check     # check every input of the run, build nothing
    accelerate launch --num_processes 1 -m lavida.cli train --config configs/lavida-7b.yaml

Before anything is built, every input of the run is checked (config structure, data corpora, checkpoints, the
DeepSpeed package and JSON, precision against this machine, --resume); all problems are reported together.
"""

from __future__ import annotations

import argparse


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="YAML training config (see configs/)")
    parser.add_argument("--output-dir", help="checkpoints folder (overrides training.output_dir)")
    parser.add_argument("--resume", nargs="?", const=True, default=None,
                        help="resume from the last checkpoint in the output folder, or from the given checkpoint")
    parser.add_argument("--max-steps", type=_positive_int, help="override training.max_steps (smoke runs)")
    parser.add_argument("--check", action="store_true",
                        help="only check the config and every input of the run (nothing is built), then exit")


def run(args: argparse.Namespace) -> int:
    from lavida.training import TrainConfig, preflight, train

    config = TrainConfig.from_yaml(args.config)
    if args.check:
        preflight(config, output_dir=args.output_dir, resume=args.resume, max_steps=args.max_steps)
        print(f"{args.config}: every input of the run is in place")
        return 0
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
