"""A run dir belongs to one run: locked while it trains, never silently reused, cut or mixed.

- :func:`lock` takes an OS lock (``flock``) on ``<run dir>/.lock`` that dies with the process, so
  two processes never write one run dir, and a killed run leaves no stale lock behind.
- :func:`holds_run` tells a fresh run that its dir already holds one (refused unless
  ``overwrite=true``, which :func:`clear` then honours).
- :func:`clean_stale_temp` removes the temp files a kill during an atomic write left behind
  (safe once the lock is held: no other writer exists).
- A resume from an older checkpoint than the run's newest continues in a new dir, a *branch*,
  whose ``parent.json`` names the run and checkpoint it came from (:func:`start_branch`); the
  original run is never cut.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
from pathlib import Path

from dmrl.checkpoint import atomic_write
from dmrl.errors import ConfigError

LOCK_FILE = ".lock"
PARENT_FILE = "parent.json"
CHECKPOINT_DIR = "checkpoints"
# What a run writes into its dir (besides Hydra's .hydra/ and the lock)
RUN_FILES = ("metrics.jsonl", "summary.json", PARENT_FILE)
RUN_DIRS = (CHECKPOINT_DIR, "tb")

_held: dict[Path, int] = {}  # run dir -> open lock fd, kept for the life of the process


def lock(run_dir: Path) -> None:
    """Hold ``run_dir``'s lock until this process exits; a second process gets a one-line error."""
    run_dir = Path(run_dir).resolve()
    if run_dir in _held:
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            os.close(fd)
            raise
        owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise ConfigError(busy(run_dir, owner)) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held[run_dir] = fd


def in_use(run_dir: Path) -> str | None:
    """The pid of the process that holds ``run_dir``'s lock now, or None (probing takes no lock)."""
    path = Path(run_dir) / LOCK_FILE
    if not path.is_file() or Path(run_dir).resolve() in _held:
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
    finally:
        os.close(fd)  # closing drops the probe's own lock
    return None


def holds_lock(run_dir: Path) -> bool:
    """Whether this process holds ``run_dir``'s lock."""
    return Path(run_dir).resolve() in _held


def unlock(run_dir: Path) -> None:
    fd = _held.pop(Path(run_dir).resolve(), None)
    if fd is not None:
        os.close(fd)


def busy(run_dir: Path, pid: str) -> str:
    return f"run dir {run_dir} is in use by another dmrl-train process (pid {pid}); wait for it, or choose another hydra.run.dir"


def holds_run(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds (part of) a training run: metrics, checkpoints or a summary."""
    run_dir = Path(run_dir)
    return any((run_dir / f).exists() for f in RUN_FILES) or any(
        (run_dir / d).is_dir() and any((run_dir / d).iterdir()) for d in RUN_DIRS)


def clear(run_dir: Path) -> None:
    """Remove an old run's files from ``run_dir`` (``overwrite=true``); Hydra's .hydra/ is the new run's."""
    run_dir = Path(run_dir)
    for f in RUN_FILES:
        (run_dir / f).unlink(missing_ok=True)
    for d in RUN_DIRS:
        shutil.rmtree(run_dir / d, ignore_errors=True)


def clean_stale_temp(run_dir: Path) -> list[Path]:
    """Delete ``.NAME.tmp-PID`` files of atomic writes that a kill interrupted; returns them."""
    run_dir = Path(run_dir)
    stale = [p for d in (run_dir, run_dir / CHECKPOINT_DIR) if d.is_dir() for p in d.glob(".*.tmp-*")]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def start_branch(branch_dir: Path, parent_dir: Path, checkpoint: Path, iteration: int,
                 parent_records: list[dict]) -> None:
    """Begin a branch: the parent's metrics up to ``iteration`` and a ``parent.json`` naming its origin."""
    branch_dir = Path(branch_dir)
    kept = [r for r in parent_records if int(r.get("iteration", 0)) <= iteration]
    text = "".join(json.dumps(r) + "\n" for r in kept)
    atomic_write(branch_dir / "metrics.jsonl", lambda f: f.write(text.encode()))
    parent = {"run_dir": str(Path(parent_dir).resolve()), "checkpoint": str(Path(checkpoint).resolve()),
              "iteration": int(iteration)}
    atomic_write(branch_dir / PARENT_FILE, lambda f: f.write((json.dumps(parent, indent=2) + "\n").encode()))


def read_parent(run_dir: Path) -> dict | None:
    try:
        data = json.loads((Path(run_dir) / PARENT_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
