"""Lesson 06: a worker killed mid-task (SIGKILL, real processes), under the defaults and under
NOTHING_LOST=1; a non-idempotent task applied twice, an idempotent one once.

Each scene kills only once the task is STARTED and its email is out, so the kill always lands
mid-task; the rescuer worker starts once the visibility timeout (1.5 s here) has passed.
"""
from __future__ import annotations

import pytest

from scenes.lesson_06_kill import kill_mid_task

pytestmark = pytest.mark.timeout(180)


def test_a_killed_worker_loses_its_task_under_the_defaults(fresh_db_url):
    outcome = kill_mid_task(reliable=False, url=fresh_db_url)
    assert outcome.final_state == "STARTED"       # for ever: nobody will ever finish it
    assert outcome.run_count == 1 and outcome.runs[0].end is None
    assert outcome.deliveries == 1


def test_under_nothing_lost_the_task_runs_again_after_the_visibility_timeout(fresh_db_url):
    outcome = kill_mid_task(reliable=True, url=fresh_db_url)
    assert outcome.final_state == "SUCCESS"
    finished = [run for run in outcome.runs if run.end is not None]
    assert len(finished) == 1 and finished[0].worker.startswith("kill2@")   # exactly once, done
    assert finished[0].start >= outcome.killed + outcome.visibility_timeout  # not before
    assert outcome.deliveries == 2                 # not idempotent: the customer got two emails


def test_an_idempotent_task_sends_once_although_it_ran_twice(fresh_db_url):
    outcome = kill_mid_task(reliable=True, idempotent=True, url=fresh_db_url)
    assert outcome.final_state == "SUCCESS" and outcome.run_count == 2
    assert outcome.deliveries == 1


def test_a_killed_pool_process_fails_the_task_under_the_defaults(fresh_db_url):
    outcome = kill_mid_task(reliable=False, kill="pool", url=fresh_db_url)
    assert outcome.final_state == "FAILURE" and outcome.run_count == 1


def test_reject_on_worker_lost_requeues_a_task_whose_pool_process_was_killed(fresh_db_url):
    outcome = kill_mid_task(reliable=True, kill="pool", url=fresh_db_url)
    assert outcome.final_state == "SUCCESS"
    assert len([run for run in outcome.runs if run.end is not None]) == 1
    assert outcome.deliveries == 2
