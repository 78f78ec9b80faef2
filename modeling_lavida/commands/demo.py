"""Launch the Gradio demo (the Space's app) locally in a browser tab.

Examples:
    lavida demo
    lavida demo --model path/to/checkpoint --port 7861 --max-duration-s 120

Serves http://HOST:PORT until interrupted. Without --model, LAVIDA_MODEL (a folder or Hub id) is used if set, else
the embedded default model (lavida-tiny). The other settings can also come from LAVIDA_SPACE_* variables (see
lavida.space.settings); flags win over variables.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None,
                        help="checkpoint folder or Hub id (default: $LAVIDA_MODEL, else the embedded lavida-tiny)")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7860, help="port to serve on (default: 7860)")
    parser.add_argument("--max-upload-mb", type=float, default=None, help="largest accepted upload (default: 100)")
    parser.add_argument("--max-duration-s", type=float, default=None, help="longest accepted video (default: 60)")
    parser.add_argument("--concurrency", type=int, default=None, help="detections run at once (default: 2)")
    parser.add_argument("--work-dir", default=None, help="folder for examples and results (default: system temp)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--open-browser", action="store_true", help="open the page in the default browser")


def run(args: argparse.Namespace) -> int:
    from lavida.space.app import launch
    from lavida.space.settings import SpaceSettings

    settings = SpaceSettings.from_env(model=args.model, max_upload_mb=args.max_upload_mb,
                                      max_duration_s=args.max_duration_s, concurrency_limit=args.concurrency,
                                      work_dir=args.work_dir, device=args.device)
    print(f"lavida demo: serving on http://{args.host}:{args.port} (Ctrl+C to stop)")
    launch(settings, server_name=args.host, server_port=args.port, inbrowser=args.open_browser, quiet=True)
    return 0
