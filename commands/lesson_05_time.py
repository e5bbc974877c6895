"""Lesson 05b's commands: a task at a chosen time, time limits, and a fast lane.

    $ python invoker.py eta --in 3                 # send_reminder with countdown=3
    $ python invoker.py eta --at 2030-01-01T09:00 --no-wait      # eta= a datetime (local time)
    $ python invoker.py timelimit --soft 1         # export_batch stops at 1 s and cleans up
    $ python invoker.py timelimit --hard 1         # its pool process is killed at 1 s: exit 1
    $ python invoker.py route                      # 6 reports flood queue "slow"; 3 emails by
                                                   # their route, queue "fast": each one's wait
    $ python invoker.py route --one-queue          # the same emails into "slow": they wait

`route` needs workers on both queues, as lesson 05b starts them:
`celery -A tasks worker -Q fast -n fast@%h -c 1` and `celery -A tasks worker -Q slow -n slow@%h
-c 1`; a queue nobody serves is named in the error.
"""
from __future__ import annotations

import argparse
import time
from datetime import datetime, timedelta, timezone

import celery.exceptions

import tasks
from commands.common import (EXIT_NO_WORKER, EXIT_TASK_FAILED, EXIT_USAGE, MAX_SLEEP, MAX_TASKS,
                             MAX_WAIT, InvokerError, non_negative_float, number_of_seconds,
                             send_and_remember, stop_waiting, wait_for, whole_number)

DEFAULT_VISIBILITY_TIMEOUT = 3600.0   # kombu's Redis transport, unless BROKER_VISIBILITY_TIMEOUT
CLEANUP_SECONDS = 1.0                  # export_batch's default cleanup time


def visibility_timeout() -> float:
    return float(tasks.app.conf.broker_transport_options.get("visibility_timeout",
                                                             DEFAULT_VISIBILITY_TIMEOUT))


def clock(moment: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(moment)) + f"{moment % 1:.2f}"[1:]


def a_moment(text: str) -> datetime:
    """argparse type: an ISO 8601 date and time (local time unless it names its zone), within a
    day from now."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date and time such as 2030-01-01T09:00, "
                                         f"got {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.astimezone()        # a naive time is the local time
    ahead = (moment - datetime.now(timezone.utc)).total_seconds()
    if not 0 < ahead <= MAX_WAIT:
        raise argparse.ArgumentTypeError(f"must be in the future and within a day, got {text}")
    return moment


def run_eta(options):
    """send_reminder at a chosen time; when it ran, against when it was due."""
    eta = options.at or datetime.now(timezone.utc) + timedelta(seconds=options.seconds)
    result = send_and_remember(tasks.send_reminder.apply_async, [options.text], eta=eta)
    due = eta.timestamp()
    print(f"sent send_reminder {result.id}, due at {clock(due)} (in {due - time.time():.1f} s)")
    if due - time.time() > visibility_timeout():
        print(f"note: that is beyond the broker's visibility timeout ({visibility_timeout():g} s):"
              " a worker that starts meanwhile puts it back in the queue, and it runs twice")
    if options.no_wait:
        return None
    value = wait_for(result, max(0.0, due - time.time()) + options.timeout)
    print(f"ran at {clock(value['ran_at'])} on {value['worker']}, "
          f"{value['ran_at'] - due:+.2f} s from its ETA")
    return value


def run_timelimit(options):
    """export_batch with per-call limits; how it ended, and whether its cleanup ran."""
    if options.soft and options.hard and options.soft >= options.hard:
        raise InvokerError("--soft must be below --hard: the soft limit is the task's chance to "
                           "clean up before the hard one kills it — see `python invoker.py "
                           "timelimit --help`", EXIT_USAGE)
    limits = {key: value for key, value in (("soft_time_limit", options.soft),
                                            ("time_limit", options.hard)) if value}
    result = send_and_remember(tasks.export_batch.apply_async,
                               [options.items, options.item_seconds, CLEANUP_SECONDS], **limits)
    shown = (", ".join(f"{key}={value:g}" for key, value in limits.items()) or
             f"no limit but the task's own (time_limit={tasks.export_batch.time_limit})")
    print(f"sent export_batch {result.id}: {options.items} items of {options.item_seconds:g} s, "
          f"{shown}")
    if options.no_wait:
        return None
    # It ends by its hard limit at the latest: the call's, else the task's own.
    longest = min(options.items * options.item_seconds + CLEANUP_SECONDS,
                  options.hard or tasks.export_batch.time_limit)
    try:
        value = wait_for(result, longest + options.timeout)
    except InvokerError as error:
        if error.code == EXIT_TASK_FAILED and result.state == "FAILURE":
            left = tasks.db().exists(tasks.EXPORT_SCRATCH + result.id)
            raise InvokerError(f"{error} — the hard limit killed its pool process (the worker "
                               "started a new one); cleanup " + ("never finished: its scratch "
                               "key is still there" if left else "finished"),
                               EXIT_TASK_FAILED) from None
        raise
    how = (f"stopped by the soft limit after {value['done']} of {value['of']} items"
           if value["stopped_early"] else f"done: all {value['of']} items")
    saved = tasks.db().get(tasks.EXPORT_SAVED + result.id)
    print(f"{how} (pid {value['pid']} on {value['worker']}); cleanup ran: saved {saved} of "
          f"{value['of']}, scratch key removed")
    return value


def run_route(options):
    """Flood "slow" with reports, then send emails by their route (or into "slow"); their waits."""
    email_queue = "slow" if options.one_queue else "fast"
    for _ in range(options.reports):
        send_and_remember(tasks.monthly_report.delay, options.report_seconds)
    emails = []
    for number in range(options.emails):
        sent_at = time.time()
        # No queue named: task_routes sends it to "fast". Named, it overrides the route.
        where = {"queue": "slow"} if options.one_queue else {}
        emails.append((sent_at, send_and_remember(tasks.send_reset_email.apply_async,
                                                  [f"user{number}"], **where)))
    print(f"sent {options.reports} monthly_report to queue 'slow', then {options.emails} "
          f"send_reset_email to queue {email_queue!r}" +
          (" (no fast lane: behind the reports)" if options.one_queue else " (its route)"))
    if options.no_wait:
        return None
    deadline = time.monotonic() + options.timeout
    try:
        for sent_at, email in emails:
            value = wait_in_queue(email, email_queue, max(0.1, deadline - time.monotonic()))
            print(f"  {value['user']:<8} waited {value['started'] - sent_at:5.2f} s, "
                  f"ran on {value['worker']}")
    except InvokerError:
        stop_waiting([email for _, email in emails])   # the ones not waited for yet, too
        raise
    return emails


def wait_in_queue(result, queue: str, timeout: float):
    """wait_for, but an email nobody took names the queue to serve."""
    try:
        return wait_for(result, timeout)
    except InvokerError as error:
        if error.code != EXIT_NO_WORKER or result.state != "PENDING" or queue_served(queue):
            raise
        raise InvokerError(f"no worker serves queue {queue!r}: {result.id} waits there — start "
                           f"one: `celery -A tasks worker -Q {queue} -n {queue}@%h -c 1`",
                           EXIT_NO_WORKER) from None


def queue_served(queue: str) -> bool:
    """Whether any worker that answers within a second consumes from `queue`."""
    try:
        answers = tasks.app.control.inspect(timeout=1.0).active_queues() or {}
    except celery.exceptions.CeleryError:
        return False
    return any(found["name"] == queue for queues in answers.values() for found in queues)


def add_commands(sub) -> None:
    cmd = sub.add_parser("eta", help="a task at a chosen time: countdown or eta (lesson 05b)",
                         description="Send send_reminder to run --in SECONDS, or --at a date and "
                                     "time; print when it ran. An ETA beyond the broker's "
                                     "visibility timeout can run twice (README).")
    when = cmd.add_mutually_exclusive_group()
    when.add_argument("--in", dest="seconds", type=number_of_seconds(0, MAX_WAIT), default=3.0,
                      metavar="SECONDS", help="countdown, 0 to 86400 (default 3)")
    when.add_argument("--at", type=a_moment, metavar="WHEN",
                      help="eta: an ISO date and time, local unless it has a zone, e.g. "
                           "2030-01-01T09:00, within a day")
    cmd.add_argument("--text", default="dentist tomorrow at 9", help="the reminder's text")
    cmd.set_defaults(run=run_eta)

    cmd = sub.add_parser("timelimit", help="soft and hard time limits on export_batch "
                                           "(lesson 05b)",
                         description="Send export_batch with per-call limits: at --soft it is "
                                     "told (SoftTimeLimitExceeded) and cleans up; at --hard its "
                                     "pool process is killed and it fails (exit 1).")
    limit = number_of_seconds(0, MAX_SLEEP, low_allowed=False)
    cmd.add_argument("--soft", type=limit, metavar="SECONDS", help="soft_time_limit")
    cmd.add_argument("--hard", type=limit, metavar="SECONDS", help="time_limit")
    cmd.add_argument("--items", type=whole_number(1, MAX_TASKS, "items"), default=10,
                     help="items to export (default 10)")
    cmd.add_argument("--item-seconds", type=non_negative_float, default=0.5, metavar="SECONDS",
                     help="seconds per item (default 0.5)")
    cmd.set_defaults(run=run_timelimit)

    cmd = sub.add_parser("route", help="a fast lane beside a flooded queue (lesson 05b)",
                         description="Flood queue 'slow' with monthly_report tasks, then send "
                                     "send_reset_email tasks by their route (queue 'fast'), or "
                                     "with --one-queue into 'slow'; print each email's wait.")
    cmd.add_argument("--reports", type=whole_number(0, MAX_TASKS, "reports"), default=6,
                     help="monthly_report tasks flooding 'slow' (default 6)")
    cmd.add_argument("--report-seconds", type=non_negative_float, default=1.0,
                     metavar="SECONDS", help="seconds each report takes (default 1)")
    cmd.add_argument("--emails", type=whole_number(1, 100, "emails"), default=3,
                     help="send_reset_email tasks, 1 to 100 (default 3)")
    cmd.add_argument("--one-queue", action="store_true",
                     help="send the emails into 'slow' too: no fast lane")
    cmd.set_defaults(run=run_route)
