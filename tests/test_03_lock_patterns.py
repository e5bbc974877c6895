"""Lesson 03: the task patterns give the task body its lock (issue #16, item 8), and a message
redelivered after a crash is retried, not skipped as a success.

Run in a child Python with a Celery app of its own (broker: a fresh database of the session's
Redis), so that nothing of the lessons' plumbing is imported: locks/ must work copied out whole.
"""
import json
import os
import subprocess
import sys

from labkit import REPO_ROOT

STANDALONE = '''
import json, os, time
import redis
from celery import Celery
from celery.exceptions import Retry
from locks import Lock, StaleFenceError, patterns

url = os.environ["REDIS_URL"]
app = Celery("standalone", broker=url)
client = redis.Redis.from_url(url, decode_responses=True)
seen = {}

@app.task(bind=True, name="standalone.report")
@patterns.exclusive(lambda: client, "report", wait=5, ttl=5)
def report(self):
    lock = self.request.lock
    seen.update(name=lock.name, fence=lock.fence, lost=lock.lost.is_set())
    lock.fenced_write("report:latest", "from the task")
    return "written"

@app.task(bind=True, name="standalone.extract")
@patterns.single_instance(lambda: client, ttl=5)
def extract(self):
    return "ran"

first = report()
second = report()

# a crashed run's lease still holds the lock when its message comes back
crashed = Lock(client, "lock:standalone.extract", timeout=2)
crashed.acquire()
extract.push_request(id="redelivered-1", called_directly=False, is_eager=False, retries=0,
                     delivery_info={"redelivered": True})
try:
    extract.run()
    outcome = "ran or skipped"
except Retry as retry:
    outcome = {"retry_in": retry.when}
extract.pop_request()
extract.push_request(id="fresh-1", called_directly=False, is_eager=False, retries=0,
                     delivery_info={"redelivered": False})
fresh = extract.run()                                       # a new message: skipped, as before
extract.pop_request()
print(json.dumps({"first": first, "second": second, "seen": seen, "redelivered": outcome,
                  "fresh": fresh, "latest": client.get("report:latest")}))
'''


def test_the_task_body_reads_its_lock_from_self_request_and_a_redelivery_is_retried(
        fresh_db_url):
    done = subprocess.run([sys.executable, "-c", STANDALONE], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "REDIS_URL": fresh_db_url})
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["first"] == report["second"] == "written"
    assert report["seen"] == {"name": "lock:report", "fence": 2, "lost": False}
    assert report["latest"] == "from the task"
    assert 1.0 < report["redelivered"]["retry_in"] <= 2.2   # once the crashed run's lease ends
    assert report["fresh"] is None                          # skipped: the lock is held
