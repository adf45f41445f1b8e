"""`check --source cloud` and `fetch` through the CLI and the real client, against a fake Logging API."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from prodguardian.cli import main
from prodguardian.simulate import generate
from tests.fake_logging_server import FakeLoggingServer, Fault

UNTIL = "2025-10-11T12:04:00Z"
CHECK = ["--service", "emergence-app", "--until", UNTIL, "--project", "emergence-469005", "--quiet"]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_fetch_then_check_file_gives_the_cloud_report(
    capsys: pytest.CaptureFixture[str], logging_api: FakeLoggingServer, tmp_path: Path
) -> None:
    # Without a state: a store's latency quantiles are its sketch's, within 2% of the exact ones.
    code, live, _ = run(capsys, "check", *CHECK, "--no-state", "--format", "json")
    assert code == 2
    export = tmp_path / "window.json"
    code, _, _ = run(capsys, "fetch", *CHECK, "--output", str(export))
    assert code == 0
    code, replay, _ = run(capsys, "check", "--source", str(export), "--until", UNTIL, "--format", "json")
    assert code == 2
    assert json.loads(replay) == json.loads(live)
    report = json.loads(live)
    assert report["metrics"]["websocket_failures"] == 9 and report["metrics"]["websocket_connections"] == 80
    assert report["findings"][0]["rule"] == "database-unavailable"


def test_show_filter_needs_no_credentials(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", *CHECK, "--show-filter")
    assert code == 0
    assert (
        'resource.type="cloud_run_revision"' in out and 'resource.labels.service_name="emergence-app"' in out
    )
    assert 'timestamp>="2025-10-10T11:04:00' in out and 'timestamp<"2025-10-11T12:04:00' in out


def test_truncated_read_is_reported(
    capsys: pytest.CaptureFixture[str], outage_api: FakeLoggingServer
) -> None:
    _, out, _ = run(capsys, "check", *CHECK, "--max-entries", "2000", "--format", "json")
    report = json.loads(out)
    assert report["totals"]["truncated"] is True
    _, out, _ = run(capsys, "check", *CHECK, "--max-entries", "2000")
    assert "read cut at --max-entries" in out


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (Fault(status=403), "roles/logging.viewer"),
        (Fault(status=404), "emergence-469005"),
    ],
    ids=["permission-denied", "unknown-project"],
)
def test_fetch_errors_are_one_line_exit_3(
    capsys: pytest.CaptureFixture[str], outage_api: FakeLoggingServer, fault: Fault, message: str
) -> None:
    outage_api.inject_always(fault)
    for command in ("check", "fetch"):
        code, out, err = run(capsys, command, *CHECK)
        assert code == 3 and out == ""
        assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_unreachable_endpoint_is_exit_3(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOGGING_EMULATOR_HOST", "127.0.0.1:9")  # discard port: nothing listens
    code, out, err = run(capsys, "check", *CHECK)
    assert code == 3 and out == "" and "unreachable" in err.lower()


def _as_service(entries: Iterable[dict[str, Any]], service: str) -> Iterator[dict[str, Any]]:
    """A scenario's entries as another service's (its name and its revisions')."""
    for entry in entries:
        labels = entry["resource"]["labels"]
        revision = labels.get("revision_name", "")
        labels["service_name"] = labels["configuration_name"] = service
        labels["revision_name"] = revision.replace("emergence-app", service)
        yield entry


def test_a_live_check_without_service_checks_every_service_worst_first(
    capsys: pytest.CaptureFixture[str],
    fake_logging_server: FakeLoggingServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("LOGGING_EMULATOR_HOST", fake_logging_server.host)
    monkeypatch.setenv("PRODGUARDIAN_CALLS_PER_SECOND", "1000")
    fake_logging_server.add(_as_service(generate("healthy", hours=3), "web-frontend"))
    fake_logging_server.add(_as_service(generate("slow", hours=3), "billing-api"))
    fake_logging_server.add(generate("db-outage", hours=3))
    json_report = tmp_path / "report.json"
    code, text, _ = run(
        capsys, "check", "--until", UNTIL, "--project", "emergence-469005", "--json-report", str(json_report)
    )
    assert code == 2  # the worst service's
    assert text.startswith("3 services, worst first: 🔴 emergence-app, 🟡 billing-api, 🟢 web-frontend\n")
    report = json.loads(json_report.read_text(encoding="utf-8"))
    statuses = [(s["service"], s["status"]) for s in report["services"]]
    assert statuses == [("emergence-app", "CRITICAL"), ("billing-api", "DEGRADED"), ("web-frontend", "OK")]
    assert report["status"] == "CRITICAL" and report["findings"][0]["rule"] == "database-unavailable"
