"""A fake Cloud Logging `entries.list` server for tests: stdlib http.server, loopback only, port 0.

It speaks the REST call of the API reference (`POST /v2/entries:list`, JSON body
`{resourceNames, filter, orderBy, pageSize, pageToken}`, answer `{entries, nextPageToken}`), and optionally
the same service over insecure gRPC for the generated `LoggingServiceV2Client`. It evaluates the subset of
the Logging query language that ProdGuardian's filters use (AND / OR / NOT with the Logging precedence: NOT,
then OR, then AND; comparisons `= != < <= > >= =~ !~ :` on dotted fields; severity by rank; timestamps as
instants; `log_id()`), so pushdown is testable, and rejects anything else with 400 INVALID_ARGUMENT like the
real API. It pages with opaque tokens, records every request, and can be scripted to fail per call (429, 503,
403, 404, slow answers, malformed JSON, empty pages that carry a token).

Use it from any test file. Register the fixture once, in tests/conftest.py:

    from tests.fake_logging_server import fake_logging_server  # noqa: F401 - the fixture

then, in a test file:

    from tests.fake_logging_server import CloudRunService, Fault, FakeLoggingServer

    def test_x(fake_logging_server: FakeLoggingServer, monkeypatch):
        fake_logging_server.add(CloudRunService().request(at, "/api/health") for at in ...)
        monkeypatch.setenv("LOGGING_EMULATOR_HOST", fake_logging_server.host)

or outside pytest: `with FakeLoggingServer(entries) as server: ...`.
"""

from __future__ import annotations

import itertools
import json
import re
import socket
import threading
import zlib
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

import orjson

from prodguardian.rules import SEVERITY_RANKS

try:  # the real API matches with RE2; use it when installed so non-RE2 patterns fail here too
    import re2 as _regex_engine  # type: ignore[import-not-found,import-untyped,unused-ignore]
except ImportError:  # pragma: no cover - depends on the environment
    _regex_engine = re

try:
    import pytest
except ImportError:  # pragma: no cover - the module also serves benchmarks outside pytest
    pytest = None  # type: ignore[assignment]

SEVERITIES = SEVERITY_RANKS  # the API ranks severities as ProdGuardian does
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 50  # the API's default when pageSize is absent
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
DEFAULT_MESSAGES = {
    401: "Request had invalid authentication credentials.",
    403: "The caller does not have permission",
    404: "Project not found.",
    429: "Quota exceeded for quota metric 'Read requests' and limit 'Read requests per minute' of service "
    "'logging.googleapis.com' for consumer 'project_number:123456789012'.",
    500: "Internal error encountered.",
    502: "Bad Gateway",
    503: "The service is currently unavailable.",
    504: "The request timed out.",
}


# ----------------------------------------------------------------------------------------------- faults


@dataclass(frozen=True)
class Fault:
    """How to answer one call instead of (or before) the normal page."""

    status: int | None = None  # answer this HTTP status with a Google-style error body
    message: str = ""  # the error's message (a realistic default per status otherwise)
    delay: float = 0.0  # seconds to wait before answering (then the normal page, or `status`)
    malformed: bool = False  # answer 200 with a body that is not JSON
    empty_page: bool = False  # answer 200 with no entries and a fresh token to the same position


class FilterError(ValueError):
    """A filter outside the supported subset, or not well formed: the API answers 400."""


# ------------------------------------------------------------------------------------------ timestamps


_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|z|[+-]\d{2}:\d{2})$"
)


def parse_timestamp(text: str) -> int:
    """An RFC 3339 timestamp as integer nanoseconds since the epoch (the API's precision)."""
    m = _RFC3339.match(text)
    if not m:
        raise FilterError(f"invalid timestamp {text!r}")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    fraction, zone = m.group(7) or "", m.group(8)
    offset = timedelta(0)
    if zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        offset = sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
    moment = datetime(year, month, day, hour, minute, second, tzinfo=UTC) - offset
    return int(moment.timestamp()) * 1_000_000_000 + int(fraction.ljust(9, "0") or 0)


def _fraction(nanos: int) -> str:
    """proto3 JSON's fraction: none, or 3, 6 or 9 digits, as the real API (either transport) writes them."""
    if nanos == 0:
        return ""
    if nanos % 1_000_000 == 0:
        return f".{nanos // 1_000_000:03d}"
    if nanos % 1_000 == 0:
        return f".{nanos // 1_000:06d}"
    return f".{nanos:09d}"


def format_timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with Z, canonical as the API returns it (e.g. 2025-10-11T11:04:00.137Z)."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S") + _fraction(utc.microsecond * 1000) + "Z"


def format_duration(seconds: float) -> str:
    """A protobuf Duration in JSON (httpRequest.latency), e.g. "0.112114537s"."""
    nanos = round(seconds * 1e9)
    return f"{nanos // 1_000_000_000}{_fraction(nanos % 1_000_000_000)}s"


# ---------------------------------------------------------------------------------------------- filters


@dataclass
class _Stored:
    entry: dict[str, Any]
    ts: int  # nanoseconds
    key: tuple[int, str]
    raw: bytes | None = None
    proto: Any = None
    _received: int | None = None

    @property
    def received(self) -> int:
        """receiveTimestamp in ns (parsed when first asked: most queries never do); the timestamp if none."""
        if self._received is None:
            stamp = self.entry.get("receiveTimestamp")
            self._received = parse_timestamp(stamp) if isinstance(stamp, str) else self.ts
        return self._received

    def json(self) -> bytes:
        if self.raw is None:
            self.raw = orjson.dumps(self.entry)
        return self.raw


Predicate = Callable[[_Stored], bool]

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<op>=~|!~|<=|>=|!=|=|<|>|:)
      | (?P<paren>[(),])
      | (?P<word>[A-Za-z0-9_@/%*+\-][A-Za-z0-9_.@/%*+\-]*)
    )""",
    re.VERBOSE,
)


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise FilterError(f"unexpected character {text[pos:].lstrip()[:1]!r} at {pos}")
        kind = m.lastgroup or ""
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    return tokens


def _unquote(literal: str) -> str:
    out, i, body = [], 0, literal[1:-1]
    while i < len(body):
        c = body[i]
        if c == "\\":
            nxt = body[i + 1]
            if nxt not in '\\"':
                raise FilterError(f"unsupported escape \\{nxt} in {literal}")
            out.append(nxt)
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


class _Parser:
    """expr := or_expr {[AND] or_expr}; or_expr := unary {OR unary}; unary := NOT unary | primary."""

    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.i = 0
        self.bounds = TimeBounds()

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise FilterError("unexpected end of filter")
        self.i += 1
        return token

    def parse(self) -> Predicate:
        if not self.tokens:
            return lambda s: True
        predicate = self.conjunction(top=True)
        if self.peek() is not None:
            raise FilterError(f"unexpected {self.peek()[1]!r}")  # type: ignore[index]
        return predicate

    def conjunction(self, top: bool = False) -> Predicate:
        parts = [self.term(top)]
        while (token := self.peek()) is not None and token != ("paren", ")"):
            if token == ("word", "AND"):
                self.take()
            parts.append(self.term(top))
        return parts[0] if len(parts) == 1 else (lambda s, ps=tuple(parts): all(p(s) for p in ps))

    def term(self, top: bool) -> Predicate:
        """One operand of AND; at the top level, a bare `timestamp` comparison also narrows the bounds."""
        start = self.i
        predicate = self.disjunction()
        if top and self.i - start == 3 and self.tokens[start] == ("word", "timestamp"):
            (_, op), (kind, literal) = self.tokens[start + 1 : start + 3]
            self.bounds.narrow(op, parse_timestamp(_unquote(literal) if kind == "string" else literal))
        return predicate

    def disjunction(self) -> Predicate:
        parts = [self.unary()]
        while self.peek() == ("word", "OR"):
            self.take()
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else (lambda s, ps=tuple(parts): any(p(s) for p in ps))

    def unary(self) -> Predicate:
        if self.peek() in (("word", "NOT"), ("word", "-")):
            self.take()
            inner = self.unary()
            return lambda s: not inner(s)
        return self.primary()

    def primary(self) -> Predicate:
        kind, value = self.take()
        if (kind, value) == ("paren", "("):
            inner = self.conjunction()
            if self.take() != ("paren", ")"):
                raise FilterError("missing )")
            return inner
        if kind != "word" or value in ("AND", "OR"):
            raise FilterError(
                f"expected a comparison, found {value!r} (global restrictions are not supported)"
            )
        if self.peek() == ("paren", "("):
            return self.function(value)
        op_kind, op = self.take()
        if op_kind != "op":
            raise FilterError(f"expected an operator after {value}, found {op!r}")
        literal_kind, literal = self.take()
        if literal_kind not in ("string", "word"):
            raise FilterError(f"expected a value after {value}{op}")
        return _comparison(value, op, _unquote(literal) if literal_kind == "string" else literal)

    def function(self, name: str) -> Predicate:
        self.take()
        kind, argument = self.take()
        if self.take() != ("paren", ")") or kind != "string":
            raise FilterError(f"{name}() takes one string")
        if name != "log_id":
            raise FilterError(f"unsupported function {name}()")
        suffix = "/logs/" + _unquote(argument).replace("/", "%2F")
        return lambda s: str(s.entry.get("logName", "")).endswith(suffix)


def _path_getter(path: str) -> Callable[[dict[str, Any]], Any]:
    parts = path.split(".")

    def get(entry: dict[str, Any]) -> Any:
        value: Any = entry
        for part in parts:
            if not isinstance(value, dict) or part not in value:
                return None
            value = value[part]
        return value

    return get


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _severity_rank(value: str) -> int:
    if value.upper() in SEVERITIES:
        return SEVERITIES[value.upper()]
    try:
        return int(value)
    except ValueError:
        raise FilterError(f"invalid severity {value!r}") from None


def _comparison(path: str, op: str, literal: str) -> Predicate:
    if path == "severity":
        if op not in _COMPARE:
            raise FilterError(f"severity does not support {op}")
        rank, compare = _severity_rank(literal), _COMPARE[op]
        return lambda s: compare(SEVERITIES.get(str(s.entry.get("severity", "DEFAULT")), 0), rank)
    if path == "timestamp":
        if op not in _COMPARE:
            raise FilterError(f"timestamp does not support {op}")
        instant, compare = parse_timestamp(literal), _COMPARE[op]
        return lambda s: compare(s.ts, instant)
    if path == "receiveTimestamp":
        if op not in _COMPARE:
            raise FilterError(f"receiveTimestamp does not support {op}")
        received, compare = parse_timestamp(literal), _COMPARE[op]
        return lambda s: compare(s.received, received)
    get = _path_getter(path)
    if op in ("=~", "!~"):
        try:
            pattern = _regex_engine.compile(literal)
        except Exception as exc:  # re2.error or re.error
            raise FilterError(f"invalid regular expression {literal!r}: {exc}") from None
        negate = op == "!~"

        def matches(s: _Stored) -> bool:
            value = get(s.entry)
            found = isinstance(value, str) and pattern.search(value) is not None
            return found != negate

        return matches
    if op == ":":
        needle = literal.lower()
        if needle == "*":
            return lambda s: get(s.entry) is not None
        return lambda s: needle in _text(get(s.entry)).lower()
    compare = _COMPARE[op]
    number = _number(literal)

    def compares(s: _Stored) -> bool:
        value = get(s.entry)
        if value is None:
            return op == "!="
        if number is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
            return compare(value, number)
        if number is not None and isinstance(value, str) and _number(value) is not None:
            return compare(_number(value), number)
        return compare(_text(value), literal)

    return compares


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


@dataclass
class TimeBounds:
    """The instants (ns) a query's top-level timestamp comparisons allow, as a slice of the stored list."""

    low: int | None = None
    low_inclusive: bool = True
    high: int | None = None
    high_inclusive: bool = False

    def narrow(self, op: str, instant: int) -> None:
        if op in (">=", ">") and (self.low is None or instant >= self.low):
            self.low, self.low_inclusive = instant, op == ">="
        elif op in ("<", "<=") and (self.high is None or instant <= self.high):
            self.high, self.high_inclusive = instant, op == "<="

    def slice(self, stamps: list[int]) -> slice:
        """The part of sorted `stamps` within the bounds (bisect: a query reads only its time range)."""
        first = (
            0 if self.low is None else (bisect_left if self.low_inclusive else bisect_right)(stamps, self.low)
        )
        last = (
            len(stamps)
            if self.high is None
            else (bisect_right if self.high_inclusive else bisect_left)(stamps, self.high)
        )
        return slice(first, max(first, last))


def _received_by(predicate: Predicate, instant: int) -> Predicate:
    return lambda s: s.received <= instant and predicate(s)


def compile_filter(text: str) -> Predicate:
    """A predicate on stored entries for a Logging query (the subset described above)."""
    return _Parser(text).parse()


def compile_query(text: str) -> tuple[Predicate, TimeBounds]:
    """The predicate and the time bounds of a Logging query."""
    parser = _Parser(text)
    return parser.parse(), parser.bounds


# ------------------------------------------------------------------------------------------------ store


class _Results:
    """A query's matching entries, found as the pages ask for them: a page scans only as far as it needs, so
    the first page of a query over millions of entries answers at once (the client's timeout is 30 s)."""

    def __init__(self, stored: list[_Stored], span: slice, predicate: Predicate, prefixes: tuple[str, ...]):
        self.lock = threading.Lock()  # a retried call waits for the scan under way instead of repeating it
        self.stored, self.predicate, self.prefixes = stored, predicate, prefixes
        self.next, self.stop = span.start, span.stop
        self.found: list[_Stored] = []

    def page(self, offset: int, size: int) -> tuple[list[_Stored], bool]:
        """The matches [offset, offset + size), and whether more follow."""
        with self.lock:
            while len(self.found) <= offset + size and self.next < self.stop:
                s = self.stored[self.next]
                self.next += 1
                if s.entry["logName"].startswith(self.prefixes) and self.predicate(s):
                    self.found.append(s)
            return self.found[offset : offset + size], len(self.found) > offset + size


@dataclass
class _Page:
    entries: list[_Stored]
    next_token: str | None


@dataclass
class _Error:
    status: int
    message: str


@dataclass
class Call:
    """One recorded entries.list call."""

    number: int
    body: dict[str, Any]
    transport: str  # "http" or "grpc"
    headers: dict[str, str] = field(default_factory=dict)
    served: int = 0  # entries in the answer
    status: int = 200


class FakeLogging:
    """The transport-independent core: store, filter evaluation, paging, scripted faults, records."""

    def __init__(self, entries: Iterable[dict[str, Any]] = (), projects: Iterable[str] = ()) -> None:
        self.lock = threading.Lock()
        self.stored: list[_Stored] = []  # in timestamp order
        self._stamps: list[int] = []  # their timestamps, to bisect
        self.projects: set[str] = set(projects)
        self.calls: list[Call] = []
        self.faults: dict[int, Fault] = {}  # by call number, from 1
        self.always: Fault | None = None  # applies to every call without a numbered fault
        self.served = 0
        self.served_bytes = 0  # the HTTP answers' bodies, pages only
        self.received_by: int | None = None  # ns: entries received later are not readable yet
        self._results: dict[tuple[tuple[str, ...], str, str], _Results] = {}
        self._tokens: dict[str, tuple[tuple[tuple[str, ...], str, str], int]] = {}
        self._token_ids = itertools.count(1)
        self.stopping = threading.Event()
        self.add(entries)

    # -- set-up

    def add(self, entries: Iterable[dict[str, Any]]) -> None:
        """Add entries (each needs logName and a Z timestamp, as the real API would hold them)."""
        new = []
        for entry in entries:
            if "logName" not in entry or "timestamp" not in entry:
                raise ValueError(f"a stored entry needs logName and timestamp: {entry}")
            ts = parse_timestamp(entry["timestamp"])
            new.append(_Stored(entry, ts, (ts, str(entry.get("insertId", "")))))
            self.projects.add(entry["logName"].split("/")[1])
        with self.lock:
            self.stored.extend(new)
            self.stored.sort(key=lambda s: s.key)
            self._stamps = [s.ts for s in self.stored]
            self._results.clear()

    def now(self, moment: datetime | None) -> None:
        """Serve what Cloud Logging holds at `moment`: entries received after it are not readable yet (as
        late arrivals are not); None serves every entry."""
        with self.lock:
            self.received_by = None if moment is None else parse_timestamp(format_timestamp(moment))
            self._results.clear()

    def inject(self, call: int, fault: Fault) -> None:
        """Answer call number `call` (1 = the first call after start or reset) with `fault`."""
        self.faults[call] = fault

    def inject_always(self, fault: Fault | None) -> None:
        self.always = fault

    def reset(self) -> None:
        """Forget calls, faults and counters (entries stay)."""
        with self.lock:
            self.calls.clear()
            self.faults.clear()
            self.always = None
            self.served = 0
            self.served_bytes = 0

    # -- records

    @property
    def requests(self) -> list[dict[str, Any]]:
        """The body of every call, in order."""
        return [c.body for c in self.calls]

    @property
    def size(self) -> int:
        return len(self.stored)

    def matching(self, filter_: str, projects: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Entries a filter selects, oldest first (for tests to compare with what a read returned)."""
        predicate, bounds = compile_query(filter_)
        if self.received_by is not None:
            predicate = _received_by(predicate, self.received_by)
        wanted = set(projects) if projects is not None else None
        return [
            s.entry
            for s in self.stored[bounds.slice(self._stamps)]
            if predicate(s) and (wanted is None or s.entry["logName"].split("/")[1] in wanted)
        ]

    def prepare(self, body: dict[str, Any]) -> None:
        """Evaluate a request's filter ahead of time (benchmarks time the reader, not this fake)."""
        self._page(self._key(body), 0, len(self.stored))

    # -- serving

    def handle(
        self, body: dict[str, Any], transport: str, headers: dict[str, str]
    ) -> tuple[Fault | None, Any]:
        """Record the call; return the fault to apply (if any) and a _Page or an _Error."""
        with self.lock:
            call = Call(len(self.calls) + 1, body, transport, headers)
            self.calls.append(call)
            fault = self.faults.get(call.number, self.always)
        if fault is not None and fault.status is not None:
            call.status = fault.status
            return fault, _Error(fault.status, fault.message or DEFAULT_MESSAGES.get(fault.status, "error"))
        try:
            key = self._key(body)
            offset = self._offset(body.get("pageToken") or "", key)
            size = self._page_size(body.get("pageSize"))
            page, more = self._page(key, offset, size)
        except FilterError as exc:
            call.status = 400
            return fault, _Error(400, str(exc))
        except LookupError as exc:
            call.status = 404
            return fault, _Error(404, str(exc.args[0]))
        if fault is not None and fault.empty_page:
            return fault, _Page([], self._token(key, offset))
        call.served = len(page)
        with self.lock:
            self.served += len(page)
        return fault, _Page(page, self._token(key, offset + size) if more else None)

    def _key(self, body: dict[str, Any]) -> tuple[tuple[str, ...], str, str]:
        names = body.get("resourceNames") or []
        if not names or not all(isinstance(n, str) and n.startswith("projects/") for n in names):
            raise FilterError(f"resourceNames must name projects: {names!r}")
        projects = tuple(sorted(n.split("/", 1)[1] for n in names))
        for project in projects:
            if project not in self.projects:
                raise LookupError(f"Project {project} not found.")
        order = (body.get("orderBy") or "timestamp asc").strip()
        if order not in ("timestamp asc", "timestamp desc", "timestamp"):
            raise FilterError(f"unsupported orderBy {order!r}")
        return projects, str(body.get("filter") or ""), order

    def _page(
        self, key: tuple[tuple[str, ...], str, str], offset: int, size: int
    ) -> tuple[list[_Stored], bool]:
        """The matches [offset, offset + size) of the query, and whether more follow."""
        projects, filter_, order = key
        with self.lock:
            results = self._results.get(key)
            if results is None:
                predicate, bounds = compile_query(filter_)
                if self.received_by is not None:
                    predicate = _received_by(predicate, self.received_by)
                prefixes = tuple(f"projects/{p}/" for p in projects)
                span = bounds.slice(self._stamps)
                if order == "timestamp desc":  # scanned from the newest: a reversed copy of the range
                    stored, span = self.stored[span][::-1], slice(0, span.stop - span.start)
                else:
                    stored = self.stored
                results = self._results[key] = _Results(stored, span, predicate, prefixes)
        return results.page(offset, size)

    def _offset(self, token: str, key: tuple[tuple[str, ...], str, str]) -> int:
        if not token:
            return 0
        known = self._tokens.get(token)
        if known is None:
            raise FilterError(f"invalid page token {token!r}")
        if known[0] != key:
            raise FilterError("the page token was issued for a different query")
        return known[1]

    def _token(self, key: tuple[tuple[str, ...], str, str], offset: int) -> str:
        token = f"tok-{next(self._token_ids):06d}-{offset}"
        with self.lock:
            self._tokens[token] = (key, offset)
        return token

    @staticmethod
    def _page_size(value: Any) -> int:
        if value in (None, "", 0):
            return DEFAULT_PAGE_SIZE
        size = int(value)
        if size < 0 or size > MAX_PAGE_SIZE:
            raise FilterError(f"pageSize must be between 0 and {MAX_PAGE_SIZE}, not {size}")
        return size


# ------------------------------------------------------------------------------------------ HTTP front


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = -1

    def setup(self) -> None:
        super().setup()
        # Headers and body are separate writes; with Nagle on, the body waits for the client's delayed ACK
        # (40 ms a call on Linux). Real front ends do not stall like that.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    server: _HttpServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        path = self.path.split("?", 1)[0]
        if path != "/v2/entries:list":
            self._send(
                404,
                orjson.dumps({"error": {"code": 404, "message": f"no route {path}", "status": "NOT_FOUND"}}),
            )
            return
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self._send(400, _error_body(400, "the request body is not JSON"))
            return
        core = self.server.core
        fault, result = core.handle(body, "http", {k.lower(): v for k, v in self.headers.items()})
        if fault is not None and fault.delay and core.stopping.wait(fault.delay):
            return
        if fault is not None and fault.malformed:
            self._send(200, b'{"entries": [{"logName": "projects/p/logs/x", "timest')
        elif isinstance(result, _Error):
            self._send(result.status, _error_body(result.status, result.message))
        else:
            members = []  # like the API: no "entries" on an empty page, no token on the last one
            if result.entries:
                members.append(b'"entries":[' + b",".join(s.json() for s in result.entries) + b"]")
            if result.next_token:
                members.append(b'"nextPageToken":' + orjson.dumps(result.next_token))
            payload = b"{" + b",".join(members) + b"}"
            with core.lock:
                core.served_bytes += len(payload)
            self._send(200, payload)

    def _send(self, status: int, payload: bytes) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
            pass


def _error_body(status: int, message: str) -> bytes:
    return orjson.dumps(
        {"error": {"code": status, "message": message, "status": STATUS_NAMES.get(status, "UNKNOWN")}}
    )


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    core: FakeLogging


# ------------------------------------------------------------------------------------------ gRPC front


_GRPC_CODES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


class _GrpcFront:
    """google.logging.v2.LoggingServiceV2/ListLogEntries over an insecure loopback channel."""

    def __init__(self, core: FakeLogging) -> None:
        from concurrent.futures import ThreadPoolExecutor

        import grpc
        from google.cloud.logging_v2.types import ListLogEntriesRequest, ListLogEntriesResponse, LogEntry
        from google.protobuf.json_format import MessageToDict, ParseDict

        self.core, self.grpc = core, grpc
        self.request_pb = ListLogEntriesRequest.pb()
        self.response_pb = ListLogEntriesResponse.pb()
        self.entry_pb = LogEntry.pb()
        self.to_dict, self.parse = MessageToDict, ParseDict
        handler = grpc.method_handlers_generic_handler(
            "google.logging.v2.LoggingServiceV2",
            {
                "ListLogEntries": grpc.unary_unary_rpc_method_handler(
                    self.list_log_entries,
                    request_deserializer=self.request_pb.FromString,
                    response_serializer=lambda m: m.SerializeToString(),
                )
            },
        )
        self.server = grpc.server(ThreadPoolExecutor(max_workers=4))
        self.server.add_generic_rpc_handlers((handler,))
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    def list_log_entries(self, request: Any, context: Any) -> Any:
        body = self.to_dict(request)
        headers = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
        fault, result = self.core.handle(body, "grpc", headers)
        if fault is not None and fault.delay and self.core.stopping.wait(fault.delay):
            context.abort(self.grpc.StatusCode.UNAVAILABLE, "server stopping")
        if fault is not None and fault.malformed:
            context.abort(self.grpc.StatusCode.INTERNAL, "malformed response")
        if isinstance(result, _Error):
            code = getattr(self.grpc.StatusCode, _GRPC_CODES.get(result.status, "UNKNOWN"))
            context.abort(code, result.message)
        response = self.response_pb()
        for stored in result.entries:
            if stored.proto is None:
                stored.proto = self.parse(stored.entry, self.entry_pb()).SerializeToString()
            response.entries.add().MergeFromString(stored.proto)
        if result.next_token:
            response.next_page_token = result.next_token
        return response


# ----------------------------------------------------------------------------------------------- server


class FakeLoggingServer(FakeLogging):
    """The fake over HTTP (always) and gRPC (after start_grpc()), on 127.0.0.1 with ports chosen by the OS."""

    def __init__(self, entries: Iterable[dict[str, Any]] = (), projects: Iterable[str] = ()) -> None:
        super().__init__(entries, projects)
        self._httpd: _HttpServer | None = None
        self._thread: threading.Thread | None = None
        self._grpc: _GrpcFront | None = None

    def start(self) -> Self:
        self.stopping.clear()
        self._httpd = _HttpServer(("127.0.0.1", 0), _Handler)
        self._httpd.core = self
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def start_grpc(self) -> str:
        """Serve gRPC too; returns its HOST:PORT."""
        if self._grpc is None:
            self._grpc = _GrpcFront(self)
            self._grpc.server.start()
        return self.grpc_host

    def stop(self) -> None:
        self.stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._grpc is not None:
            self._grpc.server.stop(grace=None)
            self._grpc = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def host(self) -> str:
        """HOST:PORT, for LOGGING_EMULATOR_HOST."""
        if self._httpd is None:
            raise RuntimeError("the fake logging server is not started")
        return f"127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def url(self) -> str:
        """http://HOST:PORT, for client_options={"api_endpoint": …}."""
        return f"http://{self.host}"

    @property
    def grpc_host(self) -> str:
        if self._grpc is None:
            raise RuntimeError("gRPC is not started: call start_grpc()")
        return f"127.0.0.1:{self._grpc.port}"


if pytest is not None:

    @pytest.fixture
    def fake_logging_server() -> Iterator[FakeLoggingServer]:
        """A started FakeLoggingServer without entries (add them with .add()); stopped after the test."""
        server = FakeLoggingServer().start()
        try:
            yield server
        finally:
            server.stop()


# ---------------------------------------------------------------------------------------------- entries


@dataclass
class CloudRunService:
    """Builds realistic Cloud Run LogEntry dicts (API JSON shape) for one service revision."""

    project: str = "demo-project"
    service: str = "emergence-app"
    revision: str = "emergence-app-00297-6pr"
    region: str = "europe-west1"
    host: str = "emergence-app-47nct44nma-ew.a.run.app"
    instance: str = "0069c7a988e5a1e2b0b3d7fa8e4c1c3a7f1e6d2b9c8a7f6e5d4c3b2a1908f7e6d5c4b3a2918"
    seed: int = 0
    _ids: Iterator[int] = field(default_factory=itertools.count, repr=False)

    def __post_init__(self) -> None:
        self._resource = {
            "type": "cloud_run_revision",
            "labels": {
                "project_id": self.project,
                "service_name": self.service,
                "revision_name": self.revision,
                "location": self.region,
                "configuration_name": self.service,
            },
        }
        self._labels = {"instanceId": self.instance}

    def log_name(self, log_id: str) -> str:
        return f"projects/{self.project}/logs/{log_id.replace('/', '%2F')}"

    def _entry(self, log_id: str, at: datetime, severity: str | None, trace: str | None) -> dict[str, Any]:
        n = next(self._ids)
        entry: dict[str, Any] = {
            "insertId": f"{self.seed:04x}{n:012x}{zlib.crc32(f'{self.revision}/{n}'.encode()) & 0xFFFF:04x}",
            "resource": self._resource,
            "timestamp": format_timestamp(at),
            "receiveTimestamp": format_timestamp(at + timedelta(milliseconds=9)),
            "labels": self._labels,
            "logName": self.log_name(log_id),
        }
        if severity:
            entry["severity"] = severity
        if trace:
            entry["trace"] = f"projects/{self.project}/traces/{trace}"
        return entry

    def request(
        self,
        at: datetime,
        path: str = "/",
        *,
        method: str = "GET",
        status: int = 200,
        latency: float = 0.05,
        trace: str | None = None,
        user_agent: str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/129.0 Safari/537.36",
        remote_ip: str = "203.0.113.24",
        text: str | None = None,
    ) -> dict[str, Any]:
        """A request log (run.googleapis.com/requests); severity follows the status, as Cloud Run sets it."""
        severity = "ERROR" if status >= 500 else "WARNING" if status >= 400 else "INFO"
        entry = self._entry("run.googleapis.com/requests", at, severity, trace)
        entry["httpRequest"] = {
            "requestMethod": method,
            "requestUrl": f"https://{self.host}{path}",
            "requestSize": "412",
            "status": status,
            "responseSize": "1893" if status < 400 else "226",
            "userAgent": user_agent,
            "remoteIp": remote_ip,
            "serverIp": "216.239.36.53",
            "latency": format_duration(latency),
            "protocol": "HTTP/1.1",
        }
        if trace:
            entry["spanId"] = f"{int(trace[:8], 16):016x}"
            entry["traceSampled"] = True
        if text:
            entry["textPayload"] = text
        return entry

    def stdout(
        self, at: datetime, text: str, *, severity: str | None = None, trace: str | None = None
    ) -> dict[str, Any]:
        """A plain-text stdout line (no severity unless given: DEFAULT)."""
        return self._plain("run.googleapis.com/stdout", at, text, severity, trace)

    def stderr(
        self, at: datetime, text: str, *, severity: str | None = None, trace: str | None = None
    ) -> dict[str, Any]:
        """A plain-text stderr line, e.g. one line of an unstructured traceback."""
        return self._plain("run.googleapis.com/stderr", at, text, severity, trace)

    def _plain(
        self, log_id: str, at: datetime, text: str, severity: str | None, trace: str | None
    ) -> dict[str, Any]:
        entry = self._entry(log_id, at, severity, trace)
        entry["textPayload"] = text
        return entry

    def json_line(
        self,
        at: datetime,
        message: str,
        *,
        severity: str = "INFO",
        log: str = "stdout",
        trace: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """A one-line JSON log: Cloud Run lifts severity and trace into the entry, the rest is jsonPayload."""
        entry = self._entry(f"run.googleapis.com/{log}", at, severity, trace)
        entry["jsonPayload"] = {"message": message, **fields}
        return entry

    def system(self, at: datetime, text: str, *, severity: str = "INFO") -> dict[str, Any]:
        """A platform message (run.googleapis.com/varlog/system)."""
        entry = self._entry("run.googleapis.com/varlog/system", at, severity, None)
        entry["textPayload"] = text
        return entry

    def access_line(self, at: datetime, path: str, status: int, *, method: str = "GET") -> dict[str, Any]:
        """uvicorn's access line on stdout for one request."""
        reason = {200: "OK", 101: "Switching Protocols", 404: "Not Found", 500: "Internal Server Error"}
        port = 10000 + zlib.crc32(at.isoformat().encode()) % 50000
        text = f'INFO:     169.254.169.126:{port} - "{method} {path} HTTP/1.1" {status}'
        return self.stdout(at, f"{text} {reason.get(status, '')}".rstrip())


DB_TRACEBACK = (
    "Traceback (most recent call last):",
    (
        '  File "/usr/local/lib/python3.11/site-packages/uvicorn/protocols/websockets/websockets_impl.py",'
        " line 244, in run_asgi"
    ),
    "    result = await self.app(self.scope, self.asgi_receive, self.asgi_send)",
    '  File "/app/src/backend/features/chat/router.py", line 88, in websocket_endpoint',
    "    await manager.connect(websocket, session_id)",
    '  File "/app/src/backend/core/session_manager.py", line 131, in create_session',
    "    await self.db.execute(query, params)",
    '  File "/app/src/backend/core/database/manager.py", line 64, in _ensure_connection',
    '    raise RuntimeError("Database connection is not available.")',
    "RuntimeError: Database connection is not available.",
)
