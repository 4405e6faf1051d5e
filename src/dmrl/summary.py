"""``summary.json``: what a finished (or failed) run leaves for reports and for a re-launched sweep.

A run dir holds ``summary.json`` only once its job has ended: ``status`` is ``finished`` (every
iteration done, held-out evaluation included) or ``failed`` (with ``error``). A run dir with
metrics but no summary is unfinished: killed, preempted or still running.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from dmrl.checkpoint import atomic_write

SUMMARY_FILE = "summary.json"
FINISHED = "finished"
FAILED = "failed"


def _finite_or_none(x: Any) -> Any:
    # JSON has no NaN/inf; a report must not choke on a diverged run's numbers
    if isinstance(x, dict):
        return {k: _finite_or_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite_or_none(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def provenance(device: object = None) -> dict[str, Any]:
    """What produced a run: dmrl's version and git commit, the libraries' versions, the device used
    and the library that computed its float32 CPU matrix products (``matmul``)."""
    import platform
    import subprocess
    from importlib import metadata

    from dmrl.matmul import current as current_matmul

    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    commit = None
    try:
        repo = Path(__file__).resolve().parent
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        commit = out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        pass
    return {"versions": {"dmrl": version("dmrl"), "git_commit": commit, "python": platform.python_version(),
                         **{n: version(n) for n in ("torch", "gymnasium", "mujoco", "hydra-core", "numpy")}},
            "device": None if device is None else str(device), "matmul": current_matmul()}


def write_summary(run_dir: Path, summary: dict[str, Any]) -> Path:
    """Write ``summary.json`` atomically: a reader never sees half a file."""
    path = Path(run_dir) / SUMMARY_FILE
    text = json.dumps(_finite_or_none(summary), indent=2) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))
    return path


def read_summary(run_dir: Path, *, strict: bool = False) -> dict[str, Any] | None:
    """The run's summary, or None when it has none.

    A summary that cannot be used (not JSON, not an object, or a field of the wrong type, e.g. a
    string ``objective``) is None as well, so that a re-launched sweep runs that job again; with
    ``strict=True`` it raises ``ValueError`` saying what is wrong instead (dmrl-report lists such a
    run as corrupt rather than as unfinished).
    """
    path = Path(run_dir) / SUMMARY_FILE
    if not path.is_file():
        return None

    def number(x: Any) -> bool:
        return x is None or (isinstance(x, (int, float)) and not isinstance(x, bool))

    def numbers(x: Any) -> bool:
        return x is None or (isinstance(x, list) and all(map(number, x)))

    def shown(x: Any) -> str:
        r = repr(x)
        return r if len(r) <= 60 else r[:57] + "..."

    # field -> (is it well-typed, what it must be); every field is optional except status
    checks = {
        "status": (lambda x: x in (FINISHED, FAILED), f"{FINISHED!r} or {FAILED!r}"),
        "objective": (number, "a number or null"),
        "objective_name": (lambda x: isinstance(x, str), "a string"),
        "iteration": (number, "a number"),
        "env_steps": (number, "a number"),
        "wall_time_s": (number, "a number or null"),
        "train_time_s": (number, "a number or null"),
        "error": (lambda x: x is None or isinstance(x, str), "a string"),
        "overrides": (lambda x: isinstance(x, list) and all(isinstance(o, str) for o in x), "a list of strings"),
        "final": (lambda x: x is None or isinstance(x, dict), "an object or null"),
        "heldout": (lambda x: x is None or isinstance(x, dict), "an object or null"),
    }
    nested = {  # the numbers a report reads inside final and heldout
        "final": {k: (number, "a number or null") for k in
                  ("iteration", "env_steps", "meta_train/return_pre_adapt", "meta_train/return_post_adapt")},
        "heldout": {**{k: (numbers, "a list of numbers") for k in
                       ("return_mean", "return_ci95", "episode_return_mean", "episode_return_ci95")},
                    **{k: (number, "a number or null") for k in ("trial_return_mean", "trial_return_ci95")}},
    }
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError(f"a JSON object is expected, got {type(data).__name__}")
        if "status" not in data:
            raise ValueError("no status")
        for key, (ok, what) in checks.items():
            if key in data and not ok(data[key]):
                raise ValueError(f"{key} must be {what}, got {shown(data[key])}")
        for outer, inner in nested.items():
            for key, (ok, what) in inner.items():
                if isinstance(data.get(outer), dict) and key in data[outer] and not ok(data[outer][key]):
                    raise ValueError(f"{outer}.{key} must be {what}, got {shown(data[outer][key])}")
    except (OSError, ValueError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        if strict:
            reason = f"not JSON ({e})" if isinstance(e, json.JSONDecodeError) else str(e)
            raise ValueError(f"{path}: {reason}") from None
        return None
    return data
