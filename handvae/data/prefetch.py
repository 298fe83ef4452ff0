"""A background producer of batches: ``make_batch(step, pool)`` for step = start, start+1, ..."""

from __future__ import annotations

import concurrent.futures
import queue
import threading

import numpy as np

PREFETCH_BATCHES = 4


class Prefetcher:
    """Runs ``make_batch(step)`` for step = start, start+1, ... in a background thread."""

    def __init__(self, make_batch, start_step: int, num_workers: int, read_ahead=None):
        """``read_ahead(stop_event)``, if given, runs in its own daemon thread until it
        returns or ``close()`` sets the event (e.g. filling a cache ahead of the batches)."""
        self._make_batch = make_batch
        self._queue: queue.Queue = queue.Queue(maxsize=PREFETCH_BATCHES)
        self._stop = threading.Event()
        self._pool = concurrent.futures.ThreadPoolExecutor(max(1, num_workers))
        self._thread = threading.Thread(target=self._run, args=(start_step,), daemon=True)
        self._thread.start()
        if read_ahead is not None:
            threading.Thread(target=read_ahead, args=(self._stop,), daemon=True).start()

    def _run(self, step: int) -> None:
        while not self._stop.is_set():
            try:
                item = self._make_batch(step, self._pool)
            except BaseException as e:  # handed to the consumer, raised there
                item = e
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if isinstance(item, BaseException):
                return
            step += 1

    def __iter__(self) -> "Prefetcher":
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        while True:
            try:
                item = self._queue.get(timeout=0.5)
                break
            except queue.Empty:
                if not self._thread.is_alive():
                    raise RuntimeError("input pipeline thread died") from None
        if isinstance(item, BaseException):
            self.close()
            raise item
        return item

    def close(self) -> None:
        """Stops the background thread (also called when the iterator is garbage collected)."""
        self._stop.set()
        self._thread.join(timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> "Prefetcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


