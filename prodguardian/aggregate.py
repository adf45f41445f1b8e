"""Aggregate classified events into tidy tables: the only input of the detector.

`counts` holds period × hour bucket × revision × rule (× group, × root cause) → failures and events;
`traffic` holds period × bucket × revision → requests and WebSocket attempts; `latency` holds quantiles;
`evidence` holds, per rule and group in the window, what a report shows as proof.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from prodguardian.classify import Classified
from prodguardian.folding import DROP_REASONS, DUPLICATE, ECHO, MERGED, OTHER_RESOURCE
from prodguardian.rules import RulePack
from prodguardian.sketch import LatencySketch, slots_of
from prodguardian.texts import per_distinct_text

QUANTILES = (0.5, 0.95, 0.99)
# Data that starts this little after a period's start still covers it (the first request came minutes in).
COVERAGE_SLACK = timedelta(minutes=5)
_SCOPE_COLUMNS = (
    "ts",
    "kind",
    "status",
    "latency_s",
    "user_agent",
    "revision",
    "suppressed_by",
    "period",
    "bucket",
)
# A quiet this many times the failures' mean spacing: exp(-5) < 1% if they were still arriving at that pace.
RECOVERY_SPACINGS = 5
NS_PER_MINUTE = 60_000_000_000
MAX_EXAMPLES = 3
MAX_EXAMPLE_CHARS = 300
# Google's callers that run work in the background: judged by success and timeouts, not by how fast they are.
BACKGROUND_AGENTS = re.compile(
    r"Google-Cloud-Scheduler|Google-Cloud-Tasks|APIs-Google|CloudPubSub|Google-Cloud-Eventarc|"
    r"GoogleCloudWorkflows|Google-Cloud-Workflows"
)


@dataclass(frozen=True)
class Window:
    """The checked window [start, end) and the baseline [baseline_start, start) before it.

    `data_start` is where the input's data begins when that is later than the baseline's start (an export
    cut by `--limit`, a service born mid-window): rates are then per hour of the time the data covers.
    """

    start: datetime
    end: datetime
    baseline_start: datetime
    data_start: datetime | None = None

    def _covered(self, start: datetime) -> datetime:
        late = self.data_start is not None and self.data_start > start + COVERAGE_SLACK
        return self.data_start if late and self.data_start else start

    @property
    def covered_start(self) -> datetime:
        """The start of the part of the window that the data covers."""
        return min(self._covered(self.start), self.end)

    @property
    def hours(self) -> float:
        """Hours of the window that the data covers."""
        return max((self.end - self.covered_start) / timedelta(hours=1), 1 / 60)  # a minute at least

    @property
    def requested_hours(self) -> float:
        return (self.end - self.start) / timedelta(hours=1)

    @property
    def partial(self) -> bool:
        return self.covered_start > self.start

    @property
    def baseline_covered_start(self) -> datetime:
        return min(self._covered(self.baseline_start), self.start)

    @property
    def baseline_hours(self) -> float:
        """Hours of the baseline that the data covers."""
        return (self.start - self.baseline_covered_start) / timedelta(hours=1)

    @property
    def baseline_partial(self) -> bool:
        return self.baseline_covered_start > self.baseline_start


@dataclass
class Evidence:
    first_seen: datetime
    last_seen: datetime
    revisions: list[str]
    instances: int
    examples: list[str]
    frame: str | None
    exc_type: str | None
    captures: list[dict[str, str]]
    trace: str | None
    instance_ids: list[str] = field(default_factory=list)  # what `instances` counts: stored evidence merges
    # Minutes from the last failure to the window's end once the failures have stopped: requests succeeded
    # after the last one, and the quiet since is at least RECOVERY_SPACINGS times their mean spacing (still
    # going at their own pace, so long a quiet would have under a 1% chance). 0 while they go on.
    recovered_minutes: float = 0.0


@dataclass
class Aggregates:
    window: Window
    counts: pd.DataFrame
    traffic: pd.DataFrame
    latency: pd.DataFrame
    evidence: dict[tuple[str, str], Evidence]
    failures: pd.DataFrame  # period, unit (one failure), revision, category, rule: distinct failure units
    totals: dict[str, int] = field(default_factory=dict)  # the window's: see `_totals`
    baseline_entries: int = 0
    revision_first_seen: dict[str, datetime] = field(default_factory=dict)
    revision_first_failure: dict[str, datetime] = field(default_factory=dict)
    last_request: datetime | None = None  # the window's last counted request or WebSocket attempt (aware)
    hourly_latency: pd.DataFrame | None = None  # period, bucket → p50, p95 (ms), sketch
    # Per minute of the baseline and window (`age`: whole minutes before the window's end), for the
    # report's timelines: requests, WebSocket attempts and the latency sketch (bytes) of `_latency`'s
    # requests; and distinct failures per category ("" counting each failure once), in its first minute.
    minute_traffic: pd.DataFrame | None = None  # age, requests, websocket, latency (rows may repeat an age)
    minute_failures: pd.DataFrame | None = None  # age, category, failures


def aggregate(
    classified: Classified, pack: RulePack, window: Window, dropped: pd.DataFrame | None = None
) -> Aggregates:
    """`dropped`: the entries events folded away (`Events.dropped`: ts, service, reason)."""
    events, matches = annotate(classified, pack, window)
    period = events["period"].to_numpy()
    # Only the columns the traffic, latency and totals tables read: a boolean selection copies every column.
    in_scope = events[list(_SCOPE_COLUMNS)][period != ""]
    matches = matches[matches["period"] != ""]
    counted = in_scope[in_scope["suppressed_by"].isna()]
    return Aggregates(
        window=window,
        counts=_counts(matches),
        traffic=_traffic(counted),
        latency=_latency(counted),
        hourly_latency=_hourly_latency(counted),
        evidence=evidence(
            matches[matches["period"] == "window"], events, last_success(counted, events, window)
        ),
        failures=_distinct_failures(matches),
        totals=_totals(in_scope, dropped, window),
        baseline_entries=int((in_scope["period"] == "baseline").sum()),
        revision_first_seen=_first_seen(events),
        revision_first_failure=_first_failure(matches, events),
        last_request=_last_request(events[period == "window"]),
        minute_traffic=_minute_traffic(counted, window),
        minute_failures=_minute_failures(matches, events, window),
    )


def annotate(classified: Classified, pack: RulePack, window: Window) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The events with their period and hour bucket, and the matches with theirs, their revision, their
    failure and the root cause behind them (see `_with_roots`)."""
    events = classified.events
    age_ns = _naive(window.end).value - events["ts"].to_numpy().astype("datetime64[ns]").astype("int64")
    events = events.assign(period=periods(events["ts"], window), bucket=age_ns // 3_600_000_000_000)
    return events, _with_roots(classified.matches, events, pack)


def _last_request(window_events: pd.DataFrame) -> datetime | None:
    """When the window's last request (or WebSocket attempt) that a suppress rule did not take began."""
    served = window_events[
        window_events["kind"].isin(("request", "websocket")) & window_events["suppressed_by"].isna()
    ]
    return None if served.empty else served["ts"].max().tz_localize("UTC").to_pydatetime(warn=False)


def _first_seen(events: pd.DataFrame) -> dict[str, datetime]:
    firsts = events.groupby("revision")["ts"].min()
    return {str(revision): stamp.to_pydatetime(warn=False) for revision, stamp in firsts.items()}


def _first_failure(matches: pd.DataFrame, events: pd.DataFrame) -> dict[str, datetime]:
    """When each revision first failed (a failure rule's match), over the window and the baseline."""
    failing = matches[matches["is_failure"]]
    if failing.empty:
        return {}
    stamps = events["ts"].to_numpy()[failing["row"].to_numpy()]
    firsts = pd.Series(stamps, index=failing["revision"].to_numpy()).groupby(level=0).min()
    return {str(rev): pd.Timestamp(stamp).to_pydatetime(warn=False) for rev, stamp in firsts.items()}


def _naive(moment: datetime) -> pd.Timestamp:
    """The events table holds naive UTC times; window bounds are aware."""
    stamp = pd.Timestamp(moment)
    return stamp.tz_convert(None) if stamp.tzinfo else stamp


def periods(ts: pd.Series, window: Window) -> np.ndarray:
    """Each time's period: "window", "baseline", or "" (before the baseline)."""
    start, end, base = (_naive(t).to_datetime64() for t in (window.start, window.end, window.baseline_start))
    values = ts.to_numpy()
    in_window = (values >= start) & (values < end)
    in_baseline = (values >= base) & (values < start)
    return np.where(in_window, "window", np.where(in_baseline, "baseline", ""))


def _with_roots(matches: pd.DataFrame, events: pd.DataFrame, pack: RulePack) -> pd.DataFrame:
    """Each match with its event's period, bucket, revision and failure, and the root cause behind it.

    Within one failure, a rule whose category another matched rule `causes` is that rule's symptom: the
    failure is still counted for both, but the report shows it under its root cause, counted once.
    """
    rows = matches["row"].to_numpy()
    out = matches.assign(
        period=events["period"].to_numpy()[rows],
        bucket=events["bucket"].to_numpy()[rows],
        revision=events["revision"].to_numpy()[rows],
        failure=events["failure"].to_numpy()[rows],
        group=matches["group"].fillna(""),
    )
    out = _one_rule_per_category(out, pack)
    causes: dict[str, set[str]] = {r.id: set(r.causes) for r in pack.rules}
    failing = out[out["failure"] >= 0]
    by_failure = failing.groupby("failure")[["rule", "category"]].agg(list)
    roots: dict[tuple[int, str], str] = {}
    for failure, rules, categories in by_failure.itertuples():
        members = dict(zip(rules, categories, strict=True))
        for rule in members:
            root = _root_cause(rule, members, causes)
            if root:
                roots[(failure, rule)] = root
    out["caused_by"] = [roots.get((f, r), "") for f, r in zip(out["failure"], out["rule"], strict=True)]
    out["is_failure"] = out["rule"].isin([r.id for r in pack.rules if r.is_failure])
    return out


def _one_rule_per_category(matches: pd.DataFrame, pack: RulePack) -> pd.DataFrame:
    """Within one failure, lines matched by several rules of one category count for the first rule only."""
    order = {r.id: i for i, r in enumerate(pack.rules)}
    linked = matches[
        (matches["failure"] >= 0) & matches["rule"].isin([r.id for r in pack.rules if r.is_failure])
    ]
    if linked.empty:
        return matches
    rank = linked["rule"].map(order)
    first = rank.groupby([linked["failure"], linked["category"]]).transform("min")
    winner = linked["rule"].where(rank == first)
    winner = winner.groupby([linked["failure"], linked["category"]]).transform("first")
    relabelled = matches.copy()
    relabelled.loc[linked.index, "rule"] = winner
    return relabelled


def _root_cause(rule: str, members: dict[str, str], causes: dict[str, set[str]]) -> str | None:
    """The rule of this failure that causes `rule`'s category, preferring one that nothing here causes."""
    category = members[rule]
    candidates = [
        other
        for other, other_category in members.items()
        if other != rule and category in causes[other] and other_category not in causes[rule]
    ]
    for candidate in candidates:
        if not any(members[candidate] in causes[o] for o in members if o != candidate):
            return candidate
    return candidates[0] if candidates else None


def failure_units(matches: pd.DataFrame) -> pd.DataFrame:
    """Matches with the failure they count towards (an event outside any failure counts on its own)."""
    return matches.assign(unit=np.where(matches["failure"] >= 0, matches["failure"], -1 - matches["row"]))


def _distinct_failures(matches: pd.DataFrame) -> pd.DataFrame:
    keyed = failure_units(matches[matches["is_failure"]])
    return keyed[["period", "unit", "revision", "category", "rule"]].drop_duplicates(ignore_index=True)


def _counts(matches: pd.DataFrame) -> pd.DataFrame:
    """Failures (distinct, events without a failure counted one each) and events per key."""
    keyed = failure_units(matches)
    keys = ["period", "bucket", "revision", "rule", "category", "group", "caused_by"]
    grouped = keyed.groupby(keys, sort=False)
    counts = grouped.agg(failures=("unit", "nunique"), events=("row", "size")).reset_index()
    return counts


def _traffic(counted: pd.DataFrame) -> pd.DataFrame:
    requests = counted[counted["kind"].isin(("request", "websocket"))]
    frame = requests.assign(
        is_request=requests["kind"] == "request",
        is_websocket=requests["kind"] == "websocket",
        failed_request=(requests["kind"] == "request") & (requests["status"].fillna(0) >= 500),
    )
    grouped = frame.groupby(["period", "bucket", "revision"], sort=False)
    return grouped.agg(
        requests=("is_request", "sum"),
        websocket=("is_websocket", "sum"),
        failed_requests=("failed_request", "sum"),
    ).reset_index()


def _latency(counted: pd.DataFrame) -> pd.DataFrame:
    """Quantiles of the latency of interactive HTTP requests that succeeded, per period (and per revision),
    and their distribution (a `LatencySketch`), for the test against the baseline's.

    WebSocket sessions never enter (their latency is the session's length); nor do failed requests (a
    timeout's latency is the timeout, counted as a failure already), nor background callers (Cloud
    Scheduler, Pub/Sub push, Cloud Tasks, Eventarc), whose endpoints may take minutes by design. The failed
    requests' latency is reported apart (`outcome` "failed", all revisions).
    """
    timed, failed = _timed(counted)
    requests = timed[~failed & ~background_callers(timed["user_agent"])]
    rows = []
    groups = [
        *(("ok", key, group) for key, group in requests.groupby(["period", "revision"])),
        *(("ok", key, group) for key, group in _all_revisions(requests)),
        *(("failed", key, group) for key, group in _all_revisions(timed[failed])),
    ]
    for outcome, (period, revision), group in groups:
        values = group["latency_s"].to_numpy() * 1000
        quantiles = np.quantile(values, QUANTILES) if len(values) else [np.nan] * len(QUANTILES)
        rows.append(
            {
                "period": period,
                "revision": revision,
                "outcome": outcome,
                "samples": len(values),
                **{f"p{round(q * 100)}": float(v) for q, v in zip(QUANTILES, quantiles, strict=True)},
                "sketch": LatencySketch.from_values(values),
            }
        )
    columns = ["period", "revision", "outcome", "samples", "p50", "p95", "p99", "sketch"]
    return pd.DataFrame(rows, columns=columns)


def _timed(counted: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """The HTTP requests with a latency, and which of them failed (5xx, 429)."""
    timed = counted[(counted["kind"] == "request") & counted["latency_s"].notna()]
    status = timed["status"].fillna(0)
    return timed, (status >= 500) | (status == 429)


def _hourly_latency(counted: pd.DataFrame) -> pd.DataFrame:
    """p50, p95 and the sketch of the `_latency` requests (interactive, successful) per period and hour
    bucket: the hours a seasonal reference compares with."""
    timed, failed = _timed(counted)
    requests = timed[~failed & ~background_callers(timed["user_agent"])]
    grouped = (requests["latency_s"] * 1000).groupby([requests["period"], requests["bucket"]])
    sketches = [LatencySketch.from_values(ms.to_numpy()) for _, ms in grouped]
    hourly = pd.DataFrame({"p50": grouped.quantile(0.5), "p95": grouped.quantile(0.95)})
    return hourly.assign(sketch=pd.Series(sketches, index=hourly.index, dtype=object)).reset_index()


def minute_age(ts: pd.Series | np.ndarray, window: Window) -> np.ndarray:
    """Whole minutes from each time to the window's end (0: the window's last minute)."""
    ns = np.asarray(ts).astype("datetime64[ns]").astype("int64")
    return np.asarray((_naive(window.end).value - 1 - ns) // NS_PER_MINUTE)


def _minute_traffic(counted: pd.DataFrame, window: Window) -> pd.DataFrame:
    kind = counted["kind"]
    age = minute_age(counted["ts"], window)
    frame = pd.DataFrame({"age": age, "requests": kind == "request", "websocket": kind == "websocket"})
    traffic = frame.groupby("age")[["requests", "websocket"]].sum()
    timed, failed = _timed(counted)
    served = timed[~failed & ~background_callers(timed["user_agent"])]
    slots = slots_of(served["latency_s"].to_numpy() * 1000)
    ages = minute_age(served["ts"], window)
    groups = pd.Series(ages).groupby(ages).indices
    sketches = {age: LatencySketch.from_slots(slots[rows]).to_bytes() for age, rows in groups.items()}
    traffic["latency"] = [sketches.get(age) for age in traffic.index]
    return traffic.rename_axis("age").reset_index()


def _minute_failures(matches: pd.DataFrame, events: pd.DataFrame, window: Window) -> pd.DataFrame:
    """Distinct failures per minute (of their first line) and category, and over every category ("")."""
    failing = failure_units(matches[matches["is_failure"]])
    failing = failing.assign(age=minute_age(events["ts"].to_numpy()[failing["row"].to_numpy()], window))
    failing["age"] = failing.groupby("unit")["age"].transform("max")  # the oldest line: the first
    per_category = failing.drop_duplicates(["unit", "category"])
    every = failing.drop_duplicates("unit").assign(category="")
    both = pd.concat([per_category, every])
    return both.groupby(["age", "category"]).size().rename("failures").reset_index()


def background_callers(user_agents: pd.Series) -> np.ndarray:
    """Which requests come from Google's background callers, by user agent (one test per distinct agent)."""
    agents = user_agents.to_numpy(dtype=object)
    return per_distinct_text(agents, np.ones(len(agents), dtype=bool), BACKGROUND_AGENTS.search)


def _all_revisions(requests: pd.DataFrame) -> list[tuple[tuple[str, str], pd.DataFrame]]:
    return [((str(period), "*"), group) for period, group in requests.groupby("period")]


def last_success(
    counted: pd.DataFrame, events: pd.DataFrame, window: Window
) -> tuple[pd.Timestamp, datetime]:
    """When the window's last request or WebSocket session that succeeded started, and the window's end."""
    status = counted["status"].fillna(0)
    served = (
        (counted["period"] == "window")
        & counted["kind"].isin(("request", "websocket"))
        & (status < 500)
        & (status != 429)
    )
    stamps = events["ts"].loc[served[served].index]
    return pd.Timestamp(stamps.max()), window.end  # NaT when nothing succeeded


def evidence(
    window_matches: pd.DataFrame, events: pd.DataFrame, served: tuple[pd.Timestamp, datetime] | None = None
) -> dict[tuple[str, str], Evidence]:
    """What a report shows as proof of each (rule, group) these matches hold; `recovered_minutes` needs
    `served` (see `last_success`)."""
    found = {}
    failures = events["failure"].to_numpy()
    traced = events["exc_type"].notna().to_numpy()
    for (rule, group), part in window_matches.groupby(["rule", "group"], sort=False):
        rows = events.loc[part["row"].to_numpy()]
        # The stack trace a failure's other lines hold says why (a crash after an ImportError).
        units = part["failure"].to_numpy()
        traces = events[traced & np.isin(failures, units[units >= 0])]
        told = rows if rows["exc_type"].notna().any() or traces.empty else pd.concat([traces, rows])
        instances = sorted({str(i) for i in rows["instance"].dropna() if i != ""})  # an audit event has none
        found[(str(rule), str(group))] = Evidence(
            first_seen=rows["ts"].min().to_pydatetime(warn=False),
            last_seen=rows["ts"].max().to_pydatetime(warn=False),
            revisions=sorted({r for r in rows["revision"] if r}),
            instances=len(instances),
            examples=_examples(told),
            frame=_most_common_frame(told),
            exc_type=_most_common(told["exc_type"]),
            captures=[c for c in part["captures"] if isinstance(c, dict)],
            trace=_most_common(rows["trace"].replace("", None)),
            instance_ids=instances,
            recovered_minutes=(
                recovered_minutes(rows["ts"].min(), rows["ts"].max(), _failure_count(part), served)
                if served
                else 0.0
            ),
        )
    return found


def _failure_count(part: pd.DataFrame) -> int:
    return int(failure_units(part)["unit"].nunique())


def recovered_minutes(
    first: datetime, last: datetime, failures: int, served: tuple[pd.Timestamp, datetime]
) -> float:
    """See `Evidence.recovered_minutes`: `failures` between `first` and `last`, `served` from
    `last_success`."""
    served_until, end = served
    if pd.isna(served_until) or served_until <= last:
        return 0.0
    quiet = (_naive(end) - last) / pd.Timedelta(minutes=1)
    spacing = (last - first) / pd.Timedelta(minutes=1) / max(failures - 1, 1)
    return quiet if quiet >= RECOVERY_SPACINGS * spacing else 0.0


def _examples(rows: pd.DataFrame) -> list[str]:
    """A few distinct example lines, most telling first: the exception line of a traceback, else the text."""
    seen: list[str] = []
    for _, row in rows.sort_values("exc_type", na_position="last", kind="stable").iterrows():
        text = _example_text(row)
        if text and text not in seen:
            seen.append(text)
        if len(seen) == MAX_EXAMPLES:
            break
    return seen


def _example_text(row: Any) -> str:
    if isinstance(row["exc_type"], str):
        return cut_line(f"{row['exc_type']}: {row['exc_message']}" if row["exc_message"] else row["exc_type"])
    if isinstance(row["message"], str) and row["message"].strip():
        return cut_line(row["message"])
    if isinstance(row["path"], str):
        return cut_line(f"{row['method'] or ''} {row['path']} → {row['status']}")
    return ""


def cut_line(text: str, limit: int = MAX_EXAMPLE_CHARS) -> str:
    """A log text's first line, at most `limit` characters; one that was cut (in length, or lines left
    out) ends with "…", so a reader knows the line goes on."""
    lines = text.strip().splitlines()
    first = lines[0].rstrip() if lines else ""
    if len(first) > limit:
        return first[: limit - 1].rstrip() + "…"
    return first + " …" if any(line.strip() for line in lines[1:]) else first


def _most_common_frame(rows: pd.DataFrame) -> str | None:
    """The innermost application frame seen most; a traceback's frame is preferred to a logger's location."""
    framed = rows[rows["frame_file"].notna()]
    if framed["traceback_frame"].any():
        framed = framed[framed["traceback_frame"]]
    if framed.empty:
        return None
    labels = framed.apply(lambda r: f"{r['frame_file']}:{r['frame_line']} in {r['frame_function']}", axis=1)
    return str(labels.value_counts().index[0])


def _most_common(values: pd.Series) -> str | None:
    counts = values.dropna().value_counts()
    return str(counts.index[0]) if len(counts) else None


def _totals(in_scope: pd.DataFrame, dropped: pd.DataFrame | None, window: Window) -> dict[str, int]:
    """The window's counts: its entries (events and the lines folded into them), those a suppress rule
    took, and the entries folded away by reason (echoes, merged traceback lines, duplicates, other
    resources')."""
    events = in_scope[in_scope["period"] == "window"]
    folded = dict.fromkeys(DROP_REASONS, 0)
    if dropped is not None and len(dropped):
        reasons = dropped["reason"][periods(dropped["ts"], window) == "window"]
        folded.update({str(k): int(v) for k, v in reasons.value_counts().items()})
    return {
        "entries": len(events) + folded[ECHO] + folded[MERGED],
        "suppressed": int(events["suppressed_by"].notna().sum()),
        "echoes": folded[ECHO],
        "merged_lines": folded[MERGED],
        "duplicates": folded[DUPLICATE],
        "other_resources": folded[OTHER_RESOURCE],
    }
