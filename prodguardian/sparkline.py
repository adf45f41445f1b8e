"""One-line sparklines of a report's timeline, so a terminal or an agent sees the shape too."""

from __future__ import annotations

import math
from collections.abc import Sequence

BARS = "▁▂▃▄▅▆▇█"
MISSING = " "  # a bucket with nothing to measure (a rate without requests)
WINDOW_MARK = "│"  # before the checked window's first bucket
MAX_BARS = 36  # the last buckets shown: three hours of 5-minute buckets


def sparkline(values: Sequence[float | None], window_index: int) -> str:
    """The bars of `values` (the lowest ▁, the highest █; a constant series all ▁), `│` marking the window."""
    known = [v for v in values if v is not None and math.isfinite(v)]
    low, high = (min(known), max(known)) if known else (0.0, 0.0)
    bars = [_bar(v, low, high) for v in values]
    if 0 <= window_index < len(bars):
        bars.insert(window_index, WINDOW_MARK)
    return "".join(bars)


def _bar(value: float | None, low: float, high: float) -> str:
    if value is None or not math.isfinite(value):
        return MISSING
    if high == low:
        return BARS[0]
    return BARS[min(len(BARS) - 1, int((value - low) / (high - low) * len(BARS)))]


def recent(values: Sequence[float | None], window_index: int) -> tuple[list[float | None], int]:
    """The last MAX_BARS values (the window whole when it fits) and where the window starts among them."""
    shown = list(values[-MAX_BARS:])
    return shown, window_index - (len(values) - len(shown))
