"""User-facing errors: each is shown as one line, without a traceback, and exits non-zero."""


class DmrlError(Exception):
    """Base class of the errors a user can cause and fix (bad config, bad checkpoint, diverged run)."""

    exit_code = 2


class ConfigError(DmrlError):
    """A configuration key has a wrong type or an impossible value."""


def require(key: str, ok: bool, allowed: str, value: object) -> None:
    """A constructor's check of what it meets only at run time (the meta-optimizer it is handed):
    ``ConfigError("<key> must be <allowed>, got <value>")``. A key's own type and range is declared
    with its class instead (``KEYS``, :mod:`dmrl.keys`)."""
    if not ok:
        raise ConfigError(f"{key} must be {allowed}, got {value!r}")


class CheckpointError(DmrlError):
    """A checkpoint is missing, truncated, foreign or unsafe."""


class NonFiniteError(DmrlError):
    """A loss or a parameter became NaN/inf; the run stops and keeps its last good checkpoint."""

    exit_code = 3


class StorageError(DmrlError):
    """A run's file could not be written (disk full, read-only, a path under a file)."""

    exit_code = 4


class Interrupted(DmrlError):
    """Ctrl-C or SIGTERM ended a run between checkpoints; it stays resumable (exit 130 or 143)."""

    exit_code = 130


class Terminated(KeyboardInterrupt):
    """Raised by dmrl's SIGTERM handler (what Slurm and most schedulers send), so a termination
    unwinds like Ctrl-C: the iteration in flight is abandoned, its last checkpoint kept."""
