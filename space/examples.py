"""Example videos of the Space, rendered from the project's synthetic world when the app starts.

Two short 256x256 videos of coloured shapes bouncing over a textured background (the world lavida-tiny is trained on):

- ``held-out-crossing.mp4``: a held-out composition (a colour-shape pair never seen in training) crosses the scene
  for a good stretch in the middle; it is the anomaly, visible by eye;
- ``normal-scene.mp4``: training compositions only, no anomaly.

Both are prompted with the synthetic world's 16 held-out names; each video's ground truth (frame labels, the
objects shown) sits next to it as ``<name>.labels.json``. Rendering is deterministic and takes well under a
second; the folder is written once (atomically: rendered into a temporary folder, then renamed) and reused.

Clicking an example runs it. ``ExampleResults`` detects each example on its first use and shows that result again
to every later visitor, so the start-up stays cheap and only the first click waits for a detection; the results
live as long as the app's process (a restarted app may serve another model).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lavida.dataset_builders.synthetic_vad import (SyntheticVADConfig, make_sample_video, render_vad_video,
                                                   write_vad_video)

from .presets import SYNTHETIC_PRESET, preset_text

if TYPE_CHECKING:  # the service imports the pipeline (torch, transformers); rendering the examples does not need it
    from .service import CancelledFn, DetectionService, ProgressFn, SpaceResult

logger = logging.getLogger(__name__)

EXAMPLES_VERSION = 1  # bump when the rendering changes, so stale folders are not reused
EXAMPLE_FRAMES = 64
ANOMALOUS_NAME, NORMAL_NAME = "held-out-crossing", "normal-scene"
NORMAL_SPLIT = "space-examples"  # the synthetic-VAD split seed of the normal example


@dataclass(frozen=True)
class SpaceExample:
    """One example row of the page: the video and the control values it is shown with."""

    video: Path
    anomalies: str
    stride: int
    threshold: float
    label: str

    def row(self) -> list:
        """The values of (video, names, stride, threshold), in the order of the page's inputs."""
        return [str(self.video), self.anomalies, self.stride, self.threshold]


def _render(folder: Path, num_frames: int) -> None:
    make_sample_video(folder, num_frames=num_frames)  # the anomaly is chosen to be clearly visible
    for suffix in (".mp4", ".labels.json"):
        (folder / f"sample{suffix}").rename(folder / f"{ANOMALOUS_NAME}{suffix}")
    config = SyntheticVADConfig(min_frames=num_frames, max_frames=num_frames, max_normal_objects=2)
    normal = render_vad_video(0, NORMAL_SPLIT, config, force_anomalous=False)
    normal.video_id = NORMAL_NAME
    write_vad_video(normal, folder)
    for leftover in [*folder.glob("*.masks.npz"), *folder.glob("*.anomalies.txt")]:
        leftover.unlink()  # the page needs only the videos; the labels stay as their ground truth


def ensure_examples(root: str | Path, num_frames: int = EXAMPLE_FRAMES) -> list[SpaceExample]:
    """Render the example videos into ``root/examples-v<version>-<frames>`` unless already there.

    Returns:
        The examples, the one with a visible anomaly first.
    """
    folder = Path(root) / f"examples-v{EXAMPLES_VERSION}-{num_frames}"
    manifest = folder / "examples.json"
    if not manifest.is_file():
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = folder.parent / f".{folder.name}.partial-{uuid.uuid4().hex[:8]}"
        staging.mkdir()
        try:
            _render(staging, num_frames)
            (staging / "examples.json").write_text(json.dumps({"frames": num_frames,
                                                               "videos": [ANOMALOUS_NAME, NORMAL_NAME]}))
            try:
                staging.rename(folder)
            except OSError:  # another process finished the same folder first: keep theirs
                if not manifest.is_file():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        logger.info("Rendered the example videos into %s", folder)
    names = preset_text(SYNTHETIC_PRESET)
    return [
        SpaceExample(folder / f"{ANOMALOUS_NAME}.mp4", names, 1, 0.5, "held-out shape crosses the scene (anomaly)"),
        SpaceExample(folder / f"{NORMAL_NAME}.mp4", names, 1, 0.5, "training shapes only (normal)"),
    ]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class ExampleResults:
    """The page's requests, with each example detected on its first use and its result shown again afterwards.

    A request is an example's when its video has the example video's name and content (the page hands the handler a
    copy of it), its names, stride and threshold are the example's and it brings no calibration; any other request
    goes to the service as it is. An example's result is written where newer requests do not remove it
    (``DetectionService.run(keep=True)``); a visitor who clicks an example while its first detection runs waits for
    that one instead of starting another.
    """

    def __init__(self, service: DetectionService, examples: Sequence[SpaceExample]):
        self.service = service
        self._keys = {(e.video.name, _sha256(e.video), e.anomalies, float(e.stride), float(e.threshold))
                      for e in examples}
        self._sizes = {e.video.stat().st_size for e in examples}
        self._locks = {key: threading.Lock() for key in self._keys}
        self._results: dict[tuple, SpaceResult] = {}

    def example_key(self, video: str | Path | None, anomalies: str, stride: float, threshold: float,
                    calibration: str | Path | None = None) -> tuple | None:
        """The key of the example these inputs are, else None."""
        if calibration or not video:
            return None
        path = Path(video)
        try:
            if path.stat().st_size not in self._sizes:  # most uploads are told apart without reading them
                return None
            key = (path.name, _sha256(path), (anomalies or "").strip(), float(stride), float(threshold))
        except (OSError, TypeError, ValueError):  # no such file, no numbers: the service explains
            return None
        return key if key in self._keys else None

    def run(self, video: str | Path | None, anomalies: str, stride: float, threshold: float,
            progress: ProgressFn | None = None, cancelled: CancelledFn | None = None,
            calibration: str | Path | None = None) -> SpaceResult:
        """``DetectionService.run``, answered from the examples' results when the request is an example's."""
        key = self.example_key(video, anomalies, stride, threshold, calibration)
        if key is None:
            return self.service.run(video, anomalies, stride, threshold, progress=progress, cancelled=cancelled,
                                    calibration=calibration)
        with self._locks[key]:
            result = self._results.get(key)
            if result is None or not result.result_json.is_file():
                result = self._results[key] = self.service.run(video, anomalies, stride, threshold,
                                                               progress=progress, cancelled=cancelled, keep=True)
        return result


__all__ = ["EXAMPLE_FRAMES", "ExampleResults", "SpaceExample", "ensure_examples"]
