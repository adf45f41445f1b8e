"""From LogEntry dicts to typed events, one per failure: the only module that knows Cloud Run's log shapes.

It extracts the fields the pipeline uses into columns, joins tracebacks split one line per entry, drops the
echo lines (uvicorn's access log, the app's "Request completed" line) that repeat a request log, and links
the lines of one failure — request row, app error, traceback — under one failure id.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from prodguardian.rules import SEVERITY_RANKS

CORRELATION_GAP_S = 2.0
TRACEBACK_GAP_S = 1.0
MAX_MESSAGE_CHARS = 32_768  # Cloud Logging entries are at most 256 KiB; enough to show and match

_UVICORN_ACCESS = re.compile(r'^INFO: +\S+ - "[A-Z]+ \S+ HTTP/[\d.]+" \d{3}')
_APP_REQUEST_ECHO = re.compile(r"^Request completed\b.*\bstatus_code\b")
_PATH_IN_LINE = re.compile(r'(?:^|[\s"])(?:GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) (/[^\s?"]*)')
_FRAME = re.compile(r'^\s*File "([^"]+)", line (\d+), in (\S+)')
_EXCEPTION_LINE = re.compile(
    r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Warning|Failure|Timeout)\w*)(?::\s?(.*))?$"
)
_LIBRARY_PATH = re.compile(r"site-packages/|dist-packages/|/lib/python\d|^<frozen|^<string>")
_APP_ROOT = re.compile(r"^(?:/app/|/workspace/|/usr/src/app/|/srv/|/code/|/home/[^/]+/)")
_WEBSOCKET_SEGMENT = re.compile(r"(?:^|/)(?:ws|wss|websocket|websockets)(?:/|$)")
_TRACEBACK_START = ("Traceback (most recent call last):", "ERROR:    Exception in ASGI application")
_TRACEBACK_CHAIN = ("During handling of the above exception", "The above exception was the direct cause")

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
    "protocol",
    "user_agent",
    "remote_ip",
    "message",
    "payload",
    "source_file",
    "source_line",
    "source_function",
    "insert_id",
    "location",
)


@dataclass
class Totals:
    entries: int = 0
    skipped: int = 0
    echoes: int = 0
    merged_lines: int = 0
    other_services: int = 0


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


def build_events(entries: Iterable[Any], service: str | None = None) -> Events:
    """Turn LogEntry dicts into the events table, with tracebacks joined, echoes dropped, failures linked."""
    columns: dict[str, list[Any]] = {name: [] for name in COLUMNS}
    totals = Totals()
    services: dict[str, int] = {}
    project = _extract_all(entries, columns, totals, services, service)
    table = _to_frame(columns, totals)
    full_times = table["ts"]
    table = _join_split_tracebacks(table, totals)
    table = _drop_echoes(table, totals)
    folded_times = full_times.drop(index=table.index).reset_index(drop=True)
    table = _describe_exceptions(table).reset_index(drop=True)
    table["failure"] = link_failures(table)
    return Events(table, totals, services, project, folded_times)


def _extract_all(
    entries: Iterable[Any],
    columns: dict[str, list[Any]],
    totals: Totals,
    services: dict[str, int],
    service: str | None,
) -> str | None:
    """Append every usable entry's fields to the columns; return the project the entries belong to."""
    appenders = [columns[name].append for name in COLUMNS]
    project = None
    for entry in entries:
        totals.entries += 1
        if not isinstance(entry, dict) or not isinstance(entry.get("timestamp"), str):
            totals.skipped += 1
            continue
        labels = (entry.get("resource") or {}).get("labels") or {}
        name = labels.get("service_name") or ""
        services[name] = services.get(name, 0) + 1
        if service is not None and name != service:
            totals.other_services += 1
            continue
        for append, value in zip(appenders, _fields(entry, labels, name), strict=True):
            append(value)
        if project is None:
            project = labels.get("project_id") or _project_of(entry.get("logName"))
    return project


def _project_of(log_name: Any) -> str | None:
    if isinstance(log_name, str) and log_name.startswith("projects/"):
        return log_name.split("/", 2)[1]
    return None


def _fields(entry: dict[str, Any], labels: dict[str, Any], service: str) -> tuple[Any, ...]:
    """One entry's values, in COLUMNS order."""
    log_name = entry.get("logName") or ""
    kind = _kind(log_name)
    http = entry.get("httpRequest")
    payload = entry.get("jsonPayload")
    message = entry.get("textPayload")
    if isinstance(payload, dict):
        message = _payload_message(payload)
    else:
        payload = None
    method = path = status = latency = protocol = user_agent = remote_ip = None
    if isinstance(http, dict):
        kind = "request"
        method = http.get("requestMethod")
        path = _url_path(http.get("requestUrl") or "")
        status = _int(http.get("status"))
        latency = _seconds(http.get("latency"))
        protocol = http.get("protocol")
        user_agent = http.get("userAgent")
        remote_ip = http.get("remoteIp")
        if _is_websocket(status, protocol, path):
            kind = "websocket"
    location = (
        entry.get("sourceLocation") or (payload or {}).get("logging.googleapis.com/sourceLocation") or {}
    )
    trace = entry.get("trace") or ""
    return (
        entry["timestamp"],
        kind,
        service,
        labels.get("revision_name") or "",
        (entry.get("labels") or {}).get("instanceId") or "",
        trace.rsplit("/", 1)[-1],
        SEVERITY_RANKS.get(str(entry.get("severity") or "DEFAULT").upper(), 0),
        method,
        path,
        status,
        latency,
        protocol,
        user_agent,
        remote_ip,
        message[:MAX_MESSAGE_CHARS] if isinstance(message, str) else None,
        payload,
        location.get("file") if isinstance(location, dict) else None,
        _int(location.get("line")) if isinstance(location, dict) else None,
        location.get("function") if isinstance(location, dict) else None,
        entry.get("insertId"),
        labels.get("location") or "",
    )


def epoch_seconds(timestamps: pd.Series) -> np.ndarray:
    """Seconds since the epoch of a naive-UTC datetime column."""
    return timestamps.to_numpy().astype("datetime64[ns]").astype("int64") / 1e9


def _kind(log_name: str) -> str:
    if log_name.endswith(("%2Fstdout", "%2Fstderr", "/stdout", "/stderr")):
        return "app"
    if log_name.endswith("%2Frequests"):
        return "request"
    return "system" if "run.googleapis.com" in log_name else "app"


def _payload_message(payload: dict[str, Any]) -> str | None:
    for key in ("message", "msg", "error", "text"):
        value = payload.get(key)
        if isinstance(value, str):
            return value
    return None


def _url_path(url: str) -> str:
    """The path of a request URL: no scheme, host, query string or fragment."""
    start = url.find("://")
    start = url.find("/", start + 3) if start >= 0 else (0 if url.startswith("/") else -1)
    if start < 0:
        return "/"
    end = len(url)
    for mark in ("?", "#"):
        at = url.find(mark, start)
        if 0 <= at < end:
            end = at
    return url[start:end] or "/"


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None


def _seconds(latency: Any) -> float | None:
    """Cloud Logging's Duration text ("0.112114537s") in seconds."""
    if isinstance(latency, str) and latency.endswith("s"):
        try:
            return float(latency[:-1])
        except ValueError:
            return None
    return None


def _is_websocket(status: int | None, protocol: Any, path: str | None) -> bool:
    if status == 101 or (isinstance(protocol, str) and protocol.lower() == "websocket"):
        return True
    return path is not None and "ws" in path and _WEBSOCKET_SEGMENT.search(path) is not None


def _to_frame(columns: dict[str, list[Any]], totals: Totals) -> pd.DataFrame:
    ts_text = columns.pop("ts_text")
    table = pd.DataFrame({name: pd.Series(values, dtype=object) for name, values in columns.items()})
    parsed = pd.to_datetime(pd.Series(ts_text, dtype=object), utc=True, format="ISO8601", errors="coerce")
    table.insert(0, "ts", parsed.dt.tz_localize(None).astype("datetime64[ns]"))  # naive UTC, for fast maths
    unusable = table["ts"].isna()
    if unusable.any():
        totals.skipped += int(unusable.sum())
        table = table[~unusable]
    table["status"] = table["status"].astype("Int64")
    table["latency_s"] = table["latency_s"].astype("float64")
    table["severity"] = table["severity"].astype("int32")
    return table.sort_values("ts", kind="stable").reset_index(drop=True)


def _join_split_tracebacks(table: pd.DataFrame, totals: Totals) -> pd.DataFrame:
    """Merge a traceback written one line per entry (same instance, a few ms apart) into its first line."""
    messages = table["message"]
    is_app = table["kind"].to_numpy() == "app"
    starts = is_app & messages.isin(_TRACEBACK_START).to_numpy()
    if not starts.any():
        return table
    lines = table[is_app]
    drop: list[int] = []
    for _instance, group in lines.groupby("instance", sort=False):
        drop.extend(_merge_group(table, group))
    totals.merged_lines += len(drop)
    return table.drop(index=drop)


def _merge_group(table: pd.DataFrame, group: pd.DataFrame) -> list[int]:
    """Fold each split traceback of one instance's app lines into its first line; return the folded rows."""
    index = group.index.to_numpy()
    messages = group["message"].tolist()
    times = epoch_seconds(group["ts"])
    merged: list[int] = []
    i = 0
    while i < len(index):
        if messages[i] not in _TRACEBACK_START:
            i += 1
            continue
        j = i + 1
        while j < len(index) and times[j] - times[j - 1] <= TRACEBACK_GAP_S and _continues(messages, i, j):
            j += 1
        if j > i + 1:
            table.at[index[i], "message"] = "\n".join(m or "" for m in messages[i:j])
            severity = int(group["severity"].to_numpy()[i])
            table.at[index[i], "severity"] = max(severity, SEVERITY_RANKS["ERROR"])
            merged.extend(index[i + 1 : j])
        i = j
    return merged


def _continues(messages: list[Any], start: int, at: int) -> bool:
    """Whether line `at` still belongs to the traceback that began at `start`."""
    line, previous = messages[at], messages[at - 1]
    if not isinstance(line, str):
        return False
    if line in _TRACEBACK_START[:1] and previous in _TRACEBACK_START[1:]:
        return True
    if line.startswith((" ", "\t")) or line.startswith(_TRACEBACK_CHAIN) or not line.strip():
        return True
    if (isinstance(previous, str) and previous.startswith(_TRACEBACK_CHAIN)) or previous == "":
        return line.startswith(_TRACEBACK_START[:1])
    # The exception line ends the traceback; it follows a frame or its source line.
    return _EXCEPTION_LINE.match(line) is not None and isinstance(previous, str) and previous.startswith(" ")


def _drop_echoes(table: pd.DataFrame, totals: Totals) -> pd.DataFrame:
    """Lines that repeat a request log (access log, "Request completed") are never events of their own."""
    app = table["kind"].to_numpy() == "app"
    if not app.any():
        return table
    messages = table.loc[app, "message"].fillna("")
    echo = messages.str.match(_UVICORN_ACCESS) | messages.str.match(_APP_REQUEST_ECHO)
    echo_index = echo[echo].index
    totals.echoes += len(echo_index)
    kept: pd.DataFrame = table.drop(index=echo_index)
    return kept


def _describe_exceptions(table: pd.DataFrame) -> pd.DataFrame:
    """Exception type, its message and the innermost application frame of every traceback."""
    has_trace = table["message"].str.contains("Traceback (most recent call last)", regex=False, na=False)
    found = [describe_traceback(m) for m in table.loc[has_trace, "message"]]
    for column, position in (
        ("exc_type", 0),
        ("exc_message", 1),
        ("frame_file", 2),
        ("frame_line", 3),
        ("frame_function", 4),
    ):
        values = pd.Series([None] * len(table), index=table.index, dtype=object)
        if found:
            values.loc[has_trace] = [f[position] for f in found]
        table[column] = values
    structured = table["frame_file"].isna() & table["source_file"].notna()
    table.loc[structured, "frame_file"] = table.loc[structured, "source_file"].map(_app_relative)
    table.loc[structured, "frame_line"] = table.loc[structured, "source_line"]
    table["frame_line"] = table["frame_line"].astype("Int64")
    table["traceback_frame"] = ~structured & table["frame_file"].notna()
    table.loc[structured, "frame_function"] = table.loc[structured, "source_function"]
    return table.drop(columns=["source_file", "source_line", "source_function"])


def describe_traceback(text: str) -> tuple[str | None, str | None, str | None, int | None, str | None]:
    """(exception type, message, innermost app file, line, function) of a Python traceback."""
    exc_type = exc_message = frame_file = frame_function = None
    frame_line: int | None = None
    innermost: tuple[str, int, str] | None = None
    for line in text.splitlines():
        frame = _FRAME.match(line)
        if frame:
            if not _LIBRARY_PATH.search(frame[1]):
                innermost = (frame[1], int(frame[2]), frame[3])
            continue
        exception = _EXCEPTION_LINE.match(line)
        if exception:
            exc_type, exc_message = exception[1], exception[2]
    if innermost:
        frame_file, frame_line, frame_function = _app_relative(innermost[0]), innermost[1], innermost[2]
    return exc_type, exc_message, frame_file, frame_line, frame_function


def _app_relative(path: Any) -> Any:
    return _APP_ROOT.sub("", path) if isinstance(path, str) else path


def link_failures(table: pd.DataFrame) -> np.ndarray:
    """A failure id per row (-1 for rows that are no failure's part), shared by the lines of one failure.

    A failing request is a failure; a line joins it by trace, else by instance and time (within the request
    plus CORRELATION_GAP_S) and path when the line names one; other error lines on one instance chain together
    when a gap of at most CORRELATION_GAP_S separates them.
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
    last_line: dict[str, tuple[float, int]] = {}
    traces, instances, messages = (
        table["trace"].to_numpy(),
        table["instance"].to_numpy(),
        table["message"].to_numpy(),
    )
    by_trace: dict[str, int] = {}  # failures already holding a line of each trace
    for row in np.flatnonzero(errorish):
        at, instance, trace = seconds[row], instances[row], traces[row]
        if trace:  # a line with a trace joins only that trace's failure
            joined = requests.by_trace.get(trace, by_trace.get(trace, -1))
        else:
            joined = requests.near(instance, at, _named_path(messages[row]))
            previous = last_line.get(instance)
            if joined < 0 and previous and at - previous[0] <= CORRELATION_GAP_S:
                joined = previous[1]
        failure[row] = joined if joined >= 0 else row
        if trace:
            by_trace.setdefault(trace, int(failure[row]))
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

    def near(self, instance: str, at: float, path: str | None) -> int:
        """The failing request of `instance` whose span (± the gap) holds `at`, nearest start first."""
        spans = self.by_instance.get(instance)
        if not spans:
            return -1
        starts = self.starts[instance]
        hi = bisect.bisect_right(starts, at + CORRELATION_GAP_S)
        best, best_distance = -1, float("inf")
        for start, end, req_path, row in reversed(spans[max(0, hi - 64) : hi]):
            if at < start - CORRELATION_GAP_S or at > end + CORRELATION_GAP_S:
                continue
            if path and req_path and path != req_path:
                continue
            distance = abs(at - start)
            if distance < best_distance:
                best, best_distance = row, distance
        return best


def _named_path(message: Any) -> str | None:
    if not isinstance(message, str):
        return None
    found = _PATH_IN_LINE.search(message[:512])
    return found[1] if found else None
