"""One check, end to end: entries → events → classify → aggregate → detect → verdict (a Report)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from prodguardian.aggregate import Window, aggregate
from prodguardian.classify import classify
from prodguardian.detect import detect
from prodguardian.errors import ConfigError
from prodguardian.events import Events, build_events
from prodguardian.rules import RulePack, load_pack
from prodguardian.verdict import Context, Report, build_report, unknown_report

CLOCK_SKEW = timedelta(minutes=5)  # how far past now an entry's timestamp may be before it is not believed


@dataclass(frozen=True)
class CheckOptions:
    service: str | None = None
    freshness: timedelta = timedelta(hours=1)
    until: datetime | None = None  # default: just after the newest entry
    baseline: timedelta = timedelta(hours=24)
    rules: tuple[str, ...] = ()


@dataclass
class CheckRun:
    """A report and how it was made: per-stage seconds and the input's own counts."""

    report: Report
    seconds: dict[str, float] = field(default_factory=dict)


def run_check(entries: Iterable[Any], options: CheckOptions, pack: RulePack | None = None) -> CheckRun:
    """Check the entries; a source whose `truncated` is set after reading marks the report partial."""
    pack = pack if pack is not None else load_pack(options.rules)
    clock = _Stopwatch()
    events = build_events(entries, options.service)
    clock.lap("events")
    service = _service(events, options.service)
    warnings = list(getattr(entries, "warnings", ()))
    table = events.table
    if options.until is None:
        table = _without_future(events, datetime.now(UTC) + CLOCK_SKEW, warnings)
    until = options.until or _after_newest(table)
    window = Window(
        until - options.freshness,
        until,
        until - options.freshness - options.baseline,
        None if getattr(entries, "covers_window", False) else _data_start(table),
    )
    totals: dict[str, Any] = {**vars(events.totals), "truncated": bool(getattr(entries, "truncated", False))}
    context = Context(service, events.project, _region(table), window, totals, warnings)
    classified = classify(table, pack)
    clock.lap("classify")
    aggs = aggregate(classified, pack, window, events.folded_times)
    totals.update(aggs.totals)
    clock.lap("aggregate")
    if aggs.totals["entries"] == 0:
        return CheckRun(unknown_report(_silence(events, window), context), clock.laps)
    detection = detect(aggs, pack)
    clock.lap("detect")
    report = build_report(detection, context)
    clock.lap("verdict")
    return CheckRun(report, clock.laps)


class _Stopwatch:
    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self.last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = now - self.last
        self.last = now


def _service(events: Events, wanted: str | None) -> str:
    if wanted:
        return wanted
    named = {name: n for name, n in events.services.items() if name}
    if len(named) > 1:
        listed = ", ".join(sorted(named))
        raise ConfigError(f"the input holds {len(named)} services ({listed}): choose one with --service")
    return next(iter(named), "(unnamed service)")


def _without_future(events: Events, latest: datetime, warnings: list[str]) -> pd.DataFrame:
    """The table without entries stamped after `latest` (a broken clock): they never move the window."""
    table = events.table
    late = table["ts"] > pd.Timestamp(latest).tz_convert(None)
    count = int(late.sum())
    if not count:
        return table
    events.totals.skipped += count
    newest = table.loc[late, "ts"].max()
    warnings.append(
        f"{count:,} entries stamped in the future (up to {newest:%Y-%m-%d %H:%M} UTC) were skipped:"
        " a clock is wrong somewhere"
    )
    return table[~late].reset_index(drop=True)


def _data_start(table: pd.DataFrame) -> datetime | None:
    """When the input's data begins (its oldest entry), for the coverage of the window and baseline."""
    if table.empty:
        return None
    oldest: datetime = table["ts"].min().to_pydatetime(warn=False).replace(tzinfo=UTC)
    return oldest


def _after_newest(table: pd.DataFrame) -> datetime:
    if table.empty:
        return datetime.now(UTC)
    newest: datetime = table["ts"].max().to_pydatetime(warn=False).replace(tzinfo=UTC)
    return newest + timedelta(microseconds=1)


def _region(table: pd.DataFrame) -> str | None:
    locations = table["location"][table["location"] != ""]
    return str(locations.mode().iloc[0]) if len(locations) else None


def _silence(events: Events, window: Window) -> str:
    if events.totals.entries == 0:
        return "no log entries in the input: silence is not health"
    return (
        f"no entries between {window.start:%Y-%m-%d %H:%M} and {window.end:%H:%M} UTC "
        f"({events.totals.entries} entries read): silence is not health"
    )
