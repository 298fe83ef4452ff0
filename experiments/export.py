r"""Serialise a trained model's predict function with ``jax.export`` (no TensorFlow).

    python -m experiments.export --workdir workdirs/demo_s4 --out model.jaxexport

Writes ``--out`` (StableHLO with the weights, batch size symbolic) and ``--out``.json (what the
inputs and outputs mean). Load it with jax and numpy only: see the README, "Run an exported
model", and ``handvae/inference/export.py``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

from handvae.inference import export as export_lib
from handvae.inference.predictor import Predictor


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.export",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True, help="training work directory")
    parser.add_argument("--out", required=True, help="file to write (e.g. model.jaxexport)")
    parser.add_argument("--which", choices=("best", "latest"), default="best")
    parser.add_argument("--platform", action="append", dest="platforms",
                        help="target platform(s) (cpu, cuda, ...); default cpu")
    args = parser.parse_args(argv)
    begin = time.perf_counter()
    try:
        predictor = Predictor.from_workdir(args.workdir, args.which)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    size, meta = export_lib.write_exported(
        predictor, args.out, platforms=tuple(args.platforms or ("cpu",)))
    print(f"exported {predictor.strategy} ({predictor.source}) to {args.out}: "
          f"{size / 1e6:.2f} MB, metadata {meta}, in {time.perf_counter() - begin:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
