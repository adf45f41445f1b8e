"""A check's memory: what it read, as per-minute facts in the state store, and the aggregate tables back.

`minute_facts` turns a check's annotated events into `MinuteFacts`; `stored_aggregates` builds the tables
`detect` reads (`aggregate.Aggregates`) from the stored minutes of a window and its baseline, so a check
that read only what was new judges the same tables as one that read everything.

Each failure counts once, in the minute of its first line the read holds; a read that starts before the
minutes it replaces (`since` later than the data) leaves out the failures that began before them, which the
earlier read counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import orjson
import pandas as pd

from prodguardian.aggregate import (
    MAX_EXAMPLES,
    QUANTILES,
    Aggregates,
    Evidence,
    Window,
    annotate,
    background_callers,
    evidence,
    failure_units,
    recovered_minutes,
)
from prodguardian.classify import Classified, classify
from prodguardian.cloud import CloudSource, LateArrivals, ReadStats
from prodguardian.events import build_events
from prodguardian.folding import DUPLICATE, ECHO, MERGED, OTHER_RESOURCE
from prodguardian.rules import RulePack
from prodguardian.sketch import LatencySketch, slots_of
from prodguardian.state import (
    ERROR_GROUP_COLUMNS,
    FAILURE_MINUTE_COLUMNS,
    FOLDED_MINUTE_COLUMNS,
    MINUTE_COLUMNS,
    REVISION_COLUMNS,
    RULE_MINUTE_COLUMNS,
    SAMPLE_COLUMNS,
    TEMPLATE_MINUTE_COLUMNS,
    Cursor,
    MinuteFacts,
    ReadTail,
    StateStore,
)
from prodguardian.unknown_errors import ErrorSeed

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
# Entries reach Cloud Logging minutes late: a live read re-reads (and replaces) the minutes before its cursor.
LATENESS_MARGIN = timedelta(minutes=2)
# Of the margin, a read kept the entries it pulled and asks only for those received since the newest it
# saw, less this: an entry received a moment before another can become readable a moment after it.
RECEPTION_SKEW = timedelta(seconds=5)
# A request log is written when its request ends, stamped when it began: up to Cloud Run's longest request
# timeout later (a WebSocket session's). Those that arrive after their minute was stored add to its traffic.
LATE_REQUESTS = timedelta(hours=1)
EXAMPLE_LINES = 20  # of an error group, read for its example
MAX_CAPTURES = 10  # of one group in one minute: what the advice reads (memory limits...)
_NS_PER_MINUTE = 60_000_000_000
_STORED_REASONS = (MERGED, DUPLICATE, OTHER_RESOURCE)  # echoes have their own column in `minutes`
_RULE_KEYS = ["minute", "revision", "rule", "category", "grp", "caused_by"]
_TRAFFIC_COLUMNS = ["requests", "websocket", "failed_requests"]
ALL_CATEGORIES = ""  # the failure_minutes category that counts every failure once


@dataclass(frozen=True)
class History:
    """The store a check reads from and writes to, and what this read covers.

    `since`: the read holds every entry from this instant on (a live read from its cursor less the
    lateness margin); None when the input is complete from its oldest entry (a file). `cursor` names the
    query whose read cursor moves to the window's end.
    """

    store: StateStore
    since: datetime | None = None
    cursor: str | None = None
    read: TailedRead | None = None  # the live read, whose margin the store keeps for the next one


def floor_minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def ceil_minute(moment: datetime) -> datetime:
    floor = floor_minute(moment)
    return floor if floor == moment else floor + MINUTE


def cursor_key(project: str, region: str | None, service: str) -> str:
    """The read cursor's name: one per query (project, region, service)."""
    return f"logging:{project}:{region or '*'}:{service}"


def read_start(
    store: StateStore, service: str, key: str, baseline_start: datetime, margin: timedelta = LATENESS_MARGIN
) -> datetime:
    """Where a live read must start: the cursor less the lateness margin, or the first minute of the
    baseline that the store lacks if that is earlier (a gap while the machine was off), never before the
    baseline's start."""
    start = floor_minute(baseline_start)
    cursor = store.cursor(key)
    begin = start if cursor is None else max(start, floor_minute(cursor.to_pydatetime() - margin))
    gaps = store.missing(service, start, begin) if begin > start else []
    return gaps[0][0].to_pydatetime() if gaps else begin


def tailed_read(
    store: StateStore,
    key: str,
    since: datetime,
    until: datetime,
    open_read: Callable[[LateArrivals | None], CloudSource],
) -> TailedRead:
    """The live read of a check with a state store, from `since` to `until`: `open_read` makes the Cloud
    Logging read, told what the stored tail of the last read holds already when it can stand in."""
    tail = _usable_tail(store, key, since, until)
    return TailedRead.until(open_read(_late_arrivals(tail) if tail else None), tail, until)


def _usable_tail(store: StateStore, key: str, since: datetime, until: datetime) -> ReadTail | None:
    """The stored tail of the query's last read, if this read (from `since` to `until`) can take its place:
    it starts where the tail does (no gap to fill first) and does not end before the tail's end."""
    tail = store.read_tail(key)
    if tail is None or tail.start != since or tail.read_until > until:
        return None
    return tail


def _late_arrivals(tail: ReadTail) -> LateArrivals:
    """What a read that has `tail` must still ask for in the tail's span: what was received since."""
    return LateArrivals(tail.read_until, tail.received_until - RECEPTION_SKEW, tail.start - LATE_REQUESTS)


@dataclass
class TailedRead:
    """A live read from the cursor less the lateness margin that the last read's `tail` completes: the read
    asks only for the margin's late arrivals (`cloud.LateArrivals`), the tail gives the entries it holds, each
    once. It keeps the entries of its own margin (`tail()`), for the next read. The request logs stamped
    before the read's start that arrived since the last read are not entries of this read: they are set
    aside (`late`) to add to the stored minutes. A `LogInput`."""

    source: CloudSource
    stored: ReadTail | None
    keep_from: datetime  # the next read's start: this read's window end less the margin
    late: list[dict[str, Any]] = field(default_factory=list)
    _kept: list[dict[str, Any]] = field(default_factory=list)
    _received: datetime | None = None

    @classmethod
    def until(cls, source: CloudSource, stored: ReadTail | None, until: datetime) -> TailedRead:
        return cls(source, stored, floor_minute(ceil_minute(until) - LATENESS_MARGIN))

    def __iter__(self) -> Iterator[dict[str, Any]]:
        self._kept, self.late = [], []
        self._received = self.stored.received_until if self.stored else None
        overlap = self.stored.read_until if self.stored else None  # what the tail may hold is before it
        pulled = set()
        for entry in self.source:
            stamp, received = _instant(entry.get("timestamp")), _instant(entry.get("receiveTimestamp"))
            self._note_reception(received)
            if self.stored is not None and stamp is not None and stamp < self.stored.start:
                self._set_aside(entry, received, self.stored.received_until)
                continue
            self._keep(entry, stamp)
            if overlap is not None and stamp is not None and stamp < overlap:
                pulled.add(_identity(entry))
            yield entry
        if self.stored is None or self.source.truncated:  # a cut read lacks its oldest part: no tail
            return
        for entry in self.stored.entries:
            if _identity(entry) not in pulled:
                self._keep(entry, _instant(entry.get("timestamp")))
                yield entry

    def _set_aside(self, entry: dict[str, Any], received: datetime | None, last_seen: datetime) -> None:
        """A request log stamped before the read's start is a late one, to add to its minute if it arrived
        after all the last read saw (one received within the skew before may have been added already)."""
        if received is not None and received > last_seen:
            self.late.append(entry)

    def _keep(self, entry: dict[str, Any], stamp: datetime | None) -> None:
        """Keep the entry for the next read if it is in this read's margin."""
        if stamp is not None and stamp >= self.keep_from:
            self._kept.append(entry)

    def _note_reception(self, received: datetime | None) -> None:
        if received is not None and (self._received is None or received > self._received):
            self._received = received

    def cursor(self, key: str, end: datetime) -> Cursor:
        """The query's cursor moved to `end` by this read, with its tail and the followed tail's end."""
        return Cursor(key, end, self.tail(), self.stored.read_until if self.stored else None)

    def tail(self) -> ReadTail | None:
        """This read's margin, once it has been read whole (None: the next read pulls the margin again)."""
        if self.source.truncated or self._received is None:
            return None
        return ReadTail(self.keep_from, self.source.query.end, self._received, self._kept)

    @property
    def stats(self) -> ReadStats:
        return self.source.stats

    @property
    def name(self) -> str | None:
        return self.source.name

    @property
    def warnings(self) -> list[str]:
        return self.source.warnings

    @property
    def truncated(self) -> bool:
        return self.source.truncated

    @property
    def covers_window(self) -> bool:
        return self.source.covers_window


def _identity(entry: dict[str, Any]) -> Any:
    """What makes an entry itself: Cloud Logging's insertId and timestamp (de-duplication's key)."""
    insert_id = entry.get("insertId")
    if isinstance(insert_id, str) and insert_id:
        return (insert_id, str(entry.get("timestamp", "")))
    return orjson.dumps(entry, option=orjson.OPT_SORT_KEYS)


def _instant(value: Any) -> datetime | None:
    """An RFC 3339 timestamp of the API, or None when it is not one (data, never trusted)."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.astimezone(UTC) if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def record(
    history: History,
    service: str,
    classified: Classified,
    pack: RulePack,
    window: Window,
    dropped: pd.DataFrame,
    start: datetime,
    sightings: pd.DataFrame,
) -> list[tuple[datetime, datetime]]:
    """Write what this read found for `service` into the store: the minutes from `start` (`recorded_from`)
    up to the window's end, in one transaction. Returns the parts of the window and baseline the store still
    lacks (start, end), to warn about."""
    facts = minute_facts(classified, pack, dropped, start, window, sightings)
    read, cursor, late = history.read, None, None
    if history.cursor:
        cursor = read.cursor(history.cursor, window.end) if read else Cursor(history.cursor, window.end)
        late = late_traffic(read.late, service, pack) if read else None
    history.store.replace(service, start, window.end, facts, cursor, late)
    return _gaps(history.store, service, window, live=history.since is not None)


def late_traffic(entries: list[dict[str, Any]], service: str, pack: RulePack) -> pd.DataFrame | None:
    """What late request logs add to the traffic of their stored minutes (`StateStore.replace`'s `late`):
    requests, sessions, entries, latency, last request and success. Not failures: those were counted with
    the lines that arrived in time, and a failure counts once."""
    if not entries:
        return None
    events = build_events(entries, service)
    if events.table.empty:
        return None
    stamps = events.table["ts"]
    first = pd.Timestamp(stamps.min()).floor("min").tz_localize(UTC).to_pydatetime()
    end = pd.Timestamp(stamps.max()).floor("min").tz_localize(UTC).to_pydatetime() + MINUTE
    span = Window(first, end, first)
    minutes = minute_facts(classify(events.table, pack), pack, events.dropped, first, span).minutes
    return minutes.assign(websocket_failed=0)


def recorded_from(
    history: History, window: Window, data_start: datetime | None, truncated: bool = False
) -> datetime:
    """The first minute this read holds whole: `record` replaces the stored minutes from then on."""
    if history.since is not None:
        start = ceil_minute(history.since)
        if truncated and data_start is not None:  # reads go newest first: the oldest part is missing
            start = max(start, ceil_minute(data_start))
    elif data_start is not None:
        start = floor_minute(data_start)
    else:
        start = window.end
    return min(start, window.end)


def stored_error_seeds(
    store: StateStore, service: str, pack: RulePack, window: Window, read_from: datetime
) -> list[ErrorSeed]:
    """The unknown errors of the stored minutes this read does not hold (baseline and earlier window):
    each group's example, oldest first, to seed this read's template miner (`unknown_errors`)."""
    if read_from <= window.baseline_start:
        return []
    fallback = [rule.id for rule in pack.rules if rule.type == "fallback"]
    minutes = store.rule_minutes(service, window.baseline_start, read_from)
    minutes = minutes[minutes["rule"].isin(fallback) & (minutes["failures"] > 0)]
    if minutes.empty:
        return []
    firsts = minutes.groupby(["rule", "grp"])["minute"].min().sort_values(kind="stable")
    groups = store.error_groups(service)
    examples: dict[Any, str] = dict(
        zip(zip(groups["rule"], groups["grp"], strict=True), groups["example"], strict=True)
    )
    baseline_end = _unix_minute(window.start)
    return [
        ErrorSeed(examples[key], int(first) < baseline_end)
        for key, first in firsts.items()
        if examples.get(key)
    ]


def read_totals(history: History, window: Window, read_entries: int, calls: int | None) -> dict[str, Any]:
    """What this check read and what came from the store, for the report's totals and header."""
    since = ceil_minute(history.since) if history.since is not None else window.baseline_start
    stored = max(timedelta(0), min(since, window.start) - window.baseline_start)
    return {"read": {"calls": calls, "entries": read_entries, "baseline_from_state_hours": stored / HOUR}}


def _gaps(store: StateStore, service: str, window: Window, live: bool) -> list[tuple[datetime, datetime]]:
    """The parts of the window and baseline the store lacks. A file's data may just start later (the header
    says so); a live read was asked for all of it."""
    covered = store.coverage(service)
    first = floor_minute(window.baseline_start)
    if not live:
        first = max(first, covered[0][0].to_pydatetime()) if covered else window.end
    return [(a.to_pydatetime(), b.to_pydatetime()) for a, b in store.missing(service, first, window.end)]


def minute_facts(
    classified: Classified,
    pack: RulePack,
    dropped: pd.DataFrame,
    start: datetime,
    window: Window,
    sightings: pd.DataFrame | None = None,
) -> MinuteFacts:
    """The facts of the minutes [start, window.end): traffic, rules, failures, groups, revisions, and the
    evidence of each minute of the window in which a rule matched."""
    events, matches = annotate(classified, pack, window)
    first, stop = _unix_minute(start), _unix_minute(window.end)
    events = events.assign(minute=_minutes_of(events["ts"]))
    matches = failure_units(matches.assign(minute=events["minute"].to_numpy()[matches["row"].to_numpy()]))
    # A failure counts in the minute of its first line: once, whichever minutes its lines fall in.
    matches["unit_minute"] = matches.groupby("unit")["minute"].transform("min")
    inside = events[(events["minute"] >= first) & (events["minute"] < stop)]
    folded = dropped.assign(minute=_minutes_of(dropped["ts"]))
    folded = folded[(folded["minute"] >= first) & (folded["minute"] < stop)]
    return MinuteFacts(
        minutes=_minutes(inside, folded, matches, first, stop),
        rule_minutes=_rule_minutes(matches, first, stop),
        error_groups=_error_groups(matches, events, first, stop),
        revisions=_revisions(inside),
        samples=_samples(matches, events, max(first, _unix_minute(window.start)), stop),
        failure_minutes=_failure_minutes(matches, first, stop),
        folded_minutes=_folded_minutes(folded),
        template_minutes=_template_minutes(sightings, first, stop),
    )


def _template_minutes(sightings: pd.DataFrame | None, first: int, stop: int) -> pd.DataFrame:
    """Failures per minute and unknown-error template (`unknown_errors.MinedErrors.sightings`)."""
    if sightings is None or sightings.empty:
        return MinuteFacts().template_minutes
    minute = _minutes_of(sightings["ts"])
    inside = sightings[(minute >= first) & (minute < stop)].assign(
        minute=minute[(minute >= first) & (minute < stop)]
    )
    if inside.empty:
        return MinuteFacts().template_minutes
    out = inside.groupby(["minute", "template_id"]).size().rename("failures").reset_index()
    return out[list(TEMPLATE_MINUTE_COLUMNS)].astype({"minute": "int64", "failures": "int64"})


def stored_template_counts(store: StateStore, service: str, window: Window) -> dict[str, tuple[int, int]]:
    """Each unknown-error template's stored failures in the window and in its baseline."""
    stored = _with_period(store.template_minutes(service, window.baseline_start, window.end), window)
    sums = stored.groupby(["template_id", "period"])["failures"].sum()
    return {
        str(identity): (int(sums.get((identity, "window"), 0)), int(sums.get((identity, "baseline"), 0)))
        for identity in stored["template_id"].unique()
    }


def _minutes_of(ts: pd.Series) -> np.ndarray:
    return np.asarray(ts.to_numpy().astype("datetime64[ns]").astype("int64") // _NS_PER_MINUTE)


def _unix_minute(moment: datetime) -> int:
    return int(pd.Timestamp(moment).value // _NS_PER_MINUTE)


def _counted(matches: pd.DataFrame, column: str, first: int, stop: int) -> pd.DataFrame:
    return matches[(matches[column] >= first) & (matches[column] < stop)]


def _minutes(
    events: pd.DataFrame, folded: pd.DataFrame, matches: pd.DataFrame, first: int, stop: int
) -> pd.DataFrame:
    keys = ["minute", "revision"]
    counted = events[events["suppressed_by"].isna()]
    kind, status = counted["kind"], counted["status"].fillna(0)
    traffic = counted.assign(
        requests=kind == "request",
        websocket=kind == "websocket",
        failed_requests=(kind == "request") & (status >= 500),
    )
    failing = matches[matches["is_failure"] & (matches["category"] == "websocket")]
    websocket = _counted(failing, "unit_minute", first, stop).drop_duplicates(["unit", "revision"])
    ok, failed = _timed(counted)
    interactive = kind.isin(("request", "websocket"))
    interactions = counted[interactive]
    served = counted[interactive & (status < 500) & (status != 429)]
    out = pd.DataFrame(
        {
            **{column: traffic.groupby(keys)[column].sum() for column in _TRAFFIC_COLUMNS},
            "websocket_failed": websocket.groupby(["unit_minute", "revision"]).size().rename_axis(keys),
            "events": events.groupby(keys).size(),
            "suppressed": events.groupby(keys)["suppressed_by"].count(),
            # Folded-away lines carry no revision: they count in the minute's "" row.
            "echoes": _unrevisioned(folded, ECHO),
            "merged": _unrevisioned(folded, MERGED),
            "latency": _sketches(ok, keys),
            "failed_latency": _sketches(failed, keys),
            "last_success": _last_ns(served, keys),
            "last_request": _last_ns(interactions, keys),
        }
    )
    counts = [*_TRAFFIC_COLUMNS, "websocket_failed", "events", "suppressed", "echoes", "merged"]
    out[counts] = out[counts].fillna(0).astype("int64")
    out["entries"] = out["events"] + out["echoes"] + out["merged"]
    for column in ("latency", "failed_latency"):
        out[column] = [v if isinstance(v, bytes) else None for v in out[column]]
    out[["last_success", "last_request"]] = out[["last_success", "last_request"]].astype("Int64")
    out = out.rename_axis(keys).reset_index()
    return out[list(MINUTE_COLUMNS)].astype({"minute": "int64", "revision": str})


def _last_ns(events: pd.DataFrame, keys: list[str]) -> pd.Series:
    """When the last of the events began, per key (ns)."""
    return events.groupby(keys)["ts"].max().astype("datetime64[ns]").astype("int64")


def _unrevisioned(folded: pd.DataFrame, reason: str) -> pd.Series:
    per_minute = folded[folded["reason"] == reason].groupby("minute").size()
    index = pd.MultiIndex.from_arrays(
        [per_minute.index, [""] * len(per_minute)], names=["minute", "revision"]
    )
    return pd.Series(per_minute.to_numpy(), index=index, dtype="int64")


def _timed(requests: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The requests whose latency the latency tables read: interactive successes, and failures (as in
    `aggregate._latency`)."""
    timed = requests[(requests["kind"] == "request") & requests["latency_s"].notna()]
    status = timed["status"].fillna(0)
    failed = (status >= 500) | (status == 429)
    return timed[~failed & ~background_callers(timed["user_agent"])], timed[failed]


def _sketches(requests: pd.DataFrame, keys: list[str]) -> pd.Series:
    slots = slots_of(requests["latency_s"].to_numpy() * 1000)
    groups = requests.groupby(keys).indices
    index = pd.MultiIndex.from_tuples([tuple(k) for k in groups], names=keys) if groups else _no_keys(keys)  # type: ignore[arg-type]
    sketches = [LatencySketch.from_slots(slots[rows]).to_bytes() for rows in groups.values()]
    return pd.Series(sketches, index=index, dtype=object)


def _no_keys(keys: list[str]) -> pd.MultiIndex:
    return pd.MultiIndex.from_arrays([[] for _ in keys], names=keys)


def _rule_minutes(matches: pd.DataFrame, first: int, stop: int) -> pd.DataFrame:
    keyed = matches.assign(grp=matches["group"])
    keys = ["revision", "rule", "category", "grp", "caused_by"]
    failures = _counted(keyed, "unit_minute", first, stop).groupby(["unit_minute", *keys])["unit"].nunique()
    events = _counted(keyed, "minute", first, stop).groupby(["minute", *keys]).size()
    failures.index = failures.index.set_names(_RULE_KEYS)
    events.index = events.index.set_names(_RULE_KEYS)
    out = pd.DataFrame({"failures": failures, "events": events}).fillna(0).astype("int64").reset_index()
    return out[list(RULE_MINUTE_COLUMNS)] if len(out) else MinuteFacts().rule_minutes


def _failure_minutes(matches: pd.DataFrame, first: int, stop: int) -> pd.DataFrame:
    failing = _counted(matches[matches["is_failure"]], "unit_minute", first, stop)
    per_category = failing.drop_duplicates(["unit", "revision", "category"])
    every = failing.drop_duplicates(["unit", "revision"]).assign(category=ALL_CATEGORIES)
    both = pd.concat([per_category, every])
    out = both.groupby(["unit_minute", "revision", "category"]).size().rename("failures").reset_index()
    out = out.rename(columns={"unit_minute": "minute"}).astype({"minute": "int64", "failures": "int64"})
    return out[list(FAILURE_MINUTE_COLUMNS)] if len(out) else MinuteFacts().failure_minutes


def _folded_minutes(folded: pd.DataFrame) -> pd.DataFrame:
    kept = folded[folded["reason"].isin(_STORED_REASONS)]
    out = kept.groupby(["minute", "reason"]).size().rename("entries").reset_index()
    return out[list(FOLDED_MINUTE_COLUMNS)] if len(out) else MinuteFacts().folded_minutes


def _error_groups(matches: pd.DataFrame, events: pd.DataFrame, first: int, stop: int) -> pd.DataFrame:
    failing = _counted(matches[matches["is_failure"]], "minute", first, stop)
    if failing.empty:
        return MinuteFacts().error_groups
    ns = events["ts"].to_numpy().astype("datetime64[ns]").astype("int64")[failing["row"].to_numpy()]
    # A group's example is its first occurrence's: its first few lines tell it, not all of them.
    found = evidence(failing.groupby(["rule", "group"], sort=False).head(EXAMPLE_LINES), events)
    rows = []
    for (rule, grp), part in failing.assign(ns=ns).groupby(["rule", "group"], sort=False):
        examples = found[(str(rule), str(grp))].examples
        rows.append(
            (rule, grp, int(part["ns"].min()), int(part["ns"].max()), examples[0] if examples else "")
        )
    return pd.DataFrame(rows, columns=list(ERROR_GROUP_COLUMNS))


def _revisions(events: pd.DataFrame) -> pd.DataFrame:
    """Each revision's first and last traffic, and its creation when an audit entry of it was read."""
    named = events[events["revision"] != ""]
    ns = pd.Series(named["ts"].to_numpy().astype("datetime64[ns]").astype("int64"), index=named.index)
    audited = named["audited"].to_numpy(dtype=bool)
    spans = ns[~audited].groupby(named["revision"][~audited]).agg(["min", "max"])
    created = ns[audited].groupby(named["revision"][audited]).min().rename("created")
    out = spans.join(created, how="outer").rename_axis("revision").reset_index()
    out = pd.DataFrame(
        {
            "revision": out["revision"].astype(str),
            "first_traffic": out["min"].astype("Int64"),
            "last_traffic": out["max"].astype("Int64"),
            "created": out["created"].astype("Int64"),
        }
    )
    return out[list(REVISION_COLUMNS)] if len(out) else MinuteFacts().revisions


def _samples(matches: pd.DataFrame, events: pd.DataFrame, first: int, stop: int) -> pd.DataFrame:
    """One sample per minute and (rule, group) of the window: when and where it matched that minute; the
    group's first minute here also holds its evidence (examples, frame, trace), which is costly to find."""
    window = _counted(matches, "minute", first, stop)
    if window.empty:
        return MinuteFacts().samples
    proofs = evidence(window, events)
    rows = window["row"].to_numpy()
    matched = window.assign(
        ns=events["ts"].to_numpy().astype("datetime64[ns]").astype("int64")[rows],
        instance=events["instance"].to_numpy()[rows],
    )
    samples = []
    for (minute, rule, grp), part in matched.groupby(["minute", "rule", "group"], sort=True):
        payload: dict[str, Any] = {
            "first_seen": int(part["ns"].min()),
            "last_seen": int(part["ns"].max()),
            "revisions": sorted({str(r) for r in part["revision"] if r}),
            "instances": sorted({str(i) for i in part["instance"] if i is not None}),
            "captures": [c for c in part["captures"] if isinstance(c, dict)][:MAX_CAPTURES],
        }
        proof = proofs.pop((str(rule), str(grp)), None)
        if proof is not None:
            payload.update(
                examples=proof.examples, frame=proof.frame, exc_type=proof.exc_type, trace=proof.trace
            )
        samples.append((int(str(minute)), rule, grp, payload))
    return pd.DataFrame(samples, columns=list(SAMPLE_COLUMNS))


# -- the aggregate tables from the store ------------------------------------------------------------------


def stored_window(store: StateStore, service: str, window: Window) -> Window:
    """The window, its data starting where the store's coverage of its baseline and window starts."""
    covered = [a for a, b in store.coverage(service) if b > pd.Timestamp(window.baseline_start)]
    if not covered:
        return window
    start = max(covered[0].to_pydatetime(), window.baseline_start)
    return Window(
        window.start, window.end, window.baseline_start, start if start > window.baseline_start else None
    )


def stored_aggregates(store: StateStore, service: str, window: Window) -> Aggregates:
    """The tables `detect` reads, for `window` and its baseline, from the stored minutes alone."""
    window = stored_window(store, service, window)
    start, end = window.baseline_start, window.end
    minutes = _with_period(store.minutes(service, start, end), window)
    rules = _with_period(store.rule_minutes(service, start, end), window)
    failures = _with_period(store.failure_minutes(service, start, end), window)
    folded = _with_period(store.folded_minutes(service, start, end), window)
    in_window = minutes[minutes["period"] == "window"]
    return Aggregates(
        window=window,
        counts=_stored_counts(rules),
        traffic=minutes.groupby(["period", "bucket", "revision"], as_index=False, sort=False)[
            _TRAFFIC_COLUMNS
        ].sum(),
        latency=_stored_latency(minutes),
        hourly_latency=_stored_hourly_latency(minutes),
        evidence=_stored_evidence(store.samples(service), window, rules, _last_success(in_window, window)),
        failures=_failure_ids(failures),
        totals=_stored_totals(in_window, folded[folded["period"] == "window"]),
        baseline_entries=int(minutes.loc[minutes["period"] == "baseline", "entries"].sum()),
        revision_first_seen=_stored_first_seen(store.revisions(service), window),
        revision_first_failure=_stored_first_failure(rules),
        last_request=_last_request(in_window),
        minute_traffic=_aged(minutes, window)[["age", "requests", "websocket", "latency"]],
        minute_failures=_aged(failures, window)[["age", "category", "failures"]],
    )


def _aged(frame: pd.DataFrame, window: Window) -> pd.DataFrame:
    """Stored minutes as `Aggregates.minute_traffic` counts them: minutes before the window's end."""
    return frame.assign(age=_unix_minute(window.end) - 1 - frame["minute"].to_numpy())


def _with_period(frame: pd.DataFrame, window: Window) -> pd.DataFrame:
    minute = frame["minute"].to_numpy()
    start, end = _unix_minute(window.start), _unix_minute(window.end)
    return frame.assign(
        period=np.where(minute >= start, "window", "baseline"), bucket=(end - minute - 1) // 60
    )


def _stored_counts(rules: pd.DataFrame) -> pd.DataFrame:
    counts = rules.rename(columns={"grp": "group"})
    keys = ["period", "bucket", "revision", "rule", "category", "group", "caused_by"]
    return counts.groupby(keys, as_index=False, sort=False)[["failures", "events"]].sum()


def _stored_latency(minutes: pd.DataFrame) -> pd.DataFrame:
    rows = [
        _quantile_row(str(period), str(revision), "ok", LatencySketch.merged(part["latency"]))
        for (period, revision), part in minutes.groupby(["period", "revision"])
    ]
    for period, part in minutes.groupby("period"):
        rows.append(_quantile_row(str(period), "*", "ok", LatencySketch.merged(part["latency"])))
        rows.append(_quantile_row(str(period), "*", "failed", LatencySketch.merged(part["failed_latency"])))
    columns = ["period", "revision", "outcome", "samples", "p50", "p95", "p99", "sketch"]
    return pd.DataFrame([r for r in rows if r["samples"]], columns=columns)


def _quantile_row(period: str, revision: str, outcome: str, sketch: LatencySketch) -> dict[str, Any]:
    quantiles = {f"p{round(q * 100)}": sketch.quantile(q) for q in QUANTILES}
    return {
        "period": period,
        "revision": revision,
        "outcome": outcome,
        "samples": sketch.count,
        **quantiles,
        "sketch": sketch,
    }


def _stored_hourly_latency(minutes: pd.DataFrame) -> pd.DataFrame:
    """`aggregate`'s hourly p50, p95 and sketch from the hours' merged sketches."""
    rows = []
    for (period, bucket), part in minutes.groupby(["period", "bucket"]):
        sketch = LatencySketch.merged(part["latency"])
        if sketch.count:
            rows.append((period, bucket, sketch.quantile(0.5), sketch.quantile(0.95), sketch))
    return pd.DataFrame(rows, columns=["period", "bucket", "p50", "p95", "sketch"])


def _last_request(in_window: pd.DataFrame) -> datetime | None:
    """`Aggregates.last_request` from the window's stored minutes."""
    stamps = in_window["last_request"].dropna()
    return None if stamps.empty else pd.Timestamp(int(stamps.max()), tz="UTC").to_pydatetime(warn=False)


def _failure_ids(failures: pd.DataFrame) -> pd.DataFrame:
    """The distinct failures as `aggregate` gives them (period, unit, revision, category), with made-up
    unit ids: each period and revision numbers its failures 0..n-1, and a category's k failures take the
    first k of those numbers, so counting distinct units per period, category or revision gives the
    stored counts."""
    rows: list[tuple[str, int, str, str, str]] = []
    next_id = 0
    for (period, revision), part in failures.groupby(["period", "revision"]):
        by_category = {str(c): int(n) for c, n in part.groupby("category")["failures"].sum().items()}
        every = by_category.pop(ALL_CATEGORIES, 0)
        for category, n in by_category.items():
            rows.extend((str(period), next_id + i, str(revision), category, "") for i in range(n))
        rows.extend((str(period), next_id + i, str(revision), "", "") for i in range(every))
        next_id += every
    return pd.DataFrame(rows, columns=["period", "unit", "revision", "category", "rule"])


def _stored_totals(minutes: pd.DataFrame, folded: pd.DataFrame) -> dict[str, int]:
    reasons = folded.groupby("reason")["entries"].sum()
    return {
        "entries": int(minutes["entries"].sum()),
        "suppressed": int(minutes["suppressed"].sum()),
        "echoes": int(minutes["echoes"].sum()),
        "merged_lines": int(reasons.get(MERGED, 0)),
        "duplicates": int(reasons.get(DUPLICATE, 0)),
        "other_resources": int(reasons.get(OTHER_RESOURCE, 0)),
    }


def _naive_time(ns: int) -> datetime:
    moment: datetime = pd.Timestamp(ns, unit="ns").to_pydatetime(warn=False)
    return moment


def _stored_first_seen(revisions: pd.DataFrame, window: Window) -> dict[str, datetime]:
    """Each revision seen in the window or its baseline, dated by its first entry there: its creation
    (an audit entry) or its first traffic, as `aggregate` dates it from the entries."""
    start, end = pd.Timestamp(window.baseline_start).value, pd.Timestamp(window.end).value
    created = revisions["created"].where((revisions["created"] >= start) & (revisions["created"] < end))
    first = pd.concat([revisions["first_traffic"], created], axis=1).min(axis=1)
    last = pd.concat([revisions["last_traffic"], created], axis=1).max(axis=1)
    seen = (last >= start) & (first < end)
    return {
        str(r): _naive_time(int(ns)) for r, ns in zip(revisions["revision"][seen], first[seen], strict=True)
    }


def _stored_first_failure(rules: pd.DataFrame) -> dict[str, datetime]:
    failing = rules[rules["failures"] > 0]
    firsts = failing.groupby("revision")["minute"].min()
    return {str(r): _naive_time(int(m) * _NS_PER_MINUTE) for r, m in firsts.items()}


def _last_success(in_window: pd.DataFrame, window: Window) -> tuple[pd.Timestamp, datetime]:
    """`aggregate.last_success` from the window's stored minutes."""
    stamps = in_window["last_success"].dropna()
    return pd.Timestamp(int(stamps.max()) if len(stamps) else "NaT"), window.end  # NaT when nothing succeeded


def _stored_evidence(
    samples: pd.DataFrame, window: Window, rules: pd.DataFrame, served: tuple[pd.Timestamp, datetime]
) -> dict[tuple[str, str], Evidence]:
    """Each (rule, group)'s evidence in the window, merged from its minutes' samples (oldest first)."""
    start, end = _unix_minute(window.start), _unix_minute(window.end)
    kept = samples[(samples["minute"] >= start) & (samples["minute"] < end)].iloc[::-1]
    failures = rules[rules["period"] == "window"].groupby(["rule", "grp"])["failures"].sum()
    found = {}
    for (rule, grp), part in kept.groupby(["rule", "grp"], sort=False):
        proof = _merged_evidence(list(part["payload"]))
        count = int(failures.get((rule, grp), 0))
        proof.recovered_minutes = recovered_minutes(proof.first_seen, proof.last_seen, count, served)
        found[(str(rule), str(grp))] = proof
    return found


def _merged_evidence(payloads: list[dict[str, Any]]) -> Evidence:
    instances = sorted({i for p in payloads for i in p["instances"]})
    told = [p for p in payloads if "examples" in p]
    examples: list[str] = []
    for text in (e for p in sorted(told, key=lambda p: p["exc_type"] is None) for e in p["examples"]):
        if text not in examples and len(examples) < MAX_EXAMPLES:
            examples.append(text)
    return Evidence(
        first_seen=_naive_time(min(p["first_seen"] for p in payloads)),
        last_seen=_naive_time(max(p["last_seen"] for p in payloads)),
        revisions=sorted({r for p in payloads for r in p["revisions"]}),
        instances=len(instances),
        examples=examples,
        frame=_most_common(p["frame"] for p in told),
        exc_type=_most_common(p["exc_type"] for p in told),
        captures=[c for p in payloads for c in p["captures"]],
        trace=_most_common(p["trace"] for p in told),
        instance_ids=instances,
    )


def _most_common(values: Any) -> str | None:
    counts = Counter(v for v in values if v)
    return str(counts.most_common(1)[0][0]) if counts else None


@dataclass(frozen=True)
class SeasonalReference:
    """What is usual for the window's time of day, for statistics: the stored hours before the window that
    share its hours of day (`same_hour`) and, among them, its weekday too (`same_weekday`), rows as
    `StateStore.hourly` gives them."""

    same_hour: pd.DataFrame
    same_weekday: pd.DataFrame


def seasonal_reference(
    store: StateStore, service: str, window: Window, weeks: int = 4, tz: str = "UTC"
) -> SeasonalReference:
    """The window's hours of day, and its weekday, over the `weeks` weeks stored before the window."""
    start, end = floor_minute(window.start), ceil_minute(window.end)
    hours = store.hourly(service, start - timedelta(weeks=weeks), start, tz)
    slots = _local_slots(start, end, tz)
    same_hour = hours[hours["hour_of_day"].isin(slots["hour_of_day"])].reset_index(drop=True)
    local = pd.MultiIndex.from_frame(same_hour[["hour_of_day", "weekday"]])
    same_weekday = same_hour[local.isin(pd.MultiIndex.from_frame(slots))].reset_index(drop=True)
    return SeasonalReference(same_hour, same_weekday)


def _local_slots(start: datetime, end: datetime, tz: str) -> pd.DataFrame:
    """The hour of day and weekday of each hour [start, end) touches, in `tz`."""
    local = pd.date_range(start, end, freq="h", inclusive="left").tz_convert(tz)
    return pd.DataFrame({"hour_of_day": local.hour, "weekday": local.day_of_week})
