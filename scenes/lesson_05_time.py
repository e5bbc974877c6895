"""Lesson 05b's scenes about time: an ETA that outlives the visibility timeout, and time limits.

Usage (notebook 05b, tests/test_05_eta.py, tests/test_05_time_limits.py and
`scripts/figures.py 05` call these)::

    >>> with EtaScene(visibility_timeout=2) as scene:   # worker eta1, BROKER_VISIBILITY_TIMEOUT=2
    ...     scene.send(countdown=6)                     # eta1 takes it at once and holds it
    ...     scene.start_second_worker()                 # eta2, once the message is over 2 s old
    ...     outcome = scene.finish()                    # after the ETA, once no copy is left
    >>> outcome.run_count                               # 2: eta2's start-up scan restored it
    >>> with Worker("limits"):                         # one pool process
    ...     found = soft_and_hard(limit=1)              # soft_time_limit=1, then time_limit=1
    >>> found["soft"]["result"]["stopped_early"], found["soft"]["scratch_left"]   # True, False
    >>> found["hard"]["state"], found["hard"]["scratch_left"]                    # FAILURE, True

Why the ETA scene is deterministic: kombu 5.7's Redis transport puts a worker's unacknowledged
messages older than the visibility timeout back in their queue when a worker *scans*
(`QoS.restore_visible`): once when its consumer joins the event loop at start-up (the first call
scans, `on_poll_init`), then every `unacked_restore_interval` (10 s) × `unacked_restore_throttle`
(10) ≈ 100 s. The scene starts the second worker only after the message is older than the
timeout, and finishes within 100 s, so exactly one scan can find it: its start-up scan.

`url`: the Redis the workers use (a test's own database); default REDIS_URL.
"""
from __future__ import annotations

import dataclasses
import os
import re
import time
from datetime import datetime

import redis
from celery import Celery

import tasks
from labkit import Worker, plots, timeline
from labkit.observe import wait_for
from scenes.producer import producer_for

REMINDER = "tasks.send_reminder"
EXPORT = "tasks.export_batch"
# Kept from tasks.app by a producer for another database: what a message and a result look like.
SCAN_MARGIN = 0.3          # seconds past the visibility timeout before the second worker starts
WAIT = 60.0






def received_at(worker: Worker, task_id: str) -> list[float]:
    """When `worker` logged "Task …[task_id] received" (Unix times, from its log's local clock)."""
    pattern = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}): INFO/MainProcess\] "
                         rf"Task \S+\[{re.escape(task_id)}\] received$", re.M)
    return [datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
            for stamp in pattern.findall(worker.log_text())]


# --- Run at a time: an ETA beyond the visibility timeout ------------------------------------

@dataclasses.dataclass
class EtaOutcome:
    """What happened to one ETA task: its runs, and who received it when (Unix times)."""

    task_id: str
    visibility_timeout: float
    sent: float
    eta: float
    second_worker_started: float | None
    second_worker_ready: float | None     # its start-up scan has run by then
    received: dict[str, list[float]]      # worker name -> when it received the message
    runs: list[timeline.Run]               # every run of the task, on any worker

    @property
    def run_count(self) -> int:
        return len(self.runs)


class EtaScene:
    """Workers eta1 and eta2 with BROKER_VISIBILITY_TIMEOUT set, and one `send_reminder` with an
    ETA: eta1 takes it at once; eta2 is started once the message is older than the timeout."""

    def __init__(self, visibility_timeout: float, url: str | None = None, prefix: str = "eta"):
        self.visibility_timeout = visibility_timeout
        self.url = url
        self.app = producer_for(url)
        env = {"BROKER_VISIBILITY_TIMEOUT": f"{visibility_timeout:g}"}
        if url:
            env["REDIS_URL"] = url
        self.workers = [Worker(f"{prefix}{number}", env=env) for number in (1, 2)]
        self.client = redis.Redis.from_url(url or os.environ["REDIS_URL"])
        self.run_id = self.result = self.sent = self.eta = None
        self.taken_at = self.second_started = self.second_ready = None

    def start(self) -> "EtaScene":
        try:
            self.workers[0].start().wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def send(self, countdown: float, text: str = "dentist tomorrow at 9") -> "EtaScene":
        """Send the reminder with `countdown`; return once eta1 holds it, unacknowledged."""
        self.run_id = timeline.start_run("eta", url=self.url)
        self.sent = time.time()
        self.result = self.app.send_task(REMINDER, [text], countdown=countdown)
        self.eta = self.sent + countdown
        # While a worker holds a message, kombu keeps a copy in the "unacked" hash, indexed by
        # the time the worker took it: the age the visibility timeout is compared with.
        wait_for(lambda: self.client.hlen("unacked"), WAIT, "the first worker to take the task")
        self.taken_at = time.time()       # no earlier than the worker took it
        return self

    def start_second_worker(self, after: float | None = None) -> "EtaScene":
        """Start eta2 `after` seconds after eta1 took the message (default: once it is older than
        the visibility timeout), and wait until it is ready: its start-up scan has run by then
        (it scans before it logs "ready")."""
        if after is None:
            after = self.visibility_timeout + SCAN_MARGIN
        time.sleep(max(0.0, self.taken_at + after - time.time()))
        self.second_started = time.time()
        self.workers[1].start().wait_ready()
        self.second_ready = time.time()
        return self

    def finish(self, timeout: float = WAIT) -> EtaOutcome:
        """Wait past the ETA until no worker holds a copy any more; what happened."""
        time.sleep(max(0.0, self.eta - time.time()))
        wait_for(self._nothing_left, timeout, "every copy of the reminder to run")
        runs = timeline.wait_for_runs(
            self.run_id, lambda found: found and all(run.end for run in found), timeout, self.url)
        return EtaOutcome(self.result.id, self.visibility_timeout, self.sent, self.eta,
                          self.second_started, self.second_ready,
                          {w.name: received_at(w, self.result.id) for w in self.workers},
                          [run for run in runs if run.task_id == self.result.id])

    def _nothing_left(self) -> bool:
        """No copy queued, scheduled, reserved or running on any of our workers."""
        if self.client.llen("celery") or self.result.state != "SUCCESS":
            return False
        running = [worker.nodename for worker in self.workers if worker.is_running()]
        inspect = self.app.control.inspect(destination=running, timeout=2.0)
        held = [inspect.scheduled(), inspect.reserved(), inspect.active()]
        return all(answer and len(answer) == len(running) and not any(answer.values())
                   for answer in held)

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.client.close()

    def __enter__(self) -> "EtaScene":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def eta_with_a_second_worker(visibility_timeout: float, countdown: float,
                             second_after: float | None = None,
                             url: str | None = None) -> EtaOutcome:
    """The whole scene in one call: start, send, second worker (`second_after` seconds after
    the first took the message; default: past the visibility timeout), finish, stop."""
    with EtaScene(visibility_timeout, url) as scene:
        scene.send(countdown)
        scene.start_second_worker(second_after)
        return scene.finish()


def describe_eta(outcome: EtaOutcome) -> str:
    """A few lines: who received the reminder when, and how many times it ran."""
    lines = [f"ETA in {outcome.eta - outcome.sent:g} s, visibility timeout "
             f"{outcome.visibility_timeout:g} s: {outcome.run_count} run(s)"]
    for worker, moments in outcome.received.items():
        when = ", ".join(f"+{moment - outcome.sent:.1f} s" for moment in moments) or "never"
        lines.append(f"  {worker} received it at {when}")
    for run in outcome.runs:
        lines.append(f"  ran on {run.worker.split('@')[0]} at +{run.start - outcome.sent:.1f} s")
    return "\n".join(lines)


def plot_eta(outcome: EtaOutcome, ax=None, title: str | None = None):
    """One lane per worker: when it received the message (o) and ran it (*), with the moments
    that matter: the visibility timeout passing, the second worker starting, the ETA."""
    import matplotlib.pyplot as plt

    own = ax is None
    ax = ax or plt.subplots(figsize=(9, 2.6))[1]
    names = list(outcome.received)
    for lane, name in enumerate(names):
        moments = [moment - outcome.sent for moment in outcome.received[name]]
        ax.plot(moments, [lane] * len(moments), "o", color="tab:blue", ms=8, mfc="none", mew=2,
                label="received: held, unacknowledged" if lane == 0 else None)
        ran = [run.start - outcome.sent for run in outcome.runs
               if run.worker.split("@")[0] == name]
        rows = [lane - 0.12 * (len(ran) - 1) / 2 + 0.12 * row for row in range(len(ran))]
        ax.plot(ran, rows, "*", color="tab:red", ms=13, label="ran" if lane == 0 else None)
        if len(ran) > 1:    # same moment, same worker: stacked, and counted
            ax.annotate(f"×{len(ran)}", (max(ran), lane), xytext=(10, 0),
                        textcoords="offset points", va="center", color="tab:red")
    marks = [(outcome.visibility_timeout, "visibility\ntimeout", ":")]
    if outcome.second_worker_started:
        marks.append((outcome.second_worker_started - outcome.sent, f"{names[1]} starts", "--"))
    marks.append((outcome.eta - outcome.sent, "ETA", "-"))
    shown = outcome.eta - outcome.sent + 1.0
    for (x, label, style), height in zip(marks, (0.97, 0.03, 0.97)):   # close lines: apart
        if x > shown:
            continue     # a timeout longer than the ETA is off the chart: the title says it
        ax.axvline(x, color="0.4", linestyle=style, lw=1)
        ax.text(x, height, f" {label}", fontsize=8, color="0.3", transform=ax.get_xaxis_transform(),
                va="top" if height > 0.5 else "bottom")
    ax.set_yticks(range(len(names)), names)
    ax.set_ylim(-0.6, len(names) - 0.1)
    ax.invert_yaxis()
    ax.set_xlim(-0.3, shown)
    ax.set_xlabel("seconds since the reminder was sent")
    ax.legend(loc="center", bbox_to_anchor=(0.62, 0.5), fontsize=8, frameon=False)
    ax.set_title(title or describe_eta(outcome).splitlines()[0])
    if own:
        ax.figure.tight_layout()
    return ax


# --- Time limits --------------------------------------------------------------------------

def run_export(app: Celery, items: int = 10, seconds_per_item: float = 0.3,
               cleanup_seconds: float = 1.0, **limits) -> dict:
    """One export_batch with per-call `limits` (soft_time_limit=, time_limit=), to the end.

    Returns {"task_id", "state", "result" (the return value, or the exception), "scratch_left"
    (its scratch key still there: cleanup did not finish), "saved" (items its cleanup saved, or
    None)}.
    """
    result = app.send_task(EXPORT, [items, seconds_per_item, cleanup_seconds], **limits)
    result.get(timeout=WAIT, propagate=False)
    client = app.backend.client
    saved = client.get(tasks.EXPORT_SAVED + result.id)
    return {"task_id": result.id, "state": result.state, "result": result.result,
            "scratch_left": bool(client.exists(tasks.EXPORT_SCRATCH + result.id)),
            "saved": None if saved is None else int(saved), "date_done": result.date_done}


def export_runs(run_id: str, outcomes: list[dict], url: str | None = None) -> list:
    """The timeline's runs of the exports in `outcomes`, a killed one completed from its result:
    its pool process died before it could record its end (the worker marked it failed)."""
    ids = {outcome["task_id"]: outcome for outcome in outcomes}

    def recorded(found):   # every run has ended, but a killed one never records its end
        ended = {run.task_id for run in found if run.end is not None}
        return all(task_id in ended or outcome["state"] == "FAILURE" and
                   any(run.task_id == task_id for run in found)
                   for task_id, outcome in ids.items())
    runs = timeline.wait_for_runs(run_id, recorded, WAIT, url)
    completed = []
    for run in runs:
        outcome = ids.get(run.task_id)
        if run.end is None and outcome and outcome["state"] == "FAILURE":
            run = dataclasses.replace(run, end=outcome["date_done"].timestamp(), outcome="failed")
        completed.append(run)
    return completed


def describe_export(name: str, outcome: dict) -> str:
    """One line: how an export ended, and whether its cleanup ran."""
    if outcome["state"] == "SUCCESS":
        value = outcome["result"]
        how = (f"stopped early after {value['done']} of {value['of']} items" if
               value["stopped_early"] else f"finished: {value['done']} of {value['of']}")
        where = f"pid {value['pid']}"
    else:
        how, where = f"{outcome['state']}: {type(outcome['result']).__name__}", "pid gone"
    cleanup = ("cleanup never finished: the scratch key is still there" if outcome["scratch_left"]
               else f"cleanup ran: saved its count ({outcome['saved']}), removed the scratch key")
    return f"{name:<20} {how} ({where}); {cleanup}"


def soft_and_hard(app: Celery | None = None, url: str | None = None, limit: float = 1.0) -> dict:
    """Three exports on a running one-process worker: with soft_time_limit=`limit`, with
    time_limit=`limit`, and a short one after them. {"soft", "hard", "next": run_export's
    outcomes, "runs": the three on the timeline}."""
    app = app or producer_for(url)
    run_id = timeline.start_run("time limits", url=url)
    found = {"soft": run_export(app, soft_time_limit=limit),
             "hard": run_export(app, time_limit=limit),
             "next": run_export(app, items=1)}
    found["runs"] = export_runs(run_id, list(found.values()), url)
    return found


def plot_time_limits(found: dict, ax=None):
    """soft_and_hard's runs, coloured by pool process: a new colour is a new process."""
    runs = found["runs"]
    pids = sorted({run.pid for run in runs}, key=lambda pid: min(r.start for r in runs
                                                                  if r.pid == pid))
    runs = [dataclasses.replace(run, origin=f"pool process {pids.index(run.pid) + 1} "
                                           f"(pid {run.pid})") for run in runs]
    figure = plots.plot_timeline(runs, color_by="origin", mark_overlaps=False, ax=ax,
                                 title="soft limit: the task stops and cleans up; hard limit: "
                                       "the process is killed and replaced")
    labels = {found["soft"]["task_id"]: " soft limit: stops, cleans up",
              found["hard"]["task_id"]: " hard limit: killed",
              found["next"]["task_id"]: " next task"}
    for run in runs:
        figure.axes[0].text(run.rel_start, 0, labels.get(run.task_id, ""), fontsize=7,
                            va="center", color="white")
    return figure


def figures(out, save) -> None:
    """img/05_eta_visibility_timeout.png and img/05_time_limits_soft_hard.png."""
    import matplotlib.pyplot as plt

    figure, (top, bottom) = plt.subplots(2, 1, figsize=(10, 5), sharex=True, layout="constrained")
    broken = eta_with_a_second_worker(2.0, 6.0)
    plot_eta(broken, top, f"visibility timeout 2 s < ETA 6 s: the reminder ran "
                          f"{broken.run_count} times")
    top.set_xlabel("")
    second_after = broken.second_worker_started - broken.sent
    fixed = eta_with_a_second_worker(20.0, 6.0, second_after)
    plot_eta(fixed, bottom, f"visibility timeout 20 s > ETA 6 s, second worker at the same "
                            f"moment: ran {fixed.run_count} time")
    save(figure, out / "05_eta_visibility_timeout.png")

    with Worker("limits"):
        found = soft_and_hard()
    save(plot_time_limits(found), out / "05_time_limits_soft_hard.png")
    print(describe_eta(broken), describe_eta(fixed), sep="\n")
