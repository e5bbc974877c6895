"""Lesson 02: the notebook runs top to bottom from a fresh kernel and shows what it says."""
from __future__ import annotations

import re
import time

from conftest import images_of, outputs_of


def test_notebook_02_runs_top_to_bottom_and_shows_overlaps_and_the_fixes(run_notebook):
    started = time.monotonic()
    notebook = run_notebook("02_beat_overlap.ipynb")
    print(f"notebook 02 ran in {time.monotonic() - started:.0f} s")
    text = outputs_of(notebook)

    overlaps = int(re.search(r"(\d+) overlapping runs of the extractor", text).group(1))
    assert overlaps >= 1
    assert re.search(r"\b0 overlapping runs; longest queue 'extract'", text)   # the solo worker
    assert re.search(r"[1-9]\d* runs dropped as expired", text)
    assert "failover:" in text
    assert re.search(r"report sent at \d\d:\d\d:0[0-4]\.\d on beat's clock", text)   # crontab
    images = images_of(notebook)
    assert len(images) == 7   # overlap, queue length, expires, solo queue, two beats, redbeat, cron
