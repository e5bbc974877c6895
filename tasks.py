"""The Celery app and its tasks: what the notebooks and `invoker.py` send, what workers run.

Usage::

    (terminal 1)$ make redis                     # or your own redis-server on localhost:6379
    (terminal 2)$ celery -A tasks worker --loglevel=info -n worker1@%h
    (terminal 3)$ celery -A tasks worker --loglevel=info -n worker2@%h
    (terminal 4)$ python invoker.py add 2 3
    5
    (terminal 4)$ python invoker.py mail --count 10      # which worker sent which email
    (terminal 4)$ python invoker.py fft 200000 --tasks 3 # live progress bars (lesson 04)
    (terminal 5)$ celery -A tasks beat --loglevel=info   # lesson 02: sends the periodic jobs below

Settings come from the environment:

    REDIS_URL               redis://localhost:6379/0 unless set; broker and result backend use it
    CELERY_BROKER_URL       overrides the broker only: Redis, or RabbitMQ (amqp://…, lesson 07)
    CELERY_RESULT_BACKEND   overrides the result backend only
    MAIL_EVERY, EXTRACT_EVERY, EXTRACT_SECONDS, EXTRACT_EXPIRES, EXTRACT_QUEUE
                            the periodic jobs' timings and remedies, read by beat (lesson 02)
    REPORT_CRON, CRON_SPEEDUP, CRON_EPOCH
                            a cron line for the "report" entry, and its clock (lesson 02)
    EXTRACT_SINGLE_INSTANCE=1, EXTRACT_LOCK_TTL
                            beat sends the single-instance extractor; its lock's lease (lesson 03)
    TARGET_MAX_RETRIES, TARGET_BACKOFF, TARGET_BACKOFF_CAP, TARGET_RATE_LIMIT
                            run_on_target's retry policy and rate limit, read by workers (lesson 03)
    FFT_PROGRESS_INTERVAL   seconds between PROGRESS updates of the FFT tasks (default 0.2,
                            at least 0.01)
    BROKER_VISIBILITY_TIMEOUT
                            seconds an unacknowledged message may stay with a worker before
                            another one restores it to its queue (default: Redis transport's
                            3600); an ETA further away than this can run twice (lesson 05b)
    NOTHING_LOST=1          workers acknowledge a task after it ran, requeue one whose process
                            died, retry a lost broker for ever, and stop softly: the settings
                            gathered in NOTHING_LOST_SETTINGS, each with its cost (lesson 06)

After you edit this file, restart the workers: a running worker keeps the code it started with.
"""
from __future__ import annotations

# long on purpose: this is the one file a reader opens to see every task, in lesson order, with
# the app's settings (README, "Layout"); whatever is not a task lives in tasklib/.

import logging
import os
import time
from functools import lru_cache

import redis
from celery import Celery
from celery.exceptions import SoftTimeLimitExceeded
from celery.utils.log import get_task_logger

from labkit import settings, timeline
from locks.patterns import exclusive, lock_released, one_per_target, run_skipped, single_instance
from tasklib.clock import cron_schedule
from tasklib.outbox import Outbox
from tasklib.progress import FFT_SAMPLES, NoProgress, Progress, check_fft_rounds, check_spectrum

# Checked before anything connects (labkit/settings.py): an empty or non-Redis URL is refused with
# one line, never left to Celery, which would fall back to amqp://guest@localhost// on its own.
REDIS_URL = settings.redis_url("REDIS_URL", "redis://localhost:6379/0")
# The broker alone may be RabbitMQ, named explicitly (CELERY_BROKER_URL=amqp://…, lesson 07):
# results, locks and the lessons' data stay in Redis, as in the brown-bag talk's seed set-up.
BROKER_URL = settings.broker_url("CELERY_BROKER_URL", REDIS_URL, default_text="REDIS_URL")
RESULT_BACKEND = settings.redis_url("CELERY_RESULT_BACKEND", REDIS_URL, default_text="REDIS_URL")
# Words read by name further down, checked here too (empty = unset):
settings.text("TARGET_RATE_LIMIT", "20/s", r"[0-9]{1,6}(\.[0-9]{1,3})?(/[smh])?",
              "a Celery rate limit: tasks per second, minute or hour", "20/s")
settings.text("EXTRACT_QUEUE", None, r"[A-Za-z0-9_.:-]{1,100}", "a queue name", "extract")
settings.text("EXTRACT_SINGLE_INSTANCE", None, r"[01]", "0 or 1", "1")
# Lesson 05b. Unset: the Redis transport's own one hour, and no transport option at all.
# A floor of a second: shorter, workers would hand each other every message they hold.
BROKER_VISIBILITY_TIMEOUT = settings.seconds("BROKER_VISIBILITY_TIMEOUT", None, minimum=1.0)

app = Celery("tasks")
app.conf.update(
    broker_url=BROKER_URL,
    result_backend=RESULT_BACKEND,
    # JSON only: a worker that accepts pickle runs whatever code a message carries.
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    result_accept_content=["json"],
    result_expires=3600,              # results are kept one hour, then Redis drops them
    task_track_started=True,          # STARTED is reported, not only PENDING → SUCCESS
    result_extended=True,             # results also name their task, arguments and worker
    broker_connection_retry_on_startup=True,
    # Each pool process reserves at most one message beyond the one it runs (with early
    # acknowledgement, the default: the optimizing guide), so tasks spread across workers as you
    # watch; the default of 4 lets one worker hoard a burst. Strictly one at a time takes
    # task_acks_late=True, or worker_disable_prefetch=True (Celery 5.6+, Redis broker).
    worker_prefetch_multiplier=1,
    # A producer with no broker gives up after a few seconds instead of retrying for ever.
    broker_connection_timeout=3,
    task_publish_retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
    redis_socket_connect_timeout=3,
    # Lesson 05b. A message a worker holds unacknowledged (an ETA task waits in its memory) goes
    # back to the queue once it is older than the visibility timeout, whenever a worker scans:
    # at its start, then every 100 s or so. An ETA beyond it runs twice (kombu#337, celery#2481).
    broker_transport_options=({"visibility_timeout": BROKER_VISIBILITY_TIMEOUT}
                              if BROKER_VISIBILITY_TIMEOUT else {}),
    # Lesson 05b: short tasks get a lane of their own; start workers with -Q fast / -Q slow.
    # Only these two tasks are routed: every other task stays on the default queue, "celery".
    task_routes={"tasks.send_reset_email": {"queue": "fast"},
                 "tasks.monthly_report": {"queue": "slow"}},
)


@lru_cache(maxsize=None)
def db() -> redis.Redis:
    """The Redis that holds the lesson data (the outbox); the broker's, unless told otherwise."""
    return redis.Redis.from_url(REDIS_URL, decode_responses=True)


# --- Arithmetic: the smallest tasks, to see producer → broker → worker → result ----------------

@app.task
def add(x, y):
    return x + y


@app.task
def mul(x, y):
    return x * y


@app.task
def xsum(numbers):
    return sum(numbers)


@app.task
def divide(x, y):
    """Fails for y == 0: the ZeroDivisionError travels back to the producer as the result."""
    return x / y


# --- The outbox: one shared record, several workers ------------------------------------------
# Pending emails live in Redis (tasklib/outbox.py). `send_mail_from_queue` takes the next pending
# one, "sends" it (records who sent it) and marks it sent: ordinary read-then-write code, so two
# workers can read the same pending email before either marks it sent, and both send it.
# Lesson 03 shows that race happening and fixes it with a lock.

outbox = Outbox(db)


@app.task(bind=True)
def send_mail_from_queue(self, pause: float = 0.0):
    """Send the next pending email, with no lock: two workers can send the same one."""
    return outbox.send_next(self.request.hostname, pause)


# --- A slow job ------------------------------------------------------------------------------

@app.task(bind=True)
def data_extractor(self, seconds: float = 2.0):
    """Pretend to extract data for `seconds`; report which worker did it and when."""
    started = time.time()
    time.sleep(seconds)
    return {"worker": self.request.hostname, "started": started, "seconds": seconds}


# --- Lesson 02: beat, periodic tasks, and the run timeline --------------------------------------
# `celery -A tasks beat --loglevel=info` sends these two jobs on a clock; the workers run them.
# Beat is a clock, not a supervisor: it sends every run on time whether or not the last one has
# finished, and the worker pool runs whatever is queued. A job that takes longer than its
# interval therefore overlaps with itself on several workers (notebooks/02_beat_overlap.ipynb).
#
# Every task run (which worker, from when to when, how it ended) is recorded in Redis, so the
# notebooks can draw it: see labkit/timeline.py. Connected here, so every process records.

timeline.connect(app, url=REDIS_URL)


MAIL_EVERY = settings.seconds("MAIL_EVERY", 5.0)             # send_mail_from_queue, every 5 s
EXTRACT_EVERY = settings.seconds("EXTRACT_EVERY", 10.0)      # data_extractor is sent this often…
EXTRACT_SECONDS = settings.seconds("EXTRACT_SECONDS", 25.0)  # …and runs longer, on purpose
# Remedies that need no lock (lesson 02 shows what each costs):
EXTRACT_EXPIRES = settings.seconds("EXTRACT_EXPIRES", None)  # a run queued longer is dropped
EXTRACT_QUEUE = os.environ.get("EXTRACT_QUEUE") or None  # e.g. "extract", served by one solo worker

# Way 1: the beat_schedule setting, plain data.
app.conf.beat_schedule = {
    "send-mail": {"task": "tasks.send_mail_from_queue", "schedule": MAIL_EVERY},
}

# Way 1, by the clock: REPORT_CRON, a cron line ("0 13 * * *": every day at 13:00), adds an entry
# that beat sends at those times of day — in app.conf.timezone, which is UTC unless you set it
# (Celery's defaults: timezone "UTC", enable_utc=True). Lesson 02 runs it every minute on a clock
# ten times as fast (CRON_SPEEDUP=10, from CRON_EPOCH, a Unix time; tasklib/clock.py) so that it
# fires, at second 0 of beat's clock, several times within seconds. Unset: no such entry.
REPORT_CRON = os.environ.get("REPORT_CRON", "").strip() or None
if REPORT_CRON:
    CRON_SPEEDUP = settings.positive_number("CRON_SPEEDUP", 1.0)
    try:
        app.conf.beat_schedule["report"] = {"task": "tasks.report", "schedule": cron_schedule(
            REPORT_CRON, speedup=CRON_SPEEDUP, epoch=settings.positive_number("CRON_EPOCH", None))}
    except ValueError as error:
        raise SystemExit(f"error: REPORT_CRON: {error}") from None
    if CRON_SPEEDUP > 1:   # beat sleeps up to this long between looks: one second of the fast clock
        app.conf.beat_max_loop_interval = 1.0 / CRON_SPEEDUP


@app.task(bind=True)
def report(self):
    """The report beat sends by the clock (REPORT_CRON): which worker made it, and when."""
    return {"worker": self.request.hostname, "at": time.time()}


# Schedule file of a plain `celery -A tasks beat` from the repository root, git-ignored.
# (labkit's Beat passes its own --schedule under .run/beat/.)
app.conf.beat_schedule_filename = "celerybeat-schedule"
# celery-redbeat (one active beat, others wait for its lock) reads these when chosen with
# `celery -A tasks beat -S redbeat.RedBeatScheduler`; its lock lasts 5 × --max-interval unless set.
if os.environ.get("REDBEAT_LOCK_TIMEOUT"):
    app.conf.redbeat_lock_timeout = int(settings.seconds("REDBEAT_LOCK_TIMEOUT", None))
# Its keys (schedule, entries, lock) under a prefix of our own, not the default "redbeat:": a
# lesson that cleans up after itself then deletes only these, even in a Redis shared with an app.
app.conf.redbeat_key_prefix = "learn-celery:redbeat:"


# Way 2: add_periodic_task, in code. Connected to on_after_finalize, not on_after_configure as
# in many examples: on_after_configure is sent ONCE, the first time anything reads app.conf.
# If any line above this one (in this module, or in a module imported before it, such as a
# Django settings module reading CELERY_* from app.conf) has read the configuration, the signal
# is already gone, the handler never runs and the job is silently never scheduled; a handler in
# a module autodiscovered at finalize time is always too late for it. on_after_finalize is sent
# when the app is finalized, which beat (and the worker) do after importing this whole module,
# before reading the schedule, so the entry is there however this file grows.
# tests/test_02_beat.py checks both: the signal lost, and a real beat sending this entry.
@app.on_after_finalize.connect
def schedule_data_extractor(sender, **_kwargs):
    options = {}
    if EXTRACT_EXPIRES:
        options["expires"] = EXTRACT_EXPIRES   # seconds after beat sends it
    if EXTRACT_QUEUE:
        options["queue"] = EXTRACT_QUEUE
    # Lesson 03: EXTRACT_SINGLE_INSTANCE=1 schedules the locked variant (defined below) instead.
    single = os.environ.get("EXTRACT_SINGLE_INSTANCE") == "1"
    task = data_extractor_single_instance if single else data_extractor
    sender.add_periodic_task(EXTRACT_EVERY, task.s(EXTRACT_SECONDS), name="extract-data",
                             **options)


# --- Lesson 03: tasks that take a lock -------------------------------------------------------
# Each pattern is a decorator from locks/patterns.py, placed under @app.task(bind=True). The locks
# are locks.Lock leases of `ttl` seconds, renewed while a run lasts: a worker killed mid-run
# frees its lock after at most `ttl` seconds.

# The patterns announce a skipped run and a released lock as signals; the timeline draws them.
run_skipped.connect(timeline.record_skipped, weak=False)
lock_released.connect(timeline.record_locked_window, weak=False)

# Single instance: lesson 02's slow periodic job, one run at a time. With EXTRACT_SINGLE_INSTANCE=1
# beat's "extract-data" entry sends this task instead (see schedule_data_extractor): same
# schedule, same options.
EXTRACT_LOCK_TTL = settings.seconds("EXTRACT_LOCK_TTL", 10.0)


@app.task(bind=True)
@single_instance(db, ttl=EXTRACT_LOCK_TTL)
def data_extractor_single_instance(self, seconds: float = 2.0):
    """`data_extractor`, but a run that finds the previous one still going is skipped."""
    started = time.time()
    time.sleep(seconds)
    return {"worker": self.request.hostname, "started": started, "seconds": seconds}


@app.task(bind=True)
@exclusive(db, "outbox", wait=60)
def send_mail_from_queue_locked(self, pause: float = 0.0):
    """`send_mail_from_queue` with its read-then-write under one lock: every email is sent once.

    The lock covers the whole read → send → mark-sent step; a lock around the write alone would
    still let two workers read the same pending email. The body has its lock as
    `self.request.lock`: it claims the email with a fenced write before sending, so a worker
    paused past its lease (a GC pause, a frozen VM) sends nothing once another one took over.
    """
    return outbox.send_next(self.request.hostname, pause, lock=self.request.lock)


# One task per target at a time: a run for a busy target (dave is already being worked on) retries
# later, after an exponential backoff with jitter, at most TARGET_MAX_RETRIES times. The rate limit
# is per worker; run the workers with --concurrency=3. Times are seconds, settable to compress them.
TARGET_MAX_RETRIES = settings.count("TARGET_MAX_RETRIES", 5)
TARGET_BACKOFF = settings.seconds("TARGET_BACKOFF", 1.0)       # the first retry comes within this...
TARGET_BACKOFF_CAP = settings.seconds("TARGET_BACKOFF_CAP", 30.0)   # ...and no retry waits longer


@app.task(bind=True, rate_limit=os.environ.get("TARGET_RATE_LIMIT", "20/s"))
@one_per_target(db, "target", max_retries=TARGET_MAX_RETRIES, base=TARGET_BACKOFF,
                cap=TARGET_BACKOFF_CAP)
def run_on_target(self, target: str, seconds: float = 1.0):
    """Work on `target` (a host, an account, a user: "dave") for `seconds`, alone."""
    time.sleep(seconds)
    return {"target": target, "worker": self.request.hostname, "retries": self.request.retries}


# --- Lesson 04: progress-reporting FFTs ------------------------------------------------------
# A long task says how far it got with update_state(state="PROGRESS", meta={...}); a producer
# reads it back as AsyncResult.state / .info. `Progress` (tasklib/progress.py) reports by the
# clock, at most once per FFT_PROGRESS_INTERVAL seconds plus a final update, and sends each update
# as a `task-progress` event too, for monitors such as Flower.
#
# Stopping one: a producer calls request_cancel(app, ids) (tasklib/progress.py) and revoke(ids)
# WITHOUT terminate. At its next update (within FFT_PROGRESS_INTERVAL) the task's Progress sees
# the request, stores REVOKED and raises TaskCancelled: the loop stops, `with` closes what Progress
# opened, and the pool process takes the next task. revoke(terminate=True) is the last resort for
# a task that never reports: it kills the pool process, whatever it runs by then, prefork only.
#
# numpy and scipy are imported inside the tasks, not here: every producer (invoker.py, the
# notebooks) imports this file, and scipy.signal alone takes about a second to import. A pool
# process pays that once, on its first FFT task.

# At least 0.01 s: each update costs a few round trips to Redis, and an interval near 0 would turn
# the task into a reporter that computes on the side (issue 11, case 8).
PROGRESS_INTERVAL = settings.seconds("FFT_PROGRESS_INTERVAL", 0.2, minimum=0.01)


@app.task(bind=True)
def fft_random(self, n: int, report: bool = True, interval: float | None = None,
               seed: int | None = None) -> dict:
    """`n` rounds of an FFT over 2000 normally distributed samples, reporting PROGRESS.

    Returns {"rounds", "samples", "mean_power", "seconds", "updates", "progress_seconds",
    "progress_cpu_seconds"} (the last two: time spent reporting, inside "seconds", and the CPU
    time of it; the rest was waiting for Redis and the scheduler). `mean_power` is the mean
    of |X_k|² / samples over all bins and rounds, close to 1.0 for unit-variance noise
    (Parseval's theorem), so even a random workload has an answer to check.
    """
    import numpy as np
    from scipy import fft as scipy_fft

    rounds = check_fft_rounds(n)
    every = PROGRESS_INTERVAL if interval is None else interval
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    power = 0.0
    with Progress(self, rounds, every) if report else NoProgress() as progress:
        for done in range(1, rounds + 1):
            transform = scipy_fft.fft(rng.standard_normal(FFT_SAMPLES))
            power += np.vdot(transform, transform).real / FFT_SAMPLES**2
            progress.advance(done)   # raises TaskCancelled if a producer asked it to stop
    return {"rounds": rounds, "samples": FFT_SAMPLES, "mean_power": float(power / rounds),
            "seconds": time.perf_counter() - started, "updates": progress.updates,
            "progress_seconds": progress.seconds, "progress_cpu_seconds": progress.cpu_seconds}


@app.task(bind=True)
def spectrum(self, tones, frames: int = 200, frame_size: int = 4096, sample_rate: float = 8000.0,
             noise: float = 1.0, peaks: int | None = None, seed: int | None = None,
             interval: float | None = None, return_spectrum: bool = False) -> dict:
    """The averaged spectrum of planted tones plus white noise; its strongest peaks.

    `tones` are frequencies in Hz, or [frequency, amplitude] pairs. The signal is cut into
    `frames` frames of `frame_size` samples; each is Hann-windowed and transformed, and the
    magnitudes are averaged: the noise floor smooths out, the tones stay. PROGRESS is per frame.

    Returns {"peaks": [[frequency Hz, magnitude], ...] strongest first (as many as tones, or
    `peaks`), "bin_width": Hz between bins, "frames", ...}, plus "frequencies" and "magnitudes"
    of the whole spectrum with `return_spectrum`. A magnitude is in the units of a tone's
    amplitude: a tone of amplitude 0.5 on a bin peaks at about 0.5.
    """
    import numpy as np
    from scipy import fft as scipy_fft
    from scipy import signal as scipy_signal

    tones = check_spectrum(tones, frames, frame_size, sample_rate, noise)
    rng = np.random.default_rng(seed)
    window = scipy_signal.get_window("hann", frame_size)
    scale = 2.0 / window.sum()   # a tone of amplitude A on a bin comes out as A
    phases = rng.uniform(0, 2 * np.pi, len(tones))
    total = np.zeros(frame_size // 2 + 1)
    with Progress(self, frames, PROGRESS_INTERVAL if interval is None else interval) as progress:
        for frame in range(frames):
            t = (frame * frame_size + np.arange(frame_size)) / sample_rate  # one signal, cut
            x = noise * rng.standard_normal(frame_size)
            for (frequency, amplitude), phase in zip(tones, phases):
                x += amplitude * np.sin(2 * np.pi * frequency * t + phase)
            total += np.abs(scipy_fft.rfft(x * window)) * scale
            progress.advance(frame + 1)
    magnitudes = total / frames
    frequencies = scipy_fft.rfftfreq(frame_size, d=1.0 / sample_rate)
    found, _ = scipy_signal.find_peaks(magnitudes)
    strongest = sorted(found, key=lambda index: magnitudes[index], reverse=True)[:peaks or len(tones)]
    outcome = {"peaks": [[float(frequencies[i]), float(magnitudes[i])] for i in strongest],
               "bin_width": sample_rate / frame_size, "frames": frames, "tones": tones,
               "updates": progress.updates}
    if return_spectrum:
        outcome.update(frequencies=frequencies.tolist(), magnitudes=magnitudes.tolist())
    return outcome


# --- Lesson 05a: Mini Celery's wishes done by Celery: canvas and retries ---------------------
# Mini Celery (scenes/lesson_05_mini_celery.py) runs hello(world()) by counting a child's parents
# down in Redis. Celery's canvas builds the same from signatures, `world.s() | hello.s()`, and
# needs no counter for a chain: each message carries the rest of the chain, and the worker that
# finishes one link sends the next. A chord's parts are counted in the result backend; the
# worker that stores the last one sends the body. A failing link stops a chain (the links after
# it are marked FAILURE, never run), and a chord's body gets ChordError instead of running:
# unlike Mini Celery, a child never receives its parent's exception as an argument. Errors go to
# link_error callbacks (`record_failure`). Retries: the three `flaky*` tasks below.
from locks.patterns import backoff as full_jitter_backoff   # noqa: E402  lesson 03's, reused
from tasklib.canvas import answer_after, log_failure         # noqa: E402


@app.task
def world():
    return "World"


@app.task
def hello(thing):
    return f"Hello {thing}!"


@app.task
def square(x, seconds: float = 0.0):
    """x * x after `seconds` of pretend work: chord parts that take different times."""
    time.sleep(seconds)
    return x * x


@app.task
def record_failure(request, exc, traceback):
    """A link_error callback. With these three arguments Celery calls it at once, in the worker
    where the failure happened (with one, the task id, it would be sent as a task of its own)."""
    log_failure(db(), request.id, request.task, exc)


# Celery's own retry options: attempt n + 1 comes min(retry_backoff_max, retry_backoff × 2ⁿ)
# seconds after attempt n fails (celery/utils/time.py: get_exponential_backoff_interval), in
# WHOLE seconds (the factor is int(retry_backoff)), with retry_jitter a random whole number of
# seconds from 0 up to that; after max_retries retries the task fails with the last exception.
RETRY_OPTIONS = {"autoretry_for": (ConnectionError,), "max_retries": 3, "retry_backoff": 1,
                 "retry_backoff_max": 2}


@app.task(bind=True, retry_jitter=False, **RETRY_OPTIONS)
def flaky(self, failures: int):
    """Fails its first `failures` attempts; Celery retries it 1 s, 2 s, 2 s later, then gives up."""
    return answer_after(self.request.retries + 1, failures, self.request.hostname)


@app.task(bind=True, retry_jitter=True, **RETRY_OPTIONS)
def flaky_jittered(self, failures: int):
    """`flaky`, with jitter: each delay a random WHOLE number of seconds, 0 up to 1, 2, 2."""
    return answer_after(self.request.retries + 1, failures, self.request.hostname)


@app.task(bind=True)
def flaky_backoff(self, failures: int, base: float = 0.2, cap: float = 1.6, max_retries: int = 4,
                  jitter: bool = False):
    """`flaky` with the same backoff in fractions of a second, computed here, as lesson 03's
    one_per_target does: retry n waits min(cap, base × 2ⁿ), or with `jitter` a random time up to
    it (locks.patterns.backoff). self.retry is what autoretry_for calls too."""
    try:
        return answer_after(self.request.retries + 1, failures, self.request.hostname)
    except ConnectionError as error:
        retries = self.request.retries
        delay = full_jitter_backoff(retries, base, cap) if jitter else min(cap, base * 2**retries)
        raise self.retry(exc=error, countdown=delay, max_retries=max_retries)


# --- Lesson 05b: time: ETAs, visibility timeouts, time limits; routing; task logging ---------
# Run at a time: send_reminder.apply_async(args, countdown=3) or eta=<a datetime>. The worker
# takes the message at once and keeps it, unacknowledged, in its memory until then; on Redis the
# message is also in the "unacked" hash, and once it is older than the visibility timeout any
# worker that scans (every worker at its start, then every 100 s or so) puts it back in the queue:
# the task then runs twice (kombu#337, celery#2481, celery#3270). See BROKER_VISIBILITY_TIMEOUT.
#
# Time limits: soft_time_limit raises SoftTimeLimitExceeded inside the task, which can clean up;
# time_limit terminates the pool process, which the worker replaces. Per task in the decorator,
# per call with apply_async(soft_time_limit=…, time_limit=…). Prefork pool only.
#
# Routing: send_reset_email and monthly_report are routed (task_routes, above) to queues "fast"
# and "slow"; a worker serves only the queues named by -Q. Logging: get_task_logger.

logger = get_task_logger(__name__)       # lines carry the task's name and id (task_log_format)
plain_logger = logging.getLogger("importer")   # an ordinary logger, not under "tasks"


@app.task(bind=True)
def send_reminder(self, text: str = "your appointment is tomorrow"):
    """A reminder meant to go out once, at a chosen time: send it with countdown= or eta=."""
    logger.info("reminder sent: %s", text)
    return {"text": text, "worker": self.request.hostname, "eta": self.request.eta,
            "ran_at": time.time()}


EXPORT_SCRATCH = "export:scratch:"   # + task id: the half-written export, removed by cleanup
EXPORT_SAVED = "export:saved:"       # + task id: how many items cleanup saved


# A hard limit for every run of this task; a call may set its own soft and hard limits. No soft
# limit here: a call's time_limit below a task's soft_time_limit is not enforced until the soft
# one fires (celery#9125), so a call could not ask for a short hard limit alone.
@app.task(bind=True, time_limit=60)
def export_batch(self, items: int = 10, seconds_per_item: float = 0.5,
                 cleanup_seconds: float = 1.0):
    """Export `items` items of `seconds_per_item` each; clean up in `cleanup_seconds`.

    While it works it keeps a scratch key; cleanup (`finally`) saves how many items are done
    and removes the scratch key. Returns {"done", "of", "stopped_early", "pid", "worker"}.

    At a soft limit (the call's soft_time_limit) SoftTimeLimitExceeded is raised wherever the
    body is: the loop stops, cleanup runs, and the task returns what it got done. At the hard
    limit (60 s, or the call's time_limit) the worker terminates the pool process: SIGTERM,
    which billiard turns into SystemExit (so `finally` may start), then SIGKILL 0.1 s later.
    The cleanup is cut off, the scratch key stays until it expires, the task is FAILURE with
    TimeLimitExceeded, and the worker starts a new pool process.
    """
    scratch = EXPORT_SCRATCH + self.request.id
    db().set(scratch, "a half-written export", ex=3600)
    done, stopped_early = 0, False
    try:
        for _ in range(items):
            time.sleep(seconds_per_item)
            done += 1
    except SoftTimeLimitExceeded:
        # Caught by name: a bare `except Exception` around the work would swallow it too.
        logger.warning("soft time limit: stopping after %d of %d items", done, items)
        stopped_early = True
    finally:
        logger.info("cleaning up: saving %d items, removing %s", done, scratch)
        time.sleep(cleanup_seconds)        # flushing what is done takes a moment
        saving = db().pipeline()
        saving.set(EXPORT_SAVED + self.request.id, done, ex=3600).delete(scratch).execute()
        logger.info("cleaned up")
    return {"done": done, "of": items, "stopped_early": stopped_early, "pid": os.getpid(),
            "worker": self.request.hostname}


@app.task(bind=True)
def send_reset_email(self, user: str):
    """A short task a person waits for (routed to queue "fast")."""
    time.sleep(0.05)
    return {"user": user, "worker": self.request.hostname, "started": time.time()}


@app.task(bind=True)
def monthly_report(self, seconds: float = 1.0):
    """A long task nobody waits for (routed to queue "slow")."""
    time.sleep(seconds)
    return {"worker": self.request.hostname, "seconds": seconds}


@app.task(bind=True)
def import_rows(self, rows: int = 3):
    """Log three ways: the task logger (its lines carry the task id), a plain logger, print()."""
    for row in range(1, rows + 1):
        logger.info("imported row %d of %d", row, rows)
    plain_logger.info("a plain logger's line: which task wrote it?")
    print("a print() in a task")           # the worker logs it as a WARNING (redirected stdout)
    return {"rows": rows, "task_id": self.request.id}


# --- Lesson 06: nothing lost: acks_late, killed workers, restarts, prefetch -------------------
# By default a worker acknowledges a message when it RECEIVES it: a worker killed mid-task (kill
# -9, the OOM killer, a machine gone) takes the task with it, and its state stays STARTED for
# ever. NOTHING_LOST=1 (read by workers) applies the settings below instead, each with what it
# protects against and what it costs. Redis must keep what it is given too: appendonly yes
# (AOF, appendfsync everysec: at most a second of writes lost in a crash), and maxmemory-policy
# noeviction (an evicting Redis drops queued messages, results and lesson 03's fences).
NOTHING_LOST = settings.text("NOTHING_LOST", None, r"[01]", "0 or 1", "1") == "1"
NOTHING_LOST_SETTINGS = {
    # Acknowledge after the task returns, not on receipt: the message of a worker that dies
    # mid-task stays in Redis's "unacked" hash, and goes back to its queue once it is older than
    # the visibility timeout (BROKER_VISIBILITY_TIMEOUT, one hour by default), when a worker
    # scans: at its start, then every 100 s or so. Costs: the task may run twice, so it must be
    # idempotent (send_invoice_once below); the visibility timeout must exceed the longest task,
    # or long tasks run twice while they still run (celery#5935).
    "task_acks_late": True,
    # acks_late alone still ACKNOWLEDGES a task whose pool process was killed while the worker
    # lived (OOM killer, SIGKILL): FAILURE with WorkerLostError, never run again (celery#4984,
    # PR #3053). This puts it back in the queue at once. Cost: a task that always kills its
    # process (a poison message) comes back for ever.
    "task_reject_on_worker_lost": True,
    # With acks_late, the multiplier counts the running task: a process holds one message, the
    # one it runs, and none waits in a busy worker while another is idle. Cost: one broker round
    # trip per task, felt only with many tiny tasks.
    "worker_prefetch_multiplier": 1,
    # A broker that went away (a Redis restart) is retried for ever, not 100 times and then the
    # worker exits. Cost: a worker pointed at the wrong broker waits silently (its log says why).
    "broker_connection_max_retries": None,
    # A task running when the connection drops cannot be acknowledged on it any more, and its
    # message will be delivered again: cancel the running copy rather than have it run twice
    # (Celery's default from 6.0; without it, 5.x logs a CPendingDeprecationWarning on every loss).
    "worker_cancel_long_running_tasks_on_connection_loss": True,
    # A result store that fails (Redis restarting) is retried instead of losing the result.
    # Cost: a task's process waits up to about a minute before giving up.
    "result_backend_always_retry": True,
    "result_backend_max_retries": 10,
    # Stop (SIGQUIT, Ctrl-C twice) waits this many seconds for running tasks to finish before it
    # cancels them; with acks_late a cancelled task goes back to its queue (Celery 5.5). Cost:
    # a stop takes that long. Warm shutdown (SIGTERM) waits for running tasks however long.
    "worker_soft_shutdown_timeout": 5.0,
    "worker_enable_soft_shutdown_on_idle": True,   # also wait when only ETA tasks are held
}
if NOTHING_LOST:
    app.conf.update(NOTHING_LOST_SETTINGS)

# What a task did, seen from outside: the invoices the mail service received (a list: every
# delivery lands), and the ones it accepted with an idempotency key (a hash: the first one wins).
MAILBOX = "lesson06:mailbox:"        # + invoice: one entry per email delivered
MAILBOX_ONCE = "lesson06:delivered"  # invoice -> the task id whose delivery was accepted


@app.task(bind=True)
def send_invoice(self, invoice: str, seconds: float = 1.0):
    """Email `invoice`, then spend `seconds` filing it. NOT idempotent: run twice, the customer
    gets two emails. A worker killed while filing has sent it but not acknowledged it."""
    db().rpush(MAILBOX + invoice, self.request.hostname)
    time.sleep(seconds)
    return {"invoice": invoice, "worker": self.request.hostname, "pid": os.getpid()}


@app.task(bind=True)
def send_invoice_once(self, invoice: str, seconds: float = 1.0):
    """`send_invoice`, idempotent: the invoice number is the idempotency key, and the mail
    service keeps the first delivery per key (HSETNX, one atomic step). A redelivered run sends
    nothing new. Claiming the key BEFORE sending, in a step of its own, would not do: a worker
    killed between the two would leave the invoice claimed and never sent."""
    if db().hsetnx(MAILBOX_ONCE, invoice, self.request.id):
        db().rpush(MAILBOX + invoice, self.request.hostname)
    time.sleep(seconds)
    return {"invoice": invoice, "worker": self.request.hostname, "pid": os.getpid()}


_leaked: list[bytes] = []   # grows in each pool process, never freed: the leak


@app.task
def leaky(megabytes: float = 10.0):
    """Keep `megabytes` more of memory for good (a cache that is never emptied), touched so that
    it is resident. Returns the pool process's pid and its resident memory in MiB."""
    _leaked.append(b"\x01" * int(megabytes * 2**20))   # written, so resident (bytes(n) is not)
    return {"pid": os.getpid(), "rss_mib": _resident_mib()}


def _resident_mib() -> float:
    try:
        with open(f"/proc/{os.getpid()}/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:   # not Linux: the peak instead (KiB on Linux, bytes on macOS)
        import resource
        import sys
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


# --- Lesson 07: brokers, pools and tuning, measured side by side ------------------------------
# The brown-bag talk compares brokers and pools from hearsay; bench/brokers.py, bench/pools.py and
# bench/tuning.py measure them, side by side in one run (README, lesson 07). The tasks they send:
# `tally` (the tiny task), `fft_random(n, report=False)` (CPU-bound) and `io_wait` (IO-bound).
#
# Our own instrument costs something too: the run timeline (lesson 02) makes one round trip to
# Redis per task run even when nobody records, and two when a run is recorded. RUN_TIMELINE=0
# (read by workers and producers; default 1) switches it off, as benchmarks do.
if settings.text("RUN_TIMELINE", "1", r"[01]", "0 or 1", "0") == "0":
    timeline.disconnect()

# Tuning many tiny tasks: TUNING names the steps a worker applies, comma-separated, e.g.
# TUNING=lean_results,ignore_result,prefetch,no_ack_emulation. Each is a documented setting; what
# it gains is measured by bench/tuning.py, what it costs is said here. (Two more steps are not
# settings: chunks, a producer's choice, and the worker flags --without-gossip --without-mingle
# --without-heartbeat, which only save start-up time and background traffic.)
TUNING_STEPS = {
    # No STARTED state, and results without their task's name, arguments and worker: one write
    # less per task, a smaller one. Cost: nobody can see that a task is running, or who ran it.
    "lean_results": {"task_track_started": False, "result_extended": False},
    # No result stored at all (the producer also skips its SUBSCRIBE per task when it sends with
    # ignore_result=True). Cost: no .get(), no state, no chord; a failure is only in the log.
    "ignore_result": {"task_ignore_result": True},
    # Each pool process reserves 32 messages instead of one: fewer trips to the broker. Cost: a
    # busy worker hoards tasks another one could run, and holds them if it dies (lesson 06).
    "prefetch": {"worker_prefetch_multiplier": 32},
    # The Redis transport keeps every delivered message in its "unacked" hash until the ack: two
    # more round trips per message. Off, a message is gone from Redis once delivered. Cost: the
    # messages a killed worker held are lost for good (no restore; acks_late means nothing).
    "no_ack_emulation": {"broker_transport_options": {
        "ack_emulation": False,
        **({"visibility_timeout": BROKER_VISIBILITY_TIMEOUT} if BROKER_VISIBILITY_TIMEOUT else {})}},
    # No pidbox queue: the worker answers no ping, inspect or broadcast revoke. Used when the
    # broker is a shared RabbitMQ, so that we declare nothing but queues of our own.
    "no_remote_control": {"worker_enable_remote_control": False},
}
TUNING = settings.text("TUNING", None, r"[a-z_]{1,40}(,[a-z_]{1,40}){0,9}",
                       "lesson 07 tuning steps, comma-separated", "ignore_result,prefetch")
for _step in (TUNING or "").split(",") if TUNING else ():
    if _step not in TUNING_STEPS:
        raise settings.SettingError(f"TUNING={TUNING!r}: no step {_step!r} — the steps are "
                                    f"{', '.join(TUNING_STEPS)}, or unset it")
    app.conf.update(TUNING_STEPS[_step])


@app.task
def tally(key: str, amount: int = 1) -> int:
    """The tiny task: add `amount` to the counter `key` in Redis and return it. A burst is done
    when the counter reaches its size, whether results are kept or not."""
    db().incrby(key, amount)
    return amount


@app.task
def io_wait(seconds: float = 0.1) -> float:
    """IO-bound: wait `seconds` on a local socket that nothing is sent to, as a call to a slow
    service would; returns the seconds waited. No CPU: a green pool (gevent, eventlet) or a
    thread runs other tasks meanwhile."""
    import socket   # here, not at the top: only this lesson's task needs it

    started = time.perf_counter()
    left, right = socket.socketpair()
    with left, right:
        left.settimeout(seconds)
        try:
            left.recv(1)
        except (socket.timeout, TimeoutError):
            pass
    return time.perf_counter() - started
