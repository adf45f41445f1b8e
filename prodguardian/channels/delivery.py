"""What every channel shares: which notifications it takes (minimum severity, services), and an HTTP POST
whose failures are DeliveryErrors naming the channel and the cause, never the URL's secret parts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson
import requests

from prodguardian import __version__
from prodguardian.notification import SEVERITY_ORDER, AlertSeverity, DeliveryError, Notification
from prodguardian.render import clean

USER_AGENT = f"prodguardian/{__version__}"
DEFAULT_TIMEOUT = 10.0  # seconds to connect, and again to read the answer: a hung receiver cannot hang a run
_ANSWER_SHOWN = 120  # characters of a refusal's body kept in the error (Slack says `invalid_token` there)


@dataclass(frozen=True)
class Route:
    """Which notifications a channel takes: at least `min_severity`, and of `services` when given (a
    notification about no one service, like a project-wide "could not check", goes to every channel)."""

    min_severity: AlertSeverity = "DEGRADED"
    services: frozenset[str] | None = None

    def wants(self, notification: Notification) -> bool:
        rank = SEVERITY_ORDER.index
        if rank(notification.severity) < rank(self.min_severity):
            return False
        return self.services is None or notification.service is None or notification.service in self.services


def public_address(url: str) -> str:
    """The part of a URL safe to show: scheme, host and port (the path and query of a webhook are its key)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


def scrubbed(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret (and a URL's path and query) replaced by `…`."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, "…")
    return text


def url_secrets(url: str) -> list[str]:
    """The parts of a URL that may be a secret: the whole, its user info, its path and its query."""
    parts = urlsplit(url)
    hidden = [parts.path, parts.query, parts.username or "", parts.password or ""]
    return [url, *(part for part in hidden if len(part) > 1)]


def post(
    channel: str,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    secrets: Iterable[str] = (),
) -> requests.Response:
    """POST `body` to `url` and return a 2xx answer; anything else raises a one-line DeliveryError."""
    hidden = [*url_secrets(url), *secrets]
    where = f"{channel}: POST to {public_address(url)}"
    try:
        answer = requests.post(
            url,
            data=body,
            headers={"User-Agent": USER_AGENT, **headers},
            timeout=timeout,
            allow_redirects=False,  # a redirect would carry the notification somewhere not configured
        )
    except requests.Timeout:
        raise DeliveryError(f"{where}: no answer within {timeout:g} s") from None
    except requests.RequestException as exc:
        raise DeliveryError(scrubbed(f"{where}: {_cause(exc)}", hidden)) from None
    if not 200 <= answer.status_code < 300:
        said = clean(answer.text[:_ANSWER_SHOWN]).replace("\n", " ").strip()
        reason = f"HTTP {answer.status_code} {answer.reason or ''}".strip()
        raise DeliveryError(scrubbed(f"{where}: {reason}" + (f": {said}" if said else ""), hidden))
    return answer


def _cause(exc: BaseException) -> str:
    """The innermost system error's words (`Connection refused`), else the error's kind: the outer
    messages of requests and urllib3 repeat the URL."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.strerror:
            return str(current.strerror)
        inner = getattr(current, "reason", None)
        current = inner if isinstance(inner, BaseException) else current.__cause__ or current.__context__
    return "connection failed" if isinstance(exc, requests.ConnectionError) else type(exc).__name__


@dataclass
class PostedJson:
    """A channel that POSTs a JSON payload built from the notification."""

    name: str
    url: str = field(repr=False)  # a webhook's path is its key
    route: Route = field(default_factory=Route)
    timeout: float = DEFAULT_TIMEOUT

    def wants(self, notification: Notification) -> bool:
        return self.route.wants(notification)

    def payload(self, notification: Notification) -> dict[str, Any]:
        raise NotImplementedError

    def hidden(self) -> list[str]:
        """Secrets besides the URL's, kept out of errors."""
        return []

    def headers(self, notification: Notification, body: bytes) -> dict[str, str]:
        return {"Content-Type": "application/json"}

    def send(self, notification: Notification) -> None:
        body = orjson.dumps(self.payload(notification))
        headers = self.headers(notification, body)
        post(self.name, self.url, body, headers, timeout=self.timeout, secrets=self.hidden())
