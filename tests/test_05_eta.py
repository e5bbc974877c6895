"""Lesson 05b, run at a time: an ETA beyond the Redis visibility timeout runs twice, every time,
and once with the remedy; the `eta` command, and its bad input.

The double run is forced, not hoped for (scenes/lesson_05_time.py says why it is deterministic):
the second worker starts once the held message is older than the visibility timeout, and its
start-up scan puts the message back in the queue. Each scene has a database of its own.
"""
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta

import pytest

from conftest import one_line
from labkit import REPO_ROOT, Worker
from scenes.lesson_05_time import eta_with_a_second_worker

ETA = 8.0          # seconds: room for a slow start of the second worker on a loaded machine
SHORT = 2.0        # the visibility timeout that the ETA outlives
IN_AN_HOUR = (datetime.now() + timedelta(hours=1)).isoformat(timespec="minutes")


def received_moments(outcome) -> list[float]:
    return sorted(moment for moments in outcome.received.values() for moment in moments)


@pytest.mark.timeout(120)
def test_an_eta_beyond_the_visibility_timeout_runs_twice_when_a_worker_starts_meanwhile(
        fresh_db_url):
    outcome = eta_with_a_second_worker(SHORT, ETA, url=fresh_db_url)
    assert outcome.second_worker_ready < outcome.eta, "the second worker started after the ETA"
    assert outcome.run_count == 2, outcome
    assert all(run.task_id == outcome.task_id and run.outcome == "ran" for run in outcome.runs)
    assert all(run.start >= outcome.eta - 0.1 for run in outcome.runs)   # both at the ETA
    first, second = received_moments(outcome)          # one message, delivered twice:
    assert second - first >= SHORT                      # again once older than the timeout,
    assert second >= outcome.second_worker_started - 0.05   # when the second worker started


@pytest.mark.timeout(120)
def test_a_visibility_timeout_longer_than_the_eta_runs_it_once(fresh_db_url):
    # The same moments as above, only the timeout differs: the start-up scan finds it too young.
    outcome = eta_with_a_second_worker(30.0, ETA, second_after=SHORT + 0.3, url=fresh_db_url)
    assert outcome.second_worker_ready < outcome.eta
    assert outcome.run_count == 1, outcome
    assert len(received_moments(outcome)) == 1


def test_the_visibility_timeout_stays_the_transports_hour_unless_set(fresh_db_url):
    code = ("import tasks; c = tasks.app.connection_for_write(); "
            "print(tasks.app.conf.broker_transport_options, c.default_channel.visibility_timeout)")
    env = {**os.environ, "REDIS_URL": fresh_db_url}
    env.pop("BROKER_VISIBILITY_TIMEOUT", None)
    unset = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env,
                           capture_output=True, text=True, timeout=60)
    assert unset.stdout.split() == ["{}", "3600"], unset.stderr
    env["BROKER_VISIBILITY_TIMEOUT"] = "2"
    given = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env,
                           capture_output=True, text=True, timeout=60)
    assert given.stdout.strip() == "{'visibility_timeout': 2.0} 2.0", given.stderr


@pytest.fixture(scope="module")
def reminder_worker(module_db_url):
    with Worker("reminders", env={"REDIS_URL": module_db_url}) as worker:
        yield worker


def test_the_eta_command_prints_when_the_reminder_ran(run_invoker, module_db_url,
                                                     reminder_worker):
    done = run_invoker("eta", "--in", "1", env={"REDIS_URL": module_db_url})
    assert done.returncode == 0, done.stderr
    assert re.search(r"due at [\d:.]+ \(in [01]\.\d s\)", done.stdout)
    assert re.search(r"ran at [\d:.]+ on reminders@\S+, \+\d\.\d\d s from its ETA", done.stdout)


def test_the_eta_command_warns_about_an_eta_beyond_the_visibility_timeout(run_invoker,
                                                                         fresh_db_url):
    done = run_invoker("--no-wait", "eta", "--in", "5",
                       env={"REDIS_URL": fresh_db_url, "BROKER_VISIBILITY_TIMEOUT": "2"})
    assert done.returncode == 0
    assert "beyond the broker's visibility timeout (2 s)" in done.stdout


@pytest.mark.parametrize("args, expected", [
    (["eta", "--in", "-1"], "argument --in: must be a number of seconds from 0 up to 86400"),
    (["eta", "--in", "nan"], "argument --in: must be a number of seconds from 0 up to 86400"),
    (["eta", "--in", "1e300"], "argument --in: must be a number of seconds from 0 up to 86400"),
    (["eta", "--in", "soon"], "argument --in: expected a number of seconds, got 'soon'"),
    (["eta", "--at", "tomorrow"], "argument --at: expected a date and time such as"),
    (["eta", "--at", "2001-01-01T09:00"], "argument --at: must be in the future and within a day"),
    (["eta", "--at", "2999-01-01T09:00"], "argument --at: must be in the future and within a day"),
    (["eta", "--in", "3", "--at", IN_AN_HOUR], "not allowed with argument"),
])
def test_the_eta_commands_bad_input_is_one_line(run_invoker, fresh_db_url, args, expected):
    done = run_invoker(*args, env={"REDIS_URL": fresh_db_url})
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert expected in one_line(done.stderr)
    assert done.stdout == ""


@pytest.mark.parametrize("value", ["0.5", "0", "nan", "soon"])
def test_a_bad_visibility_timeout_is_one_line(run_invoker, fresh_db_url, value):
    done = run_invoker("--no-wait", "eta", env={"REDIS_URL": fresh_db_url,
                                                 "BROKER_VISIBILITY_TIMEOUT": value})
    assert done.returncode == 2
    assert one_line(done.stderr).startswith(f"error: BROKER_VISIBILITY_TIMEOUT={value!r} is not "
                                            "a number of seconds from 1 to")
