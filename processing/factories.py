"""Ways to build a ``LavidaProcessor``: tiny (offline, for tests and lavida-tiny) or from pretrained components."""

from __future__ import annotations

import os

from transformers import AutoProcessor, AutoTokenizer, Qwen2VLVideoProcessor, Sam2ImageProcessor

from .byte_tokenizer import build_byte_tokenizer
from .processing_lavida import LavidaProcessor


def build_tiny_processor(llm_frame_pixels: int = 56 * 56, sam_size: int = 128, clip_length: int = 8,
                         class_tokenizer=None) -> LavidaProcessor:
    """Processor for ``LavidaConfig.tiny()``-style models.

    Args:
        llm_frame_pixels: pixel budget of one frame for the MLLM (an area; 56*56 -> 2x2 merge units per frame).
        sam_size: SAM2 input side.
        class_tokenizer: tokenizer of the class-name encoder (default: the byte tokenizer, for the tiny CLIP tower).
    """
    tokenizer = build_byte_tokenizer()
    video_processor = Qwen2VLVideoProcessor(size={"shortest_edge": llm_frame_pixels, "longest_edge": llm_frame_pixels},
                                            cap_pixels_per_frame=False)
    sam_processor = Sam2ImageProcessor(size={"height": sam_size, "width": sam_size},
                                       mask_size={"height": sam_size // 4, "width": sam_size // 4})
    return LavidaProcessor(video_processor=video_processor, tokenizer=tokenizer, sam_image_processor=sam_processor,
                           class_tokenizer=class_tokenizer or build_byte_tokenizer(), clip_length=clip_length)


def processor_from_components(mllm: str | os.PathLike, sam2: str | os.PathLike, text_encoder: str | os.PathLike,
                              seg_token: str = "<SEG>", clip_length: int = 8) -> LavidaProcessor:
    """Build the processor from the three checkpoints ``LavidaForVideoAnomalyDetection.from_components`` uses;
    ``<SEG>`` is added to the MLLM tokenizer exactly as the model does."""
    mllm_processor = AutoProcessor.from_pretrained(mllm)
    tokenizer = mllm_processor.tokenizer
    tokenizer.add_tokens([seg_token], special_tokens=True)
    sam_processor = AutoProcessor.from_pretrained(sam2)
    sam_image_processor = getattr(sam_processor, "image_processor", sam_processor)
    return LavidaProcessor(video_processor=mllm_processor.video_processor, tokenizer=tokenizer,
                           sam_image_processor=sam_image_processor,
                           class_tokenizer=AutoTokenizer.from_pretrained(text_encoder),
                           chat_template=getattr(mllm_processor, "chat_template", None), clip_length=clip_length,
                           seg_token=seg_token)


__all__ = ["build_tiny_processor", "processor_from_components"]
