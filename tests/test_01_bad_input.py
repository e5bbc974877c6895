"""Issue 11: bad input ends in one line and a non-zero exit, never a traceback, another broker,
a leaked password or a hang. One test (or two) per case of the issue, numbered as there.

Nothing here talks to the machine's own Redis or RabbitMQ: a URL that would make Celery fall back
to amqp://localhost is tried in a network namespace of its own (`unshare --net`), where nothing
listens, and the test checks the refusal came before any connection.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from conftest import as_from_a_terminal, one_line, wait_until
from labkit import RedisNotFound, ensure_redis
from labkit.redis_server import free_port

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
CAN_UNSHARE = hasattr(os, "geteuid") and os.geteuid() == 0 and bool(shutil.which("unshare"))
needs_unshare = pytest.mark.skipif(not CAN_UNSHARE, reason="needs root and unshare: a network "
                                   "namespace where no broker answers")


def run(argv, env=None, timeout=30, isolated=False):
    """Run `argv` from the repository root; (CompletedProcess, seconds)."""
    argv = ["unshare", "--net", *map(str, argv)] if isolated else list(map(str, argv))
    started = time.monotonic()
    done = subprocess.run(argv, cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True,
                          text=True, timeout=timeout)
    return done, time.monotonic() - started


def error_line(done) -> str:
    assert "Traceback" not in done.stderr, done.stderr
    line = one_line(done.stderr)
    assert line.startswith("error: "), line
    return line


# 1, 2: an empty broker URL must not let Celery fall back to amqp://guest@localhost//.
@needs_unshare
@pytest.mark.parametrize("name", ["REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"])
def test_01_02_03_an_empty_url_is_refused_before_any_connection(name):
    done, seconds = run([PY, "invoker.py", "--no-wait", "add", 2, 3], env={name: ""},
                        isolated=True)
    # In the namespace any connection fails with "Network is unreachable" (exit 3): exit 2 and
    # this line mean the setting was refused before Celery chose a broker.
    assert done.returncode == 2 and seconds < 15
    line = error_line(done)
    assert f"{name} is set but empty" in line and "amqp" not in line, line
    assert done.stdout == ""   # no task id: nothing was sent


def test_03_an_unreachable_result_backend_is_one_line_in_seconds(fresh_db_url):
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    done, seconds = run([PY, "invoker.py", "--timeout", 2, "add", 2, 3],
                        env={"REDIS_URL": fresh_db_url, "CELERY_RESULT_BACKEND": nowhere})
    assert done.returncode == 3 and seconds < 10
    line = error_line(done)
    assert "result backend" in line and "CELERY_RESULT_BACKEND" in line and nowhere in line


@pytest.mark.parametrize("argv", [[PY, "invoker.py", "--no-wait", "add", 2, 3],
                                  [PY, "-m", "celery", "-A", "tasks", "worker", "--pool=solo"]])
def test_04_a_url_that_is_not_redis_is_one_line(argv):
    done, _ = run(argv, env={"REDIS_URL": "garbage"})
    assert done.returncode != 0
    line = error_line(done)
    assert "REDIS_URL='garbage' is not a Redis URL" in line, line
    if argv[1] == "invoker.py":
        assert done.returncode == 2


def test_05_a_database_the_server_does_not_have_is_named(redis_url):
    url = redis_url.rsplit("/", 1)[0] + "/99"     # the private server has 32 databases
    done, _ = run([PY, "invoker.py", "--no-wait", "add", 2, 3], env={"REDIS_URL": url})
    assert done.returncode == 3
    line = error_line(done)
    assert "no database 99" in line and "DB index is out of range" in line
    assert "make redis" not in line


@pytest.fixture(scope="module")
def password_redis():
    """A private redis-server that needs the password s3cret-pw; its URL without one."""
    port = free_port()
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                               "--requirepass", "s3cret-pw", "--save", "", "--appendonly", "no"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"

    def answers():
        try:
            redis.Redis.from_url(url.replace("://", "://:s3cret-pw@"), socket_timeout=1).ping()
            return True
        except redis.exceptions.RedisError:
            return False
    try:
        assert wait_until(answers, timeout=10), "the password-protected redis-server did not start"
        yield url
    finally:
        server.terminate()
        server.wait(10)


@pytest.mark.skipif(not shutil.which("redis-server"), reason="needs redis-server on PATH")
@pytest.mark.parametrize("password, expected", [(None, "needs a password"),
                                                ("wrong-pw", "refused the user name or password"),
                                                ("s3cret-pw", None)])
def test_06_a_password_problem_is_named_and_no_password_is_shown(password_redis, password,
                                                                   expected):
    url = password_redis if password is None else password_redis.replace("://", f"://:{password}@")
    if expected is None:   # the right password, but the broker check still fails on purpose:
        url = url.rsplit("/", 1)[0] + "/99"   # the message shows the URL, and must hide it
        expected = "no database 99"
    done, _ = run([PY, "invoker.py", "--no-wait", "add", 2, 3], env={"REDIS_URL": url})
    assert done.returncode == 3
    line = error_line(done)
    assert expected in line and "make redis" not in line, line
    assert "wrong-pw" not in done.stderr and "s3cret-pw" not in done.stderr
    if password:
        assert ":***@" in line


@pytest.mark.skipif(not shutil.which("redis-server"), reason="needs redis-server on PATH")
def test_06_ensure_redis_hides_the_password_too(password_redis, monkeypatch):
    monkeypatch.setenv("REDIS_URL", password_redis.replace("://", "://:wrong-pw@"))
    with pytest.raises(RedisNotFound) as raised:
        ensure_redis()
    assert "wrong-pw" not in str(raised.value) and ":***@" in str(raised.value)
    assert "make redis" not in str(raised.value)


def test_06_redacted_keeps_everything_but_the_password():
    from labkit.settings import redacted

    assert redacted("redis://:pw@h:1/2") == "redis://:***@h:1/2"
    assert redacted("rediss://bob:pw@h:1/2") == "rediss://bob:***@h:1/2"
    assert redacted("redis://h:1/2") == "redis://h:1/2"
    assert "pw" not in redacted("redis://h:1/2?password=pw")


@pytest.mark.parametrize("name, value", [("FFT_PROGRESS_INTERVAL", "abc"),   # 7
                                         ("FFT_PROGRESS_INTERVAL", "-1"),    # 8
                                         ("FFT_PROGRESS_INTERVAL", "inf"),
                                         ("FFT_PROGRESS_INTERVAL", "0.0001"),  # 8: a floor
                                         ("EXTRACT_EVERY", "nan"),           # 9
                                         ("EXTRACT_EVERY", "inf"),
                                         ("REDBEAT_LOCK_TIMEOUT", "inf"),
                                         ("MAIL_EVERY", "1e300")])
def test_07_08_09_a_bad_number_stops_every_program_with_one_line(name, value, fresh_db_url):
    env = {"REDIS_URL": fresh_db_url, name: value}
    producer, _ = run([PY, "invoker.py", "--no-wait", "add", 2, 3], env=env)
    assert producer.returncode == 2 and producer.stdout == ""   # nothing sent
    assert error_line(producer).startswith(f"error: {name}={value!r} is not a number")
    worker, _ = run([PY, "-c", "import tasks"], env=env)
    assert worker.returncode != 0 and error_line(worker) == error_line(producer)


@pytest.mark.parametrize("argv, expected", [
    (["burst", "10000000"], "must be between 1 and 10,000 tasks"),            # 10
    (["mail", "--count", "10000000"], "must be between 1 and 10,000 tasks"),
    (["--timeout", "0", "add", 2, 3], "--timeout: must be a number of seconds above 0"),  # 13
    (["--timeout", "inf", "add", 2, 3], "--timeout: must be a number of seconds above 0"),
    (["extract", "--seconds", "inf"], "--seconds: must be a number of seconds from 0"),
])
def test_10_13_a_ceiling_and_a_floor_are_refused_before_sending(argv, expected, fresh_db_url):
    done, _ = run([PY, "invoker.py", *argv], env={"REDIS_URL": fresh_db_url})
    assert done.returncode == 2 and expected in error_line(done)
    assert redis.Redis.from_url(fresh_db_url).llen("celery") == 0   # nothing was queued


def started_extractors(client, seconds: float) -> set[str]:
    """Ids of the data_extractor(seconds) tasks whose stored state is STARTED (result_extended
    names the task and its arguments: another test's extractor, on the same workers, is not ours)."""
    found = set()
    for key in client.scan_iter("celery-task-meta-*"):
        meta = json.loads(client.get(key) or "{}")
        if meta.get("status") == "STARTED" and meta.get("name") == "tasks.data_extractor" and \
                seconds in [*(meta.get("args") or []), *(meta.get("kwargs") or {}).values()]:
            found.add(meta.get("task_id"))
    return found


def test_11_ctrl_c_while_waiting_says_where_the_task_is(workers, redis_client):
    seconds = 9.75   # a length no other test sends, to tell our task from theirs
    before = started_extractors(redis_client, seconds)
    invoker = subprocess.Popen([PY, "invoker.py", "extract", "--seconds", str(seconds)], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=as_from_a_terminal)
    try:
        # Ctrl-C once the task is sent and running, however slow the machine: not after a guess
        assert wait_until(lambda: started_extractors(redis_client, seconds) - before, timeout=30), \
            "the extractor never started"
        invoker.send_signal(signal.SIGINT)
        _, err = invoker.communicate(timeout=30)
    finally:
        invoker.kill()
    assert invoker.returncode == 130
    assert "Exception ignored" not in err and "Traceback" not in err, err
    line = one_line(err)
    assert line.startswith("interrupted: task "), line
    state = line.split(" is ", 1)[1].split(" ")[0]
    assert state in {"PENDING", "STARTED", "SUCCESS"}, line


@pytest.mark.parametrize("presses", [1, 2])
def test_11_a_ctrl_c_just_after_the_message_left_still_says_where_the_task_is(monkeypatch,
                                                                             presses):
    """Forced, where test_11 met it once on a busy machine: Ctrl-C lands inside apply_async
    after the message has left (Celery's after_task_publish signal presses it), before
    apply_async has returned the task's id. The producer must not say nothing was sent: once,
    it waits for the id and says where the task is; twice, it stops at once and says the task
    may have left."""
    import argparse

    from celery.signals import after_task_publish

    import tasks
    from commands import common

    monkeypatch.setattr(common, "SENT", [])
    monkeypatch.setattr(common, "SENDING", [])

    def press_ctrl_c(**_):
        for _ in range(presses):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)   # its handler runs here, before the next press

    # Ctrl-C as a terminal delivers it, whatever this test process inherited (ignored, blocked)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    blocked = signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])
    after_task_publish.connect(press_ctrl_c, weak=False)
    try:
        with pytest.raises(KeyboardInterrupt):
            common.send(tasks.add.s(2, 3), argparse.Namespace(no_wait=True, timeout=5))
        line = common.interrupted()
        if presses == 1:
            assert len(common.SENT) == 1, "the task left, but its id was lost"
            assert line.startswith(f"interrupted: task {common.SENT[0].id} is "), line
        else:
            assert line == "interrupted while sending a task, which may have left", line
    finally:
        after_task_publish.disconnect(press_ctrl_c)
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        signal.signal(signal.SIGINT, previous)
        common.stop_waiting(common.SENT)


def test_12_redis_server_refuses_a_port_out_of_range_in_one_line():
    done, _ = run([PY, "-m", "labkit.redis_server", "--port", "99999"])
    assert done.returncode == 2
    assert "invalid port (1–65535) value: '99999'" in error_line(done)


def test_12_make_redis_prints_no_runpy_warning(redis_url):
    port = redis_url.rsplit(":", 1)[1].split("/")[0]    # taken: it stops at once, exit 1
    done, _ = run([PY, "-m", "labkit.redis_server", "--port", port])
    assert done.returncode == 1
    assert "RuntimeWarning" not in done.stderr
    assert "already answers" in one_line(done.stderr)
