"""The latency sketch: within 2% of numpy's quantiles on any data, exact merges, compact versioned bytes."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest

from prodguardian.sketch import ALPHA, MAX_MS, MIN_MS, SLOTS, LatencySketch

REAL = Path(__file__).parent / "fixtures" / "real"
QUANTILES = np.linspace(0, 1, 101)


def _assert_within_alpha(values: np.ndarray, sketch: LatencySketch) -> None:
    exact = np.quantile(values, QUANTILES)
    estimates = np.array([sketch.quantile(q) for q in QUANTILES])
    # Relative error at most α; a float's last bit of slack at a bucket's edge.
    assert np.all(np.abs(estimates - exact) <= ALPHA * exact * (1 + 1e-9)), (exact, estimates)


def _samples(seed: int) -> np.ndarray:
    """Latencies of many shapes: web requests, several decades, zeros and sub-millisecond, ties, outliers."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 3000))
    shape = seed % 5
    if shape == 0:
        return rng.lognormal(np.log(120), 0.8, n)
    if shape == 1:
        return 10 ** rng.uniform(np.log10(MIN_MS), 7, n)
    if shape == 2:
        return np.where(rng.random(n) < 0.3, 0.0, rng.lognormal(-2, 2, n))  # 0 ms and sub-ms
    if shape == 3:
        return rng.integers(0, 4, n).astype(np.float64)  # ties, as whole-millisecond logs give
    return np.concatenate([rng.lognormal(np.log(40), 0.3, n), [300_000.0, 3_600_000.0]])  # timeouts


@pytest.mark.parametrize("seed", range(250))
def test_every_quantile_is_within_two_percent(seed: int) -> None:
    values = _samples(seed)
    _assert_within_alpha(values, LatencySketch.from_values(values))


def _real_latencies_ms() -> np.ndarray:
    values = []
    for path in sorted(REAL.glob("*.json")):
        for entry in json.loads(path.read_text(encoding="utf-8")):
            latency = (entry.get("httpRequest") or {}).get("latency")
            if isinstance(latency, str) and latency.endswith("s"):
                values.append(float(latency[:-1]) * 1000)
    return np.array(values)


def test_real_cloud_run_latencies_are_within_two_percent() -> None:
    values = _real_latencies_ms()
    assert len(values) > 1500
    _assert_within_alpha(values, LatencySketch.from_values(values))


def test_merging_is_exact_whatever_the_split() -> None:
    values = np.random.default_rng(3).lognormal(3, 2, 5000)
    whole = LatencySketch.from_values(values)
    parts = [LatencySketch.from_values(part) for part in np.array_split(values, 7)]
    merged = parts[0]
    for part in parts[1:]:
        merged = merged.merge(part)
    assert np.array_equal(merged.counts, whole.counts)
    from_bytes = LatencySketch.merged([p.to_bytes() for p in parts] + [None])
    assert np.array_equal(from_bytes.counts, whole.counts)
    assert whole.count == 5000


def test_bytes_round_trip_compactly() -> None:
    minute = LatencySketch.from_values(np.random.default_rng(5).lognormal(np.log(120), 0.6, 60))
    blob = minute.to_bytes()
    assert len(blob) < 200  # a minute of a small service: one byte a bucket between the extremes
    assert np.array_equal(LatencySketch.from_bytes(blob).counts, minute.counts)
    busy = LatencySketch.from_values(np.full(70_000, 50.0))  # one bucket needs a wider count
    assert len(busy.to_bytes()) == 4 + 4
    assert LatencySketch.from_bytes(busy.to_bytes()).count == 70_000


def test_an_empty_sketch() -> None:
    empty = LatencySketch.from_values(np.array([]))
    assert empty.count == 0 and math.isnan(empty.quantile(0.5))
    assert LatencySketch.from_bytes(empty.to_bytes()).count == 0


def test_edge_values() -> None:
    sketch = LatencySketch.from_values(np.array([np.nan, 0.0, -3.0, MIN_MS / 10, MIN_MS, 1e12]))
    assert sketch.count == 5  # NaN is a missing latency, left out
    assert sketch.counts[0] == 3  # zero, negative and below one nanosecond count as 0 ms
    assert sketch.quantile(0) == 0.0
    assert sketch.quantile(1) == pytest.approx(MAX_MS, rel=ALPHA)  # beyond the range: clamped
    assert sketch.quantile(0.75) == pytest.approx(MIN_MS, rel=ALPHA)
    with pytest.raises(ValueError, match="between 0 and 1"):
        sketch.quantile(1.5)


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"\x01\x01",
        struct.pack("<BBH", 2, 1, 0) + b"\x01",  # a future version
        struct.pack("<BBH", 1, 3, 0) + b"\x01\x01\x01",  # no such width
        struct.pack("<BBH", 1, 2, 0) + b"\x01\x00\x01",  # half a count
        struct.pack("<BBH", 1, 1, SLOTS - 1) + b"\x01\x01",  # past the last slot
        struct.pack("<BBH", 1, 8, 0) + b"\xff" * 8,  # a count that overflows
    ],
)
def test_bytes_that_are_not_a_sketch_are_refused(blob: bytes) -> None:
    with pytest.raises(ValueError, match="not a latency sketch"):
        LatencySketch.from_bytes(blob)
