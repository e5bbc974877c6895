"""Lesson 01's commands: single tasks and their results, the outbox, a slow job, a burst, the tour.

    $ python invoker.py add 2 3              # one task, its result
    $ python invoker.py divide 1 0           # the worker's exception comes back to you
    $ python invoker.py mail --count 10      # fill the outbox; which worker sent which email
    $ python invoker.py burst 200            # 200 tiny tasks as a group; tasks per second
    $ python invoker.py                      # no command: `tour`, a little of everything
"""
from __future__ import annotations

import argparse
import time

import celery
import celery.exceptions

import tasks
from commands.common import (EXIT_NO_WORKER, EXIT_TASK_FAILED, MAX_TASKS, START_A_WORKER,
                             InvokerError, any_worker_answers, ctrl_c_held, non_negative_float,
                             positive_int, send, send_and_remember, sent, stop_waiting,
                             wait_for)


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
    tasks.outbox.fill(options.count)
    task = tasks.send_mail_from_queue_locked if options.locked else tasks.send_mail_from_queue
    results = [send_and_remember(task.delay, options.pause) for _ in range(options.count)]
    print(f"outbox: {options.count} pending emails; sent {len(results)} {task.name[6:]} tasks")
    if options.no_wait:
        return None
    deadline = time.monotonic() + options.timeout
    for result in results:
        wait_for(result, max(0.1, deadline - time.monotonic()))
    report = tasks.outbox.report()
    for worker, ids in sorted(report["sent_by"].items()):
        print(f"  {worker:<24} sent {len(ids):>3}: {' '.join(ids)}")
    print(f"{report['deliveries']} emails sent for {report['messages']} messages; "
          f"sent more than once: {', '.join(report['sent_more_than_once']) or 'none'}; "
          f"still pending: {report['pending']}")
    return report


def run_burst(options):
    """N tiny tasks at once, as a Celery group; throughput from the producer's point of view."""
    started = time.perf_counter()
    with ctrl_c_held():   # a Ctrl-C while sending lands once the group's ids are remembered
        group_result = celery.group(tasks.add.s(i, i) for i in range(options.count)).apply_async()
        sent(group_result.results)
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
                                                                    "pause": 0.0,
                                                                    "locked": False}))),
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


def add_commands(sub) -> None:
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
    cmd.add_argument("--count", type=positive_int, default=10,
                     help=f"emails, 1 to {MAX_TASKS:,} (default 10)")
    cmd.add_argument("--pause", type=non_negative_float, default=0.0,
                     help="seconds between reading and marking an email sent (widens the race)")
    cmd.add_argument("--locked", action="store_true",
                     help="send with send_mail_from_queue_locked: every email exactly once "
                          "(lesson 03)")
    cmd.set_defaults(run=run_mail)

    cmd = sub.add_parser("extract", help="a slow job (data_extractor)",
                         description="Run data_extractor for SECONDS.")
    cmd.add_argument("--seconds", type=non_negative_float, default=2.0)
    cmd.set_defaults(run=run_extract)

    cmd = sub.add_parser("burst", help="N tiny tasks at once; prints throughput",
                         description="Send N add tasks as one group and time them.")
    cmd.add_argument("count", type=positive_int, metavar="N", help=f"1 to {MAX_TASKS:,}")
    cmd.set_defaults(run=run_burst)
