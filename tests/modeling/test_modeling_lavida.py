"""LavidaForVideoAnomalyDetection on tiny configs: training step, freezing/LoRA, save/load, input errors."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModel

from lavida import LavidaConfig, LavidaForVideoAnomalyDetection, LavidaOutput
from lavida.lora import add_lora

LOSS_TERMS = ("loss", "lm_loss", "focal_loss", "dice_loss", "iou_loss", "object_score_loss")


def test_full_size_defaults_follow_the_paper():
    config = LavidaConfig()
    assert config.projector_hidden_size == 768 and config.num_queries == 48 and config.qformer_layers == 5
    assert config.compression_ratio == 0.5 and config.lof_k == 8 and config.static_threshold == 0.01
    weights = (config.lm_loss_weight, config.focal_loss_weight, config.dice_loss_weight, config.iou_loss_weight,
               config.object_score_loss_weight)
    assert weights == (1.0, 20.0, 2.0, 1.0, 2.0)
    assert config.mllm_hidden_size == 3584  # Qwen2-VL-7B
    assert config.text_embedding_size == 512  # CLIP B/32 text tower
    assert config.sam_config.vision_config.backbone_config.blocks_per_stage == [1, 2, 11, 2]  # Hiera-S
    assert config.sam_prompt_size == 256


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="compression_ratio"):
        LavidaConfig.tiny(compression_ratio=0.0)
    with pytest.raises(ValueError, match="text_pooling"):
        LavidaConfig.tiny(text_pooling="max")


def test_forward_backward_with_lora_reaches_only_trainable_parts(tiny_model, tiny_batch):
    tiny_model.freeze_towers()
    peft_model = add_lora(tiny_model)
    peft_model.train()
    out = peft_model(**tiny_batch)
    for term in LOSS_TERMS:
        value = getattr(out, term)
        assert value is not None and torch.isfinite(value), term
    assert out.focal_loss > 0 and out.dice_loss > 0  # sample 0 has a non-empty target
    assert out.frame_logits.shape == (2, 8)
    assert out.mask_logits.shape == (2, 8, 32, 32)
    assert out.iou_scores.shape == (2, 8, 3)
    assert out.seg_hidden_state.shape == (2, 64)
    out.loss.backward()

    grads = {name: p.grad for name, p in peft_model.named_parameters()}

    def reached(fragment: str) -> bool:
        hits = [g for n, g in grads.items() if fragment in n]
        assert hits, f"no parameter named like {fragment}"
        return any(g is not None and g.abs().sum() > 0 for g in hits)

    assert reached("semantic_projector")
    assert reached("sam.mask_decoder")
    assert reached("lora_A") or reached("lora_B")
    assert reached("lm_head")
    for frozen in ("mllm.model.visual.", "sam.vision_encoder.", "text_encoder."):
        hits = {n: g for n, g in grads.items() if frozen in n}
        assert hits and all(g is None for g in hits.values()), f"{frozen} received gradients"
        assert all(not p.requires_grad for n, p in peft_model.named_parameters() if frozen in n)
    # LoRA wrapped only the LLM's attention projections
    lora_modules = {n.split(".lora_")[0] for n in grads if ".lora_" in n}
    assert lora_modules and all(".language_model.layers." in n and n.endswith(("q_proj", "v_proj"))
                                for n in lora_modules)


def test_inference_without_targets_has_no_loss(tiny_model, tiny_batch):
    tiny_model.eval()
    batch = {k: v for k, v in tiny_batch.items() if k not in ("labels", "target_masks")}
    with torch.no_grad():
        out = tiny_model(**batch)
    assert out.loss is None and out.lm_loss is None
    probabilities = torch.sigmoid(out.frame_logits)
    assert torch.all((probabilities > 0) & (probabilities < 1))


def test_precomputed_class_embeddings_match(tiny_model, tiny_batch):
    tiny_model.eval()
    batch = {k: v for k, v in tiny_batch.items() if k not in ("labels", "target_masks")}
    with torch.no_grad():
        direct = tiny_model(**batch)
        embeddings = tiny_model.encode_class_names(batch.pop("class_input_ids"), batch.pop("class_attention_mask"))
        cached = tiny_model(**batch, class_embeddings=embeddings)
    torch.testing.assert_close(direct.frame_logits, cached.frame_logits)


def _with_a_padding_name(batch: dict) -> dict:
    """``batch`` (2 samples, 2 names) plus a third name slot marked as padding (class_mask False)."""
    padded = dict(batch)
    pad_ids = torch.zeros_like(batch["class_input_ids"][:, :1])
    padded["class_input_ids"] = torch.cat([batch["class_input_ids"], pad_ids], dim=1)
    padded["class_attention_mask"] = torch.cat([batch["class_attention_mask"], torch.ones_like(pad_ids)], dim=1)
    padded["class_mask"] = torch.tensor([[True, True, False]] * 2)
    return padded


def test_padding_names_are_ignored(tiny_model, tiny_batch):
    """A padded name slot (class_mask False) must not change the result."""
    tiny_model.eval()
    batch = {k: v for k, v in tiny_batch.items() if k not in ("labels", "target_masks")}
    with torch.no_grad():
        reference = tiny_model(**batch)
        out = tiny_model(**_with_a_padding_name(batch))
    torch.testing.assert_close(reference.frame_logits, out.frame_logits, atol=1e-5, rtol=1e-5)


def _eval_outputs(model, batch):
    model.eval()
    with torch.no_grad():
        out = model(**{k: v for k, v in batch.items() if k not in ("labels", "target_masks")})
    return out.frame_logits, out.mask_logits


def test_save_pretrained_then_auto_model_gives_identical_outputs(tiny_model, tiny_batch, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    files = {p.name for p in tmp_path.iterdir()}
    assert "model.safetensors" in files and not any(f.endswith((".bin", ".pt", ".pkl")) for f in files)
    assert AutoConfig.from_pretrained(tmp_path).model_type == "lavida"
    loaded = AutoModel.from_pretrained(tmp_path)
    assert isinstance(loaded, LavidaForVideoAnomalyDetection)
    for a, b in zip(_eval_outputs(tiny_model, tiny_batch), _eval_outputs(loaded, tiny_batch)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_trust_remote_code_load_without_the_package(tiny_model, tiny_batch, tmp_path):
    model_dir = tmp_path / "model"
    tiny_model.save_pretrained(model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    assert config["auto_map"]["AutoModel"] == "modeling_lavida.LavidaForVideoAnomalyDetection"
    inputs = {k: v.contiguous() for k, v in tiny_batch.items() if k not in ("labels", "target_masks")}
    save_file(inputs, tmp_path / "inputs.safetensors")
    script = textwrap.dedent(f"""
        import sys
        sys.modules["lavida"] = None  # the package is not importable in this process
        try:
            import lavida
        except ImportError:
            pass
        else:
            raise SystemExit("lavida is importable")
        import torch
        from safetensors.torch import load_file, save_file
        from transformers import AutoModel
        model = AutoModel.from_pretrained({str(model_dir)!r}, trust_remote_code=True).eval()
        assert "transformers_modules" in type(model).__module__, type(model).__module__
        inputs = load_file({str(tmp_path / 'inputs.safetensors')!r})
        with torch.no_grad():
            out = model(**inputs)
        save_file({{"frame_logits": out.frame_logits, "mask_logits": out.mask_logits}},
                  {str(tmp_path / 'outputs.safetensors')!r})
    """)
    env_run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                             env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HF_HOME": str(tmp_path / "hf")})
    assert env_run.returncode == 0, env_run.stderr[-3000:]
    remote = load_file(tmp_path / "outputs.safetensors")
    frame_logits, mask_logits = _eval_outputs(tiny_model, tiny_batch)
    torch.testing.assert_close(remote["frame_logits"], frame_logits, rtol=0, atol=0)
    torch.testing.assert_close(remote["mask_logits"], mask_logits, rtol=0, atol=0)


def test_checkpoint_with_missing_or_extra_keys_is_refused(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    dropped = next(k for k in weights if "semantic_projector.prompt_proj" in k)
    del weights[dropped]
    weights["semantic_projector.extra_head.weight"] = torch.zeros(2, 2)
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError) as error:
        AutoModel.from_pretrained(tmp_path)
    message = str(error.value)
    assert dropped in message and "semantic_projector.extra_head.weight" in message
    assert "missing keys" in message and "unexpected keys" in message


def test_from_components_adds_seg_token_and_keeps_tower_weights(byte_tokenizer, tmp_path):
    from transformers import AutoModelForImageTextToText, Qwen2VLConfig

    from lavida.model_factory import build_model_from_components

    tiny = LavidaConfig.tiny()
    torch.manual_seed(1)
    mllm_config = Qwen2VLConfig(**{**tiny.mllm_config.to_dict()})
    mllm_config.text_config.vocab_size = 263  # the checkpoint does not know <SEG> yet
    mllm = AutoModelForImageTextToText.from_config(mllm_config)
    tokenizer = byte_tokenizer.__class__.from_pretrained(_save_tokenizer_without_seg(byte_tokenizer, tmp_path))
    mllm.save_pretrained(tmp_path / "mllm")
    tokenizer.save_pretrained(tmp_path / "mllm")
    sam = AutoModel.from_config(tiny.sam_config)
    sam.save_pretrained(tmp_path / "sam")
    text = AutoModel.from_config(tiny.text_encoder_config)
    text.save_pretrained(tmp_path / "text")

    model = build_model_from_components(tmp_path / "mllm", tmp_path / "sam", tmp_path / "text",
                                        compression_ratio=0.75)
    assert model.config.seg_token_id == 263 and model.config.compression_ratio == 0.75
    assert model.mllm.get_input_embeddings().weight.shape[0] == 264
    torch.testing.assert_close(model.sam.mask_decoder.iou_token.weight, sam.mask_decoder.iou_token.weight)
    torch.testing.assert_close(model.mllm.get_input_embeddings().weight[:263], mllm.get_input_embeddings().weight)
    assert not any(p.requires_grad for p in model.text_encoder.parameters())
    assert not any(p.requires_grad for p in model.sam.vision_encoder.parameters())


def _save_tokenizer_without_seg(tokenizer, tmp_path):
    """Write the byte tokenizer minus <SEG> (a stand-in for a pretrained MLLM tokenizer)."""
    from transformers import Qwen2Tokenizer

    from lavida.processing.byte_tokenizer import QWEN_CHAT_TEMPLATE, byte_to_unicode

    vocab = {char: byte for byte, char in byte_to_unicode().items()}
    specials = [t for t in tokenizer.convert_ids_to_tokens(list(range(256, 263)))]
    for offset, token in enumerate(specials):
        vocab[token] = 256 + offset
    plain = Qwen2Tokenizer(vocab=vocab, merges=[], unk_token=None, bos_token=None, eos_token="<|im_end|>",
                           pad_token="<|endoftext|>")
    plain.add_tokens(specials, special_tokens=True)
    plain.chat_template = QWEN_CHAT_TEMPLATE
    folder = tmp_path / "plain_tokenizer"
    plain.save_pretrained(folder)
    return folder


def test_clear_errors_for_bad_inputs(tiny_model, tiny_batch, byte_tokenizer):
    tiny_model.eval()
    batch = {k: v for k, v in tiny_batch.items() if k not in ("labels", "target_masks")}
    seg_id = byte_tokenizer.convert_tokens_to_ids("<SEG>")

    no_seg = dict(batch, input_ids=batch["input_ids"].masked_fill(batch["input_ids"] == seg_id, 33))
    with pytest.raises(ValueError, match="No <SEG> token"):
        tiny_model(**no_seg)

    empty = dict(batch, class_input_ids=batch["class_input_ids"][:, :0], class_attention_mask=batch["class_attention_mask"][:, :0])
    with pytest.raises(ValueError, match="list is empty"):
        tiny_model(**empty)
    with pytest.raises(ValueError, match="list of sample"):
        tiny_model(**dict(batch, class_mask=torch.tensor([[True, True], [False, False]])))

    with pytest.raises(ValueError, match="Frame count mismatch"):
        tiny_model(**dict(batch, sam_pixel_values=batch["sam_pixel_values"][:, :6]))
    with pytest.raises(ValueError, match="Frame count mismatch"):
        tiny_model(**dict(tiny_batch, target_masks=tiny_batch["target_masks"][:, :4]))


def test_a_qwen2_5_vl_mllm_plugs_in(byte_tokenizer):
    """The MLLM is any Qwen-VL family config built through the Auto classes (here Qwen2.5-VL)."""
    import numpy as np

    from lavida.processing.factories import build_tiny_processor

    tiny = LavidaConfig.tiny().mllm_config
    text = {k: getattr(tiny.text_config, k) for k in ("vocab_size", "hidden_size", "intermediate_size",
                                                       "num_hidden_layers", "num_attention_heads",
                                                       "num_key_value_heads", "eos_token_id", "pad_token_id",
                                                       "rope_parameters")}
    mllm = {"model_type": "qwen2_5_vl", "text_config": {**text, "bos_token_id": None},
            "vision_config": {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "out_hidden_size": 64,
                              "num_heads": 4, "window_size": 56, "fullatt_block_indexes": [1]},
            "image_token_id": tiny.image_token_id, "video_token_id": tiny.video_token_id,
            "vision_start_token_id": tiny.vision_start_token_id, "vision_end_token_id": tiny.vision_end_token_id}
    torch.manual_seed(0)
    model = LavidaForVideoAnomalyDetection(LavidaConfig.tiny(mllm_config=mllm))
    assert type(model.mllm).__name__ == "Qwen2_5_VLForConditionalGeneration"
    clip = np.random.default_rng(0).integers(0, 255, (8, 64, 64, 3), dtype=np.uint8)
    masks = np.zeros((8, 64, 64))
    masks[2:5, 10:30, 10:30] = 1
    batch = build_tiny_processor()([clip], ["red circle", "blue star"], target_masks=[masks])
    out = model(**batch)
    out.loss.backward()
    assert torch.isfinite(out.loss) and out.frame_logits.shape == (1, 8)
    assert model.semantic_projector.seg_proj.weight.grad is not None


def test_name_prompt_tokens_reach_the_decoder_and_ignore_padding(tiny_batch):
    """config.name_prompt_tokens adds one decoder prompt token per name: names move the masks at initialisation,
    padded name slots do not, and the encoder gets gradients."""
    torch.manual_seed(0)
    model = LavidaForVideoAnomalyDetection(LavidaConfig.tiny(name_prompt_tokens=True))
    assert model.name_prompt_encoder is not None
    assert LavidaForVideoAnomalyDetection(LavidaConfig.tiny()).name_prompt_encoder is None
    batch = {k: v for k, v in tiny_batch.items() if k not in ("labels", "target_masks")}
    model.eval()
    with torch.no_grad():
        reference = model(**batch)
        with_padding = model(**_with_a_padding_name(batch))
        model.name_prompt_encoder.mlp[-1].bias.add_(1.0)  # other name tokens, same projector prompt
        shifted_tokens = model(**batch)
    torch.testing.assert_close(reference.mask_logits, with_padding.mask_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(reference.frame_logits, with_padding.frame_logits, atol=1e-5, rtol=1e-5)
    change = (reference.mask_logits - shifted_tokens.mask_logits).abs().mean()
    assert change > 0.05 * reference.mask_logits.abs().mean()  # (mask logits are ~1e-5 at initialisation)
    model.train()
    model(**tiny_batch).loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.name_prompt_encoder.parameters())


def _grounding_model() -> LavidaForVideoAnomalyDetection:
    torch.manual_seed(0)
    return LavidaForVideoAnomalyDetection(LavidaConfig.tiny(frame_score="name_grounding"))


def test_name_grounding_frame_score_is_the_best_listed_name_and_follows_the_names(tiny_batch):
    model = _grounding_model().eval()
    assert LavidaForVideoAnomalyDetection(LavidaConfig.tiny()).name_grounding_head is None
    batch = {k: v for k, v in tiny_batch.items() if k not in ("labels", "target_masks")}
    with torch.no_grad():
        model.name_grounding_head.logit_scale.fill_(1e4)  # similarities are ~1e-5 at the tiny init std
        reference = model(**batch)
        with_padding = model(**_with_a_padding_name(batch))
        swapped = dict(batch, class_input_ids=batch["class_input_ids"].flip(-1))  # other names, same frames
        other_names = model(**swapped)
    assert reference.name_logits.shape == (*reference.frame_logits.shape, 2)
    torch.testing.assert_close(reference.frame_logits, reference.name_logits.amax(dim=-1))
    torch.testing.assert_close(with_padding.frame_logits, reference.frame_logits, atol=1e-5, rtol=1e-5)
    assert bool((with_padding.name_logits[..., 2] < -1e30).all())  # a padding slot is never the best name
    assert (other_names.frame_logits - reference.frame_logits).abs().max() > 1e-4
    # the head only changes the frame score: masks are those of the same weights without it
    plain = LavidaForVideoAnomalyDetection(LavidaConfig.tiny())
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("name_grounding_head.")})
    with torch.no_grad():
        torch.testing.assert_close(plain.eval()(**batch).mask_logits, reference.mask_logits)


def test_name_grounding_trains_on_name_labels(tiny_batch):
    model = _grounding_model().train()
    with pytest.raises(ValueError, match="name_labels"):
        model(**tiny_batch)
    labels = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    out = model(**tiny_batch, name_labels=labels)
    out.loss.backward()
    head = model.name_grounding_head
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())
    # the grounding loss is the frame-score term, under its own name, and it reads the labels: naming every visible
    # target costs more than naming none while the head still answers "absent" everywhere
    assert out.object_score_loss is None
    assert tiny_batch["target_masks"].any()
    with torch.no_grad():
        none_named = model(**tiny_batch, name_labels=torch.zeros_like(labels)).grounding_loss
        all_named = model(**tiny_batch, name_labels=torch.ones_like(labels)).grounding_loss
    assert torch.isfinite(out.grounding_loss) and all_named > none_named + 0.1
    config = model.config
    expected = (config.lm_loss_weight * out.lm_loss + config.focal_loss_weight * out.focal_loss
                + config.dice_loss_weight * out.dice_loss + config.iou_loss_weight * out.iou_loss
                + config.object_score_loss_weight * out.grounding_loss)
    torch.testing.assert_close(out.loss, expected)


def test_a_checkpoint_is_fine_tuned_into_name_grounding_only_with_new_modules(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="name_grounding_head"):
        LavidaForVideoAnomalyDetection.from_pretrained(tmp_path, frame_score="name_grounding")
    model = LavidaForVideoAnomalyDetection.from_pretrained(tmp_path, frame_score="name_grounding",
                                                           new_modules=["name_grounding_head"])
    assert model.config.frame_score == "name_grounding"
    torch.testing.assert_close(model.semantic_projector.prompt_proj.weight,
                               tiny_model.semantic_projector.prompt_proj.weight)
    assert model.name_grounding_head.logit_bias.item() == -4.0 and model.name_grounding_head.logit_scale.item() == 1.0


# ---------------------------------------------------------------------------------------------------- forward inputs
def _inference_batch(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if k not in ("labels", "target_masks")}


def test_a_misspelt_input_is_refused_naming_it_and_the_accepted_ones(tiny_model, tiny_batch):
    batch = {k: v for k, v in tiny_batch.items() if k != "target_masks"}
    with pytest.raises(ValueError) as error:
        tiny_model(**batch, target_mask=tiny_batch["target_masks"])
    message = str(error.value)
    assert "'target_mask'" in message and "did you mean 'target_masks'" in message
    assert "Accepted inputs:" in message and "grounding_labels" in message and "return_dict" in message
    with pytest.raises(ValueError, match="num_items_in_batch"):
        tiny_model(**tiny_batch, num_items_in_batch=4)


def test_return_dict_false_gives_the_outputs_fields_as_a_tuple(tiny_model, tiny_batch):
    tiny_model.eval()
    with torch.no_grad():
        as_dict = tiny_model(**tiny_batch)
        as_tuple = tiny_model(**tiny_batch, return_dict=False)
        tiny_model.config.return_dict = False  # the config's default applies when return_dict is not given
        from_config = tiny_model(**tiny_batch)
    assert isinstance(as_tuple, tuple) and not isinstance(as_tuple, LavidaOutput)
    assert isinstance(from_config, tuple)
    expected = as_dict.to_tuple()
    assert len(as_tuple) == len(expected) == len(from_config)
    assert as_tuple[0] is not None and torch.equal(as_tuple[0], as_dict.loss)  # the loss first, as in transformers
    for a, b, c in zip(as_tuple, expected, from_config):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        torch.testing.assert_close(c, b, rtol=0, atol=0)


@pytest.mark.parametrize("with_labels", [False, True], ids=["inference", "training"])
def test_output_hidden_states_returns_the_mllms_hidden_states(tiny_model, tiny_batch, with_labels):
    tiny_model.eval()
    batch = tiny_batch if with_labels else _inference_batch(tiny_batch)
    with torch.no_grad():
        plain = tiny_model(**batch)
        out = tiny_model(**batch, output_hidden_states=True)
    assert plain.hidden_states is None and plain.attentions is None
    layers = tiny_model.config.mllm_config.text_config.num_hidden_layers
    hidden = tiny_model.config.mllm_config.text_config.hidden_size
    assert isinstance(out.hidden_states, tuple) and len(out.hidden_states) == layers + 1
    batch_size = batch["input_ids"].shape[0]
    length = out.hidden_states[0].shape[1]  # the compressed sequence: fewer tokens than the prompt
    assert length < batch["input_ids"].shape[1]
    assert all(h.shape == (batch_size, length, hidden) for h in out.hidden_states)
    # f_sem is the last layer's hidden state at <SEG>: one of the rows of hidden_states[-1]
    last = out.hidden_states[-1]
    for row in range(batch_size):
        distances = (last[row] - out.seg_hidden_state[row]).abs().amax(dim=-1)
        assert float(distances.min()) == 0.0
    torch.testing.assert_close(out.frame_logits, plain.frame_logits, rtol=0, atol=0)


def test_seg_hidden_state_is_read_at_the_seg_position_of_the_compressed_sequence(tiny_model, tiny_batch):
    """f_sem is the last layer's state at <SEG> itself: only video tokens are dropped by compression, so <SEG> moves
    left by the number of video tokens removed, and its neighbours hold different states."""
    tiny_model.eval()
    batch = _inference_batch(tiny_batch)
    with torch.no_grad():
        out = tiny_model(**batch, output_hidden_states=True)
    last = out.hidden_states[-1]  # (B, S', D)
    video_id = tiny_model.config.mllm_config.video_token_id
    for row, ids in enumerate(batch["input_ids"]):
        seg = int((ids == tiny_model.config.seg_token_id).nonzero().max())
        removed = int((ids == video_id).sum()) - int(out.num_visual_tokens[row])
        assert removed > 0
        position = seg - removed
        torch.testing.assert_close(out.seg_hidden_state[row], last[row, position], rtol=0, atol=0)
        for neighbour in (position - 1, position + 1):
            assert not torch.allclose(last[row, neighbour], last[row, position])


def test_output_attentions_returns_the_mllms_attention_weights_with_eager_attention(tiny_model, tiny_batch):
    tiny_model.set_attn_implementation("eager")
    tiny_model.eval()
    with torch.no_grad():
        out = tiny_model(**_inference_batch(tiny_batch), output_attentions=True)
    text_config = tiny_model.config.mllm_config.text_config
    assert len(out.attentions) == text_config.num_hidden_layers and out.hidden_states is None
    batch_size, heads = tiny_batch["input_ids"].shape[0], text_config.num_attention_heads
    length = out.attentions[0].shape[-1]
    assert all(a.shape == (batch_size, heads, length, length) for a in out.attentions)
    torch.testing.assert_close(out.attentions[0].sum(-1)[0, 0, :4], torch.ones(4))  # rows are softmax weights


def test_object_score_scale_weights_only_the_object_score_term(tiny_model, tiny_batch):
    tiny_model.eval()
    with torch.no_grad():
        full = tiny_model(**tiny_batch)
        off = tiny_model(**tiny_batch, object_score_scale=0.0)
    weight = tiny_model.config.object_score_loss_weight
    torch.testing.assert_close(off.object_score_loss, full.object_score_loss)
    torch.testing.assert_close(off.loss, full.loss - weight * full.object_score_loss)
    assert tiny_model.loss_function_lavida.object_weight == weight


def test_grounding_labels_must_be_a_complete_dict_of_matching_shapes(tiny_batch):
    model = _grounding_model().train()
    names = tiny_batch["class_input_ids"]
    labels = {"input_ids": names, "attention_mask": tiny_batch["class_attention_mask"],
              "name_mask": torch.ones(names.shape[:2], dtype=torch.bool),
              "targets": tiny_batch["target_masks"][:, None].repeat(1, names.shape[1], 1, 1, 1)}
    out = model(**tiny_batch, grounding_labels=labels)
    assert torch.isfinite(out.grounding_loss) and out.object_score_loss is None
    with_words = model(**tiny_batch, grounding_labels={**labels, "word_ids": torch.full_like(names, -1)})
    assert torch.isfinite(with_words.grounding_loss)  # the optional key is taken
    with pytest.raises(ValueError, match="grounding_labels must be a dict with the keys"):
        model(**tiny_batch, grounding_labels={**labels, "words": torch.full_like(names, -1)})
    with pytest.raises(ValueError, match="grounding_labels must be a dict with the keys"):
        model(**tiny_batch, grounding_labels={**labels, "mask": labels.pop("name_mask")})
    labels["name_mask"] = torch.ones(names.shape[:2], dtype=torch.bool)
    with pytest.raises(ValueError, match=r"grounding_labels\['targets'\] must be \[B, M, T, H, W\]"):
        model(**tiny_batch, grounding_labels={**labels, "targets": labels["targets"][:, :, :4]})


def test_an_all_real_frame_mask_changes_nothing_and_a_mask_with_gaps_is_refused(tiny_model, tiny_batch):
    tiny_model.eval()
    batch = _inference_batch(tiny_batch)
    frames = batch["sam_pixel_values"].shape[1]
    with torch.no_grad():
        plain = tiny_model(**batch)
        masked = tiny_model(**batch, frame_mask=torch.ones(2, frames, dtype=torch.bool))
    for name in ("frame_logits", "mask_logits", "iou_scores"):
        torch.testing.assert_close(getattr(masked, name), getattr(plain, name), rtol=0, atol=0)
    gap = torch.ones(2, frames, dtype=torch.bool)
    gap[1, 2] = False  # real frames must come first
    with pytest.raises(ValueError, match="frame_mask must be"):
        tiny_model(**batch, frame_mask=gap)


def test_mm_token_type_ids_default_to_the_types_read_from_input_ids(tiny_model, tiny_batch):
    tiny_model.eval()
    batch = _inference_batch(tiny_batch)
    with torch.no_grad():
        given = tiny_model(**batch)
        read = tiny_model(**{k: v for k, v in batch.items() if k != "mm_token_type_ids"})
    torch.testing.assert_close(read.seg_hidden_state, given.seg_hidden_state, rtol=0, atol=0)


def test_the_llm_runs_on_the_rotary_positions_of_the_compressed_sequence(tiny_model, tiny_batch):
    """f_sem is what the language model gives with the 3-D positions the uncompressed prompt had; the 1-D positions
    the model would otherwise make up give another state."""
    from lavida.token_compressor import compress_sequence

    tiny_model.eval()
    batch = _inference_batch(tiny_batch)
    with torch.no_grad():
        out = tiny_model(**batch)
        sequence = compress_sequence(tiny_model.mllm, tiny_model.token_compressor, batch["input_ids"],
                                     batch["attention_mask"], batch["mm_token_type_ids"],
                                     batch["pixel_values_videos"], batch["video_grid_thw"])
        inputs = {"inputs_embeds": sequence.inputs_embeds, "attention_mask": sequence.attention_mask,
                  "use_cache": False}
        rotary = tiny_model.mllm.model(**inputs, position_ids=sequence.position_ids).last_hidden_state
        flat = tiny_model.mllm.model(**inputs,
                                     position_ids=torch.arange(sequence.input_ids.shape[1])[None].expand(2, -1))
    seg = (sequence.input_ids == tiny_model.config.seg_token_id).int().argmax(dim=1)
    rows = torch.arange(2)
    torch.testing.assert_close(out.seg_hidden_state, rotary[rows, seg], rtol=0, atol=0)
    assert not torch.allclose(out.seg_hidden_state, flat.last_hidden_state[rows, seg], atol=1e-4)


def test_output_attentions_can_come_from_the_config(tiny_batch):
    torch.manual_seed(0)
    model = LavidaForVideoAnomalyDetection(LavidaConfig.tiny(attn_implementation="eager", output_attentions=True))
    with torch.no_grad():
        out = model.eval()(**_inference_batch(tiny_batch))
    assert len(out.attentions) == model.config.mllm_config.text_config.num_hidden_layers


def test_a_patch_grid_taller_than_its_temporal_groups_passes_the_frame_check(tiny_model, byte_tokenizer):
    """8 frames at 112x112: 4 temporal groups of 8x8 patches; the frame check compares frames with the 4 groups."""
    from transformers import Qwen2VLVideoProcessor

    from tests.conftest import build_tiny_batch

    processor = Qwen2VLVideoProcessor(size={"shortest_edge": 112 * 112, "longest_edge": 112 * 112},
                                      cap_pixels_per_frame=False)
    batch = build_tiny_batch(byte_tokenizer, processor, batch=1, with_targets=False)
    assert batch["video_grid_thw"].tolist() == [[4, 8, 8]]
    tiny_model.eval()
    with torch.no_grad():
        out = tiny_model(**batch)
    assert out.frame_logits.shape == (1, 8)
    with pytest.raises(ValueError, match="Frame count mismatch"):
        tiny_model(**{**batch, "sam_pixel_values": batch["sam_pixel_values"][:, :6]})


def test_a_model_with_bfloat16_towers_runs_under_autocast(tiny_model, tiny_batch):
    """Mixed parameter dtypes (a frozen bf16 MLLM beside fp32 heads) run under autocast to the lower precision."""
    tiny_model.eval()
    tiny_model.mllm.to(torch.bfloat16)
    with torch.no_grad():
        out = tiny_model(**_inference_batch(tiny_batch))
    assert torch.isfinite(out.frame_logits.float()).all() and out.seg_hidden_state.dtype == torch.bfloat16


@pytest.mark.parametrize("settings", [
    {},  # the paper's: the decoder's object score and mask
    {"frame_score": "name_grounding", "grounding_head": "word_attributes", "grounding_image_channels": 8,
     "mask_source": "gated_or_names"},  # lavida-tiny's kind: the word head and gated masks
], ids=["object_score", "word_attributes"])
def test_segment_frames_gives_forwards_per_frame_outputs_without_the_mllm(tiny_batch, settings):
    """The per-frame path on frames of an encoded clip (the pipeline's frames between scored ones): any frames, any
    count, the MLLM not run, and on frames the forward saw, the forward's outputs."""
    torch.manual_seed(0)
    model = LavidaForVideoAnomalyDetection(LavidaConfig.tiny(**settings)).eval()
    batch = _inference_batch(tiny_batch)
    with torch.no_grad():
        # the tiny init's outputs hardly depend on the frame: widen the part that makes the frame scores
        if model.name_grounding_head is None:
            for parameter in model.sam.parameters():
                parameter.add_(torch.randn_like(parameter) * 0.05)
        else:
            for parameter in model.name_grounding_head.parameters():
                torch.nn.init.normal_(parameter, std=0.5)
        full = model(**batch)
        names = {key: value for key, value in batch.items() if key.startswith("class_")}
        picked = [5, 2, 7]
        grounding = ({} if "grounding_head" not in settings
                     else {"grounding_pixel_values": batch["sam_pixel_values"][:, picked].flip(-1)})
        calls = []
        hook = model.mllm.register_forward_pre_hook(lambda *args: calls.append(1))
        try:
            part = model.segment_frames(full.seg_hidden_state, batch["sam_pixel_values"][:, picked], **names)
            flipped = model.segment_frames(full.seg_hidden_state, batch["sam_pixel_values"][:, picked].flip(-1),
                                           **names, **grounding)
        finally:
            hook.remove()
    assert not calls
    assert part.frame_logits.shape == (2, 3) and part.mask_logits.shape == (2, 3, *full.mask_logits.shape[-2:])
    torch.testing.assert_close(part.frame_logits, full.frame_logits[:, picked], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(part.mask_logits, full.mask_logits[:, picked], rtol=1e-4, atol=1e-4)
    if "grounding_head" in settings:  # the gated masks are flat at this init: the names show the frames read
        torch.testing.assert_close(part.name_logits, full.name_logits[:, picked], rtol=1e-4, atol=1e-5)
        assert not torch.allclose(flipped.name_logits, part.name_logits, atol=1e-3)  # each frame's own pixels
    else:
        assert part.name_logits is None
        assert not torch.allclose(flipped.mask_logits, part.mask_logits, atol=1e-3)
    with pytest.raises(ValueError, match=r"seg_hidden_state must be \[B, D\] with B = 2"):
        model.segment_frames(full.seg_hidden_state[:1], batch["sam_pixel_values"], **names)
    no_names = {**names, "class_mask": torch.zeros_like(names["class_input_ids"][..., 0], dtype=torch.bool)}
    with pytest.raises(ValueError, match=r"name\) list of sample\(s\) \[0, 1\] is empty"):
        model.segment_frames(full.seg_hidden_state, batch["sam_pixel_values"], **no_names)
