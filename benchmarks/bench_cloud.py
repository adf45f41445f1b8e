"""How long CloudSource takes to read one hour of a busy Cloud Run service, and what the filter saves.

Builds an hour of a service at --rps requests a second (each request: its request log and uvicorn's
stdout echo; every 10th request an INFO "Request completed" JSON line; 0.5 % of requests fail with an ERROR
line and a 10-line stderr traceback; periodic WARNING / INFO database lines), serves it from
tests/fake_logging_server.py and reads it through the real google.cloud.logging client:

- pacing disabled: what the client side costs (the fake answers at once; the real API takes longer a page);
- realistic pacing (1 call/s after a burst), on a virtual clock so the run does not really wait: wall time is
  then the measured time plus the waits the pacer asked for;
- both transports (HTTP/JSON, the default, and gRPC), each read twice with the first read warming the fake;
- the pushdown: entries stored vs served vs what a filter without severity clauses would have pulled.

Run: NO_PROXY=127.0.0.1,localhost /tmp/venv/bin/python benchmarks/bench_cloud.py [--rps 100] [--quick]
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from prodguardian import cloud  # noqa: E402 - after the path set-up
from tests.fake_logging_server import DB_TRACEBACK, CloudRunService, FakeLoggingServer  # noqa: E402

END = datetime(2025, 10, 11, 12, 0, tzinfo=UTC)
REGEXES = ("Database reconnected successfully\\.", "^Starting new instance\\.")


def build(rps: int, hours: float) -> list[dict[str, Any]]:
    app = CloudRunService(project="bench-project", seed=7)
    start = END - timedelta(hours=hours)
    entries: list[dict[str, Any]] = []
    n = 0
    for second in range(int(hours * 3600)):
        for k in range(rps):
            at = start + timedelta(seconds=second, microseconds=k * (1_000_000 // rps) + 17)
            n += 1
            failed = n % 200 == 0  # 0.5 %
            path = "/api/threads" if k % 3 else "/api/messages"
            status = 500 if failed else 200
            entries.append(app.request(at, path, status=status, latency=0.04 + (n % 97) / 1000))
            entries.append(app.access_line(at, path, status))
            if n % 10 == 0:
                entries.append(app.json_line(at, "Request completed", path=path, status_code=status))
            if failed:
                entries.append(app.json_line(at, "Unhandled error in request", severity="ERROR", path=path))
                entries += [
                    app.stderr(at + timedelta(microseconds=i), line) for i, line in enumerate(DB_TRACEBACK)
                ]
        if second % 30 == 0:
            at = start + timedelta(seconds=second, milliseconds=500)
            entries.append(
                app.json_line(
                    at, "Database connection lost. Attempting automatic reconnection...", severity="WARNING"
                )
            )
            entries.append(
                app.json_line(at + timedelta(milliseconds=20), "Database reconnected successfully.")
            )
    return entries


class VirtualClock:
    """The real monotonic clock plus every wait the reader asked for, without really waiting."""

    def __init__(self) -> None:
        self.waited = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.waited

    def sleep(self, seconds: float) -> None:
        self.waited += seconds


def read(query: cloud.CloudQuery, paced: bool, **settings: Any) -> dict[str, Any]:
    """One read of the query, with these settings changed (paced or not)."""
    clock = VirtualClock()
    pace = cloud.CALLS_PER_SECOND if paced else math.inf
    query = replace(query, settings=replace(query.settings, calls_per_second=pace, **settings))
    source = cloud.CloudSource(query, sleep=clock.sleep, clock=clock)
    gc.collect()
    began = time.perf_counter()
    count = sum(1 for _ in source)
    measured = time.perf_counter() - began
    stats = source.stats
    return {
        "entries": count,
        "calls": stats.calls,
        "pages": stats.pages,
        "truncated": stats.truncated,
        "measured": measured,
        "waited": clock.waited,
        "wall": measured + clock.waited,
    }


def line(label: str, r: dict[str, Any]) -> str:
    per_page = r["measured"] / max(r["pages"], 1) * 1000
    text = (
        f"  {label:<34} {r['calls']:>5} calls  {r['entries']:>9,} entries  "
        f"measured {r['measured']:7.2f} s ({per_page:5.1f} ms/page)"
    )
    if r["waited"]:
        text += f"  + paced waits {r['waited']:7.1f} s = wall {r['wall']:7.1f} s"
    if r["truncated"]:
        text += "  TRUNCATED"
    return text


def timed(label: str, action: Callable[[], Any]) -> Any:
    began = time.perf_counter()
    result = action()
    print(f"  {label}: {time.perf_counter() - began:.1f} s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rps", type=int, default=100)
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--quick", action="store_true", help="10 requests/s, for a smoke run")
    parser.add_argument("--no-grpc", action="store_true")
    args = parser.parse_args()
    rps = 10 if args.quick else args.rps
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")

    print(f"Building {args.hours:g} h of one service at {rps} requests/s ...")
    entries = timed("generated", lambda: build(rps, args.hours))
    server = FakeLoggingServer().start()
    timed("stored in the fake", lambda: server.add(entries))
    query = cloud.CloudQuery(
        start=END - timedelta(hours=args.hours),
        end=END,
        service="emergence-app",
        message_regexes=REGEXES,
        settings=cloud.CloudLogging(project="bench-project", emulator=server.host, max_entries=10_000_000),
    )
    source = cloud.CloudSource(query)
    body = {"resourceNames": ["projects/bench-project"], "filter": source.filter, "orderBy": cloud.ORDER_BY}
    coarse = "\nAND ".join(source.filter.split("\nAND ")[:4])  # the same window without severity clauses
    timed("fake evaluated the filter (once, cached)", lambda: server.prepare(body))
    served = len(server.matching(source.filter))
    pulled_coarse = len(server.matching(coarse))

    print()
    print("Pushdown")
    print(f"  entries stored for the hour          {server.size:>10,}")
    print(f"  served by the built filter           {served:>10,}")
    print(f"  a filter without severity clauses    {pulled_coarse:>10,}")
    print(
        f"  avoided by the pushdown              {server.size - served:>10,} ({1 - served / server.size:.0%})"
    )

    results: dict[str, dict[str, Any]] = {}
    print()
    print("HTTP/JSON (default transport)")
    results["http warm-up"] = read(query, paced=False)
    print(line("pacing disabled, first read", results["http warm-up"]))
    results["http"] = read(query, paced=False)
    print(line("pacing disabled", results["http"]))
    results["http paced"] = read(query, paced=True)
    print(line("realistic pacing (1 call/s)", results["http paced"]))
    results["http default max"] = read(query, paced=True, max_entries=200_000)
    print(line("realistic pacing, max_entries=200k", results["http default max"]))

    if not args.no_grpc:
        grpc = {"emulator": server.start_grpc(), "transport": "grpc"}
        print()
        print("gRPC")
        results["grpc warm-up"] = read(query, paced=False, **grpc)
        print(line("pacing disabled, first read (fake)", results["grpc warm-up"]))
        results["grpc"] = read(query, paced=False, **grpc)
        print(line("pacing disabled", results["grpc"]))
        ratio = results["grpc"]["measured"] / results["http"]["measured"]
        print(f"  gRPC / HTTP client time per read: {ratio:.1f}x")

    http = results["http paced"]
    per_hour_calls = http["calls"] / args.hours
    print()
    print("Extrapolation at 1 call/s (the per-project quota is ~60 calls/min, shared by every reader)")
    for hours in (1, 25):
        calls = per_hour_calls * hours
        print(f"  {hours:>2} h window: ~{calls:,.0f} calls, ~{calls / 60:,.1f} min")
    server.stop()


if __name__ == "__main__":
    main()
