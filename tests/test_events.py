"""Events: one per failure, not one per line."""

from __future__ import annotations

from prodguardian.events import build_events, describe_traceback
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


def test_traceback_names_the_exception_and_innermost_app_frame() -> None:
    exc_type, message, file, line, function = describe_traceback(logs.DB_TRACEBACK)
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
    assert events.totals.merged_lines == len(logs.DB_TRACEBACK.splitlines()) - 1


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
    assert events.totals.echoes == 2  # uvicorn access line, "Request completed" line
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
