"""Online anomaly scores for a plain time series: each point judged only against the points before it.

A point's surprise is a robust z-score of its value against two references built from earlier points: the
recent past (the median and the median absolute deviation of the last day) and, once there are enough days,
the same time of day on earlier days (the daily cycle), whichever explains the point better. For counts
(non-negative integers), the spread is at least Poisson's, so 2 events where 0 are usual is no anomaly.
The score, in [0, 1), is 1 − the two-sided normal tail of that z; a point is flagged when its score first
crosses `FLAG_SCORE` after a quiet spell, so a lasting anomaly is flagged once, at its start.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from prodguardian.errors import InputError, Location
from prodguardian.stats import normal_upper_tail

RECENT = np.timedelta64(1, "D")  # the recent past a point is compared with
SEASON = np.timedelta64(1, "D")  # the daily cycle
SEASONS = 7  # earlier days at the same time of day, at most
SEASON_TOLERANCE = np.timedelta64(30, "m")  # "the same time of day", either side
MIN_HISTORY = 24  # points before the first score
MIN_SEASONAL = 3  # earlier days needed before the daily reference is used
FLAG_SCORE = 0.99999  # a two-sided z of about 4.4
QUIET = np.timedelta64(12, "h")  # after a flag, no new flag until the score stays below it this long
_MAD_TO_SIGMA = 1.4826  # the median absolute deviation of a normal distribution is 0.6745 σ
_IQR_TO_SIGMA = 1.349  # its interquartile range is 1.349 σ


@dataclass(frozen=True)
class SeriesScores:
    scores: np.ndarray  # float, in [0, 1)
    flags: np.ndarray  # bool


def score_series(
    timestamps: Sequence[object] | np.ndarray, values: Sequence[float] | np.ndarray
) -> SeriesScores:
    """Anomaly scores and flags for `values` observed at `timestamps`, online: no look-ahead.

    Points are taken in the order given; a timestamp earlier than one before it (a clock set back) counts
    as the latest time seen, so time never runs backwards.
    """
    times = np.maximum.accumulate(np.asarray(timestamps, dtype="datetime64[ns]"))
    data = np.asarray(values, dtype=float)
    if times.shape != data.shape:
        raise ValueError(f"{len(times)} timestamps for {len(data)} values")
    if not len(data):
        return SeriesScores(np.zeros(0), np.zeros(0, dtype=bool))
    counts = bool(np.all(data >= 0)) and bool(np.all(data == np.round(data)))
    z = _z(data, *_recent(times, data), counts)
    seasonal = _same_time_earlier(times, data)
    enough = np.sum(~np.isnan(seasonal), axis=1) >= MIN_SEASONAL
    if enough.any():
        median, spread = _robust(seasonal[enough])
        z[enough] = np.minimum(z[enough], _z(data[enough], median, spread, counts))
    scores = 1.0 - 2 * _normal_tail(z)
    return SeriesScores(scores, _flags(times, scores))


def _recent(times: np.ndarray, data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The median and robust spread (the interquartile range's σ) of the values in the RECENT before each
    point, itself excluded; NaN where fewer than MIN_HISTORY points precede it."""
    frame = pd.Series(data, index=pd.DatetimeIndex(times))
    rolling = frame.rolling(pd.Timedelta(RECENT), closed="left", min_periods=MIN_HISTORY)
    median = rolling.median().to_numpy()
    spread = (rolling.quantile(0.75).to_numpy() - rolling.quantile(0.25).to_numpy()) / _IQR_TO_SIGMA
    return median, spread


def _same_time_earlier(times: np.ndarray, data: np.ndarray) -> np.ndarray:
    """Per point, the values at about its time of day on each of the SEASONS days before (NaN if none)."""
    found = np.full((len(data), SEASONS), np.nan)
    rows = np.arange(len(data))
    for day in range(1, SEASONS + 1):
        target = times - day * SEASON
        after = np.clip(np.searchsorted(times, target), 0, len(times) - 1)
        before = np.clip(after - 1, 0, len(times) - 1)
        nearest = np.where(np.abs(times[before] - target) < np.abs(times[after] - target), before, after)
        close = (np.abs(times[nearest] - target) <= SEASON_TOLERANCE) & (nearest < rows)
        found[close, day - 1] = data[nearest[close]]
    return found


def _robust(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise median and MAD-based σ, ignoring NaN."""
    median = np.nanmedian(samples, axis=1)
    return median, _MAD_TO_SIGMA * np.nanmedian(np.abs(samples - median[:, None]), axis=1)


def _z(value: np.ndarray, median: np.ndarray, spread: np.ndarray, counts: bool) -> np.ndarray:
    """How many robust standard deviations each value lies from its reference's median (0 without one)."""
    if counts:
        spread = np.maximum(spread, np.sqrt(np.maximum(median, 1.0)))
    spread = np.maximum(spread, 1e-9 * np.maximum(np.abs(median), 1.0))
    z = np.abs(value - median) / spread
    return np.where(np.isnan(z), 0.0, z)


def _normal_tail(z: np.ndarray) -> np.ndarray:
    return np.array([normal_upper_tail(float(v)) for v in z])


def _flags(times: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """A flag where the score crosses FLAG_SCORE after at least QUIET without crossing it."""
    flags = np.zeros(len(scores), dtype=bool)
    last_high: np.datetime64 | None = None
    for i in np.flatnonzero(scores >= FLAG_SCORE):
        if last_high is None or times[i] - last_high > QUIET:
            flags[i] = True
        last_high = times[i]
    return flags


@dataclass(frozen=True)
class Series:
    timestamps: list[datetime]  # naive UTC
    values: list[float]


def read_series_csv(path: Path, name: str | None = None) -> Series:
    """A `timestamp,value` CSV (a header row is optional); InputError naming file:line on a bad row."""
    where = name or str(path)
    try:
        with path.open(encoding="utf-8", newline="") as file:
            return parse_series_rows(csv.reader(file), where)
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", where) from None
    except UnicodeDecodeError:
        raise InputError("not a UTF-8 text file", where) from None
    except csv.Error as exc:
        raise InputError(f"not CSV: {exc}", where) from None


def parse_series_rows(rows: Iterable[list[str]], where: str) -> Series:
    """Rows of `timestamp,value`: ISO 8601 times (naive ones are UTC) and finite numbers, in file order."""
    series = Series([], [])
    for line, row in enumerate(rows, start=1):
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if line == 1 and row[0].strip().lower() == "timestamp":
            continue
        stamp, value = _parse_row(row, Location(where, line))
        series.timestamps.append(stamp)
        series.values.append(value)
    if not series.values:
        raise InputError("no rows of timestamp,value", where)
    return series


def _parse_row(row: list[str], where: Location) -> tuple[datetime, float]:
    if len(row) != 2:
        raise InputError(f"expected 2 fields (timestamp,value), found {len(row)}", where)
    text, number = row[0].strip(), row[1].strip()
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"timestamp {text[:40]!r} is not ISO 8601", where) from None
    if stamp.tzinfo is not None:
        stamp = stamp.astimezone(UTC).replace(tzinfo=None)
    try:
        value = float(number)
    except ValueError:
        raise InputError(f"value {number[:40]!r} is not a number", where) from None
    if not math.isfinite(value):
        raise InputError(f"value {number[:40]!r} is not a finite number", where)
    return stamp, value
