"""Chat and paging webhooks: Slack (Block Kit), Google Chat (a cardsV2 card or a text message) and
PagerDuty (Events API v2, `dedup_key` = the alert, so a resolved alert resolves the incident).

Log text is data: in Slack it goes in plain_text objects (no formatting, links or mentions), and the
mrkdwn we write escapes `&`, `<` and `>`; in Google Chat it is HTML-escaped in cards, defanged in text."""

from __future__ import annotations

import hashlib
import html
from dataclasses import dataclass, field
from typing import Any

from prodguardian.channels.config import Spec
from prodguardian.channels.delivery import PostedJson
from prodguardian.channels.message import Message, message
from prodguardian.notification import Notification

PAGERDUTY_ENDPOINT = "https://events.pagerduty.com/v2/enqueue"
PAGERDUTY_SEVERITY = {"CRITICAL": "critical", "DEGRADED": "warning", "UNKNOWN": "error"}
_HEADER_MAX, _SECTION_MAX = 150, 3000  # Slack's limits on a header's and a section's text


def defanged(text: str) -> str:
    """Log text that cannot mention anyone: `@` followed by a word joiner (`@channel` stays readable)."""
    return text.replace("@", "@\u2060")


def mrkdwn(text: str) -> str:
    """Text for Slack mrkdwn: the three characters Slack asks to escape, and no mention."""
    return defanged(text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"))


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": _cut(defanged(text), _SECTION_MAX), "emoji": True}


def _finding_text(m: Message) -> list[str]:
    texts = ["\n".join(line for line in (f.summary, f.example, f.frame) if line) for f in m.findings]
    return texts + [f"↳ {symptom}" for symptom in m.symptoms] + ([m.more] if m.more else [])


def slack_payload(notification: Notification) -> dict[str, Any]:
    m = message(notification)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {**_plain(m.header), "text": _cut(defanged(m.header), _HEADER_MAX)}},
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{mrkdwn(m.t('notify.findings_title'))}*"}},
        *({"type": "section", "text": _plain(text)} for text in _finding_text(m)),
    ]
    if m.commands:
        code = "\n".join(m.commands).replace("`", "ˋ")
        title = mrkdwn(m.t("notify.commands_title"))
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{title}*\n```{mrkdwn(code)}```"}}
        )
    blocks.append({"type": "context", "elements": [_plain(m.context)]})
    return {"text": mrkdwn(f"{m.header}\n{m.context}"), "blocks": blocks}


def chat_text(text: str) -> str:
    """Text for a Google Chat text message: no `<users/all>` mention, no `<url|label>` link."""
    return defanged(text.replace("<", "‹").replace(">", "›").replace("`", "ˋ"))


def google_chat_payload(notification: Notification, card: bool = True) -> dict[str, Any]:
    m = message(notification)
    if not card:
        return {"text": f"*{chat_text(m.header)}*\n```\n{chat_text(m.plain())}```"}
    paragraphs = [html.escape(text).replace("\n", "<br>") for text in _finding_text(m)]
    sections: list[dict[str, Any]] = [
        {
            "header": html.escape(m.t("notify.findings_title")),
            "widgets": [{"textParagraph": {"text": p}} for p in paragraphs],
        }
    ]
    if m.commands:
        commands = "<br>".join(html.escape(command) for command in m.commands)
        sections.append(
            {
                "header": html.escape(m.t("notify.commands_title")),
                "widgets": [{"textParagraph": {"text": commands}}],
            }
        )
    header = {"title": chat_text(m.header), "subtitle": chat_text(m.context)}
    card_id = "prodguardian-" + hashlib.sha256(notification.alert.encode()).hexdigest()[:12]
    return {
        "text": chat_text(m.header),
        "cardsV2": [{"cardId": card_id, "card": {"header": header, "sections": sections}}],
    }


@dataclass
class Slack(PostedJson):
    """A Slack incoming webhook."""

    def payload(self, notification: Notification) -> dict[str, Any]:
        return slack_payload(notification)


@dataclass
class GoogleChat(PostedJson):
    """A Google Chat space's webhook: a card, or a text message (`card: false`)."""

    card: bool = True

    def payload(self, notification: Notification) -> dict[str, Any]:
        return google_chat_payload(notification, self.card)


@dataclass
class PagerDuty(PostedJson):
    """PagerDuty Events API v2: a trigger while the alert fires, a resolve when it clears."""

    routing_key: str = field(default="", repr=False)

    def hidden(self) -> list[str]:
        return [self.routing_key]

    def payload(self, notification: Notification) -> dict[str, Any]:
        event = {"routing_key": self.routing_key, "dedup_key": notification.alert}
        if notification.event == "resolved":
            return {**event, "event_action": "resolve"}
        m = message(notification)
        details = {"findings": _finding_text(m), "commands": m.commands, "context": m.context}
        return {
            **event,
            "event_action": "trigger",
            "client": "ProdGuardian",
            "payload": {
                "summary": _cut(m.header, 1024),
                "source": notification.service or "prodguardian",
                "severity": PAGERDUTY_SEVERITY[notification.severity],
                "timestamp": notification.at.isoformat(),
                "component": notification.service,
                "class": notification.alert.split("/")[1]
                if "/" in notification.alert
                else notification.alert,
                "custom_details": details,
            },
        }


def build_slack(spec: Spec) -> Slack:
    return Slack(name=spec.name, url=spec.address(), route=spec.route(), timeout=spec.timeout())


def build_google_chat(spec: Spec) -> GoogleChat:
    card = spec.flag("card", True)
    return GoogleChat(
        name=spec.name, url=spec.address(), route=spec.route(), timeout=spec.timeout(), card=card
    )


def build_pagerduty(spec: Spec) -> PagerDuty:
    """`routing_key_env`/`routing_key_file`; `endpoint` (the Events API's by default); paged from CRITICAL."""
    key = spec.secret("routing_key") or ""
    endpoint = spec.text("endpoint", PAGERDUTY_ENDPOINT) or PAGERDUTY_ENDPOINT
    route = spec.route("CRITICAL")
    return PagerDuty(name=spec.name, url=endpoint, route=route, timeout=spec.timeout(), routing_key=key)
