"""What every invoker command shares: one-line errors, exit codes, waiting for results.

A lesson's commands (`commands/lesson_NN.py`) use these; `invoker.py` turns an InvokerError
into one line on stderr and its exit code.
"""
from __future__ import annotations

import argparse

import celery.exceptions
import redis

import tasks

EXIT_TASK_FAILED = 1
EXIT_USAGE = 2
EXIT_NO_BROKER = 3
EXIT_NO_WORKER = 4
EXIT_INTERRUPTED = 130  # the shell's code for Ctrl-C
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
    """Fail in seconds, with a message naming REDIS_URL, when the broker does not answer.

    Celery itself would keep reconnecting; a producer a person is waiting on should not.
    """
    url = tasks.app.conf.broker_url
    if not url.startswith(("redis://", "rediss://", "unix://")):
        return  # another broker: Celery's own bounded retry policy applies
    client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
    try:
        client.ping()
    except (redis.exceptions.RedisError, OSError) as error:
        raise InvokerError(f"cannot reach the broker at {url} ({type(error).__name__}) — start Redis "
                           "with `make redis`, or set REDIS_URL to where yours runs", EXIT_NO_BROKER)
    finally:
        client.close()


def any_worker_answers(timeout: float = 1.0) -> bool:
    return bool(tasks.app.control.ping(timeout=timeout))


def stop_waiting(results) -> None:
    # Unsubscribe now: left to interpreter shutdown, Celery's clean-up prints a traceback.
    for result in results:
        result.backend.remove_pending_result(result)


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
    result = signature.apply_async()
    if options.no_wait:
        print(result.id)
        return None
    value = wait_for(result, options.timeout)
    print(value)
    return value


# --- Argument types --------------------------------------------------------------------------

def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


positive_int.__name__ = "positive integer"  # argparse names the type in its message


def non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise ValueError(text)
    return value


non_negative_float.__name__ = "non-negative number"
