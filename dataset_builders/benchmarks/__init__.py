"""Video anomaly detection benchmarks read from their official download layouts (test splits).

    from lavida.dataset_builders.benchmarks import get_benchmark
    bench = get_benchmark("ped2", "data/UCSD_Anomaly_Dataset.v1p2")
    bench.anomaly_names, bench.stride          # the standard prompt names and frame stride
    for video in bench:                        # BenchmarkVideo records: references, loaded lazily
        frames_or_path = video.load()
        labels = video.frame_labels(num_frames)
    dataset = bench.to_dataset()               # datasets.Dataset, one row per test video
"""

from __future__ import annotations

from pathlib import Path

from lavida.errors import UserInputError

from .avenue import AVENUE_ANOMALY_NAMES, Avenue
from .base import (Benchmark, BenchmarkVideo, EmptyMasks, FolderMasks, MaskSource, MatVolumeMasks, NpyMasks,
                   list_frame_files, read_frame_folder)
from .dataset_view import open_mask_source
from .shanghaitech import SHANGHAITECH_ANOMALY_NAMES, ShanghaiTech
from .synthetic import (SYNTHETIC_BENCHMARKS, SyntheticVAD, SyntheticVADNearMiss, build_synthetic_vad_split,
                        is_synthetic_vad_folder)
from .ubnormal import UBNORMAL_ANOMALY_NAMES, UBnormal, UBnormalMasks
from .ucf_crime import UCF_CRIME_ANOMALY_NAMES, UCFCrime
from .ucsd_ped import UCSD_ANOMALY_NAMES, UCSDPed1, UCSDPed2
from .xd_violence import XD_VIOLENCE_ANOMALY_NAMES, XDViolence

BENCHMARKS: dict[str, type[Benchmark]] = {cls.name: cls for cls in (UCSDPed1, UCSDPed2, ShanghaiTech, UBnormal,
                                                                    UCFCrime, XDViolence, Avenue, SyntheticVAD,
                                                                    SyntheticVADNearMiss)}
_ALIASES = {"ucsd-ped1": "ped1", "ucsd-ped2": "ped2", "shanghaitech-campus": "shanghaitech", "ucf": "ucf-crime",
            "ucfcrime": "ucf-crime", "xd": "xd-violence", "xdviolence": "xd-violence", "cuhk-avenue": "avenue",
            "synthetic": "synthetic-vad", "synthetic-near-miss": "synthetic-vad-near-miss",
            "near-miss": "synthetic-vad-near-miss"}


def benchmark_names() -> list[str]:
    """The names ``get_benchmark`` accepts (aliases aside)."""
    return sorted(BENCHMARKS)


def canonical_name(name: str) -> str:
    """``"UCSD_Ped2"`` -> ``"ped2"``: lower case, ``_``/space -> ``-``, aliases resolved."""
    key = name.strip().lower().replace("_", "-").replace(" ", "-")
    return _ALIASES.get(key, key)


def get_benchmark(name: str, data_root: str | Path) -> Benchmark:
    """The benchmark ``name`` read from ``data_root``.

    Raises:
        UserInputError: an unknown name, or a data root that does not hold the benchmark's official layout.
    """
    key = canonical_name(name)
    if key not in BENCHMARKS:
        raise UserInputError(f"Unknown benchmark {name!r}: choose one of {', '.join(benchmark_names())}.")
    return BENCHMARKS[key](data_root)


__all__ = ["AVENUE_ANOMALY_NAMES", "BENCHMARKS", "Avenue", "Benchmark", "BenchmarkVideo", "EmptyMasks", "FolderMasks",
           "MaskSource", "MatVolumeMasks", "NpyMasks", "SHANGHAITECH_ANOMALY_NAMES", "SYNTHETIC_BENCHMARKS",
           "ShanghaiTech", "SyntheticVAD", "SyntheticVADNearMiss", "UBNORMAL_ANOMALY_NAMES", "UBnormal", "UBnormalMasks",
           "UCFCrime", "UCF_CRIME_ANOMALY_NAMES",
           "UCSDPed1", "UCSDPed2", "UCSD_ANOMALY_NAMES", "XDViolence", "XD_VIOLENCE_ANOMALY_NAMES", "benchmark_names",
           "build_synthetic_vad_split", "canonical_name", "get_benchmark", "is_synthetic_vad_folder",
           "list_frame_files", "open_mask_source", "read_frame_folder"]
