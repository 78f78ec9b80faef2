"""LAVIDA as a transformers model (Dai et al., "LAVIDA", CVPR 2026, arXiv 2602.19248).

A video MLLM (Qwen2-VL / Qwen2.5-VL / Qwen3-VL) reads the clip and the list of anomaly names in one forward pass;
the last-layer hidden state at ``<SEG>`` (``f_sem``), the class-name embeddings and SAM2's frame features go through
the semantic projector, which yields one sparse prompt per frame for SAM2's mask decoder: its object-score logit is
the frame's anomaly score and its best mask the pixel-level anomaly map.

Departures from the authors' code (see the method page): visual token compression keeps the multimodal (3-D) rotary
positions of the surviving tokens and runs in training as well as inference.

This file is copied next to saved weights for ``trust_remote_code`` loading: it imports only torch, transformers and,
relatively, its sibling files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoModel, AutoModelForImageTextToText, PreTrainedModel
from transformers.utils import ModelOutput

from .anomaly_mask_decoder import SamFrameFeatures, decode_anomaly_masks, encode_frames
from .configuration_lavida import LavidaConfig
from .loss_lavida import LavidaLoss
from .name_grounding_head import (INITIAL_LOGIT_BIAS, NameGroundingHead, listed_name_targets, name_grounding_loss,
                                  name_presence_logits)
from .semantic_projector import NamePromptEncoder, SemanticProjector
from .token_compressor import TokenCompressor


MAX_CACHED_NAMES = 50_000  # class-name vectors kept by a frozen text encoder's cache


@dataclass
class LavidaOutput(ModelOutput):
    """Output of ``LavidaForVideoAnomalyDetection``.

    Attributes:
        loss: total mixed loss (when ``target_masks`` are given).
        lm_loss, focal_loss, dice_loss, iou_loss, object_score_loss: the unweighted terms (when computed).
        frame_logits: ``[B, T]`` the per-frame anomaly score before the sigmoid (SAM2's object-score logit, or with
            ``config.frame_score="name_grounding"`` the largest of ``name_logits``).
        name_logits: ``[B, T, N]`` with ``frame_score="name_grounding"``: each name's presence logit per frame
            (padding names hold the dtype's minimum).
        mask_logits: ``[B, T, h, w]`` anomaly map logits (best of 3 by predicted IoU), low resolution.
        iou_scores: ``[B, T, 3]`` predicted IoU of the three candidate masks.
        candidate_mask_logits: ``[B, T, 3, h, w]`` all three candidates.
        seg_hidden_state: ``[B, D]`` the MLLM's last-layer hidden state at ``<SEG>``.
        num_visual_tokens: ``[B]`` visual tokens the LLM saw after compression.
    """

    loss: torch.FloatTensor | None = None
    lm_loss: torch.FloatTensor | None = None
    focal_loss: torch.FloatTensor | None = None
    dice_loss: torch.FloatTensor | None = None
    iou_loss: torch.FloatTensor | None = None
    object_score_loss: torch.FloatTensor | None = None
    frame_logits: torch.FloatTensor | None = None
    name_logits: torch.FloatTensor | None = None
    mask_logits: torch.FloatTensor | None = None
    iou_scores: torch.FloatTensor | None = None
    candidate_mask_logits: torch.FloatTensor | None = None
    seg_hidden_state: torch.FloatTensor | None = None
    num_visual_tokens: torch.LongTensor | None = None


@dataclass
class CompressedSequence:
    """The LLM input after visual token compression (right-padded)."""

    inputs_embeds: torch.Tensor  # (B, S', D)
    attention_mask: torch.Tensor  # (B, S')
    position_ids: torch.Tensor  # (3, B, S') rotary positions taken from the uncompressed sequence
    input_ids: torch.Tensor  # (B, S') ids at the kept positions (merged video tokens keep the video token id)
    labels: torch.Tensor | None  # (B, S')
    num_visual_tokens: torch.Tensor  # (B,)


class LavidaPreTrainedModel(PreTrainedModel):
    config: LavidaConfig
    config_class = LavidaConfig
    base_model_prefix = "lavida"
    main_input_name = "input_ids"
    input_modalities = ("video", "text")
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _no_split_modules = [
        "Qwen2VLDecoderLayer", "Qwen2VLVisionBlock", "Qwen2_5_VLDecoderLayer", "Qwen2_5_VLVisionBlock",
        "Qwen3VLTextDecoderLayer", "Qwen3VLVisionBlock", "TwoWayQFormerBlock", "Sam2MaskDecoder",
    ]

    def save_pretrained(self, save_directory, *args, save_original_format: bool = False, **kwargs):
        """Save with the modules' own key names. transformers would otherwise rename the Qwen-VL keys back to their
        legacy layout (``mllm.visual.*``), which ``Trainer``'s resume (a plain ``load_state_dict``) cannot read."""
        return super().save_pretrained(save_directory, *args, save_original_format=save_original_format, **kwargs)

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, SemanticProjector):
            nn.init.normal_(module.queries, std=self.config.initializer_range)
        if isinstance(module, NameGroundingHead):
            nn.init.ones_(module.logit_scale)
            nn.init.constant_(module.logit_bias, INITIAL_LOGIT_BIAS)


class LavidaForVideoAnomalyDetection(LavidaPreTrainedModel):
    """Zero-shot video anomaly detector: per-frame anomaly scores and pixel masks for user-named anomalies."""

    def __init__(self, config: LavidaConfig):
        super().__init__(config)
        self.mllm = AutoModelForImageTextToText.from_config(config.mllm_config)
        self.sam = AutoModel.from_config(config.sam_config)
        self.text_encoder = AutoModel.from_config(config.text_encoder_config)
        self.token_compressor = TokenCompressor(
            ratio=config.compression_ratio,
            k=config.lof_k,
            static_threshold=config.static_threshold,
            spatial_merge_size=config.mllm_config.vision_config.spatial_merge_size,
        )
        self.semantic_projector = SemanticProjector(config)
        self.name_prompt_encoder = NamePromptEncoder(config) if config.name_prompt_tokens else None
        self.name_grounding_head = NameGroundingHead(config) if config.frame_score == "name_grounding" else None
        self.loss_function_lavida = LavidaLoss(config)
        self.text_encoder.register_load_state_dict_post_hook(self._clear_class_embedding_cache)
        self.post_init()

    # ------------------------------------------------------------------------------------------------ building
    @classmethod
    def from_components(cls, mllm: str | os.PathLike, sam2: str | os.PathLike, text_encoder: str | os.PathLike,
                        **lavida_kwargs) -> "LavidaForVideoAnomalyDetection":
        """Build a full model from three pretrained checkpoints (Hub ids or local folders).

        Adds ``<SEG>`` to the MLLM's tokenizer (resizing its embeddings) and records its id in the config. The text
        encoder may be a CLIP checkpoint (its text tower is used, pooled output) or a BERT-style sentence encoder
        (mean pooling). ``lavida_kwargs`` set LAVIDA's own fields (``compression_ratio=...``).
        """
        from transformers import AutoConfig, AutoTokenizer, CLIPTextModel

        mllm_model = AutoModelForImageTextToText.from_pretrained(mllm)
        tokenizer = AutoTokenizer.from_pretrained(mllm)
        seg_token = lavida_kwargs.pop("seg_token", LavidaConfig.seg_token)
        tokenizer.add_tokens([seg_token], special_tokens=True)
        seg_token_id = tokenizer.convert_tokens_to_ids(seg_token)
        mllm_model.resize_token_embeddings(len(tokenizer))
        sam_model = AutoModel.from_pretrained(sam2)
        text_config = AutoConfig.from_pretrained(text_encoder)
        if text_config.model_type in ("clip", "clip_text_model"):
            text_model = CLIPTextModel.from_pretrained(text_encoder)
            lavida_kwargs.setdefault("text_pooling", "pooler")
        else:
            text_model = AutoModel.from_pretrained(text_encoder, add_pooling_layer=False)
            lavida_kwargs.setdefault("text_pooling", "mean")
        config = LavidaConfig(mllm_config=mllm_model.config, sam_config=sam_model.config,
                              text_encoder_config=text_model.config, seg_token=seg_token,
                              seg_token_id=seg_token_id, **lavida_kwargs)
        model = cls(config)
        # Weights of the towers are copied in (peak memory is twice the towers' size while building).
        model.mllm.load_state_dict(mllm_model.state_dict())
        model.sam.load_state_dict(sam_model.state_dict())
        model.text_encoder.load_state_dict(text_model.state_dict(), strict=False)
        missing = set(model.text_encoder.state_dict()) - set(text_model.state_dict())
        if missing:
            raise ValueError(f"Text encoder {text_encoder} lacks weights for: {sorted(missing)[:10]}.")
        model.freeze_towers()
        return model

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """``PreTrainedModel.from_pretrained`` that loads safetensors only and refuses a checkpoint whose keys do not
        match this architecture (instead of silently initialising the missing weights at random).

        ``new_modules`` (keyword, default none) names modules the checkpoint may lack because a config override
        switches them on (``name_grounding_head`` with ``frame_score="name_grounding"``, to fine-tune a checkpoint
        into one); they start from their initialisation."""
        want_info = kwargs.pop("output_loading_info", False)
        new_modules = tuple(kwargs.pop("new_modules", ()) or ())
        kwargs.setdefault("use_safetensors", True)
        model, info = super().from_pretrained(pretrained_model_name_or_path, *model_args,
                                              output_loading_info=True, **kwargs)
        missing = sorted(key for key in (info.get("missing_keys") or [])
                         if not any(key == module or key.startswith(module + ".") for module in new_modules))
        unexpected = sorted(info.get("unexpected_keys") or [])
        mismatched = sorted(str(m) for m in (info.get("mismatched_keys") or []))
        if missing or unexpected or mismatched:
            parts = []
            for label, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                                ("shape-mismatched keys", mismatched)):
                if keys:
                    shown = ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")
                    parts.append(f"{label}: {shown}")
            raise ValueError(
                f"Checkpoint {pretrained_model_name_or_path} does not match {cls.__name__} ({'; '.join(parts)}). "
                "Use a folder written by save_pretrained for this architecture and config."
            )
        return (model, info) if want_info else model

    def freeze_towers(self, vision_tower: bool = True, sam_image_encoder: bool = True, text_encoder: bool = True
                      ) -> None:
        """Freeze the parts the paper keeps frozen: the MLLM's vision tower, SAM2's image encoder, the text encoder."""
        if vision_tower:
            self.mllm.model.visual.requires_grad_(False)
        if sam_image_encoder:
            self.sam.vision_encoder.requires_grad_(False)
        if text_encoder:
            self.text_encoder.requires_grad_(False)

    # ------------------------------------------------------------------------------------------------ encoders
    def encode_class_names(self, class_input_ids: torch.Tensor, class_attention_mask: torch.Tensor) -> torch.Tensor:
        """One vector per anomaly name.

        Args:
            class_input_ids: ``[B, N, Lc]`` token ids of each name (text-encoder tokenizer).
            class_attention_mask: ``[B, N, Lc]``.

        Returns:
            ``[B, N, E]``.
        """
        batch, names, length = class_input_ids.shape
        ids = class_input_ids.reshape(batch * names, length)
        mask = class_attention_mask.reshape(batch * names, length)
        if not self._text_encoder_trainable():
            return self._cached_class_embeddings(ids, mask).reshape(batch, names, -1)
        return self._pool_text(ids, mask).reshape(batch, names, -1)

    def _text_encoder_trainable(self) -> bool:
        return any(p.requires_grad for p in self.text_encoder.parameters())

    def _cached_class_embeddings(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """A frozen encoder maps the same name to the same vector, so each distinct name is encoded once.

        Keyed by the name's tokens; cleared whenever the text encoder's weights are loaded (training draws names from
        a small vocabulary, and inference encodes a video's names once)."""
        cache: dict[tuple[int, ...], torch.Tensor] = self.__dict__.setdefault("_class_embedding_cache", {})
        keys = [tuple(row[row_mask.bool()].tolist()) for row, row_mask in zip(ids, mask)]
        new_rows: dict[tuple[int, ...], int] = {}
        for row, key in enumerate(keys):
            if key not in cache:
                new_rows.setdefault(key, row)
        if new_rows:
            if len(cache) + len(new_rows) > MAX_CACHED_NAMES:  # open vocabularies (referring expressions)
                cache.clear()
            index = torch.tensor(list(new_rows.values()), device=ids.device)
            with torch.no_grad():
                pooled = self._pool_text(ids[index], mask[index])
            cache.update(zip(new_rows, pooled.detach()))
        return torch.stack([cache[key] for key in keys])

    def _clear_class_embedding_cache(self, *args) -> None:
        self.__dict__.pop("_class_embedding_cache", None)

    def _pool_text(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``[M, Lc]`` token ids -> ``[M, E]`` one vector per name (see ``config.text_pooling``)."""
        out = self.text_encoder(input_ids=ids, attention_mask=mask)
        if self.config.text_pooling == "pooler":
            return out.pooler_output
        if self.config.text_pooling == "cls":
            return out.last_hidden_state[:, 0]
        weights = mask[..., None].to(out.last_hidden_state.dtype)
        return (out.last_hidden_state * weights).sum(1) / weights.sum(1).clamp_min(1.0)

    def train(self, mode: bool = True):
        """A frozen text encoder stays in eval mode (no dropout), so its name vectors are fixed."""
        super().train(mode)
        if not self._text_encoder_trainable():
            self.text_encoder.eval()
        return self

    def encode_frames(self, sam_pixel_values: torch.Tensor) -> SamFrameFeatures:
        """SAM2 image features for ``[B, T, 3, S, S]`` frames (computed once per frame)."""
        return encode_frames(self.sam, sam_pixel_values.flatten(0, 1))

    def _patch_embeddings(self, pixel_values_videos: torch.Tensor) -> torch.Tensor:
        """The vision tower's patch embeddings ``[num_patches, D]`` that static pruning compares."""
        visual = self.mllm.model.visual
        with torch.no_grad():
            return visual.patch_embed(pixel_values_videos.to(visual.dtype))

    def compress_sequence(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                          mm_token_type_ids: torch.Tensor, pixel_values_videos: torch.Tensor,
                          video_grid_thw: torch.Tensor, labels: torch.Tensor | None = None) -> CompressedSequence:
        """Vision tower + token compression, giving the LLM's input with correct 3-D rotary positions.

        Each sample holds exactly one video. Rotary positions are computed on the full sequence first, then every
        token that survives (text, and the centre of each merged visual cluster) keeps its own position.
        """
        base = self.mllm.model
        video_token_id = self.config.mllm_config.video_token_id
        position_ids, _ = base.get_rope_index(input_ids, mm_token_type_ids, video_grid_thw=video_grid_thw,
                                              attention_mask=attention_mask)  # (3, B, S)
        video_tokens = list(base.get_video_features(pixel_values_videos, video_grid_thw).pooler_output)
        is_video = input_ids == video_token_id  # (B, S)
        per_row = is_video.sum(dim=1)
        expected = torch.tensor([len(t) for t in video_tokens], device=per_row.device)
        if len(video_tokens) != input_ids.shape[0] or not torch.equal(per_row, expected):
            raise ValueError(
                f"Each sample must hold exactly one video: got {len(video_tokens)} videos for {input_ids.shape[0]} "
                f"samples, video tokens per sample {per_row.tolist()} vs features {expected.tolist()}."
            )
        keep_masks = None
        if self.config.static_threshold >= 0:
            keep_masks = self.token_compressor.static_keep_mask(self._patch_embeddings(pixel_values_videos),
                                                                video_grid_thw)
        compressed = self.token_compressor(video_tokens, keep_masks)

        # which sequence positions survive: all non-video tokens, and video tokens that are cluster centres
        video_rank = (is_video.cumsum(dim=1) - 1).clamp(min=0)  # (B, S) index among the row's video tokens
        centre = torch.zeros(input_ids.shape[0], int(per_row.max()), dtype=torch.bool, device=input_ids.device)
        rows = torch.arange(input_ids.shape[0], device=input_ids.device)[:, None].expand_as(compressed.kept_index)
        centre[rows[compressed.valid], compressed.kept_index[compressed.valid]] = True
        keep = ~is_video | centre.gather(1, video_rank)
        lengths = keep.sum(dim=1)
        new_len = int(lengths.max())
        order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)[:, :new_len]  # kept first, in order
        in_range = torch.arange(new_len, device=input_ids.device)[None, :] < lengths[:, None]

        new_ids = input_ids.gather(1, order)
        new_mask = attention_mask.gather(1, order) * in_range
        new_positions = position_ids.gather(2, order[None].expand(position_ids.shape[0], -1, -1))
        new_labels = None
        if labels is not None:
            new_labels = labels.gather(1, order).masked_fill(~in_range, -100)
        embeds = self.mllm.get_input_embeddings()(new_ids)
        new_is_video = (new_ids == video_token_id) & in_range
        merged = compressed.tokens[compressed.valid].to(embeds.dtype)
        embeds = embeds.masked_scatter(new_is_video[..., None], merged)
        return CompressedSequence(embeds, new_mask, new_positions, new_ids, new_labels, compressed.lengths())

    # ------------------------------------------------------------------------------------------------ forward
    def forward(
        self,
        input_ids: torch.LongTensor,
        pixel_values_videos: torch.FloatTensor,
        video_grid_thw: torch.LongTensor,
        sam_pixel_values: torch.FloatTensor,
        mm_token_type_ids: torch.IntTensor | None = None,
        attention_mask: torch.LongTensor | None = None,
        class_input_ids: torch.LongTensor | None = None,
        class_attention_mask: torch.LongTensor | None = None,
        class_mask: torch.BoolTensor | None = None,
        class_embeddings: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        target_masks: torch.FloatTensor | None = None,
        name_labels: torch.FloatTensor | None = None,
        grounding_input_ids: torch.LongTensor | None = None,
        grounding_attention_mask: torch.LongTensor | None = None,
        grounding_mask: torch.BoolTensor | None = None,
        grounding_targets: torch.FloatTensor | None = None,
        **kwargs,
    ) -> LavidaOutput:
        """
        Args:
            input_ids: ``[B, S]`` chat prompt with the video placeholder tokens and one ``<SEG>`` in the answer.
            pixel_values_videos: ``[sum patches, C*tp*p*p]``; video_grid_thw: ``[B, 3]`` (MLLM video processor).
            sam_pixel_values: ``[B, T, 3, S_sam, S_sam]`` the same T frames for SAM2.
            mm_token_type_ids: ``[B, S]`` (0 text, 2 video), needed for the multimodal rotary positions.
            attention_mask: ``[B, S]``.
            class_input_ids, class_attention_mask: ``[B, N, Lc]`` anomaly names for the text encoder, or
            class_embeddings: ``[B, N, E]`` precomputed with ``encode_class_names`` (once per video).
            class_mask: ``[B, N]`` bool, False for padding names (default: all real).
            labels: ``[B, S]`` LM labels (-100 where not trained); gives ``lm_loss``.
            target_masks: ``[B, T, H, W]`` binary anomaly masks; gives the segmentation terms and ``loss``.
            name_labels: ``[B, N]`` 1 for the clip's true target names, 0 for distractors; with
                ``frame_score="name_grounding"`` training needs them or the ``grounding_*`` labels (the object-score
                term is then the grounding head's per-(frame, name, pixel) loss).
            grounding_input_ids, grounding_attention_mask: ``[B, M, Lc]``, grounding_mask: ``[B, M]``,
            grounding_targets: ``[B, M, T, H, W]``: names with their own masks for the grounding head's loss instead
                of the prompt's (every object in view and the distractors; ``LavidaDataCollator`` builds them).
        """
        batch, frames = sam_pixel_values.shape[:2]
        self._check_inputs(input_ids, video_grid_thw, frames, class_input_ids, class_embeddings, class_mask,
                           target_masks)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if mm_token_type_ids is None:
            mm_token_type_ids = self._mm_token_type_ids(input_ids)

        sequence = self.compress_sequence(input_ids, attention_mask, mm_token_type_ids, pixel_values_videos,
                                          video_grid_thw, labels)
        if labels is not None:
            llm_out = self.mllm(inputs_embeds=sequence.inputs_embeds, attention_mask=sequence.attention_mask,
                                position_ids=sequence.position_ids, labels=sequence.labels,
                                output_hidden_states=True, use_cache=False)
            last_hidden, lm_loss = llm_out.hidden_states[-1], llm_out.loss
        else:  # no LM head needed: only the hidden state at <SEG>
            llm_out = self.mllm.model(inputs_embeds=sequence.inputs_embeds, attention_mask=sequence.attention_mask,
                                      position_ids=sequence.position_ids, use_cache=False)
            last_hidden, lm_loss = llm_out.last_hidden_state, None
        seg_hidden = self._seg_hidden_state(last_hidden, sequence.input_ids, sequence.attention_mask)  # (B, D)

        if class_embeddings is None:
            class_embeddings = self.encode_class_names(class_input_ids, class_attention_mask)
        if class_mask is None:
            class_mask = torch.ones(class_embeddings.shape[:2], dtype=torch.bool, device=class_embeddings.device)

        features = self.encode_frames(sam_pixel_values)
        prompts = self.semantic_projector(seg_hidden, class_embeddings, class_mask.bool(), features.lowest,
                                          features.lowest_positional, frames)  # (BT, S)
        name_prompts = name_mask = None
        if self.name_prompt_encoder is not None:
            name_prompts = self.name_prompt_encoder(class_embeddings).repeat_interleave(frames, dim=0)  # (BT, N, S)
            name_mask = class_mask.bool().repeat_interleave(frames, dim=0)
        prediction = decode_anomaly_masks(self.sam, features, prompts, name_prompts, name_mask)
        frame_logits, presence = prediction.object_logits, None  # (BT,)
        if self.name_grounding_head is not None:
            real_names = class_mask.bool().repeat_interleave(frames, dim=0)  # (BT, N)
            pixels = self.name_grounding_head.pixel_embeddings(features.feature_maps)  # (BT, D, h, w)
            grounding_maps = self.name_grounding_head(pixels, class_embeddings, frames)  # (BT, N, h, w)
            # a padding name is never the most present one
            presence = name_presence_logits(grounding_maps).masked_fill(~real_names, torch.finfo(
                grounding_maps.dtype).min)  # (BT, N)
            frame_logits = presence.amax(dim=-1)

        output = LavidaOutput(
            lm_loss=lm_loss,
            frame_logits=frame_logits.reshape(batch, frames),
            name_logits=None if presence is None else presence.reshape(batch, frames, -1),
            mask_logits=prediction.best_by_predicted_iou().reshape(batch, frames, *prediction.mask_logits.shape[-2:]),
            iou_scores=prediction.iou_scores.reshape(batch, frames, -1),
            candidate_mask_logits=prediction.mask_logits.reshape(batch, frames, *prediction.mask_logits.shape[1:]),
            seg_hidden_state=seg_hidden,
            num_visual_tokens=sequence.num_visual_tokens,
        )
        if target_masks is not None:
            grounding_loss = None
            if presence is not None:
                grounding_loss = self._grounding_loss(pixels, frames, grounding_maps, real_names, name_labels,
                                                      target_masks, grounding_input_ids, grounding_attention_mask,
                                                      grounding_mask, grounding_targets)
            terms = self.loss_function_lavida(prediction.mask_logits, prediction.iou_scores, frame_logits,
                                              target_masks.flatten(0, 1), lm_loss, grounding_loss)
            output.loss = terms.loss
            output.lm_loss = terms.lm_loss
            output.focal_loss = terms.focal_loss
            output.dice_loss = terms.dice_loss
            output.iou_loss = terms.iou_loss
            output.object_score_loss = terms.object_score_loss
        return output

    # ------------------------------------------------------------------------------------------------ helpers
    def _grounding_loss(self, pixels: torch.Tensor, frames: int, listed_maps: torch.Tensor, real_names: torch.Tensor,
                        name_labels: torch.Tensor | None, target_masks: torch.Tensor,
                        grounding_input_ids: torch.Tensor | None, grounding_attention_mask: torch.Tensor | None,
                        grounding_mask: torch.Tensor | None, grounding_targets: torch.Tensor | None) -> torch.Tensor:
        """The name-grounding head's loss: on the ``grounding_*`` names and masks when given (matched against the same
        ``pixels [BT, D, h, w]``), else on the prompt's names (``listed_maps [BT, N, h, w]``, ``real_names [BT, N]``)
        with the target mask for the true ones."""
        weight = self.config.grounding_positive_weight
        if grounding_targets is not None:
            embeddings = self.encode_class_names(grounding_input_ids, grounding_attention_mask)
            maps = self.name_grounding_head(pixels, embeddings, frames)  # (BT, M, h, w)
            targets = grounding_targets.transpose(1, 2).flatten(0, 1)  # (BT, M, H, W)
            return name_grounding_loss(maps, grounding_mask.bool().repeat_interleave(frames, dim=0), targets, weight)
        if name_labels is None:
            raise ValueError("frame_score 'name_grounding' trains on name_labels ([B, N], 1 for the clip's true target "
                             "names) or on grounding_* labels: pass the corpus rows' name_labels (or object_names and "
                             "object_masks) through LavidaDataCollator.")
        targets = listed_name_targets(target_masks.flatten(0, 1), name_labels.repeat_interleave(frames, dim=0))
        return name_grounding_loss(listed_maps, real_names, targets, weight)

    def _mm_token_type_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        types = torch.zeros_like(input_ids, dtype=torch.int)
        types[input_ids == self.config.mllm_config.image_token_id] = 1
        types[input_ids == self.config.mllm_config.video_token_id] = 2
        return types

    def _seg_hidden_state(self, hidden: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
                          ) -> torch.Tensor:
        """``[B, D]`` hidden state at the last ``<SEG>`` of each row."""
        is_seg = (input_ids == self.config.seg_token_id) & attention_mask.bool()
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)[None, :]
        last = torch.where(is_seg, positions, torch.full_like(positions, -1)).amax(dim=1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]

    def _check_inputs(self, input_ids, video_grid_thw, frames, class_input_ids, class_embeddings, class_mask,
                      target_masks) -> None:
        seg_id = self.config.seg_token_id
        if seg_id is None:
            raise ValueError("config.seg_token_id is not set: add the <SEG> token to the tokenizer "
                             "(LavidaForVideoAnomalyDetection.from_components does) and record its id.")
        missing = (~(input_ids == seg_id).any(dim=1)).nonzero().flatten().tolist()
        if missing:
            raise ValueError(f"No <SEG> token (id {seg_id}) in input_ids of sample(s) {missing}: the prompt's "
                             "answer must contain <SEG>; build inputs with LavidaProcessor.")
        if class_embeddings is None and class_input_ids is None:
            raise ValueError("Give the anomaly names as class_input_ids (+ class_attention_mask) or class_embeddings.")
        names = class_embeddings if class_embeddings is not None else class_input_ids
        if names.shape[1] == 0:
            raise ValueError("The class (anomaly name) list is empty: give at least one anomaly name.")
        if class_mask is not None and not bool(class_mask.bool().any(dim=1).all()):
            empty = (~class_mask.bool().any(dim=1)).nonzero().flatten().tolist()
            raise ValueError(f"The class (anomaly name) list of sample(s) {empty} is empty: give at least one name.")
        temporal_patch = self.config.mllm_config.vision_config.temporal_patch_size
        # a single frame (an image sample) is one temporal patch: the video processor repeats it to fill the patch
        groups = video_grid_thw[:, 0].tolist()
        if any(g != -(-frames // temporal_patch) for g in groups):
            raise ValueError(f"Frame count mismatch: sam_pixel_values has {frames} frames per sample but the MLLM "
                             f"video input has {groups} temporal patches of {temporal_patch} frames "
                             "(video_grid_thw[:, 0]); give the same frames to both.")
        if target_masks is not None and target_masks.shape[1] != frames:
            raise ValueError(f"Frame count mismatch: target_masks has {target_masks.shape[1]} frames, "
                             f"sam_pixel_values has {frames}.")


__all__ = ["CompressedSequence", "LavidaForVideoAnomalyDetection", "LavidaOutput", "LavidaPreTrainedModel"]
