"""Process liveness, the one check behind every "is its writer still running?" (stdlib only).

Stale-folder clean-ups name the process that wrote a folder by its pid (the synthetic
writer's ``.<name>.partial-<pid>-*``, ``data_prep.build``'s ``.incomplete-<version>-<pid>``,
the decoded cache's temporary folder) and delete it only once that process is gone. They live
in ``handvae.data`` and in ``data_prep``, which may import ``handvae.ops`` alone, so the check
lives here.
"""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """Whether a process with id ``pid`` exists on this host (signal 0, nothing is sent).

    A process owned by another user counts as alive (the kernel refuses the signal with
    ``PermissionError``, which it only does for an existing process); so does a zombie not
    yet reaped. A pid ≤ 0 names a process group, not a process, and is never alive. A pid
    says nothing about processes on other hosts: callers compare host names first.

    Args:
      pid: the process id.

    Returns:
      True if the process exists, False if no process has that id.
    """
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
