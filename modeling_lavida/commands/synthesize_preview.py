"""Preview synthesised pseudo-anomalies as a PNG: original frames, synthesised frames and mask outlines, side by side.

Examples:
    lavida synthesize-preview --normal-videos videos/ --objects synthetic --out preview.png
    lavida synthesize-preview --normal-videos videos/ --objects ade20k --data-root data/ADEChallengeData2016 \\
        --out preview.png --samples 4
    lavida synthesize-preview --normal-videos videos/ --objects "bicycle, skateboard, dog" --method inpaint \\
        --inpaint-model stable-diffusion-v1-5/stable-diffusion-inpainting --out preview.png

Shows the items `lavida build-dataset synthesized` would write with the same options and seed (before the sampler
picks the name lists). Inpainting runs on CUDA in float16 when a GPU is present, else on the CPU (slow at 512 px).
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lavida.dataset_builders.synthesized.source import add_synthesized_arguments

    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.add_argument("--data-root", help="release folder of the object source (when --objects names one)")
    parser.add_argument("--samples", type=int, default=3, help="synthesised items shown (default: 3)")
    parser.add_argument("--frames", type=int, default=4, help="frames shown per item (default: 4)")
    parser.add_argument("--tile", type=int, default=160, help="tile side in pixels (default: 160)")
    parser.add_argument("--seed", type=int, default=0, help="synthesis seed (default: 0)")
    parser.add_argument("--clip-length", type=int, default=8, help="frames per clip (default: 8)")
    add_synthesized_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from lavida.dataset_builders.synthesized.preview import draw_synthesis_preview
    from lavida.dataset_builders.synthesized.source import synthesized_source_from_args
    from lavida.errors import UserInputError

    if args.samples < 1 or args.frames < 1:
        raise UserInputError(f"--samples and --frames must be >= 1, got {args.samples}, {args.frames}.")
    source = synthesized_source_from_args(args)
    count = min(args.samples, len(source))
    # spread the shown items over the normal videos rather than taking the first clips of the first video
    indices = sorted({int(i) for i in [round(k * (len(source) - 1) / max(1, count - 1)) for k in range(count)]})
    results = [source.synthesize(index) for index in indices]
    if source.inpainter is not None:
        source.inpainter.close()
    draw_synthesis_preview(results, args.out, frames_per_row=args.frames, tile=args.tile)
    print(f"wrote {args.out} ({len(results)} synthesised items, method {source.config.method})")
    return 0
