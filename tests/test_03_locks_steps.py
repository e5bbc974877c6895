"""Lesson 03, steps a → f: each naive lock's flaw happens, every time, in real processes.

The interleaving is forced (a barrier between read and write, a SIGSTOP past the lease, a SIGKILL
while holding), so each test shows the flaw itself, not a flaw that shows up on a lucky run.
"""
import multiprocessing

import pytest

from locks import Lock
from scenes import lesson_03_steps as steps
from scenes.lesson_03_steps import most_holders_at_once


@pytest.fixture(autouse=True)
def every_child_is_reaped():
    yield
    assert multiprocessing.active_children() == []


def test_a_without_a_lock_8_processes_times_500_increments_give_only_500(redis_url):
    # every round all 8 read the same value before any writes: 8 increments count as 1
    assert steps.show_a(redis_url, processes=8, times=500) == 500


def test_b_check_then_set_lets_two_processes_hold_the_lock_at_once(redis_url):
    events = steps.show_b(redis_url)
    assert sorted(e["who"] for e in events if e["what"] == "acquired") == ["A", "B"]
    assert most_holders_at_once(events) == 2


def test_c_setnx_without_expiry_a_killed_holder_blocks_the_next_one(redis_url):
    story = steps.show_c(redis_url, wait=1.5)
    assert story.ttl_left_after_crash == -1  # no expiry: the key stays until someone deletes it
    assert story.acquired_after_crash == []
    assert [e["what"] for e in story.events if e["who"] == "B"] == ["asks", "gave up"]


def test_d_a_lease_frees_the_lock_of_a_killed_holder(redis_url):
    story = steps.show_d_crash(redis_url, ttl=0.5)
    assert 0 < story.ttl_left_after_crash <= 500
    assert story.acquired_after_crash == ["B"]


def test_d_plain_del_release_by_a_paused_holder_deletes_the_next_holders_lock(redis_url):
    story = steps.show_d(redis_url)
    assert story.what("A", "released")[0]["result"] == "ok"     # A deleted B's key …
    assert story.what("C", "acquired")                           # … so C got the lock
    c_acquired = story.what("C", "acquired")[0]["t"]
    assert story.what("B", "released")[0]["t"] > c_acquired      # while B still held it
    assert story.what("B", "released")[0]["result"] == "refused: not the owner"  # C deleted it


def test_e_token_release_refuses_the_stale_release_but_not_the_stale_write(redis_url):
    story = steps.show_e(redis_url)
    assert story.what("A", "released")[0]["result"] == "refused: not the owner"
    assert story.what("C", "refused") and not story.what("C", "acquired")
    assert story.what("B", "released")[0]["result"] == "ok"
    # the remaining flaw: A's lease ended while it was paused, and its stale write lands
    assert story.what("A", "wrote") and story.resource == "A's report #1"


def test_f_fencing_refuses_every_write_of_a_holder_paused_past_its_lease(redis_url):
    story = steps.show_f(redis_url, writes=5)
    fences = {e["who"]: e["fence"] for e in story.events if e["what"] == "acquired"}
    assert fences["B"] > fences["A"]
    assert story.what("A", "wrote") == []                        # 0 stale writes accepted
    assert len(story.what("A", "write refused")) == 5
    assert story.resource == "B's report"
    assert story.what("C", "refused")


def test_a_with_locks_lock_eight_processes_times_500_increments_give_4000(each_server_url):
    assert steps.show_a_fixed(each_server_url, Lock, processes=8, times=500) == 4000
