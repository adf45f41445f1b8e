"""Every other service through Apprise URLs (`type: apprise`; the optional extra `prodguardian[apprise]`):
Discord, Microsoft Teams, Telegram, ntfy, Matrix… each a URL like `discord://id/token`, kept secret in
`urls_env`/`urls_file` (one or more, separated by spaces, commas or lines).

The message goes as plain text, which Apprise escapes for targets that read HTML or Markdown, so log text
cannot format or link; `@` cannot mention anyone. Apprise is imported only when a channels file names it."""

from __future__ import annotations

import importlib
import logging
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from prodguardian.channels.chat import defanged
from prodguardian.channels.config import Spec
from prodguardian.channels.delivery import Route, scrubbed, url_secrets
from prodguardian.channels.mail import text_part
from prodguardian.channels.message import message
from prodguardian.notification import DeliveryError, Notification

INSTALL = "pip install 'prodguardian[apprise]'"
_SEPARATORS = re.compile(r"[\s,]+")
_LOGGED = 3  # lines of Apprise's log kept in a DeliveryError


def notify_type(notification: Notification) -> str:
    """Apprise's type (its colour and icon on most services)."""
    if notification.event == "resolved":
        return "success"
    return "warning" if notification.severity == "DEGRADED" else "failure"


@dataclass
class AppriseUrls:
    """One or more Apprise URLs, notified together."""

    name: str
    urls: list[str] = field(repr=False)  # a service's URL holds its token
    route: Route = field(default_factory=Route)

    def wants(self, notification: Notification) -> bool:
        return self.route.wants(notification)

    def send(self, notification: Notification) -> None:
        apprise = _apprise()
        targets = apprise.Apprise()
        targets.add(self.urls)
        m = message(notification)
        with apprise.LogCapture(level=logging.WARNING, fmt="%(message)s") as logged:
            sent = targets.notify(
                body=defanged(text_part(notification, titled=False)),
                title=defanged(m.header),
                notify_type=notify_type(notification),
                body_format="text",
            )
            said = logged.getvalue()
        if not sent:
            raise DeliveryError(self._failure(said))

    def _failure(self, said: str) -> str:
        lines = [" ".join(line.split()) for line in said.splitlines() if line.strip()]
        cause = "; ".join(lines[-_LOGGED:]) or "not delivered"
        hidden = [secret for url in self.urls for secret in url_secrets(url)]
        return scrubbed(f"{self.name}: Apprise to {', '.join(self.schemes())}: {cause}", hidden)

    def schemes(self) -> list[str]:
        """What the URLs may show: their services' names (`discord://`)."""
        return [f"{urlsplit(url).scheme}://" for url in self.urls]


def _apprise() -> Any:
    return importlib.import_module("apprise")


def build(spec: Spec) -> AppriseUrls:
    """A `type: apprise` channel: `urls_env`/`urls_file`, each URL checked by Apprise at load time."""
    try:
        apprise = _apprise()
    except ImportError:
        raise spec.error("type", f"the apprise channel needs the apprise extra: {INSTALL}") from None
    written = spec.secret("urls") or ""
    urls = [url for url in _SEPARATORS.split(written) if url]
    key = "urls_env" if "urls_env" in spec.node else "urls_file"
    for number, url in enumerate(urls, 1):
        if not apprise.Apprise().add(url):
            scheme = urlsplit(url).scheme or "?"
            raise spec.error(key, f"URL {number} ({scheme}://…) is not one Apprise knows")
    return AppriseUrls(name=spec.name, urls=urls, route=spec.route())
