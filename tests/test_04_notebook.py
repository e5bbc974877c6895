"""Lesson 04: the notebook runs top to bottom from a fresh kernel, with its own workers."""
import re
import time
from pathlib import Path

import pytest

from conftest import outputs_of


NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "04_progress_fft.ipynb"


@pytest.mark.timeout(120)   # the goal is under 60 s; the limit leaves room on a busy CI
def test_notebook_04_runs_top_to_bottom_and_shows_each_pitfall(run_notebook):
    started = time.monotonic()
    notebook = run_notebook(NOTEBOOK.name, timeout=90)
    print(f"notebook 04 ran in {time.monotonic() - started:.1f} s")
    text = outputs_of(notebook)
    bins_off = [float(value) for value in re.findall(r"off by ([\d.]+) bins", text)]
    assert len(bins_off) == 4 and max(bins_off) <= 1.0          # every planted tone found
    assert "ignore_result=True : ('PROGRESS', 100.0)" in text     # 5a: stuck in PROGRESS
    assert "default            : ('SUCCESS', 100.0)" in text
    assert re.search(r"made-up id\s+PENDING\nnobody's queue\s+PENDING", text)   # 5b
    assert "...with a percent in any of them? False" in text                # 5c
    assert re.search(r"our task-progress events: \[.*100\.0\]", text)
    assert "one update = 3 round trips to Redis" in text                     # 5d
    assert text.rstrip().endswith("stopped")
