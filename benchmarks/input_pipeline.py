"""Input-pipeline throughput: examples/s from a built data set through the whole pipeline.

    python -m data_prep.synthetic --format rhd --out data/synthetic/rhd --num-train 1000 \\
        --num-eval 100 --seed 0
    python -m data_prep.build --dataset rhd --config synthetic \\
        --manual_dir data/synthetic/rhd --data_dir data/tfds
    python benchmarks/input_pipeline.py --data_dir data/tfds [--train_step_examples_per_s X]

Measures (i) random-access reads alone, (ii) ``example_to_features`` with augmentation on one
thread, (iii) ``train_batches`` (prefetch thread + ``num_workers`` threads) at the paper's
batch 32 and 256² crops, and reports whether TensorFlow was imported. With
``--train_step_examples_per_s`` (what the S4 train step consumes, from the training benchmark)
it also prints the ratio (target ≥ 3). Results go to results/benchmarks/input_pipeline.json.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from experiments.configs.common import get_base_config  # noqa: E402
from handvae.data import pipeline  # noqa: E402
from handvae.data import source as source_lib  # noqa: E402


def _folder_size(path: str) -> int:
    return sum(f.stat().st_size for f in pathlib.Path(path).rglob("*") if f.is_file())


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default=os.environ.get("HANDVAE_DATA_DIR", "data/tfds"))
    parser.add_argument("--dataset", default="synthetic", choices=sorted(source_lib.TFDS_NAMES))
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--image_size", type=int, default=256)
    parser.add_argument("--num_batches", type=int, default=20)
    parser.add_argument("--num_workers", type=int, default=2)
    parser.add_argument("--no_augment", action="store_true")
    parser.add_argument("--train_step_examples_per_s", type=float, default=None)
    parser.add_argument("--out", default="results/benchmarks/input_pipeline.json")
    args = parser.parse_args(argv)

    config = get_base_config(args.dataset).data
    config.data_dir, config.image_size = args.data_dir, args.image_size
    config.num_workers, config.augment = args.num_workers, not args.no_augment
    source = source_lib.load_source(config, "train")
    n = len(source)

    start = time.perf_counter()
    for i in range(min(n, 200)):
        source[i]
    read_per_s = min(n, 200) / (time.perf_counter() - start)

    rng = np.random.default_rng(0)
    examples = [source[i] for i in range(min(n, 50))]
    start = time.perf_counter()
    for example in examples:
        pipeline.example_to_features(example, config, rng, augment=config.augment)
    features_per_s = len(examples) / (time.perf_counter() - start)

    batches = pipeline.train_batches(config, args.batch_size, seed=0)
    try:
        next(batches)  # warm-up: thread start, first permutation
        start = time.perf_counter()
        for _ in range(args.num_batches):
            next(batches)
        pipeline_per_s = args.num_batches * args.batch_size / (time.perf_counter() - start)
    finally:
        batches.close()

    name = source_lib.TFDS_NAMES[args.dataset]
    result = {
        "dataset": name, "train_examples": n, "batch_size": args.batch_size,
        "image_size": args.image_size, "augment": config.augment,
        "num_workers": args.num_workers, "cpu_count": os.cpu_count(),
        "read_examples_per_s": round(read_per_s, 1),
        "features_examples_per_s_one_thread": round(features_per_s, 1),
        "pipeline_examples_per_s": round(pipeline_per_s, 1),
        "tensorflow_imported": "tensorflow" in sys.modules,
        "built_bytes_per_example": round(
            _folder_size(os.path.join(args.data_dir, name)) / max(n, 1)),
    }
    if args.train_step_examples_per_s:
        result["train_step_examples_per_s"] = args.train_step_examples_per_s
        result["ratio_to_train_step"] = round(pipeline_per_s / args.train_step_examples_per_s, 2)
    print(json.dumps(result, indent=2))
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
