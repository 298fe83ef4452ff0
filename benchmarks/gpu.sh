#!/usr/bin/env bash
# The GPU figures in one device call (a lent CUDA machine with JAX installed, see WORKSPACE.md):
#
#   bash benchmarks/gpu.sh OUT_DIR              # on the GPU: ~540 s (DEADLINE_S), one call
#   bash benchmarks/gpu.sh --dry-run OUT_DIR    # on a CPU: every part at tiny sizes, ~3 min
#
# Parts in order of priority, each under `timeout` with its budget (s), cut to the time left
# before the deadline (DEADLINE_S, default 540 s from the start) and skipped with < 30 s left:
#   0. (~20)  setup: experiments/device_env.sh, the machine and packages -> machine.txt.
#   1. (240)  population (issue 25): benchmarks/population.py, member-steps/s of K = 1, 2, 4, 8
#             vmapped runs against one run, shared and per-member batches, R2P and S4, at the
#             cpu scale, then paper size (the script adds it on a GPU) until the budget ends:
#             exit 124 is then expected; population.json is rewritten after every K, so it
#             keeps what was measured (device_kind, member_steps_per_s keyed by K). About
#             20 compiles at the cpu scale (~8 s R2P, ~17 s S4 each, guessed from the
#             paper-size steps' compiles on an H200): S4's last Ks may not fit.
#   2. trainer rate (issue 26): benchmarks/trainer_rate.py --interleave at paper size (its 14
#      worker processes), host vs device-side augmentation (data.augment_on) and the decoded
#      cache with cache_mb 0 (a data set larger than the per-process cache, as the full RHD
#      is), each against the step alone: does the GPU trainer wait for data?
#      a. (background, beside part 1; niced, 4 cores) its data: 400 + 40 synthetic RHD frames,
#         generated and built into a temporary folder;
#      b. (65)  R2P -> trainer_rate_R2P.json;  c. (85)  S4 -> trainer_rate_S4.json
#         (one process per strategy: the script writes its JSON only at the end).
#   3. the EMD and the paper-size train steps, measured before (benchmarks/figures/h200_*):
#      a. (45)  losses: the auction EMD (the GPU default, Pallas) against scipy, 32x256, 8x1024;
#      b. (75)  train_step: paper-size R2P and S4 (Pallas auction) steps/s on a resident batch;
#      c. (40)  losses_dense: the dense XLA auction, the same sizes (only if time is left).
# 20 + 240 + 65 + 85 + 45 + 75 = 530 s (budgets from the H200 figures of 2026-11-26, those of
# parts 1 and 2 guessed); a part that ends early leaves its time to the later ones.
# Each part writes its JSON and log under OUT_DIR and a failing part does not stop the next;
# OUT_DIR/parts.txt lists every part's exit status, seconds and limit.
# Python packages the machine lacks (ml_collections; for part 2 tensorflow-datasets,
# array_record, tensorboardX) are installed first from .whl/ if present (device_env.sh).
#
# --dry-run (a CPU; 3.2 min on the shared 2-core machine at load 5, trainer_rate's smoke 40 %
# of it): the same command lines with flags appended that shrink them
# (later flags win): population.py --lower_for cuda --members 2 (every case's step lowered
# for a GPU, the Pallas auction under vmap included, not run), trainer_rate.py --smoke (tiny
# scale, R2P, threads, 12 + 4 frames; part 2c is skipped, as its --smoke would run R2P again),
# losses.py --smoke --sizes 4x16 and train_step.py --smoke (the paper-size steps lowered for
# cuda). nvidia-smi is skipped; python is $PYTHON, else .venv/bin/python; budgets x3; quick
# XLA compiles, as tests/benchmarks/test_benchmarks_smoke.py (test_gpu_script_dry_run) runs it.
# Run both from the repository root.
set -u
dry=0
if [[ ${1:-} == --dry-run ]]; then dry=1; shift; fi
out="${1:?usage: bash benchmarks/gpu.sh [--dry-run] OUT_DIR}"
mkdir -p "$out"
: > "$out/parts.txt"
source experiments/device_env.sh
py=${PYTHON:-python3}
scale=1
if ((dry)); then
  scale=3
  [[ -z ${PYTHON:-} && -x .venv/bin/python ]] && py=.venv/bin/python
  export JAX_PLATFORMS=cpu TF_CPP_MIN_LOG_LEVEL=3 XLA_FLAGS="${XLA_FLAGS:-} \
--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
fi
deadline=$((SECONDS + scale * ${DEADLINE_S:-540}))
data=$(mktemp -d "${TMPDIR:-/tmp}/handvae_gpu_data.XXXXXX")
trap 'rm -rf "$data"' EXIT

{ ((dry)) || nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc;
  timeout 60 "$py" -c 'import jax, flax, optax; print("jax", jax.__version__, "flax",
  flax.__version__, "optax", optax.__version__, jax.devices())'; } 2>&1 | tee "$out/machine.txt"

part() {  # name budget dry_flags command...: the command (+ dry_flags in a dry run), timed out
  local name=$1 budget=$(($2 * scale)) extra=$3; shift 3
  local left=$((deadline - SECONDS))
  local limit=$((budget < left ? budget : left)) start=$SECONDS rc
  if ((limit < 30)); then
    echo "$name skipped: ${left} s left before the deadline" | tee -a "$out/parts.txt"
    return 1
  fi
  ((dry)) && set -- "$@" $extra
  echo "=== $name ($(date +%T), limit ${limit} s): $*"
  timeout -k 5 "$limit" "$@" 2>&1 | tee "$out/$name.log" | grep -v "^W0000\|^I0000"
  rc=${PIPESTATUS[0]}
  echo "$name exit $rc after $((SECONDS - start)) s (limit $limit s)" | tee -a "$out/parts.txt"
  return "$rc"
}

# 2a, in the background: the trainer_rate parts' data (its output only in the logs), kept off
# the GPU (neither step uses JAX; this makes sure nothing grabs the population's memory).
cpu_only=(env CUDA_VISIBLE_DEVICES= JAX_PLATFORMS=cpu nice -n 10)
( part trainer_data_generate 120 "--num-train 12 --num-eval 4 --workers 1" \
    "${cpu_only[@]}" "$py" -m data_prep.synthetic --format rhd --out "$data/raw" --num-train 400 \
    --num-eval 40 --seed 0 --workers 4 --no-progress \
  && part trainer_data_build 60 "--workers 1" \
    "${cpu_only[@]}" "$py" -m data_prep.build --dataset rhd --config synthetic \
    --manual_dir "$data/raw" --data_dir "$data/tfds" --workers 4 --no-progress
) > "$out/trainer_data.txt" 2>&1 &
data_job=$!

# 1.
part population 240 "--lower_for cuda --members 2" \
  "$py" benchmarks/population.py --members 1,2,4,8 --strategies R2P,RC2CHP_poe \
  --batches shared,per_member --steps 5 --rounds 3 --warmup 2 --out "$out"

# 2b, 2c.
if wait "$data_job"; then
  for strategy in R2P RC2CHP_poe; do
    name=trainer_rate_$strategy budget=65
    [[ $strategy == RC2CHP_poe ]] && name=trainer_rate_S4 budget=85
    if ((dry)) && [[ $strategy != R2P ]]; then   # --smoke forces R2P: R2P's dry run again
      echo "$name skipped in a dry run: trainer_rate.py --smoke runs R2P only" \
        | tee -a "$out/parts.txt"
      continue
    fi
    part "$name" "$budget" "--smoke" \
      "$py" benchmarks/trainer_rate.py --data_dir "$data/tfds" --cache_dir "$data/cache" \
      --size paper --strategies "$strategy" --pipelines host,decoded_cache,device --interleave \
      --steps 40 --repeats 3 --cache_mb 0 --out "$out/$name.json"
  done
else
  echo "trainer_rate skipped: its data failed (trainer_data.txt)" | tee -a "$out/parts.txt"
fi

# 3.
part losses 45 "--smoke --sizes 4x16" \
  "$py" benchmarks/losses.py --sizes 32x256 8x1024 --out "$out/losses.json"
part train_step 75 "--smoke" \
  "$py" benchmarks/train_step.py --skip_demo --skip_pipeline --steps 20 --s4_variants default \
  --out "$out/train_step.json"
part losses_dense 40 "--smoke --sizes 4x16" \
  "$py" benchmarks/losses.py --variant dense --sizes 32x256 8x1024 \
  --out "$out/losses_dense.json"
echo "=== done after $SECONDS s"
cat "$out/parts.txt"
