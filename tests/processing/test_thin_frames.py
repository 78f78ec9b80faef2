"""Frames 1 or 3 pixels high are read channels-last: no "channel dimension is ambiguous" guess, no swapped axes."""

from __future__ import annotations

import logging

import numpy as np
import pytest


@pytest.fixture
def transformers_log():
    """The records transformers logs during a test (its loggers do not propagate to the root logger)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(level=logging.WARNING)
    handler.emit = records.append
    logger = logging.getLogger("transformers")
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


@pytest.mark.parametrize("height", [1, 3])
def test_a_thin_clip_is_read_channels_last_without_warnings(transformers_log, height):
    from lavida.processing.factories import build_tiny_processor

    processor = build_tiny_processor()
    clip = np.zeros((8, height, 64, 3), dtype=np.uint8)
    clip[..., 0] = 255  # pure red
    batch = processor([clip], ["fire"])
    assert [record.getMessage() for record in transformers_log if "ambiguous" in record.getMessage()] == []
    sam = batch["sam_pixel_values"][0]  # (T, 3, S, S)
    assert sam.shape[1:] == (3, 128, 128)
    assert bool((sam[:, 0] > sam[:, 1]).all() and (sam[:, 0] > sam[:, 2]).all())  # red stayed red
