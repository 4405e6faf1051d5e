"""The console scripts as a user runs them: subprocesses in a scratch directory."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
from conftest import run_together
from omegaconf import OmegaConf

from dmrl.checkpoint import checksum

SMOKE = ["experiment=smoke", "logger=jsonl"]


def run(cmd: list[str], cwd: Path, env: dict, ok: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    if ok:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def without_time(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in records]


def test_train_then_eval_end_to_end(tmp_path, cli_env):
    run(["dmrl-train", *SMOKE, "logger=default", "hydra.run.dir=run"], tmp_path, cli_env)
    run_dir = tmp_path / "run"
    recs = metrics(run_dir)
    assert [r["iteration"] for r in recs] == [1, 2]
    for key in ("env_steps", "time/iteration_s", "meta_train/return_pre_adapt", "meta_train/return_post_adapt",
                "meta_optim/loss_before", "meta_optim/kl", "meta_optim/ls_steps"):
        assert key in recs[-1]
    assert recs[1]["env_steps"] > recs[0]["env_steps"] > 0
    assert {p.name for p in (run_dir / "checkpoints").iterdir()} == {"last.pt", "iter_000001.pt", "iter_000002.pt"}
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))

    proc = run(["dmrl-eval", f"checkpoint={run_dir}/checkpoints/last.pt", "num_tasks=6", "adapt_steps=2",
                "hydra.run.dir=ev"], tmp_path, cli_env)
    report = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert report["adapt_steps"] == [0, 1, 2]
    assert report["step_sizes"] == [pytest.approx(0.1), pytest.approx(0.05)]  # the paper's 0.1, then 0.05
    assert len(report["return_mean"]) == len(report["return_ci95"]) == 3
    assert report["num_tasks"] == 6 and report["checkpoint"].endswith("last.pt")
    assert all(c > 0 for c in report["return_ci95"])
    assert (tmp_path / "ev" / "adaptation.png").stat().st_size > 1000
    assert (tmp_path / "ev" / "eval.csv").read_text().splitlines()[0].startswith("adapt_steps,return_mean")
    assert "steps" in proc.stdout and "ci95" in proc.stdout


def test_eval_uses_the_checkpoint_config_not_todays_defaults(tmp_path, cli_env):
    run(["dmrl-train", *SMOKE, "algo.policy.hidden_sizes=[8]", "env.horizon=7", "hydra.run.dir=run"], tmp_path, cli_env)
    state = torch.load(tmp_path / "run/checkpoints/last.pt", weights_only=True)
    assert state["algo"]["policy"]["layers.0.weight"].shape == (8, 2)
    run(["dmrl-eval", "checkpoint=run/checkpoints/last.pt", "num_tasks=3", "adapt_steps=1", "hydra.run.dir=ev"],
        tmp_path, cli_env)
    assert json.loads((tmp_path / "ev/eval.json").read_text())["num_tasks"] == 3


def test_resume_equals_uninterrupted(tmp_path, cli_env):
    base = [*SMOKE, "iterations=4", "checkpoint.every=2"]
    run(["dmrl-train", *base, "hydra.run.dir=full"], tmp_path, cli_env)
    run(["dmrl-train", *base, "iterations=2", "hydra.run.dir=part"], tmp_path, cli_env)
    proc = run(["dmrl-train", *base, "resume=part/checkpoints/last.pt", "hydra.run.dir=resumed"], tmp_path, cli_env)
    assert "resuming" in proc.stderr
    full, resumed = metrics(tmp_path / "full"), metrics(tmp_path / "part")
    assert [r["iteration"] for r in resumed] == [1, 2, 3, 4]
    assert without_time(resumed) == without_time(full)
    a = torch.load(tmp_path / "full/checkpoints/last.pt", weights_only=True)["algo"]["policy"]
    b = torch.load(tmp_path / "part/checkpoints/last.pt", weights_only=True)["algo"]["policy"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_keeps_the_checkpoint_settings_unless_typed(tmp_path, cli_env):
    run(["dmrl-train", *SMOKE, "iterations=3", "checkpoint.every=1", "hydra.run.dir=run"], tmp_path, cli_env)
    (tmp_path / "run/checkpoints/iter_000003.pt").unlink()
    (tmp_path / "run/checkpoints/last.pt").unlink()  # iteration 2 is now the run's newest checkpoint
    proc = run(["dmrl-train", "resume=run/checkpoints/iter_000002.pt", "algo.fast_batch_size=5", "hydra.run.dir=r2"],
               tmp_path, cli_env)
    warnings = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "algo.fast_batch_size=5" in warnings[0]  # only what the user typed
    assert [r["iteration"] for r in metrics(tmp_path / "run")] == [1, 2, 3]  # the stored iterations=3
    assert (tmp_path / "run/checkpoints/iter_000003.pt").is_file()  # the stored checkpoint.every=1
    proc = run(["dmrl-train", "resume=run/checkpoints/last.pt", "iterations=4", "hydra.run.dir=r3"], tmp_path, cli_env)
    assert "warning" not in proc.stderr
    assert [r["iteration"] for r in metrics(tmp_path / "run")] == [1, 2, 3, 4]


def test_multirun_sweep(tmp_path, cli_env):
    run(["dmrl-train", "-m", *SMOKE, "iterations=1", "seed=0,1", "hydra.sweep.dir=sweep"], tmp_path, cli_env)
    r0, r1 = metrics(tmp_path / "sweep/0"), metrics(tmp_path / "sweep/1")
    assert len(r0) == len(r1) == 1
    assert r0[0]["meta_train/return_pre_adapt"] != r1[0]["meta_train/return_pre_adapt"]


BAD_TRAIN = [
    (["algo.meta_batch_size=0"], "algo.meta_batch_size"),
    (["algo.inner_lr=-1"], "algo.inner_lr"),
    (["env.horizon=0"], "env.horizon"),
    (["iterations=abc"], "iterations"),
    (["matmul=fast"], "matmul"),
    (["algo.first_order=maybe"], "algo.first_order"),
    (["algo.meta_optimizer.max_kl=0"], "algo.meta_optimizer.max_kl"),
    (["algo.meta_optimizer.ls_backtrack_ratio=1.5"], "algo.meta_optimizer.ls_backtrack_ratio"),
    (["algo.meta_optimizer.fvp_subsample=0"], "algo.meta_optimizer.fvp_subsample"),
    (["algo.inner_estimator=dice"], "algo.inner_estimator"),
    (["env.normalize_actions=sometimes"], "env.normalize_actions"),
    (["algo.policy.activation=sigmoid"], "algo.policy.activation"),
    (["algo.policy.hidden_sizes=[64,0]"], "algo.policy.hidden_sizes"),
    (["env=bandit", "algo=rl2", "algo.policy.critic=both"], "algo.policy.critic"),
    (["env=bandit", "algo=rl2", "algo.policy.update_gate_bias=abc"], "algo.policy.update_gate_bias"),
    (["device=tpu"], "device"),
    (["tasks.low=0.9", "tasks.high=0.1"], "tasks.low"),
    (["algo.not_a_key=1"], "algo.not_a_key"),
    (["not_a_key=1"], "not_a_key"),
    (["env=moon"], "env=moon"),
    (["algo=nope"], "algo=nope"),
    (["algo/policy=nope"], "algo/policy=nope: no such option; allowed: gaussian_mlp, gru"),
    (["algo/meta_optimizer=nope"], "algo/meta_optimizer=nope: no such option; allowed: adam"),
    (["algo/sampler=ray", "algo.sampler.workers=0"], "algo.sampler.workers must be an integer >= 1"),
    (["algo.policy.not_a_key=1"], "algo.policy.not_a_key"),
    (["-m", "algo.inner_lr=0.1,-0.5"], "algo.inner_lr"),
    (["resume=/nonexistent/last.pt"], "/nonexistent/last.pt"),
    (["tasks=cheetah_vel"], "point_nav needs tasks with key 'goal'"),
]


@pytest.mark.parametrize("args,key", BAD_TRAIN, ids=[" ".join(a) for a, _ in BAD_TRAIN])
def test_bad_train_input_is_one_clear_line(tmp_path, cli_env, args, key):
    proc = run(["dmrl-train", *SMOKE, *args], tmp_path, cli_env, ok=False)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert key in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "outputs").exists() or not list((tmp_path / "outputs").rglob("last.pt"))


# Keys typed in their place from before the algo brought its own policy, meta-optimizer and sampler:
# (command line, the old key as the line names it, the new one)
MOVED = [
    (["policy.hidden_sizes=[64,64]"], "policy.hidden_sizes", "algo.policy.hidden_sizes"),
    (["policy=gru"], "policy=gru", "algo/policy=gru"),
    (["policy=maml_paper", "seed=1"], "policy=maml_paper", "algo/policy=maml_paper"),
    (["meta_optimizer=adam"], "meta_optimizer=adam", "algo/meta_optimizer=adam"),
    (["meta_optimizer.max_kl=0.02"], "meta_optimizer.max_kl", "algo.meta_optimizer.max_kl"),
    (["sampler=ray"], "sampler=ray", "algo/sampler=ray"),
    (["sampler.workers=2"], "sampler.workers", "algo.sampler.workers"),
    (["+policy.hidden_sizes=[8]"], "policy.hidden_sizes", "algo.policy.hidden_sizes"),
    (["++meta_optimizer.lr=0.1"], "meta_optimizer.lr", "algo.meta_optimizer.lr"),
    (["+sampler=ray"], "+sampler=ray", "+algo/sampler=ray"),
    (["~sampler"], "~sampler", "~algo/sampler"),
    (["~policy.activation"], "policy.activation", "algo.policy.activation"),
    (["-m", "meta_optimizer.max_kl=0.01,0.02"], "meta_optimizer.max_kl", "algo.meta_optimizer.max_kl"),
    (["-m", "algo.inner_lr=0.1,0.2", "policy=gaussian_mlp,maml_paper"], "policy=gaussian_mlp,maml_paper",
     "algo/policy=gaussian_mlp,maml_paper"),
    (["hparams_search=maml_optuna", "meta_optimizer.max_kl=0.02"], "meta_optimizer.max_kl", "algo.meta_optimizer.max_kl"),
    (["hparams_search=maml_optuna", "hydra.sweeper.params.meta_optimizer.max_kl=interval(0.001,0.1)"],
     "hydra.sweeper.params.meta_optimizer.max_kl", "hydra.sweeper.params.algo.meta_optimizer.max_kl"),
    (["resume=run/checkpoints/last.pt", "meta_optimizer.max_kl=0.005"], "meta_optimizer.max_kl",
     "algo.meta_optimizer.max_kl"),
]


@pytest.mark.parametrize("args,old,new", MOVED, ids=[" ".join(a) for a, _, _ in MOVED])
def test_a_key_in_its_old_place_names_its_new_one(tmp_path, cli_env, args, old, new):
    """Since the policy, meta-optimizer and sampler are the algo's (conf/algo/policy/, ...), each old key
    is one line that names its new key, before any work (dmrl.cli.train.moved_key)."""
    proc = run(["dmrl-train", *args], tmp_path, cli_env, ok=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0] == (f"dmrl-train: error: {old} is now {new} (the policy, optimizer and sampler are part of "
                        "the algo's config)")
    assert not (tmp_path / "outputs").exists()


def test_a_preset_of_ones_own_with_the_old_keys_names_the_new_ones(tmp_path, cli_env):
    """A preset in $DMRL_CONFIG_PATH written for the old layout: its group override and its keys."""
    (tmp_path / "conf/experiment").mkdir(parents=True)
    (tmp_path / "conf/experiment/mine.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /algo: maml\n  - override /policy: maml_paper\n")
    env = {**cli_env, "DMRL_CONFIG_PATH": str(tmp_path / "conf")}
    line = one_line(run(["dmrl-train", "experiment=mine"], tmp_path, env, ok=False))
    assert line.endswith("experiment=mine: policy is now algo/policy (the policy, optimizer and sampler are part of "
                         "the algo's config)"), line
    (tmp_path / "conf/experiment/mine.yaml").write_text("# @package _global_\npolicy:\n  hidden_sizes: [8]\n")
    line = one_line(run(["dmrl-train", "experiment=mine"], tmp_path, env, ok=False))
    assert "policy is set at the top level (by a preset?): policy is now algo.policy" in line, line
    assert not (tmp_path / "outputs").exists()


def one_line(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    return lines[0]


def _write_checkpoints(tmp: Path) -> dict[str, tuple[Path, str]]:
    truncated = tmp / "truncated.pt"
    good = tmp / "run/checkpoints/last.pt"
    truncated.write_bytes(good.read_bytes()[:2000])
    foreign = tmp / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, foreign)
    text = tmp / "text.pt"
    text.write_text("hello")
    readme = tmp / "notes.md"
    readme.write_text("# not a checkpoint\n" * 50)
    return {
        "missing": (tmp / "nope.pt", "does not exist"),
        "truncated": (truncated, "truncated"),
        "foreign": (foreign, "not a dmrl checkpoint"),
        "text": (text, "truncated or not a torch checkpoint"),
        "markdown": (readme, "not a torch checkpoint"),
        "directory": (tmp / "run", "is a directory"),
    }


class Payload:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_bad_checkpoints_are_refused(tmp_path, cli_env):
    run(["dmrl-train", *SMOKE, "iterations=1", "hydra.run.dir=run"], tmp_path, cli_env)
    cases = _write_checkpoints(tmp_path)
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    good = torch.load(tmp_path / "run/checkpoints/last.pt", weights_only=True)
    good["algo"]["payload"] = Payload(str(marker))
    torch.save(good, evil)
    cases["pickled object"] = (evil, "refused")
    newer = tmp_path / "newer.pt"  # a config key this version's policy does not take (another dmrl version)
    good = torch.load(tmp_path / "run/checkpoints/last.pt", weights_only=True)
    config = OmegaConf.create(good["config"])
    config.algo.policy.frobnicate = 1
    good["config"] = OmegaConf.to_yaml(config)
    good["checksum"] = checksum({k: v for k, v in good.items() if k not in ("format", "version", "checksum")})
    torch.save(good, newer)
    cases["unknown policy key"] = (newer, "frobnicate")
    jobs = [(name, expect, cmd) for name, (path, expect) in cases.items()
            for cmd in (["dmrl-eval", f"checkpoint={path}"], ["dmrl-train", *SMOKE, f"resume={path}"])]
    for (name, expect, _), proc in zip(jobs, run_together([j[2] for j in jobs], tmp_path, cli_env)):
        assert proc.returncode != 0, name
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and expect in lines[0], (name, proc.stderr)
        assert "Traceback" not in proc.stderr
    assert not marker.exists()
    leftovers = [p for p in (tmp_path / "outputs").rglob("*") if p.is_dir() and p.parent.name != ".hydra"]
    assert not [p for p in leftovers if (p / ".hydra").is_dir()]  # failed jobs leave no empty run dirs


def test_eval_bad_options(tmp_path, cli_env):
    for args, key in ((["num_tasks=0", "checkpoint=x.pt"], "num_tasks"), (["adapt_steps=-1", "checkpoint=x.pt"], "adapt_steps"),
                      (["later_lr_scale=0", "checkpoint=x.pt"], "later_lr_scale"),
                      (["lr_scale=0", "checkpoint=x.pt"], "lr_scale"),
                      (["exploration_trajectories=0", "checkpoint=x.pt"], "exploration_trajectories"),
                      ([], "checkpoint"), (["checkpoint=x.pt", "bogus=1"], "bogus")):
        proc = run(["dmrl-eval", *args], tmp_path, cli_env, ok=False)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode != 0 and len(lines) == 1 and key in lines[0], proc.stderr


def test_rl2_train_then_eval_reports_trials_and_baselines(tmp_path, cli_env):
    run(["dmrl-train", "env=bandit", "algo=rl2", "iterations=2", "algo.meta_batch_size=8", "algo.trials_per_task=2",
         "algo.episodes_per_trial=4", "algo.policy.hidden_size=8", "logger=jsonl", "hydra.run.dir=run"], tmp_path, cli_env)
    recs = metrics(tmp_path / "run")
    assert [r["iteration"] for r in recs] == [1, 2] and recs[-1]["env_steps"] == 2 * 8 * 2 * 4
    for key in ("meta_train/trial_return", "meta_train/return_episode3", "meta_optim/approx_kl"):
        assert key in recs[-1]
    proc = run(["dmrl-eval", "checkpoint=run/checkpoints/last.pt", "num_tasks=50", "video=true", "hydra.run.dir=ev"],
               tmp_path, cli_env)
    report = json.loads((tmp_path / "ev/eval.json").read_text())
    assert report["num_tasks"] == 50 and len(report["episode_return_mean"]) == 4
    assert report["trial_return_mean"] == pytest.approx(sum(report["episode_return_mean"]), rel=1e-6)
    assert report["trial_return_ci95"] > 0
    assert set(report["baselines"]) == {"random", "greedy", "epsilon_greedy", "ucb1", "thompson", "bayes_optimal"}
    assert all(set(b) >= {"trial_return_mean", "trial_return_ci95"} for b in report["baselines"].values())
    assert "bayes_optimal" in proc.stdout and "films gradient-based learners only" in proc.stdout
