"""What bench/brokers.py, pools.py and tuning.py do once their arguments are checked.

    from common import run_and_report     # bench/ is on sys.path when a bench script runs
    run_and_report(measure, report, [json_path], *arguments_of_measure)
"""
from __future__ import annotations

import json
import os

from labkit.redis_server import RedisServer


def run_and_report(measure, report, json_paths, *args, **kwargs) -> None:
    """Start a private Redis and point REDIS_URL at it, `measure(*args, **kwargs)`, stop Redis
    (also on an error or Ctrl-C), print `report(result)`, write the result as JSON to each path.

    REDIS_URL is set before `measure` imports tasks.py, which reads it once: every worker and
    producer of the benchmark then uses the private server, never a user's Redis.
    """
    with RedisServer() as server:
        os.environ["REDIS_URL"] = server.url
        result = measure(*args, **kwargs)
    print(report(result))
    for path in json_paths:
        if path:
            path.write_text(json.dumps(result, indent=1) + "\n")
