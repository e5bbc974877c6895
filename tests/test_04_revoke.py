"""Lesson 04: stopping a running FFT — revoke with terminate, and Ctrl-C in the invoker.

One worker with one pool process, on a database of its own: after a revoke, the next task can
only run if that very worker is still serving.
"""
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from celery import Celery

import tasks
from conftest import wait_until
from labkit import REPO_ROOT, Worker
from tasklib.progress import MAX_FFT_ROUNDS

WAIT = 60


@pytest.fixture(scope="module")
def url(module_db_url):
    return module_db_url


@pytest.fixture(scope="module")
def lone_worker(url, tmp_path_factory):
    worker = Worker("lone", concurrency=1, env={"REDIS_URL": url},
                    log_dir=tmp_path_factory.mktemp("lone-worker-log"))
    with worker:
        yield worker


@pytest.fixture(scope="module")
def app(url, lone_worker):
    """A producer for the lone worker's database, configured like tasks.app."""
    app = Celery("tasks", set_as_current=False)
    app.conf.update({key: tasks.app.conf[key] for key in (
        "task_serializer", "result_serializer", "accept_content", "result_accept_content",
        "result_extended")}, broker_url=url, result_backend=url)
    yield app
    app.close()


def wait_for_state(result, states, timeout=WAIT):
    assert wait_until(lambda: result.state in states, timeout), \
        f"{result.id} is {result.state}, not one of {states}"
    return result.state


def test_a_running_fft_revoked_with_terminate_ends_revoked_and_the_worker_keeps_serving(app,
                                                                                       lone_worker):
    result = app.send_task("tasks.fft_random", [MAX_FFT_ROUNDS])   # hours, if left alone
    wait_for_state(result, {"PROGRESS"})
    result.revoke(terminate=True)
    assert wait_for_state(result, {"REVOKED", "SUCCESS", "FAILURE"}) == "REVOKED"
    assert app.send_task("tasks.add", [2, 3]).get(timeout=WAIT) == 5   # same worker, new process
    assert lone_worker.is_running()
    assert re.search(r"Terminating " + result.id, lone_worker.log_text())


def test_ctrl_c_in_the_invoker_revokes_its_tasks_says_so_and_exits_non_zero(url, app, lone_worker,
                                                                            tmp_path):
    stderr_path = tmp_path / "stderr.txt"
    with open(stderr_path, "w") as stderr:
        invoker = subprocess.Popen(
            [sys.executable, "invoker.py", "fft", str(MAX_FFT_ROUNDS), "--tasks", "2"],
            cwd=REPO_ROOT, env={**os.environ, "REDIS_URL": url},
            stdout=subprocess.PIPE, stderr=stderr, text=True)
        try:
            deadline = time.monotonic() + WAIT
            # Wait until the bar has moved: the first task is running on the lone worker.
            while not re.search(r"\| [1-9]\d*/10000000", stderr_path.read_text()):
                assert time.monotonic() < deadline and invoker.poll() is None, \
                    stderr_path.read_text()[-500:]
                time.sleep(0.1)
            invoker.send_signal(signal.SIGINT)
            stdout, _ = invoker.communicate(timeout=WAIT)
        finally:
            if invoker.poll() is None:
                invoker.kill()
                invoker.wait()
    message = stderr_path.read_text().strip().splitlines()[-1]
    assert invoker.returncode == 130 and stdout == ""
    assert message.startswith("error: interrupted — revoked 2 unfinished fft_random task(s) "
                              "with terminate=True: ")
    ids = message.split(": ")[-1].split()
    # The running one is terminated; the queued one is discarded when the worker gets to it.
    for task_id in ids:
        assert wait_for_state(app.AsyncResult(task_id), {"REVOKED", "SUCCESS", "FAILURE"}) \
            == "REVOKED"
    assert app.send_task("tasks.add", [20, 22]).get(timeout=WAIT) == 42
