"""PROGRESS reported by the clock, cooperative cancellation, and the input checks of lesson 04.

Usage, inside a bound task (`@app.task(bind=True)`)::

    with Progress(self, total=rounds, interval=0.2) as progress:   # at most one update per 0.2 s
        for done in range(1, rounds + 1):
            ...                                  # one step of the work
            progress.advance(done)               # cheap: reads the clock, rarely talks to Redis;
                                                 # raises TaskCancelled if asked to stop

and in a producer, to ask tasks to stop at their next update (and drop those still queued)::

    request_cancel(app, [result.id])     # a Redis key with an expiry, and a pub/sub message
    app.control.revoke([result.id])      # NOT terminate=True: queued copies are dropped

Each update costs round trips to Redis (`bench/progress_fft.py` counts them), so `Progress`
reports by the clock — the first call at once (a bar learns the total), then at most one per
interval, plus the final one — instead of every k iterations, whose cost grows with the speed of
the loop. Monitors such as Flower read events, not the result backend: each update therefore also
goes out as a custom `task-progress` event with the same meta.

What a Progress holds while the task runs, opened at its first update and closed by `with` (also
when the task raises) or after the final update:

- one event dispatcher, on a producer taken from the app's pool. `Task.send_event` opens one per
  call — takes a producer from the pool, builds a Dispatcher, a Producer and an Exchange, gives
  the producer back — and the task paid that at every update;
- a subscription to the task's cancel channel. A producer's `request_cancel` publishes there,
  and the message waits in this connection's socket, so checking for it at each update reads a
  local socket and costs no round trip. The request is also a key with an expiry, read when the
  subscription (re)starts: a request sent before the task started, or while the subscription was
  reconnecting, is not lost.
"""
from __future__ import annotations

import contextlib
import time

from celery.exceptions import Ignore
from celery.utils.log import get_task_logger

FFT_SAMPLES = 2000                # samples per round of fft_random
MAX_FFT_ROUNDS = 10_000_000       # more is a typo, not a job: it would run for hours
MAX_FRAMES = 1_000_000
# Cancel requests: key and pub/sub channel `tasklib:cancel:<task id>` in the result backend's
# Redis; no Celery or kombu key starts with "tasklib:". A request outlives any sensible run.
CANCEL_PREFIX = "tasklib:cancel:"
CANCEL_TTL = 3600                 # seconds, as long as tasks.py keeps results
SUBSCRIBE_TIMEOUT = 5.0           # seconds to wait for Redis to confirm the subscription

logger = get_task_logger(__name__)


class TaskCancelled(Ignore):
    """Raised inside a task by `Progress` when a producer asked it to stop (`request_cancel`).

    Let it propagate (clean up in `finally` or `with`). Progress has already stored the state
    REVOKED; as a subclass of Celery's `Ignore` it tells the worker to store nothing more.
    """


def cancel_key(task_id: str) -> str:
    """The Redis key, and pub/sub channel, of a request to cancel `task_id`."""
    return CANCEL_PREFIX + task_id


def request_cancel(app_or_client, task_ids, ttl: float = CANCEL_TTL) -> None:
    """Ask running tasks to stop at their next progress update: one round trip for all of them.

    `app_or_client`: a Celery app with a Redis result backend (the request is stored next to the
    results, where the workers' Progress looks), or a `redis.Redis` for that same database.
    A task that has not started yet stops at its first update, if it starts within `ttl` seconds;
    pair this with `app.control.revoke(task_ids)` so that workers drop queued copies unrun.
    """
    client = getattr(getattr(app_or_client, "backend", None), "client", app_or_client)
    if not hasattr(client, "pipeline"):
        raise TypeError("request_cancel needs a Celery app with a Redis result backend, "
                        f"or a redis.Redis client; got {app_or_client!r}")
    with client.pipeline() as pipe:      # MULTI … EXEC: key and message go together
        for task_id in [task_ids] if isinstance(task_ids, str) else task_ids:
            pipe.set(cancel_key(task_id), 1, ex=max(1, round(ttl)))
            pipe.publish(cancel_key(task_id), b"cancel")
        pipe.execute()


class CancelListener:
    """A subscription to one task's cancel channel: `requested()` costs no round trip."""

    def __init__(self, client, task_id: str):
        self.client, self.key = client, cancel_key(task_id)
        self.pubsub = client.pubsub()
        self.pubsub.subscribe(self.key)
        self._requested = self._wait_subscribed()

    def _wait_subscribed(self) -> bool:
        # Read the key only once Redis confirms the subscription: a request published between
        # the read and the SUBSCRIBE would otherwise reach neither.
        deadline = time.monotonic() + SUBSCRIBE_TIMEOUT
        while (remaining := deadline - time.monotonic()) > 0:
            message = self.pubsub.get_message(timeout=remaining)
            if message is not None and message["type"] == "subscribe":
                return bool(self.client.exists(self.key))
            if message is not None and message["type"] == "message":
                return True
        return False   # not confirmed yet: requested() reads the key when it is

    def requested(self) -> bool:
        """Whether a producer asked the task to stop: reads what already arrived, never waits."""
        while not self._requested and (message := self.pubsub.get_message(timeout=0)):
            # A "subscribe" here is redis-py subscribing again after a reconnect (or a first
            # confirmation that came late): a request published while it was away is in the key.
            self._requested = message["type"] == "message" or (
                message["type"] == "subscribe" and bool(self.client.exists(self.key)))
        return self._requested

    def close(self) -> None:
        self.pubsub.close()


class Progress:
    """Report `current` of `total` for a bound task, at most once per `interval` seconds.

    `advance(current)` is cheap enough to call every iteration: it reads the clock and only
    talks to Redis when the interval has passed, or when `current` reaches `total`. The first
    call reports at once, so a progress bar learns the total; the final one always reports.
    Each report first checks for a cancel request and raises TaskCancelled if there is one.
    Use it as a context manager: the connections it opens are closed when the block ends.
    """

    def __init__(self, task, total: int, interval: float, events: bool = True):
        self.task = task
        self.total = total
        self.interval = interval
        self.events = events
        self.updates = 0
        self.seconds = 0.0          # time spent reporting, for the benchmark...
        self.cpu_seconds = 0.0      # ...and the CPU time of it: the rest is waiting
        self._last_report = float("-inf")
        self._opened: contextlib.ExitStack | None = None
        self._dispatcher = None
        self._cancel: CancelListener | None = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def meta(self, current: int) -> dict:
        return {"current": current, "total": self.total,
                "percent": round(100.0 * current / self.total, 2)}

    def advance(self, current: int) -> None:
        now = time.monotonic()
        if current >= self.total or now - self._last_report >= self.interval:
            self._last_report = now
            self.report(current)

    def report(self, current: int) -> None:
        started, cpu_started = time.perf_counter(), time.thread_time()
        if self._opened is None:
            self._open()
        if current < self.total and self._cancel is not None and self._cancel.requested():
            self._stop(current)
        meta = self.meta(current)
        self.task.update_state(state="PROGRESS", meta=meta)   # for pollers: AsyncResult.info
        if self._dispatcher is not None:                       # for event monitors (Flower)
            self._dispatcher.send("task-progress", uuid=self.task.request.id, retry=True,
                                  retry_policy=self.task.app.conf.task_publish_retry_policy,
                                  **meta)
        self.updates += 1
        if current >= self.total:
            self.close()        # nothing more to report: give the connections back now
        self.seconds += time.perf_counter() - started
        self.cpu_seconds += time.thread_time() - cpu_started

    def close(self) -> None:
        """Close the event dispatcher and the cancel subscription; a later report reopens them."""
        opened, self._opened, self._dispatcher, self._cancel = self._opened, None, None, None
        if opened is not None:
            opened.close()

    def _open(self) -> None:
        self._opened = contextlib.ExitStack()
        try:
            app = self.task.app
            if self.events:
                # What Task.send_event opens at every call, opened once: a producer from the
                # app's pool (its connection stays open from task to task) and a Dispatcher.
                # Held while the task runs: a threads or gevent pool running more reporting
                # tasks at once than broker_pool_limit (10) needs a higher limit.
                self._dispatcher = self._opened.enter_context(app.events.default_dispatcher(
                    hostname=self.task.request.hostname))
            client = getattr(self.task.backend, "client", None)
            if hasattr(client, "pubsub"):   # a Redis result backend: cancellable
                self._cancel = CancelListener(client, self.task.request.id)
                self._opened.callback(self._cancel.close)
        except BaseException:
            self.close()
            raise

    def _stop(self, current: int):
        # REVOKED, not FAILURE: the task did what it was asked to do, and REVOKED is what Celery
        # itself stores for a task revoked while queued or terminated, so a producer reads one
        # state for "stopped on request" (and .get() raises TaskRevokedError). FAILURE would log
        # a traceback at ERROR, run link_error callbacks and look like a crash. Celery's
        # documented way to end a task in a state of its own choosing is to store that state,
        # then raise Ignore (TaskCancelled is one) so that the worker stores nothing after it.
        request = self.task.request
        reason = f"cancelled at {current} of {self.total}"
        self.close()
        logger.info("%s, as a producer asked: stopping", reason)   # the task's name and id lead
        self.task.backend.mark_as_revoked(request.id, reason=reason, request=request)
        raise TaskCancelled(f"{self.task.name}[{request.id}] {reason}")


class NoProgress:
    """Stands in for Progress when reporting is off (the benchmark's baseline)."""

    updates = 0
    seconds = 0.0
    cpu_seconds = 0.0

    def __enter__(self) -> "NoProgress":
        return self

    def __exit__(self, *exc_info) -> None:
        pass

    def advance(self, current: int) -> None:
        pass


def check_fft_rounds(n) -> int:
    """`n` if it is a sensible number of FFT rounds; a ValueError that says what is wrong if not."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise ValueError(f"n must be a whole number of FFT rounds, got {n!r}")
    if not 1 <= n <= MAX_FFT_ROUNDS:
        raise ValueError(f"n must be between 1 and {MAX_FFT_ROUNDS:,} FFT rounds, got {n:,}")
    return n


def check_spectrum(tones, frames, frame_size, sample_rate, noise) -> list[list[float]]:
    """The tones as [[frequency, amplitude], ...]; a ValueError naming the first bad parameter."""
    if isinstance(frames, bool) or not isinstance(frames, int) or not 1 <= frames <= MAX_FRAMES:
        raise ValueError(f"frames must be a whole number from 1 to {MAX_FRAMES:,}, got {frames!r}")
    if isinstance(frame_size, bool) or not isinstance(frame_size, int) \
            or not 16 <= frame_size <= 2**20:
        raise ValueError(f"frame_size must be a whole number of samples from 16 to {2**20}, "
                         f"got {frame_size!r}")
    if not isinstance(sample_rate, (int, float)) or not sample_rate > 0:
        raise ValueError(f"sample_rate must be a positive number of Hz, got {sample_rate!r}")
    if not isinstance(noise, (int, float)) or not noise >= 0:
        raise ValueError(f"noise must be a non-negative standard deviation, got {noise!r}")
    if not isinstance(tones, (list, tuple)) or not tones:
        raise ValueError("tones must be a non-empty list of frequencies or [frequency, amplitude]")
    return [_checked_tone(tone, sample_rate / 2) for tone in tones]


def _checked_tone(tone, nyquist: float) -> list[float]:
    frequency, amplitude = (tone, 1.0) if isinstance(tone, (int, float)) else (list(tone) + [None])[:2]
    if not isinstance(frequency, (int, float)) or not 0 < frequency < nyquist:
        shown = f"{frequency:g}" if isinstance(frequency, (int, float)) else repr(frequency)
        raise ValueError(f"tone {shown} Hz is outside 0 < f < {nyquist:g} Hz, the "
                         f"Nyquist frequency (sample rate / 2): pick tones inside it")
    if not isinstance(amplitude, (int, float)) or not amplitude > 0:
        raise ValueError(f"the amplitude of the {frequency:g} Hz tone must be a positive "
                         f"number, got {amplitude!r}")
    return [float(frequency), float(amplitude)]
