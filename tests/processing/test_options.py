"""``DetectionOptions``: validated once, and the source of the detect/evaluate flags (names, defaults, help)."""

from __future__ import annotations

import argparse
import re
from dataclasses import fields

import pytest

from lavida.errors import UserInputError
from lavida.processing.options import DEFAULT_BATCH_SIZE, DetectionOptions


@pytest.mark.parametrize("values, message", [
    ({"stride": 0}, "stride must be a positive whole number, got 0"),
    ({"stride": 1.5}, "stride must be a positive whole number"),
    ({"threshold": 1.2}, r"threshold must be a number in \[0, 1\], got 1.2"),
    ({"min_event_frames": 0}, "min_event_frames must be a positive whole number"),
    ({"mask_stride": 0}, "mask_stride must be a positive whole number, got 0"),
    ({"smoothing_sigma": -2.0}, "smoothing_sigma must be a non-negative number of frames, got -2.0"),
    ({"smoothing_sigma": float("nan")}, "smoothing_sigma must be a non-negative number"),
    ({"llm_frame_pixels": (10, 5)}, "llm_frame_pixels must hold 0 < min <= max"),
])
def test_bad_values_are_user_errors_naming_the_setting(values, message):
    with pytest.raises(UserInputError, match=message):
        DetectionOptions(**values)


def test_values_are_normalised_and_settings_are_what_result_json_records():
    options = DetectionOptions(stride=2, threshold=1, smoothing_sigma=3, llm_frame_pixels=[100, 200])
    assert (options.threshold, options.smoothing_sigma, options.llm_frame_pixels) == (1.0, 3.0, (100, 200))
    assert options.settings() == {"stride": 2, "min_event_frames": 1, "smoothing_sigma": 3.0,
                                  "llm_frame_pixels": [100, 200]}


def _parse(command: str, argv: list[str]) -> argparse.Namespace:
    from lavida.cli import build_parser

    parser, _ = build_parser(with_arguments=[command])
    return parser.parse_args([command, *argv])


def test_detect_flags_come_from_the_options_with_their_defaults():
    from lavida.commands.detect import detection_options

    args = _parse("detect", ["clip.mp4", "--anomalies", "fire"])
    assert detection_options(args) == DetectionOptions(return_masks=True)  # every default from the dataclass
    assert args.clip_batch_size == DEFAULT_BATCH_SIZE
    args = _parse("detect", ["clip.mp4", "--anomalies", "fire", "--smoothing-sigma", "5", "--min-event-frames", "3",
                             "--llm-frame-pixels", "1,2x28", "--no-overlay"])
    assert detection_options(args) == DetectionOptions(min_event_frames=3, smoothing_sigma=5.0,
                                                       llm_frame_pixels=(784, 1568))
    assert detection_options(_parse("detect", ["clip.mp4", "--anomalies", "fire", "--stride", "4", "--mask-stride",
                                               "4"])) == DetectionOptions(stride=4, return_masks=True, mask_stride=4)
    assert _parse("detect", ["clip.mp4", "--anomalies", "fire", "--smoothing", "5"]).smoothing_sigma == 5.0


def test_evaluate_flags_share_the_options_and_leave_the_benchmark_defaults_open():
    args = _parse("evaluate", ["--benchmark", "ped2"])
    assert (args.stride, args.return_masks) == (None, None)  # the benchmark's stride; masks when it has pixel labels
    assert {spec.name for spec in fields(DetectionOptions)} <= set(vars(args))
    assert _parse("evaluate", ["--benchmark", "ped2", "--no-masks"]).return_masks is False
    assert _parse("evaluate", ["--benchmark", "ped2", "--smoothing", "2"]).smoothing_sigma == 2.0


@pytest.mark.parametrize("argv, message", [
    (["detect", "clip.mp4", "--anomalies", "fire", "--stride", "0"], "stride must be a positive whole number, got 0"),
    (["detect", "clip.mp4", "--anomalies", "fire", "--smoothing", "-1"], "smoothing_sigma must be a non-negative"),
    (["detect", "clip.mp4", "--anomalies", "fire", "--clip-batch-size", "0"], "--clip-batch-size must be a positive"),
    (["evaluate", "--benchmark", "ped2", "--stride", "0"], "stride must be a positive whole number, got 0"),
    (["evaluate", "--benchmark", "ped2", "--threshold", "2"], r"threshold must be a number in \[0, 1\]"),
    (["evaluate", "--benchmark", "ped2", "--mask-stride", "-1"], "mask_stride must be a positive whole number"),
])
def test_bad_flags_fail_with_one_line_before_any_model_is_loaded(argv, message, capsys):
    from lavida.cli import main

    assert main(argv) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith(f"lavida {argv[0]}: error: ")
    assert re.search(message, error)
