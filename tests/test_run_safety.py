"""Nothing lost, nothing executed: what a user can do to a run dir or a checkpoint (issue 13).

Each test does what a user did and found broken: the console scripts run as subprocesses in a
scratch directory, and each bad case must end in one line that names the problem, without a
traceback, and leave every file as it was.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

SMOKE = ["experiment=smoke", "logger=jsonl"]


def run(cmd: list[str], cwd: Path, env: dict, ok: bool = True, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, **kw)
    if ok:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def one_line(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr[-3000:]
    return lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One finished 2-iteration smoke run, shared by the tests that only read it."""
    import os
    import sys

    root = tmp_path_factory.mktemp("trained")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    run(["dmrl-train", *SMOKE, "hydra.run.dir=run"], root, env)
    return root / "run"


class Pickled:
    """Unpickling this opens (creates) ``marker`` for writing: proof that code ran."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _with_config(src: Path, dst: Path, edit) -> Path:
    state = torch.load(src, weights_only=True)
    config = OmegaConf.to_container(OmegaConf.create(state["config"]))
    edit(config)
    state["config"] = OmegaConf.to_yaml(OmegaConf.create(config))
    torch.save(state, dst)
    return dst


def test_a_checkpoint_config_cannot_run_code(trained, tmp_path, cli_env):
    marker = tmp_path / "pwned"
    pickle_file = tmp_path / "payload.pt"
    torch.save(Pickled(str(marker)), pickle_file)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    last = trained / "checkpoints/last.pt"
    crafted = {
        "torch.load": _with_config(last, tmp_path / "load.pt", lambda c: c.update(
            tasks={"_target_": "torch.load", "f": str(pickle_file), "weights_only": False})),
        "io.open": _with_config(last, tmp_path / "open.pt", lambda c: c.update(
            tasks={"_target_": "io.open", "file": str(victim), "mode": "w"})),
        "nested": _with_config(last, tmp_path / "nested.pt", lambda c: c["env"].update(
            extra={"_target_": "io.open", "file": str(victim), "mode": "w"})),
        "_args_": _with_config(last, tmp_path / "args.pt", lambda c: c["tasks"].update(
            _args_=[str(victim), "w"])),
        "interpolation": _with_config(last, tmp_path / "interp.pt", lambda c: c["env"].update(
            horizon="${oc.env:HOME}")),
    }
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    for name, ckpt in crafted.items():
        for cmd in (["dmrl-eval", f"checkpoint={ckpt}", "num_tasks=2"], ["dmrl-train", f"resume={ckpt}"]):
            line = one_line(run(cmd, tmp_path, cli_env, ok=False))
            assert "refused" in line and str(ckpt) in line, (name, line)
    assert not marker.exists()
    assert victim.read_text() == "precious\n"
    after = {p: p.stat().st_mtime_ns for p in before}
    assert after == before
