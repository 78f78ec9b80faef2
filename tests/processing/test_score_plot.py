"""scores.png: each event labelled with the anomaly it names, and anomaly names in any script drawn with real glyphs."""

from __future__ import annotations

import logging
import warnings

import numpy as np
from matplotlib.axes import Axes
from PIL import Image

from lavida.processing.detection import VideoDetection
from lavida.processing.result_writers import plot_scores


def _detection(names: list[str]) -> VideoDetection:
    """Two events, the first named after ``names[0]``, the second after ``names[1]``."""
    probabilities = np.full((60, len(names)), 0.1, dtype=np.float32)
    probabilities[10:20, 0] = 0.9
    probabilities[40:50, 1] = 0.8
    return VideoDetection.from_frame_scores(probabilities.max(axis=1), 10.0, names, name="v.mp4",
                                            name_probabilities=probabilities)


def _labels(monkeypatch) -> list[str]:
    """The texts the plot annotates (its event labels), recorded as they are drawn."""
    texts: list[str] = []
    annotate = Axes.annotate

    def recording(self, text, *args, **kwargs):
        texts.append(text)
        return annotate(self, text, *args, **kwargs)

    monkeypatch.setattr(Axes, "annotate", recording)
    return texts


def test_events_are_labelled_with_the_anomaly_they_name(tmp_path, monkeypatch):
    labels = _labels(monkeypatch)
    plot_scores(tmp_path / "scores.png", _detection(["fire", "fighting", "bicycle"]))
    assert sorted(labels) == ["fighting 0.80", "fire 0.90"]
    with Image.open(tmp_path / "scores.png") as image:
        assert image.format == "PNG"


def test_non_latin_anomaly_names_render_without_missing_glyphs(tmp_path, monkeypatch, caplog):
    """Cyrillic and CJK names (title and labels) find a font with their glyphs (the CJK font is a system package:
    ``make system-deps`` installs Debian's fonts-noto-cjk)."""
    labels = _labels(monkeypatch)
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        plot_scores(tmp_path / "scores.png", _detection(["пожар", "火事", "화재"]))
    problems = [str(warning.message) for warning in caught] + [record.getMessage() for record in caplog.records]
    assert not [text for text in problems if "missing from font" in text or "not found" in text], problems
    assert sorted(labels) == ["пожар 0.90", "火事 0.80"]
