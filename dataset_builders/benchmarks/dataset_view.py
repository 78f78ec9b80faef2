"""A benchmark's test split as a Hugging Face ``datasets.Dataset`` (one row per video), and back to mask readers."""

from __future__ import annotations

import logging
from pathlib import Path

import datasets
import numpy as np

from .base import Benchmark, EmptyMasks, FolderMasks, MaskSource, MatVolumeMasks, NpyMasks

logger = logging.getLogger(__name__)

FEATURES = datasets.Features({
    "video_id": datasets.Value("string"),
    "video_path": datasets.Value("string"),
    "video_kind": datasets.Value("string"),
    "video_bytes": datasets.Value("binary"),
    "num_frames": datasets.Value("int32"),
    "labels": datasets.Sequence(datasets.Value("int8")),
    "anomaly_ranges": datasets.Sequence(datasets.Sequence(datasets.Value("int32"))),
    "mask_kind": datasets.Value("string"),
    "mask_path": datasets.Value("string"),
    "tracks": datasets.List({
        "track_id": datasets.Value("int32"),
        "frames": datasets.Sequence(datasets.Value("int32")),
        "boxes": datasets.Sequence(datasets.Sequence(datasets.Value("int32"))),
    }),
    "anomaly_names": datasets.Sequence(datasets.Value("string")),
    "stride": datasets.Value("int32"),
    "benchmark": datasets.Value("string"),
})


def _mask_readers() -> dict[str, type]:
    from .synthetic import SyntheticVADMasks
    from .ubnormal import UBnormalMasks

    return {cls.kind: cls for cls in (FolderMasks, NpyMasks, MatVolumeMasks, UBnormalMasks, SyntheticVADMasks)}


def open_mask_source(kind: str, path: str) -> MaskSource | None:
    """The mask reader for a row's ``mask_kind`` / ``mask_path`` (None when the row has no masks)."""
    if not kind:
        return None
    if kind == EmptyMasks.kind:
        return EmptyMasks()
    readers = _mask_readers()
    if kind not in readers:
        raise ValueError(f"Unknown mask kind {kind!r}; expected one of {sorted(readers)}.")
    return readers[kind](path)


def benchmark_to_dataset(benchmark: Benchmark, embed_videos: bool = False, with_tracks: bool = True
                         ) -> datasets.Dataset:
    """See ``Benchmark.to_dataset``."""
    rows = []
    for video in benchmark:
        labels = video.frame_labels()
        tracks = video.tracks() if with_tracks else []
        video_bytes = None
        if embed_videos and not video.is_frame_folder:
            video_bytes = Path(video.video).read_bytes()
        rows.append({
            "video_id": video.video_id,
            "video_path": str(video.video),
            "video_kind": "frames" if video.is_frame_folder else "file",
            "video_bytes": video_bytes,
            "num_frames": int(labels.size),
            "labels": labels.tolist(),
            "anomaly_ranges": [[s, e] for s, e in video.ranges],
            "mask_kind": video.masks.kind if video.masks is not None else "",
            "mask_path": video.masks.path if video.masks is not None else "",
            "tracks": [{"track_id": int(t.track_id), "frames": t.frames.astype(int).tolist(),
                        "boxes": np.asarray(t.boxes).astype(int).tolist()} for t in tracks],
            "anomaly_names": list(benchmark.anomaly_names),
            "stride": int(benchmark.stride),
            "benchmark": benchmark.name,
        })
    description = (f"{benchmark.name} test split ({len(rows)} videos); standard stride {benchmark.stride}; prompt "
                   f"names: {', '.join(benchmark.anomaly_names)}.")
    info = datasets.DatasetInfo(features=FEATURES, description=description)
    return datasets.Dataset.from_list(rows, features=FEATURES, info=info)


__all__ = ["FEATURES", "benchmark_to_dataset", "open_mask_source"]
