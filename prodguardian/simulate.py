"""Deterministic simulator of emergence-app's Cloud Run logs, with named incident scenarios.

Entries are Cloud Logging LogEntry dicts in the API's JSON shape (what `gcloud logging read --format=json`
prints), newest first, each a fresh dict. The timeline is simulated one hour at a time from the newest hour
back, so memory holds one hour. The newest hour is the check window, where the scenario's incident happens;
older hours are normal traffic that depends only on the seed and the hour's start, so every scenario with the
same seed and end shares it. `scale` multiplies the background volume (requests, WebSocket sessions, app
chatter, bot scans), never an incident's own counts nor the health probes, which follow the 2-3 instances.

What one request writes, as Cloud Run stores it:
- the request log (`run.googleapis.com/requests`, timestamp = request start, `httpRequest`, `trace`,
  `spanId`; platform texts such as the memory kill in `textPayload`; no `labels` when aborted with 429);
- uvicorn's access line on stdout 0-5 ms later (`textPayload`, no severity, no trace); for a WebSocket,
  uvicorn's "[accepted]", "connection open" and "connection closed" lines on stderr instead;
- the app's "Request completed ..." line (stdout `jsonPayload`, the request's `trace`) for API requests;
- on failure, app ERROR lines on the same trace and a stderr traceback without trace: one entry (severity
  ERROR) or one entry per line (no severity, 1-3 ms apart, nothing else on that instance meanwhile).
Request and platform timestamps carry 9 fraction digits, container output 6.
"""

from __future__ import annotations

import math
import random
from bisect import bisect, insort
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from operator import itemgetter
from statistics import NormalDist
from typing import Any

__all__ = [
    "DEFAULT_END",
    "PROJECT",
    "REGION",
    "REVISION_BAD",
    "REVISION_CURRENT",
    "REVISION_OLD",
    "SCENARIOS",
    "SERVICE",
    "Scenario",
    "count_hint",
    "generate",
]

PROJECT = "emergence-469005"
SERVICE = "emergence-app"
REGION = "europe-west1"
REVISION_OLD = "emergence-app-00296-abc"
REVISION_CURRENT = "emergence-app-00297-6pr"
REVISION_BAD = "emergence-app-00298-xyz"
DEFAULT_END = datetime(2025, 10, 11, 12, 4, tzinfo=UTC)

_URL = "https://emergence-app-47fmxpbtfq-ew.a.run.app"
_LOG = f"projects/{PROJECT}/logs/run.googleapis.com%2F"
LOG_REQUESTS = _LOG + "requests"
LOG_STDOUT = _LOG + "stdout"
LOG_STDERR = _LOG + "stderr"
LOG_SYSTEM = _LOG + "varlog%2Fsystem"
_TRACES = f"projects/{PROJECT}/traces/"

_S = 1_000_000_000
_MS = 1_000_000
_MIN = 60 * _S
_HOUR = 60 * _MIN

# Background volume per hour at scale=1.
_HTTP_PER_HOUR = 300
_WS_PER_HOUR = 80
_CHATTER_PER_HOUR = 30
_BOT_BURSTS_PER_HOUR = 1.5
_GENUINE_404_PER_HOUR = 2
_PROBE_INTERVAL = 10 * _S
_THIRD_INSTANCE_SHARE = 0.35  # share of hours in which autoscaling adds a third instance
_OLD_REVISION_AGE = 18  # hours older than this ran emergence-app-00296-abc

_AUTOSCALING = (
    "AUTOSCALING - Instance started due to configured scaling factors (e.g. CPU utilization, request "
    "throughput, etc.) or no existing capacity for current traffic."
)
_ROLLOUT = "DEPLOYMENT_ROLLOUT - Instance started because of a new revision rollout."
_MEMORY_TEXT = (
    "Memory limit of 1024 MiB exceeded with 1062 MiB used. Consider increasing the memory limit, see "
    "https://cloud.google.com/run/docs/configuring/memory-limits"
)
_SIGNAL_9 = "Container terminated on signal 9."
_OOM_REQUEST_TEXT = (
    "While handling this request, the container instance was found to be using too much memory and was "
    "terminated. This is likely to cause a new container instance to be used for the next request to this "
    "revision. If you see this message frequently, you may have a memory leak in your code or may need more "
    "memory. Consider creating a new revision with more memory."
)
_TIMEOUT_TEXT = (
    "The request has been terminated because it has reached the maximum request timeout. To change this "
    "limit, see https://cloud.google.com/run/docs/configuring/request-timeout"
)
_NO_INSTANCE_TEXT = (
    "The request was aborted because there was no available instance. Additional troubleshooting "
    "documentation can be found at: https://cloud.google.com/run/docs/troubleshooting#abort-request"
)
_STARTUP_PROBE_TEXT = (
    'Default STARTUP TCP probe failed 1 time consecutively for container "emergence-app-1" on port 8080. '
    "The instance was not started."
)
_FAILED_TO_START_TEXT = (
    "Container failed to start. Failed to start and then listen on the port defined by the PORT environment "
    "variable. Logs for this revision might contain more information."
)
_UVICORN_STARTUP = (
    "INFO:     Started server process [1]",
    "INFO:     Waiting for application startup.",
    "INFO:     Application startup complete.",
    "INFO:     Uvicorn running on http://0.0.0.0:8080 (Press CTRL+C to quit)",
)
_PROXY_IP = "169.254.169.126"  # Cloud Run's front end, as uvicorn sees the client
_PHRASES = {status.value: status.phrase for status in HTTPStatus}

_DB_LOGGER = "backend.core.database.manager"
_DB_FILE = "src/backend/core/database/manager.py"
_MIDDLEWARE = "backend.middleware"
_WS_LOGGER = "backend.core.websocket"
_MIDDLEWARE_SOURCE = ("src/backend/middleware.py", "52", "dispatch")
_CHAT = "/api/chat/messages"
_GMAIL = "/api/gmail/read-reports?max_results=3"


@dataclass(frozen=True)
class Scenario:
    """A named situation the simulator can play, and the verdict a correct check must reach on it."""

    name: str
    title: str
    description: str
    expected_status: str


@dataclass(frozen=True)
class _AppLine:
    """An app log line an incident writes on a request's trace, `delay_ms` after the line before it."""

    severity: str
    message: str
    source: tuple[str, str, str]  # sourceLocation file, line, function
    delay_ms: tuple[float, float]


_DB_UNAVAILABLE = _AppLine(
    "ERROR",
    "Database connection requested but no active connection is available. "
    "Call connect() before executing queries.",
    (_DB_FILE, "63", "_ensure_connection"),
    (30.0, 45.0),
)
_DB_LOST = _AppLine(
    "WARNING",
    "Database connection lost. Attempting automatic reconnection...",
    (_DB_FILE, "66", "_ensure_connection"),
    (20.0, 35.0),
)
_DB_RECONNECTED = _AppLine(
    "INFO", "Database reconnected successfully.", (_DB_FILE, "79", "_reconnect"), (120.0, 600.0)
)
_DB_RECONNECT_FAILED = _AppLine(
    "ERROR", "Failed to reconnect to database: disk I/O error", (_DB_FILE, "83", "_reconnect"), (150.0, 900.0)
)

_Frame = tuple[str, int, str, str]  # file, line, function, source line
_SITE = "/usr/local/lib/python3.11/site-packages/"
_ASGI_FRAMES: tuple[_Frame, ...] = (
    (
        _SITE + "uvicorn/protocols/websockets/websockets_impl.py",
        244,
        "run_asgi",
        (
            "result = await self.app(self.scope, self.asgi_receive, self.asgi_send)"
            "  # type: ignore[func-returns-value]"
        ),
    ),
    (
        _SITE + "uvicorn/middleware/proxy_headers.py",
        60,
        "__call__",
        "return await self.app(scope, receive, send)",
    ),
    (_SITE + "fastapi/applications.py", 1054, "__call__", "await super().__call__(scope, receive, send)"),
    (_SITE + "starlette/routing.py", 362, "handle", "await self.app(scope, receive, send)"),
    (
        "/app/src/backend/features/chat/router.py",
        212,
        "websocket_endpoint",
        "session = await session_manager.create_session(session_id, user_id)",
    ),
    (
        "/app/src/backend/core/websocket.py",
        88,
        "connect",
        "await self.session_manager.ensure_session(session_id)",
    ),
    ("/app/src/backend/core/session_manager.py", 141, "create_session", "await self.db.execute(...)"),
)
_RAISE_UNAVAILABLE = 'raise RuntimeError("Database connection is not available.")'
_HTTP_FRAMES: tuple[_Frame, ...] = (
    (_SITE + "starlette/middleware/base.py", 148, "call_next", "raise app_exc"),
    (
        _SITE + "starlette/middleware/base.py",
        70,
        "coro",
        "await self.app(scope, receive_or_disconnect, send_no_error)",
    ),
    (_SITE + "starlette/routing.py", 74, "app", "response = await func(request)"),
    (_SITE + "fastapi/routing.py", 301, "app", "raw_response = await run_endpoint_function("),
    (
        "/app/src/backend/features/threads/router.py",
        48,
        "read_thread",
        "return await service.get_thread(thread_id, user_id=user.id)",
    ),
    ("/app/src/backend/features/threads/service.py", 57, "get_thread", 'parent_id = row["thread_id"]'),
)


def _traceback(frames: Sequence[_Frame], exception: str, header: str | None) -> tuple[str, ...]:
    """A Python traceback, one string per line, optionally after uvicorn's ERROR header line."""
    lines = [header] if header else []
    lines.append("Traceback (most recent call last):")
    for file, line, function, code in frames:
        lines += [f'  File "{file}", line {line}, in {function}', f"    {code}"]
    lines.append(exception)
    return tuple(lines)


_ASGI_ERROR = "ERROR:    Exception in ASGI application"
_UNAVAILABLE = "RuntimeError: Database connection is not available."
_DB_TRACEBACK = _traceback(
    (
        *_ASGI_FRAMES,
        ("/app/src/backend/core/database/manager.py", 64, "_ensure_connection", _RAISE_UNAVAILABLE),
    ),
    _UNAVAILABLE,
    _ASGI_ERROR,
)
_RECONNECT_TRACEBACK = _traceback(
    (
        *_ASGI_FRAMES,
        ("/app/src/backend/core/database/manager.py", 71, "_ensure_connection", _RAISE_UNAVAILABLE),
    ),
    _UNAVAILABLE,
    _ASGI_ERROR,
)
_KEYERROR_TEXT = "\n".join(_traceback(_HTTP_FRAMES, "KeyError: 'thread_id'", None))


@dataclass(frozen=True)
class _Route:
    """A kind of ordinary request; `{id}` in the path becomes a fresh UUID."""

    method: str
    path: str
    weight: int
    status: int
    median_ms: float
    sizes: tuple[int, int]  # request, response bytes
    logged: bool = True  # the app's middleware writes "Request completed" (it skips static files)
    alt_status: int = 0
    alt_share: float = 0.0


_ROUTES = (
    _Route("GET", "/api/threads", 12, 200, 70, (420, 5200)),
    _Route("GET", "/api/threads/{id}", 10, 200, 85, (430, 8800)),
    _Route("POST", "/api/chat/messages", 12, 201, 140, (1400, 2100)),
    _Route("GET", "/api/chat/messages?thread_id={id}&limit=50", 10, 200, 95, (450, 14200)),
    _Route("POST", "/api/gmail/read-reports?max_results=3", 5, 200, 150, (380, 3900)),
    _Route("POST", "/api/documents/upload", 3, 201, 170, (240_000, 310)),
    _Route("GET", "/api/documents", 5, 200, 75, (410, 2600)),
    _Route("GET", "/api/auth/me", 8, 200, 40, (400, 380), alt_status=401, alt_share=0.03),
    _Route("GET", "/api/settings", 3, 200, 45, (400, 900)),
    _Route("DELETE", "/api/threads/{id}", 1, 204, 80, (420, 0)),
    _Route("GET", "/", 4, 200, 12, (520, 2300), logged=False),
    _Route("GET", "/assets/index-4f9c2a1b.js", 8, 200, 18, (480, 612_000), False, 304, 0.35),
    _Route("GET", "/assets/index-9d3e77c0.css", 6, 200, 14, (470, 48_000), False, 304, 0.35),
    _Route("GET", "/assets/logo-2b81f0e4.svg", 3, 200, 10, (460, 5400), False, 304, 0.5),
    _Route("GET", "/favicon.ico", 2, 200, 8, (430, 15_086), False, 304, 0.5),
)
_ROUTE_CUMULATIVE = tuple(sum(r.weight for r in _ROUTES[: i + 1]) for i in range(len(_ROUTES)))
_LOGGED_SHARE = sum(r.weight for r in _ROUTES if r.logged) / _ROUTE_CUMULATIVE[-1]
_LATENCY_SIGMA = 0.45
# Log-normal latency factors at 4096 evenly spaced quantiles: one random() per request instead of gauss().
_LATENCY_FACTORS = tuple(
    math.exp(_LATENCY_SIGMA * NormalDist().inv_cdf((i + 0.5) / 4096)) for i in range(4096)
)

_GENUINE_404_PATHS = ("/api/admin/users/unknown-id", "/api/threads/{id}", "/api/documents/{id}")
_SCAN_BASES = (
    "/.env",
    "/.git/HEAD",
    "/wp-admin/setup-config.php",
    "/wp-login.php",
    "/application.wadl",
    "/phpmyadmin/index.php",
    "/.aws/credentials",
    "/.git/config",
    "/.env.production",
    "/xmlrpc.php",
    "/config.json",
    "/server-status",
    "/actuator/env",
    "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php",
    "/.DS_Store",
    "/backup.zip",
    "/owa/auth/logon.aspx",
    "/.vscode/sftp.json",
    "/_profiler/phpinfo",
    "/info.php",
    "/HNAP1/",
    "/boaform/admin/formLogin",
)
_SCAN_PREFIXES = ("", "/backend", "/old", "/wordpress", "/app", "/static", "/blog", "/v1")
_ALL_SCAN_PATHS = tuple(prefix + base for prefix in _SCAN_PREFIXES for base in _SCAN_BASES)
_SCAN_POSTS = ("xmlrpc.php", "formLogin")
_MEAN_SCAN_BURST = 5.5  # paths per background burst: randint(3, 8)

_BROWSERS = (
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/141.0.0.0 Safari/537.36"
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/18.6 Safari/605.1.15"
    ),
    "Mozilla/5.0 (X11; Linux x86_64; rv:143.0) Gecko/20100101 Firefox/143.0",
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/18.6 Mobile/15E148 Safari/604.1"
    ),
    (
        "Mozilla/5.0 (Linux; Android 15; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/141.0.0.0 Mobile Safari/537.36"
    ),
)
_SCANNERS = (
    ("45.148.10.174", "Mozilla/5.0 zgrab/0.x"),
    ("185.224.128.43", "python-requests/2.31.0"),
    ("193.41.206.202", "Go-http-client/1.1"),
    ("167.94.138.120", "Mozilla/5.0 (compatible; CensysInspect/1.1; +https://about.censys.io/)"),
    ("78.153.140.177", "curl/7.88.1"),
    ("104.248.38.7", "l9tcpid/v1.1.0"),
    (
        "20.171.207.9",
        (
            "Mozilla/5.0 (Windows NT 6.1; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/70.0.3538.77 Safari/537.36"
        ),
    ),
)
_PROBES = (
    ("/health/liveness", "kube-probe/1.27", "169.254.1.1"),
    ("/health/readiness", "kube-probe/1.27", "169.254.1.1"),
    ("/api/health", "GoogleHC/1.0", "35.191.14.203"),
)
_SERVER_IPS = ("216.239.32.53", "216.239.34.53", "216.239.36.53", "216.239.38.53")
_CHATTER = (
    ("backend.features.threads.service", "Thread loaded"),
    ("backend.core.cache", "Cache warm"),
    ("backend.features.gmail.sync", "Gmail sync finished: 3 new reports"),
    ("backend.features.documents.indexer", "Document indexed"),
    ("backend.core.scheduler", "Scheduler tick: 0 jobs due"),
    ("backend.core.session_manager", "Session restored from cache"),
)


def _make_clients(count: int) -> tuple[tuple[str, str], ...]:
    """Browser users: (remote IP, user agent), fixed for the module."""
    rng = random.Random("clients")
    networks = ("81.64", "90.112", "86.245", "176.134", "109.190", "92.184", "78.192")
    clients = []
    for i in range(count):
        if i % 7 == 6:
            ip = f"2a01:cb08:{rng.getrandbits(16):x}:{rng.getrandbits(16):x}::{rng.getrandbits(16):x}"
        else:
            ip = f"{rng.choice(networks)}.{rng.randint(1, 254)}.{rng.randint(1, 254)}"
        clients.append((ip, rng.choice(_BROWSERS)))
    return tuple(clients)


def _instance_id(rng: random.Random) -> str:
    return f"00{rng.getrandbits(504):0126x}"


_CLIENTS = _make_clients(40)
_RESOURCE_LABELS = {
    revision: {
        "service_name": SERVICE,
        "revision_name": revision,
        "location": REGION,
        "configuration_name": SERVICE,
        "project_id": PROJECT,
    }
    for revision in (REVISION_OLD, REVISION_CURRENT, REVISION_BAD)
}
_BASE_INSTANCES = {
    revision: tuple(_instance_id(random.Random(f"{revision}/{i}")) for i in range(2))
    for revision in (REVISION_OLD, REVISION_CURRENT, REVISION_BAD)
}


@dataclass
class _Instance:
    id: str
    revision: str
    start: int  # serving from (ns since the epoch)
    stop: int  # serving until
    reason: str | None = None  # why it started inside its hour; None when it was already running


_HOLD = 2 * _S  # an incident keeps other traffic off its instance this long either side
_TEXT, _JSON, _REQUEST = 0, 1, 2  # record kinds
_BIT64, _BIT128 = 1 << 64, 1 << 128

# While an hour is simulated its entries are flat tuples of strings and numbers: half the memory of
# the final dicts, and the garbage collector stops scanning them after one pass (an hour of live dicts cost a
# quarter of the run in collections). The dicts are built as entries are yielded. A record starts with:
# kind, logName, revision, instanceId (or None), timestamp, receiveTimestamp, severity (or None); then
#   _TEXT:    textPayload
#   _JSON:    jsonPayload (a dict of plain values), trace (or None), sourceLocation (file, line, function)
#             or None
#   _REQUEST: method, url, status, latency, requestSize, responseSize, userAgent, remoteIp, serverIp,
#             trace, spanId, textPayload (or None)
_Record = tuple[Any, ...]


class _Hour:
    """One simulated hour: its random stream, instances, timestamp cache and the records written so far."""

    __slots__ = ("_seconds", "end", "held", "instances", "records", "revision", "rng", "scale", "start",
                 "times")  # fmt: skip

    def __init__(self, rng: random.Random, start: int, revision: str, scale: float) -> None:
        self.rng = rng
        self.start = start
        self.end = start + _HOUR
        self.revision = revision
        self.scale = scale
        self.instances: list[_Instance] = []
        self.records: list[_Record] = []
        self.times: list[int] = []  # the records' timestamps in ns, apart so that sorting allocates no tuples
        self.held: list[tuple[int, _Instance]] = []  # sorted by time
        self._seconds: dict[str, str] = {}

    def at(self, span: int, lo: int | None = None, hi: int | None = None) -> int:
        """A random start time such that `span` more nanoseconds still fit in [lo, hi)."""
        lo = self.start if lo is None else lo
        hi = self.end if hi is None else hi
        return lo + int(self.rng.random() * max(0, hi - lo - span - _MS))

    def ms(self, lo: float, hi: float) -> int:
        """A random duration between lo and hi milliseconds, in nanoseconds."""
        return int((lo + (hi - lo) * self.rng.random()) * _MS)

    def count(self, mean: float) -> int:
        """A count near `mean` (±5%), rounded up or down at random so the average stays `mean`."""
        value = mean * (0.95 + 0.1 * self.rng.random())
        whole = int(value)
        return whole + (self.rng.random() < value - whole)

    def uuid(self) -> str:
        h = hex(self.rng.getrandbits(128) | _BIT128)[3:]
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"

    def trace(self) -> str:
        return _TRACES + hex(self.rng.getrandbits(128) | _BIT128)[3:]

    def client(self) -> tuple[str, str]:
        return _CLIENTS[int(self.rng.random() * len(_CLIENTS))]

    def new_instance(
        self, start: int, stop: int, reason: str | None, revision: str | None = None
    ) -> _Instance:
        instance = _Instance(_instance_id(self.rng), revision or self.revision, start, stop, reason)
        self.instances.append(instance)
        return instance

    def instance(self, t: int) -> _Instance:
        """A random instance serving at `t`, avoiding instances held quiet for an incident."""
        live = [i for i in self.instances if i.start <= t < i.stop]
        if self.held and len(live) > 1:
            live = [i for i in live if not self.is_held(i, t)] or live
        return live[int(self.rng.random() * len(live))] if live else self.instances[0]

    def hold(self, instance: _Instance, t: int) -> None:
        """Keep other traffic off `instance` around `t` so an incident's lines stay consecutive."""
        insort(self.held, (t, instance), key=itemgetter(0))

    def is_held(self, instance: _Instance, t: int) -> bool:
        held = self.held
        k = bisect(held, t + _HOLD, key=itemgetter(0))
        while k > 0 and held[k - 1][0] > t - _HOLD:
            k -= 1
            if held[k][1] is instance:
                return True
        return False

    def stamp(self, ns: int, digits: int) -> str:
        """RFC 3339 UTC text with `digits` (6 or 9) fraction digits; formats the date once per second."""
        text = str(ns)  # 19 digits from 2001 to 2286: the seconds, then the 9 fraction digits
        prefix = self._seconds.get(text[:10])
        if prefix is None:
            prefix = datetime.fromtimestamp(ns // _S, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
            self._seconds[text[:10]] = prefix
        return prefix + text[10 : 10 + digits] + "Z"

    def request(
        self,
        t: int,
        instance: _Instance | None,
        method: str,
        path: str,
        status: int,
        latency: int,
        client: tuple[str, str],
        sizes: tuple[int, int],
        text: str | None = None,
        trace: str | None = None,
    ) -> str:
        """A request log (timestamp = request start); returns its trace."""
        rng = self.rng
        trace = trace or self.trace()
        severity = "ERROR" if status >= 500 else "WARNING" if status >= 400 else "INFO"
        received = t + latency + int((8 + 72 * rng.random()) * _MS)
        self.times.append(t)
        self.records.append((
            _REQUEST, LOG_REQUESTS, instance.revision if instance else self.revision,
            instance.id if instance else None, self.stamp(t, 9), self.stamp(received, 9), severity,
            method, _URL + path, status, _duration(latency, 6 if status == 101 else 9),
            str(int(sizes[0] * (0.8 + 0.4 * rng.random()))), str(int(sizes[1] * (0.7 + 0.6 * rng.random()))),
            client[1], client[0], _SERVER_IPS[int(rng.random() * len(_SERVER_IPS))], trace,
            hex(rng.getrandbits(64) | _BIT64)[3:], text,
        ))  # fmt: skip
        return trace

    def text(
        self, t: int, instance: _Instance | None, log: str, text: str, severity: str | None = None
    ) -> None:
        digits = 9 if log is LOG_SYSTEM else 6  # container output carries microseconds
        if digits == 6:
            t -= t % 1000
        received = t + int((5 + 55 * self.rng.random()) * _MS)
        self.times.append(t)
        self.records.append((
            _TEXT, log, instance.revision if instance else self.revision,
            instance.id if instance else None, self.stamp(t, digits), self.stamp(received, 9), severity, text,
        ))  # fmt: skip

    def app(
        self,
        t: int,
        instance: _Instance,
        severity: str,
        payload: dict[str, Any],
        trace: str | None = None,
        source: tuple[str, str, str] | None = None,
    ) -> None:
        """A structured (JSON) stdout line as Cloud Run stores it: severity, trace and source lifted out."""
        t -= t % 1000
        received = t + int((5 + 55 * self.rng.random()) * _MS)
        self.times.append(t)
        self.records.append((
            _JSON, LOG_STDOUT, instance.revision, instance.id, self.stamp(t, 6),
            self.stamp(received, 9), severity, payload, trace, source,
        ))  # fmt: skip

    def newest_first(self) -> list[int]:
        """Indices of the hour's records, newest first (ties keep the order they were written in)."""
        return sorted(range(len(self.records)), key=self.times.__getitem__, reverse=True)


def _entry(r: _Record, insert_id: str) -> dict[str, Any]:
    """The LogEntry dict of a record."""
    entry: dict[str, Any] = {
        "insertId": insert_id,
        "logName": r[1],
        "resource": {"type": "cloud_run_revision", "labels": _RESOURCE_LABELS[r[2]].copy()},
        "timestamp": r[4],
        "receiveTimestamp": r[5],
    }
    if r[3] is not None:
        entry["labels"] = {"instanceId": r[3]}
    if r[6] is not None:
        entry["severity"] = r[6]
    kind = r[0]
    if kind == _TEXT:
        entry["textPayload"] = r[7]
    elif kind == _JSON:
        entry["jsonPayload"] = r[7]
        if r[8] is not None:
            entry["trace"] = r[8]
        if r[9] is not None:
            entry["sourceLocation"] = {"file": r[9][0], "line": r[9][1], "function": r[9][2]}
    else:
        entry["httpRequest"] = {
            "requestMethod": r[7],
            "requestUrl": r[8],
            "status": r[9],
            "latency": r[10],
            "requestSize": r[11],
            "responseSize": r[12],
            "userAgent": r[13],
            "remoteIp": r[14],
            "serverIp": r[15],
            "protocol": "HTTP/1.1",
        }
        entry["trace"] = r[16]
        entry["spanId"] = r[17]
        if r[18] is not None:
            entry["textPayload"] = r[18]
    return entry


def _duration(ns: int, digits: int) -> str:
    """Cloud Logging's Duration text: "0.112114537s" with 9 digits, "183.204118s" with 6."""
    text = str(ns).rjust(10, "0")
    return text[:-9] + "." + text[-9 : len(text) - 9 + digits] + "s"


# Traffic generators: each writes the entries of one kind of event into the hour.


def _served(
    h: _Hour,
    t: int,
    instance: _Instance,
    method: str,
    path: str,
    status: int,
    latency: int,
    client: tuple[str, str],
    sizes: tuple[int, int],
    logged: bool = True,
) -> str:
    """A request the container answered: request log, uvicorn access line, the app's line if logged."""
    rng = h.rng
    trace = h.request(t, instance, method, path, status, latency, client, sizes)
    port = 10000 + int(rng.random() * 55000)
    echo = f'INFO:     {_PROXY_IP}:{port} - "{method} {path} HTTP/1.1" {status} {_PHRASES[status]}'
    h.text(t + int(rng.random() * 5 * _MS), instance, LOG_STDOUT, echo)
    if logged:
        tenths = max(0, latency - int((0.3 + 1.7 * rng.random()) * _MS)) // 100_000  # the app's own timer
        bare = path.partition("?")[0]
        payload = {
            "message": f"Request completed: {method} {bare} status_code={status} "
            f"duration_ms={tenths // 10}.{tenths % 10}",
            "logger": _MIDDLEWARE,
            "method": method,
            "path": bare,
            "status_code": status,
            "duration_ms": tenths / 10,
        }
        h.app(t + latency, instance, "ERROR" if status >= 500 else "INFO", payload, trace)
    return trace


def _fill(h: _Hour, path: str) -> str:
    return path.replace("{id}", h.uuid()) if "{id}" in path else path


def _http_traffic(
    h: _Hour, n: int, latency_factor: float = 1.0, between: tuple[int, int] | None = None
) -> None:
    """`n` ordinary browser requests, API latencies multiplied by `latency_factor`."""
    rng = h.rng
    lo, hi = between or (h.start, h.end)
    total = _ROUTE_CUMULATIVE[-1]
    for _ in range(n):
        route = _ROUTES[bisect(_ROUTE_CUMULATIVE, rng.random() * total)]
        factor = latency_factor if route.path.startswith("/api/") else 1.0
        latency = int(route.median_ms * factor * _LATENCY_FACTORS[int(rng.random() * 4096)] * _MS)
        latency = min(latency, (hi - lo) // 2)
        status = route.alt_status if rng.random() < route.alt_share else route.status
        sizes = (route.sizes[0], 0 if status in (204, 304) else route.sizes[1])
        t = h.at(latency + 10 * _MS, lo, hi)
        instance, path = h.instance(t), _fill(h, route.path)
        _served(h, t, instance, route.method, path, status, latency, h.client(), sizes, route.logged)


def _ws_session(h: _Hour, t: int | None = None, preface: Sequence[_AppLine] = ()) -> None:
    """A WebSocket chat session: 101 request log (latency = session length) and its connect/close lines."""
    length = int(math.exp(math.log(30) + (math.log(1200) - math.log(30)) * h.rng.random()) * _S)
    if t is None:
        t = h.at(length + 3 * _S)
    length = max(_S, min(length, h.end - t - 3 * _S))  # a session given its start still ends in the hour
    instance = h.instance(t)
    session = h.uuid()
    path = f"/ws/chat/{session}"
    trace = h.request(t, instance, "GET", path, 101, length, h.client(), (700, 40_000))
    at = _app_lines(h, t, instance, trace, preface) + h.ms(2, 6)
    port = 10000 + int(h.rng.random() * 55000)
    h.text(at, instance, LOG_STDERR, f'INFO:     {_PROXY_IP}:{port} - "WebSocket {path}" [accepted]')
    h.text(at + h.ms(0.1, 0.5), instance, LOG_STDERR, "INFO:     connection open")
    opened = {"message": "WebSocket connected", "logger": _WS_LOGGER, "session_id": session}
    h.app(at + h.ms(0.5, 2), instance, "INFO", opened, trace)
    closed = {"message": "WebSocket disconnected (code=1000)", "logger": _WS_LOGGER, "session_id": session}
    h.app(t + length - h.ms(1, 3), instance, "INFO", closed, trace)
    h.text(t + length, instance, LOG_STDERR, "INFO:     connection closed")


def _app_lines(h: _Hour, t: int, instance: _Instance, trace: str, lines: Sequence[_AppLine]) -> int:
    """Write an incident's app lines one after the other from `t`; return the time of the last one."""
    for line in lines:
        t += h.ms(*line.delay_ms)
        h.app(t, instance, line.severity, {"message": line.message, "logger": _DB_LOGGER}, trace, line.source)
    return t


def _write_traceback(h: _Hour, t: int, instance: _Instance, lines: Sequence[str], whole: bool) -> int:
    """A stderr traceback, as one ERROR entry or one DEFAULT entry per line; returns when it ends."""
    if whole:
        h.text(t, instance, LOG_STDERR, "\n".join(lines), "ERROR")
        return t
    for line in lines:
        h.text(t, instance, LOG_STDERR, line)
        t += h.ms(1, 3)
    return t


def _ws_failure(
    h: _Hour,
    t: int,
    instance: _Instance,
    preface: Sequence[_AppLine],
    traceback: Sequence[str],
    whole: bool,
) -> None:
    """A WebSocket attempt that fails in the app: 500 request log, app lines, stderr traceback (no trace)."""
    h.hold(instance, t)
    trace = h.trace()
    after = _app_lines(h, t, instance, trace, preface)
    end = _write_traceback(h, after + h.ms(1, 3), instance, traceback, whole)
    path = f"/ws/chat/{h.uuid()}"
    h.request(t, instance, "GET", path, 500, end + h.ms(2, 6) - t, h.client(), (700, 21), trace=trace)


def _probes(h: _Hour, instance: _Instance) -> None:
    """Health probes every ~10 s while `instance` serves in this hour, each with its access line."""
    rng = h.rng
    t = max(instance.start, h.start) + int(rng.random() * _PROBE_INTERVAL)
    stop = min(instance.stop, h.end - 50 * _MS)
    while t < stop:
        if not h.held or not h.is_held(instance, t):
            path, agent, ip = _PROBES[int(rng.random() * len(_PROBES))]
            _served(h, t, instance, "GET", path, 200, h.ms(1, 6), (ip, agent), (220, 21), logged=False)
        t += _PROBE_INTERVAL + int((rng.random() - 0.5) * 600 * _MS)


def _instance_start(h: _Hour, instance: _Instance) -> None:
    """The platform's start message, then uvicorn's startup lines, just before `instance` serves."""
    t = instance.start - h.ms(2500, 4000)
    h.text(t, instance, LOG_SYSTEM, f"Starting new instance. Reason: {instance.reason}", "INFO")
    t += h.ms(600, 1200)
    for line in _UVICORN_STARTUP[:2]:
        h.text(t, instance, LOG_STDERR, line)
        t += h.ms(1, 3)
    payload = {"message": "Database connection established.", "logger": _DB_LOGGER}
    h.app(t + h.ms(40, 200), instance, "INFO", payload, source=(_DB_FILE, "41", "connect"))
    t = instance.start - h.ms(5, 20)
    for line in _UVICORN_STARTUP[2:]:
        h.text(t, instance, LOG_STDERR, line)
        t += h.ms(0.2, 1)


def _chatter(h: _Hour, n: int) -> None:
    for _ in range(n):
        t = h.at(0)
        logger, message = _CHATTER[int(h.rng.random() * len(_CHATTER))]
        h.app(t, h.instance(t), "INFO", {"message": message, "logger": logger})


def _bot_burst(h: _Hour, paths: Sequence[str]) -> None:
    """One scanner probing `paths` in quick succession; every one answers 404."""
    client = _SCANNERS[int(h.rng.random() * len(_SCANNERS))]
    gaps = [h.ms(80, 1500) for _ in paths]
    t = h.at(sum(gaps) + _S)
    for path, gap in zip(paths, gaps, strict=True):
        method = "POST" if path.endswith(_SCAN_POSTS) else "GET"
        _served(h, t, h.instance(t), method, path, 404, h.ms(2, 9), client, (260, 22))
        t += gap


def _genuine_404s(h: _Hour, n: int) -> None:
    """Real users asking for API objects that do not exist (not bot scans)."""
    for _ in range(n):
        t = h.at(100 * _MS)
        path = _fill(h, _GENUINE_404_PATHS[int(h.rng.random() * len(_GENUINE_404_PATHS))])
        _served(h, t, h.instance(t), "GET", path, 404, h.ms(8, 30), h.client(), (430, 60))


def _background(h: _Hour, ws: int | None = None, latency_factor: float = 1.0) -> None:
    """An hour of normal traffic; `ws` overrides the number of (successful) WebSocket sessions."""
    scale = h.scale
    _http_traffic(h, h.count(_HTTP_PER_HOUR * scale), latency_factor)
    for _ in range(h.count(_WS_PER_HOUR * scale) if ws is None else max(0, ws)):
        _ws_session(h)
    _chatter(h, h.count(_CHATTER_PER_HOUR * scale))
    for _ in range(h.count(_BOT_BURSTS_PER_HOUR * scale)):
        _bot_burst(h, h.rng.sample(_SCAN_BASES, h.rng.randint(3, 8)))
    _genuine_404s(h, h.count(_GENUINE_404_PER_HOUR * scale))


def _plan_instances(h: _Hour, rollout: bool) -> None:
    """The hour's instances: two long-running ones, now and then a third from autoscaling."""
    if rollout:  # the hour emergence-app-00297-6pr replaced emergence-app-00296-abc
        for instance_id in _BASE_INSTANCES[REVISION_OLD]:
            h.instances.append(_Instance(instance_id, REVISION_OLD, h.start, h.start + 40 * _S))
        start, reason = h.start + 5 * _S, _ROLLOUT
    else:
        start, reason = h.start, None
    for instance_id in _BASE_INSTANCES[h.revision]:
        h.instances.append(_Instance(instance_id, h.revision, start, h.end, reason))
    if h.rng.random() < _THIRD_INSTANCE_SHARE:
        h.new_instance(h.start + int((5 + 45 * h.rng.random()) * _MIN), h.end, _AUTOSCALING)


def _lifecycle(h: _Hour) -> None:
    for instance in h.instances:
        if instance.reason is not None:
            _instance_start(h, instance)
        _probes(h, instance)


def _window_ws(h: _Hour) -> int:
    """The exact number of WebSocket attempts in an incident window (round(80 x scale))."""
    return round(_WS_PER_HOUR * h.scale)


def _spread(h: _Hour, n: int, first_min: float, last_min: float) -> list[int]:
    """`n` times spread evenly from `first_min` to `last_min` minutes into the hour, each up to 40 s late."""
    step = (last_min - first_min) / (n - 1) if n > 1 else 0.0
    return [h.start + int((first_min + i * step) * _MIN) + h.ms(0, 40_000) for i in range(n)]


# Incident windows: each sets up its incident first (instances may change), then the normal traffic.


def _db_outage(h: _Hour) -> None:
    base = [i for i in h.instances if i.revision == REVISION_CURRENT][:2]
    victims = (base * 5)[:9]
    h.rng.shuffle(victims)
    for i, (t, instance) in enumerate(zip(_spread(h, 9, 8, 57), victims, strict=True)):
        _ws_failure(h, t, instance, (_DB_UNAVAILABLE,), _DB_TRACEBACK, whole=i % 2 == 0)
    _background(h, ws=_window_ws(h) - 9)


def _recovered(h: _Hour) -> None:
    for t in _spread(h, 3, 14, 50):
        _ws_session(h, t, (_DB_LOST, _DB_RECONNECTED))
    _background(h, ws=_window_ws(h) - 3)


def _reconnect_storm(h: _Hour) -> None:
    times = _spread(h, 12, 5, 57)
    failed = times.pop(7)
    for t in times:
        _ws_session(h, t, (_DB_LOST, _DB_RECONNECTED))
    preface = (_DB_LOST, _DB_RECONNECT_FAILED)
    _ws_failure(h, failed, h.instance(failed), preface, _RECONNECT_TRACEBACK, whole=True)
    _background(h, ws=_window_ws(h) - 12)


def _oom_kill(h: _Hour, kill: int) -> None:
    """An upload pushes an instance over its memory limit: the platform kills it and replaces it."""
    start = kill - h.ms(2500, 7000)
    victim = h.instance(start)
    latency, upload = kill - start + h.ms(5, 30), "/api/documents/upload"
    h.request(start, victim, "POST", upload, 500, latency, h.client(), (6_000_000, 0), _OOM_REQUEST_TEXT)
    h.text(kill, victim, LOG_SYSTEM, _MEMORY_TEXT, "ERROR")
    h.text(kill + h.ms(40, 300), victim, LOG_SYSTEM, _SIGNAL_9, "WARNING")
    victim.stop = kill
    h.new_instance(kill + h.ms(5000, 9000), h.end, _AUTOSCALING, victim.revision)


def _memory_oom(h: _Hour) -> None:
    for kill in _spread(h, 2, 23, 45):
        _oom_kill(h, kill)
    _background(h)


def _failed_start(h: _Hour, t: int) -> None:
    """Autoscaling starts an instance that never listens on 8080; the startup probe gives up."""
    instance = _Instance(_instance_id(h.rng), h.revision, t, t, _AUTOSCALING)
    h.text(t, instance, LOG_SYSTEM, f"Starting new instance. Reason: {_AUTOSCALING}", "INFO")
    t += h.ms(700, 1300)
    for line in _UVICORN_STARTUP[:2]:
        h.text(t, instance, LOG_STDERR, line)
        t += h.ms(1, 3)
    t += 240 * _S  # the default startup probe's timeout
    h.text(t, instance, LOG_SYSTEM, _STARTUP_PROBE_TEXT, "ERROR")
    h.text(t + h.ms(20, 200), instance, LOG_SYSTEM, _FAILED_TO_START_TEXT, "ERROR")


def _startup_failure(h: _Hour) -> None:
    for t in _spread(h, 3, 11, 48):
        _failed_start(h, t)
    _background(h)


def _bad_deploy(h: _Hour) -> None:
    deploy = h.start + 30 * _MIN
    h.instances = [i for i in h.instances if i.start < deploy]
    for instance in h.instances:
        instance.stop = min(instance.stop, deploy)
    for instance_id in _BASE_INSTANCES[REVISION_BAD]:
        h.instances.append(_Instance(instance_id, REVISION_BAD, deploy - 20 * _S, h.end, _ROLLOUT))
    for t in _spread(h, 12, 31, 58):
        _thread_failure(h, t)
    _background(h)


def _thread_failure(h: _Hour, t: int) -> None:
    """GET /api/threads/<id> on the bad revision: KeyError logged by the middleware, answered 500."""
    instance = h.instance(t)
    path = f"/api/threads/{h.uuid()}"
    latency = h.ms(25, 60)
    trace = _served(h, t, instance, "GET", path, 500, latency, h.client(), (430, 21))
    message = f"Unhandled exception in GET /api/threads/{{thread_id}}\n{_KEYERROR_TEXT}"
    payload = {"message": message, "logger": _MIDDLEWARE, "method": "GET", "path": path}
    h.app(t + latency - h.ms(1, 3), instance, "ERROR", payload, trace, _MIDDLEWARE_SOURCE)


def _bot_scan(h: _Hour) -> None:
    for _ in range(4):
        _bot_burst(h, h.rng.sample(_ALL_SCAN_PATHS, h.rng.randint(60, 100)))
    _background(h)


def _slow(h: _Hour) -> None:
    _background(h, latency_factor=10.0)


def _overload(h: _Hour) -> None:
    burst = h.start + 35 * _MIN
    for _ in range(2):
        h.new_instance(burst + h.ms(9000, 15000), h.end, _AUTOSCALING)
    _http_traffic(h, 120, between=(burst, burst + 2 * _MIN))
    for _ in range(12):  # queued up to 10 s for an instance, then aborted by the platform: no instanceId
        t = h.at(10 * _S, burst, burst + 2 * _MIN)
        h.request(t, None, "POST", _CHAT, 429, h.ms(9000, 10000), h.client(), (1400, 0), _NO_INSTANCE_TEXT)
    t = h.start + 41 * _MIN
    latency = 300 * _S + h.ms(1, 5)  # the default request timeout
    h.request(t, h.instance(t), "POST", _GMAIL, 504, latency, h.client(), (380, 0), _TIMEOUT_TEXT)
    _background(h)


@dataclass(frozen=True)
class _Plan:
    scenario: Scenario
    window: Callable[[_Hour], None]
    extra: int  # entries the incident adds to a normal window hour (measured), for count_hint
    end: datetime = DEFAULT_END


_PLANS = (
    _Plan(
        Scenario(
            "db-outage",
            "Database connection lost after idle: 9 of 80 WebSocket sessions fail (2025-10-11)",
            "The 2025-10-11 incident. In the window (11:04-12:04 UTC) 9 of the 80 WebSocket attempts on "
            "/ws/chat/ fail with HTTP 500 (11.25%): the SQLite connection was lost and _ensure_connection() "
            "raises 'RuntimeError: Database connection is not available.' (src/backend/core/database/"
            "manager.py:64). Each failure writes a request log, the app ERROR 'Database connection "
            "requested but no active connection is available...' on the same trace, and a stderr traceback "
            "without trace, split one line per entry for about half of them. The failures run from about "
            "11:12 to 12:01 on emergence-app-00297-6pr, on 2 instances; there are none in the baseline. "
            "HTTP traffic (~300 requests) is normal, plus a couple of bot scans. A correct check reports "
            "CRITICAL with one root cause (database unavailable: 9 failures, usual 0/h), each failure "
            "counted once, and a WebSocket error rate of 11.25% against the < 1% objective.",
            "CRITICAL",
        ),
        _db_outage,
        40,
    ),
    _Plan(
        Scenario(
            "healthy",
            "Normal traffic: nothing to report",
            "Normal traffic in every hour: ~300 HTTP requests and ~80 WebSocket sessions, health probes, "
            "a few bot scans (404) and a few genuine 404s on API paths. No 5xx, no app error. A correct "
            "check reports OK: neither the scans, the 404s nor uvicorn's INFO lines on stderr degrade it.",
            "OK",
        ),
        _background,
        0,
    ),
    _Plan(
        Scenario(
            "bot-scan",
            "Heavy bot scan against a healthy service",
            "A healthy service while 4 scanners probe hundreds of paths (/.env, /.git/HEAD, /wp-login.php, "
            "/application.wadl, /phpmyadmin/...) in the window; each answers 404 and is echoed by uvicorn "
            "and the app. A correct check reports OK: the scans are noise to count and ignore.",
            "OK",
        ),
        _bot_scan,
        950,
    ),
    _Plan(
        Scenario(
            "memory-oom",
            "Out of memory: two instances killed during uploads",
            "Twice in the window an upload pushes an instance of emergence-app-00297-6pr past its limit: "
            "'Memory limit of 1024 MiB exceeded with 1062 MiB used', then 'Container terminated on signal "
            "9.'; the in-flight POST /api/documents/upload ends 500 with the platform's 'too much memory' "
            "text and a replacement instance starts. A correct check reports DEGRADED (two kills in an hour, "
            "under 1% of requests: the service still serves) and advises more memory than the current "
            "1024 MiB (e.g. --memory=2Gi).",
            "DEGRADED",
        ),
        _memory_oom,
        10,
    ),
    _Plan(
        Scenario(
            "bad-deploy",
            "Bad deploy: emergence-app-00298-xyz fails 8% of its requests",
            "Halfway through the window the new revision emergence-app-00298-xyz takes all traffic; 12 of "
            "its ~150 requests (~8%) answer 500 on GET /api/threads/<id> with an app ERROR traceback "
            "ending in \"KeyError: 'thread_id'\" (src/backend/features/threads/service.py:57 in "
            "get_thread). emergence-app-00297-6pr served the first half without errors. A correct check "
            "reports CRITICAL, blames the new revision and advises rolling back to emergence-app-00297-6pr.",
            "CRITICAL",
        ),
        _bad_deploy,
        -40,
    ),
    _Plan(
        Scenario(
            "slow",
            "Slow API: p95 latency about 2 s",
            "No errors, but API requests are ~10x slower in the window: p95 about 2 s against ~250 ms in "
            "the baseline (WebSocket latencies are session lengths and must not count). A correct check "
            "reports DEGRADED for latency.",
            "DEGRADED",
        ),
        _slow,
        0,
    ),
    _Plan(
        Scenario(
            "startup-failure",
            "New instances fail to start",
            "Three times in the window autoscaling starts an instance of emergence-app-00297-6pr that never "
            "listens on port 8080: 'Default STARTUP TCP probe failed 1 time consecutively...' then "
            "'Container failed to start...'. The two running instances keep serving. A correct check "
            "reports CRITICAL: the service cannot scale out.",
            "CRITICAL",
        ),
        _startup_failure,
        10,
    ),
    _Plan(
        Scenario(
            "recovered",
            "After the fix: the database reconnects by itself",
            "With the reconnect fix deployed, 3 WebSocket sessions find the connection gone: the app logs "
            "WARNING 'Database connection lost. Attempting automatic reconnection...' then INFO 'Database "
            "reconnected successfully.' and the session goes on; all 80 attempts succeed. A correct check "
            "reports OK: 3 reconnections/h meet the < 5/h objective and nothing failed.",
            "OK",
        ),
        _recovered,
        10,
    ),
    _Plan(
        Scenario(
            "reconnect-storm",
            "Reconnection storm, one failed reconnect",
            "12 reconnection WARNINGs in the window (objective < 5/h): 11 reconnect, one logs ERROR "
            "'Failed to reconnect to database: disk I/O error' and its WebSocket attempt fails with HTTP "
            "500 and a RuntimeError traceback (1 of 80 = 1.25%, objective < 1%). A correct check reports "
            "CRITICAL: a failed reconnect is a database error (objective 0/h), beyond the reconnection rate.",
            "CRITICAL",
        ),
        _reconnect_storm,
        10,
    ),
    _Plan(
        Scenario(
            "overload",
            "Traffic spike: requests rejected for lack of instances",
            "A 2-minute spike of 120 extra requests at 11:39 outgrows the instances: 12 requests are "
            "aborted with 429 'no available instance' while autoscaling adds 2 instances, and one request "
            "hits the 300 s request timeout (504). No application error. A correct check reports DEGRADED "
            "(capacity, not code: ~3% of requests lost) and advises more instances or concurrency.",
            "DEGRADED",
        ),
        _overload,
        920,
    ),
)


SCENARIOS: dict[str, Scenario] = {plan.scenario.name: plan.scenario for plan in _PLANS}
_BY_NAME = {plan.scenario.name: plan for plan in _PLANS}


def _lookup(name: str) -> _Plan:
    plan = _BY_NAME.get(name)
    if plan is None:
        raise ValueError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
    return plan


def _epoch_ns(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("end must be timezone-aware (UTC)")
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86400 + delta.seconds) * _S + delta.microseconds * 1000


def generate(
    name: str,
    *,
    seed: int = 0,
    hours: int = 25,
    scale: float = 1.0,
    end: datetime | None = None,
    daily_cycle: float = 0.0,
) -> Iterator[dict[str, Any]]:
    """Entries of `hours` hours ending at `end` (default: the scenario's own fixed end time), NEWEST FIRST.

    The last hour is the check window (where the incident is); the hours before are the normal baseline.
    `scale` multiplies the background traffic volume (scale=1 is a small service; benchmarks use scale to
    reach 100k..1M entries) but never the incident's own counts. `daily_cycle` (0 to 1) makes the volume
    follow the time of day: `scale` × (1 + daily_cycle × cos), busiest at 15:00 UTC, quietest at 03:00.
    """
    plan = _lookup(name)
    if hours < 1:
        raise ValueError(f"hours must be at least 1, not {hours}")
    if scale < 0:
        raise ValueError(f"scale must not be negative, not {scale}")
    if not 0 <= daily_cycle <= 1:
        raise ValueError(f"daily_cycle must be between 0 and 1, not {daily_cycle}")
    end_ns = _epoch_ns(end if end is not None else plan.end)
    if not (end_ns - hours * _HOUR >= 10**18 and end_ns + _HOUR < 10**19):  # see _Hour.stamp
        raise ValueError("the simulated hours must fall between 2001-09-09 and 2286-11-20")
    return _timeline(plan, seed, hours, scale, end_ns, daily_cycle)


def _timeline(
    plan: _Plan, seed: int, hours: int, scale: float, end: int, daily_cycle: float
) -> Iterator[dict[str, Any]]:
    """Simulate hour after hour from the window back, yielding each hour newest first before the next."""
    for age in range(hours):
        start = end - (age + 1) * _HOUR
        hour = _simulate_hour(plan, seed, age, scale * _time_of_day(start, daily_cycle), end)
        records, first_id = hour.records, (hour.start // _S) << 32  # insertId: hour start, then the index
        for i in hour.newest_first():
            yield _entry(records[i], hex(first_id + i)[2:])


def _simulate_hour(plan: _Plan, seed: int, age: int, scale: float, end: int) -> _Hour:
    """The hour `age` hours before the window (0 = the window itself)."""
    start = end - (age + 1) * _HOUR
    key = f"{seed}/{plan.scenario.name}/{start}" if age == 0 else f"{seed}/{start}"
    revision = REVISION_OLD if age >= _OLD_REVISION_AGE else REVISION_CURRENT
    h = _Hour(random.Random(key), start, revision, scale)
    _plan_instances(h, rollout=age == _OLD_REVISION_AGE - 1)
    (plan.window if age == 0 else _background)(h)
    _lifecycle(h)
    return h


def _time_of_day(start: int, daily_cycle: float) -> float:
    """The volume factor of the hour starting at `start` (ns): 1 ± daily_cycle, highest at 15:00 UTC."""
    hour_of_day = (start // _HOUR) % 24 + 0.5
    return 1 + daily_cycle * math.cos(2 * math.pi * (hour_of_day - 15) / 24)


def _background_per_hour(scale: float) -> float:
    """Expected entries of one normal hour, from the traffic model's constants."""
    http = _HTTP_PER_HOUR * scale * (2 + _LOGGED_SHARE)
    ws = _WS_PER_HOUR * scale * 6
    bots = _BOT_BURSTS_PER_HOUR * scale * _MEAN_SCAN_BURST * 3
    other = (_CHATTER_PER_HOUR + 3 * _GENUINE_404_PER_HOUR) * scale
    third = (
        _THIRD_INSTANCE_SHARE * 32.5 / 60
    )  # a third instance starts 5-50 min in: serves 32.5 min on average
    probes = (2 + third) * (_HOUR / _PROBE_INTERVAL) * 2
    starts = _THIRD_INSTANCE_SHARE * (len(_UVICORN_STARTUP) + 2)
    return http + ws + bots + other + probes + starts


def count_hint(name: str, *, hours: int = 25, scale: float = 1.0) -> int:
    """Approximate number of entries generate() yields, so a benchmark can pick `scale` for a target size."""
    return round(hours * _background_per_hour(scale) + _lookup(name).extra)
