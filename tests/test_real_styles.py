"""Real logging styles end to end through the check: inferred severities, ANSI colour, split Node/Go
traces, Error Reporting events, window coverage, future clocks, background callers, pasted/UTF-16/paged input.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from prodguardian.check import CheckOptions, run_check
from prodguardian.events import build_events
from prodguardian.render import render
from prodguardian.rules import RulePack, load_pack
from prodguardian.source import FileSource
from prodguardian.verdict import Report
from tests import logs

ERROR = 500  # LogSeverity.ERROR: the events table holds severities as numbers


def check(entries: Any, pack: RulePack, **options: Any) -> Report:
    return run_check(entries, CheckOptions(**options), pack).report


def healthy_traffic(start: float = 100, count: int = 30) -> list[dict[str, Any]]:
    return [logs.request(start + i * 60, "/api/threads", 200) for i in range(count)]


def errors_of(report: Report) -> list[Any]:
    """Failure findings that say something went wrong: a known rule's or the fallback's."""
    return [f for f in report.findings if f.kind == "failure" and f.category not in ("http_5xx",)]


ERROR_STYLES = {
    "python-logging": ["ERROR:root:Failed to refresh cache: [Errno 110] Connection timed out"],
    "loguru": ["2025-10-11 11:30:05.123 | ERROR    | app.main:run:42 - boom"],
    "gunicorn": ["[2025-10-11 11:30:05 +0000] [8] [ERROR] Exception in worker process"],
    "logfmt": ['level=error msg="payment failed" order=42'],
    "go-panic": ["panic: runtime error: invalid memory address or nil pointer dereference"],
    "java": [
        'Exception in thread "main" java.lang.IllegalStateException: boom',
        "\tat com.example.App.run(App.java:22)",
        "\tat com.example.App.main(App.java:10)",
    ],
}


@pytest.mark.parametrize("style", sorted(ERROR_STYLES))
def test_a_plain_error_line_without_severity_is_an_error_in_every_style(style: str, pack: RulePack) -> None:
    lines = ERROR_STYLES[style]
    entries = []
    for n in range(3):
        at = 60 + n * 7  # several seconds apart: three separate failures
        entries += [logs.text_line(at + i * 0.001, line) for i, line in enumerate(lines)]
    entries += healthy_traffic()
    table = build_events(entries).table
    first = table[table["message"].str.startswith(lines[0][:20], na=False)]
    assert len(first) == 3
    assert (first["severity"] >= ERROR).all()  # a Go panic is CRITICAL
    report = check(entries, pack)
    found = errors_of(report)
    assert found, f"no finding for a {style} error line"
    assert sum(f.count for f in found) == 3


@pytest.mark.parametrize(
    "style",
    sorted(ERROR_STYLES),
)
def test_a_plain_error_lines_severity_is_marked_inferred(style: str) -> None:
    lines = ERROR_STYLES[style]
    entries = [logs.text_line(60 + i * 0.001, line) for i, line in enumerate(lines)] + healthy_traffic()
    table = build_events(entries).table
    first = table[table["message"].str.startswith(lines[0][:20], na=False)]
    assert len(first) == 1
    assert first["severity_inferred"].all()


@pytest.mark.parametrize("line", ["INFO:     Started server process [1]", "0 errors found"])
def test_plain_lines_that_are_not_errors_give_no_finding(line: str, pack: RulePack) -> None:
    entries = [logs.text_line(60 + n * 7, line) for n in range(5)] + healthy_traffic()
    table = build_events(entries).table
    assert not (table["severity"] >= ERROR).any()
    report = check(entries, pack)
    assert errors_of(report) == []
    assert report.status == "OK"


DB_LOGURU = (
    "\x1b[31m2025-10-11 11:30:05.123 | ERROR    | backend.core.database.manager:_ensure_connection:64"
    " - RuntimeError: Database connection is not available.\x1b[0m"
)


def test_ansi_coloured_loguru_line_matches_a_rule_and_the_example_is_clean(pack: RulePack) -> None:
    entries = [logs.text_line(60 + n * 5, DB_LOGURU, log="stdout") for n in range(3)] + healthy_traffic()
    report = check(entries, pack)
    db = next(f for f in report.findings if f.rule == "database-unavailable")
    assert db.count == 3
    assert db.evidence is not None and db.evidence.examples
    assert all("\x1b" not in example for example in db.evidence.examples)
    assert "Database connection is not available" in db.evidence.examples[0]
    for fmt in ("text", "json", "markdown"):
        rendered = render(report, fmt, "en")
        assert "\x1b" not in rendered and "\\u001b" not in rendered


STRICT_RULE = """rules:
  - id: widget-carried-error
    category: database
    description: Widget failures the app itself logged as ERROR.
    match:
      kind: [app, system]
      severity: ERROR
      infer_severity: false
      message: 'widget exploded'
    thresholds:
      degraded: {count: 1}
    advice: investigate
"""


def test_a_rule_that_does_not_infer_severity_tests_only_the_carried_severity(tmp_path: Path) -> None:
    (tmp_path / "widget.yaml").write_text(STRICT_RULE, encoding="utf-8")
    strict = load_pack([str(tmp_path)])
    inferred = [logs.text_line(60 + n * 5, "ERROR:root:widget exploded") for n in range(3)]
    report = check(inferred + healthy_traffic(), strict)
    assert not [f for f in report.findings if f.rule == "widget-carried-error"]
    carried = [logs.text_line(60 + n * 5, "ERROR:root:widget exploded", "ERROR") for n in range(3)]
    report = check(carried + healthy_traffic(), strict)
    widget = next(f for f in report.findings if f.rule == "widget-carried-error")
    assert widget.count == 3


WIDGET_TRACE = """Traceback (most recent call last):
  File "/app/widgets.py", line 12, in spin
    raise RuntimeError("widget exploded")
RuntimeError: widget exploded"""


def test_a_rule_that_does_not_infer_severity_skips_a_split_trace_without_severity(tmp_path: Path) -> None:
    (tmp_path / "widget.yaml").write_text(STRICT_RULE, encoding="utf-8")
    strict = load_pack([str(tmp_path)])
    entries = []
    for n in range(3):
        entries += logs.split_traceback(60 + n * 10, text=WIDGET_TRACE)
    report = check(entries + healthy_traffic(), strict)
    assert not [f for f in report.findings if f.rule == "widget-carried-error"]


NODE_TRACE = """TypeError: Cannot read properties of undefined (reading 'id')
    at getUser (/app/src/users.js:42:13)
    at Layer.handle [as handle_request] (/app/node_modules/express/lib/router/layer.js:95:5)
    at process.processTicksAndRejections (node:internal/process/task_queues:95:5)
    at async Promise.all (index 0)"""

GO_TRACE = """panic: runtime error: invalid memory address or nil pointer dereference
[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x6b4f2a]

goroutine 1 [running]:
main.loadUser(0x0)
\t/app/cmd/server/users.go:57 +0x2a
main.handler({0x7f1e20, 0xc0000a6000}, 0xc0000b4000)
\t/app/cmd/server/main.go:31 +0x45
net/http.HandlerFunc.ServeHTTP(0xc0000a6000?, {0x7f1e20?, 0xc0000a6000?}, 0xc0000b4000?)
\t/usr/local/go/src/net/http/server.go:2136 +0x29
exit status 2"""


@pytest.mark.parametrize(
    ("text", "exc_type", "frame_file"),
    [
        (NODE_TRACE, "TypeError", "src/users.js"),
        (GO_TRACE, "panic", "cmd/server/users.go"),
    ],
    ids=["node", "go"],
)
def test_a_split_trace_folds_into_one_event_described_by_the_apps_frame(
    text: str, exc_type: str, frame_file: str, pack: RulePack
) -> None:
    entries = []
    for n in range(3):
        entries += logs.split_traceback(60 + n * 10, text=text)
    entries += healthy_traffic()
    table = build_events(entries).table
    traces = table[table["exc_type"].notna()]
    assert len(traces) == 3, traces[["message", "exc_type"]]
    assert traces["exc_type"].str.contains(exc_type).all()
    assert traces["frame_file"].str.endswith(frame_file).all()
    report = check(entries, pack)
    unknown = [f for f in report.findings if f.category == "unknown"]
    assert len(unknown) == 1
    assert unknown[0].count == 3
    assert unknown[0].evidence is not None and unknown[0].evidence.frame is not None
    assert frame_file in unknown[0].evidence.frame
    assert unknown[0].evidence.exc_type is not None and exc_type in unknown[0].evidence.exc_type


def test_a_split_go_panic_has_the_severity_of_the_same_panic_in_one_entry() -> None:
    whole = build_events([logs.text_line(60, GO_TRACE)]).table
    split = build_events(logs.split_traceback(60, text=GO_TRACE)).table
    assert len(whole) == len(split) == 1
    assert split["severity"].iloc[0] == whole["severity"].iloc[0]
    assert split["severity_inferred"].iloc[0] == whole["severity_inferred"].iloc[0]


REPORTED_ERROR_EVENT = "type.googleapis.com/google.devtools.clouderrorreporting.v1beta1.ReportedErrorEvent"


def test_an_error_reporting_event_logged_at_info_counts_as_an_error(pack: RulePack) -> None:
    entries = []
    for n in range(3):
        entries.append(
            logs.json_line(
                60 + n * 10,
                "ValueError: invalid literal for int() with base 10: 'abc'",
                "INFO",
                **{
                    "@type": REPORTED_ERROR_EVENT,
                    "serviceContext": {"service": logs.SERVICE},
                },
            )
        )
    entries += healthy_traffic()
    table = build_events(entries).table
    reported = table[table["message"].str.contains("invalid literal", na=False)]
    assert (reported["severity"] >= ERROR).all()
    report = check(entries, pack)
    found = errors_of(report)
    assert sum(f.count for f in found) == 3


def test_data_covering_two_minutes_of_the_window_says_so_and_rates_per_covered_hour(pack: RulePack) -> None:
    entries = [logs.request(3480 + i * 2, "/api/threads", 200) for i in range(60)]  # 58:00 .. 59:58
    entries += [logs.text_line(3490 + n * 20, "KeyError: 'thread_id'", "ERROR") for n in range(5)]
    report = check(entries, pack)
    text = render(report, "text", "en")
    assert "2 of 60 minutes" in text
    data = json.loads(render(report, "json", "en"))
    assert data["window"]["partial"] is True
    unknown = next(f for f in report.findings if f.category == "unknown")
    assert unknown.per_hour == pytest.approx(unknown.count / (2 / 60), rel=0.05)


def test_data_covering_the_whole_window_is_not_partial(pack: RulePack) -> None:
    entries = [logs.request(i * 60, "/api/threads", 200) for i in range(61)]
    report = check(entries, pack)
    data = json.loads(render(report, "json", "en"))
    assert data["window"]["partial"] is False
    assert "of 60 minutes" not in render(report, "text", "en")


def test_entries_stamped_in_the_future_are_skipped_and_never_move_the_window(pack: RulePack) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    newest = now - timedelta(minutes=10)
    real = [logs.request(newest - timedelta(seconds=60 * i), "/api/threads", 200) for i in range(30)]
    future = [logs.request(now + timedelta(hours=3, seconds=i), "/api/threads", 200) for i in range(4)]
    report = check(real + future, pack)
    assert report.context.totals["skipped"] >= 4
    end = report.context.window.end
    assert newest <= end <= newest + timedelta(seconds=1)
    data = json.loads(render(report, "json", "en"))
    assert any("4 entries stamped in the future" in warning for warning in data["warnings"])
    french = render(report, "text", "fr")
    assert (
        "⚠️ 4 entrées datées du futur (jusqu'au " in french and "ont été ignorées\u00a0: une horloge" in french
    )
    assert json.loads(render(report, "json", "fr"))["warnings"][0].startswith("4 entrées datées du futur")


def latency_entries(user_agent: str) -> list[dict[str, Any]]:
    return [
        logs.request(60 + i * 60, "/tasks/sync", 200, "120.0s", "POST", user_agent=user_agent)
        for i in range(30)
    ]


def test_slow_background_callers_do_not_degrade_latency(pack: RulePack) -> None:
    report = check(latency_entries("Google-Cloud-Scheduler"), pack)
    assert not [f for f in report.problems if f.category == "latency"]


def test_slow_browser_requests_degrade_latency(pack: RulePack) -> None:
    report = check(latency_entries("Mozilla/5.0 (Windows NT 10.0; Win64; x64)"), pack)
    latency = [f for f in report.problems if f.category == "latency"]
    assert latency and latency[0].severity in ("DEGRADED", "CRITICAL")


def test_failed_requests_do_not_enter_the_latency_quantile(pack: RulePack) -> None:
    entries = [logs.request(60 + i * 60, "/api/threads", 200, "0.1s") for i in range(40)]
    entries += [logs.request(90 + i * 60, "/api/threads", 500, "30.0s") for i in range(10)]
    report = check(entries, pack)
    assert not [f for f in report.problems if f.category == "latency"]
    latency = [f for f in report.findings if f.category == "latency"]
    for finding in latency:
        assert finding.value_ms is None or finding.value_ms < 1000


def sample_entries() -> list[dict[str, Any]]:
    entries = [logs.text_line(60 + n * 10, "KeyError: 'thread_id'", "ERROR") for n in range(4)]
    return entries + healthy_traffic(count=20)


def unknown_count(report: Report) -> int:
    return sum(f.count for f in report.findings if f.category == "unknown")


def test_pasted_log_entry_objects_read_through_the_check(tmp_path: Path, pack: RulePack) -> None:
    path = tmp_path / "pasted.txt"
    path.write_text("\n\n".join(json.dumps(e, indent=2) for e in sample_entries()) + "\n", encoding="utf-8")
    report = check(FileSource(str(path)), pack)
    assert report.context.totals["entries"] == 24
    assert unknown_count(report) == 4


def test_a_utf16_file_with_a_bom_reads_through_the_check(tmp_path: Path, pack: RulePack) -> None:
    path = tmp_path / "powershell.json"
    path.write_bytes(("\ufeff" + json.dumps(sample_entries(), indent=2)).encode("utf-16-le"))
    report = check(FileSource(str(path)), pack)
    assert report.context.totals["entries"] == 24
    assert unknown_count(report) == 4


def test_an_entries_list_page_reads_and_warns_about_the_next_page(tmp_path: Path, pack: RulePack) -> None:
    path = tmp_path / "page.json"
    path.write_text(json.dumps({"entries": sample_entries(), "nextPageToken": "abc"}), encoding="utf-8")
    report = check(FileSource(str(path)), pack)
    assert report.context.totals["entries"] == 24
    assert unknown_count(report) == 4
    data = json.loads(render(report, "json", "en"))
    assert any("page" in warning.lower() for warning in data["warnings"])
    assert "⚠️ une page d'entries:list avec un nextPageToken\u00a0: c'est une page" in render(
        report, "text", "fr"
    )
