"""Settings from environment variables, checked before anything starts.

Usage (`tasks.py` reads every setting it has this way)::

    MAIL_EVERY = seconds("MAIL_EVERY", 5.0)         # a positive number of seconds, or the default
    TARGET_MAX_RETRIES = count("TARGET_MAX_RETRIES", 5)

A variable that is unset or empty gives the default. A value that is not what the setting needs
ends the program with one line that names the variable and says what to write instead
(SystemExit: no traceback, a non-zero exit), in the worker, beat or producer that reads it.
"""
from __future__ import annotations

import os


def seconds(name: str, default: float | None) -> float | None:
    """A positive duration from the environment, so notebooks and tests can compress time."""
    return _positive(name, default, "a positive number of seconds", example=5)


def positive_number(name: str, default: float | None) -> float | None:
    """A positive number from the environment (a factor, a Unix time…)."""
    return _positive(name, default, "a positive number", example=10)


def _positive(name: str, default, what: str, example) -> float | None:
    value = os.environ.get(name, "")
    if value.strip() == "":
        return default
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not number > 0:   # NaN is not > 0 either
        raise SystemExit(f"error: {name}={value!r} is not {what} "
                         f"— e.g. {name}={example}, or unset it for the default")
    return number


def count(name: str, default: int) -> int:
    """A whole number (0 or more) from the environment."""
    value = os.environ.get(name, "").strip()
    if value and not value.isdigit():
        raise SystemExit(f"error: {name}={value!r} is not a whole number — e.g. {name}=5, "
                         "or unset it for the default")
    return int(value) if value else default
