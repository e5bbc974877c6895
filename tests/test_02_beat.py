"""Lesson 02: beat sends periodic tasks on a clock, and a slow one overlaps with itself.

Real `celery -A tasks beat` and worker processes on a database of their own (so the session
fleet on database 0 never sees these messages), with the timings compressed through the
environment variables tasks.py reads (MAIL_EVERY, EXTRACT_EVERY, EXTRACT_SECONDS, ...).
"""
from __future__ import annotations

import re
import subprocess
import time

import pytest
import redis
from celery import Celery

import tasks
from conftest import wait_until
from labkit import Beat, Fleet, REPO_ROOT, Worker, timeline
from labkit.processes import CeleryProcess

EXTRACTOR = "tasks.data_extractor"
MAIL = "tasks.send_mail_from_queue"
WAIT = 30  # seconds: every wait has a limit
QUIET = {"MAIL_EVERY": "3600", "EXTRACT_EVERY": "3600"}  # entries not under test stay silent


@pytest.fixture(scope="module")
def url(module_db_url):
    return module_db_url


@pytest.fixture(scope="module")
def fleet(url, tmp_path_factory):
    """Three one-process workers that serve this module's database only."""
    with Fleet(["beatw1", "beatw2", "beatw3"], env={"REDIS_URL": url},
               log_dir=tmp_path_factory.mktemp("beat-worker-logs")) as workers:
        yield workers


@pytest.fixture
def world(url, fleet, tmp_path):
    """An empty database of the module's own with a run of its own; afterwards, no message left and all idle."""
    client = redis.Redis.from_url(url, decode_responses=True)
    client.flushdb()
    run_id = timeline.start_run("beat test", url=url)
    yield {"url": url, "run_id": run_id, "redis": client, "logs": tmp_path}
    client.delete("celery", "extract")            # what beat sent and nobody ran yet
    wait_until_idle(url, fleet.names)             # and what the workers had already prefetched
    client.close()


def wait_until_idle(url, names, timeout=WAIT):
    """Wait until none of the workers `names` runs or holds (prefetched) a task."""
    control = Celery("control", broker=url, set_as_current=False)
    deadline = time.monotonic() + timeout
    try:
        while True:
            inspect = control.control.inspect(destination=names, timeout=1)
            busy = [task for replies in (inspect.active(), inspect.reserved())
                    for tasks_ in (replies or {}).values() for task in tasks_]
            if not busy:
                return
            assert time.monotonic() < deadline, f"workers still busy: {busy}"
            time.sleep(0.3)
    finally:
        control.close()


def beat(world, name="beat", **settings) -> Beat:
    env = {"REDIS_URL": world["url"], **{key: str(value) for key, value in settings.items()}}
    return Beat(name, env=env, log_dir=world["logs"])


def wait_for_runs(world, task, count) -> list[timeline.Run]:
    """The runs of `task`, once there are `count` of them, all finished."""
    deadline = time.monotonic() + WAIT
    while len(runs := finished_runs(world, task)) < count:
        assert time.monotonic() < deadline, f"{len(runs)} runs of {task}, expected {count}"
        time.sleep(0.2)
    return runs


def finished_runs(world, task=None) -> list[timeline.Run]:
    runs = timeline.wait_until_finished(world["run_id"], timeout=WAIT, url=world["url"])
    return [run for run in runs if task in (None, run.task)]


# --- Declaring periodic tasks ----------------------------------------------------------------

def test_beat_sends_the_beat_schedule_entry_and_the_add_periodic_task_entry(world):
    with beat(world, MAIL_EVERY=0.5, EXTRACT_EVERY=0.5, EXTRACT_SECONDS=0.1) as scheduler:
        assert wait_until(lambda: {"send-mail", "extract-data"} <= set(scheduler.sends()),
                          WAIT), scheduler.log_tail()
        # beat logs "Sending due task" *before* it publishes: stopping it at once can lose the
        # message, so it keeps running until both tasks have run
        ran = lambda: {run.task for run in finished_runs(world)}  # noqa: E731
        assert wait_until(lambda: ran() >= {MAIL, EXTRACTOR}, WAIT), (ran(), scheduler.log_tail())


def test_on_after_configure_is_missed_once_something_has_read_the_configuration():
    # Why tasks.py connects add_periodic_task to on_after_finalize: a fresh app, configured by
    # reading a setting before the handlers are connected, as any earlier line could do.
    app = Celery("demo", set_as_current=False)
    assert app.conf.timezone is None or True             # reading app.conf configures the app

    @app.on_after_configure.connect
    def too_late(sender, **_kwargs):
        sender.add_periodic_task(1.0, sender.signature("tasks.add", (1, 2)), name="too-late")

    @app.on_after_finalize.connect
    def in_time(sender, **_kwargs):
        sender.add_periodic_task(1.0, sender.signature("tasks.add", (3, 4)), name="in-time")

    app.finalize()
    assert "in-time" in app.conf.beat_schedule
    assert "too-late" not in app.conf.beat_schedule


def test_a_cron_entry_fires_at_second_0_of_beats_clock_every_minute(world):
    # REPORT_CRON="* * * * *": every minute, at second 0 — on a clock 10× as fast from `epoch`
    # (a minute every 6 s), so two fires fit in a test. An interval entry would fire relative to
    # beat's start instead, at any second.
    epoch = time.time()
    with beat(world, MAIL_EVERY=3600, EXTRACT_EVERY=3600, REPORT_CRON="* * * * *",
              CRON_SPEEDUP=10, CRON_EPOCH=epoch):
        runs = wait_for_runs(world, "tasks.report", 2)
    fast = [epoch + (run.sent - epoch) * 10 for run in runs]          # when beat sent each
    seconds_past_the_minute = [moment % 60 for moment in fast]
    assert all(second < 5 for second in seconds_past_the_minute), seconds_past_the_minute
    minutes = [int(moment // 60) for moment in fast]
    assert minutes[1] - minutes[0] == 1, minutes                     # one fire per minute


# --- The flaw: a slow periodic task overlaps with itself -------------------------------------

def test_a_periodic_task_slower_than_its_interval_overlaps_itself_on_several_workers(world):
    with beat(world, MAIL_EVERY=3600, EXTRACT_EVERY=1, EXTRACT_SECONDS=2.5):
        time.sleep(6)
    runs = finished_runs(world, EXTRACTOR)
    overlapping = timeline.overlapping(runs)

    assert len(runs) >= 4
    assert timeline.count_overlaps(runs) >= 1
    assert len({run.worker for run in runs}) >= 2
    for late in overlapping:   # each overlap is a run that started while another still ran
        assert any(other.start < late.start < other.end for other in runs if other is not late)


def test_two_beats_send_every_run_twice(world):
    settings = {**QUIET, "MAIL_EVERY": 1}
    first, second = beat(world, "beat1", **settings), beat(world, "beat2", **settings)
    with first, second:
        time.sleep(6)
    # A beat stopped right after logging "Sending due task" may not have published it: -2.
    runs = wait_for_runs(world, MAIL, len(first.sends()) + len(second.sends()) - 2)
    sent_by = {name: sorted(run.sent for run in runs if run.origin.startswith(f"gen{pid}@"))
               for name, pid in (("beat1", first.pid), ("beat2", second.pid))}

    assert sum(map(len, sent_by.values())) == len(runs)            # no other sender
    # While both ran (the second one starts a little later), each run was sent by both:
    # every send of one beat has a send of the other less than one interval apart.
    both_from = max(times[0] for times in sent_by.values())
    both_until = min(times[-1] for times in sent_by.values())
    window = {name: [t for t in times if both_from <= t <= both_until]
              for name, times in sent_by.items()}
    assert min(map(len, window.values())) >= 3
    for this, other in (("beat1", "beat2"), ("beat2", "beat1")):
        for sent in window[this]:
            assert any(abs(sent - twin) < 1.0 for twin in sent_by[other])


# --- Remedies without a lock, and what they cost ---------------------------------------------

def test_without_expires_runs_wait_ever_longer_in_the_queue(world):
    # 3 one-process workers, a 2.5 s job every 0.5 s: they fall behind, runs wait in the queue
    # (and in each worker's prefetch buffer), and every late run still runs, however stale.
    with beat(world, MAIL_EVERY=3600, EXTRACT_EVERY=0.5, EXTRACT_SECONDS=2.5):
        time.sleep(6)
    world["redis"].delete("celery")
    runs = finished_runs(world, EXTRACTOR)
    waits = [run.waited for run in runs]
    assert max(waits) > 1.5
    assert max(waits[len(waits) // 2:]) > max(waits[:len(waits) // 2])   # ever longer
    assert all(run.outcome == "ran" for run in runs)


def test_expires_drops_runs_that_waited_too_long(world):
    with beat(world, MAIL_EVERY=3600, EXTRACT_EVERY=0.5, EXTRACT_SECONDS=2.5, EXTRACT_EXPIRES=1):
        time.sleep(6)
    time.sleep(2)  # messages still queued expire too; the workers drop them as they reach them
    world["redis"].delete("celery")
    runs = finished_runs(world, EXTRACTOR)
    ran = [run for run in runs if run.outcome == "ran"]
    expired = [run for run in runs if run.outcome == "expired"]

    assert len(expired) >= 2
    assert ran and max(run.waited for run in ran) < 1.0 + 0.5   # nothing stale was run
    assert timeline.count_overlaps(runs) >= 1   # expires shortens the queue, not the overlap


def test_one_solo_worker_on_a_dedicated_queue_never_overlaps_but_falls_behind(world, tmp_path):
    solo = Worker("solo", pool="solo", queues=["extract"], env={"REDIS_URL": world["url"]},
                  log_dir=tmp_path)
    with solo:
        with beat(world, MAIL_EVERY=3600, EXTRACT_EVERY=1, EXTRACT_SECONDS=2,
                  EXTRACT_QUEUE="extract"):
            time.sleep(6)
            backlog = world["redis"].llen("extract")
        world["redis"].delete("extract")
        runs = finished_runs(world, EXTRACTOR)     # before the solo worker stops

    assert len(runs) >= 2
    assert {run.worker for run in runs} == {solo.nodename}
    assert timeline.count_overlaps(runs) == 0
    assert backlog >= 1                             # the cost: runs queue up behind each other


# --- One active scheduler: celery-redbeat's lock ---------------------------------------------

def test_redbeat_keeps_one_active_beat_and_a_standby_takes_over_after_the_lock_expires(world):
    settings = dict(QUIET, MAIL_EVERY=1, REDBEAT_LOCK_TIMEOUT=3)
    first = Beat("redbeat1", scheduler="redbeat.RedBeatScheduler", max_interval=1,
                 env={"REDIS_URL": world["url"], **{k: str(v) for k, v in settings.items()}},
                 log_dir=world["logs"])
    second = Beat("redbeat2", scheduler="redbeat.RedBeatScheduler", max_interval=1,
                  env=first.env, log_dir=world["logs"])
    with first:
        assert wait_until(lambda: "Acquired lock" in first.log_text(), WAIT), first.log_tail()
        with second:
            time.sleep(4)
            assert len(first.sends()) >= 3
            assert second.sends() == []             # the standby waits for the lock
            first.stop(graceful=False)              # the active beat dies without releasing it
            died, killed_at = time.monotonic(), time.time()
            assert wait_until(second.sends, WAIT), second.log_tail()
            failover = time.monotonic() - died
            time.sleep(2)
    print(f"redbeat failover with lock timeout 3 s, max interval 1 s: {failover:.1f} s")
    # A beat stopped right after logging "Sending due task" may not have published it: -2.
    runs = wait_for_runs(world, MAIL, len(first.sends()) + len(second.sends()) - 2)
    by_first = [run for run in runs if run.origin.startswith(f"gen{first.pid}@")]
    by_second = [run for run in runs if run.origin.startswith(f"gen{second.pid}@")]
    assert len(by_first) + len(by_second) == len(runs)
    assert by_first and all(run.sent < killed_at for run in by_first)
    assert len(by_second) >= 2 and all(run.sent > killed_at for run in by_second)


def test_celery_beat_from_the_repository_root_keeps_its_schedule_in_a_git_ignored_file(world):
    # The README's command line, exactly: no --schedule, so beat uses tasks.py's default file.
    cli = CeleryProcess("beat-cli", ["beat", "--loglevel=info"], log_dir=world["logs"],
                        env={"REDIS_URL": world["url"], "MAIL_EVERY": "0.5",
                             "EXTRACT_EVERY": "0.5", "EXTRACT_SECONDS": "0.1"})
    cli.ready_pattern = Beat.ready_pattern
    existed = set(REPO_ROOT.glob("celerybeat-schedule*"))   # a reader's own: left alone
    created = []
    try:
        with cli:
            assert wait_until(lambda: {"send-mail", "extract-data"} <= set(
                re.findall(r"Sending due task (\S+) ", cli.log_text())), WAIT), cli.log_tail()
        created = sorted(REPO_ROOT.glob("celerybeat-schedule*"))
        assert created
        ignored = subprocess.run(["git", "check-ignore", *map(str, created)], cwd=REPO_ROOT,
                                 capture_output=True, text=True)
        assert ignored.returncode == 0 and len(ignored.stdout.splitlines()) == len(created)
    finally:
        for path in set(REPO_ROOT.glob("celerybeat-schedule*")) - existed:
            path.unlink(missing_ok=True)
