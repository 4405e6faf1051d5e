"""dmrl-report: turn runs and sweeps into one table (``dmrl-report outputs/multirun/<date>/<time>``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dmrl.cli.app import fail

PROG = "dmrl-report"


def main(argv: list[str] | None = None) -> None:
    from dmrl.cli.app import version

    p = argparse.ArgumentParser(
        prog=PROG,
        description="Group runs by config and report the mean and 95%% bootstrap interval across seeds of "
                    "each run's objective and final metrics, learning curves and held-out adaptation curves. "
                    "Failed and unfinished runs are listed, not averaged.",
        epilog="example: dmrl-report outputs/multirun/2026-12-02/07-30-00 --out results/lr_sweep",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"{PROG} (dmrl) {version()}")
    p.add_argument("dirs", nargs="+", type=Path, metavar="DIR", help="a run dir or a sweep dir (several allowed)")
    p.add_argument("--out", type=Path, default=None, help="where to write the report (default: the first DIR/report)")
    p.add_argument("--objective", choices=("objective", "success"), default="objective",
                   help="what the objective column holds: each run's own objective (default), or its held-out "
                        "success rate after adapting (envs that report success, e.g. Meta-World)")
    args = p.parse_args(argv)

    try:
        report(args)
    except KeyboardInterrupt:
        fail(PROG, "interrupted", 130)
    except Exception as e:  # a user sees one line, never a traceback
        fail(PROG, f"unexpected {type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}", 1)


def report(args: argparse.Namespace) -> None:
    from dmrl.report import REPORT_DIR, find_run_dirs, load_run, write_report

    run_dirs: dict[Path, None] = {}
    for d in args.dirs:
        if not d.is_dir():
            fail(PROG, f"{d} is not a directory")
        try:
            found = find_run_dirs(d)
        except OSError as e:
            fail(PROG, f"cannot search {d} for runs: {e.strerror or e}")
        if not found:
            fail(PROG, f"no runs under {d} (a run dir holds metrics.jsonl, summary.json or .hydra/overrides.yaml)")
        run_dirs.update(dict.fromkeys(f.resolve() for f in found))
    out = args.out or args.dirs[0] / REPORT_DIR
    where = "--out" if args.out else "the report dir (choose another with --out)"
    if out.exists() and not out.is_dir():
        fail(PROG, f"{where} {out} is an existing file, not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a parent that is a file, no permission, read-only file system
        fail(PROG, f"cannot create {where} {out}: {e.strerror or e}")
    runs = [load_run(d) for d in run_dirs]
    if args.objective == "success":
        from dmrl.report import use_success_as_objective

        use_success_as_objective(runs)
    for run in runs:
        for warning in run.warnings:
            print(f"{PROG}: warning: {warning}", file=sys.stderr)
    try:
        text, paths = write_report(runs, out)
    except OSError as e:
        fail(PROG, f"cannot write the report into {out}: {e.strerror or e}"
                   + (f" ({e.filename})" if getattr(e, "filename", None) else ""))
    print(text)
    print("\nwrote " + ", ".join(str(p) for p in paths), file=sys.stdout)

if __name__ == "__main__":
    main()
