"""Lesson 07: the notebook runs top to bottom from a fresh kernel: the saved measurements drawn,
and two short live runs on its own workers (pools, tuning). Its speeds are never checked."""
import re
import time
from pathlib import Path

import pytest

from conftest import images_of, outputs_of

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "07_brokers_pools_tuning.ipynb"


@pytest.mark.timeout(150)   # the goal is under 60 s; the limit leaves room on a busy CI
def test_notebook_07_runs_top_to_bottom_with_its_pictures_and_live_runs(run_notebook):
    started = time.monotonic()
    notebook = run_notebook(NOTEBOOK.name, timeout=100)
    print(f"notebook 07 ran in {time.monotonic() - started:.1f} s")
    text = outputs_of(notebook)
    assert len(images_of(notebook)) == 3                         # brokers, pools, tuning
    for pool in ("solo", "prefork", "threads", "gevent"):        # the live IO batch, every worker
        assert re.search(rf"{pool}: 8 × io_wait\(0\.2\) at +[\d.]+ tasks/s", text), pool
    assert re.search(r"tuned ÷ defaults, per round: [\d.]+ ×", text)
    assert "timeline recording a run" in text
