"""How long each notebook takes headless, and its slowest cells: the presenting budget, measured.

Usage::

    $ python scripts/notebook_times.py                       # every notebook, a few minutes
    $ python scripts/notebook_times.py notebooks/02_beat_overlap.ipynb

Each notebook runs top to bottom in a fresh kernel with nbclient, as the tests run it; with
REDIS_URL unset, each starts (and stops) a private Redis of its own. The budget for presenting:
a notebook in at most 60 s, no cell of 10 s or more (marked `!` below). This is a measurement,
not a test: it prints, and exits non-zero only when a notebook fails to run.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUDGET_NOTEBOOK = 60.0
BUDGET_CELL = 10.0


def cell_seconds(cell) -> float:
    """The cell's run time, from the timestamps nbclient records in its metadata."""
    timing = cell.metadata.get("execution", {})
    started, ended = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
    if not (started and ended):
        return 0.0
    parse = lambda stamp: datetime.fromisoformat(stamp.replace("Z", "+00:00"))  # noqa: E731
    return (parse(ended) - parse(started)).total_seconds()


def run(path: Path, timeout: float) -> tuple[float, list[tuple[float, int, str]]]:
    """(total seconds, [(seconds, cell number, first line), ...] slowest first)."""
    import nbclient
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                                     record_timing=True,
                                     resources={"metadata": {"path": str(path.parent)}})
    started = time.monotonic()
    client.execute()
    total = time.monotonic() - started
    cells = [(cell_seconds(cell), number, (cell.source.strip().splitlines() or [""])[0][:60])
             for number, cell in enumerate(notebook.cells) if cell.cell_type == "code"]
    return total, sorted(cells, reverse=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="notebooks to time (default: notebooks/*.ipynb)")
    parser.add_argument("--slowest", type=int, default=3, help="cells to show (default 3)")
    parser.add_argument("--timeout", type=float, default=120, help="seconds a cell may take")
    options = parser.parse_args(argv)
    paths = options.notebooks or sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        parser.error(f"no such notebook: {', '.join(missing)}")
    os.environ.pop("REDIS_URL", None)   # each notebook starts a private Redis of its own
    failed = 0
    print(f"| notebook | total | cells ≥ {BUDGET_CELL:g} s | slowest cells (s, cell number) |")
    print("|---|---|---|---|")
    for path in paths:
        try:
            total, cells = run(path, options.timeout)
        except Exception as error:  # a failing cell: say which notebook, go on with the others
            print(f"| {path.name} | failed: {type(error).__name__} | | |", flush=True)
            failed += 1
            continue
        slow = sum(seconds >= BUDGET_CELL for seconds, _, _ in cells)
        shown = ", ".join(f"{seconds:.1f} (#{number})" for seconds, number, _ in
                          cells[:options.slowest])
        mark = " !" if total > BUDGET_NOTEBOOK else ""
        print(f"| {path.name} | {total:.1f} s{mark} | {slow}{' !' if slow else ''} | {shown} |",
              flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
