"""Bad input, lesson 07: RabbitMQ may be the broker, named by CELERY_BROKER_URL (and only there),
and the benchmarks' variables (RUN_TIMELINE, TUNING, AMQP_URL) are checked like every other: one
line, a non-zero exit, no password shown."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import one_line
from labkit.redis_server import free_port

PY = sys.executable
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(argv, env, timeout=40):
    done = subprocess.run([PY, *map(str, argv)], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **env})
    assert "Traceback" not in done.stderr, done.stderr
    return done


def error_line(done) -> str:
    line = one_line(done.stderr)
    assert line.startswith("error: "), line
    return line


def test_an_amqp_broker_that_does_not_answer_is_one_line_naming_the_variable():
    nowhere = f"amqp://guest:s3cret-pw@127.0.0.1:{free_port()}//"
    done = run(["invoker.py", "--no-wait", "add", 2, 3], {"CELERY_BROKER_URL": nowhere})
    assert done.returncode == 3
    line = error_line(done)
    assert "no RabbitMQ answers" in line and "CELERY_BROKER_URL" in line, line
    assert "s3cret-pw" not in done.stderr and "guest:***@" in line


@pytest.mark.parametrize("value, expected", [
    ("", "CELERY_BROKER_URL is set but empty"),
    ("garbage", "is not a Redis or RabbitMQ URL"),
    ("http://localhost:5672//", "is not a Redis or RabbitMQ URL"),
    ("amqp://", "names no host"),
    ("pyamqp://localhost:0//", "has port 0"),
    ("amqp://localhost:99999//", "is not a usable URL"),
])
def test_a_broker_url_that_is_neither_redis_nor_rabbitmq_is_refused_before_any_connection(
        value, expected):
    done = run(["invoker.py", "--no-wait", "add", 2, 3], {"CELERY_BROKER_URL": value})
    assert done.returncode == 2
    assert expected in error_line(done)
    assert done.stdout == ""


@pytest.mark.parametrize("name", ["REDIS_URL", "CELERY_RESULT_BACKEND"])
def test_only_the_broker_may_be_rabbitmq(name):
    done = run(["invoker.py", "--no-wait", "add", 2, 3],
               {name: "amqp://guest:s3cret-pw@localhost:5672//"})
    assert done.returncode == 2
    line = error_line(done)
    assert "is not a Redis URL" in line and "s3cret-pw" not in done.stderr, line


@pytest.mark.parametrize("name, value", [
    ("RUN_TIMELINE", "2"), ("RUN_TIMELINE", "yes"), ("RUN_TIMELINE", "nan"),
    ("TUNING", "turbo"), ("TUNING", "ignore_result,,prefetch"), ("TUNING", "prefetch,nan"),
    ("TUNING", "-1"), ("TUNING", "x" * 500),
])
def test_the_benchmark_switches_refuse_garbage_in_one_line(name, value):
    done = run(["invoker.py", "--no-wait", "add", 2, 3], {name: value})
    assert done.returncode == 2
    assert name in error_line(done)


def test_the_worker_refuses_a_bad_tuning_step_in_one_line():
    done = run(["-m", "celery", "-A", "tasks", "worker", "--pool=solo"], {"TUNING": "turbo"})
    assert done.returncode != 0
    assert "TUNING='turbo': no step 'turbo'" in error_line(done)


@pytest.mark.parametrize("value, expected", [("", "AMQP_URL is set but empty"),
                                             ("garbage", "is not an AMQP URL"),
                                             ("redis://localhost:6379/0", "is not an AMQP URL")])
def test_the_broker_bench_refuses_a_bad_amqp_url_in_one_line(value, expected):
    done = run(["bench/brokers.py", "--short"], {"AMQP_URL": value})
    assert done.returncode == 2
    assert expected in error_line(done)
