"""How well the detector detects: the simulator's incidents, and false alarms on weeks of healthy traffic.

    python3 benchmarks/bench_detect.py [--days 7] [--seed 0]

Incidents: each scenario whose expected status is not OK, checked with a one-hour window ending 5, 10, …,
60 minutes into its incident hour (the rest of the window is the normal hour before): detected or not, the
status, and the time to detect in 5-minute buckets (the first window end whose status is not OK).

False alarms: `--days` days of healthy traffic, checked every hour (a one-hour window, its 24 hours before as
the baseline), for a service at the demo's volume, the same with a daily cycle (±80% around the mean, busiest
at 15:00 UTC), and a quiet service (scale 0.01: about 3 requests and 1 WebSocket session an hour). Prints the
DEGRADED and CRITICAL reports per simulated day and the rules behind them. Targets: every incident detected,
at most one false DEGRADED per simulated week, no false CRITICAL.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from prodguardian.check import CheckOptions, run_check
from prodguardian.rules import RulePack, load_pack
from prodguardian.simulate import DEFAULT_END, SCENARIOS, generate
from prodguardian.verdict import Report

HOUR = timedelta(hours=1)
STEP = timedelta(minutes=5)
BASELINE_HOURS = 24
HEALTHY_RUNS = (("demo volume", 1.0, 0.0), ("daily cycle", 1.0, 0.8), ("quiet service", 0.01, 0.0))


def check(entries: list[dict[str, Any]], until: datetime, pack: RulePack) -> Report:
    return run_check(entries, CheckOptions(until=until), pack).report


def incidents(pack: RulePack, seed: int) -> None:
    print(f"{'incident':18} {'expected':9} {'detected':9} {'status':9} {'buckets to detect':>17}")
    for name, scenario in SCENARIOS.items():
        if scenario.expected_status == "OK":
            continue
        entries = list(generate(name, seed=seed))
        start = DEFAULT_END - HOUR
        detected_at, status = None, "OK"
        for bucket in range(1, 13):
            status = check(entries, start + bucket * STEP, pack).status
            if status != "OK":
                detected_at = bucket
                break
        final = check(entries, DEFAULT_END, pack).status
        print(
            f"{name:18} {scenario.expected_status:9} {'yes' if detected_at else 'NO':9} {final:9} "
            f"{detected_at or '-':>17}"
        )


def false_alarms(pack: RulePack, days: int, seed: int) -> None:
    print(f"\n{'healthy traffic':15} {'checks':>6} {'DEGRADED':>9} {'CRITICAL':>9} {'false/day':>10}  rules")
    for label, scale, cycle in HEALTHY_RUNS:
        hours = days * 24 + BASELINE_HOURS + 1
        entries = list(generate("healthy", seed=seed, hours=hours, scale=scale, daily_cycle=cycle))
        by_hour = _by_hour(entries, DEFAULT_END)
        statuses: Counter[str] = Counter()
        rules: Counter[str] = Counter()
        for age in range(days * 24):
            window = [e for h in range(age, age + BASELINE_HOURS + 1) for e in by_hour.get(h, [])]
            report = check(window, DEFAULT_END - age * HOUR, pack)
            statuses[report.status] += 1
            rules.update(f.rule for f in report.problems)
        alarms = statuses["DEGRADED"] + statuses["CRITICAL"]
        named = ", ".join(f"{rule} ×{n}" for rule, n in rules.most_common()) or "-"
        print(
            f"{label:15} {days * 24:6} {statuses['DEGRADED']:9} {statuses['CRITICAL']:9} "
            f"{alarms / days:10.2f}  {named}"
        )


def _by_hour(entries: list[dict[str, Any]], end: datetime) -> dict[int, list[dict[str, Any]]]:
    """Entries by hours before `end` (0 = the last hour)."""
    grouped: dict[int, list[dict[str, Any]]] = {}
    for entry in entries:
        moment = datetime.fromisoformat(entry["timestamp"][:19] + "+00:00")
        grouped.setdefault(int((end - moment) / HOUR), []).append(entry)
    return grouped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=7, help="days of healthy traffic per run (default 7)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    pack = load_pack()
    began = time.perf_counter()
    incidents(pack, args.seed)
    false_alarms(pack, args.days, args.seed)
    print(f"\n{time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
