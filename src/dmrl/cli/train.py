"""dmrl-train: meta-train a policy (``dmrl-train env=point_nav algo=maml``)."""

from __future__ import annotations

import errno
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from dmrl.cli.app import discard_if_empty, help_text, run
from dmrl.config import EVAL_POLICIES, TRAIN_RULES, group_options, validate
from dmrl.errors import CheckpointError, ConfigError, DmrlError, Interrupted, StorageError, Terminated
from dmrl.learner import PARTS
from dmrl.summary import SUMMARY_FILE, provenance
from dmrl.stored import stored_config

# What a resumed run may change, when typed on the command line; everything else comes from the
# checkpoint so that the run continues exactly as it started.
RUNTIME_KEYS = ("iterations", "device", "checkpoint", "logger", "final_eval", "overwrite")
# Step sizes and the trust region: what the advice after a diverged run asks to lower. A resume
# takes them when typed and says so (the run then continues with the smaller step, not exactly).
TUNABLE_KEYS = ("algo.inner_lr", *(f"algo.meta_optimizer.{k}" for k in (
    "max_kl", "lr", "cg_damping", "ls_backtrack_ratio", "ls_max_steps", "clip", "max_grad_norm")))


def _is_runtime(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in RUNTIME_KEYS)


def node(key: str) -> str:
    """The config path a group override sets (``algo/policy=gru`` sets ``algo.policy``)."""
    return key.replace("/", ".")


def moved_key(override: str) -> str | None:
    """One line for a key typed in its place from before the policy, meta-optimizer and sampler became
    the algo's (``policy.hidden_sizes=...``, ``meta_optimizer=adam``, ``~sampler``, a sweep's
    ``hydra.sweeper.params.meta_optimizer.max_kl``): the key it is now. None for any other override."""
    body = override.lstrip("+~")
    prefix, (key, eq, value) = override[: len(override) - len(body)], body.partition("=")
    params = "hydra.sweeper.params."
    where = params if key.startswith(params) else ""
    rest = key[len(where):]
    if rest.replace("/", ".").split(".")[0] not in PARTS:
        return None
    if rest == "policy" and value in EVAL_POLICIES:  # dmrl-eval's policy=random: nothing to train
        return (f"policy={value} is dmrl-eval's, with nothing to train (dmrl-eval env=ENV policy={value} scores it); "
                f"dmrl-train's policy is the algo's: algo/policy={'|'.join(group_options('algo/policy'))}")
    if "." in rest or where:
        old, new = key, f"{where}algo{'.' if '.' in rest else '/'}{rest}"
    else:  # a group choice: policy=gru is algo/policy=gru
        old, new = f"{prefix}{key}{eq}{value}", f"{prefix}algo/{key}{eq}{value}"
    return f"{old} is now {new} (the policy, optimizer and sampler are part of the algo's config)"


def resume_config(cfg: DictConfig, saved_yaml: str, typed: list[str], source: str = "checkpoint") -> DictConfig:
    """The checkpoint's config, with the runtime and step-size keys the user typed (``typed``: the overrides).

    Other typed overrides cannot apply to a run that must continue exactly; each is reported.
    """
    saved = stored_config(saved_yaml, source)
    for override in typed:
        key, _, value = override.lstrip("+~").partition("=")
        if key == "resume" or key.startswith("hydra"):
            continue
        if _is_runtime(key):
            OmegaConf.update(saved, key, OmegaConf.select(cfg, key), force_add=True, merge=False)
        elif key in TUNABLE_KEYS and OmegaConf.select(saved, key, default=None) is not None:
            old, new = OmegaConf.select(saved, key), OmegaConf.select(cfg, key)
            if old != new:
                OmegaConf.update(saved, key, new, merge=False)
                print(f"dmrl-train: resume changes {key}: {old} -> {new}", file=sys.stderr)
        elif "." not in key and OmegaConf.select(saved, f"{node(key)}._target_", default=None) is not None \
                and OmegaConf.select(saved, f"{node(key)}._target_") == OmegaConf.select(cfg, f"{node(key)}._target_",
                                                                                     default=None):
            continue  # a group choice that names the checkpoint's own component (algo=rl2 on an RL² run)
        elif OmegaConf.select(saved, node(key), default=None) != OmegaConf.select(cfg, node(key), default=None):
            print(f"dmrl-train: warning: resume ignores {override}: a resumed run keeps its checkpoint's "
                  f"{key} (only {', '.join(RUNTIME_KEYS)} and the step sizes {', '.join(TUNABLE_KEYS)} may change)",
                  file=sys.stderr)
    for key in RUNTIME_KEYS:  # keys newer than the checkpoint take today's values
        if OmegaConf.select(saved, key, default=None) is None and OmegaConf.select(cfg, key, default=None) is not None:
            OmegaConf.update(saved, key, OmegaConf.select(cfg, key), force_add=True, merge=False)
    OmegaConf.update(saved, "resume", cfg.resume, force_add=True)
    validate(saved, TRAIN_RULES)  # a step size typed on resume obeys the same rules as on a fresh run
    return saved


def _training_part(config: dict) -> dict:
    """The keys that decide what a run computes (runtime keys and ``resume`` dropped)."""
    return {k: v for k, v in config.items() if k not in RUNTIME_KEYS and k != "resume"}


def _first_difference(a: Any, b: Any, prefix: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), f"{prefix}{k}.")
    return f"{prefix.rstrip('.')}: {a} there, {b} now"


def previous_run(cfg: DictConfig, run_dir: Path) -> tuple[dict | None, dict | None]:
    """What a re-launched sweep job finds in its run dir: (summary of a finished run, checkpoint to resume).

    Both are None for a fresh job. A run dir that holds a run of another config (the grid changed
    under the same ``hydra.sweep.dir``) is an error rather than a silent restart or a wrong skip.
    """
    from dmrl.checkpoint import load_checkpoint
    from dmrl.loop import CHECKPOINT_DIR
    from dmrl.summary import FINISHED, read_summary

    ckpt = run_dir / CHECKPOINT_DIR / "last.pt"
    if not ckpt.is_file():
        return None, None
    state = load_checkpoint(ckpt)
    stored = _training_part(OmegaConf.to_container(stored_config(state["config"], f"checkpoint {ckpt}"), resolve=True))
    now = _training_part(OmegaConf.to_container(cfg, resolve=True))
    if stored != now:
        raise ConfigError(f"hydra.sweep.dir: {run_dir} already holds a run of another config "
                          f"({_first_difference(stored, now)}); re-launch the same sweep or choose a new hydra.sweep.dir")
    summary = read_summary(run_dir)
    if summary is not None and summary.get("status") == FINISHED and int(state["iteration"]) >= int(cfg.iterations):
        return summary, None
    return None, state


def _overrides(run_dir: Path) -> list[str]:
    """The command line that made the run (a resumed run keeps its first command's; a branch its parent's)."""
    from dmrl.rundir import read_parent

    parent = read_parent(run_dir)
    if parent is not None and Path(parent.get("run_dir", "")).is_dir():
        return _overrides(Path(parent["run_dir"]))
    path = run_dir / ".hydra" / "overrides.yaml"
    if path.is_file():
        try:
            return [str(o) for o in OmegaConf.load(path)]
        except Exception:  # a damaged file: the command line of this launch is the best record left
            pass
    return [str(o) for o in HydraConfig.get().overrides.task]


def _continues_in_place(ckpt: Path, state: dict) -> bool:
    """Whether resuming ``ckpt`` continues its run dir: it is the run's newest checkpoint.

    An older one (``iter_000400.pt`` of a run at 500) would cut the run's later iterations, so it
    continues in a new run dir instead (a branch, :func:`dmrl.rundir.start_branch`).
    """
    from dmrl.checkpoint import load_checkpoint
    from dmrl.errors import CheckpointError

    last = ckpt.parent / "last.pt"
    if ckpt.name == "last.pt" or not last.is_file():
        return True
    try:
        newest = int(load_checkpoint(last)["iteration"])
    except CheckpointError:  # last.pt is damaged: the checkpoint given is the best one left
        return True
    return int(state["iteration"]) >= newest


def _interrupted(e: KeyboardInterrupt, run_dir: Path) -> DmrlError:
    """One line for Ctrl-C or SIGTERM: where the last checkpoint is and the command that resumes it."""
    from dmrl.checkpoint import load_checkpoint
    from dmrl.loop import CHECKPOINT_DIR

    last = run_dir / CHECKPOINT_DIR / "last.pt"
    cause = "SIGTERM" if isinstance(e, Terminated) else "Ctrl-C"
    try:
        where = f"the last checkpoint is {last} (iteration {int(load_checkpoint(last)['iteration'])})"
        advice = f"resume with: dmrl-train resume={_quoted(last)}"
    except DmrlError:
        where, advice = "no checkpoint was written yet", "start the run again"
    error = Interrupted(f"interrupted by {cause}; {where}; {advice}")
    error.exit_code = 143 if cause == "SIGTERM" else 130
    return error


def _quoted(path: Path) -> str:
    return shlex.quote(str(path))  # a path as the shell reads it back (quoted only where needed)


def _storage_error(e: OSError, run_dir: Path) -> DmrlError:
    """One line for a write that failed (disk full, read-only, ...); the atomic writes kept the last checkpoint."""
    from dmrl.loop import CHECKPOINT_DIR

    last = run_dir / CHECKPOINT_DIR / "last.pt"
    what = "disk full" if e.errno == errno.ENOSPC else (e.strerror or type(e).__name__).lower()
    target = f" writing {e.filename}" if e.filename else ""
    kept = (f"the last checkpoint {last} is intact; free space (or fix the permissions) and resume with: "
            f"dmrl-train resume={_quoted(last)}") if last.is_file() else "no checkpoint was written"
    return StorageError(f"{what}{target}; {kept}")


def _occupied(run_dir: Path) -> ConfigError:
    return ConfigError(f"hydra.run.dir: {run_dir} already holds a run; continue it with "
                       f"resume={_quoted(run_dir / 'checkpoints' / 'last.pt')}, choose a fresh hydra.run.dir, "
                       "or replace it with overwrite=true")


def _prepare_run_dir(cfg: DictConfig, run_dir: Path, fresh: bool) -> None:
    """Lock the run dir, clean what a kill left, and refuse to write a fresh run over an old one."""
    from dmrl.rundir import clean_stale_temp, clear, holds_run, lock

    lock(run_dir)
    for p in clean_stale_temp(run_dir):
        print(f"dmrl-train: removed {p}, left by a write that was interrupted", file=sys.stderr)
    if fresh and holds_run(run_dir):
        if not cfg.overwrite:
            raise _occupied(run_dir)
        clear(run_dir)


def train_job(cfg: DictConfig) -> float:
    from dmrl.build import build
    from dmrl.checkpoint import load_checkpoint
    from dmrl.loggers.run_logger import METRICS_FILE, read_metrics
    from dmrl.loop import CHECKPOINT_DIR, restore, train
    from dmrl.rundir import start_branch
    from dmrl.summary import FINISHED, read_summary

    t_start = time.perf_counter()
    hydra_dir = Path(HydraConfig.get().runtime.output_dir)
    run_dir, state, parent, in_place = hydra_dir, None, None, False
    if cfg.resume:
        ckpt = Path(cfg.resume).expanduser().resolve()
        state = load_checkpoint(ckpt)
        cfg = resume_config(cfg, state["config"], list(HydraConfig.get().overrides.task), f"checkpoint {ckpt}")
        if ckpt.parent.name == CHECKPOINT_DIR:
            if _continues_in_place(ckpt, state):
                run_dir, in_place = ckpt.parent.parent, True  # continue the original run dir
            else:
                parent = ckpt.parent.parent  # a branch in this launch's own run dir
    sweep_job = not cfg.resume and HydraConfig.get().mode == RunMode.MULTIRUN
    # a fresh run, and a branch (it starts a dir of its own), may not land on another run's files
    # (a resume of a checkpoint outside any run's checkpoints/ starts this launch's dir too)
    _prepare_run_dir(cfg, run_dir, fresh=(not cfg.resume and not sweep_job) or (bool(cfg.resume) and not in_place))
    if sweep_job:  # a re-launched sweep: skip or resume this job
        finished, state = previous_run(cfg, run_dir)
        if finished is not None:
            print(f"already finished: {run_dir} (iteration {finished.get('iteration')}); not run again")
            objective = finished.get("objective")
            return float("nan") if objective is None else float(objective)
    parts = build(cfg)
    start = restore(parts, state, cfg.resume or run_dir / CHECKPOINT_DIR / "last.pt") if state is not None else (0, 0)
    if run_dir != hydra_dir:  # resumed into the original run dir
        discard_if_empty(hydra_dir)
    if parent is not None:
        records = read_metrics(parent / METRICS_FILE) if (parent / METRICS_FILE).is_file() else []
        start_branch(run_dir, parent, ckpt, start[0], records)
        print(f"resuming {ckpt} at iteration {start[0]} into a new run dir {run_dir}: {parent} has later "
              f"iterations, which are kept (parent.json names the branch's origin)", file=sys.stderr)
    elif state is not None:
        print(f"resuming {cfg.resume or run_dir / CHECKPOINT_DIR / 'last.pt'} at iteration {start[0]} into {run_dir}",
              file=sys.stderr)
    summary = read_summary(run_dir)
    if start[0] >= int(cfg.iterations) and summary is not None and summary.get("status") == FINISHED:
        print(f"nothing to do: {run_dir} finished at iteration {start[0]} >= iterations={cfg.iterations}; "
              f"extend it with iterations=N (N > {start[0]})")
        return float("nan") if summary.get("objective") is None else float(summary["objective"])
    if start[0] < int(cfg.iterations):  # the run goes on: an old "finished" summary no longer holds
        (run_dir / SUMMARY_FILE).unlink(missing_ok=True)
    print(f"run dir: {run_dir}  (tensorboard --logdir {_quoted(run_dir)})", flush=True)
    if parts.env.engine:
        print(f"physics: {parts.env.engine}", flush=True)
    try:
        try:
            record = train(
                parts,
                iterations=int(cfg.iterations),
                run_dir=run_dir,
                checkpoint_every=int(cfg.checkpoint.every),
                checkpoint_keep=int(cfg.checkpoint.keep),
                buffers=bool(cfg.checkpoint.get("buffers", True)),
                tensorboard=bool(cfg.logger.tensorboard),
                progress=bool(cfg.logger.progress),
                start=start,
                job=_job_name(),
            )
            if not record and start[0] > 0:  # every iteration done, but killed before its summary: complete it
                records = [r for r in read_metrics(run_dir / METRICS_FILE) if int(r["iteration"]) == start[0]]
                if not records:
                    raise CheckpointError(f"{run_dir / METRICS_FILE} has no record of iteration {start[0]}, "
                                          "the checkpoint's; the run's metrics were damaged")
                record = records[-1]
                print(f"completing {run_dir}: iteration {start[0]} was reached before; running the missing "
                      "held-out evaluation and summary", file=sys.stderr)
            heldout = _final_eval(parts, cfg) if record else None
        except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM: the run stays unfinished and resumable
            raise _interrupted(e, run_dir) from None
        except OSError as e:
            raise _storage_error(e, run_dir) from None
    except Exception as e:  # listed as failed by dmrl-report; Ctrl-C and kills leave the run unfinished instead
        if isinstance(e, Interrupted):
            raise
        from dmrl.summary import FAILED, write_summary

        error = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        try:
            write_summary(run_dir, {"status": FAILED, "error": error, "overrides": _overrides(run_dir),
                                    "wall_time_s": time.perf_counter() - t_start, **provenance(parts.device)})
        except OSError:  # the disk that failed the run cannot take its summary either
            pass
        raise
    objective = _write_finished_summary(run_dir, record, heldout, time.perf_counter() - t_start, parts.device,
                                        parent)
    name = objective_of(heldout, record)[0]
    print(f"done: iteration {record['iteration']}, env_steps {record['env_steps']}, "
          + ", ".join(f"{k.split('/')[-1]} {record[k]:.3f}" for k in headline(parts) if k in record))
    if heldout is not None:
        print(f"held-out ({heldout['num_tasks']} tasks): {name} {objective:.3f}")
    print(f"run dir: {run_dir}\ncheckpoint: {run_dir / CHECKPOINT_DIR / 'last.pt'}")
    return objective


def _job_name() -> str | None:
    """A sweep job's name for its progress lines (parallel jobs share one terminal)."""
    hc = HydraConfig.get()
    return f"job {hc.job.num}" if hc.mode == RunMode.MULTIRUN else None


def headline(parts) -> tuple[str, ...]:
    """The metrics a learner wants shown first (declared by the learner: ``HEADLINE``)."""
    return tuple(parts.algo.HEADLINE)


def _final_eval(parts, cfg: DictConfig) -> dict | None:
    """Adapt to held-out tasks with the trained meta-policy: the sweep's objective, less noisy and
    less biased than the last training meta-batch's return."""
    from dmrl.evaluation import evaluate

    num_tasks = int(cfg.final_eval.num_tasks)
    if num_tasks == 0:
        return None
    result = evaluate(parts, num_tasks=num_tasks, seed=int(cfg.final_eval.seed))  # the learner's final_budget()
    return {"seed": int(cfg.final_eval.seed), **{k: v for k, v in result.items() if not k.startswith("per_task")}}


def objective_of(heldout: dict | None, record: dict) -> tuple[str, float]:
    """The job's objective: the held-out objective the learner's meta-test names (the return after
    adapting, the trial's return, ...); without a final evaluation, the last meta-batch's post-adaptation return."""
    if heldout is None:
        return "meta_train/return_post_adapt", float(record["meta_train/return_post_adapt"])
    return str(heldout["objective_name"]), float(heldout["objective"])


def _write_finished_summary(run_dir: Path, record: dict, heldout: dict | None, wall_s: float, device,
                            parent: Path | None = None) -> float:
    """Write ``summary.json`` of a finished run; returns the job's objective."""
    from dmrl.loggers.run_logger import METRICS_FILE, read_metrics
    from dmrl.summary import FINISHED, write_summary

    name, objective = objective_of(heldout, record)
    records = read_metrics(run_dir / METRICS_FILE)
    write_summary(run_dir, {
        "status": FINISHED,
        "objective": objective,
        "objective_name": name,
        "iteration": int(record["iteration"]),
        "env_steps": int(record["env_steps"]),
        "wall_time_s": wall_s,  # this job's wall clock (a resumed run: since its last launch)
        "train_time_s": sum(r.get("time/iteration_s", 0.0) for r in records),  # every meta-iteration, resumes included
        "final": record,
        "heldout": heldout,
        "overrides": _overrides(run_dir),
        **({"parent": str(parent)} if parent is not None else {}),
        **provenance(device),
    })
    return objective


HELP = """Meta-train a policy on a distribution of tasks: Hydra composes an env (task family), its
task distribution and a meta-learner with its own policy, meta-optimizer and sampler from conf/;
the run writes metrics.jsonl, TensorBoard events, atomic checkpoints (every RNG state) and
summary.json into its run dir, and ends with an adaptation test on held-out tasks."""


def _check_train(cfg: DictConfig, multirun: bool) -> None:
    """dmrl-train's own checks of a composed command line (:func:`dmrl.cli.app.precheck`)."""
    for key in PARTS:  # a preset of one's own ($DMRL_CONFIG_PATH) that sets them in their old place
        if key in cfg:
            raise ConfigError(f"{key} is set at the top level (by a preset?): {key} is now algo.{key} (the policy, "
                              "optimizer and sampler are part of the algo's config: algo: {" + key + ": ...})")
    _check_fresh_run_dir(cfg, multirun)


def _check_fresh_run_dir(cfg: DictConfig, multirun: bool) -> None:
    """Before Hydra writes .hydra/ into it: a fresh run may not land on an old one (overwrite=true may)."""
    from dmrl.rundir import busy, holds_run, in_use

    if multirun:
        return
    run_dir = Path(str(cfg.hydra.run.dir))
    pid = in_use(run_dir)
    if pid is not None:  # before Hydra rewrites the running run's .hydra/
        raise ConfigError(busy(run_dir, pid))
    if cfg.resume or cfg.overwrite:
        return
    if holds_run(run_dir):
        raise _occupied(run_dir)


def _tunable_on_resume(args: list[str]) -> list[str]:
    """On resume, a step size of another learner's optimizer (algo.meta_optimizer.lr of an RL² checkpoint,
    while today's default group is TRPO) is added with ``++`` so that composition takes it;
    :func:`resume_config` applies it to the checkpoint's config, which has the key."""
    if not any(a.startswith("resume=") for a in args):
        return args
    return [f"++{a}" if a.split("=", 1)[0] in TUNABLE_KEYS else a for a in args]


def main() -> None:
    sys.argv[1:] = _tunable_on_resume(sys.argv[1:])
    run("dmrl-train", "train", TRAIN_RULES, train_job, check=_check_train, moved=moved_key,
        help=help_text("dmrl-train", "train", HELP,
                       "dmrl-train env=cheetah_vel algo=maml iterations=200 seed=1   "
                       "(resume: dmrl-train resume=RUN_DIR/checkpoints/last.pt)"))


if __name__ == "__main__":
    main()
