"""Frame score from per-name pixel maps (``LavidaConfig.frame_score = "name_grounding"``).

Not in the paper, where the frame score is SAM2's object-score logit. A decoder trained from scratch at small sizes
learns to put its mask on the visible object that best matches the names (a choice among what is in view) but its
object-score token never learns whether any listed object is there at all: its frame score stays the same when the
names change. ``NameGroundingHead`` decides presence by matching instead of by attention: it embeds every pixel of
SAM2's image features (all FPN levels, before any prompt is seen) and every anomaly name into one space, and a
name's logit at a pixel is their scaled dot product. A name is as present as its best pixel; a frame is as anomalous
as its most present name. Because the pixel embeddings never see the names, the score cannot be met without reading
them.

The same maps can give the returned anomaly map (``LavidaConfig.mask_source``): ``name_anomaly_map`` is the best
listed name at each pixel, and ``object_gated_logits`` gives each object the mask decoder outlines the best match found
on it (the decoder outlines every object in view, named or not; the names decide which one is anomalous).

Training gets a label per (frame, name, pixel): a name's map is its object's mask, a distractor's map is empty
everywhere, near misses included (a listed "red circle" next to a visible red square); see ``name_grounding_loss``.
The names are the prompt's (its true names get the target mask), or, when the corpus gives every object in view with
its own mask (``object_labels``), those objects' names and the prompt's distractors: then every object teaches the
head, named in the prompt or not.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .configuration_lavida import LavidaConfig

# most (name, pixel) pairs are negative: the logit bias starts near their rate, as detection heads do
INITIAL_LOGIT_BIAS = -4.0


# a colour edge: some channel of SAM2's normalised input (about 1 per 60 grey levels) changes by more than this between
# neighbouring pixels
EDGE_STEP = 0.5


def frame_edge_directions(frames: torch.Tensor, step: float = EDGE_STEP) -> torch.Tensor:
    """``[BT, C, S, S]`` frames -> ``[BT, 2, S, S]`` binary steps by direction: channel 0 is 1.0 where some channel
    changes by more than ``step`` to the next pixel right (an outline running up and down), channel 1 where it does to
    the pixel below (an outline running across). Kept apart, the two say which way an outline runs at each pixel,
    which separates a hexagon's straight sides from a circle's arc at a few pixels across."""
    right = (frames[..., :, 1:] - frames[..., :, :-1]).abs().amax(dim=1, keepdim=True)  # (BT, 1, S, S-1)
    below = (frames[..., 1:, :] - frames[..., :-1, :]).abs().amax(dim=1, keepdim=True)  # (BT, 1, S-1, S)
    edges = frames.new_zeros(frames.shape[0], 2, *frames.shape[-2:])
    edges[:, 0, :, :-1] = (right[:, 0] > step).to(frames.dtype)
    edges[:, 1, :-1, :] = (below[:, 0] > step).to(frames.dtype)
    return edges


def frame_edges(frames: torch.Tensor, step: float = EDGE_STEP) -> torch.Tensor:
    """``[BT, C, S, S]`` frames -> ``[BT, 1, S, S]`` 1.0 where some channel changes by more than ``step`` to the next
    pixel right or below, else 0.0: an object's outline, the same whatever its colours (``frame_edge_directions``
    merged)."""
    return frame_edge_directions(frames, step).amax(dim=1, keepdim=True)


# the channels of each ``grounding_image_input``, as ``image_input`` gives it to the frame CNN
IMAGE_INPUT_CHANNELS = {"rgb": 3, "edges": 1, "oriented_edges": 2}


def image_input(frames: torch.Tensor, kind: str) -> torch.Tensor:
    """The frame CNN's input for ``grounding_image_input`` ``kind``: the frames themselves (``"rgb"``), ``frame_edges``
    or ``frame_edge_directions``."""
    if kind == "rgb":
        return frames
    return frame_edge_directions(frames) if kind == "oriented_edges" else frame_edges(frames)


class FrameShapeEncoder(nn.Module):
    """A small CNN on the frame: two stride-2 ``3x3`` convs, then two dilated ``3x3`` convs (dilation 2 and 4) so that
    each output cell sees about 40 input pixels, an object's whole outline at the sizes the head is used at. With
    ``stem_channels`` a stride-1 ``3x3`` conv to that many channels comes first, at the input's full resolution (where
    an outline's direction is still a pixel pattern, before any stride averages it away).

    ``[BT, C, S, S]`` -> ``[BT, width, S / 4, S / 4]`` (C = ``in_channels``: 3 for the frame, 1 or 2 for its edges).
    """

    def __init__(self, width: int, in_channels: int = 3, stem_channels: int = 0):
        super().__init__()
        stem = [nn.Conv2d(in_channels, stem_channels, 3, padding=1), nn.GELU()] if stem_channels else []
        self.layers = nn.Sequential(
            *stem,
            nn.Conv2d(stem_channels or in_channels, max(width // 2, 1), 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(max(width // 2, 1), width, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(width, width, 3, padding=2, dilation=2), nn.GELU(),
            nn.Conv2d(width, width, 3, padding=4, dilation=4),
        )

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.layers(frames)


class NameGroundingHead(nn.Module):
    """Per-name pixel logits from SAM2's FPN features and the class-name vectors.

    pixels: the FPN levels upsampled to the finest one and concatenated, ``1x1`` conv, two ``3x3`` convs, ``1x1``
    conv to ``grounding_embedding_size``; names: ``Linear(E -> P)``, GELU, ``Linear(P -> K * grounding_embedding_size)``
    (K = ``grounding_name_slots`` queries per name); a query's logit = ``scale * <query, pixel> / sqrt(dim) + bias / K``
    (scale and bias learned), and with K > 1 the name's logit is that of the product of its queries' probabilities (all
    K must match at the pixel). The pixel embeddings do not depend on the names, so one ``pixel_embeddings`` call
    serves every name list of the same frames.
    """

    initial_logit_bias = INITIAL_LOGIT_BIAS
    reads_sam_features = True

    def __init__(self, config: LavidaConfig):
        super().__init__()
        vision = config.sam_config.vision_config
        levels = len(vision.backbone_feature_sizes)
        hidden, dim = config.grounding_hidden_size, config.grounding_embedding_size
        width = config.grounding_image_channels
        self.image_input = config.grounding_image_input
        self.image_encoder = (FrameShapeEncoder(width, IMAGE_INPUT_CHANNELS[self.image_input],
                                                config.grounding_image_stem_channels) if width > 0 else None)
        self.pixel_encoder = nn.Sequential(
            nn.Conv2d(levels * vision.fpn_hidden_size + width, hidden, 1), nn.GELU(),
            nn.Conv2d(hidden, hidden, 3, padding=1), nn.GELU(),
            nn.Conv2d(hidden, hidden, 3, padding=1), nn.GELU(),
            nn.Conv2d(hidden, dim, 1),
        )
        self.slots = config.grounding_name_slots
        self.name_encoder = nn.Sequential(nn.Linear(config.text_embedding_size, config.projector_hidden_size),
                                          nn.GELU(), nn.Linear(config.projector_hidden_size, self.slots * dim))
        self.logit_scale = nn.Parameter(torch.ones(()))
        self.logit_bias = nn.Parameter(torch.full((), self.initial_logit_bias))

    def pixel_embeddings(self, feature_maps: list[torch.Tensor], frames: torch.Tensor | None = None) -> torch.Tensor:
        """FPN levels ``[BT, C, H_i, W_i]`` (finest first) and, with ``grounding_image_channels``, the frames
        ``[BT, 3, S, S]`` (SAM2's normalised input) -> ``[BT, dim, H_0, W_0]``."""
        size = feature_maps[0].shape[-2:]
        levels = [feature_maps[0]] + [F.interpolate(level, size=size, mode="bilinear", align_corners=False)
                                      for level in feature_maps[1:]]
        dtype = self.pixel_encoder[0].weight.dtype
        if self.image_encoder is not None:
            if frames is None:
                raise ValueError("This name-grounding head encodes the frames too (grounding_image_channels > 0): "
                                 "pass them to pixel_embeddings.")
            image = self.image_encoder(image_input(frames, self.image_input).to(dtype))
            if tuple(image.shape[-2:]) != tuple(size):
                image = F.interpolate(image, size=size, mode="bilinear", align_corners=False)
            levels.append(image)
        return self.pixel_encoder(torch.cat([level.to(dtype) for level in levels], dim=1))

    def forward(self, pixels: torch.Tensor, class_embeddings: torch.Tensor, frames_per_sample: int) -> torch.Tensor:
        """
        Args:
            pixels: ``[B*T, dim, h, w]`` from ``pixel_embeddings``.
            class_embeddings: ``[B, N, E]`` one vector per anomaly name.
            frames_per_sample: T.

        Returns:
            ``[B*T, N, h, w]`` per-name pixel logits.
        """
        names = self.name_encoder(class_embeddings.to(pixels.dtype)).repeat_interleave(frames_per_sample, dim=0)
        if self.slots == 1:
            similarity = torch.einsum("bnd,bdhw->bnhw", names, pixels) / math.sqrt(names.shape[-1])
            return self.logit_scale * similarity + self.logit_bias
        queries = names.unflatten(-1, (self.slots, -1))  # (BT, N, K, dim)
        similarity = torch.einsum("bnkd,bdhw->bnkhw", queries, pixels) / math.sqrt(queries.shape[-1])
        return conjunction_logits(self.logit_scale * similarity + self.logit_bias / self.slots, dim=2)


class WordAttributeGroundingHead(nn.Module):
    """Per-name pixel logits built word by word (``LavidaConfig.grounding_head = "word_attributes"``).

    ``NameGroundingHead`` matches one vector per name against features that mix an object's colour and shape, and
    learns the training names as wholes: a name whose pair of words it never saw together ("purple hexagon") lands
    wherever its pooled vector happens to fall. Here each word of a name is encoded alone (the text encoder never
    sees the pair either; a word the tokenizer splits, "he ##xa ##gon", stays one word) and matched against two maps
    of the frame that each hold one kind of evidence:

    - colour: a per-pixel MLP of the frame's RGB (``1x1`` convs, no spatial context, so it cannot carry shape),
      averaged over each cell of the map;
    - shape: ``FrameShapeEncoder`` on binary outlines (``frame_edges``, or ``frame_edge_directions`` with
      ``grounding_image_input="oriented_edges"``; the same whatever the colours, so it cannot carry colour), then a
      ``1x1`` conv.

    A word's logit at a cell is ``s_c <q_c, colour> / sqrt(d) + s_s <q_s, shape> / sqrt(d) + b_word + b`` (queries and
    word bias from the word's vector; scales and ``b`` learned) and a name is at a cell when all its words are (the
    product of their probabilities, ``conjunction_logits``). Nothing in the head can represent a pair of words, so a
    name of two seen words in an unseen pair is read as well as the words are.

    Widths: ``grounding_hidden_size`` (colour MLP), ``grounding_image_channels`` (shape CNN, > 0;
    ``grounding_image_stem_channels`` for its full-resolution first conv), ``grounding_embedding_size`` (d, per map).

    The maps are laid on the grid of SAM2's finest FPN level (``backbone_feature_sizes[0]``), so that they line up
    with the mask decoder's masks; the head never reads SAM2's features, and trains without them
    (``LavidaForVideoAnomalyDetection.grounding_head_loss``).
    """

    reads_sam_features = False

    initial_logit_bias = INITIAL_LOGIT_BIAS / 2  # each name is a product of two or more word probabilities

    def __init__(self, config: LavidaConfig):
        super().__init__()
        hidden, dim, width = config.grounding_hidden_size, config.grounding_embedding_size, config.grounding_image_channels
        self.dim = dim
        self.colour_encoder = nn.Sequential(nn.Conv2d(3, hidden, 1), nn.GELU(), nn.Conv2d(hidden, hidden, 1),
                                            nn.GELU(), nn.Conv2d(hidden, dim, 1))
        # the frames' colour is never the shape map's input: "rgb" (the config's default) reads the merged edges
        self.edge_input = "oriented_edges" if config.grounding_image_input == "oriented_edges" else "edges"
        self.shape_encoder = nn.Sequential(
            FrameShapeEncoder(width, IMAGE_INPUT_CHANNELS[self.edge_input], config.grounding_image_stem_channels),
            nn.GELU(), nn.Conv2d(width, dim, 1))
        self.grid = tuple(config.sam_config.vision_config.backbone_feature_sizes[0])
        self.word_encoder = nn.Sequential(nn.Linear(config.text_embedding_size, config.projector_hidden_size),
                                          nn.GELU(), nn.Linear(config.projector_hidden_size, 2 * dim + 1))
        self.logit_scale = nn.Parameter(torch.ones(2))
        self.logit_bias = nn.Parameter(torch.full((), self.initial_logit_bias))

    def pixel_embeddings(self, feature_maps: list[torch.Tensor] | None, frames: torch.Tensor | None = None
                         ) -> torch.Tensor:
        """The frames ``[BT, 3, S, S]`` (SAM2's normalised input, or the processor's ``grounding_pixel_values`` at any
        size) -> ``[BT, 2 * dim, h, w]`` (colour, then shape), at the size of SAM2's finest FPN level
        (``feature_maps[0]`` when given, the only use of the features: the maps' grid; else the config's)."""
        if frames is None:
            raise ValueError("The word_attributes name-grounding head reads the frames: pass them to pixel_embeddings.")
        size = tuple(feature_maps[0].shape[-2:]) if feature_maps else self.grid
        frames = frames.to(self.colour_encoder[0].weight.dtype)
        # per-pixel colours at twice the map's resolution, whatever the frames' (pixels of one object share a colour)
        colours = F.adaptive_avg_pool2d(frames, (2 * size[0], 2 * size[1]))
        colour = F.adaptive_avg_pool2d(self.colour_encoder(colours), size)
        shape = self.shape_encoder(image_input(frames, self.edge_input))  # outlines at the frames' own resolution
        if shape.shape[-2] > size[0]:  # frames larger than SAM2's: each cell averages the finer shape map
            shape = F.adaptive_avg_pool2d(shape, size)
        elif tuple(shape.shape[-2:]) != size:
            shape = F.interpolate(shape, size=size, mode="bilinear", align_corners=False)
        return torch.cat([colour, shape], dim=1)

    def forward(self, pixels: torch.Tensor, names: tuple[torch.Tensor, torch.Tensor], frames_per_sample: int
                ) -> torch.Tensor:
        """
        Args:
            pixels: ``[B*T, 2 * dim, h, w]`` from ``pixel_embeddings``.
            names: ``(word_embeddings [B, N, W, E], word_mask [B, N, W])`` from the model's ``encode_name_words``.
            frames_per_sample: T.

        Returns:
            ``[B*T, N, h, w]`` per-name pixel logits.
        """
        embeddings, word_mask = names
        word_mask = word_mask.bool()
        # names share words ("purple" in every purple name, the same vector each time as words are encoded alone):
        # each distinct word is matched against the pixels once, then gathered per (name, word)
        distinct, index = torch.unique(embeddings[word_mask], dim=0, return_inverse=True)  # (U, E), (K,)
        colour_query, shape_query, word_bias = self.word_encoder(distinct.to(pixels.dtype)).split(
            [self.dim, self.dim, 1], dim=-1)  # (U, d), (U, d), (U, 1)
        colour, shape = pixels.split(self.dim, dim=1)
        scale = math.sqrt(self.dim)
        logits = (self.logit_scale[0] * torch.einsum("ud,bdhw->buhw", colour_query, colour) / scale
                  + self.logit_scale[1] * torch.einsum("ud,bdhw->buhw", shape_query, shape) / scale
                  + word_bias[:, 0, None, None] + self.logit_bias)  # (BT, U, h, w)
        word_index = torch.zeros(word_mask.shape, dtype=torch.long, device=pixels.device)
        word_index[word_mask] = index
        word_index = word_index.repeat_interleave(frames_per_sample, dim=0)  # (BT, N, W)
        frames, count, words = word_index.shape
        height, width = logits.shape[-2:]
        logits = logits.gather(1, word_index.reshape(frames, -1, 1, 1).expand(-1, -1, height, width))
        logits = logits.reshape(frames, count, words, height, width)  # (BT, N, W, h, w)
        # a padding word is always there: it leaves the product of the real words' probabilities as it is
        real = word_mask.repeat_interleave(frames_per_sample, dim=0)
        logits = logits.masked_fill(~real[..., None, None], torch.finfo(logits.dtype).max)
        return conjunction_logits(logits, dim=2)


def conjunction_logits(logits: torch.Tensor, dim: int) -> torch.Tensor:
    """The logit of "every one of them", the product of the sigmoids of ``logits`` along ``dim`` (reduced).

    ``log p = sum(log sigmoid(l))`` and ``logit = log p - log(1 - p)``; ``log p`` is kept below ``-1e-6`` so that
    ``1 - p`` stays representable (the logit is then at most about 13.8).
    """
    log_all = F.logsigmoid(logits.float()).sum(dim=dim).clamp(max=-1e-6)
    return (log_all - torch.log(-torch.expm1(log_all))).to(logits.dtype)


def name_presence_logits(name_logits: torch.Tensor) -> torch.Tensor:
    """``[BT, N, h, w]`` -> ``[BT, N]``: a name is as present as its most confident pixel."""
    return name_logits.flatten(2).amax(dim=-1)


def name_anomaly_map(name_logits: torch.Tensor, name_mask: torch.Tensor, size: tuple[int, int] | None = None
                     ) -> torch.Tensor:
    """The anomaly map of the listed names (``config.mask_source = "name_grounding"``).

    Args:
        name_logits: ``[BT, N, h, w]`` per-name pixel logits.
        name_mask: ``[BT, N]`` bool, False for padding names (never counted).
        size: ``(H, W)`` to resize the map to (bilinear, on logits), e.g. the decoder's mask size; None keeps ``h, w``.

    Returns:
        ``[BT, H, W]`` logits: at each pixel, the listed name it matches best. Its maximum over a frame is the frame
        logit (``name_presence_logits``' best name), so the map and the frame score tell the same story.
    """
    lowest = torch.finfo(name_logits.dtype).min
    best = name_logits.masked_fill(~name_mask[..., None, None], lowest).amax(dim=1)  # (BT, h, w)
    if size is not None and tuple(best.shape[-2:]) != tuple(size):
        best = F.interpolate(best[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    return best


def object_gated_logits(mask_logits: torch.Tensor, names_map: torch.Tensor, object_logit: float,
                        names_outside: bool = False) -> torch.Tensor:
    """The decoder's objects scored by the names (``config.mask_source = "gated"``).

    The decoder outlines objects well but marks every object in view, named or not; the grounding map says which
    listed name a pixel matches, but only a few cells of an object match strongly. Here each object the decoder
    outlines (a connected region where its mask logit exceeds ``object_logit``, 8-connected) takes the best
    name-map logit found inside it, so the whole object is as anomalous as its best match to a listed name. Outside
    the objects a pixel keeps the lower of the two logits (both must call it anomalous), or with ``names_outside`` the
    name map's (``mask_source="gated_or_names"``: what the decoder does not outline, the names still mark).

    Args:
        mask_logits: ``[BT, h, w]`` the decoder's mask logits.
        names_map: ``[BT, h, w]`` the name-grounding map (``name_anomaly_map``) at the same size.
        object_logit: decoder logit above which a pixel belongs to an object.
        names_outside: outside the objects, the name map's logit instead of the lower of the two.

    Returns:
        ``[BT, h, w]`` logits.
    """
    inside = mask_logits > object_logit
    lowest = torch.finfo(names_map.dtype).min
    best = names_map.masked_fill(~inside, lowest)
    # spread each region's maximum across it: one 3x3 max-pool step per cell of its longest path (at most h * w)
    for _ in range(inside.shape[-1] * inside.shape[-2]):
        spread = F.max_pool2d(best[:, None], kernel_size=3, stride=1, padding=1)[:, 0].masked_fill(~inside, lowest)
        if torch.equal(spread, best):
            break
        best = spread
    return torch.where(inside, best, names_map if names_outside else torch.minimum(mask_logits, names_map))


def name_grounding_loss(name_logits: torch.Tensor, name_mask: torch.Tensor, name_targets: torch.Tensor,
                        positive_weight: float) -> torch.Tensor:
    """Per-pixel BCE plus presence BCE, each averaged over the real (frame, name) pairs.

    Args:
        name_logits: ``[BT, N, h, w]``; name_mask: ``[BT, N]`` bool, real names.
        name_targets: ``[BT, N, H, W]`` each name's own mask in each frame (empty for a name not in view), at any
            resolution that is a multiple of the map's.
        positive_weight: weight of the positive pixels in the per-pixel BCE (objects cover a few percent of a frame).

    A cell is a positive pixel when the name's mask covers at least half of it; a name is present in a frame when its
    mask touches any cell.
    """
    height, width = name_logits.shape[-2:]
    covered = F.adaptive_avg_pool2d(name_targets.float(), (height, width))  # (BT, N, h, w) share of each cell
    pixel_targets = (covered >= 0.5).float()
    present = (covered.flatten(2).amax(dim=-1) > 0).float()  # (BT, N)
    logits = name_logits.float()
    pixel_bce = F.binary_cross_entropy_with_logits(
        logits, pixel_targets, pos_weight=logits.new_tensor(positive_weight), reduction="none").flatten(2).mean(-1)
    presence_bce = F.binary_cross_entropy_with_logits(name_presence_logits(logits), present, reduction="none")
    weight = name_mask.float()
    return ((pixel_bce + presence_bce) * weight).sum() / weight.sum().clamp_min(1.0)


def listed_name_targets(target_masks: torch.Tensor, name_labels: torch.Tensor) -> torch.Tensor:
    """``[BT, H, W]`` frame targets and ``[BT, N]`` labels (1 = a true target name) -> ``[BT, N, H, W]``: a true name's
    mask is the frame's target (with two true names both get their union), a distractor's is empty."""
    return target_masks.float()[:, None] * name_labels.float()[..., None, None]


__all__ = ["IMAGE_INPUT_CHANNELS", "INITIAL_LOGIT_BIAS", "FrameShapeEncoder", "NameGroundingHead",
           "WordAttributeGroundingHead", "conjunction_logits", "frame_edge_directions", "frame_edges", "image_input",
           "listed_name_targets", "name_anomaly_map", "name_grounding_loss", "name_presence_logits",
           "object_gated_logits"]
