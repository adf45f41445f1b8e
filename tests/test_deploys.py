"""A failed deploy is not an outage: a new revision that never starts while the previous one keeps serving."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from prodguardian.check import CheckOptions, run_check
from prodguardian.history import History
from prodguardian.render import render
from prodguardian.rules import RulePack
from prodguardian.state import StateStore
from tests import logs

OLD, NEW = "emergence-app-00297-6pr", "emergence-app-00298-abc"
PROBE = (
    'Default STARTUP TCP probe failed 1 time consecutively for container "emergence-app-1" on port 8080.'
    " The instance was not started."
)


def _probe_failures(revision: str, count: int = 3) -> list[dict[str, Any]]:
    entries = []
    for i in range(count):
        entry = logs.text_line(600 + 60 * i, PROBE, "ERROR", log="varlog%2Fsystem", revision=revision)
        entry["labels"] = {"instanceId": f"00bad{i:060d}"}
        entries.append(entry)
    return entries


def test_a_new_revision_that_never_starts_beside_a_serving_one_is_a_failed_deploy(pack: RulePack) -> None:
    served = [logs.request(30 * i, "/api/threads", 200, revision=OLD) for i in range(100)]
    report = run_check(served + _probe_failures(NEW), CheckOptions(), pack).report
    assert report.status == "DEGRADED"
    startup = next(f for f in report.findings if f.category == "startup")
    assert (startup.severity, startup.serving_revision) == ("DEGRADED", OLD)
    assert f"the deploy failed; {OLD} still serves the traffic" in render(report)
    assert "le déploiement a échoué" in render(report, "text", "fr")


def test_startup_failures_with_no_revision_serving_stay_critical(pack: RulePack) -> None:
    failing = [logs.request(30 * i, "/api/threads", 503, revision=NEW) for i in range(20)]
    report = run_check(failing + _probe_failures(NEW), CheckOptions(), pack).report
    assert report.status == "CRITICAL"
    startup = next(f for f in report.findings if f.category == "startup")
    assert startup.severity == "CRITICAL" and startup.serving_revision is None


def test_slow_requests_while_instances_fail_to_start_are_a_symptom_not_a_critical(pack: RulePack) -> None:
    slow = [logs.request(30 * i, "/api/threads", 200, "4.5s", revision=NEW) for i in range(40)]
    report = run_check(slow + _probe_failures(NEW), CheckOptions(), pack).report
    latency = next(f for f in report.findings if f.kind == "latency")
    assert (latency.severity, latency.caused_by) == ("DEGRADED", "startup-failure")
    text = render(report)
    assert "└─ slows requests: p95 4.5 s over 40 requests" in text
    assert "Latency high" not in text  # not a finding of its own


def _deploy_audit(at: float, revision: str) -> dict[str, Any]:
    """An Admin Activity entry of a deploy (Cloud Run Admin API v2): the revision is named only in
    `protoPayload.resourceName`, the resource labels leave it empty."""
    entry = logs.text_line(at, "", revision="")
    del entry["textPayload"], entry["labels"]
    entry["logName"] = f"projects/{logs.PROJECT}/logs/cloudaudit.googleapis.com%2Factivity"
    entry["severity"] = "NOTICE"
    entry["protoPayload"] = {
        "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
        "authenticationInfo": {"principalEmail": "deployer@emergence-469005.iam.gserviceaccount.com"},
        "serviceName": "run.googleapis.com",
        "methodName": "google.cloud.run.v2.Revisions.CreateRevision",
        "resourceName": f"projects/{logs.PROJECT}/locations/europe-west1/services/{logs.SERVICE}"
        f"/revisions/{revision}",
        "request": {"@type": "type.googleapis.com/google.cloud.run.v2.Revision"},
    }
    return entry


def test_a_revision_is_dated_by_its_creation_in_the_audit_log_not_its_first_traffic(pack: RulePack) -> None:
    served = [logs.request(30 * i, "/api/threads", 200, revision=OLD) for i in range(100)]
    failing = [logs.request(900 + 30 * i, "/api/threads", 503, revision=NEW) for i in range(60)]
    created = _deploy_audit(600, NEW)
    report = run_check([*served, created, *failing], CheckOptions(), pack).report
    rollback = next(r for r in report.recommendations if r.advice == "rollback")
    assert rollback.params["since"] == f"{logs.T0 + timedelta(seconds=600):%Y-%m-%d %H:%M}"
    assert "failing since it started (2025-10-11 11:40 UTC" in render(report)
    without_audit = run_check([*served, *failing], CheckOptions(), pack).report
    rollback = next(r for r in without_audit.recommendations if r.advice == "rollback")
    assert rollback.params["since"] == "2025-10-11 11:45"  # the first request, five minutes later


def test_a_warm_check_dates_a_revision_by_the_creation_an_earlier_read_stored(
    pack: RulePack, tmp_path: Path
) -> None:
    served = [logs.request(30 * i, "/api/threads", 200, revision=OLD) for i in range(100)]
    failing = [logs.request(900 + 30 * i, "/api/threads", 503, revision=NEW) for i in range(60)]
    entries = [*served, _deploy_audit(600, NEW), *failing]
    stamps = [pd.Timestamp(e["timestamp"]) for e in entries]
    cursor, end = logs.T0 + timedelta(seconds=700), max(stamps).ceil("min").to_pydatetime()
    since = cursor - timedelta(minutes=2)  # after the audit entry: the warm read does not hold it
    with StateStore(tmp_path / "state.sqlite") as store:
        first = [e for e, t in zip(entries, stamps, strict=True) if t < cursor]
        run_check(first, CheckOptions(until=cursor), pack, history=History(store))
        new = [e for e, t in zip(entries, stamps, strict=True) if t >= since]
        history = History(store, since=since)
        report = run_check(new, CheckOptions(until=end), pack, history=history).report
        revisions = store.revisions(logs.SERVICE).set_index("revision")
    stored = [f"{pd.Timestamp(int(revisions.loc[NEW, c])):%H:%M:%S}" for c in ("created", "first_traffic")]
    assert stored == ["11:40:00", "11:45:00"]  # the audit entry's time, then the first request's
    assert pd.isna(revisions.loc[OLD, "created"])  # no audit entry of it was read
    assert "failing since it started (2025-10-11 11:40 UTC" in render(report)
    stateless = run_check(entries, CheckOptions(until=end), pack).report
    assert report.recommendations == stateless.recommendations
