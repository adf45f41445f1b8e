"""Unit tests of the middle stages (classify, aggregate, detect, verdict) on hand-written entries."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pandas as pd

from prodguardian.aggregate import Aggregates, Window, aggregate
from prodguardian.classify import Classified, classify
from prodguardian.detect import Detection, Finding, detect
from prodguardian.events import build_events
from prodguardian.rules import RulePack
from prodguardian.verdict import Context, RevisionStats, build_report, order_findings, recommend
from tests import logs

WINDOW = Window(
    start=logs.T0 - timedelta(minutes=30),
    end=logs.T0 + timedelta(minutes=30),
    baseline_start=logs.T0 - timedelta(hours=24, minutes=30),
)


def stages(entries: list[dict[str, Any]], pack: RulePack) -> tuple[Classified, Aggregates, Detection]:
    events = build_events(entries)
    classified = classify(events.table, pack)
    aggs = aggregate(classified, pack, WINDOW, events.dropped)
    return classified, aggs, detect(aggs, pack)


def finding(detection: Detection, rule: str) -> Finding:
    return next(f for f in detection.findings if f.rule == rule)


def traffic(count: int, start: float = 0.0, **kwargs: Any) -> list[dict[str, Any]]:
    return [logs.request(start + i * 5, "/api/threads", **kwargs) for i in range(count)]


def test_classify_suppresses_noise_before_any_rule(pack: RulePack) -> None:
    entries = [
        logs.request(0, "/.env", 404),
        logs.request(1, "/api/health", 200),
        logs.request(2, "/api/health", 503),
    ]
    classified, _, _ = stages(entries, pack)
    assert classified.events["suppressed_by"].fillna("").tolist() == ["bot-scan", "health-probe", ""]
    assert classified.matches["rule"].tolist() == ["http-5xx"]  # a failing probe is real


def test_classify_takes_one_rule_per_category_and_groups_unknown_errors(pack: RulePack) -> None:
    entries = [
        logs.text_line(0, "sqlite3.OperationalError: database is locked", "ERROR"),
        logs.text_line(10, "KeyError: 'thread_id' in request 8f3a9c2e11", "ERROR"),
        logs.text_line(20, "KeyError: 'thread_id' in request 0b77d41a93", "ERROR"),
    ]
    classified, _, _ = stages(entries, pack)
    matches = classified.matches.sort_values("row")
    assert matches["rule"].tolist() == ["database-locked", "unknown-error", "unknown-error"]
    assert matches["group"].tolist()[1:] == ["KeyError: 'thread_id' in request <id>"] * 2


def test_aggregate_separates_window_and_baseline_and_counts_failures_once(pack: RulePack) -> None:
    baseline = traffic(20, start=-6 * 3600)
    window = traffic(20) + logs.failing_request_lines(200, trace="c" * 32)
    _, aggs, _ = stages(baseline + window, pack)
    traffic_by_period = aggs.traffic.groupby("period")["requests"].sum().to_dict()
    assert traffic_by_period == {"baseline": 20, "window": 21}
    units = aggs.failures[aggs.failures["period"] == "window"]
    assert units["unit"].nunique() == 1 and set(units["category"]) == {"database", "http_5xx"}
    http = aggs.counts[(aggs.counts["rule"] == "http-5xx") & (aggs.counts["period"] == "window")]
    assert http["caused_by"].tolist() == ["database-unavailable"]
    assert aggs.totals["entries"] == 21 + 4  # the two echo lines count as read entries


def test_detect_share_thresholds_need_minimum_evidence(pack: RulePack) -> None:
    one_of_fifty = [*traffic(49), logs.request(300, "/api/x", 500, trace="d" * 32)]
    _, _, detection = stages(one_of_fifty, pack)
    assert finding(detection, "http-5xx").severity == "INFO"  # 2% but a single failure
    three_of_fifty = traffic(47) + [logs.request(300 + i, "/api/x", 500, trace=f"{i:032x}") for i in range(3)]
    _, _, detection = stages(three_of_fifty, pack)
    http = finding(detection, "http-5xx")
    assert (http.severity, http.count, http.denominator) == ("DEGRADED", 3, 50)
    assert http.rate == 0.06 and http.threshold == {"share": 0.01, "of": "requests", "min_count": 2}


def test_detect_unknown_errors_fire_only_above_their_usual_rate(pack: RulePack) -> None:
    def errors(start: float, count: int) -> list[dict[str, Any]]:
        return [logs.text_line(start + i * 60, "ValueError: bad cursor 17", "ERROR") for i in range(count)]

    usual = [e for hour in range(1, 24) for e in errors(-hour * 3600, 4)]
    _, _, detection = stages(traffic(20) + usual + errors(0, 4), pack)
    assert finding(detection, "unknown-error").severity == "INFO"  # 4/h, as every hour
    _, _, detection = stages(traffic(20) + usual + errors(0, 25), pack)
    spike = finding(detection, "unknown-error")
    assert (
        spike.severity == "DEGRADED" and spike.baseline_per_hour is not None and spike.baseline_per_hour < 4
    )


def test_detect_metric_objective_miss_is_degraded(pack: RulePack) -> None:
    lost = "Database connection lost. Attempting automatic reconnection..."
    entries = traffic(20) + [logs.json_line(i * 100, lost, "WARNING") for i in range(6)]
    _, _, detection = stages(entries, pack)
    reconnections = finding(detection, "database-reconnection")
    assert (reconnections.severity, reconnections.count) == ("DEGRADED", 6)
    assert detection.metrics.db_reconnections == 6
    assert detection.metrics.errors == 0  # counted, never failures


def test_verdict_orders_root_causes_before_their_symptoms() -> None:
    def make(rule: str, severity: str, count: int, caused_by: str | None = None) -> Finding:
        return Finding(rule, "x", severity, "failure", "", count, count, None, caused_by=caused_by)

    ordered = order_findings(
        [
            make("http-5xx", "CRITICAL", 30, caused_by="database-unavailable"),
            make("latency-p95", "DEGRADED", 300),
            make("database-unavailable", "DEGRADED", 30),
            make("memory-limit-exceeded", "CRITICAL", 2),
        ]
    )
    assert [f.rule for f in ordered] == [
        "database-unavailable",
        "http-5xx",
        "memory-limit-exceeded",
        "latency-p95",
    ]


def test_rollback_for_a_revision_failing_since_it_started_however_long_ago(pack: RulePack) -> None:
    context = Context("emergence-app", "emergence-469005", "europe-west1", WINDOW, {})
    problem = [Finding("http-5xx", "http_5xx", "CRITICAL", "failure", "", 20, 20, None)]
    stamp = pd.Timestamp(logs.T0).to_pydatetime()
    old = RevisionStats(
        "app-00001-aaa", stamp, failures=0, requests=100, baseline_failures=0, baseline_requests=900
    )
    for deployed_ago in (timedelta(0), timedelta(hours=2)):  # deployed in the window, or in the baseline
        deployed = stamp - deployed_ago
        new = RevisionStats(
            "app-00002-bbb", deployed, 20, 100, 0, 500 if deployed_ago else 0, deployed + timedelta(minutes=1)
        )
        advice = recommend("CRITICAL", problem, [old, new], context)
        assert advice[0].advice == "rollback" and advice[0].command == (
            "gcloud run services update-traffic emergence-app --to-revisions=app-00001-aaa=100 "
            "--region=europe-west1 --project=emergence-469005"
        )
        assert advice[0].params["since"] == f"{deployed:%Y-%m-%d %H:%M}"
    # Served cleanly for hours, then began failing (the 2025-10-11 incident): the deploy is not the cause.
    clean_then_failing = RevisionStats(
        "app-00002-bbb", stamp - timedelta(hours=5), 20, 100, 0, 500, stamp - timedelta(minutes=20)
    )
    assert all(
        r.advice != "rollback" for r in recommend("CRITICAL", problem, [old, clean_then_failing], context)
    )


def test_build_report_status_is_the_worst_severity(pack: RulePack) -> None:
    entries = [
        *traffic(40),
        logs.text_line(100, "Container terminated on signal 9.", "WARNING", log="varlog%2Fsystem"),
    ]
    _, aggs, detection = stages(entries, pack)
    report = build_report(detection, Context("emergence-app", None, None, WINDOW, aggs.totals))
    assert report.status == "DEGRADED" and report.findings[0].rule == "container-crash"  # one crash, no loop
