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


def write_summary(run_dir: Path, summary: dict[str, Any]) -> Path:
    """Write ``summary.json`` atomically: a reader never sees half a file."""
    path = Path(run_dir) / SUMMARY_FILE
    text = json.dumps(_finite_or_none(summary), indent=2) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))
    return path


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    """The run's summary, or None when it has none (or an unreadable one: treated as unfinished)."""
    path = Path(run_dir) / SUMMARY_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
