"""PROGRESS reported by the clock, and the input checks of lesson 04's FFT tasks.

Usage, inside a bound task (`@app.task(bind=True)`)::

    progress = Progress(self, total=rounds)      # at most one update per `interval` seconds
    for done in range(1, rounds + 1):
        ...                                       # one step of the work
        progress.advance(done)                    # cheap: reads the clock, rarely talks to Redis

Each update costs round trips to the result backend (`bench/progress_fft.py` counts them), so
`Progress` reports by the clock — the first call at once (a bar learns the total), then at most
one per interval, plus the final one — instead of every k iterations, whose cost grows with the
speed of the loop. Monitors such as Flower read events, not the result backend: each update
therefore also goes out as a custom `task-progress` event with the same meta.
"""
from __future__ import annotations

import time

FFT_SAMPLES = 2000                # samples per round of fft_random
MAX_FFT_ROUNDS = 10_000_000       # more is a typo, not a job: it would run for hours
MAX_FRAMES = 1_000_000


class Progress:
    """Report `current` of `total` for a bound task, at most once per `interval` seconds.

    `advance(current)` is cheap enough to call every iteration: it reads the clock and only
    talks to Redis when the interval has passed, or when `current` reaches `total`. The first
    call reports at once, so a progress bar learns the total; the final one always reports.
    """

    def __init__(self, task, total: int, interval: float, events: bool = True):
        self.task = task
        self.total = total
        self.interval = interval
        self.events = events
        self.updates = 0
        self.seconds = 0.0          # time spent reporting, for the benchmark
        self._last_report = float("-inf")

    def meta(self, current: int) -> dict:
        return {"current": current, "total": self.total,
                "percent": round(100.0 * current / self.total, 2)}

    def advance(self, current: int) -> None:
        now = time.monotonic()
        if current >= self.total or now - self._last_report >= self.interval:
            self._last_report = now
            self.report(current)

    def report(self, current: int) -> None:
        started = time.perf_counter()
        meta = self.meta(current)
        self.task.update_state(state="PROGRESS", meta=meta)   # for pollers: AsyncResult.info
        if self.events:
            self.task.send_event("task-progress", **meta)     # for event monitors (Flower)
        self.updates += 1
        self.seconds += time.perf_counter() - started


class NoProgress:
    """Stands in for Progress when reporting is off (the benchmark's baseline)."""

    updates = 0
    seconds = 0.0

    def advance(self, current: int) -> None:
        pass


def check_fft_rounds(n) -> int:
    """`n` if it is a sensible number of FFT rounds; a ValueError that says what is wrong if not."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise ValueError(f"n must be a whole number of FFT rounds, got {n!r}")
    if not 1 <= n <= MAX_FFT_ROUNDS:
        raise ValueError(f"n must be between 1 and {MAX_FFT_ROUNDS:,} FFT rounds, got {n:,}")
    return n


def check_spectrum(tones, frames, frame_size, sample_rate, noise) -> list[list[float]]:
    """The tones as [[frequency, amplitude], ...]; a ValueError naming the first bad parameter."""
    if isinstance(frames, bool) or not isinstance(frames, int) or not 1 <= frames <= MAX_FRAMES:
        raise ValueError(f"frames must be a whole number from 1 to {MAX_FRAMES:,}, got {frames!r}")
    if isinstance(frame_size, bool) or not isinstance(frame_size, int) \
            or not 16 <= frame_size <= 2**20:
        raise ValueError(f"frame_size must be a whole number of samples from 16 to {2**20}, "
                         f"got {frame_size!r}")
    if not isinstance(sample_rate, (int, float)) or not sample_rate > 0:
        raise ValueError(f"sample_rate must be a positive number of Hz, got {sample_rate!r}")
    if not isinstance(noise, (int, float)) or not noise >= 0:
        raise ValueError(f"noise must be a non-negative standard deviation, got {noise!r}")
    if not isinstance(tones, (list, tuple)) or not tones:
        raise ValueError("tones must be a non-empty list of frequencies or [frequency, amplitude]")
    return [_checked_tone(tone, sample_rate / 2) for tone in tones]


def _checked_tone(tone, nyquist: float) -> list[float]:
    frequency, amplitude = (tone, 1.0) if isinstance(tone, (int, float)) else (list(tone) + [None])[:2]
    if not isinstance(frequency, (int, float)) or not 0 < frequency < nyquist:
        shown = f"{frequency:g}" if isinstance(frequency, (int, float)) else repr(frequency)
        raise ValueError(f"tone {shown} Hz is outside 0 < f < {nyquist:g} Hz, the "
                         f"Nyquist frequency (sample rate / 2): pick tones inside it")
    if not isinstance(amplitude, (int, float)) or not amplitude > 0:
        raise ValueError(f"the amplitude of the {frequency:g} Hz tone must be a positive "
                         f"number, got {amplitude!r}")
    return [float(frequency), float(amplitude)]
