"""Online anomaly scores for a plain time series: each point judged only against the points before it.

Three views of the series, each a robust z-score against its own recent past (the median and interquartile
range of the last day, the point itself excluded): the value, the mean of the last few values (a shift too
small for one point), and the log of the spread of the last values (noise that starts or stops). A view
is surprising when its z is large in absolute terms (`MIN_Z`) and well above what that view usually
reaches in this series (`MARGIN` × the 99th percentile of its z over the week before). That second
condition is what makes one configuration fit every series: a noisy or cyclic series (a daily cycle, heavy
tails) raises its own bar, a smooth one lowers it. For counts (non-negative integers) the value's spread
is at least Poisson's, so 2 events where 0 are usual is no anomaly.

The score is e / (1 + e), e being the largest of the views' z over its bar, so 0.5 is the bar; a point
is flagged when it reaches the bar and no flag was raised in the `QUIET` before, so a lasting anomaly is
flagged once, at its start. The constants are one configuration for every series, chosen once on a small
grid (docs/design.md says which, and what the NAB benchmark makes of them).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pandas as pd

from prodguardian.errors import InputError, Location

RECENT = pd.Timedelta(days=1)  # the past a view's value is compared with
USUAL = pd.Timedelta(days=7)  # the past whose z-scores set a view's bar
MEAN_OF = 6  # values averaged by the shift view
SPREAD_OF = 12  # values whose standard deviation the noise view follows
MIN_HISTORY = 24  # points before a view is judged
MIN_USUAL = 144  # z-scores of a view before its bar is set (half a day of 5-minute points)
MIN_Z = 4.0
MIN_Z_SPREAD = 5.0  # the log of a 12-value spread has a long lower tail: a calm hour is no anomaly
MARGIN = 1.5
USUAL_QUANTILE = 0.99
QUIET = np.timedelta64(6, "h")
_IQR_TO_SIGMA = 1.349  # the interquartile range of a normal distribution is 1.349 σ


@dataclass(frozen=True)
class SeriesScores:
    scores: np.ndarray  # float, in [0, 1); 0.5 is the bar
    flags: np.ndarray  # bool: the first point of each anomaly


def score_series(
    timestamps: Sequence[object] | np.ndarray, values: Sequence[float] | np.ndarray
) -> SeriesScores:
    """Anomaly scores and flags for `values` observed at `timestamps`, online: no look-ahead.

    Points are taken in the order given; a timestamp earlier than one before it (a clock set back) counts
    as the latest time seen, so time never runs backwards.
    """
    times = pd.DatetimeIndex(np.maximum.accumulate(np.asarray(timestamps, dtype="datetime64[ns]")))
    data = np.asarray(values, dtype=float)
    if len(times) != len(data):
        raise ValueError(f"{len(times)} timestamps for {len(data)} values")
    if not len(data):
        return SeriesScores(np.zeros(0), np.zeros(0, dtype=bool))
    counts = bool(np.all(data >= 0)) and bool(np.all(data == np.round(data)))
    excess = np.maximum.reduce(
        [
            _excess(times, _z(times, data, 1 if counts else None)),
            _excess(times, _z(times, _rolling(data, MEAN_OF).mean().to_numpy(), MEAN_OF if counts else None)),
            _excess(times, _z(times, _log_spread(data, counts), None), MIN_Z_SPREAD),
        ]
    )
    return SeriesScores(excess / (1 + excess), _flags(times.to_numpy(), excess >= 1))


def _rolling(data: np.ndarray, size: int) -> Any:
    return pd.Series(data).rolling(size, min_periods=1)


def _log_spread(data: np.ndarray, counts: bool) -> np.ndarray:
    """The log of the standard deviation of the last SPREAD_OF values, plus a floor: one event for counts
    (a lone event among zeros is no change of noise), a negligible one otherwise (flat values stay finite)."""
    spread = _rolling(data, SPREAD_OF).std().fillna(0.0).to_numpy()
    floor = 1.0 if counts else 1e-9 * np.maximum(1.0, np.abs(data))
    return np.asarray(np.log(spread + floor))


def _z(times: pd.DatetimeIndex, data: np.ndarray, counts_averaged: int | None) -> np.ndarray:
    """Each value's robust z against the RECENT before it (0 until MIN_HISTORY values precede it); for a
    mean of `counts_averaged` counts, the spread is at least Poisson's."""
    rolling = pd.Series(data, index=times).rolling(RECENT, closed="left", min_periods=MIN_HISTORY)
    median = rolling.median().to_numpy()
    spread = (rolling.quantile(0.75).to_numpy() - rolling.quantile(0.25).to_numpy()) / _IQR_TO_SIGMA
    if counts_averaged:
        spread = np.maximum(spread, np.sqrt(np.maximum(median, 1.0) / counts_averaged))
    spread = np.maximum(spread, 1e-9 * np.maximum(np.abs(median), 1.0))
    z = np.abs(data - median) / spread
    return np.where(np.isnan(z), 0.0, z)


def _excess(times: pd.DatetimeIndex, z: np.ndarray, min_z: float = MIN_Z) -> np.ndarray:
    """z over the bar: the larger of MIN_Z and MARGIN × the USUAL_QUANTILE of the z before (none: no bar)."""
    usual = pd.Series(z, index=times).rolling(USUAL, closed="left", min_periods=MIN_USUAL)
    bar = np.maximum(min_z, MARGIN * usual.quantile(USUAL_QUANTILE).to_numpy())
    return np.where(np.isnan(bar), 0.0, z / bar)


def _flags(times: np.ndarray, high: np.ndarray) -> np.ndarray:
    """A flag where the score reaches the bar, unless a flag was raised in the QUIET before."""
    flags = np.zeros(len(high), dtype=bool)
    last: np.datetime64 | None = None
    for i in np.flatnonzero(high):
        if last is None or times[i] - last > QUIET:
            flags[i] = True
            last = times[i]
    return flags


@dataclass(frozen=True)
class Series:
    timestamps: list[datetime]  # naive UTC
    values: list[float]
    texts: list[tuple[str, str]]  # each row's timestamp and value as written, to echo them back


def read_series_csv(path: Path) -> Series:
    """A `timestamp,value` CSV file (a header row is optional); InputError naming file:line on a bad row."""
    try:
        with path.open(encoding="utf-8", newline="") as file:
            return read_series(file, str(path))
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", str(path)) from None


def read_series(file: TextIO, where: str) -> Series:
    """A `timestamp,value` CSV from an open text file; `where` names it in errors."""
    try:
        return parse_series_rows(csv.reader(file), where)
    except UnicodeDecodeError:
        raise InputError("not a UTF-8 text file", where) from None
    except csv.Error as exc:
        raise InputError(f"not CSV: {exc}", where) from None


def scores_csv(series: Series, scores: SeriesScores) -> Iterator[str]:
    """The lines of `timestamp,value,anomaly_score,is_anomaly`, the header first."""
    yield "timestamp,value,anomaly_score,is_anomaly"
    for (stamp, value), score, flag in zip(series.texts, scores.scores, scores.flags, strict=True):
        yield f"{stamp},{value},{score:.6f},{int(flag)}"


def parse_series_rows(rows: Iterable[list[str]], where: str) -> Series:
    """Rows of `timestamp,value`: ISO 8601 times (naive ones are UTC) and finite numbers, in file order."""
    series = Series([], [], [])
    for line, row in enumerate(rows, start=1):
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if line == 1 and row[0].strip().lower() == "timestamp":
            continue
        stamp, value = _parse_row(row, Location(where, line))
        series.timestamps.append(stamp)
        series.values.append(value)
        series.texts.append((row[0].strip(), row[1].strip()))
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
