"""Nothing lost, nothing executed: what a user can do to a run dir or a checkpoint (issue 13).

Each test does what a user did and found broken: the console scripts run as subprocesses in a
scratch directory, and each bad case must end in one line that names the problem, without a
traceback, and leave every file as it was.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import torch
from conftest import run_together
from omegaconf import OmegaConf

from dmrl.checkpoint import VERSION

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
    return _resign(state, dst)


def _resign(state: dict, dst: Path) -> Path:
    """Save an altered checkpoint with a matching checksum: an attacker can compute one too."""
    from dmrl.checkpoint import checksum

    state["checksum"] = checksum({k: v for k, v in state.items() if k not in ("format", "version", "checksum")})
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
    jobs = [(name, ckpt, cmd) for name, ckpt in crafted.items()
            for cmd in (["dmrl-eval", f"checkpoint={ckpt}", "num_tasks=2"], ["dmrl-train", f"resume={ckpt}"])]
    for (name, ckpt, _), proc in zip(jobs, run_together([j[2] for j in jobs], tmp_path, cli_env)):
        line = one_line(proc)
        assert "refused" in line and str(ckpt) in line, (name, line)
    assert not marker.exists()
    assert victim.read_text() == "precious\n"
    after = {p: p.stat().st_mtime_ns for p in before}
    assert after == before


def test_a_sweep_dirs_stored_config_cannot_run_code(tmp_path, cli_env):
    """A re-launched sweep reads each job dir's checkpoint config: the same check applies."""
    run(["dmrl-train", "-m", *SMOKE, "iterations=1", "seed=0,1", "final_eval.num_tasks=2", "hydra.sweep.dir=sweep"],
        tmp_path, cli_env)
    marker = tmp_path / "pwned"
    pickle_file = tmp_path / "payload.pt"
    torch.save(Pickled(str(marker)), pickle_file)
    job = tmp_path / "sweep/1/checkpoints/last.pt"
    _with_config(job, job, lambda c: c.update(tasks={"_target_": "torch.load", "f": str(pickle_file),
                                                      "weights_only": False}))
    (tmp_path / "sweep/1/summary.json").unlink()  # unfinished: the re-launch reads its checkpoint
    proc = run(["dmrl-train", "-m", *SMOKE, "iterations=2", "seed=0,1", "final_eval.num_tasks=2",
                "hydra.sweep.dir=sweep"], tmp_path, cli_env, ok=False)
    assert proc.returncode == 3 and "refused" in proc.stderr and "torch.load" in proc.stderr
    assert not marker.exists()


# --- runs that were silently lost or mixed ---------------------------------------------------------

def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def without_time(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in records]


def test_a_fresh_run_never_replaces_an_old_one_unless_asked(tmp_path, cli_env):
    run(["dmrl-train", *SMOKE, "logger=default", "iterations=3", "checkpoint.every=1", "hydra.run.dir=run"],
        tmp_path, cli_env)
    files = {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file() and p.name != ".lock"}
    line = one_line(run(["dmrl-train", *SMOKE, "hydra.run.dir=run"], tmp_path, cli_env, ok=False))
    assert "already holds a run" in line and "resume=run/checkpoints/last.pt" in line and "overwrite=true" in line
    assert {p: p.read_bytes() for p in files} == files  # .hydra/ included: nothing was touched
    run(["dmrl-train", *SMOKE, "logger=default", "iterations=2", "checkpoint.every=2", "overwrite=true",
         "hydra.run.dir=run"], tmp_path, cli_env)
    assert [r["iteration"] for r in metrics(tmp_path / "run")] == [1, 2]
    assert sorted(p.name for p in (tmp_path / "run/checkpoints").iterdir()) == ["iter_000002.pt", "last.pt"]
    assert len(list((tmp_path / "run/tb").glob("events.*"))) == 1  # the old run's events went with it


def test_default_run_dirs_are_unique_and_a_run_dir_is_locked(tmp_path, cli_env):
    slow = [*SMOKE, "iterations=100000", "checkpoint.every=100000"]
    first = subprocess.Popen(["dmrl-train", *slow, "hydra.run.dir=busy"], cwd=tmp_path, env=cli_env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not (tmp_path / "busy/metrics.jsonl").is_file():
            assert first.poll() is None
        hydra_files = {p: p.read_bytes() for p in (tmp_path / "busy/.hydra").iterdir()}
        for extra in ([], ["overwrite=true"], ["resume=busy/checkpoints/last.pt"]):
            line = one_line(run(["dmrl-train", *SMOKE, *extra, "hydra.run.dir=busy"], tmp_path, cli_env, ok=False))
            assert f"in use by another dmrl-train process (pid {first.pid})" in line, line
        line = one_line(run(["dmrl-train", "resume=busy/checkpoints/last.pt"], tmp_path, cli_env, ok=False))
        assert "in use" in line  # resuming continues the run dir: refused while its run is alive
        assert {p: p.read_bytes() for p in hydra_files} == hydra_files
    finally:
        first.kill()
        first.wait()
    # two runs started together with the default run dir: two dirs
    procs = [subprocess.Popen(["dmrl-train", *SMOKE, "iterations=1", "final_eval.num_tasks=0"], cwd=tmp_path,
                              env=cli_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read()
    dirs = sorted((tmp_path / "outputs/train").glob("*/*"))
    assert len(dirs) == 2 and all(len(metrics(d)) == 1 for d in dirs)
    # the lock died with the killed process: the run resumes
    run(["dmrl-train", "resume=busy/checkpoints/last.pt", "iterations=" + str(len(metrics(tmp_path / "busy")) + 1),
         "final_eval.num_tasks=0"], tmp_path, cli_env)


def test_resuming_an_older_checkpoint_branches_instead_of_cutting(tmp_path, cli_env):
    run(["dmrl-train", *SMOKE, "iterations=3", "checkpoint.every=1", "checkpoint.keep=5", "hydra.run.dir=run"],
        tmp_path, cli_env)
    before = {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file() and p.name != ".lock"}
    proc = run(["dmrl-train", "resume=run/checkpoints/iter_000001.pt", "iterations=3", "hydra.run.dir=branch"],
               tmp_path, cli_env)
    assert "new run dir" in proc.stderr and "branch" in proc.stderr
    assert {p: p.read_bytes() for p in before} == before  # the original run is whole
    branch = tmp_path / "branch"
    parent = json.loads((branch / "parent.json").read_text())
    assert parent["iteration"] == 1 and parent["run_dir"] == str(tmp_path / "run")
    # the branch replays iterations 2 and 3 exactly (same config, same states)
    assert without_time(metrics(branch)) == without_time(metrics(tmp_path / "run"))
    summary = json.loads((branch / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["parent"] == str(tmp_path / "run")
    assert "experiment=smoke" in summary["overrides"]  # the parent's command line, not the resume's
    # a branch never lands on another run: the branch dir now holds one
    kept = (branch / "metrics.jsonl").read_bytes()
    line = one_line(run(["dmrl-train", "resume=run/checkpoints/iter_000001.pt", "iterations=3", "hydra.run.dir=branch"],
                        tmp_path, cli_env, ok=False))
    assert "already holds a run" in line and (branch / "metrics.jsonl").read_bytes() == kept


def test_a_run_killed_before_its_summary_is_completed_by_resume(tmp_path, cli_env):
    run(["dmrl-train", *SMOKE, "hydra.run.dir=run"], tmp_path, cli_env)
    done = json.loads((tmp_path / "run/summary.json").read_text())
    (tmp_path / "run/summary.json").unlink()  # what a kill during the final evaluation leaves
    proc = run(["dmrl-train", "resume=run/checkpoints/last.pt"], tmp_path, cli_env)
    assert "completing" in proc.stderr
    again = json.loads((tmp_path / "run/summary.json").read_text())
    assert again["status"] == "finished" and again["heldout"] == done["heldout"]
    assert again["objective"] == done["objective"] and len(metrics(tmp_path / "run")) == 2
    for key in ("dmrl", "torch", "gymnasium", "mujoco"):
        assert again["versions"][key], key
    assert again["device"] == "cpu"
    proc = run(["dmrl-train", "resume=run/checkpoints/last.pt"], tmp_path, cli_env)
    assert "nothing to do" in proc.stdout and "finished" in proc.stdout


@pytest.mark.parametrize("sig,code,name", [("SIGTERM", 143, "SIGTERM"), ("SIGINT", 130, "Ctrl-C")])
def test_sigterm_and_ctrl_c_say_where_the_checkpoint_is_and_how_to_resume(tmp_path, cli_env, sig, code, name):
    import shlex
    import signal

    env = dict(cli_env, PYTHONFAULTHANDLER="1")  # a hang below dumps every thread's stack on SIGABRT
    # SIGINT's default disposition in the child: a shell starts background jobs with SIGINT ignored
    # (POSIX), and Python then installs no Ctrl-C handler (a suite run with `&` hung here)
    proc = subprocess.Popen(["dmrl-train", *SMOKE, "iterations=100000", "checkpoint.every=100000",
                             "hydra.run.dir=run"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    log = tmp_path / "run/metrics.jsonl"
    # complete lines only (a line being written is not JSON yet); sleep so the run gets the cores
    while not log.is_file() or log.read_text().count("\n") < 3:
        assert proc.poll() is None
        time.sleep(0.01)
    proc.send_signal(getattr(signal, sig))
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        out, err = proc.communicate()
        pytest.fail(f"dmrl-train did not exit within 60 s of {sig}; its stacks:\n{err[-6000:]}")
    assert proc.returncode == code, err
    assert out.startswith(f"run dir: {tmp_path / 'run'}  (tensorboard --logdir ")  # said at the start
    lines = err.strip().splitlines()
    assert "Traceback" not in err and len(lines) == 1, err
    assert f"interrupted by {name}" in lines[0] and "resume with: dmrl-train resume=" in lines[0]
    command = shlex.split(lines[0].split("resume with: ")[1])
    assert command[1] == f"resume={tmp_path / 'run/checkpoints/last.pt'}"
    reached = torch.load(tmp_path / "run/checkpoints/last.pt", weights_only=True)["iteration"]
    assert f"(iteration {reached})" in lines[0]
    run([*command, f"iterations={reached + 1}", "final_eval.num_tasks=2"], tmp_path, cli_env)
    assert [r["iteration"] for r in metrics(tmp_path / "run")] == list(range(1, reached + 2))


def test_stale_temp_files_of_an_interrupted_write_are_removed(tmp_path, cli_env):
    run(["dmrl-train", *SMOKE, "hydra.run.dir=run"], tmp_path, cli_env)
    stale = [tmp_path / "run/checkpoints/.iter_000007.pt.tmp-4242", tmp_path / "run/.summary.json.tmp-4242"]
    for p in stale:
        p.write_bytes(b"half a file")
    proc = run(["dmrl-train", "resume=run/checkpoints/last.pt", "iterations=3", "final_eval.num_tasks=2"],
               tmp_path, cli_env)
    assert not any(p.exists() for p in stale)
    assert proc.stderr.count("left by a write that was interrupted") == 2


def test_the_advice_after_a_divergence_is_true(tmp_path, cli_env):
    # diverging at iteration 1: no checkpoint exists, and the message says so
    line = one_line(run(["dmrl-train", *SMOKE, "algo.inner_lr=1e30", "hydra.run.dir=a"], tmp_path, cli_env, ok=False))
    assert "before its first checkpoint" in line and "algo.inner_lr=" in line and "intact" not in line
    # diverging later: resume with the step sizes the message names, and the run goes on
    run(["dmrl-train", *SMOKE, "hydra.run.dir=b"], tmp_path, cli_env)
    proc = run(["dmrl-train", "resume=b/checkpoints/last.pt", "iterations=3", "algo.inner_lr=1e30"], tmp_path,
               cli_env, ok=False)
    assert proc.returncode == 3 and "resume changes algo.inner_lr: 0.1 -> 1e+30" in proc.stderr
    advice = proc.stderr.strip().splitlines()[-1].split("e.g. ")[1].split()
    assert advice[0:2] == ["dmrl-train", f"resume={tmp_path / 'b/checkpoints/last.pt'}"]
    assert any(a.startswith("algo.inner_lr=") for a in advice) and any(a.startswith("algo.meta_optimizer.max_kl=") for a in advice)
    fixed = [a if not a.startswith("algo.inner_lr=") else "algo.inner_lr=0.05" for a in advice]
    proc = run([*fixed, "iterations=3", "final_eval.num_tasks=2"], tmp_path, cli_env)
    assert "resume changes algo.inner_lr: 0.1 -> 0.05" in proc.stderr and "warning" not in proc.stderr
    assert [r["iteration"] for r in metrics(tmp_path / "b")] == [1, 2, 3]
    stored = OmegaConf.create(torch.load(tmp_path / "b/checkpoints/last.pt", weights_only=True)["config"])
    assert stored.algo.inner_lr == 0.05  # the smaller step is the run's from now on


# --- errors that were tracebacks, input that was accepted silently ---------------------------------

BAD_INPUT = [
    (["dmrl-train", "seed=99999999999999999999"], "seed must be an integer in [0, 4294967295]"),
    (["dmrl-eval", "checkpoint=x.pt", "seed=99999999999999999999"], "seed must be an integer in [0, 4294967295]"),
    (["dmrl-train", "env.horizon=100000000"], "GiB per meta-iteration (env.horizon=100000000"),
    (["dmrl-train", "algo.meta_batch_size=100000"], "algo.meta_batch_size=100000"),
    (["dmrl-train", "env=bandit", "algo=rl2", "algo.meta_batch_size=100000000"], "available: lower one of these sizes"),
    (["dmrl-train", "hydra.run.dir=afile/run"], "hydra.run.dir: cannot create afile/run: afile is a file"),
    (["dmrl-train", "-m", "seed=0,1", "hydra.sweep.dir=afile/sweep"], "hydra.sweep.dir: cannot create"),
    (["dmrl-train", "+foo=1"], "+foo=1: foo is not a key of dmrl's config"),
    (["dmrl-train", "+iteration=5"], "allowed keys at the top level: algo, checkpoint"),
    (["dmrl-train", "++algo.bar=5"], "allowed keys under algo:"),
    (["dmrl-eval", "checkpoint=/tmp/my", "run/last.pt"], "quote it: checkpoint='/tmp/my run/last.pt'"),
    (["dmrl-train", "--experimental-rerun", "outputs/x/.hydra/config.pickle"], "can run code"),
    (["dmrl-eval", "checkpoint=x.pt", "adapt_steps=1000"], "adapt_steps must be an integer in [0, 100]"),
]


@pytest.mark.parametrize("cmd,expect", BAD_INPUT, ids=[" ".join(c) for c, _ in BAD_INPUT])
def test_bad_input_is_one_line_before_any_work(tmp_path, cli_env, cmd, expect):
    (tmp_path / "afile").write_text("a file, not a dir\n")
    proc = run([*cmd, *([] if cmd[0] == "dmrl-eval" else ["logger=jsonl"])], tmp_path, cli_env, ok=False)
    line = one_line(proc)
    assert expect in line, line
    assert not list(tmp_path.rglob(".hydra"))  # refused before any work; no run dir is left behind


def test_a_linear_policy_is_said_to_be_one(tmp_path, cli_env):
    proc = run(["dmrl-train", *SMOKE, "algo.policy.hidden_sizes=[]", "final_eval.num_tasks=2", "hydra.run.dir=run"],
               tmp_path, cli_env)
    assert "algo.policy.hidden_sizes=[] is a linear policy" in proc.stderr
    state = torch.load(tmp_path / "run/checkpoints/last.pt", weights_only=True)
    assert set(state["algo"]["policy"]) == {"mu.weight", "mu.bias", "log_std"}


def _flip_a_bit(src: Path, dst: Path) -> Path:
    """Flip one bit in the largest tensor's stored bytes (torch's zip stores them uncompressed)."""
    import struct
    import zipfile

    raw = bytearray(src.read_bytes())
    with zipfile.ZipFile(src) as zf:
        info = max((i for i in zf.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    h = info.header_offset
    name_len, extra_len = struct.unpack("<HH", raw[h + 26 : h + 30])
    raw[h + 30 + name_len + extra_len + 5] ^= 0x10
    dst.write_bytes(raw)
    torch.load(dst, weights_only=True)  # torch itself reads it without complaint
    return dst


def _edited(src: Path, dst: Path, edit) -> Path:
    state = torch.load(src, weights_only=True)
    edit(state)
    return _resign(state, dst)


def test_damaged_checkpoints_are_one_line_for_eval_and_resume(trained, tmp_path, cli_env):
    last = trained / "checkpoints/last.pt"
    policy = lambda s: s["algo"]["policy"]  # noqa: E731
    cases = {
        "wrong shape": (lambda s: policy(s).update({"mu.weight": torch.zeros(3, 3)}), "does not fit its own config"),
        "missing parameter": (lambda s: policy(s).pop("mu.bias"), "does not fit its own config"),
        "extra parameter": (lambda s: policy(s).update({"extra.weight": torch.zeros(2)}), "does not fit its own config"),
        "bad config YAML": (lambda s: s.update(config="env: [unclosed\n  horizon: : :"), "its config is not valid YAML"),
        "config not a mapping": (lambda s: s.update(config="- a\n- b\n"), "not a mapping"),
        "iteration abc": (lambda s: s.update(iteration="abc"), "'iteration' must be a count"),
        "bad sampler RNG state": (lambda s: s["algo"]["sampler"].update(generator=torch.zeros(3, dtype=torch.uint8)),
                                  "does not fit its own config"),
        "NaN weights": (lambda s: policy(s)["mu.weight"].fill_(float("nan")), "non-finite values in algo.policy.mu.weight"),
    }
    paths = {name: (_edited(last, tmp_path / f"{i}.pt", edit), expect) for i, (name, (edit, expect)) in enumerate(cases.items())}
    paths["bit flip"] = (_flip_a_bit(last, tmp_path / "flip.pt"), "does not match its checksum")
    jobs = [(name, path, expect, cmd) for name, (path, expect) in paths.items()
            for cmd in (["dmrl-eval", f"checkpoint={path}", "num_tasks=2"], ["dmrl-train", f"resume={path}"])]
    for (name, path, expect, _), proc in zip(jobs, run_together([j[3] for j in jobs], tmp_path, cli_env)):
        line = one_line(proc)
        assert expect in line and str(path) in line, (name, line)


def test_a_version_1_checkpoint_without_checksum_still_loads(trained, tmp_path):
    from dmrl.checkpoint import load_checkpoint

    state = torch.load(trained / "checkpoints/last.pt", weights_only=True)
    state["version"] = 1
    del state["checksum"]
    torch.save(state, tmp_path / "v1.pt")
    assert load_checkpoint(tmp_path / "v1.pt")["iteration"] == 2


@pytest.fixture
def small_mount(tmp_path):
    """A tmpfs of 400 kB (root, as CI): a disk that fills up, or a read-only one, for real."""
    made = []

    def mount(*options: str) -> Path:
        where = tmp_path / f"mnt{len(made)}"
        where.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(["size=400k", *options]), "tmpfs", str(where)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
        made.append(where)
        return where

    yield mount
    for where in made:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def test_a_full_disk_is_one_line_and_keeps_the_last_checkpoint(tmp_path, cli_env, small_mount):
    disk = small_mount()
    proc = run(["dmrl-train", *SMOKE, "iterations=100000", "checkpoint.every=1", "checkpoint.keep=1000",
                f"hydra.run.dir={disk}/run"], tmp_path, cli_env, ok=False)
    line = one_line(proc)
    assert line.startswith("dmrl-train: error: disk full") and "is intact" in line and proc.returncode == 4, line
    from dmrl.checkpoint import load_checkpoint

    state = load_checkpoint(disk / "run/checkpoints/last.pt")  # loads, checksum and all
    assert state["iteration"] >= 1


def test_a_read_only_run_dir_is_one_line(tmp_path, cli_env, small_mount):
    disk = small_mount("ro")
    line = one_line(run(["dmrl-train", *SMOKE, f"hydra.run.dir={disk}/run"], tmp_path, cli_env, ok=False))
    assert f"cannot write {disk}/run: {disk} is read-only" in line


# --- what a user sees ------------------------------------------------------------------------------

def test_help_and_version(tmp_path, cli_env):
    out = run(["dmrl-eval", "--help"], tmp_path, cli_env).stdout
    assert out.startswith("usage: dmrl-eval") and "adapt_steps=3" in out and "example:" in out
    assert "algo=" not in out and "Powered by Hydra" not in out  # eval's own keys only, not Hydra's page
    out = run(["dmrl-train", "--help"], tmp_path, cli_env).stdout
    assert "algo=maml|meta_sgd|multitask|oracle|pearl|promp|rl2" in out and "checkpoint.every=50" in out and "example:" in out
    # the algo's own groups, each with its per-algo default
    assert "algo/policy=gaussian_mlp|gru|maml_paper|tanh_gaussian  (the algo's own: tanh_gaussian for pearl, gru for " \
           "rl2, else gaussian_mlp)" in out
    assert "algo/meta_optimizer=adam|adam_clip|ppo|sac|trpo|trpo_full" in out and "algo/sampler=local|ray  (default local)" in out
    from importlib import metadata

    out = run(["dmrl-report", "--help"], tmp_path, cli_env).stdout
    assert "--out" in out and "example: dmrl-report" in out
    for prog in ("dmrl-train", "dmrl-eval", "dmrl-report"):
        assert run([prog, "--version"], tmp_path, cli_env).stdout.strip() == f"{prog} (dmrl) {metadata.version('dmrl')}"


def test_progress_lines_off_a_terminal_and_in_a_sweep(tmp_path, cli_env):
    proc = run(["dmrl-train", "experiment=smoke", "logger=default", "logger.tensorboard=false", "iterations=3",
                "final_eval.num_tasks=2", "hydra.run.dir=run"], tmp_path, cli_env)
    assert proc.stdout.startswith("run dir: ")
    assert [line.split()[1] for line in proc.stderr.splitlines() if line.startswith("iteration ")] == ["1/3", "2/3", "3/3"]
    proc = run(["dmrl-train", "-m", "experiment=smoke", "logger=default", "logger.tensorboard=false", "iterations=1",
                "final_eval.num_tasks=2", "seed=0,1", "hydra.sweep.dir=sweep"], tmp_path, cli_env)
    assert {line.split(":")[0] for line in proc.stderr.splitlines() if "iteration 1/1" in line} == {"job 0", "job 1"}


DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("name", ["v1_maml_point_nav.pt", "v1_rl2_bandit.pt"])
def test_committed_version_1_checkpoints_evaluate_and_resume(tmp_path, cli_env, name):
    """Written by dmrl before checksums (commit ea8f5fe): they still evaluate and resume."""
    import shutil

    run_dir = tmp_path / "old/checkpoints"
    run_dir.mkdir(parents=True)
    shutil.copy(DATA / name, run_dir / "last.pt")
    assert torch.load(run_dir / "last.pt", weights_only=True)["version"] == 1
    run(["dmrl-eval", f"checkpoint={run_dir / 'last.pt'}", "num_tasks=3", "hydra.run.dir=ev"], tmp_path, cli_env)
    assert json.loads((tmp_path / "ev/eval.json").read_text())["iteration"] == 1
    run(["dmrl-train", f"resume={run_dir / 'last.pt'}", "iterations=2", "final_eval.num_tasks=2"], tmp_path, cli_env)
    state = torch.load(run_dir / "last.pt", weights_only=True)
    assert state["iteration"] == 2 and state["version"] == VERSION and "checksum" in state
    config = OmegaConf.create(state["config"])  # written in today's layout (dmrl.stored.MIGRATIONS)
    assert config.algo.sampler.name == "local" and "policy" in config.algo and "policy" not in config
    assert config.matmul == "blas"  # what it ran with, before the key existed


def test_a_long_meta_test_reports_progress(monkeypatch, capsys):
    from hydra import compose, initialize_config_dir

    from dmrl import evaluation
    from dmrl.build import build
    from dmrl.config import CONF_DIR
    from dmrl.learner import MetaTestBudget

    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose(config_name="train", overrides=["experiment=smoke", "device=cpu"])
    monkeypatch.setattr(evaluation, "PROGRESS_EVERY_S", 0.0)
    out = evaluation.evaluate(build(cfg), num_tasks=3, seed=0, budget=MetaTestBudget(steps=3))
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("meta-test:")]
    assert [line.split(" done")[0] for line in lines] == [f"meta-test: point {k} of 4" for k in (1, 2, 3)]
    assert out["adapt_steps"] == [0, 1, 2, 3]


def test_one_migration_brings_older_stored_configs_up_to_date():
    """Configs from before env.normalize_actions, before the sampler group and before the algo brought
    its own policy, meta-optimizer and sampler: filled in and moved by dmrl.stored.migrate with what
    they meant (raw point_nav units, local sampling, the same nodes under algo), then built."""
    from dmrl.build import build
    from dmrl.stored import stored_config

    state = torch.load(DATA / "v1_maml_point_nav.pt", weights_only=True)
    old = OmegaConf.create(state["config"])
    assert {"policy", "meta_optimizer", "sampler"} <= set(old) and "policy" not in old.algo  # the old layout
    del old.env.normalize_actions
    del old.sampler
    cfg = stored_config(OmegaConf.to_yaml(old), "checkpoint old.pt")
    assert cfg.env.normalize_actions is False and cfg.algo.sampler.name == "local"
    parts = build(cfg, device="cpu")
    assert parts.env.normalize_actions is False
    fresh = stored_config(state["config"], "checkpoint v1.pt")  # a config that has both keys keeps them
    assert fresh.env.normalize_actions is True
    assert not {"policy", "meta_optimizer", "sampler"} & set(fresh)
    assert fresh.algo.policy == old.policy and fresh.algo.meta_optimizer == old.meta_optimizer
    assert stored_config(OmegaConf.to_yaml(fresh), "checkpoint new.pt") == fresh  # today's layout: unchanged


@pytest.mark.parametrize("part", ["policy", "meta_optimizer", "sampler"])
def test_a_stored_config_with_a_part_in_both_places_is_one_line(part):
    from dmrl.errors import ConfigError
    from dmrl.stored import stored_config

    state = torch.load(DATA / "v1_maml_point_nav.pt", weights_only=True)
    both = OmegaConf.create(state["config"])
    both.algo[part] = both[part]
    with pytest.raises(ConfigError) as e:
        stored_config(OmegaConf.to_yaml(both), "checkpoint both.pt")
    assert str(e.value) == (f"checkpoint both.pt: it holds both {part} and algo.{part}: {part} is algo.{part} since "
                            "the policy, optimizer and sampler are part of the algo's config, and a config has one of them")


def test_a_checkpoint_from_before_the_algo_had_its_parts_evaluates_and_resumes_exactly(tmp_path, cli_env):
    """A version-2 checkpoint whose config holds policy, meta_optimizer and sampler at the top level
    (written before they were the algo's): dmrl-eval reads it, and resuming it continues exactly as an
    uninterrupted run of today's config; the resumed run writes today's layout."""
    args = [*SMOKE, "iterations=3", "algo.policy.hidden_sizes=[16]", "algo.meta_optimizer.max_kl=0.02",
            "final_eval.num_tasks=2"]
    run(["dmrl-train", *args, "hydra.run.dir=full"], tmp_path, cli_env)
    run(["dmrl-train", *args, "iterations=2", "hydra.run.dir=part"], tmp_path, cli_env)
    last = tmp_path / "part/checkpoints/last.pt"

    def old_layout(config):
        for key in ("policy", "meta_optimizer", "sampler"):
            config[key] = config["algo"].pop(key)

    state = torch.load(last, weights_only=True)
    state["version"] = 2
    torch.save(state, last)
    _with_config(last, last, old_layout)
    assert "policy" in OmegaConf.create(torch.load(last, weights_only=True)["config"])
    run(["dmrl-eval", f"checkpoint={last}", "num_tasks=2", "adapt_steps=1", "hydra.run.dir=ev"], tmp_path, cli_env)
    assert json.loads((tmp_path / "ev/eval.json").read_text())["iteration"] == 2
    proc = run(["dmrl-train", f"resume={last}", "iterations=3", "algo.meta_optimizer.max_kl=0.02"], tmp_path, cli_env)
    assert "warning" not in proc.stderr and "resume changes" not in proc.stderr  # the same step size, in its new place
    assert without_time(metrics(tmp_path / "part")) == without_time(metrics(tmp_path / "full"))
    state = torch.load(last, weights_only=True)
    config = OmegaConf.create(state["config"])
    assert state["version"] == VERSION and config.algo.policy.hidden_sizes == [16] and "policy" not in config
