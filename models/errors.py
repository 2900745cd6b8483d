"""Errors a user can fix by changing their input.

The CLIs turn these into one line on stderr and exit status 2, never a traceback.
"""


class UserInputError(ValueError):
    """Bad configuration, arguments or data supplied by the user."""


def require_choice(field: str, value, allowed) -> None:
    if value not in allowed:
        raise UserInputError(f"{field}: {value!r} is not one of {', '.join(map(str, allowed))}")


def require_positive(field: str, value) -> None:
    if value is None or not value > 0:
        raise UserInputError(f"{field}: must be > 0, got {value!r}")
