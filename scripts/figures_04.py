"""Regenerate img/04_*.png from real runs: a private Redis, three workers (`make figures-04`).

Usage::

    $ python scripts/figures_04.py            # a minute or two; writes img/04_*.png
    $ python scripts/figures_04.py --out /tmp/figs

The spectrum of planted tones, six tasks' progress curves on three workers, the invoker's bars
as a terminal shows them (run in a pseudo-terminal), and the cost of progress updates. It
always starts its own private redis-server (a free port, nothing kept), so it never touches a
Redis you run, and stops everything it started, also on Ctrl-C.
"""
from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import matplotlib  # noqa: E402

matplotlib.use("Agg")

from figure_output import output_folder, save  # noqa: E402
from labkit import Fleet, RedisServer  # noqa: E402
from labkit.progress import (plot_progress_curves, plot_spectrum, plot_update_cost,  # noqa: E402
                             poll_progress)


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
        os.chdir(ROOT)
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


def main(argv=None) -> int:
    out = output_folder(argv, __doc__.splitlines()[0])

    with RedisServer() as server:
        os.environ["REDIS_URL"] = server.url
        import tasks  # after REDIS_URL: tasks.py reads it once

        with Fleet(["worker1", "worker2", "worker3"], concurrency=1):
            outcome = tasks.spectrum.delay(
                [[440, 1.0], [1000, 0.5], [2500, 0.8], [3210.5, 0.3]], frames=300, seed=4,
                return_spectrum=True).get(timeout=120)
            figure = plot_spectrum(outcome).figure
            figure.tight_layout()
            save(figure, out / "04_spectrum.png")

            results = [tasks.fft_random.delay(40_000, seed=i) for i in range(6)]
            trace = poll_progress(results, timeout=300)
            workers = {result.id: result.worker for result in results}
            figure = plot_progress_curves(trace, workers).figure
            figure.tight_layout()
            save(figure, out / "04_progress_6_tasks_3_workers.png")

            command = ["python", "invoker.py", "fft", "60000", "--tasks", "4"]
            lines = terminal_screen([sys.executable, *command[1:]], snapshot_when=lambda lines: sum(
                bool(re.search(r" [4-7]\d%\|", line)) for line in lines) >= 3)
            save(plot_terminal(lines, "$ " + " ".join(command) + "     # 3 workers: "
                               "three tasks run, the fourth waits in the queue"),
                 out / "04_terminal_bars.png")

            runs = {"no progress": {"report": False}, "every 0.2 s": {},
                    "after every round": {"interval": 0}}
            outcomes = {name: tasks.fft_random.delay(3000, **options).get(timeout=120)
                        for name, options in runs.items()}
            figure = plot_update_cost(outcomes).figure
            figure.tight_layout()
            save(figure, out / "04_update_cost.png")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
