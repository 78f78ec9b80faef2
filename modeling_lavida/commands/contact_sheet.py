"""Draw a PNG contact sheet of a built corpus: frames with mask outlines, the name list, the true names.

Example:
    lavida build-dataset synthetic --out corpora/synthetic --num-samples 64
    lavida contact-sheet corpora/synthetic --out sheet.png --samples 6 --frames 4
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", help="a folder written by `lavida build-dataset` (or a Hub dataset id)")
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.add_argument("--samples", type=int, default=6, help="rows of the sheet (default: 6)")
    parser.add_argument("--frames", type=int, default=4, help="frames shown per sample (default: 4)")
    parser.add_argument("--split", default="train", help="split (default: train)")
    parser.add_argument("--tile", type=int, default=160, help="tile side in pixels (default: 160)")


def run(args: argparse.Namespace) -> int:
    from lavida.dataset_builders.contact_sheet import draw_contact_sheet
    from lavida.dataset_builders.corpus_loading import load_built_corpus

    dataset = load_built_corpus(args.dataset, split=args.split)
    rows = [dataset[i] for i in range(min(args.samples, len(dataset)))]
    draw_contact_sheet(rows, args.out, frames_per_row=args.frames, tile=args.tile)
    print(f"wrote {args.out} ({len(rows)} samples)")
    return 0
