"""What "usual" is: the reference a window is compared with, as tables of counts, traffic and latency.

The detector reads a `Reference` only, so it can come from the input's baseline period (`from_baseline`,
built from the aggregate tables here) or from the state store's history. With a week or more of baseline,
the reference is the same hour of the same weekday in the weeks before (`weekday` set: daily and weekly
cycles); otherwise it is the whole baseline period. Latency is the same hours' too (merged from the hourly
sketches), or the whole baseline's exact quantiles without a week. Traffic is also given as the quietest
whole hour of the reference (`quietest_per_hour`), so a daily cycle's night is never a "traffic drop"
against a day's mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from prodguardian.aggregate import Aggregates
from prodguardian.sketch import LatencySketch

WEEK_HOURS = 7 * 24


@dataclass(frozen=True)
class Reference:
    """Counts over `hours` of usual time; `weekday` and `start` name a seasonal reference's hour."""

    hours: float
    failures: dict[tuple[str, str], int]  # (rule, group) → distinct failures
    events: dict[str, int]  # rule → matched events (metric rules)
    requests: int
    websocket: int
    quietest_per_hour: float | None  # the fewest requests and WebSocket attempts of a whole hour
    latency: LatencySketch | None = None  # successful interactive HTTP requests (never WebSocket)
    weekday: int | None = None  # 0 = Monday: the same hour of this weekday in earlier weeks
    start: datetime | None = None  # with `weekday`: the time of day the compared hours start
    weeks: int = 0
    latency_ms: dict[str, float] = field(default_factory=dict)  # exact quantiles ("p95") when known

    def usual_latency(self, quantile: float) -> float | None:
        """The usual latency quantile: the exact one when known, else the sketch's."""
        exact = self.latency_ms.get(f"p{round(quantile * 100)}")
        if exact is not None:
            return exact
        return self.latency.quantile(quantile) if self.latency is not None and self.latency.count else None

    @property
    def seasonal(self) -> bool:
        return self.weekday is not None

    def per_hour(self, count: int) -> float:
        return count / self.hours if self.hours > 0 else 0.0


def from_baseline(aggs: Aggregates) -> Reference | None:
    """The reference the input's own baseline period gives: the same weekday and hour when it spans a week
    or more of whole hours, else all of it. None without a baseline."""
    if aggs.baseline_entries == 0 or aggs.window.baseline_hours <= 0:
        return None
    weeks = int(aggs.window.baseline_hours // WEEK_HOURS)
    span = _window_buckets(aggs)
    if weeks >= 1 and span <= 24:
        buckets = {b + WEEK_HOURS * k for b in range(span) for k in range(1, weeks + 1)}
        start = aggs.window.end - timedelta(hours=span)  # hour buckets count back from the window's end
        return _reference(aggs, buckets, weeks * span, start.weekday(), start, weeks)
    return _reference(aggs, None, aggs.window.baseline_hours)


def _window_buckets(aggs: Aggregates) -> int:
    """How many hour buckets (counted back from the window's end) the window touches."""
    return max(1, math.ceil(aggs.window.requested_hours - 1e-9))


def _reference(
    aggs: Aggregates,
    buckets: set[int] | None,
    hours: float,
    weekday: int | None = None,
    start: datetime | None = None,
    weeks: int = 0,
) -> Reference:
    counts = _baseline(aggs.counts, buckets)
    traffic = _baseline(aggs.traffic, buckets)
    failures = counts.groupby(["rule", "group"])["failures"].sum().reset_index()
    per_hour = (traffic["requests"] + traffic["websocket"]).groupby(traffic["bucket"]).sum()
    return Reference(
        hours=hours,
        failures={
            (str(rule), str(group)): int(n)
            for rule, group, n in failures[["rule", "group", "failures"]].itertuples(index=False)
        },
        events={str(rule): int(n) for rule, n in counts.groupby("rule")["events"].sum().items()},
        requests=int(traffic["requests"].sum()),
        websocket=int(traffic["websocket"].sum()),
        quietest_per_hour=_quietest(per_hour, buckets, aggs),
        weekday=weekday,
        start=start,
        weeks=weeks,
        **(_baseline_latency(aggs) if buckets is None else _hours_latency(aggs, buckets)),
    )


def _baseline(table: pd.DataFrame, buckets: set[int] | None) -> pd.DataFrame:
    part = table[table["period"] == "baseline"]
    return part if buckets is None else part[part["bucket"].isin(buckets)]


def _quietest(per_hour: pd.Series, buckets: set[int] | None, aggs: Aggregates) -> float | None:
    """The fewest requests of a whole hour of the reference (an hour with none counts, as 0): the buckets
    after the window's and before the oldest, which the data may cover in part."""
    last = int((aggs.window.end - aggs.window.baseline_covered_start) / timedelta(hours=1))
    hours = sorted(buckets) if buckets is not None else list(range(_window_buckets(aggs), last))
    if not hours:
        return None
    return float(min(int(per_hour.get(b, 0)) for b in hours))


def _hours_latency(aggs: Aggregates, buckets: set[int]) -> dict[str, Any]:
    """The latency distribution of the reference's hours, merged from their hourly sketches."""
    hourly = aggs.hourly_latency
    if hourly is None:
        return {}
    rows = hourly[(hourly["period"] == "baseline") & hourly["bucket"].isin(buckets)]
    sketch = LatencySketch(sum((s.counts for s in rows["sketch"]), LatencySketch().counts))
    return {"latency": sketch} if sketch.count else {}


def _baseline_latency(aggs: Aggregates) -> dict[str, Any]:
    """The baseline's latency distribution and exact quantiles, as `Reference` fields."""
    latency = aggs.latency
    rows = latency[
        (latency["period"] == "baseline") & (latency["revision"] == "*") & (latency["outcome"] == "ok")
    ]
    if rows.empty or not int(rows.iloc[0]["samples"]):
        return {}
    row = rows.iloc[0]
    return {"latency": row["sketch"], "latency_ms": {k: float(row[k]) for k in ("p50", "p95", "p99")}}
