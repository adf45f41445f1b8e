"""The Numenta Anomaly Benchmark's scoring (Lavin & Ahmad 2015), to judge `series.score_series` on NAB.

A detection inside a labelled window earns A_TP × σ(position), σ(y) = 2 / (1 + e^(5y)) − 1 with y running
from −1 at the window's start to 0 at its end, so an early detection earns almost 1 and a late one almost 0;
only a window's first detection counts. A detection outside every window costs A_FP × σ(distance past the
previous window, in window lengths; −1 before the first window or more than 3 lengths past one), so a
detection just after a window costs almost nothing. A window with no detection costs A_FN. Detections in
the probationary period (the first 15% of the file, at most 750 rows) are ignored. A corpus's score is
normalised so that detecting nothing scores 0 and detecting every window at its start scores 100.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

PROBATION_SHARE = 0.15
PROBATION_MAX_ROWS = 750  # 15% of 5,000 rows


@dataclass(frozen=True)
class Profile:
    """NAB's application profile: the weights of a true positive, a false positive and a miss."""

    true_positive: float = 1.0
    false_positive: float = 0.11
    false_negative: float = 1.0


STANDARD = Profile()


@dataclass(frozen=True)
class FileScore:
    raw: float
    windows: int
    detected: int
    false_positives: int

    def null(self, profile: Profile = STANDARD) -> float:
        """The score of detecting nothing."""
        return -profile.false_negative * self.windows

    def perfect(self, profile: Profile = STANDARD) -> float:
        return profile.true_positive * self.windows


def scaled_sigmoid(position: float) -> float:
    """NAB's weight of a detection at `position` window lengths relative to a window's end."""
    return -1.0 if position > 3.0 else 2 / (1 + math.exp(5 * position)) - 1


def probation_rows(length: int) -> int:
    return min(math.floor(PROBATION_SHARE * length), PROBATION_MAX_ROWS)


def score_file(
    timestamps: np.ndarray,
    flags: np.ndarray,
    windows: Sequence[tuple[np.datetime64, np.datetime64]],
    profile: Profile = STANDARD,
) -> FileScore:
    """NAB's raw score of one file's detections (`flags`, one per row) against its labelled windows."""
    rows = [_window_rows(timestamps, start, end) for start, end in windows]
    window_of = np.full(len(timestamps), -1)
    for i, (first, last) in enumerate(rows):
        window_of[first : last + 1] = i
    detected: dict[int, float] = {}
    false_positives, penalty = 0, 0.0
    for row in np.flatnonzero(flags):
        if row < probation_rows(len(timestamps)):
            continue
        window = int(window_of[row])
        if window >= 0:
            first, last = rows[window]
            if window not in detected:
                detected[window] = profile.true_positive * scaled_sigmoid(
                    -(last - row + 1) / (last - first + 1)
                )
            continue
        false_positives += 1
        penalty += profile.false_positive * _past_window_weight(rows, int(row))
    missed = len(rows) - len(detected)
    raw = sum(detected.values()) + penalty - profile.false_negative * missed
    return FileScore(raw, len(rows), len(detected), false_positives)


def normalised(scores: Sequence[FileScore], profile: Profile = STANDARD) -> float:
    """A set of files' score on NAB's scale: 0 for detecting nothing, 100 for the perfect detector."""
    raw = sum(s.raw for s in scores)
    null = sum(s.null(profile) for s in scores)
    perfect = sum(s.perfect(profile) for s in scores)
    return 100 * (raw - null) / (perfect - null) if perfect > null else float("nan")


def _window_rows(timestamps: np.ndarray, start: np.datetime64, end: np.datetime64) -> tuple[int, int]:
    """The first and last rows of a window [start, end], both ends included."""
    first = int(np.searchsorted(timestamps, start, side="left"))
    last = int(np.searchsorted(timestamps, end, side="right")) - 1
    return first, last


def _past_window_weight(rows: Sequence[tuple[int, int]], row: int) -> float:
    """σ of a false positive's distance past the window before it (−1 when no window precedes it)."""
    before = [(first, last) for first, last in rows if last < row]
    if not before:
        return -1.0
    first, last = before[-1]
    return scaled_sigmoid(abs(last - row) / (last - first))
