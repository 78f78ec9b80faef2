"""Ways to build a ``LavidaProcessor`` (tiny, offline, for tests and lavida-tiny; or from pretrained components) and
the detection pipeline of a checkpoint (``load_detection_pipeline``)."""

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


# The paper's MLLM pixel budgets (section 4 of the method), as [min, max] areas; one LLM token covers 28 x 28 px.
PAPER_INFERENCE_FRAME_PIXELS = (160 * 28 * 28, 192 * 28 * 28)
PAPER_TRAINING_FRAME_PIXELS = (32 * 28 * 28, 64 * 28 * 28)
PAPER_IMAGE_PIXELS = (32 * 28 * 28, 1024 * 28 * 28)


def processor_from_components(mllm: str | os.PathLike, sam2: str | os.PathLike, text_encoder: str | os.PathLike,
                              seg_token: str = "<SEG>", clip_length: int = 8,
                              llm_frame_pixels: list[int] | tuple[int, int] | None = PAPER_INFERENCE_FRAME_PIXELS,
                              llm_train_frame_pixels: list[int] | tuple[int, int] | None = PAPER_TRAINING_FRAME_PIXELS,
                              llm_image_pixels: list[int] | tuple[int, int] | None = PAPER_IMAGE_PIXELS,
                              token: str | bool | None = None, revision: str | None = None) -> LavidaProcessor:
    """Build the processor from the three checkpoints ``lavida.model_factory.build_model_from_components`` uses;
    ``<SEG>`` is added to the MLLM tokenizer exactly as the model does.

    The MLLM pixel budgets default to the paper's (``[min, max]`` areas per frame: 160..192 x 28 x 28 at inference,
    32..64 x 28 x 28 in training, 32..1024 x 28 x 28 for a single-frame image sample); None keeps the MLLM video
    processor's own ``size`` (the real Qwen2-VL preprocessor lets an 8-frame 720p clip cost about 4,800 LLM tokens).
    """
    hub = {"token": token, "revision": revision}
    mllm_processor = AutoProcessor.from_pretrained(mllm, **hub)
    tokenizer = mllm_processor.tokenizer
    tokenizer.add_tokens([seg_token], special_tokens=True)
    sam_processor = AutoProcessor.from_pretrained(sam2, **hub)
    sam_image_processor = getattr(sam_processor, "image_processor", sam_processor)
    return LavidaProcessor(video_processor=mllm_processor.video_processor, tokenizer=tokenizer,
                           sam_image_processor=sam_image_processor,
                           class_tokenizer=AutoTokenizer.from_pretrained(text_encoder, **hub),
                           chat_template=getattr(mllm_processor, "chat_template", None), clip_length=clip_length,
                           seg_token=seg_token, llm_frame_pixels=llm_frame_pixels,
                           llm_train_frame_pixels=llm_train_frame_pixels, llm_image_pixels=llm_image_pixels)




def load_detection_pipeline(model: str | os.PathLike | None = None, device: str | int | None = None,
                            batch_size: int | None = None):
    """The ``video-anomaly-detection`` pipeline of a checkpoint folder / Hub id, or of the embedded lavida-tiny when
    ``model`` is None (recorded as ``model_id`` in each result).

    Args:
        device: torch device (default: cuda if available, else cpu).
        batch_size: clips per model call (default: the pipeline's ``DEFAULT_BATCH_SIZE``).

    Raises:
        UserInputError: an unreadable checkpoint, naming the folder.
    """
    import torch

    from lavida.model_factory import default_model_path, load_model_and_processor

    from .pipeline_lavida import TASK, VideoAnomalyDetectionPipeline

    device = device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
    loaded, processor = load_model_and_processor(model, device=device)
    model_id = str(model) if model is not None else f"lavida-tiny ({default_model_path().name}, embedded)"
    extra = {} if batch_size is None else {"batch_size": batch_size}
    return VideoAnomalyDetectionPipeline(model=loaded, processor=processor, device=device, task=TASK,
                                         model_id=model_id, **extra)


__all__ = ["PAPER_IMAGE_PIXELS", "PAPER_INFERENCE_FRAME_PIXELS", "PAPER_TRAINING_FRAME_PIXELS", "build_tiny_processor",
           "load_detection_pipeline", "processor_from_components"]
