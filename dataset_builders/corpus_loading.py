"""Reading built corpora for training: one folder, or several mixed with the paper's probabilities.

A mix YAML lists built corpus folders (or Hub dataset ids) and their sampling probabilities::

    seed: 42
    sources:
      - {path: corpora/mevis, probability: 0.25}
      - {path: corpora/ref-youtube-vos, probability: 0.20}
      ...

``load_mixed_corpus`` interleaves them with ``datasets.interleave_datasets`` (probabilities renormalised over the
listed sources, ``all_exhausted`` so small sources are revisited rather than dropped).
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from ..errors import UserInputError


def load_built_corpus(path: str | os.PathLike, split: str = "train"):
    """A folder written by ``lavida build-dataset`` (or a Hub id) as a ``datasets.Dataset``.

    A local folder is read through its shard files (``data/<split>-*.parquet``) rather than its README: with a
    README ``configs`` section, ``datasets`` keys its cache on the config alone, so a corpus rebuilt in place (or
    another folder of the same name) would load the stale cached copy. Keyed on the shard files, the cache follows
    their modification times.
    """
    from datasets import load_dataset

    local = Path(path)
    try:
        if local.is_dir():
            shards = sorted(str(shard) for shard in (local / "data").glob(f"{split}-*.parquet"))
            if not shards:
                raise FileNotFoundError(f"no shard data/{split}-*.parquet in {local}")
            return load_dataset("parquet", data_files={split: shards}, split=split)
        return load_dataset(str(path), split=split)
    except (FileNotFoundError, ValueError) as error:
        raise UserInputError(f"Cannot load corpus {path} (split {split!r}): {error}. Build it with "
                             "`lavida build-dataset ... --out FOLDER`.") from error


def read_mix(path: str | os.PathLike) -> tuple[list[str], list[float], int]:
    """(sources, probabilities, seed) of a mix YAML; relative paths are resolved against the YAML's folder."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"Mix file {path} does not exist; see configs/mix-paper.yaml for the format.")
    raw = yaml.safe_load(path.read_text()) or {}
    entries = raw.get("sources") or []
    if not entries:
        raise UserInputError(f"Mix file {path} lists no sources: add `sources: [{{path: ..., probability: ...}}]`.")
    sources, probabilities = [], []
    for entry in entries:
        if not isinstance(entry, dict) or "path" not in entry or "probability" not in entry:
            raise UserInputError(f"Mix file {path}: each source needs `path` and `probability`, got {entry!r}.")
        source = str(entry["path"])
        local = Path(os.path.normpath(path.parent / source)) if not os.path.isabs(source) else Path(source)
        sources.append(str(local) if local.exists() else source)
        probabilities.append(float(entry["probability"]))
    total = sum(probabilities)
    if total <= 0:
        raise UserInputError(f"Mix file {path}: probabilities must sum to a positive number.")
    return sources, [p / total for p in probabilities], int(raw.get("seed", 0))


def load_mixed_corpus(path: str | os.PathLike, seed: int | None = None, split: str = "train"):
    """Interleave the corpora of a mix YAML with their probabilities."""
    from datasets import interleave_datasets

    sources, probabilities, mix_seed = read_mix(path)
    datasets = [load_built_corpus(source, split) for source in sources]
    return interleave_datasets(datasets, probabilities=probabilities, seed=mix_seed if seed is None else seed,
                               stopping_strategy="all_exhausted")


__all__ = ["load_built_corpus", "load_mixed_corpus", "read_mix"]
