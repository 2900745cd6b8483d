"""Errors a user can fix by changing their input.

The CLIs turn these into one line on stderr and exit status 2, never a traceback.
"""

import argparse
import sys


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
