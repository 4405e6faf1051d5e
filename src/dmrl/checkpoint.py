"""Atomic checkpoints that carry every random state, and a loader that never runs code.

A checkpoint holds only tensors and plain containers (dicts, lists, tuples, strings, numbers),
so it loads with ``torch.load(weights_only=True)``; the resolved config travels as YAML text.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import random
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from dmrl.errors import CheckpointError

FORMAT = "dmrl-checkpoint"
# 2: a checksum of the payload; 3: the config holds the policy, meta-optimizer and sampler under algo.
# Versions 1 and 2 still load (their configs are brought up to date: dmrl.stored.MIGRATIONS); an
# older dmrl refuses a version-3 checkpoint by its version instead of misreading its config.
VERSION = 3
READS = (1, 2, 3)


def global_rng_state() -> dict[str, Any]:
    """Python, numpy and torch global generators (numpy's key array as a tensor: no pickled arrays)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_global_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_as_tuple(state["python"]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(x: Any) -> Any:
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write ``path`` atomically: ``write`` fills a temp file in the same folder, which is fsynced
    and renamed over ``path`` (then the folder is fsynced), so a crash leaves the old file or the
    new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def checksum(payload: Any) -> str:
    """SHA-256 of a payload's content: every tensor's dtype, shape and bytes, every other value's
    repr, in key order. A flipped bit in tensor data (which torch.load reads without complaint and
    turns into plausible wrong numbers) changes it."""
    h = hashlib.sha256()

    def feed(x: Any) -> None:
        if isinstance(x, torch.Tensor):
            t = x.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(x, dict):
            h.update(b"{")
            for k in sorted(x, key=str):
                h.update(repr(k).encode())
                feed(x[k])
            h.update(b"}")
        elif isinstance(x, (list, tuple)):
            h.update(b"[" if isinstance(x, list) else b"(")
            for v in x:
                feed(v)
            h.update(b"]")
        else:
            h.update(repr(x).encode())

    feed(payload)
    return h.hexdigest()


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically (:func:`atomic_write`), with its :func:`checksum`."""
    data = {"format": FORMAT, "version": VERSION, **payload}
    data["checksum"] = checksum(payload)
    atomic_write(path, lambda f: torch.save(data, f))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load and check a dmrl checkpoint; any problem is a one-line :class:`CheckpointError`."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory; give a .pt file such as {path}/checkpoints/last.pt")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; anything else is not ours
        raise CheckpointError(f"checkpoint {path} is truncated or not a torch checkpoint (not a torch zip archive)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"checkpoint {path} was refused: it contains pickled objects other than tensors and plain "
            f"containers, which could run code ({str(e).splitlines()[-1][:120]})"
        ) from None
    except Exception as e:  # EOFError, RuntimeError, BadZipFile, KeyError, ...: not a readable torch file
        raise CheckpointError(f"checkpoint {path} is truncated or not a torch checkpoint ({type(e).__name__})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} is not a dmrl checkpoint (no '{FORMAT}' format marker)")
    if data.get("version") not in READS:
        raise CheckpointError(f"checkpoint {path} has format version {data.get('version')}; this dmrl reads "
                              f"versions {', '.join(map(str, READS))}")
    for key in ("config", "iteration", "env_steps", "algo", "rng"):
        if key not in data:
            raise CheckpointError(f"checkpoint {path} is incomplete: missing '{key}'")
    if data["version"] >= 2:
        payload = {k: v for k, v in data.items() if k not in ("format", "version", "checksum")}
        if data.get("checksum") != checksum(payload):
            raise CheckpointError(f"checkpoint {path} is damaged: its content does not match its checksum "
                                  "(a changed byte on disk or in transfer); use another checkpoint of the run")
    for key, kind in (("iteration", "a count"), ("env_steps", "a count")):
        value = data[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise CheckpointError(f"checkpoint {path} is damaged: '{key}' must be {kind} (an integer >= 0), got {value!r}")
    for key, kind in (("config", str), ("algo", dict), ("rng", dict)):
        if not isinstance(data[key], kind):
            raise CheckpointError(f"checkpoint {path} is damaged: '{key}' must be a {kind.__name__}, "
                                  f"got {type(data[key]).__name__}")
    bad = next((name for name, t in _tensors(data["algo"], "algo") if t.is_floating_point() and not torch.isfinite(t).all()),
               None)
    if bad is not None:
        raise CheckpointError(f"checkpoint {path} holds non-finite values in {bad}: it cannot be evaluated or resumed "
                              "(a run never saves them; the file was altered or written by other code)")
    return data


def _tensors(x: Any, path: str):
    """(path, tensor) of every tensor in a payload."""
    if isinstance(x, torch.Tensor):
        yield path, x
    elif isinstance(x, dict):
        for k, v in x.items():
            yield from _tensors(v, f"{path}.{k}")
    elif isinstance(x, (list, tuple)):
        for i, v in enumerate(x):
            yield from _tensors(v, f"{path}.{i}")


def restore_state(algo: Any, state: dict[str, Any], path: str | Path, tasks: Any = None) -> None:
    """Load a checkpoint's learner and random states into ``algo``; a state that does not fit the
    checkpoint's own config (a tensor of another shape, a missing or extra parameter, a bad
    generator state) is a one-line :class:`CheckpointError`. ``tasks`` (the run's task
    distribution) takes the checkpoint's fixed task pool, where it stored one."""
    try:
        algo.load_state_dict(state["algo"])
        if tasks is not None and state.get("tasks"):  # (older checkpoints and sampled streams: none)
            tasks.load_state_dict(state["tasks"])
        if "rng" in state:
            set_global_rng_state(state["rng"])
    except (RuntimeError, KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        text = " ".join(str(e).split())  # torch's shape/key reports span several lines
        raise CheckpointError(f"checkpoint {path} does not fit its own config ({type(e).__name__}: {text[:300]})") from None


BUFFERS_FORMAT = "dmrl-buffers"


def buffers_path(checkpoint: str | Path) -> Path:
    """Where a checkpoint's replay buffers lie: ``last.pt`` -> ``last.buffers.pt``."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(f"{checkpoint.stem}.buffers.pt")


def save_buffers(path: Path, iteration: int, buffers: dict[str, Any]) -> tuple[int, float]:
    """Write a learner's buffers (tensors and plain containers only) atomically beside its
    checkpoint, with the iteration they belong to and a checksum; returns (bytes on disk, seconds)."""
    t = time.perf_counter()
    payload = {"iteration": int(iteration), "buffers": buffers}
    data = {"format": BUFFERS_FORMAT, "version": 1, **payload, "checksum": checksum(payload)}
    atomic_write(path, lambda f: torch.save(data, f))
    return path.stat().st_size, time.perf_counter() - t


def load_buffers(path: Path, iteration: int) -> dict[str, Any] | None:
    """The buffers beside a checkpoint of ``iteration``; ``None`` where there is no such file.
    A truncated, damaged or foreign file, or one of another iteration, is a one-line
    :class:`CheckpointError`; loading never runs code (``weights_only``)."""
    path = Path(path)
    if not path.is_file():
        return None
    what = f"replay buffer file {path}"
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{what} is truncated or not a torch file; delete it to resume without buffers "
                              "(they are then refilled)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"{what} was refused: it contains pickled objects other than tensors and plain "
                              "containers, which could run code") from None
    except Exception as e:
        raise CheckpointError(f"{what} is truncated or not a torch file ({type(e).__name__})") from None
    if not isinstance(data, dict) or data.get("format") != BUFFERS_FORMAT:
        raise CheckpointError(f"{what} is not a dmrl buffer file (no '{BUFFERS_FORMAT}' format marker)")
    payload = {"iteration": data.get("iteration"), "buffers": data.get("buffers")}
    if data.get("checksum") != checksum(payload):
        raise CheckpointError(f"{what} is damaged: its content does not match its checksum")
    if payload["iteration"] != iteration:
        raise CheckpointError(f"{what} holds iteration {payload['iteration']}, its checkpoint iteration {iteration}: "
                              "they belong to different points of the run")
    return payload["buffers"]


def prune(directory: Path, keep: int, pattern: str = "iter_*.pt") -> None:
    """Delete all but the newest ``keep`` periodic checkpoints (names sort by iteration)."""
    for old in sorted(Path(directory).glob(pattern))[:-keep]:
        old.unlink(missing_ok=True)
