"""What ``lavida detect`` tells its user: the summary line, warnings once, quiet library logging, and the notice that
the default model knows only the synthetic world it was trained on."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np

from lavida.cli import configure_logging
from lavida.configuration_lavida import LavidaConfig
from lavida.processing.detection import VideoDetection, training_domain_notice
from lavida.processing.distributed_detect import collect_warnings
from lavida.processing.result_writers import format_summary

CHECKPOINT = Path(__file__).resolve().parents[1] / "modeling_lavida" / "checkpoints" / "lavida-tiny"


def _detection(scores, fps=10.0) -> VideoDetection:
    return VideoDetection.from_frame_scores(np.asarray(scores, dtype=np.float32), fps, ["fire"], name="v.mp4")


def test_a_single_frame_event_prints_one_time_and_a_longer_one_its_span():
    scores = np.zeros(100)
    scores[17] = 0.9  # frame 17 only, 0.68-0.72 s at 25 fps: both ends print as 0.7
    scores[50:63] = 0.8  # 2.00-2.52 s
    line = format_summary(_detection(scores, fps=25.0))
    assert "0.7 s (peak 0.90)" in line and "0.7-0.7" not in line
    assert "2.0-2.5 s (peak 0.80)" in line


def test_the_summary_line_says_a_video_is_damaged():
    detection = _detection(np.zeros(10))
    assert "damaged" not in format_summary(detection)
    detection.video = replace(detection.video, damaged=True)
    assert format_summary(detection).endswith("damaged video: some frames did not decode")


def test_a_repeated_reader_warning_is_logged_once_and_kept(caplog):
    logger = logging.getLogger("lavida.processing.video_io")
    with caplog.at_level(logging.WARNING), collect_warnings() as warnings:
        for _ in range(3):  # probe, scoring pass, overlay pass
            logger.warning("Video %s is damaged: %d packet(s) could not be decoded and were skipped.", "v.mp4", 2)
    assert [record.getMessage() for record in caplog.records] == [warnings[0]]
    assert warnings == ["Video v.mp4 is damaged: 2 packet(s) could not be decoded and were skipped."]
    with caplog.at_level(logging.WARNING):  # outside the block nothing is filtered any more
        logger.warning("again")
    assert caplog.records[-1].getMessage() == "again"


def test_verbose_logging_keeps_matplotlib_and_pil_at_warning():
    root = logging.getLogger()
    saved = root.level, list(root.handlers)
    try:
        configure_logging(verbose=True)
        assert logging.getLogger("lavida").isEnabledFor(logging.DEBUG)
        assert not logging.getLogger("matplotlib.font_manager").isEnabledFor(logging.DEBUG)
        assert not logging.getLogger("PIL.PngImagePlugin").isEnabledFor(logging.DEBUG)
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]


def test_the_default_model_says_what_it_was_trained_on_and_user_checkpoints_say_nothing():
    assert LavidaConfig().training_domain is None
    domain = json.loads((CHECKPOINT / "config.json").read_text())["training_domain"]
    assert "synthetic" in domain
    notice = training_domain_notice(domain)
    assert domain in notice and "--model" in notice and "\n" not in notice


def test_result_json_records_the_training_domain():
    detection = _detection(np.zeros(5))
    assert detection.to_dict()["model_training_domain"] is None
    detection.training_domain = "synthetic shapes"
    assert detection.to_dict()["model_training_domain"] == "synthetic shapes"


def _named_detection(fps=10.0) -> VideoDetection:
    """Two events of a name-grounding model: "fire" at frames 10-19, "fighting" (weaker) at 50-54; "bicycle" was
    searched for and not found."""
    names = np.zeros((100, 3), dtype=np.float32)  # fire, fighting, bicycle
    names[:, 2] = 0.3
    names[10:20, 0] = 0.9
    names[50:55, 1] = 0.8
    return VideoDetection.from_frame_scores(names.max(axis=1), fps, ["fire", "fighting", "bicycle"], name="v.mp4",
                                            name_probabilities=names)


def test_the_summary_lists_the_anomalies_found_not_the_names_searched():
    line = format_summary(_named_detection())
    assert "bicycle" not in line
    assert line == "v.mp4: 2 events (fire, fighting) at 1.0-2.0 s (fire, peak 0.90), 5.0-5.5 s (fighting, peak 0.80)"
    assert format_summary(_named_detection(), max_events=1) == ("v.mp4: 2 events (fire, fighting) at 1.0-2.0 s "
                                                                "(fire, peak 0.90) and 1 weaker")


def test_a_summary_without_names_found_lists_none():
    scores = np.zeros(100)
    scores[10:20] = 0.9
    assert format_summary(_detection(scores)) == "v.mp4: 1 event at 1.0-2.0 s (peak 0.90)"  # an object-score model
    line = format_summary(_detection(np.full(10, 0.2)))
    assert line == "v.mp4: no events (searched for fire); highest score 0.20 < threshold 0.5"
