"""An hour unlike the baseline's: an IsolationForest over per-hour feature vectors (`check --multivariate`).

Each hour bucket of the aggregate tables is a vector: requests and WebSocket attempts per hour, the HTTP
error rate, the WebSocket failure rate, failures per category per hour, and the latency p50 and p95. The
forest is fitted on the baseline's hours (at least `MIN_HOURS`) after a robust scaling (median and
interquartile range per feature); a window hour that scores as more isolated than every baseline hour, with
at least one feature `UNUSUAL_Z` robust deviations from its median, is a finding naming those features. It
catches a mix no single test does (a little more traffic, a little more latency, a few more failures), so
it is INFO, or DEGRADED when two features are `STRONG_Z` off: never a CRITICAL of its own. scikit-learn is
imported here only, so a check without `--multivariate` never loads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from prodguardian.aggregate import Aggregates

MIN_HOURS = 12
ANOMALY_SCORE = (
    0.6  # the forest's score (1 = isolated at once, 0.5 = an average point) above which, and above
)
# every baseline hour's, the window's hour is unusual
UNUSUAL_Z = 3.0
STRONG_Z = 6.0
MAX_FEATURES = 3  # named in the finding
RULE = "unusual-mix"
_IQR_TO_SIGMA = 1.349


@dataclass(frozen=True)
class Feature:
    name: str  # requests_per_hour, websocket_per_hour, http_error_rate, websocket_failure_rate,
    # failures_per_hour:<category>, latency_p50_ms, latency_p95_ms
    value: float
    usual: float  # the baseline hours' median
    z: float


@dataclass(frozen=True)
class UnusualHour:
    severity: Literal["INFO", "DEGRADED"]  # never CRITICAL
    features: list[Feature]
    baseline_hours: int


def hourly_features(aggs: Aggregates) -> pd.DataFrame:
    """One row per (period, hour bucket) with traffic, one column per feature."""
    traffic = aggs.traffic.groupby(["period", "bucket"])[["requests", "websocket", "failed_requests"]].sum()
    counts = aggs.counts[aggs.counts["caused_by"] == ""]
    failures = counts.pivot_table(
        index=["period", "bucket"], columns="category", values="failures", aggfunc="sum", fill_value=0
    )
    websocket_failures = counts[counts["category"] == "websocket"].groupby(["period", "bucket"])["failures"]
    frame = pd.DataFrame(
        {
            "requests_per_hour": traffic["requests"],
            "websocket_per_hour": traffic["websocket"],
            "http_error_rate": traffic["failed_requests"]
            / traffic["requests"].where(traffic["requests"] > 0),
            "websocket_failure_rate": websocket_failures.sum().reindex(traffic.index, fill_value=0)
            / traffic["websocket"].where(traffic["websocket"] > 0),
        }
    )
    for category in failures.columns:
        frame[f"failures_per_hour:{category}"] = failures[category].reindex(traffic.index, fill_value=0)
    if aggs.hourly_latency is not None and len(aggs.hourly_latency):
        latency = aggs.hourly_latency.set_index(["period", "bucket"])
        frame["latency_p50_ms"] = latency["p50"].reindex(traffic.index)
        frame["latency_p95_ms"] = latency["p95"].reindex(traffic.index)
    return frame.fillna(0.0)


def unusual_hour(aggs: Aggregates) -> UnusualHour | None:
    """The window's most unusual hour when the forest isolates it beyond every baseline hour."""
    frame = hourly_features(aggs)
    periods = set(frame.index.get_level_values(0))
    if not {"baseline", "window"} <= periods:
        return None
    names = [str(name) for name in frame.columns]
    usual = frame.xs("baseline").to_numpy(dtype=float)
    now = frame.xs("window").to_numpy(dtype=float)
    if len(usual) < MIN_HOURS:
        return None
    median = np.median(usual, axis=0)
    iqr = np.quantile(usual, 0.75, axis=0) - np.quantile(usual, 0.25, axis=0)
    spread = np.maximum(iqr / _IQR_TO_SIGMA, _floor(names, median))
    scaled_usual, scaled_now = (usual - median) / spread, (now - median) / spread

    from sklearn.ensemble import IsolationForest  # a second or more to import: only when asked for

    # Fitted on every hour, the window's too: a forest fitted on the baseline alone cannot split beyond the
    # baseline's range, so a point far outside it scores like the baseline's edge.
    hours = np.vstack([scaled_usual, scaled_now])
    scores = -IsolationForest(n_estimators=100, random_state=0).fit(hours).score_samples(hours)
    worst = int(np.argmax(scores[len(usual) :]))
    deviations = scaled_now[worst]
    named = [i for i in np.argsort(-np.abs(deviations)) if abs(deviations[i]) >= UNUSUAL_Z]
    isolated = scores[len(usual) + worst] >= max(ANOMALY_SCORE, float(scores[: len(usual)].max()))
    if not isolated or not named:
        return None
    features = [
        Feature(names[i], float(now[worst][i]), float(median[i]), float(deviations[i]))
        for i in named[:MAX_FEATURES]
    ]
    strong = sum(abs(deviations[i]) >= STRONG_Z for i in named)
    return UnusualHour("DEGRADED" if strong >= 2 else "INFO", features, len(usual))


def _floor(names: list[str], median: np.ndarray) -> np.ndarray:
    """A spread floor per feature: a tenth of its median, and one unit (a request, a failure, 1 ms) or 1%."""
    unit = np.array([0.01 if name.endswith("_rate") else 1.0 for name in names])
    return np.asarray(np.maximum(0.1 * np.abs(median), unit))
