#!/usr/bin/env bash
# The GPU figures in one call (a lent CUDA machine with JAX installed, see WORKSPACE.md):
#
#   bash benchmarks/gpu.sh OUT_DIR
#
# 1. the auction EMD against scipy's exact solver on the host: the Pallas kernel and the
#    backend's default ("dense") variant, 32x256 and 8x1024;
# 2. the paper-scale train steps: R2P, and S4 with the default and the Pallas auction, each S4
#    rate as a fraction of R2P's.
# Each part writes its JSON and log under OUT_DIR and a failing part does not stop the next.
# Python packages the machine lacks (ml_collections) are installed first from .whl/ if present.
set -u
out="${1:?usage: bash benchmarks/gpu.sh OUT_DIR}"
mkdir -p "$out"
source experiments/device_env.sh
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc;
  python3 -c 'import jax, flax, optax; print("jax", jax.__version__, "flax", flax.__version__,
  "optax", optax.__version__, jax.devices())'; } 2>&1 | tee "$out/machine.txt"
part() {  # name timeout command...
  local name=$1 limit=$2; shift 2
  echo "=== $name ($(date +%T))"
  timeout "$limit" "$@" 2>&1 | tee "$out/$name.log" | grep -v "^W0000\|^I0000"
  echo "=== $name exit ${PIPESTATUS[0]} ($(date +%T))"
}
part losses_pallas 120 python3 benchmarks/losses.py --variant pallas --sizes 32x256 \
  --out "$out/losses_pallas.json"
part losses_dense 120 python3 benchmarks/losses.py --sizes 32x256 8x1024 \
  --out "$out/losses_dense.json"
part losses_pallas_1024 80 python3 benchmarks/losses.py --variant pallas --sizes 8x1024 \
  --out "$out/losses_pallas_1024.json"
part train_step 200 python3 benchmarks/train_step.py --skip_demo --skip_pipeline --steps 20 \
  --s4_variants default,pallas --out "$out/train_step.json"
