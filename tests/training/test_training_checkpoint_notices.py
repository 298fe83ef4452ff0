"""Read-only checkpoint managers (evaluate, predict, export) do not print orbax's notice."""

import contextlib
import logging

from handvae.training import checkpoint as checkpoint_lib


def _read_only_notices(caplog, workdir):
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        checkpoint_lib.Checkpoints(str(workdir), read_only=True, async_save=False)
    return [r.getMessage() for r in caplog.records
            if r.getMessage().startswith("Given directory is read only")]


def test_the_read_only_notice_is_dropped_and_only_while_the_managers_are_made(
        tmp_path, caplog, monkeypatch):
    for name in (checkpoint_lib.LATEST_DIR, checkpoint_lib.BEST_DIR):
        (tmp_path / name).mkdir()
    assert _read_only_notices(caplog, tmp_path) == []
    # removed again: later absl logs are untouched
    assert checkpoint_lib._not_the_read_only_notice not in logging.getLogger("absl").filters
    # without the filter orbax does log it, once per manager (what the test above guards)
    monkeypatch.setattr(checkpoint_lib, "_without_read_only_notice",
                        lambda read_only: contextlib.nullcontext())
    assert len(_read_only_notices(caplog, tmp_path)) == 2
