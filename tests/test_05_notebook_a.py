"""Lesson 05a: notebook 05a runs top to bottom from a fresh kernel, with its own workers, and
shows what it says it shows."""
import re
import time
from pathlib import Path

import pytest

from conftest import images_of, outputs_of

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "05a_mini_celery_and_canvas.ipynb"


@pytest.mark.timeout(150)   # the budget is 60 s; the limit leaves room on a busy CI
def test_notebook_05a_runs_top_to_bottom_and_shows_each_step(run_notebook):
    started = time.monotonic()
    notebook = run_notebook(NOTEBOOK.name, timeout=90)
    print(f"notebook 05a ran in {time.monotonic() - started:.1f} s")
    text = outputs_of(notebook)
    assert "→ 'Hello World!'" in text and "→ \"Hello ZeroDivisionError('division by zero')!\"" in text
    assert "'expiring': 0" in text                                  # Mini Celery keeps it all
    assert "TYPE list  LLEN 3" in text
    assert re.search(r"queue celery: 0 messages;  unacked copies: 1\nheld by: \{'worker", text)
    assert "while it runs: parts counted" in text and "body: 14" in text
    assert "chunks: [[0, 1, 4, 9], [16, 25, 36, 49], [64, 81]]" in text
    assert re.search(r"link 3: FAILURE .* never ran", text)
    assert "body : FAILURE ChordError(" in text
    assert re.search(r"flaky\(5\).* waits \[1\.\d+, 2\.\d+, 2\.\d+\]\s+→ FAILURE", text)
    assert len(images_of(notebook)) == 4                             # mini, chord, retries, jitter
    assert text.rstrip().endswith("stopped")
