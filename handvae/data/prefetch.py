"""A background producer of batches: ``make_batch(step, pool)`` for step = start, start+1, ...

Two kinds of workers (``data.worker_kind``):

* ``"threads"`` (default): one background thread calls ``make_batch(step, pool)`` step after
  step and ``make_batch`` spreads a batch's rows over ``pool``, a thread pool. Cheap to start,
  one cache shared by all workers; right for a few cores, where Pillow, zlib and NumPy release
  the GIL for most of a row.
* ``"processes"``: ``num_workers`` spawned processes each build whole batches
  (``make_batch(step, None)``), up to ``num_workers + 1`` steps ahead, delivered in step order.
  No GIL is shared, so the rows scale with cores (on a 16-core GPU host, paper-size rows: 14
  threads built 224 rows/s, 14 processes ~1,380); ``make_batch`` must then be picklable and
  each process holds its own state. A batch comes back as one file in a memory-backed spool
  directory (``/dev/shm`` where it has room), not through the pool's pipe: a paper-size batch
  is 36 MB, and ``benchmarks/batch_transport.py`` handed over 60.6 batches/s through the
  spool against 26.7 pickled through the pipe on that host (27.1 against 9.2 on 2 cores).
  The spool is removed on ``close()``.

Either way batch ``k`` is ``make_batch(k, ·)``; the kind changes where it runs, never its value.

Decision and measurements (moved from WORKSPACE.md)

**Worker processes at paper size** (issue 13; `data.worker_kind = "processes"`, the
`paper` scale's default with all cores but two). On one H200 host (16 cores) the trainer
with the paper-size R2P and 14 row threads ran 6.7–7.0 steps/s, `data_wait_fraction`
0.56–0.57: 224 rows/s, where one core builds 75–110 rows/s (paper size, per row: read
0.7 ms, prepare 3.2 ms, augment and features 9.2 ms; the 512² context image makes a
prepared example 0.8 MB, so 1 GiB caches ~1,300 of 18,000) — the threads reached ~2.5
cores, the step alone runs 143 steps/s. Processes share no GIL; each builds a whole batch,
loads its own source and gets `cache_mb / num_workers` of the cache. A batch comes back
as one file in a spool directory (`/dev/shm` when it has 2 GiB free, else the temp dir;
removed on `close()`), not pickled through the pool's pipe: paper-size batches are 36 MB,
and `python benchmarks/batch_transport.py` (2 workers, 2 cores, load 3.2) handed over
9.2 batches/s through the pipe against 27.1 through the spool (2.96×). The standard
library has no faster hand-over for a dict of arrays (`multiprocessing.shared_memory` on
Python 3.11 registers an attached block with the resource tracker again, and leaks
warnings at exit). Evaluation batches are built on `num_workers` threads, one batch
ahead of the evaluator (same values and order, tested). The paper is silent (an input
pipeline is not part of the method). On 2 cores processes and threads give the same rate
(R2P 170 vs 152 rows/s, S4 107 vs 115, 8 batches each, background runs paused), so the
small scales keep threads (one shared cache, no start-up). On the H200 host (second
lease, `experiments/results/gpu/paper_size_s1_s4_h200.json`) 14 processes fed the
paper-size trainer a median 43.2 steps/s for R2P (`data_wait_fraction` 0.32; 7 steps/s
and 0.56 with threads: 6×) and 43.0 for S4 (0.09; its step alone runs 58). R2P is still
input-bound at ~100 rows/s per worker; the spool moved 60.6 batches/s there (2.27× the
pipe's 26.7), so the rows, not the hand-over, are the limit.
Spawned workers import the main script, so it needs an `if __name__ == "__main__":`
guard; a worker that dies is reported as one RuntimeError saying so.
"""

from __future__ import annotations

import collections
import concurrent.futures
import concurrent.futures.process
import multiprocessing
import os
import queue
import shutil
import tempfile
import threading
import weakref

import numpy as np

PREFETCH_BATCHES = 4
WORKER_KINDS = ("threads", "processes")
SPOOL_MIN_FREE = 2 << 30      # /dev/shm is used for the spool only with this much room
_ALIGN = 64                   # byte alignment of each array in a spooled batch

_WORKER = None                # in a worker process: (make_batch, spool directory)


def _install(make_batch, spool: str) -> None:
    global _WORKER
    _WORKER = (make_batch, spool)


def spool_root() -> str:
    """Where worker processes write their batches: ``/dev/shm`` (memory) when it exists with
    ``SPOOL_MIN_FREE`` bytes free (containers often mount it at 64 MB), else the temp dir."""
    shm = "/dev/shm"
    try:
        if shutil.disk_usage(shm).free >= SPOOL_MIN_FREE:
            return shm
    except OSError:
        pass
    return tempfile.gettempdir()


def write_batch(batch: dict[str, np.ndarray], path: str) -> list[tuple]:
    """Writes a batch's arrays back to back (each ``_ALIGN``-aligned) to ``path``; returns the
    layout ``[(key, shape, dtype str, offset)]`` that :func:`read_batch` needs."""
    layout, offset = [], 0
    with open(path, "wb") as f:
        for key, value in batch.items():
            value = np.asarray(value)
            if not value.flags.c_contiguous:
                value = value.copy(order="C")
            f.write(b"\0" * (-offset % _ALIGN))
            offset += -offset % _ALIGN
            layout.append((key, value.shape, value.dtype.str, offset))
            f.write(memoryview(value).cast("B") if value.nbytes else b"")
            offset += value.nbytes
    return layout


def read_batch(path: str, layout: list[tuple]) -> dict[str, np.ndarray]:
    """The batch :func:`write_batch` wrote (one read; arrays are views of it); removes it."""
    raw = np.fromfile(path, np.uint8)
    os.remove(path)
    batch = {}
    for key, shape, dtype, offset in layout:
        size = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        batch[key] = raw[offset:offset + size].view(dtype).reshape(shape)
    return batch


def _make_in_worker(step: int) -> tuple[str, list[tuple]]:
    make_batch, spool = _WORKER
    path = os.path.join(spool, f"{step}.batch")
    return path, write_batch(make_batch(step, None), path)


class Prefetcher:
    """Runs ``make_batch(step, pool)`` for step = start, start+1, ... in the background."""

    def __init__(self, make_batch, start_step: int, num_workers: int, read_ahead=None,
                 worker_kind: str = "threads"):
        """``read_ahead(stop_event)``, if given, runs in its own daemon thread until it
        returns or ``close()`` sets the event (e.g. filling a cache ahead of the batches);
        threads only (a process fills its own cache as it goes).

        Raises:
          ValueError: an unknown ``worker_kind`` (the message lists the kinds).
        """
        if worker_kind not in WORKER_KINDS:
            raise ValueError(f"data.worker_kind must be one of {WORKER_KINDS}, got "
                             f"{worker_kind!r}")
        self._make_batch = make_batch
        self._queue: queue.Queue = queue.Queue(maxsize=PREFETCH_BATCHES)
        self._stop = threading.Event()
        workers = max(1, num_workers)
        self._spool = None
        if worker_kind == "processes":
            self._spool = tempfile.mkdtemp(prefix="handvae-batches-", dir=spool_root())
            # removed by close(), or at garbage collection / exit if close() is never called
            self._remove_spool = weakref.finalize(self, shutil.rmtree, self._spool, True)
            self._pool = concurrent.futures.ProcessPoolExecutor(
                workers, mp_context=multiprocessing.get_context("spawn"),
                initializer=_install, initargs=(make_batch, self._spool))
            target, self._window = self._run_processes, workers + 1
        else:
            self._pool = concurrent.futures.ThreadPoolExecutor(workers)
            target = self._run_threads
        self._thread = threading.Thread(target=target, args=(start_step,), daemon=True)
        self._thread.start()
        if read_ahead is not None and worker_kind == "threads":
            threading.Thread(target=read_ahead, args=(self._stop,), daemon=True).start()

    def _put(self, item) -> bool:
        """Queues ``item`` unless stopped; False once the producer should end."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return not isinstance(item, BaseException)
            except queue.Full:
                continue
        return False

    def _run_threads(self, step: int) -> None:
        while not self._stop.is_set():
            try:
                item = self._make_batch(step, self._pool)
            except BaseException as e:  # handed to the consumer, raised there
                item = e
            if not self._put(item):
                return
            step += 1

    def _run_processes(self, step: int) -> None:
        pending: collections.deque = collections.deque()
        try:
            while not self._stop.is_set():
                while len(pending) < self._window:
                    pending.append(self._pool.submit(_make_in_worker, step + len(pending)))
                item = self._outcome(pending.popleft())
                if item is None or not self._put(item):
                    return
                step += 1
        except BaseException as e:  # submit on a broken pool
            self._put(e)

    def _outcome(self, future) -> dict[str, np.ndarray] | BaseException | None:
        """A worker's batch, or its error for the consumer; None once stopped."""
        while not self._stop.is_set():
            try:
                return read_batch(*future.result(timeout=0.1))
            except concurrent.futures.TimeoutError:
                continue
            except concurrent.futures.process.BrokenProcessPool as e:
                error = RuntimeError(
                    "an input-pipeline worker process died (data.worker_kind='processes'). "
                    "Spawned workers import the main script: guard its entry point with "
                    "`if __name__ == '__main__':`; each worker also needs memory for its "
                    "share of data.cache_mb. Or set data.worker_kind='threads'.")
                error.__cause__ = e
                return error
            except BaseException as e:  # a worker's error, handed to the consumer
                return e
        return None

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
        """Stops the background thread and the workers; call it, or use a ``with`` block."""
        self._stop.set()
        self._thread.join(timeout=5)
        # Processes: wait for the batches being built, so none is written after the spool
        # is removed (at most one batch's time).
        self._pool.shutdown(wait=self._spool is not None, cancel_futures=True)
        if self._spool is not None:
            self._remove_spool()

    def __enter__(self) -> "Prefetcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
