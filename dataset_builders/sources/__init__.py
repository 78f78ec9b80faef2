"""Readers of the real pseudo-anomaly sources, each reading its dataset's official release layout.

``get_source(name, data_root)`` returns a reader with ``name``, ``max_names``, ``is_video``, ``name_pool()`` and
``iter_items()`` (see ``base.SourceReader``). Reader modules are imported only when asked for. The layouts and
licences are listed in this folder's README.md.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from lavida.errors import UserInputError

from .base import SourceReader

# source name -> (module, reader class, fixed keyword arguments)
_REGISTRY: dict[str, tuple[str, str, dict[str, Any]]] = {
    "refcoco": ("refcoco", "RefCocoReader", {"dataset": "refcoco"}),
    "refcoco+": ("refcoco", "RefCocoReader", {"dataset": "refcoco+"}),
    "refcocog": ("refcoco", "RefCocoReader", {"dataset": "refcocog"}),
    "refclef": ("refcoco", "RefCocoReader", {"dataset": "refclef"}),
    "ade20k": ("ade20k", "Ade20kReader", {}),
    "cityscapes": ("cityscapes", "CityscapesReader", {}),
    "mapillary": ("mapillary", "MapillaryReader", {}),
    "youtube-vos": ("youtube_vos", "YoutubeVosReader", {}),
    "ref-youtube-vos": ("ref_youtube_vos", "RefYoutubeVosReader", {}),
    "mevis": ("mevis", "MevisReader", {}),
    "ref-davis": ("ref_davis", "RefDavisReader", {}),
}

SOURCE_NAMES: list[str] = list(_REGISTRY)


def get_source(name: str, data_root: str | Path, **kwargs: Any) -> SourceReader:
    """Build the reader of source ``name`` over ``data_root``.

    Args:
        name: one of ``SOURCE_NAMES`` (underscores are accepted for hyphens: ``ref_davis``).
        data_root: the folder holding the source's release, laid out as the release ships it.
        **kwargs: passed to the reader: ``split`` ("train" by default), ``clip_length`` (8), and for the RefCOCO
            family ``split_by`` and ``image_root``.

    Raises:
        UserInputError: for an unknown name, or a missing / malformed release folder (the message names the
            expected layout).
    """
    key = name.strip().lower().replace("_", "-")
    if key not in _REGISTRY:
        raise UserInputError(f"unknown source {name!r}; valid sources are: {', '.join(SOURCE_NAMES)}")
    module_name, class_name, fixed = _REGISTRY[key]
    module = importlib.import_module(f"{__name__}.{module_name}")
    return getattr(module, class_name)(Path(data_root), **fixed, **kwargs)


__all__ = ["SOURCE_NAMES", "SourceReader", "get_source"]
