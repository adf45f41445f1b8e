"""The channels against real local peers: a local HTTP server receives what each channel POSTs; the
notifications come from checks of the simulator's scenarios."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from prodguardian.channels import JsonWebhook, Route, json_webhook, load_channels
from prodguardian.channels.chat import slack_payload
from prodguardian.channels.delivery import post
from prodguardian.errors import ConfigError
from prodguardian.notification import Channel, DeliveryError, Notification
from tests.http_receiver import Receiver, http_receiver
from tests.notifications import notification

SECRET_PATH = "/hooks/T000/B000/XyZsecretPart"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with http_receiver() as peer:
        yield peer


@pytest.fixture(scope="module")
def firing() -> Notification:
    return notification("firing")


def channels_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "channels.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def verify_signature(secret: str, headers: dict[str, str], body: bytes, now: float) -> bool:
    """What a receiver does: recompute the HMAC over timestamp.body and refuse a stale timestamp."""
    timestamp = headers["X-ProdGuardian-Timestamp"]
    expected = (
        "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    )
    fresh = abs(now - int(timestamp)) <= 300
    return fresh and hmac.compare_digest(expected, headers["X-ProdGuardian-Signature"])


# ------------------------------------------------------------------------------------------ generic webhook


def test_webhook_posts_the_notification_json_with_its_id_as_idempotency_key(
    receiver: Receiver, firing: Notification
) -> None:
    json_webhook(receiver.url + "/in").send(firing)
    [got] = receiver.received
    assert got.path == "/in"
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["Idempotency-Key"] == firing.id
    assert "X-ProdGuardian-Signature" not in got.headers
    assert Notification.from_dict(json.loads(got.body)) == firing
    assert json.loads(got.body)["findings"][0]["rule"] == "database-unavailable"


def test_webhook_signature_verifies_as_a_receiver_checks_it(receiver: Receiver, firing: Notification) -> None:
    json_webhook(receiver.url, secret="s3cr3t").send(firing)
    [got] = receiver.received
    assert verify_signature("s3cr3t", got.headers, got.body, time.time())
    assert not verify_signature("other", got.headers, got.body, time.time())
    assert not verify_signature("s3cr3t", got.headers, got.body + b" ", time.time())
    assert not verify_signature("s3cr3t", got.headers, got.body, time.time() + 3600)  # a replay, an hour on


def test_a_retry_carries_the_same_idempotency_key(receiver: Receiver, firing: Notification) -> None:
    channel = json_webhook(receiver.url)
    channel.send(firing)
    channel.send(firing)
    assert [r.headers["Idempotency-Key"] for r in receiver.received] == [firing.id, firing.id]


def test_a_refusal_is_a_delivery_error_without_the_secret_path(
    receiver: Receiver, firing: Notification
) -> None:
    receiver.status, receiver.answer = 500, b"boom\nat " + SECRET_PATH.encode()
    with pytest.raises(DeliveryError) as caught:
        json_webhook(receiver.url + SECRET_PATH, name="ops").send(firing)
    message = str(caught.value)
    assert message.startswith(f"ops: POST to {receiver.url}: HTTP 500")
    assert "XyZsecretPart" not in message and "\n" not in message


def test_a_refused_connection_is_a_delivery_error_without_the_secret_path(firing: Notification) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    with pytest.raises(DeliveryError) as caught:
        json_webhook(f"http://127.0.0.1:{port}{SECRET_PATH}?token=abc", name="ops").send(firing)
    message = str(caught.value)
    assert message == f"ops: POST to http://127.0.0.1:{port}: Connection refused"


def test_a_hung_receiver_is_a_timeout(receiver: Receiver, firing: Notification) -> None:
    receiver.delay = threading.Event()
    channel = JsonWebhook(name="slow", url=receiver.url + SECRET_PATH, timeout=0.2)
    with pytest.raises(
        DeliveryError, match=r"^slow: POST to http://127\.0\.0\.1:\d+: no answer within 0\.2 s$"
    ):
        channel.send(firing)


def test_a_redirect_is_not_followed(receiver: Receiver) -> None:
    receiver.status = 302
    with pytest.raises(DeliveryError, match="HTTP 302"):
        post("hook", receiver.url, b"{}", {})
    assert len(receiver.received) == 1


def test_the_channel_repr_shows_no_secret() -> None:
    assert "XyZ" not in repr(json_webhook("https://example.invalid" + SECRET_PATH, secret="XyZ2"))


# ------------------------------------------------------------------------------------------ routes


def test_a_route_takes_its_minimum_severity_and_services(firing: Notification) -> None:
    degraded = replace(firing, severity="DEGRADED")
    assert Route().wants(degraded)
    assert not Route("CRITICAL").wants(degraded)
    assert Route("CRITICAL").wants(firing)
    assert Route("CRITICAL").wants(replace(firing, severity="UNKNOWN"))
    assert not Route(services=frozenset({"billing"})).wants(firing)
    assert Route(services=frozenset({"emergence-app"})).wants(firing)
    assert Route(services=frozenset({"billing"})).wants(replace(firing, service=None))


# ------------------------------------------------------------------------------------------ channels file


def test_a_channels_file_builds_its_webhooks_with_secrets_from_env_and_file(
    tmp_path: Path, receiver: Receiver, firing: Notification, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPS_HOOK_URL", receiver.url + "/ops")
    (tmp_path / "hook.secret").write_text("from-a-file\n", encoding="utf-8")
    (tmp_path / "audit.url").write_text(receiver.url + "/audit\n", encoding="utf-8")
    path = channels_file(
        tmp_path,
        "channels:\n"
        "  - name: ops\n    type: webhook\n    url_env: OPS_HOOK_URL\n    secret_file: hook.secret\n"
        "  - name: audit\n    type: webhook\n    url_file: audit.url\n    min_severity: UNKNOWN\n"
        "    services: [billing]\n    timeout: 3\n",
    )
    ops, audit = load_channels(path)
    assert (ops.name, audit.name) == ("ops", "audit")
    assert ops.wants(firing) and not audit.wants(firing)
    ops.send(firing)
    [got] = receiver.received
    assert got.path == "/ops" and verify_signature("from-a-file", got.headers, got.body, time.time())


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        (
            "channels:\n  - name: a\n    type: webhook\n    url: http://x/y\n",
            ":4:5",
            "channel 'a': url: a secret is not written in the file: use url_env (a variable) or url_file",
        ),
        (
            "channels:\n  - name: a\n    type: webhook\n    url_env: NOT_SET_ANYWHERE\n",
            ":4:5",
            "channel 'a': url_env: the environment variable NOT_SET_ANYWHERE is not set",
        ),
        (
            "channels:\n  - name: a\n    type: webhook\n    url_file: missing.url\n",
            ":4:5",
            "channel 'a': url_file: cannot read missing.url: No such file or directory",
        ),
        (
            "channels:\n  - name: a\n    type: telegraph\n",
            ":3:5",
            "channel 'a': type: unknown type 'telegraph'; the types are: ",
        ),
        ("channels:\n  - type: webhook\n", ":2:5", "channel 1: name is required"),
        (
            "channels:\n  - name: a\n    type: webhook\n    url_env: HOOK\n    min_severity: WARNING\n",
            ":5:5",
            "channel 'a': min_severity: 'WARNING' is not one of DEGRADED, CRITICAL, UNKNOWN",
        ),
        (
            "channels:\n  - name: a\n    type: webhook\n    url_env: HOOK\n    colour: red\n",
            ":5:5",
            "channel 'a': colour: unknown field for a webhook channel; its fields are: name, type, ",
        ),
        (
            "channels:\n  - name: a\n    type: webhook\n    url_env: HOOK\n    timeout: soon\n",
            ":5:5",
            "channel 'a': timeout: expected a number, got str",
        ),
        (
            "channels:\n  - name: a\n    type: webhook\n    url_env: HOOK\n"
            "  - name: a\n    type: webhook\n    url_env: HOOK\n",
            ":5:5",
            "channel 'a': name: another channel has this name",
        ),
        (
            "channels:\n  - name: a\n    type: webhook\n    url_env: NOT_A_URL\n",
            ":4:5",
            "channel 'a': url_env: not an http(s) URL",
        ),
        ("channels: [\n", ":2:1", "invalid YAML: expected the node content"),
        ("slack: x\n", ":1:1", "a channels file holds a list `channels:`"),
    ],
)
def test_a_bad_channels_file_is_a_config_error_at_its_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, where: str, message: str
) -> None:
    monkeypatch.setenv("HOOK", "http://127.0.0.1:9/hook")
    monkeypatch.setenv("NOT_A_URL", "hooks.example/x")
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    path = channels_file(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_channels(path)
    assert str(caught.value.where) == f"{path}{where}"
    assert caught.value.message.startswith(message)


def test_a_secret_never_reaches_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK", "ftp://user:pa55word@host/x")
    path = channels_file(tmp_path, "channels:\n  - name: a\n    type: webhook\n    url_env: HOOK\n")
    with pytest.raises(ConfigError) as caught:
        load_channels(path)
    assert "pa55word" not in str(caught.value)


# ------------------------------------------------------------------------------ slack, chat, pagerduty

HOSTILE = "<!channel> @here *bold* <http://evil.example|click> `code` & more"


def chat_channels(tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> dict[str, Channel]:
    monkeypatch.setenv("SLACK_WEBHOOK_URL", receiver.url + "/slack")
    monkeypatch.setenv("CHAT_WEBHOOK_URL", receiver.url + "/chat")
    monkeypatch.setenv("PD_ROUTING_KEY", "R0UTINGKEY")
    path = channels_file(
        tmp_path,
        "channels:\n"
        "  - name: slack\n    type: slack\n    url_env: SLACK_WEBHOOK_URL\n"
        "  - name: chat\n    type: google_chat\n    url_env: CHAT_WEBHOOK_URL\n"
        "  - name: chat-text\n    type: google_chat\n    url_env: CHAT_WEBHOOK_URL\n    card: false\n"
        f"  - name: pager\n    type: pagerduty\n    routing_key_env: PD_ROUTING_KEY\n"
        f"    endpoint: {receiver.url}/v2/enqueue\n",
    )
    return {channel.name: channel for channel in load_channels(path)}


def test_slack_gets_blocks_with_the_findings_the_command_and_a_text_fallback(
    tmp_path: Path, receiver: Receiver, firing: Notification, monkeypatch: pytest.MonkeyPatch
) -> None:
    chat_channels(tmp_path, receiver, monkeypatch)["slack"].send(firing)
    [got] = receiver.received
    payload = json.loads(got.body)
    header, *_, context = payload["blocks"]
    assert header["type"] == "header" and header["text"]["text"].startswith("🔴 emergence-app")
    texts = [block["text"]["text"] for block in payload["blocks"] if block["type"] == "section"]
    assert any("Database unavailable" in text and "manager.py:64" in text for text in texts)
    assert any("```prodguardian check --service emergence-app" in text for text in texts)
    assert context["type"] == "context" and "Firing · emergence-app" in context["elements"][0]["text"]
    assert payload["text"].startswith("🔴 emergence-app")


def test_log_text_cannot_mention_link_or_format_in_slack(firing: Notification) -> None:
    hostile = replace(firing, title=HOSTILE, findings=[{**firing.findings[0], "examples": [HOSTILE]}])
    payload = slack_payload(hostile)
    assert "<!channel>" not in payload["text"] and "&lt;!channel&gt;" in payload["text"]
    for block in payload["blocks"]:
        text = block.get("text") or block["elements"][0]
        assert "@here" not in text["text"]
        if HOSTILE.split()[0] in text["text"]:
            assert text["type"] == "plain_text"  # no mrkdwn: no bold, no link, no mention


def test_google_chat_gets_a_card_or_a_text_message(
    tmp_path: Path, receiver: Receiver, firing: Notification, monkeypatch: pytest.MonkeyPatch
) -> None:
    channels = chat_channels(tmp_path, receiver, monkeypatch)
    hostile = replace(firing, findings=[{**firing.findings[0], "examples": [HOSTILE]}])
    channels["chat"].send(hostile)
    channels["chat-text"].send(hostile)
    card, text = (json.loads(r.body) for r in receiver.received)
    paragraphs = [
        w["textParagraph"]["text"] for s in card["cardsV2"][0]["card"]["sections"] for w in s["widgets"]
    ]
    assert any("Database unavailable" in p and "&lt;!channel&gt;" in p for p in paragraphs)
    assert card["cardsV2"][0]["card"]["header"]["title"].startswith("🔴 emergence-app")
    assert "<" not in text["text"] and "Database unavailable" in text["text"]


def test_pagerduty_triggers_then_resolves_the_same_incident(
    tmp_path: Path, receiver: Receiver, firing: Notification, monkeypatch: pytest.MonkeyPatch
) -> None:
    pager = chat_channels(tmp_path, receiver, monkeypatch)["pager"]
    resolved = replace(firing, id=firing.id + "/resolved", event="resolved")
    assert pager.wants(firing) and not pager.wants(replace(firing, severity="DEGRADED"))
    pager.send(firing)
    pager.send(resolved)
    trigger, resolve = (json.loads(r.body) for r in receiver.received)
    assert receiver.received[0].path == "/v2/enqueue"
    assert trigger["event_action"] == "trigger" and resolve["event_action"] == "resolve"
    assert trigger["dedup_key"] == resolve["dedup_key"] == "emergence-app/database-unavailable"
    assert trigger["routing_key"] == "R0UTINGKEY"
    assert trigger["payload"]["severity"] == "critical" and trigger["payload"]["source"] == "emergence-app"
    assert "Database unavailable" in trigger["payload"]["summary"]


def test_a_pagerduty_refusal_hides_the_routing_key(
    tmp_path: Path, receiver: Receiver, firing: Notification, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver.status, receiver.answer = 400, b'{"status":"invalid event","message":"bad key R0UTINGKEY"}'
    with pytest.raises(DeliveryError) as caught:
        chat_channels(tmp_path, receiver, monkeypatch)["pager"].send(firing)
    assert "HTTP 400" in str(caught.value) and "R0UTINGKEY" not in str(caught.value)


def test_a_french_notification_is_worded_in_french(firing: Notification) -> None:
    payload = slack_payload(notification("resolved", lang="fr"))
    assert payload["blocks"][0]["text"]["text"].startswith("✅ résolu emergence-app")
    assert "Résolue · emergence-app" in payload["blocks"][-1]["elements"][0]["text"]
