"""Lesson 05a's commands: Celery's canvas (chain, chord) and retries with backoff.

    $ python invoker.py hello                    # the seed's hello(world()), as a chain
    Hello World!
    $ python invoker.py chain 100 5 2            # divide(100, 5) | divide(2): 100 / 5 / 2
    $ python invoker.py chain 100 0 2            # link 1 fails: link 2 never runs, exit 1
    $ python invoker.py chord 1 2 4              # divide(1, x) for each x, then xsum: 1.75
    $ python invoker.py chord 1 0 4              # a part fails: the body gets ChordError, exit 1
    $ python invoker.py retry 2                  # fails twice; Celery retries 1 s, then 2 s later
    $ python invoker.py retry 5                  # gives up after max_retries=3, exit 1
    $ python invoker.py retry 3 --backoff 0.2 --cap 1 --max-retries 4 [--jitter]
"""
from __future__ import annotations

import argparse
import contextlib
import math
import time

import celery.exceptions
from celery import chain, chord

import tasks
from commands.common import (EXIT_NO_WORKER, EXIT_TASK_FAILED, EXIT_USAGE, START_A_WORKER,
                             InvokerError, any_worker_answers, number_of_seconds, send,
                             send_and_remember, stop_waiting, stop_waiting_for_everything, wait_for,
                             whole_number)
from tasklib.canvas import failures_logged

LARGEST = 1e12          # chain/chord numbers: beyond this a quotient can overflow JSON's floats
MOST_LINKS = 100        # numbers in one chain or chord
POLL = 0.05             # seconds between two looks at a retrying task's state


def a_number(text: str) -> float:
    """An argparse type: a finite number from −10¹² to 10¹², or a one-line refusal."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}")
    if not (math.isfinite(value) and abs(value) <= LARGEST):
        raise argparse.ArgumentTypeError(f"must be a number from -1e12 to 1e12, got {text}")
    return int(value) if value.is_integer() else value


def _check_count(numbers: list, least: int, command: str) -> None:
    if not least <= len(numbers) <= MOST_LINKS:
        raise InvokerError(f"give {least} to {MOST_LINKS} numbers, got {len(numbers)} — see "
                           f"`python invoker.py {command} --help`", EXIT_USAGE)


def run_hello(options):
    """The seed's hello(world()): world's result becomes hello's argument."""
    return send(tasks.world.s() | tasks.hello.s(), options)


def run_chain(options):
    """divide(a, b) | divide(c) | …: each link divides the result before it by its number."""
    numbers = options.numbers
    _check_count(numbers, 2, "chain")
    links = [tasks.divide.s(numbers[0], numbers[1])] + [tasks.divide.s(n) for n in numbers[2:]]
    print(" | ".join(f"divide({', '.join(map(str, link.args))})" for link in links))
    result = send_and_remember(chain(*links).apply_async)
    results = _links_of(result)
    if options.no_wait:
        stop_waiting(results)
        print("\n".join(link.id for link in results))
        return None
    deadline = time.monotonic() + options.timeout
    try:
        value = wait_for(result, options.timeout)
    except InvokerError as error:
        if error.code != EXIT_TASK_FAILED:
            raise
        value = None
    _wait_for_every_link(results, deadline)
    stop_waiting(results)
    failed = _print_links(results, numbers)
    if failed is not None:
        link = results[failed]
        raise InvokerError(f"the chain stopped at link {failed + 1}: divide raised "
                           f"{type(link.result).__name__}: {link.result} — the links after it "
                           "never ran (marked FAILURE with the same error)", EXIT_TASK_FAILED)
    print(value)
    return value


def _links_of(result) -> list:
    found = []
    while result is not None:
        found.append(result)
        result = result.parent
    return found[::-1]


def _wait_for_every_link(results: list, deadline: float) -> None:
    """Wait until every link is done, not only the last.

    A worker sends a chain's next link before it stores the result of the link it ran (so that
    the stored result can name its children, celery/app/trace.py). On a busy machine the last
    link can be done while an earlier one still reads STARTED for a moment.
    """
    for link in results:
        if not link.ready():
            with contextlib.suppress(celery.exceptions.TimeoutError):
                link.get(timeout=max(0.1, deadline - time.monotonic()), propagate=False)


def _print_links(results: list, numbers: list) -> int | None:
    """One line per link; the index of the first failed link, or None."""
    failed = None
    for index, link in enumerate(results):
        shown = f"divide({numbers[0]}, {numbers[1]})" if index == 0 else f"divide(·, {numbers[index + 1]})"
        if not link.ready():
            print(f"  {index + 1:>3}  {shown:<24} still {link.state} after --timeout")
        elif link.successful():
            print(f"  {index + 1:>3}  {shown:<24} = {link.result!r:<22} on {link.worker}")
        elif failed is None:
            failed = index
            print(f"  {index + 1:>3}  {shown:<24} raised {type(link.result).__name__}: "
                  f"{link.result}  on {link.worker}")
        else:
            print(f"  {index + 1:>3}  {shown:<24} never ran: {link.state}, with link "
                  f"{failed + 1}'s error")
    return failed


def run_chord(options):
    """divide(1, x) for each x at once (the header), then xsum of their results (the body)."""
    numbers = options.numbers
    _check_count(numbers, 1, "chord")
    header = [tasks.divide.s(1, n) for n in numbers]
    body = tasks.xsum.s().on_error(tasks.record_failure.s())
    print("chord: " + ", ".join(f"divide(1, {n})" for n in numbers) + " → xsum")
    result = send_and_remember(chord(header), body)
    if options.no_wait:
        stop_waiting_for_everything(result.backend)
        print(result.id)
        return None
    try:
        value = wait_for(result, options.timeout)
    except InvokerError as error:
        stop_waiting_for_everything(result.backend)
        if error.code != EXIT_TASK_FAILED:
            raise
        logged = any(entry["task_id"] == result.id for entry in failures_logged(tasks.db()))
        heard = ("its link_error, record_failure, logged it" if logged
                 else "its link_error has not logged it yet")
        raise InvokerError(f"the chord's body xsum never ran: {type(result.result).__name__}: "
                           f"{result.result} — {heard}", EXIT_TASK_FAILED) from None
    stop_waiting_for_everything(result.backend)
    print(value)
    return value


def run_retry(options):
    """A task that fails FAILURES times with ConnectionError; print each attempt as it happens."""
    signature, about = _retry_signature(options)
    print(about)
    result = send_and_remember(signature.apply_async)
    if options.no_wait:
        stop_waiting([result])
        print(result.id)
        return None
    meta = _watch_attempts(result, options.timeout)
    stop_waiting([result])
    if meta["status"] == "FAILURE":
        raise InvokerError(f"{signature.name} gave up after {meta.get('retries')} retries: "
                           f"{type(meta['result']).__name__}: {meta['result']}", EXIT_TASK_FAILED)
    print(meta["result"])
    return meta["result"]


def _retry_signature(options):
    if options.backoff is None:
        if options.cap is not None or options.max_retries is not None:
            raise InvokerError("--cap and --max-retries need --backoff: without it the task is "
                               "tasks.flaky, whose retry options are fixed where it is defined — see "
                               "`python invoker.py retry --help`",
                               EXIT_USAGE)
        task = tasks.flaky_jittered if options.jitter else tasks.flaky
        return task.s(options.failures), (
            f"{task.name}({options.failures}): autoretry_for=(ConnectionError,), retry_backoff=1, "
            f"retry_backoff_max=2, max_retries=3, {'with' if options.jitter else 'no'} jitter")
    cap = 1.6 if options.cap is None else options.cap
    retries = 4 if options.max_retries is None else options.max_retries
    return tasks.flaky_backoff.s(options.failures, base=options.backoff, cap=cap,
                                 max_retries=retries, jitter=options.jitter), (
        f"tasks.flaky_backoff({options.failures}): retry n after min({cap:g}, "
        f"{options.backoff:g} × 2ⁿ) s{', full jitter' if options.jitter else ''}, "
        f"max_retries={retries}")


def _watch_attempts(result, timeout: float) -> dict:
    """Print each failed attempt as the result backend shows it; the final meta."""
    started, seen = time.monotonic(), set()
    while time.monotonic() - started < timeout:
        meta = result.backend.get_task_meta(result.id)
        if meta["status"] == "RETRY" and meta.get("retries") not in seen:
            seen.add(meta.get("retries"))
            print(f"  {time.monotonic() - started:5.1f} s  attempt {meta['retries'] + 1} failed on "
                  f"{meta.get('worker')}: {meta['result']} — Celery retries it")
        if meta["status"] in ("SUCCESS", "FAILURE"):
            word = "succeeded" if meta["status"] == "SUCCESS" else "failed, no retries left"
            print(f"  {time.monotonic() - started:5.1f} s  attempt {meta.get('retries', 0) + 1} "
                  f"{word} on {meta.get('worker')}")
            return meta
        time.sleep(POLL)
    stop_waiting([result])
    if result.state == "PENDING" and not any_worker_answers():
        raise InvokerError(f"no worker took task {result.id} within {timeout:g} s (it stays "
                           f"queued) — start one: `{START_A_WORKER}`", EXIT_NO_WORKER)
    raise InvokerError(f"task {result.id} is {result.state} after {timeout:g} s — wait longer "
                       "with --timeout", EXIT_NO_WORKER)


def add_commands(sub) -> None:
    cmd = sub.add_parser("hello", help="hello(world()) as a chain (lesson 05)",
                         description="Send world.s() | hello.s(): world's result is hello's "
                                     "argument.")
    cmd.set_defaults(run=run_hello)

    cmd = sub.add_parser("chain", help="divide(a, b) | divide(c) | … (lesson 05)",
                         description="A chain of divisions: a / b / c / … . A 0 makes its link "
                                     "fail: the links after it never run.")
    cmd.add_argument("numbers", type=a_number, nargs="+", metavar="NUMBER",
                     help=f"2 to {MOST_LINKS} numbers, e.g. 100 5 2")
    cmd.set_defaults(run=run_chain)

    cmd = sub.add_parser("chord", help="divide(1, x) for each x, then xsum (lesson 05)",
                         description="A chord: the header divide(1, x) runs for each x at once; "
                                     "the body xsum gets their results. A 0 fails a part: the "
                                     "body gets ChordError.")
    cmd.add_argument("numbers", type=a_number, nargs="+", metavar="NUMBER",
                     help=f"1 to {MOST_LINKS} numbers, e.g. 1 2 4")
    cmd.set_defaults(run=run_chord)

    cmd = sub.add_parser("retry", help="a task that fails N times, retried with backoff "
                                       "(lesson 05)",
                         description="Send a task that fails its first FAILURES attempts with "
                                     "ConnectionError. Without --backoff: tasks.flaky, Celery's "
                                     "autoretry_for with retry_backoff (whole seconds: 1, 2, 2).")
    cmd.add_argument("failures", type=whole_number(0, 20, "failures"), metavar="FAILURES")
    cmd.add_argument("--backoff", type=number_of_seconds(0, 60, low_allowed=False),
                     help="base delay in seconds, fractions allowed: tasks.flaky_backoff")
    cmd.add_argument("--cap", type=number_of_seconds(0, 3600, low_allowed=False),
                     help="longest delay, seconds (default 1.6; needs --backoff)")
    cmd.add_argument("--max-retries", type=whole_number(0, 20, "retries"),
                     help="retries before giving up (default 4; needs --backoff)")
    cmd.add_argument("--jitter", action="store_true", help="a random delay up to the backoff")
    cmd.set_defaults(run=run_retry)
