"""The run timeline: every task run recorded once, in its own run, and drawn as a picture."""
from __future__ import annotations

import time

import pytest

import tasks
from labkit import plots, timeline
from labkit.timeline import Run

WAIT = 30  # seconds: every wait has a limit


def tasks_executed_by_workers(app) -> dict[str, int]:
    """Tasks run so far, by name, as the workers themselves count them (summed over workers)."""
    stats = app.control.inspect(timeout=3).stats() or {}
    totals: dict[str, int] = {}
    for worker_stats in stats.values():
        for name, count in worker_stats.get("total", {}).items():
            totals[name] = totals.get(name, 0) + count
    return totals


def test_every_task_run_is_recorded_exactly_once(workers):
    before = tasks_executed_by_workers(tasks.app)
    run_id = timeline.start_run("exactly once")
    results = [tasks.add.delay(n, n) for n in range(20)]
    results += [tasks.data_extractor.delay(0.2) for _ in range(6)]
    for result in results:
        result.get(timeout=WAIT)
    runs = timeline.wait_until_finished(run_id, timeout=WAIT)

    after = tasks_executed_by_workers(tasks.app)
    executed = {name: after[name] - before.get(name, 0) for name in after
                if after[name] != before.get(name, 0)}
    recorded = {name: sum(1 for run in runs if run.task == name) for name in executed}
    assert executed == {"tasks.add": 20, "tasks.data_extractor": 6}
    assert recorded == executed
    assert sorted(run.task_id for run in runs) == sorted(result.id for result in results)


def test_a_run_records_worker_pid_times_and_outcome(workers):
    run_id = timeline.start_run("fields")
    ok = tasks.data_extractor.delay(0.3)
    failing = tasks.divide.delay(1, 0)
    ok.get(timeout=WAIT)
    failing.get(timeout=WAIT, propagate=False)
    runs = {run.task_id: run for run in timeline.wait_until_finished(run_id, timeout=WAIT)}

    extractor = runs[ok.id]
    assert extractor.task == "tasks.data_extractor"
    assert extractor.worker == ok.result["worker"] and extractor.worker in workers.names
    assert extractor.pid > 0
    assert extractor.outcome == "ran"
    assert 0.3 <= extractor.duration < 10
    assert 0 <= extractor.waited < 10          # the send time travels in the message headers
    assert runs[failing.id].outcome == "failed"


def test_runs_of_one_run_id_do_not_mix_with_another(workers):
    first = timeline.start_run("first")
    for result in [tasks.add.delay(1, 1) for _ in range(3)]:
        result.get(timeout=WAIT)
    second = timeline.start_run("second")
    for result in [tasks.add.delay(2, 2) for _ in range(2)]:
        result.get(timeout=WAIT)

    assert len(timeline.wait_until_finished(first, timeout=WAIT)) == 3
    assert len(timeline.wait_until_finished(second, timeout=WAIT)) == 2
    assert timeline.current_run() == second


def test_a_task_sent_under_one_run_stays_in_it_when_another_run_starts(workers):
    # The run id is stamped on the message when it is sent, not looked up when it starts.
    first = timeline.start_run("sent before")
    slow = tasks.data_extractor.delay(1.0)
    time.sleep(0.2)
    second = timeline.start_run("started after")
    slow.get(timeout=WAIT)
    assert [run.task_id for run in timeline.wait_until_finished(first, timeout=WAIT)] == [slow.id]
    assert timeline.runs(second) == []


def run(task, start, end, worker="w1", outcome="ran", key=None):
    return Run(run_id="r", task=task, task_id=key or f"{task}-{start}", worker=worker, pid=1,
               start=start, end=end, outcome=outcome, key=key or f"{task}-{start}")


def test_runs_that_report_their_locked_work_are_compared_by_it():
    # One run's end is recorded after the result is stored, a few ms after its lock was freed
    # and the next run took it: the runs touch, the locked work does not.
    first, second = run("job", 0.0, 2.010, worker="w1"), run("job", 2.005, 4.0, worker="w2")
    assert timeline.count_overlaps([first, second]) == 1
    first.work, second.work = [0.001, 2.000], [2.006, 3.990]
    assert timeline.count_overlaps([first, second]) == 0
    second.work = [1.5, 3.990]  # a second holder while the first still held: counted
    assert timeline.count_overlaps([first, second]) == 1


def test_overlaps_count_runs_that_start_while_the_same_task_still_runs():
    runs = [
        run("extract", 0, 5), run("extract", 2, 7, worker="w2"),   # overlaps the first
        run("extract", 6, 8, worker="w3"),                         # overlaps the second
        run("extract", 9, 10),                                     # alone
        run("mail", 1, 9, worker="w4"), run("mail", 9, 10),        # back to back: no overlap
        run("extract", 9.5, 9.6, worker="w2", outcome="skipped"),  # did no work: not counted
    ]
    assert timeline.count_overlaps(runs) == 2
    assert timeline.count_overlaps(runs, task="mail") == 0
    assert [r.start for r in timeline.overlapping(runs, task="extract")] == [2, 6]


def test_an_unfinished_run_counts_as_still_running():
    runs = [run("extract", 0, None), run("extract", 100, 101, worker="w2")]
    assert timeline.count_overlaps(runs) == 1


def test_set_outcome_outside_a_task_is_an_error():
    with pytest.raises(RuntimeError, match="inside a running task"):
        timeline.set_outcome("skipped")
    with pytest.raises(ValueError, match="unknown outcome"):
        timeline.set_outcome("maybe")


def test_plot_timeline_writes_a_non_empty_png(workers, tmp_path):
    run_id = timeline.start_run("plot")
    for result in [tasks.data_extractor.delay(0.5) for _ in range(4)]:
        result.get(timeout=WAIT)
    runs = timeline.wait_until_finished(run_id, timeout=WAIT)
    path = tmp_path / "timeline.png"

    figure = plots.plot_timeline(runs, path=path, title="four runs", task="tasks.data_extractor")

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 10_000
    assert "overlapping runs of data_extractor" in figure.axes[0].get_title()
    legend = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert "overlaps a run of the same task" in legend  # 4 runs, 3 workers: some overlap
    import matplotlib.pyplot as plt
    plt.close(figure)

    side_by_side = plots.plot_timeline(runs, title="four runs", mark_overlaps=False)
    assert side_by_side.axes[0].get_title() == "four runs"  # lesson 01: parallel is the point
    legend = [text.get_text() for text in side_by_side.axes[0].get_legend().get_texts()]
    assert "overlaps a run of the same task" not in legend
    plt.close(side_by_side)
