"""Iterate in a background thread, a bounded number of items ahead: ``Prefetched``.

    for clip in Prefetched(clips_to_preprocess(), depth=4):   # the next clips are prepared while this one is used
        ...

The pipeline prefetches decoded and preprocessed clips while the model runs, the overlay writer renders frames while
the encoder compresses the previous ones. PyAV's decoding and encoding, numpy and torch release the GIL in their heavy
parts, so the two threads run at the same time.

This file is copied next to saved checkpoints with the pipeline: it imports only the standard library and torch.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch.utils.data import IterableDataset


class Prefetched(IterableDataset):
    """``items`` iterated in a background thread, at most ``depth`` items ahead of the consumer.

    The items and their order are those of ``items``; an exception raised while producing them is raised to the
    consumer at the item where it happened (with its traceback). When the consumer stops early (an error, a cancelled
    request, a ``break``) the thread stops at its next item and closes ``items`` (a generator's ``finally`` blocks
    run, so a video being decoded is closed). Each ``iter()`` starts a new thread over a new ``iter(items)``.

    The thread runs torch on one thread of its own: the work done there is light, and a second full team of OpenMP
    threads would fight the consumer's for the cores (on a 2-core machine that made detection slower than no
    prefetching at all). The consumer's thread count, and the process-wide default, are left as they were.
    An ``IterableDataset``, so that a ``DataLoader`` batches it.
    """

    _END = object()
    _POLL_S = 0.1  # how often a producer blocked on a full queue checks whether the consumer is gone

    def __init__(self, items: Iterable[Any], depth: int, name: str = "lavida-prefetch"):
        self.items, self.depth, self.name = items, max(1, int(depth)), name

    def __iter__(self) -> Iterator[Any]:
        entries: queue.Queue = queue.Queue(maxsize=self.depth)
        stop, ready = threading.Event(), threading.Event()
        threads = torch.get_num_threads()

        def offer(entry: tuple[bool, Any]) -> bool:
            while not stop.is_set():
                try:
                    entries.put(entry, timeout=self._POLL_S)
                    return True
                except queue.Full:
                    continue
            return False

        def produce() -> None:
            # torch's thread count is per thread once a thread has used torch, but set_num_threads also changes the
            # process-wide default (and MKL's): settle this thread's own count first, then the consumer restores the
            # default for itself and for threads started later.
            torch.get_num_threads()
            torch.set_num_threads(1)
            ready.set()
            iterator = iter(self.items)
            try:
                for item in iterator:
                    if not offer((True, item)):
                        break
                else:
                    offer((True, self._END))
            except BaseException as error:  # handed to the consumer, raised there
                offer((False, error))
            finally:
                close = getattr(iterator, "close", None)
                if close is not None:
                    close()

        worker = threading.Thread(target=produce, name=self.name, daemon=True)
        worker.start()
        ready.wait()
        torch.set_num_threads(threads)
        try:
            while True:
                ok, value = entries.get()
                if not ok:
                    raise value
                if value is self._END:
                    return
                yield value
        finally:
            stop.set()
            worker.join()


__all__ = ["Prefetched"]
