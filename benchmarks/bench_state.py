"""What a state store saves a check made every 5 minutes: API calls, entries pulled and wall time per check.

For a service at each --rates requests a second (the traffic of benchmarks/bench_cloud.py: request logs,
echoes, "Request completed" lines, 0.5 % failures with a traceback, database reconnections), the fake Logging
API (tests/fake_logging_server.py) serves --hours of logs to the real google-cloud-logging client. Then
`prodguardian check` (the CLI, in this process) runs a cold check with an empty store and --checks warm checks
5 minutes apart, each beside the stateless check (`--no-state`) of the same window: calls, entries and bytes
pulled (the HTTP answers' bodies), wall time, and the store's size after the check. Pacing is off (the fake
answers at once): the calls are what the quota would be charged, the wall time is the client's and the
check's. The target: a warm check makes no more calls than its new entries need (1,000 a page), plus one,
and never re-reads the baseline.

Run: NO_PROXY=127.0.0.1,localhost python3 benchmarks/bench_state.py [--rates 1,10,100] [--baseline 1h]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.bench_cloud import END, build  # noqa: E402 - after the path set-up
from prodguardian import cloud  # noqa: E402
from prodguardian.cli import main as cli_main  # noqa: E402
from tests.fake_logging_server import FakeLoggingServer  # noqa: E402

EVERY = timedelta(minutes=5)
PAGE = 1000


def check(server: FakeLoggingServer, until: str, baseline: str, state: str | None) -> dict[str, Any]:
    """One `prodguardian check` of the hour before `until`, made then (the fake serves what was received by
    `until`): its calls, entries pulled and wall time."""
    server.reset()
    server.now(datetime.fromisoformat(until))
    args = ["check", "--service", "emergence-app", "--project", "bench-project", "--until", until]
    args += ["--baseline", baseline, "--format", "json", "--quiet", "--max-entries", "10000000"]
    args += ["--state", state] if state else ["--no-state"]
    out = io.StringIO()
    began = time.perf_counter()
    with contextlib.redirect_stdout(out):
        code = cli_main(args)
    wall = time.perf_counter() - began
    report = json.loads(out.getvalue())
    return {
        "code": code,
        "calls": len(server.calls),
        "entries": server.served,
        "bytes": server.served_bytes,
        "store": Path(state).stat().st_size if state else 0,
        "filter": server.requests[0]["filter"] if server.calls else "",
        "wall": wall,
        "from_state": (report["totals"].get("read") or {}).get("baseline_from_state_hours", 0.0),
        "status": report["status"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="1,10,100", help="requests a second, comma-separated")
    parser.add_argument("--baseline", default="1h", help="the checks' --baseline (24h needs 25 h of logs)")
    parser.add_argument("--checks", type=int, default=4, help="warm checks after the cold one")
    args = parser.parse_args()
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
    # The fake answers at once: count calls, do not wait for them (the setting the CLI reads).
    os.environ["PRODGUARDIAN_CALLS_PER_SECOND"] = "1e9"
    baseline_hours = float(args.baseline.rstrip("h"))
    hours = 1 + baseline_hours + (args.checks * EVERY) / timedelta(hours=1)
    print(f"Checks of a 1 h window, --baseline {args.baseline}, every 5 minutes (pacing off):")
    print()
    print(
        "| requests/s | check | calls | entries pulled | MB pulled | wall (s) | baseline from state "
        "| store (MB) | stateless calls | stateless entries | stateless MB | stateless wall (s) "
        "| new entries → their pages + 1 |"
    )
    print(
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        flush=True,
    )
    for rate in (int(r) for r in args.rates.split(",")):
        entries = build(rate, hours)
        server = FakeLoggingServer().start()
        server.add(entries)
        os.environ[cloud.EMULATOR_ENV] = server.host
        with tempfile.TemporaryDirectory() as folder:
            state = str(Path(folder) / "state.sqlite")
            first = END - args.checks * EVERY
            for n in range(args.checks + 1):
                until = (first + n * EVERY).strftime("%Y-%m-%dT%H:%M:%SZ")
                stored = check(server, until, args.baseline, state)
                stateless = check(server, until, args.baseline, None)
                assert stored["status"] == stateless["status"], (rate, until)
                # The entries no earlier check could read: those of the window and baseline received since.
                since = (first + (n - 1) * EVERY).strftime("%Y-%m-%dT%H:%M:%SZ")
                new_only = f'{stateless["filter"]}\nAND receiveTimestamp>"{since}"'
                stored["new"] = len(server.matching(new_only)) if n else None
                print_row(rate, "cold" if n == 0 else f"warm {n}", stored, stateless)
        server.stop()
        del entries


def print_row(rate: int, label: str, stored: dict[str, Any], stateless: dict[str, Any]) -> None:
    """One row of the table, as soon as it is measured (a 100 requests/s run takes minutes)."""
    floor = "" if stored["new"] is None else f"{stored['new']:,} → {math.ceil(stored['new'] / PAGE) + 1}"
    print(
        f"| {rate} | {label} | {stored['calls']} | {stored['entries']:,} | {stored['bytes'] / 1e6:.1f} |"
        f" {stored['wall']:.2f} | {stored['from_state']:g} h | {stored['store'] / 1e6:.1f} |"
        f" {stateless['calls']} | {stateless['entries']:,} | {stateless['bytes'] / 1e6:.1f} |"
        f" {stateless['wall']:.2f} | {floor} |",
        flush=True,
    )


if __name__ == "__main__":
    main()
