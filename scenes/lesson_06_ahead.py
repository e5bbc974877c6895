"""Lesson 06's notebooks run many short scenes, each on workers of its own: start the next
scene's workers while the current one runs, and stop each scene's as the next begins.

Usage (notebooks 06b and 06c)::

    >>> lineup = Lineup([prefetch_workers(name) for name in names] + [leak_workers()])
    >>> busy, idle = lineup.take()      # the first scene's workers, ready; the next scene's start
    >>> ...                             # the scene
    >>> workers = lineup.take()         # the second scene's; the first scene's are let go
    >>> lineup.stop()                   # everything: those let go, taken, or never taken

A worker takes 2–5 s to start on a busy 2-core machine, and about 1 s to stop; a scene often
waits on a task's sleep or a timeout meanwhile. Starting the workers of every scene at once
would make the first scene wait for all of them (they share the CPU), so only `ahead` scenes'
workers are started beyond the one running. Nothing changes in what a scene shows: each gets
fresh workers, with the settings it names, that have served nothing before.

A group is a list (or a dict) of things with start(), wait_ready() and stop() — labkit Workers,
or a scene object that owns a Redis, a worker and beat — and dismiss() or signal(), to be let go.
"""
from __future__ import annotations

import signal


def members(group) -> list:
    return list(group.values()) if isinstance(group, dict) else list(group)


def dismiss(thing) -> None:
    """Let `thing` go: a warm shutdown (SIGTERM) begins now; stop() waits for it later."""
    if hasattr(thing, "dismiss"):
        thing.dismiss()
    else:
        thing.signal(signal.SIGTERM)


def stop_together(things) -> None:
    """Stop every thing, their shutdowns overlapping (as labkit's Fleet does)."""
    things = list(things)
    for thing in things:
        try:
            dismiss(thing)
        except Exception:   # noqa: BLE001  never started, or gone: stop() below tidies up
            pass
    for thing in things:
        thing.stop()


class Lineup:
    """The groups of workers a notebook's scenes take, in order, started `ahead` scenes early."""

    def __init__(self, groups: list, ahead: int = 1):
        self.groups = list(groups)
        self.ahead = ahead
        self.started = 0      # groups started so far
        self.taken = 0        # groups handed to a scene so far
        try:
            self._start_up_to(1 + ahead)
        except BaseException:
            self.stop()
            raise

    def _start_up_to(self, count: int) -> None:
        while self.started < min(count, len(self.groups)):
            for thing in members(self.groups[self.started]):
                thing.start()
            self.started += 1

    def take(self):
        """The next group, ready. The one taken before is let go; the one `ahead` starts."""
        if self.taken >= len(self.groups):
            raise IndexError(f"all {len(self.groups)} groups of the lineup were taken")
        if self.taken:
            for thing in members(self.groups[self.taken - 1]):
                dismiss(thing)
        self._start_up_to(self.taken + 1)
        group = self.groups[self.taken]
        self.taken += 1
        for thing in members(group):
            thing.wait_ready()
        self._start_up_to(self.taken + self.ahead)   # starts while the scene runs
        return group

    def stop(self) -> None:
        """Stop every process of every group started (idempotent)."""
        stop_together(thing for group in self.groups[:self.started] for thing in members(group))

    def __enter__(self) -> "Lineup":
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()
