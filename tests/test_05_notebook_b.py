"""Lesson 05b: the notebook runs top to bottom from a fresh kernel, with its own workers, and
shows each thing happening: the double run and its fix, both limits, the fast lane, a priority,
the task id in log lines."""
import re
import time
from pathlib import Path

import pytest

from conftest import images_of, outputs_of

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "05b_time_limits_routing.ipynb"


@pytest.mark.timeout(150)   # the budget is 60 s; the limit leaves room on a busy CI
def test_notebook_05b_runs_top_to_bottom_and_shows_each_thing_happening(run_notebook):
    started = time.monotonic()
    notebook = run_notebook(NOTEBOOK.name, timeout=90)
    print(f"notebook 05b ran in {time.monotonic() - started:.1f} s")
    text = outputs_of(notebook)
    assert "messages held unacknowledged: 1" in text
    assert "ETA in 6 s, visibility timeout 2 s: 2 run(s)" in text           # broken
    assert "ETA in 6 s, visibility timeout 20 s: 1 run(s)" in text          # fixed
    assert re.search(r"soft_time_limit=1 +stopped early after \d of 10 items .*cleanup ran", text)
    assert re.search(r"time_limit=1 +FAILURE: TimeLimitExceeded .*cleanup never finished", text)
    assert re.search(r"tasks.send_reset_email +ran on fastlane@", text)
    assert re.search(r"tasks.monthly_report +ran on slowlane@", text)
    assert re.search(r"an email waited \d+× longer behind the flood", text)
    assert "'monthly_report', 'monthly_report', 'send_reset_email'" in text   # third
    assert re.search(r"tasks.import_rows\[[0-9a-f-]{36}\]: imported row 1 of 3", text)
    assert len(images_of(notebook)) == 5
    assert text.rstrip().endswith("stopped")
