"""Start, wait for, and stop real `celery` processes: named workers, and beat.

Usage::

    >>> with Fleet(["worker1", "worker2", "worker3"]) as fleet:   # starts all, waits until ready
    ...     fleet.names                                             # ['worker1@host', ...]
    ...     print(fleet["worker1"].log_tail())
    # leaving the block stops them: warm shutdown first, SIGKILL of the whole group after a timeout

    >>> worker = Worker("worker1", concurrency=2).start().wait_ready()
    >>> worker.stop()

    >>> with Beat("beat1", env={"MAIL_EVERY": "1"}) as beat:     # `celery -A tasks beat`, ready
    ...     time.sleep(5)
    ...     beat.sends()                                            # ['send-mail', ...] from its log

Each process runs `python -m celery -A tasks …` from the repository root, with the current
environment (so REDIS_URL and the timing variables reach it), in its own process group, with its
log in `.run/logs/<name>.log`. Every process started here is stopped at interpreter exit too, and,
on Linux, is told by the kernel to stop if the process that started it dies.
"""
from __future__ import annotations

import atexit
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from labkit.redis_server import die_with_parent

REPO_ROOT = Path(__file__).resolve().parent.parent
# Logs and beat schedule files; LABKIT_RUN_DIR moves them (each test process has its own).
RUN_DIR = Path(os.environ.get("LABKIT_RUN_DIR") or REPO_ROOT / ".run")
LOG_DIR = RUN_DIR / "logs"
BEAT_DIR = RUN_DIR / "beat"
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0

_running: set["CeleryProcess"] = set()


class ProcessFailed(RuntimeError):
    """A celery process exited, or did not get ready in time; the message ends with its log."""


class CeleryProcess:
    """One `celery -A tasks <command>` process with a log file and a readiness line to wait for."""

    ready_pattern: re.Pattern = re.compile(r"$^")  # subclasses say what "ready" looks like

    def __init__(self, name: str, celery_args: list[str], env: dict | None = None,
                 log_dir: Path | None = None):
        self.name = name
        self.celery_args = celery_args
        self.env = {**os.environ, **(env or {})}
        self.log_path = Path(log_dir or LOG_DIR) / f"{name}.log"
        self.process: subprocess.Popen | None = None

    @property
    def command(self) -> list[str]:
        return [sys.executable, "-m", "celery", "-A", "tasks", *self.celery_args]

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self) -> "CeleryProcess":
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=REPO_ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: we can stop it and its pool children at once
                preexec_fn=die_with_parent,
            )
        _running.add(self)
        return self

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> "CeleryProcess":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ProcessFailed(f"{self.name} exited with code {self.process.returncode}:\n"
                                    + self.log_tail())
            if self.ready_pattern.search(self.log_text()):
                return self
            time.sleep(0.1)
        raise ProcessFailed(f"{self.name} was not ready after {timeout:.0f} s:\n" + self.log_tail())

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def signal(self, signum: int) -> None:
        """Send `signum` to the main process only (e.g. SIGSTOP/SIGCONT in failure demos)."""
        if self.is_running():
            os.kill(self.process.pid, signum)

    def stop(self, timeout: float = STOP_TIMEOUT, graceful: bool = True) -> None:
        """Stop the process and its children; idempotent.

        Graceful sends SIGTERM, Celery's warm shutdown (running tasks finish); whatever is left
        after `timeout` seconds, or everything at once when not graceful, gets SIGKILL.
        """
        process = self.process
        if process is None:
            return
        _running.discard(self)
        if process.poll() is None and graceful:
            _signal_group(process.pid, signal.SIGCONT)  # a stopped process cannot shut down
            _signal_group(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        # The group may outlive the main process (pool children): kill what is left of it.
        _signal_group(process.pid, signal.SIGKILL)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise ProcessFailed(f"{self.name} (pid {process.pid}) would not die") from None

    def __enter__(self):
        return self.start().wait_ready()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"<{type(self).__name__} {self.name} pid={self.pid} {state}>"


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


class Worker(CeleryProcess):
    """`celery -A tasks worker -n <name>@<host>`: a named worker with its own pool."""

    ready_pattern = re.compile(r"@\S+ ready\.")

    def __init__(self, name: str, concurrency: int = 1, pool: str = "prefork",
                 queues: list[str] | None = None, loglevel: str = "info",
                 extra_args: list[str] | None = None, env: dict | None = None,
                 log_dir: Path | None = None):
        args = ["worker", f"--loglevel={loglevel}", "-n", f"{name}@%h",
                f"--concurrency={concurrency}", f"--pool={pool}",
                # Start-up stays fast and quiet: these worker-to-worker chats teach nothing here.
                "--without-gossip", "--without-mingle"]
        if queues:
            args.append("--queues=" + ",".join(queues))
        super().__init__(name, args + list(extra_args or []), env, log_dir)
        self.nodename = f"{name}@{socket.gethostname()}"


class Fleet:
    """Several named workers, started together (start-up overlaps) and stopped together."""

    def __init__(self, names: list[str], **worker_options):
        self.workers = [Worker(name, **worker_options) for name in names]

    @property
    def names(self) -> list[str]:
        return [worker.nodename for worker in self.workers]

    def __getitem__(self, name: str) -> Worker:
        for worker in self.workers:
            if name in (worker.name, worker.nodename):
                return worker
        raise KeyError(name)

    def start(self, timeout: float = READY_TIMEOUT) -> "Fleet":
        try:
            for worker in self.workers:
                worker.start()
            for worker in self.workers:
                worker.wait_ready(timeout)
        except BaseException:
            self.stop(graceful=False)
            raise
        return self

    def stop(self, timeout: float = STOP_TIMEOUT, graceful: bool = True) -> None:
        for worker in self.workers:  # SIGTERM all first, so their shutdowns overlap
            if graceful and worker.is_running():
                _signal_group(worker.pid, signal.SIGTERM)
        for worker in self.workers:
            worker.stop(timeout, graceful)

    def __enter__(self) -> "Fleet":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


class Beat(CeleryProcess):
    """`celery -A tasks beat`: the clock that sends periodic tasks; it runs none itself.

    Its schedule file (when each entry last ran) is `.run/beat/<name>-schedule`, git-ignored,
    and removed before each start unless `keep_schedule`: a file left by an earlier run with
    other intervals would make entries due at once. `scheduler` picks another scheduler class
    (e.g. "redbeat.RedBeatScheduler"), `max_interval` the longest sleep between two checks.
    """

    ready_pattern = re.compile(r"beat: Starting\.\.\.")
    _send_pattern = re.compile(r"Scheduler: Sending due task (\S+) ")

    def __init__(self, name: str = "beat", scheduler: str | None = None,
                 max_interval: float | None = None, loglevel: str = "info",
                 keep_schedule: bool = False, extra_args: list[str] | None = None,
                 env: dict | None = None, log_dir: Path | None = None):
        self.schedule_path = BEAT_DIR / f"{name}-schedule"
        self.keep_schedule = keep_schedule
        args = ["beat", f"--loglevel={loglevel}", f"--schedule={self.schedule_path}"]
        if scheduler:
            args.append(f"--scheduler={scheduler}")
        if max_interval:
            args.append(f"--max-interval={max_interval:g}")
        super().__init__(name, args + list(extra_args or []), env, log_dir)

    def start(self) -> "Beat":
        self.schedule_path.parent.mkdir(parents=True, exist_ok=True)
        if not self.keep_schedule:
            for old in self.schedule_path.parent.glob(self.schedule_path.name + "*"):
                old.unlink()
        return super().start()

    def sends(self) -> list[str]:
        """Names of the schedule entries this beat has sent so far, in order, from its log."""
        return self._send_pattern.findall(self.log_text())


def stop_all(timeout: float = STOP_TIMEOUT) -> None:
    """Stop every process this interpreter started and has not stopped yet."""
    for process in list(_running):
        process.stop(timeout)


atexit.register(stop_all, 5.0)
