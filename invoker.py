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
    $ python invoker.py fft 200000           # a live progress bar; Ctrl-C revokes the task
    $ python invoker.py fft 100000 --tasks 6 # six at once, one bar each
    $ python invoker.py spectrum --tones 440 1000:0.5 2500:0.8 --frames 500

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
    task = tasks.send_mail_from_queue_locked if options.locked else tasks.send_mail_from_queue
    results = [task.delay(options.pause) for _ in range(options.count)]
    print(f"outbox: {options.count} pending emails; sent {len(results)} {task.name[6:]} tasks")
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


def run_target(options):
    """One run_on_target task per TARGET, all at once: a busy target makes its task retry later."""
    results = [tasks.run_on_target.delay(target, options.seconds) for target in options.targets]
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


# --- Lesson 04: live progress bars -----------------------------------------------------------

def read_meta(result) -> dict:
    """State and payload of a task in one read (AsyncResult.state then .info would be two)."""
    return result.backend.get_task_meta(result.id)


def show_progress_bars(results, options, label: str, total: int | None = None) -> None:
    """One tqdm bar per task, moved by its PROGRESS meta, until every task is done.

    `total` is what the producer expects (the bars start at 0 of it while a task is queued);
    the task's own meta has the last word.

    Here --timeout limits the wait for news, not the whole run: each PROGRESS update is a sign
    of life, so a long task that keeps reporting runs as long as it needs. Ctrl-C revokes the
    unfinished tasks with terminate=True: the worker kills the pool process running each one
    (and starts a fresh one), the task ends REVOKED.
    """
    from tqdm import tqdm

    bars = [tqdm(desc=f"{label} {result.id[:8]}", total=total, position=index, unit=" steps",
                 dynamic_ncols=True, leave=True) for index, result in enumerate(results)]
    last_seen = [None] * len(results)
    waiting = set(range(len(results)))
    last_news = time.monotonic()
    try:
        while waiting:
            for index in sorted(waiting):
                meta, bar = read_meta(results[index]), bars[index]
                news = (meta["status"], str(meta.get("result")))
                if news != last_seen[index]:
                    last_seen[index], last_news = news, time.monotonic()
                info = meta.get("result")
                if meta["status"] == "PROGRESS" and isinstance(info, dict) and "current" in info:
                    if bar.total != info["total"]:
                        bar.reset(total=info["total"])   # the first PROGRESS names the total
                    bar.update(info["current"] - bar.n)
                elif meta["status"] in ("SUCCESS", "FAILURE", "REVOKED"):
                    if meta["status"] == "SUCCESS" and bar.total:
                        bar.update(bar.total - bar.n)
                    bar.set_postfix_str(meta["status"])
                    waiting.discard(index)
            if waiting and time.monotonic() - last_news > options.timeout:
                raise_no_news([results[index] for index in waiting], options.timeout)
            time.sleep(0.1)
    except KeyboardInterrupt:
        close_all(bars)
        unfinished = [results[index] for index in sorted(waiting)]
        tasks.app.control.revoke([result.id for result in unfinished], terminate=True)
        raise InvokerError(f"interrupted — revoked {len(unfinished)} unfinished {label} task(s) "
                           f"with terminate=True: {' '.join(r.id for r in unfinished)}",
                           EXIT_INTERRUPTED) from None
    finally:
        close_all(bars)   # before any error line, or the bars would be drawn after it


def close_all(bars) -> None:
    for bar in bars:
        bar.close()


def raise_no_news(results, timeout: float):
    if all(read_meta(result)["status"] == "PENDING" for result in results) \
            and not any_worker_answers():
        raise InvokerError(f"no worker took the tasks within {timeout:g} s (they stay queued) — "
                           f"start one: `{START_A_WORKER}`", EXIT_NO_WORKER)
    raise InvokerError(f"no progress from {len(results)} task(s) for {timeout:g} s — wait longer "
                       "with --timeout, or see the worker's log", EXIT_NO_WORKER)


def outcome_of(result) -> dict:
    """The result of a finished task; an InvokerError when it failed or was revoked."""
    if result.state == "REVOKED":
        raise InvokerError(f"task {result.id} was revoked", EXIT_TASK_FAILED)
    return wait_for(result, timeout=5)


def run_fft(options):
    """--tasks fft_random tasks at once, a live bar each; prints each result."""
    results = [tasks.fft_random.delay(options.n) for _ in range(options.tasks)]
    if options.no_wait:
        print("\n".join(result.id for result in results))
        return None
    show_progress_bars(results, options, "fft_random", total=options.n)
    outcomes = [outcome_of(result) for result in results]
    for outcome in outcomes:
        print(outcome)
    return outcomes


def run_spectrum(options):
    """The spectrum task with a live bar; prints the peaks it found."""
    try:
        tasks.check_spectrum(options.tones, options.frames, options.frame_size,
                             options.sample_rate, options.noise)
    except ValueError as error:
        raise InvokerError(f"{error} — see `python invoker.py spectrum --help`", EXIT_USAGE) from None
    result = tasks.spectrum.delay(options.tones, frames=options.frames,
                                  frame_size=options.frame_size, sample_rate=options.sample_rate,
                                  noise=options.noise, seed=options.seed)
    if options.no_wait:
        print(result.id)
        return None
    show_progress_bars([result], options, "spectrum", total=options.frames)
    outcome = outcome_of(result)
    print(f"{len(outcome['peaks'])} strongest peaks (bin width {outcome['bin_width']:.3g} Hz):")
    for frequency, magnitude in outcome["peaks"]:
        print(f"  {frequency:10.2f} Hz   magnitude {magnitude:.3f}")
    return outcome


def fft_rounds(text: str) -> int:
    """argparse type: the task's own check, so the invoker and the worker say the same thing."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"n must be a whole number of FFT rounds, got {text!r}") \
            from None
    try:
        return tasks.check_fft_rounds(n)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def tone(text: str) -> list[float]:
    """argparse type: FREQUENCY or FREQUENCY:AMPLITUDE, in Hz."""
    try:
        parts = [float(part) for part in text.split(":")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2):
        raise argparse.ArgumentTypeError(f"a tone is FREQUENCY or FREQUENCY:AMPLITUDE, got {text!r}")
    return parts if len(parts) == 2 else [parts[0], 1.0]


def add_lesson_04_commands(sub) -> None:
    cmd = sub.add_parser("fft", help="fft_random(N) with a live progress bar (Ctrl-C revokes)",
                         description="Run fft_random: N rounds of an FFT over 2000 random samples, "
                                     "with a live bar driven by the task's PROGRESS state. "
                                     "--timeout is the longest wait without progress.")
    cmd.add_argument("n", type=fft_rounds, metavar="N",
                     help=f"FFT rounds, 1 to {tasks.MAX_FFT_ROUNDS:,} (100000 take a few seconds)")
    cmd.add_argument("--tasks", type=positive_int, default=1, metavar="K",
                     help="start K tasks at once, one bar each (default 1)")
    cmd.set_defaults(run=run_fft)

    cmd = sub.add_parser("spectrum", help="find planted tones in noise, with a live bar",
                         description="Average the spectrum of tones plus noise over FRAMES frames; "
                                     "print the strongest peaks. --timeout is the longest wait "
                                     "without progress.")
    cmd.add_argument("--tones", type=tone, nargs="+", default=[[440.0, 1.0], [1000.0, 0.5]],
                     metavar="F[:A]", help="tone frequencies in Hz, each with an optional "
                                           "amplitude (default 440 1000:0.5)")
    cmd.add_argument("--frames", type=int, default=200, help="frames to average (default 200)")
    cmd.add_argument("--frame-size", type=int, default=4096, help="samples per frame (default 4096)")
    cmd.add_argument("--sample-rate", type=float, default=8000.0, help="Hz (default 8000)")
    cmd.add_argument("--noise", type=float, default=1.0, help="noise standard deviation (default 1)")
    cmd.add_argument("--seed", type=int, default=None, help="random seed, for a repeatable run")
    cmd.set_defaults(run=run_spectrum)


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
    cmd.add_argument("--locked", action="store_true",
                     help="send with send_mail_from_queue_locked: every email exactly once")
    cmd.set_defaults(run=run_mail)

    cmd = sub.add_parser("target", help="one task per target at a time (lesson 03)",
                         description="Send run_on_target(TARGET, SECONDS) for each TARGET at "
                                     "once; tasks for a busy target retry later, with backoff.")
    cmd.add_argument("targets", nargs="+", metavar="TARGET", help="e.g. dave dave alice")
    cmd.add_argument("--seconds", type=non_negative_float, default=2.0)
    cmd.set_defaults(run=run_target)

    cmd = sub.add_parser("extract", help="a slow job (data_extractor)",
                         description="Run data_extractor for SECONDS.")
    cmd.add_argument("--seconds", type=non_negative_float, default=2.0)
    cmd.set_defaults(run=run_extract)

    cmd = sub.add_parser("burst", help="N tiny tasks at once; prints throughput",
                         description="Send N add tasks as one group and time them.")
    cmd.add_argument("count", type=positive_int, metavar="N")
    cmd.set_defaults(run=run_burst)

    add_lesson_04_commands(sub)
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
