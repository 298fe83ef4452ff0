"""A SIGTERM to the demo or to reproduce stops the step's child process (no orphan trainer)."""

import os
import signal
import subprocess
import sys
import time

import pytest

from experiments import _subprocesses
from handvae.ops.processes import pid_alive

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The child: writes its pid, then runs until stopped (a trainer stand-in).
CHILD = "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(120)"
PARENTS = {
    "helper": "from experiments import _subprocesses as m; m.run({cmd!r})",
    "demo": "from experiments import demo; demo._run({cmd!r}, 'train S1')",
    "reproduce": "from experiments import reproduce; reproduce._call({cmd!r}, 'train')",
}


@pytest.mark.parametrize("parent", sorted(PARENTS))
def test_sigterm_to_the_parent_stops_its_child(tmp_path, parent):
    pid_file = tmp_path / "child.pid"
    cmd = [sys.executable, "-c", CHILD, str(pid_file)]
    process = subprocess.Popen([sys.executable, "-c", PARENTS[parent].format(cmd=cmd)],
                               cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    child = None
    try:
        deadline = time.time() + 120
        while not (pid_file.exists() and pid_file.read_text()) and time.time() < deadline:
            assert process.poll() is None, process.stderr.read()[-2000:]
            time.sleep(0.05)
        child = int(pid_file.read_text())
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 128 + signal.SIGTERM
        assert not pid_alive(child), f"the child {child} outlived its parent ({parent})"
    finally:
        if process.poll() is None:
            process.kill()
        if child is not None and pid_alive(child):
            os.kill(child, signal.SIGKILL)


def test_run_returns_the_exit_status_and_forgets_finished_children():
    assert _subprocesses.run([sys.executable, "-c", "raise SystemExit(3)"]) == 3
    assert not _subprocesses._children
