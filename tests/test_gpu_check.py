"""The GPU-machine tooling, cheaply: scripts/benchmark.py's machine info, split timers and sync
counting, and scripts/gpu_check.sh's syntax and JSON (its env step alone, on this CPU)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import make_maml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def benchmark():
    spec = importlib.util.spec_from_file_location("dmrl_benchmark_script", ROOT / "scripts/benchmark.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_machine_info_names_the_cpu_and_torch_threads(benchmark):
    info = benchmark.machine_info("cpu")
    assert isinstance(info["cpu_model"], str) and info["cpu_model"]
    assert isinstance(info["torch_threads"], int) and info["torch_threads"] >= 1
    assert info["torch"] == torch.__version__ and info["device"] == "cpu"
    assert set(info["cpu_isa"]) <= set(benchmark.ISA_FEATURES)
    assert info["cores"] >= info["cores_usable"] >= 1


def test_the_blas_case_measures_both_libraries_on_every_shape(benchmark):
    r = benchmark.bench_blas(repeats=1)  # (it also checks that both compute the same products)
    assert set(r["gflops"]) == {"square_1024", "layer_40000x64x64", "curvature_bmm_20x64x2000x64"}
    for v in r["gflops"].values():
        assert v["torch_blas"] > 0 and v["onednn"] > 0
        assert v["onednn_over_torch_blas"] == pytest.approx(v["onednn"] / v["torch_blas"])


def test_split_counts_the_outermost_region_only(benchmark):
    split = benchmark.Split(cuda=False)
    inner = split.wrap("inner", lambda: sum(range(1000)))
    outer = split.wrap("outer", lambda: inner() + inner())
    outer()
    inner()
    assert set(split.sec) == {"outer", "inner"} and split.sec["outer"] > 0
    split.sec.clear()
    split.enabled = False
    assert outer() == 2 * sum(range(1000)) and not split.sec


def test_instrumented_maml_step_splits_its_time(benchmark):
    algo = make_maml(meta_batch=2, episodes=3, horizon=5, hidden=(4,))
    split = benchmark.Split(cuda=False)
    benchmark.instrument(algo, split)
    algo.meta_step()
    assert {"sampling", "advantages", "inner_step", "curvature_setup", "curvature_products", "meta_gradient",
            "line_search"} <= set(split.sec)
    counts = benchmark.count_syncs(algo, torch.device("cpu"), split)
    assert counts["scalar_reads"] > 0 and counts["aten_ops"] > counts["scalar_reads"], counts
    assert split.enabled


def test_flop_counter_counts_2mnk_per_product_in_the_outermost_region(benchmark):
    split = benchmark.Split(cuda=False)
    a, b, x = torch.randn(3, 4, 5), torch.randn(3, 5, 6), torch.randn(7, 5)
    inner = split.wrap("inner", lambda: torch.bmm(a, b))  # 2 * 3 * 4 * 5 * 6 = 720
    outer = split.wrap("outer", lambda: inner().sum() + torch.addmm(torch.zeros(7, 2), x, torch.randn(5, 2)).sum())
    with benchmark._MatmulFlops(split) as mode:
        inner()
        outer()  # 720 + 2 * 7 * 5 * 2 = 860, all outer's
        x @ torch.randn(5)  # mv outside any region: 2 * 7 * 5
        torch.tanh(x)  # not a product
    assert dict(mode.flops) == {"inner": 720, "outer": 860, "other": 70}


def test_counted_flops_of_a_maml_step_split_by_region(benchmark):
    algo = make_maml(meta_batch=2, episodes=3, horizon=5, hidden=(4,))
    split = benchmark.Split(cuda=False)
    benchmark.instrument(algo, split)
    algo.meta_step()
    seconds = dict(split.sec)
    f = benchmark.count_flops(algo, split, seconds)
    assert {"sampling", "curvature_products", "line_search"} <= set(f["gflop"]), f
    assert f["gflop_total"] == pytest.approx(sum(f["gflop"].values())) and f["gflop_total"] > 0
    for k, rate in f["gflop_per_sec"].items():
        assert rate == pytest.approx(f["gflop"][k] / seconds[k])


@pytest.mark.parametrize("script", ["gpu_check.sh", "gpu_wheels.sh"])
def test_scripts_parse(script):
    subprocess.run(["bash", "-n", str(ROOT / "scripts" / script)], check=True)


def test_gpu_check_writes_its_json(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path), "GPU_CHECK_DRY": "1",
           "GPU_CHECK_STEPS": "env"}
    subprocess.run(["bash", str(ROOT / "scripts/gpu_check.sh")], check=True, env=env, timeout=120,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    assert {"dry_run", "device", "steps", "tests", "cases", "syncs", "ok", "wall_s", "env"} <= set(result)
    assert result["dry_run"] is True and result["device"] == "cpu" and result["ok"] is True
    assert result["steps"]["env"]["status"] == "ok" and result["steps"]["env"]["wall_s"] >= 0
    assert result["env"]["torch"] == torch.__version__
    assert list(result["steps"]) == ["env"]  # GPU_CHECK_STEPS ran that step alone
    assert "=== env" in (tmp_path / "gpu_check.log").read_text()
