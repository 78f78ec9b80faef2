"""``LavidaTrainer``: a ``transformers.Trainer`` for LAVIDA's mixed loss, and the collator that feeds it.

Why plain ``Trainer`` and not TRL's ``SFTTrainer``: the LM term here is a short fixed answer ("Sure, it is <SEG>.")
that the processor already labels (assistant tokens only), while the loss that matters is the segmentation mix,
which SFTTrainer knows nothing about; SFTTrainer's own ``compute_loss`` is LM-specific and it rewrites pad/eos ids.
The Trainer gives everything else we need: accelerate/DeepSpeed launch, gradient accumulation and clipping,
checkpoints with optimizer state, resume, evaluation and best-checkpoint selection.

- ``compute_loss`` returns the model's total loss and accumulates each term the model computed (``lm_loss``,
  ``focal_loss``, ``dice_loss``, ``iou_loss`` and the frame-score term: ``object_score_loss``, or ``grounding_loss``
  with ``frame_score="name_grounding"``); ``log`` adds their means since the last log, averaged across processes;
- the object-score warm-up is a schedule of the ``object_score_scale`` the model's forward takes: the loss module and
  its weights are never changed;
- a training corpus that sets ``train_in_order`` (the synthetic world: every row is already an independent random
  draw, and its curriculum and contrast pairs live in row order) is read in order instead of shuffled; with
  ``group_size > 1`` the batch size must be a multiple of it so each group lands in one batch;
- rows of different frame counts (image sources give T = 1 samples, video sources 8-frame clips) share batches as in
  the authors' code (the processor pads the shorter ones and the model skips padding frames); with
  ``group_by_frame_count`` they are batched by frame count instead: ``FrameCountBatchSampler`` shuffles each count's
  rows, cuts them into whole batches and shuffles the batches, so no batch is padded;
- with ``train_step="grounding_head"`` (a stage that trains only the name-grounding head) a training step computes
  the head's loss alone through the model's ``grounding_head_loss``, skipping the frozen MLLM, projector and decoder
  whose terms have no gradient then; evaluation still runs the whole model;
- ``prediction_step`` returns frame logits and frame labels so ``compute_frame_metrics`` can report frame AUC on a
  held-out *pseudo-anomaly* set (checkpoint selection never looks at a VAD test set).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import EvalPrediction, Trainer

from .training import TRAIN_STEPS

# The frame-score term of each ``LavidaConfig.frame_score``, under its own name.
FRAME_SCORE_TERMS = {"object_score": "object_score_loss", "name_grounding": "grounding_loss"}
# Every term ``LavidaTrainer`` can log, in log order.
ALL_LOSS_TERMS = ("lm_loss", "focal_loss", "dice_loss", "iou_loss", *FRAME_SCORE_TERMS.values())


def loss_terms(frame_score: str = "object_score") -> tuple[str, ...]:
    """The loss terms a model with ``config.frame_score = frame_score`` computes and ``LavidaTrainer`` logs: the LM
    and mask terms, then the frame-score term (``object_score_loss``, or ``grounding_loss`` for
    ``"name_grounding"``)."""
    if frame_score not in FRAME_SCORE_TERMS:
        raise ValueError(f"frame_score must be one of {sorted(FRAME_SCORE_TERMS)}, got {frame_score!r}.")
    return ("lm_loss", "focal_loss", "dice_loss", "iou_loss", FRAME_SCORE_TERMS[frame_score])


LOSS_TERMS = loss_terms()  # the paper's model (SAM2's object score as the frame score)


class LavidaTrainer(Trainer):
    """Trainer whose logs carry every term of the mixed loss, each under its own name (``loss_terms``).

    Args:
        object_score_warmup_steps: the frame-score term (the object-score BCE, or the name-grounding loss) is switched
            off for this many steps and then ramped linearly to its configured weight over as many steps again (0 =
            the paper: on from the start); the ramp goes to the model as ``object_score_scale``. When the towers are
            trained from scratch, the BCE alone at first can only learn the class prior and the object-score head
            settles on a constant; letting the mask terms first teach the decoder to find the named object avoids
            that. Evaluation always uses the configured weight.
        group_by_frame_count: batch training rows by frame count (``FrameCountBatchSampler``) instead of mixing image
            samples and clips in one batch (the default, as the authors' code does).
        train_step: ``"full"`` (every training step runs the whole model and its mixed loss) or ``"grounding_head"``
            (a stage that trains only the name-grounding head: each step computes the head's loss alone,
            ``LavidaForVideoAnomalyDetection.grounding_head_loss``, and logs it as ``grounding_loss``; the other terms
            have no gradient then, and skipping the frozen MLLM, projector and decoder makes a step cheaper).
            Evaluation always runs the whole model.
    """

    def __init__(self, *args, object_score_warmup_steps: int = 0, group_by_frame_count: bool = False,
                 train_step: str = "full", **kwargs):
        super().__init__(*args, **kwargs)
        if object_score_warmup_steps < 0:
            raise ValueError(f"object_score_warmup_steps must be >= 0, got {object_score_warmup_steps}.")
        if train_step not in TRAIN_STEPS:
            raise ValueError(f"train_step must be one of {list(TRAIN_STEPS)}, got {train_step!r}.")
        if train_step == "grounding_head":
            self._check_grounding_head_step()
        self.train_step = train_step
        self.group_by_frame_count = group_by_frame_count
        self.object_score_warmup_steps = object_score_warmup_steps
        # per term of ALL_LOSS_TERMS: the sum of its values and the number of steps that computed it since the last log
        self._term_sums = torch.zeros(len(ALL_LOSS_TERMS), dtype=torch.float64)
        self._term_counts = torch.zeros(len(ALL_LOSS_TERMS), dtype=torch.float64)

    def object_score_scale(self, training: bool = True) -> float:
        """The factor on the frame-score term's weight at the current step: 0 during the warm-up, then a linear ramp
        to 1 over as many steps; always 1 in evaluation (so validation losses of checkpoints taken during and after
        the warm-up compare, and best-checkpoint selection stays meaningful)."""
        warmup = self.object_score_warmup_steps
        if not warmup or not training:
            return 1.0
        return min(1.0, max(0.0, (self.state.global_step - warmup) / warmup))

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        counts = corpus_frame_counts(dataset) if self.group_by_frame_count else None
        if counts is not None and len(set(counts)) > 1:
            return FrameCountBatchSampler(counts, self._train_batch_size, seed=self.args.seed)
        if not getattr(dataset, "train_in_order", False):
            return super()._get_train_sampler(train_dataset)
        group = int(getattr(dataset, "group_size", 1))
        if self.args.per_device_train_batch_size % group:
            raise ValueError(f"per_device_train_batch_size {self.args.per_device_train_batch_size} must be a multiple "
                             f"of the corpus group size {group} (contrast_pairs keeps each pair in one batch).")
        return torch.utils.data.SequentialSampler(dataset)

    def compute_loss(self, model, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: torch.Tensor | int | None = None):
        if self.train_step == "grounding_head" and model.training and not return_outputs:
            return self._grounding_head_loss(model, inputs)
        outputs = model(**inputs, object_score_scale=self.object_score_scale(training=model.training))
        if outputs.loss is None:
            raise ValueError("The batch has no target_masks, so the model returned no loss: the collator must pass "
                             "targets for training.")
        if model.training:
            self._record_terms({term: getattr(outputs, term) for term in ALL_LOSS_TERMS})
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def _check_grounding_head_step(self) -> None:
        """``train_step="grounding_head"`` needs the head to be all that trains, in one process."""
        hint = "use it with freeze.train_only: [name_grounding_head] on a name_grounding model, or train_step 'full'."
        if getattr(self.model, "name_grounding_head", None) is None:
            raise ValueError(f"train_step 'grounding_head' trains the name-grounding head alone, but the model has no "
                             f"name-grounding head: {hint}")
        others = [name for name, parameter in self.model.named_parameters()
                  if parameter.requires_grad and not name.startswith("name_grounding_head.")]
        if others:
            raise ValueError(f"train_step 'grounding_head' trains the name-grounding head alone, but {len(others)} "
                             f"other parameters are trainable (first: {others[0]}): {hint}")
        if self.accelerator.num_processes > 1:  # a method call bypasses the distributed wrapper's gradient sync
            raise ValueError("train_step 'grounding_head' runs in one process; launch it without distribution, or use "
                             "train_step 'full'.")

    def _grounding_head_loss(self, model, inputs: dict[str, Any]) -> torch.Tensor:
        """``train_step="grounding_head"``: the head's loss alone, through the model's ``grounding_head_loss``."""
        loss = self.accelerator.unwrap_model(model).grounding_head_loss(
            inputs["sam_pixel_values"], inputs.get("grounding_labels"), inputs.get("grounding_pixel_values"),
            inputs.get("frame_mask"))
        self._record_terms({"grounding_loss": loss})
        return loss

    def _record_terms(self, values: dict[str, torch.Tensor | None]) -> None:
        """Add this step's loss terms (None: not computed) to the sums ``log`` averages."""
        for index, term in enumerate(ALL_LOSS_TERMS):
            value = values.get(term)
            if value is not None:
                self._term_sums[index] += float(value.detach())
                self._term_counts[index] += 1

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and bool(self._term_counts.any()):
            totals = torch.stack([self._term_sums, self._term_counts]).to(self.args.device)  # (2, terms)
            if self.accelerator.num_processes > 1:
                totals = self.accelerator.reduce(totals, reduction="sum")
            sums, counts = totals.tolist()
            for term, total, count in zip(ALL_LOSS_TERMS, sums, counts):
                if count:
                    logs[term] = round(total / count, 6)
            self._term_sums.zero_()
            self._term_counts.zero_()
        super().log(logs, start_time)

    def prediction_step(self, model, inputs: dict[str, Any], prediction_loss_only: bool,
                        ignore_keys: list[str] | None = None):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():  # the configured loss (object_score_scale 1)
            outputs = model(**inputs)
        loss = outputs.loss.detach() if outputs.loss is not None else None
        if prediction_loss_only:
            return loss, None, None
        frame_labels = (inputs["target_masks"].flatten(2).amax(dim=-1) > 0.5).long()  # (B, T)
        if inputs.get("frame_mask") is not None:  # padding frames of shorter samples are no frames
            frame_labels = frame_labels.masked_fill(~inputs["frame_mask"].bool(), -1)
        return loss, outputs.frame_logits.detach(), frame_labels


def corpus_frame_counts(dataset: Any) -> list[int] | None:
    """Frames per row of a training corpus, read without decoding any image (None when the corpus does not say).

    A corpus may expose ``frame_counts``; a built corpus (``datasets.Dataset``) has one ``frame_labels`` entry per
    frame."""
    counts = getattr(dataset, "frame_counts", None)
    if counts is not None:
        return [int(c) for c in counts]
    if "frame_labels" in (getattr(dataset, "column_names", None) or ()):
        return [len(labels) for labels in dataset.select_columns(["frame_labels"])["frame_labels"]]
    return None


class FrameCountBatchSampler(torch.utils.data.Sampler[int]):
    """Row order in which every run of ``batch_size`` consecutive rows shares one frame count.

    Each epoch the rows of each frame count are shuffled and cut into whole batches (the last one filled up with
    rows drawn again from the start of the same shuffled group, so no batch mixes counts), then the batches of all
    counts are shuffled together; ``DataLoader(batch_size=batch_size)`` (and accelerate's per-process batch split,
    which hands out whole batches) then yields homogeneous batches. Deterministic in ``seed`` and the epoch.

    Args:
        frame_counts: ``[N]`` frames of each row (1 for an image sample).
        batch_size: rows per batch on one process.
        seed: shuffling seed.
    """

    def __init__(self, frame_counts: Sequence[int], batch_size: int, seed: int = 0):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        self.frame_counts = [int(c) for c in frame_counts]
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0
        groups: dict[int, list[int]] = {}
        for index, count in enumerate(self.frame_counts):
            groups.setdefault(count, []).append(index)
        self._groups = [groups[count] for count in sorted(groups)]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return sum(-(-len(group) // self.batch_size) * self.batch_size for group in self._groups)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        batches: list[list[int]] = []
        for group in self._groups:
            order = [group[i] for i in torch.randperm(len(group), generator=generator).tolist()]
            missing = -len(order) % self.batch_size
            order += [order[i % len(order)] for i in range(missing)]
            batches += [order[start:start + self.batch_size] for start in range(0, len(order), self.batch_size)]
        for position in torch.randperm(len(batches), generator=generator).tolist():
            yield from batches[position]


def compute_frame_metrics(prediction: EvalPrediction) -> dict[str, float]:
    """Frame AUC and accuracy at 0.5 of the object score on an evaluation set of pseudo-anomalies."""
    from sklearn.metrics import roc_auc_score

    logits = np.asarray(prediction.predictions, dtype=np.float64).reshape(-1)
    labels = np.asarray(prediction.label_ids).reshape(-1)
    keep = labels >= 0
    logits, labels = logits[keep], labels[keep]
    metrics = {"frame_accuracy": float(((logits > 0) == (labels > 0)).mean()) if len(labels) else float("nan")}
    metrics["frame_auc"] = float(roc_auc_score(labels, logits)) if len(np.unique(labels)) == 2 else float("nan")
    return metrics


@dataclass
class LavidaDataCollator:
    """Turns corpus rows into a model batch through ``LavidaProcessor``.

    A row has ``frames`` (``uint8 [T, H, W, 3]`` or a list of T images), ``masks`` (``[T, H, W]`` or a list of T
    images), ``names`` (the prompt list) and ``name_labels`` (1 for the true target names; passed on as
    ``name_labels [B, N]``, 0 on padding slots, when every row has them); ``sample_id`` seeds the prompt phrasing so a
    batch is the same on every process and after a resume.

    Rows with ``object_names`` and ``object_masks`` (``[K, T, H, W]``, every object in view with its own mask) also give
    the name-grounding head's labels, ``grounding_labels`` (a ``GroundingLabels`` dict: ``input_ids``,
    ``attention_mask`` and ``word_ids [B, M, Lc]``, ``name_mask [B, M]``, ``targets [B, M, T, S, S]``), where the M
    names of a row are its objects' names (each with its mask) followed by its listed distractors (empty masks).
    """

    processor: Any
    phrasing: str = "random"
    seed: int = 0

    def __call__(self, rows: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        videos = [_as_array(row["frames"], channels=3) for row in rows]
        masks = [_as_array(row["masks"], channels=None) > 0 for row in rows]
        names = [list(row["names"]) for row in rows]
        key = "|".join(str(row.get("sample_id", i)) for i, row in enumerate(rows))
        seed = int(hashlib.sha256(f"{self.seed}:{key}".encode()).hexdigest()[:8], 16)
        batch = dict(self.processor(videos, names, target_masks=masks, phrasing=self.phrasing, seed=seed))
        if all("name_labels" in row for row in rows):
            labels = torch.zeros(batch["class_mask"].shape, dtype=torch.float32)
            for i, row in enumerate(rows):
                labels[i, : len(row["name_labels"])] = torch.as_tensor(list(row["name_labels"]), dtype=torch.float32)
            batch["name_labels"] = labels
        if all("object_names" in row for row in rows):
            batch["grounding_labels"] = self._grounding_labels(rows, size=tuple(batch["sam_pixel_values"].shape[-2:]))
        return batch

    def _grounding_labels(self, rows: Sequence[dict[str, Any]], size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """The rows' ``GroundingLabels`` (see the class docstring) at SAM2's mask ``size``."""
        names, masks = [], []
        for row in rows:
            objects = list(row["object_names"])
            names.append(objects + [name for name in row["names"] if name not in objects])  # then the distractors
            masks.append(self.processor.resize_target_masks(row["object_masks"], size))  # (K, T, S, S)
        if not all(names):
            raise ValueError("A row with object_names has neither an object in view nor a distractor: the "
                             "name-grounding head has nothing to learn from it.")
        encoded = self.processor.encode_names(names)
        frames = max(object_masks.shape[1] for object_masks in masks)  # rows of fewer frames are padded
        targets = torch.zeros(len(rows), encoded["class_mask"].shape[1], frames, *masks[0].shape[2:])  # distractors: 0
        for i, object_masks in enumerate(masks):
            targets[i, : len(object_masks), : object_masks.shape[1]] = object_masks
        return {"input_ids": encoded["class_input_ids"], "attention_mask": encoded["class_attention_mask"],
                "word_ids": encoded["class_word_ids"], "name_mask": encoded["class_mask"], "targets": targets}


def _as_array(value: Any, channels: int | None) -> np.ndarray:
    if isinstance(value, np.ndarray):
        array = value
    elif isinstance(value, torch.Tensor):
        array = value.numpy()
    else:
        array = np.stack([np.asarray(frame.convert("RGB") if channels == 3 and hasattr(frame, "convert") else frame)
                          for frame in value])
    if channels is None and array.ndim == 4:
        array = array[..., 0]
    return array


__all__ = ["ALL_LOSS_TERMS", "FRAME_SCORE_TERMS", "LOSS_TERMS", "FrameCountBatchSampler", "LavidaDataCollator",
           "LavidaTrainer", "compute_frame_metrics", "corpus_frame_counts", "loss_terms"]
