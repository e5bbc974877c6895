"""Lesson 05b, routing: task_routes and -Q decide who runs what; a fast lane keeps short tasks
short under a flood (measured against the flooded queue, side by side, never as absolute speed);
priorities on Redis sort only what is still queued; the `route` command, and its bad input.
"""
import re

import pytest
import redis

from conftest import one_line
from labkit import Worker
from scenes.lesson_05_routing import (EMAIL, REPORT, Lanes, fast_lane_under_a_flood,
                                      priority_in_one_queue)
from scenes.producer import producer_for

WAIT = 60


@pytest.fixture(scope="module")
def url(module_db_url):
    return module_db_url


@pytest.fixture(scope="module")
def lanes(url):
    with Lanes(url) as lanes:
        yield lanes


@pytest.fixture(scope="module")
def app(url):
    app = producer_for(url)
    yield app
    app.close()


def test_a_routed_task_waits_in_its_queue_until_a_worker_serves_that_queue(fresh_db_url):
    app = producer_for(fresh_db_url)
    client = redis.Redis.from_url(fresh_db_url)
    try:
        with Worker("slowonly", queues=["slow"], env={"REDIS_URL": fresh_db_url}) as slow:
            email = app.send_task(EMAIL, ["ann"])                  # task_routes: queue "fast"
            report = app.send_task(REPORT, [0.1])                   # task_routes: queue "slow"
            assert report.get(timeout=WAIT)["worker"] == slow.nodename
            assert email.state == "PENDING" and client.llen("fast") == 1   # nobody serves it
            with Worker("fastonly", queues=["fast"], env={"REDIS_URL": fresh_db_url}) as fast:
                assert email.get(timeout=WAIT)["worker"] == fast.nodename
    finally:
        client.close()
        app.close()


def test_the_fast_lane_stays_short_under_a_flood_of_the_slow_queue(app, url, lanes):
    found = fast_lane_under_a_flood(app, url, reports=8, report_seconds=0.5, emails=3)
    by_task = {run.task_id: run for run in found["runs"]}
    fast = [run for run in by_task.values() if run.task == EMAIL and run.worker.startswith("fast")]
    assert len(fast) == 3 and len(found["slow_waits"]) == 3
    assert all(run.worker == lanes["slow"].nodename for run in by_task.values()
               if run.task == REPORT)
    # Relative, never absolute: the same email waits behind 8 × 0.5 s of reports in "slow"...
    assert min(found["slow_waits"]) > 3 * max(found["fast_waits"]), found
    assert found["ratio"] > 3
    # ...and in its own lane runs while the flood is still going.
    assert all(run.start < found["flood_ended"] for run in fast)


def test_a_priority_on_redis_overtakes_queued_tasks_not_those_a_worker_holds(app, url, lanes):
    found = priority_in_one_queue(lanes["slow"].nodename, app, url, reports=5,
                                  report_seconds=0.3)
    # sent last: after the report running and the one prefetched, before the three queued
    assert found["order"].index("send_reset_email") == 2, found["order"]


def test_the_route_command_prints_each_emails_wait(run_invoker, url, lanes):
    done = run_invoker("route", "--reports", "3", "--report-seconds", "0.5",
                       env={"REDIS_URL": url})
    assert done.returncode == 0, done.stderr
    assert "then 3 send_reset_email to queue 'fast' (its route)" in done.stdout
    waits = re.findall(r"user\d +waited +([\d.]+) s, ran on fastlane@", done.stdout)
    assert len(waits) == 3
    behind = run_invoker("route", "--reports", "3", "--report-seconds", "0.5", "--one-queue",
                         env={"REDIS_URL": url})
    assert behind.returncode == 0, behind.stderr
    slow = re.findall(r"user\d +waited +([\d.]+) s, ran on slowlane@", behind.stdout)
    assert len(slow) == 3 and min(map(float, slow)) > max(map(float, waits))


def test_the_route_command_names_a_queue_nobody_serves(run_invoker, fresh_db_url):
    with Worker("defaultonly", env={"REDIS_URL": fresh_db_url}):    # serves "celery" only
        done = run_invoker("--timeout", "2", "route", "--reports", "0",
                           env={"REDIS_URL": fresh_db_url})
    assert done.returncode == 4 and "Exception ignored" not in done.stderr
    line = one_line(done.stderr)
    assert "no worker serves queue 'fast'" in line and "-Q fast" in line


@pytest.mark.parametrize("args, expected", [
    (["route", "--reports", "-1"], "argument --reports: must be between 0 and 10,000 reports"),
    (["route", "--emails", "0"], "argument --emails: must be between 1 and 100 emails"),
    (["route", "--emails", "many"], "argument --emails: expected a whole number of emails"),
    (["route", "--report-seconds", "inf"], "argument --report-seconds: must be a number of"),
])
def test_the_route_commands_bad_input_is_one_line(run_invoker, fresh_db_url, args, expected):
    done = run_invoker(*args, env={"REDIS_URL": fresh_db_url})
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert expected in one_line(done.stderr)
    assert redis.Redis.from_url(fresh_db_url).llen("slow") == 0     # nothing was sent
