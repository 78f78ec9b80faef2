"""Mask sources: which anomaly map (``LavidaConfig.mask_source``) meets the pixel criterion best on validation clips?

The returned anomaly map is an inference-time choice (see ``LavidaConfig.mask_source``): the decoder's best mask, the
name-grounding head's map, the decoder's objects scored by the names (``gated``), or those with the name map outside
them (``gated_or_names``). This script measures each on held-out *pseudo-anomaly* clips of the synthetic world: the
validation split of the training corpus (training compositions, the validation set stage 2 selects its checkpoint
on), never a VAD test set, so the choice it supports is made without the benchmark's test videos. Clips are rendered
at 256 px and passed through H.264, as the benchmark's videos are; the prompt is each clip's own name list (its true
names and distractors; half the clips are normal).

Reported per source: the pixel criterion AUC (an anomalous frame is detected when 40 % of its anomaly's pixels reach
the threshold, a normal frame is a false alarm when any pixel does; masks compared at the clip's 256 px) and pixel
AUC, with the frame AUC (the same for every source).

Usage (from the repository root):
    python -m benchmarks.mask_sources                     # the embedded lavida-tiny, 96 clips
    python -m benchmarks.mask_sources --model PATH_OR_HUB_ID --clips 32

Needs a model with the name-grounding head for every source but ``decoder``. Deterministic (the corpus' seed); the
figures are printed and written to ``--json``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np
import torch

from lavida.atomic_files import write_json_atomic

from .common import environment, resolve_device

# the validation corpus of configs/lavida-tiny-grounding.yaml (data.eval)
VALIDATION_OPTIONS = {"max_names": 16, "compress_frames": True, "world": {"size": 256, "clip_length": 8}}
VALIDATION_SEED = 0


@torch.no_grad()
def compare_mask_sources(model, processor, clips: int, sources: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Pixel criterion AUC / EER and pixel AUC of each mask source on ``clips`` validation clips, and the frame AUC.

    Returns:
        ``{"sources": {source: {"criterion_auc", "criterion_eer", "pixel_auc"}}, "frame_auc", "frames",
        "anomalous_frames", "clips"}``.
    """
    from sklearn.metrics import roc_auc_score

    from lavida.configuration_lavida import MASK_SOURCE_MODES
    from lavida.dataset_builders.synthetic_training import SyntheticTrainingCorpus
    from lavida.metrics.vad_metrics.pixel_scores import PixelCriterionAccumulator

    if clips < 1:
        raise ValueError(f"clips must be at least 1, got {clips}.")
    if sources is None:
        sources = MASK_SOURCE_MODES if model.config.frame_score == "name_grounding" else ("decoder",)
    corpus = SyntheticTrainingCorpus(num_samples=clips, seed=VALIDATION_SEED, split="validation", **VALIDATION_OPTIONS)
    device = next(model.parameters()).device
    configured = model.config.mask_source
    criteria = {source: PixelCriterionAccumulator() for source in sources}
    pixel_scores: dict[str, list[np.ndarray]] = {source: [] for source in sources}
    pixel_labels: list[np.ndarray] = []
    frame_scores: list[np.ndarray] = []
    frame_labels: list[np.ndarray] = []
    try:
        for index in range(clips):
            row = corpus[index]
            masks = np.asarray(row["masks"]) > 0  # (T, H, W)
            inputs = {key: value.to(device) for key, value in processor([row["frames"]], [list(row["names"])]).items()}
            for source in sources:
                model.config.mask_source = source
                out = model(**inputs)
                probabilities = processor.post_process_masks(out.mask_logits[0].float().cpu(),
                                                             tuple(masks.shape[1:])).numpy()  # (T, H, W)
                for frame, target in zip(probabilities, masks):
                    criteria[source].update(frame, target)
                # every 4th pixel each way: pixel AUC of a quarter-resolution grid, plenty for a comparison
                pixel_scores[source].append(probabilities[:, ::4, ::4].reshape(-1))
            frame_scores.append(torch.sigmoid(out.frame_logits[0].float()).cpu().numpy())
            frame_labels.append(masks.reshape(len(masks), -1).any(axis=1))
            pixel_labels.append(masks[:, ::4, ::4].reshape(-1))
    finally:
        model.config.mask_source = configured
    frame_labels_all, pixel_labels_all = np.concatenate(frame_labels), np.concatenate(pixel_labels)
    results = {}
    for source in sources:
        criterion = criteria[source].result()
        results[source] = {"criterion_auc": criterion["auc"], "criterion_eer": criterion["eer"],
                           "pixel_auc": float(roc_auc_score(pixel_labels_all, np.concatenate(pixel_scores[source])))}
    return {"sources": results,
            "frame_auc": float(roc_auc_score(frame_labels_all, np.concatenate(frame_scores))),
            "frames": int(frame_labels_all.size), "anomalous_frames": int(frame_labels_all.sum()), "clips": clips}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="checkpoint folder or Hub id (default: the embedded model)")
    parser.add_argument("--clips", type=int, default=96, help="validation clips (default 96, stage 2's set)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--json", default="outputs/benchmarks/mask_sources.json")
    args = parser.parse_args(argv)
    if args.clips < 1:
        parser.error("--clips must be at least 1")

    from lavida.model_factory import load_model_and_processor

    torch.manual_seed(0)
    device = resolve_device(args.device)
    model, processor = load_model_and_processor(args.model, device=device)
    figures = compare_mask_sources(model, processor, args.clips)
    report = {"model": args.model or "embedded lavida-tiny", "configured": model.config.mask_source, **figures,
              "environment": environment(device)}
    print(f"Mask sources of {report['model']} (configured: {report['configured']}): {figures['clips']} validation "
          f"clips, {figures['frames']} frames ({figures['anomalous_frames']} anomalous), frame AUC "
          f"{figures['frame_auc']:.4f}")
    print(f"  {'mask_source':<16} {'criterion AUC':>13} {'criterion EER':>13} {'pixel AUC':>10}")
    for source, values in figures["sources"].items():
        print(f"  {source:<16} {values['criterion_auc']:>13.4f} {values['criterion_eer']:>13.4f} "
              f"{values['pixel_auc']:>10.4f}")
    print(f"wrote {write_json_atomic(args.json, report)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
