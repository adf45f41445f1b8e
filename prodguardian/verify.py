"""Deploy verification: a revision against the one before it, over the same length of time, judged by the
objectives (the incident's success table), its failures per category and its new error groups.

The verdict is PASS, FAIL or NOT ENOUGH DATA. Each revision's slice of the events goes through the same
stages as a check (classify → aggregate → detect), so a number here is the number a check would give.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from prodguardian.aggregate import Window, aggregate
from prodguardian.check import (
    CLOCK_SKEW,
    CheckOptions,
    after_newest,
    failed_context,
    region_of,
    require_log_entries,
    services_to_check,
    without_future,
)
from prodguardian.classify import classify
from prodguardian.detect import SPIKE_P_VALUE, Detection, Finding, ObjectiveResult, detect
from prodguardian.errors import ConfigError
from prodguardian.events import build_events
from prodguardian.probes import ProbeResult
from prodguardian.rules import RulePack, load_pack
from prodguardian.stats import poisson_upper_tail
from prodguardian.verdict import Context, rollback_command

# A revision is judged once it has served this many requests and WebSocket attempts in the compared time:
# below it, one failure moves a rate by more than the 1% objectives allow.
MIN_TRAFFIC = 100
# A category regressed when the new revision has at least this many failures of it, and that many are
# improbable (Poisson tail below SPIKE_P_VALUE) at the previous revision's rate for the same traffic.
MIN_REGRESSION = 3
VERDICTS = ("PASS", "FAIL", "NOT ENOUGH DATA")
EXIT_CODES = {"PASS": 0, "FAIL": 2, "NOT ENOUGH DATA": 3}
_TRAFFIC_KINDS = ("request", "websocket")


@dataclass(frozen=True)
class VerifyOptions:
    check: CheckOptions = field(default_factory=CheckOptions)
    revision: str | None = None  # default: the newest revision serving


@dataclass
class Side:
    """One revision over the compared time: what a check of only its entries found."""

    revision: str
    start: datetime
    end: datetime
    detection: Detection
    failures: dict[str, int]  # category → distinct failures

    @property
    def traffic(self) -> int:
        metrics = self.detection.metrics
        return metrics.requests + metrics.websocket_connections

    @property
    def groups(self) -> dict[str, Finding]:
        """The failure findings by fingerprint (rule and error group)."""
        return {fingerprint(f): f for f in self.detection.findings if f.kind == "failure" and f.count}


@dataclass
class CategoryChange:
    category: str
    before: int | None  # None: no previous revision to compare with
    after: int
    before_share: float | None
    after_share: float | None
    regressed: bool


@dataclass
class ObjectiveChange:
    before: ObjectiveResult | None
    after: ObjectiveResult


@dataclass
class Verification:
    verdict: str
    context: Context
    new: Side | None
    old: Side | None
    same_hours: bool  # both revisions served at the same time (a traffic split), else old ran before
    objectives: list[ObjectiveChange] = field(default_factory=list)
    categories: list[CategoryChange] = field(default_factory=list)
    new_groups: list[Finding] = field(default_factory=list)
    probes: list[ProbeResult] = field(default_factory=list)
    reason: str | None = None  # NOT ENOUGH DATA: why (a catalog key under verify.reasons)
    error: str | None = None  # reason `failed`: the error that stopped the verification
    rollback: str | None = None  # FAIL: the command back to the previous revision
    rollback_helps: bool = False  # the previous revision met what the new one misses

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]


def fingerprint(finding: Finding) -> str:
    return f"{finding.rule}:{finding.group or ''}"


def new_error_groups(before: Iterable[str], after: Iterable[str]) -> list[str]:
    """Fingerprints seen under the new revision and never under the previous one, in the new one's order."""
    known = set(before)
    return [group for group in after if group not in known]


def run_verify(
    entries: Iterable[Any],
    options: VerifyOptions,
    pack: RulePack | None = None,
    probes: Iterable[ProbeResult] = (),
) -> Verification:
    """Verify the deploy of `options.revision` (default: the newest revision serving)."""
    pack = pack if pack is not None else load_pack(options.check.rules)
    events = build_events(entries, options.check.service)
    where = getattr(entries, "name", None)
    require_log_entries(events, where)
    warnings = list(getattr(entries, "warnings", ()))
    table = events.table
    if options.check.until is None:
        table = without_future(events, datetime.now(UTC) + CLOCK_SKEW, warnings)
    until = options.check.until or after_newest(table)
    services = services_to_check(events, options.check.service, where)
    if len(services) > 1:
        held = ", ".join(map(str, services))
        raise ConfigError(f"verify checks one service: name it; the input holds {held}", where or "--service")
    service = services[0]
    if service:
        table = table[table["service"].to_numpy() == service]
    context = Context(
        service, events.project, region_of(table), _context_window(until, options), {}, warnings
    )
    sides = _compare(table, until, options, pack)
    if sides is None:
        return Verification(
            "NOT ENOUGH DATA", context, None, None, False, probes=list(probes), reason="no_revision"
        )
    return _judged(context, *sides, list(probes))


def failed_verification(
    error: str, options: VerifyOptions, probes: Iterable[ProbeResult] = ()
) -> Verification:
    """The NOT ENOUGH DATA verdict of a verification that could not be made (input that cannot be read, logs
    that could not be fetched), for a reader who must not keep an earlier verdict."""
    context = failed_context(options.check)
    return Verification(
        "NOT ENOUGH DATA", context, None, None, False, probes=list(probes), reason="failed", error=error
    )


def _context_window(until: datetime, options: VerifyOptions) -> Window:
    start = until - options.check.freshness
    return Window(start, until, start)


def _compare(
    table: pd.DataFrame, until: datetime, options: VerifyOptions, pack: RulePack
) -> tuple[Side, Side | None, bool] | None:
    """The revision's side, the previous revision's (None when there is none) and whether they cover the
    same hours; None when no revision served in the window."""
    served = _served(table, until)
    name = options.revision or _newest_serving(served, until - options.check.freshness)
    if name is None:
        return None
    if name not in served:
        known = ", ".join(served) or "none"
        raise ConfigError(f"--revision: no traffic of {name!r} in the input; revisions serving: {known}")
    first, last = served[name]
    end = min(until, last + timedelta(microseconds=1))
    start = max(first, end - options.check.freshness)
    new = _side(table, name, start, end, pack)
    previous = _previous(served, first)
    if previous is None:
        return new, None, False
    old = _side(table, previous, start, end, pack)
    same_hours = old.traffic >= MIN_TRAFFIC
    if not same_hours:  # the previous revision served before the deploy: the same length of time before it
        old = _side(table, previous, first - (end - start), first, pack)
    return new, old, same_hours


def _served(table: pd.DataFrame, until: datetime) -> dict[str, tuple[datetime, datetime]]:
    """Each revision's first entry and last request (or WebSocket attempt) before `until`, oldest first."""
    before = table[table["ts"].to_numpy() < _naive(until)]
    traffic = before[before["kind"].isin(_TRAFFIC_KINDS) & (before["revision"] != "")]
    last = traffic.groupby("revision")["ts"].max()
    first = before[before["revision"].isin(last.index)].groupby("revision")["ts"].min()
    spans = {str(rev): (_aware(first[rev]), _aware(last[rev])) for rev in last.index}
    return dict(sorted(spans.items(), key=lambda item: item[1][0]))


def _newest_serving(served: dict[str, tuple[datetime, datetime]], since: datetime) -> str | None:
    serving = [name for name, (_, last) in served.items() if last >= since]
    return serving[-1] if serving else None


def _previous(served: dict[str, tuple[datetime, datetime]], first: datetime) -> str | None:
    older = [name for name, (start, _) in served.items() if start < first]
    return older[-1] if older else None


def _side(table: pd.DataFrame, revision: str, start: datetime, end: datetime, pack: RulePack) -> Side:
    ts = table["ts"].to_numpy()
    rows = table[(table["revision"].to_numpy() == revision) & (ts >= _naive(start)) & (ts < _naive(end))]
    window = Window(start, end, start)
    aggs = aggregate(classify(rows.reset_index(drop=True), pack), pack, window)
    units = aggs.failures[aggs.failures["period"] == "window"]
    failures = {str(k): int(v) for k, v in units.groupby("category")["unit"].nunique().items()}
    return Side(revision, start, end, detect(aggs, pack), failures)


def _judged(
    context: Context, new: Side, old: Side | None, same_hours: bool, probes: list[ProbeResult]
) -> Verification:
    """The comparison's tables and its verdict."""
    before = {r.objective.id: r for r in old.detection.objectives} if old else {}
    result = Verification("PASS", context, new, old, same_hours, probes=probes)
    result.objectives = [ObjectiveChange(before.get(r.objective.id), r) for r in new.detection.objectives]
    result.categories = _categories(new, old)
    if old is not None:
        result.new_groups = [new.groups[g] for g in new_error_groups(old.groups, new.groups)]
    # Harm shows at any traffic (a regression's test weighs the counts, a probe fails or not); a missed
    # rate objective, or health, needs MIN_TRAFFIC to mean anything.
    harmed = any(c.regressed for c in result.categories) or any(not p.ok for p in probes)
    if new.traffic < MIN_TRAFFIC and not harmed:
        result.verdict, result.reason = "NOT ENOUGH DATA", "little_traffic"
        return result
    if not harmed and all(c.after.met is not False for c in result.objectives):
        return result
    result.verdict = "FAIL"
    if old is not None and context.service:
        result.rollback = rollback_command(context, old.revision)
        result.rollback_helps = old.traffic > 0 and all(
            c.before is not None and c.before.met is not False
            for c in result.objectives
            if c.after.met is False
        )
    return result


def _categories(new: Side, old: Side | None) -> list[CategoryChange]:
    changes = []
    for category in sorted(set(new.failures) | set(old.failures if old else ())):
        after = new.failures.get(category, 0)
        before = old.failures.get(category, 0) if old else None
        before_share = _share(before, old.traffic) if old and before is not None else None
        regressed = (
            old is not None
            and old.traffic >= MIN_TRAFFIC
            and before_share is not None
            and after >= MIN_REGRESSION
            and poisson_upper_tail(after, before_share * new.traffic) < SPIKE_P_VALUE
        )
        changes.append(
            CategoryChange(category, before, after, before_share, _share(after, new.traffic), regressed)
        )
    return changes


def _share(count: int, traffic: int) -> float | None:
    return count / traffic if traffic else None


def wait_for_traffic(
    attempt: Callable[[], Verification],
    wait: timedelta,
    *,
    interval: timedelta = timedelta(minutes=1),
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    sleep: Callable[[float], None] | None = None,
) -> Verification:
    """Verify again every `interval` while there is not enough data, until `wait` has passed."""
    pause = sleep or time.sleep
    deadline = clock() + wait
    result = attempt()
    while result.verdict == "NOT ENOUGH DATA" and clock() < deadline:
        pause(min(interval, deadline - clock()).total_seconds())
        result = attempt()
    return result


def _naive(moment: datetime) -> pd.Timestamp:
    return pd.Timestamp(moment).tz_convert(None)


def _aware(stamp: pd.Timestamp) -> datetime:
    moment: datetime = stamp.to_pydatetime(warn=False).replace(tzinfo=UTC)
    return moment
