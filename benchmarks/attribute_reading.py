"""Attribute reading: which colour and which shape does a checkpoint's name-grounding head see on an object?

The one-word swaps of ``benchmarks.name_grounding`` say whether a frame score reads both words of a name; this script
says which words it reads right and which it confuses. Each clip of the synthetic world shows one object of a
held-out composition (``--compositions``), rendered at ``--size`` pixels and, unless ``--no-compress``, passed through
H.264 as the benchmark's videos are. The model is prompted with the 16 single words (8 colours, 8 shapes) as the
anomaly names; on the frames where the object is in view, its colour is read as the colour word with the highest mean
presence probability (``LavidaOutput.name_logits``) and its shape likewise. Reported: colour and shape accuracy over
the clips, and the shape confusion matrix (rows: the object's shape, columns: the shape read).

Usage (from the repository root):
    python -m benchmarks.attribute_reading                     # the embedded lavida-tiny
    python -m benchmarks.attribute_reading --model PATH_OR_HUB_ID --clips 96

Needs a model with the name-grounding head (``frame_score: name_grounding``). Deterministic (fixed seed); the figures
are printed and written to ``--json``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np
import torch

from lavida.atomic_files import write_json_atomic

from .common import environment, resolve_device

CLIP_SEED = 17
# frames where the object covers fewer pixels than this (at 256 px) do not count: it is leaving the frame
MIN_VISIBLE_PIXELS = 50


@torch.no_grad()
def read_attributes(model, processor, clips: int, size: int = 256, compress: bool = True,
                    compositions: str = "held_out") -> dict[str, Any]:
    """Colour and shape read on ``clips`` one-object clips (see the module docstring).

    Returns:
        ``colour_accuracy``, ``shape_accuracy``, ``shapes`` (the shape words in matrix order), ``shape_confusion``
        (``[8][8]`` counts, rows the true shape), ``clips``.
    """
    from lavida.dataset_builders.synthetic_world import (COLOUR_NAMES, SHAPES, SyntheticWorld,
                                                         SyntheticWorldConfig)
    from lavida.processing.video_io import h264_roundtrip

    if clips < 1:
        raise ValueError(f"clips must be at least 1, got {clips}.")
    words = [*COLOUR_NAMES, *SHAPES]
    world = SyntheticWorld(SyntheticWorldConfig(size=size, clip_length=8, min_objects=1, max_objects=1,
                                                compositions=compositions))
    rng = np.random.default_rng(CLIP_SEED)
    device = next(model.parameters()).device
    confusion = np.zeros((len(SHAPES), len(SHAPES)), dtype=np.int64)
    colour_right = 0
    for _ in range(clips):
        clip = world.render_clip(rng)
        scale = (256 / size) ** 2
        visible = clip.masks[0].reshape(clip.masks.shape[1], -1).sum(axis=1) * scale >= MIN_VISIBLE_PIXELS  # (T,)
        while not visible.any():
            clip = world.render_clip(rng)
            visible = clip.masks[0].reshape(clip.masks.shape[1], -1).sum(axis=1) * scale >= MIN_VISIBLE_PIXELS
        frames = h264_roundtrip(clip.frames) if compress else clip.frames
        inputs = {key: value.to(device) for key, value in processor([frames], [words]).items()}
        name_logits = model(**inputs).name_logits
        if name_logits is None:
            raise ValueError("This model has no name-grounding head (frame_score: name_grounding), so it gives no "
                             "per-name presence to read attributes from.")
        presence = torch.sigmoid(name_logits[0].float()).cpu().numpy()[visible].mean(axis=0)  # (16,)
        target = clip.objects[0]
        colour_right += int(np.argmax(presence[: len(COLOUR_NAMES)]) == target.colour_index)
        confusion[target.shape_index, int(np.argmax(presence[len(COLOUR_NAMES):]))] += 1
    return {"colour_accuracy": colour_right / clips, "shape_accuracy": float(np.trace(confusion) / clips),
            "shapes": list(SHAPES), "shape_confusion": confusion.tolist(), "clips": clips}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="checkpoint folder or Hub id (default: the embedded model)")
    parser.add_argument("--clips", type=int, default=64, help="one-object clips to read")
    parser.add_argument("--size", type=int, default=256, help="frame side the clips are rendered at (default 256)")
    parser.add_argument("--no-compress", action="store_true", help="skip the H.264 round trip")
    parser.add_argument("--compositions", choices=("held_out", "training", "all"), default="held_out")
    parser.add_argument("--device", default=None)
    parser.add_argument("--json", default="outputs/benchmarks/attribute_reading.json")
    args = parser.parse_args(argv)
    if args.clips < 1:
        parser.error("--clips must be at least 1")

    from lavida.model_factory import load_model_and_processor

    torch.manual_seed(0)
    device = resolve_device(args.device)
    model, processor = load_model_and_processor(args.model, device=device)
    try:
        figures = read_attributes(model, processor, args.clips, args.size, not args.no_compress, args.compositions)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    report = {"model": args.model or "embedded lavida-tiny", "size": args.size, "compress": not args.no_compress,
              "compositions": args.compositions, **figures, "environment": environment(device)}
    print(f"Attribute reading of {report['model']}: {figures['clips']} one-object clips ({args.compositions} "
          f"compositions, {args.size} px{', through H.264' if report['compress'] else ''})")
    print(f"  colour read right {figures['colour_accuracy']:.3f}, shape read right {figures['shape_accuracy']:.3f}")
    width = max(len(shape) for shape in figures["shapes"])
    print("  shape confusion (rows: the object's shape, columns: the shape read)")
    print("  " + " " * width + " " + " ".join(f"{shape[:4]:>4}" for shape in figures["shapes"]))
    for shape, row in zip(figures["shapes"], figures["shape_confusion"]):
        print(f"  {shape:>{width}} " + " ".join(f"{count:>4}" for count in row))
    print(f"wrote {write_json_atomic(args.json, report)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
