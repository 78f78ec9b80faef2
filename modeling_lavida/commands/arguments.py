"""Argument helpers shared by several ``lavida`` subcommands: flags built from an options dataclass, pixel budgets.

``add_dataclass_arguments`` turns the fields of a dataclass (``DetectionOptions``) into flags, so a setting has one
name (``smoothing_sigma`` -> ``--smoothing-sigma``), one default and one help text, all taken from the dataclass;
``dataclass_from_args`` builds the dataclass back from the parsed arguments, where it validates itself. Only the
standard library is imported (``lavida --help`` stays instant).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, fields
from typing import Any

LLM_FRAME_PIXELS_HELP = ("MLLM pixel budget per frame as MIN,MAX areas, or MIN,MAX followed by 'x28' for units of "
                         "28x28 px (one LLM token), e.g. 160,192x28 = the paper's inference budget (default: the "
                         "checkpoint's processor)")
# Field annotation -> argparse type, for the plain field types (annotations are strings under __future__.annotations).
_PLAIN_TYPES: dict[str, Callable[[str], Any]] = {"int": int, "float": float, "str": str}


def pixel_budget(text: str) -> tuple[int, int]:
    """``"MIN,MAX"`` pixel areas, or ``"MIN,MAXx28"`` in units of 28 x 28 px -> ``(min_area, max_area)``."""
    value = text.strip().lower()
    unit = 1
    if value.endswith("x28"):
        value, unit = value[:-3], 28 * 28
    try:
        low, high = (int(part) * unit for part in value.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN,MAX (e.g. 125440,150528 or 160,192x28), got {text!r}") from None
    if not 0 < low <= high:
        raise argparse.ArgumentTypeError(f"expected 0 < MIN <= MAX, got {text!r}")
    return low, high


def flag_name(field_name: str) -> str:
    """The flag of a dataclass field: ``min_event_frames`` -> ``--min-event-frames``."""
    return "--" + field_name.replace("_", "-")


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type, *, exclude: Iterable[str] = (),
                            defaults: Mapping[str, Any] | None = None, types: Mapping[str, Callable] | None = None,
                            aliases: Mapping[str, Iterable[str]] | None = None,
                            helps: Mapping[str, str] | None = None,
                            metavars: Mapping[str, str] | None = None) -> None:
    """Add one flag per field of the dataclass ``cls`` (help from the field's ``metadata["help"]``).

    Args:
        exclude: fields the command sets itself.
        defaults: a default other than the field's (e.g. None meaning "the benchmark's standard").
        types: argparse types for fields whose annotation is not int/float/str/bool.
        aliases: further option strings of a field (kept for compatibility, e.g. ``--smoothing``).
        helps: a help text replacing the field's (the default is appended either way).
        metavars: metavars of the flags.

    A bool field becomes ``--name/--no-name`` (``argparse.BooleanOptionalAction``); ``dest`` is the field name.
    """
    excluded, defaults, types = set(exclude), dict(defaults or {}), dict(types or {})
    aliases, helps, metavars = dict(aliases or {}), dict(helps or {}), dict(metavars or {})
    for spec in fields(cls):
        if spec.name in excluded:
            continue
        default = defaults.get(spec.name, spec.default if spec.default is not MISSING else None)
        text = helps.get(spec.name, spec.metadata.get("help", ""))
        help_text = f"{text} (default: {default})" if "(default" not in text else text
        names = [flag_name(spec.name), *aliases.get(spec.name, ())]
        annotation = str(spec.type).replace(" ", "")
        if annotation in ("bool", "bool|None"):
            parser.add_argument(*names, dest=spec.name, action=argparse.BooleanOptionalAction, default=default,
                                help=help_text)
            continue
        kind = types.get(spec.name) or _PLAIN_TYPES.get(annotation.split("|")[0])
        if kind is None:
            raise TypeError(f"No argparse type for field {spec.name} ({spec.type}): pass it in types.")
        parser.add_argument(*names, dest=spec.name, type=kind, default=default, help=help_text,
                            metavar=metavars.get(spec.name, spec.name.split("_")[-1].upper()))


def dataclass_from_args(cls: type, args: argparse.Namespace, **overrides: Any) -> Any:
    """``cls(**fields read from args, **overrides)``: the fields ``args`` has (others keep their defaults)."""
    values = {spec.name: getattr(args, spec.name) for spec in fields(cls) if hasattr(args, spec.name)}
    return cls(**{**values, **overrides})


__all__ = ["LLM_FRAME_PIXELS_HELP", "add_dataclass_arguments", "dataclass_from_args", "flag_name", "pixel_budget"]


def add_scoring_arguments(parser: argparse.ArgumentParser, *, exclude: Iterable[str] = (),
                          defaults: Mapping[str, Any] | None = None, helps: Mapping[str, str] | None = None) -> None:
    """The flags every scoring command shares: ``--anomalies``, ``--model`` and the ``DetectionOptions`` fields.

    Args:
        exclude: ``DetectionOptions`` fields the command sets itself (``return_masks`` always is).
        defaults, helps: per-field defaults and help texts other than the dataclass's (e.g. the calibration's).
    """
    from lavida.processing.options import DetectionOptions  # a dataclass module: no torch, no transformers

    parser.add_argument("--anomalies", required=True, help='comma-separated anomaly names, e.g. "fighting, fire"')
    parser.add_argument("--model", default=None,
                        help="checkpoint folder or Hub id (default: the embedded lavida-tiny)")
    add_dataclass_arguments(parser, DetectionOptions, exclude=["return_masks", *exclude], defaults=defaults,
                            aliases={"smoothing_sigma": ["--smoothing"]}, types={"llm_frame_pixels": pixel_budget},
                            helps={**(helps or {}), "llm_frame_pixels": LLM_FRAME_PIXELS_HELP},
                            metavars={"llm_frame_pixels": "MIN,MAX"})
