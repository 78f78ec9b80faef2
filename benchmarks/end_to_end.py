"""End-to-end benchmark: ``lavida detect`` frames/s against the backbones' forward alone on the same clips.

Usage (from the repository root):
    python -m benchmarks.end_to_end                          # CPU defaults (reduced depths, stated in the output)
    python -m benchmarks.end_to_end --model path/to/lavida-tiny --full-llm-layers 28 --full-vision-depth 32 \\
        --full-sam-size 1024 --full-sam-blocks 1 2 11 2 --dtype bfloat16   # full size on a GPU

Two models, each measured side by side in one run on the same synthetic video (a static textured scene with one
moving square):
- **lavida-tiny**: a checkpoint given with ``--model``, else lavida-tiny's architecture with random weights;
- **full width**: the paper's widths (Qwen2-VL-7B LLM and vision tower, SAM 2.1 Hiera-S, CLIP B/32 text tower,
  768-wide projector) with random weights; on CPU with fewer layers and a smaller SAM2 input (stated in the output).

For each model:
- **backbones only (the limit)**: the vision tower, the LLM on the compressed sequence and SAM2's image encoder, on
  clips that are already decoded, preprocessed and in memory;
- **model forward**: the whole model's forward (the backbones plus compression, class names, projector, mask decoder
  and any name-grounding head) on the same prepared clips: the model's own compute, which the engine cannot beat;
- **detect engine**: the ``video-anomaly-detection`` pipeline on the video file, the per-video work of
  ``lavida detect``: one streamed decoding pass, preprocessing, the whole model and post-processing; measured with the
  pipeline's defaults and, side by side, with the other choice of prefetching (decoding and preprocessing in a
  background thread while the model runs: the default on an accelerator; ``prefetch_batches=0``, one thread: on CPU);
- **overlay pass**: ``write_overlay`` on the engine's result (masks kept): decoding the video again, drawing each frame
  and encoding ``overlay.mp4``; its frames/s is compared with the engine's (the scoring pass);
- for lavida-tiny also the **``lavida detect`` command** in-process (with and without ``overlay.mp4``), which adds
  loading the checkpoint (timed on its own) and writing the result files, and once as a **fresh process** from start
  to exit (imports, load, scoring, result files, overlay): what a user waits for. The ``s / model s`` column puts
  each row's seconds over the model forward's on the same frames (lavida-tiny's default video is 10 s long).

``--profile`` adds a cProfile summary of one engine run per model (the functions with the most time of their own),
which says where the engine's time goes beyond the model.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lavida.atomic_files import write_json_atomic
from lavida.processing.options import DEFAULT_PREFETCH_BATCHES

from .common import (Column, environment, format_table, load_or_build_tiny, resolve_device, resolve_dtype,
                     save_checkpoint, synchronize, write_synthetic_video)

ANOMALIES = ["red square", "fighting", "fire", "bicycle"]
# detect engine frames/s against the backbones-only limit, per model; the overlay pass against the scoring pass
TARGET_RATIO = {"lavida-tiny": 0.8, "full width": 0.95}
OVERLAY_TARGET_RATIO = 0.8
DETECT_WALL_TARGET = 1.5  # lavida detect's wall time, process start to exit, at most this many times the model's
PROFILE_LINES = 15


@dataclass
class FullWidthSpec:
    """Depths and sizes of the full-width model (widths are always the paper's)."""

    llm_layers: int = 2
    vision_depth: int = 2
    sam_size: int = 512
    sam_blocks: tuple[int, ...] = (1, 2, 2, 1)
    frame_pixels: int = 176 * 28 * 28  # the paper's test budget: 160-192 x 28x28 per frame

    def describe(self) -> str:
        return (f"LLM {self.llm_layers}/28 layers, vision tower {self.vision_depth}/32 blocks, SAM2 Hiera-S blocks "
                f"{list(self.sam_blocks)} (full [1, 2, 11, 2]) at {self.sam_size} px (full 1024), "
                f"{self.frame_pixels // (28 * 28)} x 28x28 px per frame")


GPU_FULL_WIDTH = FullWidthSpec(llm_layers=28, vision_depth=32, sam_size=1024, sam_blocks=(1, 2, 11, 2))


def _global_attention_blocks(blocks: tuple[int, ...], hiera) -> list[int]:
    """The paper's global-attention blocks (``hiera``, Hiera-S) at its depth; otherwise the last block of the third
    stage (a global block must not open a stage)."""
    if list(blocks) == list(hiera.blocks_per_stage):
        return list(hiera.global_attention_blocks)
    if blocks[2] < 2:
        raise ValueError(f"The third SAM2 stage needs >= 2 blocks for a global-attention block, got {list(blocks)}.")
    return [sum(blocks[:3]) - 1]


def build_full_width_random(spec: FullWidthSpec, seed: int = 0):
    """LAVIDA at the paper's widths with random weights and the depths of ``spec``.

    The MLLM keeps the small byte-level vocabulary of the tiny models (the embedding table's size does not change the
    prefill cost), so the byte tokenizer serves the prompt and the class names.

    Returns:
        ``(model, processor, description)``.
    """
    from lavida import LavidaConfig, LavidaForVideoAnomalyDetection
    from lavida.processing.factories import build_tiny_processor

    paper, tiny = LavidaConfig(), LavidaConfig.tiny()
    text, vision = paper.mllm_config.text_config, paper.mllm_config.vision_config
    tiny_text = tiny.mllm_config.text_config
    mllm = {
        "model_type": "qwen2_vl",
        "text_config": {
            "vocab_size": tiny_text.vocab_size, "hidden_size": text.hidden_size,
            "intermediate_size": text.intermediate_size, "num_hidden_layers": spec.llm_layers,
            "num_attention_heads": text.num_attention_heads, "num_key_value_heads": text.num_key_value_heads,
            "max_position_embeddings": text.max_position_embeddings, "rope_parameters": dict(text.rope_parameters),
            "bos_token_id": None, "eos_token_id": tiny_text.eos_token_id, "pad_token_id": tiny_text.pad_token_id,
        },
        "vision_config": {"depth": spec.vision_depth, "embed_dim": vision.embed_dim, "hidden_size": vision.hidden_size,
                          "num_heads": vision.num_heads, "mlp_ratio": vision.mlp_ratio},
        "image_token_id": tiny.mllm_config.image_token_id,
        "video_token_id": tiny.mllm_config.video_token_id,
        "vision_start_token_id": tiny.mllm_config.vision_start_token_id,
        "vision_end_token_id": tiny.mllm_config.vision_end_token_id,
        "tie_word_embeddings": False,
    }
    hiera = paper.sam_config.vision_config.backbone_config
    size = spec.sam_size
    sam = {
        "model_type": "sam2",
        "vision_config": {
            "model_type": "sam2_vision_model",
            "backbone_config": {
                "model_type": "sam2_hiera_det_model", "image_size": [size, size], "hidden_size": hiera.hidden_size,
                "blocks_per_stage": list(spec.sam_blocks),
                "global_attention_blocks": _global_attention_blocks(spec.sam_blocks, hiera),
                "embed_dim_per_stage": list(hiera.embed_dim_per_stage),
                "num_attention_heads_per_stage": list(hiera.num_attention_heads_per_stage),
                "window_size_per_stage": list(hiera.window_size_per_stage),
                "window_positional_embedding_background_size":
                    list(hiera.window_positional_embedding_background_size),
            },
            "backbone_feature_sizes": [[size // 4] * 2, [size // 8] * 2, [size // 16] * 2],
        },
        "prompt_encoder_config": {"image_size": size},
    }
    tiny_clip = tiny.text_encoder_config
    clip = {"model_type": "clip_text_model", "vocab_size": tiny_clip.vocab_size, "hidden_size": 512,
            "intermediate_size": 2048, "num_hidden_layers": 12, "num_attention_heads": 8,
            "max_position_embeddings": 77, "projection_dim": 512, "eos_token_id": tiny_clip.eos_token_id,
            "bos_token_id": tiny_clip.bos_token_id, "pad_token_id": tiny_clip.pad_token_id}
    config = LavidaConfig(mllm_config=mllm, sam_config=sam, text_encoder_config=clip, seg_token_id=tiny.seg_token_id)
    torch.manual_seed(seed)
    model = LavidaForVideoAnomalyDetection(config).eval()
    processor = build_tiny_processor(llm_frame_pixels=spec.frame_pixels, sam_size=size)
    return model, processor, f"full width, random weights: {spec.describe()}"


# ---------------------------------------------------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class PreparedBatch:
    """One batch of clips, decoded and preprocessed, with the compressed LLM sequence the model would build."""

    pixel_values_videos: torch.Tensor
    video_grid_thw: torch.Tensor
    sam_pixel_values: torch.Tensor
    inputs_embeds: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor


@torch.no_grad()
def prepare_batches(model, processor, video: Path, clip_batch_size: int, device: torch.device) -> list[PreparedBatch]:
    """The clips the pipeline would score, in memory, ready for the backbones (not timed)."""
    from lavida.processing.video_io import iter_clips
    from lavida.token_compressor import compress_sequence

    batches, clips = [], list(iter_clips(str(video), clip_length=processor.clip_length))
    for start in range(0, len(clips), clip_batch_size):
        group = clips[start:start + clip_batch_size]
        inputs = processor([clip.frames for clip in group], [ANOMALIES] * len(group))
        inputs = {key: value.to(device) for key, value in inputs.items()}
        sequence = compress_sequence(model.mllm, model.token_compressor, inputs["input_ids"], inputs["attention_mask"],
                                     inputs["mm_token_type_ids"], inputs["pixel_values_videos"],
                                     inputs["video_grid_thw"])
        batches.append(PreparedBatch(inputs["pixel_values_videos"], inputs["video_grid_thw"],
                                     inputs["sam_pixel_values"].to(model.dtype), sequence.inputs_embeds,
                                     sequence.attention_mask, sequence.position_ids))
    return batches


@torch.no_grad()
def prepare_model_inputs(model, processor, video: Path, clip_batch_size: int, device: torch.device
                         ) -> list[dict[str, torch.Tensor]]:
    """The model's keyword arguments for every batch of clips, names encoded, in memory (not timed)."""
    from lavida.processing.video_io import iter_clips

    clips = list(iter_clips(str(video), clip_length=processor.clip_length, size=processor.decoding_size))
    batches = []
    for start in range(0, len(clips), clip_batch_size):
        group = clips[start:start + clip_batch_size]
        inputs = processor([clip.frames for clip in group], [ANOMALIES] * len(group))
        inputs = {key: value.to(device) for key, value in inputs.items()}
        # the ids stay: a grounding head that reads each word of a name encodes the words from them
        names = model.encode_class_names(inputs["class_input_ids"], inputs["class_attention_mask"])
        inputs["sam_pixel_values"] = inputs["sam_pixel_values"].to(model.dtype)
        batches.append({**inputs, "class_embeddings": names})
    return batches


@torch.no_grad()
def run_model(model, batches: list[dict[str, torch.Tensor]]) -> None:
    """The whole model's forward on every prepared batch."""
    for inputs in batches:
        model(**inputs)


@torch.no_grad()
def run_backbones(model, batches: list[PreparedBatch]) -> None:
    """The three backbones on every prepared batch: vision tower, LLM, SAM2 image encoder."""
    base = model.mllm.model
    for batch in batches:
        base.get_video_features(batch.pixel_values_videos.to(model.dtype), batch.video_grid_thw)
        base.language_model(inputs_embeds=batch.inputs_embeds, attention_mask=batch.attention_mask,
                            position_ids=batch.position_ids, use_cache=False)
        model.encode_frames(batch.sam_pixel_values)


def _fresh_copy(video: Path, folder: Path, index: int) -> Path:
    """A copy under a new name, so nothing cached by path from an earlier run is reused."""
    copy = folder / f"run{index}{video.suffix}"
    shutil.copyfile(video, copy)
    return copy


def _timed(fn, device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def profile_engine(detector, video: Path, lines: int = PROFILE_LINES) -> str:
    """cProfile of one engine run: the ``lines`` functions with the most time of their own."""
    profiler = cProfile.Profile()
    profiler.enable()
    detector(str(video), anomalies=ANOMALIES)
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(lines)
    return text.getvalue()


def measure_model(name: str, model, processor, video: Path, num_frames: int, workdir: Path, device: torch.device,
                  clip_batch_size: int, repeats: int, profile: bool = False) -> tuple[list[dict[str, Any]], str]:
    """Backbones-only, model-forward, engine (with and without prefetching) and overlay-pass throughput of one model,
    interleaved ``repeats`` times (median kept). Returns the rows and the engine's profile (empty unless
    ``profile``)."""
    from lavida.processing.pipeline_lavida import TASK, VideoAnomalyDetectionPipeline
    from lavida.processing.result_writers import OutputOptions, write_overlay

    default = VideoAnomalyDetectionPipeline(model=model, processor=processor, device=device, task=TASK,
                                            batch_size=clip_batch_size)
    other = 0 if default.prefetch_batches else DEFAULT_PREFETCH_BATCHES
    detectors = {"engine": default,
                 "engine_other": VideoAnomalyDetectionPipeline(model=model, processor=processor, device=device,
                                                               task=TASK, batch_size=clip_batch_size,
                                                               prefetch_batches=other)}
    batches = prepare_batches(model, processor, video, clip_batch_size, device)
    model_inputs = prepare_model_inputs(model, processor, video, clip_batch_size, device)
    warm = workdir / f"{name}-warm.mp4"
    write_synthetic_video(warm, processor.clip_length * clip_batch_size, 120, 160, seed=1)
    for detector in detectors.values():
        detector(str(warm), anomalies=ANOMALIES)  # warm-up: kernels, allocator, caches
    run_backbones(model, batches[:1])
    run_model(model, model_inputs[:1])
    times: dict[str, list[float]] = {"limit": [], "model": [], "engine": [], "engine_other": [], "overlay": []}
    identical = True
    for repeat in range(max(1, repeats)):
        copy = _fresh_copy(video, workdir, repeat)
        results = {}

        def detect(key: str) -> None:
            results[key] = detectors[key](str(copy), anomalies=ANOMALIES, return_masks=True)

        for key in detectors:
            times[key].append(_timed(lambda: detect(key), device))
        identical &= bool(np.array_equal(results["engine"].scores, results["engine_other"].scores))
        times["limit"].append(_timed(lambda: run_backbones(model, batches), device))
        times["model"].append(_timed(lambda: run_model(model, model_inputs), device))
        overlay = workdir / f"{name}-overlay{repeat}.mp4"
        options = OutputOptions(progress=False)
        times["overlay"].append(_timed(lambda: write_overlay(overlay, results["engine"], options), device))
    if not identical:
        raise RuntimeError(f"{name}: the engine's scores differ with and without prefetching.")
    seconds = {key: _median(values) for key, values in times.items()}
    limit_fps = num_frames / seconds["limit"]

    def row(measure: str, key: str) -> dict[str, Any]:
        return {"model": name, "measure": measure, "frames": num_frames, "seconds": seconds[key],
                "fps": num_frames / seconds[key], "ratio_to_limit": num_frames / seconds[key] / limit_fps}

    rows = [row("backbones only (limit)", "limit"), row("model forward (prepared clips)", "model"),
            row("detect engine (pipeline)", "engine"),
            row(f"detect engine, prefetch_batches={other}", "engine_other"),
            row("overlay pass (write_overlay)", "overlay")]
    rows[-1]["ratio_to_engine"] = seconds["engine"] / seconds["overlay"]
    text = ""
    if profile:
        text = profile_engine(default, _fresh_copy(video, workdir, 99))
    return rows, text


def measure_cli(model, processor, video: Path, num_frames: int, workdir: Path, limit_fps: float,
                clip_batch_size: int) -> list[dict[str, Any]]:
    """``lavida detect`` in-process on a saved checkpoint, with and without the overlay video."""
    from lavida.cli import main as lavida_main
    from lavida.model_factory import load_model_and_processor

    checkpoint = save_checkpoint(model, processor, workdir / "checkpoint")
    start = time.perf_counter()
    load_model_and_processor(str(checkpoint))
    load_s = time.perf_counter() - start
    rows = []
    for index, overlay in enumerate((False, True)):
        copy = _fresh_copy(video, workdir, 100 + index)
        argv = ["detect", str(copy), "--anomalies", ", ".join(ANOMALIES), "--model", str(checkpoint),
                "--out", str(workdir / f"cli-{index}"), "--clip-batch-size", str(clip_batch_size)]
        if not overlay:
            argv.append("--no-overlay")
        start = time.perf_counter()
        status = lavida_main(argv)
        seconds = time.perf_counter() - start
        if status != 0:
            raise RuntimeError(f"lavida detect failed with status {status}")
        label = "lavida detect" + ("" if overlay else " --no-overlay")
        rows.append({"model": "lavida-tiny", "measure": f"{label} (incl. {load_s:.1f} s load)", "frames": num_frames,
                     "seconds": seconds, "fps": num_frames / seconds,
                     "ratio_to_limit": num_frames / seconds / limit_fps})
        rows.append({"model": "lavida-tiny", "measure": f"{label}, excl. load", "frames": num_frames,
                     "seconds": seconds - load_s, "fps": num_frames / (seconds - load_s),
                     "ratio_to_limit": num_frames / (seconds - load_s) / limit_fps})
    # what a user waits for: a fresh process from start to exit (imports, load, scoring, result files, overlay)
    copy = _fresh_copy(video, workdir, 102)
    command = [sys.executable, "-m", "lavida.cli", "detect", str(copy), "--anomalies", ", ".join(ANOMALIES),
               "--model", str(checkpoint), "--out", str(workdir / "cli-process"), "--clip-batch-size",
               str(clip_batch_size)]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    seconds = time.perf_counter() - start
    rows.append({"model": "lavida-tiny", "measure": "lavida detect, fresh process", "frames": num_frames,
                 "seconds": seconds, "fps": num_frames / seconds, "ratio_to_limit": num_frames / seconds / limit_fps})
    return rows


# ---------------------------------------------------------------------------------------------------------------------
# Script
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class EndToEndConfig:
    model: str | None = None
    tiny_frames: int = 250  # 10 s at the synthetic video's 25 frames/s
    tiny_size: tuple[int, int] = (240, 320)  # height, width
    full_frames: int = 16
    full_size: tuple[int, int] = (360, 640)
    full: FullWidthSpec | None = None  # None: CPU defaults, or the full depths on a GPU
    skip_full: bool = False
    skip_cli: bool = False
    clip_batch_size: int = 2
    repeats: int = 1
    profile: bool = False
    dtype: str = "float32"
    device: str | None = None
    seed: int = 0


def run_benchmark(config: EndToEndConfig) -> dict[str, Any]:
    device = resolve_device(config.device)
    dtype = resolve_dtype(config.dtype)
    rows: list[dict[str, Any]] = []
    models: dict[str, str] = {}
    profiles: dict[str, str] = {}
    workdir = Path(tempfile.mkdtemp(prefix="lavida-e2e-"))
    try:
        model, processor, description = load_or_build_tiny(config.model, config.seed)
        models["lavida-tiny"] = description
        video = write_synthetic_video(workdir / "tiny.mp4", config.tiny_frames, *config.tiny_size, seed=config.seed)
        model = model.to(device, dtype)
        tiny_rows, profiles["lavida-tiny"] = measure_model("lavida-tiny", model, processor, video, config.tiny_frames,
                                                           workdir, device, config.clip_batch_size, config.repeats,
                                                           config.profile)
        rows += tiny_rows
        if not config.skip_cli and device.type == "cpu" and dtype == torch.float32:
            rows += measure_cli(model, processor, video, config.tiny_frames, workdir, tiny_rows[0]["fps"],
                                config.clip_batch_size)
        del model
        if not config.skip_full:
            spec = config.full or (GPU_FULL_WIDTH if device.type == "cuda" else FullWidthSpec())
            model, processor, description = build_full_width_random(spec, config.seed)
            models["full width"] = description
            model = model.to(device, dtype)
            video = write_synthetic_video(workdir / "full.mp4", config.full_frames, *config.full_size,
                                          seed=config.seed)
            full_rows, profiles["full width"] = measure_model("full width", model, processor, video,
                                                              config.full_frames, workdir, device,
                                                              config.clip_batch_size, config.repeats, config.profile)
            rows += full_rows
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    model_seconds = {row["model"]: row["seconds"] for row in rows if row["measure"].startswith("model forward")}
    for row in rows:
        if not row["measure"].startswith(("backbones", "model forward")):
            row["seconds_per_model"] = row["seconds"] / model_seconds[row["model"]]
    targets = [{"model": row["model"], "measure": "detect engine / backbones only", "ratio": row["ratio_to_limit"],
                "target": TARGET_RATIO[row["model"]], "met": row["ratio_to_limit"] >= TARGET_RATIO[row["model"]]}
               for row in rows if row["measure"] == "detect engine (pipeline)"]
    targets += [{"model": row["model"], "measure": "model forward seconds / lavida detect wall seconds (fresh process)",
                 "ratio": 1 / row["seconds_per_model"], "target": 1 / DETECT_WALL_TARGET,
                 "met": row["seconds_per_model"] <= DETECT_WALL_TARGET}
                for row in rows if row["measure"] == "lavida detect, fresh process"]
    targets += [{"model": row["model"], "measure": "overlay pass / scoring pass (frames/s)",
                 "ratio": row["ratio_to_engine"], "target": OVERLAY_TARGET_RATIO,
                 "met": row["ratio_to_engine"] >= OVERLAY_TARGET_RATIO}
                for row in rows if "ratio_to_engine" in row]
    return {"benchmark": "end_to_end", "models": models, "dtype": config.dtype,
            "video": {"tiny": {"frames": config.tiny_frames, "height_width": list(config.tiny_size)},
                      "full width": {"frames": config.full_frames, "height_width": list(config.full_size)}},
            "anomalies": ANOMALIES, "clip_batch_size": config.clip_batch_size, "repeats": config.repeats,
            "environment": environment(device), "rows": rows, "targets": targets, "profiles": profiles}


COLUMNS = [Column("model", "model"), Column("measure", "measure"), Column("frames", "frames"),
           Column("seconds", "seconds", "{:.2f}"), Column("fps", "frames/s", "{:.2f}"),
           Column("ratio_to_limit", "x limit", "{:.2f}"), Column("seconds_per_model", "s / model s", "{:.2f}")]


def parse_args(argv: list[str] | None) -> tuple[EndToEndConfig, str]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="lavida-tiny checkpoint (default: random weights)")
    parser.add_argument("--tiny-frames", type=int, default=250, help="frames of lavida-tiny's video (25 frames/s)")
    parser.add_argument("--full-frames", type=int, default=16)
    parser.add_argument("--full-llm-layers", type=int, default=None)
    parser.add_argument("--full-vision-depth", type=int, default=None)
    parser.add_argument("--full-sam-size", type=int, default=None)
    parser.add_argument("--full-sam-blocks", type=int, nargs=4, default=None)
    parser.add_argument("--full-frame-pixels", type=int, default=None, help="MLLM pixels per frame")
    parser.add_argument("--skip-full", action="store_true", help="measure lavida-tiny only")
    parser.add_argument("--skip-cli", action="store_true", help="skip the in-process lavida detect rows")
    parser.add_argument("--clip-batch-size", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--profile", action="store_true", help="print a cProfile summary of one engine run per model")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--device", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default="outputs/benchmarks/end_to_end.json", help="report file")
    args = parser.parse_args(argv)
    full = None
    overrides = {"llm_layers": args.full_llm_layers, "vision_depth": args.full_vision_depth,
                 "sam_size": args.full_sam_size, "frame_pixels": args.full_frame_pixels,
                 "sam_blocks": tuple(args.full_sam_blocks) if args.full_sam_blocks else None}
    if any(value is not None for value in overrides.values()):
        base = GPU_FULL_WIDTH if resolve_device(args.device).type == "cuda" else FullWidthSpec()
        full = FullWidthSpec(**{**vars(base), **{k: v for k, v in overrides.items() if v is not None}})
    config = EndToEndConfig(model=args.model, tiny_frames=args.tiny_frames, full_frames=args.full_frames, full=full,
                            skip_full=args.skip_full, skip_cli=args.skip_cli, clip_batch_size=args.clip_batch_size,
                            repeats=args.repeats, profile=args.profile, dtype=args.dtype, device=args.device,
                            seed=args.seed)
    return config, args.json


def main(argv: list[str] | None = None) -> int:
    config, json_path = parse_args(argv)
    report = run_benchmark(config)
    environment_info = report["environment"]
    print(f"End to end on {environment_info['device']} ({environment_info['torch_threads']} threads), "
          f"{report['dtype']}")
    for name, description in report["models"].items():
        print(f"  {name}: {description}")
    print(format_table(report["rows"], COLUMNS))
    for check in report["targets"]:
        print(f"{check['model']}: {check['measure']} = {check['ratio']:.2f}x "
              f"(target >= {check['target']:.2f}x: {'met' if check['met'] else 'NOT met'})")
    for name, text in report["profiles"].items():
        if text:
            print(f"\n{name}: one engine run, the {PROFILE_LINES} functions with the most time of their own\n{text}")
    print(f"wrote {write_json_atomic(json_path, report)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
