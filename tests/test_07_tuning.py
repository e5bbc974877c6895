"""Lesson 07: the tuned configuration does the same work as the defaults, the run timeline's
switch really turns it off, and the tuning bench prints its table (never its speed)."""
from __future__ import annotations

import subprocess
import sys
import time
import uuid

import pytest

import tasks
from conftest import wait_until
from labkit import REPO_ROOT, timeline
from scenes import lesson_07_runs as runs

TUNED = "lean_results,ignore_result,prefetch,no_ack_emulation"
COUNT = 30


def tallies(setup, chunk: int = 0, ignore_result: bool = False):
    """Send tally(key, 1..COUNT); the counter's total once all ran, and the results if kept."""
    key = f"test07:{uuid.uuid4().hex}"
    pairs = [(key, amount) for amount in range(1, COUNT + 1)]
    if chunk:
        sent = [runs._send(setup, tasks.tally.chunks(pairs, chunk).group(),
                           ignore_result=ignore_result)]
    else:
        sent = [runs._send(setup, tasks.tally.s(*pair), ignore_result=ignore_result)
                for pair in pairs]
    total = COUNT * (COUNT + 1) // 2
    assert wait_until(lambda: int(tasks.db().get(key) or 0) >= total, timeout=60)
    time.sleep(0.3)   # a task run twice would show now
    results = None if ignore_result else [result.get(timeout=30) for result in sent]
    return int(tasks.db().get(key)), results


@pytest.mark.timeout(240)
def test_the_tuned_configuration_gives_the_same_results_as_the_defaults():
    setups = [runs.Setup("defaults", quiet=False), runs.Setup("lean", tuning="lean_results,prefetch,"
                                                              "no_ack_emulation"),
              runs.Setup("tuned", tuning=TUNED)]
    with runs.started(setups, timeout=120) as workers:
        total, results = tallies(workers["defaults"])
        assert total == COUNT * (COUNT + 1) // 2 and results == list(range(1, COUNT + 1))
        assert tallies(workers["lean"]) == (total, results)          # results kept, leaner
        assert tallies(workers["tuned"], ignore_result=True) == (total, None)
        chunked_total, chunked = tallies(workers["defaults"], chunk=10)
        assert chunked_total == total and sum(chunked[0], []) == results


@pytest.mark.timeout(240)
def test_run_timeline_0_records_nothing_and_the_default_records_every_run(fresh_db_url):
    setups = [runs.Setup("off", data_url=fresh_db_url, broker_url=None),
              runs.Setup("on", timeline=True, data_url=fresh_db_url)]
    run_id = timeline.start_run("lesson 07 switch", url=fresh_db_url)
    with runs.started(setups, timeout=120) as workers:
        for label in ("off", "on"):
            runs.burst(workers[label], 10)
    recorded = timeline.runs(run_id, url=fresh_db_url)
    workers_seen = {run.worker.split("@")[0].split("-")[1] for run in recorded}
    assert len(recorded) == 10 and workers_seen == {"on"}


def test_the_tuning_bench_short_mode_prints_each_step_as_a_ratio_to_the_defaults():
    done = subprocess.run([sys.executable, "bench/tuning.py", "--short"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    for label in ("defaults", "lean_results", "ignore_result", "prefetch multiplier",
                  "no ack emulation", "--without-gossip", "chunks of 10", "timeline recording"):
        assert label in done.stdout, label
    assert "| 1.00 |" in done.stdout and "Celery 5.7.0" in done.stdout
