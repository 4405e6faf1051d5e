"""dmrl-report: turn runs and sweeps into one table (``dmrl-report outputs/multirun/<date>/<time>``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dmrl.cli.app import fail

PROG = "dmrl-report"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Group runs by config and report the mean and 95%% bootstrap interval across seeds of "
                    "each run's objective and final metrics, learning curves and held-out adaptation curves. "
                    "Failed and unfinished runs are listed, not averaged.")
    p.add_argument("dirs", nargs="+", type=Path, metavar="DIR", help="a run dir or a sweep dir (several allowed)")
    p.add_argument("--out", type=Path, default=None, help="where to write the report (default: the first DIR/report)")
    args = p.parse_args(argv)

    from dmrl.report import REPORT_DIR, find_run_dirs, load_run, write_report

    run_dirs: dict[Path, None] = {}
    for d in args.dirs:
        if not d.is_dir():
            fail(PROG, f"{d} is not a directory")
        found = find_run_dirs(d)
        if not found:
            fail(PROG, f"no runs under {d} (a run dir holds metrics.jsonl, summary.json or .hydra/overrides.yaml)")
        run_dirs.update(dict.fromkeys(f.resolve() for f in found))
    runs = [load_run(d) for d in run_dirs]
    out = args.out or args.dirs[0] / REPORT_DIR
    text, paths = write_report(runs, out)
    print(text)
    print("\nwrote " + ", ".join(str(p) for p in paths), file=sys.stdout)


if __name__ == "__main__":
    main()
