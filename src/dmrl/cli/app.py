"""What both commands share: Hydra entry, up-front checks of the command line, one-line errors.

Before Hydra starts any job, every override on the command line is composed once (each value of
a sweep included) and the result checked, so a bad key, group option, type or value stops the
command with one line that names the key and what is allowed, and no traceback. Hydra's own
multi-line reports never reach a user for these mistakes.
"""

from __future__ import annotations

import re
import shutil
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from dmrl.allocator import keep_freed_memory
from dmrl.config import CONF_DIR, Rule, group_options, searchpath_overrides, validate
from dmrl.errors import DmrlError, Interrupted, Terminated

PASS_THROUGH_FLAGS = {"--hydra-help", "--info", "--shell-completion", "-sc"}
HELP_FLAGS = {"-h", "--help"}
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


def version() -> str:
    """dmrl's installed version (``--version`` of each command)."""
    from importlib import metadata

    try:
        return metadata.version("dmrl")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


# Config groups of which a command takes only some options (the others are another command's):
# group -> (whether it takes an option, why it does not take the others).
Choices = dict[str, tuple[Callable[[str], bool], str]]


def help_text(prog: str, config_name: str, summary: str, example: str, choices: Choices | None = None) -> str:
    """``--help``: what the command does, its keys with their meaning (the YAML's own comments), an example.
    ``choices``: groups of which the command takes only some options (only those are listed)."""
    lines = [f"usage: {prog} [KEY=VALUE ...]", "", summary, ""]
    groups, keys, parent = [], [], None
    for line in (CONF_DIR / f"{config_name}.yaml").read_text().splitlines():
        body, _, comment = line.partition("#")
        if line and not line[0].isspace():
            parent = None
        if line.startswith("  - ") and ":" in body:  # a defaults entry: a config group and its default option
            group, _, default = body.strip()[2:].partition(":")
            group, default = group.strip(), default.strip()
            folder = CONF_DIR / group
            if folder.is_dir() and group != "_self_":
                options = sorted(p.stem for p in folder.glob("*.yaml"))
                if choices and group in choices:
                    options = [o for o in options if choices[group][0](o)]
                groups.append(f"  {group}={'|'.join(options)}  (default {default}): {comment.strip()}")
                groups += _nested_groups(folder, group)
        elif line and not line[0].isspace() and ":" in body and not body.startswith(("defaults", "hydra")):
            key, _, value = body.partition(":")
            if value.strip():
                keys.append(f"  {key.strip()}={value.strip()}  {comment.strip()}")
            else:  # a block: its keys follow, as block.key
                parent = key.strip()
        elif parent and line.startswith("  ") and not line.startswith("   ") and ":" in body:
            key, _, value = body.partition(":")
            keys.append(f"  {parent}.{key.strip()}={value.strip()}  {comment.strip()}")
    if groups:
        lines += ["config groups (choose one option each):", *groups, ""]
    lines += ["keys:", *keys, "", "example:", f"  {example}", "",
              f"{prog} --cfg job prints the whole composed config; --hydra-help shows Hydra's own flags."]
    return "\n".join(lines)


def _nested_groups(folder: Path, group: str) -> list[str]:
    """``--help`` lines of the groups nested in ``group`` (algo/policy, ...): each option of ``group``
    picks one in its own defaults list (``  - policy: gru  # meaning``), so the default is per option."""
    picked: dict[str, dict[str, str]] = {}  # nested group -> option of group -> its pick (in defaults order)
    meaning: dict[str, str] = {}
    for option in sorted(folder.glob("*.yaml")):
        for line in option.read_text().splitlines():
            body, _, comment = line.partition("#")
            name, _, pick = body.strip().removeprefix("- ").partition(":")
            if body.strip().startswith("- ") and (folder / name.strip()).is_dir():
                picked.setdefault(name.strip(), {})[option.stem] = pick.strip()
                meaning.setdefault(name.strip(), comment.strip())
    lines = []
    for sub, picks in picked.items():
        usual = max(sorted(set(picks.values())), key=list(picks.values()).count)
        others = ", ".join(f"{v} for {k}" for k, v in picks.items() if v != usual)
        default = f"the {group}'s own: {others}, else {usual}" if others else f"default {usual}"
        options = "|".join(sorted(p.stem for p in (folder / sub).glob("*.yaml")))
        lines.append(f"  {group}/{sub}={options}  ({default}): {meaning[sub]}")
    return lines


def _not_an_override(arg: str, args: list[str]) -> str:
    """One line for a word that is neither a flag nor key=value (a path with a space, unquoted)."""
    before = args[args.index(arg) - 1] if args.index(arg) > 0 else ""
    if "=" in before:
        key, _, value = before.partition("=")
        return (f"'{arg}' is not key=value: if {key}'s value has a space, quote it: {key}='{value} {arg}'")
    return f"'{arg}' is not key=value (overrides are key=value, e.g. seed=1)"


def _check_output_dir(prog: str, cfg: DictConfig, multirun: bool) -> None:
    """The run dir Hydra is about to create must be creatable and writable: one line otherwise."""
    import os

    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    try:
        target = Path(str(OmegaConf.select(cfg, key))).expanduser()
    except Exception:  # an interpolation this precheck cannot resolve: Hydra reports it
        return
    probe = target
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        fail(prog, f"{key}: cannot create {target}: {probe} is a file, not a directory; choose another {key}")
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        fail(prog, f"{key}: cannot write {target}: {probe} is read-only; choose another {key}")


def _check_choices(prog: str, variant: list[str], choices: Choices) -> None:
    """``group=option`` of a group of which ``prog`` takes only some options: one line otherwise
    (before composition, whose own message would list the other command's options as allowed)."""
    for o in variant:
        key, eq, value = o.lstrip("+~").partition("=")
        if eq and key in choices and value != "null" and not choices[key][0](value):
            takes, why = choices[key]
            allowed = "|".join(option for option in group_options(key) if takes(option))
            fail(prog, f"{key}={value}: {prog} takes {key}={allowed}; {why}")


def precheck(prog: str, config_name: str, args: list[str], rules: dict[str, Rule],
             check: Callable[[DictConfig, bool], None] | None = None, choices: Choices | None = None,
             moved: Callable[[str], str | None] | None = None) -> None:
    """Check the command line ``args`` before Hydra starts any job (each value of a sweep composed
    once); ``moved(override)``: one line for a key the command now takes elsewhere, else None."""
    if "--experimental-rerun" in args:  # Hydra unpickles .hydra/config.pickle: a run dir's file would run code
        fail(prog, "--experimental-rerun loads a pickled config, which can run code; dmrl does not allow it: "
                   "continue a run with resume=RUN_DIR/checkpoints/last.pt")
    if any(a in PASS_THROUGH_FLAGS for a in args):
        return
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    overrides = overrides_of(args)
    for a in overrides:  # before parsing: a key in its old place, with any prefix (+, ~) or sweep of values
        message = moved(a) if moved is not None else None
        if message:
            fail(prog, message)
    for a in overrides:
        if "=" not in a:
            fail(prog, _not_an_override(a, args))
    try:
        variants = _variants(overrides)
    except (HydraException, OmegaConfBaseException) as e:
        fail(prog, f"cannot parse the command line: {str(e).strip().splitlines()[0]}")
    multirun = "-m" in args or "--multirun" in args
    searchpath = [o for o in overrides if o.startswith("hydra.searchpath=")]

    def compose(config_name: str, overrides: list[str], **kw) -> DictConfig:  # with the extra config dirs
        return hydra_compose(config_name=config_name, overrides=[*searchpath, *overrides], **kw)
    # Hydra's own keys (left out of the variants) decide the output dir that Hydra is about to create
    hydra_keys = [o for o in overrides if o.lstrip("+~").startswith("hydra.") and "," not in o]
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR), job_name=prog):
        for variant in variants:
            _check_choices(prog, variant, choices or {})
            try:
                cfg = compose(config_name=config_name, overrides=variant)
            except (HydraException, OmegaConfBaseException, ValueError) as e:
                culprit = _culprit(compose, config_name, variant) or (variant[-1] if variant else "")
                others = [v for v in variant if v != culprit]
                # a preset of one's own that overrides a group in its old place (override /policy: gru)
                old = re.search(r"Could not override '([^']+)'", str(e))
                message = moved(old.group(1)) if moved is not None and old else None
                fail(prog, f"{culprit}: {message}" if message else explain(e, culprit, compose, config_name, others))
            _check_added_keys(prog, compose, config_name, variant)
            try:
                # a resume's added keys are its checkpoint's (they are checked there: dmrl.cli.train)
                validate(cfg, rules, source="command line", unknown_ok=_resumes(variant))
                try:
                    full = compose(config_name=config_name, overrides=[*variant, *hydra_keys], return_hydra_config=True)
                except (HydraException, OmegaConfBaseException, ValueError):
                    full = None  # Hydra reports its own keys' mistakes
                if full is not None:
                    _check_output_dir(prog, full, multirun)
                    if check is not None:
                        check(full, multirun)
            except DmrlError as e:
                fail(prog, str(e))


def _check_added_keys(prog: str, compose: Callable, config_name: str, variant: list[str]) -> None:
    """``+key=value`` / ``++key=value`` of a key that dmrl's config does not have: Hydra adds it, but
    no component reads it (``+iteration=5`` started the full 500-iteration job). Refused; on resume
    the checkpoint's config decides (:func:`dmrl.cli.train.resume_config`)."""
    added = [o for o in variant if o.startswith("+") and not o.lstrip("+").startswith("hydra")
             and not (CONF_DIR / o.lstrip("+").split("=", 1)[0].replace(".", "/")).is_dir()]
    if not added or _resumes(variant):
        return
    base = compose(config_name=config_name, overrides=[o for o in variant if o not in added])
    for o in added:
        key = o.lstrip("+").split("=", 1)[0]
        if OmegaConf.select(base, key, default=_ABSENT) is _ABSENT:
            fail(prog, f"{o}: {key} is not a key of dmrl's config, and no component would read it; "
                       f"{_allowed_keys(compose, config_name, [v for v in variant if v not in added], key)}")


_ABSENT = object()


def _resumes(variant: list[str]) -> bool:
    """Whether the command line continues a checkpoint (``resume=PATH``)."""
    return any(o.split("=", 1)[0] == "resume" and o.split("=", 1)[1] not in ("", "null") for o in variant)


def _culprit(compose: Callable, config_name: str, variant: list[str]) -> str | None:
    """The first override that makes composition fail when added to the ones before it."""
    for i in range(len(variant)):
        try:
            compose(config_name=config_name, overrides=variant[: i + 1])
        except Exception:
            return variant[i]
    return None


def discard_if_empty(run_dir: Path) -> None:
    """Remove a Hydra run dir that holds nothing but Hydra's own files and the run's lock (a job that did no work)."""
    from dmrl.rundir import LOCK_FILE, holds_lock, unlock

    if not run_dir.is_dir():
        return
    if (run_dir / LOCK_FILE).exists() and not holds_lock(run_dir):
        return  # another process's run dir (it won the lock): never touch it
    for p in run_dir.iterdir():
        if p.name not in (".hydra", LOCK_FILE) and not (p.suffix == ".log" and p.stat().st_size == 0):
            return
    unlock(run_dir)
    shutil.rmtree(run_dir, ignore_errors=True)


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


def run(prog: str, config_name: str, rules: dict[str, Rule], body: Callable[[DictConfig], object],
        help: str = "", check: Callable[[DictConfig, bool], None] | None = None,
        choices: Choices | None = None, moved: Callable[[str], str | None] | None = None) -> None:
    """Check the command line, then hand it to Hydra with ``body`` as the job.

    ``help``: what ``--help`` prints; ``check(cfg, multirun)``: the command's own checks of a
    composed config (with Hydra's node), run with the others before Hydra creates anything;
    ``choices``: groups of which the command takes only some options; ``moved(override)``: one
    line naming the new key of a key the command took elsewhere before (None: not such a key).
    """
    import hydra

    if not any(a.startswith("hydra.searchpath=") for a in sys.argv[1:]):
        sys.argv[1:1] = searchpath_overrides()  # $DMRL_CONFIG_PATH: Hydra composes from those dirs too
    args = sys.argv[1:]
    if "--version" in args:
        print(f"{prog} (dmrl) {version()}")
        sys.exit(0)
    if HELP_FLAGS & set(args):
        print(help)
        sys.exit(0)
    precheck(prog, config_name, args, rules, check, choices, moved)
    keep_freed_memory()  # no per-iteration page-fault churn (dmrl.allocator)
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:  # not when a launcher (submitit) handles it
        signal.signal(signal.SIGTERM, _on_sigterm)

    @hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=config_name)
    def job(cfg: DictConfig) -> object:
        try:
            return body(cfg)
        except Interrupted as e:  # Ctrl-C or SIGTERM: a sweep stops too (the scheduler wants it gone)
            fail(prog, str(e), e.exit_code)
        except DmrlError as e:
            discard_if_empty(Path(HydraConfig.get().runtime.output_dir))
            if HydraConfig.get().mode == RunMode.MULTIRUN:  # the other jobs go on (cli/sweep.py)
                from dmrl.cli.sweep import record_failure

                return record_failure(prog, str(e))
            fail(prog, str(e), e.exit_code)
        except KeyboardInterrupt:
            fail(prog, "interrupted; the last completed iteration's checkpoint is intact", 130)

    job()
