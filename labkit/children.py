"""Run Python functions in real child processes, with a time limit, and always reap them.

Usage::

    with Children() as children:
        go = children.context.Event()                     # multiprocessing primitives for forcing
        holder = children.start(hold_lock, url, go)       # an interleaving, passed as arguments
        children.stop(holder)                             # SIGSTOP, as a GC pause or a frozen VM
        children.resume(holder)                           # SIGCONT
        children.join(timeout=30)                         # all exit 0 in time, or ChildFailed
    # leaving the block SIGKILLs and reaps whatever is still alive

Children are started with "spawn" (a fresh interpreter: no inherited sockets or locks, the same on
Linux and macOS, and fine in a Jupyter kernel), so a target must be a module-level function of an
importable module. On Linux each child also dies with its parent.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import time

from labkit.redis_server import die_with_parent

JOIN_TIMEOUT = 60.0


class ChildFailed(RuntimeError):
    """A child process exited non-zero, or was still running when its time was up."""


def _run(target, args) -> None:
    die_with_parent()
    target(*args)


class Children:
    """Child processes started together and reaped together, whatever happens."""

    def __init__(self):
        self.context = multiprocessing.get_context("spawn")
        self.processes: list[multiprocessing.Process] = []

    def start(self, target, *args, name: str | None = None) -> multiprocessing.Process:
        process = self.context.Process(target=_run, args=(target, args), name=name, daemon=True)
        process.start()
        self.processes.append(process)
        return process

    def stop(self, process) -> None:
        """Freeze `process` (SIGSTOP): every thread of it stops, renewal threads included."""
        os.kill(process.pid, signal.SIGSTOP)

    def resume(self, process) -> None:
        os.kill(process.pid, signal.SIGCONT)

    def kill(self, process) -> None:
        """SIGKILL `process`, as a crash or the OOM killer would: no cleanup code runs."""
        process.kill()
        process.join(JOIN_TIMEOUT)

    def join(self, timeout: float = JOIN_TIMEOUT, expect_killed=()) -> None:
        """Wait for every child; raise ChildFailed if one is late or exits non-zero.

        Children in `expect_killed` were killed on purpose: their exit code is not checked.
        """
        deadline = time.monotonic() + timeout
        for process in self.processes:
            process.join(max(0.0, deadline - time.monotonic()))
        late = [p.name for p in self.processes if p.is_alive()]
        if late:
            raise ChildFailed(f"still running after {timeout:.0f} s: {', '.join(late)}")
        failed = [f"{p.name} (exit code {p.exitcode})" for p in self.processes
                  if p.exitcode != 0 and p not in expect_killed]
        if failed:
            raise ChildFailed(f"failed: {', '.join(failed)}")

    def reap(self) -> None:
        """SIGKILL and wait for every child still alive (a stopped one is woken first)."""
        for process in self.processes:
            if process.is_alive():
                try:
                    os.kill(process.pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
                process.kill()
        for process in self.processes:
            process.join(JOIN_TIMEOUT)
            process.close()
        self.processes.clear()

    def __enter__(self) -> "Children":
        return self

    def __exit__(self, *exc_info) -> None:
        self.reap()
