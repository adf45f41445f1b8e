"""A mergeable latency sketch: a fixed log-bucket histogram of milliseconds, relative error at most 2%.

Bucket i counts the values in [γ^i, γ^(i+1)), γ = (1+α)/(1−α), α = 0.02; a value is estimated by
2γ^(i+1)/(γ+1), which is within α of every value of its bucket (the geometric midpoint γ^(i+½) is not:
√γ − 1 = 2.02%). Values below 1 ns (MIN_MS) count as 0 ms, values above MAX_MS as MAX_MS. Counts are
integers, so merging is exact, associative and commutative: the sketch of two minutes is the sum of theirs.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable

import numpy as np

ALPHA = 0.02
GAMMA = (1 + ALPHA) / (1 - ALPHA)
MIN_MS = 1e-6  # 1 ns: the resolution of Cloud Logging's latency strings
MAX_MS = 1e9  # 11.6 days, far beyond Cloud Run's 60-minute request timeout
_LOG_GAMMA = math.log(GAMMA)
_FIRST_BUCKET = math.floor(math.log(MIN_MS) / _LOG_GAMMA)
_LAST_BUCKET = math.floor(math.log(MAX_MS) / _LOG_GAMMA)
# Slot 0 counts zeros; slot k ≥ 1 is bucket _FIRST_BUCKET + k − 1.
SLOTS = _LAST_BUCKET - _FIRST_BUCKET + 2
_ESTIMATES = np.concatenate(
    ([0.0], 2 * GAMMA ** (np.arange(_FIRST_BUCKET, _LAST_BUCKET + 1, dtype=np.float64) + 1) / (GAMMA + 1))
)
# Encoding: format version, bytes per count, first slot stored; then the counts of the slots from the
# first to the last non-empty one, little-endian, in the narrowest unsigned width that holds the largest.
_VERSION = 1
_HEADER = struct.Struct("<BBH")
_WIDTHS = {1: "<u1", 2: "<u2", 4: "<u4", 8: "<u8"}


class LatencySketch:
    """Counts of latencies (ms) per logarithmic bucket; `quantile` is within 2% of the exact one."""

    __slots__ = ("counts",)

    def __init__(self, counts: np.ndarray | None = None) -> None:
        self.counts = np.zeros(SLOTS, dtype=np.int64) if counts is None else counts

    @classmethod
    def from_values(cls, ms: np.ndarray) -> LatencySketch:
        """The sketch of these latencies in milliseconds (NaN, a missing latency, is left out)."""
        return cls.from_slots(slots_of(ms))

    @classmethod
    def from_slots(cls, slots: np.ndarray) -> LatencySketch:
        """The sketch of values given by their slots (`slots_of`; -1, a missing value, is left out)."""
        return cls(np.bincount(slots[slots >= 0], minlength=SLOTS).astype(np.int64))

    @classmethod
    def merged(cls, encoded: Iterable[bytes | None]) -> LatencySketch:
        """The merge of many encoded sketches (None is an empty one), without building each."""
        total = np.zeros(SLOTS, dtype=np.int64)
        for blob in encoded:
            if blob is not None:
                first, counts = _decode(blob)
                total[first : first + len(counts)] += counts
        return cls(total)

    @classmethod
    def from_bytes(cls, blob: bytes) -> LatencySketch:
        """Decode `to_bytes`; ValueError if the bytes are not a sketch this version writes."""
        return cls.merged([blob])

    def to_bytes(self) -> bytes:
        used = np.flatnonzero(self.counts)
        if not len(used):
            return _HEADER.pack(_VERSION, 1, 0)
        first, last = int(used[0]), int(used[-1])
        largest = int(self.counts.max())
        width = next(w for w in _WIDTHS if largest < 256**w)
        counts = self.counts[first : last + 1].astype(_WIDTHS[width])
        return _HEADER.pack(_VERSION, width, first) + counts.tobytes()

    def merge(self, other: LatencySketch) -> LatencySketch:
        return LatencySketch(self.counts + other.counts)

    @property
    def count(self) -> int:
        return int(self.counts.sum())

    def quantile(self, q: float) -> float:
        """The q-quantile, interpolated between ranks like numpy's default; NaN if the sketch is empty."""
        if not 0 <= q <= 1:
            raise ValueError(f"quantile {q} is not between 0 and 1")
        if self.count == 0:
            return math.nan
        rank = q * (self.count - 1)
        below = math.floor(rank)
        slots = np.searchsorted(np.cumsum(self.counts), [below, math.ceil(rank)], side="right")
        low, high = _ESTIMATES[slots]
        return float(low + (high - low) * (rank - below))


def slots_of(ms: np.ndarray) -> np.ndarray:
    """The slot of each latency in milliseconds, -1 for NaN: one pass, for many sketches at once."""
    values = np.asarray(ms, dtype=np.float64)
    slots = np.where(np.isnan(values), -1, 0).astype(np.int64)
    timed = values >= MIN_MS
    buckets = np.floor(np.log(np.minimum(values[timed], MAX_MS)) / _LOG_GAMMA).astype(np.int64)
    slots[timed] = np.clip(buckets - _FIRST_BUCKET + 1, 1, SLOTS - 1)
    return slots


def _decode(blob: bytes) -> tuple[int, np.ndarray]:
    """The first slot and the counts an encoded sketch holds."""
    if len(blob) < _HEADER.size:
        raise ValueError(f"not a latency sketch: {len(blob)} bytes")
    version, width, first = _HEADER.unpack_from(blob)
    if version != _VERSION or width not in _WIDTHS:
        raise ValueError(f"not a latency sketch of version {_VERSION}: version {version}, width {width}")
    body = len(blob) - _HEADER.size
    if body % width or first + body // width > SLOTS:
        raise ValueError(f"not a latency sketch: {body} bytes of counts from slot {first}")
    counts = np.frombuffer(blob, dtype=_WIDTHS[width], offset=_HEADER.size).astype(np.int64)
    if width == 8 and (counts < 0).any():
        raise ValueError("not a latency sketch: a count overflows")
    return first, counts
