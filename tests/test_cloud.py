"""CloudSource through the REAL Google client libraries, pointed at tests/fake_logging_server.py.

HTTP/JSON goes through google-auth's AuthorizedSession, gRPC through the generated LoggingServiceV2Client.
"""

from __future__ import annotations

import ast
import dataclasses
import math
import os
import re
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from google.auth.credentials import Credentials

from prodguardian import cloud
from prodguardian.cloud import (
    STATED_PROBLEM,
    CloudLogging,
    CloudQuery,
    CloudSource,
    ReadStats,
    _quote_regex,
    build_filter,
    resolve_project,
)
from prodguardian.errors import ConfigError, ProdGuardianError, SourceError
from tests.fake_logging_server import (
    DB_TRACEBACK,
    SEVERITIES,
    CloudRunService,
    FakeLoggingServer,
    Fault,
    compile_filter,
    format_timestamp,
    parse_timestamp,
)

PROJECT = "demo-project"
END = datetime(2025, 10, 11, 12, 4, tzinfo=UTC)
CHECK_START = END - timedelta(hours=1)
START = END - timedelta(hours=2)  # the check hour and one hour of baseline

APP = CloudRunService(project=PROJECT, seed=1)
OLD = CloudRunService(project=PROJECT, revision="emergence-app-00296-x2k", instance="00a1b2c3d4e5f6", seed=2)
OTHER = CloudRunService(
    project=PROJECT,
    service="billing-api",
    revision="billing-api-00012-qed",
    host="billing-api-x.run.app",
    seed=3,
)
FOREIGN = CloudRunService(project="someone-else", seed=4)
RECONNECTED = "Database reconnected successfully\\."
STARTED = "^Starting new instance\\. Reason: AUTOSCALING"
ENV_VARS = (
    "LOGGING_EMULATOR_HOST",
    "PRODGUARDIAN_PROJECT",
    "GOOGLE_CLOUD_PROJECT",
    "CLOUDSDK_CORE_PROJECT",
    "CLOUDSDK_ACTIVE_CONFIG_NAME",
    "PRODGUARDIAN_LOGGING_TRANSPORT",
    "PRODGUARDIAN_LOGGING_ENDPOINT",
    "GOOGLE_CLOUD_DISABLE_GRPC",
)


def incident() -> list[dict[str, Any]]:
    """Two hours of emergence-app around the 2025-10-11 database incident, plus neighbours."""
    entries: list[dict[str, Any]] = []
    for i in range(240):  # load-balancer health checks every 30 s, each echoed by uvicorn
        at = START + timedelta(seconds=30 * i, milliseconds=137)
        entries.append(APP.request(at, "/api/health", latency=0.004, user_agent="GoogleHC/1.0"))
        entries.append(APP.access_line(at, "/api/health", 200))
    for i in range(120):  # API traffic with the app's structured "Request completed" line
        at = START + timedelta(seconds=60 * i + 11, microseconds=250_000)
        trace = f"{i:032x}"
        entries.append(APP.request(at, "/api/threads", latency=0.112114537, trace=trace))
        entries.append(APP.access_line(at, "/api/threads", 200))
        entries.append(
            APP.json_line(at, "Request completed", trace=trace, path="/api/threads", status_code=200)
        )
    for i in range(80):  # WebSocket sessions in the check hour; 9 fail on the lost database connection
        at = CHECK_START + timedelta(seconds=44 * i + 7)
        entries.append(APP.request(at, "/ws/chat", status=101, latency=30.0 + i))
        if i % 9 == 4:
            entries.append(
                APP.json_line(
                    at,
                    "Database connection requested but no active connection is available. "
                    "Call connect() before executing queries.",
                    severity="ERROR",
                    logger="backend.core.database.manager",
                )
            )
            entries += [
                APP.stderr(at + timedelta(microseconds=n), line) for n, line in enumerate(DB_TRACEBACK)
            ]
    at = CHECK_START + timedelta(minutes=21, seconds=3)
    entries.append(
        APP.request(at, "/api/gmail/read-reports?max_results=3", method="POST", status=500, latency=1.2)
    )
    entries.append(APP.access_line(at, "/api/gmail/read-reports?max_results=3", 500, method="POST"))
    entries.append(APP.json_line(at, "Request completed", path="/api/gmail/read-reports", status_code=500))
    for path in ("/.env", "/.git/HEAD", "/wp-admin/setup-config.php", "/application.wadl"):  # bot scans
        at = CHECK_START + timedelta(minutes=33, seconds=len(path))
        entries.append(APP.request(at, path, status=404, latency=0.002, user_agent="Mozilla/5.0 zgrab/0.x"))
        entries.append(APP.access_line(at, path, 404))
    for minute in (14, 47):
        at = CHECK_START + timedelta(minutes=minute)
        entries.append(
            APP.json_line(
                at, "Database connection lost. Attempting automatic reconnection...", severity="WARNING"
            )
        )
        entries.append(APP.json_line(at + timedelta(seconds=1), "Database reconnected successfully."))
        entries.append(
            APP.system(
                at + timedelta(seconds=2),
                "Starting new instance. Reason: AUTOSCALING - Instance started due to configured "
                "scaling factors (e.g. CPU utilization, request throughput, etc.) or no existing capacity "
                "for current traffic.",
            )
        )
    at = CHECK_START + timedelta(minutes=52)
    entries.append(
        APP.system(
            at,
            "Memory limit of 512 MiB exceeded with 573 MiB used. Consider increasing the memory limit, see "
            "https://cloud.google.com/run/docs/configuring/memory-limits",
            severity="ERROR",
        )
    )
    entries.append(APP.stdout(at, "WARNING:  Invalid HTTP request received."))  # plain text: DEFAULT
    entries.append(APP.stdout(at, "Database reconnected successfully. (plain text echo)"))
    entries.append(APP.json_line(at, "cache warmed", severity="DEBUG"))
    # the window's edges: START is inclusive, END exclusive
    entries.append(APP.request(START, "/api/health", user_agent="GoogleHC/1.0"))
    entries.append(APP.request(START - timedelta(microseconds=1), "/api/health", user_agent="GoogleHC/1.0"))
    entries.append(APP.request(END, "/api/health", user_agent="GoogleHC/1.0"))
    entries.append(APP.json_line(END + timedelta(minutes=5), "too late", severity="ERROR"))
    # another revision of the same service, another service, another project
    for i in range(10):
        at = CHECK_START + timedelta(minutes=5 * i)
        entries.append(OLD.request(at, "/api/health", user_agent="GoogleHC/1.0"))
        entries.append(OLD.json_line(at, "old revision failing", severity="ERROR"))
        entries.append(OTHER.request(at, "/invoices", status=503, latency=0.8))
        entries.append(OTHER.json_line(at, "billing failing", severity="ERROR"))
        entries.append(FOREIGN.request(at, "/"))
    return entries


INCIDENT = incident()


def wanted(entry: dict[str, Any], *, regexes: tuple[str, ...] = (), service: str = "emergence-app") -> bool:
    """What a check needs from the window, written independently of the filter under test."""
    ts = parse_timestamp(entry["timestamp"])  # canonical RFC 3339 strings do not sort as text
    labels = entry["resource"]["labels"]
    if not entry["logName"].startswith(f"projects/{PROJECT}/") or labels["service_name"] != service:
        return False
    if not parse_timestamp(fmt(START)) <= ts < parse_timestamp(fmt(END)):
        return False
    log = entry["logName"].rsplit("/", 1)[1]
    severity = SEVERITIES[entry.get("severity", "DEFAULT")]
    text = entry.get("textPayload") or entry.get("jsonPayload", {}).get("message") or ""
    return (
        log == "run.googleapis.com%2Frequests"
        or severity >= SEVERITIES["WARNING"]
        or (log == "run.googleapis.com%2Fstderr" and severity == 0)
        or (
            log == "run.googleapis.com%2Fstdout"
            and severity == 0
            and re.search(STATED_PROBLEM, text) is not None
        )
        or log.startswith("cloudaudit.googleapis.com")
        or any(re.search(r, text) for r in regexes)
    )


def fmt(moment: datetime) -> str:
    return format_timestamp(moment)


class FakeClock:
    """A monotonic clock that only moves when the reader sleeps: retries and pacing take no real time."""

    def __init__(self) -> None:
        self.now = 5_000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """No ambient Google settings: an empty gcloud config dir and ADC pointing nowhere."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "nowhere" / "adc.json"))


@pytest.fixture
def empty_server(request: pytest.FixtureRequest) -> FakeLoggingServer:
    """The shared fixture of tests/fake_logging_server.py, as other test files would use it."""
    server: FakeLoggingServer = request.getfixturevalue("fake_logging_server")
    return server


@pytest.fixture
def server(empty_server: FakeLoggingServer, monkeypatch: pytest.MonkeyPatch) -> FakeLoggingServer:
    """The fake with the incident's entries, and LOGGING_EMULATOR_HOST pointing at it."""
    empty_server.add(INCIDENT)
    monkeypatch.setenv("LOGGING_EMULATOR_HOST", empty_server.host)
    return empty_server


SETTINGS = {field.name for field in dataclasses.fields(CloudLogging)}


def query(**overrides: Any) -> CloudQuery:
    """The query of the incident's window; an emulator host in the environment is read as the CLI reads it."""
    what: dict[str, Any] = {"start": START, "end": END, "service": "emergence-app"}
    how: dict[str, Any] = {"project": PROJECT, "emulator": os.environ.get(cloud.EMULATOR_ENV)}
    for name, value in overrides.items():
        (how if name in SETTINGS else what)[name] = value
    return CloudQuery(**what, settings=CloudLogging(**how))


def read(
    q: CloudQuery, clock: FakeClock | None = None, **kwargs: Any
) -> tuple[CloudSource, list[dict[str, Any]]]:
    clock = clock or FakeClock()
    source = CloudSource(q, sleep=clock.sleep, clock=clock, **kwargs)
    return source, list(source)


def ids(entries: list[dict[str, Any]]) -> list[str]:
    return [e["insertId"] for e in entries]


def newest_first(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(entries, key=lambda e: (parse_timestamp(e["timestamp"]), e["insertId"]), reverse=True)


# ------------------------------------------------------------------------------------------- the filter


def test_filter_sent_is_built_from_the_query(server: FakeLoggingServer) -> None:
    q = query(
        revision="emergence-app-00297-6pr", region="europe-west1", message_regexes=(RECONNECTED, 'said "hi"')
    )
    source, _ = read(q)
    assert server.requests[0]["filter"] == source.filter == build_filter(q, PROJECT)
    assert source.filter == (
        'resource.type="cloud_run_revision"\n'
        'AND resource.labels.service_name="emergence-app"\n'
        'AND resource.labels.revision_name="emergence-app-00297-6pr"\n'
        'AND resource.labels.location="europe-west1"\n'
        'AND timestamp>="2025-10-11T10:04:00Z"\n'
        'AND timestamp<"2025-10-11T12:04:00Z"\n'
        "AND (\n"
        '  logName="projects/demo-project/logs/run.googleapis.com%2Frequests"\n'
        "  OR severity>=WARNING\n"
        '  OR (logName="projects/demo-project/logs/run.googleapis.com%2Fstderr" AND severity=DEFAULT)\n'
        '  OR (logName="projects/demo-project/logs/run.googleapis.com%2Fstdout" AND severity=DEFAULT'
        " AND textPayload=~" + _quote_regex(STATED_PROBLEM) + ")\n"
        '  OR logName="projects/demo-project/logs/cloudaudit.googleapis.com%2Fsystem_event"\n'
        '  OR logName="projects/demo-project/logs/cloudaudit.googleapis.com%2Factivity"\n'
        '  OR textPayload=~"Database reconnected successfully\\\\."\n'
        '  OR jsonPayload.message=~"Database reconnected successfully\\\\."\n'
        '  OR textPayload=~"said \\"hi\\""\n'
        '  OR jsonPayload.message=~"said \\"hi\\""\n'
        ")"
    )
    body = server.requests[0]
    assert body["resourceNames"] == ["projects/demo-project"]
    assert body["orderBy"] == "timestamp desc"
    assert body["pageSize"] == 1000


def test_window_is_always_explicit_even_without_service() -> None:
    text = build_filter(CloudQuery(start=START + timedelta(microseconds=5), end=END), "p")
    assert 'timestamp>="2025-10-11T10:04:00.000005Z"' in text
    assert 'timestamp<"2025-10-11T12:04:00Z"' in text
    assert "service_name" not in text


def test_window_given_in_another_timezone_is_sent_in_utc() -> None:
    paris = timezone(timedelta(hours=2))
    q = CloudQuery(start=START.astimezone(paris), end=END.astimezone(paris))
    assert q.start == START and q.start.tzinfo == UTC
    assert 'timestamp>="2025-10-11T10:04:00Z"' in build_filter(q, "p")


def test_control_characters_in_regexes_become_re2_escapes() -> None:
    text = build_filter(query(message_regexes=("a\nb",)), PROJECT)
    assert 'textPayload=~"a\\\\x{0a}b"' in text


def test_pushdown_pulls_only_what_the_check_needs(server: FakeLoggingServer) -> None:
    regexes = (RECONNECTED, STARTED)
    _, entries = read(query(message_regexes=regexes))
    expected = newest_first([e for e in INCIDENT if wanted(e, regexes=regexes)])
    assert entries == expected  # the raw API JSON, newest first, nothing lost or repeated
    texts = [e.get("textPayload") or e.get("jsonPayload", {}).get("message") for e in entries]
    assert "Database reconnected successfully." in texts  # INFO, pulled by its regex
    assert not any(t and t.startswith("INFO:     169.254") for t in texts)  # uvicorn echoes stay behind
    assert "Request completed" not in texts  # INFO app lines stay behind (their 500 is in the request log)
    assert sum(t == DB_TRACEBACK[0] for t in texts) == 9  # tracebacks read whole: every line
    assert server.size - len(entries) >= 240 + 2 * 120  # every echo and INFO app line avoided
    timestamps = [e["timestamp"] for e in entries]
    assert fmt(START) in timestamps and fmt(END) not in timestamps  # start inclusive, end exclusive
    assert server.served == len(entries)


def test_without_regexes_info_lines_stay_behind(server: FakeLoggingServer) -> None:
    _, entries = read(query())
    assert entries == newest_first([e for e in INCIDENT if wanted(e)])
    assert all(
        e.get("jsonPayload", {}).get("message") != "Database reconnected successfully." for e in entries
    )


def test_revision_and_region_narrow_the_read(server: FakeLoggingServer) -> None:
    _, entries = read(query(revision="emergence-app-00296-x2k", region="europe-west1"))
    assert len(entries) == 20
    assert {e["resource"]["labels"]["revision_name"] for e in entries} == {"emergence-app-00296-x2k"}
    _, none = read(query(region="us-central1"))
    assert none == []


def test_long_regex_lists_are_merged_then_fall_back_to_a_coarse_filter(server: FakeLoggingServer) -> None:
    medium = tuple(f"error code E{n:04d} in module [a-z]+" for n in range(200))
    merged = build_filter(query(message_regexes=medium), PROJECT)
    assert len(merged) <= cloud.MAX_FILTER_CHARS
    assert 'textPayload=~"(?:error code E0000 in module [a-z]+)|(?:error code E0001' in merged
    assert merged.count("=~") == 3  # the stated-level clause, then one merged regex per field
    huge = tuple(f"error code E{n:04d} in module [a-z]+ at line \\d+ of file \\S+\\.py" for n in range(600))
    source, entries = read(query(message_regexes=huge))
    assert source.coarse and len(source.filter) <= cloud.MAX_FILTER_CHARS
    assert "severity" not in source.filter and "=~" not in source.filter
    assert 'timestamp>="2025-10-11T10:04:00Z"' in source.filter
    everything = newest_first(
        [
            e
            for e in INCIDENT
            if e["resource"]["labels"]["service_name"] == "emergence-app" and wanted(e, regexes=(".",))
        ]
    )
    assert entries == everything  # all severities: the caller filters locally
    assert not CloudSource(query(message_regexes=medium)).coarse


def test_invalid_regex_is_reported_as_a_rejected_query(server: FakeLoggingServer) -> None:
    with pytest.raises(SourceError, match=r"rejected the query \(HTTP 400: .*--show-filter"):
        read(query(message_regexes=("(?=lookahead)",)))  # not RE2


# --------------------------------------------------------------------------------------------- paging


def test_pages_follow_tokens(server: FakeLoggingServer) -> None:
    _, whole = read(query())
    server.reset()
    progress: list[ReadStats] = []
    source, paged = read(query(page_size=7), progress=lambda s: progress.append(ReadStats(**vars(s))))
    assert paged == whole
    calls = server.calls
    assert len(calls) == source.stats.calls == source.stats.pages == -(-len(whole) // 7)
    assert "pageToken" not in calls[0].body
    assert all(c.body["pageToken"] for c in calls[1:])
    assert len({c.body["pageToken"] for c in calls[1:]}) == len(calls) - 1
    assert all(c.body["pageSize"] <= 7 and c.body["filter"] == source.filter for c in calls)
    assert [p.pages for p in progress] == list(range(1, len(calls) + 1))
    assert progress[-1].entries == len(whole) and not source.truncated


def test_empty_pages_that_carry_a_token_are_followed(server: FakeLoggingServer) -> None:
    _, whole = read(query(page_size=50))
    server.reset()
    for call in (1, 2, 4, 5, 6):
        server.inject(call, Fault(empty_page=True))
    source, entries = read(query(page_size=50))
    assert entries == whole
    assert source.stats.pages == source.stats.calls == len(server.calls) == -(-len(whole) // 50) + 5
    assert [c.served for c in server.calls[:3]] == [0, 0, 50]


@pytest.mark.parametrize("status", [429, 500, 503, 504])
def test_resumes_from_the_failed_page_token(server: FakeLoggingServer, status: int) -> None:
    _, whole = read(query(page_size=40))
    server.reset()
    server.inject(3, Fault(status=status))
    server.inject(4, Fault(status=status))
    clock = FakeClock()
    source, entries = read(query(page_size=40), clock)
    assert entries == whole  # nothing lost, nothing repeated
    assert len(set(ids(entries))) == len(entries)
    tokens = [c.body.get("pageToken") for c in server.calls]
    assert tokens[2] == tokens[3] == tokens[4]  # the failed page was asked again, not the read restarted
    assert [c.status for c in server.calls[:5]] == [200, 200, status, status, 200]
    assert source.stats.retries == 2 and source.stats.calls == len(server.calls)
    backoffs = clock.sleeps[:2]
    base = 2.0 if status == 429 else 1.0
    assert base * 0.5 <= backoffs[0] <= base <= backoffs[1] <= 2 * base  # exponential, jittered


def test_malformed_json_is_retried(server: FakeLoggingServer) -> None:
    server.inject(1, Fault(malformed=True))
    source, entries = read(query())
    assert entries == newest_first([e for e in INCIDENT if wanted(e)])
    assert source.stats.retries == 1


def test_slow_answer_times_out_and_is_retried(
    server: FakeLoggingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cloud, "CALL_TIMEOUT", 0.3)
    server.inject(1, Fault(delay=3.0))
    source, entries = read(query())
    assert entries == newest_first([e for e in INCIDENT if wanted(e)])
    assert source.stats.retries == 1 and [c.body.get("pageToken") for c in server.calls[:2]] == [None, None]


def test_gives_up_after_the_bound_with_a_clear_error(server: FakeLoggingServer) -> None:
    server.inject_always(Fault(status=503))
    clock = FakeClock()
    start = clock.now
    progress: list[int] = []
    with pytest.raises(SourceError) as caught:
        read(query(give_up_after=120.0), clock, progress=lambda s: progress.append(s.retries))
    message = str(caught.value)
    assert "Cloud Logging is failing (HTTP 503" in message
    assert "gave up after" in message and "window incomplete" in message and "\n" not in message
    assert 120.0 <= clock.now - start <= 125.0  # retried for give_up_after, then stopped
    assert max(clock.sleeps) <= cloud.BACKOFF_CAP
    assert len(server.calls) == progress[-1] + 1 >= 6


def test_quota_give_up_explains_the_quota(server: FakeLoggingServer) -> None:
    server.inject_always(Fault(status=429))
    with pytest.raises(
        SourceError, match=r"read quota exhausted for project demo-project .*60 calls a minute"
    ):
        read(query(give_up_after=30.0))


def test_failure_mid_read_never_ends_quietly(server: FakeLoggingServer) -> None:
    clock = FakeClock()
    source = CloudSource(query(page_size=20), sleep=clock.sleep, clock=clock)
    got = []
    with pytest.raises(
        SourceError, match=r"gave up after .* \(60 entries in 3 pages read, window incomplete\)"
    ):
        for entry in source:
            got.append(entry)
            if len(got) == 60:
                server.inject_always(Fault(status=500))
    assert len(got) == 60


def test_zero_give_up_means_no_retry(server: FakeLoggingServer) -> None:
    server.inject(1, Fault(status=503))
    with pytest.raises(SourceError, match="gave up after 1 attempts"):
        read(query(give_up_after=0))
    assert len(server.calls) == 1


# ---------------------------------------------------------------------------------- bounds and dedupe


def test_max_entries_truncates_visibly(server: FakeLoggingServer) -> None:
    _, whole = read(query())
    source, entries = read(query(max_entries=25, page_size=10))
    assert entries == whole[:25]
    assert source.truncated and source.stats.truncated and source.stats.entries == 25
    assert [c.body["pageSize"] for c in server.calls[-3:]] == [10, 10, 6]  # never asks for more than needed


def test_max_entries_equal_to_the_window_is_not_truncated(server: FakeLoggingServer) -> None:
    _, whole = read(query())
    source, entries = read(query(max_entries=len(whole)))
    assert entries == whole and not source.truncated


def test_repeated_entries_are_dropped(
    empty_server: FakeLoggingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = CHECK_START + timedelta(minutes=1)
    first = APP.request(at, "/api/health")
    same_id_other_time = dict(first, timestamp=fmt(at + timedelta(seconds=1)))
    empty_server.add([first, dict(first), same_id_other_time, APP.request(at, "/x")])
    monkeypatch.setenv("LOGGING_EMULATOR_HOST", empty_server.host)
    source, entries = read(query(page_size=2))
    assert len(entries) == 3 and source.stats.duplicates == 1
    assert source.stats.entries == 3


def test_each_iteration_is_a_fresh_read(server: FakeLoggingServer) -> None:
    clock = FakeClock()
    source = CloudSource(query(), sleep=clock.sleep, clock=clock)
    assert list(source) == list(source)
    assert source.stats.calls == 1 and len(server.calls) == 2


# --------------------------------------------------------------------------------------------- pacing


def test_calls_are_paced_by_a_token_bucket(server: FakeLoggingServer) -> None:
    assert cloud.CALLS_PER_SECOND == 1.0 and cloud.BURST <= 10  # under the ~60 calls/min per-project quota
    clock = FakeClock()
    start = clock.now
    source, _ = read(query(page_size=25), clock)
    calls = source.stats.calls
    assert calls > cloud.BURST + 5
    assert clock.sleeps and all(0 < s <= 1.0 + 1e-9 for s in clock.sleeps)
    assert clock.now - start == pytest.approx((calls - cloud.BURST) / cloud.CALLS_PER_SECOND)
    assert source.stats.elapsed == pytest.approx(clock.now - start)


def test_pacing_can_be_disabled(server: FakeLoggingServer) -> None:
    clock = FakeClock()
    read(query(page_size=25, calls_per_second=math.inf), clock)
    assert clock.sleeps == []


# -------------------------------------------------------------------------------------- user errors


def single_line(exc: ProdGuardianError) -> str:
    text = str(exc)
    assert "\n" not in text and "Traceback" not in text
    return text


def test_permission_denied_names_the_role(server: FakeLoggingServer) -> None:
    server.inject_always(Fault(status=403))
    with pytest.raises(SourceError) as caught:
        read(query())
    text = single_line(caught.value)
    assert "permission denied" in text and "roles/logging.viewer" in text and "demo-project" in text
    assert len(server.calls) == 1  # not retried


def test_unknown_project(server: FakeLoggingServer) -> None:
    with pytest.raises(SourceError) as caught:
        read(query(project="no-such-project"))
    text = single_line(caught.value)
    assert text.startswith("unknown project no-such-project") and "--project" in text
    assert len(server.calls) == 1


class StaticToken(Credentials):
    """A token the server keeps rejecting even after a refresh."""

    def refresh(self, request: Any) -> None:
        self.token = "still-rejected"


def test_rejected_credentials_ask_to_log_in_again(
    empty_server: FakeLoggingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty_server.add(INCIDENT)
    empty_server.inject_always(Fault(status=401))
    monkeypatch.setattr("google.auth.default", lambda **kw: (StaticToken(), None))
    with pytest.raises(SourceError) as caught:
        read(query(endpoint=empty_server.url))
    text = single_line(caught.value)
    assert "credentials were rejected (HTTP 401" in text and "gcloud auth application-default login" in text
    assert empty_server.calls[0].headers["authorization"] == "Bearer still-rejected"


def test_expired_credentials_ask_to_log_in_again(
    empty_server: FakeLoggingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from google.oauth2.credentials import Credentials as UserCredentials

    empty_server.add(INCIDENT)
    empty_server.inject_always(Fault(status=401))
    monkeypatch.setattr("google.auth.default", lambda **kw: (UserCredentials(token="expired"), None))
    with pytest.raises(SourceError) as caught:
        read(query(endpoint=empty_server.url))
    text = single_line(caught.value)
    assert "could not be refreshed" in text and "gcloud auth application-default login" in text


def test_emulator_asking_for_credentials(server: FakeLoggingServer) -> None:
    server.inject_always(Fault(status=401))
    with pytest.raises(SourceError, match=r"asked for credentials .*but an emulator is read anonymously"):
        read(query())
    assert len(server.calls) == 1


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_connection_refused_is_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGGING_EMULATOR_HOST", f"127.0.0.1:{free_port()}")
    clock = FakeClock()
    with pytest.raises(SourceError) as caught:
        read(query(), clock)
    text = single_line(caught.value)
    assert "unreachable" in text and "connection refused" in text
    assert len(clock.sleeps) == cloud.NETWORK_RETRIES  # a few quick retries, not give_up_after


def test_dns_failure_is_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGGING_EMULATOR_HOST", "logging.does-not-exist.invalid:8080")
    with pytest.raises(SourceError) as caught:
        read(query())
    assert "unreachable" in single_line(caught.value)


def test_timeout_is_reported(server: FakeLoggingServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cloud, "CALL_TIMEOUT", 0.2)
    server.inject_always(Fault(delay=2.0))
    with pytest.raises(SourceError) as caught:
        read(query(give_up_after=0))
    assert "did not answer within 0.2 s" in single_line(caught.value)


def test_no_credentials(tmp_path: Any) -> None:
    # no LOGGING_EMULATOR_HOST; GOOGLE_APPLICATION_CREDENTIALS points nowhere; HOME, CLOUDSDK_CONFIG empty
    assert "LOGGING_EMULATOR_HOST" not in os.environ
    source = CloudSource(query())  # building the filter needs no credentials (--show-filter works)
    assert "emergence-app" in source.filter
    with pytest.raises(SourceError) as caught:
        list(source)
    assert single_line(caught.value).startswith(
        "no Google credentials: run `gcloud auth application-default login`"
    )


def test_emulator_needs_no_credentials(server: FakeLoggingServer) -> None:
    _, entries = read(query())
    assert entries
    assert "authorization" not in server.calls[0].headers  # anonymous
    assert "prodguardian/" in server.calls[0].headers.get("user-agent", "")


def test_endpoint_option_reaches_that_endpoint(
    empty_server: FakeLoggingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from google.auth.credentials import AnonymousCredentials

    empty_server.add(INCIDENT)
    monkeypatch.setattr("google.auth.default", lambda scopes=None, **kw: (AnonymousCredentials(), None))
    _, entries = read(query(endpoint=empty_server.url))
    assert entries == newest_first([e for e in INCIDENT if wanted(e)])


def test_emulator_and_endpoint_together_are_refused(server: FakeLoggingServer) -> None:
    with pytest.raises(ConfigError, match="choose one"):
        read(query(endpoint="https://europe-west1-logging.googleapis.com"))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"start": START.replace(tzinfo=None)}, "timezone-aware"),
        ({"start": END}, "empty read window"),
        ({"max_entries": 0}, "--max-entries"),
        ({"page_size": 1001}, "between 1 and 1000"),
        ({"calls_per_second": 0}, "--calls-per-second must be more than 0"),
        ({"transport": "carrier-pigeon"}, "http or grpc"),
        ({"service": 'a"\nb'}, "control characters"),
    ],
)
def test_bad_queries_are_config_errors(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        CloudSource(query(**overrides))


# --------------------------------------------------------------------------------------------- project


def gcloud_config(root: Any, active: str | None, configs: dict[str, str]) -> None:
    (root / "configurations").mkdir(parents=True, exist_ok=True)
    if active is not None:
        (root / "active_config").write_text(active + "\n")
    for name, project in configs.items():
        (root / "configurations" / f"config_{name}").write_text(
            f"[core]\naccount = me@example.com\nproject = {project}\n"
        )


def test_project_resolution_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    from google.auth.credentials import AnonymousCredentials

    gcloud_config(tmp_path / "gcloud", "work", {"default": "from-default-config", "work": "from-gcloud"})
    monkeypatch.setattr("google.auth.default", lambda **kw: (AnonymousCredentials(), "from-adc"))
    monkeypatch.setenv("CLOUDSDK_CORE_PROJECT", "from-cloudsdk")
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "from-google-cloud")
    monkeypatch.setenv("PRODGUARDIAN_PROJECT", "the-cli-reads-it")  # not the core: --project's variable
    assert resolve_project("explicit") == "explicit"
    assert resolve_project(None) == "from-google-cloud"
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", " ")
    assert resolve_project(None) == "from-cloudsdk"
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT")
    assert resolve_project(None) == "from-cloudsdk"
    monkeypatch.delenv("CLOUDSDK_CORE_PROJECT")
    assert resolve_project(None) == "from-gcloud"  # the active configuration, not config_default
    monkeypatch.setenv("CLOUDSDK_ACTIVE_CONFIG_NAME", "default")
    assert resolve_project(None) == "from-default-config"
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "empty"))
    assert resolve_project(None) == "from-adc"


def test_gcloud_default_config_dirs(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.delenv("CLOUDSDK_CONFIG")
    gcloud_config(tmp_path / "home" / ".config" / "gcloud", None, {"default": "home-project"})
    assert resolve_project(None) == "home-project"  # no active_config file: the "default" configuration
    monkeypatch.setenv("APPDATA", str(tmp_path / "AppData" / "Roaming"))
    monkeypatch.setattr(os, "name", "nt")
    assert cloud.gcloud_config_dir() == os.path.join(str(tmp_path / "AppData" / "Roaming"), "gcloud")


def test_no_project_anywhere() -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_project(None)
    text = single_line(caught.value)
    assert "--project" in text and "gcloud config set project" in text


def test_source_resolves_the_project_from_the_environment(
    server: FakeLoggingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", PROJECT)
    source, entries = read(query(project=None))
    assert source.project == PROJECT and entries
    assert server.requests[0]["resourceNames"] == [f"projects/{PROJECT}"]


# ------------------------------------------------------------------------------------------------ gRPC


@pytest.fixture
def grpc_server(server: FakeLoggingServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLoggingServer]:
    monkeypatch.setenv("LOGGING_EMULATOR_HOST", server.start_grpc())
    yield server


def test_grpc_transport_gives_the_same_entries(grpc_server: FakeLoggingServer) -> None:
    regexes = (RECONNECTED,)
    grpc_server.inject(2, Fault(status=429))
    grpc_server.inject(3, Fault(empty_page=True))
    source, entries = read(query(page_size=60, message_regexes=regexes, transport="grpc"))
    assert entries == newest_first(
        [e for e in INCIDENT if wanted(e, regexes=regexes)]
    )  # jsonPayload ints stay ints
    assert {c.transport for c in grpc_server.calls} == {"grpc"}
    assert grpc_server.calls[1].body["pageToken"] == grpc_server.calls[2].body["pageToken"]
    assert source.stats.retries == 1


def test_grpc_errors_are_mapped(grpc_server: FakeLoggingServer, monkeypatch: pytest.MonkeyPatch) -> None:
    grpc_server.inject_always(Fault(status=403))
    with pytest.raises(SourceError, match=r"roles/logging\.viewer"):
        read(query(transport="grpc"))
    monkeypatch.setenv("LOGGING_EMULATOR_HOST", f"127.0.0.1:{free_port()}")
    with pytest.raises(SourceError, match="unreachable"):
        read(query(transport="grpc"))


# ------------------------------------------------------------------------------------- public surface only


def test_the_live_source_reaches_no_private_attribute() -> None:
    """Only the Google libraries' public API: an attribute starting with `_` is this module's own (on self,
    or a name it defines), never a library's (`client._connection`, `_gapic_api`, `_transport_registry`)."""
    tree = ast.parse(Path(cloud.__file__).read_text(encoding="utf-8"))
    own = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.ClassDef)}
    reached = [
        f"{ast.unparse(node)} (line {node.lineno})"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
        and node.attr not in own
    ]
    assert reached == []


def test_the_fake_narrows_a_query_to_its_top_level_time_range_and_only_that() -> None:
    stamps = [format_timestamp(END - timedelta(seconds=s)) for s in range(0, 600, 7)]
    fake = FakeLoggingServer([logs_entry(t) for t in stamps])
    start, stop = format_timestamp(END - timedelta(minutes=5)), format_timestamp(END - timedelta(minutes=1))
    for query in (
        f'timestamp>="{start}" AND timestamp<"{stop}" AND severity>=DEFAULT',
        f'timestamp>"{start}" AND timestamp<="{stop}"',
        f'(timestamp<"{start}" OR timestamp>="{stop}") AND severity>=DEFAULT',  # not a range: scans all
        f'NOT timestamp<"{start}"',
    ):
        predicate = compile_filter(query)
        assert fake.matching(query) == [s.entry for s in fake.stored if predicate(s)], query
    assert 0 < len(fake.matching(f'timestamp>="{start}" AND timestamp<"{stop}"')) < len(stamps)


def test_the_fake_pages_a_query_in_either_order_as_it_is_read() -> None:
    """Pages are found as they are asked for (a first page over millions of entries answers at once): read
    page by page, oldest or newest first, they hold exactly what the filter selects."""
    stamps = [format_timestamp(END - timedelta(seconds=s)) for s in range(0, 600, 7)]
    fake = FakeLoggingServer([logs_entry(t) for t in stamps])
    query = f'timestamp>="{format_timestamp(END - timedelta(minutes=8))}" AND NOT insertId:"3Z"'
    for order in ("timestamp asc", "timestamp desc"):
        body: dict[str, Any] = {"resourceNames": [f"projects/{PROJECT}"], "filter": query, "orderBy": order}
        read: list[dict[str, Any]] = []
        while True:
            _, page = fake.handle({**body, "pageSize": 6}, "http", {})
            read += [s.entry for s in page.entries]
            if page.next_token is None:
                break
            body["pageToken"] = page.next_token
        expected = fake.matching(query)
        assert read == (expected if order == "timestamp asc" else expected[::-1]), order
        assert 6 < len(read) < len(stamps)


def logs_entry(timestamp: str) -> dict[str, Any]:
    return {"logName": f"projects/{PROJECT}/logs/x", "timestamp": timestamp, "insertId": timestamp}
