"""Every task run on a timeline: which task, on which worker, from when to when, how it ended.

Usage::

    # tasks.py, once: every process that imports it (workers, beat, producers) takes part
    from labkit import timeline
    timeline.connect(app, url=REDIS_URL)
    timeline.disconnect()    # benchmarks: tasks.py does it for RUN_TIMELINE=0 (lesson 07)

    # a notebook or a test, the producer side
    run_id = timeline.start_run("beat overlap")   # task runs from now on are recorded under it
    ...                                            # beat and workers do their thing
    runs = timeline.runs(run_id)                   # [Run(task="tasks.data_extractor", ...), ...]
    timeline.count_overlaps(runs, task="tasks.data_extractor")
    plots.plot_timeline(runs, path="img/02_overlap.png")    # labkit.plots draws them

    # inside a task body, to record another outcome than the one Celery reports
    timeline.set_outcome("skipped")
    # ... and the part that must never overlap (e.g. while it held a lock)
    timeline.set_work(acquired_at, released_at)
    # or connect a signal that says so to record_skipped / record_locked_window, as tasks.py
    # does for the locks/patterns.py decorators (run_skipped, lock_released)

What is recorded, and where (Celery signals, in the process where each thing happens):

- ``before_task_publish`` (producers, beat): two message headers, no Redis call: the producer's
  run id, if it started one, and the send time (so a run knows how long it waited in the queue).
- ``task_prerun`` (the pool process about to run the task): ONE round trip, a Lua script that
  picks the run (the one stamped on the message, else the current one) and stores the record.
- ``task_postrun`` (same process, after the body): ONE round trip, the finished record.
  Outcome: "ran" (SUCCESS), "retried" (RETRY), "stopped" (IGNORED: the task raised Celery's
  Ignore, e.g. stopping on request), "failed" (FAILURE), or what ``set_outcome`` said.
- ``task_revoked`` (the worker's main process): a message dropped without running, because its
  ``expires`` time had passed ("expired") or someone revoked it ("revoked"): ONE round trip.

Which run a task run belongs to: the run id stamped on its message by the producer that sent it,
else the run that is current in Redis when the task starts (set by the latest ``start_run``).
That is how runs sent by beat, which never calls ``start_run``, are recorded, and why a worker
fleet that was started long before ``start_run`` needs no restart. With no run started, nothing
is recorded beyond one GET per task.

Storage: hash ``timeline:run:<run id>``, one field per run of a task (a task retried twice is
three runs), value JSON; each run's hash expires a day after its last write.
"""
from __future__ import annotations

import itertools
import json
import os
import time
import uuid
from dataclasses import dataclass, field

import redis
from celery import current_task, signals

CURRENT_RUN_KEY = "timeline:current"
RUN_KEY_PREFIX = "timeline:run:"
KEEP_SECONDS = 24 * 3600
HEADER_RUN = "timeline_run"
HEADER_SENT = "timeline_sent"

OUTCOMES = ("ran", "skipped", "retried", "stopped", "failed", "expired", "revoked")
#: Outcomes of runs that did not do the task's work: they never count as overlapping.
IDLE_OUTCOMES = ("skipped", "expired", "revoked")
_OUTCOME_OF_STATE = {"SUCCESS": "ran", "RETRY": "retried", "IGNORED": "stopped",
                     "FAILURE": "failed"}

# KEYS[1] the current-run key
# ARGV[1] run id, or "" for the current run; ARGV[2] field (one run of a task); ARGV[3] record
# JSON; ARGV[4] seconds to keep the run's hash
# returns the run id the record was stored under, or false when no run has been started
# (The run's hash key is only known inside the script: fine on one Redis, not on a Cluster.)
RECORD = f"""
local run = ARGV[1]
if run == '' then run = redis.call('GET', KEYS[1]) end
if not run then return false end
local key = '{RUN_KEY_PREFIX}' .. run
redis.call('HSET', key, ARGV[2], ARGV[3])
redis.call('EXPIRE', key, tonumber(ARGV[4]))
return run
"""


@dataclass
class Run:
    """One run of one task: a task retried twice has three runs, each with its own start."""

    run_id: str
    task: str
    task_id: str
    worker: str
    pid: int
    start: float
    end: float | None = None          # None: still running, or the process died mid-run
    outcome: str | None = None        # one of OUTCOMES; None while running
    sent: float | None = None         # when the producer (or beat) sent the message
    origin: str | None = None         # who sent it, e.g. "gen4242@host" (4242 is its pid)
    attempt: int = 0                  # retries before this run
    work: list | None = None          # [start, end] of the part a lock guarded (set_work), if any
    key: str = ""                     # the field in the run's hash
    t0: float = field(default=0.0, repr=False)  # the first start of the runs it was read with

    @property
    def duration(self) -> float | None:
        return None if self.end is None else self.end - self.start

    @property
    def waited(self) -> float | None:
        """Seconds between being sent and starting: time spent in the queue."""
        return None if self.sent is None else self.start - self.sent

    @property
    def rel_start(self) -> float:
        return self.start - self.t0

    @property
    def rel_end(self) -> float | None:
        return None if self.end is None else self.end - self.t0

    @property
    def busy(self) -> tuple[float, float | None]:
        """When this run did the work that must not overlap: the locked part if it said so
        (set_work), else the whole run — which also covers taking and releasing a lock."""
        return tuple(self.work) if self.work else (self.start, self.end)

    @property
    def did_work(self) -> bool:
        return self.outcome not in IDLE_OUTCOMES


class _Recorder:
    """The connection and the per-process bookkeeping behind the module functions."""

    def __init__(self, url: str | None, app):
        self.url = url
        self.app = app
        self._client: redis.Redis | None = None
        self._script = None
        self.own_run: str | None = None     # run started by this process: stamped on what it sends
        self.open_runs: dict[str, tuple[str, str, dict]] = {}  # task id -> (run, field, record)
        self.outcomes: dict[str, str] = {}  # task id -> outcome set by the task body
        self.work: dict[str, list] = {}     # task id -> [start, end] set by the task body

    def client(self) -> redis.Redis:
        # Made on first use, not in connect(): reading app.conf at import time of tasks.py
        # would configure the app early (see the on_after_configure note in tasks.py).
        if self._client is None:
            url = self.url or os.environ.get("REDIS_URL") or self.app.conf.broker_url
            self._client = redis.Redis.from_url(url, decode_responses=True)
            self._script = self._client.register_script(RECORD)
        return self._client

    def record(self, run: str | None, field_: str, record: dict) -> str | None:
        client = self.client()
        stored = self._script(keys=[CURRENT_RUN_KEY],
                              args=[run or "", field_, json.dumps(record), KEEP_SECONDS],
                              client=client)
        return stored or None


_recorder: _Recorder | None = None


def connect(app, url: str | None = None) -> None:
    """Record every task run of `app` in the Redis at `url` (default: REDIS_URL, else the broker).

    Call it once, where the app is defined, so that every worker, beat and producer does it.
    """
    global _recorder
    if _recorder is not None:   # already connected: the signals must not be connected twice
        return
    _recorder = _Recorder(url, app)
    # weak=False: the handlers are module functions, but be explicit that they must stay.
    signals.before_task_publish.connect(_on_publish, weak=False)
    signals.task_prerun.connect(_on_prerun, weak=False)
    signals.task_postrun.connect(_on_postrun, weak=False)
    signals.task_revoked.connect(_on_revoked, weak=False)


def disconnect() -> None:
    """Stop recording in this process (benchmarks: RUN_TIMELINE=0 in tasks.py, lesson 07).

    The signal handlers are removed, so a task run costs nothing here; `connect` starts again.
    """
    global _recorder
    for signal, handler in ((signals.before_task_publish, _on_publish),
                            (signals.task_prerun, _on_prerun), (signals.task_postrun, _on_postrun),
                            (signals.task_revoked, _on_revoked)):
        signal.disconnect(handler)
    _recorder = None


def _require_recorder() -> _Recorder:
    if _recorder is None:
        raise RuntimeError("timeline is not connected: call timeline.connect(app) first "
                           "(importing tasks does it)")
    return _recorder


_other_clients: dict[str, redis.Redis] = {}


def _client(url: str | None) -> redis.Redis:
    """The recorder's Redis, or the one at `url` (workers that record into another database)."""
    if url is None:
        return _require_recorder().client()
    if url not in _other_clients:
        _other_clients[url] = redis.Redis.from_url(url, decode_responses=True)
    return _other_clients[url]


def start_run(name: str | None = None, url: str | None = None) -> str:
    """Start a new run: from now on task runs are recorded under the returned run id.

    Tasks this process sends carry the id in their headers; tasks sent by anyone else (beat)
    fall into it because it becomes the current run in Redis. `url`: the Redis the workers
    record into, when it is not this process's (e.g. workers started on another database).
    """
    recorder = _require_recorder()
    slug = "".join(c if c.isalnum() else "-" for c in (name or "run")).strip("-")[:40] or "run"
    run_id = f"{slug}-{time.strftime('%H%M%S')}-{uuid.uuid4().hex[:6]}"
    _client(url).set(CURRENT_RUN_KEY, run_id, ex=KEEP_SECONDS)
    recorder.own_run = run_id
    return run_id


def current_run(url: str | None = None) -> str | None:
    """The run id task runs are recorded under right now, or None."""
    return _client(url).get(CURRENT_RUN_KEY)


def set_outcome(outcome: str) -> None:
    """Inside a task body: record `outcome` (e.g. "skipped") instead of the state Celery reports."""
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown outcome {outcome!r}; use one of {', '.join(OUTCOMES)}")
    if not current_task or current_task.request.id is None:
        raise RuntimeError("set_outcome() is for use inside a running task")
    _require_recorder().outcomes[current_task.request.id] = outcome


def set_work(started: float, ended: float) -> None:
    """Inside a task body: the part of the run that must not overlap (e.g. while it held a lock).

    A run's start and end are taken by Celery signals around the whole run, result storing
    included; a lock guards less. `overlapping()` compares these windows when a run has one.
    """
    if not current_task or current_task.request.id is None:
        raise RuntimeError("set_work() is for use inside a running task")
    _require_recorder().work[current_task.request.id] = [started, ended]


# --- Signal handlers -----------------------------------------------------------------------

def record_skipped(sender=None, **_kwargs) -> None:
    """A signal handler: the run of task `sender` was skipped (e.g. locks.patterns.run_skipped)."""
    if _recorder is not None and sender.request.id is not None:
        _recorder.outcomes[sender.request.id] = "skipped"


def record_locked_window(sender=None, held_from=None, held_until=None, **_kwargs) -> None:
    """A signal handler: the run of `sender` held a lock from `held_from` to `held_until`, the
    part that must not overlap (e.g. locks.patterns.lock_released)."""
    if _recorder is not None and sender.request.id is not None:
        _recorder.work[sender.request.id] = [held_from, held_until]


def _on_publish(sender=None, headers=None, **_kwargs):
    if headers is None or _recorder is None:
        return
    if _recorder.own_run:
        headers.setdefault(HEADER_RUN, _recorder.own_run)
    headers.setdefault(HEADER_SENT, time.time())


def _on_prerun(task_id=None, task=None, **_kwargs):
    if _recorder is None:
        return
    request = task.request
    record = {
        "task": task.name, "task_id": task_id, "worker": request.hostname or "",
        "pid": os.getpid(), "start": time.time(), "end": None, "outcome": None,
        "sent": getattr(request, HEADER_SENT, None), "origin": getattr(request, "origin", None),
        "attempt": request.retries or 0,
    }
    field_ = f"{task_id}:{record['attempt']}:{uuid.uuid4().hex[:6]}"
    run = _recorder.record(getattr(request, HEADER_RUN, None), field_, record)
    if run:
        _recorder.open_runs[task_id] = (run, field_, record)


def _on_postrun(task_id=None, state=None, **_kwargs):
    if _recorder is None:
        return
    outcome = _recorder.outcomes.pop(task_id, None)
    work = _recorder.work.pop(task_id, None)
    opened = _recorder.open_runs.pop(task_id, None)
    if opened is None:
        return
    run, field_, record = opened
    record.update(end=time.time(), outcome=outcome or _OUTCOME_OF_STATE.get(state, "failed"))
    if work:
        record["work"] = work
    _recorder.record(run, field_, record)


def _on_revoked(sender=None, request=None, expired=False, **_kwargs):
    # `request` is the task's Context here: the message headers are its attributes.
    if _recorder is None or request is None:
        return
    now = time.time()
    task_id = getattr(request, "id", None)
    record = {
        "task": getattr(sender, "name", None) or getattr(request, "task", "?"),
        "task_id": task_id, "worker": getattr(request, "hostname", None) or "",
        "pid": os.getpid(), "start": now, "end": now,
        "outcome": "expired" if expired else "revoked",
        "sent": getattr(request, HEADER_SENT, None), "origin": getattr(request, "origin", None),
        "attempt": getattr(request, "retries", 0) or 0,
    }
    _recorder.record(getattr(request, HEADER_RUN, None),
                     f"{task_id}:dropped:{uuid.uuid4().hex[:6]}", record)


# --- Reading -------------------------------------------------------------------------------

def runs(run_id: str | None = None, url: str | None = None) -> list[Run]:
    """The runs recorded under `run_id` (default: the current run), by start time."""
    client = _client(url)
    run_id = run_id or client.get(CURRENT_RUN_KEY)
    if not run_id:
        return []
    records = client.hgetall(RUN_KEY_PREFIX + run_id)
    found = [Run(run_id=run_id, key=key, **json.loads(value)) for key, value in records.items()]
    found.sort(key=lambda run: (run.start, run.worker))
    t0 = found[0].start if found else 0.0
    for run in found:
        run.t0 = t0
    return found


def wait_for_runs(run_id: str | None, done, timeout: float = 30.0, url: str | None = None,
                  describe=None) -> list[Run]:
    """Poll the runs of `run_id` until `done(runs)` is true; return those runs.

    Raises TimeoutError after `timeout` seconds, with `describe(runs)` in its message if given.
    """
    deadline = time.monotonic() + timeout
    while True:
        found = runs(run_id, url)
        if done(found):
            return found
        if time.monotonic() > deadline:
            detail = f": {describe(found)}" if describe else ""
            raise TimeoutError(f"runs of {run_id or 'the current run'} still not as awaited "
                               f"after {timeout:.0f} s{detail}")
        time.sleep(0.1)


def wait_until_finished(run_id: str | None = None, timeout: float = 30.0,
                        url: str | None = None) -> list[Run]:
    """Wait until every started run of `run_id` has ended; return the runs.

    Raises TimeoutError naming the unfinished tasks after `timeout` seconds.
    """
    def unfinished(found):
        left = [run for run in found if run.end is None]
        return f"{len(left)} unfinished: " + ", ".join(
            f"{run.task} on {run.worker} (pid {run.pid}, started "
            f"{time.time() - run.start:.0f} s ago)" for run in left)

    return wait_for_runs(run_id, lambda found: all(run.end is not None for run in found),
                         timeout, url, describe=unfinished)


def overlapping(runs: list[Run], task: str | None = None) -> list[Run]:
    """Runs that started while another run of the same task was still running (any worker).

    Only runs that did the work count (a "skipped" or "expired" run is not an overlap); a run
    that never ended counts as still running. A run that said which part of it must not overlap
    (`set_work`, e.g. the locked part) is compared by that part.
    """
    found = []
    by_task = itertools.groupby(sorted((r for r in runs if r.did_work and task in (None, r.task)),
                                       key=lambda r: (r.task, r.busy[0])), key=lambda r: r.task)
    for _task, task_runs in by_task:
        busy_until = float("-inf")
        for run in task_runs:
            start, end = run.busy
            if start < busy_until:
                found.append(run)
            busy_until = max(busy_until, end if end is not None else float("inf"))
    return found


def count_overlaps(runs: list[Run], task: str | None = None) -> int:
    """How many runs started while another run of the same task was still running."""
    return len(overlapping(runs, task))
