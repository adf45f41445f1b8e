"""One check, end to end: entries → events → classify → aggregate → detect → verdict (a Report).

`check_logs` is the check as a library function (`prodguardian.check_logs`); `run_check` is its core, and
`live_source` the live read a check of Cloud Logging makes.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, runtime_checkable

import pandas as pd

from prodguardian.aggregate import Window, aggregate
from prodguardian.classify import classify
from prodguardian.cloud import CloudLogging, CloudQuery, CloudSource, LateArrivals, ReadStats
from prodguardian.detect import detect
from prodguardian.errors import ConfigError, InputError
from prodguardian.events import Events, build_events
from prodguardian.history import (
    History,
    ceil_minute,
    read_totals,
    record,
    recorded_from,
    stored_aggregates,
    stored_error_seeds,
    stored_template_counts,
)
from prodguardian.probes import ProbeResult, probe_findings
from prodguardian.rules import RulePack, load_pack
from prodguardian.source import PAGE_WARNING, FileSource, ReadOptions
from prodguardian.timelines import build_timeline
from prodguardian.unknown_errors import ErrorSeed, mine_errors
from prodguardian.verdict import Context, Reason, Report, Status, build_report, unknown_report

CLOCK_SKEW = timedelta(minutes=5)  # how far past now an entry's timestamp may be before it is not believed

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)$")
_UNITS = {"s": "seconds", "m": "minutes", "min": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_UNIT_DAYS = {"s": 1 / 86400, "m": 1 / 1440, "min": 1 / 1440, "h": 1 / 24, "d": 1, "w": 7}
# The times a check can hold are nanosecond timestamps (years 1678 to 2261); a window ends after 1970 and
# lasts at most Cloud Logging's longest retention, so its baseline never starts before them either.
EARLIEST, LATEST = datetime(1970, 1, 1, tzinfo=UTC), datetime(2262, 1, 1, tzinfo=UTC)
LONGEST = timedelta(days=3650)


def parse_duration(text: str, name: str = "duration", *, zero: bool = False) -> timedelta:
    """`90s`, `15m`, `1h`, `2d`, `1w` as a timedelta (`0` or `0s` too when `zero`)."""
    found = _DURATION.match(str(text).strip())
    if zero and (str(text).strip() == "0" or (found and float(found[1]) == 0)):
        return timedelta(0)
    if not found or float(found[1]) <= 0:
        raise ConfigError(f"{name}: {text!r} is not a duration like 15m, 1h, 24h or 7d")
    if float(found[1]) * _UNIT_DAYS[found[2]] > LONGEST.days:
        raise ConfigError(f"{name}: {text!r} is longer than Cloud Logging keeps logs ({LONGEST.days:,} days)")
    return timedelta(**{_UNITS[found[2]]: float(found[1])})


def parse_time(text: str, name: str = "time") -> datetime:
    """An ISO 8601 time as an aware UTC datetime (one without an offset is UTC), between 1970 and 2261."""
    try:
        moment = _utc(datetime.fromisoformat(str(text).strip()))
    except ValueError:
        raise ConfigError(f"{name}: {text!r} is not an ISO 8601 time like 2025-10-11T12:04:00Z") from None
    if not EARLIEST <= moment < LATEST:
        raise ConfigError(
            f"{name}: {text!r} is out of range: a window ends between {EARLIEST.year} and {LATEST.year - 1}"
        )
    return moment


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True)
class CheckOptions:
    """The window a check judges: the service, its length and end, and how long before it "usual" is."""

    service: str | None = None
    freshness: timedelta = timedelta(hours=1)
    until: datetime | None = None  # default: just after the newest entry
    baseline: timedelta = timedelta(hours=24)
    rules: tuple[str, ...] = ()
    multivariate: bool = False  # also look for an unusual mix of the hour's numbers (loads scikit-learn)
    known_templates: frozenset[str] = frozenset()  # template ids seen before (a state store's): never new


@runtime_checkable
class LogInput(Protocol):
    """What a check reads: LogEntry dicts (the API's JSON shape), and what its source knows about them.

    `FileSource` and `CloudSource` are log inputs; so is any object with these members. A plain iterable of
    entries (a list of dicts) is checked as `Entries` sees it: unnamed, complete, no coverage claim.
    """

    def __iter__(self) -> Iterator[Any]: ...

    @property
    def name(self) -> str | None:
        """Where the entries come from, for error messages (a file's path)."""

    @property
    def warnings(self) -> list[str]:
        """What reading found worth telling but not wrong; complete once the entries have been read."""

    @property
    def truncated(self) -> bool:
        """Set after reading when the read stopped early: the report is then partial."""

    @property
    def covers_window(self) -> bool:
        """The input holds every entry of the window, so a quiet start is quiet, not missing data."""


@dataclass
class Entries:
    """Entries from anywhere (a list, a generator) as a `LogInput`."""

    entries: Iterable[Any]
    name: str | None = None
    warnings: list[str] = field(default_factory=list)
    truncated: bool = False
    covers_window: bool = False

    def __iter__(self) -> Iterator[Any]:
        return iter(self.entries)


def check_logs(
    source: str | os.PathLike[str] | CloudLogging | LogInput | Iterable[Any],
    *,
    service: str | None = None,
    freshness: str | timedelta = "1h",
    until: str | datetime | None = None,
    baseline: str | timedelta = "24h",
    rules: RulePack | Iterable[str | os.PathLike[str]] = (),
    read: ReadOptions | None = None,
    multivariate: bool = False,
) -> Report:
    """Check logs and return the report, as `prodguardian check` does (render it with `render_report`; its
    `exit_code` is the command's).

    `source` is an export file's path (`-` for stdin; `read` says how a large one is read), LogEntry dicts
    (a list), a `LogInput`, or `CloudLogging(...)` for a live read from Cloud Logging. The window is the
    `freshness` before `until` (default: just after the newest entry; now for a live read; a naive datetime
    is UTC), and "usual" is
    measured over the `baseline` before it. `rules` are extra rule folders, or a `RulePack` from `load_pack`.
    `multivariate` also looks for an unusual mix of the hour's numbers (`check --multivariate`; scikit-learn).
    Raises a `ProdGuardianError` for input, rules, options or a read that fail.
    """
    options = CheckOptions(
        service=service,
        freshness=_duration(freshness, "freshness"),
        until=_moment(until),
        baseline=_duration(baseline, "baseline"),
        rules=() if isinstance(rules, RulePack) else tuple(str(folder) for folder in rules),
        multivariate=multivariate,
    )
    pack = rules if isinstance(rules, RulePack) else load_pack(options.rules)
    entries: LogInput | Iterable[Any]
    if isinstance(source, CloudLogging):
        options = replace(options, until=options.until or datetime.now(UTC))
        entries = live_source(options, pack, source)
    elif isinstance(source, str | os.PathLike):
        entries = FileSource(os.fspath(source), read or ReadOptions())
    else:
        entries = source
    return run_check(entries, options, pack).report


def live_source(
    options: CheckOptions,
    pack: RulePack,
    settings: CloudLogging | None = None,
    progress: Callable[[ReadStats], None] | None = None,
    start: datetime | None = None,
    late_only: LateArrivals | None = None,
) -> CloudSource:
    """The live read of a check: its window and baseline of the service's Cloud Run logs, with the pack's
    message regexes pushed into the filter. `options.until` must be set (a live check ends now, say).
    `start`: read only from then on (a check with a state store reads what the store lacks); `late_only`:
    of what the last read pulled, read only what arrived since (`history.TailedRead`)."""
    if options.until is None:
        raise ConfigError("a live check needs the end of its window (until)")
    query = CloudQuery(
        start=start or options.until - options.freshness - options.baseline,
        end=options.until,
        service=options.service,
        message_regexes=pack.pushdown_regexes(),
        settings=settings or CloudLogging(),
        late_only=late_only,
    )
    return CloudSource(query, progress=progress)


def _duration(value: str | timedelta, name: str) -> timedelta:
    return parse_duration(value, name) if isinstance(value, str) else value


def _moment(value: str | datetime | None) -> datetime | None:
    """`until` as an aware UTC datetime; a naive one is UTC, as in an ISO 8601 time without an offset."""
    if value is None:
        return None
    return parse_time(value, "until") if isinstance(value, str) else _utc(value)


@dataclass
class CheckRun:
    """A report and how it was made: per-stage seconds and the input's own counts."""

    report: Report
    seconds: dict[str, float] = field(default_factory=dict)


def run_check(
    entries: LogInput | Iterable[Any],
    options: CheckOptions,
    pack: RulePack | None = None,
    probes: Sequence[ProbeResult] = (),
    history: History | None = None,
) -> CheckRun:
    """Check the entries; a source whose `truncated` is set after reading marks the report partial.

    With a `history`, each named service's facts are written to its store, and the window and baseline are
    judged from the store: the entries need only hold what the store does not (see `history.History`).

    Without `options.service`, every Cloud Run service in the input is checked on its own (its own window
    counts, baseline and findings); the report is then the worst service's, with every service's report in
    `services`, worst first. `probes` (health probes already made) join the report of the one service
    checked: each is a row, and a failing one a CRITICAL startup finding.
    """
    pack = pack if pack is not None else load_pack(options.rules)
    clock = _Stopwatch()
    source = entries if isinstance(entries, LogInput) else Entries(entries)
    events = build_events(entries, options.service)  # as given: a FileSource reads its parts in parallel
    clock.lap("events")
    where = source.name
    require_log_entries(events, where)
    warnings = [_source_warning(message) for message in source.warnings]
    table = events.table
    if options.until is None:
        table = without_future(events, datetime.now(UTC) + CLOCK_SKEW, warnings)
    until = options.until or after_newest(table)
    if history is not None:
        until = ceil_minute(until)  # the store keeps whole minutes
    window = Window(
        until - options.freshness,
        until,
        until - options.freshness - options.baseline,
        None if source.covers_window else _data_start(table),
    )
    # The input's; aggregate adds the window's (entries, echoes, duplicates...).
    totals: dict[str, Any] = {
        "skipped": events.totals.skipped,
        "truncated": source.truncated,
    }
    if history is not None:
        stats = getattr(entries, "stats", None)  # a live read's: what it pulled, not what a tail held
        pulled = getattr(stats, "entries", events.totals.entries)
        totals.update(read_totals(history, window, pulled, getattr(stats, "calls", None)))
    services = services_to_check(events, options.service, where)
    if len(services) == 1:
        report = _check_service(
            events, table, services[0], window, totals, warnings, pack, clock, options, probes, history
        )
        return CheckRun(report, clock.laps)
    if probes:
        raise ConfigError("health probes belong to one service: name it with --service", where or "--probe")
    reports = []
    names = table["service"].to_numpy()
    for name in services:
        mine = table[names == name].reset_index(drop=True)
        # The service's own folded-away entries; the input's coverage (the window) is every service's.
        part = replace(events, dropped=events.dropped_of(name))
        reports.append(
            _check_service(
                part, mine, name, window, dict(totals), warnings, pack, clock, options, (), history
            )
        )
    reports.sort(key=lambda r: (OVERALL_ORDER.index(r.status), r.context.service or ""))
    return CheckRun(replace(reports[0], services=reports), clock.laps)


# The overall status of several services: a CRITICAL one must page even when another cannot be checked.
OVERALL_ORDER: tuple[Status, ...] = ("CRITICAL", "DEGRADED", "UNKNOWN", "OK")


def _check_service(
    events: Events,
    table: pd.DataFrame,
    service: str | None,
    window: Window,
    totals: dict[str, Any],
    warnings: list[Reason],
    pack: RulePack,
    clock: _Stopwatch,
    options: CheckOptions,
    probes: Sequence[ProbeResult] = (),
    history: History | None = None,
) -> Report:
    """classify → aggregate and unknown errors → detect → verdict for one service's rows of the events
    table."""
    context = Context(service, events.project, region_of(table), window, totals, warnings)
    classified = classify(table, pack)
    clock.lap("classify")
    read_from = window.end
    seeds: list[ErrorSeed] = []
    if history is not None and service is not None:
        read_from = recorded_from(history, window, _data_start(table), bool(totals.get("truncated")))
        seeds = stored_error_seeds(history.store, service, pack, window, read_from)
    mined = mine_errors(classified, pack, window, seeds)
    clock.lap("unknown_errors")
    counted = None
    if history is not None and service is not None:
        gaps = record(
            history, service, classified, pack, window, events.dropped, read_from, mined.sightings()
        )
        warnings.extend(_gap_warning(start, end) for start, end in gaps)
        aggs = stored_aggregates(history.store, service, window)
        context = replace(context, window=aggs.window)  # the store's coverage, not this read's
        # Counted over the stored window and baseline: a template the baseline holds is not new.
        counted = stored_template_counts(history.store, service, aggs.window)
    else:
        aggs = aggregate(classified, pack, window, events.dropped)
    totals.update(aggs.totals)
    clock.lap("aggregate")
    if aggs.totals["entries"] == 0:
        silent = unknown_report(_silence(events, window), context)
        silent.probes = list(probes)
        return silent
    unknown = mined.judged(aggs.baseline_entries > 0, options.known_templates, counted)
    detection = detect(aggs, pack, unknown, multivariate=options.multivariate)
    detection.findings.extend(probe_findings(probes))
    clock.lap("detect")
    report = build_report(detection, context)
    report.probes = list(probes)
    report.timeline = build_timeline(aggs, report.findings)
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


def failed_report(reason: str, options: CheckOptions, probes: Sequence[ProbeResult] = ()) -> Report:
    """The UNKNOWN report of a check that could not be made (input that cannot be read, logs that could not
    be fetched), for a reader who must not keep an earlier status; with the probes made before it failed."""
    report = unknown_report(reason, failed_context(options))
    report.probes = list(probes)
    return report


def failed_context(options: CheckOptions) -> Context:
    """The context of a check or verification that could not be made: its service and window only."""
    until = options.until or datetime.now(UTC)
    start = until - options.freshness
    return Context(options.service, None, None, Window(start, until, start - options.baseline), {})


def require_log_entries(events: Events, where: str | None) -> None:
    """Values of which none is a log entry (numbers, an API's error object) are not logs that went quiet."""
    count = events.totals.entries
    if count and events.totals.skipped == count:
        what = "its one value is not" if count == 1 else f"none of its {count:,} values is"
        raise InputError(
            f"not a Cloud Logging export: {what} a log entry (a JSON object with a timestamp)", where
        )


def services_to_check(events: Events, wanted: str | None, where: str | None) -> list[str | None]:
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


def _source_warning(message: str) -> Reason:
    """A source's warning, keyed for the report's catalog when it is one the catalog words."""
    return (
        Reason("one_page_of_several", message=message) if message == PAGE_WARNING else Reason(message=message)
    )


def _gap_warning(start: datetime, end: datetime) -> Reason:
    """A part of the window or baseline that the state store lacks and this read did not fill."""
    shown = {
        "start": f"{start:%Y-%m-%d %H:%M}",
        "end": f"{end:%H:%M}" if start.date() == end.date() else f"{end:%Y-%m-%d %H:%M}",
    }
    return Reason(
        "state_gap",
        shown,
        f"no logs stored or read for {shown['start']}–{shown['end']} UTC (not filled: --max-entries, or the"
        " logs are gone): its counts are missing",
    )


def without_future(events: Events, latest: datetime, warnings: list[Reason]) -> pd.DataFrame:
    """The table without entries stamped after `latest` (a broken clock): they never move the window."""
    table = events.table
    late = table["ts"] > pd.Timestamp(latest).tz_convert(None)
    count = int(late.sum())
    if not count:
        return table
    events.totals.skipped += count
    newest = table.loc[late, "ts"].max()
    warnings.append(
        Reason(
            "future_entries",
            {"n": count, "newest": f"{newest:%Y-%m-%d %H:%M}"},
            f"{count:,} entries stamped in the future (up to {newest:%Y-%m-%d %H:%M} UTC) were skipped:"
            " a clock is wrong somewhere",
        )
    )
    return table[~late].reset_index(drop=True)


def _data_start(table: pd.DataFrame) -> datetime | None:
    """When the input's data begins (its oldest entry), for the coverage of the window and baseline."""
    if table.empty:
        return None
    oldest: datetime = table["ts"].min().to_pydatetime(warn=False).replace(tzinfo=UTC)
    return oldest


def after_newest(table: pd.DataFrame) -> datetime:
    if table.empty:
        return datetime.now(UTC)
    newest: datetime = table["ts"].max().to_pydatetime(warn=False).replace(tzinfo=UTC)
    return newest + timedelta(microseconds=1)


def region_of(table: pd.DataFrame) -> str | None:
    locations = table["location"][table["location"] != ""]
    return str(locations.mode().iloc[0]) if len(locations) else None


def _silence(events: Events, window: Window) -> Reason:
    """Why a check found nothing to judge (worded by the report's catalog, `reasons`)."""
    if events.totals.entries == 0:
        return Reason("no_entries")
    start, end, read = f"{window.start:%Y-%m-%d %H:%M}", f"{window.end:%H:%M}", events.totals.entries
    return Reason("silent_window", {"start": start, "end": end, "n": read})
