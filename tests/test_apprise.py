"""The apprise channel against the local HTTP receiver: Apprise's own `json://` service posts there."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from prodguardian.channels import load_channels
from prodguardian.errors import ConfigError
from prodguardian.notification import Channel, DeliveryError
from tests.http_receiver import Receiver, http_receiver
from tests.notifications import notification

pytest.importorskip(
    "apprise", reason="the apprise extra is not installed: pip install 'prodguardian[apprise]'"
)

TOKEN = "T0KEN-in-the-path"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with http_receiver() as peer:
        yield peer


def apprise_channel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, urls: str) -> Channel:
    monkeypatch.setenv("APPRISE_URLS", urls)
    path = tmp_path / "channels.yaml"
    path.write_text(
        "channels:\n  - name: team-apprise\n    type: apprise\n    urls_env: APPRISE_URLS\n", encoding="utf-8"
    )
    [channel] = load_channels(path)
    return channel


def json_url(receiver: Receiver, path: str) -> str:
    return receiver.url.replace("http://", "json://") + path


def test_apprise_posts_the_title_and_the_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, receiver: Receiver
) -> None:
    urls = f"{json_url(receiver, '/a')}, {json_url(receiver, '/b')}"
    apprise_channel(tmp_path, monkeypatch, urls).send(notification())
    assert sorted(r.path for r in receiver.received) == ["/a", "/b"]
    payload = json.loads(receiver.received[0].body)
    assert payload["title"].startswith("🔴 emergence-app: Database unavailable")
    assert payload["type"] == "failure"
    body = payload["message"]
    assert "Database unavailable" in body and "manager.py:64" in body
    assert "prodguardian check --service emergence-app" in body
    assert not body.startswith("🔴")  # the title is Apprise's title, not repeated in the body


def test_a_resolution_is_a_success(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, receiver: Receiver
) -> None:
    channel = apprise_channel(tmp_path, monkeypatch, json_url(receiver, "/a"))
    channel.send(replace(notification(), event="resolved", commands=[]))
    payload = json.loads(receiver.received[0].body)
    assert payload["type"] == "success" and payload["title"].startswith("✅ Resolved")


def test_a_refusal_is_a_delivery_error_without_the_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, receiver: Receiver
) -> None:
    receiver.status = 500
    channel = apprise_channel(tmp_path, monkeypatch, json_url(receiver, f"/{TOKEN}"))
    with pytest.raises(DeliveryError) as caught:
        channel.send(notification())
    message = str(caught.value)
    assert message.startswith("team-apprise: Apprise to json://: ")
    assert "500" in message and TOKEN not in message and "\n" not in message


def test_log_text_cannot_mention(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, receiver: Receiver) -> None:
    firing = notification()
    hostile = replace(firing, findings=[{**firing.findings[0], "examples": ["@everyone look"]}])
    apprise_channel(tmp_path, monkeypatch, json_url(receiver, "/a")).send(hostile)
    assert "@everyone" not in json.loads(receiver.received[0].body)["message"]


def test_an_unknown_url_is_a_config_error_without_its_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ConfigError) as caught:
        apprise_channel(tmp_path, monkeypatch, f"json://127.0.0.1/a nosuchservice://{TOKEN}")
    assert caught.value.message == (
        "channel 'team-apprise': urls_env: URL 2 (nosuchservice://…) is not one Apprise knows"
    )
    assert str(caught.value.where).endswith("channels.yaml:4:5")
    assert TOKEN not in capsys.readouterr().err


def test_without_the_extra_the_channels_file_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "apprise", None)  # what an environment without the extra sees
    with pytest.raises(ConfigError) as caught:
        apprise_channel(tmp_path, monkeypatch, "json://127.0.0.1/a")
    assert caught.value.message.endswith("needs the apprise extra: pip install 'prodguardian[apprise]'")
    assert str(caught.value.where).endswith("channels.yaml:3:5")
