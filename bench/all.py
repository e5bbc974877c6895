"""Every benchmark of the repository, one after another, and one markdown table of the ratios each
measured side by side (`make bench`).

Usage::

    $ python bench/all.py            # about fifteen minutes: locks, progress, brokers, pools, tuning
    $ python bench/all.py --short    # each in its short mode, about a minute (the test's mode)

Each benchmark still runs alone (`python bench/NAME.py`) and prints its own, longer report; this
script runs each as its own process, keeps its report in .run/bench/NAME.txt, and gathers its
ratios. Only ratios are gathered: two things measured in the same run on the same machine, so
that a loaded machine moves both. The header names the machine and the versions.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
REPORTS = ROOT / ".run/bench"
SHORT_ARGS = {
    "locks": ["--cycles", "20", "--rounds", "2", "--handoffs", "0", "--contention-seconds", "0"],
    "progress_fft": ["--rounds", "3000", "--pairs", "1"],
    "brokers": ["--short"], "pools": ["--short"], "tuning": ["--short"],
}
TIMEOUT = 1800


def run(name: str, short: bool, json_path: Path | None) -> str:
    args = [sys.executable, str(ROOT / "bench" / f"{name}.py")]
    args += SHORT_ARGS[name] if short else []
    args += ["--json", str(json_path)] if json_path else []
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT)
    REPORTS.mkdir(parents=True, exist_ok=True)
    (REPORTS / f"{name}.txt").write_text(done.stdout + done.stderr)
    if done.returncode:
        raise SystemExit(f"error: bench/{name}.py exited {done.returncode}: "
                         f"{(done.stderr.strip().splitlines() or ['?'])[-1]}")
    return done.stdout


def lock_rows(text: str) -> list[list[str]]:
    rows = []
    for label in ("locks.Lock", "locks.Lock fair=True", "redis-py Lock", "raw again (control)"):
        found = re.search(rf"^{re.escape(label)}\s+[\d,]+\s+([\d.]+)\s*$", text, re.M)
        if found:
            rows.append(["locks", f"{label}, acquire+release", f"{found.group(1)} × raw SET NX PX + DEL"])
    queueing = {}  # label -> (handoff p50, acquisitions/s, wait p99), from the contention table
    for label in ("locks.Lock fair=True", "python-redis-lock"):
        found = re.search(rf"^{re.escape(label)}\s+([\d.]+) ms\s+[\d.]+ ms\s+([\d,]+)\s+[\d.]+ ms"
                          rf"\s+([\d.]+) ms", text, re.M)
        if found:
            queueing[label] = [float(value.replace(",", "")) for value in found.groups()]
    if len(queueing) == 2:
        ours, theirs = queueing["locks.Lock fair=True"], queueing["python-redis-lock"]
        for index, what in enumerate(("handoff p50", "acquisitions/s under contention",
                                      "wait p99 under contention")):
            rows.append(["locks", f"locks.Lock fair=True, {what}",
                         f"{ours[index] / theirs[index]:.2f} × python-redis-lock's"])
    return rows


def progress_rows(text: str) -> list[list[str]]:
    rows = []
    found = re.search(r"overhead, side by side: .*?([+-][\d.]+) % median", text)
    if found:
        ratio = 1 + float(found.group(1)) / 100
        rows.append(["progress", "fft_random run time, PROGRESS every 0.2 s", f"{ratio:.3f} × without (median of pairs)"])
    found = re.search(r"time spent reporting, as the task timed it: ([\d.]+) %", text)
    if found:
        rows.append(["progress", "time spent reporting (the task's own clock)",
                     f"{found.group(1)} % of the loop"])
    return rows


def json_rows(name: str, result: dict) -> list[list[str]]:
    if name == "brokers":
        if "ratios" not in result:
            return [["brokers", "RabbitMQ ÷ Redis", "skipped: no RabbitMQ at AMQP_URL"]]
        return [["brokers", f"RabbitMQ ÷ Redis, {what}", f"{value:.2f}"]
                for what, value in result["ratios"].items()]
    if name == "pools":
        return [["pools", f"{label.split()[0].upper()}, {label.split()[1]} ×{label.split()[2]}",
                 f"{value:.2f} × solo"] for label, value in result["ratios"].items()
                if "solo" not in label] + one_slot_rows(result)
    return [["tuning", label, f"{result['ratios'][label]:.2f} × defaults"]
            for label in result["steps"][1:] + result["timeline"]]


def one_slot_rows(result: dict) -> list[list[str]]:
    per_task = result.get("one_slot_seconds_per_task") or {}
    rows = []
    for pool in ("gevent", "eventlet"):
        one, many = (per_task.get(f"{pool} 1, prefetch multiplier {n}") for n in (1, 32))
        if one and many:
            rows.append(["pools", f"{pool} ×1, time per io_wait(0.1), prefetch multiplier 1",
                         f"{one / many:.1f} × with multiplier 32"])
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="each benchmark's short mode")
    args = parser.parse_args(argv)
    rows, machine = [], None
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as folder:
        for name in ("locks", "progress_fft", "brokers", "pools", "tuning"):
            print(f"running bench/{name}.py …", file=sys.stderr, flush=True)
            json_path = Path(folder) / f"{name}.json" if name in ("brokers", "pools", "tuning") else None
            text = run(name, args.short, json_path)
            if name == "locks":
                rows += lock_rows(text)
            elif name == "progress_fft":
                rows += progress_rows(text)
            else:
                result = json.loads(json_path.read_text())
                machine = result["machine"] if name == "brokers" else machine
                rows += json_rows(name, result)
    from scenes.lesson_07_runs import describe, table
    mode = "short mode (numbers say little)" if args.short else "full"
    print(f"## make bench — {mode}, {time.monotonic() - started:.0f} s\n")
    print(describe(machine) + "\n")
    print(table(["benchmark", "measured side by side", "ratio"], rows))
    print(f"\nEach benchmark's full report: {REPORTS.relative_to(ROOT)}/NAME.txt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
