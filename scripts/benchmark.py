#!/usr/bin/env python
"""Seconds per meta-iteration of dmrl's reference configurations (``make bench``).

    python scripts/benchmark.py                          # every case, a table
    python scripts/benchmark.py --case maml_point_nav --json

``maml_point_nav``: point_nav, meta-batch 20, 20 episodes per task, horizon 100, 1 inner step,
[64, 64] tanh, 10 CG iterations, second order: the configuration of a widely used PyTorch MAML
port (its time is measured beside dmrl's on the same machine, in alternation: docs/results.md,
"Session 10: side by side with the port"; this script prints no ratio). Both MAML cases compute
the TRPO curvature on full batches, as the port does (``algo.meta_optimizer.fvp_subsample=1.0``).

``maml_point_nav_default``: the same with dmrl's default ``algo.meta_optimizer.fvp_subsample=0.1``
(curvature products on 10% of each task's episodes, as in Schulman's TRPO).

``maml_cheetah_vel``: cheetah_vel, meta-batch 40, 20 episodes per task, horizon 100, otherwise as
above (160,000 env steps per iteration). The same port needs 14.0 s (11,400 env steps/s). This
case also measures, in the same process, the physics limit the way the sampler steps physics (the
env's engine on the case's 800 simulations over every core, pre-drawn actions, no policy: no sampler
can exceed it), single-thread ``mj_step`` on the HalfCheetah model times the cores (for reference),
gymnasium's ``HalfCheetah-v5`` in a plain loop, and dmrl's sampler alone.

``rl2_bandit``: RL²-PPO training as in ``experiment=rl2_bandit`` (5-armed bandits, trials of 10
pulls, GRU 48, 2,000 tasks x 2 trials = 40,000 env steps per iteration, 2 PPO epochs of one
minibatch); target at least 200,000 env steps/s on 2 cores, sampling and PPO updates included.

``rl2_tabular_mdp``: RL²-PPO training as in ``experiment=rl2_tabular_mdp`` (GRU 128, 500 trials of
100 steps per iteration, 4 PPO epochs x 8 minibatches). The issue's budget is 20 minutes on 2 cores
for the preset's iterations; the case reports seconds per iteration against that budget divided by
the preset's iteration count, and how the time splits between sampling and the PPO update.

``metaworld_ml1`` (only when named; needs ``make install-metaworld``, run it with ``.venv-mw``'s
Python): env steps/s of dmrl's Meta-World env on ML1 reach (20 tasks x 10 episodes x 500 steps) with
random actions and with MAML's sampler, beside the benchmark's own ``gym.make_vec`` sync and async
vector envs in the same run, and the single-thread ``mj_step`` limit of the Sawyer model.

``blas`` (only when named): float32 matrix-product throughput (GFLOP/s) of the BLAS torch calls
(MKL in the x86 wheels) beside oneDNN's kernels on the same shapes, in one process: a square 1024
product, the [40,000 x 64] x [64 x 64] product of a [64, 64] layer on point_nav's batch, and the
batched [20 x 64 x 2,000] x [20 x 2,000 x 64] products of MAML's curvature. On a CPU where MKL does
not use its widest kernels (it picks them by vendor) oneDNN is the faster library: how much a
matrix-product-bound case (the curvature, PEARL's update, RL²'s GRU) leaves on the table.

``--matmul-fp32-precision bf16`` sets ``torch.backends.mkldnn.matmul.fp32_precision`` for each
learner's case once it is built (``--case blas`` always times torch's BLAS against oneDNN): torch
then sends float32 matrix products (``bmm`` included) to oneDNN, which may compute them in bfloat16
where the CPU has native bfloat16 products (AMX) and otherwise keeps float32 math; the setting is in
the printed machine info. A raw measurement (it overrides the config); dmrl's own
setting is the training key ``matmul=onednn`` (dmrl.matmul: it checks first that oneDNN keeps float32
accuracy on the CPU), given here as an override: ``python scripts/benchmark.py --case
maml_point_nav matmul=onednn``.

``sweep_local`` (only when named): wall clock of a 2 x 2 sweep of short point_nav runs
(``algo.inner_lr=0.05,0.1 seed=0,1``, 8 meta-iterations each, otherwise ``maml_point_nav``) run by
``dmrl-train -m`` twice in one go: sequentially (Hydra's basic launcher, each job using every
core) and with ``launcher=local`` (joblib, one job per core). The target is a ratio below 0.6.
A third, sequential run with one torch thread per job (``OMP_NUM_THREADS=1``) separates the gain
of running jobs side by side from that of avoiding thread contention on a busy machine.

Every case also names the machine (``machine``: CPU model, the ISA features that matter, cores,
torch threads and version, the device and, on CUDA, the GPU) and reports per timed iteration the
minor page faults, user and system CPU seconds (``getrusage`` before and after; the whole process,
every thread) and where the time goes (``split_sec_per_iteration``, medians): for MAML sampling,
advantages (baseline fits), the inner step, the curvature products' setup, the curvature products,
the meta-gradient, the line search and the rest; for RL² sampling, advantages and the PPO update.
The split is measured from outside by wrapping the learner's methods with timers (outermost
region wins: the inner steps re-run inside the line search count as line search); on CUDA each
region ends with ``torch.cuda.synchronize()`` (``--no-split`` leaves the learner unwrapped).
``--count-syncs`` runs one more iteration that counts host-device synchronizations (CUDA:
``torch.cuda.set_sync_debug_mode("warn")`` warnings with their source lines, and the CUDA runtime
calls torch.profiler sees; CPU: the scalar reads, ``aten::_local_scalar_dense``, that would
synchronize on a GPU). ``--count-flops`` runs one more iteration that counts the floating-point
operations of its matrix products (``2 m n k`` for each mm, bmm, addmm, baddbmm, mv) by region of the
split, and divides them by the region's median time: the rate a case reaches against what the
machine's BLAS can do (``--case blas``), so "how fast could this be here" has a number.
``--time-budget S`` stops the timed iterations once S seconds have passed.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
try:  # (--count-flops; a GPU image's older torch may lack it, and the rest of the script must still run)
    from torch.utils._python_dispatch import TorchDispatchMode
except ImportError:  # pragma: no cover
    TorchDispatchMode = object

from dmrl.allocator import keep_freed_memory
from dmrl.build import build
from dmrl.config import CONF_DIR
from dmrl.matmul import torch_switch
from dmrl.matmul import use as use_matmul

POINT_NAV_REFERENCE = ["env=point_nav", "algo=maml", "algo/meta_optimizer=trpo", "algo.meta_batch_size=20",
                       "algo.fast_batch_size=20", "env.horizon=100", "algo.inner_steps=1",
                       "algo.policy.hidden_sizes=[64,64]", "algo.policy.activation=tanh",
                       "algo.meta_optimizer.cg_iters=10", "algo.first_order=false"]

CASES: dict[str, dict] = {
    "maml_point_nav": {
        "overrides": [*POINT_NAV_REFERENCE, "algo.meta_optimizer.fvp_subsample=1.0"],
        "target_sec_per_iteration": 0.8,
    },
    "maml_point_nav_default": {  # the same with dmrl's default curvature subsample
        "overrides": [*POINT_NAV_REFERENCE, "algo.meta_optimizer.fvp_subsample=0.1"],
        "target_sec_per_iteration": 0.4,
    },
    "maml_cheetah_vel": {
        "overrides": ["env=cheetah_vel", "algo=maml", "algo/meta_optimizer=trpo", "algo.meta_batch_size=40",
                      "algo.fast_batch_size=20", "env.horizon=100", "algo.inner_steps=1",
                      "algo.policy.hidden_sizes=[64,64]", "algo.policy.activation=tanh",
                      "algo.meta_optimizer.cg_iters=10", "algo.first_order=false",
                      "algo.meta_optimizer.fvp_subsample=1.0"],
        "target_sec_per_iteration": 4.0,
        "extra": "mujoco",
    },
    # the gradient-based family's point_nav presets (issue 14): seconds per iteration, env steps/s
    **{f"{name}_point_nav": {"overrides": [f"experiment={name}_point_nav"], "budget_sec": 15 * 60}
       for name in ("promp", "maml_vpg", "maml_ppo", "meta_sgd", "multitask", "oracle")},
    # PEARL's reference sizes (3 x 300 networks, 16 tasks x 256 transitions, context 100) on cheetah_vel:
    # collection env steps/s, gradient steps/s, and the same update in plain PyTorch as the limit
    "pearl_cheetah_vel": {
        "overrides": ["experiment=pearl_cheetah_vel", "algo.num_train_steps=20", "algo.num_initial_steps=200"],
        "extra": "pearl",
    },
    "rl2_bandit": {
        "overrides": ["experiment=rl2_bandit"],
        "target_env_steps_per_sec": 200_000,
    },
    "rl2_tabular_mdp": {
        "overrides": ["experiment=rl2_tabular_mdp"],
        "budget_sec": 20 * 60,  # the whole preset run
    },
}


ISA_FEATURES = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_bf16",
                "amx_int8")


def _cpu_model_and_flags() -> tuple[str, set[str]]:
    """CPU model name and feature flags from /proc/cpuinfo, else ``lscpu``, else ``platform``."""
    model, flags = "", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "Model name") and not model:
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
                if model and flags:
                    break
    except OSError:
        pass
    if not model or not flags:
        try:
            out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
            for line in out.splitlines():
                key, _, value = line.partition(":")
                if key.strip() == "Model name" and not model:
                    model = value.strip()
                elif key.strip() == "Flags" and not flags:
                    flags = set(value.split())
        except (OSError, subprocess.SubprocessError):
            pass
    return model or platform.processor() or platform.machine(), flags


def machine_info(device: str | torch.device = "cpu") -> dict:
    """What a timing depends on: CPU model and ISA features, cores, torch threads and build, device."""
    model, flags = _cpu_model_and_flags()
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    info = {
        "cpu_model": model,
        "cpu_isa": [f for f in ISA_FEATURES if f in flags],
        "cores": os.cpu_count(),
        "cores_usable": usable,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "torch": torch.__version__,
        "torch_cpu_capability": getattr(torch.backends.cpu, "get_cpu_capability", lambda: None)(),
        # (torch >= 2.9; an older torch, e.g. a GPU machine's image, has no such switch)
        "matmul_fp32_precision": getattr(torch_switch(), "fp32_precision", "none"),
        "python": platform.python_version(),
        "device": str(device),
        "load_average_1min": os.getloadavg()[0],
    }
    dev = torch.device(device)
    if dev.type == "cuda" and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(dev)
        info.update({"gpu": props.name, "gpu_capability": f"{props.major}.{props.minor}",
                     "gpu_memory_gib": props.total_memory / 2**30, "gpu_multiprocessors": props.multi_processor_count,
                     "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()})
    return info


class Split:
    """Wall time of named regions of a meta-iteration, from wrappers around the learner's methods.

    Only the outermost active region counts, so nested calls (the inner steps the line search
    re-runs) go to the region that called them. On CUDA a region starts and ends with
    ``torch.cuda.synchronize()`` so that the GPU's queued work lands in the region that queued it.
    ``enabled = False`` makes every wrapper a plain call (no timing, no synchronization).
    """

    def __init__(self, cuda: bool) -> None:
        self.cuda, self.enabled, self.depth = cuda, True, 0
        self.region: str | None = None  # the outermost region running now (count_flops attributes to it)
        self.sec: dict[str, float] = defaultdict(float)

    def wrap(self, name: str, fn):
        @functools.wraps(fn)
        def timed(*a, **k):
            if not self.enabled:
                return fn(*a, **k)
            outer = self.depth == 0
            self.depth += 1
            if outer:
                self.region = name
                if self.cuda:
                    torch.cuda.synchronize()
                t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.depth -= 1
                if outer:
                    self.region = None
                    if self.cuda:
                        torch.cuda.synchronize()
                    self.sec[name] += time.perf_counter() - t
        return timed


def instrument(algo, split: Split, full: bool = True) -> None:
    """Wrap ``algo``'s pieces with ``split``'s timers (instance attributes; src/ is untouched).

    ``full=False`` wraps sampling only (the figure the benchmark has always reported)."""
    algo.sampler.sample = split.wrap("sampling", algo.sampler.sample)
    if not full:
        return
    from dmrl.algos.maml import MAML
    from dmrl.algos.rl2 import RL2

    if isinstance(algo, MAML):
        algo.advantages = split.wrap("advantages", algo.advantages)
        algo.adapt = split.wrap("inner_step", algo.adapt)
        algo.curvature = split.wrap("curvature_setup", algo.curvature)
        opt, real_step = algo.meta_optimizer, algo.meta_optimizer.step
        line_search = split.wrap("line_search", lambda objective, create_graph: objective(create_graph))
        autograd_gradient = split.wrap("meta_gradient", lambda objective, create_graph: objective(create_graph))

        def step(params, objective, fvp=None, gradient=None):
            def timed_objective(create_graph: bool):  # True: TRPO differentiates it (no hand-made gradient)
                return (autograd_gradient if create_graph else line_search)(objective, create_graph)
            return real_step(params, timed_objective, None if fvp is None else split.wrap("curvature_products", fvp),
                             None if gradient is None else split.wrap("meta_gradient", gradient))

        opt.step = step
    elif isinstance(algo, RL2):
        algo.advantages = split.wrap("advantages", algo.advantages)
        algo.meta_optimizer.update = split.wrap("update", algo.meta_optimizer.update)


def _rusage() -> tuple[float, ...]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_minflt, r.ru_majflt, r.ru_utime, r.ru_stime, r.ru_nvcsw, r.ru_nivcsw


RUSAGE_KEYS = ("minor_page_faults", "major_page_faults", "user_cpu_sec", "system_cpu_sec",
               "voluntary_context_switches", "involuntary_context_switches")


def _where(filename: str, lineno: int) -> str:
    for root in (Path(__file__).resolve().parents[1] / "src", Path(torch.__file__).resolve().parents[1]):
        try:
            return f"{Path(filename).resolve().relative_to(root)}:{lineno}"
        except ValueError:
            continue
    return f"{filename}:{lineno}"


def count_syncs(algo, device: torch.device, split: Split | None = None) -> dict:
    """Host-device synchronizations of one meta-iteration (timers off while counting).

    CUDA: the warnings of ``torch.cuda.set_sync_debug_mode("warn")`` (each synchronizing op: .item(),
    device-to-host copies, nonzero, ...) with their most frequent source lines, and the CUDA
    runtime/driver calls torch.profiler records (cudaStreamSynchronize, cudaMemcpyAsync,
    cudaLaunchKernel, ...). CPU: the scalar reads (``aten::_local_scalar_dense``: .item(),
    float(tensor), ...) each of which would be a synchronization on a GPU.
    """
    if split is not None:
        split.enabled = False
    out: dict = {}
    try:
        if device.type == "cuda":
            torch.cuda.synchronize()
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    torch.cuda.set_sync_debug_mode("warn")
                    try:
                        algo.meta_step()
                    finally:
                        torch.cuda.set_sync_debug_mode("default")
                syncs = [w for w in caught if "synchroniz" in str(w.message)]
                out["sync_debug_warnings"] = len(syncs)
                out["sync_debug_top_lines"] = dict(Counter(_where(w.filename, w.lineno) for w in syncs).most_common(12))
            except Exception as e:  # noqa: BLE001 - a counting failure must not lose the timings
                out["sync_debug_error"] = f"{type(e).__name__}: {e}"
            torch.cuda.synchronize()
        try:
            from torch.autograd import DeviceType
            from torch.profiler import ProfilerActivity, profile

            activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
            with profile(activities=activities) as prof:
                algo.meta_step()
                if device.type == "cuda":
                    torch.cuda.synchronize()
            events = prof.events()
            host = Counter(e.name for e in events if getattr(e, "device_type", None) != DeviceType.CUDA)
            out["scalar_reads"] = host.get("aten::_local_scalar_dense", 0)
            out["aten_ops"] = sum(n for k, n in host.items() if k.startswith("aten::"))
            if device.type == "cuda":
                out["gpu_kernels"] = sum(1 for e in events if getattr(e, "device_type", None) == DeviceType.CUDA)
                runtime = {k: n for k, n in host.items() if k.startswith(("cuda", "cu")) and "::" not in k}
                out["cuda_runtime_calls"] = dict(sorted(runtime.items(), key=lambda kv: -kv[1])[:20])
                out["profiler_syncs"] = sum(n for k, n in runtime.items() if "Synchronize" in k)
                out["profiler_memcpy"] = sum(n for k, n in runtime.items() if "Memcpy" in k)
                out["kernel_launches"] = sum(n for k, n in runtime.items() if "LaunchKernel" in k)
        except Exception as e:  # noqa: BLE001
            out["profiler_error"] = f"{type(e).__name__}: {e}"
    finally:
        if split is not None:
            split.enabled = True
    return out


class _MatmulFlops(TorchDispatchMode):
    """Counts the floating-point operations of matrix products (``2 m n k`` each: mm, bmm, addmm,
    baddbmm, mv; their share of a meta-iteration's arithmetic) by the split region running them."""

    PRODUCTS = {torch.ops.aten.mm: 0, torch.ops.aten.bmm: 0, torch.ops.aten.mv: 0,
                torch.ops.aten.addmm: 1, torch.ops.aten.baddbmm: 1}  # -> index of the left operand

    def __init__(self, split: Split) -> None:
        super().__init__()
        self.split, self.flops = split, defaultdict(int)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        i = self.PRODUCTS.get(func.overloadpacket)
        if i is not None:
            a, b = args[i], args[i + 1]
            self.flops[self.split.region or "other"] += 2 * a.numel() * (b.shape[-1] if b.dim() > 1 else 1)
        return func(*args, **(kwargs or {}))


def count_flops(algo, split: Split, seconds: dict[str, float]) -> dict:
    """Matrix-product GFLOP of one more meta-iteration by region, and the rate each region's
    median time (``seconds``) gives them: how far from the machine's BLAS rate (``--case blas``)."""
    with _MatmulFlops(split) as mode:
        algo.meta_step()
    gflop = {k: v / 1e9 for k, v in sorted(mode.flops.items())}
    total_sec = sum(seconds.values())
    return {"gflop": gflop, "gflop_total": sum(gflop.values()),
            "gflop_per_sec": {k: v / seconds[k] for k, v in gflop.items() if seconds.get(k, 0.0) > 0},
            "gflop_per_sec_iteration": sum(gflop.values()) / total_sec if total_sec > 0 else None}


def physics_limit(seconds: float = 3.0) -> dict:
    """Single-thread ``mj_step`` on gymnasium's HalfCheetah model, as env steps/s (frame skip 5)."""
    import mujoco

    from dmrl.envs.mujoco_base import default_threads, load_model

    model = load_model("half_cheetah.xml")
    data = mujoco.MjData(model)
    rng = np.random.default_rng(0)
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        data.ctrl[:] = rng.uniform(-1, 1, model.nu)
        for _ in range(1000):
            mujoco.mj_step(model, data)
        steps += 1000
    per_core = steps / (time.perf_counter() - t0) / 5
    cores = default_threads()
    return {"physics_limit_env_steps_per_sec_per_core": per_core, "physics_limit_cores": cores,
            "physics_limit_single_thread_x_cores": per_core * cores}


def batched_physics_limit(env, nsim: int, steps: int = 100, repeats: int = 3) -> dict:
    """The physics limit the way dmrl's sampler steps physics: ``env``'s engine (``mujoco.batch`` or
    the thread pool) on ``nsim`` simulations over every core, ``frame_skip`` substeps per step, with
    pre-drawn actions and no policy, observation or reward: no sampler of this env can exceed it."""
    from dmrl.envs.physics import make_batch

    batch = make_batch(env.model, nsim, env.nthread)
    ctrl = batch.bind("ctrl")
    batch.reset()
    rng = np.random.default_rng(0)
    actions = rng.uniform(env.ctrl_low, env.ctrl_high, size=(steps, nsim, env.act_dim))
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        for t in range(steps):
            ctrl[:] = actions[t]
            batch.step(nstep=env.frame_skip)
        best = max(best, nsim * steps / (time.perf_counter() - t0))
    return {"physics_limit_env_steps_per_sec": best, "physics_limit_sims": nsim, "physics_limit_engine": env.engine}


def gymnasium_loop(seconds: float = 3.0) -> float:
    """gymnasium's ``HalfCheetah-v5`` stepped in a plain single-process loop (env steps/s)."""
    import gymnasium

    env = gymnasium.make("HalfCheetah-v5")
    env.reset(seed=0)
    env.action_space.seed(0)
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(500):
            _, _, term, trunc, _ = env.step(env.action_space.sample())
            if term or trunc:
                env.reset()
        steps += 500
    return steps / (time.perf_counter() - t0)


def sampler_alone(parts, repeats: int = 3) -> float:
    """dmrl's sampler on the case's meta-batch with the meta-parameters (env steps/s)."""
    algo = parts.algo
    tasks = algo.sample_tasks()
    algo.sampler.sample(tasks)
    steps, t0 = 0, time.perf_counter()
    for _ in range(repeats):
        steps += algo.sampler.sample(tasks).env_steps
    return steps / (time.perf_counter() - t0)


def bench(case: str, iterations: int, warmup: int, device: str, overrides: list[str] = (), *,
          split_times: bool = True, syncs: bool = False, flops: bool = False,
          time_budget: float | None = None, matmul_precision: str | None = None) -> dict:
    spec = CASES[case]
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose(config_name="train", overrides=[*spec["overrides"], f"device={device}", *overrides])
    parts = build(cfg)  # (sets the products' library as the config's matmul says)
    if matmul_precision is not None:  # --matmul-fp32-precision: the raw switch, over the config's choice
        torch.backends.mkldnn.matmul.fp32_precision = matmul_precision
    algo = parts.algo
    cuda = parts.device.type == "cuda"
    split = Split(cuda)
    instrument(algo, split, full=split_times)
    times, steps, sampling, regions, usage = [], [], [], [], []
    started = None
    for i in range(warmup + iterations):
        split.sec.clear()
        r0 = _rusage()
        t = time.perf_counter()
        m = algo.meta_step()
        if cuda:
            torch.cuda.synchronize()
        dt = time.perf_counter() - t
        r1 = _rusage()
        if i >= warmup:
            started = started or t
            times.append(dt)
            steps.append(m["env_steps"])
            sampling.append(split.sec.get("sampling", 0.0))
            regions.append({**split.sec, "other": max(0.0, dt - sum(split.sec.values()))})
            usage.append([b - a for a, b in zip(r0, r1)])
            if time_budget is not None and time.perf_counter() - started > time_budget:
                break
    sec = statistics.median(times)
    extra: dict = {}
    if split_times:
        names = sorted({k for r in regions for k in r}, key=lambda k: (k == "other", k))
        extra["split_sec_per_iteration"] = {k: statistics.median(r.get(k, 0.0) for r in regions) for k in names}
    extra.update({f"{k}_per_iteration": statistics.median(u[j] for u in usage) for j, k in enumerate(RUSAGE_KEYS)})
    if syncs:
        extra["syncs_per_iteration"] = count_syncs(algo, parts.device, split)
    if flops:
        extra["matmul_flops_per_iteration"] = count_flops(
            algo, split, extra.get("split_sec_per_iteration") or {"other": sec})
    if spec.get("extra") == "pearl":
        extra.update(pearl_update_limit(algo, iterations=max(5, iterations)))
        extra["collection_env_steps_per_sec"] = pearl_collection(algo)
    if spec.get("extra") == "mujoco":
        extra.update(physics_limit())
        extra.update(batched_physics_limit(parts.env, int(cfg.algo.meta_batch_size) * int(cfg.algo.fast_batch_size)))
        extra["gymnasium_env_steps_per_sec"] = gymnasium_loop()
        extra["sampler_env_steps_per_sec"] = sampler_alone(parts)
        extra["sampler_fraction_of_physics_limit"] = (
            extra["sampler_env_steps_per_sec"] / extra["physics_limit_env_steps_per_sec"])
    machine = machine_info(parts.device)
    return {
        "case": case,
        "device": str(parts.device),
        "threads": torch.get_num_threads(),
        "iterations": len(times),
        "sec_per_iteration": sec,
        "sec_per_iteration_mean": statistics.mean(times),
        "sampling_sec_per_iteration": statistics.median(sampling),
        "env_steps_per_iteration": statistics.mean(steps),
        "env_steps_per_sec": statistics.mean(steps) / sec,
        **_targets(spec, sec, int(cfg.iterations)),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "cpu_model": machine["cpu_model"],
        "machine": machine,
        **extra,
    }


def pearl_collection(algo) -> float:
    """Env steps/s of PEARL's collection of one iteration (prior, posterior and extra steps of the
    sampled tasks, batched)."""
    t = time.perf_counter()
    _, steps = algo.collect_iteration()
    return steps / (time.perf_counter() - t)


class _PlainPEARLUpdate:
    """PEARL's gradient step written directly in PyTorch (no dmrl code): the limit dmrl's update is
    compared with. The same shapes, networks, losses and optimizer calls."""

    def __init__(self, obs_dim: int, act_dim: int, latent: int, width: int, enc_hidden: list[int], ctx_dim: int):
        from torch import nn

        def net(i, o, hidden):
            layers, sizes = [], [i, *hidden]
            for a, b in zip(sizes[:-1], sizes[1:]):
                layers += [nn.Linear(a, b), nn.ReLU()]
            return nn.Sequential(*layers, nn.Linear(sizes[-1], o))

        h = [width] * 3
        self.pi, self.q1, self.q2 = net(obs_dim + latent, 2 * act_dim, h), net(obs_dim + act_dim + latent, 1, h), \
            net(obs_dim + act_dim + latent, 1, h)
        self.v, self.enc = net(obs_dim + latent, 1, h), net(ctx_dim, 2 * latent, enc_hidden)
        import copy

        self.v_target = copy.deepcopy(self.v)
        self.opts = [torch.optim.Adam(m.parameters(), lr=3e-4) for m in (self.pi, self.q1, self.q2, self.v, self.enc)]
        self.latent = latent

    def step(self, ctx, obs, act, rew, next_obs, term):
        import torch.nn.functional as F

        M, b = obs.shape[:2]
        mu, pre = self.enc(ctx).chunk(2, -1)
        var = F.softplus(pre).clamp(min=1e-7)
        pv = 1 / (1 / var).sum(1)
        pm = pv * (mu / var).sum(1)
        z = (pm + pv.sqrt() * torch.randn_like(pm))[:, None].expand(M, b, -1)
        zd = z.detach()
        mean, log_std = self.pi(torch.cat([obs, zd], -1)).chunk(2, -1)
        log_std = log_std.clamp(-20, 2)
        u = mean + log_std.exp() * torch.randn_like(mean)
        a = torch.tanh(u)
        log_pi = (torch.distributions.Normal(mean, log_std.exp()).log_prob(u) - torch.log(1 - a ** 2 + 1e-6)).sum(-1)
        q1 = self.q1(torch.cat([obs, act, z], -1)).squeeze(-1)
        q2 = self.q2(torch.cat([obs, act, z], -1)).squeeze(-1)
        with torch.no_grad():
            target = 5.0 * rew + 0.99 * (1 - term) * self.v_target(torch.cat([next_obs, zd], -1)).squeeze(-1)
        kl = 0.5 * (pv + pm ** 2 - 1 - pv.log()).sum()
        for o in self.opts[1:3] + self.opts[4:]:
            o.zero_grad()
        (((q1 - target) ** 2).mean() + ((q2 - target) ** 2).mean() + 0.1 * kl).backward()
        for o in self.opts[1:3] + self.opts[4:]:
            o.step()
        x = torch.cat([obs, a, zd], -1)
        min_q = torch.minimum(self.q1(x).squeeze(-1), self.q2(x).squeeze(-1))
        v = self.v(torch.cat([obs, zd], -1)).squeeze(-1)
        self.opts[3].zero_grad()
        (0.5 * ((v - (min_q - log_pi).detach()) ** 2).mean()).backward()
        self.opts[3].step()
        with torch.no_grad():
            for t, s_ in zip(self.v_target.parameters(), self.v.parameters()):
                t.mul_(0.995).add_(s_, alpha=0.005)
        loss = (log_pi - min_q).mean() + 1e-3 * (mean ** 2).mean() + 1e-3 * (log_std ** 2).mean()
        self.opts[0].zero_grad()
        loss.backward()
        self.opts[0].step()


def pearl_update_limit(algo, iterations: int = 5, steps: int = 20) -> dict:
    """Gradient steps/s of dmrl's PEARL update and of :class:`_PlainPEARLUpdate` on batches of the
    same shapes, measured in alternation (``iterations`` rounds of ``steps`` steps each, medians)."""
    env = algo.sampler.env
    ctx_dim = env.obs_dim + env.act_dim + 1 + (env.obs_dim if algo.context_next_obs else 0)
    plain = _PlainPEARLUpdate(env.obs_dim, env.act_dim, algo.latent_dim, algo.qf1.net[0].out_features,
                              [m.out_features for m in algo.encoder.net if hasattr(m, "out_features")][:-1], ctx_dim)
    M, b, c = algo.meta_batch, algo.batch_size, algo.context_batch
    g = torch.Generator().manual_seed(0)
    data = [torch.randn(M, c, ctx_dim, generator=g), torch.randn(M, b, env.obs_dim, generator=g),
            torch.rand(M, b, env.act_dim, generator=g) * 2 - 1, torch.randn(M, b, generator=g),
            torch.randn(M, b, env.obs_dim, generator=g), torch.zeros(M, b)]
    if int(algo.replay.size.min()) == 0:
        algo.collect_iteration()
    ours, theirs = [], []
    for _ in range(iterations):
        t = time.perf_counter()
        for _ in range(steps):
            algo.train_step()
        ours.append(steps / (time.perf_counter() - t))
        t = time.perf_counter()
        for _ in range(steps):
            plain.step(*data)
        theirs.append(steps / (time.perf_counter() - t))
    a, p = statistics.median(ours), statistics.median(theirs)
    return {"grad_steps_per_sec": a, "plain_pytorch_grad_steps_per_sec": p, "plain_over_dmrl": p / a}


def _targets(spec: dict, sec: float, iterations: int) -> dict:
    """The case's target figures next to the measured seconds per iteration. (No ratio against another
    implementation: one is only meaningful measured in the same run on this machine, side by side;
    docs/results.md, Speed.)"""
    if "target_sec_per_iteration" in spec:
        return {"target_sec_per_iteration": spec["target_sec_per_iteration"]}
    if "budget_sec" in spec:
        return {"budget_sec": spec["budget_sec"], "preset_iterations": iterations,
                "target_sec_per_iteration": spec["budget_sec"] / iterations,
                "projected_run_sec": sec * iterations}
    if "target_env_steps_per_sec" in spec:
        return {"target_env_steps_per_sec": spec["target_env_steps_per_sec"]}
    return {}


SWEEP_GRID = ["algo.inner_lr=0.05,0.1", "seed=0,1"]
SWEEP_RUN = ["iterations=8", "logger=jsonl"]


def bench_metaworld_ml1(repeats: int = 1, tasks: int = 20, episodes: int = 10, horizon: int = 500) -> dict:
    """Env steps/s on Meta-World ML1 reach-v3 (``tasks`` x ``episodes`` x ``horizon`` steps): dmrl's
    env (its worker processes, one per core) with random actions and with MAML's sampler and the
    preset's policy, and, in the same run and in alternation, the benchmark's own vector envs
    (``gym.make_vec("Meta-World/ML1-train", vector_strategy="sync" | "async")``, ``tasks`` envs, each
    stepped ``episodes x horizon`` times with random actions); the single-thread ``mj_step`` limit
    on the Sawyer model (frame skip 5) times the cores; and Meta-World's own limit: its env's reset
    and step (the Python around ``mj_step`` included) in one process, times the cores."""
    import gymnasium
    import metaworld  # noqa: F401  (registers the Meta-World/ ids)
    import mujoco

    from dmrl.envs.mujoco_base import default_threads
    from dmrl.samplers.batched import roll_out

    cores = default_threads()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose(config_name="train", overrides=[
            "experiment=maml_ml1_reach", f"algo.meta_batch_size={tasks}", f"algo.fast_batch_size={episodes}",
            f"env.horizon={horizon}", f"env.workers={cores}", "device=cpu"])
    parts = build(cfg)
    env, algo = parts.env, parts.algo
    batch = algo.sample_tasks()
    gen = torch.Generator().manual_seed(0)
    random_policy = lambda obs: torch.rand((*obs.shape[:2], 4), generator=gen) * 2 - 1  # noqa: E731
    roll_out(env, batch, episodes, random_policy)  # creates the env instances (once per run)

    def dmrl_random() -> float:
        t0 = time.perf_counter()
        n = roll_out(env, batch, episodes, random_policy).env_steps
        return n / (time.perf_counter() - t0)

    def dmrl_policy() -> float:
        t0 = time.perf_counter()
        n = algo.sampler.sample(batch).env_steps
        return n / (time.perf_counter() - t0)

    # (its envs split the class's 50 tasks evenly: 40 of them for 20 envs, as its evaluation assumes)
    vec = {strategy: gymnasium.make_vec("Meta-World/ML1-train", env_name="reach-v3", seed=0, meta_batch_size=tasks,
                                        total_tasks_per_cls=50 // tasks * tasks, vector_strategy=strategy)
           for strategy in ("sync", "async")}

    def reference(strategy: str) -> float:
        envs = vec[strategy]
        envs.call("toggle_sample_tasks_on_reset", True)  # every reset (and autoreset) sets one of its tasks
        envs.reset(seed=0)
        envs.action_space.seed(0)
        t0 = time.perf_counter()
        for _ in range(episodes * horizon):
            envs.step(envs.action_space.sample())
        return envs.num_envs * episodes * horizon / (time.perf_counter() - t0)

    runs: dict[str, list[float]] = {"dmrl_random": [], "dmrl_policy": [], "sync": [], "async": []}
    for _ in range(repeats):  # in alternation
        runs["dmrl_random"].append(dmrl_random())
        runs["sync"].append(reference("sync"))
        runs["dmrl_policy"].append(dmrl_policy())
        runs["async"].append(reference("async"))
    for envs in vec.values():
        envs.close()
    env.close()
    # Meta-World's own limit: one process stepping one worker's share of the instances (reset, then
    # the whole episode, random actions) with nothing else; no sampler on these cores can beat it
    # times the cores, whatever it does around the env's own Python
    from dmrl.envs.env_workers import EnvGroup

    group = EnvGroup(env.bench_args, "v2")
    share = tasks * episodes // cores
    sims = [(0, k % len(group.tasks[0]), k) for k in range(share)]
    group.reset(sims)  # creates the instances
    acts = np.random.default_rng(0).uniform(-1, 1, (horizon, share, 4))
    t0 = time.perf_counter()
    group.reset(sims)
    for t in range(horizon):
        group.step(acts[t])
    env_limit = share * horizon / (time.perf_counter() - t0)
    group.close()
    sawyer = next(iter(metaworld.ML1("reach-v3", seed=0).train_classes.values()))()
    model, data = sawyer.model, sawyer.data
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < 3.0:
        mujoco.mj_step(model, data, 5 * 100)
        steps += 100
    per_core = steps / (time.perf_counter() - t0)
    best = {k: max(v) for k, v in runs.items()}
    faster_reference = max(best["sync"], best["async"])
    return {"case": "metaworld_ml1", "machine": machine_info("cpu"), "tasks": tasks, "episodes": episodes,
            "horizon": horizon, "workers": cores, "env_steps_per_sec": {k: [round(x) for x in v] for k, v in runs.items()},
            "dmrl_over_faster_reference": best["dmrl_policy"] / faster_reference,
            "dmrl_random_over_faster_reference": best["dmrl_random"] / faster_reference,
            "physics_limit_env_steps_per_sec_per_core": per_core, "physics_limit_env_steps_per_sec": per_core * cores,
            "dmrl_fraction_of_physics_limit": best["dmrl_policy"] / (per_core * cores), "target_ratio": 2.0,
            "env_limit_env_steps_per_sec_per_core": env_limit, "env_limit_env_steps_per_sec": env_limit * cores,
            "env_limit_over_faster_reference": env_limit * cores / faster_reference,
            "dmrl_fraction_of_env_limit": best["dmrl_policy"] / (env_limit * cores)}


def bench_sweep_local() -> dict:
    """Sequential vs ``launcher=local`` wall clock of one small sweep, measured back to back."""
    train = str(Path(sys.executable).parent / "dmrl-train")
    times = {}
    with tempfile.TemporaryDirectory() as tmp:
        one_thread = {**os.environ, "OMP_NUM_THREADS": "1"}
        for name, launcher, env in (("sequential", [], None), ("local", ["launcher=local"], None),
                                    ("sequential_1thread", [], one_thread)):
            cmd = [train, "-m", *CASES["maml_point_nav"]["overrides"], *SWEEP_RUN, *SWEEP_GRID, *launcher,
                   f"hydra.sweep.dir={tmp}/{name}"]
            t = time.perf_counter()
            subprocess.run(cmd, check=True, cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            times[name] = time.perf_counter() - t
            finished = len(list(Path(tmp, name).glob("*/summary.json")))
            if finished != 4:
                raise RuntimeError(f"{name} sweep finished {finished} of 4 jobs")
    return {"case": "sweep_local", "jobs": 4, "grid": SWEEP_GRID, "run": SWEEP_RUN,
            "sequential_s": times["sequential"], "local_s": times["local"],
            "ratio": times["local"] / times["sequential"], "target_ratio": 0.6,
            "sequential_1thread_s": times["sequential_1thread"],
            "ratio_vs_sequential_1thread": times["local"] / times["sequential_1thread"],
            "cores": os.cpu_count(), "load_average_1min": os.getloadavg()[0], "torch": torch.__version__}


def bench_blas(repeats: int = 30) -> dict:
    """GFLOP/s of torch's float32 products (its BLAS) and of oneDNN's on the same shapes (``blas``)."""
    use_matmul("blas")  # torch's products through its BLAS, whatever an earlier case's matmul= left set
    def rate(fn, flops: float) -> float:
        for _ in range(3):
            fn()
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            for _ in range(repeats):
                fn()
            best = min(best, (time.perf_counter() - t) / repeats)
        return flops / best / 1e9

    gen = torch.Generator().manual_seed(0)
    out: dict = {"case": "blas", "machine": machine_info("cpu"), "gflops": {}}

    def compare(name: str, blas, onednn, flops: float) -> None:  # the same product from both libraries, timed
        product = onednn()  # (timed as oneDNN leaves it: its own layout, or one result per task)
        product = torch.stack(product) if isinstance(product, list) else product.to_dense()
        torch.testing.assert_close(product, blas(), rtol=1e-4, atol=1e-3)
        r_blas, r_onednn = rate(blas, flops), rate(onednn, flops)
        out["gflops"][name] = {"torch_blas": r_blas, "onednn": r_onednn, "onednn_over_torch_blas": r_onednn / r_blas}

    for name, (m, k, n) in {"square_1024": (1024, 1024, 1024), "layer_40000x64x64": (40_000, 64, 64)}.items():
        a, w = torch.randn(m, k, generator=gen), torch.randn(n, k, generator=gen)
        wt, am, wm = w.t().contiguous(), a.to_mkldnn(), w.to_mkldnn()
        compare(name, lambda: torch.mm(a, wt), lambda: torch._C._nn.mkldnn_linear(am, wm, None), 2.0 * m * k * n)
    a, b = torch.randn(20, 64, 2000, generator=gen), torch.randn(20, 2000, 64, generator=gen)
    bt = b.transpose(1, 2).contiguous()
    linear = torch.ops.mkldnn._linear_pointwise
    compare("curvature_bmm_20x64x2000x64", lambda: torch.bmm(a, b),
            lambda: [linear(a[i], bt[i], None, "none", [], "") for i in range(20)], 2.0 * 20 * 64 * 2000 * 64)
    return out


def main(argv: list[str] | None = None) -> int:
    keep_freed_memory()  # as dmrl-train does (DMRL_KEEP_FREED_MEMORY=0 measures without it)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--case", choices=[*sorted(CASES), "sweep_local", "metaworld_ml1", "blas"], action="append",
                   help="case(s) to run (default: every meta-iteration case; sweep_local, blas and metaworld_ml1, "
                        "which needs make install-metaworld, only when named)")
    p.add_argument("--iterations", type=int, default=10, help="timed meta-iterations (median reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed meta-iterations first")
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    p.add_argument("--json", action="store_true", help="print one JSON object per case")
    p.add_argument("--no-split", dest="split", action="store_false",
                   help="time sampling only, leave the learner's other methods unwrapped")
    p.add_argument("--count-syncs", action="store_true",
                   help="one more iteration counting host-device synchronizations (CPU: scalar reads)")
    p.add_argument("--count-flops", action="store_true",
                   help="one more iteration counting matrix-product FLOPs per region, with the rate the timed split "
                        "gives them")
    p.add_argument("--time-budget", type=float, default=None, metavar="S",
                   help="stop the timed iterations after S seconds (at least one is timed)")
    p.add_argument("--matmul-fp32-precision", choices=["none", "ieee", "tf32", "bf16"], default=None,
                   help="torch.backends.mkldnn.matmul.fp32_precision for the learners' cases, set after each is "
                        "built (bf16: float32 products through oneDNN; see the docstring)")
    p.add_argument("overrides", nargs="*", help="config overrides, e.g. algo.first_order=true (not the reference)")
    args = p.parse_args(argv)
    for case in args.case or sorted(CASES):
        if case == "sweep_local":
            r = bench_sweep_local()
            print(json.dumps(r) if args.json else
                  f"sweep_local: 2 x 2 sweep sequential {r['sequential_s']:.1f} s, launcher=local {r['local_s']:.1f} s "
                  f"on {r['cores']} cores -> ratio {r['ratio']:.2f} (target < {r['target_ratio']}); sequential "
                  f"with 1 thread per job {r['sequential_1thread_s']:.1f} s -> {r['ratio_vs_sequential_1thread']:.2f}")
            sys.stdout.flush()
            continue
        if case == "blas":
            r = bench_blas()
            print(json.dumps(r) if args.json else
                  "blas (float32 GFLOP/s, torch's BLAS vs oneDNN): " + "; ".join(
                      f"{k} {v['torch_blas']:.0f} vs {v['onednn']:.0f} ({v['onednn_over_torch_blas']:.2f}x)"
                      for k, v in r["gflops"].items())
                  + f"\n  machine: {r['machine']['cpu_model']} [{' '.join(r['machine']['cpu_isa'])}], torch {r['machine']['torch']} with "
                    f"{r['machine']['torch_threads']} threads")
            sys.stdout.flush()
            continue
        if case == "metaworld_ml1":
            r = bench_metaworld_ml1(repeats=max(1, args.iterations))
            sps = {k: max(v) for k, v in r["env_steps_per_sec"].items()}
            print(json.dumps(r) if args.json else
                  f"metaworld_ml1: {r['tasks']} tasks x {r['episodes']} episodes x {r['horizon']} steps; env steps/s "
                  f"(best of {len(r['env_steps_per_sec']['sync'])}): dmrl random actions {sps['dmrl_random']:.0f}, dmrl "
                  f"with MAML's sampler {sps['dmrl_policy']:.0f} ({r['workers']} workers); gym.make_vec sync "
                  f"{sps['sync']:.0f}, async {sps['async']:.0f} -> dmrl / faster {r['dmrl_over_faster_reference']:.2f}x "
                  f"(target {r['target_ratio']}x); mj_step limit {r['physics_limit_env_steps_per_sec']:.0f} "
                  f"({100 * r['dmrl_fraction_of_physics_limit']:.0f}% reached); Meta-World's own step x {r['workers']} "
                  f"cores {r['env_limit_env_steps_per_sec']:.0f} (= {r['env_limit_over_faster_reference']:.2f}x the "
                  f"faster reference; dmrl at {100 * r['dmrl_fraction_of_env_limit']:.0f}%)\n"
                  f"  machine: {r['machine']['cpu_model']}")
            sys.stdout.flush()
            continue
        r = bench(case, args.iterations, args.warmup, args.device, args.overrides, split_times=args.split,
                  syncs=args.count_syncs, flops=args.count_flops, time_budget=args.time_budget,
                  matmul_precision=args.matmul_fp32_precision)
        r["overrides"] = args.overrides
        if args.json:
            print(json.dumps(r))
        else:
            line = (f"{case}: {r['sec_per_iteration']:.3f} s/iteration (median of {r['iterations']}; sampling "
                    f"{r['sampling_sec_per_iteration']:.3f} s), {r['env_steps_per_sec']:.0f} env steps/s on "
                    f"{r['device']} with {r['threads']} threads; ")
            if "budget_sec" in r:
                line += (f"{r['preset_iterations']} iterations -> {r['projected_run_sec'] / 60:.1f} min "
                         f"(budget {r['budget_sec'] / 60:.0f} min: {r['target_sec_per_iteration']:.2f} s/iteration)")
            elif "target_sec_per_iteration" in r:
                line += f"target {r['target_sec_per_iteration']} s"  # (issue 15, on this project's machines)
            elif "target_env_steps_per_sec" in r:
                line += f"target {r['target_env_steps_per_sec']:.0f} env steps/s"
            print(line)
            mach = r["machine"]
            print(f"  machine: {mach['cpu_model']} [{' '.join(mach['cpu_isa']) or 'no avx2'}], {mach['cores']} cores "
                  f"({mach['cores_usable']} usable), torch {mach['torch']} with {mach['torch_threads']} threads"
                  + (f", {mach['gpu']} (CUDA {mach['cuda']})" if "gpu" in mach else "")
                  + (f", matmul fp32 precision {mach['matmul_fp32_precision']}"
                     if mach.get("matmul_fp32_precision", "none") != "none" else ""))
            print(f"  per iteration: {r['minor_page_faults_per_iteration']:.0f} minor page faults, "
                  f"{r['user_cpu_sec_per_iteration']:.3f} s user + {r['system_cpu_sec_per_iteration']:.3f} s system CPU")
            if "split_sec_per_iteration" in r:
                print("  split: " + ", ".join(f"{k} {v:.3f} s" for k, v in r["split_sec_per_iteration"].items()))
            if "syncs_per_iteration" in r:
                print(f"  syncs in one iteration: {json.dumps(r['syncs_per_iteration'])}")
            if "matmul_flops_per_iteration" in r:
                f = r["matmul_flops_per_iteration"]
                print(f"  matrix products: {f['gflop_total']:.2f} GFLOP per iteration; by region (GFLOP, GFLOP/s over "
                      "the region's time): " + ", ".join(
                          f"{k} {v:.2f}" + (f" ({f['gflop_per_sec'][k]:.0f})" if k in f["gflop_per_sec"] else "")
                          for k, v in f["gflop"].items())
                      + (f"; whole iteration {f['gflop_per_sec_iteration']:.0f} GFLOP/s"
                         if f["gflop_per_sec_iteration"] else ""))
            if "grad_steps_per_sec" in r:
                print(f"  PEARL update {r['grad_steps_per_sec']:.1f} gradient steps/s, the same in plain PyTorch "
                      f"{r['plain_pytorch_grad_steps_per_sec']:.1f} (plain / dmrl {r['plain_over_dmrl']:.2f}; target "
                      f"dmrl within 1.2x); collection {r['collection_env_steps_per_sec']:.0f} env steps/s")
            if "physics_limit_env_steps_per_sec" in r:
                print(f"  physics limit (batched, {r['physics_limit_sims']} simulations, pre-drawn actions, no policy) "
                      f"{r['physics_limit_env_steps_per_sec']:.0f} env steps/s; single-thread mj_step "
                      f"{r['physics_limit_env_steps_per_sec_per_core']:.0f} per core x {r['physics_limit_cores']} = "
                      f"{r['physics_limit_single_thread_x_cores']:.0f}; end to end "
                      f"{100 * r['env_steps_per_sec'] / r['physics_limit_env_steps_per_sec']:.0f}% of the limit; gymnasium loop "
                      f"{r['gymnasium_env_steps_per_sec']:.0f}; dmrl sampler {r['sampler_env_steps_per_sec']:.0f} "
                      f"({100 * r['sampler_fraction_of_physics_limit']:.0f}% of the limit)")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
