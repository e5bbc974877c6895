"""Lesson 03: the locks notebook runs top to bottom from a fresh kernel and shows what it says."""
import pytest

from conftest import images_of, outputs_of

@pytest.mark.timeout(400)  # a → f, Redlock, then three task-pattern runs with their own workers
def test_notebook_03_walks_a_to_f_and_shows_each_flaw_and_fix(run_notebook):
    notebook = run_notebook("03_locks.ipynb", timeout=180)
    text = outputs_of(notebook)
    assert "without a lock: 500 of 4000" in text
    assert "with locks.Lock: 4000 of 4000" in text
    assert "most processes holding the lock at once: 2" in text
    assert "(-1: it never expires)" in text and "who got the lock after the crash: nobody" in text
    assert "C acquired while B held the lock: True" in text
    assert "the resource holds: \"A's report #1\"" in text           # e: the stale write lands
    assert "accepted: 0" in text and "the resource holds: \"B's report\"" in text  # f: refused
    assert "lost reported within 2 s: True" in text and "fenced write: LockLostError" in text
    assert "1 master killed → acquired: True" in text
    assert "3 masters killed → acquired: False" in text
    assert "Task patterns built on the lock" in "\n".join(c.source for c in notebook.cells)
    images = images_of(notebook)
    # the patterns: zero overlaps with single instance, every email sent exactly once with the lock
    assert "single instance=True   ran" in text and text.count("overlapping runs: 0") >= 1
    assert "sent more than once: [] | never sent: 0 | deliveries: 12 for 12 emails" in text
    # a's bars, the timelines of b, c, d, e, f, the TTL story, and the four pattern pictures
    assert len(images) == 11
