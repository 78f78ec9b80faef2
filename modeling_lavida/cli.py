"""The ``lavida`` command line.

Usage:
    lavida detect VIDEO [VIDEO ...] --anomalies "fighting, fire" [--model PATH_OR_HUB_ID] [--out DIR]
    lavida watch SOURCE --anomalies "fighting, fire" [--out DIR] [--calibration FILE] [--max-seconds S]
    lavida calibrate NORMAL_VIDEO [...] --anomalies "fighting" --false-alarms-per-hour N [--out calibration.json]
    lavida build-dataset SOURCE --out DIR [--data-root DIR] [--num-samples N] [--seed S]
    lavida evaluate --benchmark NAME --data-root DIR [--model M] [--out DIR]
    lavida train --config configs/lavida-tiny.yaml
    lavida demo
    lavida --version

Each subcommand lives in its own module under ``lavida.commands``, importing only the standard library at module
level, with two functions, ``add_arguments(parser)`` and ``run(args) -> int``, and optionally a third,
``check_args(args)``, which validates the arguments with cheap imports only (paths exist, numbers in range) and
raises ``UserInputError`` or ``FileNotFoundError``.

A run goes: parse (only the chosen subcommand's ``add_arguments`` runs, so ``lavida --help`` and
``lavida COMMAND --help`` import neither torch nor transformers), ``check_args``, then, for the subcommands that load
or save LAVIDA checkpoints, ``lavida.register_with_transformers()``, then ``run`` with the heavy imports inside.
Errors the user can fix (``UserInputError``, missing files) are printed as one line on stderr with exit status 2,
never as a traceback. Other errors of the system (a full disk, a busy device, a permission denied) end the run as one
line too, naming the file, with exit status 1 (``-v`` adds the traceback).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Collection
from dataclasses import dataclass
from types import ModuleType

from .errors import UserInputError

USER_ERROR_EXIT = 2
SYSTEM_ERROR_EXIT = 1
INTERRUPTED_EXIT = 130


@dataclass(frozen=True)
class CommandSpec:
    """Where a subcommand lives and what it needs before ``run``.

    Attributes:
        module: the module implementing it (``add_arguments``, ``run`` and optionally ``check_args``).
        uses_checkpoints: loads or saves LAVIDA checkpoints, so the package is registered with transformers
            (``lavida.register_with_transformers``) before ``run``.
    """

    module: str
    uses_checkpoints: bool = False


# subcommand name -> its module and needs
COMMANDS: dict[str, CommandSpec] = {
    "detect": CommandSpec("lavida.commands.detect", uses_checkpoints=True),
    "watch": CommandSpec("lavida.commands.watch", uses_checkpoints=True),
    "calibrate": CommandSpec("lavida.commands.calibrate", uses_checkpoints=True),
    "build-dataset": CommandSpec("lavida.commands.build_dataset"),
    "contact-sheet": CommandSpec("lavida.commands.contact_sheet"),
    "synthesize-preview": CommandSpec("lavida.commands.synthesize_preview"),
    "evaluate": CommandSpec("lavida.commands.evaluate", uses_checkpoints=True),
    "train": CommandSpec("lavida.commands.train", uses_checkpoints=True),
    "demo": CommandSpec("lavida.commands.demo", uses_checkpoints=True),
}


def _import_command(name: str) -> ModuleType | None:
    """The module of subcommand ``name``, or None when it is not part of this installation."""
    module_name = COMMANDS[name].module
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name != module_name:  # a real missing dependency inside the module
            raise
        return None


def _available_commands() -> dict[str, ModuleType]:
    """Subcommand name -> module, for the subcommands this installation has."""
    modules = {name: _import_command(name) for name in COMMANDS}
    return {name: module for name, module in modules.items() if module is not None}


def _chosen_command(argv: list[str]) -> str | None:
    """The first word of ``argv`` that is not an option: the subcommand, if any.

    The options before a subcommand (``-v``, ``--version``, ``--help``) take no values, so the first word is it.
    """
    for word in argv:
        if word == "--":
            return None
        if not word.startswith("-"):
            return word
    return None


class _VersionAction(argparse.Action):
    """``--version``: print ``lavida VERSION`` (the installed distribution's version) and exit.

    The version is looked up only when asked for, not on every run.
    """

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings, dest=dest, default=argparse.SUPPRESS, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        from . import package_version

        print(f"{parser.prog} {package_version()}")
        parser.exit()


def build_parser(with_arguments: Collection[str] | None = None
                 ) -> tuple[argparse.ArgumentParser, dict[str, ModuleType]]:
    """The ``lavida`` parser and the subcommand modules.

    Every subcommand is listed (with the first line of its module docstring); the arguments are added only for the
    subcommands in ``with_arguments`` (default: all), since ``add_arguments`` may import more than the standard
    library.
    """
    parser = argparse.ArgumentParser(prog="lavida", description="Zero-shot video anomaly detection (LAVIDA).")
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug logging")
    parser.add_argument("--version", action=_VersionAction, help="print the version and exit")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = _available_commands()
    for name, module in modules.items():
        doc = (module.__doc__ or "").strip().splitlines()
        sub = subparsers.add_parser(name, help=doc[0] if doc else None, description=module.__doc__,
                                    formatter_class=argparse.RawDescriptionHelpFormatter)
        if with_arguments is None or name in with_arguments:
            module.add_arguments(sub)
    return parser, modules


def describe_os_error(error: OSError, name_file: bool = True) -> str:
    """An ``OSError`` as one line: the system's reason and (when ``name_file``) the file, e.g.
    ``No space left on device: out/a.npz``; callers that name the target themselves leave out the file, which may be
    a temporary one already removed."""
    reason = error.strerror or str(error) or type(error).__name__
    names = [name for name in (error.filename, error.filename2) if name is not None] if name_file else []
    text = f"{reason}: {' -> '.join(map(str, names))}" if names else reason
    return " ".join(text.split())


def _prepare(command: str, module: ModuleType, args: argparse.Namespace) -> None:
    """Validate ``args`` cheaply (``check_args``), then register with transformers if the subcommand needs it."""
    check_args = getattr(module, "check_args", None)
    if check_args is not None:
        check_args(args)
    if COMMANDS[command].uses_checkpoints:
        from . import register_with_transformers

        register_with_transformers()


# Libraries whose debug logging is about their own internals (matplotlib's font search lists every font file, PIL
# every PNG chunk), not about the run: kept at WARNING even under -v.
QUIET_LOGGERS = ("matplotlib", "PIL")


def configure_logging(verbose: bool) -> None:
    """The CLI's logging: warnings (``-v``: debug) as ``LEVEL name: message`` lines on stderr, with the libraries
    of ``QUIET_LOGGERS`` at WARNING either way."""
    level = logging.DEBUG if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(level)  # also when a handler was already there (basicConfig then does nothing)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    """Run ``lavida`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command = _chosen_command(argv)
    parser, modules = build_parser(with_arguments=[command] if command else [])
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    if args.command is None:
        parser.print_help()
        return USER_ERROR_EXIT
    return run_command(args.command, modules[args.command], args)


def run_command(command: str, module: ModuleType, args: argparse.Namespace) -> int:
    """Prepare and run subcommand ``command`` (its ``module``) with parsed ``args``; returns the exit status, an
    error the user or the system caused printed as one line."""
    args.command = command
    try:
        _prepare(args.command, module, args)
        return int(module.run(args) or 0)
    except (UserInputError, FileNotFoundError) as error:
        print(f"lavida {args.command}: error: {error}", file=sys.stderr)
        return USER_ERROR_EXIT
    except OSError as error:
        logging.getLogger(__name__).debug("lavida %s failed", args.command, exc_info=True)
        print(f"lavida {args.command}: error: {describe_os_error(error)}", file=sys.stderr)
        return SYSTEM_ERROR_EXIT
    except KeyboardInterrupt:
        print(f"lavida {args.command}: interrupted", file=sys.stderr)
        return INTERRUPTED_EXIT


if __name__ == "__main__":
    sys.exit(main())
