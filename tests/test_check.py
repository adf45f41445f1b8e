"""The whole pipeline on realistic data: the incident, the old script's mistakes, every scenario."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import jsonschema
import pytest

from prodguardian.check import CheckOptions, run_check
from prodguardian.render import render
from prodguardian.resources import data_dir
from prodguardian.rules import RulePack
from prodguardian.simulate import SCENARIOS
from prodguardian.stats import poisson_upper_tail as poisson_tail
from prodguardian.verdict import Report, memory_step
from tests import logs
from tests.reports import scenario_report

SCHEMA = json.loads((data_dir("templates") / "report.schema.json").read_text(encoding="utf-8"))


def check(entries: Any, pack: RulePack, **options: Any) -> Report:
    return run_check(entries, CheckOptions(**options), pack).report


def as_json(report: Report) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(render(report, "json"))
    jsonschema.validate(document, SCHEMA)
    return document


@pytest.fixture(scope="module")
def incident() -> Report:
    return scenario_report("db-outage")


def test_incident_is_critical_with_the_database_as_root_cause(incident: Report) -> None:
    assert incident.status == "CRITICAL" and incident.exit_code == 2
    root = incident.findings[0]
    assert (root.rule, root.category, root.count, root.severity) == (
        "database-unavailable",
        "database",
        9,
        "CRITICAL",
    )
    assert root.evidence is not None
    assert root.evidence.frame == "src/backend/core/database/manager.py:64 in _ensure_connection"
    assert "RuntimeError: Database connection is not available." in root.evidence.examples
    assert root.evidence.revisions == ["emergence-app-00297-6pr"] and root.evidence.instances == 2
    assert root.baseline_per_hour == 0
    websocket = next(f for f in incident.findings if f.category == "websocket")
    assert websocket.caused_by == "database-unavailable" and websocket.caused_count == 9
    assert (websocket.count, websocket.denominator, websocket.rate) == (9, 80, 0.1125)


def test_incident_metrics_objectives_and_advice(incident: Report) -> None:
    document = as_json(incident)
    metrics = document["metrics"]
    assert metrics["websocket_connections"] == 80 and metrics["websocket_failures"] == 9
    assert metrics["websocket_error_rate"] == pytest.approx(0.1125)
    assert document["totals"]["errors"] == 9  # each failure once, not once per line
    assert metrics["latency_ms"]["p95"] < 1000  # WebSocket session lengths never enter latency
    objectives = {o["id"]: o for o in document["objectives"]}
    assert objectives["websocket_error_rate"]["met"] is False
    assert objectives["database_errors"]["value"] == 9 and objectives["database_errors"]["met"] is False
    assert objectives["database_reconnection"]["met"] is True and objectives["latency_p95"]["met"] is True
    first = document["recommendations"][0]
    assert (
        first["priority"] == "HIGH"
        and "_ensure_connection() raises instead of reconnecting" in first["action"]
    )
    assert not any("update-traffic" in (r["command"] or "") for r in document["recommendations"])


def test_incident_text_report_leads_with_verdict_and_root_cause(incident: Report) -> None:
    text = render(incident, "text")
    lines = text.splitlines()
    assert lines[0] == "🔴 Production Status: CRITICAL — emergence-app (europe-west1)"
    assert lines[1].startswith("Window 11:04–12:04 UTC, 2025-10-11 (1 h) · baseline: previous 24 h")
    assert "❌ Database unavailable — 9 failures in 1 h (usual: 0/h, p < 1e-6)" in text
    assert "   at src/backend/core/database/manager.py:64 in _ensure_connection" in text
    assert "└─ causes 9 refused WebSocket sessions: 11.25% of 80 sessions" in text
    assert text.index("Database unavailable") < text.index("Objectives") < text.index("Recommendations")
    french = render(incident, "text", "fr")
    assert french.startswith("🔴 État de la production\u00a0: CRITICAL")
    assert "❌ Base de données indisponible — 9 échecs en 1\u00a0h" in french


def test_one_failing_request_counts_once(pack: RulePack) -> None:
    entries = [logs.request(i * 10, "/api/threads") for i in range(100)]
    entries += logs.failing_request_lines(505, trace="b" * 32)
    report = check(entries, pack)
    document = as_json(report)
    assert document["totals"]["errors"] == 1
    counts = {f["rule"]: f["count"] for f in document["findings"]}
    assert counts["database-unavailable"] == 1 and counts["http-5xx"] == 1
    http = next(f for f in document["findings"] if f["rule"] == "http-5xx")
    assert http["caused_by"] == "database-unavailable" and http["denominator"] == 101


def test_split_traceback_counts_once(pack: RulePack) -> None:
    entries = [logs.request(i * 10, "/api/threads") for i in range(50)]
    entries += logs.split_traceback(
        100, text=logs.DB_TRACEBACK.replace("Database connection is not", "KeyError")
    )
    entries += logs.split_traceback(300)
    report = check(entries, pack)
    database = next(f for f in report.findings if f.rule == "database-unavailable")
    assert database.count == 1
    assert as_json(report)["totals"]["errors"] == 2


def test_bot_scans_alone_are_ok(pack: RulePack) -> None:
    scans = [
        "/.env",
        "/.git/HEAD",
        "/wp-admin/setup-config.php",
        "/application.wadl",
        "/phpmyadmin/index.php",
    ]
    entries = [
        logs.request(i, scans[i % len(scans)], 404, "0.002s", user_agent="zgrab/0.x") for i in range(300)
    ]
    entries += [logs.request(400 + i, "/api/threads") for i in range(100)]
    entries += [
        logs.request(600, "/api/admin/users/42", 404)
    ]  # a real 404, not a scan: counted, not a failure
    report = check(entries, pack)
    assert report.status == "OK"
    document = as_json(report)
    assert document["totals"]["suppressed"] == 300
    assert document["metrics"]["requests"] == 101


def test_latency_comes_from_http_requests_only(pack: RulePack) -> None:
    entries = [logs.request(i, "/api/threads", latency="1.800s") for i in range(40)]
    entries += [logs.request(100 + i, f"/ws/chat/{i}", 101, "900.5s") for i in range(40)]
    report = check(entries, pack)
    latency = next(f for f in report.findings if f.rule == "latency-p95")
    assert latency.severity == "DEGRADED" and latency.value_ms == pytest.approx(1800)
    assert report.metrics is not None and report.metrics.requests == 40


def test_no_entries_in_the_window_is_unknown(pack: RulePack) -> None:
    entries = [logs.request(0, "/api/threads")]
    until = logs.T0 + timedelta(hours=5)
    report = check(entries, pack, until=until)
    assert report.status == "UNKNOWN" and report.exit_code == 3
    assert "silence is not health" in render(report, "text")
    assert as_json(report)["status"] == "UNKNOWN"
    assert check([], pack).status == "UNKNOWN"


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_every_scenario_gets_its_expected_status(name: str) -> None:
    report = scenario_report(name)
    assert report.status == SCENARIOS[name].expected_status
    as_json(report)
    for lang in ("en", "fr"):
        for fmt in ("text", "markdown"):
            assert render(report, fmt, lang).startswith(("🔴", "🟡", "🟢", "## 🔴", "## 🟡", "## 🟢"))


def test_memory_advice_never_recommends_the_current_limit() -> None:
    report = scenario_report("memory-oom")
    commands = [r.command for r in report.recommendations if r.command]
    assert "gcloud run services update emergence-app --memory=2Gi --region=europe-west1" in commands[0]
    assert memory_step(1024, 1062) == 2048
    assert memory_step(512, 573) == 1024
    assert memory_step(1024, 1900) == 4096  # ceil(1.25 × 1900) = 2375 > 2 × 1024
    assert memory_step(32768, 40000) == 32768


def test_rollback_names_the_last_clean_revision() -> None:
    report = scenario_report("bad-deploy")
    assert report.status == "CRITICAL"
    rollback = report.recommendations[0]
    assert rollback.advice == "rollback" and rollback.priority == "HIGH"
    assert rollback.command == (
        "gcloud run services update-traffic emergence-app --to-revisions=emergence-app-00297-6pr=100 "
        "--region=europe-west1 --project=emergence-469005"
    )


def test_a_healthy_french_report() -> None:
    text = render(scenario_report("healthy"), "text", "fr")
    assert text.startswith("🟢 État de la production\u00a0: OK")
    for line in ("✅ Aucune anomalie détectée", "✅ Latence stable", "✅ Pas d'erreurs WebSocket"):
        assert line in text


def test_baseline_spike_guard() -> None:
    assert poisson_tail(0, 3.0) == 1.0
    assert poisson_tail(9, 0.0) == 0.0
    assert poisson_tail(3, 3.0) > 0.5  # as usual
    assert poisson_tail(12, 2.0) < 1e-5  # a spike
