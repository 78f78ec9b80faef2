"""Small hand-made corpus rows for trainer tests (a bright square is the anomaly when it is named)."""

from __future__ import annotations

import numpy as np


def toy_rows(count: int, seed: int = 0, frames: int = 8, size: int = 64) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for index in range(count):
        video = rng.integers(0, 60, size=(frames, size, size, 3), dtype=np.uint8)
        masks = np.zeros((frames, size, size), dtype=bool)
        anomalous = index % 2 == 0
        if anomalous:
            y, x = rng.integers(0, size - 16, size=2)
            masks[:, y:y + 16, x:x + 16] = True
            video[masks] = (230, 40, 40)
        names = ["red square", "blue circle"] if anomalous else ["blue circle", "green star"]
        rows.append({"frames": video, "masks": masks, "names": names, "sample_id": f"toy-{seed}-{index}"})
    return rows
