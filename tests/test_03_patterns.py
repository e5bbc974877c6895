"""Lesson 03's task patterns, with real workers: the outbox, one task per target, single instance.

Each test runs a `scenes.lesson_03_patterns` demo the way the notebook does, in a fresh Python whose
REDIS_URL is a database of its own on the private server: its workers (started and stopped by the
demo) never share a queue with the session fleet. The demo's report, with every task run from the
run timeline, comes back as JSON.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from itertools import combinations

from labkit import REPO_ROOT
from labkit.timeline import Run


def run_demo(call: str, url: str, timeout: float = 150) -> dict:
    """`scenes.lesson_03_patterns.<call>` in a fresh Python on the (empty) database at `url`;
    its report."""
    code = ("import dataclasses, json\n"
            "from scenes import lesson_03_patterns as pattern_runs\n"
            f"report = pattern_runs.{call}\n"
            "print(json.dumps(report, default=dataclasses.asdict))\n")   # Run objects as dicts
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "REDIS_URL": url})
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.splitlines()[-1])
    report["runs"] = [Run(**run) for run in report["runs"]]
    return report


def overlap(a, b) -> bool:
    """Did two runs work at once? (The locked part, for runs that hold a lock: Run.busy.)"""
    (a_start, a_end), (b_start, b_end) = a.busy, b.busy
    return a_start < b_end and b_start < a_end


# --- ii. mutual exclusion on a shared record: the outbox ---------------------------------------

def test_without_a_lock_three_workers_send_the_same_email_more_than_once(fresh_db_url):
    # A 1 s pause between read and write: the three workers' reads always fall inside it.
    report = run_demo("run_outbox_demo(locked=False, emails=12, pause=1.0)", fresh_db_url)
    assert report["sent_more_than_once"], report
    senders = {}
    for run in report["runs"]:
        senders.setdefault(report["message_of"][run.task_id], set()).add(run.worker)
    assert any(len(workers) > 1 for workers in senders.values()), "sent twice by one worker only?"
    assert report["pending"] > 0  # the sends that went to duplicates are missing elsewhere


def test_with_the_lock_every_email_is_sent_exactly_once(fresh_db_url):
    report = run_demo("run_outbox_demo(locked=True, emails=12, pause=0.5)", fresh_db_url)
    assert report["sent_more_than_once"] == []
    assert report["pending"] == 0
    assert report["deliveries"] == report["messages"] == 12
    assert len(report["runs"]) == 12 and {run.outcome for run in report["runs"]} == {"ran"}


# --- iii. one task per target at a time --------------------------------------------------------

def test_backoff_grows_exponentially_up_to_its_cap_and_is_jittered():
    from locks.patterns import backoff

    for retries, ceiling in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (6, 5.0)]:
        delays = [backoff(retries, base=0.5, cap=5.0) for _ in range(200)]
        assert all(0 <= delay <= ceiling for delay in delays)
        assert max(delays) > 0.8 * ceiling and len(set(delays)) > 100   # spread, not fixed


def runs_of(report, target, outcome="ran"):
    return [run for run in report["runs"]
            if report["target_of"][run.task_id] == target and run.outcome == outcome]


def test_runs_for_one_target_never_overlap_while_other_targets_run_alongside(fresh_db_url):
    jobs = [("dave", 1.5)] * 3 + [("alice", 1.5), ("bob", 1.5)]
    report = run_demo(f"run_target_demo({jobs!r}, concurrency=3, max_retries=30, backoff=0.25, "
                      "backoff_cap=0.5)", fresh_db_url)
    assert [job["state"] for job in report["jobs"]] == ["SUCCESS"] * 5, report["jobs"]
    dave = runs_of(report, "dave")
    assert len(dave) == 3
    assert not any(overlap(a, b) for a, b in combinations(dave, 2)), "two dave runs at once"
    others = runs_of(report, "alice") + runs_of(report, "bob")
    assert any(overlap(a, b) for a in dave for b in others), "other targets waited for dave"
    assert len(runs_of(report, "dave", "retried")) >= 2  # the two dave runs that came too early
    ran = [run for run in report["runs"] if run.outcome == "ran"]
    at_once = max(sum(other.start <= run.start < other.end for other in ran) for run in ran)
    assert at_once <= 3  # --concurrency=3: retries wait for a free process too


def test_a_target_that_stays_busy_makes_its_other_tasks_give_up_after_max_retries(fresh_db_url):
    # dave's first job holds him 6 s; the others' backoffs add up to at most 0.25 + 0.5 + 1 s.
    jobs = [("dave", 6.0), ("dave", 0.5), ("dave", 0.5)]
    report = run_demo(f"run_target_demo({jobs!r}, max_retries=3, backoff=0.25, backoff_cap=1)",
                      fresh_db_url)
    first, *others = report["jobs"]
    assert first["state"] == "SUCCESS" and first["retries"] == 0
    for job in others:
        assert job["state"] == "FAILURE" and job["error"] == "MaxRetriesExceededError", job
        attempts = [run.outcome for run in sorted(report["runs"], key=lambda run: run.start)
                    if run.task_id == job["task_id"]]
        assert attempts == ["retried"] * 3 + ["failed"], attempts


def test_the_rate_limit_spaces_out_the_starts_on_a_worker(fresh_db_url):
    jobs = [(f"host{number}", 0.1) for number in range(6)]
    report = run_demo(f"run_target_demo({jobs!r}, concurrency=3, rate_limit='2/s')", fresh_db_url)
    starts = sorted(run.start for run in report["runs"])
    gaps = [later - earlier for earlier, later in zip(starts, starts[1:])]
    # 2 per second: half a second apart (0.3 s of it allowed for a slow hand-over to a pool
    # process); with no limit, three pool processes would start three at once.
    assert len(starts) == 6 and min(gaps) > 0.2, gaps


# --- i. single instance: lesson 02's overlap run again -----------------------------------------

def test_without_single_instance_a_slow_periodic_job_overlaps_itself(fresh_db_url):
    report = run_demo("run_single_instance_demo(single_instance=False, every=1, seconds=2.5, "
                      "for_seconds=6)", fresh_db_url)
    assert report["overlaps"] >= 1, report
    assert report["skipped"] == 0


def test_with_single_instance_runs_that_find_the_job_running_are_skipped_and_none_overlap(
        fresh_db_url):
    report = run_demo("run_single_instance_demo(single_instance=True, every=1, seconds=2.5, "
                      "for_seconds=6)", fresh_db_url)
    ran = [run for run in report["runs"] if run.outcome == "ran"]
    skipped = [run for run in report["runs"] if run.outcome == "skipped"]
    assert report["overlaps"] == 0
    assert not any(overlap(a, b) for a, b in combinations(ran, 2))
    assert len(ran) >= 2 and len(skipped) >= 2, report
    for run in skipped:   # each skip happened while a run held the lock
        assert any(other.start <= run.start < other.end for other in ran), run


# --- the same, from the command line (the session's workers) ----------------------------------

def test_invoker_mail_locked_sends_every_email_once(workers, run_invoker):
    done = run_invoker("--timeout", 60, "mail", "--count", 6, "--pause", 0.2, "--locked")
    assert done.returncode == 0, done.stderr
    assert "send_mail_from_queue_locked" in done.stdout
    assert "sent more than once: none; still pending: 0" in done.stdout


def test_invoker_target_runs_each_target_and_reports_retries(workers, run_invoker):
    done = run_invoker("--timeout", 60, "target", "dave", "dave", "alice", "--seconds", 0.5)
    assert done.returncode == 0, done.stderr
    lines = [line.split() for line in done.stdout.splitlines()]
    assert [line[0] for line in lines] == ["dave", "dave", "alice"]
    assert all(line[1] == "ran" for line in lines), done.stdout
    # (whether the second dave task had to retry depends on which worker took it: a busy worker
    # may hold it, prefetched, until dave's first run is over; the fleet tests above force it)
    assert all(line[-1] == "retries" and line[-2].isdigit() for line in lines), done.stdout


def test_single_instance_holds_through_runs_longer_than_its_lock_ttl_because_the_lock_renews(
        fresh_db_url):
    # A 3 s lease, 7.5 s runs, a run sent every second: without renewal the lease would end
    # mid-run and the next run would start alongside. (Renewal comes every ttl/3: a lease much
    # shorter than this can lapse when a loaded machine stalls the process for 2/3 of it.)
    # Beat keeps sending until a run has started after the first one ended: a fixed 8 s, as this
    # test once had, gave a slow machine only one run (the first started late, the second never).
    report = run_demo("run_single_instance_demo(single_instance=True, every=1, seconds=7.5, "
                      "for_seconds=8, lock_ttl=3, until_a_second_run=True)", fresh_db_url)
    assert report["overlaps"] == 0
    assert report["ran"] >= 2 and report["skipped"] >= 2, report


def test_a_single_instance_holder_killed_mid_run_blocks_the_job_for_at_most_its_lock_ttl(
        fresh_db_url):
    report = run_demo("run_single_instance_crash_demo(lock_ttl=3, every=1, seconds=6, "
                      "for_seconds=8)", fresh_db_url)
    killed_at, ttl = report["killed_at"], report["lock_ttl"]
    after = [run for run in report["runs"] if run.start > killed_at]
    next_run = min((run for run in after if run.outcome == "ran"), key=lambda run: run.start)
    # the lease outlives its holder by at most ttl, then the next send (every 1 s) runs
    assert next_run.start < killed_at + ttl + report["every"] + 2.0, next_run
    assert any(run.outcome == "skipped" and run.start < next_run.start for run in after)
    assert report["overlaps"] == 0


# --- the decorators on their own --------------------------------------------------------------

STANDALONE = '''
import json, os, sys, time
import redis
from celery import Celery
from locks import Lock, patterns

app = Celery("standalone")   # no broker is used: the task is called in this process
client = redis.Redis.from_url(os.environ["REDIS_URL"])
heard = []
patterns.run_skipped.connect(lambda sender, signal, **kw: heard.append(["skipped", kw]), weak=False)
patterns.lock_released.connect(lambda sender, signal, **kw: heard.append(["released", kw]), weak=False)

@app.task(bind=True, name="standalone.job")
@patterns.single_instance(lambda: client, ttl=5)
def job(self):
    time.sleep(0.1)
    return "ran"

with Lock(client, "lock:standalone.job", timeout=5):
    first = job()           # the lock is held: skipped
second = job()              # free: runs
print(json.dumps({"first": first, "second": second, "heard": heard,
                  "labkit": sorted(m for m in sys.modules if m.startswith("labkit"))}))
'''


def test_the_decorators_tell_listeners_through_celery_signals_and_need_no_labkit(fresh_db_url):
    done = subprocess.run([sys.executable, "-c", STANDALONE], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "REDIS_URL": fresh_db_url})
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["first"] is None and report["second"] == "ran"
    (skipped, skip_info), (released, release_info) = report["heard"]
    assert (skipped, released) == ("skipped", "released")
    assert skip_info == {"lock_name": "lock:standalone.job"}
    assert release_info["lock_name"] == "lock:standalone.job"
    assert 0.1 <= release_info["held_until"] - release_info["held_from"] < 5
    assert report["labkit"] == []   # copy locks/ into a project: the lessons' plumbing stays out
