"""Issue 11, the sweep made permanent: every invoker command and every environment variable the
repository reads, given empty, garbage, negative, zero, huge, NaN and infinite values.

Each run must end in time with either success (the value is fine: an empty number means the
default) or one line on stderr, starting "error:", with a non-zero exit and no traceback. A new
setting or command joins COMMANDS or VARIABLES below. Every run talks to a database of the
private Redis that no worker serves (`--no-wait`: a task accepted is only queued), so nothing
runs and nothing reaches a Redis or RabbitMQ of the machine. One test per command or variable,
its values run three at a time.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VALUES = ["", "garbage", "-1", "0", "99999999999999999999", "1e300", "nan", "inf"]
SECONDS_PER_RUN = 20

COMMANDS = [                     # {} is where the value goes
    ["add", "{}", "3"], ["mul", "2", "{}"], ["divide", "1", "{}"], ["xsum", "1", "{}"],
    ["mail", "--count", "{}"], ["mail", "--count", "2", "--pause", "{}"],
    ["extract", "--seconds", "{}"], ["burst", "{}"],
    ["target", "{}"], ["target", "dave", "--seconds", "{}"],
    ["fft", "{}"], ["fft", "10", "--tasks", "{}"],
    ["spectrum", "--tones", "{}"], ["spectrum", "--frames", "{}"],
    ["hello", "{}"], ["chain", "{}", "2"], ["chain", "100", "{}"], ["chord", "{}"],   # lesson 05a
    ["retry", "{}"], ["retry", "1", "--backoff", "{}"], ["retry", "1", "--backoff", "0.2", "--cap", "{}"],
    ["retry", "1", "--backoff", "0.2", "--max-retries", "{}"],
    ["eta", "--in", "{}"], ["eta", "--at", "{}"], ["eta", "--text", "{}"],   # lesson 05b
    ["timelimit", "--soft", "{}"], ["timelimit", "--hard", "{}"], ["timelimit", "--items", "{}"],
    ["timelimit", "--item-seconds", "{}"], ["route", "--reports", "{}"],
    ["route", "--emails", "{}"], ["route", "--report-seconds", "{}"],
    ["{}"],                      # an unknown command
]

# Every variable tasks.py reads (REPORT_CRON's clock only with a REPORT_CRON set).
VARIABLES = ["REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "MAIL_EVERY",
             "EXTRACT_EVERY", "EXTRACT_SECONDS", "EXTRACT_EXPIRES", "EXTRACT_QUEUE", "REPORT_CRON",
             "CRON_SPEEDUP", "CRON_EPOCH", "REDBEAT_LOCK_TIMEOUT", "EXTRACT_SINGLE_INSTANCE",
             "EXTRACT_LOCK_TTL", "TARGET_MAX_RETRIES", "TARGET_BACKOFF", "TARGET_BACKOFF_CAP",
             "TARGET_RATE_LIMIT", "FFT_PROGRESS_INTERVAL", "BROKER_VISIBILITY_TIMEOUT",
             "NOTHING_LOST",   # lesson 06
             "RUN_TIMELINE", "TUNING"]   # lesson 07 (AMQP_URL: tests/test_01_bad_input_amqp.py)
NEEDS = {"CRON_SPEEDUP": {"REPORT_CRON": "* * * * *"}, "CRON_EPOCH": {"REPORT_CRON": "* * * * *"}}

# What beat and a worker compute from the settings at start: every schedule's next run.
BEAT_SIDE = ("import tasks; tasks.app.finalize(); from celery.schedules import maybe_schedule; "
             "[maybe_schedule(e['schedule'], app=tasks.app).is_due(tasks.app.now()) "
             "for e in tasks.app.conf.beat_schedule.values()]")


URLS = ("REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND")
# A URL setting that regressed could let Celery fall back to amqp://guest@localhost//, a RabbitMQ
# that is not ours: those runs go in a network namespace where nothing listens (exit 3 there is
# still one line), or, without root, skip the empty value that would do it.
CAN_UNSHARE = hasattr(os, "geteuid") and os.geteuid() == 0 and bool(shutil.which("unshare"))


def run(args, env, isolated=False) -> tuple:
    started = time.monotonic()
    prefix = ["unshare", "--net"] if isolated else []
    try:
        done = subprocess.run([*prefix, sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                              env=env, timeout=SECONDS_PER_RUN * 2)
    except subprocess.TimeoutExpired:
        return None, SECONDS_PER_RUN * 2
    return done, time.monotonic() - started


def problem(label, done, seconds, name=None) -> str | None:
    """What is wrong with this run's ending, or None."""
    if done is None or seconds > SECONDS_PER_RUN:
        return f"{label}: took {seconds:.1f} s"
    if "Traceback" in done.stderr or "Exception ignored" in done.stderr:
        return f"{label}: traceback: {done.stderr.strip().splitlines()[-1]}"
    if done.returncode == 0:
        return None
    lines = done.stderr.strip().splitlines()
    if len(lines) != 1 or not lines[0].startswith("error:"):
        return f"{label}: exit {done.returncode}, not one error line: {done.stderr.strip()[:300]}"
    if name and name not in lines[0]:
        return f"{label}: the error does not name {name}: {lines[0]}"
    return None


def sweep(cases) -> list:
    with ThreadPoolExecutor(3) as pool:
        return [found for found in pool.map(lambda case: case(), cases) if found]


@pytest.mark.parametrize("template", COMMANDS + [["--timeout", "{}", "add", "2", "3"]],
                         ids=lambda template: " ".join(template))
def test_every_command_with_every_bad_value(template, fresh_db_url):
    env = {**os.environ, "REDIS_URL": fresh_db_url}

    def case(value):
        args = ["invoker.py", "--no-wait", *[part.replace("{}", value) for part in template]]
        done, seconds = run(args, env)
        return problem(" ".join(args[2:]) or repr(value), done, seconds)
    assert sweep([lambda v=v: case(v) for v in VALUES]) == []


@pytest.mark.parametrize("program", ["invoker", "beat and worker"])
@pytest.mark.parametrize("name", VARIABLES)
def test_every_variable_with_every_bad_value(name, program, fresh_db_url):
    def case(value):
        env = {**os.environ, "REDIS_URL": fresh_db_url, **NEEDS.get(name, {}), name: value}
        args = (["invoker.py", "--no-wait", "add", "2", "3"] if program == "invoker"
                else ["-c", BEAT_SIDE])
        if name in URLS and not CAN_UNSHARE and value == "":
            return None
        done, seconds = run(args, env, isolated=name in URLS)
        found = problem(f"{name}={value!r} ({program})", done, seconds, name)
        allowed = (0, 2, 3) if program == "invoker" else (0, 1)   # 3: no network when isolated
        if not found and done.returncode not in allowed:
            found = f"{name}={value!r} ({program}): exit {done.returncode}: {done.stderr.strip()}"
        return found
    assert sweep([lambda v=v: case(v) for v in VALUES]) == []


# The parser itself, on any text at all: a number in range, the default, or a SettingError whose
# text is one line naming the variable. Never another exception.
from hypothesis import given, settings as hypothesis_settings, strategies as st  # noqa: E402

from labkit import settings  # noqa: E402

READERS = [lambda: settings.seconds("X_SETTING", 5.0), lambda: settings.positive_number("X_SETTING", 1.0),
           lambda: settings.count("X_SETTING", 5), lambda: settings.redis_url("X_SETTING", "redis://h:1/0")]


@hypothesis_settings(max_examples=300, deadline=None)
@given(text=st.one_of(st.text(), st.floats().map(repr), st.integers().map(str)),
       reader=st.sampled_from(range(len(READERS))))
def test_the_settings_parser_gives_a_value_or_one_line(text, reader):
    if "\x00" in text:
        return   # no environment variable can hold one
    os.environ["X_SETTING"] = text
    try:
        value = READERS[reader]()
    except settings.SettingError as error:
        assert "\n" not in str(error.code) and "X_SETTING" in str(error.code)
        return
    finally:
        del os.environ["X_SETTING"]
    if isinstance(value, float):
        assert 0 < value <= max(settings.MAX_SECONDS, settings.MAX_NUMBER)
    elif isinstance(value, int):
        assert 0 <= value <= settings.MAX_COUNT
    else:
        assert settings.url_problem(value) is None
