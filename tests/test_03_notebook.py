"""Lesson 03: the three locks notebooks run top to bottom from a fresh kernel and show what they say.

03a: steps a → f and locks.Lock; 03b: leases, renewal, Redlock; 03c: the task patterns, on real
workers. Eleven pictures in all: a's bars and the timelines of b, c, d, e, f (03a), the TTL story
(03b), and the four pattern pictures (03c).
"""
import pytest

from conftest import images_of, outputs_of


@pytest.mark.timeout(240)  # a → f: each story starts and reaps real processes
def test_notebook_03a_walks_a_to_f_and_shows_each_flaw_and_fix(run_notebook):
    notebook = run_notebook("03a_lock_steps.ipynb", timeout=120)
    text = outputs_of(notebook)
    assert "without a lock: 200 of 1600" in text   # 8 × 200 increments, forced race
    assert "with locks.Lock: 1600 of 1600" in text
    assert "most processes holding the lock at once: 2" in text
    assert "(-1: it never expires)" in text and "who got the lock after the crash: nobody" in text
    assert "C acquired while B held the lock: True" in text
    assert "the resource holds: \"A's report #1\"" in text           # e: the stale write lands
    assert "accepted: 0" in text and "the resource holds: \"B's report\"" in text  # f: refused
    # a's bars, and the timelines of b, c, d, e, f
    assert len(images_of(notebook)) == 6


@pytest.mark.timeout(180)  # the TTL story's processes, renewal, five Redlock masters
def test_notebook_03b_shows_a_lost_lease_reported_and_redlock_needing_a_majority(run_notebook):
    notebook = run_notebook("03b_leases_and_redlock.ipynb", timeout=120)
    text = outputs_of(notebook)
    assert "lost reported within 2 s: True" in text and "fenced write: LockLostError" in text
    assert "1 master killed → acquired: True" in text
    assert "3 masters killed → acquired: False" in text
    # the TTL story
    assert len(images_of(notebook)) == 1


@pytest.mark.timeout(300)  # real workers and beat: single instance, the outbox, per target
def test_notebook_03c_shows_each_task_pattern_removing_its_race(run_notebook):
    notebook = run_notebook("03c_task_patterns.ipynb", timeout=120)
    text = outputs_of(notebook)
    assert "Task patterns built on the lock" in "\n".join(c.source for c in notebook.cells)
    # the patterns: zero overlaps with single instance, every email sent exactly once with the lock
    assert "single instance=True   ran" in text and text.count("overlapping runs: 0") >= 1
    assert "sent more than once: [] | never sent: 0 | deliveries: 12 for 12 emails" in text
    # the four pattern pictures: single instance before/after, the killed holder, outbox, per target
    assert len(images_of(notebook)) == 4
