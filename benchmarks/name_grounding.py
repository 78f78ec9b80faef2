"""Name grounding: does a checkpoint's output depend on the anomaly names, and which output?

Frame AUC and pixel AUC on a benchmark do not show it: a checkpoint that ignores the names entirely can score
well above chance on ``synthetic-vad`` (normal and anomalous videos differ in more than the names). This script asks
the model the same frames with different names and reports how much its masks and its frame scores move.

Usage (from the repository root):
    python -m benchmarks.name_grounding                        # the embedded lavida-tiny
    python -m benchmarks.name_grounding --model PATH_OR_HUB_ID --clips 48 --pairs 24

Measures, on validation clips of the synthetic world (training compositions, data never trained on):

- **mask swap drop**: mean mask probability on the target object when the prompt holds its name, minus the same with
  each true name replaced by an absent one (``--clips`` anomalous clips, up to 4 names each);
- **frame swap drop**: the same for the frame probability on the target's frames. This is the presence decision (the
  frame score, hence the events) reading the names; near 0 means the frame score only says "something is in view";
- **pair effect**: one clip with two visible objects, prompted once with each object's name: mean mask probability on
  an object under its own name minus under the other's (``--pairs`` clips).
- **one-word swap drop** (held-out compositions, never trained on): a clip with one held-out composition in view
  ("purple hexagon"), prompted with its name and with one word of it swapped for another (its colour with another
  shape, "purple circle", or its shape with another colour, "red hexagon"; never a name in view): mean frame
  probability on the object's frames under its name minus under the swapped one, for each of the two swaps
  (``--swaps`` clips). A model that matches names one attribute at a time scores both prompts alike.

Everything is deterministic (fixed seeds); the figures are printed and written to ``--json``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np
import torch

from lavida.atomic_files import write_json_atomic

from .common import environment, resolve_device

CORPUS_SEED = 123
PAIR_SEED = 7
PAIR_FIRST_INDEX = 1000
SWAP_SEED = 11


def anomalous_clips(count: int, size: int = 128) -> list[dict[str, Any]]:
    """The first ``count`` validation rows with a clearly visible target (over 200 mask pixels in the clip)."""
    from lavida.dataset_builders.synthetic_training import SyntheticTrainingCorpus

    corpus = SyntheticTrainingCorpus(num_samples=max(200, 10 * count), seed=CORPUS_SEED, split="validation",
                                     max_names=4, world={"size": size, "clip_length": 8})
    rows = []
    for index in range(len(corpus)):
        row = corpus[index]
        if row["is_anomalous"] and row["masks"].sum() > 200:
            rows.append(row)
            if len(rows) == count:
                break
    return rows


def swap_absent(row: dict[str, Any]) -> list[str]:
    """``row``'s names with every true name replaced by a training name absent from the list."""
    from lavida.dataset_builders.synthetic_world import TRAINING_NAMES

    names = list(row["names"])
    spare = iter(n for n in TRAINING_NAMES if n not in names)
    return [next(spare) if label else name for name, label in zip(names, row["name_labels"])]


@torch.no_grad()
def _probabilities(model, processor, frames: np.ndarray, prompts: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
    """One clip under several name lists, in one batch: ``[P, T, H, W]`` mask probabilities at the clip's size and
    ``[P, T]`` frame probabilities (the processor's own post-processing)."""
    device = next(model.parameters()).device
    inputs = {k: v.to(device) for k, v in processor([frames] * len(prompts), prompts).items()}
    out = model(**inputs)
    masks = processor.post_process_masks(out.mask_logits, tuple(frames.shape[1:3]))
    return masks.cpu().numpy(), processor.post_process_frame_scores(out.frame_logits).cpu().numpy()


def swap_drops(model, processor, rows: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """Per clip: (mask swap drop, frame swap drop), see the module docstring."""
    mask_drops, frame_drops = [], []
    for row in rows:
        target = np.asarray(row["masks"], dtype=bool)
        visible = np.asarray(row["frame_labels"], dtype=bool)
        masks, frames = _probabilities(model, processor, row["frames"], [list(row["names"]), swap_absent(row)])
        mask_drops.append(masks[0][target].mean() - masks[1][target].mean())
        frame_drops.append(frames[0][visible].mean() - frames[1][visible].mean())
    return np.asarray(mask_drops), np.asarray(frame_drops)


def pair_effects(model, processor, count: int, size: int = 128) -> np.ndarray:
    """Per object of ``count`` two-object clips: mask probability under its own name minus under the other's."""
    from lavida.dataset_builders.synthetic_world import SyntheticWorld, SyntheticWorldConfig

    world = SyntheticWorld(SyntheticWorldConfig(size=size, clip_length=8, min_objects=2, max_objects=3))
    effects = []
    for index in range(PAIR_FIRST_INDEX, PAIR_FIRST_INDEX + count):
        item = world.source_item(index, PAIR_SEED)
        first, second = [obj for obj in item.objects if obj.masks.any()][:2]
        masks, _ = _probabilities(model, processor, item.load_frames(), [[first.names[0]], [second.names[0]]])
        for own, other, obj in ((0, 1, first), (1, 0, second)):
            target = obj.masks.astype(bool)
            effects.append(masks[own][target].mean() - masks[other][target].mean())
    return np.asarray(effects)


def one_word_swaps(model, processor, count: int, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Per clip of ``count`` clips with one held-out composition in view: frame probability drop on its frames when
    its shape word is swapped (same colour) and when its colour word is swapped (same shape)."""
    from lavida.dataset_builders.synthetic_world import (COLOUR_NAMES, SHAPES, SyntheticWorld, SyntheticWorldConfig,
                                                         composition_name)

    world = SyntheticWorld(SyntheticWorldConfig(size=size, clip_length=8, min_objects=1, max_objects=2,
                                                compositions="held_out"))
    rng = np.random.default_rng(SWAP_SEED)
    shape_drops, colour_drops = [], []
    while len(shape_drops) < count:
        clip = world.render_clip(rng)
        visible = clip.masks[0].reshape(clip.masks.shape[1], -1).sum(axis=1) > 50  # (T,) frames showing object 0
        if visible.sum() < 2:
            continue
        target = clip.objects[0]
        in_view = set(clip.names)
        other_shapes = [j for j in range(len(SHAPES)) if composition_name(target.colour_index, j) not in in_view]
        other_colours = [i for i in range(len(COLOUR_NAMES)) if composition_name(i, target.shape_index) not in in_view]
        shape_swap = composition_name(target.colour_index, int(rng.choice(other_shapes)))
        colour_swap = composition_name(int(rng.choice(other_colours)), target.shape_index)
        _, frames = _probabilities(model, processor, clip.frames, [[target.name], [shape_swap], [colour_swap]])
        shape_drops.append(frames[0][visible].mean() - frames[1][visible].mean())
        colour_drops.append(frames[0][visible].mean() - frames[2][visible].mean())
    return np.asarray(shape_drops), np.asarray(colour_drops)


def measure(model, processor, clips: int, pairs: int, swaps: int = 24) -> dict[str, float]:
    mask_drops, frame_drops = swap_drops(model, processor, anomalous_clips(clips))
    effects = pair_effects(model, processor, pairs)
    shape_drops, colour_drops = one_word_swaps(model, processor, swaps)
    return {"mask_swap_drop": float(mask_drops.mean()), "frame_swap_drop": float(frame_drops.mean()),
            "pair_effect": float(effects.mean()), "shape_word_swap_drop": float(shape_drops.mean()),
            "colour_word_swap_drop": float(colour_drops.mean()), "clips": len(mask_drops),
            "pair_objects": len(effects), "swap_clips": len(shape_drops)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="checkpoint folder or Hub id (default: the embedded model)")
    parser.add_argument("--clips", type=int, default=24, help="anomalous clips for the swap drops")
    parser.add_argument("--pairs", type=int, default=12, help="two-object clips for the pair effect")
    parser.add_argument("--swaps", type=int, default=24, help="held-out clips for the one-word swap drops")
    parser.add_argument("--device", default=None)
    parser.add_argument("--json", default="outputs/benchmarks/name_grounding.json")
    args = parser.parse_args(argv)
    if args.clips < 1 or args.pairs < 1 or args.swaps < 1:
        parser.error("--clips, --pairs and --swaps must be at least 1")

    from lavida.model_factory import load_model_and_processor

    torch.manual_seed(0)
    device = resolve_device(args.device)
    model, processor = load_model_and_processor(args.model, device=device)
    figures = measure(model, processor, args.clips, args.pairs, args.swaps)
    report = {"model": args.model or "embedded lavida-tiny", **figures, "environment": environment(device)}
    print(f"Name grounding of {report['model']} ({figures['clips']} clips, {figures['pair_objects']} objects "
          f"in {args.pairs} two-object clips)")
    print(f"  mask swap drop   {figures['mask_swap_drop']:+.4f}  (masks follow the names when clearly > 0)")
    print(f"  frame swap drop  {figures['frame_swap_drop']:+.4f}  (frame scores, hence events, follow the names)")
    print(f"  pair effect      {figures['pair_effect']:+.4f}  (same frames, each object's own name)")
    print(f"  one-word swaps on {figures['swap_clips']} held-out clips: shape word {figures['shape_word_swap_drop']:+.4f}, "
          f"colour word {figures['colour_word_swap_drop']:+.4f}  (frame scores read both words when both > 0)")
    print(f"wrote {write_json_atomic(args.json, report)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
