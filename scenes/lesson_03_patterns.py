"""Lesson 03's task patterns, run for real: start workers, send tasks, wait, report what happened.

Usage (notebook 03c, tests/test_03_patterns.py and `scripts/figures.py 03` call these)::

    >>> report = run_single_instance_demo(single_instance=True)   # beat, 3 workers, a slow job
    >>> report["overlaps"], report["skipped"]
    (0, 4)
    >>> report = run_outbox_demo(locked=False)     # 3 named workers drain a 12-email outbox
    >>> report["sent_more_than_once"], report["pending"]   # duplicates, and emails never sent
    (['0001', '0002', '0003', '0004'], 8)
    >>> run_outbox_demo(locked=True)["sent_more_than_once"]
    []

    >>> report = run_target_demo([("dave", 2.0), ("dave", 2.0), ("alice", 2.0)])
    >>> report["jobs"]                              # per task: target, state, retries
    >>> plot_targets(report)                        # and plot_outbox, plot_single_instance

    >>> fleet = demo_workers(lock_ttl=3)            # worker1…3, started once for several runs
    >>> run_single_instance_demo(single_instance=True, fleet=fleet)
    >>> run_outbox_demo(locked=True, fleet=fleet)
    >>> fleet.stop()

Each run starts its own workers (named worker1…, logs in `.run/logs/lesson03/`) on a queue of
their own, so a notebook's or test session's other workers never take its tasks, and stops them
when it ends — or, given `fleet=`, runs on workers started by `demo_workers()` and leaves them
running (a notebook saves their start-up in every run); every task run lands on the run timeline
(`labkit.timeline`) under a run id of its own. Everything talks to the Redis in REDIS_URL.
"""
from __future__ import annotations

import os
import signal
import time
from contextlib import contextmanager
from pathlib import Path

import tasks
from labkit import timeline
from labkit.processes import LOG_DIR, Beat, Fleet
from scenes.lesson_03_pictures import plot_outbox, plot_single_instance, plot_targets  # noqa: F401

QUEUE = "lesson03"
WAIT_TIMEOUT = 120.0


def _fleet(names: list[str], concurrency: int, env: dict | None = None) -> Fleet:
    _fresh_start()
    return Fleet(names, concurrency=concurrency, queues=[QUEUE], env=env,
                 log_dir=Path(LOG_DIR) / "lesson03")


def demo_workers(workers: int = 3, concurrency: int = 1, lock_ttl: float = 10.0,
                 max_retries: int = 5, backoff: float = 0.5, backoff_cap: float = 4.0,
                 rate_limit: str = "20/s") -> Fleet:
    """Workers worker1… on the demos' queue, started and ready, for several runs in a row: pass
    them as `fleet=` and stop them with `.stop()`. Like any worker they read their settings once,
    at start: the single-instance lease (`lock_ttl`) and run_on_target's retry policy."""
    env = {"EXTRACT_LOCK_TTL": str(lock_ttl),
           **_target_env(max_retries, backoff, backoff_cap, rate_limit)}
    return _fleet([f"worker{number}" for number in range(1, workers + 1)], concurrency,
                  env).start()


@contextmanager
def _workers(fleet: Fleet | None, workers: int, concurrency: int, env: dict | None = None):
    """`fleet`, left running, or else workers of the run's own, stopped when it ends."""
    if fleet is not None:
        _fresh_start()
        yield fleet
        return
    with _fleet([f"worker{number}" for number in range(1, workers + 1)], concurrency,
                env) as own:
        yield own


def _setting(fleet: Fleet | None, name: str, value, convert=float):
    """What the run's workers read from `name`: `value`, unless they are a `fleet` of their own."""
    if fleet is None:
        return value
    return convert(fleet.workers[0].env.get(name, value))


def _idle(fleet: Fleet) -> bool:
    """No message of the demos' queue waits in it, or is held (prefetched) or run by `fleet`."""
    inspect = tasks.app.control.inspect(destination=fleet.names, timeout=1.0)
    active, reserved = inspect.active() or {}, inspect.reserved() or {}
    if len(active) < len(fleet.names) or len(reserved) < len(fleet.names):
        return False   # a worker did not answer: ask again
    return not _queued() and not any(active.values()) and not any(reserved.values())


def _queued() -> int:
    with tasks.app.connection_for_read() as connection:
        try:
            return connection.default_channel.queue_declare(QUEUE, passive=True).message_count
        except connection.channel_errors:   # Redis: an empty queue is no key at all, "no queue"
            return 0


def _once_idle(fleet: Fleet, run_id: str, done, timeout: float) -> list:
    """The runs, once `fleet` is idle and `done(runs)`: beat's last sends, prefetched by a worker
    busy when beat stopped, start after the runs seen so far ended; on workers that stay up they
    would run into the next run."""
    deadline = time.monotonic() + timeout
    while True:
        if _idle(fleet):
            runs = timeline.runs(run_id)
            if done(runs):
                return runs
        if time.monotonic() > deadline:
            raise TimeoutError(f"{', '.join(fleet.names)} still busy after {timeout:.0f} s")
        time.sleep(0.1)


def _fresh_start() -> None:
    """Drop what an interrupted earlier run may have left: queued tasks, and the locks of workers
    killed mid-task (they would expire, but only after their TTL). Never do this in production."""
    with tasks.app.connection_for_write() as connection:
        connection.default_channel.queue_purge(QUEUE)
    client = tasks.db()
    stale = [key for pattern in ("lock:outbox", "lock:tasks.*")
             for key in client.scan_iter(match=pattern)
             if not key.endswith(":fence")]   # fencing tokens only ever go up
    if stale:
        client.delete(*stale)


def _join(results: list, timeout: float) -> None:
    """Wait until every result is ready (success or failure); TimeoutError names what is left."""
    deadline = time.monotonic() + timeout
    while not all(result.ready() for result in results):
        if time.monotonic() > deadline:
            left = sum(not result.ready() for result in results)
            raise TimeoutError(f"{left} of {len(results)} tasks unfinished after {timeout:.0f} s")
        time.sleep(0.1)


def _final_runs(run_id: str, task_ids: list[str], timeout: float = 10.0) -> list:
    """The run's timeline, once every task has its last attempt on it (it lands just after the
    result: a worker stores the result, then the task_postrun signal records the run)."""
    def all_final(runs):
        return {run.task_id for run in runs if run.outcome not in (None, "retried")} \
            >= set(task_ids)
    try:
        return timeline.wait_for_runs(run_id, all_final, timeout)
    except TimeoutError:
        return timeline.runs(run_id)   # draw what there is


def run_single_instance_demo(single_instance: bool, every: float = 1.0, seconds: float = 2.5,
                             for_seconds: float = 6.0, workers: int = 3, lock_ttl: float = 10.0,
                             until_a_second_run: bool = False,
                             timeout: float = WAIT_TIMEOUT, fleet: Fleet | None = None) -> dict:
    """Lesson 02's overlap run again: beat sends a `seconds`-long job `every` seconds to 3 workers.

    With `single_instance`, beat sends `data_extractor_single_instance` for the same entry: a run
    that finds the previous one still going is skipped; its lock is a `lock_ttl`-second lease,
    renewed while a run lasts. Beat runs `for_seconds` — and, with `until_a_second_run`, on until
    a run has started after the first one ended, however slow the machine — then the runs still
    going finish. On a `fleet` (from `demo_workers`), its lease counts, not `lock_ttl`.
    Returns {"runs", "overlaps", "skipped", "ran", "run_id", ...}.
    """
    env = _extract_env(single_instance, every, seconds,
                       _setting(fleet, "EXTRACT_LOCK_TTL", lock_ttl))
    with _workers(fleet, workers, 1, env):
        run_id = timeline.start_run("single instance" if single_instance else "overlap")
        with Beat("beat-lesson03", env=env, log_dir=Path(LOG_DIR) / "lesson03"):
            time.sleep(for_seconds)
            if until_a_second_run:
                timeline.wait_for_runs(run_id, _a_run_started_after_the_first_ended, timeout)
        runs = timeline.wait_until_finished(run_id, timeout=timeout)
        if fleet is not None:
            runs = _once_idle(fleet, run_id, _all_ended, timeout)
    runs = [run for run in runs if run.task.startswith("tasks.data_extractor")]
    return {"runs": runs, "run_id": run_id, "single_instance": single_instance,
            "overlaps": timeline.count_overlaps(runs),
            "ran": sum(run.outcome == "ran" for run in runs),
            "skipped": sum(run.outcome == "skipped" for run in runs)}


def _extract_env(single_instance: bool, every: float, seconds: float, lock_ttl: float) -> dict:
    """Beat's (and the workers') settings for the extractor entry, sent to the demos' queue."""
    return {"EXTRACT_EVERY": str(every), "EXTRACT_SECONDS": str(seconds), "EXTRACT_QUEUE": QUEUE,
            "EXTRACT_SINGLE_INSTANCE": "1" if single_instance else "0",
            "EXTRACT_LOCK_TTL": str(lock_ttl),
            "MAIL_EVERY": "3600"}   # the other entry stays quiet


def _all_ended(runs) -> bool:
    return all(run.end is not None for run in runs)


def _a_run_started_after_the_first_ended(runs) -> bool:
    # The first run released its lock before it ended, so a run that starts later finds the lock
    # free (or taken by another such run): there is a second run that does the work.
    finished = sorted((run for run in runs if run.outcome == "ran"), key=lambda run: run.end)
    return bool(finished) and any(run.start > finished[0].end for run in runs)


def run_single_instance_crash_demo(lock_ttl: float = 3.0, every: float = 1.0,
                                   seconds: float = 6.0, for_seconds: float = 8.0,
                                   timeout: float = WAIT_TIMEOUT,
                                   fleet: Fleet | None = None) -> dict:
    """The single-instance run, with the pool process of the first run killed (SIGKILL) in the
    middle of it: its lock is not released, its renewals stop, and the lease ends `lock_ttl`
    seconds later at most; until then runs are skipped, after it the next run goes ahead.
    On a `fleet` (from `demo_workers`), its lease counts, not `lock_ttl`.

    Returns {"runs", "killed": the Run killed (it never ends), "killed_at", ...}.
    """
    lock_ttl = _setting(fleet, "EXTRACT_LOCK_TTL", lock_ttl)
    env = _extract_env(True, every, seconds, lock_ttl)
    with _workers(fleet, 3, 1, env):
        run_id = timeline.start_run("single instance, holder killed")
        with Beat("beat-lesson03", env=env, log_dir=Path(LOG_DIR) / "lesson03"):
            first = _first_started(run_id, timeout)
            time.sleep(min(lock_ttl, seconds) / 2)       # well inside the run, lease renewed
            os.kill(first.pid, signal.SIGKILL)           # a pool process of our own workers
            killed_at = time.time()
            time.sleep(for_seconds)
        runs = _ended_except(run_id, first.key, timeout)
        if fleet is not None:
            runs = _once_idle(fleet, run_id, _ended_but(first.key), timeout)
    runs = [run for run in runs if run.task.startswith("tasks.data_extractor")]
    killed = next(run for run in runs if run.key == first.key)
    killed.end, killed.outcome = killed_at, "failed"   # what the timeline could not record
    return {"runs": runs, "run_id": run_id, "killed": killed, "killed_at": killed_at,
            "lock_ttl": lock_ttl, "every": every, "single_instance": True,
            "title": f"holder killed (SIGKILL) at {killed.rel_end:.1f} s, {lock_ttl:g} s lease",
            "overlaps": timeline.count_overlaps(runs),
            "ran": sum(run.outcome == "ran" for run in runs),
            "skipped": sum(run.outcome == "skipped" for run in runs)}


def _first_started(run_id: str, timeout: float):
    def started(runs):
        return [run for run in runs if run.outcome is None]
    return started(timeline.wait_for_runs(run_id, started, timeout))[0]


def _ended_but(dead_key: str):
    return lambda runs: all(run.end is not None for run in runs if run.key != dead_key)


def _ended_except(run_id: str, dead_key: str, timeout: float) -> list:
    """The runs, once all have ended but the one whose process was killed (it never will)."""
    return timeline.wait_for_runs(run_id, _ended_but(dead_key), timeout)


def run_outbox_demo(locked: bool, emails: int = 12, pause: float = 0.5, workers: int = 3,
                    timeout: float = WAIT_TIMEOUT, fleet: Fleet | None = None) -> dict:
    """`workers` workers drain an outbox of `emails`, one send task per email; who sent what.

    `pause` holds each task between reading the next pending email and marking it sent: three
    workers start their tasks within milliseconds of each other, so without a lock they all read
    the same email every round. Returns tasks.outbox.report() plus "locked" and "seconds".
    """

    task = tasks.send_mail_from_queue_locked if locked else tasks.send_mail_from_queue
    tasks.outbox.fill(emails)
    with _workers(fleet, workers, 1):
        run_id = timeline.start_run(f"outbox {'with' if locked else 'without'} lock")
        started = time.monotonic()
        results = [task.apply_async((pause,), queue=QUEUE) for _ in range(emails)]
        _join(results, timeout)
        seconds = time.monotonic() - started
        runs = _final_runs(run_id, [result.id for result in results])
    return {**tasks.outbox.report(), "locked": locked, "seconds": round(seconds, 2),
            "run_id": run_id, "runs": runs,
            "message_of": {result.id: result.result for result in results}}


def run_target_demo(jobs: list[tuple[str, float]], workers: int = 1, concurrency: int = 3,
                    max_retries: int = 5, backoff: float = 0.5, backoff_cap: float = 4.0,
                    rate_limit: str = "20/s", timeout: float = WAIT_TIMEOUT,
                    fleet: Fleet | None = None) -> dict:
    """Send `run_on_target(target, seconds)` for each job at once, on workers running 3 at a time.

    The retry policy and rate limit reach the workers through the environment (TARGET_*); on a
    `fleet` (from `demo_workers`), its own count.
    Returns {"jobs": [{"target", "seconds", "task_id", "state", "retries"}], "run_id", ...};
    timeline.runs(run_id) has every attempt, and `target_of` maps a task id to its target.
    """

    env = _target_env(max_retries, backoff, backoff_cap, rate_limit)
    max_retries = _setting(fleet, "TARGET_MAX_RETRIES", max_retries, convert=int)
    with _workers(fleet, workers, concurrency, env):
        run_id = timeline.start_run("one task per target")
        results = [tasks.run_on_target.apply_async((target, seconds), queue=QUEUE)
                   for target, seconds in jobs]
        _join(results, timeout)
        runs = _final_runs(run_id, [result.id for result in results])
    report = []
    for (target, seconds), result in zip(jobs, results):
        outcome = result.result  # the return value, or the exception (MaxRetriesExceededError)
        report.append({"target": target, "seconds": seconds, "task_id": result.id,
                       "state": result.state,
                       "retries": outcome["retries"] if result.successful() else None,
                       "error": None if result.successful() else type(outcome).__name__})
    return {"jobs": report, "run_id": run_id, "runs": runs, "max_retries": max_retries,
            "target_of": {job["task_id"]: job["target"] for job in report}}


def _target_env(max_retries: int, backoff: float, backoff_cap: float, rate_limit: str) -> dict:
    return {"TARGET_MAX_RETRIES": str(max_retries), "TARGET_BACKOFF": str(backoff),
            "TARGET_BACKOFF_CAP": str(backoff_cap), "TARGET_RATE_LIMIT": rate_limit}


# --- The figures: img/03_*.png -------------------------------------------------------------

def figures(out, save) -> None:
    """img/03_single_instance.png, img/03_outbox.png and img/03_per_target.png."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(11, 9.5))
    for ax, single in zip(axes, (False, True)):
        plot_single_instance(run_single_instance_demo(single, every=1, seconds=2.5,
                                                      for_seconds=8), ax=ax)
    plot_single_instance(run_single_instance_crash_demo(lock_ttl=3, every=1, seconds=6,
                                                        for_seconds=8), ax=axes[2])
    fig.tight_layout()
    save(fig, out / "03_single_instance.png")

    fig, axes = plt.subplots(2, 1, figsize=(11, 6))
    for ax, locked in zip(axes, (False, True)):
        plot_outbox(run_outbox_demo(locked, emails=12, pause=0.5), ax=ax)
    fig.tight_layout()
    save(fig, out / "03_outbox.png")

    # dave is busy for 4 s (two 2 s runs); a task's backoffs add up to at most 0.5 + 1 + 2 s:
    # the last one in line usually gives up.
    jobs = [("dave", 2.0)] * 3 + [("alice", 2.5), ("bob", 1.0), ("bob", 1.0), ("carol", 3.0)]
    fig = plot_targets(run_target_demo(jobs, concurrency=3, max_retries=3, backoff=0.5,
                                       backoff_cap=2))
    fig.tight_layout()
    save(fig, out / "03_per_target.png")
