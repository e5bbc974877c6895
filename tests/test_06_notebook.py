"""Lesson 06: the three notebooks run top to bottom from a fresh kernel, with their own workers
(and, in 06b, a Redis of their own that they crash and restart)."""
import time
from pathlib import Path

import pytest

from conftest import outputs_of

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
NAMES = ["06a_killed_worker.ipynb", "06b_shutdown_and_restart.ipynb", "06c_prefetch_and_pool.ipynb"]


EXPECTED = {
    "06a_killed_worker.ipynb": ["STARTED at the end, ran 1×, 1 email(s)",
                                "SUCCESS at the end, ran 2×, 2 email(s)",
                                "SUCCESS at the end, ran 2×, 1 email(s)"],
    "06b_shutdown_and_restart.ipynb": ["lost (RETRY)", "queued messages: 0",
                                       "queued messages: 3"],
    "06c_prefetch_and_pool.ipynb": ["4 of 6 short tasks waited", "0 of 6 short tasks waited"],
}


@pytest.mark.timeout(180)   # the goal is under 60 s each; the limit leaves room on a busy CI
@pytest.mark.parametrize("name", NAMES)
def test_notebook_06_runs_top_to_bottom(run_notebook, name):
    started = time.monotonic()
    notebook = run_notebook(name, timeout=120)
    print(f"{name} ran in {time.monotonic() - started:.1f} s")
    text = outputs_of(notebook)
    for expected in EXPECTED[name]:
        assert expected in text
    assert text.rstrip().endswith("stopped")
