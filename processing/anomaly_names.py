"""Reading the anomaly names a user types (``--anomalies "fighting, fire"``, a Space text box, a pipeline kwarg).

    parse_anomaly_names("Fighting,  fire , fighting,")   # ['Fighting', 'fire']
    parse_anomaly_names(["car crash", "  smoke "])         # ['car crash', 'smoke']

Text is split on commas; a list is taken item by item (items are not split again, so a list can carry a name with a
comma). Each name is stripped and inner runs of whitespace become one space; empty entries (``"a,,b"``, a trailing
comma) are dropped; repeats are dropped case-insensitively, keeping the first spelling and the order.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass

from .errors import UserInputError
from .processing_lavida import MAX_NAME_CHARS, MAX_NAMES

logger = logging.getLogger(__name__)

_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class AnomalyNameLimits:
    """Bounds on the name list: the class-name encoder and the prompt grow with both."""

    max_names: int = MAX_NAMES
    max_name_chars: int = MAX_NAME_CHARS


def parse_anomaly_names(names: str | Iterable[str], limits: AnomalyNameLimits | None = None) -> list[str]:
    """Normalise the user's anomaly names into a clean, ordered, duplicate-free list.

    Args:
        names: comma-separated text, or an iterable of names.
        limits: the bounds to enforce (default: 256 names of at most 200 characters).

    Raises:
        UserInputError: no names at all (empty or blank), a name that is not text, more than ``max_names`` names
            or a name longer than ``max_name_chars`` characters.
    """
    limits = limits or AnomalyNameLimits()
    if names is None:
        raise UserInputError("No anomaly names given: pass at least one, e.g. --anomalies \"fighting, fire\".")
    if isinstance(names, str):
        items = names.split(",")
    else:
        items = list(names)
        for item in items:
            if not isinstance(item, str):
                raise UserInputError(f"Anomaly name {item!r} is not text ({type(item).__name__}): give names "
                                     "as strings, e.g. [\"fighting\", \"fire\"].")
    parsed: list[str] = []
    seen: set[str] = set()
    for item in items:
        name = _WHITESPACE.sub(" ", item).strip()
        if not name:
            continue
        key = name.casefold()
        if key in seen:
            continue
        seen.add(key)
        parsed.append(name)
    if not parsed:
        raise UserInputError("The anomaly list is empty or blank: give at least one name, e.g. "
                             "--anomalies \"fighting, fire\".")
    if len(parsed) > limits.max_names:
        raise UserInputError(f"Got {len(parsed)} anomaly names; at most {limits.max_names} are supported: "
                             "keep the ones you need.")
    for name in parsed:
        if len(name) > limits.max_name_chars:
            raise UserInputError(f"Anomaly name {name[:40]!r}... is {len(name)} characters long; at most "
                                 f"{limits.max_name_chars} are supported: shorten it (names are short phrases, "
                                 "e.g. \"car crash\"). Separate several names with commas.")
    if len(parsed) < len(items):
        logger.debug("Anomaly names %r normalised to %r", items, parsed)
    return parsed


__all__ = ["AnomalyNameLimits", "parse_anomaly_names"]
