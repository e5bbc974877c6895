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
    $ python invoker.py mail --count 10 --pause 0.3 --locked   # lesson 03: each email once
    $ python invoker.py target dave dave alice                 # lesson 03: dave's 2nd task waits
    $ python invoker.py burst 200            # 200 tiny tasks; prints tasks per second
    $ python invoker.py --no-wait add 2 3    # fire and forget: prints the task id only
    $ python invoker.py fft 200000           # a live progress bar; Ctrl-C asks the task to stop
    $ python invoker.py fft 100000 --tasks 6 # six at once, one bar each
    $ python invoker.py spectrum --tones 440 1000:0.5 2500:0.8 --frames 500
    $ python invoker.py chain 100 5 2        # lesson 05: a chain, link by link; a 0 stops it
    $ python invoker.py chord 1 2 4          # parts side by side, then the body; a 0: ChordError
    $ python invoker.py retry 2              # Celery's retry backoff: 1 s, then 2 s
    $ python invoker.py eta --in 3           # runs in 3 s, held by a worker until then
    $ python invoker.py timelimit --soft 1   # or --hard 1: what each limit does to the task
    $ python invoker.py route                # a fast lane beside a flood (workers on -Q fast, -Q slow)

Every wait has a limit (--timeout, default 10 s). Problems end with one line on stderr and a
non-zero exit: 2 a usage mistake or a setting it cannot use (REDIS_URL=garbage), 3 a broker or
result backend it cannot use (none there, a wrong password, no such database, an ACL user
without the right), 4 no worker
answering, 1 a task that raised, 130 Ctrl-C. No URL is shown with its password.

The commands live in `commands/`, one module per lesson (`commands/lesson_NN.py`, each with an
`add_commands(sub)`); this file only gathers them, in lesson order, and runs the one you name.
"""
from __future__ import annotations

import importlib
import pkgutil
import sys

import kombu.exceptions
import redis

from labkit.settings import EXIT_CONFIG, SettingError, redacted

try:   # tasks.py checks every setting as it is imported: a bad one is one line, exit 2
    import commands
    import tasks
    from commands import lesson_01
    from commands.common import (EXIT_INTERRUPTED, EXIT_NO_BROKER, START_A_WORKER, InvokerError,
                                 OneLineParser, check_broker, interrupted, positive_seconds,
                                 stop_waiting_for_everything)
except SettingError as error:
    print(f"error: {error.message}", file=sys.stderr)
    sys.exit(EXIT_CONFIG)
except SystemExit as error:   # another setting refused in one line by tasks.py (REPORT_CRON)
    if not isinstance(error.code, str):
        raise
    print(error.code, file=sys.stderr)
    sys.exit(EXIT_CONFIG)


def lesson_command_modules() -> list:
    """commands.lesson_01, commands.lesson_03, …: every lesson's commands, in lesson order."""
    names = sorted(info.name for info in pkgutil.iter_modules(commands.__path__)
                   if info.name.startswith("lesson_"))
    return [importlib.import_module(f"commands.{name}") for name in names]


def build_parser() -> OneLineParser:
    parser = OneLineParser(
        prog="invoker.py",
        description="Send Celery tasks to the workers and print the results. "
                    "Start workers first: " + START_A_WORKER,
        epilog="Without a subcommand, runs a short tour. Broker: REDIS_URL "
               "(default redis://localhost:6379/0).",
    )
    parser.add_argument("--timeout", type=positive_seconds, default=10.0,
                        help="seconds to wait for results, above 0 (default 10)")
    parser.add_argument("--no-wait", action="store_true",
                        help="fire and forget: print task ids, do not wait for results")
    sub = parser.add_subparsers(dest="command", metavar="command", parser_class=OneLineParser)
    for module in lesson_command_modules():
        module.add_commands(sub)
    return parser


def broker_error_line(error: Exception) -> str:
    """One line for Redis going wrong mid-command: gone, or refusing what we asked."""
    url = redacted(tasks.app.conf.broker_url)
    if "no permissions" in str(error):   # NOPERM: an ACL user without this command or key
        return (f"error: the Redis user of {url} may not do this ({error}) — grant it in the "
                "user's ACL (README, Security), or use a user who may")
    if isinstance(error, redis.exceptions.ResponseError):
        return f"error: the Redis at {url} refused a command ({error}) — check the URL and its user"
    if url.startswith(("amqp:", "pyamqp:")):   # lesson 07: RabbitMQ as the broker
        return f"error: lost the broker at {url} ({error}) — is RabbitMQ still running? Check CELERY_BROKER_URL"
    return f"error: lost the broker at {url} ({error}) — is Redis still running? Check REDIS_URL"


def main(argv: list[str] | None = None) -> int:
    try:
        options = build_parser().parse_args(argv)
        check_broker()
        (getattr(options, "run", None) or lesson_01.run_tour)(options)
        return 0
    except InvokerError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.code
    except (kombu.exceptions.OperationalError, redis.exceptions.RedisError) as error:
        print(broker_error_line(error), file=sys.stderr)
        return EXIT_NO_BROKER
    except KeyboardInterrupt:
        try:
            print(interrupted(), file=sys.stderr)
        except (KeyboardInterrupt, redis.exceptions.RedisError, OSError):
            print("interrupted (tasks already sent go on without you)", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        stop_waiting_for_everything()


if __name__ == "__main__":
    sys.exit(main())
