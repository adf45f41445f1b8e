"""`prodguardian watch`, `alerts` and `silence` through the CLI: runs over simulator exports whose clock is
the data's (the window ends 5 minutes apart), the state in a real store, notifications POSTed to a local
HTTP receiver. Most runs are in-process (`prodguardian.cli.main`); a killed run and two concurrent ones are
real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from email.message import EmailMessage
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from prodguardian import simulate
from prodguardian.channels.webhook import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, signature
from prodguardian.cli import WEBHOOK_SECRET_ENV, main
from prodguardian.source import write_export
from tests.alerting import START, STEP
from tests.fake_gcs_server import FakeGcsServer, fake_gcs_server  # noqa: F401 - the fixture
from tests.fake_logging_server import FakeLoggingServer
from tests.http_receiver import Received, Receiver, http_receiver
from tests.smtp_receiver import smtp_receiver

DB = "emergence-app/database-unavailable"
TOKEN = "T0KEN-b7f3e1"  # the secret part of the webhook's URL
SECRET = "hmac-s3cret-9d2c"
WINDOW = ["--freshness", "15m", "--baseline", "1h"]


@cache
def _export(folder: Path, scenario: str, run: int, second_service: str | None = None) -> str:
    """A 2-hour export of `scenario` ending at run `run`'s clock (START + run × 5 min); with
    `second_service`, the same traffic again under that service's name."""
    entries = list(simulate.generate(scenario, hours=2, end=START + run * STEP))
    if second_service:
        entries += [_renamed(entry, second_service) for entry in entries]
    path = folder / f"{scenario}-{run}{'-' + second_service if second_service else ''}.json"
    write_export(entries, str(path))
    return str(path)


def _renamed(entry: dict[str, Any], service: str) -> dict[str, Any]:
    labels = entry["resource"]["labels"]
    renamed = {k: v.replace("emergence-app", service) for k, v in labels.items() if isinstance(v, str)}
    resource = {**entry["resource"], "labels": {**labels, **renamed}}
    return {**entry, "insertId": f"{service}-{entry['insertId']}", "resource": resource}


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("exports")


@pytest.fixture
def hook() -> Iterator[Receiver]:
    with http_receiver() as receiver:
        yield receiver


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(WEBHOOK_SECRET_ENV, SECRET)


class Watch:
    """Runs of `prodguardian watch` over the exports, on one state, POSTing to the receiver."""

    def __init__(self, exports: Path, state: str, hook: Receiver, capsys: pytest.CaptureFixture[str]):
        self.exports, self.state, self.hook, self.capsys = exports, state, hook, capsys
        self.url = f"{hook.url}/hook/{TOKEN}"
        self.outputs: list[str] = []
        self.err = ""

    def args(self, scenario: str, run: int, *extra: str) -> list[str]:
        source = _export(self.exports, scenario, run)
        return ["watch", "--source", source, "--state", self.state, *WINDOW, "--webhook", self.url, *extra]

    def run(self, scenario: str, run: int, *extra: str) -> tuple[int, list[str], str]:
        """One run: its exit code, the events POSTed during it, and its stderr."""
        before = len(self.hook.received)
        code = main(self.args(scenario, run, *extra))
        return (code, self.posted(before), self.captured())

    def cli(self, *argv: str) -> tuple[int, str]:
        """Another command on the same state: its exit code and stdout (its stderr in `err`)."""
        code = main([*argv, "--state", self.state])
        out, self.err = self.capsys.readouterr()
        return code, out

    def captured(self) -> str:
        out, err = self.capsys.readouterr()
        self.outputs += [out, err]
        return err

    def posted(self, since: int = 0) -> list[str]:
        return [_event(request) for request in self.hook.received[since:]]


def _event(request: Received) -> str:
    body = json.loads(request.body)
    return f"{body['event']} {body['alert']}"


@pytest.fixture
def watch(exports: Path, tmp_path: Path, hook: Receiver, capsys: pytest.CaptureFixture[str]) -> Watch:
    return Watch(exports, str(tmp_path / "state.sqlite"), hook, capsys)


def test_an_incident_notifies_once_stays_quiet_and_resolves_with_the_default_policy(watch: Watch) -> None:
    steps = [
        ("db-outage", 0, 2, [f"firing {DB}"]),
        ("db-outage", 1, 2, []),
        ("healthy", 2, 0, []),  # 5 min clean: keep_firing_for (10 min) not over
        ("healthy", 3, 0, [f"resolved {DB}"]),
        ("healthy", 4, 0, []),
    ]
    got = [watch.run(scenario, run)[:2] for scenario, run, *_ in steps]
    assert got == [(code, events) for *_, code, events in steps]
    first = watch.hook.received[0]
    assert first.path == f"/hook/{TOKEN}"
    timestamp = first.headers[TIMESTAMP_HEADER]
    assert first.headers[SIGNATURE_HEADER] == signature(SECRET, timestamp, first.body)
    assert json.loads(first.body)["symptoms"]  # the WebSocket failures ride inside the root's message
    assert len({request.headers[IDEMPOTENCY_HEADER] for request in watch.hook.received}) == 2
    assert "🔴 Production Status: CRITICAL" in watch.outputs[0]  # the report on stdout, as check prints it
    assert f"queued firing {DB}" in watch.outputs[1] and f"sent firing {DB}" in watch.outputs[1]
    _no_secret_in(watch.outputs)


def test_a_webhook_answering_500_gets_the_notification_once_when_back(watch: Watch) -> None:
    watch.hook.status = 500
    code, _, err = watch.run("db-outage", 0)
    assert code == 2 and f"failed firing {DB}" in err and "HTTP 500" in err and "next at" in err
    watch.hook.status = 200
    code, events, err = watch.run("db-outage", 1)
    assert events == [f"firing {DB}"] and f"sent firing {DB}" in err
    assert watch.run("db-outage", 2)[1] == []
    ids = [request.headers[IDEMPOTENCY_HEADER] for request in watch.hook.received]
    assert len(ids) == 2 and len(set(ids)) == 1  # the failed try and the delivery: one message
    _no_secret_in(watch.outputs)


def test_a_silence_mutes_and_notifications_resume_once_it_is_expired(watch: Watch) -> None:
    code, out = watch.cli(
        "silence", "add", "--match", "rule=database-*", "--for", "2h", "--reason", "migration"
    )
    silence_id = out.strip()
    assert code == 0 and len(silence_id) == 8
    code, events, err = watch.run("db-outage", 0)
    assert events == [] and f"muted ({silence_id}) firing {DB}" in err
    assert silence_id in watch.cli("silence", "list")[1]
    assert watch.cli("silence", "expire", silence_id) == (0, f"expired {silence_id}\n")
    assert watch.run("db-outage", 1)[1] == [f"firing {DB}"]  # this episode never notified
    assert watch.cli("silence", "expire", silence_id)[0] == 3
    assert "no silence" in watch.err and watch.cli("silence", "list")[1] == "no silence in force\n"


def test_a_silence_needs_an_expiry_a_reason_and_a_good_matcher(watch: Watch) -> None:
    assert watch.cli("silence", "add", "--match", "rule=db", "--for", "2h")[0] == 3
    assert "--reason" in watch.err
    assert watch.cli("silence", "add", "--match", "colour=red", "--for", "2h", "--reason", "x")[0] == 3
    assert "KEY=VALUE" in watch.err
    assert not Path(watch.state).exists()


def test_alerts_lists_firing_and_pending_and_state_info_counts_them(watch: Watch) -> None:
    watch.run("db-outage", 0)
    code, out = watch.cli("alerts")
    assert code == 0 and out.splitlines()[0].split()[:4] == [
        "firing",
        "CRITICAL",
        "emergence-app",
        "database-unavailable",
    ]
    listed = json.loads(watch.cli("alerts", "--format", "json")[1])
    assert {a["key"]: a["state"] for a in listed}[DB] == "firing"
    assert listed[0]["notified"] == listed[0]["firing_since"]
    counts = "alerts: 1 firing, 1 pending; 0 silences in force; outbox: 0 to send, 0 dropped"
    assert counts in watch.cli("state", "info")[1]  # the WebSocket symptom is DEGRADED: pending, one run
    assert out.splitlines()[1].split()[:2] == ["pending", "DEGRADED"]
    watch.run("healthy", 2)
    watch.run("healthy", 3)
    assert watch.cli("alerts")[1] == "no firing or pending alert\n"
    assert {a["state"] for a in json.loads(watch.cli("alerts", "--all", "--format", "json")[1])} == {
        "resolved"
    }


def test_a_dry_run_changes_no_byte_of_the_state_and_sends_nothing(watch: Watch) -> None:
    watch.run("db-outage", 0)
    before = Path(watch.state).read_bytes()
    code, events, err = watch.run("healthy", 3, "--dry-run")
    assert code == 0 and events == [] and f"would send resolved {DB}" in err and "webhook-" in err
    assert Path(watch.state).read_bytes() == before and not Path(watch.state + "-wal").exists()
    assert watch.run("healthy", 3)[1] == [f"resolved {DB}"]  # what the dry run said


def test_a_dry_run_on_no_state_creates_none(watch: Watch) -> None:
    code, events, _ = watch.run("db-outage", 0, "--dry-run", "--quiet")
    assert (code, events) == (2, []) and not Path(watch.state).exists()
    assert watch.outputs[-2] == ""  # --quiet: no report on stdout


def test_a_check_that_cannot_read_its_logs_is_the_unknown_alert_and_exit_3(
    watch: Watch, tmp_path: Path
) -> None:
    argv = ["watch", "--source", str(tmp_path / "gone.json"), "--until", "2025-10-11T12:00:00Z"]
    argv += [
        "--service",
        "emergence-app",
        "--state",
        watch.state,
        "--webhook",
        watch.url,
        "--unknown-after",
        "1",
    ]
    code = main(argv)
    err = watch.captured()
    assert code == 3 and "gone.json" in err and "Traceback" not in err
    assert watch.posted() == ["firing emergence-app/unknown"]
    assert json.loads(watch.hook.received[0].body)["severity"] == "UNKNOWN"


def test_every_service_of_the_input_has_its_own_alerts(watch: Watch) -> None:
    source = _export(watch.exports, "db-outage", 0, "billing-api")
    code = main(["watch", "--source", source, "--state", watch.state, *WINDOW, "--webhook", watch.url])
    watch.captured()
    assert code == 2
    assert sorted(watch.posted()) == ["firing billing-api/database-unavailable", f"firing {DB}"]


def test_a_live_watch_reads_cloud_logging_with_or_without_a_service(
    watch: Watch, outage_api: FakeLoggingServer
) -> None:
    live = ["watch", "--project", "emergence-469005", "--until", "2025-10-11T12:04:00Z", "--quiet"]
    live += ["--state", watch.state, "--webhook", watch.url]
    assert main([*live, "--service", "emergence-app"]) == 2
    assert main(live) == 2  # the project's every service: the same alert, judged at the same clock
    err = watch.captured()
    assert watch.posted() == [f"firing {DB}"] and "error" not in err


@pytest.mark.parametrize(
    "problem",
    ["corrupt state", "channels file", "rules", "option"],
)
def test_a_bad_state_config_or_rule_is_one_line_exit_3_and_changes_nothing(
    watch: Watch, tmp_path: Path, problem: str
) -> None:
    state = Path(watch.state)
    extra: list[str] = []
    if problem == "corrupt state":
        state.write_bytes(b"not a database, a half-written file\x00" * 40)
    else:
        watch.run("db-outage", 0)
    if problem == "channels file":
        (tmp_path / "channels.yaml").write_text(
            "channels:\n  - name: team\n    type: slack\n    url_env: NO_SUCH_VAR_I13\n"
        )
        extra = ["--channels", str(tmp_path / "channels.yaml")]
    elif problem == "rules":
        (tmp_path / "rules").mkdir()
        (tmp_path / "rules" / "bad.yaml").write_text("rules:\n  - id: broken\n    type: nonsense\n")
        extra = ["--rules", str(tmp_path / "rules")]
    elif problem == "option":
        extra = ["--repeat-interval", "soon"]
    before = state.read_bytes()
    code, events, err = watch.run("db-outage", 1, *extra)
    assert (code, events) == (3, []) and state.read_bytes() == before
    assert len(err.strip().splitlines()) == 1 and err.startswith("prodguardian: error: "), err
    assert "Traceback" not in err


def test_watch_works_on_a_state_in_cloud_storage(
    watch: Watch,
    fake_gcs_server: FakeGcsServer,  # noqa: F811 - the imported fixture
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", fake_gcs_server.url)
    watch.state = "gs://state-bucket/prodguardian.sqlite"
    assert watch.run("db-outage", 0)[:2] == (2, [f"firing {DB}"])
    generation = fake_gcs_server.generation("state-bucket", "prodguardian.sqlite")
    assert watch.run("db-outage", 1, "--dry-run")[1] == []
    assert fake_gcs_server.generation("state-bucket", "prodguardian.sqlite") == generation  # not saved
    assert watch.run("db-outage", 1)[1] == []
    assert watch.cli("alerts")[1].startswith("firing   CRITICAL emergence-app")


def _watch_process(watch: Watch, scenario: str, run: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "prodguardian", *watch.args(scenario, run)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )


def test_a_run_killed_while_sending_sends_at_most_one_duplicate_with_the_same_idempotency_key(
    watch: Watch,
) -> None:
    process: list[subprocess.Popen[str]] = []
    watch.hook.on_request = lambda _: process[0].kill()  # the body is read: killed before it records "sent"
    process.append(_watch_process(watch, "db-outage", 0))
    process[0].communicate(timeout=120)
    assert process[0].returncode != 0 and len(watch.hook.received) == 1
    watch.hook.on_request = None
    assert watch.run("db-outage", 1)[1] == [f"firing {DB}"]  # the row was still pending: sent again
    assert watch.run("db-outage", 2)[1] == []
    keys = {request.headers[IDEMPOTENCY_HEADER] for request in watch.hook.received}
    assert len(watch.hook.received) == 2 and len(keys) == 1  # the receiver can drop the duplicate


def test_two_concurrent_watch_processes_send_one_notification(watch: Watch) -> None:
    # The receiver holds each answer (5 s at most): the first run sends while holding the store's write lock,
    # the second finishes its check meanwhile and waits for the lock, then finds the notification sent.
    watch.hook.delay = threading.Event()
    first = _watch_process(watch, "db-outage", 0)
    second = _watch_process(watch, "db-outage", 0)
    outputs = [first.communicate(timeout=120), second.communicate(timeout=120)]
    assert [first.returncode, second.returncode] == [2, 2]
    assert watch.posted() == [f"firing {DB}"]
    _no_secret_in([text for pair in outputs for text in pair])


def _no_secret_in(outputs: list[str]) -> None:
    for text in outputs:
        assert TOKEN not in text and SECRET not in text


def test_an_email_channel_gets_the_service_html_report_with_its_charts(
    exports: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The alert email of a watch run attaches the check's HTML report (issue 14): the same page as
    `check --format html`, charts inline; a run with nothing to send renders none."""
    channels = tmp_path / "channels.yaml"
    state = str(tmp_path / "state.sqlite")
    with smtp_receiver() as mailbox:
        channels.write_text(
            "channels:\n  - name: relay\n    type: email\n    host: 127.0.0.1\n"
            f"    port: {mailbox.port}\n    starttls: false\n"
            "    from: alerts@example.com\n    to: oncall@example.com\n",
            encoding="utf-8",
        )
        for run in (0, 1):
            source = _export(exports, "db-outage", run)
            assert (
                main(["watch", "--source", source, "--state", state, *WINDOW, "--channels", str(channels)])
                == 2
            )
    capsys.readouterr()
    [got] = mailbox.received
    [attachment] = got.message.iter_attachments()
    assert isinstance(attachment, EmailMessage)
    page = attachment.get_content()
    assert attachment.get_filename() == "prodguardian-report.html"
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and "Database unavailable" in page
    assert main(["check", "--source", source, *WINDOW, "--format", "html", "--no-state"]) == 2
    assert capsys.readouterr().out.count("<svg") == page.count("<svg")
