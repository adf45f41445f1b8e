"""One check, end to end: entries → events → classify → aggregate → detect → verdict (a Report)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from prodguardian.aggregate import Window, aggregate
from prodguardian.classify import classify
from prodguardian.detect import detect
from prodguardian.errors import ConfigError, InputError
from prodguardian.events import Events, build_events
from prodguardian.rules import RulePack, load_pack
from prodguardian.verdict import Context, Reason, Report, build_report, unknown_report

CLOCK_SKEW = timedelta(minutes=5)  # how far past now an entry's timestamp may be before it is not believed


@dataclass(frozen=True)
class CheckOptions:
    service: str | None = None
    freshness: timedelta = timedelta(hours=1)
    until: datetime | None = None  # default: just after the newest entry
    baseline: timedelta = timedelta(hours=24)
    rules: tuple[str, ...] = ()
    multivariate: bool = False  # also look for an unusual mix of the hour's numbers (loads scikit-learn)


@dataclass
class CheckRun:
    """A report and how it was made: per-stage seconds and the input's own counts."""

    report: Report
    seconds: dict[str, float] = field(default_factory=dict)


def run_check(entries: Iterable[Any], options: CheckOptions, pack: RulePack | None = None) -> CheckRun:
    """Check the entries; a source whose `truncated` is set after reading marks the report partial.

    Without `options.service`, every Cloud Run service in the input is checked on its own (its own window
    counts, baseline and findings); the report is then the worst service's, with every service's report in
    `services`, worst first.
    """
    pack = pack if pack is not None else load_pack(options.rules)
    clock = _Stopwatch()
    events = build_events(entries, options.service)
    clock.lap("events")
    where = getattr(entries, "name", None)
    _require_log_entries(events, where)
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
    # The input's; aggregate adds the window's (entries, echoes, duplicates...).
    totals: dict[str, Any] = {
        "skipped": events.totals.skipped,
        "truncated": bool(getattr(entries, "truncated", False)),
    }
    services = _services(events, options.service, where)
    if len(services) == 1:
        report = _check_service(
            events, table, services[0], window, totals, warnings, pack, clock, options.multivariate
        )
        return CheckRun(report, clock.laps)
    reports = []
    names = table["service"].to_numpy()
    for name in services:
        mine = table[names == name].reset_index(drop=True)
        # The service's own folded-away entries; the input's coverage (the window) is every service's.
        part = replace(events, dropped=events.dropped_of(name))
        reports.append(
            _check_service(
                part, mine, name, window, dict(totals), warnings, pack, clock, options.multivariate
            )
        )
    reports.sort(key=lambda r: (OVERALL_ORDER.index(r.status), r.context.service or ""))
    return CheckRun(replace(reports[0], services=reports), clock.laps)


# The overall status of several services: a CRITICAL one must page even when another cannot be checked.
OVERALL_ORDER = ("CRITICAL", "DEGRADED", "UNKNOWN", "OK")


def _check_service(
    events: Events,
    table: pd.DataFrame,
    service: str | None,
    window: Window,
    totals: dict[str, Any],
    warnings: list[str],
    pack: RulePack,
    clock: _Stopwatch,
    multivariate: bool = False,
) -> Report:
    """classify → aggregate → detect → verdict for one service's rows of the events table."""
    context = Context(service, events.project, _region(table), window, totals, warnings)
    classified = classify(table, pack)
    clock.lap("classify")
    aggs = aggregate(classified, pack, window, events.dropped)
    totals.update(aggs.totals)
    clock.lap("aggregate")
    if aggs.totals["entries"] == 0:
        return unknown_report(_silence(events, window), context)
    detection = detect(aggs, pack, multivariate=multivariate)
    clock.lap("detect")
    report = build_report(detection, context)
    clock.lap("verdict")
    return report


class _Stopwatch:
    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self.last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = now - self.last
        self.last = now


def failed_report(reason: str, options: CheckOptions) -> Report:
    """The UNKNOWN report of a check that could not be made (input that cannot be read, logs that could not
    be fetched), for a reader who must not keep an earlier status."""
    until = options.until or datetime.now(UTC)
    start = until - options.freshness
    return unknown_report(
        reason, Context(options.service, None, None, Window(start, until, start - options.baseline), {})
    )


def _require_log_entries(events: Events, where: str | None) -> None:
    """Values of which none is a log entry (numbers, an API's error object) are not logs that went quiet."""
    count = events.totals.entries
    if count and events.totals.skipped == count:
        what = "its one value is not" if count == 1 else f"none of its {count:,} values is"
        raise InputError(
            f"not a Cloud Logging export: {what} a log entry (a JSON object with a timestamp)", where
        )


def _services(events: Events, wanted: str | None, where: str | None) -> list[str | None]:
    """The services to check: the one asked for, else every named service in the input (None if none is)."""
    if wanted:
        if events.services and wanted not in events.services:
            raise ConfigError(
                f"no entries of service {wanted!r}; {_held(events.services)}", where or "--service"
            )
        return [wanted]
    named: list[str | None] = [name for name in sorted(events.services) if name]
    return named if named else [None]


def _held(services: dict[str, int], shown: int = 10) -> str:
    """Which services the input holds, most entries first."""
    ranked = sorted(services.items(), key=lambda item: (-item[1], item[0]))
    names = [f"{name or '(no service name)'} ({count:,} entries)" for name, count in ranked[:shown]]
    more = f" and {len(ranked) - shown} more" if len(ranked) > shown else ""
    return f"the input holds {', '.join(names)}{more}"


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


def _silence(events: Events, window: Window) -> Reason:
    """Why a check found nothing to judge (worded by the report's catalog, `reasons`)."""
    if events.totals.entries == 0:
        return Reason("no_entries")
    start, end, read = f"{window.start:%Y-%m-%d %H:%M}", f"{window.end:%H:%M}", events.totals.entries
    return Reason("silent_window", {"start": start, "end": end, "n": read})
