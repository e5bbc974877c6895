"""Lesson 04: FFT tasks that report progress, as a poller and an event monitor see them."""
import time
import uuid

import pytest

import tasks
from conftest import wait_until
from labkit.observe import EventLog, percent_of, poll_progress
from scenes.lesson_04 import update_cost
from tasklib.progress import Progress, cancel_key

WAIT = 60  # seconds: every wait has a limit; generous, the machine is shared
TONES = [[440.0, 1.0], [1000.0, 0.5], [2500.0, 0.8], [3210.5, 0.3]]


def progress_states(trace_points):
    return [(state, percent) for _, state, percent in trace_points if percent is not None]


def test_the_progress_a_poller_sees_never_decreases_and_ends_at_100_with_success(workers):
    result = tasks.fft_random.delay(30_000, interval=0.05)
    points = poll_progress([result], timeout=WAIT, every=0.02)[result.id]
    seen = progress_states(points)
    percents = [percent for _, percent in seen]
    assert percents == sorted(percents), "progress went backwards"
    assert seen[-1] == ("SUCCESS", 100.0)
    assert any(state == "PROGRESS" and 0 < percent < 100 for state, percent in seen)
    outcome = result.get(timeout=WAIT)
    assert outcome["rounds"] == 30_000 and abs(outcome["mean_power"] - 1.0) < 0.01  # Parseval


def test_progress_meta_says_current_total_and_percent(workers):
    result = tasks.fft_random.delay(20_000, interval=0.05)
    metas, deadline = [], time.monotonic() + WAIT
    while not result.ready() and time.monotonic() < deadline:
        meta = result.backend.get_task_meta(result.id)   # state and info in one read
        if meta["status"] == "PROGRESS":
            metas.append(meta["result"])
        time.sleep(0.01)
    result.get(timeout=WAIT)
    assert metas, "never saw a PROGRESS state"
    for meta in metas:
        assert set(meta) == {"current", "total", "percent"} and meta["total"] == 20_000
        assert meta["percent"] == round(100 * meta["current"] / 20_000, 2)


def test_updates_are_throttled_by_the_clock_not_by_the_loop(workers):
    throttled = tasks.fft_random.delay(20_000, interval=0.2).get(timeout=WAIT)
    # At most one update per interval, plus the first and the final one, however fast the loop.
    assert throttled["updates"] <= throttled["seconds"] / 0.2 + 2
    every_round = tasks.fft_random.delay(300, interval=0).get(timeout=WAIT)
    assert every_round["updates"] == 300   # the unthrottled pitfall: one update per round


def test_the_spectrum_task_finds_every_planted_tone_within_one_bin(workers):
    outcome = tasks.spectrum.delay(TONES, frames=100, seed=7).get(timeout=WAIT)
    found = [frequency for frequency, _ in outcome["peaks"]]
    assert len(found) == len(TONES)
    for frequency, amplitude in TONES:
        nearest = min(found, key=lambda f: abs(f - frequency))
        assert abs(nearest - frequency) <= outcome["bin_width"], (frequency, found)
    magnitudes = dict(map(tuple, outcome["peaks"]))
    assert max(magnitudes, key=magnitudes.get) == pytest.approx(440, abs=outcome["bin_width"])


def test_the_spectrum_task_can_return_the_whole_spectrum(workers):
    outcome = tasks.spectrum.delay([1000], frames=5, frame_size=256, return_spectrum=True,
                                   seed=1).get(timeout=WAIT)
    assert len(outcome["frequencies"]) == len(outcome["magnitudes"]) == 129
    assert outcome["frequencies"][-1] == 4000.0   # Nyquist: sample rate / 2


@pytest.mark.parametrize("task, args, kwargs, message", [
    (tasks.fft_random, [0], {}, "n must be between 1 and 10,000,000 FFT rounds, got 0"),
    (tasks.fft_random, [-5], {}, "n must be between 1 and 10,000,000 FFT rounds, got -5"),
    (tasks.fft_random, [2.5], {}, "n must be a whole number of FFT rounds, got 2.5"),
    (tasks.fft_random, ["100"], {}, "n must be a whole number of FFT rounds, got '100'"),
    (tasks.fft_random, [10**8], {}, "n must be between 1 and 10,000,000 FFT rounds"),
    (tasks.spectrum, [[-440]], {}, "tone -440 Hz is outside 0 < f < 4000 Hz"),
    (tasks.spectrum, [[5000]], {}, "tone 5000 Hz is outside 0 < f < 4000 Hz, the Nyquist"),
    (tasks.spectrum, [[440]], {"frames": 0}, "frames must be a whole number from 1"),
    (tasks.spectrum, [[[440, -1]]], {}, "amplitude of the 440 Hz tone must be a positive"),
    (tasks.spectrum, [[]], {}, "tones must be a non-empty list"),
], ids=["n=0", "n<0", "n=2.5", "n='100'", "n=1e8", "tone<0", "tone>nyquist", "frames=0",
        "amplitude<0", "no tones"])
def test_bad_input_fails_fast_in_the_task_with_a_clear_message(workers, task, args, kwargs,
                                                                message):
    result = task.apply_async(args, kwargs)
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        result.get(timeout=WAIT)
    assert result.state == "FAILURE"


def test_custom_task_progress_events_reach_an_event_receiver(workers):
    # The session's workers run without -E: Task.send_event publishes anyway (its dispatcher is
    # always enabled); -E only switches on Celery's own task-started/succeeded events.
    with EventLog(tasks.app) as log:
        result = tasks.spectrum.delay([1000], frames=40, frame_size=1024, interval=0.0)
        result.get(timeout=WAIT)
        log.wait_for(lambda _: any(e["current"] == 40 for e in log.of("task-progress", result.id)),
                     timeout=WAIT)
    events = log.of("task-progress", result.id)
    assert [event["current"] for event in events] == list(range(1, 41))  # interval 0: all of them
    assert all(event["total"] == 40 and event["percent"] == round(100 * event["current"] / 40, 2)
               for event in events)
    assert events[0]["hostname"] in workers.names
    assert not log.of("task-succeeded", result.id), "without -E, no built-in task events"


def test_with_ignore_result_the_task_looks_stuck_in_progress(workers):
    # update_state writes PROGRESS whatever ignore_result says; only the final SUCCESS is skipped.
    with EventLog(tasks.app) as log:
        result = tasks.fft_random.apply_async([5000], ignore_result=True)
        log.wait_for(lambda _: any(e["percent"] == 100 for e in log.of("task-progress", result.id)),
                     timeout=WAIT)
    # The worker would store SUCCESS milliseconds after its last update; watch for a second.
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        assert percent_of(result) == ("PROGRESS", 100.0)   # and it never becomes SUCCESS
        time.sleep(0.05)


def test_an_unknown_id_and_a_task_nobody_takes_both_read_pending(workers, redis_client):
    queue = f"nobody-listens-{uuid.uuid4()}"
    nobody = tasks.fft_random.apply_async([10], queue=queue)
    made_up = tasks.app.AsyncResult(str(uuid.uuid4()))
    assert nobody.state == made_up.state == "PENDING"   # "unknown", not "queued"
    redis_client.delete(queue, f"_kombu.binding.{queue}")


def test_one_update_costs_two_round_trips_and_its_event_one_more(workers):
    with_event = update_cost(tasks.fft_random, str(uuid.uuid4()), updates=10)
    without = update_cost(tasks.fft_random, str(uuid.uuid4()), updates=10, events=False)
    # update_state: GET (never overwrite a SUCCESS), then SETEX + PUBLISH in one transaction.
    assert without["sends"] == [["GET"], ["MULTI", "SETEX", "PUBLISH", "EXEC"]]
    assert with_event["sends"] == without["sends"] + [["PUBLISH"]]   # the task-progress event
    assert (without["round_trips"], with_event["round_trips"]) == (2, 3)


def test_a_task_subscribes_to_its_cancel_channel_once_and_checks_it_with_no_round_trip(workers):
    cost = update_cost(tasks.fft_random, str(uuid.uuid4()), updates=10)
    # Every update checks for a cancel request, by reading what already reached the socket of
    # the subscription: the round trips of an update stay update_state's and the event's.
    assert cost["sends"] == [["GET"], ["MULTI", "SETEX", "PUBLISH", "EXEC"], ["PUBLISH"]]
    # Once per task, at the first update: subscribe, then read the key (a request sent before).
    first = [send for send in cost["first_sends"] if send[0] in ("SUBSCRIBE", "EXISTS")]
    assert first == [["SUBSCRIBE"], ["EXISTS"]]


def test_progress_closes_its_subscription_when_the_task_raises(workers, redis_client):
    task_id = str(uuid.uuid4())
    channel = cancel_key(task_id)
    tasks.fft_random.push_request(id=task_id, hostname="test")   # as if a worker ran task_id
    try:
        with pytest.raises(RuntimeError, match="the task's own bug"):
            with Progress(tasks.fft_random, total=10, interval=0) as progress:
                progress.advance(1)
                assert redis_client.pubsub_numsub(channel) == [(channel, 1)]
                raise RuntimeError("the task's own bug")
    finally:
        tasks.fft_random.pop_request()
    assert wait_until(lambda: redis_client.pubsub_numsub(channel) == [(channel, 0)], WAIT)
