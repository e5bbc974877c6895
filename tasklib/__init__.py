"""What the tasks in `tasks.py` stand on, and are not tasks themselves.

- `tasklib.outbox`: the outbox, one shared record in Redis that several workers drain
  (lessons 01 and 03).
- `tasklib.progress`: reporting PROGRESS by the clock, and the FFT tasks' input checks (lesson 04).

Nothing here knows the Celery app, and nothing here imports the rest of this repository: the
modules can be read, tested and copied on their own.
"""
