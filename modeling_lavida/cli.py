"""The ``lavida`` command line.

Usage:
    lavida detect VIDEO [VIDEO ...] --anomalies "fighting, fire" [--model PATH_OR_HUB_ID] [--out DIR]
    lavida build-dataset SOURCE --out DIR [--data-root DIR] [--num-samples N] [--seed S]
    lavida evaluate --benchmark NAME --data-root DIR [--model M] [--out DIR]
    lavida train --config configs/lavida-tiny.yaml
    lavida demo

Each subcommand lives in its own module under ``lavida.commands`` with two functions,
``add_arguments(parser)`` and ``run(args) -> int``; heavy imports stay inside ``run`` so that
``lavida --help`` is instant. Errors the user can fix (``UserInputError``, missing files) are printed as
one line on stderr with exit status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .errors import UserInputError

# subcommand name -> module implementing it
COMMANDS: dict[str, str] = {
    "detect": "lavida.commands.detect",
    "build-dataset": "lavida.commands.build_dataset",
    "contact-sheet": "lavida.commands.contact_sheet",
    "synthesize-preview": "lavida.commands.synthesize_preview",
    "evaluate": "lavida.commands.evaluate",
    "train": "lavida.commands.train",
    "demo": "lavida.commands.demo",
}

USER_ERROR_EXIT = 2


def _available_commands() -> dict[str, object]:
    modules = {}
    for name, module_name in COMMANDS.items():
        try:
            modules[name] = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:  # a real missing dependency inside the module
                raise
    return modules


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, object]]:
    parser = argparse.ArgumentParser(prog="lavida", description="Zero-shot video anomaly detection (LAVIDA).")
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = _available_commands()
    for name, module in modules.items():
        doc = (module.__doc__ or "").strip().splitlines()
        sub = subparsers.add_parser(name, help=doc[0] if doc else None, description=module.__doc__,
                                    formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(sub)
    return parser, modules


def main(argv: list[str] | None = None) -> int:
    parser, modules = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.command is None:
        parser.print_help()
        return USER_ERROR_EXIT
    try:
        return int(modules[args.command].run(args) or 0)
    except (UserInputError, FileNotFoundError) as error:
        print(f"lavida {args.command}: error: {error}", file=sys.stderr)
        return USER_ERROR_EXIT
    except KeyboardInterrupt:
        print(f"lavida {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
