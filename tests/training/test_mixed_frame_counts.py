"""Image sources (T = 1) and video sources (8-frame clips) train together: batches are formed by frame count."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from transformers import TrainingArguments, set_seed

from lavida import LavidaConfig, LavidaForVideoAnomalyDetection
from lavida.processing.factories import build_tiny_processor
from lavida.trainer_lavida import FrameCountBatchSampler, LavidaDataCollator, LavidaTrainer, corpus_frame_counts
from tests.training.toy_rows import toy_rows


class MixedRows(torch.utils.data.Dataset):
    """Toy rows, some of one frame (image samples) and some of eight (clips), in an interleaved order."""

    def __init__(self, images: int, clips: int):
        image_rows, clip_rows = toy_rows(images, seed=1, frames=1), toy_rows(clips, seed=2, frames=8)
        self.rows = [row for pair in zip(image_rows, clip_rows) for row in pair]
        self.rows += image_rows[len(clip_rows):] + clip_rows[len(image_rows):]
        self.seen: list[int] = []

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        self.seen.append(len(self.rows[index]["frames"]))
        return self.rows[index]

    @property
    def frame_counts(self) -> list[int]:
        return [len(row["frames"]) for row in self.rows]


def test_sampler_batches_hold_one_frame_count_and_cover_every_row():
    counts = [1, 8, 8, 1, 1, 8, 1, 1, 8, 1, 1]  # 7 images, 4 clips
    sampler = FrameCountBatchSampler(counts, batch_size=2, seed=3)
    order = list(sampler)
    assert len(order) == len(sampler) == 8 + 4  # 7 images fill 4 batches, 4 clips 2
    batches = [order[i:i + 2] for i in range(0, len(order), 2)]
    assert all(len({counts[i] for i in batch}) == 1 for batch in batches)
    assert set(order) == set(range(len(counts)))
    assert Counter(counts[i] for i in order) == {1: 8, 8: 4}
    sampler.set_epoch(1)
    assert list(sampler) != order and sorted(set(sampler)) == sorted(set(order))  # reshuffled, same rows
    assert list(FrameCountBatchSampler(counts, batch_size=2, seed=3)) == order  # deterministic


def test_processor_takes_single_frame_samples_and_pads_mixed_counts():
    processor = build_tiny_processor()
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (1, 48, 64, 3), dtype=np.uint8) for _ in range(2)]
    batch = processor(images, ["red square"], target_masks=[np.ones((1, 48, 64), bool)] * 2)
    assert batch["sam_pixel_values"].shape[:2] == (2, 1)
    assert batch["video_grid_thw"][:, 0].tolist() == [1, 1]  # one temporal patch per image
    assert batch["target_masks"].shape[:2] == (2, 1)
    assert "frame_mask" not in batch  # equal counts: nothing padded
    clip = rng.integers(0, 255, (8, 48, 64, 3), dtype=np.uint8)
    mixed = processor([images[0], clip], ["red square"], target_masks=[np.ones((1, 48, 64), bool),
                                                                        np.ones((8, 48, 64), bool)])
    assert mixed["frame_mask"].tolist() == [[True] + [False] * 7, [True] * 8]
    assert mixed["video_grid_thw"][:, 0].tolist() == [1, 4]
    assert mixed["target_masks"][0, 1:].sum() == 0 and mixed["sam_pixel_values"][0, 1:].abs().sum() == 0
    alone = processor([clip], ["red square"])
    rows = int(alone["video_grid_thw"][0].prod())
    torch.testing.assert_close(mixed["pixel_values_videos"][-rows:], alone["pixel_values_videos"])  # clip order kept
    with pytest.raises(ValueError, match="give 1 \\(an image\\) or a multiple of 2"):
        processor([clip[:3]], ["red square"])


def test_a_padded_batch_gives_each_sample_what_it_gives_alone(byte_tokenizer):
    processor = build_tiny_processor()
    torch.manual_seed(0)
    model = LavidaForVideoAnomalyDetection(LavidaConfig.tiny()).eval()
    rng = np.random.default_rng(1)
    clips = [rng.integers(0, 255, (1, 60, 80, 3), dtype=np.uint8), rng.integers(0, 255, (8, 60, 80, 3), dtype=np.uint8)]
    names = [["red circle", "blue star"], ["fire"]]
    with torch.no_grad():
        mixed = model(**processor(clips, names))
        for row, (clip, listed) in enumerate(zip(clips, names)):
            alone = model(**processor([clip], [listed]))
            count = len(clip)
            torch.testing.assert_close(mixed.frame_logits[row, :count], alone.frame_logits[0], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(mixed.mask_logits[row, :count], alone.mask_logits[0], atol=1e-5, rtol=1e-5)
            assert (mixed.frame_logits[row, count:] == torch.finfo(mixed.frame_logits.dtype).min).all()
            assert (mixed.mask_logits[row, count:] == 0).all()


def test_padding_frames_add_nothing_to_the_loss():
    processor = build_tiny_processor()
    torch.manual_seed(0)
    model = LavidaForVideoAnomalyDetection(LavidaConfig.tiny()).train()
    rng = np.random.default_rng(2)
    image = rng.integers(0, 255, (1, 60, 80, 3), dtype=np.uint8)
    clip = rng.integers(0, 255, (8, 60, 80, 3), dtype=np.uint8)
    mask = np.zeros((1, 60, 80), bool)
    mask[0, 10:40, 20:50] = True
    batch = processor([image, clip], [["red circle"], ["fire"]], target_masks=[mask, np.zeros((8, 60, 80), bool)])
    padded = model(**batch)
    assert torch.isfinite(padded.loss)
    # the padding frames of the image carry a full mask: were they counted, the mask terms would change
    batch["target_masks"][0, 1:] = 1.0
    changed = model(**batch)
    torch.testing.assert_close(padded.focal_loss, changed.focal_loss)
    torch.testing.assert_close(padded.object_score_loss, changed.object_score_loss)


@pytest.mark.parametrize("group_by_frame_count", [False, True])
def test_mixed_image_and_video_corpus_trains_with_every_term_and_both_kinds_seen(tmp_path, group_by_frame_count):
    set_seed(0)
    model = LavidaForVideoAnomalyDetection(LavidaConfig.tiny())
    corpus = MixedRows(images=6, clips=4)
    assert sorted(set(corpus_frame_counts(corpus))) == [1, 8]
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=5, per_device_train_batch_size=2, logging_steps=1,
                             use_cpu=True, report_to=[], remove_unused_columns=False, seed=0, learning_rate=1e-3,
                             save_strategy="no", dataloader_num_workers=0)
    trainer = LavidaTrainer(model=model, args=args, train_dataset=corpus,
                            data_collator=LavidaDataCollator(build_tiny_processor()),
                            group_by_frame_count=group_by_frame_count)
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == 5 and all(np.isfinite(entry["loss"]) for entry in logs)
    assert set(corpus.seen) == {1, 8}


def test_built_corpus_frame_counts_come_from_the_frame_labels_column():
    from datasets import Dataset

    corpus = Dataset.from_dict({"frame_labels": [[0], [0] * 8, [1], [1, 0] * 4]})
    assert corpus_frame_counts(corpus) == [1, 8, 1, 8]
    assert corpus_frame_counts(toy_rows(2)) is None  # a plain list says nothing: the default sampler is used
