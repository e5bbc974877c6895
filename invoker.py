"""The producer: sends tasks to the workers and prints what comes back.

Usage (workers started first, see tasks.py)::

    $ python invoker.py                      # a short tour of everything below
    $ python invoker.py add 2 3
    5
    $ python invoker.py xsum 1 2 3 4
    10
    $ python invoker.py divide 1 0           # the worker's exception comes back to you
    error: divide raised ZeroDivisionError: division by zero (on worker1@host)
    $ python invoker.py mail --count 10      # fill the outbox; which worker sent which email
    $ python invoker.py extract --seconds 3  # a slow job
    $ python invoker.py burst 200            # 200 tiny tasks; prints tasks per second
    $ python invoker.py --no-wait add 2 3    # fire and forget: prints the task id only

Every wait has a limit (--timeout, default 10 s). Problems end with one line on stderr and a
non-zero exit: no broker, no worker answering, a task that raised.
"""
from __future__ import annotations

import argparse
import sys
import time

import celery.exceptions
import kombu.exceptions
import redis

import tasks

EXIT_TASK_FAILED = 1
EXIT_USAGE = 2
EXIT_NO_BROKER = 3
EXIT_NO_WORKER = 4
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


# --- Subcommands -----------------------------------------------------------------------------

def run_add(options):
    return send(tasks.add.s(options.x, options.y), options)


def run_mul(options):
    return send(tasks.mul.s(options.x, options.y), options)


def run_xsum(options):
    return send(tasks.xsum.s(options.numbers), options)


def run_divide(options):
    return send(tasks.divide.s(options.x, options.y), options)


def run_extract(options):
    return send(tasks.data_extractor.s(options.seconds), options)


def run_mail(options):
    """Fill the outbox with --count emails and send one task per email."""
    tasks.fill_outbox(options.count)
    results = [tasks.send_mail_from_queue.delay(options.pause) for _ in range(options.count)]
    print(f"outbox: {options.count} pending emails; sent {len(results)} send_mail_from_queue tasks")
    if options.no_wait:
        return None
    deadline = time.monotonic() + options.timeout
    for result in results:
        wait_for(result, max(0.1, deadline - time.monotonic()))
    report = tasks.outbox_report()
    for worker, ids in sorted(report["sent_by"].items()):
        print(f"  {worker:<24} sent {len(ids):>3}: {' '.join(ids)}")
    print(f"{report['deliveries']} emails sent for {report['messages']} messages; "
          f"sent more than once: {', '.join(report['sent_more_than_once']) or 'none'}; "
          f"still pending: {report['pending']}")
    return report


def run_burst(options):
    """N tiny tasks at once, as a Celery group; throughput from the producer's point of view."""
    started = time.perf_counter()
    group_result = celery.group(tasks.add.s(i, i) for i in range(options.count)).apply_async()
    if options.no_wait:
        print(f"sent {options.count} tasks (group {group_result.id})")
        return None
    try:
        group_result.join(timeout=options.timeout, propagate=False)
    except celery.exceptions.TimeoutError:
        stop_waiting(group_result.results)
        done = group_result.completed_count()
        if done == 0 and not any_worker_answers():
            raise InvokerError(f"no worker took the burst within {options.timeout:g} s — start one: "
                               f"`{START_A_WORKER}`", EXIT_NO_WORKER) from None
        raise InvokerError(f"only {done} of {options.count} tasks done after {options.timeout:g} s "
                           "— wait longer with --timeout, or start more workers", EXIT_NO_WORKER) from None
    elapsed = time.perf_counter() - started
    print(f"{options.count} tasks in {elapsed:.2f} s: {options.count / elapsed:.0f} tasks/s")
    return options.count / elapsed


def run_tour(options):
    """No subcommand: a little of everything, each step printed as the command that does it."""
    steps = [
        ("add 2 3", lambda: send(tasks.add.s(2, 3), options)),
        ("mul 6 7", lambda: send(tasks.mul.s(6, 7), options)),
        ("xsum 1 2 3 4", lambda: send(tasks.xsum.s([1, 2, 3, 4]), options)),
        ("mail --count 6", lambda: run_mail(argparse.Namespace(**{**vars(options), "count": 6,
                                                                    "pause": 0.0}))),
        ("burst 50", lambda: run_burst(argparse.Namespace(**{**vars(options), "count": 50}))),
        ("divide 1 0", lambda: send(tasks.divide.s(1, 0), options)),
    ]
    for command, step in steps:
        print(f"$ python invoker.py {command}")
        try:
            step()
        except InvokerError as error:
            if error.code != EXIT_TASK_FAILED:
                raise
            print(f"error: {error}   ← the worker's exception, delivered as the result")
    return None


# --- Command line ----------------------------------------------------------------------------

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


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="invoker.py",
        description="Send Celery tasks to the workers and print the results. "
                    "Start workers first: " + START_A_WORKER,
        epilog="Without a subcommand, runs a short tour. Broker: REDIS_URL "
               "(default redis://localhost:6379/0).",
    )
    parser.add_argument("--timeout", type=non_negative_float, default=10.0,
                        help="seconds to wait for results (default 10)")
    parser.add_argument("--no-wait", action="store_true",
                        help="fire and forget: print task ids, do not wait for results")
    sub = parser.add_subparsers(dest="command", metavar="command", parser_class=OneLineParser)

    for name, run, about in [("add", run_add, "x + y"), ("mul", run_mul, "x * y"),
                             ("divide", run_divide, "x / y (try y = 0 to see a task fail)")]:
        cmd = sub.add_parser(name, help=about, description=about)
        cmd.add_argument("x", type=float if name == "divide" else int)
        cmd.add_argument("y", type=float if name == "divide" else int)
        cmd.set_defaults(run=run)

    cmd = sub.add_parser("xsum", help="sum of the numbers", description="sum of the numbers")
    cmd.add_argument("numbers", type=int, nargs="+")
    cmd.set_defaults(run=run_xsum)

    cmd = sub.add_parser("mail", help="fill the outbox and send it: who sent what",
                         description="Fill the outbox with COUNT emails, send one "
                                     "send_mail_from_queue task per email, show who sent what.")
    cmd.add_argument("--count", type=positive_int, default=10, help="emails (default 10)")
    cmd.add_argument("--pause", type=non_negative_float, default=0.0,
                     help="seconds between reading and marking an email sent (widens the race)")
    cmd.set_defaults(run=run_mail)

    cmd = sub.add_parser("extract", help="a slow job (data_extractor)",
                         description="Run data_extractor for SECONDS.")
    cmd.add_argument("--seconds", type=non_negative_float, default=2.0)
    cmd.set_defaults(run=run_extract)

    cmd = sub.add_parser("burst", help="N tiny tasks at once; prints throughput",
                         description="Send N add tasks as one group and time them.")
    cmd.add_argument("count", type=positive_int, metavar="N")
    cmd.set_defaults(run=run_burst)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        options = build_parser().parse_args(argv)
        check_broker()
        (getattr(options, "run", None) or run_tour)(options)
        return 0
    except InvokerError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.code
    except (kombu.exceptions.OperationalError, redis.exceptions.ConnectionError) as error:
        print(f"error: lost the broker at {tasks.app.conf.broker_url} ({error}) — is Redis still "
              "running? Check REDIS_URL", file=sys.stderr)
        return EXIT_NO_BROKER
    except KeyboardInterrupt:
        print("interrupted (tasks already sent stay queued)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
