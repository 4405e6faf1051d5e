"""One logger for a training run: metrics.jsonl, TensorBoard and the console.

The x-axis of every TensorBoard scalar is environment steps (CleanRL's convention), so runs with
different batch sizes compare on the same axis.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

from tqdm import tqdm

METRICS_FILE = "metrics.jsonl"
PLAIN_EVERY_S = 60.0  # off a terminal, a progress line at least this often


def read_metrics(path: Path) -> list[dict]:
    """The records of a metrics.jsonl; a torn last line (a crash or power loss mid-write) is dropped,
    since the checkpoint it would belong to was never written."""
    with open(path) as f:
        lines = [line for line in f if line.strip()]
    records = []
    for i, line in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i != len(lines) - 1:
                raise
    return records


def _short(key: str) -> str:
    """``meta_train/return_pre_adapt`` -> ``pre``: the progress line's label of a metric."""
    name = key.rsplit("/", 1)[-1]
    return {"return_pre_adapt": "pre", "return_post_adapt": "post", "trial_return": "trial"}.get(name, name)


class RunLogger:
    def __init__(
        self,
        run_dir: Path,
        *,
        total_iterations: int,
        start_iteration: int = 0,
        start_env_steps: int = 0,
        tensorboard: bool = True,
        progress: bool = True,
        config_text: str | None = None,
        job: str | None = None,
        headline: tuple[str, ...] = ("meta_train/return_pre_adapt", "meta_train/return_post_adapt"),
    ) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / METRICS_FILE
        self._truncate_after(start_iteration)
        self._file = open(self.path, "a")
        self._writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step drops events a crashed run logged after its last checkpoint
            self._writer = SummaryWriter(str(self.run_dir / "tb"), purge_step=start_env_steps + 1 if start_iteration else None)
            if config_text and not start_iteration:
                self._writer.add_text("config", "```yaml\n" + config_text + "\n```", 0)
        self.total = total_iterations
        self._bar = None
        self._plain_every = max(1, total_iterations // 20)  # off a terminal: every 5%, ...
        self._t0 = self._last_print = time.perf_counter()
        self._job = f"{job}: " if job else ""
        self._headline = tuple(headline)  # the learner's HEADLINE: what the progress line shows  # a sweep job's lines name it (parallel jobs share stderr)
        self._start = start_iteration
        if progress and sys.stderr.isatty():
            self._bar = tqdm(total=total_iterations, initial=start_iteration, desc=f"{self._job}meta-train", unit="it",
                             dynamic_ncols=True)
        self._plain = progress and self._bar is None

    def _truncate_after(self, iteration: int) -> None:
        """On resume, keep only the records up to the checkpoint's iteration."""
        if not self.path.exists():
            return
        kept = [r for r in read_metrics(self.path) if r.get("iteration", 0) <= iteration] if iteration else []
        with open(self.path, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in kept)

    def log(self, record: dict) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        step = int(record["env_steps"])
        if self._writer is not None:
            for key, value in record.items():
                if key not in ("iteration", "env_steps") and isinstance(value, (int, float)) and math.isfinite(value):
                    self._writer.add_scalar(key, value, step)
        shown = {_short(k): float(record[k]) for k in self._headline if isinstance(record.get(k), (int, float))}
        it = record["iteration"]
        if self._bar is not None:
            self._bar.set_postfix({k: f"{v:.2f}" for k, v in shown.items()}, refresh=False)
            self._bar.update(1)
        elif self._plain and self._due(it):
            now = time.perf_counter()
            done = it - self._start
            eta = (now - self._t0) / max(done, 1) * (self.total - it)
            self._last_print = now
            values = "  ".join(f"{k} {v:.2f}" for k, v in shown.items())
            print(f"{self._job}iteration {it}/{self.total}  env_steps {step}  {values}  eta {eta:.0f}s",
                  file=sys.stderr, flush=True)

    def _due(self, it: int) -> bool:
        """Off a terminal: the first iteration (a line within the first minute), then every 5% or every
        minute, whichever comes first, and the last."""
        return (it == self._start + 1 or it % self._plain_every == 0 or it == self.total
                or time.perf_counter() - self._last_print >= PLAIN_EVERY_S)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
        self._file.close()
