"""The one place experiments start child processes, and the one that stops them.

The launcher (``experiments.launcher.call``, used by ``experiments.demo`` and
``experiments.reproduce``) runs each step (generate, build, train, a population) as a child
process. A SIGTERM sent to the parent alone (``kill PID``, a job scheduler, a container stop)
would leave that child running on its own, reparented, and a rerun would then train beside it
in the same work directory. :func:`run` therefore owns its child: while it waits, a SIGTERM
handler stops every child it started (SIGTERM, then SIGKILL after :data:`GRACE_S` seconds) and
then ends this process with exit status 143 (128 + SIGTERM) by raising ``SystemExit``, so
``finally`` blocks still run. An exception in the parent (Ctrl-C's ``KeyboardInterrupt``
included) stops the child the same way before it propagates.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
from collections.abc import Iterator, Sequence
from typing import Any

GRACE_S = 10.0  # seconds a child gets to exit after SIGTERM before it is killed
_children: set[subprocess.Popen] = set()


def _stop(process: subprocess.Popen) -> None:
    """Terminates ``process`` (SIGTERM, then SIGKILL after :data:`GRACE_S`) and reaps it."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=GRACE_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _signal_children() -> None:
    """Sends SIGTERM to every child :func:`run` started (no wait: see the handler)."""
    for process in list(_children):
        if process.returncode is None:
            try:
                process.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass


@contextlib.contextmanager
def _stop_children_on_sigterm() -> Iterator[None]:
    """While the block runs, SIGTERM signals the children, then raises SystemExit(143).

    The handler does not wait for them: it interrupts ``Popen.wait``, which holds the lock
    that reaping needs; :func:`run`'s ``finally`` waits (and kills after :data:`GRACE_S`)
    once that wait has unwound.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    previous = signal.getsignal(signal.SIGTERM)

    def handler(signum: int, frame: Any) -> None:
        del frame
        _signal_children()
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(cmd: Sequence[str], **popen_kwargs: Any) -> int:
    """Runs ``cmd`` to completion as a child this process owns; returns its exit status.

    Args:
      cmd: the command and its arguments.
      **popen_kwargs: passed to ``subprocess.Popen`` (``cwd``, ``env``, ``stdout``,
        ``stderr``).

    Returns:
      The child's return code (negative: killed by that signal).

    Raises:
      SystemExit: this process got SIGTERM while waiting (exit status 143); the child was
        stopped first.
    """
    with _stop_children_on_sigterm():
        process = subprocess.Popen(list(cmd), **popen_kwargs)
        _children.add(process)
        try:
            return process.wait()
        finally:
            _stop(process)  # a no-op when it finished; stops it on an exception here
            _children.discard(process)
