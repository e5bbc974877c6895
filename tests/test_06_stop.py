"""Lesson 06: stopping a worker that holds a running, a prefetched and an ETA task."""
from __future__ import annotations

import pytest

from scenes.lesson_06_stop import shutdown_fates

pytestmark = pytest.mark.timeout(180)


def test_warm_shutdown_finishes_the_running_task_and_requeues_the_rest(fresh_db_url):
    assert shutdown_fates("warm", url=fresh_db_url) == {
        "running": "finished", "prefetched": "back in queue", "eta": "back in queue"}


def test_cold_shutdown_loses_the_running_task_under_the_defaults(fresh_db_url):
    fates = shutdown_fates("cold", url=fresh_db_url)
    assert fates["running"].startswith("lost")      # acknowledged on receipt, then terminated
    assert fates["prefetched"] == fates["eta"] == "back in queue"


def test_soft_shutdown_lets_the_running_task_finish_under_nothing_lost(fresh_db_url):
    fates = shutdown_fates("cold", reliable=True, url=fresh_db_url)
    assert fates == {"running": "finished", "prefetched": "back in queue",
                     "eta": "back in queue"}


def test_past_the_soft_shutdown_timeout_the_running_task_goes_back_to_the_queue(fresh_db_url):
    fates = shutdown_fates("cold", reliable=True, running_seconds=8.0, url=fresh_db_url)
    assert fates["running"] == "back in queue"      # cancelled after 5 s, not acknowledged
