"""Watching tasks from the outside: polled states and PROGRESS, Celery events, Redis round trips.

What a producer, a monitor and a profiler see; lesson 04's notebook, scenes, tests and benchmark
use it::

    >>> wait_for(lambda: result.ready(), timeout=10, what="the result")   # or TimeoutError
    >>> trace = poll_progress(results, timeout=60)      # {task id: [(seconds, state, percent)]}
    >>> with EventLog(tasks.app) as log:                 # a monitor's view: Celery events
    ...     result.get(timeout=30)
    ...     log.wait_for(lambda events: ..., timeout=10)
    >>> with redis_round_trips() as trips:               # what this process said to Redis
    ...     tasks.fft_random.update_state(task_id, "PROGRESS", meta)
    >>> len(trips), trips                                 # 2, [['GET'], ['MULTI', 'SETEX', ...]]
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import redis.connection
from celery import states

PROBE_EVENT = "labkit-probe"


# --- Polling: what a producer sees through the result backend -------------------------------

def wait_for(condition, timeout: float = 30.0, what: str = "the condition"):
    """Poll `condition()` until it is true and return its value; TimeoutError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:g} s for {what}")
        time.sleep(0.05)
    return value


def percent_of(result) -> tuple[str, float | None]:
    """(state, percent done) of an AsyncResult: PROGRESS meta, 100 at SUCCESS, None if unknown.

    One read of the backend: `.state` then `.info` are two, and the task can finish in between.
    """
    meta = result.backend.get_task_meta(result.id)
    state, info = meta["status"], meta.get("result")
    if state == "PROGRESS" and isinstance(info, dict):
        return state, float(info.get("percent", 0.0))
    if state == "SUCCESS":
        return state, 100.0
    return state, None


def poll_progress(results, timeout: float, every: float = 0.05) -> dict[str, list]:
    """Poll every result until all are ready; per task id [(seconds since start, state, percent)].

    Raises TimeoutError when they are not all ready after `timeout` seconds.
    """
    started = time.monotonic()
    trace: dict[str, list] = {result.id: [] for result in results}
    waiting = list(results)
    while waiting:
        now = time.monotonic() - started
        if now > timeout:
            raise TimeoutError(f"{len(waiting)} of {len(results)} tasks not done after {timeout:g} s")
        for result in list(waiting):
            state, percent = percent_of(result)
            trace[result.id].append((now, state, percent))
            if state in states.READY_STATES:
                waiting.remove(result)
        time.sleep(every)
    return trace


# --- Events: what a monitor such as Flower sees ---------------------------------------------

class EventLog:
    """Celery events received in a background thread, the way Flower receives them.

    Events travel through the broker (a Redis pub/sub channel) and are not stored: a receiver
    sees only what is sent while it listens. `start()` therefore returns only once a probe event
    of our own has come back through the broker.
    """

    def __init__(self, app):
        self.app = app
        self.events: list[dict] = []
        self._lock = threading.Lock()
        self._receiver = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def _on_event(self, event: dict) -> None:
        with self._lock:
            self.events.append(event)

    def _listen(self) -> None:
        try:
            with self.app.connection_for_read() as connection:
                self._receiver = self.app.events.Receiver(connection, handlers={"*": self._on_event})
                self._receiver.capture(limit=None, timeout=None, wakeup=False)
        except BaseException as error:  # reported by start()/wait_for, not lost in the thread
            self._error = error

    def start(self, timeout: float = 10.0) -> "EventLog":
        self._thread = threading.Thread(target=self._listen, name="EventLog", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        with self.app.events.default_dispatcher(hostname="labkit-probe") as dispatcher:
            while not self.of(PROBE_EVENT):
                if self._error or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"the event receiver did not start: {self._error!r}")
                dispatcher.send(PROBE_EVENT)
                time.sleep(0.1)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        if self._receiver is not None:
            self._receiver.should_stop = True
        if self._thread is not None:
            self._thread.join(timeout)

    def of(self, type_: str | None = None, uuid: str | None = None) -> list[dict]:
        """The events received so far, of one type and/or about one task."""
        with self._lock:
            return [event for event in self.events
                    if (type_ is None or event["type"] == type_)
                    and (uuid is None or event.get("uuid") == uuid)]

    def wait_for(self, condition, timeout: float) -> list[dict]:
        """Wait until `condition(events so far)` is true; the events; TimeoutError if never."""
        deadline = time.monotonic() + timeout
        while not condition(self.of()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"events not seen after {timeout:g} s; got types "
                                   f"{sorted({event['type'] for event in self.of()})}")
            time.sleep(0.05)
        return self.of()

    def __enter__(self) -> "EventLog":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


# --- Round trips: what one update costs -----------------------------------------------------

def command_names(packed) -> list[str]:
    """The command names in what redis-py sends at once (one command, or a whole pipeline)."""
    if isinstance(packed, str):
        data = packed.encode()
    elif isinstance(packed, (bytes, bytearray, memoryview)):
        data = bytes(packed)
    else:
        data = b"".join(bytes(part) for part in packed)
    names, position = [], 0
    while position < len(data):        # RESP: *<argc>\r\n then $<len>\r\n<arg>\r\n per argument
        end = data.index(b"\r\n", position)
        argc, position = int(data[position + 1:end]), end + 2
        for index in range(argc):
            end = data.index(b"\r\n", position)
            length, position = int(data[position + 1:end]), end + 2
            if index == 0:
                names.append(data[position:position + length].decode().upper())
            position += length + 2
    return names


@contextmanager
def redis_round_trips():
    """Record what this process sends to Redis inside the block: one list of names per send.

    redis-py writes one command, or a whole pipeline, in one send and then reads the replies,
    so each send is one round trip. The counting wraps redis-py's send method for the block
    and restores it after; the commands still go to the real server.
    """
    sends: list[list[str]] = []
    connection_class = redis.connection.AbstractConnection
    original = connection_class.send_packed_command

    def counting(self, command, check_health=True):
        sends.append(command_names(command))
        return original(self, command, check_health)

    connection_class.send_packed_command = counting
    try:
        yield sends
    finally:
        connection_class.send_packed_command = original
