"""Watching progress from the outside: polled PROGRESS traces, Celery events, Redis round trips.

Lesson 04's plumbing; the notebook, the tests, the figures and the benchmark share it::

    >>> trace = poll_progress(results, timeout=60)      # {task id: [(seconds, state, percent)]}
    >>> with EventLog(tasks.app) as log:                 # a monitor's view: Celery events
    ...     result.get(timeout=30)
    ...     log.wait_for(lambda events: ..., timeout=10)
    >>> with redis_round_trips() as trips:               # what this process said to Redis
    ...     tasks.fft_random.update_state(task_id, "PROGRESS", meta)
    >>> len(trips), trips                                 # 2, [['GET'], ['MULTI', 'SETEX', ...]]

`python -m labkit.progress --figures img` makes lesson 04's figures from real runs (`make
figures-04`): a private Redis, three workers, the spectrum, six tasks' progress curves, the
invoker's bars in a terminal, and the cost of updates.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import redis.connection
from celery import states

from labkit.processes import REPO_ROOT

PROBE_EVENT = "labkit-probe"


# --- Polling: what a producer sees through the result backend -------------------------------

def percent_of(result) -> tuple[str, float | None]:
    """(state, percent done) of an AsyncResult: PROGRESS meta, 100 at SUCCESS, None if unknown.

    One read of the backend: `.state` then `.info` are two, and the task can finish in between.
    """
    meta = result.backend.get_task_meta(result.id)
    state, info = meta["status"], meta.get("result")
    if state == "PROGRESS" and isinstance(info, dict):
        return state, float(info.get("percent", 0.0))
    if state == "SUCCESS":
        return state, 100.0
    return state, None


def poll_progress(results, timeout: float, every: float = 0.05) -> dict[str, list]:
    """Poll every result until all are ready; per task id [(seconds since start, state, percent)].

    Raises TimeoutError when they are not all ready after `timeout` seconds.
    """
    started = time.monotonic()
    trace: dict[str, list] = {result.id: [] for result in results}
    waiting = list(results)
    while waiting:
        now = time.monotonic() - started
        if now > timeout:
            raise TimeoutError(f"{len(waiting)} of {len(results)} tasks not done after {timeout:g} s")
        for result in list(waiting):
            state, percent = percent_of(result)
            trace[result.id].append((now, state, percent))
            if state in states.READY_STATES:
                waiting.remove(result)
        time.sleep(every)
    return trace


# --- Events: what a monitor such as Flower sees ---------------------------------------------

class EventLog:
    """Celery events received in a background thread, the way Flower receives them.

    Events travel through the broker (a Redis pub/sub channel) and are not stored: a receiver
    sees only what is sent while it listens. `start()` therefore returns only once a probe event
    of our own has come back through the broker.
    """

    def __init__(self, app):
        self.app = app
        self.events: list[dict] = []
        self._lock = threading.Lock()
        self._receiver = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def _on_event(self, event: dict) -> None:
        with self._lock:
            self.events.append(event)

    def _listen(self) -> None:
        try:
            with self.app.connection_for_read() as connection:
                self._receiver = self.app.events.Receiver(connection, handlers={"*": self._on_event})
                self._receiver.capture(limit=None, timeout=None, wakeup=False)
        except BaseException as error:  # reported by start()/wait_for, not lost in the thread
            self._error = error

    def start(self, timeout: float = 10.0) -> "EventLog":
        self._thread = threading.Thread(target=self._listen, name="EventLog", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        with self.app.events.default_dispatcher(hostname="labkit-probe") as dispatcher:
            while not self.of(PROBE_EVENT):
                if self._error or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"the event receiver did not start: {self._error!r}")
                dispatcher.send(PROBE_EVENT)
                time.sleep(0.1)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        if self._receiver is not None:
            self._receiver.should_stop = True
        if self._thread is not None:
            self._thread.join(timeout)

    def of(self, type_: str | None = None, uuid: str | None = None) -> list[dict]:
        """The events received so far, of one type and/or about one task."""
        with self._lock:
            return [event for event in self.events
                    if (type_ is None or event["type"] == type_)
                    and (uuid is None or event.get("uuid") == uuid)]

    def wait_for(self, condition, timeout: float) -> list[dict]:
        """Wait until `condition(events so far)` is true; the events; TimeoutError if never."""
        deadline = time.monotonic() + timeout
        while not condition(self.of()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"events not seen after {timeout:g} s; got types "
                                   f"{sorted({event['type'] for event in self.of()})}")
            time.sleep(0.05)
        return self.of()

    def __enter__(self) -> "EventLog":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


# --- Round trips: what one update costs -----------------------------------------------------

def command_names(packed) -> list[str]:
    """The command names in what redis-py sends at once (one command, or a whole pipeline)."""
    if isinstance(packed, str):
        data = packed.encode()
    elif isinstance(packed, (bytes, bytearray, memoryview)):
        data = bytes(packed)
    else:
        data = b"".join(bytes(part) for part in packed)
    names, position = [], 0
    while position < len(data):        # RESP: *<argc>\r\n then $<len>\r\n<arg>\r\n per argument
        end = data.index(b"\r\n", position)
        argc, position = int(data[position + 1:end]), end + 2
        for index in range(argc):
            end = data.index(b"\r\n", position)
            length, position = int(data[position + 1:end]), end + 2
            if index == 0:
                names.append(data[position:position + length].decode().upper())
            position += length + 2
    return names


@contextmanager
def redis_round_trips():
    """Record what this process sends to Redis inside the block: one list of names per send.

    redis-py writes one command, or a whole pipeline, in one send and then reads the replies,
    so each send is one round trip. The counting wraps redis-py's send method for the block
    and restores it after; the commands still go to the real server.
    """
    sends: list[list[str]] = []
    connection_class = redis.connection.AbstractConnection
    original = connection_class.send_packed_command

    def counting(self, command, check_health=True):
        sends.append(command_names(command))
        return original(self, command, check_health)

    connection_class.send_packed_command = counting
    try:
        yield sends
    finally:
        connection_class.send_packed_command = original


def update_cost(task, task_id: str, updates: int = 20, events: bool = True) -> dict:
    """Round trips and seconds that one PROGRESS update costs, as `Progress.report` makes it."""
    import tasks as lesson

    progress = lesson.Progress(task, total=updates, events=events)
    task.push_request(id=task_id, hostname="labkit-measure")   # as if a worker ran task_id
    try:
        progress.report(0)   # connections opened and the result key created outside the count
        with redis_round_trips() as sends:
            started = time.perf_counter()
            for current in range(1, updates + 1):
                progress.report(current)
            seconds = time.perf_counter() - started
    finally:
        task.pop_request()
    return {"round_trips": len(sends) / updates, "seconds": seconds / updates,
            "sends": sends[:len(sends) // updates]}


# --- Pictures ---------------------------------------------------------------------------------

def plot_spectrum(outcome: dict, ax=None):
    """The averaged spectrum, found peaks (dots) against planted tones (dashed lines)."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(9, 3.6))[1]
    ax.plot(outcome["frequencies"], outcome["magnitudes"], lw=0.8, color="0.35",
            label=f"averaged over {outcome['frames']} frames")
    for index, (frequency, amplitude) in enumerate(outcome["tones"]):
        ax.axvline(frequency, color="tab:blue", ls="--", lw=1, alpha=0.7,
                   label="planted tones" if index == 0 else None)
    found = outcome["peaks"]
    ax.plot([f for f, _ in found], [m for _, m in found], "o", color="tab:red", ms=7,
            mfc="none", mew=2, label="peaks found by the task")
    ax.set_xlabel("frequency (Hz)")
    ax.set_ylabel("magnitude (tone amplitude units)")
    ax.set_title(f"spectrum task: {len(found)} peaks found, bin width {outcome['bin_width']:.2f} Hz")
    ax.legend(loc="upper right", fontsize=8)
    return ax


def plot_progress_curves(trace: dict, workers: dict, ax=None, title: str | None = None):
    """Percent done over time, one line per task, coloured by the worker that ran it."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(9, 3.8))[1]
    colours = {name: f"C{index}" for index, name in enumerate(sorted(set(workers.values())))}
    labelled = set()
    for task_id, points in trace.items():
        seconds = [t for t, _, _ in points]
        percent = [p if p is not None else 0.0 for _, _, p in points]
        worker = workers.get(task_id, "?")
        ax.plot(seconds, percent, color=colours.get(worker, "0.5"), lw=1.8,
                label=worker.split("@")[0] if worker not in labelled else None)
        labelled.add(worker)
    ax.set_xlabel("seconds since the tasks were sent")
    ax.set_ylabel("percent done (PROGRESS meta)")
    ax.set_ylim(-3, 112)
    ax.set_title(title or f"{len(trace)} tasks on {len(colours)} workers: flat at 0 % = queued")
    handles, labels = ax.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=labels.__getitem__)
    ax.legend([handles[i] for i in order], [labels[i] for i in order], title="ran on",
              loc="lower right", fontsize=8)
    return ax


def plot_update_cost(outcomes: dict, ax=None):
    """Seconds of the same FFT loop without progress, throttled, and after every round."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(8, 2.6))[1]
    names = list(outcomes)
    seconds = [outcomes[name]["seconds"] for name in names]
    ax.barh(names, seconds, color=["0.6", "tab:green", "tab:red"][:len(names)])
    for row, name in enumerate(names):
        ax.annotate(f"  {outcomes[name]['updates']} updates", (seconds[row], row), va="center",
                    fontsize=8)
    rounds = outcomes[names[0]]["rounds"]
    ax.set_xlabel(f"seconds for the same {rounds} FFT rounds (3 Redis round trips per update)")
    ax.set_xlim(0, max(seconds) * 1.25)
    ax.invert_yaxis()
    ax.set_title("the cost of progress: report by time, not by count")
    return ax


def terminal_screen(argv: list[str], snapshot_when, timeout: float = 60.0,
                    rows: int = 10, columns: int = 96) -> list[str]:
    """Run `argv` in a pseudo-terminal; its screen (lines of text) when `snapshot_when(lines)`
    first holds, else at the end.

    The command runs to its end (killed after `timeout`). The screen is rebuilt by a tiny
    terminal emulator that knows what tqdm writes: text, \\r, \\n, cursor up/down, erase line.
    """
    import fcntl
    import pty
    import select
    import signal
    import struct
    import termios

    pid, fd = pty.fork()
    if pid == 0:   # the child: becomes the command, on the terminal's slave side
        os.chdir(REPO_ROOT)
        os.execvpe(argv[0], argv, {**os.environ, "COLUMNS": str(columns)})
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    output, started, screen = b"", time.monotonic(), None
    try:
        while time.monotonic() - started < timeout:
            if screen is None:
                lines = emulate_screen(output.decode(errors="replace"), rows, columns)
                screen = lines if snapshot_when(lines) else None
            ready, _, _ = select.select([fd], [], [], 0.05)
            if ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:      # the command ended and closed the terminal
                    break
                if not chunk:
                    break
                output += chunk
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)
        os.close(fd)
    return screen or emulate_screen(output.decode(errors="replace"), rows, columns)


def emulate_screen(text: str, rows: int, columns: int) -> list[str]:
    screen = [[" "] * columns for _ in range(rows)]
    row = col = 0
    position = 0
    while position < len(text):
        escape = re.match(r"\x1b\[(\d*)([A-Za-z])", text[position:])
        if escape:
            count, command = int(escape.group(1) or 1), escape.group(2)
            if command == "A":
                row = max(0, row - count)
            elif command == "B":
                row = min(rows - 1, row + count)
            elif command == "K":
                screen[row][col:] = [" "] * (columns - col)
            position += escape.end()
            continue
        char = text[position]
        if char == "\r":
            col = 0
        elif char == "\n":
            row += 1
            if row == rows:            # scroll
                screen.pop(0)
                screen.append([" "] * columns)
                row = rows - 1
        elif char.isprintable() and col < columns:
            screen[row][col] = char
            col += 1
        position += 1
    return ["".join(line).rstrip() for line in screen]


def plot_terminal(lines: list[str], prompt: str):
    """A terminal's screen as a picture: the command line, then the lines it showed."""
    import matplotlib.pyplot as plt

    while lines and not lines[-1]:
        lines = lines[:-1]
    figure = plt.figure(figsize=(9.6, 0.22 * (len(lines) + 1) + 0.25), facecolor="#1e1e1e")
    figure.text(0.01, 0.5, prompt + "\n" + "\n".join(lines), family="DejaVu Sans Mono",
                fontsize=9, color="#e0e0e0", va="center", ha="left", linespacing=1.35)
    return figure


def make_figures(out_dir: Path) -> list[Path]:
    """Run the lesson on a private Redis with three workers and save img/04_*.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from labkit.processes import Fleet
    from labkit.redis_server import RedisServer

    server = RedisServer().start()
    os.environ["REDIS_URL"] = server.url
    import tasks

    out_dir.mkdir(parents=True, exist_ok=True)
    saved = []
    try:
        with Fleet(["worker1", "worker2", "worker3"], concurrency=1):
            outcome = tasks.spectrum.delay(
                [[440, 1.0], [1000, 0.5], [2500, 0.8], [3210.5, 0.3]], frames=300, seed=4,
                return_spectrum=True).get(timeout=120)
            ax = plot_spectrum(outcome)
            saved.append(_save(ax.figure, out_dir / "04_spectrum.png"))

            results = [tasks.fft_random.delay(40_000, seed=i) for i in range(6)]
            trace = poll_progress(results, timeout=300)
            workers = {result.id: result.worker for result in results}
            ax = plot_progress_curves(trace, workers)
            saved.append(_save(ax.figure, out_dir / "04_progress_6_tasks_3_workers.png"))

            command = ["python", "invoker.py", "fft", "60000", "--tasks", "4"]
            lines = terminal_screen([sys.executable, *command[1:]], snapshot_when=lambda lines: sum(
                bool(re.search(r" [4-7]\d%\|", line)) for line in lines) >= 3)
            figure = plot_terminal(lines, "$ " + " ".join(command) + "     # 3 workers: "
                                   "three tasks run, the fourth waits in the queue")
            saved.append(_save(figure, out_dir / "04_terminal_bars.png", tight=False))

            runs = {"no progress": {"report": False}, "every 0.2 s": {},
                    "after every round": {"interval": 0}}
            outcomes = {name: tasks.fft_random.delay(3000, **options).get(timeout=120)
                        for name, options in runs.items()}
            ax = plot_update_cost(outcomes)
            saved.append(_save(ax.figure, out_dir / "04_update_cost.png"))
            plt.close("all")
    finally:
        server.stop()
    return saved


def _save(figure, path: Path, tight: bool = True) -> Path:
    if tight:
        figure.tight_layout()
    figure.savefig(path, dpi=110)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labkit.progress",
                                     description="Make lesson 04's figures from real runs.")
    parser.add_argument("--figures", type=Path, default=Path("img"), metavar="DIR",
                        help="where to write 04_*.png (default img)")
    args = parser.parse_args(argv)
    for path in make_figures(args.figures):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
