"""What a component's config keys may hold, declared next to its code, and the one check of them.

A class that a config names by ``_target_`` declares its keys as a class attribute, relative to
its own node::

    class TRPO:
        KEYS = {"max_kl": POSITIVE, "cg_iters": int_at_least(1), ...}

and, for what no single key's rule can say, ``CROSS_CHECKS`` (:class:`CrossCheck`). A subclass
inherits its bases' declarations and adds or overrides keys (``None`` withdraws one its base takes:
a bandit's horizon is fixed). :func:`dmrl.config.validate` finds every ``_target_`` of a composed
config, checks each present value against its class's rules (:func:`check_node`'s steps), and
names the full key (``algo.inner_lr``): the class never knows where in a config it sits.
Constructors then trust their arguments; what they check is what only the objects they are handed
can tell (the meta-optimizer's kind, a task batch's keys).

This module imports nothing of dmrl but its errors, so every component can import it.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from dmrl.errors import ConfigError


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


@dataclass(frozen=True)
class Rule:
    """One key's rule: ``check(value)`` on the plain value (lists, dicts, numbers, text), and what is
    allowed, in the words of the one-line error (``<key> must be <allowed>, got <value>``)."""

    check: Callable[[Any], bool]
    allowed: str
    required: bool = False


@dataclass(frozen=True)
class CrossCheck:
    """A rule over several keys of one component: ``check(**values)`` of ``keys``, and ``message``,
    a format string of those values and ``at`` (the node's path and a dot), e.g.
    ``"{at}low must be <= {at}high, got low={low} high={high}"``. It runs when every single-key rule
    of the node holds, with the constructor's defaults for keys the config leaves out."""

    keys: tuple[str, ...]
    check: Callable[..., bool]
    message: str


def int_at_least(lo: int) -> Rule:
    return Rule(lambda v: is_int(v) and v >= lo, f"an integer >= {lo}")


def number_above(lo: float, finite: bool = False) -> Rule:
    return Rule(lambda v: is_num(v) and v > lo and (not finite or math.isfinite(v)),
                f"a {'finite ' if finite else ''}number > {lo}")


def number_at_least(lo: float, finite: bool = False) -> Rule:
    return Rule(lambda v: is_num(v) and v >= lo and (not finite or math.isfinite(v)),
                f"a {'finite ' if finite else ''}number >= {lo}")


def float_in(lo: float, hi: float, lo_open: bool = False, hi_open: bool = False) -> Rule:
    def ok(v: Any) -> bool:
        return is_num(v) and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)

    return Rule(ok, f"a number in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}")


def one_of(values: Iterable[str]) -> Rule:
    allowed = tuple(values)
    return Rule(lambda v: isinstance(v, str) and v in allowed, f"one of {', '.join(allowed)}")


def optional(rule: Rule, meaning: str = "") -> Rule:
    """``null`` or what ``rule`` allows; ``meaning``: what null means, e.g. ``"no clipping"``."""
    return Rule(lambda v: v is None or rule.check(v), f"null{f' ({meaning})' if meaning else ''} or {rule.allowed}")


def list_of(rule: Rule, allowed: str, min_len: int = 0) -> Rule:
    return Rule(lambda v: isinstance(v, (list, tuple)) and len(v) >= min_len and all(rule.check(x) for x in v),
                allowed)


# numpy's legacy seeding (np.random.seed) takes 32 bits; the named streams derive from the same number
SEED = Rule(lambda v: is_int(v) and 0 <= v < 2**32, f"an integer in [0, {2**32 - 1}]")
NUMBER = Rule(is_num, "a number")
FINITE = Rule(lambda v: is_num(v) and math.isfinite(v), "a finite number")
POSITIVE = number_above(0)
NON_NEGATIVE = number_at_least(0)
PROBABILITY = float_in(0, 1)  # discounts, GAE's lambda
BOOL = Rule(lambda v: isinstance(v, bool), "true or false")
NAME = Rule(lambda v: isinstance(v, str) and v != "", "a non-empty name")
# a node of its own (``algo.baseline``): its ``_target_`` names the class whose keys it holds
COMPONENT = Rule(lambda v: isinstance(v, Mapping) and "_target_" in v, "a config node with a _target_")


# --- what a class declares -------------------------------------------------------------------------


def declared_keys(cls: type) -> dict[str, Rule] | None:
    """The rules of ``cls``'s keys, its bases' included (``None`` where no class of its MRO declares
    ``KEYS``: a plugin written without them is not checked)."""
    declaring = [c for c in reversed(cls.__mro__) if "KEYS" in vars(c)]
    if not declaring:
        return None
    keys: dict[str, Rule] = {}
    for c in declaring:
        for key, rule in vars(c)["KEYS"].items():
            if rule is None:
                keys.pop(key, None)
            else:
                keys[key] = rule
    return keys


def cross_checks(cls: type) -> list[CrossCheck]:
    """``cls``'s cross-checks, its bases' first."""
    return [check for c in reversed(cls.__mro__) for check in vars(c).get("CROSS_CHECKS", ())]


def _constructor(cls: type) -> tuple[list[inspect.Parameter], bool]:
    """The keyword parameters of ``cls(...)``, through ``**kwargs`` to its bases' constructors, and
    whether it takes any keyword at all (``**kwargs`` that reach no base's constructor)."""
    found: list[inspect.Parameter] = []
    for c in cls.__mro__:
        init = vars(c).get("__init__")
        if init is None or c is object:
            continue
        params = inspect.signature(init).parameters.values()
        found += [p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            return found, False
    return found, True


def constructor_params(cls: type) -> set[str] | None:
    """The keywords ``cls(...)`` takes (``None``: any)."""
    params, anything = _constructor(cls)
    return None if anything else {p.name for p in params}


def constructor_defaults(cls: type) -> dict[str, Any]:
    """The default of each keyword ``cls(...)`` takes, the most derived class's where several give one."""
    defaults: dict[str, Any] = {}
    for p in _constructor(cls)[0]:
        if p.default is not p.empty:
            defaults.setdefault(p.name, p.default)
    return defaults


def check_node(cls: type, values: Mapping[str, Any], at: str) -> None:
    """Check one component's config node (plain values) against ``cls``'s declarations; ``at``: the
    node's path (``algo``, ``tasks.distribution``). The first key that breaks its rule raises
    ``ConfigError("<at>.<key> must be <allowed>, got <value>")``; then a key that neither ``cls``
    declares nor its constructor takes; then its cross-checks."""
    check_keys(cls, values, at)
    check_unknown(cls, values, at)
    check_cross(cls, values, at)


def check_keys(cls: type, values: Mapping[str, Any], at: str) -> None:
    """:func:`check_node`'s single-key rules (a key ``cls`` does not declare passes)."""
    keys = declared_keys(cls) or {}
    for key, value in values.items():
        rule = keys.get(key)
        if rule is not None and not rule.check(value):
            raise ConfigError(f"{at}{'.' if at else ''}{key} must be {rule.allowed}, got {value!r}")


def check_unknown(cls: type, values: Mapping[str, Any], at: str) -> None:
    """:func:`check_node`'s refusal of a key that nothing would read.

    A key the class does not declare but its constructor takes passes (a subclass that has not
    declared its keys yet: tests/test_keys.py asks every class of dmrl's configs to)."""
    keys, takes = declared_keys(cls) or {}, constructor_params(cls)
    for key in values:
        if str(key).startswith("_") or key in keys or takes is None or key in takes:
            continue  # _target_, _partial_: Hydra's (dmrl.stored.check_targets)
        known = ", ".join(sorted(keys or takes)) or "none"
        raise ConfigError(f"{at}{'.' if at else ''}{key}: {cls.__name__} takes no such key, and nothing would read "
                          f"it (its keys: {known})")


def check_cross(cls: type, values: Mapping[str, Any], at: str) -> None:
    """:func:`check_node`'s cross-checks (once every single-key rule holds)."""
    checks = cross_checks(cls)
    if not checks:
        return
    prefix = f"{at}." if at else ""
    given = {**constructor_defaults(cls), **values}
    for check in checks:
        if all(k in given for k in check.keys) and not check.check(**{k: given[k] for k in check.keys}):
            raise ConfigError(check.message.format(at=prefix, **{k: given[k] for k in check.keys}))
