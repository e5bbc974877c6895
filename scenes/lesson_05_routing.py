"""Lesson 05b's routing scenes: queues, a fast lane beside a flooded queue, priorities on Redis.

Usage (notebook 05b, tests/test_05_routing.py and `scripts/figures.py 05` call these)::

    >>> with Lanes() as lanes:                  # fastlane serves -Q fast, slowlane -Q slow
    ...     found = fast_lane_under_a_flood()   # 8 reports flood "slow"; emails both ways
    >>> found["ratio"]                          # how much longer an email waited in "slow"
    >>> with Lanes() as lanes:
    ...     order = priority_in_one_queue(lanes["slow"].nodename)   # reports at 9, an email at 0

tasks.py routes `send_reset_email` to queue "fast" and `monthly_report` to "slow"
(`task_routes`); a call can still name another queue (`apply_async(queue="slow")`), which is
how the scene sends the same email through the flooded queue, side by side with the fast lane.

`url`: the Redis the workers use (a test's own database); default REDIS_URL.
"""
from __future__ import annotations

import statistics

from celery import Celery

from labkit import Worker, plots, timeline
from scenes.lesson_05_time import WAIT, producer_for, wait_for

EMAIL = "tasks.send_reset_email"
REPORT = "tasks.monthly_report"


class Lanes:
    """Two one-process workers: `fastlane` on queue "fast", `slowlane` on queue "slow"."""

    def __init__(self, url: str | None = None, lanes=("fast", "slow")):
        env = {"REDIS_URL": url} if url else {}
        self.workers = {lane: Worker(f"{lane}lane", queues=[lane], env=env) for lane in lanes}

    def start(self) -> "Lanes":
        """Start both workers and wait until they are ready (all stopped if one fails)."""
        try:
            for worker in self.workers.values():      # start-ups overlap
                worker.start()
            for worker in self.workers.values():
                worker.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __enter__(self) -> "Lanes":
        return self.start()

    def __getitem__(self, lane: str) -> Worker:
        return self.workers[lane]

    def stop(self) -> None:
        for worker in self.workers.values():
            worker.stop()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def finished_runs(run_id: str, results: list, url: str | None) -> list:
    """Wait for every result, then for the timeline's record of every run's end."""
    for result in results:
        result.get(timeout=WAIT)
    ids = {result.id for result in results}
    return timeline.wait_for_runs(
        run_id, lambda found: {run.task_id for run in found if run.end} >= ids, WAIT, url)


def fast_lane_under_a_flood(app: Celery | None = None, url: str | None = None, reports: int = 8,
                            report_seconds: float = 0.5, emails: int = 3) -> dict:
    """Flood "slow" with `reports` monthly reports, then send `emails` password-reset emails by
    their route (queue "fast") and as many again into "slow" (no fast lane), interleaved.

    Returns {"runs", "fast_waits", "slow_waits" (seconds each email waited in its queue),
    "ratio" (median slow wait / median fast wait), "flood_ended" (Unix time)}.
    """
    app = app or producer_for(url)
    run_id = timeline.start_run("fast lane", url=url)
    sent = [app.send_task(REPORT, [report_seconds]) for _ in range(reports)]
    by_lane = {"fast": [], "slow": []}
    for number in range(emails):
        by_lane["fast"].append(app.send_task(EMAIL, [f"user{number}"]))              # routed
        by_lane["slow"].append(app.send_task(EMAIL, [f"user{number}"], queue="slow"))
    runs = finished_runs(run_id, sent + by_lane["fast"] + by_lane["slow"], url)
    waits = {lane: [run.waited for run in runs if run.task_id in {r.id for r in results}]
             for lane, results in by_lane.items()}
    return {"runs": runs, "fast_waits": waits["fast"], "slow_waits": waits["slow"],
            "ratio": statistics.median(waits["slow"]) / max(statistics.median(waits["fast"]),
                                                            1e-3),
            "flood_ended": max(run.end for run in runs if run.task == REPORT)}


def priority_in_one_queue(slowlane: str, app: Celery | None = None, url: str | None = None,
                          reports: int = 5, report_seconds: float = 0.4) -> dict:
    """`reports` monthly reports at priority 9 into "slow", then one email at the default
    priority (none given: 0, the highest on Redis) into the same queue; `slowlane` is the node
    name of the one-process worker serving "slow" (Lanes()["slow"].nodename).

    Returns {"runs", "order": task names in the order they started, "email_position"}.
    """
    app = app or producer_for(url)
    run_id = timeline.start_run("priority", url=url)
    sent = [app.send_task(REPORT, [report_seconds], priority=9) for _ in range(reports)]
    # The email goes out once the worker runs one report and holds the next (its prefetch), so
    # the picture is the same every time: priority sorts what is still in Redis, nothing else.
    wait_for(lambda: _held(app, slowlane) == (1, 1), WAIT, f"{slowlane} to run one report and "
             "hold one more")
    sent.append(app.send_task(EMAIL, ["urgent"], queue="slow"))
    runs = sorted(finished_runs(run_id, sent, url), key=lambda run: run.start)
    order = [run.task.rsplit(".", 1)[-1] for run in runs]
    return {"runs": runs, "order": order, "email_position": order.index("send_reset_email") + 1}


def _held(app: Celery, node: str) -> tuple[int, int] | None:
    """(tasks running, tasks reserved) on the worker `node`, or None if it did not answer."""
    inspect = app.control.inspect(destination=[node], timeout=2.0)
    active, reserved = inspect.active(), inspect.reserved()
    if not active or not reserved:
        return None
    return len(active.get(node, [])), len(reserved.get(node, []))


def describe_waits(found: dict) -> str:
    fast, slow = found["fast_waits"], found["slow_waits"]
    return (f"fast lane : waited {', '.join(f'{w:.2f}' for w in fast)} s\n"
            f"slow queue: waited {', '.join(f'{w:.2f}' for w in slow)} s\n"
            f"an email waited {found['ratio']:.0f}× longer behind the flood than in its own lane")


def plot_fast_lane(found: dict, ax=None):
    """The flood and the emails on both workers; an email's colour says which queue it took."""
    for run in found["runs"]:   # colour by what the reader compares: the flood, and each lane
        run.origin = ("monthly_report (the flood)" if run.task == REPORT else
                      f"email via queue {'fast' if run.worker.startswith('fast') else 'slow'}")
    return plots.plot_timeline(found["runs"], color_by="origin", mark_overlaps=False, ax=ax,
                               title=f"the same email: {found['ratio']:.0f}× longer wait behind "
                                     "the flood than in its own lane")


def plot_priority(found: dict, ax=None):
    runs = found["runs"]
    for run in runs:
        run.origin = ("send_reset_email (default priority 0)" if run.task == EMAIL
                      else "monthly_report (priority 9)")
    return plots.plot_timeline(runs, color_by="origin", mark_overlaps=False, ax=ax,
                               title=f"sent last, the email ran {found['email_position']}"
                                     f"{_ordinal(found['email_position'])} of {len(runs)}: "
                                     "ahead of the queued reports, not of those the worker held")


def _ordinal(number: int) -> str:
    return {1: "st", 2: "nd", 3: "rd"}.get(number if number < 20 else number % 10, "th")


def figures(out, save) -> None:
    """img/05_routing_fast_lane.png and img/05_routing_priority.png."""
    with Lanes() as lanes:
        found = fast_lane_under_a_flood()
        save(plot_fast_lane(found), out / "05_routing_fast_lane.png")
        order = priority_in_one_queue(lanes["slow"].nodename)
        save(plot_priority(order), out / "05_routing_priority.png")
    print(describe_waits(found))
    print("priority: start order", order["order"])
