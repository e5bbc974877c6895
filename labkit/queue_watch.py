"""How many messages wait in a queue, sampled over time, and drawn.

Usage::

    with QueueWatcher(url, queues=["celery"], every=0.25) as watch:
        ...                                   # beat sends, workers run
    watch.samples                             # [(seconds since start, {"celery": 3}), ...]
    plots.plot_queue_length(watch, path="img/02_queue_length.png")   # labkit.plots

With the Redis transport a queue is a Redis list named after it, so its length is LLEN: the
messages nobody has taken yet. Messages a worker has already reserved (its prefetch) or is
running are not counted.
"""
from __future__ import annotations

import threading
import time

import redis


class QueueWatcher:
    """Samples LLEN of `queues` every `every` seconds in a background thread until stopped."""

    def __init__(self, url: str, queues: list[str] | None = None, every: float = 0.25):
        self.url = url
        self.queues = list(queues or ["celery"])
        self.every = every
        self.samples: list[tuple[float, dict[str, int]]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "QueueWatcher":
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, name="queue-watcher", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> "QueueWatcher":
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        return self

    def _sample(self) -> None:
        client = redis.Redis.from_url(self.url, socket_timeout=2)
        started = time.time()
        try:
            while not self._stop.is_set():
                pipe = client.pipeline(transaction=False)
                for queue in self.queues:
                    pipe.llen(queue)
                lengths = pipe.execute()
                self.samples.append((time.time() - started, dict(zip(self.queues, lengths))))
                self._stop.wait(self.every)
        finally:
            client.close()

    def longest(self, queue: str | None = None) -> int:
        queue = queue or self.queues[0]
        return max((lengths[queue] for _, lengths in self.samples), default=0)

    def __enter__(self) -> "QueueWatcher":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
