"""The generic JSON webhook: the notification as JSON, signed when a secret is set.

The receiver checks `X-ProdGuardian-Signature` (`sha256=` and the hex HMAC-SHA256, keyed by the shared
secret, of the timestamp header's value, a dot, and the exact body) and refuses an old timestamp, so a
captured request cannot be replayed later. `Idempotency-Key` is the notification's id: a retried delivery
carries the same one, so the receiver can drop a duplicate.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass, field
from typing import Any

from prodguardian.channels.config import Spec
from prodguardian.channels.delivery import PostedJson
from prodguardian.notification import Notification

SIGNATURE_HEADER = "X-ProdGuardian-Signature"
TIMESTAMP_HEADER = "X-ProdGuardian-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header's value for a body sent at `timestamp` (Unix seconds, as sent)."""
    signed = timestamp.encode("ascii") + b"." + body
    return "sha256=" + hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


@dataclass
class JsonWebhook(PostedJson):
    """POSTs each notification's JSON (`Notification.to_dict`, without the HTML page an email attaches: the
    JSON report is there) to a URL, signed when `secret` is set."""

    secret: str | None = field(default=None, repr=False)

    def hidden(self) -> list[str]:
        return [self.secret or ""]

    def payload(self, notification: Notification) -> dict[str, Any]:
        return {key: value for key, value in notification.to_dict().items() if key != "html"}

    def headers(self, notification: Notification, body: bytes) -> dict[str, str]:
        headers = {"Content-Type": "application/json", IDEMPOTENCY_HEADER: notification.id}
        if self.secret:
            timestamp = str(int(time.time()))
            headers[TIMESTAMP_HEADER] = timestamp
            headers[SIGNATURE_HEADER] = signature(self.secret, timestamp, body)
        return headers


def json_webhook(url: str, secret: str | None = None, *, name: str = "webhook") -> JsonWebhook:
    """The generic JSON webhook to `url`, signed with `secret` when given (`watch --webhook URL`)."""
    return JsonWebhook(name=name, url=url, secret=secret)


def build(spec: Spec) -> JsonWebhook:
    """A `type: webhook` channel: `url_env`/`url_file`, optionally `secret_env`/`secret_file`."""
    url, secret = spec.address(), spec.secret("secret", required=False)
    return JsonWebhook(name=spec.name, url=url, secret=secret, route=spec.route(), timeout=spec.timeout())
