"""The demo: the benchmark's ``cpu`` scale, trained for fewer steps, so ``make demo`` fits 15 min.

Command (after building the synthetic data set, see README)::

    python -m experiments.train --config experiments/configs/demo.py:strategy=RC2CHP_poe \\
        --workdir workdirs/demo_s4

Arguments: ``strategy`` (one of R2P, R2HP, R2CP, R2CHP, RC2CHP_kl, RC2CHP_poe; default
RC2CHP_poe), ``steps`` (default :data:`STEPS`) and ``tiny`` (``common.shrink_to_tiny`` on top;
its 6 steps unless ``steps`` is given, whose schedule then scales with it).

Every model, data and optimiser setting is the reproduction's ``cpu`` scale
(``experiments/configs/reproduce.py``: 64² crops, a ResNet-18 of width 16, 64 cloud points,
batch 32, Adam 1e-3 ÷10 at 60 % and 85 % of the run, β annealed over the first half,
augmentation on, the paper's λ's and β'), so the demo's numbers sit on the benchmark's
learning curve: only the run length (:data:`STEPS` instead of 4,000) and the training set
(``make demo`` generates its own, smaller one) differ. Validation runs on a 256-frame subsample.

Expected result (``make demo``, 3,000 generated frames, 2026-11-26, 2 idle cores): test mean
EPE S1 (R2P) 38.63 mm, S4 (RC2CHP_poe) 34.33 mm, constant guess 53.67 mm; training took 178 s
and 390 s, the whole demo 11 min 44 s.

Decision and sizing runs (moved from WORKSPACE.md)

**The demo is the `cpu` scale, run shorter** (issue 16; `experiments/configs/demo.py` calls
`reproduce.get_config(...,scale=cpu,steps=2000)`, so every value is written once). The old
demo (width 8, batch 16, augmentation off, 1,500 steps on 2,000 frames) reached S1 44.7 mm,
17 % below the constant guess. Sizing runs on the benchmark's first 2,850 training frames
(R2P, seed 0; `experiments/results/cpu/ablation_s1_data_steps.json`, never the test split
for a choice: the runs' validation curves set it): 2,000 steps 38.7 mm (test), 3,000 steps
35.3 mm, batch 16 × 4,000 steps 39.4 mm (no better per example, ~1.7× the steps/s), lr 3e-3
worse than 1e-3 at every validation (stopped). A 15-minute budget on 2 idle cores (S1 ~10,
S4 ~4.4 steps/s, ~80 ms per generated and built frame) buys 3,000 frames and 2,000 steps of
each model; `make demo` then measured S1 38.63 mm, S4 34.33 mm, constant 53.67 mm in 11 min
44 s on idle cores (28.8 min beside a training run, S4 34.92 mm with the previous auction).
The issue's "S1 35 % below the constant guess" needs ~3,000 steps, ~16–17 minutes; the
budget was kept and the gap is reported.
"""

from __future__ import annotations

import ml_collections

from experiments.configs import common, reproduce

# Measured on the benchmark's first 3,000 training frames (R2P, seed 0, 2 cores,
# 2026-11-26) the test mean EPE was 38.7 mm after 2,000 steps and 35.3 mm after 3,000, against
# 53.9 mm for a constant guess; the benchmark's 4,000 steps on 19,000 frames reach 32.2 mm.
# 2,000 steps keep `make demo` (3,000 frames) within 15 minutes on 2 idle cores (measured
# 11 min 44 s); 3,000 would take ~16-17.
STEPS = 2000


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The demo config (``arg``: ``strategy=...,steps=...,tiny``)."""
    args = common.parse_arg(arg, {"strategy": "RC2CHP_poe", "steps": STEPS, "tiny": False})
    if args["steps"] < 1:
        raise ValueError(f"steps must be a positive integer, got {args['steps']}")
    config = reproduce.get_config(
        f"strategy={args['strategy']},scale=cpu,steps={args['steps']}")
    config.log_every = 50
    config.num_eval_examples = 256
    if not args["tiny"]:
        return config
    common.shrink_to_tiny(config)
    if _given(arg, "steps"):  # tiny sizes, the requested length and a schedule that fits it
        steps = args["steps"]
        config.num_train_steps = steps
        first = max(1, int(steps * 0.6))
        config.optimizer.lr_boundaries = (first,)
        config.loss.beta_anneal_steps = max(1, steps // 2)
    return config


def _given(arg: str | None, key: str) -> bool:
    """Whether ``arg`` ("strategy=R2P,steps=9,tiny") sets ``key`` explicitly."""
    return any(part.partition("=")[0].strip() == key and "=" in part
               for part in (arg or "").split(","))
