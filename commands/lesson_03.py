"""Lesson 03's commands: one task per target at a time.

    $ python invoker.py target dave dave alice     # dave's second task retries until dave is free
    $ python invoker.py mail --count 12 --pause 0.5 --locked   # (lesson 01's mail, with the lock)
"""
from __future__ import annotations

import time

import tasks
from commands.common import InvokerError, non_negative_float, send_and_remember, wait_for


def run_target(options):
    """One run_on_target task per TARGET, all at once: a busy target makes its task retry later."""
    results = [send_and_remember(tasks.run_on_target.delay, target, options.seconds)
               for target in options.targets]
    if options.no_wait:
        print("\n".join(result.id for result in results))
        return None
    deadline = time.monotonic() + options.timeout
    for target, result in zip(options.targets, results):
        try:
            value = wait_for(result, max(0.1, deadline - time.monotonic()))
            print(f"  {target:<10} ran on {value['worker']} after {value['retries']} retries")
        except InvokerError as error:
            if result.state != "FAILURE":
                raise
            print(f"  {target:<10} gave up: {error}")
    return results


def add_commands(sub) -> None:
    cmd = sub.add_parser("target", help="one task per target at a time (lesson 03)",
                         description="Send run_on_target(TARGET, SECONDS) for each TARGET at "
                                     "once; tasks for a busy target retry later, with backoff.")
    cmd.add_argument("targets", nargs="+", metavar="TARGET", help="e.g. dave dave alice")
    cmd.add_argument("--seconds", type=non_negative_float, default=2.0)
    cmd.set_defaults(run=run_target)
