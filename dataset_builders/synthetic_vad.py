"""The synthetic VAD benchmark: zero-shot anomaly detection on held-out colour-shape compositions.

Each video has 64-256 frames (256x256 by default); 1-3 *normal* objects (training compositions) bounce around for the
whole video; in about half of the videos one or two *held-out* objects enter from outside the frame, cross it and
leave. A frame is anomalous when a held-out object is visible in it; the pixel mask is the union of the visible
held-out objects. The prompt list is the 16 held-out names, so a model must recognise compositions it never saw in
training. Splits use different seeds (``test``, ``validation``, or any other name).

Stored form (``build_synthetic_vad``): a Hugging Face dataset with the video as H.264 mp4 bytes (``Video(decode=False)``
style ``{"bytes", "path"}`` dict), ``frame_labels``, per-frame masks as PNG bytes, the prompt names, and counts.
"""

from __future__ import annotations

import io
import math
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .synthetic_world import (HELD_OUT_COMPOSITIONS, HELD_OUT_NAMES, TRAINING_COMPOSITIONS, MovingObject,
                              SyntheticWorldConfig, bouncing_trajectory, render_background, render_frames)

SPLIT_SEEDS = {"test": 20_261_128, "validation": 4_177, "train": 91_823}


@dataclass
class SyntheticVADConfig:
    """Knobs of the benchmark (defaults = the specification)."""

    size: int = 256
    fps: float = 25.0
    min_frames: int = 64
    max_frames: int = 256
    min_normal_objects: int = 1
    max_normal_objects: int = 3
    anomalous_share: float = 0.5
    max_anomalous_objects: int = 2

    def world(self) -> SyntheticWorldConfig:
        return SyntheticWorldConfig(size=self.size)


@dataclass
class SyntheticVADVideo:
    """One benchmark video: frames ``uint8 [F, H, W, 3]``, masks ``bool [F, H, W]``, frame labels ``int [F]``."""

    video_id: str
    frames: np.ndarray
    masks: np.ndarray
    frame_labels: np.ndarray
    anomaly_names: list[str]  # the held-out objects that appear (empty for a normal video)
    normal_names: list[str]
    fps: float

    @property
    def prompt_names(self) -> list[str]:
        return list(HELD_OUT_NAMES)


def split_seed(split: str) -> int:
    """A stable seed per split name (known splits have fixed seeds; others hash the name)."""
    return SPLIT_SEEDS.get(split, zlib.crc32(split.encode()) & 0x7FFFFFFF)


def crossing_trajectory(rng: np.random.Generator, frames: int, size: int, side: float) -> np.ndarray:
    """Centres of an object that enters from outside one border, crosses the frame and leaves (``(frames, 2)``)."""
    duration = int(rng.integers(max(8, frames // 5), max(9, frames // 2) + 1))
    enter = int(rng.integers(0, max(1, frames - duration)))
    margin = side / 2 + 1
    angle = rng.uniform(0, 2 * math.pi)
    direction = np.array([math.cos(angle), math.sin(angle)])
    centre = np.array([size / 2, size / 2]) + rng.uniform(-size / 4, size / 4, size=2)
    reach = (size / 2) * math.sqrt(2) + margin  # from the centre to outside any border along the direction
    start, end = centre - direction * reach, centre + direction * reach
    positions = np.zeros((frames, 2))
    for t in range(frames):
        progress = (t - enter) / max(duration - 1, 1)
        positions[t] = start + (end - start) * np.clip(progress, -0.5, 1.5)
    return positions


def render_vad_video(index: int, split: str = "test", config: SyntheticVADConfig | None = None,
                     force_anomalous: bool | None = None) -> SyntheticVADVideo:
    """Render video ``index`` of ``split`` deterministically."""
    config = config or SyntheticVADConfig()
    world = config.world()
    rng = np.random.default_rng([split_seed(split), index])
    frames = int(rng.integers(config.min_frames, config.max_frames + 1))
    anomalous = rng.random() < config.anomalous_share if force_anomalous is None else force_anomalous

    objects: list[MovingObject] = []
    count = int(rng.integers(config.min_normal_objects, config.max_normal_objects + 1))
    for k in rng.choice(len(TRAINING_COMPOSITIONS), size=count, replace=False):
        colour, shape = TRAINING_COMPOSITIONS[int(k)]
        side = rng.uniform(world.min_object_size, world.max_object_size) * world.scale
        positions = bouncing_trajectory(rng, frames, world.size, side, world.max_speed * world.scale)
        objects.append(MovingObject(colour, shape, side, positions))
    normal_count = len(objects)
    if anomalous:
        extra = int(rng.integers(1, config.max_anomalous_objects + 1))
        for k in rng.choice(len(HELD_OUT_COMPOSITIONS), size=extra, replace=False):
            colour, shape = HELD_OUT_COMPOSITIONS[int(k)]
            side = rng.uniform(world.min_object_size, world.max_object_size) * world.scale
            objects.append(MovingObject(colour, shape, side, crossing_trajectory(rng, frames, world.size, side)))
    return assemble_vad_video(f"synthetic-vad-{split}-{index:04d}", rng, config, objects, normal_count)


def assemble_vad_video(video_id: str, rng: np.random.Generator, config: SyntheticVADConfig,
                       objects: list[MovingObject], normal_count: int) -> SyntheticVADVideo:
    """Render ``objects`` over a fresh background; the objects after the first ``normal_count`` are the anomalies
    (their union is the mask, the frames where it is visible are anomalous)."""
    world = config.world()
    background = render_background(rng, world.size)
    video, object_masks = render_frames(background, objects, rng, world.jitter * world.scale)
    masks = object_masks[normal_count:].any(axis=0) if len(objects) > normal_count else np.zeros(
        video.shape[:3], dtype=bool)
    labels = masks.reshape(len(masks), -1).any(axis=1).astype(np.int64)
    return SyntheticVADVideo(
        video_id=video_id,
        frames=video,
        masks=masks,
        frame_labels=labels,
        anomaly_names=[o.name for o, m in zip(objects[normal_count:], object_masks[normal_count:]) if m.any()],
        normal_names=[o.name for o in objects[:normal_count]],
        fps=config.fps,
    )


def encode_mask_png(mask: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def decode_mask_png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data))) > 127


def write_vad_video(video: SyntheticVADVideo, folder: str | Path) -> Path:
    """Write ``<folder>/<video_id>.mp4`` (H.264) plus ``<video_id>.labels.json`` and ``<video_id>.masks.npz``."""
    import json

    from ..processing.video_io import write_video

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{video.video_id}.mp4"
    write_video(path, video.frames, fps=video.fps)
    (folder / f"{video.video_id}.labels.json").write_text(json.dumps({
        "video_id": video.video_id, "fps": video.fps, "frame_labels": video.frame_labels.tolist(),
        "anomalies": video.anomaly_names, "normal_objects": video.normal_names, "prompt": video.prompt_names,
    }, indent=1))
    np.savez_compressed(folder / f"{video.video_id}.masks.npz", masks=np.packbits(video.masks, axis=-1),
                        shape=np.array(video.masks.shape))
    return path


def load_vad_masks(path: str | Path) -> np.ndarray:
    """Read the masks written by ``write_vad_video``: ``bool [F, H, W]``."""
    with np.load(path, allow_pickle=False) as data:
        shape = tuple(int(s) for s in data["shape"])
        return np.unpackbits(data["masks"], axis=-1, count=shape[-1]).astype(bool).reshape(shape)


def iter_vad_rows(num_videos: int, split: str = "test", config: SyntheticVADConfig | None = None
                  ) -> Iterator[dict]:
    """Dataset rows: video mp4 bytes, frame labels, PNG masks, names, metadata."""
    import tempfile

    from ..processing.video_io import write_video

    for index in range(num_videos):
        video = render_vad_video(index, split, config)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "video.mp4"
            write_video(path, video.frames, fps=video.fps)
            data = path.read_bytes()
        yield {
            "video_id": video.video_id,
            "video": {"bytes": data, "path": f"{video.video_id}.mp4"},
            "fps": float(video.fps),
            "num_frames": int(len(video.frames)),
            "frame_labels": video.frame_labels.astype(np.int8).tolist(),
            "masks": [encode_mask_png(m) for m in video.masks],
            "names": video.prompt_names,
            "anomalies": video.anomaly_names,
            "source": "synthetic-vad",
        }




def vad_features():
    """``datasets.Features`` of the stored benchmark (video bytes, per-frame labels and PNG masks)."""
    from datasets import Features, List, Value

    return Features({
        "video_id": Value("string"),
        "video": {"bytes": Value("binary"), "path": Value("string")},
        "fps": Value("float32"),
        "num_frames": Value("int32"),
        "frame_labels": List(Value("int8")),
        "masks": List(Value("binary")),
        "names": List(Value("string")),
        "anomalies": List(Value("string")),
        "source": Value("string"),
    })


def write_vad_dataset(out_dir: str | Path, num_videos: int = 32, split: str = "test",
                      config: SyntheticVADConfig | None = None, videos_per_shard: int = 16) -> Path:
    """The benchmark as a Hugging Face dataset folder: ``data/<split>-*.parquet`` + ``README.md``."""
    import os

    from datasets import Dataset
    from huggingface_hub import DatasetCard, DatasetCardData

    out_dir = Path(out_dir)
    (out_dir / "data").mkdir(parents=True, exist_ok=True)
    rows = iter_vad_rows(num_videos, split, config)
    count = (num_videos + videos_per_shard - 1) // videos_per_shard
    anomalous = 0
    for shard in range(count):
        chunk = [next(rows) for _ in range(min(videos_per_shard, num_videos - shard * videos_per_shard))]
        anomalous += sum(bool(r["anomalies"]) for r in chunk)
        path = out_dir / "data" / f"{split}-{shard:05d}-of-{count:05d}.parquet"
        partial = path.with_name(f".{path.name}.partial")
        Dataset.from_list(chunk, features=vad_features()).to_parquet(str(partial))
        os.replace(partial, path)
    data = DatasetCardData(license="mit", task_categories=["video-classification"],
                           tags=["video-anomaly-detection", "synthetic", "zero-shot"], pretty_name="synthetic-vad",
                           configs=[{"config_name": "default",
                                     "data_files": [{"split": split, "path": f"data/{split}-*.parquet"}]}])
    body = (f"\n# synthetic-vad ({split})\n\n{num_videos} videos ({anomalous} with held-out objects). "
            "Normal objects use the 48 training colour-shape compositions; anomalies are the 16 held-out ones "
            "((colour i, shape j) with (i + j) % 4 == 0), which the prompt lists. Columns: video (H.264 mp4 bytes), "
            "fps, num_frames, frame_labels, masks (one PNG per frame), names (the prompt), anomalies (present "
            "held-out objects). Built by `lavida build-dataset synthetic-vad`.\n")
    DatasetCard(f"---\n{data.to_yaml()}\n---\n{body}").save(str(out_dir / "README.md"))
    return out_dir


def make_sample_video(folder: str | Path, num_frames: int = 96, seed_index: int = 0) -> Path:
    """The sample video shipped for ``make demo``: one held-out object crosses the scene during the middle third.

    Writes ``sample.mp4`` and its ground truth (``sample.labels.json``, ``sample.masks.npz``) into ``folder`` and
    ``sample.anomalies.txt`` (the prompt: the 16 held-out names, comma separated).
    """
    config = SyntheticVADConfig(min_frames=num_frames, max_frames=num_frames, max_anomalous_objects=1,
                                max_normal_objects=2)
    index = seed_index
    while True:  # the first rendering whose anomaly is clearly visible for a good stretch in the middle
        video = render_vad_video(index, "sample", config, force_anomalous=True)
        visible = np.flatnonzero(video.frame_labels)
        area = video.masks.reshape(len(video.masks), -1).sum(axis=1)
        if (len(visible) >= num_frames // 4 and visible[0] >= num_frames // 8 and visible[-1] < num_frames - 8
                and np.median(area[visible]) > (config.size / 16) ** 2):
            break
        index += 1
    video.video_id = "sample"
    path = write_vad_video(video, folder)
    (Path(folder) / "sample.anomalies.txt").write_text(", ".join(video.prompt_names) + "\n")
    return path


__all__ = ["SPLIT_SEEDS", "SyntheticVADConfig", "SyntheticVADVideo", "assemble_vad_video", "crossing_trajectory",
           "decode_mask_png", "encode_mask_png",
           "iter_vad_rows", "load_vad_masks", "make_sample_video", "render_vad_video", "split_seed",
           "vad_features", "write_vad_dataset", "write_vad_video"]
