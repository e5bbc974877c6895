"""Run a lesson beside a user's Redis, and check that it left every key of theirs alone.

A laptop often runs Redis on the default port, full of someone's data. With REDIS_URL unset, the
notebooks, `make demo` and the figure scripts must start a private server and never write to that
one. To check it for real, the run happens in a network namespace of its own (`unshare --net`,
which needs root), where 127.0.0.1:6379 is a Redis seeded with foreign data — a queue named
`celery` like ours, a lock, a hash, a result — and every key is compared, byte for byte, after.

    report = run_beside_a_users_redis(commands={"demo": [sys.executable, "-m", "labkit.demo"]})
    report = run_beside_a_users_redis(notebook="02_beat_overlap.ipynb", save_to=path)

Without root, unshare or ip, `CAN_RUN` is False and callers skip (or run without the check).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import redis

REPO_ROOT = Path(__file__).resolve().parent.parent

CAN_RUN = bool(hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("unshare")
               and shutil.which("ip"))
WHY_NOT = "needs root, unshare and ip to run a Redis of its own on port 6379"

FOREIGN_MESSAGE = json.dumps({"body": "W1tdLCB7fSwge31d", "content-type": "application/json",
                              "headers": {"task": "billing.charge", "id": "42"}, "properties": {}})


def seed_foreign_data(client: redis.Redis) -> dict[bytes, bytes]:
    """A real application's data: its queue (named `celery`, like ours), a lock, a hash, a result
    of its own; returns every key's DUMP, to compare afterwards."""
    client.rpush("celery", FOREIGN_MESSAGE, "not even json")
    client.set("lock:outbox", "someone else's lock")
    client.hset("users:1", mapping={"name": "Ada"})
    client.set("celery-task-meta-42", json.dumps({"status": "SUCCESS", "result": 1}))
    return {key: client.dump(key) for key in client.scan_iter()}


# Runs inside the namespace; its last line of output is the report, as JSON.
INSIDE = r"""
import json, os, subprocess, sys, traceback
import redis
sys.path.insert(0, os.path.join(os.environ["REPO"], "tests"))
from users_redis import seed_foreign_data
from labkit import RedisServer

job = json.loads(os.environ["USERS_REDIS_JOB"])
os.environ.pop("REDIS_URL", None)            # the lessons' default: no REDIS_URL at all
report = {"codes": {}, "errors": {}, "outputs": {}, "changed": None}
with RedisServer(port=6379) as users_redis:
    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    before = seed_foreign_data(client)
    for name, command in job["commands"].items():
        done = subprocess.run(command, cwd=os.environ["REPO"], timeout=job["timeout"],
                              capture_output=True, text=True)
        report["codes"][name] = done.returncode
        report["outputs"][name] = done.stdout[-3000:]
        if done.returncode:
            report["errors"][name] = done.stderr[-6000:]
    if job["notebook"]:
        import nbclient, nbformat
        path = os.path.join(os.environ["REPO"], "notebooks", job["notebook"])
        notebook = nbformat.read(path, as_version=4)
        try:
            nbclient.NotebookClient(notebook, timeout=job["timeout"], kernel_name="python3",
                                    resources={"metadata": {"path": os.path.dirname(path)}}
                                    ).execute()
            report["codes"]["notebook"] = 0
        except Exception as error:   # the cell's error, reported to the test
            report["codes"]["notebook"] = 1
            report["errors"]["notebook"] = str(error)[-3000:]
        nbformat.write(notebook, job["save_to"])
    report["changed"] = sorted(key.decode() for key in set(before) | set(client.scan_iter())
                               if client.dump(key) != before.get(key))
print(json.dumps(report))
"""


def run_beside_a_users_redis(commands: dict[str, list[str]] | None = None,
                             notebook: str | None = None, save_to: Path | None = None,
                             timeout: float = 150) -> dict:
    """Run `commands` (name → argv, from the repository's root) and/or execute `notebook` in a
    fresh namespace beside a user's Redis on 6379; returns {"codes": {name: exit code},
    "errors": {name: stderr or the cell's error}, "outputs": {name: stdout},
    "changed": [keys not as they were]}. The
    executed notebook is written to `save_to`. `timeout`: per command, and per notebook cell."""
    job = {"commands": commands or {}, "notebook": notebook,
           "save_to": str(save_to) if save_to else None, "timeout": timeout}
    runs = len(job["commands"]) + (1 if notebook else 0)
    done = subprocess.run(
        ["unshare", "--net", "sh", "-c", f"ip link set lo up && exec {sys.executable} -"],
        input=INSIDE, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout * runs + 60,
        env={**os.environ, "REPO": str(REPO_ROOT), "USERS_REDIS_JOB": json.dumps(job)})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])
