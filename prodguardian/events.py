"""From LogEntry dicts to typed events, one per failure: the only module that knows Cloud Run's log shapes.

It extracts the fields the pipeline uses into columns, joins tracebacks split one line per entry, drops the
echo lines (uvicorn's access log, the app's "Request completed" line) that repeat a request log, and links
the lines of one failure — request row, app error, traceback — under one failure id.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import gc
import itertools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np
import orjson
import pandas as pd

from prodguardian import levels, tracebacks
from prodguardian.rules import SEVERITY_RANKS
from prodguardian.source import FileSource

CORRELATION_GAP_S = 2.0
TRACEBACK_GAP_S = 1.0
MAX_MESSAGE_CHARS = 32_768  # Cloud Logging entries are at most 256 KiB; enough to show and match
BATCH_ENTRIES = 8192  # entries of a plain iterable extracted at a time
CHUNK_ROWS = 1 << 16  # extracted rows turned into typed columns at a time

_UVICORN_ACCESS = re.compile(r'^INFO: +\S+ - "[A-Z]+ \S+ HTTP/[\d.]+" \d{3}')
_APP_REQUEST_ECHO = re.compile(r"^Request completed\b.*\bstatus_code\b")
# Either echo, anchored at the start as both are: one match call per line instead of two.
_ECHO = re.compile(f"(?:{_UVICORN_ACCESS.pattern[1:]})|(?:{_APP_REQUEST_ECHO.pattern[1:]})")
_ECHO_PREFIXES = ("INFO: ", "Request completed")  # what either needs first: a cheap test before the regex
_PATH_IN_LINE = re.compile(r'(?:^|[\s"])(?:GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) (/[^\s?"]*)')
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
)
# Resource types whose entries are the service's own: any other (Cloud Scheduler jobs, load balancers, Cloud
# Tasks...) may carry an httpRequest for a call that the service's own request log records again.
CLOUD_RUN_RESOURCES = frozenset({"cloud_run_revision", "cloud_run_service", "cloud_run_job"})
# Error Reporting's payload type: such an entry is an error whatever severity it was written with.
_REPORTED_ERROR = "type.googleapis.com/google.devtools.clouderrorreporting.v1beta1.ReportedErrorEvent"


# Entries are decoded straight into these structs: only the fields the pipeline reads are built, everything
# else in an entry is skipped unread, and attribute access beats dict lookups in the hot loop. Each nested
# struct sits in a union with every other JSON value, so a field of an unexpected type never fails a decode.
_NOT_AN_OBJECT = str | int | float | bool | list[Any] | None


class _Labels(msgspec.Struct, gc=False):
    """Labels of the resource (service, revision, region, project) or of the entry (instance)."""

    service_name: Any = None
    revision_name: Any = None
    location: Any = None
    project_id: Any = None
    instanceId: Any = None  # the API's name


class _Resource(msgspec.Struct, gc=False):
    type: Any = None
    labels: _Labels | _NOT_AN_OBJECT = None


class _Status(msgspec.Struct, gc=False):
    message: Any = None


class _Proto(msgspec.Struct, gc=False):
    """An audit log's payload: what the pipeline reads is the status message (a revision not ready...)."""

    status: _Status | _NOT_AN_OBJECT = None


class _Http(msgspec.Struct, gc=False, rename="camel"):
    request_method: Any = None
    request_url: Any = None
    status: Any = None
    latency: Any = None
    protocol: Any = None
    user_agent: Any = None


class LogEntry(msgspec.Struct, gc=False, rename="camel"):
    """The fields of a LogEntry that the pipeline reads."""

    timestamp: Any = None
    insert_id: Any = None
    log_name: Any = None
    severity: Any = None
    text_payload: Any = None
    json_payload: Any = None
    proto_payload: _Proto | _NOT_AN_OBJECT = None
    error_groups: Any = None
    trace: Any = None
    source_location: Any = None
    resource: _Resource | _NOT_AN_OBJECT = None
    labels: _Labels | _NOT_AN_OBJECT = None
    http_request: _Http | _NOT_AN_OBJECT = None


_NO_LABELS = _Labels()
_ENTRIES = list[LogEntry | _NOT_AN_OBJECT]
_DECODER = msgspec.json.Decoder(_ENTRIES | LogEntry | str | int | float | bool | None)


def decode_entries(data: bytes | memoryview) -> Any:
    """A JSON array of entries, or one entry, decoded into `LogEntry` structs (a `source.Decode`).

    What msgspec refuses (a number out of its range, malformed JSON) orjson decodes into dicts, which
    `_as_entries` converts, or rejects with the exact error the reader reports.
    """
    try:
        return _DECODER.decode(data)
    except msgspec.DecodeError:
        return orjson.loads(data)


def _as_entries(batch: list[Any]) -> list[Any]:
    """The batch as `LogEntry` structs (dicts converted, structs as they are; anything else left as is)."""
    try:
        return msgspec.convert(batch, _ENTRIES)
    except msgspec.ValidationError:
        return [_as_entry(entry) for entry in batch]


def _as_entry(entry: Any) -> Any:
    try:
        return msgspec.convert(entry, LogEntry | _NOT_AN_OBJECT)
    except msgspec.ValidationError:  # a value msgspec cannot hold (a huge number): not a usable entry
        return None


@dataclass
class Totals:
    entries: int = 0
    skipped: int = 0
    echoes: int = 0
    merged_lines: int = 0
    other_services: int = 0
    other_resources: int = 0  # entries of resources that are not Cloud Run's (a scheduler job, a balancer)
    duplicates: int = 0  # the same entry (insertId and timestamp) read again


@dataclass
class Events:
    """The events table (one row per request or log line) and what building it counted."""

    table: pd.DataFrame
    totals: Totals = field(default_factory=Totals)
    services: dict[str, int] = field(default_factory=dict)
    project: str | None = None
    folded_times: pd.Series = field(
        default_factory=lambda: pd.Series(dtype="datetime64[ns]")
    )  # echoes, merged lines
    folded_services: np.ndarray = field(default_factory=lambda: np.array([], dtype=object))


def build_events(entries: Iterable[Any], service: str | None = None) -> Events:
    """Turn LogEntry dicts into the events table, with tracebacks joined, echoes dropped, failures linked.

    Entries are taken a batch at a time and only the fields the pipeline uses are kept, as typed columns, so
    the raw entries of one batch at most are alive at once. A `FileSource` hands over its batches itself and
    splits a large export between worker processes, which send back the columns. The table is then sorted,
    folded (split tracebacks, echoes) and copied once.
    """
    totals = Totals()
    services: dict[str, int] = {}
    project: str | None = None
    pieces: list[dict[str, Any]] = []
    with _cycle_collector_paused():
        for part in _extracted_parts(entries, service):
            totals.entries += part.entries
            totals.skipped += part.skipped
            totals.other_services += part.other_services
            totals.other_resources += part.other_resources
            for name, count in part.services.items():
                services[name] = services.get(name, 0) + count
            if project is None:
                project = part.project
            pieces.append(part.columns)
    columns = _concatenate(pieces)
    del pieces
    table, folded_times, folded_services = _fold(columns, totals)
    del columns
    table = infer_severities(_describe_exceptions(table))
    table["failure"] = link_failures(table)
    return Events(table, totals, services, project, folded_times, folded_services)


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
    other_services: int = 0
    other_resources: int = 0
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
    skipped = other = foreign = 0
    mapping = dict
    text = str
    entry_type, labels_type, resource_type, http_type = LogEntry, _Labels, _Resource, _Http
    proto_type, status_type = _Proto, _Status
    cloud_run = CLOUD_RUN_RESOURCES
    no_labels = _NO_LABELS
    echo_match = _ECHO.match
    echo_prefixes = _ECHO_PREFIXES
    limit = MAX_MESSAGE_CHARS
    websocket_segment = _WEBSOCKET_SEGMENT.search
    for entry in _as_entries(batch):
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
                foreign += 1
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
            other += 1
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
                False,
            )
        )
    part.entries += len(batch)
    part.skipped += skipped
    part.other_services += other
    part.other_resources += foreign
    part.project = project


_ROW = (*COLUMNS, "echo")
_ECHO_LINE = "INFO: (an echo)"  # what an echo row holds as its message: never part of a traceback
_ECHO_TAIL = (None,) * 5 + (_ECHO_LINE,) + (None,) * 6 + (True,)  # method … insert_id, then `echo`
assert len(_ECHO_TAIL) == len(_ROW) - 7
_TYPED = {"severity": np.int32, "latency_s": np.float64, "echo": np.bool_}


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


def _fold(columns: dict[str, Any], totals: Totals) -> tuple[pd.DataFrame, pd.Series, np.ndarray]:
    """The events table in time order (stable: entries of one timestamp keep the input's order), each split
    traceback folded into its first line and the echoes dropped; and the times and services of the folded
    lines."""
    _drop_duplicates(columns, totals)
    ts = columns.pop("ts")
    order = np.argsort(ts, kind="stable")
    columns_services = columns["service"][order]  # for the folded lines' service, before it is taken
    ts = ts[order]
    kinds = columns["kind"][order]
    messages = _without_markup(columns["message"][order])
    severities = columns["severity"][order]
    folded, merged = _join_split_tracebacks(kinds, messages, columns["instance"][order], severities, ts)
    totals.merged_lines += int(folded.sum())
    echo = columns.pop("echo")[order] & ~folded
    totals.echoes += int(echo.sum())
    folded |= echo
    kept = np.flatnonzero(~folded)
    rows = order[kept]
    if merged:
        at = np.searchsorted(kept, np.fromiter(merged, dtype=np.int64, count=len(merged)))
        messages = messages[kept]
        messages[at] = [text for text, _ in merged.values()]
        severities = severities[kept]
        severities[at] = [severity for _, severity in merged.values()]
    else:
        messages, severities = messages[kept], severities[kept]
    stamps = ts.view("datetime64[ns]")
    data: dict[str, Any] = {"ts": pd.Series(stamps[kept], dtype="datetime64[ns]")}
    for name in COLUMNS[1:]:
        if name == "message":
            data[name] = pd.Series(messages, dtype=object)
        elif name == "severity":
            data[name] = pd.Series(severities, dtype=np.int32)
        elif name == "status":
            data[name] = pd.Series(columns.pop(name).take(rows), dtype="Int64")
        elif name == "latency_s":
            data[name] = pd.Series(columns.pop(name)[rows], dtype=np.float64)
        else:
            data[name] = pd.Series(columns.pop(name)[rows], dtype=object)
    folded_times = pd.Series(stamps[folded], dtype="datetime64[ns]", name="ts")
    return pd.DataFrame(data, copy=False), folded_times, columns_services[folded]


def per_distinct_text(texts: np.ndarray, rows: np.ndarray, fn: Any, dtype: Any = bool) -> np.ndarray:
    """`fn` of the text of each row in `rows`, computed once per distinct text (texts repeat a lot); rows
    outside `rows`, and rows without a text, hold the dtype's zero."""
    values = np.zeros(len(texts), dtype=dtype)
    candidates = np.flatnonzero(rows)
    if not len(candidates):
        return values
    codes, uniques = pd.factorize(pd.Series(texts[candidates], dtype=object), use_na_sentinel=True)
    zero = dtype()
    results = np.array(
        [(fn(u) or zero) if isinstance(u, str) else zero for u in uniques] + [zero], dtype=dtype
    )
    values[candidates] = results[codes]
    return values


def _without_markup(messages: np.ndarray) -> np.ndarray:
    """Messages with ANSI colour codes and loguru/rich markup taken out (rules and folding see the text)."""
    marked = per_distinct_text(messages, np.ones(len(messages), dtype=bool), _has_markup)
    if marked.any():
        messages = messages.copy()
        cleaned = {m: levels.strip_markup(m) for m in set(messages[marked].tolist())}
        messages[marked] = [cleaned[m] for m in messages[marked].tolist()]
    return messages


def _has_markup(text: str) -> bool:
    return "\x1b" in text or "[/" in text or "</" in text


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


def _drop_duplicates(columns: dict[str, Any], totals: Totals) -> None:
    """Keep the first of entries read twice (overlapping exports, a file read from two fetches): the same
    insertId at the same timestamp. Entries without an insertId are all kept."""
    ids = columns["insert_id"]
    known = np.flatnonzero(pd.notna(ids))
    if len(known) < 2:
        return
    keys = pd.DataFrame({"id": ids[known], "ts": columns["ts"][known]})
    repeated = known[keys.duplicated().to_numpy()]
    if not len(repeated):
        return
    kept = np.ones(len(ids), dtype=bool)
    kept[repeated] = False
    totals.duplicates += len(repeated)
    for name, column in columns.items():
        columns[name] = column[kept]


def _project_of(log_name: Any) -> str | None:
    if isinstance(log_name, str) and log_name.startswith("projects/"):
        return log_name.split("/", 2)[1]
    return None


def epoch_seconds(timestamps: pd.Series) -> np.ndarray:
    """Seconds since the epoch of a naive-UTC datetime column."""
    return timestamps.to_numpy().astype("datetime64[ns]").astype("int64") / 1e9


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


def _join_split_tracebacks(
    kinds: np.ndarray, messages: np.ndarray, instances: np.ndarray, severities: np.ndarray, ts: np.ndarray
) -> tuple[np.ndarray, dict[int, tuple[str, int]]]:
    """Find each traceback written one line per entry (same instance, a few ms apart), rows in time order.

    Returns which rows fold into the line before them, and the new (message, severity) of each first line.
    """
    folded = np.zeros(len(kinds), dtype=bool)
    merged: dict[int, tuple[str, int]] = {}
    is_app = kinds == "app"
    starts = is_app & per_distinct_text(messages, is_app, tracebacks.is_start)
    if not starts.any():
        return folded, merged
    # Only the app lines of instances where a traceback starts can fold.
    lines = np.flatnonzero(is_app & pd.Series(instances, dtype=object).isin(instances[starts]).to_numpy())
    codes, _ = pd.factorize(instances[lines])
    by_instance = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[by_instance])) + 1
    seconds = ts / 1e9  # as epoch_seconds gives them: the gap test must round the same way
    for group in np.split(lines[by_instance], bounds):
        _merge_group(group, starts[group], messages, severities, seconds, folded, merged)
    return folded, merged


def _merge_group(
    index: np.ndarray,
    starts: np.ndarray,
    all_messages: np.ndarray,
    all_severities: np.ndarray,
    all_seconds: np.ndarray,
    folded: np.ndarray,
    merged: dict[int, tuple[str, int]],
) -> None:
    """Fold each split traceback of one instance's app lines (rows `index`, in time order)."""
    messages = all_messages[index].tolist()
    times = all_seconds[index]
    end = 0
    for i in np.flatnonzero(starts).tolist():
        if i < end:  # inside the traceback folded just before
            continue
        j = i + 1
        start = messages[i]
        while (
            j < len(index)
            and times[j] - times[j - 1] <= TRACEBACK_GAP_S
            and tracebacks.continues(start, messages[j - 1], messages[j])
        ):
            j += 1
        if j > i + 1:
            # A trace is an error at least; one written without severity gets the one its text states.
            stated = int(all_severities[index[i]])
            severity = max(stated, SEVERITY_RANKS["ERROR"]) if stated else 0
            merged[int(index[i])] = ("\n".join(m or "" for m in messages[i:j]), severity)
            folded[index[i + 1 : j]] = True
        end = j


def _describe_exceptions(table: pd.DataFrame) -> pd.DataFrame:
    """Exception type, its message and the innermost application frame of every traceback.

    A traceback's text repeats (the same failure, again and again): each distinct one is read once.
    """
    messages = table["message"].to_numpy()
    rows = np.flatnonzero(
        per_distinct_text(messages, np.ones(len(messages), dtype=bool), tracebacks.has_trace)
    )
    described: dict[str, tuple[Any, ...]] = {}
    found = []
    for text in messages[rows].tolist():
        if text not in described:
            described[text] = tracebacks.describe(text)
        found.append(described[text])
    for column, position in (
        ("exc_type", 0),
        ("exc_message", 1),
        ("frame_file", 2),
        ("frame_line", 3),
        ("frame_function", 4),
    ):
        values = np.full(len(table), None, dtype=object)
        if found:
            values[rows] = [f[position] for f in found]
        table[column] = pd.Series(values, index=table.index, dtype=object)
    structured = table["frame_file"].isna() & table["source_file"].notna()
    if structured.any():
        table.loc[structured, "frame_file"] = table.loc[structured, "source_file"].map(
            tracebacks.app_relative
        )
        table.loc[structured, "frame_line"] = table.loc[structured, "source_line"]
    table["frame_line"] = table["frame_line"].astype("Int64")
    table["traceback_frame"] = ~structured & table["frame_file"].notna()
    if structured.any():
        table.loc[structured, "frame_function"] = table.loc[structured, "source_function"]
    return table.drop(columns=["source_file", "source_line", "source_function"])


def link_failures(table: pd.DataFrame) -> np.ndarray:
    """A failure id per row (-1 for rows that are no failure's part), shared by the lines of one failure.

    A failing request is a failure. A line with a trace joins only that trace's failure. A line without one,
    on an instance, continues the failure its previous line opened when at most CORRELATION_GAP_S separate
    them and that failure has no traceback yet (a "request failed" line, then its traceback); otherwise it
    claims the nearest failing request of its instance whose span (± the gap) holds it, with the same path
    when the line names one, and that no other line has claimed: five failing requests with five tracebacks
    are five failures. A line that can claim none closes the previous failure when it follows it within the
    gap (a "worker exiting" line after a traceback), else it is a failure of its own.
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
    for row in np.flatnonzero(errorish):
        at, instance, trace = seconds[row], instances[row], traces[row]
        previous = last_line.get(instance)
        recent = previous[1] if previous and at - previous[0] <= CORRELATION_GAP_S else -1
        if trace:  # a line with a trace joins only that trace's failure
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
    return failure


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
