"""What a notification says, in its language, before a channel formats it: the header, the findings with
an example line and the innermost frame, the symptoms shown inside, the commands and a context line.

The text is plain and cleaned of control characters; log text in it is still log text, which each channel
escapes for its own markup (Slack mrkdwn, HTML)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prodguardian.notification import Notification
from prodguardian.render import LANGUAGES, Translator, clean

SHOWN = 10  # findings (and symptoms) a message lists; the rest is counted in "… and N more"


@dataclass(frozen=True)
class FindingLines:
    """One finding as a message shows it."""

    summary: str
    example: str | None
    frame: str | None


@dataclass(frozen=True)
class Message:
    """A notification's wording, channel-neutral."""

    header: str
    subject: str
    context: str
    findings: list[FindingLines]
    symptoms: list[str]
    more: str | None  # "… and 3 more" when findings and symptoms were cut at SHOWN
    commands: list[str]
    resolved: bool
    t: Translator

    def plain(self) -> str:
        """The message as plain text: the fallback of rich formats, and the body of text-only ones."""
        lines = [self.header, self.context, ""]
        for finding in self.findings:
            lines.append(f"• {finding.summary}")
            lines.extend(f"  {extra}" for extra in (finding.example, finding.frame) if extra)
        lines.extend(f"  ↳ {symptom}" for symptom in self.symptoms)
        lines.extend([self.more] if self.more else [])
        lines.extend(f"$ {command}" for command in self.commands)
        return "\n".join(lines).strip() + "\n"


def message(notification: Notification) -> Message:
    t = Translator(notification.lang if notification.lang in LANGUAGES else "en")
    title = one_line(notification.title)
    resolved = notification.event == "resolved"
    findings = [_finding_lines(finding, t) for finding in notification.findings]
    symptoms = [one_line(symptom.get("summary", "")) for symptom in notification.symptoms]
    cut = max(0, len(findings) - SHOWN) + max(0, len(symptoms) - SHOWN)
    return Message(
        header=title,  # the lifecycle words each event's title ("✅ resolved …"): not prefixed again here
        subject=t("notify.subject", severity=notification.severity, title=title),
        context=_context(notification, t),
        findings=findings[:SHOWN],
        symptoms=symptoms[:SHOWN],
        more=t("notify.more", n=cut, count=cut) if cut else None,
        commands=[] if resolved else [one_line(command) for command in notification.commands],
        resolved=resolved,
        t=t,
    )


def one_line(text: Any) -> str:
    return " ".join(clean(text).split())


def _finding_lines(finding: dict[str, Any], t: Translator) -> FindingLines:
    examples = finding.get("examples") or []
    frame = finding.get("frame")
    return FindingLines(
        summary=one_line(finding.get("summary") or finding.get("rule") or ""),
        example=t("notify.example", text=one_line(examples[0])) if examples else None,
        frame=t("notify.at", frame=one_line(frame)) if frame else None,
    )


def _context(notification: Notification, t: Translator) -> str:
    return t(
        "notify.context",
        event=t(f"notify.events.{notification.event}"),
        service=notification.service or t("notify.project"),
        started=_minute(notification.started_at),
        at=_minute(notification.at),
    )


def _minute(moment: datetime) -> str:
    return (moment.astimezone(UTC) if moment.tzinfo else moment).strftime("%Y-%m-%d %H:%M")
