"""Events: one per failure, not one per line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prodguardian.check import CheckOptions, run_check
from prodguardian.events import build_events
from prodguardian.folding import ECHO, MERGED
from prodguardian.render import render
from prodguardian.rules import RulePack
from prodguardian.simulate import generate
from prodguardian.source import FileSource, write_export
from prodguardian.tracebacks import describe
from tests import logs


def test_request_fields_are_extracted() -> None:
    entry = logs.request(
        0, "/api/gmail/read-reports?max_results=3#top", 500, "0.112114537s", "POST", trace="abc"
    )
    row = build_events([entry]).table.iloc[0]
    assert row["kind"] == "request"
    assert row["path"] == "/api/gmail/read-reports"
    assert row["status"] == 500
    assert abs(row["latency_s"] - 0.112114537) < 1e-12
    assert row["method"] == "POST" and row["trace"] == "abc" and row["revision"] == logs.REVISION
    assert row["instance"] == logs.INSTANCE and row["location"] == "europe-west1"


def test_websocket_attempts_are_recognised() -> None:
    table = build_events(
        [
            logs.request(0, "/ws/chat/6f1a", 101, "183.204118s"),
            logs.request(1, "/api/chat/ws", 500, "0.05s"),
            logs.request(2, "/api/news", 200),
            logs.request(3, "/api/wsdl", 200),
        ]
    ).table
    assert table["kind"].tolist() == ["websocket", "websocket", "request", "request"]


def test_json_payload_message_keys() -> None:
    entries = [logs.json_line(i, "x") for i in range(4)]
    for entry, key in zip(entries, ("message", "msg", "error", "text"), strict=True):
        entry["jsonPayload"] = {key: f"via {key}", "logger": "app"}
    assert build_events(entries).table["message"].tolist() == [
        "via message",
        "via msg",
        "via error",
        "via text",
    ]


def test_skipped_entries_are_counted() -> None:
    events = build_events([logs.request(0, "/"), 42, "text", {"timestamp": "yesterday"}, {"no": "timestamp"}])
    assert events.totals.skipped == 4
    assert len(events.table) == 1


@pytest.mark.parametrize("precision", ["", ".123", ".123456789"])
def test_timestamps_no_window_can_hold_are_skipped(precision: str) -> None:
    """Years 0001, 1500, 2300 and 99999 fit no nanosecond timestamp: skipped, not a crash (pandas parses
    them in a coarser unit, chosen by the fraction digits of the column)."""
    odd = [
        {**logs.request(0, "/"), "timestamp": f"{year}-01-01T00:00:00{precision}Z"}
        for year in (1, 1500, 2300)
    ]
    events = build_events([logs.request(0, "/"), *odd, {"timestamp": "99999-01-01T00:00:00Z"}])
    assert events.totals.skipped == 4
    assert len(events.table) == 1


def test_traceback_names_the_exception_and_innermost_app_frame() -> None:
    exc_type, message, file, line, function = describe(logs.DB_TRACEBACK)
    assert (exc_type, message) == ("RuntimeError", "Database connection is not available.")
    assert (file, line, function) == ("src/backend/core/database/manager.py", 64, "_ensure_connection")


def test_split_traceback_becomes_one_event() -> None:
    entries = [*logs.split_traceback(10), logs.text_line(20, "unrelated later line")]
    events = build_events(entries)
    table = events.table
    assert len(table) == 2
    merged = table.iloc[0]
    assert merged["message"] == logs.DB_TRACEBACK
    assert merged["exc_type"] == "RuntimeError" and merged["frame_line"] == 64
    assert events.dropped["reason"].tolist() == [MERGED] * (len(logs.DB_TRACEBACK.splitlines()) - 1)


def test_split_tracebacks_of_two_instances_interleaved_stay_apart() -> None:
    other = "f" * 64
    first, second = logs.split_traceback(10), logs.split_traceback(10.0005, instance=other)
    interleaved = [entry for pair in zip(first, second, strict=True) for entry in pair]
    table = build_events(interleaved).table
    assert len(table) == 2
    assert set(table["exc_type"]) == {"RuntimeError"}


def test_one_failing_request_is_one_failure_and_echoes_are_not_events() -> None:
    events = build_events(logs.failing_request_lines(5, trace="a" * 32))
    table = events.table
    assert events.dropped["reason"].tolist() == [ECHO] * 2  # uvicorn access line, "Request completed" line
    assert len(table) == 3  # request row, app error, traceback
    assert table["failure"].nunique() == 1 and (table["failure"] >= 0).all()


def test_lines_without_trace_join_by_instance_time_and_path() -> None:
    other = "e" * 64
    entries = [
        logs.request(0, "/api/a", 500, "0.3s", "POST"),
        logs.request(0.1, "/api/b", 500, "0.3s", "POST", instance=other),
        logs.text_line(0.2, logs.DB_TRACEBACK, "ERROR"),  # same instance as /api/a
        logs.text_line(30, "ERROR: much later, on its own", "ERROR"),
    ]
    table = build_events(entries).table.set_index("ts")
    failures = table["failure"].tolist()
    assert failures[2] == failures[0]  # traceback joined /api/a on its instance
    assert failures[1] != failures[0]
    assert failures[3] not in failures[:3]


def test_successful_requests_and_info_lines_are_no_failure() -> None:
    table = build_events([logs.request(0, "/api/a"), logs.json_line(0.01, "Thread loaded")]).table
    assert (table["failure"] == -1).all()


_ODD_VALUES = (["x"], {"a": 1}, 5, 1.5, True, None, "", 10**30, float("inf"), "\u202e")
_ODD_FIELDS = (
    ("resource", "labels", "service_name"),
    ("resource", "labels", "revision_name"),
    ("resource", "labels", "location"),
    ("resource", "labels", "project_id"),
    ("labels", "instanceId"),
    ("logName",),
    ("severity",),
    ("trace",),
    ("timestamp",),
    ("textPayload",),
    ("jsonPayload",),
    ("jsonPayload", "message"),
    ("sourceLocation",),
    ("sourceLocation", "file"),
    ("sourceLocation", "line"),
    ("sourceLocation", "function"),
    ("resource",),
    ("labels",),
    ("httpRequest",),
    ("httpRequest", "status"),
    ("httpRequest", "requestUrl"),
    ("httpRequest", "latency"),
    ("httpRequest", "userAgent"),
    ("httpRequest", "requestMethod"),
    ("httpRequest", "protocol"),
)


@pytest.mark.parametrize("field", _ODD_FIELDS, ids=".".join)
def test_a_field_of_any_json_type_never_breaks_a_check(
    field: tuple[str, ...], tmp_path: Path, pack: RulePack
) -> None:
    """Log data is data: a field holding a list, an object, a huge number... is at worst ignored, whether
    the entries come as dicts (the live source) or decoded from an export."""
    entries = list(generate("db-outage", hours=2, scale=0.1))
    infinite: set[int] = set()  # ids of the entries given Infinity, which JSON cannot hold
    for at, entry in enumerate(entries[::5]):
        holder = entry
        for key in field[:-1]:
            if not isinstance(holder.get(key), dict):
                holder[key] = {}
            holder = holder[key]
        holder[field[-1]] = value = _ODD_VALUES[at % len(_ODD_VALUES)]
        if value == float("inf"):
            infinite.add(id(entry))
    path = tmp_path / "export.json"
    write_export((e for e in entries if id(e) not in infinite), str(path))
    for source in (entries, FileSource(str(path))):
        report = run_check(source, CheckOptions(service="emergence-app"), pack).report
        assert report.status in {"OK", "DEGRADED", "CRITICAL", "UNKNOWN"}
        json.loads(render(report, "json", "en"))
        render(report, "text", "fr")
