"""One `prodguardian watch` run on an open state store: update the alerts from the check's report, queue
the notifications, deliver what is due; and the lines that tell what happened.

The two steps are separate on purpose: with `--state gs://…` each is one download-work-upload of the store
(`remote_state.with_remote_state`), so the alerts and the outbox are saved before anything is sent, and a
run that loses the race to upload redoes only its own step on the winner's copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from prodguardian import alert_state
from prodguardian.alert_state import Delivery
from prodguardian.alerts import Alert, Outcome, Policy, Silence, evaluate
from prodguardian.notification import Channel, Notification
from prodguardian.state import StateStore
from prodguardian.verdict import Report


@dataclass(frozen=True)
class Planned:
    """What a dry run would do: the notifications it would queue and the queued ones due for delivery."""

    outcome: Outcome
    due: list[alert_state.OutboxRow]


def update(
    store: StateStore, report: Report, channels: Sequence[Channel], policy: Policy, lang: str
) -> Outcome:
    """Judge the report against the stored alerts and queue its notifications, in one transaction."""
    at = report.context.window.end

    def decide(alerts: list[Alert], silences: list[Silence]) -> Outcome:
        return evaluate(alerts, report, at, policy, silences, lang)

    return alert_state.update_alerts(store, decide, channels, at)


def plan(store: StateStore, report: Report, policy: Policy, lang: str) -> Planned:
    """What `update` and `deliver` would do, changing nothing."""
    at = report.context.window.end
    alerts = alert_state.load_all(store)
    outcome = evaluate(alerts, report, at, policy, alert_state.list_silences(store, at), lang)
    due = [row for row in alert_state.outbox(store) if row.next_try <= at]
    return Planned(outcome, due)


def deliver(store: StateStore, channels: Sequence[Channel], at: datetime) -> list[Delivery]:
    return alert_state.deliver(store, channels, at)


def outcome_lines(outcome: Outcome, *, dry_run: bool = False) -> list[str]:
    """One line per notification queued (or that a dry run would send) and per muted one."""
    verb = "would send" if dry_run else "queued"
    lines = [f"{verb} {_described(n)}" for n in outcome.notifications]
    lines += [f"muted ({m.why}) {_described(m.notification)}" for m in outcome.muted]
    return lines


def delivery_lines(deliveries: Sequence[Delivery]) -> list[str]:
    """One line per delivery: sent, failed (with the next try) or dropped (for good)."""
    lines = []
    for d in deliveries:
        what = f"{_described(d.notification)} to {d.channel}"
        if d.outcome == "sent":
            lines.append(f"sent {what}")
        elif d.outcome == "failed" and d.next_try is not None:
            lines.append(f"failed {what} (try {d.tries}, next at {d.next_try:%Y-%m-%d %H:%M} UTC): {d.error}")
        else:
            lines.append(f"error: dropped {what} after {d.tries} tries: {d.error}")
    return lines


def _described(notification: Notification) -> str:
    return f"{notification.event} {notification.alert} [{notification.id}]"
