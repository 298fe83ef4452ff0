"""The launcher's data stage: generate the synthetic benchmark and build it (two policies).

:func:`data_commands` are the commands (``data_prep.synthetic``, RHD layout; ``data_prep.build``
for each RHD config). :func:`prepare_shared_data` is for a folder several roots share
(``reproduce --data-root``): generated once, refused when asked for other sizes, never
deleted. :func:`prepare_owned_data` is for a folder inside a preset's own output (the demo):
redone, its output deleted first, when its inputs change. Both run their steps through
:func:`experiments.launcher.call`.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from typing import Any, NamedTuple

from experiments import launcher, launcher_records
from experiments.launcher_records import Ledger


class DataSpec(NamedTuple):
    """The synthetic benchmark: frame counts and the generator's seed."""

    num_train: int
    num_eval: int
    seed: int


def data_commands(data: DataSpec, raw: str, tfds_dir: str,
                  configs: Sequence[str] = ("synthetic",)) -> list[tuple[str, list[str]]]:
    """``(step, command)`` pairs: generate into ``raw``, then build each RHD config."""
    py = sys.executable
    steps = [("generate", [py, "-m", "data_prep.synthetic", "--format", "rhd", "--out", raw,
                           "--num-train", str(data.num_train), "--num-eval",
                           str(data.num_eval), "--seed", str(data.seed)])]
    for config in configs:
        steps.append((f"build {config}", [py, "-m", "data_prep.build", "--dataset", "rhd",
                                          "--config", config, "--manual_dir", raw,
                                          "--data_dir", tfds_dir]))
    return steps


def prepare_shared_data(folder: str, data: DataSpec, configs: Sequence[str] = ("synthetic",)
                        ) -> dict[str, Any]:
    """Generates and builds into ``folder/{raw,tfds}`` once; returns its record and timings.

    ``folder/benchmark.json`` records the sizes and each finished step's seconds; a step done
    earlier is skipped. The folder may be shared between roots, so nothing is deleted.

    Raises:
      RuntimeError: the folder holds a benchmark generated with other sizes.
      StepFailed: a step failed.
    """
    folder = os.path.abspath(folder)
    raw, tfds_dir = os.path.join(folder, "raw"), os.path.join(folder, "tfds")
    done_path = os.path.join(folder, "benchmark.json")
    done = launcher_records._read_json(done_path) or {}
    wanted = dict(data._asdict())
    if done.get("setting") not in (None, wanted):
        raise RuntimeError(f"{folder} holds a benchmark generated with {done.get('setting')}, "
                           f"not {wanted}; pass another --data-root or remove that folder")
    done["setting"] = wanted
    os.makedirs(folder, exist_ok=True)
    for what, cmd in data_commands(data, raw, tfds_dir, configs):
        key = what.replace(" ", "_") + "_s"
        if key in done:
            print(f"  {what}: done earlier ({done[key]:.0f} s)")
            continue
        print(f"  {what}: $ {' '.join(cmd)}", flush=True)
        done[key] = launcher.call(cmd, what)
        launcher_records.write_json(done_path, done)
    done["tfds_dir"] = tfds_dir
    return done


def prepare_owned_data(data: DataSpec, raw: str, tfds_dir: str, ledger: Ledger,
                       timings: dict[str, Any], progress: launcher.Progress
                       ) -> dict[str, Any]:
    """Generates into ``raw`` and builds into ``tfds_dir`` unless done with these inputs.

    Both folders lie inside the preset's own output folder: a step whose inputs changed
    deletes its output first. Returns the build's inputs (the training steps' data key).
    """
    generate_inputs = {"num_train": data.num_train, "num_eval": data.num_eval,
                       "seed": data.seed}
    build_inputs = {"data": generate_inputs}
    (_, generate), (_, build) = data_commands(data, raw, tfds_dir)
    folder = os.path.dirname(ledger.path)
    for step, inputs, output, cmd, text in (
            ("generate", generate_inputs, raw, generate,
             f"synthetic RHD-format data: {data.num_train} train / {data.num_eval} eval "
             f"frames → {raw}"),
            ("build", build_inputs, tfds_dir, build,
             f"TFDS build (rhd/synthetic, array_record) → {tfds_dir}")):
        progress(step, text)
        if ledger.done(step, inputs) and os.path.isdir(output):
            print("  same inputs, skipped")
            timings[f"{step}_s"] = launcher_records.earlier_seconds(folder, f"{step}_s")
            continue
        launcher.require(step)
        ledger.start(step)
        shutil.rmtree(output, ignore_errors=True)  # inside the preset's own folder
        timings[f"{step}_s"] = launcher.call(cmd, step, echo=True)
        ledger.finish(step, inputs)
    return build_inputs
