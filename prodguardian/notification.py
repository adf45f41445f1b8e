"""What an alert sends, and what a channel must do with it: the contract between the alert lifecycle
(`prodguardian.alerts`) and the channels (`prodguardian.channels`).

A notification is plain data, JSON-able through `to_dict`, so the outbox can keep it across runs and a
channel renders it its own way (Slack blocks, a PagerDuty event, an email).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

Event = Literal["firing", "reminder", "resolved"]
AlertSeverity = Literal["DEGRADED", "CRITICAL", "UNKNOWN"]
SEVERITY_ORDER: tuple[AlertSeverity, ...] = ("DEGRADED", "CRITICAL", "UNKNOWN")


@dataclass(frozen=True)
class Notification:
    """One message about one alert's change: it fired, it still fires (a reminder), or it resolved."""

    id: str  # unique per message: the outbox's key and the receivers' idempotency key
    alert: str  # the alert's identity ("service/rule" or "service/rule/revision"): PagerDuty's dedup_key
    event: Event
    severity: AlertSeverity  # for a resolved alert, the severity it had while firing
    service: str | None
    title: str  # one line in the report's language, with the status emoji
    at: datetime  # the alert clock: the checked window's end
    started_at: datetime  # when the alert started firing
    lang: str = "en"
    findings: list[dict[str, Any]] = field(default_factory=list)  # the alert's findings, JSON report form
    symptoms: list[dict[str, Any]] = field(default_factory=list)  # inhibited alerts' findings, shown inside
    commands: list[str] = field(default_factory=list)  # ready-to-paste commands (rollback first)
    report: dict[str, Any] | None = None  # the service's JSON report, for channels that attach it
    # the service's self-contained HTML report, charts inline, for channels that carry it (email attaches it)
    html: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["at"] = self.at.isoformat()
        data["started_at"] = self.started_at.isoformat()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Notification:
        return cls(
            **{
                **data,
                "at": datetime.fromisoformat(data["at"]),
                "started_at": datetime.fromisoformat(data["started_at"]),
            }
        )


def notification_id(key: str, event: str, at: datetime) -> str:
    """The same message of the same run has the same id (receivers de-duplicate by it)."""
    return hashlib.blake2b(f"{key}\x00{event}\x00{at.isoformat()}".encode(), digest_size=10).hexdigest()


class DeliveryError(Exception):
    """A channel could not deliver a notification (kept in the outbox and retried); the message names the
    channel and the cause, and never a secret."""


class Channel(Protocol):
    """Somewhere notifications go: a webhook, PagerDuty, an email address..."""

    name: str  # the channel's name in the YAML, shown in the run's output

    def wants(self, notification: Notification) -> bool:
        """Whether this channel takes this notification (its minimum severity and service filter)."""
        ...

    def send(self, notification: Notification) -> None:
        """Deliver it, or raise DeliveryError."""
        ...
