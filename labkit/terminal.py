"""A command run in a pseudo-terminal, and its screen as text and as a picture.

Usage (lesson 04's figure of the invoker's live bars)::

    lines = terminal_screen(["python", "invoker.py", "fft", "60000"],
                            snapshot_when=lambda lines: "50%" in "\\n".join(lines))
    figure = plot_terminal(lines, "$ python invoker.py fft 60000")

The screen is rebuilt by a tiny terminal emulator written here, since no library we use has
one: it knows what tqdm writes (text, \\r, \\n, cursor up and down, erase line), nothing else.
POSIX only (pty).
"""
from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import termios
import time

from labkit.processes import REPO_ROOT


def terminal_screen(argv: list[str], snapshot_when, timeout: float = 60.0,
                    rows: int = 10, columns: int = 96, cwd=REPO_ROOT) -> list[str]:
    """Run `argv` in a pseudo-terminal; its screen (lines of text) when `snapshot_when(lines)`
    first holds, else at the end.

    The command runs to its end (killed after `timeout`). The screen is rebuilt by a tiny
    terminal emulator that knows what tqdm writes: text, \\r, \\n, cursor up/down, erase line.
    """
    pid, fd = pty.fork()
    if pid == 0:   # the child: becomes the command, on the terminal's slave side
        os.chdir(cwd)
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
