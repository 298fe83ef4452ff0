"""The generator's CLI never deletes what it did not write, and leaves no debris behind."""

import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from data_prep.synthetic import __main__ as cli
from data_prep.synthetic import output

ROOT = pathlib.Path(__file__).resolve().parents[2]
TINY = ["--format", "rhd", "--num-train", "1", "--num-eval", "1", "--workers", "1",
        "--plain", "--no-progress"]


def _refused(capsys, argv):
    with pytest.raises(SystemExit) as error:
        cli.main(argv)
    assert error.value.code == 2
    return capsys.readouterr().err


def test_overwrite_refuses_user_folders_the_cwd_and_its_parents(tmp_path, monkeypatch, capsys):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "thesis.tex").write_text("precious")
    err = _refused(capsys, TINY + ["--out", str(user), "--overwrite"])
    assert "not written by" in err and ".handvae-synthetic" in err
    assert (user / "thesis.tex").read_text() == "precious"

    monkeypatch.chdir(user)
    for out in (".", str(tmp_path)):
        err = _refused(capsys, TINY + ["--out", out, "--overwrite"])
        assert "working directory" in err
    assert (user / "thesis.tex").exists()
    # Bad arguments are refused before anything is touched.
    err = _refused(capsys, ["--format", "rhd", "--out", str(user), "--num-train", "0",
                            "--num-eval", "1", "--overwrite"])
    assert "--num-train" in err and (user / "thesis.tex").exists()
    err = _refused(capsys, TINY[:-3] + ["--workers", "0", "--out", str(tmp_path / "new")])
    assert "--workers" in err and not (tmp_path / "new").exists()


def test_generated_folders_are_marked_replaceable_and_get_the_umask(tmp_path):
    out = tmp_path / "rhd"
    old = os.umask(0o022)
    try:
        assert cli.main(TINY + ["--out", str(out)]) == 0
    finally:
        os.umask(old)
    assert output.is_generated(out)
    assert out.stat().st_mode & 0o777 == 0o755  # not mkdtemp's 0o700
    assert cli.main(TINY + ["--out", str(out), "--overwrite", "--seed", "3"]) == 0
    assert output.is_generated(out)


def test_stale_partials_of_dead_runs_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    pid = int(dead.stdout)
    stale = tmp_path / f".rhd.partial-{pid}-abcd"
    stale.mkdir()
    output.write_marker(stale)
    foreign = tmp_path / f".rhd.partial-{pid}-user"  # no marker: not ours, kept
    foreign.mkdir()
    assert cli.main(TINY + ["--out", str(tmp_path / "rhd")]) == 0
    assert not stale.exists() and foreign.exists()


def _start_and_wait_for_partial(out: pathlib.Path) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "data_prep.synthetic", "--format", "rhd", "--out", str(out),
         "--num-train", "2000", "--num-eval", "1", "--workers", "1", "--no-progress"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline:
        partials = list(out.parent.glob(".rhd.partial-*"))
        if partials and list(partials[0].rglob("*.png")):
            return process
        time.sleep(0.1)
    process.kill()
    raise AssertionError("the generator never started writing")


def test_sigterm_and_sigkill_leave_no_partial_folder(tmp_path):
    out = tmp_path / "rhd"
    process = _start_and_wait_for_partial(out)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) != 0
    assert list(tmp_path.iterdir()) == []

    process = _start_and_wait_for_partial(out)
    process.kill()
    process.wait(timeout=30)
    assert len(list(tmp_path.glob(".rhd.partial-*"))) == 1  # SIGKILL cannot clean up...
    assert cli.main(TINY + ["--out", str(out)]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["rhd"]  # ...the next run does


def test_a_huge_count_is_refused_with_the_sizes(tmp_path, capsys):
    err = _refused(capsys, ["--format", "rhd", "--out", str(tmp_path / "big"),
                            "--num-train", str(10**13), "--num-eval", "1"])
    assert "frames need about" in err and "GB" in err and "--out" in err
    assert not (tmp_path / "big").exists()


# --- Safety (issue 24): --overwrite deletes only what the generator wrote ------------------

def test_overwrite_refuses_a_marked_folder_holding_the_users_files_and_names_them(tmp_path,
                                                                                 capsys):
    out = tmp_path / "rhd"
    assert cli.main(TINY + ["--out", str(out)]) == 0
    before = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    (out / "predictions.json").write_text("the user's")
    (out / "RHD_published_v2" / "evaluation" / "color" / "my_photo.jpg").write_bytes(b"jpg")
    err = _refused(capsys, TINY + ["--out", str(out), "--overwrite", "--seed", "3"])
    assert "predictions.json" in err and "my_photo.jpg" in err and "nothing was changed" in err
    assert (out / "predictions.json").read_text() == "the user's"
    after = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert sorted(set(after) - {"predictions.json",
                                os.path.join("RHD_published_v2", "evaluation", "color",
                                             "my_photo.jpg")}) == before
    assert not list(tmp_path.glob(".rhd.partial-*"))  # the new data set was discarded
    # Only the generator's files (other frame counts included): replaced.
    (out / "predictions.json").unlink()
    (out / "RHD_published_v2" / "evaluation" / "color" / "my_photo.jpg").unlink()
    assert cli.main(TINY[:2] + ["--num-train", "3"] + TINY[4:] +
                    ["--out", str(out), "--overwrite"]) == 0
    assert cli.main(TINY + ["--out", str(out), "--overwrite"]) == 0
