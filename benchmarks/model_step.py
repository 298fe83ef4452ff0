"""Parameter counts and the time of one jitted train step per strategy (CPU by default).

A train step is ``value_and_grad`` of ``handvae.training.step.apply_and_loss`` (the model in
BatchNorm training
mode, the strategy's full objective with the auction EMD) followed by an Adam update, jitted
once per strategy; the figure is the median wall time of ``--repeats`` steps after the
compilation (reported separately). Ratios are against R2P when it is in the run.

Run (paper size, batch 32; slow on a 2-core CPU)::

    .venv/bin/python benchmarks/model_step.py
    .venv/bin/python benchmarks/model_step.py --image_size 64 --strategies R2P RC2CHP_poe
    .venv/bin/python benchmarks/model_step.py --lower_for cuda   # lowered for a GPU, not run
    .venv/bin/python benchmarks/model_step.py --smoke --out /tmp/model_step.json   # seconds

Results go to ``results/benchmarks/model_step.json``, one entry per settings: a run adds (or
replaces) its strategies' results there, so strategies can be timed in separate runs. Each
result records the device, the 1-minute load average and the date, since on a shared CPU the
load changes the figures.

``--lower_for cuda`` lowers each step for a GPU on this machine instead of compiling and
timing it, as a GPU backend would trace it (its default auction variant: the Pallas kernel for
Triton), from abstract parameters and batch: entries then hold ``lower_s``, ``model_flops``
and the parameter counts. ``--smoke`` (R2P at the ``tiny`` sizes, one repeat) checks in
seconds that the script runs; ``make test`` runs it and this lowering at the paper size.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import sys
import time

# The checkout this script is in, not whichever handvae the environment installed.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import _bench  # noqa: E402  (benchmarks/, the script's folder)
from experiments.configs.common import get_base_config, shrink_to_tiny  # noqa: E402
from handvae.data.spec import dummy_batch  # noqa: E402
from handvae.models import STRATEGIES, build_model, init_variables  # noqa: E402
from handvae.training import step as step_lib  # noqa: E402


def count_parameters(model, batch) -> dict[str, int]:
    """Parameters per top-level module (abstract init: nothing is computed)."""
    key = jax.random.key(0)
    shapes = jax.eval_shape(lambda: model.init(key, batch["rgb"][:1], batch["cloud"][:1], key,
                                               train=False))
    return {name: int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))
            for name, tree in shapes["params"].items()}


def time_train_step(config, strategy: str, batch, repeats: int,
                    lower_for: str | None = None) -> dict:
    """Compile and time one Adam step of ``strategy``'s objective.

    With ``lower_for`` (a platform, e.g. ``cuda``) the step is only lowered for it, from
    abstract parameters and batch, as its backend would trace it: nothing is compiled or run.
    """
    config.model.strategy = strategy
    model = build_model(config.model)
    if lower_for:
        variables = jax.eval_shape(lambda: init_variables(model, jax.random.key(0), batch))
    else:
        variables = init_variables(model, jax.random.key(0), batch)
    tx = optax.adam(config.optimizer.lr)
    options = step_lib.step_options_from_config(config)
    weights = options.loss_weights(jnp.int32(0))

    def step(params, batch_stats, opt_state, batch, rng):
        def loss_fn(p):
            return step_lib.apply_and_loss(model.apply, p, batch_stats, batch, rng, weights,
                                           spec=options.spec, emd=options.emd, train=True)
        (loss, (terms, new_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), new_stats, opt_state, loss

    params, stats = variables["params"], variables["batch_stats"]
    if lower_for:
        args = _bench.abstract((params, stats, jax.eval_shape(tx.init, params), batch,
                                jax.random.key(1)))
        lowered, seconds = _bench.lower_for(jax.jit(step), args, lower_for)
        analysis = lowered.cost_analysis() or {}
        return {"lowered_for": lower_for, "lower_s": round(seconds, 2),
                "model_flops": float(analysis.get("flops", float("nan"))),
                "triton_kernels": _bench.triton_kernels(lowered),
                "params": count_parameters(model, batch)}
    opt_state = tx.init(params)
    args = (params, stats, opt_state, batch, jax.random.key(1))
    start = time.perf_counter()
    compiled = jax.jit(step).lower(*args).compile()
    compile_s = time.perf_counter() - start
    times = []
    for i in range(repeats + 1):  # the first run warms up allocations; not counted
        start = time.perf_counter()
        params, stats, opt_state, loss = jax.block_until_ready(
            compiled(params, stats, opt_state, batch, jax.random.key(i)))
        if i:
            times.append(time.perf_counter() - start)
    return {"compile_s": round(compile_s, 2), "step_s": round(statistics.median(times), 4),
            "step_s_all": [round(t, 4) for t in times], "loss": float(loss),
            "params": count_parameters(model, batch)}


# --smoke: the script's code paths in seconds (tests/benchmarks/test_benchmarks_smoke.py);
# the sizes are common.shrink_to_tiny's.
SMOKE = {"strategies": ["R2P"], "batch_size": 2, "image_size": 32, "resnet_width": 4,
         "num_points": 64, "heatmap_size": 8, "repeats": 1, "tiny": True}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--image_size", type=int, default=256)
    parser.add_argument("--resnet_width", type=int, default=64)
    parser.add_argument("--num_points", type=int, default=256)
    parser.add_argument("--heatmap_size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tiny", action="store_true",
                        help="the other widths of the tiny config (common.shrink_to_tiny)")
    parser.add_argument("--lower_for", choices=_bench.PLATFORMS, default=None,
                        help="lower each step for this platform instead of timing it")
    parser.add_argument("--out", default="results/benchmarks/model_step.json")
    args = _bench.parse_args(parser, argv, SMOKE)

    config = get_base_config("synthetic")
    if args.tiny:
        shrink_to_tiny(config)   # the sizes below come from the flags all the same
    config.data.image_size = args.image_size  # the model's sizes follow config.data
    config.model.resnet_width = args.resnet_width
    config.data.num_points = args.num_points
    config.data.heatmap_size = args.heatmap_size
    batch = {k: jnp.asarray(v) for k, v in dummy_batch(
        args.batch_size, args.image_size, args.num_points, args.heatmap_size).items()}
    settings = {"batch_size": args.batch_size, "image_size": args.image_size,
                "resnet_width": args.resnet_width, "num_points": args.num_points,
                "heatmap_size": args.heatmap_size, "latent_dim": config.model.latent_dim,
                "emd_epsilon": config.loss.emd_epsilon}
    if args.tiny or args.lower_for:   # absent otherwise: earlier runs' settings still match
        settings.update(tiny=args.tiny, lower_for=args.lower_for)
    results = {}
    for strategy in args.strategies:
        results[strategy] = time_train_step(config, strategy, batch, args.repeats,
                                            args.lower_for)
        r = results[strategy]
        if args.lower_for:
            print(f"{strategy:>11}: {sum(r['params'].values()):>11,d} params  lowered for "
                  f"{args.lower_for} in {r['lower_s']:.1f} s, {r['model_flops'] / 1e9:.1f} "
                  f"GFLOP, {r['triton_kernels']} Triton kernel(s)", flush=True)
            continue
        print(f"{strategy:>11}: {sum(r['params'].values()):>11,d} params  "
              f"step {r['step_s']:8.3f} s  (compile {r['compile_s']:.1f} s)", flush=True)
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    runs = json.loads(out.read_text())["runs"] if out.exists() else []
    # One entry per settings: a run adds (or replaces) its strategies' results there.
    previous = [r for r in runs if r["settings"] == settings]
    merged = {**(previous[0]["results"] if previous else {}), **results}
    if "R2P" in merged and "step_s" in merged["R2P"]:
        for r in merged.values():
            r["step_ratio_to_R2P"] = round(r["step_s"] / merged["R2P"]["step_s"], 3)
    for r in results.values():
        r.update(device=f"{jax.default_backend()} x{jax.device_count()} "
                        f"({platform.processor() or platform.machine()}, "
                        f"{os.cpu_count()} cores)",
                 load_average_1min=round(os.getloadavg()[0], 2), jax=jax.__version__,
                 date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    runs = [r for r in runs if r["settings"] != settings] + [
        {"settings": settings, "results": merged}]
    out.write_text(json.dumps({"runs": runs}, indent=1))
    print(f"wrote {out}")
    return {"settings": settings, "results": merged}


if __name__ == "__main__":
    main()
