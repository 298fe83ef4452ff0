"""One trainer per work directory: an advisory lock on ``<workdir>/.handvae-train.lock``.

Two trainers on one work directory would interleave checkpoints and ``metrics.jsonl``
silently, so :func:`hold` takes the lock before the trainer writes anything and a second
trainer refuses at once with :class:`WorkdirLockedError`, naming the holder (pid, host and
start time, read from the lock file).

Why ``fcntl.flock`` and not an ``O_EXCL`` file holding a pid: the kernel drops a flock when its
process dies, however it dies (SIGKILL, OOM, a crash), so a stale lock can never block anyone
and nobody has to judge whether a recorded pid is still alive (a pid can be reused, and a
pid of another host cannot be checked). The pid, host and time in the file are only there
for the message. The file is removed on release; a lock taken on a file that another process
unlinked meanwhile is detected (the path's inode differs) and taken again on the new file.
A flock is local to one machine on some network file systems (older NFS): there, trainers on
two hosts are not kept apart.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
import socket
from collections.abc import Iterator

LOCK_FILE = ".handvae-train.lock"


class WorkdirLockedError(RuntimeError):
    """Another process holds the work directory's lock; the message names it."""


def _holder(fd: int) -> str:
    """The holder recorded in the lock file, as words (or "another process")."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        record = json.loads(os.read(fd, 4096).decode() or "{}")
    except (OSError, ValueError):
        record = {}
    if not isinstance(record, dict) or "pid" not in record:
        return "another process"
    started = record.get("started")
    when = (datetime.datetime.fromtimestamp(started).isoformat(timespec="seconds")
            if isinstance(started, (int, float)) else "?")
    return f"pid {record['pid']} on host {record.get('host', '?')}, started {when}"


def _acquire(path: str) -> int:
    """Opens and flocks ``path``; returns the descriptor. Raises WorkdirLockedError."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = _holder(fd)
            os.close(fd)
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            workdir = os.path.dirname(path)
            raise WorkdirLockedError(
                f"{workdir} is in use by another trainer ({holder}); wait for it to finish, "
                f"stop it, or choose another --workdir (lock file {path})") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the previous holder removed the file meanwhile: lock the new one


@contextlib.contextmanager
def hold(workdir: str, *, enabled: bool = True) -> Iterator[None]:
    """Holds ``workdir``'s lock for the block (``workdir`` must exist).

    Args:
      workdir: the training work directory.
      enabled: False makes this a no-op (processes other than the main one of a multi-host
        run, which write only their own checkpoint shards).

    Raises:
      WorkdirLockedError: another live process holds it (the message names pid, host, time).
    """
    if not enabled:
        yield
        return
    path = os.path.join(workdir, LOCK_FILE)
    fd = _acquire(path)
    try:
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": datetime.datetime.now().timestamp()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)  # while still locked, so no one else holds the removed file
        os.close(fd)
