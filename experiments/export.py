r"""Serialise a trained model's predict function with ``jax.export`` (no TensorFlow).

    python -m experiments.export --workdir workdirs/demo_s4 --out model.jaxexport

Writes ``--out`` (StableHLO with the weights, batch size symbolic) and ``--out``.json (what the
inputs and outputs mean, and the platforms). Load it with jax and numpy only: see the README,
"Run an exported model", and ``handvae/inference/export.py``.

It replaces only an earlier export at ``--out`` (each file written whole, then renamed) and
refuses, before the model loads (exit 2): an ``--out`` that is a folder or lies below a file, an
existing ``--out`` or ``--out``.json that it did not write, and a ``--platform`` that is not
one of cpu, cuda, rocm, tpu.
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
                        choices=export_lib.PLATFORMS,
                        help="target platform, repeat for several; default cpu")
    args = parser.parse_args(argv)
    begin = time.perf_counter()
    try:
        platforms = export_lib.check_platforms(args.platforms or ("cpu",))
        export_lib.check_output_path(args.out)
        predictor = Predictor.from_workdir(args.workdir, args.which)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        size, meta = export_lib.write_exported(predictor, args.out, platforms=platforms)
    except OSError as error:
        print(f"error: --out {args.out}: writing failed ({error})", file=sys.stderr)
        return 1
    print(f"exported {predictor.strategy} ({predictor.source}) for {', '.join(platforms)} to "
          f"{args.out}: {size / 1e6:.2f} MB, metadata {meta}, in "
          f"{time.perf_counter() - begin:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
