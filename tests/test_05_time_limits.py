"""Lesson 05b, time limits: the soft one is an exception the task handles, the hard one kills the
pool process, which the worker replaces; per call, and the `timelimit` command.

One worker with one pool process, on a database of its own: the run timeline records each run's
pool process id, so a replaced process shows as a new pid.
"""
import re

import pytest
from celery.exceptions import TimeLimitExceeded

from conftest import one_line
from labkit import Worker, timeline
from scenes.lesson_05_time import export_runs, run_export
from scenes.producer import producer_for


@pytest.fixture(scope="module")
def url(module_db_url):
    return module_db_url


@pytest.fixture(scope="module")
def limits_worker(url):
    with Worker("limits", env={"REDIS_URL": url}) as worker:
        yield worker


@pytest.fixture(scope="module")
def app(url, limits_worker):
    app = producer_for(url)
    yield app
    app.close()


def test_a_soft_limit_raises_inside_the_task_which_cleans_up_and_returns_what_it_did(
        app, limits_worker):
    outcome = run_export(app, items=10, seconds_per_item=0.3, soft_time_limit=1)
    assert outcome["state"] == "SUCCESS"
    value = outcome["result"]
    assert value["stopped_early"] and 0 < value["done"] < value["of"] == 10
    assert outcome["scratch_left"] is False and outcome["saved"] == value["done"]   # cleanup ran
    log = limits_worker.log_text()
    assert f"Soft time limit (1s) exceeded for tasks.export_batch[{outcome['task_id']}]" in log
    assert f"[{outcome['task_id']}]: soft time limit: stopping after {value['done']} of 10" in log


def test_a_hard_limit_replaces_the_pool_process_and_the_worker_keeps_serving(app, url,
                                                                             limits_worker):
    run_id = timeline.start_run("hard limit", url=url)
    killed = run_export(app, items=10, seconds_per_item=0.3, time_limit=1)
    assert killed["state"] == "FAILURE" and isinstance(killed["result"], TimeLimitExceeded)
    # SIGTERM lets `finally` start, SIGKILL 0.1 s later cuts its one-second cleanup short.
    assert killed["scratch_left"] is True and killed["saved"] is None
    after = run_export(app, items=1, seconds_per_item=0.0)
    assert after["state"] == "SUCCESS" and limits_worker.is_running()
    runs = {run.task_id: run for run in export_runs(run_id, [killed, after], url)}
    assert runs[after["task_id"]].pid != runs[killed["task_id"]].pid    # a new pool process
    assert after["result"]["pid"] == runs[after["task_id"]].pid
    assert re.search(rf"Hard time limit \(1s\) exceeded for tasks.export_batch\["
                     rf"{killed['task_id']}\]", limits_worker.log_text())


def test_a_calls_hard_limit_below_the_tasks_soft_limit_is_not_enforced_celery_9125(app):
    # The worker arms the hard timer only when the soft one fires: a 1 s hard limit under a 3 s
    # soft limit lets a 1.2 s task finish. (Hence the invoker refuses --soft >= --hard.)
    outcome = run_export(app, items=4, seconds_per_item=0.3, cleanup_seconds=0.0,
                         soft_time_limit=3, time_limit=1)
    assert outcome["state"] == "SUCCESS" and outcome["result"]["done"] == 4


def test_the_timelimit_command_says_how_each_limit_ended(run_invoker, url, limits_worker):
    soft = run_invoker("timelimit", "--soft", "1", "--item-seconds", "0.3",
                       env={"REDIS_URL": url})
    assert soft.returncode == 0, soft.stderr
    assert re.search(r"stopped by the soft limit after \d of 10 items \(pid \d+ on limits@\S+\); "
                     r"cleanup ran: saved \d of 10, scratch key removed", soft.stdout)
    hard = run_invoker("timelimit", "--hard", "1", "--item-seconds", "0.3", env={"REDIS_URL": url})
    assert hard.returncode == 1 and "Traceback" not in hard.stderr
    line = one_line(hard.stderr)
    assert "raised TimeLimitExceeded" in line and "killed its pool process" in line
    assert "cleanup never finished" in line


@pytest.mark.parametrize("args, expected", [
    (["timelimit", "--soft", "2", "--hard", "1"], "--soft must be below --hard"),
    (["timelimit", "--soft", "1", "--hard", "1"], "--soft must be below --hard"),
    (["timelimit", "--soft", "0"], "argument --soft: must be a number of seconds above 0"),
    (["timelimit", "--hard", "inf"], "argument --hard: must be a number of seconds above 0"),
    (["timelimit", "--hard", "-1"], "argument --hard: must be a number of seconds above 0"),
    (["timelimit", "--items", "0"], "argument --items: must be between 1 and 10,000 items"),
    (["timelimit", "--item-seconds", "nan"], "argument --item-seconds: must be a number of"),
])
def test_the_timelimit_commands_bad_input_is_one_line(run_invoker, fresh_db_url, args, expected):
    done = run_invoker(*args, env={"REDIS_URL": fresh_db_url})
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert expected in one_line(done.stderr)
    assert done.stdout == ""
