#!/usr/bin/env bash
# Fills .whl/ (git-ignored) with the wheels a lent GPU machine lacks, at the versions this
# checkout's .venv runs, so `experiments/device_env.sh` can install them there offline. Run it
# here, from the repository root, before a lease; then name `.whl` in the run tool's `carry`.
#
#   bash experiments/gpu_wheels.sh            # ~15 MiB, counts towards the 64 MiB a call carries
#
# The list is the project's packages missing from the GPU image ('cuda', read 2026-11-17 in
# /work/.library/device/KINDS.md) and their own missing requirements; jax, flax, optax, orbax,
# numpy, protobuf, pyarrow, absl-py and the rest are already there. --no-deps: every wheel is
# named, so pip fetches nothing else.
set -euo pipefail
PY=${PYTHON:-.venv/bin/python}
MISSING="ml_collections tensorflow-datasets array_record tensorboardX dm-tree immutabledict
promise simple-parsing docstring_parser tensorflow-metadata googleapis-common-protos termcolor
toml"
pins=()
for name in $MISSING; do
  version=$("$PY" -m pip show "$name" 2>/dev/null | sed -n 's/^Version: //p')
  [ -n "$version" ] || { echo "gpu_wheels: $name is not installed in $PY's environment" >&2; exit 1; }
  pins+=("$name==$version")
done
mkdir -p .whl
# The GPU image runs CPython 3.12 on x86_64 glibc; pip matches each manylinux tag exactly.
platforms=()
for tag in manylinux_2_28 manylinux_2_27 manylinux_2_24 manylinux_2_17 manylinux2014 manylinux1; do
  platforms+=(--platform "${tag}_x86_64")
done
for pin in "${pins[@]}"; do
  # A package published as source only (promise) is built into a wheel here: all such are
  # pure Python, so the wheel suits the GPU machine too.
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${platforms[@]}" -d .whl "$pin" 2>/dev/null \
    || "$PY" -m pip wheel -q --no-deps -w .whl "$pin"
done
ls -1 .whl
du -sh .whl
