"""``matmul=``: which library computes float32 CPU matrix products (dmrl.matmul)."""

from __future__ import annotations

import json

import pytest
import torch
from test_cli import SMOKE, metrics, run, without_time

from dmrl import matmul
from dmrl.errors import ConfigError

needs_switch = pytest.mark.skipif(matmul.torch_switch() is None, reason="this torch has no oneDNN float32 matmul switch")


@pytest.fixture(autouse=True)
def back_to_blas():
    yield
    matmul.use("blas")


def _onednn_keeps_float32() -> bool:
    try:
        matmul.use("onednn")
        return True
    except ConfigError:
        return False
    finally:
        matmul.use("blas")


@needs_switch
def test_onednn_is_set_only_where_a_probe_product_has_float32_accuracy(monkeypatch):
    monkeypatch.setattr(matmul, "probe_error", lambda: 3e-8)
    matmul.use("onednn")
    assert matmul.current() == "onednn" and torch.backends.mkldnn.matmul.fp32_precision == "bf16"
    matmul.use("blas")
    assert matmul.current() == "blas" and torch.backends.mkldnn.matmul.fp32_precision == "none"
    monkeypatch.setattr(matmul, "probe_error", lambda: 4.2e-3)  # what bfloat16 inputs give
    with pytest.raises(ConfigError) as e:
        matmul.use("onednn")
    assert "matmul=onednn" in str(e.value) and "4.2e-03" in str(e.value) and "matmul=blas" in str(e.value)
    assert "\n" not in str(e.value) and matmul.current() == "blas"  # refused, and left as torch's default


def test_the_probe_measures_float32_round_off_with_torchs_blas():
    matmul.use("blas")
    err = matmul.probe_error()
    assert 0 < err <= matmul.MAX_RELATIVE_ERROR / 5  # float32: ~5e-7; bfloat16 would be ~4e-3


def test_a_wrong_choice_is_one_line():
    with pytest.raises(ConfigError, match=r"matmul must be one of blas, onednn, got 'fast'"):
        matmul.use("fast")


@needs_switch
def test_a_run_with_onednn_resumes_exactly_and_says_which_library(tmp_path, cli_env):
    if not _onednn_keeps_float32():
        pytest.skip(f"oneDNN rounds float32 products on this CPU (relative error {matmul.probe_error():.1e})")
    base = [*SMOKE, "iterations=4", "checkpoint.every=2", "matmul=onednn"]
    run(["dmrl-train", *base, "hydra.run.dir=full"], tmp_path, cli_env)
    run(["dmrl-train", *base, "iterations=2", "hydra.run.dir=part"], tmp_path, cli_env)
    run(["dmrl-train", "resume=part/checkpoints/last.pt", "iterations=4", "hydra.run.dir=r"], tmp_path, cli_env)
    assert without_time(metrics(tmp_path / "part")) == without_time(metrics(tmp_path / "full"))
    for d in ("full", "part"):  # the resume took the run's own choice without it being typed
        assert json.loads((tmp_path / d / "summary.json").read_text())["matmul"] == "onednn"
    run(["dmrl-train", *SMOKE, "iterations=1", "hydra.run.dir=blas"], tmp_path, cli_env)
    assert json.loads((tmp_path / "blas/summary.json").read_text())["matmul"] == "blas"
