"""Reading Cloud Run logs from the Cloud Logging API (`entries.list`), paced, resumable and bounded.

`CloudSource` yields LogEntry dicts in the API's JSON shape, like every other source. It sends a filter
built from a `CloudQuery` (never hand-written), pulls only what a check needs, follows page tokens (empty
pages included), keeps under the read quota, resumes from the last page token after quota or server faults,
and turns every failure a user can fix into one clear `SourceError` / `ConfigError` line.

Why not `Client.list_entries()`: in google-cloud-logging 3.x it returns a plain generator on both transports
and hides page tokens, so a read could neither be paced per call nor resumed from the page that failed.
`CloudSource` therefore makes one call per page through public surfaces only: over HTTP/JSON, the REST
`entries.list` call on google-auth's `AuthorizedSession` (the generated `LoggingServiceV2Client` has no REST
transport in google-cloud-logging 3.x, up to 3.17); over gRPC, the generated client's pager (`.pages`,
`next_page_token`). No private attribute of a Google library is used.

Google libraries are imported lazily so that `import prodguardian.cloud` stays cheap for file-based checks.
"""

from __future__ import annotations

import configparser
import importlib
import math
import os
import random
import re
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, get_args

import orjson

from prodguardian import __version__
from prodguardian.errors import ConfigError, SourceError

# Quota: entries.list allows about 60 calls a minute per project, shared by every reader of the project.
CALLS_PER_SECOND = 1.0  # sustained pace of this reader
BURST = 5  # calls allowed back to back before the pace applies (a small check reads 1-5 pages at once)
MAX_PAGE_SIZE = 1000  # the API's cap on pageSize
MAX_FILTER_CHARS = 20_000  # the API's cap on the filter's length
CALL_TIMEOUT = 30.0  # seconds one entries.list call may take before it counts as a timeout
CONNECT_TIMEOUT = 10.0  # seconds to open a connection (HTTP transport)
NETWORK_RETRIES = 2  # retries of connection failures (refused, DNS): these rarely heal within seconds
BACKOFF_CAP = 32.0  # longest single wait between retries, in seconds
SAME_TOKEN_LIMIT = 100  # empty pages in a row that hand back the token sent: the server is looping

# Transport. HTTP/JSON is the default: the API's JSON is already the shape every source yields, so a page
# costs one orjson parse (~3 ms for 1,000 request logs); gRPC decodes protobuf and then converts each entry
# to a dict in Python (MessageToDict, ~27 ms), see docs/cloud.md, and turns jsonPayload numbers into floats
# (normalised back below). gRPC remains available: `CloudLogging(transport="grpc")`, `--transport grpc`.
Transport = Literal["http", "grpc"]
TRANSPORTS: tuple[Transport, ...] = get_args(Transport)
DEFAULT_TRANSPORT: Transport = "http"
# HOST:PORT of an emulator: plain HTTP (or insecure gRPC), anonymous credentials. The CLI reads this variable
# (the usual `*_EMULATOR_HOST` convention) and passes it as `CloudLogging.emulator`.
EMULATOR_ENV = "LOGGING_EMULATOR_HOST"
READ_SCOPES = ("https://www.googleapis.com/auth/logging.read",)
DEFAULT_HOST = "logging.googleapis.com"
# Newest first, like gcloud: a read cut by max_entries keeps the check window and loses the oldest baseline.
ORDER_BY = "timestamp desc"

REQUEST_LOG = "run.googleapis.com/requests"
STDERR_LOG = "run.googleapis.com/stderr"
STDOUT_LOG = "run.googleapis.com/stdout"
# Levels as plain lines state them (not "500 Internal Server Error" in an access line).
STATED_PROBLEM = (
    r"(?:^|[\s\[|:=])(?:ERROR|WARN|WARNING|CRITICAL|FATAL|SEVERE)\b|^Traceback |^panic: |^fatal error: "
    r"|^Exception in thread |^\w*Error: |\blevel=(?i:error|warn|fatal|crit)"
)
# A revision that never becomes ready, and deploys, show in the audit logs (`protoPayload.status.message`).
AUDIT_LOGS = ("cloudaudit.googleapis.com/system_event", "cloudaudit.googleapis.com/activity")

LOGIN_HINT = "run `gcloud auth application-default login`"
NO_CREDENTIALS = f"no Google credentials: {LOGIN_HINT}"


@dataclass(frozen=True)
class CloudLogging:
    """Where and how to read Cloud Logging: the project, the API's address, the transport, the pace, the
    bounds. What to read (the window, the service) is the query's."""

    project: str | None = None  # None → resolve_project()
    region: str | None = None  # narrows the read to the service's region
    endpoint: str | None = None  # the API's address (a regional or private endpoint)
    emulator: str | None = None  # HOST:PORT of an emulator, read anonymously over plain HTTP or gRPC
    transport: Transport = DEFAULT_TRANSPORT
    max_entries: int = 200_000  # then the read stops, and the report says it is partial
    calls_per_second: float = CALLS_PER_SECOND  # sustained pace, after a burst of BURST calls
    page_size: int = MAX_PAGE_SIZE
    give_up_after: float = 120.0  # seconds of retrying before SourceError

    def __post_init__(self) -> None:
        if self.transport not in TRANSPORTS:
            raise ConfigError(f"the transport must be http or grpc, not {self.transport!r}", "--transport")
        if self.emulator and self.endpoint:
            raise ConfigError(
                f"both an emulator ({self.emulator}, {EMULATOR_ENV}) and an endpoint ({self.endpoint}) are"
                " set: choose one"
            )
        if self.max_entries < 1:
            raise ConfigError(f"--max-entries must be at least 1, not {self.max_entries}")
        if not self.calls_per_second > 0:
            raise ConfigError(
                f"--calls-per-second must be more than 0, not {self.calls_per_second}", "--calls-per-second"
            )
        if not 1 <= self.page_size <= MAX_PAGE_SIZE:
            raise ConfigError(f"page size must be between 1 and {MAX_PAGE_SIZE}, not {self.page_size}")
        if not self.give_up_after >= 0:
            raise ConfigError(f"give_up_after must be zero or more seconds, not {self.give_up_after}")


@dataclass(frozen=True)
class LateArrivals:
    """A read that already holds the entries stamped before `before` that were received before
    `received_from`: of the entries before `before`, only those received from then on are asked for.
    `requests_from`: the request logs stamped from then on, before the read's start, that were received
    since are asked for too (a request log is written when its request ends: a WebSocket session's, up to
    an hour after it began)."""

    before: datetime
    received_from: datetime
    requests_from: datetime | None = None


@dataclass(frozen=True)
class CloudQuery:
    """What to read: one window of one project's Cloud Run logs, and where and how (`settings`)."""

    start: datetime  # inclusive, tz-aware UTC: covers the check window AND its baseline
    end: datetime  # exclusive
    service: str | None = None
    revision: str | None = None
    message_regexes: tuple[str, ...] = ()  # RE2 patterns from the rules whose lines may be below WARNING
    settings: CloudLogging = CloudLogging()
    late_only: LateArrivals | None = None  # a state store's read: what the last read pulled is skipped

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            object.__setattr__(self, name, _aware(getattr(self, name), f"the read window's {name}"))
        late = self.late_only
        if late is not None:
            before = _aware(late.before, "the late arrivals' bound")
            received = _aware(late.received_from, "the late arrivals' reception bound")
            requests = None
            if late.requests_from is not None:
                requests = min(_aware(late.requests_from, "the late request logs' bound"), self.start)
            object.__setattr__(self, "late_only", LateArrivals(before, received, requests))
        if self.start >= self.end:
            raise ConfigError(
                f"empty read window: start {_rfc3339(self.start)} is not before end {_rfc3339(self.end)}"
            )
        object.__setattr__(self, "message_regexes", tuple(self.message_regexes))


@dataclass
class ReadStats:
    """How a read went; `progress` receives it after every page and every retry."""

    calls: int = 0  # entries.list calls made, failed ones included
    pages: int = 0  # pages received, empty ones included
    entries: int = 0  # entries yielded (after de-duplication)
    retries: int = 0
    elapsed: float = 0.0  # seconds since the read began
    truncated: bool = False  # max_entries cut the read: more entries may exist in the window
    duplicates: int = 0  # entries dropped because their insertId and timestamp were already yielded


def _aware(value: Any, what: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ConfigError(f"{what} must be a timezone-aware datetime, not {value!r}")
    return value.astimezone(UTC)


# ----------------------------------------------------------------------------------------------- project


def resolve_project(explicit: str | None) -> str:
    """The project to read: explicit, Google's environment variables, the active gcloud configuration, then
    ADC's project (where every Google tool looks; `--project` and PRODGUARDIAN_PROJECT are the CLI's)."""
    finders: tuple[Callable[[], str | None], ...] = (
        lambda: explicit,
        lambda: os.environ.get("GOOGLE_CLOUD_PROJECT"),
        lambda: os.environ.get("CLOUDSDK_CORE_PROJECT"),
        _gcloud_config_project,
        _adc_project,
    )
    for find in finders:
        project = (find() or "").strip()
        if project:
            return project
    raise ConfigError(
        "no Google Cloud project: pass --project PROJECT_ID or run `gcloud config set project PROJECT_ID`"
    )


def gcloud_config_dir() -> str:
    """gcloud's configuration directory: CLOUDSDK_CONFIG, else the platform default."""
    configured = os.environ.get("CLOUDSDK_CONFIG")
    if configured:
        return configured
    if os.name == "nt":
        appdata = os.environ.get("APPDATA") or os.path.join(os.path.expanduser("~"), "AppData", "Roaming")
        return os.path.join(appdata, "gcloud")
    return os.path.join(os.path.expanduser("~"), ".config", "gcloud")


def _gcloud_config_project() -> str | None:
    folder = gcloud_config_dir()
    name = os.environ.get("CLOUDSDK_ACTIVE_CONFIG_NAME", "").strip()
    if not name:
        try:
            with open(os.path.join(folder, "active_config"), encoding="utf-8") as handle:
                name = handle.read().strip()
        except OSError:
            name = ""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(os.path.join(folder, "configurations", f"config_{name or 'default'}"), encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError):
        return None
    return parser.get("core", "project", fallback=None)


def _adc_project() -> str | None:
    auth: Any = importlib.import_module("google.auth")
    auth_errors: Any = importlib.import_module("google.auth.exceptions")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, project = auth.default()
    except auth_errors.GoogleAuthError:
        return None
    return project if isinstance(project, str) else None


# ------------------------------------------------------------------------------------------------ filter


def build_filter(query: CloudQuery, project: str) -> str:
    """The Logging query sent for `query`, within the API's 20,000-character limit.

    All request logs (denominators, latency) plus other logs at WARNING and above, stderr lines without a
    severity (an unstructured traceback arrives one line per entry and must be read whole) and lines matching
    the rules' message regexes. If the regex clauses make the filter too long, they are first merged into one
    alternation per field, then dropped for a coarser filter that pulls the service's logs at every severity
    (the caller matches lines locally anyway).
    """
    return _build_filter(query, project)[0]


def _build_filter(query: CloudQuery, project: str) -> tuple[str, bool]:
    """The filter and whether it is the coarse fallback."""
    base = ['resource.type="cloud_run_revision"']
    for label, value in (
        ("service_name", query.service),
        ("revision_name", query.revision),
        ("location", query.settings.region),
    ):
        if value is not None:
            base.append(f"resource.labels.{label}={_quote(value, label)}")
    late = query.late_only
    requests = _quote(_log_name(project, REQUEST_LOG), "log name")
    base.append(
        f'timestamp>="{_rfc3339(late.requests_from if late and late.requests_from else query.start)}"'
    )
    base.append(f'timestamp<"{_rfc3339(query.end)}"')
    if late is not None:
        base.append(
            f'(timestamp>="{_rfc3339(late.before)}" OR receiveTimestamp>="{_rfc3339(late.received_from)}")'
        )
        if late.requests_from is not None:
            base.append(f'(timestamp>="{_rfc3339(query.start)}" OR logName={requests})')
    head = "\nAND ".join(base)

    patterns = list(dict.fromkeys(p for p in query.message_regexes if p))
    wanted = [
        f"logName={requests}",
        "severity>=WARNING",
        f"(logName={_quote(_log_name(project, STDERR_LOG), 'log name')} AND severity=DEFAULT)",
        # Plain stdout lines carry no severity either; those that state a level worth reading are pulled.
        f"(logName={_quote(_log_name(project, STDOUT_LOG), 'log name')} AND severity=DEFAULT"
        f" AND textPayload=~{_quote_regex(STATED_PROBLEM)})",
        *(f"logName={_quote(_log_name(project, log), 'log name')}" for log in AUDIT_LOGS),
    ]
    candidates = [_regex_clauses(patterns, merged=False)]
    if len(patterns) > 1:
        candidates.append(_regex_clauses(patterns, merged=True))
    for regex_clauses in candidates:
        text = head + "\nAND (\n  " + "\n  OR ".join(wanted + regex_clauses) + "\n)"
        if len(text) <= MAX_FILTER_CHARS:
            return text, False
    if len(head) > MAX_FILTER_CHARS:
        raise ConfigError(
            f"the Logging filter would be {len(head):,} characters (limit {MAX_FILTER_CHARS:,})"
        )
    return head, True


def _regex_clauses(patterns: list[str], *, merged: bool) -> list[str]:
    if not patterns:
        return []
    regexes = ["|".join(f"(?:{p})" for p in patterns)] if merged else patterns
    clauses = []
    for regex in regexes:
        literal = _quote_regex(regex)
        clauses += [f"textPayload=~{literal}", f"jsonPayload.message=~{literal}"]
    return clauses


def _quote(value: str, what: str) -> str:
    """A Logging query string literal: backslashes and double quotes escaped."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ConfigError(f"the {what} {value!r} contains control characters")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _quote_regex(pattern: str) -> str:
    """A string literal carrying an RE2 pattern; control characters become RE2 hex escapes first."""
    pattern = re.sub(r"[\x00-\x1f\x7f]", lambda m: f"\\x{{{ord(m.group()):02x}}}", pattern)
    return '"' + pattern.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _log_name(project: str, log_id: str) -> str:
    return f"projects/{project}/logs/{log_id.replace('/', '%2F')}"


def _rfc3339(moment: datetime) -> str:
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if utc.microsecond else "%Y-%m-%dT%H:%M:%SZ")


# ----------------------------------------------------------------------------------------------- pacing


class _Pacer:
    """A token bucket (as a virtual schedule): `burst` calls at once, then `rate` calls a second."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float], sleep: Callable[[float], None]):
        self.interval = 0.0 if rate <= 0 or math.isinf(rate) else 1.0 / rate
        self.slack = max(burst - 1, 0) * self.interval
        self.clock, self.sleep = clock, sleep
        self.next_free = -math.inf  # when the bucket is full again, on self.clock's scale

    def acquire(self) -> None:
        if not self.interval:
            return
        now = self.clock()
        self.next_free = max(self.next_free, now)
        wait = self.next_free - self.slack - now
        if wait > 0:
            self.sleep(wait)
        self.next_free += self.interval


# ------------------------------------------------------------------------------------------- transports


class _Pager(Protocol):
    where: str

    def fetch(self, body: dict[str, Any]) -> tuple[list[dict[str, Any]], str | None]: ...

    def close(self) -> None: ...


class _Malformed(Exception):
    """The API answered something that is not an entries.list response."""


class _HttpPager:
    """One `POST /v2/entries:list` per page, the REST call of the API reference, on google-auth's session.

    `AuthorizedSession` signs each call (and refreshes the token on a 401, as every Google client does), and
    `google.api_core.exceptions.from_http_response` turns an error answer into the same exceptions the gRPC
    client raises: both are the libraries' public API, and the answer's JSON is already the LogEntry shape.
    """

    def __init__(self, credentials: Any, base_url: str, client_info: Any, timeout: float) -> None:
        session: Any = importlib.import_module("google.auth.transport.requests").AuthorizedSession
        self.session = session(credentials)
        self.from_response = importlib.import_module("google.api_core.exceptions").from_http_response
        self.url = f"{base_url}/v2/entries:list"
        self.where = base_url
        self.headers = {"Content-Type": "application/json", "User-Agent": client_info.to_user_agent()}
        self.timeout = (min(CONNECT_TIMEOUT, timeout), timeout)

    def fetch(self, body: dict[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
        response = self.session.post(
            self.url, data=orjson.dumps(body), headers=self.headers, timeout=self.timeout
        )
        if not 200 <= response.status_code < 300:
            raise self.from_response(response)
        try:
            page = orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise _Malformed(f"not JSON ({exc})") from None
        if not isinstance(page, dict):
            raise _Malformed("not a JSON object")
        entries = page.get("entries", [])
        token = page.get("nextPageToken") or None  # an empty string means the last page
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise _Malformed("its entries are not a list of objects")
        if token is not None and not isinstance(token, str):
            raise _Malformed("its nextPageToken is not a string")
        return entries, token

    def close(self) -> None:
        self.session.close()


class _GrpcPager:
    """One ListLogEntries RPC per page through the generated client; entries converted to the JSON shape."""

    def __init__(self, client: Any, where: str, timeout: float) -> None:
        self.client = client
        self.where = where
        self.timeout = timeout
        types: Any = importlib.import_module("google.cloud.logging_v2.types")
        self.request_type, self.response_type = types.ListLogEntriesRequest, types.ListLogEntriesResponse
        self.message_to_dict: Any = importlib.import_module("google.protobuf.json_format").MessageToDict

    def fetch(self, body: dict[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
        request = self.request_type(
            resource_names=body["resourceNames"],
            filter=body["filter"],
            order_by=body["orderBy"],
            page_size=body["pageSize"],
            page_token=body.get("pageToken", ""),
        )
        # retry=None: CloudSource retries itself, paced and bounded, from the same page token.
        pager = self.client.list_log_entries(request=request, retry=None, timeout=self.timeout)
        page = self.response_type.pb(next(iter(pager.pages)))
        try:
            entries = [self.message_to_dict(e) for e in page.entries]
        except TypeError:  # a protoPayload whose type is not registered here
            entries = [self._entry_without_proto(e) for e in page.entries]
        for entry in entries:
            if "jsonPayload" in entry:
                entry["jsonPayload"] = _integral_floats_to_int(entry["jsonPayload"])
        return entries, page.next_page_token or None

    def close(self) -> None:
        self.client.transport.close()

    def _entry_without_proto(self, entry: Any) -> dict[str, Any]:
        try:
            result: dict[str, Any] = self.message_to_dict(entry)
            return result
        except TypeError:
            copy = type(entry)()
            copy.CopyFrom(entry)
            type_url = copy.proto_payload.type_url
            copy.ClearField("proto_payload")
            result = self.message_to_dict(copy)
            result["protoPayload"] = {"@type": type_url}
            return result


def _integral_floats_to_int(value: Any) -> Any:
    """protobuf Struct numbers are doubles; the JSON API writes 200 where gRPC gives 200.0."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: _integral_floats_to_int(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral_floats_to_int(v) for v in value]
    return value


def _open_pager(settings: CloudLogging, timeout: float) -> _Pager:
    """A pager for these settings' endpoint and transport: the REST API, or the generated gRPC client."""
    transport, emulator, endpoint = settings.transport, settings.emulator, settings.endpoint
    client_info = importlib.import_module("google.api_core.gapic_v1.client_info").ClientInfo(
        user_agent=f"prodguardian/{__version__}"
    )
    if emulator:
        host = re.sub(r"^[a-z]+://", "", emulator).rstrip("/")
        if transport == "grpc":
            return _GrpcPager(_insecure_grpc_client(host, client_info), f"grpc://{host}", timeout)
        anonymous = importlib.import_module("google.auth.credentials").AnonymousCredentials()
        return _HttpPager(anonymous, f"http://{host}", client_info, timeout)

    credentials = _credentials()
    if transport == "grpc":
        target = re.sub(r"^[a-z]+://", "", endpoint).rstrip("/") if endpoint else None
        services: Any = importlib.import_module("google.cloud.logging_v2.services.logging_service_v2")
        client = services.LoggingServiceV2Client(
            credentials=credentials,
            client_info=client_info,
            client_options={"api_endpoint": target} if target else None,
        )
        return _GrpcPager(client, target or DEFAULT_HOST, timeout)
    base = f"https://{DEFAULT_HOST}"
    if endpoint:
        base = (endpoint if re.match(r"^[a-z]+://", endpoint) else f"https://{endpoint}").rstrip("/")
    return _HttpPager(credentials, base, client_info, timeout)


def _insecure_grpc_client(host: str, client_info: Any) -> Any:
    """The generated client on a plain (emulator) channel: no TLS, no credentials."""
    grpc: Any = importlib.import_module("grpc")
    services: Any = importlib.import_module("google.cloud.logging_v2.services.logging_service_v2")
    channel = grpc.insecure_channel(host, options=[("grpc.max_receive_message_length", -1)])
    transport = services.transports.LoggingServiceV2GrpcTransport(channel=channel, client_info=client_info)
    return services.LoggingServiceV2Client(transport=transport)


def _credentials() -> Any:
    auth: Any = importlib.import_module("google.auth")
    auth_errors: Any = importlib.import_module("google.auth.exceptions")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "end user credentials without a quota project"
            credentials, _ = auth.default(scopes=READ_SCOPES)
    except auth_errors.DefaultCredentialsError as exc:
        detail = one_line(str(exc))
        raise SourceError(f"{NO_CREDENTIALS} ({detail})" if detail else NO_CREDENTIALS) from None
    return credentials


# ----------------------------------------------------------------------------------------------- faults


@dataclass(frozen=True)
class _Failure:
    kind: str  # "fatal", "quota", "server", "timeout", "malformed", "network"
    message: str

    @property
    def retryable(self) -> bool:
        return self.kind != "fatal"


def _classify(exc: BaseException, project: str, where: str) -> _Failure | None:
    """What a transport exception means for the user; None for an exception that is a bug here."""
    api: Any = importlib.import_module("google.api_core.exceptions")
    auth_errors: Any = importlib.import_module("google.auth.exceptions")
    requests_errors: Any = importlib.import_module("requests.exceptions")

    if isinstance(exc, _Malformed):
        return _Failure(
            "malformed", f"Cloud Logging at {where} sent a malformed entries.list response: {exc}"
        )
    if isinstance(exc, api.GoogleAPICallError):
        code = f"HTTP {exc.code}" if exc.code else type(exc).__name__
        said = one_line(exc.message or "")
        said = f" ({code}: {said})" if said else f" ({code})"
        if isinstance(exc, api.TooManyRequests):
            return _Failure(
                "quota",
                f"Cloud Logging read quota exhausted for project {project}{said}: entries.list allows about "
                "60 calls a minute per project, shared by every reader; retry later or read a shorter window",
            )
        if isinstance(exc, api.Forbidden):
            return _Failure(
                "fatal",
                f"permission denied reading the logs of project {project}{said}: the account needs the "
                "Logs Viewer role (roles/logging.viewer) on the project; if the project ID is wrong, pass "
                "--project",
            )
        if isinstance(exc, api.NotFound):
            return _Failure(
                "fatal",
                f"unknown project {project}: Cloud Logging has no such project{said}; pass --project "
                "PROJECT_ID or run `gcloud config set project PROJECT_ID`",
            )
        if isinstance(exc, api.Unauthorized):
            return _Failure("fatal", f"Google credentials were rejected{said}: {LOGIN_HINT}")
        if isinstance(exc, api.BadRequest):
            return _Failure("fatal", f"Cloud Logging rejected the query{said}; see it with --show-filter")
        if isinstance(exc, api.DeadlineExceeded):
            return _Failure("timeout", f"Cloud Logging at {where} did not answer within {CALL_TIMEOUT:g} s")
        if isinstance(exc, api.ServiceUnavailable) and _unreachable_grpc(exc.message or ""):
            return _Failure("network", f"Cloud Logging is unreachable at {where}{said}: {_NETWORK_HINT}")
        if isinstance(
            exc, (api.InternalServerError, api.BadGateway, api.ServiceUnavailable, api.GatewayTimeout)
        ):
            return _Failure("server", f"Cloud Logging is failing{said}")
        return _Failure("fatal", f"Cloud Logging refused the read{said}")
    if isinstance(exc, requests_errors.Timeout) and not isinstance(exc, requests_errors.ConnectTimeout):
        return _Failure("timeout", f"Cloud Logging at {where} did not answer within {CALL_TIMEOUT:g} s")
    if isinstance(exc, requests_errors.ConnectionError):
        return _Failure(
            "network", f"Cloud Logging is unreachable at {where} ({network_reason(exc)}): {_NETWORK_HINT}"
        )
    if isinstance(exc, requests_errors.RequestException):
        return _Failure("server", f"reading from Cloud Logging at {where} failed ({one_line(str(exc))})")
    if isinstance(exc, auth_errors.RefreshError):
        return _Failure(
            "fatal", f"Google credentials could not be refreshed ({one_line(str(exc))}): {LOGIN_HINT}"
        )
    if isinstance(exc, auth_errors.TransportError):
        return _Failure(
            "network", f"Google's token service is unreachable ({network_reason(exc)}): {_NETWORK_HINT}"
        )
    if isinstance(exc, ValueError) and "anonymous credentials" in str(exc).lower():  # a 401 in emulator mode
        return _Failure(
            "fatal",
            f"Cloud Logging at {where} asked for credentials (HTTP 401), but an emulator is read anonymously",
        )
    if isinstance(exc, auth_errors.DefaultCredentialsError):
        return _Failure("fatal", NO_CREDENTIALS)
    return None


_NETWORK_HINT = (
    "check the network and proxy settings (HTTPS_PROXY, NO_PROXY), or --endpoint / LOGGING_EMULATOR_HOST"
)


def _unreachable_grpc(message: str) -> bool:
    lowered = message.lower()
    return any(
        s in lowered
        for s in ("failed to connect", "dns resolution failed", "name resolution", "connection refused")
    )


def network_reason(exc: BaseException) -> str:
    """A short cause for a connection failure: connection refused, DNS lookup failed, …"""
    seen: set[int] = set()
    todo: list[Any] = [exc]
    text = one_line(str(exc))
    while todo:
        current = todo.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        name = type(current).__name__
        if isinstance(current, ConnectionRefusedError):
            return "connection refused"
        if name == "NameResolutionError" or (
            isinstance(current, OSError)
            and "name" in str(current).lower()
            and ("resolution" in str(current).lower() or "not known" in str(current).lower())
        ):
            return "DNS lookup failed"
        if isinstance(current, TimeoutError) or name in ("ConnectTimeoutError", "ConnectTimeout"):
            return f"no connection within {CONNECT_TIMEOUT:g} s"
        todo += [getattr(current, "reason", None), current.__cause__, current.__context__]
        todo += [a for a in getattr(current, "args", ()) if isinstance(a, BaseException)]
    lowered = text.lower()
    if "refused" in lowered:
        return "connection refused"
    if "name or service not known" in lowered or "resolution" in lowered or "getaddrinfo" in lowered:
        return "DNS lookup failed"
    return text[:200]


def one_line(text: str) -> str:
    return " ".join(text.split())


# ----------------------------------------------------------------------------------------------- source


class CloudSource:
    """Iterable of LogEntry dicts (API JSON shape, as `entry.to_api_repr()` or the raw JSON gives).

    Each iteration is one read of the window, newest entries first. A read that cannot complete raises
    `SourceError`; one cut by `max_entries` completes with `truncated` set. Construction does no network I/O
    (it resolves the project and builds the filter), so `filter` can be shown without credentials.
    """

    def __init__(
        self,
        query: CloudQuery,
        *,
        progress: Callable[[ReadStats], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.query = query
        self.project = resolve_project(query.settings.project)
        self.name = f"Cloud Logging (project {self.project})"
        self._filter, self._coarse = _build_filter(query, self.project)
        self._progress = progress
        self._sleep, self._clock = sleep, clock
        self._pacer = _Pacer(query.settings.calls_per_second, BURST, clock, sleep)
        self._random = random.Random()
        self.stats = ReadStats()
        self.warnings: list[str] = []  # the API's answers carry nothing worth a warning

    @property
    def filter(self) -> str:
        """The exact filter sent to entries.list."""
        return self._filter

    @property
    def coarse(self) -> bool:
        """True when the regex clauses did not fit: the filter pulls the service's logs at all severities."""
        return self._coarse

    @property
    def truncated(self) -> bool:
        return self.stats.truncated

    @property
    def covers_window(self) -> bool:
        """The read covered the whole window (a quiet start is quiet, not missing data) unless it was cut."""
        return not self.stats.truncated

    def __iter__(self) -> Iterator[dict[str, Any]]:
        self.stats = stats = ReadStats()
        started = self._clock()
        pager = _open_pager(self.query.settings, CALL_TIMEOUT)
        try:
            yield from self._read(pager, stats, started)
        finally:
            pager.close()

    def _read(self, pager: _Pager, stats: ReadStats, started: float) -> Iterator[dict[str, Any]]:
        seen: set[tuple[str, str]] = set()
        token: str | None = None
        same_token = 0
        limit = self.query.settings.max_entries
        while True:
            body: dict[str, Any] = {
                "resourceNames": [f"projects/{self.project}"],
                "filter": self._filter,
                "orderBy": ORDER_BY,
                # one more than still allowed, so a full page tells a cut read from a complete one
                "pageSize": min(self.query.settings.page_size, limit - stats.entries + 1),
            }
            if token:
                body["pageToken"] = token
            entries, next_token = self._call(pager, body, started)
            stats.pages += 1
            for entry in entries:
                insert_id = entry.get("insertId")
                if isinstance(insert_id, str) and insert_id:
                    key = (insert_id, str(entry.get("timestamp", "")))
                    if key in seen:
                        stats.duplicates += 1
                        continue
                    seen.add(key)
                if stats.entries >= limit:
                    stats.truncated = True
                    break
                stats.entries += 1
                yield entry
            if not stats.truncated and next_token and stats.entries >= limit:
                stats.truncated = True  # more pages exist but no more entries may be read
            stats.elapsed = self._clock() - started
            if self._progress:
                self._progress(stats)
            if stats.truncated or not next_token:
                return
            same_token = same_token + 1 if next_token == token and not entries else 0
            if same_token >= SAME_TOKEN_LIMIT:
                raise SourceError(
                    f"Cloud Logging at {pager.where} returned the same page token {same_token} times "
                    f"without entries (after {stats.entries:,} entries)"
                )
            token = next_token

    def _call(
        self, pager: _Pager, body: dict[str, Any], started: float
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page, retried with exponential backoff from the same token until give_up_after."""
        stats = self.stats
        first_try: float | None = None
        failures = network_failures = 0
        while True:
            self._pacer.acquire()
            if first_try is None:
                first_try = self._clock()  # waiting for the pace is not retrying
            stats.calls += 1
            try:
                return pager.fetch(body)
            except Exception as exc:  # classified below; an unknown one is a bug here and re-raised
                failure = _classify(exc, self.project, pager.where)
                if failure is None:
                    raise
            failures += 1
            network_failures += failure.kind == "network"
            spent = self._clock() - first_try
            gave_up = (
                not failure.retryable
                or spent >= self.query.settings.give_up_after
                or (failure.kind == "network" and network_failures > NETWORK_RETRIES)
            )
            if gave_up:
                read = f"{stats.entries:,} entries in {stats.pages} pages"
                after = (
                    f"; gave up after {failures} attempts over {spent:.0f} s ({read} read, window incomplete)"
                    if failure.retryable
                    else (f" ({read} read, window incomplete)" if stats.pages else "")
                )
                raise SourceError(failure.message + after) from None
            base = 2.0 if failure.kind == "quota" else 1.0
            delay = min(BACKOFF_CAP, base * 2 ** (failures - 1)) * self._random.uniform(0.5, 1.0)
            delay = min(delay, max(self.query.settings.give_up_after - spent, 0.0))
            stats.retries += 1
            stats.elapsed = self._clock() - started
            if self._progress:
                self._progress(stats)
            if delay > 0:
                self._sleep(delay)
