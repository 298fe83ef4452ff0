"""Training-step throughput, achieved FLOP/s against a matmul roofline, input pipeline rate.

    python benchmarks/train_step.py            # the paper-scale steps + the demo
    python benchmarks/train_step.py --skip_full  # the demo config only
    python benchmarks/train_step.py --skip_demo --skip_pipeline --steps 20   # a GPU
    python benchmarks/train_step.py --lower_for cuda  # the paper-scale steps lowered, not run
    python benchmarks/train_step.py --smoke --out /tmp/train_step.json       # seconds

Figures go to ``results/benchmarks/train_step.json`` and are printed:
  * steps/s of the jitted, sharded R2P (S1) and S4 (RC2CHP_poe) steps at the paper's scale
    (``experiments/configs/reproduce.py`` at ``scale=paper``: batch 32, 256² crops, full
    ResNet-18, 256 points), S4 once per auction variant given by ``--s4_variants`` (the
    backend's default, and e.g. ``pallas``), each with its rate as a fraction of R2P's, and
    of the demo config (``experiments/configs/demo.py``);
  * FLOP/s achieved = XLA's cost analysis of the compiled step (flops) ÷ measured step time,
    and its ratio to the FLOP/s of a large jitted float32 matmul measured in the same run;
    ``model_flops``, the cost analysis of the step before XLA's passes (it counts the
    convolutions a GPU hands to cuDNN, which the compiled count omits; the CPU backend gives
    it, a GPU backend gives none: NaN there, and the HLO is the same), and for S4
    ``flops_vs_R2P``: S4's arithmetic as a multiple of R2P's, whose inverse bounds S4's rate
    as a fraction of R2P's when both run at the same efficiency;
  * examples/s of ``handvae.data.pipeline.train_batches`` on the demo config against the
    examples/s the demo step consumes (the step must never wait on data).
Batches for the step timings are contract-shaped random batches (``spec.dummy_batch``) so the
timing is of the step alone.

``--lower_for cuda`` lowers the paper-scale steps for a GPU on this machine instead of timing
them, as a GPU backend would trace them (its default auction variant: the Pallas kernel
compiled for Triton), from abstract state and batches (nothing allocated, nothing compiled):
their entries then hold ``lower_seconds``, ``model_flops``, ``triton_kernels`` (Pallas kernels
lowered for Triton) and S4's ``flops_vs_R2P`` (``rate_vs_R2P`` is NaN: nothing was timed).
``--smoke`` (a 256² matmul, the demo's ``tiny`` variant, 2 steps, 4 pipeline batches and
``--lower_for cuda``) checks in seconds that the script and the GPU branch of the paper-scale
steps run; ``make test`` runs it.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import _bench  # noqa: E402  (benchmarks/, the script's folder)
from experiments.configs import demo, reproduce  # noqa: E402
from handvae.data import source as source_lib  # noqa: E402
from handvae.data import spec  # noqa: E402
from handvae.models import registry, vae  # noqa: E402
from handvae.training import sharding, state as state_lib, step as step_lib  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _flops(compiled) -> float:
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0] if analysis else None
    if not analysis:      # e.g. a lowered step on a GPU backend: no analysis before its passes
        return float("nan")
    return float(analysis.get("flops", float("nan")))


def matmul_flops_per_sec(n: int = 2048, repeats: int = 10) -> dict:
    """FLOP/s of a jitted [n, n] @ [n, n] float32 matmul (the machine's practical peak)."""
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.PRNGKey(1), (n, n), jnp.float32)
    matmul = jax.jit(jnp.matmul)
    matmul(a, b).block_until_ready()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, b).block_until_ready()
        times.append(time.perf_counter() - start)
    seconds = float(np.median(times))
    return {"n": n, "seconds": seconds, "flops_per_sec": 2.0 * n ** 3 / seconds}


def time_step(config, *, steps: int, warmup: int = 1) -> dict:
    """Compiles the sharded train step of ``config`` and times it on random batches."""
    mesh = sharding.make_mesh()
    model = vae.build_model(config.model)
    state = sharding.replicate(state_lib.create_train_state(config, model), mesh)
    batches = [sharding.shard_batch(spec.dummy_batch(
        config.batch_size, config.data.image_size, config.data.num_points,
        config.data.heatmap_size, seed=i), mesh) for i in range(2)]
    jitted = step_lib.make_train_step(config, mesh)
    start = time.perf_counter()
    lowered = jitted.lower(state, batches[0])
    compiled = lowered.compile()
    compile_seconds = time.perf_counter() - start
    flops = _flops(compiled)
    model_flops = _flops(lowered)   # before XLA's passes: counts cuDNN's convolutions too
    for i in range(warmup):
        state, metrics = compiled(state, batches[i % 2])
    jax.block_until_ready(metrics)
    times = []
    for i in range(steps):
        start = time.perf_counter()
        state, metrics = compiled(state, batches[i % 2])
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - start)
    seconds = float(np.median(times))
    return {"strategy": config.model.strategy, "batch_size": config.batch_size,
            "image_size": config.data.image_size, "resnet_width": config.model.resnet_width,
            "devices": mesh.devices.size, "compile_seconds": compile_seconds,
            "step_seconds_median": seconds, "steps_per_sec": 1.0 / seconds,
            "examples_per_sec": config.batch_size / seconds, "step_flops": flops,
            "achieved_flops_per_sec": flops / seconds, "model_flops": model_flops,
            "timed_steps": steps,
            "final_loss": float(metrics["loss"])}


def lower_step(config, platform: str) -> dict:
    """Lowers the sharded train step of ``config`` for ``platform`` without running it.

    The same step as :func:`time_step`, traced as ``platform``'s backend would trace it
    (``_bench.lower_for``) from the abstract train state and batch: the GPU branch at the
    GPU's sizes, checked on a CPU.
    """
    mesh = sharding.make_mesh()
    model = vae.build_model(config.model)
    state = state_lib.abstract_train_state(config, model)
    batch = _bench.abstract(spec.dummy_batch(
        config.batch_size, config.data.image_size, config.data.num_points,
        config.data.heatmap_size, seed=0))
    jitted = step_lib.make_train_step(config, mesh)
    lowered, seconds = _bench.lower_for(jitted, (state, batch), platform)
    return {"strategy": config.model.strategy, "batch_size": config.batch_size,
            "image_size": config.data.image_size, "resnet_width": config.model.resnet_width,
            "devices": mesh.devices.size, "lowered_for": platform, "lower_seconds": seconds,
            "model_flops": _flops(lowered), "triton_kernels": _bench.triton_kernels(lowered)}


def pipeline_rate(config, *, batches: int = 20) -> dict:
    """examples/s of the training pipeline on ``config`` (builds the dummy RHD data if needed)."""
    from handvae.data import pipeline
    data_config = config.data
    try:
        source_lib.load_source(data_config, data_config.train_split)
        source_note = source_lib.resolve_data_dir(data_config)
    except FileNotFoundError:
        from data_prep import build
        data_dir = tempfile.mkdtemp(prefix="handvae_bench_tfds_")
        build.build("rhd", "synthetic", os.path.join(REPO, "data_prep", "rhd", "dummy_data"),
                    data_dir)
        data_config.data_dir = data_dir
        source_note = "data_prep/rhd/dummy_data (built to a temporary data_dir)"
    iterator = pipeline.train_batches(
        data_config, config.batch_size, seed=0,
        keys=registry.get_strategy(config.model.strategy).batch_keys())
    try:
        next(iterator)  # thread and source start-up
        start = time.perf_counter()
        for _ in range(batches):
            next(iterator)
        seconds = time.perf_counter() - start
    finally:
        if hasattr(iterator, "close"):
            iterator.close()
    return {"data": source_note, "batch_size": config.batch_size, "batches": batches,
            "num_workers": data_config.num_workers,
            "examples_per_sec": batches * config.batch_size / seconds}


# --smoke: the script's code paths in seconds (tests/benchmarks/test_benchmarks_smoke.py).
SMOKE = {"matmul_size": 256, "steps": 2, "pipeline_batches": 4, "tiny": True,
         "lower_for": "cuda"}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip_full", action="store_true", help="skip the paper-scale steps")
    parser.add_argument("--skip_demo", action="store_true", help="skip the demo-config step")
    parser.add_argument("--skip_pipeline", action="store_true",
                        help="skip the input-pipeline rate (it builds the dummy data)")
    parser.add_argument("--s4_variants", default="default",
                        help="comma-separated EMD variants for the paper-scale S4 step "
                             "(default: the backend's; e.g. default,pallas on a GPU)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per config")
    parser.add_argument("--matmul_size", type=int, default=2048,
                        help="n of the [n, n] @ [n, n] reference matmul")
    parser.add_argument("--pipeline_batches", type=int, default=20)
    parser.add_argument("--tiny", action="store_true",
                        help="the demo config's tiny variant (32-px crops, tiny widths, batch 4)")
    parser.add_argument("--lower_for", choices=_bench.PLATFORMS, default=None,
                        help="lower the paper-scale steps for this platform instead of timing "
                             "them (e.g. cuda: the GPU branch, checked on a CPU)")
    parser.add_argument("--out", default=os.path.join(REPO, "results", "benchmarks",
                                                      "train_step.json"))
    args = _bench.parse_args(parser, argv, SMOKE)

    results: dict = {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                     "devices": [str(d) for d in jax.devices()], "jax": jax.__version__,
                     "smoke": args.smoke}
    results["matmul"] = matmul_flops_per_sec(args.matmul_size)
    peak = results["matmul"]["flops_per_sec"]
    print(f"matmul {args.matmul_size}²: {peak / 1e9:.1f} GFLOP/s", flush=True)

    demo_arg = "strategy=RC2CHP_poe" + (",tiny" if args.tiny else "")
    runs = {} if args.skip_demo else {"demo_s4": demo.get_config(demo_arg)}
    if not args.skip_full:
        runs["paper_R2P"] = reproduce.get_config("strategy=R2P,scale=paper")
        for variant in args.s4_variants.split(","):
            config = reproduce.get_config("strategy=RC2CHP_poe,scale=paper")
            config.loss.emd_variant = "" if variant == "default" else variant
            runs[f"paper_RC2CHP_poe_{variant}"] = config
    for name, config in runs.items():
        if args.lower_for and name.startswith("paper_"):
            figures = lower_step(config, args.lower_for)
            results[name] = figures
            print(f"{name}: lowered for {args.lower_for} in {figures['lower_seconds']:.1f} s, "
                  f"{figures['model_flops'] / 1e9:.1f} GFLOP per step, "
                  f"{figures['triton_kernels']} Triton kernel(s)", flush=True)
        else:
            figures = time_step(config, steps=args.steps)
            figures["fraction_of_matmul_flops"] = figures["achieved_flops_per_sec"] / peak
            results[name] = figures
            print(f"{name}: {figures['steps_per_sec']:.3f} steps/s "
                  f"({figures['examples_per_sec']:.1f} examples/s), "
                  f"{figures['achieved_flops_per_sec'] / 1e9:.2f} GFLOP/s = "
                  f"{100 * figures['fraction_of_matmul_flops']:.1f}% of the matmul, "
                  f"compile {figures['compile_seconds']:.1f} s", flush=True)
        if name.startswith("paper_RC2CHP") and "paper_R2P" in results:
            figures["rate_vs_R2P"] = (figures["steps_per_sec"]
                                      / results["paper_R2P"]["steps_per_sec"]
                                      if "steps_per_sec" in figures else float("nan"))
            # A step that does k× R2P's arithmetic cannot run faster than 1/k of its rate
            # at the same efficiency.
            figures["flops_vs_R2P"] = (figures["model_flops"]
                                       / results["paper_R2P"]["model_flops"])
            ceiling = (f"; it does {figures['flops_vs_R2P']:.2f}x R2P's FLOPs (a compute-bound "
                       f"ceiling of {100 / figures['flops_vs_R2P']:.0f}%)"
                       if np.isfinite(figures["flops_vs_R2P"]) else "")
            rate = (f"runs at {100 * figures['rate_vs_R2P']:.0f}% of R2P's step rate"
                    if np.isfinite(figures["rate_vs_R2P"]) else "was not timed")
            print(f"  {name} {rate}{ceiling}", flush=True)

    if args.skip_pipeline or args.skip_demo:
        _bench.write_figures(results, args.out, "train_step.json")
        return results
    demo_config = demo.get_config(demo_arg)
    rate = pipeline_rate(demo_config, batches=args.pipeline_batches)
    rate["step_consumes_examples_per_sec"] = results["demo_s4"]["examples_per_sec"]
    rate["headroom"] = rate["examples_per_sec"] / rate["step_consumes_examples_per_sec"]
    results["pipeline_demo"] = rate
    print(f"pipeline (demo): {rate['examples_per_sec']:.1f} examples/s vs the step's "
          f"{rate['step_consumes_examples_per_sec']:.1f} (x{rate['headroom']:.2f})", flush=True)

    _bench.write_figures(results, args.out, "train_step.json")
    return results


if __name__ == "__main__":
    main()
