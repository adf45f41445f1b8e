"""One `prodguardian watch` run on an open state store: update the alerts from the check's report, queue
the notifications, deliver what is due; and the lines that tell what happened.

The two steps are separate on purpose: with `--state gs://…` each is one download-work-upload of the store
(`remote_state.with_remote_state`), so the alerts and the outbox are saved before anything is sent, and a
run that loses the race to upload redoes only its own step on the winner's copy.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from prodguardian import alert_state
from prodguardian.alert_state import Delivery
from prodguardian.alerts import Alert, Hold, Outcome, Policy, Silence, evaluate
from prodguardian.channels import json_webhook
from prodguardian.channels.delivery import url_secrets
from prodguardian.channels.mail import Email
from prodguardian.check import parse_duration
from prodguardian.errors import ConfigError
from prodguardian.notification import Channel, Notification
from prodguardian.render_html import render_html
from prodguardian.state import StateStore
from prodguardian.verdict import Report


@dataclass(frozen=True)
class Planned:
    """What a dry run would do: the notifications it would queue and the queued ones due for delivery."""

    outcome: Outcome
    due: list[alert_state.OutboxRow]


def policy(
    repeat_interval: str, keep_firing_for: str, critical_after: str, degraded_after: str, unknown_after: int
) -> Policy:
    """The policy the `watch` options describe (each `*_after` is a number of runs or a duration)."""
    return Policy(
        fire_after={
            "CRITICAL": parse_hold(critical_after, "--critical-after"),
            "DEGRADED": parse_hold(degraded_after, "--degraded-after"),
        },
        keep_firing_for=parse_duration(keep_firing_for, "--keep-firing-for", zero=True),
        repeat_interval=parse_duration(repeat_interval, "--repeat-interval"),
        unknown_after=unknown_after,
    )


def parse_hold(text: str, name: str) -> Hold:
    """`2` (consecutive runs, at least 1) or a duration like `10m`."""
    if text.strip().isdigit():
        if int(text) < 1:
            raise ConfigError(f"{name}: {text!r}: a number of runs is at least 1")
        return int(text)
    return parse_duration(text, name)


def webhooks(urls: Sequence[str], secret: str | None) -> list[Channel]:
    """The generic JSON webhooks of `--webhook URL`, each named after a digest of its URL (the outbox
    knows a channel by its name across runs; the URL itself may be a secret)."""
    channels: list[Channel] = []
    for url in urls:
        if not url.startswith(("http://", "https://")):
            shown = url_secrets(url)[0][:8] + "…"
            raise ConfigError(f"--webhook {shown!r}: not an http(s) URL")
        digest = hashlib.blake2b(url.encode(), digest_size=3).hexdigest()
        channels.append(json_webhook(url, secret, name=f"webhook-{digest}"))
    return channels


def clock(report: Report) -> datetime:
    """The alert clock: the checked window's end (now for the cloud source, the last entry for a file)."""
    return report.context.window.end


def update(
    store: StateStore, report: Report, channels: Sequence[Channel], policy: Policy, lang: str
) -> Outcome:
    """Judge the report against the stored alerts and queue its notifications, in one transaction."""
    at = clock(report)
    attach = any(isinstance(channel, Email) for channel in channels)

    def decide(alerts: list[Alert], silences: list[Silence]) -> Outcome:
        outcome = evaluate(alerts, report, at, policy, silences, lang)
        return _with_html_reports(outcome, report, lang) if attach else outcome

    return alert_state.update_alerts(store, decide, channels, at)


def _with_html_reports(outcome: Outcome, report: Report, lang: str) -> Outcome:
    """Each notification with its service's HTML report, for the email to attach: charts inline when the
    html extra is installed, their text alternatives otherwise. Rendered only when there is news."""
    if not outcome.notifications:
        return outcome
    charts = importlib.util.find_spec("matplotlib") is not None
    pages = {
        page.context.service: render_html(page, lang, inline_charts=charts)
        for page in report.services or [report]
    }
    notifications = [replace(n, html=pages.get(n.service)) for n in outcome.notifications]
    return replace(outcome, notifications=notifications)


def plan(store: StateStore, report: Report, policy: Policy, lang: str) -> Planned:
    """What `update` and `deliver` would do, changing nothing."""
    at = clock(report)
    alerts = alert_state.load_all(store)
    outcome = evaluate(alerts, report, at, policy, alert_state.list_silences(store, at), lang)
    due = [row for row in alert_state.outbox(store) if row.next_try <= at]
    return Planned(outcome, due)


def deliver(store: StateStore, channels: Sequence[Channel], at: datetime) -> list[Delivery]:
    return alert_state.deliver(store, channels, at)


def outcome_lines(outcome: Outcome) -> list[str]:
    """One line per notification queued and per muted one."""
    return [f"queued {_described(n)}" for n in outcome.notifications] + _muted_lines(outcome)


def _muted_lines(outcome: Outcome) -> list[str]:
    return [f"muted ({m.why}) {_described(m.notification)}" for m in outcome.muted]


def plan_lines(planned: Planned, channels: Sequence[Channel]) -> list[str]:
    """What a dry run would do: each notification with the channels that want it, then the retries due."""
    lines = []
    for notification in planned.outcome.notifications:
        wanted = ", ".join(c.name for c in channels if c.wants(notification))
        lines.append(
            f"would send {_described(notification)} " + (f"to {wanted}" if wanted else "(no channel)")
        )
    lines += _muted_lines(planned.outcome)
    lines += [
        f"would retry {_described(r.notification)} to {r.channel} (try {r.tries + 1})" for r in planned.due
    ]
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
