"""Diffusion-inpainted pseudo-anomalies: a named object is painted once into a key frame and carried across the clip.

Inpainting every frame separately is not temporally consistent (the object would change shape and look from frame to
frame), so the object is generated once:

1. pick the object's size and a smooth trajectory (as for copy-paste); the key frame is the first frame showing it;
2. crop a square context window around the trajectory's start on the key frame, resize it to the pipeline's
   resolution and inpaint an ellipse in its middle with the prompt ``prompt_template.format(name=...)``
   (``diffusers.AutoPipelineForInpainting``, any inpainting checkpoint; default a Stable Diffusion inpainting id);
3. cut the changed patch with its mask: the pixels of the ellipse that differ from the original (the object rather
   than the background the model repainted), or the whole ellipse (``mask_mode="region"``);
4. carry the patch along the trajectory with feathered edges; on the key frame it lands exactly where it was painted.
   The mask is the carried region.

Device and dtype: CUDA with float16 when available, else CPU with float32 (override with ``device`` / ``dtype``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from lavida.errors import UserInputError

from .blending import Cutout, carry
from .copy_paste import PasteConfig
from .trajectories import Trajectory, random_trajectory

logger = logging.getLogger(__name__)

DEFAULT_INPAINT_MODEL = "stable-diffusion-v1-5/stable-diffusion-inpainting"
_DTYPES = ("float16", "bfloat16", "float32")


@dataclass
class InpaintConfig:
    """Knobs of diffusion inpainting.

    Attributes:
        model_id: a Hub id or a local folder of an inpainting pipeline (``save_pretrained`` layout).
        resolution: side of the square window given to the pipeline (a multiple of 8; 512 for SD 1.5).
        context: side of the context window over the side of the inpainted region (how much scene the model sees).
        num_inference_steps, guidance_scale, strength: passed to the pipeline.
        prompt_template: the prompt, with ``{name}`` replaced by the object's name.
        negative_prompt: passed to the pipeline ("" for none).
        mask_mode: ``"changed"`` (pixels of the region that changed) or ``"region"`` (the whole ellipse).
        change_threshold: mean absolute colour difference (0-1) above which a pixel counts as changed.
        min_changed_fraction: if fewer pixels of the region changed, the whole region is used.
        max_attempts: generations tried when the pipeline's safety checker blanks the output.
        device: ``"cuda"``, ``"cpu"``, ``"mps"``...; ``None`` picks CUDA when available.
        dtype: ``"float16"``, ``"bfloat16"`` or ``"float32"``; ``None`` picks float16 on CUDA, else float32.
    """

    model_id: str = DEFAULT_INPAINT_MODEL
    resolution: int = 512
    context: float = 2.0
    num_inference_steps: int = 30
    guidance_scale: float = 7.5
    strength: float = 1.0
    prompt_template: str = "a photo of {name}"
    negative_prompt: str = "blurry, low quality, text, watermark"
    mask_mode: str = "changed"
    change_threshold: float = 0.08
    min_changed_fraction: float = 0.15
    max_attempts: int = 3
    device: str | None = None
    dtype: str | None = None

    def __post_init__(self) -> None:
        if self.resolution < 8 or self.resolution % 8:
            raise ValueError(f"resolution must be a positive multiple of 8, got {self.resolution}.")
        if self.context < 1:
            raise ValueError(f"context must be >= 1, got {self.context}.")
        if self.mask_mode not in ("changed", "region"):
            raise ValueError(f"mask_mode must be 'changed' or 'region', got {self.mask_mode!r}.")
        if self.dtype is not None and self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {_DTYPES}, got {self.dtype!r}.")
        if "{name}" not in self.prompt_template:
            raise ValueError(f"prompt_template must contain {{name}}, got {self.prompt_template!r}.")
        if self.num_inference_steps < 1 or self.max_attempts < 1:
            raise ValueError("num_inference_steps and max_attempts must be >= 1.")


def pick_device_and_dtype(device: str | None = None, dtype: str | None = None) -> tuple[Any, Any]:
    """``(torch.device, torch.dtype)``: CUDA + float16 when available, else CPU + float32, unless overridden."""
    import torch

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    resolved = torch.device(device)
    if dtype is None:
        dtype = "float16" if resolved.type == "cuda" else "float32"  # half precision is slow or unsupported on CPU
    return resolved, getattr(torch, dtype)


def load_inpaint_pipeline(model_id: str, device: str | None = None, dtype: str | None = None):
    """``AutoPipelineForInpainting.from_pretrained(model_id)`` on the chosen device and dtype.

    Raises:
        UserInputError: if the checkpoint cannot be loaded (the message names it).
    """
    from diffusers import AutoPipelineForInpainting

    torch_device, torch_dtype = pick_device_and_dtype(device, dtype)
    try:
        pipeline = AutoPipelineForInpainting.from_pretrained(model_id, dtype=torch_dtype)
    except (OSError, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserInputError(
            f"--inpaint-model {model_id!r} could not be loaded as an inpainting pipeline ({reason}): give a Hub id of "
            "an inpainting checkpoint (downloading needs network access) or a folder written by save_pretrained."
        ) from error
    pipeline = pipeline.to(torch_device)
    pipeline.set_progress_bar_config(disable=True)  # one bar per object would flood the log; see Inpainter
    logger.info("inpainting with %s on %s (%s)", model_id, torch_device, torch_dtype)
    return pipeline


def ellipse_mask(height: int, width: int, box: tuple[int, int, int, int]) -> np.ndarray:
    """``bool [height, width]``, True inside the ellipse inscribed in ``box`` = (top, left, box height, box width)."""
    top, left, h, w = box
    image = Image.new("L", (width, height), 0)
    ImageDraw.Draw(image).ellipse((left, top, left + w - 1, top + h - 1), fill=255)
    return np.asarray(image) > 127


def changed_mask(original: np.ndarray, inpainted: np.ndarray, region: np.ndarray, threshold: float,
                 min_fraction: float) -> np.ndarray:
    """The pixels of ``region`` the inpainting changed: the painted object rather than repainted background.

    Args:
        original, inpainted: ``uint8 [h, w, 3]``.
        region: ``bool [h, w]``, where the pipeline was allowed to paint.
        threshold: mean absolute difference (0-1) above which a pixel changed.
        min_fraction: below this share of ``region``, the whole region is returned.

    Returns:
        ``bool [h, w]``: the largest changed part, holes filled, inside ``region``.
    """
    difference = np.abs(inpainted.astype(np.float32) - original.astype(np.float32)).mean(axis=-1) / 255.0
    changed = ndimage.binary_opening((difference > threshold) & region, iterations=1)  # drop speckle
    labels, count = ndimage.label(changed)
    if count:
        changed = labels == int(np.bincount(labels.ravel())[1:].argmax()) + 1
        changed = ndimage.binary_fill_holes(changed) & region
    if changed.sum() < min_fraction * region.sum():
        return region.copy()
    return changed


class Inpainter:
    """Paints named objects into frames with a diffusers inpainting pipeline (loaded on first use).

    Args:
        config: model id, resolution, prompts, device and dtype.
        pipeline: an already loaded pipeline (optional; else ``load_inpaint_pipeline(config.model_id, ...)``).
    """

    def __init__(self, config: InpaintConfig | None = None, pipeline=None):
        self.config = config or InpaintConfig()
        self._pipeline = pipeline
        self._bar = None

    def load(self):
        """The pipeline (loaded now if it was not)."""
        if self._pipeline is None:
            self._pipeline = load_inpaint_pipeline(self.config.model_id, self.config.device, self.config.dtype)
        return self._pipeline

    def _progress(self) -> None:
        if self._bar is None:
            from tqdm.auto import tqdm

            self._bar = tqdm(desc="inpainting objects", unit="object", leave=False)
        self._bar.update(1)

    def close(self) -> None:
        """Close the progress bar."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _generate(self, image: Image.Image, mask: Image.Image, prompt: str, seed: int) -> np.ndarray:
        import torch

        config = self.config
        pipeline = self.load()
        for attempt in range(config.max_attempts):
            generator = torch.Generator(device="cpu").manual_seed(seed + attempt)  # same result on any device
            output = pipeline(prompt=prompt, negative_prompt=config.negative_prompt or None, image=image,
                              mask_image=mask, height=config.resolution, width=config.resolution,
                              num_inference_steps=config.num_inference_steps, guidance_scale=config.guidance_scale,
                              strength=config.strength, generator=generator, output_type="np")
            flagged = getattr(output, "nsfw_content_detected", None)
            if not (flagged and any(flagged)):
                break
            logger.warning("inpainting %r: the safety checker blanked attempt %d", prompt, attempt + 1)
        return np.clip(np.rint(np.asarray(output.images[0]) * 255), 0, 255).astype(np.uint8)  # (R, R, 3)

    def paint(self, frame: np.ndarray, box: tuple[int, int, int, int], name: str, seed: int) -> Cutout:
        """Inpaint ``name`` into the ellipse of ``box`` on ``frame`` and cut it out.

        Args:
            frame: ``uint8 [H, W, 3]``.
            box: ``(top, left, height, width)`` of the region, inside the frame.
            name: the object's name (the prompt is ``prompt_template.format(name=name)``).
            seed: the generator seed.

        Returns:
            the region's ``box`` pixels after inpainting, with the object's mask inside the box.
        """
        config = self.config
        frame_h, frame_w = frame.shape[:2]
        top, left, h, w = box
        side = int(min(round(max(h, w) * config.context), frame_h, frame_w))
        side = max(side, h, w)
        cy, cx = top + h / 2, left + w / 2
        c_top = int(np.clip(round(cy - side / 2), 0, frame_h - side))
        c_left = int(np.clip(round(cx - side / 2), 0, frame_w - side))
        window = frame[c_top:c_top + side, c_left:c_left + side]  # (S, S, 3)
        local = (top - c_top, left - c_left, h, w)
        region = ellipse_mask(side, side, local)
        resolution = config.resolution
        image = Image.fromarray(window).resize((resolution, resolution), Image.BICUBIC)
        mask = Image.fromarray(region.astype(np.uint8) * 255).resize((resolution, resolution), Image.NEAREST)
        painted = self._generate(image, mask, config.prompt_template.format(name=name), seed)
        painted = np.asarray(Image.fromarray(painted).resize((side, side), Image.BICUBIC))  # (S, S, 3)
        rows, cols = slice(local[0], local[0] + h), slice(local[1], local[1] + w)
        patch, original, inside = painted[rows, cols], window[rows, cols], region[rows, cols]
        if config.mask_mode == "changed":
            object_mask = changed_mask(original, patch, inside, config.change_threshold, config.min_changed_fraction)
        else:
            object_mask = inside.copy()
        self._progress()
        return Cutout(names=[name], rgb=np.ascontiguousarray(patch), mask=object_mask)


@dataclass
class InpaintPlan:
    """Where the object is painted and how it then moves: ``box`` on frame ``frame_indices[0]``, then
    ``trajectory`` over ``frame_indices``."""

    box: tuple[int, int, int, int]
    trajectory: Trajectory
    frame_indices: list[int] = field(default_factory=list)


def plan_inpaint(rng: np.random.Generator, frame_size: tuple[int, int], frame_indices: list[int],
                 config: PasteConfig) -> InpaintPlan:
    """A square region on the key frame and a trajectory starting exactly at its centre."""
    height, width = frame_size
    side = int(round(config.object_size(rng, 1.0, frame_size)[0]))
    side = max(8, min(side, height, width))
    trajectory = random_trajectory(rng, len(frame_indices), frame_size, (side, side), config.trajectory)
    cx, cy = trajectory.centres[0]
    top = int(np.clip(round(cy - side / 2), 0, height - side))
    left = int(np.clip(round(cx - side / 2), 0, width - side))
    shift = np.array([left + side / 2 - cx, top + side / 2 - cy])  # keep the path, moved onto the clamped box
    moved = Trajectory(centres=trajectory.centres + shift[None], scales=trajectory.scales)
    return InpaintPlan(box=(top, left, side, side), trajectory=moved, frame_indices=list(frame_indices))


def inpaint(frames: np.ndarray, name: str, frame_indices: list[int], rng: np.random.Generator,
            inpainter: Inpainter, config: PasteConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Inpaint ``name`` on the key frame ``frame_indices[0]`` of ``frames`` and carry it over ``frame_indices``.

    Args:
        frames: ``uint8 [T, H, W, 3]`` normal frames (not modified).
        name: the object's name (the prompt).
        frame_indices: consecutive frames showing the object.
        rng: randomness for the region, the path and the generator seed.
        inpainter: the pipeline wrapper.
        config: size, feathering and trajectory knobs (as for copy-paste).

    Returns:
        frames ``uint8 [T, H, W, 3]`` and masks ``bool [T, H, W]`` (the carried region; empty on other frames).
    """
    config = config or PasteConfig()
    plan = plan_inpaint(rng, frames.shape[1:3], frame_indices, config)
    seed = int(rng.integers(0, 2**31 - 1))
    cutout = inpainter.paint(frames[frame_indices[0]], plan.box, name, seed)
    size = (plan.box[2], plan.box[3])
    return carry(frames, cutout, size, plan.trajectory, plan.frame_indices, config.feather)


__all__ = ["DEFAULT_INPAINT_MODEL", "InpaintConfig", "InpaintPlan", "Inpainter", "changed_mask", "ellipse_mask",
           "inpaint", "load_inpaint_pipeline", "pick_device_and_dtype", "plan_inpaint"]
