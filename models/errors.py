"""Errors a user can fix by changing their input.

The CLIs turn these into one line on stderr and exit status 2, never a traceback.
"""

import argparse
import math
import numbers
import os
import sys
from pathlib import Path


class UserInputError(ValueError):
    """Bad configuration, arguments or data supplied by the user."""


def require_choice(field: str, value, allowed) -> None:
    if value not in allowed:
        raise UserInputError(f"{field}: {value!r} is not one of {', '.join(map(str, allowed))}")


def require_positive(field: str, value) -> None:
    if value is None or not value > 0:
        raise UserInputError(f"{field}: must be > 0, got {value!r}")


def require_non_negative(field: str, value) -> None:
    if value is None or not value >= 0:
        raise UserInputError(f"{field}: must be >= 0, got {value!r}")


def require_type(field: str, value, kind: type):
    """`value` as a `kind` field holds it, or one error naming the field: a JSON file or a notebook
    can hand a config any type, and "no" is truthy, 2.5 truncates, "fast" fails deep inside torch.
    Ints must be integral (2.0 is 2), floats finite, bools bool, strings str."""
    if kind is bool:
        if isinstance(value, bool) or type(value).__name__ == "bool_":  # numpy's bool too
            return bool(value)
        raise UserInputError(f"{field}: must be true or false, got {value!r}")
    if kind is str:
        if isinstance(value, str):
            return value
        raise UserInputError(f"{field}: must be a string, got {value!r}")
    what = "a whole number" if kind is int else "a number"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise UserInputError(f"{field}: must be {what}, got {value!r}")
    if not math.isfinite(value):
        raise UserInputError(f"{field}: must be finite, got {value!r}")
    if kind is int:
        if value != int(value):
            raise UserInputError(f"{field}: must be {what}, got {value!r}")
        return int(value)
    return float(value)


SEED_LIMIT = 2**32  # numpy and Optuna take seeds below it; torch takes more, but one range for all


def require_seed(field: str, value: int) -> None:
    if not 0 <= value < SEED_LIMIT:
        raise UserInputError(f"{field}: must be in [0, 2**32), got {value!r}")


def require_writable(field: str, path) -> None:
    """Fail before any work if `path` (a directory, made later if missing) could not be written: a
    file in the way, a read-only mount, no permission. Probes its nearest existing folder with a file
    it removes again, so nothing is left behind and nothing is created yet."""
    existing = Path(path)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserInputError(f"{field}: {existing} is a file, not a directory")
    probe = existing / f".write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise UserInputError(f"{field}: {path} is not writable ({err.strerror or err})") from None


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line on stderr (no usage dump) and exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def exit_on_user_error(main):
    """Run a CLI `main`; a UserInputError becomes one line on stderr and exit status 2."""
    try:
        return main()
    except UserInputError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
