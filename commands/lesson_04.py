"""Lesson 04's commands: FFT tasks with live progress bars.

    $ python invoker.py fft 200000           # a live tqdm bar from the PROGRESS state
    $ python invoker.py fft 100000 --tasks 6 # six at once, one bar each; queued ones wait at 0
    $ python invoker.py spectrum --tones 440 1000:0.5 2500:0.8 --frames 500

For these, --timeout is the longest wait without news (each update is a sign of life), not the
length of the whole run. Ctrl-C asks the unfinished tasks to stop (cooperative cancellation, see
`cancel`), waits a few seconds for them, and says in one line what happened.
"""
from __future__ import annotations

import argparse
import contextlib
import signal
import threading
import time

from celery import states

import tasks
from commands.common import (EXIT_INTERRUPTED, EXIT_NO_WORKER, EXIT_TASK_FAILED, EXIT_USAGE,
                             START_A_WORKER, InvokerError, any_worker_answers, positive_int,
                             send_and_remember, wait_for)
from tasklib.progress import MAX_FFT_ROUNDS, check_fft_rounds, check_spectrum, request_cancel

CANCEL_WAIT = 5.0   # seconds Ctrl-C waits for the tasks to stop: a reporting task needs 0.2


def read_meta(result) -> dict:
    """State and payload of a task in one read (AsyncResult.state then .info would be two)."""
    return result.backend.get_task_meta(result.id)


def show_progress_bars(results, options, label: str, total: int | None = None) -> None:
    """One tqdm bar per task, moved by its PROGRESS meta, until every task is done.

    `total` is what the producer expects (the bars start at 0 of it while a task is queued);
    the task's own meta has the last word.

    Here --timeout limits the wait for news, not the whole run: each PROGRESS update is a sign
    of life, so a long task that keeps reporting runs as long as it needs. Ctrl-C cancels the
    unfinished tasks (`cancel`): each stops by itself at its next update and ends REVOKED.
    """
    from tqdm import tqdm

    bars = [tqdm(desc=f"{label} {result.id[:8]}", total=total, position=index, unit=" steps",
                 dynamic_ncols=True, leave=True) for index, result in enumerate(results)]
    last_seen = [None] * len(results)
    waiting = set(range(len(results)))
    last_news = time.monotonic()
    with ctrl_c_as_a_flag() as pressed:
        try:
            while waiting and not pressed.is_set():
                for index in sorted(waiting):
                    meta, bar = read_meta(results[index]), bars[index]
                    news = (meta["status"], str(meta.get("result")))
                    if news != last_seen[index]:
                        last_seen[index], last_news = news, time.monotonic()
                    if move_bar(bar, meta):
                        waiting.discard(index)
                if waiting and time.monotonic() - last_news > options.timeout:
                    raise_no_news([results[index] for index in waiting], options.timeout)
                pressed.wait(0.1)
        finally:
            close_all(bars)   # before any error line, or the bars would be drawn after it
        if pressed.is_set():
            pressed.clear()   # a second Ctrl-C stops the wait for the tasks to stop
            raise cancel([results[index] for index in sorted(waiting)], label, stop=pressed)


def move_bar(bar, meta: dict) -> bool:
    """Move `bar` to the task's PROGRESS meta; True once the task has ended."""
    info = meta.get("result")
    if meta["status"] == "PROGRESS" and isinstance(info, dict) and "current" in info:
        if bar.total != info["total"]:
            bar.reset(total=info["total"])   # the first PROGRESS names the total
        bar.update(info["current"] - bar.n)
    elif meta["status"] in ("SUCCESS", "FAILURE", "REVOKED"):
        if meta["status"] == "SUCCESS" and bar.total:
            bar.update(bar.total - bar.n)
        bar.set_postfix_str(meta["status"])
        return True
    return False


@contextlib.contextmanager
def ctrl_c_as_a_flag():
    """While inside, Ctrl-C (SIGINT) sets an Event instead of raising KeyboardInterrupt.

    A KeyboardInterrupt raised wherever the program happens to be can land inside a Redis read,
    and leave that connection half-read for the next command, which then waits for a reply that
    never comes; the loops above look at the flag between their reads instead.
    """
    pressed = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: pressed.set())
    try:
        yield pressed
    finally:
        signal.signal(signal.SIGINT, previous)


def close_all(bars) -> None:
    for bar in bars:
        bar.close()


def cancel(results, label: str, wait: float = CANCEL_WAIT, stop=None) -> InvokerError:
    """Ask the tasks to stop, wait up to `wait` seconds for them, and say what happened.

    Cooperative: request_cancel asks each task to stop (a Redis key that expires, and a message
    its Progress reads at the next update), and revoke() — WITHOUT terminate — has the workers
    drop the copies still queued. revoke(terminate=True) signals the pool process instead: by
    the time the signal lands that process may run another task, it works on prefork only, and
    revokes live in the workers' memory (lost on restart unless --statedb). Celery's workers
    guide calls it a last resort for an administrator, never to be called from a program: it is
    only suggested, for a task still running after `wait` seconds.
    """
    ids = [result.id for result in results]
    # revoke first: a queued copy is then usually dropped unrun; one that a worker starts before
    # the revoke reaches it finds the cancel request and stops at its first update.
    tasks.app.control.revoke(ids)
    request_cancel(tasks.app, ids)
    started = time.monotonic()
    found = dict.fromkeys(ids, "unknown")
    stop = stop or threading.Event()   # set by a second Ctrl-C: stop waiting, say what is known
    while True:
        found = {result.id: read_meta(result)["status"] for result in results}
        if all(state in states.READY_STATES for state in found.values()) \
                or time.monotonic() - started > wait or stop.is_set():
            break
        stop.wait(0.05)
    return InvokerError(cancel_summary(label, found, time.monotonic() - started),
                        EXIT_INTERRUPTED)


def cancel_summary(label: str, found: dict, waited: float) -> str:
    """One line: how many tasks stopped, how, and what to do about any that did not."""
    stopped = [state for state in found.values() if state in states.READY_STATES]
    queued = [task_id for task_id, state in found.items() if state == states.PENDING]
    running = [task_id for task_id, state in found.items()
               if state not in states.READY_STATES and state != states.PENDING]
    ended = ", ".join(f"{stopped.count(state)} {state}" for state in sorted(set(stopped)))
    line = f"interrupted — asked {len(found)} unfinished {label} task(s) to stop; "
    if not queued and not running:
        return line + f"all stopped in {waited:.1f} s ({ended}): {' '.join(found)}"
    parts = [f"{len(stopped)} stopped ({ended})"] if stopped else []
    if queued:
        parts.append(f"{len(queued)} still queued, dropped or stopped by the worker that takes "
                     f"it: {' '.join(queued)}")
    if running:
        parts.append(f"{len(running)} still running after {waited:.1f} s: {' '.join(running)} — "
                     "the last resort kills the pool process running it (prefork only): "
                     f"`celery -A tasks control terminate SIGTERM {' '.join(running)}`")
    return line + "; ".join(parts)


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
    results = [send_and_remember(tasks.fft_random.delay, options.n) for _ in range(options.tasks)]
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
        check_spectrum(options.tones, options.frames, options.frame_size,
                             options.sample_rate, options.noise)
    except ValueError as error:
        raise InvokerError(f"{error} — see `python invoker.py spectrum --help`", EXIT_USAGE) from None
    result = send_and_remember(tasks.spectrum.delay, options.tones, frames=options.frames,
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
        return check_fft_rounds(n)
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


def add_commands(sub) -> None:
    cmd = sub.add_parser("fft", help="fft_random(N) with a live progress bar (Ctrl-C stops it)",
                         description="Run fft_random: N rounds of an FFT over 2000 random samples, "
                                     "with a live bar driven by the task's PROGRESS state. "
                                     "--timeout is the longest wait without progress.")
    cmd.add_argument("n", type=fft_rounds, metavar="N",
                     help=f"FFT rounds, 1 to {MAX_FFT_ROUNDS:,} (100000 take a few seconds)")
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
