"""Population throughput: member-steps/s of K vmapped runs against one run, in the same process.

    python benchmarks/population.py                 # cpu scale; paper size too on a GPU
    python benchmarks/population.py --paper         # paper size on any backend (slow on CPU)
    python benchmarks/population.py --smoke         # tiny config, K = 1, 2, R2P: seconds
    python benchmarks/population.py --lower_for cuda   # every case lowered for a GPU, not run

For R2P (S1) and RC2CHP_poe (S4), at the cpu scale (``experiments/configs/reproduce.py``
``scale=cpu``) and at paper size (``scale=paper``: only with a GPU present or ``--paper``), and
for a shared batch (every member reads one batch; members differ in λ_cloud) and one batch per
member (members differ in seed), it times:

* one run: the project's step (``handvae.training.step.make_train_step``), steps/s;
* populations of K = 1, 2, 4, 8 (``--members``): the vmapped step
  (``handvae.training.population.make_population_train_step``) on the ``("members", "data")``
  mesh, member-steps/s = K × steps/s.

The one run and each population take turns (``--rounds`` turns of ``--steps`` timed steps
each, after ``--warmup``), so a drifting machine load hits both alike; each rate is the median
step's, on contract-shaped random batches already on the mesh (the step alone, no input
pipeline). Figures go to ``benchmarks/figures/<machine>_<date>/population.json`` (``--out``;
``--smoke`` writes to a temporary folder unless ``--out`` is given): ``device_kind``, the
load (``uptime``) before and after, and per case ``member_steps_per_s`` keyed by K with
``member_steps_per_s_ratio``, each K's rate over the one run's measured in the same run (K = 1
is then the vmap's own overhead). ``experiments.sweep --population=auto`` reads the ratios.

``--lower_for cuda`` lowers each case's population step for a GPU on this machine instead of
compiling and timing it (``_bench.lower_for``, from abstract states and batches; paper size
only with ``--paper``): the branch a GPU traces (the Pallas auction under ``vmap``, folded
into the batch, handed to Triton), checked without one. Each case then records
``lowered_for``, ``lower_seconds`` and ``triton_kernels`` keyed by K, and no rates; like
``--smoke`` it writes to a temporary folder unless ``--out`` is given
(``benchmarks/gpu.sh --dry-run`` uses it).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

import _bench  # noqa: E402  (benchmarks/, the script's folder)

from experiments.configs import common, reproduce  # noqa: E402
from handvae.data import spec  # noqa: E402
from handvae.models import vae  # noqa: E402
from handvae.training import population, sharding, state as state_lib  # noqa: E402
from handvae.training import step as step_lib  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STRATEGIES = ("R2P", "RC2CHP_poe")


def machine_name() -> str:
    """``cpu``, or the accelerator's short name (``h100``, ``h200``) from its device kind."""
    if jax.default_backend() == "cpu":
        return "cpu"
    kind = jax.devices()[0].device_kind.lower()
    match = re.search(r"\b([a-z]\d{2,4}[a-z]?)\b", kind)
    return match.group(1) if match else re.sub(r"[^a-z0-9]+", "-", kind).strip("-")


def load() -> str:
    """The ``uptime`` line (load averages), or "" where unavailable."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def config_for(strategy: str, scale: str):
    if scale == "tiny":
        config = common.shrink_to_tiny(common.get_base_config("synthetic"))
        config.model.strategy = strategy
        return config
    return reproduce.get_config(f"strategy={strategy},scale={scale}")


class _Timed:
    """A compiled step with its arguments: ``run(n)`` times n steps (seconds each)."""

    def __init__(self, step, state, *rest, warmup: int):
        start = time.perf_counter()
        self.compiled = step.lower(state, *rest).compile()
        self.compile_seconds = time.perf_counter() - start
        self.state, self.rest = state, rest
        self.run(warmup)

    def run(self, steps: int) -> list[float]:
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            self.state, metrics = self.compiled(self.state, *self.rest)
            jax.block_until_ready(metrics)
            times.append(time.perf_counter() - start)
        return times


def one_run(config, model, batch, *, warmup: int) -> _Timed:
    """The project's single-run step on the ``("data",)`` mesh."""
    mesh = sharding.make_mesh()
    state = sharding.replicate(state_lib.create_train_state(config, model), mesh)
    return _Timed(step_lib.make_train_step(config, mesh), state,
                  sharding.shard_batch(batch, mesh), warmup=warmup)


def population_of(configs, model, batches, *, shared_batch: bool, warmup: int) -> _Timed:
    """The population step of ``configs`` on the ``("members", "data")`` mesh."""
    members = len(configs)
    mesh = sharding.make_population_mesh(members)
    state = population.place_members(population.create_population_state(configs, model), mesh)
    hypers = population.place_members(population.member_hypers(configs), mesh)
    active = population.place_members(np.ones(members, bool), mesh)
    batch = batches[0] if shared_batch else {
        k: np.stack([b[k] for b in batches[:members]]) for k in batches[0]}
    placed = population.place_batch(batch, mesh, shared_batch=shared_batch)
    step = population.make_population_train_step(configs[0], mesh, shared_batch=shared_batch)
    timed = _Timed(step, state, placed, hypers, active, warmup=warmup)
    timed.mesh = dict(mesh.shape)
    return timed


def member_configs(strategy: str, scale: str, members: int, *, shared_batch: bool) -> list:
    """K configs of one population: a shared batch's members differ in λ_cloud (they read
    one stream), per-member batches' in seed."""
    configs = []
    for index in range(members):
        config = config_for(strategy, scale)
        if shared_batch:
            config.loss.lambda_cloud = 1.0 + 0.1 * index
        else:
            config.seed = index
        configs.append(config)
    return configs


def lower_cases(strategy: str, scale: str, *, members: list[int], modes: list[bool],
                platform: str) -> Iterator[dict]:
    """Like :func:`measure`, but each population step is lowered for ``platform`` (e.g.
    ``cuda``) from abstract arguments instead of compiled and timed; yielded after each K."""
    base = config_for(strategy, scale)
    model = vae.build_model(base.model)
    batch = _bench.abstract(spec.dummy_batch(base.batch_size, base.data.image_size,
                                             base.data.num_points, base.data.heatmap_size,
                                             seed=0))
    for shared_batch in modes:
        case = {"strategy": strategy, "scale": scale, "shared_batch": shared_batch,
                "batch_size": base.batch_size, "image_size": base.data.image_size,
                "lowered_for": platform, "lower_seconds": {}, "triton_kernels": {},
                "mesh": {}}
        for k in members:
            configs = member_configs(strategy, scale, k, shared_batch=shared_batch)
            mesh = sharding.make_population_mesh(k)
            state = population.abstract_population_state(configs, model)
            hypers = _bench.abstract(population.member_hypers(configs))
            active = jax.ShapeDtypeStruct((k,), np.bool_)
            placed = batch if shared_batch else {
                key: jax.ShapeDtypeStruct((k, *v.shape), v.dtype) for key, v in batch.items()}
            step = population.make_population_train_step(configs[0], mesh,
                                                         shared_batch=shared_batch)
            lowered, seconds = _bench.lower_for(step, (state, placed, hypers, active), platform)
            case["lower_seconds"][str(k)] = seconds
            case["triton_kernels"][str(k)] = _bench.triton_kernels(lowered)
            case["mesh"][str(k)] = dict(mesh.shape)
            print(f"{strategy:<11} {scale:<6} "
                  f"{'shared' if shared_batch else 'per-member':<10} K={k}: lowered for "
                  f"{platform} in {seconds:.1f} s, {case['triton_kernels'][str(k)]} Triton "
                  f"kernel(s)", flush=True)
            yield case


def measure(strategy: str, scale: str, *, members: list[int], modes: list[bool],
            steps: int, warmup: int, rounds: int) -> Iterator[dict]:
    """One case per batch mode, yielded after each K: every K against the one run, alternating.

    On a shared machine the load drifts; so the one run and each population take turns,
    ``rounds`` times ``steps`` steps each, and a K's ratio is its median step rate over the
    one run's median from the same rounds.
    """
    base = config_for(strategy, scale)
    model = vae.build_model(base.model)
    size = (base.batch_size, base.data.image_size, base.data.num_points,
            base.data.heatmap_size)
    batches = [spec.dummy_batch(*size, seed=k) for k in range(max(members))]
    alone = one_run(base, model, batches[0], warmup=warmup)
    print(f"{strategy:<11} {scale:<6} one run compiled in {alone.compile_seconds:.0f} s",
          flush=True)
    for shared_batch in modes:
        case = {"strategy": strategy, "scale": scale, "shared_batch": shared_batch,
                "batch_size": base.batch_size, "image_size": base.data.image_size,
                "one_run_steps_per_s": {}, "member_steps_per_s": {},
                "member_steps_per_s_ratio": {},
                "compile_seconds": {"one_run": alone.compile_seconds}, "mesh": {}}
        for k in members:
            configs = member_configs(strategy, scale, k, shared_batch=shared_batch)
            timed = population_of(configs, model, batches, shared_batch=shared_batch,
                                  warmup=warmup)
            alone_times, population_times = [], []
            for _ in range(rounds):
                alone_times += alone.run(steps)
                population_times += timed.run(steps)
            one = 1.0 / float(np.median(alone_times))
            rate = k / float(np.median(population_times))
            case["one_run_steps_per_s"][str(k)] = one
            case["member_steps_per_s"][str(k)] = rate
            case["member_steps_per_s_ratio"][str(k)] = rate / one
            case["compile_seconds"][str(k)] = timed.compile_seconds
            case["mesh"][str(k)] = timed.mesh
            print(f"{strategy:<11} {scale:<6} "
                  f"{'shared' if shared_batch else 'per-member':<10} K={k}: "
                  f"{rate:8.2f} member-steps/s, one run {one:6.2f} steps/s: "
                  f"{rate / one:.2f}×", flush=True)
            del timed
            yield case   # the same dict, one K longer each time


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true",
                        help="tiny config, R2P, K = 1, 2, 2 steps: checks the script runs")
    parser.add_argument("--paper", action="store_true",
                        help="paper size too without a GPU (on a GPU it always runs)")
    parser.add_argument("--skip_cpu_scale", action="store_true")
    parser.add_argument("--members", default="1,2,4,8", help="population sizes K")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--batches", default="shared,per_member")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per turn")
    parser.add_argument("--rounds", type=int, default=3,
                        help="turns of the one run and each population, alternating")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--lower_for", choices=_bench.PLATFORMS, default=None,
                        help="lower every case for this platform instead of timing it (e.g. "
                             "cuda: the GPU branch, checked on a CPU)")
    parser.add_argument("--out", default="", help="output folder (default: "
                        "benchmarks/figures/<machine>_<date>; --smoke, --lower_for: a "
                        "temporary one)")
    args = parser.parse_args(argv)
    members = [int(k) for k in args.members.split(",")]
    strategies = args.strategies.split(",")
    modes = [m == "shared" for m in args.batches.split(",")]
    scales = [] if args.skip_cpu_scale else ["cpu"]
    if args.paper or jax.default_backend() == "gpu":
        scales.append("paper")
    steps, warmup, rounds = args.steps, args.warmup, args.rounds
    if args.smoke:
        members, strategies, scales = [1, 2], ["R2P"], ["tiny"]
        steps, warmup, rounds = 2, 1, 1
    # Smoke and lowered figures are no rates: never in benchmarks/figures, where
    # experiments.launcher_choice reads the measured ratios.
    out = args.out or (tempfile.mkdtemp(prefix="population_smoke_")
                       if args.smoke or args.lower_for else
                       os.path.join(REPO, "benchmarks", "figures",
                                    f"{machine_name()}_{datetime.date.today().isoformat()}"))
    figures = {"device_kind": jax.devices()[0].device_kind, "backend": jax.default_backend(),
               "devices": jax.device_count(), "cpu_count": os.cpu_count(),
               "platform": platform.platform(), "jax": jax.__version__,
               "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
                   timespec="seconds"),
               "command": " ".join(["python", "benchmarks/population.py", *(argv or sys.argv[1:])]),
               "xla_flags": os.environ.get("XLA_FLAGS", ""), "timed_steps": steps,
               "rounds": rounds, "warmup_steps": warmup, "lowered_for": args.lower_for,
               "uptime_before": load(), "cases": []}
    path = os.path.join(out, "population.json")
    for scale in scales:
        for strategy in strategies:
            cases = (lower_cases(strategy, scale, members=members, modes=modes,
                                 platform=args.lower_for) if args.lower_for else
                     measure(strategy, scale, members=members, modes=modes, steps=steps,
                             warmup=warmup, rounds=rounds))
            for case in cases:
                if not any(case is c for c in figures["cases"]):
                    figures["cases"].append(case)
                figures["uptime_after"] = load()
                # after each case: a cut-off run keeps what it measured
                _bench.write_figures(figures, path, "population.json", announce=False)
    print(f"wrote {path}")
    return figures


if __name__ == "__main__":
    main()
