"""Lesson 05a's scenes: Mini Celery run by two real clients, Celery's canvas, failures, retries.

Usage (notebook 05a, tests/test_05_*.py and `scripts/figures.py 05` call these)::

    >>> report = run_mini_celery()                   # two client processes, started and stopped
    >>> report["outcomes"]["hello"]["value"]         # 'Hello World!', after world, on time
    >>> links = chain_links((tasks.divide.s(100, 0) | tasks.divide.s(2))())   # a failing chain
    >>> [link["state"] for link in links]            # ['FAILURE', 'FAILURE']: the 2nd never ran
    >>> report = failing_chord()                     # the body gets ChordError; link_error hears
    >>> runs = run_retries({"flaky(5)": tasks.flaky.s(5)})   # every attempt on the run timeline
    >>> attempt_gaps(runs)                           # {task id: [1.0, 2.0, 2.0]} (s, start to start)

Celery runs need workers on the default queue (the notebook's fleet, the tests' session fleet, or
`figures()`'s own); Mini Celery runs need only Redis. Everything talks to the Redis in REDIS_URL.
The pictures are in `scenes/lesson_05_canvas_pictures.py`.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from celery import chord

import tasks
from labkit import REPO_ROOT, Fleet, timeline
from labkit.processes import LOG_DIR
from labkit.redis_server import die_with_parent
from scenes import lesson_05_mini_celery as mini
from scenes.lesson_05_canvas_pictures import plot_chord, plot_jitter, plot_mini, plot_retries
from tasklib.canvas import FAILURES_KEY, failures_logged

WAIT = 30.0
MINI_CLIENT = [sys.executable, "-m", "scenes.lesson_05_mini_celery", "client", "--name"]


# --- Mini Celery, run by real client processes ---------------------------------------------

@contextlib.contextmanager
def mini_clients(names=("client1", "client2"), timeout: float = WAIT):
    """Mini Celery client processes, ready; stopped (SIGTERM, then SIGKILL) whatever happens.

    Yields {name: path of its output}; each prints "ready", one line per task run, and on
    SIGTERM how many times it looked at mini:due.
    """
    folder = Path(LOG_DIR) / "lesson05"
    folder.mkdir(parents=True, exist_ok=True)
    logs = {name: folder / f"mini-{name}.log" for name in names}
    processes = []
    try:
        for name in names:
            with open(logs[name], "w") as log:
                processes.append(subprocess.Popen(
                    MINI_CLIENT + [name], cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=die_with_parent))
        _wait(lambda: all("ready" in path.read_text() for path in logs.values()), timeout,
              "Mini Celery clients to start")
        yield logs
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)


def _wait(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"still waiting for {what} after {timeout:.0f} s")
        time.sleep(0.05)


def run_mini_celery(due_in: float = 1.5, timeout: float = WAIT) -> dict:
    """The seed's examples on two real Mini Celery clients: world scheduled `due_in` s ahead and
    hello after it; two squares and their sum; a failing divide and a hello after it.

    Returns {"outcomes": {label: stored outcome}, "parents": {label: [labels]}, "looks":
    {client: times it looked at mini:due}, "seconds": how long the clients ran}.
    """
    db = mini.connect()
    with mini_clients() as logs:
        started = time.time()
        ids = {"world": mini.submit(db, "world", at=started + due_in)}
        ids["hello"] = mini.submit(db, "hello", after=[ids["world"]])
        ids["square(3)"], ids["square(4)"] = mini.submit(db, "square", 3), mini.submit(db, "square", 4)
        ids["add"] = mini.submit(db, "add", after=[ids["square(3)"], ids["square(4)"]])
        ids["divide(1, 0)"] = mini.submit(db, "divide", 1, 0)
        ids["hello "] = mini.submit(db, "hello", after=[ids["divide(1, 0)"]])
        _wait(lambda: all(mini.result(db, task_id) for task_id in ids.values()), timeout,
              "Mini Celery's tasks")
    seconds = time.time() - started
    looks = {name: int(path.read_text().split("looked at mini:due ")[1].split()[0])
             for name, path in logs.items()}
    parents = {"hello": ["world"], "add": ["square(3)", "square(4)"], "hello ": ["divide(1, 0)"]}
    return {"outcomes": {label: mini.result(db, task_id) for label, task_id in ids.items()},
            "parents": parents, "looks": looks, "seconds": seconds, "ids": ids}


def mini_leftovers(db=None) -> dict:
    """What Mini Celery leaves in Redis: its keys by kind, and how many will ever expire."""
    db = db or mini.connect()
    keys = list(db.scan_iter(match="mini:*"))
    kinds: dict[str, int] = {}
    for key in keys:
        kind = key.split(":")[1]
        kinds[kind] = kinds.get(kind, 0) + 1
    expiring = sum(ttl >= 0 for ttl in _ttls(db, keys))
    return {"keys": len(keys), "by_kind": kinds, "expiring": expiring}


def _ttls(db, keys) -> list[int]:
    pipe = db.pipeline()
    for key in keys:
        pipe.ttl(key)
    return pipe.execute()


# --- Celery's canvas, and a failing member ----------------------------------------------------

def chain_links(result, timeout: float = WAIT) -> list[dict]:
    """Each link of a chain, first to last, once every link is ready: task, state, result.

    Every link, not only the last: a worker sends a chain's next link before it stores the
    result of the one it ran, so the last can be ready while an earlier one still reads STARTED.
    """
    results = []
    while result is not None:
        results.append(result)
        result = result.parent
    _wait(lambda: all(link.ready() for link in results), timeout, "every link of the chain")
    return [{"id": link.id, "task": link.name, "state": link.state, "result": link.result,
             "worker": link.worker} for link in reversed(results)]


def failing_chain(timeout: float = WAIT) -> dict:
    """divide(100, 5) | divide(0) | divide(2): the 2nd link fails. With record_failure as the
    chain's link_error. Returns {"links": chain_links, "failures": what the errback logged}."""
    tasks.db().delete(FAILURES_KEY)
    signature = tasks.divide.s(100, 5) | tasks.divide.s(0) | tasks.divide.s(2)
    links = chain_links(signature.on_error(tasks.record_failure.s())(), timeout)
    _wait(lambda: failures_logged(tasks.db()), timeout, "record_failure")
    return {"links": links, "failures": failures_logged(tasks.db())}


def failing_chord(timeout: float = WAIT) -> dict:
    """chord(divide(1, 1), divide(1, 0), square(2, 0.5)) | xsum, the body with record_failure as
    its link_error. Returns {"state", "error": the body's exception, "parts": [(task, state)],
    "failures": what record_failure logged}."""
    tasks.db().delete(FAILURES_KEY)
    body = tasks.xsum.s().on_error(tasks.record_failure.s())
    result = chord([tasks.divide.s(1, 1), tasks.divide.s(1, 0), tasks.square.s(2, 0.5)], body)()
    _wait(result.ready, timeout, "the chord's body")   # .get() would raise a part's error first
    _wait(lambda: failures_logged(tasks.db()), timeout, "record_failure")
    return {"state": result.state, "error": result.result,
            "parts": [(part.name, part.state) for part in result.parent.results],
            "failures": failures_logged(tasks.db())}


def run_chord(seconds=(0.3, 0.9, 0.6), timeout: float = WAIT) -> dict:
    """chord(square(x, s) for each s) | xsum, on the run timeline: the body starts only after the
    slowest part. Returns {"value", "runs"}."""
    run_id = timeline.start_run("chord")
    result = chord(tasks.square.s(x, s) for x, s in enumerate(seconds, start=1))(tasks.xsum.s())
    value = result.get(timeout=timeout)
    runs = timeline.wait_for_runs(run_id, lambda found: any(
        run.task == "tasks.xsum" and run.end for run in found), timeout)
    return {"value": value, "runs": runs}


# --- Retries ---------------------------------------------------------------------------------

def run_retries(signatures: dict, timeout: float = WAIT) -> dict:
    """Send each signature ({label: signature}) at once; wait until all are done.

    Returns {"runs": every attempt on the run timeline, "label_of": {task id: label},
    "results": {label: AsyncResult}}.
    """
    run_id = timeline.start_run("retries")
    results = {label: signature.apply_async() for label, signature in signatures.items()}
    # Done when the workers say so (the timeline: each task's last attempt ended), not when its
    # result is ready: a retry sent with countdown 0 (whole-second jitter draws 0 half the time)
    # can run and store SUCCESS before the attempt that sent it has stored RETRY, which then
    # overwrites it — the result says RETRY for ever (Celery fixed that race for Elasticsearch
    # only, celery#6115; Redis keeps a check-then-set).
    ids = {result.id for result in results.values()}
    runs = timeline.wait_for_runs(run_id, lambda found: ids <= {
        run.task_id for run in found if run.outcome not in (None, "retried")}, timeout)
    _forget(results.values())
    return {"runs": runs, "label_of": {result.id: label for label, result in results.items()},
            "results": results}


def _forget(results) -> None:
    """Stop listening for these results now: left to interpreter exit, Celery's clean-up of its
    result subscriptions prints a traceback."""
    for result in results:
        result.backend.remove_pending_result(result)


def attempt_gaps(runs) -> dict[str, list[float]]:
    """{task id: seconds from each attempt's start to the next one's}: the delay Celery waited,
    plus the failed attempt's own few milliseconds."""
    starts: dict[str, list[float]] = {}
    for run in sorted(runs, key=lambda run: (run.task_id, run.attempt)):
        starts.setdefault(run.task_id, []).append(run.start)
    return {task_id: [b - a for a, b in zip(times, times[1:])] for task_id, times in starts.items()}


def configured_delays(retries: int, backoff: float, cap: float) -> list[float]:
    """min(cap, backoff × 2ⁿ) for n = 0 … retries − 1: the delays without jitter."""
    return [min(cap, backoff * 2**n) for n in range(retries)]


# --- The figures: img/05_canvas_*, img/05_retry_*, img/05_mini_* -------------------------------

def figures(out, save) -> None:
    """img/05_mini_celery.png, 05_canvas_chord.png, 05_retry_backoff.png, 05_retry_jitter.png."""
    save(plot_mini(run_mini_celery()), out / "05_mini_celery.png")
    with Fleet(["worker1", "worker2", "worker3"], concurrency=1,
               log_dir=Path(LOG_DIR) / "lesson05"):
        save(plot_chord(run_chord()["runs"]), out / "05_canvas_chord.png")
        save(plot_retries(run_retries(RETRY_DEMO)), out / "05_retry_backoff.png")
        save(plot_jitter(run_retries(jitter_demo())), out / "05_retry_jitter.png")


# What notebook 05a and the figure send: Celery's whole-second backoff, giving up and succeeding,
# and the same curve in fractions of a second (computed in the task, as lesson 03 does).
RETRY_DEMO = {
    "flaky(2): autoretry_for, 1 s then 2 s": tasks.flaky.s(2),
    "flaky(5): gives up after max_retries=3": tasks.flaky.s(5),
    "flaky_backoff(5): 0.2 s × 2ⁿ, cap 1.6 s": tasks.flaky_backoff.s(5, base=0.2, cap=1.6),
}


def jitter_demo(tasks_each: int = 8) -> dict:
    """`tasks_each` tasks that fail once, all at once, with whole-second jitter (flaky_jittered)
    and with full jitter in fractions of a second (flaky_backoff, jitter=True, up to 1 s)."""
    whole = {f"whole {n}": tasks.flaky_jittered.s(1) for n in range(tasks_each)}
    full = {f"full {n}": tasks.flaky_backoff.s(1, base=1.0, cap=1.0, jitter=True)
            for n in range(tasks_each)}
    return {**whole, **full}
