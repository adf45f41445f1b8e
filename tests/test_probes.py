"""Health probes against a loopback HTTP server: healthy, slow, 500, 404, not JSON, unhealthy, unreachable."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jsonschema
import pytest

from prodguardian.check import CheckOptions, run_check
from prodguardian.cli import main
from prodguardian.errors import ConfigError
from prodguardian.probes import (
    HEALTH_PATHS,
    ProbeResult,
    check_url,
    health_status,
    probe,
    probe_all,
    service_probes,
)
from prodguardian.render import render
from prodguardian.resources import data_dir
from prodguardian.rules import RulePack
from prodguardian.source import write_export
from tests import logs

SCHEMA = json.loads((data_dir("templates") / "report.schema.json").read_text(encoding="utf-8"))
SLOW_S = 2.0
TIMEOUT_S = 0.3


ANSWERS = {
    "/api/health": (200, "application/json", json.dumps({"status": "healthy", "db": "connected"})),
    "/health/liveness": (200, "text/plain", "OK"),
    "/health/readiness": (200, "application/json", json.dumps({"status": "degraded"})),
    "/no-status": (200, "application/json", json.dumps({"uptime": 12})),
    "/up": (200, "application/json", json.dumps({"status": "UP"})),
    "/broken": (500, "text/plain", "Internal Server Error"),
    "/huge": (200, "application/json", "[" * 200_000),
}


class _Health(BaseHTTPRequestHandler):
    """/api/health healthy JSON, /health/liveness plain text, /health/readiness unhealthy JSON, and errors."""

    def do_GET(self) -> None:
        if self.path == "/slow":
            time.sleep(SLOW_S)
        status, kind, body = ANSWERS.get(self.path, (404, "text/plain", "Not Found"))
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        with contextlib.suppress(OSError):  # the probe stops reading a huge body, or has timed out
            self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # quiet test output
        pass


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_the_service_probes_are_the_runbooks_three_endpoints(base_url: str) -> None:
    urls = service_probes(base_url + "/")
    assert urls == [base_url + path for path in HEALTH_PATHS]
    results = probe_all(urls, TIMEOUT_S)
    assert [(r.ok, r.problem, r.status, r.health) for r in results] == [
        (True, None, 200, "healthy"),
        (True, None, 200, None),  # a 200 that is not JSON is healthy
        (False, "unhealthy", 200, "degraded"),
    ]


def test_error_statuses_fail(base_url: str) -> None:
    assert (probe(base_url + "/broken").problem, probe(base_url + "/broken").status) == ("status", 500)
    missing = probe(base_url + "/health")
    assert (missing.ok, missing.problem, missing.status) == (False, "status", 404)


def test_a_slow_endpoint_times_out(base_url: str) -> None:
    result = probe(base_url + "/slow", TIMEOUT_S)
    assert (result.ok, result.problem, result.status) == (False, "timeout", None)


def test_an_unreachable_port_fails_with_the_network_error() -> None:
    result = probe(f"http://127.0.0.1:{_closed_port()}/api/health", TIMEOUT_S)
    assert (result.ok, result.problem) == (False, "unreachable")
    assert result.detail


def test_json_without_a_status_or_too_deep_is_judged_by_its_200(base_url: str) -> None:
    assert probe(base_url + "/no-status").ok
    assert probe(base_url + "/huge").ok  # read up to 64 KiB, not JSON then: no crash
    assert health_status(b"[" * 100_000) is None
    assert probe(base_url + "/up").health == "UP" and probe(base_url + "/up").ok  # any case


def test_only_http_urls_are_probed() -> None:
    for url in ("file:///etc/passwd", "ftp://example.com/x", "http://", "localhost:8080/health"):
        with pytest.raises(ConfigError, match="is not an http:// or https:// URL"):
            check_url(url)


OLD, NEW = "emergence-app-00297-6pr", "emergence-app-00298-abc"


def _deploy_export(tmp_path: Path) -> Path:
    """A deploy from OLD to NEW with enough healthy traffic on both revisions for verify to judge."""
    export = tmp_path / "deploy.json"
    entries = [logs.request(10 * i, "/api/threads", revision=OLD) for i in range(150)]
    entries += [logs.request(2000 + 10 * i, "/api/threads", revision=NEW) for i in range(150)]
    write_export(entries, str(export))
    return export


def test_verify_probes_the_service_url_and_a_failing_probe_fails_the_deploy(
    base_url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    export = _deploy_export(tmp_path)
    code = main(["verify", "--source", str(export), "--url", base_url, "--probe", base_url + "/up"])
    out = capsys.readouterr().out
    assert code == 2
    assert f"  ✅ {base_url}/api/health — 200 (healthy) in " in out
    assert f"  ❌ {base_url}/health/readiness — 200 but status degraded" in out
    assert f"  ✅ {base_url}/up — 200 (UP) in " in out
    assert f"--to-revisions={OLD}=100" in out


def test_check_probe_adds_a_row_per_probe_and_a_critical_startup_finding_per_failure(
    base_url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    export = tmp_path / "healthy.json"
    write_export([logs.request(10 * i, "/api/threads") for i in range(100)], str(export))
    probes = ["--probe", base_url + "/api/health", "--probe", base_url + "/broken"]
    code = main(["check", "--source", str(export), *probes, "--json-report", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    assert code == 2
    assert f"❌ Health probe failed: {base_url}/broken — HTTP 500, not 200" in out
    assert f"Health probes\n  ✅ {base_url}/api/health — 200 (healthy) in " in out
    assert "Memory, startups, crashes: nothing unusual" not in out
    document = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    jsonschema.validate(document, SCHEMA)
    finding = next(f for f in document["findings"] if f["kind"] == "probe")
    assert (finding["category"], finding["severity"], finding["group"]) == (
        "startup",
        "CRITICAL",
        base_url + "/broken",
    )
    assert [p["ok"] for p in document["probes"]] == [True, False]
    assert main(["check", "--source", str(export), "--probe", base_url + "/api/health"]) == 0
    assert "✅ Memory, startups, crashes: nothing unusual" in capsys.readouterr().out


def test_probes_from_the_config_file(
    base_url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    export = tmp_path / "healthy.json"
    write_export([logs.request(10 * i, "/api/threads") for i in range(100)], str(export))
    (tmp_path / "prodguardian.yaml").write_text(f"probes:\n  - {base_url}/broken\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert main(["check", "--source", str(export)]) == 2
    assert f"❌ {base_url}/broken — HTTP 500, not 200" in capsys.readouterr().out


def test_probes_join_a_check_of_one_service_only(pack: RulePack) -> None:
    billing = [logs.request(10 * i, "/api/pay") for i in range(10)]
    for entry in billing:
        entry["resource"]["labels"]["service_name"] = "billing"
    entries = billing + [logs.request(10 * i, "/api/threads") for i in range(10)]
    down = ProbeResult("http://127.0.0.1:9/api/health", False, "unreachable", detail="connection refused")
    with pytest.raises(ConfigError, match="health probes belong to one service: name it with --service"):
        run_check(entries, CheckOptions(), pack, [down])
    report = run_check(entries, CheckOptions(service="billing"), pack, [down]).report
    assert report.status == "CRITICAL" and [f.rule for f in report.problems] == ["probe-failed"]
    assert "❌ http://127.0.0.1:9/api/health — unreachable: connection refused" in render(report)


def test_a_check_or_verify_that_fails_after_probing_keeps_the_probes_in_its_json_report(
    base_url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    report, gone = tmp_path / "r.json", str(tmp_path / "gone.json")
    probes = ["--probe", base_url + "/api/health", "--probe", base_url + "/broken"]
    assert main(["check", "--source", gone, *probes, "--json-report", str(report)]) == 3
    document = json.loads(report.read_text(encoding="utf-8"))
    jsonschema.validate(document, SCHEMA)
    assert document["status"] == "UNKNOWN" and document["reason"] == f"{gone}: No such file or directory"
    assert [(p["url"], p["ok"]) for p in document["probes"]] == [
        (base_url + "/api/health", True),
        (base_url + "/broken", False),
    ]
    assert main(["verify", "--source", gone, "--url", base_url, "--json-report", str(report)]) == 3
    document = json.loads(report.read_text(encoding="utf-8"))
    assert document["verdict"] == "NOT ENOUGH DATA"
    assert [p["url"] for p in document["probes"]] == service_probes(base_url)
    capsys.readouterr()


def test_the_probe_timeout_is_an_option_and_a_setting(
    base_url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The slow endpoint answers after 2 s: within the default 5 s, a timeout under a shorter limit."""
    export = _deploy_export(tmp_path)
    slow = base_url + "/slow"
    argv = ["verify", "--source", str(export), "--probe", slow, "--probe-timeout", str(TIMEOUT_S)]
    assert main([*argv, "--format", "json"]) == 2
    probes = json.loads(capsys.readouterr().out)["probes"]
    assert [(p["url"], p["ok"], p["problem"]) for p in probes] == [(slow, False, "timeout")]
    (tmp_path / "prodguardian.yaml").write_text(f"probe_timeout: {TIMEOUT_S}\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert main(["check", "--source", str(export), "--probe", slow]) == 2
    assert f"❌ Health probe failed: {slow} — no answer within " in capsys.readouterr().out
    assert main(["check", "--source", str(export), "--probe-timeout", "0"]) == 3
    assert "--probe-timeout" in capsys.readouterr().err
