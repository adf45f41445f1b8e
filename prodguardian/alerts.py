"""The alert lifecycle: from the previous alerts, a check's report and the clock, the new alerts and the
notifications to send. Pure functions, no I/O.

An alert's identity is (service, rule, revision when the finding names a failing revision), never its text.
Each identity goes pending → firing → resolved: it fires once its condition held long enough (`for`: runs
or a duration per severity), stays firing until it has been absent for `keep_firing_for` (no flapping),
reminds every `repeat_interval`, and says when it resolves. A finding caused by another one present in the
same report is a symptom: it is an alert of its own but never notifies (inhibited); its findings appear in
the root's notification. A check that failed (UNKNOWN) is the service's `unknown` alert once it failed
`unknown_after` runs in a row. A silenced alert changes state as usual and notifies nothing; the first run
after its silence ends sends what is then due: `firing` if this episode never notified, else the reminder
at its usual time. A resolution is sent whenever the firing was, silenced or not, so a receiver that
opened an incident can close it.

The clock is the checked window's end: a run whose clock is not after an alert's last judged one leaves it
alone, so a replayed or concurrent run of the same window counts once.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from prodguardian.detect import Finding
from prodguardian.notification import AlertSeverity, Event, Notification, notification_id
from prodguardian.render import Translator, finding_title, report_dict
from prodguardian.verdict import STATUS_ICONS, Report

AlertState = Literal["pending", "firing", "resolved"]
Hold = int | timedelta  # consecutive runs, or how long the condition must have held
UNKNOWN_RULE = "unknown"
SILENCE_KEYS = ("alert", "service", "rule", "category", "revision", "severity")
NO_SERVICE = "-"  # the service of a report whose input names none
_RANK = {"INFO": 0, "DEGRADED": 1, "CRITICAL": 2, "UNKNOWN": 3}


@dataclass(frozen=True)
class Policy:
    """When alerts fire, remind and resolve."""

    fire_after: dict[str, Hold] = field(default_factory=lambda: {"CRITICAL": 1, "DEGRADED": 2})
    keep_firing_for: timedelta = timedelta(minutes=10)
    repeat_interval: timedelta = timedelta(hours=4)
    unknown_after: int = 3


@dataclass(frozen=True)
class Alert:
    """One identity's current episode."""

    key: str
    service: str
    rule: str
    category: str
    revision: str | None
    state: AlertState
    severity: AlertSeverity
    title: str
    since: datetime  # the episode's first run with the condition
    changed: datetime  # the last change of state
    last_seen: datetime  # the last run with the condition
    evaluated: datetime  # the clock of the last run that judged it
    runs: int  # consecutive runs with the condition
    firing_since: datetime | None = None
    notified: datetime | None = None  # the last notification queued for this episode

    @property
    def labels(self) -> dict[str, str]:
        return {
            "alert": self.key,
            "service": self.service,
            "rule": self.rule,
            "category": self.category,
            "revision": self.revision or "",
            "severity": self.severity,
        }


@dataclass(frozen=True)
class Silence:
    """Mutes the alerts whose labels match every matcher (exact values or globs), until `ends`."""

    id: str
    matchers: dict[str, str]
    ends: datetime
    reason: str
    created: datetime

    def mutes(self, alert: Alert, at: datetime) -> bool:
        labels = alert.labels
        return at < self.ends and all(fnmatch.fnmatchcase(labels[k], v) for k, v in self.matchers.items())


@dataclass(frozen=True)
class Condition:
    """What one run saw for one identity."""

    key: str
    service: str
    rule: str
    category: str
    revision: str | None
    severity: AlertSeverity
    title: str
    findings: list[dict[str, Any]]
    symptoms: list[dict[str, Any]] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    report: dict[str, Any] | None = None
    inhibited_by: str | None = None  # the root's key: a symptom never notifies


@dataclass(frozen=True)
class Muted:
    """A notification that was due but not queued, and why (a silence's id, or the inhibiting root)."""

    notification: Notification
    why: str


@dataclass
class Outcome:
    alerts: list[Alert]  # the alerts this run created or changed
    removed: list[str]  # keys of pending alerts whose condition cleared before they fired
    notifications: list[Notification]  # to queue
    muted: list[Muted]


def alert_key(service: str, rule: str, revision: str | None = None) -> str:
    return "/".join(part for part in (service, rule, revision) if part)


def evaluate(
    previous: Sequence[Alert],
    report: Report,
    at: datetime,
    policy: Policy = Policy(),
    silences: Sequence[Silence] = (),
    lang: str = "en",
) -> Outcome:
    """The run's changes to the alerts and the notifications it sends, for every service of `report`."""
    outcome = Outcome([], [], [], [])
    known = {alert.key: alert for alert in previous}
    t = Translator(lang)
    for service_report in report.services or [report]:
        service = service_report.context.service or NO_SERVICE
        mine = {k: a for k, a in known.items() if a.service == service and a.evaluated < at}
        conditions = [
            c for c in _conditions(service_report, service, t) if c.key in mine or c.key not in known
        ]
        if service_report.status == "UNKNOWN":
            mine = {k: a for k, a in mine.items() if a.rule == UNKNOWN_RULE}  # the rest cannot be judged
        for condition in conditions:
            _step(known.get(condition.key), condition, at, policy, silences, lang, outcome)
            mine.pop(condition.key, None)
        for alert in mine.values():
            _absent(alert, at, policy, lang, outcome)
    return outcome


def _conditions(report: Report, service: str, t: Translator) -> list[Condition]:
    """The identities the report shows a problem for (roots, then their symptoms), or its failed check."""
    document = report_dict(report, t)
    if report.status == "UNKNOWN":
        title = t("alerts.unknown", service=service, reason=document["reason"] or report.status)
        key = alert_key(service, UNKNOWN_RULE)
        return [
            Condition(key, service, UNKNOWN_RULE, UNKNOWN_RULE, None, "UNKNOWN", title, [], report=document)
        ]
    dicts = {id(f): d for f, d in zip(report.findings, document["findings"], strict=True)}
    problems = report.problems
    roots = {f.rule for f in problems if not f.caused_by or f.caused_by not in {p.rule for p in problems}}
    commands = [r.command for r in report.recommendations if r.command]
    grouped: dict[str, list[Finding]] = {}
    for finding in problems:
        grouped.setdefault(alert_key(service, finding.rule, _revision(finding)), []).append(finding)
    conditions = []
    for key, findings in grouped.items():
        first = findings[0]
        root = None if first.rule in roots else first.caused_by
        caused = [s for s in problems if s.caused_by == first.rule and s.rule not in roots]
        # A root is as severe as what it causes: its symptoms notify only through it.
        severity = max((f.severity for f in (*findings, *caused)), key=_RANK.__getitem__)
        conditions.append(
            Condition(
                key,
                service,
                first.rule,
                first.category,
                _revision(first),
                "CRITICAL" if severity == "CRITICAL" else "DEGRADED",
                finding_title(first, t),
                [dicts[id(f)] for f in findings],
                [dicts[id(s)] for s in caused],
                commands,
                document,
                alert_key(service, root, _revision(first)) if root else None,
            )
        )
    return conditions


def _revision(finding: Finding) -> str | None:
    """The revision in an alert's identity: the one a failed deploy or a revision's failures name."""
    if finding.serving_revision or finding.category == "deploy":
        return finding.worst_revision[0] if finding.worst_revision else None
    return None


def _step(
    alert: Alert | None,
    condition: Condition,
    at: datetime,
    policy: Policy,
    silences: Sequence[Silence],
    lang: str,
    outcome: Outcome,
) -> None:
    """The condition held in this run: start, continue or escalate the alert's episode."""
    if alert is None or alert.state == "resolved":
        alert = _new_alert(condition, at)
        escalated = False
    else:
        escalated = _RANK[condition.severity] > _RANK[alert.severity]
        alert = replace(
            alert,
            severity=condition.severity,
            title=condition.title,
            last_seen=at,
            evaluated=at,
            runs=alert.runs + 1,
        )
    if alert.state == "pending" and _held(alert, condition.severity, at, policy):
        alert = replace(alert, state="firing", changed=at, firing_since=at)
    event = _due(alert, escalated, at, policy)
    if event is not None:
        notification = _notification(alert, condition, event, at, lang)
        why = condition.inhibited_by or next((s.id for s in silences if s.mutes(alert, at)), None)
        if why is None:
            alert = replace(alert, notified=at)
            outcome.notifications.append(notification)
        else:
            outcome.muted.append(Muted(notification, why))
    outcome.alerts.append(alert)


def _new_alert(condition: Condition, at: datetime) -> Alert:
    return Alert(
        condition.key,
        condition.service,
        condition.rule,
        condition.category,
        condition.revision,
        "pending",
        condition.severity,
        condition.title,
        since=at,
        changed=at,
        last_seen=at,
        evaluated=at,
        runs=1,
    )


def _held(alert: Alert, severity: str, at: datetime, policy: Policy) -> bool:
    """Whether the condition held long enough to fire."""
    if alert.rule == UNKNOWN_RULE:
        return alert.runs >= policy.unknown_after
    hold = policy.fire_after.get(severity, 1)
    if isinstance(hold, timedelta):
        return at - alert.since >= hold
    return alert.runs >= hold


def _due(alert: Alert, escalated: bool, at: datetime, policy: Policy) -> Event | None:
    """The notification a firing alert owes now: its firing (first, or worse), or a reminder."""
    if alert.state != "firing":
        return None
    if alert.notified is None or escalated:
        return "firing"
    return "reminder" if at - alert.notified >= policy.repeat_interval else None


def _absent(alert: Alert, at: datetime, policy: Policy, lang: str, outcome: Outcome) -> None:
    """The condition did not hold in this run: a pending alert clears, a firing one resolves in time."""
    if alert.state == "resolved":
        return
    if alert.state == "pending":
        outcome.removed.append(alert.key)
        return
    keep = timedelta(0) if alert.rule == UNKNOWN_RULE else policy.keep_firing_for
    if at - alert.last_seen < keep:
        outcome.alerts.append(replace(alert, evaluated=at, runs=0))
        return
    resolved = replace(alert, state="resolved", changed=at, evaluated=at, runs=0)
    if alert.notified is not None:
        t = Translator(lang)
        title = t("alerts.resolved", service=alert.service, title=alert.title)
        condition = Condition(
            alert.key, alert.service, alert.rule, alert.category, alert.revision, alert.severity, title, []
        )
        outcome.notifications.append(_notification(alert, condition, "resolved", at, lang))
        resolved = replace(resolved, notified=at)
    outcome.alerts.append(resolved)


def _notification(alert: Alert, condition: Condition, event: Event, at: datetime, lang: str) -> Notification:
    t = Translator(lang)
    if event != "resolved":
        icon = "⚪" if alert.severity == "UNKNOWN" else STATUS_ICONS[alert.severity]
        key = "alerts.reminder" if event == "reminder" else "alerts.firing"
        title = t(key, icon=icon, severity=alert.severity, service=alert.service, title=condition.title)
    else:
        title = condition.title
    return Notification(
        id=notification_id(alert.key, event, at),
        alert=alert.key,
        event=event,
        severity=alert.severity,
        service=None if alert.service == NO_SERVICE else alert.service,
        title=title,
        at=at,
        started_at=alert.firing_since or at,
        lang=lang,
        findings=condition.findings,
        symptoms=condition.symptoms,
        commands=condition.commands,
        report=condition.report,
    )


def parse_matchers(items: Sequence[str]) -> dict[str, str]:
    """`key=value` matchers of a silence (values may be globs); a ValueError names a bad one."""
    matchers = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in SILENCE_KEYS or not value.strip():
            raise ValueError(f"{item!r}: a matcher is KEY=VALUE with KEY one of {', '.join(SILENCE_KEYS)}")
        matchers[key] = value.strip()
    if not matchers:
        raise ValueError("a silence needs at least one --match KEY=VALUE")
    return matchers
