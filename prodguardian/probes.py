"""Health probes: GET the service's health endpoints, expect 200 and, for a JSON body, a healthy `status`.

The runbook's first step after a deploy. A probe never raises for what the server does (slow, refused, an
error status, a body that is not JSON): each outcome is a ProbeResult, and a failing one is a finding.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

from prodguardian.detect import Finding
from prodguardian.errors import ConfigError

HEALTH_PATHS = ("/api/health", "/health/liveness", "/health/readiness")
HEALTHY = frozenset(("healthy", "ok", "alive", "up", "pass", "ready", "serving"))
TIMEOUT_S = 5.0
MAX_BODY = 64 * 1024  # a health body is small; a larger one is read no further
_MAX_PARALLEL = 8


@dataclass(frozen=True)
class ProbeResult:
    url: str
    ok: bool
    problem: str | None  # None, or why it failed: timeout | unreachable | status | unhealthy
    status: int | None = None  # the HTTP status, when the server answered
    health: str | None = None  # the JSON body's `status` field, when it has one
    elapsed_ms: float = 0.0
    detail: str | None = None  # the network error, for `unreachable`


PROBE_RULE = "probe-failed"


def probe_findings(results: Iterable[ProbeResult]) -> list[Finding]:
    """A CRITICAL startup finding for each failing probe: the service does not answer as healthy."""
    return [
        Finding(
            rule=PROBE_RULE,
            category="startup",
            severity="CRITICAL",
            kind="probe",
            description="A health endpoint did not answer 200 with a healthy status.",
            count=1,
            per_hour=0.0,
            baseline_per_hour=None,
            group=result.url,
        )
        for result in results
        if not result.ok
    ]


def service_probes(base_url: str) -> list[str]:
    """The usual health endpoints of a service at `base_url`."""
    base = check_url(base_url).rstrip("/")
    return [base + path for path in HEALTH_PATHS]


def check_url(url: str) -> str:
    """`url` if it is an http(s) URL with a host (probes never read files or other schemes)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"probe: {url!r} is not an http:// or https:// URL")
    return url


def probe_all(urls: Iterable[str], timeout: float = TIMEOUT_S) -> list[ProbeResult]:
    """Every probe, at the same time, in the order given."""
    checked = [check_url(url) for url in urls]
    if not checked:
        return []
    with ThreadPoolExecutor(max_workers=min(_MAX_PARALLEL, len(checked))) as pool:
        return list(pool.map(lambda url: probe(url, timeout), checked))


def probe(url: str, timeout: float = TIMEOUT_S) -> ProbeResult:
    """One GET of `url`, judged."""
    request = urllib.request.Request(
        url, headers={"Accept": "application/json", "User-Agent": "prodguardian"}
    )
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, body = response.status, response.read(MAX_BODY)
    except urllib.error.HTTPError as exc:
        return ProbeResult(url, False, "status", status=exc.code, elapsed_ms=_since(started))
    except TimeoutError:
        return ProbeResult(url, False, "timeout", elapsed_ms=_since(started))
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, TimeoutError):
            return ProbeResult(url, False, "timeout", elapsed_ms=_since(started))
        return ProbeResult(url, False, "unreachable", elapsed_ms=_since(started), detail=str(reason))
    elapsed = _since(started)
    if status != 200:
        return ProbeResult(url, False, "status", status=status, elapsed_ms=elapsed)
    health = health_status(body)
    healthy = health is None or health.lower() in HEALTHY
    return ProbeResult(url, healthy, None if healthy else "unhealthy", status, health, elapsed)


def health_status(body: bytes) -> str | None:
    """The `status` field of a JSON object body (None when the body is not one, or has none)."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return None
    value = document.get("status") if isinstance(document, dict) else None
    return None if value is None else str(value)[:100]


def _since(started: float) -> float:
    return (time.perf_counter() - started) * 1000
