"""The lines of one failure linked under one failure id: a failing request, its app error, its traceback.

A failure is the set of lines one failing request or one error produced; everything downstream counts
distinct failure ids, so one failing request's four lines count once.
"""

from __future__ import annotations

import bisect
import re
from typing import Any

import numpy as np
import pandas as pd

from prodguardian.rules import SEVERITY_RANKS

CORRELATION_GAP_S = 2.0
# A platform line repeating the one before it on the same instance within this is the same failure going
# on (a probe failing every period is one instance out of rotation, not one failure per probe).
REPEAT_GAP_S = 60.0
# A revision's own event (an audit log's "Ready condition status changed to False", no instance) joins the
# failure of that revision's instance that just failed to start.
REVISION_EVENT_GAP_S = 60.0
_PATH_IN_LINE = re.compile(r'(?:^|[\s"])(?:GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) (/[^\s?"]*)')


def link_failures(table: pd.DataFrame) -> np.ndarray:
    """A failure id per row (-1 for rows that are no failure's part), shared by the lines of one failure.

    A failing request is a failure. A line with a trace joins only that trace's failure. A line without one,
    on an instance, continues the failure its previous line opened when at most CORRELATION_GAP_S separate
    them and that failure has no traceback yet (a "request failed" line, then its traceback); otherwise it
    claims the nearest failing request of its instance whose span (± the gap) holds it, with the same path
    when the line names one, and that no other line has claimed: five failing requests with five tracebacks
    are five failures. A line that can claim none closes the previous failure when it follows it within the
    gap (a "worker exiting" line after a traceback), else it is a failure of its own. Platform lines first
    continue the failure they repeat or belong to (see `_PlatformLines`).
    """
    failure = np.full(len(table), -1, dtype=np.int64)
    kind = table["kind"].to_numpy()
    status = table["status"].fillna(0).to_numpy(dtype=np.int64)
    is_request = (kind == "request") | (kind == "websocket")
    failing = is_request & ((status >= 500) | (status == 429))
    failure[failing] = np.flatnonzero(failing)
    errorish = ~is_request & (table["severity"].to_numpy() >= SEVERITY_RANKS["WARNING"])
    if not errorish.any():
        return failure
    seconds = epoch_seconds(table["ts"])
    requests = _FailingRequests(table, failing, seconds)
    has_trace = table["exc_type"].notna().to_numpy() if "exc_type" in table else np.zeros(len(table), bool)
    last_line: dict[str, tuple[float, int]] = {}
    closed: set[int] = set()  # failures that already hold a traceback
    traces, instances, messages = (
        table["trace"].to_numpy(),
        table["instance"].to_numpy(),
        table["message"].to_numpy(),
    )
    by_trace: dict[str, int] = {}  # failures already holding a line of each trace
    platform = _PlatformLines(table)
    for row in np.flatnonzero(errorish).tolist():
        at, instance, trace = seconds[row], instances[row], traces[row]
        previous = last_line.get(instance)
        recent = previous[1] if previous and at - previous[0] <= CORRELATION_GAP_S else -1
        continued = platform.continued(row, at)
        if continued >= 0:
            joined = continued
        elif trace:  # a line with a trace joins only that trace's failure
            joined = requests.by_trace.get(trace, by_trace.get(trace, -1))
        elif recent >= 0 and recent not in closed:
            joined = recent
        else:
            joined = requests.claim(instance, at, _named_path(messages[row]))
            if joined < 0:
                joined = recent
        failure[row] = joined if joined >= 0 else row
        if trace:
            by_trace.setdefault(trace, int(failure[row]))
        if has_trace[row]:
            closed.add(int(failure[row]))
        last_line[instance] = (at, int(failure[row]))
        platform.note(row, at, int(failure[row]))
    return failure


class _PlatformLines:
    """The last platform line of each instance and of each revision, to join the lines that continue it."""

    def __init__(self, table: pd.DataFrame) -> None:
        self.system = table["kind"].to_numpy() == "system"
        self.instances = table["instance"].to_numpy()
        self.revisions = table["revision"].to_numpy()
        self.messages = table["message"].to_numpy()
        self.by_instance: dict[str, tuple[float, Any, int]] = {}
        self.by_revision: dict[str, tuple[float, int]] = {}

    def continued(self, row: int, at: float) -> int:
        """The failure a platform line continues: the same text again on its instance, or an event of its
        revision (no instance) just after one of its instances failed; -1 if none."""
        if not self.system[row]:
            return -1
        instance, revision = self.instances[row], self.revisions[row]
        if instance:
            last = self.by_instance.get(instance)
            repeats = last is not None and last[1] == self.messages[row] and at - last[0] <= REPEAT_GAP_S
            return last[2] if last is not None and repeats else -1
        event = self.by_revision.get(revision) if revision else None
        return event[1] if event is not None and at - event[0] <= REVISION_EVENT_GAP_S else -1

    def note(self, row: int, at: float, failure: int) -> None:
        if self.system[row] and self.instances[row]:
            self.by_instance[self.instances[row]] = (at, self.messages[row], failure)
            if self.revisions[row]:
                self.by_revision[self.revisions[row]] = (at, failure)


class _FailingRequests:
    """Failing request rows indexed by trace and by instance (sorted start times) for joining lines."""

    def __init__(self, table: pd.DataFrame, failing: np.ndarray, seconds: np.ndarray) -> None:
        rows = np.flatnonzero(failing)
        traces = table["trace"].to_numpy()
        self.by_trace = {traces[r]: int(r) for r in rows if traces[r]}
        latency = table["latency_s"].fillna(0.0).to_numpy()
        paths = table["path"].to_numpy()
        instances = table["instance"].to_numpy()
        self.by_instance: dict[str, list[tuple[float, float, str, int]]] = {}
        for r in rows:
            self.by_instance.setdefault(str(instances[r]), []).append(
                (seconds[r], seconds[r] + latency[r], paths[r] or "", int(r))
            )
        self.starts = {k: [v[0] for v in rows_] for k, rows_ in self.by_instance.items()}
        self.claimed: set[int] = set()

    def claim(self, instance: str, at: float, path: str | None) -> int:
        """The unclaimed failing request of `instance` whose span (± the gap) holds `at`, nearest start
        first, now claimed; -1 if there is none."""
        spans = self.by_instance.get(instance)
        if not spans:
            return -1
        starts = self.starts[instance]
        hi = bisect.bisect_right(starts, at + CORRELATION_GAP_S)
        best, best_distance = -1, float("inf")
        for start, end, req_path, row in reversed(spans[max(0, hi - 64) : hi]):
            if at < start - CORRELATION_GAP_S or at > end + CORRELATION_GAP_S:
                continue
            if (path and req_path and path != req_path) or row in self.claimed:
                continue
            distance = abs(at - start)
            if distance < best_distance:
                best, best_distance = row, distance
        if best >= 0:
            self.claimed.add(best)
        return best


def _named_path(message: Any) -> str | None:
    if not isinstance(message, str):
        return None
    found = _PATH_IN_LINE.search(message[:512])
    return found[1] if found else None


def epoch_seconds(timestamps: pd.Series) -> np.ndarray:
    """Seconds since the epoch of a naive-UTC datetime column."""
    return timestamps.to_numpy().astype("datetime64[ns]").astype("int64") / 1e9
