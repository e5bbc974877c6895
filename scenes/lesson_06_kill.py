"""Lesson 06's scenes: a worker killed mid-task, under the defaults and under NOTHING_LOST=1.

Usage (notebook 06a, tests/test_06_kill.py and `scripts/figures.py 06` call these)::

    >>> outcome = kill_mid_task(reliable=False)            # defaults: ack on receipt
    >>> outcome.final_state, outcome.deliveries            # 'STARTED', 1: lost, never finished
    >>> outcome = kill_mid_task(reliable=True)             # NOTHING_LOST=1, visibility 1.5 s
    >>> outcome.final_state, outcome.deliveries            # 'SUCCESS', 2: ran again, emailed twice
    >>> kill_mid_task(reliable=True, idempotent=True).deliveries     # 1: the key stopped it
    >>> kill_mid_task(reliable=True, kill="pool").final_state        # 'SUCCESS', requeued

    >>> with KillCrew() as crew:                           # several scenes in a row (notebook 06a)
    ...     crew.kill_mid_task(reliable=False)             # the same scenes, workers reused
    ...     crew.kill_mid_task(reliable=True)

Both kills are forced, never hoped for: the task is killed only once it is STARTED and its
email is out (polled), so the kill always lands mid-task.

- kill="worker": SIGKILL to the worker's whole process group (main process and pool), as when
  a machine dies. The main process cannot say anything. With the defaults the message was
  acknowledged on receipt: gone. With acks_late it stays in Redis's "unacked" hash; the rescuer
  worker, started once the message is older than the visibility timeout, finds it in its
  start-up scan (kombu's QoS.restore_visible) and runs it.
- kill="pool": SIGKILL to the pool process only (the OOM killer's way). The main process
  notices at its next pool check (every 5 s: billiard's maintain_pool timer) and sees
  WorkerLostError: with acks_late alone it still acknowledges the task (FAILURE, never rerun);
  task_reject_on_worker_lost puts it back in the queue at once.

A KillCrew keeps one live worker per setting (defaults, NOTHING_LOST), each on a queue of its
own: a whole-worker kill uses one up and its rescuer (same settings, started after the
visibility timeout, as before) serves the next scene; a pool kill leaves its worker up. Its
first two workers start side by side, in the background, when it is made.

`url`: the Redis the workers use (a test's own database); default REDIS_URL.
"""
from __future__ import annotations

import dataclasses
import os
import signal
import time

import redis

import tasks
from labkit import Worker, timeline
from labkit.observe import wait_for
from scenes.producer import producer_for

WAIT = 60.0
VISIBILITY_TIMEOUT = 1.5   # seconds (Redis's default: one hour); longer than the 1 s task
TASK_SECONDS = 1.0         # the invoice task's filing time: the kill lands within it
RESTORE_MARGIN = 0.5       # seconds past the visibility timeout before the rescuer starts
WATCH_AFTER = 0.5          # seconds to watch, once nothing more can happen, that nothing does






def worker_env(url: str | None, reliable: bool, visibility_timeout: float, **more) -> dict:
    """The environment of a lesson 06 worker: NOTHING_LOST or the defaults, on `url`."""
    env = {"NOTHING_LOST": "1" if reliable else "0",
           "BROKER_VISIBILITY_TIMEOUT": f"{visibility_timeout:g}", **more}
    if url:
        env["REDIS_URL"] = url
    return env


@dataclasses.dataclass
class KillOutcome:
    """What happened to one task whose worker was killed mid-run (times are Unix times)."""

    reliable: bool
    idempotent: bool
    kill: str                      # "worker" or "pool"
    visibility_timeout: float
    task_id: str
    sent: float
    killed: float
    rescuer_started: float | None  # kill="worker": when the second worker was started
    state_after_kill: str          # what the producer read just after the kill
    final_state: str               # and at the end
    deliveries: int                # emails the customer received
    runs: list                     # timeline runs of the task (a killed run never ends)
    victim: str = "kill1"          # the worker that ran the task when the kill came
    rescuer: str | None = None     # kill="worker": the one started afterwards

    @property
    def run_count(self) -> int:
        return len(self.runs)

    @property
    def settings(self) -> str:
        return "NOTHING_LOST=1" if self.reliable else "defaults"


class KillCrew:
    """Live workers for kill scenes, one per setting, each on its own queue; see the module doc.

    `ahead`: the settings (reliable or not) whose first worker starts now, in the background."""

    def __init__(self, url: str | None = None, visibility_timeout: float = VISIBILITY_TIMEOUT,
                 ahead: tuple = (False, True), prefix: str = "kill"):
        self.url, self.visibility_timeout, self.prefix = url, visibility_timeout, prefix
        self.app = producer_for(url)
        self.started: list[Worker] = []
        self.live: dict[bool, Worker] = {}
        for reliable in ahead:
            self.live[reliable] = self.new_worker(reliable)

    def queue(self, reliable: bool) -> str:
        return "lesson06-kill-" + ("nothing-lost" if reliable else "defaults")

    def new_worker(self, reliable: bool) -> Worker:
        """Start (not wait for) a worker with these settings: kill1, kill2, … in order."""
        env = worker_env(self.url, reliable, self.visibility_timeout)
        worker = Worker(f"{self.prefix}{len(self.started) + 1}", env=env,
                        queues=[self.queue(reliable)])
        self.started.append(worker)
        return worker.start()

    def take(self, reliable: bool) -> Worker:
        """The live worker with these settings, ready (started now if there is none)."""
        worker = self.live.pop(reliable, None) or self.new_worker(reliable)
        return worker.wait_ready()

    def kill_mid_task(self, reliable: bool, idempotent: bool = False, kill: str = "worker",
                      seconds: float = TASK_SECONDS) -> KillOutcome:
        """One scene: send, kill, rescue, finish; the surviving worker stays for the next."""
        scene = KillScene(self, reliable, idempotent, kill, seconds)
        outcome = scene.send_and_kill().rescue().finish()
        self.live[reliable] = scene.survivor
        return outcome

    def stop(self) -> None:
        """Stop every worker started (those killed are gone already), shutdowns overlapping."""
        for worker in self.started:
            worker.signal(signal.SIGTERM)
        for worker in self.started:
            worker.stop()

    def __enter__(self) -> "KillCrew":
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


class KillScene:
    """The crew's worker with these settings runs one send_invoice(_once); it is killed
    mid-task; for a whole-worker kill, a rescuer is started once the visibility timeout has
    passed."""

    def __init__(self, crew: KillCrew, reliable: bool, idempotent: bool = False,
                 kill: str = "worker", seconds: float = TASK_SECONDS):
        if kill not in ("worker", "pool"):
            raise ValueError(f"kill is 'worker' or 'pool', not {kill!r}")
        self.crew, self.reliable, self.idempotent, self.kill = crew, reliable, idempotent, kill
        self.seconds, self.visibility_timeout = seconds, crew.visibility_timeout
        self.victim = crew.take(reliable)
        self.survivor = self.victim if kill == "pool" else None
        self.client = redis.Redis.from_url(crew.url or os.environ["REDIS_URL"],
                                           decode_responses=True)
        self.invoice = f"INV-{os.getpid()}-{time.monotonic_ns() % 10**6}"
        self.result = self.run_id = self.sent = self.killed = self.rescued = None
        self.state_after_kill = None

    @property
    def task_name(self) -> str:
        return "tasks.send_invoice_once" if self.idempotent else "tasks.send_invoice"

    def send_and_kill(self) -> "KillScene":
        """Send the invoice task; kill once it is STARTED and its email is out."""
        self.run_id = timeline.start_run("kill", url=self.crew.url)
        self.sent = time.time()
        self.result = self.crew.app.send_task(self.task_name, [self.invoice, self.seconds],
                                              queue=self.crew.queue(self.reliable))
        wait_for(lambda: self.result.state == "STARTED" and self.deliveries() >= 1, WAIT,
                 "the invoice task to start and send its email")
        if self.kill == "worker":
            self.victim.stop(graceful=False)              # SIGKILL to the whole group
        else:
            os.kill(self.result.info["pid"], signal.SIGKILL)   # the pool process only
        self.killed = time.time()
        time.sleep(0.3)   # what a producer reads just after the kill
        self.state_after_kill = self.result.state
        return self

    def rescue(self) -> "KillScene":
        """kill="worker": start a second worker once the message is older than the visibility
        timeout (its start-up scan restores it). kill="pool": the first worker is still there."""
        if self.kill == "worker":
            time.sleep(max(0.0, self.killed + self.visibility_timeout + RESTORE_MARGIN
                           - time.time()))
            self.rescued = time.time()
            self.survivor = self.crew.new_worker(self.reliable).wait_ready()
        return self

    def finish(self, timeout: float = WAIT) -> KillOutcome:
        """Wait until the task has ended (if it will), then watch a moment more."""
        try:
            if self.reliable:
                wait_for(lambda: self.result.state in ("SUCCESS", "FAILURE"), timeout,
                         "the task to run again")
            elif self.kill == "pool":
                wait_for(lambda: self.result.state == "FAILURE", timeout, "the WorkerLostError")
            time.sleep(WATCH_AFTER)   # nothing more is queued, held or coming: see it stay so
            runs = [run for run in timeline.runs(self.run_id, self.crew.url)
                    if run.task_id == self.result.id]
            return KillOutcome(self.reliable, self.idempotent, self.kill,
                               self.visibility_timeout, self.result.id, self.sent, self.killed,
                               self.rescued, self.state_after_kill, self.result.state,
                               self.deliveries(), runs, self.victim.name,
                               self.survivor.name if self.kill == "worker" else None)
        finally:
            self.client.close()

    def deliveries(self) -> int:
        return self.client.llen(tasks.MAILBOX + self.invoice)


def kill_mid_task(reliable: bool, idempotent: bool = False, kill: str = "worker",
                  url: str | None = None, visibility_timeout: float = VISIBILITY_TIMEOUT,
                  seconds: float = TASK_SECONDS) -> KillOutcome:
    """The whole scene in one call, on workers of its own (kill1, then kill2): started, stopped."""
    with KillCrew(url, visibility_timeout, ahead=(reliable,)) as crew:
        return crew.kill_mid_task(reliable, idempotent, kill, seconds)


def describe_kill(outcome: KillOutcome) -> str:
    """One line: settings, what was killed, what the producer saw, how many emails went out."""
    task = "send_invoice_once" if outcome.idempotent else "send_invoice"
    return (f"{outcome.settings:<15} {task:<18} kill -9 of the {outcome.kill:<6}: "
            f"{outcome.state_after_kill} after the kill, {outcome.final_state} at the end, "
            f"ran {outcome.run_count}×, {outcome.deliveries} email(s)")
