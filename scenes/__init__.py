"""The lessons' scenes: the demo runs that a notebook, a figure and a test share.

One module per lesson, named by its number (`lesson_02`, `lesson_03_steps`, …). A scene starts
what it needs (workers, beat, child processes), makes the thing the lesson is about happen,
stops everything it started, and returns what happened, so that:

- the notebook calls it and draws the result (prose → code → picture);
- `scripts/figures.py NN` calls the module's `figures(out)` and writes `img/NN_*.png`;
- `tests/test_NN_*.py` call it and assert on the result.

Scenes stand on `labkit` (plumbing), `tasks` (the app) and `locks`; nothing below imports them.
Everything talks to the Redis in REDIS_URL: set it up first (`labkit.open_lab()`).
"""
