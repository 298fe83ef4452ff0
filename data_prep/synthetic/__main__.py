"""Command line: write a synthetic hand data set in RHD's or STB's on-disk layout.

    python -m data_prep.synthetic --format rhd --out data/synthetic/rhd \
        --num-train 10000 --num-eval 1000 --seed 0 [--workers 2] [--overwrite]
    python -m data_prep.synthetic --format stb --out data/synthetic/stb \
        --num-train 3000 --num-eval 600 --seed 0
    python -m data_prep.synthetic --dummy-data    # regenerate the builders' dummy_data/

Frames depend only on (seed, split, index), so the bytes written do not depend on --workers.
Every argument is checked before anything is written or deleted. ``--overwrite`` replaces only
a folder this generator wrote (it carries the marker file ``.handvae-synthetic``), never the
working directory or one of its parents.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from typing import Sequence

from data_prep.synthetic import output, rhd_writer, stb_writer

FORMATS = ("rhd", "stb")
_DATA_PREP = pathlib.Path(__file__).resolve().parent.parent
DUMMY_RHD_DIR = _DATA_PREP / "rhd" / "dummy_data"
DUMMY_STB_DIR = _DATA_PREP / "stb" / "dummy_data"
DUMMY_SEED = 0


def write_dummy_data(progress: bool = False) -> tuple[pathlib.Path, pathlib.Path]:
    """Regenerates ``data_prep/{rhd,stb}/dummy_data`` (tiny, plain backgrounds, seed 0).

    RHD: 3 training and 2 evaluation frames. STB: 2 frames in B2Counting (train) and 2 in
    B1Counting (test).
    """
    for folder in (DUMMY_RHD_DIR, DUMMY_STB_DIR):
        # These two fixed folders are this project's own (committed before the marker
        # existed): mark them so that they may be replaced.
        if folder.is_dir() and not output.is_generated(folder):
            output.write_marker(folder)
    rhd = rhd_writer.write_rhd(DUMMY_RHD_DIR, num_train=3, num_eval=2, seed=DUMMY_SEED,
                               workers=1, overwrite=True, plain=True, progress=progress)
    stb = stb_writer.write_stb(DUMMY_STB_DIR, num_train=2, num_eval=2, seed=DUMMY_SEED,
                               workers=1, overwrite=True, plain=True, progress=progress,
                               train_sequences=("B2Counting",),
                               test_sequences=("B1Counting",))
    return rhd, stb


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m data_prep.synthetic",
        description="Procedural synthetic hands written in RHD's or STB's on-disk layout.")
    parser.add_argument("--format", help=f"one of {FORMATS}")
    parser.add_argument("--out", help="output folder (RHD/STB manual_dir)")
    parser.add_argument("--num-train", type=int, help="training frames (≥ 1)")
    parser.add_argument("--num-eval", type=int, help="evaluation/test frames (≥ 1)")
    parser.add_argument("--seed", type=int, default=0, help="data set seed (default 0)")
    parser.add_argument("--workers", type=int, default=None,
                        help="processes (default: all cores)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace --out if this generator wrote it (marker .handvae-synthetic)")
    parser.add_argument("--plain", action="store_true",
                        help="smooth backgrounds, no sensor noise (small files)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument("--dummy-data", "--dummy", action="store_true",
                        help="regenerate data_prep/{rhd,stb}/dummy_data and exit")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the CLI; returns the exit status (2 on bad arguments)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.dummy_data:
        for path in write_dummy_data(progress=not args.no_progress):
            print(f"wrote {path}")
        return 0
    if args.format not in FORMATS:
        parser.error(f"--format must be one of {FORMATS}, got {args.format!r}")
    missing = [flag for flag, value in (("--out", args.out), ("--num-train", args.num_train),
                                        ("--num-eval", args.num_eval)) if value is None]
    if missing:
        parser.error(f"missing {', '.join(missing)} (see --help)")
    try:
        output.check_count("--num-train", args.num_train)
        output.check_count("--num-eval", args.num_eval)
        if args.workers is not None:
            output.check_count("--workers", args.workers)
        output.check_size(args.out, args.num_train + args.num_eval)
    except ValueError as error:
        parser.error(str(error))
    writer = rhd_writer.write_rhd if args.format == "rhd" else stb_writer.write_stb
    try:
        out = writer(args.out, num_train=args.num_train, num_eval=args.num_eval,
                     seed=args.seed, workers=args.workers, overwrite=args.overwrite,
                     plain=args.plain, progress=not args.no_progress)
    except (ValueError, FileExistsError, NotADirectoryError) as error:
        parser.error(str(error))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
