"""docs/alerting.md stays true: its channels examples load, and its signature check verifies what the
webhook really sends (to the local HTTP receiver)."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from prodguardian.channels import json_webhook, load_channels
from prodguardian.channels.webhook import signature
from tests.http_receiver import http_receiver
from tests.notifications import notification

DOC = Path(__file__).resolve().parent.parent / "docs" / "alerting.md"
SAMPLE_SECRETS = {"url": "https://hooks.example.invalid/T0/B0/x", "urls": "json://127.0.0.1:9/x"}


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


@pytest.mark.parametrize("example", [b for b in blocks("yaml") if b.startswith("channels:")])
def test_every_channels_example_loads(example: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for field, variable in re.findall(r"(\w+)_env: (\w+)", example):
        monkeypatch.setenv(variable, SAMPLE_SECRETS.get(field, "s3cr3t-value"))
    path = tmp_path / "channels.yaml"
    path.write_text(example, encoding="utf-8")
    channels = load_channels(path)
    assert [c.name for c in channels] == re.findall(r"- name: (\S+)", example)


def test_the_documented_signature_check_verifies_the_webhook() -> None:
    [snippet] = blocks("python")
    namespace: dict[str, Any] = {}
    exec(snippet, namespace)
    verify = namespace["verify"]
    with http_receiver() as receiver:
        json_webhook(receiver.url, secret="shared-secret").send(notification())
    [got] = receiver.received
    assert verify("shared-secret", got.headers, got.body)
    assert not verify("another-secret", got.headers, got.body)
    assert not verify("shared-secret", got.headers, got.body.replace(b"CRITICAL", b"DEGRADED"))
    an_hour_ago = str(int(time.time()) - 3600)
    replayed = {
        "X-ProdGuardian-Timestamp": an_hour_ago,
        "X-ProdGuardian-Signature": signature("shared-secret", an_hour_ago, got.body),
    }
    assert not verify("shared-secret", replayed, got.body)  # signed right, but an hour old
