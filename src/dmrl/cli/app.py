"""What both commands share: Hydra entry, up-front checks of the command line, one-line errors.

Before Hydra starts any job, every override on the command line is composed once (each value of
a sweep included) and the result checked, so a bad key, group option, type or value stops the
command with one line that names the key and what is allowed, and no traceback. Hydra's own
multi-line reports never reach a user for these mistakes.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from dmrl.config import CONF_DIR, Rule, validate
from dmrl.errors import DmrlError

PASS_THROUGH_FLAGS = {"-h", "--help", "--hydra-help", "--info", "--version", "--shell-completion", "-sc"}
FLAGS_WITH_VALUE = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn",
                    "--config-dir", "-cd", "--experimental-rerun"}


def overrides_of(args: list[str]) -> list[str]:
    """The ``key=value`` overrides of a Hydra command line (flags and their values removed)."""
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a in FLAGS_WITH_VALUE:
            skip = True
        elif not a.startswith("-"):
            out.append(a)
    return out


def fail(prog: str, message: str, code: int = 2) -> None:
    print(f"{prog}: error: {message}", file=sys.stderr)
    sys.exit(code)


def _variants(overrides: list[str]) -> list[list[str]]:
    """Override lists that together cover every value of every sweep once."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    choices: list[list[str]] = []
    for o in parsed:
        key = o.get_key_element()
        if key.lstrip("+~").startswith("hydra."):  # Hydra's own keys (hydra/launcher=... is composed)
            continue
        if o.is_sweep_override():
            choices.append([f"{key}={v}" for v in o.sweep_string_iterator()])
        else:
            choices.append([o.input_line])
    base = [c[0] for c in choices]
    variants = [base]
    for i, c in enumerate(choices):
        for value in c[1:]:
            variants.append(base[:i] + [value] + base[i + 1 :])
    return variants


def _allowed_keys(compose: Callable, config_name: str, overrides: list[str], key: str) -> str:
    parent = key.rpartition(".")[0]
    try:
        cfg = compose(config_name=config_name, overrides=overrides)
        node = OmegaConf.select(cfg, parent) if parent else cfg
        keys = sorted(str(k) for k in node.keys() if not str(k).startswith("_")) if isinstance(node, DictConfig) else []
    except Exception:
        keys = []
    where = f"under {parent}" if parent else "at the top level"
    return f"allowed keys {where}: {', '.join(keys)}" if keys else "no such key"


def explain(exc: Exception, override: str, compose: Callable, config_name: str, others: list[str]) -> str:
    """One line for a Hydra composition error caused by ``override``."""
    from hydra.errors import MissingConfigException

    key = override.split("=", 1)[0].lstrip("+~")
    missing = str(getattr(exc, "missing_cfg_file", "") or "")
    if isinstance(exc, MissingConfigException) and missing.startswith(("hydra/launcher/", "hydra/sweeper/")) \
            and not key.startswith("hydra/"):
        return f"{override} needs the Hydra plugin for {missing}, which is not installed: pip install -e '.[sweep]'"
    if isinstance(exc, MissingConfigException):
        options = getattr(exc, "options", None) or []
        group = key.replace(".", "/")
        value = override.split("=", 1)[1] if "=" in override else ""
        return f"{group}={value}: no such option; allowed: {', '.join(sorted(options)) or 'none'}"
    text = str(exc)
    if "not in struct" in text or "Could not override" in text or "Could not append" in text:
        return f"{key}: unknown key; {_allowed_keys(compose, config_name, others, key)}"
    return text.strip().splitlines()[0]


def precheck(prog: str, config_name: str, args: list[str], rules: dict[str, Rule]) -> None:
    if "--experimental-rerun" in args:  # Hydra unpickles .hydra/config.pickle: a run dir's file would run code
        fail(prog, "--experimental-rerun loads a pickled config, which can run code; dmrl does not allow it: "
                   "continue a run with resume=RUN_DIR/checkpoints/last.pt")
    if any(a in PASS_THROUGH_FLAGS for a in args):
        return
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    overrides = overrides_of(args)
    try:
        variants = _variants(overrides)
    except (HydraException, OmegaConfBaseException) as e:
        fail(prog, f"cannot parse the command line: {str(e).strip().splitlines()[0]}")
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR), job_name=prog):
        for variant in variants:
            try:
                cfg = compose(config_name=config_name, overrides=variant)
            except (HydraException, OmegaConfBaseException, ValueError) as e:
                culprit = _culprit(compose, config_name, variant) or (variant[-1] if variant else "")
                others = [v for v in variant if v != culprit]
                fail(prog, explain(e, culprit, compose, config_name, others))
            try:
                validate(cfg, rules)
            except DmrlError as e:
                fail(prog, str(e))


def _culprit(compose: Callable, config_name: str, variant: list[str]) -> str | None:
    """The first override that makes composition fail when added to the ones before it."""
    for i in range(len(variant)):
        try:
            compose(config_name=config_name, overrides=variant[: i + 1])
        except Exception:
            return variant[i]
    return None


def discard_if_empty(run_dir: Path) -> None:
    """Remove a Hydra run dir that holds nothing but Hydra's own files (a job that did no work)."""
    if not run_dir.is_dir():
        return
    for p in run_dir.iterdir():
        if p.name != ".hydra" and not (p.suffix == ".log" and p.stat().st_size == 0):
            return
    shutil.rmtree(run_dir, ignore_errors=True)


def run(prog: str, config_name: str, rules: dict[str, Rule], body: Callable[[DictConfig], object]) -> None:
    """Check the command line, then hand it to Hydra with ``body`` as the job."""
    import hydra

    precheck(prog, config_name, sys.argv[1:], rules)

    @hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=config_name)
    def job(cfg: DictConfig) -> object:
        try:
            return body(cfg)
        except DmrlError as e:
            discard_if_empty(Path(HydraConfig.get().runtime.output_dir))
            if HydraConfig.get().mode == RunMode.MULTIRUN:  # the other jobs go on (cli/sweep.py)
                from dmrl.cli.sweep import record_failure

                return record_failure(prog, str(e))
            fail(prog, str(e), e.exit_code)
        except KeyboardInterrupt:
            fail(prog, "interrupted; the last completed iteration's checkpoint is intact", 130)

    job()
