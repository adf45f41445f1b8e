"""One failure, one finding, counted once: one-to-one joining, chained failures, resources, duplicates."""

from __future__ import annotations

import copy
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from prodguardian.check import CheckOptions, run_check
from prodguardian.events import build_events
from prodguardian.folding import DUPLICATE, OTHER_RESOURCE
from prodguardian.render import render
from prodguardian.rules import RulePack
from prodguardian.source import FileSource, write_export
from prodguardian.verdict import Report
from tests import logs

KEY_ERROR = """Traceback (most recent call last):
  File "/app/main.py", line 88, in get_thread
    return threads[payload["thread_id"]]
KeyError: 'thread_id'"""

WORKER_BOOT = """Traceback (most recent call last):
  File "/usr/local/lib/python3.11/site-packages/gunicorn/arbiter.py", line 609, in spawn_worker
    worker.init_process()
  File "/usr/local/lib/python3.11/site-packages/gunicorn/util.py", line 371, in import_app
    mod = importlib.import_module(module)
  File "/app/main.py", line 3, in <module>
    from settings import DATABASE_URL
ModuleNotFoundError: No module named 'settings'"""


def check(entries: Any, pack: RulePack, **options: Any) -> Report:
    return run_check(entries, CheckOptions(**options), pack).report


def test_five_failing_requests_with_five_tracebacks_are_five_failures(pack: RulePack) -> None:
    entries = []
    for i in range(5):
        at = 10 + i * 0.4  # five requests on one instance within two seconds
        entries.append(logs.request(at, "/api/threads/7", 500, "0.05s", trace=f"{i:032x}"))
        entries.append(logs.text_line(at + 0.03, KEY_ERROR, "ERROR"))
    entries += [logs.request(100 + i, "/api/threads", 200) for i in range(40)]
    report = check(entries, pack)
    unknown = next(f for f in report.findings if f.category == "unknown")
    assert unknown.count == 5
    assert unknown.group == "KeyError: 'thread_id'"
    http = next(f for f in report.findings if f.category == "http_5xx")
    assert http.count == 5 and http.caused_by == "unknown-error"


def test_a_failing_worker_start_is_one_finding_titled_by_its_exception(pack: RulePack) -> None:
    boot = [
        logs.text_line(5.000, "[2025-10-11 11:30:05 +0000] [8] [ERROR] Exception in worker process", "ERROR"),
        logs.text_line(5.001, WORKER_BOOT, "ERROR"),
        logs.text_line(
            5.002, "[2025-10-11 11:30:05 +0000] [8] [ERROR] Worker (pid:8) exited with code 3", "ERROR"
        ),
        logs.text_line(5.003, "[2025-10-11 11:30:05 +0000] [1] [ERROR] Shutting down: Master", "ERROR"),
    ]
    report = check(boot + [logs.request(60 + i, "/", 200) for i in range(10)], pack)
    (failed,) = [f for f in report.findings if f.kind == "failure"]  # a missing module: the code cannot load
    assert failed.rule == "module-load-failure" and failed.count == 1 and failed.severity == "CRITICAL"
    assert (
        failed.evidence and failed.evidence.examples[0] == "ModuleNotFoundError: No module named 'settings'"
    )


def scheduler_call(at: float) -> dict[str, Any]:
    """A Cloud Scheduler job's log of a call to the service: it carries an httpRequest of its own."""
    scheduler = logs.request(at, "/tasks/nightly", 500, "1.3s", user_agent="Google-Cloud-Scheduler")
    scheduler["logName"] = f"projects/{logs.PROJECT}/logs/cloudscheduler.googleapis.com%2Fexecutions"
    scheduler["resource"] = {
        "type": "cloud_scheduler_job",
        "labels": {"job_id": "nightly", "location": "europe-west1", "project_id": logs.PROJECT},
    }
    scheduler["jsonPayload"] = {"status": "INTERNAL", "targetType": "HTTP", "url": "https://x/tasks/nightly"}
    return scheduler


def test_other_resources_with_an_http_request_are_not_the_services_requests(pack: RulePack) -> None:
    entries = []
    for i in range(12):
        entries.append(
            logs.request(60 * i, "/tasks/nightly", 500, "1.2s", user_agent="Google-Cloud-Scheduler")
        )
        entries.append(scheduler_call(60 * i + 1.3))
    events = build_events(entries)
    assert events.dropped["reason"].tolist() == [OTHER_RESOURCE] * 12
    assert len(events.table) == 12
    report = check(entries, pack)
    http = next(f for f in report.findings if f.category == "http_5xx")
    assert (http.count, http.denominator) == (12, 12)


def test_an_entry_read_twice_counts_once(pack: RulePack) -> None:
    entries = [logs.request(i, "/api/threads", 500 if i % 10 == 0 else 200) for i in range(100)]
    overlapping = entries + copy.deepcopy(entries[50:])  # two exports that overlap by half
    events = build_events(overlapping)
    assert events.dropped["reason"].tolist() == [DUPLICATE] * 50 and len(events.table) == 100
    once, twice = check(entries, pack), check(overlapping, pack)
    assert [(f.rule, f.count) for f in once.findings] == [(f.rule, f.count) for f in twice.findings]
    assert once.metrics is not None and twice.metrics is not None
    assert once.metrics.requests == twice.metrics.requests == 100


def test_entries_without_insert_id_are_never_merged(pack: RulePack) -> None:
    entries = [logs.text_line(1, "same line", "INFO") for _ in range(3)]
    for entry in entries:
        del entry["insertId"]
    assert len(build_events(entries).table) == 3


def test_a_crash_shows_the_exception_its_instance_logged_before_dying(pack: RulePack) -> None:
    boot = [
        logs.text_line(5.000, WORKER_BOOT, "ERROR"),
        logs.text_line(5.400, "Container called exit(3).", "WARNING", log="varlog%2Fsystem"),
    ]
    report = check(boot + [logs.request(60 + i, "/", 200) for i in range(10)], pack)
    crash = next(f for f in report.findings if f.category == "crash")
    assert crash.evidence is not None
    assert crash.evidence.examples[0] == "ModuleNotFoundError: No module named 'settings'"
    assert crash.evidence.frame == "main.py:3 in <module>"


def test_failed_requests_latency_is_reported_apart_from_the_objective(pack: RulePack) -> None:
    fast = [logs.request(10 * i, "/api/threads", 200, "0.100s") for i in range(30)]
    timeouts = [logs.request(400 + 10 * i, "/api/export", 504, "300.000s") for i in range(3)]
    report = check(fast + timeouts, pack)
    assert report.metrics is not None
    assert report.metrics.latency_ms is not None and report.metrics.latency_ms["p95"] == 100
    assert report.metrics.failed_latency_ms == {"p50": 300_000.0, "p95": 300_000.0, "p99": 300_000.0}


def folded_shapes(at: float, failing: int, service: str = logs.SERVICE) -> list[dict[str, Any]]:
    """Traffic with every shape that folds away: failing requests with their two echoes each, a split
    traceback, entries read twice and a scheduler job's calls (one each per failing request)."""
    entries = [logs.request(at + i, "/api/threads") for i in range(20)]
    for i in range(failing):
        entries += logs.failing_request_lines(at + 30 + i, trace=f"{service}{at}{i}".encode().hex()[:32])
        entries += [copy.deepcopy(entries[i]), scheduler_call(at + 60 + i)]
    entries += logs.split_traceback(at + 120)
    for entry in entries:
        if entry["resource"]["type"] == "cloud_run_revision":  # the service's, on its own instance
            entry["resource"]["labels"]["service_name"] = service
            entry["labels"]["instanceId"] = service.encode().hex().ljust(64, "0")
    return entries


WINDOW_END = logs.T0 + timedelta(minutes=30)  # a window from T0 - 30 min; the baseline, the 24 h before
TRACEBACK_LINES = len(logs.DB_TRACEBACK.splitlines())
FOLDED_TOTALS = ("entries", "skipped", "suppressed", "echoes", "duplicates", "other_resources")


def test_every_total_counts_the_window_only(pack: RulePack, tmp_path: Path) -> None:
    """An export whose baseline holds three times the window's echoes, merged lines, duplicates and other
    resources' entries: the report counts the window's (the input's skipped entries aside)."""
    baseline = [*folded_shapes(-3 * 3600, failing=3), {"no": "timestamp"}]
    window = folded_shapes(0, failing=1)
    path = tmp_path / "export.json"
    write_export(baseline + window, str(path))
    options = CheckOptions(until=WINDOW_END)
    from_file = run_check(FileSource(str(path)), options, pack).report
    totals = json.loads(render(from_file, "json", "en"))["totals"]
    read = (
        20 + 5 + TRACEBACK_LINES
    )  # requests; the failing request's row, echoes, error, traceback; the split one
    assert {name: totals[name] for name in FOLDED_TOTALS} == {
        "entries": read,
        "skipped": 1,  # the input's: an entry without a timestamp is in no window
        "suppressed": 0,
        "echoes": 2,
        "duplicates": 1,
        "other_resources": 1,
    }
    assert from_file.context.totals["merged_lines"] == TRACEBACK_LINES - 1
    from_list = run_check(baseline + window, options, pack).report
    assert render(from_list, "json", "en") == render(from_file, "json", "en")


def test_each_service_counts_its_own_folded_entries(pack: RulePack) -> None:
    """Echoes, merged lines and duplicates are a service's; other resources' entries, the input's."""
    entries = folded_shapes(0, failing=1, service="api") + folded_shapes(0, failing=2, service="worker")
    report = check(entries, pack, until=WINDOW_END)
    totals = {r.context.service: r.context.totals for r in report.services}
    for service, failing in (("api", 1), ("worker", 2)):
        assert totals[service]["echoes"] == 2 * failing
        assert totals[service]["duplicates"] == failing
        assert totals[service]["merged_lines"] == TRACEBACK_LINES - 1
        assert totals[service]["other_resources"] == 3


READINESS = 'Readiness HTTP probe failed 3 times consecutively for container "api-1" on path "/ready".'


def test_a_readiness_probe_failing_every_period_is_one_failure_per_instance(pack: RulePack) -> None:
    other = "1" * 64
    flapping = [logs.text_line(i * 30, READINESS, "WARNING", log="varlog%2Fsystem") for i in range(6)]
    flapping.append(logs.text_line(95, READINESS, "WARNING", log="varlog%2Fsystem", instance=other))
    traffic = [logs.request(200 + i, "/api/threads", 200) for i in range(30)]
    readiness = next(
        f for f in check(flapping + traffic, pack).findings if f.rule == "readiness-check-failure"
    )
    assert readiness.count == 2 and readiness.severity == "DEGRADED"


def test_a_revisions_ready_false_event_is_the_failed_start_it_follows(pack: RulePack) -> None:
    probe = logs.text_line(
        10,
        'Default STARTUP TCP probe failed 1 time consecutively for container "worker" on port 8080.',
        "ERROR",
        log="varlog%2Fsystem",
    )
    event = logs.text_line(11.3, "", "ERROR", instance="")
    del event["textPayload"], event["labels"]
    event["logName"] = f"projects/{logs.PROJECT}/logs/cloudaudit.googleapis.com%2Fsystem_event"
    event["protoPayload"] = {
        "status": {
            "code": 9,
            "message": f"Ready condition status changed to False for Revision {logs.REVISION} with message: "
            "The user-provided container failed to start and listen on the port defined provided by the "
            "PORT=8080 environment variable within the allocated timeout.",
        }
    }
    startup = next(f for f in check([probe, event], pack).findings if f.category == "startup")
    assert startup.count == 1
    assert startup.evidence and startup.evidence.instances == 1  # the audit event names no instance


def test_a_burst_that_recovered_is_degraded_and_one_still_going_critical(pack: RulePack) -> None:
    aborted = "The request was aborted because there was no available instance."
    burst = [logs.request(i * 0.5, "/push", 429, "0s", method="POST", text=aborted) for i in range(40)]
    served = [logs.request(30 + i * 3, "/push", 200, "2.1s", method="POST") for i in range(100)]
    recovered = next(f for f in check(burst + served, pack).findings if f.rule == "no-available-instance")
    assert (
        recovered.severity == "DEGRADED" and recovered.evidence and recovered.evidence.recovered_minutes > 5
    )
    late = [logs.request(330 + i * 0.5, "/push", 429, "0s", method="POST", text=aborted) for i in range(40)]
    going_on = next(f for f in check(served + late, pack).findings if f.rule == "no-available-instance")
    assert going_on.severity == "CRITICAL" and going_on.evidence and going_on.evidence.recovered_minutes == 0
