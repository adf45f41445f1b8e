"""Fill a service's history in the state store from Cloud Logging: what it lacks, newest hours first.

Each chunk is read and written on its own (one transaction), so a backfill stopped by --max-entries, the
quota or a kill resumes where it stopped: the next run reads only what the store still lacks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from prodguardian.check import CheckOptions, run_check
from prodguardian.history import History, ceil_minute, floor_minute
from prodguardian.rules import RulePack
from prodguardian.state import StateStore

CHUNK = timedelta(hours=6)  # one read and one write: small enough to resume often, large enough to page well


@dataclass
class Backfilled:
    entries: int = 0
    calls: int = 0
    missing: list[tuple[datetime, datetime]] = field(default_factory=list)

    @property
    def left(self) -> str:
        if not self.missing:
            return "nothing left to fill"
        hours = sum((b - a for a, b in self.missing), timedelta(0)) / timedelta(hours=1)
        return f"{hours:,.1f} h left to fill (run it again: it resumes)"


def chunks_to_fill(
    store: StateStore, service: str, start: datetime, end: datetime
) -> list[tuple[datetime, datetime]]:
    """The parts of [start, end) the store lacks, cut into chunks, newest first."""
    out = []
    for a, b in store.missing(service, floor_minute(start), ceil_minute(end)):
        stop = b.to_pydatetime()
        while stop > a:
            out.append((max(a.to_pydatetime(), stop - CHUNK), stop))
            stop -= CHUNK
    return sorted(out, reverse=True)


def backfill(
    store: StateStore,
    service: str,
    todo: Iterable[tuple[datetime, datetime]],
    read: Callable[[datetime, datetime, int], Any],
    pack: RulePack,
    max_entries: int,
    advance: Callable[[], None] = lambda: None,
) -> Backfilled:
    """Read and store each chunk (`read(start, end, max_entries)` gives its source) until the entries run
    out; what is left is in `missing`."""
    done = Backfilled()
    chunks = list(todo)
    for start, end in chunks:
        if done.entries >= max_entries:
            break
        source = read(start, end, max_entries - done.entries)
        options = CheckOptions(service=service, freshness=end - start, until=end, baseline=timedelta(0))
        run_check(source, options, pack, history=History(store, since=start))
        done.entries += source.stats.entries
        done.calls += source.stats.calls
        advance()
        if source.truncated:
            break
    for start, end in chunks:
        done.missing.extend(
            (a.to_pydatetime(), b.to_pydatetime()) for a, b in store.missing(service, start, end)
        )
    return done
