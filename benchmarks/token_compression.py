"""Token compression benchmark: LLM prefill time at compression ratios 1.0 / 0.75 / 0.5 / 0.25, with and without
static pruning, on a randomly initialised full-width LLM (Qwen2-VL-7B's text model: hidden 3584, 28 heads, 4 KV
heads, MLP 18944), and the compression step's own time as a share of the LLM's.

Usage (from the repository root):
    python -m benchmarks.token_compression                                  # CPU default: 1 layer, L = 1k, 2k
    python -m benchmarks.token_compression --lengths 1024 2048 4096 6144 --layers 28 --dtype bfloat16  # GPU

For every visual-token count L, one video's L tokens (4 temporal groups of L/4 merge units) and its vision patch
embeddings are synthesised, with ``--static-share`` of the units static (identical in every temporal group, as a
fixed camera's background). Each configuration runs the model's own ``TokenCompressor`` (static pruning on the patch
embeddings, then density merging) and the LLM prefill on ``text tokens + surviving visual tokens`` with 3-D rotary
positions. The compression step is timed on its own.

On CPU only ``--layers`` of the 28 decoder layers are built (the layers are identical, so the prefill time grows
linearly with their number); the table states the measured share of the compression step against those layers and
the share projected to the full 28-layer LLM. Speed-ups compare prefill times measured in the same run.
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
from dataclasses import dataclass, field
from typing import Any

import torch

from lavida.atomic_files import write_json_atomic

from .common import Column, environment, format_table, resolve_device, resolve_dtype, time_call

TEMPORAL_GROUPS = 4  # 8 frames with a temporal patch of 2


@functools.lru_cache(maxsize=1)
def paper_config():
    """``LavidaConfig()``: the paper's sizes (Qwen2-VL-7B's LLM and vision tower, the compressor's k and threshold)."""
    from lavida import LavidaConfig

    return LavidaConfig()


def _paper_text(name: str):
    return field(default_factory=lambda: getattr(paper_config().mllm_config.text_config, name))


@dataclass
class BenchmarkConfig:
    """Knobs of one run (all have CLI flags)."""

    lengths: tuple[int, ...] = (1024, 2048)
    ratios: tuple[float, ...] = (1.0, 0.75, 0.5, 0.25)
    layers: int | None = None  # None: 1 on CPU, 28 on a GPU
    hidden_size: int = _paper_text("hidden_size")
    intermediate_size: int = _paper_text("intermediate_size")
    num_heads: int = _paper_text("num_attention_heads")
    num_kv_heads: int = _paper_text("num_key_value_heads")
    text_tokens: int = 96  # chat template + question + ~20 anomaly names
    static_share: float = 0.5
    lof_k: int = field(default_factory=lambda: paper_config().lof_k)
    static_threshold: float = field(default_factory=lambda: paper_config().static_threshold)
    repeats: int = 1
    dtype: str = "float32"
    device: str | None = None
    seed: int = 0


def unit_grid(units: int) -> tuple[int, int]:
    """Rows x columns of merge units closest to square with ``rows * cols == units``."""
    rows = int(math.isqrt(units))
    while units % rows:
        rows -= 1
    return rows, units // rows


def synthetic_video_tokens(length: int, hidden: int, patch_dim: int, static_share: float, seed: int
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One video's vision output as the model sees it.

    Returns:
        tokens ``[L, hidden]`` (LLM video-token order), patch_embeddings ``[4 * L, patch_dim]`` in the Qwen-VL
        patch order (temporal group, unit row, unit column, 2x2 patches) and grid_thw ``[1, 3]``. The first
        ``static_share`` of the units (in a random set) carry the same patches in every temporal group.
    """
    if length % TEMPORAL_GROUPS:
        raise ValueError(f"L must be a multiple of {TEMPORAL_GROUPS} temporal groups, got {length}.")
    generator = torch.Generator().manual_seed(seed)
    units = length // TEMPORAL_GROUPS
    rows, cols = unit_grid(units)
    patches = torch.randn(TEMPORAL_GROUPS, units, 4 * patch_dim, generator=generator)  # (T_g, U, 4*D)
    static = torch.randperm(units, generator=generator)[: int(round(units * static_share))]
    # static units: the first group's patches again, with noise far below the pruning threshold
    noise = 1e-3 * torch.randn(TEMPORAL_GROUPS - 1, len(static), 4 * patch_dim, generator=generator)
    patches[1:, static] = patches[:1, static] + noise
    patch_embeddings = patches.reshape(TEMPORAL_GROUPS * units * 4, patch_dim)
    tokens = torch.randn(length, hidden, generator=generator)
    grid_thw = torch.tensor([[TEMPORAL_GROUPS, rows * 2, cols * 2]])
    return tokens, patch_embeddings, grid_thw


def rotary_positions(text_before: int, grid_thw: torch.Tensor, kept_index: torch.Tensor, text_after: int
                     ) -> torch.Tensor:
    """``[3, 1, S]`` multimodal rotary positions of ``text, kept video tokens, text`` (Qwen2-VL's 3-D scheme:
    a video token at (group, row, column) sits at ``start + (g, r, c)``; text continues after the largest)."""
    groups, rows, cols = (int(v) for v in grid_thw[0])
    rows, cols = rows // 2, cols // 2
    index = torch.arange(groups * rows * cols)
    video = torch.stack([index // (rows * cols), (index // cols) % rows, index % cols]) + text_before  # (3, L)
    before = torch.arange(text_before).expand(3, -1)
    after_start = int(video.max()) + 1 if video.numel() else text_before
    after = torch.arange(after_start, after_start + text_after).expand(3, -1)
    return torch.cat([before, video[:, kept_index], after], dim=1)[:, None]  # (3, 1, S)


def build_llm(config: BenchmarkConfig, layers: int, device: torch.device, dtype: torch.dtype):
    """The paper's language model (Qwen2-VL-7B's) at the widths of ``config`` with ``layers`` decoder layers, random
    weights."""
    from transformers import Qwen2VLTextConfig
    from transformers.models.qwen2_vl.modeling_qwen2_vl import Qwen2VLTextModel

    paper = paper_config().mllm_config.text_config
    half = config.hidden_size // config.num_heads // 2  # the rotary half-dimension, split over (t, h, w)
    mrope_section = [half // 4, (half - half // 4) // 2, half - half // 4 - (half - half // 4) // 2]  # [16, 24, 24]
    llm_config = Qwen2VLTextConfig(
        vocab_size=16,  # inputs_embeds only: the embedding table is never read
        hidden_size=config.hidden_size, intermediate_size=config.intermediate_size, num_hidden_layers=layers,
        num_attention_heads=config.num_heads, num_key_value_heads=config.num_kv_heads,
        max_position_embeddings=paper.max_position_embeddings, bos_token_id=None, eos_token_id=None,
        pad_token_id=None, rope_parameters={**paper.rope_parameters, "mrope_section": mrope_section},
    )
    torch.manual_seed(config.seed)
    with torch.device(device):
        model = Qwen2VLTextModel(llm_config)
    return model.to(dtype).eval()


def run_benchmark(config: BenchmarkConfig) -> dict[str, Any]:
    """Measure every (L, pruning, ratio) configuration; returns the JSON report."""
    from lavida.token_compressor import TokenCompressor

    device = resolve_device(config.device)
    dtype = resolve_dtype(config.dtype)
    full_depth = paper_config().mllm_config.text_config.num_hidden_layers
    layers = config.layers or (full_depth if device.type == "cuda" else 1)
    llm = build_llm(config, layers, device, dtype)
    text_before = config.text_tokens * 3 // 4
    text_after = config.text_tokens - text_before

    def prefill(embeds: torch.Tensor, positions: torch.Tensor) -> None:
        llm(inputs_embeds=embeds, position_ids=positions, use_cache=False)

    rows: list[dict[str, Any]] = []
    with torch.inference_mode():
        # warm-up: first calls pay for kernel selection and allocation
        warm = torch.randn(1, 64, config.hidden_size, device=device, dtype=dtype)
        prefill(warm, torch.arange(64, device=device).expand(3, 1, -1))
        for length in config.lengths:
            tokens, patch_embeddings, grid_thw = synthetic_video_tokens(
                length, config.hidden_size, paper_config().mllm_config.vision_config.embed_dim, config.static_share,
                config.seed)
            tokens = tokens.to(device, dtype)
            patch_embeddings = patch_embeddings.to(device, dtype)
            grid_thw = grid_thw.to(device)
            baseline_llm = None
            for prune in (False, True):
                for ratio in config.ratios:
                    compressor = TokenCompressor(ratio=ratio, k=config.lof_k,
                                                 static_threshold=config.static_threshold if prune else -1.0)
                    result: dict[str, Any] = {}

                    def compress() -> None:
                        keep = compressor.static_keep_mask(patch_embeddings, grid_thw) if prune else None
                        result["out"] = compressor([tokens], keep)

                    # r = 1.0 without pruning leaves the tokens as they are: nothing to time
                    identity = ratio >= 1.0 and not prune
                    compress_s = 0.0 if identity else time_call(compress, device, config.repeats)
                    if identity:
                        compress()
                    out = result["out"]
                    kept = out.kept_index[0][out.valid[0]].cpu()
                    visual = out.tokens[0][out.valid[0]]  # (R, C)
                    text = torch.randn(config.text_tokens, config.hidden_size, device=device, dtype=dtype)
                    embeds = torch.cat([text[:text_before], visual.to(dtype), text[text_before:]])[None]
                    positions = rotary_positions(text_before, grid_thw.cpu(), kept, text_after).to(device)
                    llm_s = time_call(lambda: prefill(embeds, positions), device, config.repeats)
                    if baseline_llm is None:
                        baseline_llm = llm_s
                    full_llm_s = llm_s * full_depth / layers
                    rows.append({
                        "L": length, "static_pruning": prune, "ratio": ratio, "visual_tokens": int(len(kept)),
                        "sequence": int(embeds.shape[1]), "compress_ms": 1000 * compress_s, "llm_ms": 1000 * llm_s,
                        "llm_speedup": baseline_llm / llm_s,
                        "speedup_with_compression": baseline_llm / (llm_s + compress_s),
                        "compress_share_measured": compress_s / llm_s,
                        "compress_share_full_depth": compress_s / full_llm_s,
                    })
    return {
        "benchmark": "token_compression",
        "model": (f"Qwen2-VL text model (hidden {config.hidden_size}, {config.num_heads} heads, "
                  f"{config.num_kv_heads} KV heads, MLP {config.intermediate_size}), {layers} of {full_depth} "
                  "decoder layers, random weights"),
        "layers": layers,
        "full_depth": full_depth,
        "dtype": config.dtype,
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in vars(config).items()},
        "environment": environment(device),
        "rows": rows,
        "targets": _targets(rows),
    }


def _targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The performance targets at r = 0.5 without pruning: >= 1.8x faster prefill, compression < 5 % of LLM time."""
    checks = []
    for row in rows:
        if row["ratio"] == 0.5 and not row["static_pruning"]:
            checks.append({"L": row["L"], "llm_speedup": row["llm_speedup"], "speedup_target": 1.8,
                           "speedup_met": row["llm_speedup"] >= 1.8,
                           "compress_share_full_depth": row["compress_share_full_depth"], "share_target": 0.05,
                           "share_met": row["compress_share_full_depth"] < 0.05})
    return checks


COLUMNS = [
    Column("L", "L"), Column("static_pruning", "prune", "{}"), Column("ratio", "r", "{:.2f}"),
    Column("visual_tokens", "visual"), Column("sequence", "seq"), Column("compress_ms", "compress ms", "{:.1f}"),
    Column("llm_ms", "LLM ms", "{:.1f}"), Column("llm_speedup", "LLM speed-up", "{:.2f}x"),
    Column("speedup_with_compression", "incl. compress", "{:.2f}x"),
    Column("compress_share_measured", "share (measured)", "{:.1%}"),
    Column("compress_share_full_depth", "share (28 layers)", "{:.2%}"),
]


def parse_args(argv: list[str] | None) -> tuple[BenchmarkConfig, str]:
    defaults = BenchmarkConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=list(defaults.lengths),
                        help="visual-token counts L (multiples of 4)")
    parser.add_argument("--ratios", type=float, nargs="+", default=list(defaults.ratios))
    parser.add_argument("--layers", type=int, default=None, help="decoder layers built (default: 1 on CPU, 28 on GPU)")
    parser.add_argument("--hidden-size", type=int, default=defaults.hidden_size)
    parser.add_argument("--intermediate-size", type=int, default=defaults.intermediate_size)
    parser.add_argument("--num-heads", type=int, default=defaults.num_heads)
    parser.add_argument("--num-kv-heads", type=int, default=defaults.num_kv_heads)
    parser.add_argument("--text-tokens", type=int, default=defaults.text_tokens)
    parser.add_argument("--static-share", type=float, default=defaults.static_share,
                        help="share of merge units that are static (default: 0.5)")
    parser.add_argument("--repeats", type=int, default=defaults.repeats, help="timed calls per figure (median)")
    parser.add_argument("--dtype", default=defaults.dtype, choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--device", default=None)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--json", default="outputs/benchmarks/token_compression.json", help="report file")
    args = parser.parse_args(argv)
    config = BenchmarkConfig(lengths=tuple(args.lengths), ratios=tuple(args.ratios), layers=args.layers,
                             hidden_size=args.hidden_size, intermediate_size=args.intermediate_size,
                             num_heads=args.num_heads, num_kv_heads=args.num_kv_heads, text_tokens=args.text_tokens,
                             static_share=args.static_share, repeats=args.repeats, dtype=args.dtype,
                             device=args.device, seed=args.seed)
    return config, args.json


def main(argv: list[str] | None = None) -> int:
    config, json_path = parse_args(argv)
    report = run_benchmark(config)
    print(f"Token compression: {report['model']}; {report['dtype']} on {report['environment']['device']} "
          f"({report['environment']['torch_threads']} threads); static share {config.static_share:.0%}")
    print(format_table(report["rows"], COLUMNS))
    for check in report["targets"]:
        print(f"L={check['L']}: r=0.5 prefill speed-up {check['llm_speedup']:.2f}x (target >= 1.8x: "
              f"{'met' if check['speedup_met'] else 'NOT met'}); compression {check['compress_share_full_depth']:.2%} "
              f"of the 28-layer LLM (target < 5%: {'met' if check['share_met'] else 'NOT met'})")
    print(f"wrote {write_json_atomic(json_path, report)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
