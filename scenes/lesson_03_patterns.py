"""Lesson 03's task patterns, run for real: start workers, send tasks, wait, report what happened.

Usage (notebook 03, tests/test_03_patterns.py and `scripts/figures.py 03` call these)::

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

Each run starts its own workers (named worker1…, logs in `.run/logs/lesson03/`) on a queue of
their own, so a notebook's or test session's other workers never take its tasks, and stops them
when it ends; every task run lands on the run timeline (`labkit.timeline`) under a run id of its
own. Everything talks to the Redis in REDIS_URL.
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import tasks
from labkit import plots, timeline
from labkit.processes import LOG_DIR, Beat, Fleet

QUEUE = "lesson03"
WAIT_TIMEOUT = 120.0


def _fleet(names: list[str], concurrency: int, env: dict | None = None) -> Fleet:
    _fresh_start()
    return Fleet(names, concurrency=concurrency, queues=[QUEUE], env=env,
                 log_dir=Path(LOG_DIR) / "lesson03")


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
                             timeout: float = WAIT_TIMEOUT) -> dict:
    """Lesson 02's overlap run again: beat sends a `seconds`-long job `every` seconds to 3 workers.

    With `single_instance`, beat sends `data_extractor_single_instance` for the same entry: a run
    that finds the previous one still going is skipped; its lock is a `lock_ttl`-second lease,
    renewed while a run lasts. Beat runs `for_seconds` — and, with `until_a_second_run`, on until
    a run has started after the first one ended, however slow the machine — then the runs still
    going finish. Returns {"runs", "overlaps", "skipped", "ran", "run_id", ...}.
    """
    env = {"EXTRACT_EVERY": str(every), "EXTRACT_SECONDS": str(seconds), "EXTRACT_QUEUE": QUEUE,
           "EXTRACT_SINGLE_INSTANCE": "1" if single_instance else "0",
           "EXTRACT_LOCK_TTL": str(lock_ttl),
           "MAIL_EVERY": "3600"}   # the other entry stays quiet
    with _fleet([f"worker{number}" for number in range(1, workers + 1)], 1, env):
        run_id = timeline.start_run("single instance" if single_instance else "overlap")
        with Beat("beat-lesson03", env=env, log_dir=Path(LOG_DIR) / "lesson03"):
            time.sleep(for_seconds)
            if until_a_second_run:
                timeline.wait_for_runs(run_id, _a_run_started_after_the_first_ended, timeout)
        runs = timeline.wait_until_finished(run_id, timeout=timeout)
    runs = [run for run in runs if run.task.startswith("tasks.data_extractor")]
    return {"runs": runs, "run_id": run_id, "single_instance": single_instance,
            "overlaps": timeline.count_overlaps(runs),
            "ran": sum(run.outcome == "ran" for run in runs),
            "skipped": sum(run.outcome == "skipped" for run in runs)}


def _a_run_started_after_the_first_ended(runs) -> bool:
    # The first run released its lock before it ended, so a run that starts later finds the lock
    # free (or taken by another such run): there is a second run that does the work.
    finished = sorted((run for run in runs if run.outcome == "ran"), key=lambda run: run.end)
    return bool(finished) and any(run.start > finished[0].end for run in runs)


def run_single_instance_crash_demo(lock_ttl: float = 3.0, every: float = 1.0,
                                   seconds: float = 6.0, for_seconds: float = 8.0,
                                   timeout: float = WAIT_TIMEOUT) -> dict:
    """The single-instance run, with the pool process of the first run killed (SIGKILL) in the
    middle of it: its lock is not released, its renewals stop, and the lease ends `lock_ttl`
    seconds later at most; until then runs are skipped, after it the next run goes ahead.

    Returns {"runs", "killed": the Run killed (it never ends), "killed_at", ...}.
    """

    env = {"EXTRACT_EVERY": str(every), "EXTRACT_SECONDS": str(seconds), "EXTRACT_QUEUE": QUEUE,
           "EXTRACT_SINGLE_INSTANCE": "1", "EXTRACT_LOCK_TTL": str(lock_ttl), "MAIL_EVERY": "3600"}
    with _fleet(["worker1", "worker2", "worker3"], 1, env):
        run_id = timeline.start_run("single instance, holder killed")
        with Beat("beat-lesson03", env=env, log_dir=Path(LOG_DIR) / "lesson03"):
            first = _first_started(run_id, timeout)
            time.sleep(min(lock_ttl, seconds) / 2)       # well inside the run, lease renewed
            os.kill(first.pid, signal.SIGKILL)           # a pool process of our own workers
            killed_at = time.time()
            time.sleep(for_seconds)
        runs = _ended_except(run_id, first.key, timeout)
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


def _ended_except(run_id: str, dead_key: str, timeout: float) -> list:
    """The runs, once all have ended but the one whose process was killed (it never will)."""
    return timeline.wait_for_runs(
        run_id, lambda runs: all(run.end is not None for run in runs if run.key != dead_key),
        timeout)


def run_outbox_demo(locked: bool, emails: int = 12, pause: float = 0.5, workers: int = 3,
                    timeout: float = WAIT_TIMEOUT) -> dict:
    """`workers` workers drain an outbox of `emails`, one send task per email; who sent what.

    `pause` holds each task between reading the next pending email and marking it sent: three
    workers start their tasks within milliseconds of each other, so without a lock they all read
    the same email every round. Returns tasks.outbox.report() plus "locked" and "seconds".
    """

    task = tasks.send_mail_from_queue_locked if locked else tasks.send_mail_from_queue
    tasks.outbox.fill(emails)
    with _fleet([f"worker{number}" for number in range(1, workers + 1)], concurrency=1):
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
                    rate_limit: str = "20/s", timeout: float = WAIT_TIMEOUT) -> dict:
    """Send `run_on_target(target, seconds)` for each job at once, on workers running 3 at a time.

    The retry policy and rate limit reach the workers through the environment (TARGET_*).
    Returns {"jobs": [{"target", "seconds", "task_id", "state", "retries"}], "run_id", ...};
    timeline.runs(run_id) has every attempt, and `target_of` maps a task id to its target.
    """

    env = {"TARGET_MAX_RETRIES": str(max_retries), "TARGET_BACKOFF": str(backoff),
           "TARGET_BACKOFF_CAP": str(backoff_cap), "TARGET_RATE_LIMIT": rate_limit}
    with _fleet([f"worker{number}" for number in range(1, workers + 1)], concurrency, env):
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


# --- Pictures of the reports ------------------------------------------------------------------

def plot_single_instance(report: dict, ax=None, path=None):
    """Lesson 02's timeline picture of the run: one lane per worker, overlaps and skips marked."""
    title = report.get("title") or ("single instance" if report["single_instance"] else "no lock")
    return plots.plot_timeline(report["runs"], path=path, title=title, ax=ax)


def _axes(ax, lanes: int):
    import matplotlib.pyplot as plt

    if ax is None:
        return plt.subplots(figsize=(11, 1.4 + 0.7 * lanes))
    return ax.figure, ax


def _finish(fig, ax, lanes: list[str], path):
    ax.set_yticks(range(len(lanes)), labels=lanes)
    ax.set_ylim(-0.6, len(lanes) - 0.4)
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the first run started")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small", frameon=False)
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    return fig


def plot_outbox(report: dict, ax=None, path=None):
    """One lane per worker, one bar per send task labelled with the email it sent; red: an
    email that more than one task sent."""
    runs = [run for run in report["runs"] if run.end is not None]
    message_of = report["message_of"]
    twice = set(report["sent_more_than_once"])
    workers = sorted({run.worker for run in runs})
    fig, ax = _axes(ax, len(workers))
    labelled = set()
    for run in runs:
        message = message_of.get(run.task_id)
        kind = "sent more than once" if message in twice else "sent once"
        color = "tab:red" if message in twice else "tab:green"
        lane = workers.index(run.worker)
        ax.broken_barh([(run.rel_start, run.duration)], (lane - 0.35, 0.7), facecolor=color,
                       edgecolor="black", linewidth=0.6,
                       label=None if kind in labelled else kind)
        labelled.add(kind)
        ax.text(run.rel_start + run.duration / 2, lane, f"#{int(message)}" if message else "—",
                ha="center", va="center", fontsize=8, color="white")
    how = "with the lock (a bar includes its wait for the lock)" if report["locked"] \
        else "without a lock"
    ax.set_title(f"outbox {how}: {len(twice)} emails sent more than once, "
                 f"{report['pending']} never sent")
    return _finish(fig, ax, [worker.split("@")[0] for worker in workers], path)


def plot_targets(report: dict, ax=None, path=None):
    """One lane per target: runs of a target side by side in time, never on top of each other.
    Bars are runs (one colour per task), circles the attempts that found the target busy and
    retried later, crosses the tasks that gave up after max_retries."""
    import matplotlib.pyplot as plt

    runs = report["runs"]
    target_of = report["target_of"]
    targets = list(dict.fromkeys(job["target"] for job in report["jobs"]))
    color = {job["task_id"]: plt.get_cmap("tab10")(number % 10)
             for number, job in enumerate(report["jobs"])}
    fig, ax = _axes(ax, len(targets))
    _seen: set = set()   # legend entries already made
    for run in runs:
        lane = targets.index(target_of[run.task_id])
        if run.outcome == "ran":
            kind = "ran (one colour per task)"
            ax.broken_barh([(run.rel_start, run.duration)], (lane - 0.3, 0.6),
                           facecolor=color[run.task_id], edgecolor="black", linewidth=0.6,
                           label=None if kind in _seen else kind)
        elif run.outcome == "retried":
            kind = "target busy: retry later"
            ax.plot([run.rel_start], [lane], "o", markerfacecolor="white",
                    markeredgecolor=color[run.task_id], markersize=7,
                    label=None if kind in _seen else kind)
        else:
            kind = f"gave up after {report['max_retries']} retries"
            ax.plot([run.rel_start], [lane], "x", color="darkred", markersize=9,
                    markeredgewidth=2, label=None if kind in _seen else kind)
        _seen.add(kind)
    retries = sum(run.outcome == "retried" for run in runs)
    gave_up = sum(run.outcome == "failed" for run in runs)
    ax.set_title(f"one task per target at a time: {retries} retries with backoff, "
                 f"{gave_up} gave up")
    return _finish(fig, ax, targets, path)


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
