#!/usr/bin/env bash
# Paper-size runs on a lent GPU (issue 16): the cpu scale's benchmark and schedule with the
# paper's model and crops, in one device call of under ten minutes (the capacity ablation,
# and S1 against S4 at paper size: experiments/results/gpu/).
#
#   bash experiments/gpu_capacity.sh OUT_DIR [STEPS]
#
# 1. smoke: `experiments.reproduce --scale tiny` (generate, build, train, test R2P and S4 on
#    16 frames), run beside the data generation; a failure stops everything at once;
# 2. data: the cpu scale's benchmark (`SCALES["cpu"].data`: 20,000 + 2,000 frames, seed 0),
#    generated and built with the RHD builder on all cores;
# 3. the hand-over of paper-size batches from the paper scale's worker processes
#    (benchmarks/batch_transport.py);
# 4. runs: R2P, then S4 (RC2CHP_poe), or the order in STRATEGIES; each
#    `reproduce.py:scale=paper,steps=STEPS` (256² crops,
#    full-width ResNet-18, the paper's decoder widths, batch 32) with the cpu scale's learning
#    rate 1e-3 (`--config.optimizer.lr`), so that only the model and the crop size differ from
#    the cpu-scale runs. Each trainer picks its checkpoint on validation and tests it once.
# NUM_TRAIN / NUM_EVAL shrink the data for a local check of the script, DEADLINE_S (540) ends
# the last run in time, TRAIN_FLAGS adds trainer flags to every run (an ablation, e.g.
# TRAIN_FLAGS=--config.model.logvar_bias_init=-4). Everything small lands in OUT_DIR;
# packages the machine lacks come from .whl/ (WORKSPACE.md).
set -u
out="${1:?usage: bash experiments/gpu_capacity.sh OUT_DIR [STEPS]}"
steps="${2:-4000}"
deadline=$((SECONDS + ${DEADLINE_S:-540}))
mkdir -p "$out"
source experiments/device_env.sh
log() { echo "[$SECONDS s] $*" | tee -a "$out/timeline.txt"; }
{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; nproc;
  python3 -c 'import jax, flax, optax, orbax.checkpoint as o, tensorflow_datasets as t
print("jax", jax.__version__, "flax", flax.__version__, "optax", optax.__version__,
      "orbax", o.__version__, "tfds", t.__version__, jax.devices())'; } 2>&1 | tee "$out/machine.txt"
data=/tmp/bench
log "smoke + generate"
timeout 240 python3 -m experiments.reproduce --root /tmp/tiny --scale tiny --targets table1 \
  --strategies R2P,RC2CHP_poe --seeds 0 > "$out/smoke.log" 2>&1 &
smoke=$!
timeout 240 python3 -m data_prep.synthetic --format rhd --out "$data/raw" --num-train "${NUM_TRAIN:-20000}" \
  --num-eval "${NUM_EVAL:-2000}" --seed 0 > /tmp/gen.log 2>&1 &
gen=$!
if ! wait $smoke; then
  log "smoke FAILED"; kill $gen; tail -40 "$out/smoke.log"; exit 3
fi
log "smoke passed"
wait $gen || { log "generate FAILED"; tr '\r' '\n' < /tmp/gen.log | tail -20; exit 4; }
log "generated"
timeout 200 python3 -m data_prep.build --dataset rhd --config synthetic --manual_dir "$data/raw" \
  --data_dir "$data/tfds" > /tmp/build.log 2>&1 \
  || { log "build FAILED"; tr '\r' '\n' < /tmp/build.log | tail -20; exit 5; }
log "built"
df -h /dev/shm >> "$out/machine.txt" 2>&1
timeout 60 python3 benchmarks/batch_transport.py --batches 100 \
  --out "$out/batch_transport.json" > "$out/batch_transport.txt" 2>&1
log "transport measured"
for strategy in ${STRATEGIES:-R2P RC2CHP_poe}; do
  left=$((deadline - SECONDS))
  log "train $strategy (${left} s left)"
  timeout "$left" python3 -m experiments.train \
    --config "experiments/configs/reproduce.py:strategy=$strategy,scale=paper,steps=$steps" \
    --workdir "/tmp/runs/$strategy" --config.data.data_dir="$data/tfds" \
    --config.optimizer.lr=1e-3 ${TRAIN_FLAGS:-} > "/tmp/train_$strategy.log" 2>&1
  log "train $strategy exit $?"
  tr '\r' '\n' < "/tmp/train_$strategy.log" | grep -v "^W0000\|^I0000" | tail -60 \
    > "$out/train_$strategy.txt"
  cp "/tmp/runs/$strategy/final_metrics.json" "$out/final_metrics_$strategy.json" 2>/dev/null
done
tar czf "$out/runs_small.tgz" --exclude='checkpoints*' -C /tmp runs
log "done"
