"""Fixtures of the Space tests: a tiny random checkpoint selected through LAVIDA_MODEL, small videos, a live app."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

MAX_DURATION_S = 3.0
MAX_UPLOAD_MB = 1.0
MAX_FRAMES = 400


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def moving_square_video(path: Path, frames: int, height: int, width: int, fps: float, seed: int,
                        colour: tuple[int, int, int] = (220, 40, 40), odd_size: str = "pad") -> Path:
    """A textured background with a square sliding across it (enough structure for the scores to vary)."""
    from lavida.processing.video_io import write_video

    rng = np.random.default_rng(seed)
    background = rng.integers(40, 200, size=(height, width, 3), dtype=np.uint8)
    video = np.repeat(background[None], frames, axis=0)
    side = max(4, min(height, width) // 3)
    for t in range(frames):
        x = int((width - side) * t / max(frames - 1, 1))
        video[t, height // 3:height // 3 + side, x:x + side] = colour
    write_video(path, video, fps, odd_size=odd_size)
    return path


@pytest.fixture(scope="session")
def tiny_checkpoint(varied_lavida_checkpoint) -> Path:
    """The Space's model: scores that differ per video, frame and names, so a mixed-up request would show."""
    return varied_lavida_checkpoint


@pytest.fixture(scope="session")
def reference_model(tiny_checkpoint):
    """The checkpoint loaded in this process, to compute the expected scores."""
    from lavida.model_factory import load_model_and_processor

    return load_model_and_processor(str(tiny_checkpoint), device="cpu")


@pytest.fixture(scope="session")
def reference_detector(reference_model):
    """The detection pipeline around the reference model, to compute the expected scores."""
    from lavida.processing.pipeline_lavida import TASK, VideoAnomalyDetectionPipeline

    model, processor = reference_model
    return VideoAnomalyDetectionPipeline(model=model, processor=processor, device="cpu", task=TASK)


@pytest.fixture(scope="session")
def videos(tmp_path_factory) -> dict[str, Path]:
    """Short test videos: two valid ones (one of odd size), one over the duration limit, a text file, a big file."""
    folder = tmp_path_factory.mktemp("space-videos")
    made = {
        "walk": moving_square_video(folder / "walk.mp4", 16, 64, 80, 10.0, seed=1),
        "odd": moving_square_video(folder / "odd size.mp4", 12, 45, 61, 8.0, seed=2, colour=(40, 80, 220),
                                   odd_size="exact"),
        "long": moving_square_video(folder / "long.mp4", 40, 32, 32, 10.0, seed=3),
    }
    (folder / "notes.txt").write_text("not a video\n")
    made["text"] = folder / "notes.txt"
    big = folder / "big.mp4"
    big.write_bytes(np.random.default_rng(4).bytes(int(MAX_UPLOAD_MB * 1.5 * 2**20)))
    made["big"] = big
    return made


@dataclass
class LiveApp:
    url: str
    app: object
    settings: object
    work_dir: Path


@pytest.fixture(scope="session")
def live_app(tiny_checkpoint, tmp_path_factory):
    """The Space served on 127.0.0.1 (a free port), its model chosen through LAVIDA_MODEL, two requests at a time.

    ``launch`` sets torch's threads for the whole process; the tests after these get the previous number back."""
    import torch

    from lavida.space.app import launch
    from lavida.space.settings import SpaceSettings

    threads = torch.get_num_threads()

    work_dir = tmp_path_factory.mktemp("space-work")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LAVIDA_MODEL", str(tiny_checkpoint))
        settings = SpaceSettings.from_env(work_dir=str(work_dir), concurrency_limit=2, max_queue_size=16,
                                          max_duration_s=MAX_DURATION_S, max_upload_mb=MAX_UPLOAD_MB,
                                          max_frames=MAX_FRAMES)
        assert settings.model == str(tiny_checkpoint)
        port = free_port()
        app = launch(settings, block=False, server_name="127.0.0.1", server_port=port, quiet=True)
    try:
        yield LiveApp(url=f"http://127.0.0.1:{port}/", app=app, settings=settings, work_dir=work_dir)
    finally:
        app.close()
        torch.set_num_threads(threads)
