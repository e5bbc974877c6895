"""What every invoker command shares: one-line errors, exit codes, waiting for results.

A lesson's commands (`commands/lesson_NN.py`) use these; `invoker.py` turns an InvokerError
into one line on stderr and its exit code.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import threading

import celery.exceptions
import redis

import tasks
from labkit.amqp import amqp_problem
from labkit.redis_server import redis_problem
from labkit.settings import AMQP_SCHEMES

EXIT_TASK_FAILED = 1
EXIT_USAGE = 2
EXIT_NO_BROKER = 3
EXIT_NO_WORKER = 4
EXIT_INTERRUPTED = 130  # the shell's code for Ctrl-C
MAX_WAIT = 24 * 3600.0   # --timeout: a day at most
MAX_SLEEP = 3600.0       # a task's --seconds or --pause: an hour at most
MAX_TASKS = 10_000       # burst N, mail --count: a lesson never needs more, and sending is slow
START_A_WORKER = "celery -A tasks worker --loglevel=info -n worker1@%h"


class InvokerError(Exception):
    """A problem the user can act on: printed as one line, exit with `code`."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line that points to --help."""

    def error(self, message):
        raise InvokerError(f"{message} — see `python {self.prog} --help`", EXIT_USAGE)


# --- Talking to the broker and the workers ---------------------------------------------------

def check_broker() -> None:
    """Fail in seconds, with one line naming the real cause, when the broker or the result
    backend does not answer: no Redis there, a wrong password, a database it does not have.

    Celery itself would keep reconnecting; a producer a person is waiting on should not. The URLs
    were checked (Redis, well formed) when tasks.py was imported; none is shown with a password.
    """
    checked = set()
    for role, url, variable in (("broker", tasks.app.conf.broker_url, "CELERY_BROKER_URL"),
                                ("result backend", tasks.app.conf.result_backend,
                                 "CELERY_RESULT_BACKEND")):
        if url in checked:
            continue
        checked.add(url)
        # RabbitMQ may be the broker (lesson 07); the result backend is always Redis.
        is_amqp = url.split("://", 1)[0] in AMQP_SCHEMES
        problem = amqp_problem(url) if is_amqp else redis_problem(url)
        if problem:
            source = variable if os.environ.get(variable) else "REDIS_URL"
            raise InvokerError(f"cannot use the {role}: {problem} (set by {source})",
                               EXIT_NO_BROKER)


def any_worker_answers(timeout: float = 1.0) -> bool:
    return bool(tasks.app.control.ping(timeout=timeout))


SENT: list = []   # every result this run sent (send, mail, target, burst): Ctrl-C reports them
SENDING: list = []   # non-empty while a send was cut short by a second Ctrl-C: it may have left


def sent(results: list) -> list:
    """Remember `results` for interrupted(); returns them."""
    SENT.extend(results)
    return results


@contextlib.contextmanager
def ctrl_c_held():
    """While inside, a first Ctrl-C waits: it reaches the usual handler once the block is done.

    For sending: a Ctrl-C that lands inside apply_async after the message has left would lose
    the task's id — the task runs, and the producer says nothing was sent. Held, it lands once
    the id is remembered. A second Ctrl-C raises at once (a broker that stopped answering), and
    interrupted() then says the task may have left. If the block raises, that error wins over a
    held Ctrl-C. Where SIGINT is ignored, not Python's, or cannot be handled (outside the main
    thread), it is left alone.
    """
    if threading.current_thread() is not threading.main_thread() or \
            not callable(signal.getsignal(signal.SIGINT)):
        yield
        return
    pressed, restoring = [], []

    def hold_the_first(signum, frame):
        if pressed and not restoring:   # restoring: signal.signal() below runs pending handlers
            SENDING.append(True)
            raise KeyboardInterrupt
        pressed.append(signum)

    previous = signal.signal(signal.SIGINT, hold_the_first)
    try:
        yield
    finally:
        restoring.append(True)
        signal.signal(signal.SIGINT, previous)
    if pressed:
        signal.raise_signal(signal.SIGINT)   # the usual handler decides what Ctrl-C does


def send_and_remember(send_one, *args, **kwargs):
    """`send_one(*args, **kwargs)` — an apply_async or a delay — with Ctrl-C held until its
    result is remembered for interrupted(); returns that result."""
    with ctrl_c_held():
        return sent([send_one(*args, **kwargs)])[0]


def stop_waiting(results) -> None:
    # Unsubscribe now: left to interpreter shutdown, Celery's clean-up prints a traceback.
    for result in results:
        result.backend.remove_pending_result(result)


def stop_waiting_for_everything(backend=None) -> None:
    """Stop waiting for every result this producer subscribed to, before the interpreter shuts
    down: a result object still subscribed then is cleaned up by garbage collection, and Celery's
    clean-up can print "ImportError: sys.meta_path is None" (`--no-wait`, a chord's own header
    results). Celery has no public call for "all of them": its backend keeps them in the private
    `_pending_results` (Celery 5.7), read here. A broker already gone cannot be told: ignored."""
    backend = backend or tasks.app.backend
    pending = getattr(backend, "_pending_results", None) or ()
    waiting = [waiter for mapping in pending for waiters in list(mapping.values())
               for waiter in list(waiters.values())]
    with contextlib.suppress(redis.exceptions.RedisError, OSError):
        stop_waiting(waiting)


def interrupted() -> str:
    """After Ctrl-C: stop waiting, and say where the tasks sent so far really are."""
    stop_waiting(SENT)
    if SENDING:
        cut = "interrupted while sending a task, which may have left"
        return cut if not SENT else f"{cut}; {len(SENT)} sent before it go on without you"
    if not SENT:
        return "interrupted before any task was sent"
    if len(SENT) > 20:   # reading every state would keep the user waiting after Ctrl-C
        return (f"interrupted: {len(SENT)} tasks were sent — they go on without you: queued ones "
                "run when a worker takes them, running ones finish")
    if len(SENT) == 1:
        where = f"task {SENT[0].id} is {SENT[0].state}"
    else:
        states = {}
        for result in SENT:
            states[result.state] = states.get(result.state, 0) + 1
        where = "tasks sent: " + ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
    return (f"interrupted: {where} — nothing is cancelled (PENDING: still queued, a worker will "
            "run it; STARTED: running, it finishes; SUCCESS or FAILURE: already done)")


def wait_for(result, timeout: float):
    """The task's return value; an InvokerError for a timeout or for an exception in the task."""
    try:
        result.get(timeout=timeout, propagate=False)
    except celery.exceptions.TimeoutError:
        stop_waiting([result])
        if result.state == "PENDING" and not any_worker_answers():
            raise InvokerError(f"no worker took task {result.id} within {timeout:g} s (it stays "
                               f"queued) — start one: `{START_A_WORKER}`", EXIT_NO_WORKER)
        raise InvokerError(f"task {result.id} is {result.state} after {timeout:g} s — wait longer "
                           "with --timeout, or see the worker's log", EXIT_NO_WORKER)
    if result.failed():
        error = result.result
        where = f" (on {result.worker})" if getattr(result, "worker", None) else ""
        raise InvokerError(f"{result.name or 'task'} raised {type(error).__name__}: {error}{where}",
                           EXIT_TASK_FAILED)
    return result.result


def send(signature, options):
    """Send one task; print its id (--no-wait) or its result."""
    result = send_and_remember(signature.apply_async)
    if options.no_wait:
        print(result.id)
        return None
    value = wait_for(result, options.timeout)
    print(value)
    return value


# --- Argument types --------------------------------------------------------------------------

def whole_number(low: int, high: int, unit: str):
    """An argparse type: a whole number from `low` to `high` `unit`, or a one-line refusal."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number of {unit}, got {text!r}")
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low:,} and {high:,} {unit}, "
                                             f"got {text}")
        return value
    return parse


def number_of_seconds(low: float, high: float, low_allowed: bool = True):
    """An argparse type: seconds from `low` (or above it) to `high`; NaN and infinity refused."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}")
        above = value >= low if low_allowed else value > low
        if not (math.isfinite(value) and above and value <= high):
            bound = f"from {low:g}" if low_allowed else f"above {low:g}"
            raise argparse.ArgumentTypeError(f"must be a number of seconds {bound} up to "
                                             f"{high:g}, got {text}")
        return value
    return parse


positive_int = whole_number(1, MAX_TASKS, "tasks")
non_negative_float = number_of_seconds(0, MAX_SLEEP)
positive_seconds = number_of_seconds(0, MAX_WAIT, low_allowed=False)   # --timeout: 0 is refused
