"""Lesson 06: prefetch holding short tasks hostage, a leaking task replaced, autoscale."""
from __future__ import annotations

import pytest

from scenes.lesson_06_pool import autoscale_burst, leak, prefetch_hostages

pytestmark = pytest.mark.timeout(180)


def test_with_celerys_default_prefetch_short_tasks_wait_behind_the_long_one(fresh_db_url):
    outcome = prefetch_hostages("Celery's default: prefetch ×4", url=fresh_db_url)
    assert outcome.hostages == 4


@pytest.mark.parametrize("variant", ["NOTHING_LOST: acks_late, ×1", "--disable-prefetch"])
def test_without_prefetch_no_short_task_waits_for_the_long_one(fresh_db_url, variant):
    outcome = prefetch_hostages(variant, url=fresh_db_url)
    assert outcome.hostages == 0                              # busy took none of them
    # Each waited only for the idle worker to join (its next BRPOP, within 1 s), never for the
    # long task (the hostages wait all of it).
    assert max(outcome.short_waits) < outcome.long_seconds


def test_the_pool_replaces_a_leaking_process_after_a_limit(fresh_db_url):
    found = leak(tasks=6, url=fresh_db_url)
    pids = [pid for pid, _ in found["--max-tasks-per-child=2"]]
    assert len(set(pids[0:2])) == len(set(pids[2:4])) == len(set(pids[4:6])) == 1
    assert len({pids[0], pids[2], pids[4]}) == 3              # a new process every 2 tasks
    assert len({pid for pid, _ in found["no limit"]}) == 1
    memory = [mib for _, mib in found["no limit"]]
    assert memory[-1] - memory[0] > 80                        # 5 × 20 MiB kept
    assert len({pid for pid, _ in found["--max-memory-per-child=90000 (KiB)"]}) >= 2


def test_autoscale_grows_the_pool_under_a_burst_and_shrinks_it_after(fresh_db_url):
    samples = autoscale_burst(url=fresh_db_url)
    assert max(samples["pool"]) >= 3
    assert samples["pool"][-1] == 1
