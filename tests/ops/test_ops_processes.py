"""handvae.ops.processes.pid_alive: this process, a finished child, another user's process."""

import os
import subprocess
import sys

from handvae.ops.processes import pid_alive


def test_this_process_is_alive_and_a_reaped_child_is_not():
    assert pid_alive(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # reaped: its pid no longer names a process
    assert not pid_alive(child.pid)


def test_a_running_child_is_alive_until_it_is_stopped():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert pid_alive(child.pid)
    finally:
        child.kill()
        child.wait()
    assert not pid_alive(child.pid)


def test_a_process_of_another_user_counts_as_alive():
    # pid 1 (init) exists on every Linux host; unprivileged, os.kill(1, 0) raises
    # PermissionError, which means "exists"; as root it succeeds.
    assert pid_alive(1)


def test_process_groups_and_impossible_ids_are_not_processes():
    assert not pid_alive(0)      # os.kill(0, 0) would signal this process's group
    assert not pid_alive(-1)     # ... and -1 every process we may signal
    assert not pid_alive(2**22 + 1)  # above Linux's pid_max (4,194,304)
