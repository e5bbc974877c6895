"""Lesson 07: Redis against RabbitMQ. Against a RabbitMQ at AMQP_URL when one answers (CI on a
machine with RabbitMQ runs it), skipped with its one-line message when none does. Only queues of
our own (`learn-celery-07-…`) are declared on it, and deleted after."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

import tasks
from labkit import REPO_ROOT
from labkit.amqp import DEFAULT_URL, amqp_problem
from labkit.redis_server import free_port
from scenes import lesson_07_runs as runs

AMQP_URL = os.environ.get("AMQP_URL") or DEFAULT_URL
NO_RABBITMQ = amqp_problem(AMQP_URL)
needs_rabbitmq = pytest.mark.skipif(bool(NO_RABBITMQ), reason=f"{NO_RABBITMQ} — set AMQP_URL")


def bench(env=None):
    return subprocess.run([sys.executable, "bench/brokers.py", "--short"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


@needs_rabbitmq
@pytest.mark.timeout(300)
def test_the_broker_comparison_runs_both_brokers_and_the_seed_set_up_works():
    done = bench({"AMQP_URL": AMQP_URL})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| redis |" in done.stdout and "| rabbitmq |" in done.stdout
    assert "RabbitMQ ÷ Redis" in done.stdout and "RabbitMQ 3." in done.stdout
    # RabbitMQ brokers, Redis keeps the results and the lock: one run, one skipped by the lock
    assert "two single-instance runs sent together: 1 ran, 1 skipped by the lock" in done.stdout


@needs_rabbitmq
@pytest.mark.timeout(200)
def test_a_task_through_rabbitmq_comes_back_through_redis_and_our_queue_is_gone_after():
    import amqp.exceptions
    import kombu
    setup = runs.Setup("amqp-check", broker_url=AMQP_URL, tuning="no_remote_control")
    with runs.started([setup], timeout=120):
        assert runs.round_trips(setup, 3) and len(runs.round_trips(setup, 3)) == 3
        assert runs.burst(setup, 20, ignore_result=True) > 0
        assert tasks.app.conf.result_backend.startswith("redis")
    with kombu.Connection(AMQP_URL, connect_timeout=3) as connection:
        with pytest.raises(amqp.exceptions.NotFound):   # deleted: passive declare finds nothing
            connection.channel().queue_declare(setup.queue, passive=True)


def test_without_rabbitmq_the_comparison_skips_it_in_one_line_naming_the_variable():
    done = bench({"AMQP_URL": f"amqp://guest:guest@127.0.0.1:{free_port()}//"})
    assert done.returncode == 0, done.stderr[-3000:]
    first = done.stdout.splitlines()[0]
    assert first.startswith("RabbitMQ skipped: no RabbitMQ answers at") and "AMQP_URL" in first
    assert "| redis |" in done.stdout and "| rabbitmq |" not in done.stdout
