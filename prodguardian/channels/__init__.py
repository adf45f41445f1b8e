"""Where notifications go: the channels of a YAML channels file (docs/alerting.md), each a
`prodguardian.notification.Channel`."""

from __future__ import annotations

import os

from prodguardian.channels import apprise_urls, chat, config, mail, webhook
from prodguardian.channels.delivery import Route
from prodguardian.channels.webhook import JsonWebhook, json_webhook
from prodguardian.notification import Channel

BUILDERS: dict[str, config.Builder] = {
    "webhook": webhook.build,
    "slack": chat.build_slack,
    "google_chat": chat.build_google_chat,
    "pagerduty": chat.build_pagerduty,
    "email": mail.build,
    "apprise": apprise_urls.build,
}


def load_channels(path: str | os.PathLike[str]) -> list[Channel]:
    """The channels a channels file describes, their secrets read from the environment or files; a bad
    file raises ConfigError at `file:line:column`."""
    return config.load_channels(path, BUILDERS)


__all__ = ["Channel", "JsonWebhook", "Route", "json_webhook", "load_channels"]
