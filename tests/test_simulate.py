"""The traffic simulator: deterministic, shaped like Cloud Logging, and each scenario holds its incident."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from functools import cache
from itertools import pairwise
from typing import Any

import pytest

from prodguardian.simulate import (
    DEFAULT_END,
    REVISION_BAD,
    REVISION_CURRENT,
    REVISION_OLD,
    SCENARIOS,
    count_hint,
    generate,
)

LOG = "projects/emergence-469005/logs/run.googleapis.com%2F"
REQUESTS, STDOUT, STDERR, SYSTEM = (LOG + n for n in ("requests", "stdout", "stderr", "varlog%2Fsystem"))
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")
WINDOW_START = DEFAULT_END - timedelta(hours=1)
PROBE_PATHS = {"/api/health", "/health/liveness", "/health/readiness"}


@cache
def window(name: str, scale: float = 1.0, seed: int = 0) -> tuple[dict[str, Any], ...]:
    """The check window (last hour) of a scenario, cached: entries are treated as read-only."""
    return tuple(generate(name, hours=1, scale=scale, seed=seed))


DAY_HOURS = 19  # the window, then 18 baseline hours: the oldest one still ran emergence-app-00296-abc


@cache
def full_day() -> tuple[dict[str, Any], ...]:
    return tuple(generate("db-outage", hours=DAY_HOURS))


def ns(stamp: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 'Z' timestamp with 0-9 fraction digits."""
    whole, _, fraction = stamp[:-1].partition(".")
    return epoch_seconds(whole) * 10**9 + int(fraction.ljust(9, "0"))


@cache
def epoch_seconds(whole: str) -> int:
    return int(datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp())


def http(entry: dict[str, Any]) -> dict[str, Any]:
    return entry.get("httpRequest") or {}


def path(entry: dict[str, Any]) -> str:
    return str(http(entry).get("requestUrl", "")).split(".run.app", 1)[-1]


def message(entry: dict[str, Any]) -> str:
    return str(entry.get("textPayload") or (entry.get("jsonPayload") or {}).get("message") or "")


def ws_attempts(entries: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    return [e for e in entries if path(e).startswith("/ws/") and http(e).get("status") in (101, 500)]


def with_message(entries: tuple[dict[str, Any], ...], text: str) -> list[dict[str, Any]]:
    return [e for e in entries if text in message(e)]


def is_scan(entry: dict[str, Any]) -> bool:
    """The simulator's genuine 404s are all on /api/ paths; its scans never are."""
    return http(entry).get("status") == 404 and not path(entry).startswith("/api/")


def user_requests(entries: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    """Request logs other than health probes and WebSockets."""
    return [e for e in entries if http(e) and path(e) not in PROBE_PATHS and not path(e).startswith("/ws/")]


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[int(0.95 * (len(ordered) - 1))]


def api_latencies(entries: tuple[dict[str, Any], ...] | list[dict[str, Any]]) -> list[float]:
    return [
        float(http(e)["latency"][:-1])
        for e in entries
        if path(e).startswith("/api/") and path(e) not in PROBE_PATHS and http(e)["status"] < 400
    ]


def test_the_scenarios_are_named_described_and_db_outage_comes_first() -> None:
    assert next(iter(SCENARIOS)) == "db-outage"
    expected = {"db-outage", "healthy", "bot-scan", "memory-oom", "bad-deploy", "slow", "startup-failure"}
    assert expected | {"recovered", "reconnect-storm"} <= set(SCENARIOS)
    for name, scenario in SCENARIOS.items():
        assert scenario.name == name
        assert re.fullmatch(r"[a-z]+(-[a-z]+)*", name)
        assert scenario.expected_status in ("OK", "DEGRADED", "CRITICAL")
        assert "\n" not in scenario.title
        assert scenario.expected_status in scenario.description
    assert SCENARIOS["db-outage"].expected_status == "CRITICAL"
    assert SCENARIOS["healthy"].expected_status == "OK"
    assert SCENARIOS["slow"].expected_status == "DEGRADED"


def test_an_unknown_scenario_is_refused_before_iteration() -> None:
    with pytest.raises(ValueError, match=r"unknown scenario 'db-outgae'; known: db-outage, healthy"):
        generate("db-outgae")
    with pytest.raises(ValueError, match="unknown scenario"):
        count_hint("nope")
    with pytest.raises(ValueError, match="timezone"):
        generate("healthy", end=datetime(2025, 10, 11, 12, 4))


def test_the_same_seed_gives_the_same_entries_and_another_seed_others() -> None:
    first = list(generate("db-outage", hours=2))
    assert first == list(full_day()[: len(first)])  # another run, same seed: the same entries
    other = window("db-outage", seed=8)
    assert [e["timestamp"] for e in first[:50]] != [e["timestamp"] for e in other[:50]]
    assert [message(e) for e in first[:50]] != [message(e) for e in other[:50]]


def test_baseline_hours_depend_only_on_seed_and_time() -> None:
    healthy = list(generate("healthy", hours=2))
    window_start = WINDOW_START.strftime("%Y-%m-%dT%H:%M:%S")
    baseline = [e for e in healthy if e["timestamp"] < window_start]
    assert baseline
    day = full_day()
    assert list(day[len(window("db-outage")) :][: len(baseline)]) == baseline
    assert day[: len(window("db-outage"))] == window("db-outage")  # fewer hours: a prefix


def test_entries_are_newest_first_inside_the_requested_hours() -> None:
    end = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    entries = list(generate("memory-oom", hours=2, end=end))
    times = [ns(e["timestamp"]) for e in entries]
    assert times == sorted(times, reverse=True)
    assert ns(end.strftime("%Y-%m-%dT%H:%M:%SZ")) - 2 * 3600 * 10**9 <= times[-1] <= times[0]
    assert times[0] < ns(end.strftime("%Y-%m-%dT%H:%M:%SZ"))
    default = full_day()
    assert default[0]["timestamp"] < "2025-10-11T12:04:00"
    assert default[-1]["timestamp"] >= "2025-10-10T17:04:00"


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_every_entry_has_the_cloud_logging_shape(name: str) -> None:
    entries = window(name)
    assert len({e["insertId"] for e in entries}) == len(entries)
    for entry in entries:
        assert entry["logName"] in (REQUESTS, STDOUT, STDERR, SYSTEM)
        assert STAMP.match(entry["timestamp"])
        assert STAMP.match(entry["receiveTimestamp"])
        assert ns(entry["receiveTimestamp"]) >= ns(entry["timestamp"])
        resource = entry["resource"]
        assert resource["type"] == "cloud_run_revision"
        labels = resource["labels"]
        assert labels["service_name"] == labels["configuration_name"] == "emergence-app"
        assert labels["location"] == "europe-west1"
        assert labels["project_id"] == "emergence-469005"
        assert labels["revision_name"] in (REVISION_OLD, REVISION_CURRENT, REVISION_BAD)
        payloads = [k for k in ("textPayload", "jsonPayload", "httpRequest") if k in entry]
        assert payloads
        assert entry.get("severity", "INFO") in ("INFO", "WARNING", "ERROR")
        if "trace" in entry:
            assert re.fullmatch(r"projects/emergence-469005/traces/[0-9a-f]{32}", entry["trace"])
        if "httpRequest" in entry:
            check_request(entry)
        else:
            assert re.fullmatch(r"[0-9a-f]{100,}", entry["labels"]["instanceId"])


def check_request(entry: dict[str, Any]) -> None:
    request = entry["httpRequest"]
    assert entry["logName"] == REQUESTS
    assert re.fullmatch(r"[0-9a-f]{16}", entry["spanId"])
    assert entry["trace"]
    assert request["requestUrl"].startswith("https://emergence-app-47fmxpbtfq-ew.a.run.app/")
    assert isinstance(request["status"], int)
    assert request["protocol"] == "HTTP/1.1"
    assert re.fullmatch(r"\d+\.\d{6}(\d{3})?s", request["latency"])
    assert request["requestSize"].isdigit()
    assert request["responseSize"].isdigit()
    assert request["userAgent"]
    assert request["remoteIp"]
    assert request["serverIp"]
    status = request["status"]
    assert entry["severity"] == ("ERROR" if status >= 500 else "WARNING" if status >= 400 else "INFO")
    if status != 429:  # an aborted request never reached an instance
        assert entry["labels"]["instanceId"]


def test_db_outage_window_has_80_websocket_attempts_of_which_9_fail() -> None:
    entries = window("db-outage")
    attempts = ws_attempts(entries)
    failures = [e for e in attempts if http(e)["status"] == 500]
    assert len(attempts) == 80
    assert len(failures) == 9
    assert all(e["severity"] == "ERROR" and e["trace"] for e in failures)
    assert all(0.03 <= float(http(e)["latency"][:-1]) <= 0.12 for e in failures)
    assert {e["resource"]["labels"]["revision_name"] for e in failures} == {REVISION_CURRENT}
    assert len({e["labels"]["instanceId"] for e in failures}) == 2
    first, last = failures[-1]["timestamp"], failures[0]["timestamp"]
    assert "2025-10-11T11:12:00" <= first < "2025-10-11T11:13:00"
    assert "2025-10-11T12:01:00" <= last < "2025-10-11T12:02:00"
    sessions = [e for e in attempts if http(e)["status"] == 101]
    assert all(30 <= float(http(e)["latency"][:-1]) <= 1200 for e in sessions)


def test_db_outage_failures_log_the_app_error_on_their_trace() -> None:
    entries = window("db-outage")
    errors = with_message(entries, "Database connection requested but no active connection is available.")
    assert len(errors) == 9
    failure_traces = {e["trace"] for e in ws_attempts(entries) if http(e)["status"] == 500}
    assert {e["trace"] for e in errors} == failure_traces
    for error in errors:
        assert error["logName"] == STDOUT
        assert error["severity"] == "ERROR"
        assert error["sourceLocation"] == {
            "file": "src/backend/core/database/manager.py",
            "line": "63",
            "function": "_ensure_connection",
        }


def test_db_outage_tracebacks_come_whole_and_split() -> None:
    entries = window("db-outage")
    whole = [e for e in entries if e["logName"] == STDERR and "\nTraceback (most recent" in message(e)]
    assert whole
    assert all(e["severity"] == "ERROR" and "trace" not in e for e in whole)
    text = message(whole[0])
    assert text.startswith("ERROR:    Exception in ASGI application\nTraceback (most recent call last):\n")
    assert 'websockets_impl.py", line 244, in run_asgi' in text
    assert text.endswith(
        '  File "/app/src/backend/core/database/manager.py", line 64, in _ensure_connection\n'
        '    raise RuntimeError("Database connection is not available.")\n'
        "RuntimeError: Database connection is not available."
    )
    split_heads = [e for e in entries if e.get("textPayload") == "ERROR:    Exception in ASGI application"]
    assert len(whole) + len(split_heads) == 9
    assert len(split_heads) >= 3
    assert all("severity" not in e and "trace" not in e for e in split_heads)


def test_a_split_traceback_is_consecutive_lines_of_one_instance_1_to_3_ms_apart() -> None:
    entries = list(reversed(window("db-outage")))  # oldest first, as the lines were written
    starts = [
        i for i, e in enumerate(entries) if e.get("textPayload") == "ERROR:    Exception in ASGI application"
    ]
    for start in starts:
        instance = entries[start]["labels"]["instanceId"]
        same = [e for e in entries[start:] if e["labels"].get("instanceId") == instance][:22]
        lines = [message(e) for e in same]
        end = lines.index("RuntimeError: Database connection is not available.")
        assert lines[1] == "Traceback (most recent call last):"
        assert end >= 10
        for before, after in pairwise(same[: end + 1]):
            assert after["logName"] == STDERR
            assert "severity" not in after
            gap_ms = (ns(after["timestamp"]) - ns(before["timestamp"])) / 1e6
            assert 0.9 <= gap_ms <= 3.1


def test_every_answered_request_has_its_uvicorn_echo_without_a_trace() -> None:
    entries = window("bad-deploy")
    echoes = Counter(
        (e["labels"]["instanceId"], m.group(1), m.group(2), int(m.group(3)))
        for e in entries
        if e["logName"] == STDOUT
        and (m := re.match(r'INFO: +[\d.]+:\d+ - "(\w+) (\S+) HTTP/1.1" (\d+) ', message(e)))
        and "trace" not in e
    )
    requests = [e for e in entries if http(e) and not path(e).startswith("/ws/")]
    for request in requests:
        key = (
            request["labels"]["instanceId"],
            http(request)["requestMethod"],
            path(request),
            http(request)["status"],
        )
        assert echoes[key] >= 1, key
    assert 'HTTP/1.1" 500 Internal Server Error' in " ".join(message(e) for e in entries)


def test_the_app_logs_each_api_request_on_its_trace() -> None:
    entries = window("healthy")
    completed = {e["trace"]: e for e in with_message(entries, "Request completed: ")}
    api = [e for e in user_requests(entries) if path(e).startswith("/api/")]
    assert api
    assert all(e["trace"] in completed for e in api)
    sample = completed[api[0]["trace"]]["jsonPayload"]
    assert sample["logger"] == "backend.middleware"
    assert sample["path"] == path(api[0]).partition("?")[0]
    assert sample["status_code"] == http(api[0])["status"]
    assert isinstance(sample["duration_ms"], float)
    assert not any(path(e).startswith("/assets/") and e["trace"] in completed for e in user_requests(entries))


def test_normal_traffic_looks_like_a_small_service() -> None:
    entries = window("healthy")
    users = user_requests(entries)
    assert 250 <= len([e for e in users if not is_scan(e)]) <= 350
    assert 70 <= len(ws_attempts(entries)) <= 90
    probes = [e for e in entries if path(e) in PROBE_PATHS]
    assert {http(e)["userAgent"] for e in probes} == {"GoogleHC/1.0", "kube-probe/1.27"}
    assert all(http(e)["status"] == 200 for e in probes)
    assert len(probes) >= 2 * 330
    assert 0.15 <= p95(api_latencies(entries)) <= 0.35
    genuine_404 = [e for e in users if http(e)["status"] == 404 and not is_scan(e)]
    assert genuine_404
    assert all(path(e).startswith("/api/") for e in genuine_404)
    assert not [e for e in entries if e.get("severity") == "ERROR" or http(e).get("status", 0) >= 500]


def test_count_hint_is_within_15_percent() -> None:
    for name in SCENARIOS:
        assert abs(count_hint(name, hours=1) / len(window(name)) - 1) < 0.15, name
    assert abs(count_hint("db-outage", hours=DAY_HOURS) / len(full_day()) - 1) < 0.15
    assert abs(count_hint("db-outage", hours=1, scale=10) / len(window("db-outage", 10)) - 1) < 0.15


def test_scale_multiplies_the_background_but_not_the_incident() -> None:
    small, large = window("db-outage"), window("db-outage", 10)
    ratio = len(user_requests(large)) / len(user_requests(small))
    assert 8.5 <= ratio <= 11.5
    assert len(ws_attempts(large)) == 800
    assert len([e for e in ws_attempts(large) if http(e)["status"] == 500]) == 9
    assert len(with_message(large, "no active connection is available")) == 9


def test_the_baseline_has_no_incident_and_an_older_revision() -> None:
    baseline = [e for e in full_day() if e["timestamp"] < "2025-10-11T11:04"]
    assert not [e for e in baseline if e.get("severity") == "ERROR"]
    assert not with_message(tuple(baseline), "Database connection requested")
    revisions = Counter(e["resource"]["labels"]["revision_name"] for e in baseline)
    assert set(revisions) == {REVISION_OLD, REVISION_CURRENT}
    assert with_message(tuple(baseline), "Starting new instance. Reason: DEPLOYMENT_ROLLOUT")


def test_bot_scan_is_hundreds_of_404s_and_nothing_else() -> None:
    entries = window("bot-scan")
    scans = [e for e in user_requests(entries) if is_scan(e)]
    assert len(scans) >= 200
    assert all(http(e)["status"] == 404 and e["severity"] == "WARNING" for e in scans)
    assert len({http(e)["remoteIp"] for e in scans}) >= 2
    assert not [e for e in entries if e.get("severity") == "ERROR"]
    assert 2 <= len([e for e in user_requests(window("db-outage")) if is_scan(e)]) <= 30


def test_memory_oom_kills_twice_and_a_new_instance_starts() -> None:
    entries = window("memory-oom")
    memory = with_message(entries, "Memory limit of 1024 MiB exceeded with 1062 MiB used.")
    killed = with_message(entries, "the container instance was found to be using too much memory")
    signals = with_message(entries, "Container terminated on signal 9.")
    assert len(memory) == len(killed) == len(signals) == 2
    assert all(e["logName"] == SYSTEM and e["severity"] == "ERROR" for e in memory)
    assert all(e["severity"] == "WARNING" for e in signals)
    assert all(http(e)["status"] == 500 and path(e) == "/api/documents/upload" for e in killed)
    assert {e["labels"]["instanceId"] for e in memory} == {e["labels"]["instanceId"] for e in killed}
    assert len(with_message(entries, "Starting new instance. Reason: AUTOSCALING")) >= 2


def test_bad_deploy_fails_on_the_new_revision_only() -> None:
    entries = window("bad-deploy")
    halfway = (WINDOW_START + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%S")
    on_new = [e for e in entries if e["resource"]["labels"]["revision_name"] == REVISION_BAD]
    assert on_new
    assert min(e["timestamp"] for e in on_new) >= (WINDOW_START + timedelta(minutes=29)).strftime(
        "%Y-%m-%dT%H:%M"
    )
    served_by_old = [
        e for e in user_requests(entries) if e["resource"]["labels"]["revision_name"] == REVISION_CURRENT
    ]
    assert served_by_old
    assert max(e["timestamp"] for e in served_by_old) < halfway
    failures = [e for e in user_requests(entries) if http(e)["status"] == 500]
    assert len(failures) == 12
    assert {e["resource"]["labels"]["revision_name"] for e in failures} == {REVISION_BAD}
    new_requests = [
        e for e in user_requests(entries) if e["resource"]["labels"]["revision_name"] == REVISION_BAD
    ]
    assert 0.05 <= len(failures) / len(new_requests) <= 0.11
    tracebacks = with_message(entries, "KeyError: 'thread_id'")
    assert len(tracebacks) == 12
    assert {e["trace"] for e in tracebacks} == {e["trace"] for e in failures}
    assert 'threads/service.py", line 57, in get_thread' in message(tracebacks[0])


def test_slow_raises_the_api_p95_to_about_2_seconds() -> None:
    slow = p95(api_latencies(window("slow")))
    assert 1.6 <= slow <= 2.6
    assert not [e for e in window("slow") if e.get("severity") == "ERROR"]


def test_startup_failure_writes_the_probe_and_start_texts_three_times() -> None:
    entries = window("startup-failure")
    probe = with_message(
        entries, 'Default STARTUP TCP probe failed 1 time consecutively for container "emergence-app-1"'
    )
    failed = with_message(entries, "Container failed to start. Failed to start and then listen on the port")
    assert len(probe) == len(failed) == 3
    assert all(e["logName"] == SYSTEM and e["severity"] == "ERROR" for e in probe + failed)


def test_recovered_reconnects_three_times_without_failures() -> None:
    entries = window("recovered")
    lost = with_message(entries, "Database connection lost. Attempting automatic reconnection...")
    back = with_message(entries, "Database reconnected successfully.")
    assert len(lost) == len(back) == 3
    assert {e["severity"] for e in lost} == {"WARNING"}
    assert {e["severity"] for e in back} == {"INFO"}
    assert len(ws_attempts(entries)) == 80
    assert not [e for e in entries if e.get("severity") == "ERROR"]


def test_reconnect_storm_has_12_reconnections_and_one_failed() -> None:
    entries = window("reconnect-storm")
    assert len(with_message(entries, "Attempting automatic reconnection")) == 12
    assert len(with_message(entries, "Database reconnected successfully.")) == 11
    failed = with_message(entries, "Failed to reconnect to database: disk I/O error")
    assert len(failed) == 1
    assert failed[0]["severity"] == "ERROR"
    attempts = ws_attempts(entries)
    assert len(attempts) == 80
    assert [e["trace"] for e in attempts if http(e)["status"] == 500] == [failed[0]["trace"]]


def test_overload_rejects_requests_for_lack_of_instances() -> None:
    entries = window("overload")
    aborted = with_message(entries, "The request was aborted because there was no available instance.")
    timeouts = with_message(entries, "The request has been terminated because it has reached the maximum")
    assert len(aborted) == 12
    assert all(http(e)["status"] == 429 and "labels" not in e for e in aborted)
    assert len(timeouts) == 1
    assert http(timeouts[0])["status"] == 504
    assert float(http(timeouts[0])["latency"][:-1]) >= 300


def test_a_daily_cycle_follows_the_time_of_day() -> None:
    """±80% around the mean, busiest at 15:00 UTC: the afternoon hour holds several times the night's."""
    end = datetime(2025, 10, 11, 16, 0, tzinfo=UTC)
    entries = list(generate("healthy", hours=13, end=end, daily_cycle=0.8))
    served = [e for e in entries if "httpRequest" in e and "health" not in e["httpRequest"]["requestUrl"]]
    requests = Counter(e["timestamp"][11:13] for e in served)
    assert requests["15"] > 4 * requests["03"]  # the health probes follow the instances, not the time
    with pytest.raises(ValueError, match="daily_cycle"):
        generate("healthy", daily_cycle=1.5)
