"""Lesson 04: stopping a running FFT — cooperatively first; terminate is the last resort.

One worker with one pool process, on a database of its own: after a task is stopped, the next
task can only run if that very worker is still serving, and the run timeline (which records each
run's pool process id) tells whether the pool process that ran it is still the same one.
"""
import os
import re
import signal
import subprocess
import sys
import time
import uuid

import pytest
from celery import Celery
from celery.exceptions import TaskRevokedError

import tasks
from conftest import as_from_a_terminal, wait_until
from labkit import REPO_ROOT, Worker, timeline
from tasklib.progress import CANCEL_PREFIX, CANCEL_TTL, MAX_FFT_ROUNDS, request_cancel

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


def runs_of(run_id, url, *task_ids):
    """The timeline's runs of `task_ids` once each has ended (the last one's record is written
    just after its result): {task id: [Run, ...]}."""
    def ended(runs):
        return all(any(run.task_id == task_id and run.end for run in runs) for task_id in task_ids)
    runs = timeline.wait_for_runs(run_id, ended, timeout=WAIT, url=url, describe=lambda runs: [
        (run.task, run.task_id, run.outcome) for run in runs])
    return {task_id: [run for run in runs if run.task_id == task_id] for task_id in task_ids}


def test_a_running_fft_revoked_with_terminate_ends_revoked_and_the_worker_keeps_serving(app,
                                                                                       lone_worker):
    # The last resort: the worker kills the pool process running the task (prefork only).
    result = app.send_task("tasks.fft_random", [MAX_FFT_ROUNDS])   # hours, if left alone
    wait_for_state(result, {"PROGRESS"})
    result.revoke(terminate=True)
    assert wait_for_state(result, {"REVOKED", "SUCCESS", "FAILURE"}) == "REVOKED"
    assert app.send_task("tasks.add", [2, 3]).get(timeout=WAIT) == 5   # same worker, new process
    assert lone_worker.is_running()
    assert re.search(r"Terminating " + result.id, lone_worker.log_text())


def test_a_cancelled_fft_stops_by_itself_ends_revoked_and_its_pool_process_runs_the_next_task(
        app, url, lone_worker):
    run_id = timeline.start_run("cooperative cancel", url=url)
    result = app.send_task("tasks.fft_random", [MAX_FFT_ROUNDS])
    wait_for_state(result, {"PROGRESS"})
    request_cancel(app, [result.id])       # no revoke at all: the request alone stops it
    assert wait_for_state(result, {"REVOKED", "SUCCESS", "FAILURE"}) == "REVOKED"
    assert isinstance(result.result, TaskRevokedError)
    assert re.fullmatch(rf"cancelled at \d+ of {MAX_FFT_ROUNDS}", str(result.result))
    with pytest.raises(TaskRevokedError):
        result.get(timeout=WAIT)
    after = app.send_task("tasks.add", [2, 3])
    assert after.get(timeout=WAIT) == 5
    runs = runs_of(run_id, url, result.id, after.id)
    assert runs[result.id][0].pid == runs[after.id][0].pid, "the pool process was replaced"
    log = lone_worker.log_text()
    assert f"{result.id}]: cancelled at" in log and f"Terminating {result.id}" not in log


def test_a_cancel_requested_before_the_task_starts_stops_it_at_its_first_update(app, url):
    # Revokes live in the workers' memory; the request is a key that expires, so a task that
    # starts later (a restarted worker, no --statedb) still stops before doing any work.
    task_id = str(uuid.uuid4())
    request_cancel(app, [task_id])
    ttl = app.backend.client.ttl(CANCEL_PREFIX + task_id)
    assert 0 < ttl <= CANCEL_TTL
    result = app.send_task("tasks.fft_random", [MAX_FFT_ROUNDS], task_id=task_id)
    assert wait_for_state(result, {"REVOKED", "SUCCESS", "FAILURE"}) == "REVOKED"
    assert str(result.result) == f"cancelled at 1 of {MAX_FFT_ROUNDS}"


def interrupt_the_invoker_once_its_bar_moves(url, stderr_path, *args):
    """Run `invoker.py ARGS`, send it SIGINT (Ctrl-C) once a bar moved; (exit code, stdout)."""
    with open(stderr_path, "w") as stderr:
        invoker = subprocess.Popen(
            [sys.executable, "invoker.py", *args], cwd=REPO_ROOT,
            env={**os.environ, "REDIS_URL": url}, stdout=subprocess.PIPE, stderr=stderr, text=True,
            preexec_fn=as_from_a_terminal)
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
    return invoker.returncode, stdout


def test_ctrl_c_in_the_invoker_stops_the_running_task_drops_the_queued_one_and_exits_130(
        url, app, lone_worker, tmp_path):
    run_id = timeline.start_run("ctrl-c", url=url)
    stderr_path = tmp_path / "stderr.txt"
    code, stdout = interrupt_the_invoker_once_its_bar_moves(
        url, stderr_path, "fft", str(MAX_FFT_ROUNDS), "--tasks", "2")
    message = stderr_path.read_text().strip().splitlines()[-1]
    assert code == 130 and stdout == ""
    assert re.fullmatch(r"error: interrupted — asked 2 unfinished fft_random task\(s\) to stop; "
                        r"all stopped in \d+\.\d s \(2 REVOKED\): [0-9a-f-]{36} [0-9a-f-]{36}",
                        message), message
    running, queued = message.split(": ")[-1].split()   # in the order they were sent
    for task_id in (running, queued):
        assert app.AsyncResult(task_id).state == "REVOKED"
    assert "cancelled at" in str(app.AsyncResult(running).result)   # stopped by itself
    after = app.send_task("tasks.add", [20, 22])
    assert after.get(timeout=WAIT) == 42
    runs = runs_of(run_id, url, running, after.id)
    assert runs[running][0].pid == runs[after.id][0].pid, "the pool process was replaced"
    # The queued task is dropped unrun by the revoke — or, if its worker took it before the
    # revoke arrived (a race on a loaded machine), it stopped at its first update, one round in.
    queued_runs = [run for run in timeline.runs(run_id, url=url)
                   if run.task_id == queued and run.did_work]
    assert not queued_runs or str(app.AsyncResult(queued).result) == \
        f"cancelled at 1 of {MAX_FFT_ROUNDS}", "the queued task ran past its first update"
    assert f"Terminating {running}" not in lone_worker.log_text()
