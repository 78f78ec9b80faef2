"""LavidaProcessor: batches the model accepts, prompt/labels, name padding, save/load and remote-code loading."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoProcessor

from lavida import LavidaConfig, LavidaForVideoAnomalyDetection, LavidaProcessor
from lavida.processing.factories import build_tiny_processor
from lavida.processing.processing_lavida import INFERENCE_QUESTION


@pytest.fixture(scope="module")
def processor():
    return build_tiny_processor()


def _clips(count=2, size=(97, 161), seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (8, *size, 3), dtype=np.uint8) for _ in range(count)]


def test_batch_has_every_model_input_and_the_model_runs(processor):
    masks = [np.zeros((8, 97, 161), bool) for _ in range(2)]
    masks[0][:, 20:50, 30:90] = True
    batch = processor(_clips(), [["red circle", "blue star"], ["green cross"]], target_masks=masks,
                      phrasing="random", seed=3)
    assert batch["sam_pixel_values"].shape == (2, 8, 3, 128, 128)
    assert batch["class_input_ids"].shape[:2] == (2, 2)
    assert batch["class_mask"].tolist() == [[True, True], [True, False]]
    words = batch["class_word_ids"]  # the word of each name token: "red circle" has two, a padding name none
    assert words.shape == batch["class_input_ids"].shape
    assert sorted(set(words[0, 0].tolist()) - {-1}) == [0, 1] and (words[1, 1] == -1).all()
    assert (words[batch["class_attention_mask"] == 0] == -1).all()
    video_id = processor.video_token_id
    per_row = (batch["input_ids"] == video_id).sum(1)
    assert per_row.tolist() == (batch["video_grid_thw"].prod(-1) // 4).tolist()
    assert torch.equal(batch["mm_token_type_ids"] == 2, batch["input_ids"] == video_id)
    assert batch["target_masks"].shape == (2, 8, 128, 128)
    assert batch["target_masks"][0].sum() > 0 and batch["target_masks"][1].sum() == 0
    for row in range(2):  # labels cover exactly the assistant answer (with <SEG>) and end-of-turn
        answer = processor.tokenizer.decode(batch["input_ids"][row][batch["labels"][row] != -100])
        assert "<SEG>" in answer and answer.endswith("<|im_end|>") and "Detect" not in answer
    torch.manual_seed(0)
    model = LavidaForVideoAnomalyDetection(LavidaConfig.tiny())
    out = model(**batch)
    assert torch.isfinite(out.loss)


def test_inference_prompt_is_fixed_and_lists_every_name(processor):
    names = ["fighting", "fire", "a man on a bicycle"]
    a = processor(_clips(1), names, seed=1)
    b = processor(_clips(1), names, seed=2)
    assert torch.equal(a["input_ids"], b["input_ids"])
    text = processor.tokenizer.decode(a["input_ids"][0])
    assert INFERENCE_QUESTION.format(names=", ".join(names)) in text and "<SEG>" in text
    assert "labels" not in a


def test_training_phrasings_vary_with_the_seed(processor):
    texts = {processor.tokenizer.decode(processor(_clips(1), ["fire"], target_masks=[np.zeros((8, 97, 161))],
                                                  phrasing="random", seed=s)["input_ids"][0]) for s in range(12)}
    assert len(texts) > 2


@pytest.mark.parametrize("names,message", [([], "empty"), (["  "], "empty"), (["a"] * 257, "at most 256"),
                                           (["x" * 201], "at most 200")])
def test_bad_name_lists_raise(processor, names, message):
    with pytest.raises(ValueError, match=message):
        processor(_clips(1), names)


def test_odd_frame_count_raises(processor):
    with pytest.raises(ValueError, match="multiple of 2"):
        processor([np.zeros((7, 32, 32, 3), np.uint8)], ["fire"])


def test_save_and_load_round_trip(processor, tmp_path):
    processor.save_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(LavidaConfig.tiny().to_json_string())
    for loaded in (LavidaProcessor.from_pretrained(tmp_path), AutoProcessor.from_pretrained(tmp_path)):
        assert isinstance(loaded, LavidaProcessor)
        a = processor(_clips(), [["red circle"], ["blue star", "green cross"]])
        b = loaded(_clips(), [["red circle"], ["blue star", "green cross"]])
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), key


def test_trust_remote_code_processor_without_the_package(processor, tmp_path):
    folder = tmp_path / "proc"
    processor.save_pretrained(folder)
    (folder / "config.json").write_text(LavidaConfig.tiny().to_json_string())
    expected = processor(_clips(1), ["fire", "smoke"])
    np.save(tmp_path / "clip.npy", _clips(1)[0])
    script = textwrap.dedent(f"""
        import sys
        sys.modules["lavida"] = None
        import numpy as np
        from safetensors.torch import save_file
        from transformers import AutoProcessor
        proc = AutoProcessor.from_pretrained({str(folder)!r}, trust_remote_code=True)
        assert "transformers_modules" in type(proc).__module__, type(proc).__module__
        batch = proc([np.load({str(tmp_path / 'clip.npy')!r})], ["fire", "smoke"])
        save_file({{k: v.contiguous() for k, v in batch.items()}}, {str(tmp_path / 'batch.safetensors')!r})
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                         env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HF_HOME": str(tmp_path / "hf")})
    assert run.returncode == 0, run.stderr[-3000:]
    remote = load_file(tmp_path / "batch.safetensors")
    for key in expected:
        assert torch.equal(remote[key], expected[key]), key


def test_post_processing_maps_masks_to_native_size(processor):
    logits = torch.zeros(2, 8, 32, 32)
    logits[..., :16, :] = 5.0
    masks = processor.post_process_masks(logits, (97, 161))
    assert masks.shape == (2, 8, 97, 161)
    assert masks[0, 0, :40].mean() > 0.9 and masks[0, 0, 60:].mean() < 0.6
    scores = processor.post_process_frame_scores(torch.tensor([[0.0, 10.0]]))
    assert scores[0, 0] == pytest.approx(0.5) and scores[0, 1] > 0.99


def test_llm_pixel_budgets_follow_the_call_training_and_image_settings():
    from transformers import Qwen2VLVideoProcessor

    from lavida.processing.factories import build_tiny_processor

    tiny = build_tiny_processor()
    processor = type(tiny)(video_processor=Qwen2VLVideoProcessor(cap_pixels_per_frame=False),
                           tokenizer=tiny.tokenizer, sam_image_processor=tiny.sam_image_processor,
                           class_tokenizer=tiny.class_tokenizer, llm_frame_pixels=[160 * 784, 192 * 784],
                           llm_train_frame_pixels=[32 * 784, 64 * 784], llm_image_pixels=[32 * 784, 1024 * 784])
    clip = np.zeros((8, 720, 1280, 3), dtype=np.uint8)

    def tokens_per_group(batch) -> int:
        t, h, w = batch["video_grid_thw"][0].tolist()
        return h * w // 4

    assert 160 <= tokens_per_group(processor([clip], ["fire"])) <= 192  # inference budget
    assert 32 <= tokens_per_group(processor([clip], ["fire"], target_masks=[np.zeros((8, 720, 1280))])) <= 64
    assert tokens_per_group(processor([clip], ["fire"], llm_frame_pixels=[8 * 784, 16 * 784])) <= 16
    assert 192 < tokens_per_group(processor([clip[:1]], ["fire"])) <= 1024  # an image sample: the image budget
    with pytest.raises(ValueError, match="0 < min <= max"):
        processor([clip], ["fire"], llm_frame_pixels=[100, 10])


def test_pixel_budget_argument_accepts_areas_and_token_units():
    import argparse

    from lavida.commands.arguments import pixel_budget

    assert pixel_budget("160,192x28") == (160 * 784, 192 * 784)
    assert pixel_budget("1000,2000") == (1000, 2000)
    for bad in ("192,160x28", "a,b", "5"):
        with pytest.raises(argparse.ArgumentTypeError):
            pixel_budget(bad)


def test_grounding_frames_at_their_own_size_survive_saving(tmp_path):
    """``grounding_image_size`` adds the same frames at that side for the name-grounding head, normalised as SAM2's;
    the setting is saved with the processor."""
    processor = build_tiny_processor()
    processor.grounding_image_size = 64
    clips = _clips(count=2)
    batch = processor([clips[0], clips[1][:4]], [["red circle"], ["blue star"]])
    grounding = batch["grounding_pixel_values"]
    assert grounding.shape == (2, 8, 3, 64, 64) and batch["sam_pixel_values"].shape == (2, 8, 3, 128, 128)
    expected = processor.sam_image_processor(images=list(clips[0]), return_tensors="pt", input_data_format="channels_last",
                                             size={"height": 64, "width": 64})["pixel_values"]
    torch.testing.assert_close(grounding[0], expected)
    assert (grounding[1, 4:] == 0).all() and batch["frame_mask"][1].tolist() == [True] * 4 + [False] * 4
    processor.save_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(LavidaConfig.tiny().to_json_string())
    loaded = LavidaProcessor.from_pretrained(tmp_path)
    assert loaded.grounding_image_size == 64
    assert "grounding_pixel_values" not in build_tiny_processor()(clips[:1], ["fire"])  # off by default
    with pytest.raises(ValueError, match="grounding_image_size"):
        LavidaProcessor.from_pretrained(tmp_path, grounding_image_size=0)


def test_with_settings_changes_the_settings_and_keeps_the_components():
    from lavida.processing.factories import build_tiny_processor

    processor = build_tiny_processor()
    changed = processor.with_settings(grounding_image_size=64, clip_length=4)
    assert (changed.grounding_image_size, changed.clip_length) == (64, 4)
    assert (processor.grounding_image_size, processor.clip_length) == (None, 8)  # the original is untouched
    assert changed.tokenizer is processor.tokenizer and changed.class_tokenizer is processor.class_tokenizer
    assert changed.llm_frame_pixels == processor.llm_frame_pixels and changed.seg_token == processor.seg_token
    with pytest.raises(ValueError, match="Unknown processor settings \\['grounding_size'\\]"):
        processor.with_settings(grounding_size=64)
    with pytest.raises(ValueError, match="grounding_image_size must be a positive int"):
        processor.with_settings(grounding_image_size=0)
