"""How big the state store gets, and how fast it answers, for 35 days of one service.

Fills a fresh store (prodguardian.state) with 35 days of one service at each request rate: 3 revisions in
turn (each rollout overlapping the previous revision for 10 minutes), WebSocket sessions, a daily traffic
cycle, a latency sketch of the successful requests every minute (lognormal, median 120 ms), and 20 rules
firing sparsely (each in 0.05% to 5% of the minutes; three of them unknown-error rules with several groups),
with error groups, revisions and samples. It writes one hour per `replace` (a backfill's step), then
measures a warm check's write (one 5-minute replace, median of 50), opening the file (identity and
PRAGMA quick_check), the reads a check makes, and a prune with nothing to remove. Prints one row per rate.

    python3 benchmarks/bench_state_size.py                  # 1, 10 and 100 requests/s, 35 days
    python3 benchmarks/bench_state_size.py --rates 10 --days 7 --keep /tmp/state.sqlite
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from prodguardian.sketch import LatencySketch  # noqa: E402 - after the path set-up
from prodguardian.state import (  # noqa: E402
    ERROR_GROUP_COLUMNS,
    MINUTE_COLUMNS,
    REVISION_COLUMNS,
    RULE_MINUTE_COLUMNS,
    SAMPLE_COLUMNS,
    Cursor,
    MinuteFacts,
    StateStore,
)

SERVICE = "emergence-app"
REVISIONS = ("emergence-app-00296-abc", "emergence-app-00297-6pr", "emergence-app-00298-xyz")
RULES = 20
FALLBACK_RULES = 3  # rules whose failures fall in groups (unknown errors)
GROUPS_PER_FALLBACK = 6
END = datetime(2025, 11, 15, tzinfo=UTC)


def minute_of(moment: datetime) -> int:
    return int(moment.timestamp()) // 60


class Service:
    """Random but reproducible traffic of one service, minute by minute."""

    def __init__(self, rate: float, days: int, seed: int = 11) -> None:
        self.rng = np.random.default_rng(seed)
        self.rate = rate
        self.first = minute_of(END - timedelta(days=days))
        self.stop = minute_of(END)
        span = self.stop - self.first
        self.rollouts = [self.first + span * k // 3 for k in range(3)]
        self.fire = np.geomspace(0.0005, 0.05, RULES)

    def revisions_at(self, minute: int) -> list[str]:
        serving = [r for r, start in zip(REVISIONS, self.rollouts, strict=True) if start <= minute]
        if len(serving) > 1 and minute - self.rollouts[len(serving) - 1] < 10:
            return serving[-2:]
        return serving[-1:]

    def facts(self, first: int, stop: int) -> MinuteFacts:
        minutes, rules, samples = [], [], []
        seen: dict[tuple[str, str], list[int]] = {}
        traffic: dict[str, list[int]] = {}
        for minute in range(first, stop):
            daily = 1 + 0.6 * np.sin(2 * np.pi * ((minute % 1440) / 1440 - 0.3))
            serving = self.revisions_at(minute)
            for revision in serving:
                requests = int(self.rng.poisson(self.rate * 60 * daily / len(serving)))
                failed = int(self.rng.binomial(requests, 0.002))
                websocket = int(self.rng.poisson(80 / 60 / len(serving)))
                ok = self.rng.lognormal(np.log(120), 0.6, requests - failed)
                bad = self.rng.lognormal(np.log(5000), 1.0, failed)
                minutes.append(
                    (
                        revision,
                        minute,
                        requests,
                        failed,
                        websocket,
                        int(self.rng.binomial(websocket, 0.01)),
                        requests * 2 + websocket,
                        requests,
                        int(self.rng.poisson(0.5)),
                        LatencySketch.from_values(ok).to_bytes() if len(ok) else None,
                        LatencySketch.from_values(bad).to_bytes() if len(bad) else None,
                        minute * 60 * 10**9 if requests > failed else None,  # last_success
                        minute * 60 * 10**9 if requests or websocket else None,  # last_request
                    )
                )
                traffic.setdefault(revision, []).append(minute)
            for rule in np.flatnonzero(self.rng.random(RULES) < self.fire):
                grp = f"Error{self.rng.integers(GROUPS_PER_FALLBACK)}: shape" if rule < FALLBACK_RULES else ""
                failures = 1 + int(self.rng.poisson(1))
                revision = serving[-1]
                rules.append(
                    (revision, minute, f"rule-{rule}", f"cat-{rule}", grp, "", failures, failures * 3)
                )
                seen.setdefault((f"rule-{rule}", grp), []).append(minute)
                line = {"example": f"rule {rule} failed here " * 4, "frame": "src/app.py:42 in handler"}
                samples.append(
                    (minute, f"rule-{rule}", grp, {**line, "revision": revision, "trace": "t" * 32})
                )
        ns = 60 * 10**9
        return MinuteFacts(
            minutes=pd.DataFrame(minutes, columns=list(MINUTE_COLUMNS)),
            rule_minutes=pd.DataFrame(rules, columns=list(RULE_MINUTE_COLUMNS)),
            error_groups=pd.DataFrame(
                [
                    (r, g, m[0] * ns, m[-1] * ns + 59 * 10**9, f"{r} {g} example")
                    for (r, g), m in seen.items()
                ],
                columns=list(ERROR_GROUP_COLUMNS),
            ),
            revisions=pd.DataFrame(
                [(r, m[0] * ns, m[-1] * ns, m[0] * ns - 60 * ns) for r, m in traffic.items()],
                columns=list(REVISION_COLUMNS),
            ).astype({"created": "Int64", "first_traffic": "Int64", "last_traffic": "Int64"}),
            samples=pd.DataFrame(samples, columns=list(SAMPLE_COLUMNS)),
        )


def at(minute: int) -> datetime:
    return datetime.fromtimestamp(minute * 60, UTC)


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def measure(rate: float, days: int, path: Path) -> dict[str, str]:
    service = Service(rate, days)
    warm_minutes = 50 * 5
    fill_stop = service.stop - warm_minutes
    started = time.perf_counter()
    building = 0.0
    with StateStore(path) as store:
        for hour in range(service.first, fill_stop, 60):
            stop = min(hour + 60, fill_stop)
            built = time.perf_counter()
            facts = service.facts(hour, stop)
            building += time.perf_counter() - built
            store.replace(SERVICE, at(hour), at(stop), facts, Cursor(SERVICE, at(stop)))
        fill = time.perf_counter() - started - building
        writes = []
        for first in range(fill_stop, service.stop, 5):
            facts = service.facts(first - 2, first + 5)  # a warm check re-reads a 2-minute lateness margin
            writes.append(
                timed(
                    lambda f=facts, a=first: store.replace(
                        SERVICE, at(a - 2), at(a + 5), f, Cursor(SERVICE, at(a + 5))
                    )
                )
            )
    opened = statistics.median(timed(lambda: StateStore(path).close()) for _ in range(5))
    day, month = at(service.stop) - timedelta(days=1), at(service.stop) - timedelta(days=28)
    with StateStore(path) as store:
        read_day = timed(
            lambda: LatencySketch.merged(store.minutes(SERVICE, day, at(service.stop))["latency"])
        )
        read_rules = timed(lambda: store.rule_minutes(SERVICE, day, at(service.stop)))
        hourly = timed(lambda: store.hourly(SERVICE, month, at(service.stop)))
        groups = timed(lambda: store.error_groups(SERVICE))
        pruned = timed(lambda: store.prune(timedelta(days=days + 1), now=at(service.stop)))
        rows = {
            table: len(getattr(store, table)(SERVICE, at(service.first), at(service.stop)))
            for table in ("minutes", "rule_minutes")
        }
    size = path.stat().st_size
    return {
        "req/s": f"{rate:g}",
        "MB": f"{size / 1e6:.1f}",
        "minute rows": f"{rows['minutes']:,}",
        "rule rows": f"{rows['rule_minutes']:,}",
        "B/minute row": f"{size / rows['minutes']:.0f}",
        "fill s": f"{fill:.1f}",
        "5-min write ms": f"{statistics.median(writes) * 1000:.1f}",
        "open ms": f"{opened * 1000:.1f}",
        "24 h latency ms": f"{read_day * 1000:.1f}",
        "24 h rules ms": f"{read_rules * 1000:.1f}",
        "28 d hourly ms": f"{hourly * 1000:.1f}",
        "groups ms": f"{groups * 1000:.1f}",
        "prune ms": f"{pruned * 1000:.1f}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[1, 10, 100], help="requests per second")
    parser.add_argument("--days", type=int, default=35)
    parser.add_argument(
        "--keep", type=Path, help="write the store here (one rate only) instead of a temporary file"
    )
    args = parser.parse_args()
    if args.keep and len(args.rates) > 1:
        parser.error("--keep takes one rate")
    table = []
    with tempfile.TemporaryDirectory() as folder:
        for rate in args.rates:
            path = args.keep or Path(folder) / f"state-{rate:g}.sqlite"
            path.unlink(missing_ok=True)
            table.append(measure(rate, args.days, path))
            print(f"{rate:g} req/s done", file=sys.stderr)
    print(f"{args.days} days of one service, 3 revisions, {RULES} rules firing sparsely")
    widths = {k: max(len(k), *(len(row[k]) for row in table)) for k in table[0]}
    print("  ".join(k.rjust(w) for k, w in widths.items()))
    for row in table:
        print("  ".join(row[k].rjust(w) for k, w in widths.items()))


if __name__ == "__main__":
    main()
