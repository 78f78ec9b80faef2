"""Configuration of LAVIDA (Dai et al., "LAVIDA", CVPR 2026, arXiv 2602.19248).

``LavidaConfig`` is a composite config: three sub-configs for the pretrained towers (a Qwen-VL family video MLLM,
SAM2, a class-name text encoder) plus LAVIDA's own hyper-parameters (semantic projector, token compression, loss
weights, the ``<SEG>`` token). Full-size defaults follow the paper; ``LavidaConfig.tiny()`` gives a config whose
forward + backward runs on a CPU in well under a second.

This file is copied next to saved weights for ``trust_remote_code`` loading, so it imports only ``transformers``.
"""

from __future__ import annotations

from transformers import AutoConfig
from transformers.configuration_utils import PreTrainedConfig, SubConfigSpec

# Special tokens of the small byte-level tokenizer that tiny configs use (ids 256.. in this order).
TINY_SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<SEG>",
)
TINY_BYTE_VOCAB_SIZE = 256
TEXT_POOLING_MODES = ("pooler", "mean", "cls")
MASK_CANDIDATE_TRAINING_MODES = ("lowest_loss", "all")
MASK_LOSS_NORMALIZATION_MODES = ("all_frames", "positive_frames")
QFORMER_ACTIVATIONS = ("relu", "gelu")
FRAME_SCORE_MODES = ("object_score", "name_grounding")
MASK_SOURCE_MODES = ("decoder", "name_grounding", "gated", "gated_or_names")
GROUNDING_IMAGE_INPUTS = ("rgb", "edges", "oriented_edges")
GROUNDING_HEADS = ("pooled_name", "word_attributes")
MODULE_DTYPE_NAMES = ("float32", "bfloat16", "float16", "float64")

# Qwen2-VL-7B-Instruct (text side) and SAM 2.1 Hiera-Small, the paper's towers.
_QWEN2_VL_7B_TEXT = {
    "vocab_size": 152064,
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "max_position_embeddings": 32768,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
}
_QWEN2_VL_7B_VISION = {"depth": 32, "embed_dim": 1280, "hidden_size": 3584, "num_heads": 16, "mlp_ratio": 4}
_SAM21_HIERA_SMALL_BACKBONE = {
    "model_type": "sam2_hiera_det_model",
    "blocks_per_stage": [1, 2, 11, 2],
    "global_attention_blocks": [7, 10, 13],
    "window_positional_embedding_background_size": [7, 7],
}


class LavidaConfig(PreTrainedConfig):
    r"""
    mllm_config (`dict` or `PreTrainedConfig`, *optional*):
        Config of the video MLLM (Qwen2-VL, Qwen2.5-VL or Qwen3-VL). Defaults to Qwen2-VL-7B-Instruct's.
    sam_config (`dict` or `Sam2Config`, *optional*):
        Config of SAM2. Defaults to SAM 2.1 Hiera-Small.
    text_encoder_config (`dict` or `PreTrainedConfig`, *optional*):
        Config of the class-name text encoder: a CLIP text tower (``clip_text_model``) or a BERT-style sentence
        encoder (``bert``, e.g. all-MiniLM-L6-v2). Defaults to CLIP ViT-B/32's text tower.
    text_pooling (`str`, defaults to `"pooler"`):
        How one vector per name is taken from the text encoder: ``"pooler"`` (CLIP's pooled EOS output),
        ``"mean"`` (attention-masked mean, as sentence-transformers models are trained) or ``"cls"``.
    projector_hidden_size (`int`, defaults to 768): width of the semantic projector.
    num_queries (`int`, defaults to 48): learnable queries of the two-way Q-Former.
    qformer_layers (`int`, defaults to 5): two-way attention blocks of the Q-Former.
    qformer_heads (`int`, defaults to 12), qformer_mlp_dim (`int`, defaults to 2048),
    qformer_dropout (`float`, defaults to 0.0): Q-Former block sizes (SAM style). SAM2's two-way block, which the
        authors' code uses, has no dropout.
    qformer_activation (`str`, defaults to `"relu"`): activation of the Q-Former blocks' MLP, ``"relu"`` (SAM2's
        two-way block, the authors' code) or ``"gelu"``.
    qformer_readd_positions (`bool`, defaults to `True`): as SAM2's two-way block, add each sequence's positional
        embedding to the attention queries and keys (never to the values) before every Q-Former attention. The
        Q-Former's sequences have no spatial layout, so their positional embeddings are their own inputs: the
        learnable queries for the queries (as SAM2 uses its prompt tokens) and the ``[f_sem; names]`` tokens as they
        enter the Q-Former for the tokens. ``False``: the inputs enter once, at the first block, and are not re-added.
    cross_attention_heads (`int`, defaults to 8): heads of the name-to-frame cross-attention.
    attention_downsample_rate (`int`, defaults to 2): SAM-style attention downsampling (internal width / rate).
    compression_ratio (`float`, defaults to 0.5): share of visual tokens kept by density-based merging
        (1.0 disables merging).
    lof_k (`int`, defaults to 8): neighbours of the local outlier factor density.
    static_threshold (`float`, defaults to 0.01): mean ``1 - cos`` below which a 2x2 unit is static background;
        a negative value disables static pruning.
    seg_token (`str`, defaults to `"<SEG>"`), seg_token_id (`int`, *optional*): the segmentation token and its id
        in the MLLM's vocabulary (set when the token is added to the tokenizer).
    lm_loss_weight, focal_loss_weight, dice_loss_weight, iou_loss_weight, object_score_loss_weight
        (`float`, defaults to 1 / 20 / 2 / 1 / 2): weights of the mixed loss.
    focal_alpha (`float`, defaults to 0.25), focal_gamma (`float`, defaults to 2.0): sigmoid focal loss.
    mask_candidate_training (`str`, defaults to `"lowest_loss"`): which of SAM2's three candidate masks the focal,
        dice and IoU terms train. ``"lowest_loss"`` is the paper's (only the candidate with the lowest
        ``20 * focal + 2 * dice``); ``"all"`` trains every candidate on the target. A named object is not an ambiguous
        prompt the way a single click is, and with ``"lowest_loss"`` a decoder trained from scratch can put a
        different visible object in each candidate and meet the mask loss without reading the names.
    mask_loss_normalization (`str`, defaults to `"all_frames"`): what the focal, dice and IoU sums over the frames
        with a non-empty target are divided by. ``"all_frames"`` (the authors' code, SAM2-style: every frame of the
        batch, empty ones included) or ``"positive_frames"`` (the frames with a non-empty target only, so the mask
        terms do not shrink when a batch holds normal frames).
    name_prompt_tokens (`bool`, defaults to `False`): a departure from the paper for models whose projector is trained
        from scratch: SAM2's mask decoder also gets one sparse prompt token per anomaly name (a two-layer MLP of the
        name vector, ``NamePromptEncoder``) next to the projector's prompt, so each name can look for its object in
        the frame through the decoder's own token-to-image attention. The paper's recipe leaves it off.
    frame_score (`str`, defaults to `"object_score"`): where the per-frame anomaly logit comes from.
        ``"object_score"`` is the paper's (SAM2's object-score logit). ``"name_grounding"`` is a departure for models
        whose object-score token does not read the names: ``NameGroundingHead`` matches every name against every
        pixel of SAM2's image features, and the frame logit is the best (name, pixel) match over the listed names.
        Training then has one label per (frame, name, pixel), from the rows' ``name_labels``.
    grounding_hidden_size (`int`, defaults to 64), grounding_embedding_size (`int`, defaults to 32): widths of the
        name-grounding head's pixel encoder and of the space names and pixels are matched in.
    grounding_positive_weight (`float`, defaults to 10.0): weight of the positive pixels in its per-pixel BCE.
    grounding_name_slots (`int`, defaults to 1): queries the name-grounding head makes of each name vector. With 1 a
        name's pixel logit is one dot product. With K > 1 each name gives K queries, each matched against the pixels
        on its own, and the name is at a pixel only when all K are (its probability is the product of theirs): a
        compositional name ("purple hexagon") can then be matched as several attributes that must meet at one place,
        so an object sharing only one of them (a purple circle) is not taken for it.
    grounding_image_channels (`int`, defaults to 0): width of a small convolutional encoder of the frame itself (SAM2's
        input pixels, stride 4) whose features join SAM2's FPN features in the head's pixel encoder; 0 = none. SAM2's
        image features, trained to segment the named object, need not keep an object's shape (a uniformly coloured
        blob is segmented by its colour); this encoder gives the head shape evidence of its own.
    grounding_image_input (`str`, defaults to `"rgb"`): what that encoder sees: ``"rgb"``, the frame; ``"edges"``, a
        binary map of the frame's colour edges (``frame_edges``), the same for an outline whatever its colours, so the
        shape evidence it learns cannot be tied to one colour; ``"oriented_edges"``, two such maps, steps to the pixel
        on the right and to the pixel below (``frame_edge_directions``), which tell which way an outline runs. The
        ``word_attributes`` head's shape map reads ``"oriented_edges"`` when set and the merged edges otherwise.
    grounding_image_stem_channels (`int`, defaults to 0): a stride-1 ``3x3`` conv to this many channels in front of
        that encoder, at its input's full resolution; 0 = none.
    grounding_head (`str`, defaults to `"pooled_name"`): which name-grounding head. ``"pooled_name"``
        (``NameGroundingHead``): one vector per name matched against SAM2's image features (and the options above).
        ``"word_attributes"`` (``WordAttributeGroundingHead``): each word of a name encoded alone and matched
        against a colour map (per pixel, no spatial context) and a shape map (a CNN of the frame's edges, of width
        ``grounding_image_channels``, which must be > 0); a name is where all its words are. The head then cannot
        hold a pair of words, so names whose words were seen in other pairs are read as well as the words. The words
        are the tokenizer's (``class_word_ids`` from ``LavidaProcessor.encode_names``: a word split into several
        pieces is one word), each encoded between its name's special tokens (BERT's ``[CLS] ... [SEP]``, as the
        bundled all-MiniLM-L6-v2's).
    mask_source (`str`, defaults to `"decoder"`): where the returned anomaly map (``mask_logits``) comes from; an
        inference-time choice (training always trains SAM2's candidate masks). ``"decoder"`` is the paper's: the mask
        decoder's candidate with the highest predicted IoU. With the name-grounding head (``frame_score=
        "name_grounding"``) two more: ``"name_grounding"``, the head's per-pixel name logits, highest over the listed
        names (the map's maximum is the frame logit, but only a few cells of an object match strongly), and
        ``"gated"``: each object the decoder outlines (its mask above ``mask_object_threshold``) takes the best
        name-map logit found on it, so an object is as anomalous as its best match to a listed name and the whole
        object is covered. A decoder that learnt to outline whatever is in view marks normal objects as strongly as
        the named one; ``"gated"`` keeps its outlines and takes the choice of object from the names; outside them a
        pixel keeps the lower of the decoder's and the name map's logits. ``"gated_or_names"``: the same inside the
        decoder's objects, and the name map outside them, so an anomaly the decoder does not outline (or outlines in
        part) is still marked where the names find it.
    mask_object_threshold (`float`, defaults to 0.12): with ``mask_source="gated"`` or ``"gated_or_names"``, the
        decoder mask probability above which a pixel belongs to an object (low: the decoder's probability on a
        held-out object is often modest, and the name map decides which object is anomalous).
    module_dtypes (`dict[str, str]`, *optional*): the parameter dtype of each part of a model whose parts do not share
        one dtype (a bfloat16 MLLM next to a float32 projector and SAM2, float32 trainable weights inside a bfloat16
        tower), written by ``save_pretrained``: ``{"": root dtype, "module.or.parameter.name": dtype, ...}``, a deeper
        name overriding a shallower one. The model is built with these dtypes, so ``from_pretrained`` without an
        explicit ``dtype`` restores each part in the dtype it was saved with; ``None`` when all parameters share one
        dtype (``dtype`` then says which).
    training_domain (`str`, *optional*): in a few words, the footage the weights were trained on (e.g. "synthetic
        videos of coloured shapes only"), shown to users of a model that only knows a narrow world (``lavida detect``,
        ``result.json``, the Space); ``None`` (the default, for user checkpoints) says nothing.
    """

    model_type = "lavida"
    sub_configs_defaults = {
        "mllm_config": SubConfigSpec(config_class=AutoConfig, model_type="qwen2_vl"),
        "sam_config": SubConfigSpec(config_class=AutoConfig, model_type="sam2"),
        "text_encoder_config": SubConfigSpec(config_class=AutoConfig, model_type="clip_text_model"),
    }

    mllm_config: dict | PreTrainedConfig | None = None
    sam_config: dict | PreTrainedConfig | None = None
    text_encoder_config: dict | PreTrainedConfig | None = None
    text_pooling: str = "pooler"

    projector_hidden_size: int = 768
    num_queries: int = 48
    qformer_layers: int = 5
    qformer_heads: int = 12
    qformer_mlp_dim: int = 2048
    qformer_dropout: float = 0.0
    qformer_activation: str = "relu"
    qformer_readd_positions: bool = True
    cross_attention_heads: int = 8
    attention_downsample_rate: int = 2

    compression_ratio: float = 0.5
    lof_k: int = 8
    static_threshold: float = 0.01

    seg_token: str = "<SEG>"
    seg_token_id: int | None = None

    lm_loss_weight: float = 1.0
    focal_loss_weight: float = 20.0
    dice_loss_weight: float = 2.0
    iou_loss_weight: float = 1.0
    object_score_loss_weight: float = 2.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0

    mask_candidate_training: str = "lowest_loss"
    mask_loss_normalization: str = "all_frames"
    name_prompt_tokens: bool = False
    frame_score: str = "object_score"
    grounding_hidden_size: int = 64
    grounding_embedding_size: int = 32
    grounding_positive_weight: float = 10.0
    grounding_name_slots: int = 1
    grounding_image_channels: int = 0
    grounding_image_input: str = "rgb"
    grounding_image_stem_channels: int = 0
    grounding_head: str = "pooled_name"
    mask_source: str = "decoder"
    mask_object_threshold: float = 0.12

    initializer_range: float = 0.02
    module_dtypes: dict[str, str] | None = None
    training_domain: str | None = None

    def __post_init__(self, **kwargs):
        # Paper defaults for the towers when none is given (the library defaults are other sizes).
        if self.mllm_config is None:
            self.mllm_config = {"model_type": "qwen2_vl", "text_config": dict(_QWEN2_VL_7B_TEXT),
                                "vision_config": dict(_QWEN2_VL_7B_VISION)}
        if self.sam_config is None:
            self.sam_config = {"model_type": "sam2",
                               "vision_config": {"model_type": "sam2_vision_model",
                                                 "backbone_config": dict(_SAM21_HIERA_SMALL_BACKBONE)}}
        super().__post_init__(**kwargs)
        self.validate_lavida_fields()

    def validate_lavida_fields(self) -> None:
        """Fail early on values the model cannot run with, naming the field and value."""
        if self.module_dtypes is not None:
            wrong = {name: dtype for name, dtype in self.module_dtypes.items() if dtype not in MODULE_DTYPE_NAMES}
            if wrong or "" not in self.module_dtypes:
                raise ValueError(f"module_dtypes must map module names to one of {MODULE_DTYPE_NAMES} and include the "
                                 f"root entry '': got {self.module_dtypes!r}.")
        if not 0.0 < self.compression_ratio <= 1.0:
            raise ValueError(f"compression_ratio must be in (0, 1], got {self.compression_ratio}.")
        if self.lof_k < 1:
            raise ValueError(f"lof_k must be >= 1, got {self.lof_k}.")
        if self.mask_candidate_training not in MASK_CANDIDATE_TRAINING_MODES:
            raise ValueError(f"mask_candidate_training must be one of {MASK_CANDIDATE_TRAINING_MODES}, "
                             f"got {self.mask_candidate_training!r}.")
        if self.mask_loss_normalization not in MASK_LOSS_NORMALIZATION_MODES:
            raise ValueError(f"mask_loss_normalization must be one of {MASK_LOSS_NORMALIZATION_MODES}, "
                             f"got {self.mask_loss_normalization!r}.")
        if self.qformer_activation not in QFORMER_ACTIVATIONS:
            raise ValueError(f"qformer_activation must be one of {QFORMER_ACTIVATIONS}, "
                             f"got {self.qformer_activation!r}.")
        if self.frame_score not in FRAME_SCORE_MODES:
            raise ValueError(f"frame_score must be one of {FRAME_SCORE_MODES}, got {self.frame_score!r}.")
        if self.mask_source not in MASK_SOURCE_MODES:
            raise ValueError(f"mask_source must be one of {MASK_SOURCE_MODES}, got {self.mask_source!r}.")
        if not 0.0 < self.mask_object_threshold < 1.0:
            raise ValueError(f"mask_object_threshold must be in (0, 1), got {self.mask_object_threshold}.")
        if self.grounding_image_input not in GROUNDING_IMAGE_INPUTS:
            raise ValueError(f"grounding_image_input must be one of {GROUNDING_IMAGE_INPUTS}, got "
                             f"{self.grounding_image_input!r}.")
        if self.grounding_image_stem_channels < 0:
            raise ValueError(f"grounding_image_stem_channels must be >= 0 (0 = no full-resolution first conv), got "
                             f"{self.grounding_image_stem_channels}.")
        if self.grounding_image_channels < 0:
            raise ValueError(f"grounding_image_channels must be >= 0 (0 = no image encoder), got "
                             f"{self.grounding_image_channels}.")
        if self.grounding_head not in GROUNDING_HEADS:
            raise ValueError(f"grounding_head must be one of {GROUNDING_HEADS}, got {self.grounding_head!r}.")
        if self.grounding_head == "word_attributes" and self.grounding_image_channels < 1:
            raise ValueError("grounding_head 'word_attributes' reads shape from a CNN of the frame's edges: set "
                             f"grounding_image_channels >= 1 (its width), got {self.grounding_image_channels}.")
        if self.mask_source != "decoder" and self.frame_score != "name_grounding":
            raise ValueError(f"mask_source {self.mask_source!r} reads the name-grounding head's maps, which only a "
                             "model with frame_score='name_grounding' has; use mask_source='decoder'.")
        if self.text_pooling not in TEXT_POOLING_MODES:
            raise ValueError(f"text_pooling must be one of {TEXT_POOLING_MODES}, got {self.text_pooling!r}.")
        for name in ("projector_hidden_size", "num_queries", "qformer_layers", "qformer_heads", "grounding_hidden_size",
                     "grounding_embedding_size", "grounding_name_slots"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
        for heads_field in ("qformer_heads", "cross_attention_heads"):
            internal = self.projector_hidden_size // self.attention_downsample_rate
            if internal % getattr(self, heads_field) != 0:
                raise ValueError(
                    f"projector_hidden_size / attention_downsample_rate = {internal} must be divisible by "
                    f"{heads_field} = {getattr(self, heads_field)}."
                )

    # ----------------------------------------------------------------------------------------------------------
    @property
    def _attn_implementation(self):
        return self._attn_implementation_internal

    @_attn_implementation.setter
    def _attn_implementation(self, value: str | dict | None) -> None:
        """A plain string (``attn_implementation="flash_attention_2"`` given to ``from_pretrained``,
        ``AutoModel.from_pretrained`` or this config) names the MLLM's attention implementation: SAM2, the text encoder
        and LAVIDA's own modules keep theirs (they may not support it, e.g. flash attention on float32 weights). A
        mapping of sub-config names (``mllm_config``, ``sam_config``, ``text_encoder_config``, ``""`` for LAVIDA) sets
        each part."""
        if isinstance(value, str):
            value = {"mllm_config": value}
        PreTrainedConfig._attn_implementation.fset(self, value)

    @property
    def mllm_hidden_size(self) -> int:
        """Hidden size of the MLLM's language model (the size of ``f_sem``)."""
        return self.mllm_config.get_text_config().hidden_size

    @property
    def text_embedding_size(self) -> int:
        """Width of one class-name vector from the text encoder."""
        return self.text_encoder_config.hidden_size

    @property
    def sam_prompt_size(self) -> int:
        """Width of SAM2's prompt tokens (256 at full size)."""
        return self.sam_config.mask_decoder_config.hidden_size

    @property
    def sam_image_size(self) -> int:
        return self.sam_config.prompt_encoder_config.image_size

    @classmethod
    def tiny(cls, text_encoder_config: dict | PreTrainedConfig | None = None, **kwargs) -> "LavidaConfig":
        """A small config with the full architecture: builds in milliseconds, forward + backward well under 1 s.

        The MLLM uses the small byte-level vocabulary of ``TINY_SPECIAL_TOKENS`` (264 ids). SAM2 runs at 128 px.
        ``text_encoder_config`` defaults to a 2-layer CLIP text tower with a byte vocabulary.
        """
        ids = {token: TINY_BYTE_VOCAB_SIZE + i for i, token in enumerate(TINY_SPECIAL_TOKENS)}
        vocab_size = TINY_BYTE_VOCAB_SIZE + len(TINY_SPECIAL_TOKENS)
        mllm = {
            "model_type": "qwen2_vl",
            "text_config": {
                "vocab_size": vocab_size, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 4096,
                "bos_token_id": None, "eos_token_id": ids["<|im_end|>"], "pad_token_id": ids["<|endoftext|>"],
                "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 2, 2]},
            },
            "vision_config": {"depth": 2, "embed_dim": 32, "hidden_size": 64, "num_heads": 4, "mlp_ratio": 2},
            "image_token_id": ids["<|image_pad|>"],
            "video_token_id": ids["<|video_pad|>"],
            "vision_start_token_id": ids["<|vision_start|>"],
            "vision_end_token_id": ids["<|vision_end|>"],
            "tie_word_embeddings": False,
        }
        sam = {
            "model_type": "sam2",
            "vision_config": {
                "model_type": "sam2_vision_model",
                "backbone_config": {
                    "model_type": "sam2_hiera_det_model", "image_size": [128, 128], "hidden_size": 12,
                    "blocks_per_stage": [1, 2, 2, 1], "embed_dim_per_stage": [12, 24, 48, 96],
                    "num_attention_heads_per_stage": [1, 1, 1, 1], "global_attention_blocks": [4],
                    "window_size_per_stage": [8, 4, 4, 4],
                },
                "backbone_channel_list": [96, 48, 24, 12],
                "backbone_feature_sizes": [[32, 32], [16, 16], [8, 8]],
                "fpn_hidden_size": 32,
            },
            "prompt_encoder_config": {"hidden_size": 32, "image_size": 128, "patch_size": 16},
            "mask_decoder_config": {"hidden_size": 32, "mlp_dim": 64, "num_hidden_layers": 2,
                                    "num_attention_heads": 2, "iou_head_hidden_dim": 32},
        }
        if text_encoder_config is None:
            text_encoder_config = {
                "model_type": "clip_text_model", "vocab_size": vocab_size, "hidden_size": 32,
                "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                "max_position_embeddings": 77, "projection_dim": 32, "eos_token_id": ids["<|im_end|>"],
                "bos_token_id": ids["<|im_start|>"], "pad_token_id": ids["<|endoftext|>"],
            }
        defaults = {
            "mllm_config": mllm,
            "sam_config": sam,
            "text_encoder_config": text_encoder_config,
            "projector_hidden_size": 32,
            "num_queries": 4,
            "qformer_layers": 2,
            "qformer_heads": 2,
            "qformer_mlp_dim": 64,
            "qformer_dropout": 0.0,
            "cross_attention_heads": 2,
            "lof_k": 4,
            "seg_token_id": ids["<SEG>"],
        }
        defaults.update(kwargs)
        return cls(**defaults)


__all__ = ["LavidaConfig", "TINY_SPECIAL_TOKENS", "TINY_BYTE_VOCAB_SIZE"]
