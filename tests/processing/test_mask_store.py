"""Masks kept for the overlay live in an unnamed, memory-mapped temporary file."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest

from lavida.processing.detection import LowResMaskStore


def test_batches_read_back_as_one_float16_array_and_leave_no_named_file(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    rng = np.random.default_rng(0)
    batches = [rng.normal(size=(n, 4, 6)).astype(np.float32) for n in (3, 1, 5)]
    store = LowResMaskStore()
    first = 0
    for batch in batches:
        store.append(batch, np.arange(first, first + len(batch)) * 2)
        first += len(batch)
    stored = store.array()
    assert isinstance(stored, np.memmap) and stored.dtype == np.float16 and stored.shape == (9, 4, 6)
    assert np.array_equal(stored, np.concatenate(batches).astype(np.float16))
    np.testing.assert_array_equal(store.frame_indices(), np.arange(9) * 2)  # each row keeps its frame
    assert os.listdir(tmp_path) == []  # unlinked at creation: nothing to clean up after a crash
    with pytest.raises(ValueError, match="Mask size changed"):
        store.append(np.zeros((1, 5, 6), dtype=np.float32), [20])
    with pytest.raises(ValueError, match="2 masks for 1 frame indices"):
        store.append(np.zeros((2, 4, 6), dtype=np.float32), [20])


def test_an_empty_store_has_no_array():
    assert LowResMaskStore().array() is None
