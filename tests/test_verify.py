"""`prodguardian verify`: a revision against the one before it, on the simulator's deploys and built ones."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from referencing import Registry, Resource

from prodguardian.check import CheckOptions
from prodguardian.cli import main
from prodguardian.errors import ConfigError
from prodguardian.probes import ProbeResult
from prodguardian.render_verify import render_verification
from prodguardian.resources import data_dir
from prodguardian.rules import RulePack
from prodguardian.simulate import REVISION_BAD, REVISION_CURRENT, REVISION_OLD, generate
from prodguardian.source import write_export
from prodguardian.verify import (
    MIN_TRAFFIC,
    Verification,
    VerifyOptions,
    failed_verification,
    new_error_groups,
    run_verify,
    wait_for_traffic,
)
from tests import logs
from tests.fake_logging_server import FakeLoggingServer
from tests.reports import builtin_pack

OLD, NEW = "emergence-app-00297-6pr", "emergence-app-00298-abc"


# Enough simulated hours to hold the previous revision: the bad deploy is in the window, the healthy
# scenario's revision started 18 hours before it ends.
HOURS = {"healthy": 20, "bad-deploy": 2}


@cache
def scenario(name: str) -> Verification:
    """`prodguardian verify` on a simulator scenario, made once for the module."""
    return run_verify(generate(name, hours=HOURS[name]), VerifyOptions(), builtin_pack())


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _traffic(
    start: float, count: int, revision: str, status: int = 200, step: float = 10
) -> list[dict[str, Any]]:
    return [logs.request(start + step * i, "/api/threads", status, revision=revision) for i in range(count)]


def test_a_healthy_revision_passes_against_the_one_before_it() -> None:
    result = scenario("healthy")
    assert result.verdict == "PASS" and result.exit_code == 0
    assert result.new is not None and result.old is not None
    assert (result.new.revision, result.old.revision) == (REVISION_CURRENT, REVISION_OLD)
    # The previous revision ran 18 hours ago: compared over the same length of time, just before the deploy.
    assert not result.same_hours and result.old.end - result.old.start == result.new.end - result.new.start
    assert all(change.after.met for change in result.objectives)
    assert result.rollback is None
    assert "Every objective met, no failure category worse than before." in render_verification(result)


def test_the_success_table_is_the_incidents() -> None:
    ids = [change.after.objective.id for change in scenario("healthy").objectives]
    assert ids == [
        "websocket_error_rate",
        "database_errors",
        "http_error_rate",
        "latency_p95",
        "database_reconnection",
    ]
    targets = {
        c.after.objective.id: (c.after.objective.target, c.after.objective.inclusive)
        for c in scenario("healthy").objectives
    }
    assert targets == {
        "websocket_error_rate": (0.01, False),
        "database_errors": (0.0, True),
        "http_error_rate": (0.01, False),
        "latency_p95": (1000.0, False),
        "database_reconnection": (5.0, False),
    }


def test_a_bad_deploy_fails_and_rolls_back_to_the_real_previous_revision() -> None:
    result = scenario("bad-deploy")
    assert result.verdict == "FAIL" and result.exit_code == 2
    assert result.new is not None and result.new.revision == REVISION_BAD
    missed = [c.after.objective.id for c in result.objectives if c.after.met is False]
    assert missed == ["http_error_rate"]
    assert result.rollback == (
        f"gcloud run services update-traffic emergence-app --to-revisions={REVISION_CURRENT}=100"
        " --region=europe-west1 --project=emergence-469005"
    )
    assert result.rollback_helps
    assert {c.category for c in result.categories if c.regressed} == {"http_5xx", "unknown"}
    assert next((f.rule, f.group, f.count) for f in result.new_groups) == (
        "unknown-error",
        "KeyError: 'thread_id'",
        12,
    )
    text = render_verification(result)
    assert f"Roll back to the previous revision, {REVISION_CURRENT}, then fix:" in text
    assert "  HTTP 5xx rate         0%      7.74%   < 1%     ❌" in text
    assert "⚠️ Unknown error: KeyError: 'thread_id' — 12 failures" in text


def test_a_revision_with_little_traffic_is_not_enough_data(pack: RulePack) -> None:
    entries = _traffic(0, 200, OLD) + _traffic(2000, MIN_TRAFFIC - 1, NEW)
    result = run_verify(entries, VerifyOptions(), pack)
    assert result.verdict == "NOT ENOUGH DATA" and result.exit_code == 3
    text = render_verification(result)
    assert f"{NEW} served 99 requests and sessions; at least 100 are needed to judge a 1% rate" in text
    assert "prodguardian verify --service emergence-app --wait 15m" in text
    enough = run_verify(_traffic(0, 200, OLD) + _traffic(2000, MIN_TRAFFIC, NEW), VerifyOptions(), pack)
    assert enough.verdict == "PASS"


def test_a_traffic_split_compares_both_revisions_over_the_same_hours(pack: RulePack) -> None:
    before = _traffic(-3600, 200, OLD, step=15)
    split = _traffic(0, 150, OLD, step=20) + _traffic(5, 150, NEW, step=20, status=200)
    failing = _traffic(7, 10, NEW, status=500, step=300)
    result = run_verify(before + split + failing, VerifyOptions(), pack)
    assert result.same_hours and result.old is not None and result.new is not None
    assert result.old.start == result.new.start and result.old.end == result.new.end
    assert result.verdict == "FAIL"
    assert [c.category for c in result.categories if c.regressed] == ["http_5xx"]


def test_rolling_back_is_not_advised_as_a_fix_when_the_previous_revision_failed_too(pack: RulePack) -> None:
    entries = (
        _traffic(0, 150, OLD)
        + _traffic(1001, 5, OLD, 500, 100)
        + _traffic(2000, 150, NEW)
        + _traffic(2001, 5, NEW, 500, 100)
    )
    result = run_verify(entries, VerifyOptions(), pack)
    assert result.verdict == "FAIL" and not result.rollback_helps
    assert f"The previous revision, {OLD}, missed these objectives too" in render_verification(result)


def test_a_revision_name_that_is_not_a_plain_identifier_never_enters_the_command(pack: RulePack) -> None:
    odd = "rev-1;touch pwned"
    entries = _traffic(0, 150, odd) + _traffic(2000, 150, NEW) + _traffic(2001, 10, NEW, 500, 100)
    result = run_verify(entries, VerifyOptions(), pack)
    assert result.verdict == "FAIL" and result.old is not None and result.old.revision == odd
    assert result.rollback is None
    assert "touch pwned" not in (result.rollback or "")
    markdown = render_verification(result, "markdown")
    assert "`rev-1;touch pwned`" in markdown and "```sh" not in markdown


def test_verify_an_older_revision_by_name(pack: RulePack) -> None:
    entries = _traffic(0, 150, OLD) + _traffic(2000, 150, NEW)
    result = run_verify(entries, VerifyOptions(CheckOptions(), revision=OLD), pack)
    assert result.new is not None and result.new.revision == OLD and result.old is None
    assert result.verdict == "PASS"
    assert "no earlier revision in the data: judged by the objectives alone" in render_verification(result)


def test_new_error_groups_are_the_fingerprints_the_previous_revision_never_had() -> None:
    assert new_error_groups({"a:", "b:x"}, ["b:x", "c:", "a:y"]) == ["c:", "a:y"]
    assert new_error_groups([], []) == []


def test_french_and_json_say_the_same() -> None:
    result = scenario("bad-deploy")
    french = render_verification(result, "text", "fr")
    assert french.startswith("❌ Vérification du déploiement\u00a0: FAIL — emergence-app (europe-west1)")
    assert f"Revenez à la révision précédente, {REVISION_CURRENT}, puis corrigez\u00a0:" in french
    document = json.loads(render_verification(result, "json"))
    assert document["verdict"] == "FAIL" and document["previous"]["name"] == REVISION_CURRENT
    assert document["rollback"]["command"] == result.rollback
    assert [o["id"] for o in document["objectives"] if o["met"] is False] == ["http_error_rate"]
    assert document["new_error_groups"][0]["group"] == "KeyError: 'thread_id'"


def test_waiting_verifies_again_until_there_is_traffic_or_the_time_is_up() -> None:
    moments = [datetime(2025, 10, 11, 12, 0, tzinfo=UTC)]
    pauses: list[float] = []

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        moments[0] += timedelta(seconds=seconds)

    def verdicts(*sequence: str) -> Any:
        answers = iter(sequence)
        return lambda: Verification(next(answers), None, None, None, False)  # type: ignore[arg-type]

    clock = lambda: moments[0]  # noqa: E731
    done = wait_for_traffic(
        verdicts("NOT ENOUGH DATA", "NOT ENOUGH DATA", "PASS"),
        timedelta(minutes=15),
        clock=clock,
        sleep=sleep,
    )
    assert done.verdict == "PASS" and pauses == [60.0, 60.0]
    pauses.clear()
    late = wait_for_traffic(
        verdicts(*["NOT ENOUGH DATA"] * 4), timedelta(seconds=150), clock=clock, sleep=sleep
    )
    assert late.verdict == "NOT ENOUGH DATA" and pauses == [60.0, 60.0, 30.0]


def test_cli_exit_codes_follow_the_verdict(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    export = tmp_path / "bad-deploy.json"
    write_export(generate("bad-deploy", hours=2), str(export))
    code, out, _ = run(capsys, "verify", "--source", str(export), "--format", "markdown")
    assert code == 2 and f"--to-revisions={REVISION_CURRENT}=100" in out and "```sh" in out
    code, out, _ = run(capsys, "verify", "--source", str(export), "--revision", REVISION_CURRENT)
    assert code == 0 and out.startswith("✅ Deploy verification: PASS — emergence-app (europe-west1)")
    small = tmp_path / "small.json"
    write_export(_traffic(0, 150, OLD) + _traffic(2000, 20, NEW), str(small))
    assert run(capsys, "verify", "--source", str(small))[0] == 3
    code, _, err = run(capsys, "verify", "--source", str(small), "--revision", "nope")
    assert code == 3 and "--revision: no traffic of 'nope' in the input" in err


def test_cli_wait_needs_the_live_source(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "verify", "--source", "export.json", "--wait", "15m")
    assert code == 3 and "--wait re-reads Cloud Logging up to now" in err
    code, _, err = run(capsys, "verify", "--source", "export.json", "--wait", "soon")
    assert code == 3 and "--wait: 'soon' is not a duration" in err


def test_a_failed_verify_writes_not_enough_data_to_the_json_report(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Automation reading --json-report always gets this verification's verdict, never an older one."""
    report, gone = tmp_path / "verify.json", tmp_path / "gone.json"
    report.write_text('{"verdict": "PASS"}', encoding="utf-8")
    code, out, err = run(
        capsys, "verify", "--source", str(gone), "--service", "emergence-app", "--json-report", str(report)
    )
    assert code == 3 and out == "" and f"{gone}: No such file or directory" in err
    document = json.loads(report.read_text(encoding="utf-8"))
    assert document["verdict"] == "NOT ENOUGH DATA" and document["service"] == "emergence-app"
    assert document["reason"] == f"could not verify: {gone}: No such file or directory"
    assert (document["revision"], document["rollback"], document["probes"]) == (None, None, [])
    argv = ["verify", "--source", str(gone), "--wait", "15m", "--json-report", str(report), "--lang", "fr"]
    assert run(capsys, *argv)[0] == 3  # an option that fails: the same, in the report's language
    reason = json.loads(report.read_text(encoding="utf-8"))["reason"]
    assert reason.startswith("vérification impossible\u00a0: --wait re-reads Cloud Logging up to now")


def test_cli_waits_on_the_live_source_and_stops_once_there_is_traffic(
    capsys: pytest.CaptureFixture[str],
    fake_logging_server: FakeLoggingServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("LOGGING_EMULATOR_HOST", fake_logging_server.host)
    monkeypatch.setenv("PRODGUARDIAN_CALLS_PER_SECOND", "1000")
    fake_logging_server.add(generate("healthy", hours=2, end=datetime.now(UTC) - timedelta(minutes=1)))
    report = tmp_path / "verify.json"
    code, out, _ = run(
        capsys,
        "verify",
        "--service",
        "emergence-app",
        "--project",
        "emergence-469005",
        "--quiet",
        "--wait",
        "15m",
        "--json-report",
        str(report),
    )
    assert code == 0, out
    document = json.loads(report.read_text(encoding="utf-8"))
    assert document["verdict"] == "PASS" and document["revision"]["name"] == REVISION_CURRENT
    assert document["previous"] is None


def test_no_revision_serving_and_several_services(pack: RulePack) -> None:
    lines = [logs.text_line(10 * i, "worker heartbeat", "INFO") for i in range(20)]
    result = run_verify(lines, VerifyOptions(), pack)
    assert result.verdict == "NOT ENOUGH DATA" and result.new is None
    assert "⚪ no revision served requests in the window" in render_verification(result)
    other = _traffic(0, 10, OLD)
    for entry in other:
        entry["resource"]["labels"]["service_name"] = "billing"
    with pytest.raises(
        ConfigError, match="verify checks one service: name it; the input holds billing, emergence-app"
    ):
        run_verify(other + _traffic(0, 10, NEW), VerifyOptions(), pack)
    named = run_verify(other + _traffic(0, 150, NEW), VerifyOptions(CheckOptions(service="billing")), pack)
    assert named.context.service == "billing" and named.new is not None and named.new.revision == OLD


def _schema(name: str) -> Any:
    return json.loads((data_dir("templates") / name).read_text(encoding="utf-8"))


def test_the_json_form_follows_its_schema_in_every_verdict(pack: RulePack) -> None:
    report = _schema("report.schema.json")
    registry = Registry().with_resource(report["$id"], Resource.from_contents(report))
    validator = jsonschema.Draft202012Validator(_schema("verify.schema.json"), registry=registry)
    timeout = ProbeResult("http://127.0.0.1:9/api/health", False, "timeout", elapsed_ms=5000.0)
    little = run_verify(_traffic(0, 200, OLD) + _traffic(2000, 20, NEW), VerifyOptions(), pack, [timeout])
    silent = run_verify([logs.text_line(0, "worker heartbeat", "INFO")], VerifyOptions(), pack)
    failed = failed_verification("export.json: No such file or directory", VerifyOptions(), [timeout])
    for result in (scenario("healthy"), scenario("bad-deploy"), little, silent, failed):
        for lang in ("en", "fr"):
            validator.validate(json.loads(render_verification(result, "json", lang)))


def test_objectives_from_a_rules_directory_replace_the_built_in_ones(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "objectives.yaml").write_text(
        "objectives:\n  - {id: latency_p95, metric: latency_p95_ms, below: 100}\n", encoding="utf-8"
    )
    entries = _traffic(0, 150, OLD) + _traffic(2000, 150, NEW)  # every request takes 112 ms
    result = run_verify(entries, VerifyOptions(CheckOptions(rules=(str(rules),))))
    assert result.verdict == "FAIL"
    latency = next(c for c in result.objectives if c.after.objective.id == "latency_p95")
    assert latency.after.objective.target == 100 and latency.after.met is False
    assert "  p95 latency           112 ms  112 ms  < 100 ms  ❌" in render_verification(result)


def test_a_clear_regression_fails_even_before_the_minimum_traffic(pack: RulePack) -> None:
    entries = _traffic(1700, 200, OLD, step=1.5) + _traffic(2000, 30, NEW) + _traffic(2001, 20, NEW, 500, 10)
    result = run_verify(entries, VerifyOptions(), pack)
    assert result.new is not None and result.new.traffic == 50 < MIN_TRAFFIC
    assert result.verdict == "FAIL" and [c.category for c in result.categories if c.regressed] == ["http_5xx"]
    assert result.rollback is not None and f"--to-revisions={OLD}=100" in result.rollback
