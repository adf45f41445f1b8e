"""From LogEntry dicts to typed events, one per failure: the only stage that knows Cloud Run's log shapes.

It extracts the fields the pipeline uses from the entries (`decode` structs, or dicts converted to them)
into typed columns, a batch at a time, then has `folding` join split tracebacks and drop echoes and entries
read twice, and `linking` give the lines of one failure (request row, app error, traceback) one failure id.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import itertools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from prodguardian import levels
from prodguardian.decode import (
    NO_LABELS,
    HttpRequest,
    Labels,
    LogEntry,
    ProtoPayload,
    Resource,
    Status,
    as_entries,
    decode_entries,
)
from prodguardian.folding import OTHER_RESOURCE, Folded, describe_exceptions, fold
from prodguardian.linking import link_failures
from prodguardian.rules import SEVERITY_RANKS
from prodguardian.source import FileSource
from prodguardian.texts import per_distinct_text

MAX_MESSAGE_CHARS = 32_768  # Cloud Logging entries are at most 256 KiB; enough to show and match
BATCH_ENTRIES = 8192  # entries of a plain iterable extracted at a time
CHUNK_ROWS = 1 << 16  # extracted rows turned into typed columns at a time

_UVICORN_ACCESS = re.compile(r'^INFO: +\S+ - "[A-Z]+ \S+ HTTP/[\d.]+" \d{3}')
_APP_REQUEST_ECHO = re.compile(r"^Request completed\b.*\bstatus_code\b")
# Either echo, anchored at the start as both are: one match call per line instead of two.
_ECHO = re.compile(f"(?:{_UVICORN_ACCESS.pattern[1:]})|(?:{_APP_REQUEST_ECHO.pattern[1:]})")
_ECHO_PREFIXES = ("INFO: ", "Request completed")  # what either needs first: a cheap test before the regex
_WEBSOCKET_SEGMENT = re.compile(r"(?:^|/)(?:ws|wss|websocket|websockets)(?:/|$)")

COLUMNS = (
    "ts_text",
    "kind",
    "service",
    "revision",
    "instance",
    "trace",
    "severity",
    "method",
    "path",
    "status",
    "latency_s",
    "user_agent",
    "message",
    "payload",
    "source_file",
    "source_line",
    "source_function",
    "location",
    "insert_id",
    "audited",  # the revision is named by an audit entry's resourceName: the entry dates its creation
)
# Resource types whose entries are the service's own: any other (Cloud Scheduler jobs, load balancers, Cloud
# Tasks...) may carry an httpRequest for a call that the service's own request log records again.
CLOUD_RUN_RESOURCES = frozenset({"cloud_run_revision", "cloud_run_service", "cloud_run_job"})
# Error Reporting's payload type: such an entry is an error whatever severity it was written with.
_REPORTED_ERROR = "type.googleapis.com/google.devtools.clouderrorreporting.v1beta1.ReportedErrorEvent"


@dataclass
class Totals:
    """What the input held, whatever the window: the entries read, and those skipped because no window can
    hold them (not a JSON object, no timestamp or one that does not parse; `check` adds those stamped in
    the future)."""

    entries: int = 0
    skipped: int = 0


@dataclass
class Events:
    """The events table (one row per request or log line), the entries folded away, what reading counted."""

    table: pd.DataFrame
    dropped: pd.DataFrame  # ts, service, reason of each entry folded away (see `folding.Folded`)
    totals: Totals
    services: dict[str, int]  # entries read per service ("" for entries that name none)
    project: str | None

    def dropped_of(self, service: str | None) -> pd.DataFrame:
        """The folded-away entries a service's report counts: its own, and those of no service (other
        resources' entries: the input's, in every service's report)."""
        owners = self.dropped["service"]
        return self.dropped[((owners == service) | owners.isna()).to_numpy()].reset_index(drop=True)


def build_events(entries: Iterable[Any], service: str | None = None) -> Events:
    """Turn LogEntry dicts into the events table, with tracebacks joined, echoes dropped, failures linked.

    Entries are taken a batch at a time and only the fields the pipeline uses are kept, as typed columns, so
    the raw entries of one batch at most are alive at once. A `FileSource` hands over its batches itself and
    splits a large export between worker processes, which send back the columns. The table is then sorted,
    folded (split tracebacks, echoes, entries read twice, other resources' entries) and copied once.
    """
    totals = Totals()
    services: dict[str, int] = {}
    project: str | None = None
    pieces: list[dict[str, Any]] = []
    with _cycle_collector_paused():
        for part in _extracted_parts(entries, service):
            totals.entries += part.entries
            totals.skipped += part.skipped
            for name, count in part.services.items():
                services[name] = services.get(name, 0) + count
            if project is None:
                project = part.project
            pieces.append(part.columns)
    columns = _concatenate(pieces)
    del pieces
    folded = fold(columns)
    table = _table(columns, folded)
    del columns
    table = infer_severities(describe_exceptions(table))
    table["failure"] = link_failures(table)
    return Events(table, folded.dropped, totals, services, project)


@contextlib.contextmanager
def _cycle_collector_paused() -> Iterator[None]:
    """Parsed entries make no reference cycles, yet each batch of them sets off full collections that walk
    every live object: a fifth of the extraction's time. Collection resumes as usual afterwards."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _extracted_parts(entries: Iterable[Any], service: str | None) -> Iterator[_Part]:
    """The extracted columns of the entries, part by part in input order."""
    if isinstance(entries, FileSource):
        yield from entries.map_parts(functools.partial(extract_part, service=service), decode_entries)
    else:
        yield extract_part(_batched(entries), service)


def _batched(entries: Iterable[Any]) -> Iterator[list[Any]]:
    if isinstance(entries, list):
        for at in range(0, len(entries), BATCH_ENTRIES):
            yield entries[at : at + BATCH_ENTRIES]
        return
    iterator = iter(entries)
    while batch := list(itertools.islice(iterator, BATCH_ENTRIES)):
        yield batch


@dataclass
class _Part:
    """What extracting one run of entries gave: its columns (see `_columnise`) and the counts made."""

    columns: dict[str, Any] = field(default_factory=dict)
    entries: int = 0
    skipped: int = 0
    services: dict[str, int] = field(default_factory=dict)
    project: str | None = None


def extract_part(batches: Iterable[list[Any]], service: str | None = None) -> _Part:
    """Extract every usable entry of the batches into typed columns (picklable: a worker sends it back)."""
    part = _Part()
    rows: list[tuple[Any, ...]] = []
    chunks: list[dict[str, Any]] = []
    caches: tuple[dict[Any, Any], dict[Any, Any], dict[Any, Any]] = ({}, {}, {})
    for batch in batches:
        _extract_batch(batch, rows, part, service, caches)
        if len(rows) >= CHUNK_ROWS:
            chunks.append(_columnise(rows, part))
            rows = []
    if rows or not chunks:
        chunks.append(_columnise(rows, part))
    part.columns = _concatenate(chunks)
    return part


def _extract_batch(
    batch: list[Any],
    rows: list[tuple[Any, ...]],
    part: _Part,
    service: str | None,
    caches: tuple[dict[Any, Any], dict[Any, Any], dict[Any, Any]],
) -> None:
    """Append one row per usable entry (the values of `_ROW`); the hot loop of a check.

    It binds what it uses to locals, memoises what repeats (log name → kind, severity → rank), and lets the
    rows that carry the same revision, instance, location, user agent... share one string object.
    """
    kinds, ranks, strings = caches
    intern = strings.setdefault
    add = rows.append
    services = part.services
    project = part.project
    skipped = 0
    other_resource = OTHER_RESOURCE
    mapping = dict
    text = str
    entry_type, labels_type, resource_type, http_type = LogEntry, Labels, Resource, HttpRequest
    proto_type, status_type = ProtoPayload, Status
    cloud_run = CLOUD_RUN_RESOURCES
    no_labels = NO_LABELS
    echo_match = _ECHO.match
    echo_prefixes = _ECHO_PREFIXES
    limit = MAX_MESSAGE_CHARS
    websocket_segment = _WEBSOCKET_SEGMENT.search
    for entry in as_entries(batch):
        if entry.__class__ is not entry_type:
            skipped += 1
            continue
        timestamp = entry.timestamp
        if not isinstance(timestamp, text):
            skipped += 1
            continue
        resource = entry.resource
        if resource.__class__ is resource_type:
            if resource.type.__class__ is text and resource.type not in cloud_run:
                # Not the service's (a scheduler job, a balancer): extracted only to be counted in the window.
                insert_id = entry.insert_id if entry.insert_id.__class__ is text else None
                add((timestamp, other_resource, None, *_OTHER_RESOURCE_TAIL, insert_id, False, False))
                continue
            labels = resource.labels
        else:
            labels = None
        if labels.__class__ is not labels_type:
            labels = no_labels
        # A label is a string: any other value is as good as missing (and would not even be hashable).
        name = labels.service_name
        name = intern(name, name) if name.__class__ is text else ""
        services[name] = services.get(name, 0) + 1
        if service is not None and name != service:
            continue
        log_name = entry.log_name or ""
        if log_name.__class__ is not text:
            log_name = ""
        if project is None:
            project_id = labels.project_id
            project = project_id if project_id.__class__ is text and project_id else _project_of(log_name)
        try:
            kind = kinds[log_name]
        except KeyError:
            kind = kinds[log_name] = _kind(log_name)
        except TypeError:
            kind = _kind(log_name)
        payload = entry.json_payload
        if isinstance(payload, mapping):
            message = _payload_message(payload)
        else:
            payload = None
            message = entry.text_payload
            proto = entry.proto_payload
            if proto.__class__ is proto_type and proto.status.__class__ is status_type:
                message = proto.status.message
        if isinstance(message, text) and len(message) > limit:
            message = message[:limit]
        http = entry.http_request
        entry_labels = entry.labels
        instance = entry_labels.instanceId if entry_labels.__class__ is labels_type else None
        instance = intern(instance, instance) if instance.__class__ is text else ""
        if (
            kind == "app"
            and http.__class__ is not http_type
            and isinstance(message, text)
            and message.startswith(echo_prefixes)
            and echo_match(message) is not None
        ):
            # An echo is dropped once tracebacks are folded: only its time and instance matter (an echo
            # always ends a traceback, whatever its text), so none of the rest is kept or sent.
            add((timestamp, "app", name, None, instance, None, 0, *_ECHO_TAIL))
            continue
        if payload is not None:
            location = entry.source_location or payload.get("logging.googleapis.com/sourceLocation") or {}
        else:
            location = entry.source_location or {}
        if http.__class__ is http_type:
            kind = "request"
            method = http.request_method
            url = http.request_url or ""
            if url.__class__ is not text:
                url = ""
            start = url.find("://")  # the path of the URL: no scheme, host, query string or fragment
            start = url.find("/", start + 3) if start >= 0 else (0 if url.startswith("/") else -1)
            if start < 0:
                route = "/"
            else:
                end = url.find("?", start)
                if end < 0:
                    end = len(url)
                hash_at = url.find("#", start, end)
                route = url[start : end if hash_at < 0 else hash_at] or "/"
            status = http.status
            if status.__class__ is not int:
                status = _int(status)
            if status is not None and not 0 <= status < 1000:  # not an HTTP status
                status = None
            latency = http.latency  # Cloud Logging's Duration text ("0.112114537s")
            if isinstance(latency, text) and latency.endswith("s"):
                try:
                    latency = float(latency[:-1])
                except ValueError:
                    latency = None
            else:
                latency = None
            protocol = http.protocol
            user_agent = http.user_agent
            if (
                status == 101
                or (isinstance(protocol, text) and protocol.lower() == "websocket")
                or ("ws" in route and websocket_segment(route) is not None)
                or "transport=websocket" in url  # Socket.IO and Engine.IO name the transport in the query
            ):
                kind = "websocket"
            path: str | None = route
            method = intern(method, method) if method.__class__ is text else None
            user_agent = intern(user_agent, user_agent) if user_agent.__class__ is text else None
        else:
            method = path = status = latency = user_agent = None
        if location and isinstance(location, mapping):
            source_file = location.get("file")
            source_line = _int(location.get("line"))
            source_function = location.get("function")
            if source_file.__class__ is not text:
                source_file = None
            if source_function.__class__ is not text:
                source_function = None
        else:
            source_file = source_line = source_function = None
        severity = entry.severity
        try:
            rank = ranks[severity]
        except KeyError:
            rank = ranks[severity] = SEVERITY_RANKS.get(text(severity or "DEFAULT").upper(), 0)
        except TypeError:
            rank = SEVERITY_RANKS.get(text(severity or "DEFAULT").upper(), 0)
        if not isinstance(message, text):
            message = None
        if entry.error_groups or (payload is not None and payload.get("@type") == _REPORTED_ERROR):
            rank = max(rank, 500)  # Error Reporting took it for an error
        revision = labels.revision_name
        audited = False
        if not revision:
            revision = _audited_revision(entry.proto_payload)
            audited = revision is not None
        revision = intern(revision, revision) if revision.__class__ is text else ""
        region = labels.location
        region = intern(region, region) if region.__class__ is text else ""
        trace = entry.trace
        insert_id = entry.insert_id
        add(
            (
                timestamp,
                kind,
                name,
                revision,
                instance,
                trace.rpartition("/")[2] if trace.__class__ is text else "",
                rank,
                method,
                path,
                status,
                latency,
                user_agent,
                message,
                payload,
                source_file,
                source_line,
                source_function,
                region,
                insert_id if insert_id.__class__ is text else None,
                audited,
                False,
            )
        )
    part.entries += len(batch)
    part.skipped += skipped
    part.project = project


def _audited_revision(proto: Any) -> str | None:
    """The revision an audit entry is about when its resource labels leave it out (an activity log's
    deploy): its creation then dates the revision, as its first entry, however late its first traffic."""
    name = proto.resource_name if isinstance(proto, ProtoPayload) else None
    if not isinstance(name, str) or "/revisions/" not in name:
        return None
    return name.rpartition("/revisions/")[2] or None


_ROW = (*COLUMNS, "echo")
_ECHO_LINE = "INFO: (an echo)"  # what an echo row holds as its message: never part of a traceback
_ECHO_TAIL = (None,) * 5 + (_ECHO_LINE,) + (None,) * 6 + (False, True)  # method … insert_id, audited, echo
assert len(_ECHO_TAIL) == len(_ROW) - 7
_OTHER_RESOURCE_TAIL = (None, "", None, 0) + (None,) * 11  # revision … location
assert len(_OTHER_RESOURCE_TAIL) == len(_ROW) - 6  # then insert_id, audited, echo
# What a nanosecond timestamp can hold (1677-2262); pandas parses times beyond it in coarser units.
_NANOSECOND_RANGE = (pd.Timestamp.min.tz_localize("UTC"), pd.Timestamp.max.tz_localize("UTC"))
_TYPED = {"severity": np.int32, "latency_s": np.float64, "audited": np.bool_, "echo": np.bool_}


def _columnise(rows: list[tuple[Any, ...]], part: _Part) -> dict[str, Any]:
    """Extracted rows as columns: `ts` as int64 nanoseconds (naive UTC), `status` as an Int64 array,
    numbers and flags as numpy arrays, the rest as object arrays. Rows whose timestamp does not parse are
    left out (counted as skipped)."""
    count = len(rows)
    values = zip(*rows, strict=True) if rows else iter([()] * len(_ROW))
    columns: dict[str, Any] = {}
    for name, column in zip(_ROW, values, strict=True):
        if name == "ts_text":
            parsed = pd.to_datetime(
                pd.Series(column, dtype=object), utc=True, format="ISO8601", errors="coerce"
            )
            parsed = parsed.where(
                parsed.between(*_NANOSECOND_RANGE)
            )  # year 0001 or 99999: no window holds it
            stamps = parsed.dt.tz_localize(None).astype("datetime64[ns]").to_numpy()
            columns["ts"] = stamps.view(np.int64)
            usable = ~np.isnat(stamps)
        elif name == "status":
            columns[name] = pd.Series(column, dtype=object).astype("Int64").array
        elif name in _TYPED:
            columns[name] = np.array(column, dtype=_TYPED[name])
        else:
            columns[name] = np.fromiter(column, dtype=object, count=count)
    if not usable.all():
        part.skipped += int(count - usable.sum())
        columns = {name: column[usable] for name, column in columns.items()}
    return columns


def _concatenate(pieces: list[dict[str, Any]]) -> dict[str, Any]:
    """Columns of several runs of rows, end to end (each piece is emptied as it goes)."""
    if len(pieces) == 1:
        return pieces[0]
    columns: dict[str, Any] = {}
    for name in list(pieces[0]):
        parts = [piece.pop(name) for piece in pieces]
        if name == "status":
            columns[name] = pd.concat([pd.Series(p) for p in parts], ignore_index=True).array
        else:
            columns[name] = np.concatenate(parts)
        del parts
    return columns


def _table(columns: dict[str, Any], folded: Folded) -> pd.DataFrame:
    """The events table: the kept rows of the columns, in time order, typed, copied once."""
    rows = folded.rows
    data: dict[str, Any] = {
        "ts": pd.Series(columns.pop("ts")[rows].view("datetime64[ns]"), dtype="datetime64[ns]")
    }
    for name in COLUMNS[1:]:
        if name == "message":
            data[name] = pd.Series(folded.messages, dtype=object)
        elif name == "severity":
            data[name] = pd.Series(folded.severities, dtype=np.int32)
        elif name == "status":
            data[name] = pd.Series(columns.pop(name).take(rows), dtype="Int64")
        elif name in ("latency_s", "audited"):
            data[name] = pd.Series(columns.pop(name)[rows], dtype=_TYPED[name])
        else:
            data[name] = pd.Series(columns.pop(name)[rows], dtype=object)
    return pd.DataFrame(data, copy=False)


def infer_severities(table: pd.DataFrame) -> pd.DataFrame:
    """Plain app lines carry no severity (DEFAULT): they take the one their text states (`ERROR:root:`,
    `| ERROR |`, `[ERROR]`, `level=error`, `panic:`, a traceback...; see `levels`). `severity_inferred`
    marks them, so a rule can test only the severity entries carry (`infer_severity: false`)."""
    plain = (table["severity"].to_numpy() == 0) & (table["kind"].to_numpy() == "app")
    stated = per_distinct_text(table["message"].to_numpy(), plain, levels.stated_severity, np.int32)
    if "exc_type" in table:  # a stack trace states an error
        stated[plain & (stated == 0) & table["exc_type"].notna().to_numpy()] = SEVERITY_RANKS["ERROR"]
    table["severity"] = np.where(plain, stated, table["severity"].to_numpy()).astype(np.int32)
    table["severity_inferred"] = plain & (stated > 0)
    return table


def _project_of(log_name: Any) -> str | None:
    if isinstance(log_name, str) and log_name.startswith("projects/"):
        return log_name.split("/", 2)[1]
    return None


def _kind(log_name: str) -> str:
    if log_name.endswith(("%2Fstdout", "%2Fstderr", "/stdout", "/stderr")):
        return "app"
    if log_name.endswith("%2Frequests"):
        return "request"
    return "system" if "run.googleapis.com" in log_name or "cloudaudit.googleapis.com" in log_name else "app"


def _payload_message(payload: dict[str, Any]) -> str | None:
    for key in ("message", "msg", "error", "text"):
        value = payload.get(key)
        if isinstance(value, str):
            return value
    return None


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None and value != "" else None
    except (TypeError, ValueError, OverflowError):
        return None
