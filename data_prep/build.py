"""Builds a handvae TFDS data set without TensorFlow (``tfds build`` needs TensorFlow).

    python -m data_prep.build --dataset rhd --config synthetic \\
        --manual_dir data/synthetic/rhd --data_dir data/tfds

is the equivalent of ``tfds build data_prep/rhd --config synthetic --manual_dir ...
--data_dir ... --file_format array_record``. It prints the build time and the split sizes.
"""

from __future__ import annotations

import argparse
import logging
import os
import time

import tensorflow_datasets as tfds

BUILDERS = ("rhd", "stb")


def builder_class(dataset: str) -> type[tfds.core.GeneratorBasedBuilder]:
    """The builder class of ``dataset`` ('rhd' or 'stb')."""
    if dataset == "rhd":
        from data_prep.rhd import rhd_dataset_builder
        return rhd_dataset_builder.Builder
    if dataset == "stb":
        from data_prep.stb import stb_dataset_builder
        return stb_dataset_builder.Builder
    raise ValueError(f"dataset must be one of {BUILDERS}, got {dataset!r}")


def build(dataset: str, config: str, manual_dir: str | os.PathLike, data_dir: str | os.PathLike
          ) -> tfds.core.DatasetBuilder:
    """Builds ``<dataset>/<config>`` from ``manual_dir`` into ``data_dir`` (array_record).

    Args:
      dataset: 'rhd' or 'stb'.
      config: 'real' or 'synthetic'.
      manual_dir: the folder described by the builder's MANUAL_DOWNLOAD_INSTRUCTIONS.
      data_dir: TFDS data_dir to write into (e.g. ``data/tfds``).

    Returns:
      The prepared builder (``.as_data_source(split)`` reads it).
    """
    builder = builder_class(dataset)(config=config, data_dir=os.fspath(data_dir),
                                     file_format="array_record")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=os.fspath(manual_dir)))
    return builder


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=BUILDERS, required=True)
    parser.add_argument("--config", choices=("real", "synthetic"), default="real")
    parser.add_argument("--manual_dir", required=True)
    parser.add_argument("--data_dir", default=os.environ.get("HANDVAE_DATA_DIR", "data/tfds"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    start = time.perf_counter()
    builder = build(args.dataset, args.config, args.manual_dir, args.data_dir)
    seconds = time.perf_counter() - start
    sizes = {name: split.num_examples for name, split in builder.info.splits.items()}
    print(f"built {args.dataset}/{args.config} into {builder.data_dir} in {seconds:.1f} s: "
          f"{sizes}")


if __name__ == "__main__":
    main()
