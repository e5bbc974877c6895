"""Settings from environment variables, checked before anything starts.

Usage (`tasks.py` reads every setting it has this way)::

    REDIS_URL = redis_url("REDIS_URL", "redis://localhost:6379/0")
    MAIL_EVERY = seconds("MAIL_EVERY", 5.0)         # a positive number of seconds, or the default
    TARGET_MAX_RETRIES = count("TARGET_MAX_RETRIES", 5)

A number or a word that is unset or empty gives the default; a URL that is set but empty is
refused (an empty REDIS_URL is a mistake, and Celery would quietly fall back to another broker).
A value that is not what the setting needs (not a number, NaN, infinite, out of range, a URL that
is not Redis) raises SettingError: a SystemExit whose text is one line that names the variable
and says what to write instead, so the worker, beat or producer that reads it ends without a
traceback. `invoker.py` exits 2 for it; anything else exits 1 with the same line.

`redacted(url)` is the URL as a user may see it: the password, if any, replaced by `***`.

The broker alone may also be RabbitMQ (lesson 07), and only when asked for by name::

    BROKER_URL = broker_url("CELERY_BROKER_URL", REDIS_URL)   # redis://, rediss://, amqp://, pyamqp://
    AMQP_URL = amqp_url("AMQP_URL", "amqp://guest:guest@localhost:5672//")
"""
from __future__ import annotations

import math
import os
import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

EXIT_CONFIG = 2                  # invoker.py's code for a setting it cannot use (a usage mistake)
MAX_SECONDS = 7 * 24 * 3600.0    # a week: longer than any lesson waits, short of datetime overflow
MAX_NUMBER = 1e10                # a factor or a Unix time (year 2286)
MAX_COUNT = 1_000_000
REDIS_SCHEMES = ("redis", "rediss")
AMQP_SCHEMES = ("amqp", "pyamqp")   # RabbitMQ: a broker only, never a result backend


class SettingError(SystemExit):
    """A setting that cannot be used; its text is the one line to print."""

    def __init__(self, message: str):
        super().__init__(f"error: {message}")
        self.message = message


def _raw(name: str) -> str | None:
    """The variable's text, or None when it is unset or blank (empty = unset)."""
    value = os.environ.get(name)
    return None if value is None or value.strip() == "" else value


def _refuse(name: str, value: str, what: str, example) -> SettingError:
    return SettingError(f"{name}={value!r} is not {what} — e.g. {name}={example}, "
                        "or unset it for the default")


def seconds(name: str, default: float | None, maximum: float = MAX_SECONDS,
            minimum: float | None = None) -> float | None:
    """A positive duration from the environment, so notebooks and tests can compress time;
    `minimum` where a shorter one would do harm (a report every microsecond)."""
    if minimum is None:
        return _positive(name, default, f"a number of seconds above 0 and at most {maximum:g}",
                         example=5, maximum=maximum)
    return _positive(name, default, f"a number of seconds from {minimum:g} to {maximum:g}",
                     example=5, maximum=maximum, minimum=minimum)


def positive_number(name: str, default: float | None,
                    maximum: float = MAX_NUMBER) -> float | None:
    """A positive number from the environment (a factor, a Unix time…)."""
    return _positive(name, default, f"a number above 0 and at most {maximum:g}", example=10,
                     maximum=maximum)


def _positive(name: str, default, what: str, example, maximum: float,
              minimum: float = 0.0) -> float | None:
    value = _raw(name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise _refuse(name, value, what, example) from None
    if not (math.isfinite(number) and 0 < number <= maximum and number >= minimum):
        raise _refuse(name, value, what, example)   # (NaN fails every comparison)
    return number


def count(name: str, default: int, maximum: int = MAX_COUNT) -> int:
    """A whole number (0 or more, at most `maximum`) from the environment."""
    value = _raw(name)
    if value is None:
        return default
    text = value.strip()
    # [0-9], not str.isdigit(): that is also true of "²" and other digits int() refuses.
    if not re.fullmatch(r"[0-9]{1,12}", text) or int(text) > maximum:
        raise _refuse(name, value, f"a whole number from 0 to {maximum:,}", 5)
    return int(text)


def text(name: str, default: str | None, pattern: str, what: str, example: str) -> str | None:
    """A word from the environment that must match `pattern` (a regular expression, whole).

    Empty counts as unset, and is removed from os.environ, so that code reading the variable
    directly (a decorator's argument, say) sees the default too.
    """
    value = _raw(name)
    if value is None:
        os.environ.pop(name, None)
        return default
    if not re.fullmatch(pattern, value.strip()):
        raise _refuse(name, value, what, example)
    return value.strip()


def redis_url(name: str, default: str, default_text: str | None = None) -> str:
    """A Redis URL (redis:// or rediss://) from the environment, checked before any connection.

    Unset gives `default` (named as `default_text` in messages); set but empty is refused.
    """
    return _url(name, default, default_text or redacted(default), url_problem,
                "your Redis", "redis://localhost:6379/0")


def broker_url(name: str, default: str, default_text: str | None = None) -> str:
    """A broker URL: Redis as in `redis_url`, or RabbitMQ (amqp://, pyamqp://), checked alike.

    Only the broker may be RabbitMQ: results and the lessons' data (locks, the outbox, the run
    timeline) stay in Redis. Empty and garbage are refused as for `redis_url`.
    """
    value = os.environ.get(name)
    scheme = urlsplit_scheme(value or "")
    if value is None or value.strip() == "" or scheme in REDIS_SCHEMES:
        return redis_url(name, default, default_text)
    if scheme not in AMQP_SCHEMES:
        raise SettingError(f"{name}={redacted(value.strip())!r} is not a Redis or RabbitMQ URL "
                           "(redis://host:port/db, rediss:// for TLS, amqp://user:password@host:"
                           f"port/vhost) — e.g. {name}=redis://localhost:6379/0, or unset it to use "
                           f"{default_text or redacted(default)}")
    return amqp_url(name, default, default_text)


def amqp_url(name: str, default: str, default_text: str | None = None) -> str:
    """A RabbitMQ URL (amqp://user:password@host:port/vhost) from the environment, checked."""
    return _url(name, default, default_text or redacted(default), amqp_url_problem,
                "your RabbitMQ", "amqp://guest:guest@localhost:5672//")


def _url(name: str, default: str, usual: str, problem_of, server: str, example: str) -> str:
    """`name`'s URL, stripped; `default` when unset; refused when empty or `problem_of` it says
    what is wrong (`usual` names the default in messages, `example` shows one that works)."""
    value = os.environ.get(name)
    if value is None:
        return default
    if value.strip() == "":
        raise SettingError(f"{name} is set but empty — unset it to use {usual}, "
                           f"or set it to {server}, e.g. {name}={example}")
    problem = problem_of(value.strip())
    if problem:
        raise SettingError(f"{name}={redacted(value.strip())!r} {problem} — e.g. "
                           f"{name}={example}, or unset it to use {usual}")
    return value.strip()


def urlsplit_scheme(url: str) -> str:
    try:
        return urlsplit(url.strip()).scheme
    except ValueError:
        return ""


def amqp_url_problem(url: str) -> str | None:
    """What is wrong with `url` as a RabbitMQ URL, or None."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        return f"is not a usable URL ({error})"
    if parts.scheme not in AMQP_SCHEMES:
        return "is not an AMQP URL (amqp://user:password@host:port/vhost)"
    if not parts.hostname:
        return "names no host"
    if port == 0:
        return "has port 0"
    return None


def url_problem(url: str) -> str | None:
    """What is wrong with `url` as a Redis URL for these lessons, or None."""
    try:
        parts = urlsplit(url)
        port = parts.port          # ValueError when out of range or not a number
    except ValueError as error:
        return f"is not a usable URL ({error})"
    if parts.scheme not in REDIS_SCHEMES:
        return ("is not a Redis URL (redis://host:port/db, or rediss:// for TLS): the lessons "
                "need Redis as broker and result backend")
    if not parts.hostname:
        return "names no host"
    if port == 0:
        return "has port 0"
    db = parts.path.strip("/") or dict(parse_qsl(parts.query)).get("db", "0")
    if not re.fullmatch(r"[0-9]{1,5}", db):
        return f"has no valid database number ({db!r}; the path is /0, /1, …)"
    return None


def redacted(url: str) -> str:
    """`url` with its password, if any, replaced by *** (user name, host, port, db kept)."""
    try:
        parts = urlsplit(url)
        hidden = parts.password is not None
        netloc = parts.netloc
        if hidden:
            user, _, where = netloc.rpartition("@")
            netloc = f"{user.split(':', 1)[0]}:***@{where}"
        query = parts.query
        if "password=" in query:
            query = urlencode([(key, "***" if key == "password" else value)
                               for key, value in parse_qsl(query, keep_blank_values=True)],
                              safe="*")
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return "<a URL that cannot be read>"
