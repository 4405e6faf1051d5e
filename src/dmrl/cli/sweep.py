"""A sweep (Hydra multirun) goes on past a failed job and ends by naming the jobs that failed.

Without this, the first job that raises a user-facing error ends the whole sweep (and, with a
parallel launcher, its running siblings). Instead the job prints its one-line error, appends it to
``<sweep dir>/failed_jobs.log`` (a file, because jobs may run in other processes or on other
machines) and returns NaN as its objective (Optuna records the trial as failed); when the sweep
ends, :class:`SweepOutcome` prints one line and exits non-zero if any job of this launch failed.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

FAILED_LOG = "failed_jobs.log"


def record_failure(prog: str, message: str) -> float:
    """Called by a failed job of a sweep; returns the job's objective (NaN)."""
    hc = HydraConfig.get()
    run_dir = hc.runtime.output_dir
    # one write of the whole line: jobs running side by side share stderr, and a line must not be split
    sys.stderr.write(f"{prog}: error: job {hc.job.num} ({run_dir}): {message}\n")
    sys.stderr.flush()
    with open(Path(hc.sweep.dir) / FAILED_LOG, "a") as f:  # one short append per job: whole lines
        f.write(f"{run_dir}\t{message}\n")
    return float("nan")


class SweepOutcome(Callback):
    """Hydra callback (hydra.callbacks in train.yaml): a sweep with failed jobs exits with status 3."""

    def __init__(self, prog: str) -> None:
        self.prog = prog

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        (Path(config.hydra.sweep.dir) / FAILED_LOG).unlink(missing_ok=True)  # failures of an earlier launch are retried now

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        log = Path(config.hydra.sweep.dir) / FAILED_LOG
        failed = log.read_text().splitlines() if log.is_file() else []
        if failed:
            print(f"{self.prog}: error: {len(failed)} job(s) of the sweep failed, the others ran (listed in {log}; "
                  f"dmrl-report {config.hydra.sweep.dir} shows them)", file=sys.stderr)
            sys.exit(3)
