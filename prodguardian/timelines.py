"""The report's timelines: each key signal per time bucket over the baseline and the window.

Built from the per-minute tables `aggregate` (or the state store, `history.stored_aggregates`) already
made, never from the events again: requests, the error rate over every category and per category, the
WebSocket failure rate, and p50/p95 latency (from the minutes' merged latency sketches). Each signal has
the baseline's usual band (the 10th, 50th and 90th percentiles of its baseline buckets) and the window's
buckets that are anomalous: above the band's top while the report holds a finding about that signal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from prodguardian.aggregate import Aggregates
from prodguardian.detect import Finding
from prodguardian.sketch import LatencySketch

BUCKET_MINUTES = (1, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440)
MAX_BUCKETS = 300  # a chart's points: enough for a 5-minute day, few enough to read
LONGEST = timedelta(days=7)  # what a state store keeps: the timelines go back no further
BAND = (0.1, 0.5, 0.9)
MIN_BAND_BUCKETS = 3  # baseline buckets with a value before "usual" is drawn
MAX_CATEGORIES = 4  # error categories with a line of their own, most failures first


@dataclass(frozen=True)
class Signal:
    """One signal's values per bucket (None: nothing to measure, such as a rate without requests)."""

    name: str  # requests, errors, errors:<category>, websocket, p50, p95
    unit: str  # count, rate (a share in [0, 1]) or ms
    values: list[float | None]
    band: tuple[float, float, float] | None  # the baseline's low, median and high
    anomalous: list[int]  # the window's anomalous buckets (their indexes)


@dataclass(frozen=True)
class RevisionChange:
    at: datetime  # aware UTC: the revision's first traffic
    revision: str


@dataclass(frozen=True)
class Timeline:
    start: datetime  # the first bucket's start (aware UTC)
    bucket: timedelta
    window_index: int  # the first bucket of the checked window
    signals: list[Signal]
    revisions: list[RevisionChange] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.signals[0].values) if self.signals else 0

    def time_of(self, index: float) -> datetime:
        return self.start + self.bucket * index


def bucket_minutes(span_minutes: int, window_minutes: int) -> int:
    """The smallest bucket giving at most MAX_BUCKETS over the span, the window a whole number of them."""
    fitting = [b for b in BUCKET_MINUTES if span_minutes / b <= MAX_BUCKETS]
    aligned = [b for b in fitting if window_minutes % b == 0]
    return (aligned or fitting or [BUCKET_MINUTES[-1]])[0]


def build_timeline(aggs: Aggregates, findings: list[Finding]) -> Timeline | None:
    """The timeline of a check's aggregates; None when they hold no per-minute table."""
    if aggs.minute_traffic is None or aggs.minute_failures is None:
        return None
    window = aggs.window
    window_minutes = max(1, round((window.end - window.start) / timedelta(minutes=1)))
    covered = max(window.baseline_covered_start, window.end - LONGEST - (window.end - window.start))
    span = max(window_minutes, round((window.end - covered) / timedelta(minutes=1)))
    size = bucket_minutes(span, window_minutes)
    count = -(-span // size)
    window_buckets = -(-window_minutes // size)
    traffic = _bucketed(aggs.minute_traffic, size, count)
    failures = _bucketed(aggs.minute_failures, size, count)
    start = window.end - timedelta(minutes=size * count)  # the minute tables count back from the end
    signals = _signals(traffic, failures, count, count - window_buckets, findings)
    return Timeline(
        start=start,
        bucket=timedelta(minutes=size),
        window_index=count - window_buckets,
        signals=signals,
        revisions=_revision_changes(aggs, covered + timedelta(minutes=size), window.end),
    )


def _bucketed(frame: pd.DataFrame, size: int, count: int) -> pd.DataFrame:
    """The frame's rows with their bucket's index (0: the oldest), those older than the span left out."""
    index = count - 1 - frame["age"].to_numpy() // size
    return frame.assign(index=index)[(index >= 0) & (index < count)]


def _signals(
    traffic: pd.DataFrame, failures: pd.DataFrame, count: int, first: int, findings: list[Finding]
) -> list[Signal]:
    requests = _sums(traffic, "requests", count)
    websocket = _sums(traffic, "websocket", count)
    per_category = {
        str(category): _sums(part, "failures", count) for category, part in failures.groupby("category")
    }
    ranked = sorted(
        (c for c in per_category if c not in ("", "websocket")), key=lambda c: -per_category[c].sum()
    )
    signals = [_signal("requests", "count", requests, first, findings)]
    signals.append(_signal("errors", "rate", _share(per_category.get(""), requests), first, findings))
    for category in ranked[:MAX_CATEGORIES]:
        rate = _share(per_category[category], requests)
        signals.append(_signal(f"errors:{category}", "rate", rate, first, findings))
    if websocket.sum():
        rate = _share(per_category.get("websocket"), websocket)
        signals.append(_signal("websocket", "rate", rate, first, findings))
    p50, p95 = _latency(traffic, count)
    if not np.all(np.isnan(p50)):
        signals += [_signal("p50", "ms", p50, first, findings), _signal("p95", "ms", p95, first, findings)]
    return signals


def _sums(frame: pd.DataFrame, column: str, count: int) -> np.ndarray:
    sums = frame.groupby("index")[column].sum()
    out = np.zeros(count)
    out[sums.index.to_numpy(dtype=int)] = sums.to_numpy(dtype=float)
    return out


def _share(part: np.ndarray | None, whole: np.ndarray) -> np.ndarray:
    """part / whole per bucket; NaN where the whole is 0 (no rate to tell), capped at 1."""
    part = np.zeros(len(whole)) if part is None else part
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(whole > 0, np.minimum(part / whole, 1.0), np.nan)


def _latency(traffic: pd.DataFrame, count: int) -> tuple[np.ndarray, np.ndarray]:
    p50, p95 = np.full(count, np.nan), np.full(count, np.nan)
    latency, indexes = traffic["latency"].to_numpy(), traffic["index"].to_numpy(dtype=int)
    for index in np.unique(indexes):
        sketch = LatencySketch.merged(latency[indexes == index])
        if sketch.count:
            p50[index], p95[index] = sketch.quantile(0.5), sketch.quantile(0.95)
    return p50, p95


def _signal(name: str, unit: str, values: np.ndarray, first: int, findings: list[Finding]) -> Signal:
    baseline = values[:first][~np.isnan(values[:first])]
    band = None
    if len(baseline) >= MIN_BAND_BUCKETS:
        low, median, high = (float(q) for q in np.quantile(baseline, BAND))
        band = (low, median, high)
    top = band[2] if band else 0.0
    flagged = _about(name, findings)
    anomalous = [i for i in range(first, len(values)) if flagged and values[i] > top]
    return Signal(name, unit, [None if np.isnan(v) else float(v) for v in values], band, anomalous)


def _about(name: str, findings: list[Finding]) -> bool:
    """Whether an alerting finding is about the signal: its buckets above usual are then anomalous."""
    problems = [f for f in findings if f.severity != "INFO"]
    if name in ("p50", "p95"):
        return any(f.kind == "latency" for f in problems)
    if name == "requests":
        return any(f.kind == "traffic" for f in problems)
    if name == "errors":
        return any(f.kind in ("failure", "metric") for f in problems)
    category = name.removeprefix("errors:")
    return any(f.category == category and f.kind in ("failure", "metric") for f in problems)


def _revision_changes(aggs: Aggregates, after: datetime, end: datetime) -> list[RevisionChange]:
    """Revisions whose first traffic falls inside the span (not those already serving at its start)."""
    changes = []
    for revision, first in sorted(aggs.revision_first_seen.items(), key=lambda item: item[1]):
        moment = first if first.tzinfo else first.replace(tzinfo=end.tzinfo)
        if revision and after <= moment < end:
            changes.append(RevisionChange(moment, revision))
    return changes
