"""Hand-written Cloud Run LogEntries, shaped like real `gcloud logging read --format=json` output."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

PROJECT = "emergence-469005"
SERVICE = "emergence-app"
REVISION = "emergence-app-00297-6pr"
INSTANCE = "00f46b9285e3a1c6e5a6c3b1e2f0c4d5b1f1e0c1d2e3f4a5b6c7d8e9f0a1b2c3d4"
T0 = datetime(2025, 10, 11, 11, 30, tzinfo=UTC)
_counter = iter(range(1, 10**9))


def stamp(at: datetime | float) -> str:
    moment = T0 + timedelta(seconds=at) if isinstance(at, int | float) else at
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"


def _base(log: str, at: datetime | float, instance: str, revision: str) -> dict[str, Any]:
    return {
        "insertId": f"{next(_counter):012x}",
        "logName": f"projects/{PROJECT}/logs/run.googleapis.com%2F{log}",
        "resource": {
            "type": "cloud_run_revision",
            "labels": {
                "service_name": SERVICE,
                "revision_name": revision,
                "location": "europe-west1",
                "configuration_name": SERVICE,
                "project_id": PROJECT,
            },
        },
        "labels": {"instanceId": instance},
        "timestamp": stamp(at),
        "receiveTimestamp": stamp(at),
    }


def request(
    at: datetime | float,
    path: str,
    status: int = 200,
    latency: str = "0.112114537s",
    method: str = "GET",
    trace: str | None = None,
    instance: str = INSTANCE,
    revision: str = REVISION,
    text: str | None = None,
    user_agent: str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64)",
) -> dict[str, Any]:
    entry = _base("requests", at, instance, revision)
    entry["severity"] = "ERROR" if status >= 500 else "WARNING" if status >= 400 else "INFO"
    entry["httpRequest"] = {
        "requestMethod": method,
        "requestUrl": f"https://emergence-app-47fmxpbtfq-ew.a.run.app{path}",
        "status": status,
        "latency": latency,
        "requestSize": "512",
        "responseSize": "2048",
        "userAgent": user_agent,
        "remoteIp": "203.0.113.7",
        "serverIp": "216.239.36.53",
        "protocol": "HTTP/1.1",
    }
    if trace:
        entry["trace"] = f"projects/{PROJECT}/traces/{trace}"
        entry["spanId"] = "5f1c2a9e0b7d3c41"
    if text:
        entry["textPayload"] = text
    return entry


def text_line(
    at: datetime | float,
    text: str,
    severity: str | None = None,
    log: str = "stderr",
    instance: str = INSTANCE,
    revision: str = REVISION,
) -> dict[str, Any]:
    entry = _base(log, at, instance, revision)
    entry["textPayload"] = text
    if severity:
        entry["severity"] = severity
    return entry


def json_line(
    at: datetime | float,
    message: str,
    severity: str = "INFO",
    trace: str | None = None,
    instance: str = INSTANCE,
    revision: str = REVISION,
    **fields: Any,
) -> dict[str, Any]:
    entry = _base("stdout", at, instance, revision)
    entry["severity"] = severity
    entry["jsonPayload"] = {"message": message, **fields}
    if trace:
        entry["trace"] = f"projects/{PROJECT}/traces/{trace}"
    return entry


def access_echo(
    at: datetime | float, method: str, path: str, status: int, instance: str = INSTANCE
) -> dict[str, Any]:
    reason = {200: "OK", 404: "Not Found", 500: "Internal Server Error"}.get(status, "")
    line = f'INFO:     169.254.169.126:10292 - "{method} {path} HTTP/1.1" {status} {reason}'
    return text_line(at, line, log="stdout", instance=instance)


DB_TRACEBACK = """ERROR:    Exception in ASGI application
Traceback (most recent call last):
  File "/usr/local/lib/python3.11/site-packages/uvicorn/protocols/websockets/websockets_impl.py", line 244, in run_asgi
    result = await self.app(self.scope, self.asgi_receive, self.asgi_send)  # type: ignore[func-returns-value]
  File "/app/src/backend/features/chat/router.py", line 212, in websocket_endpoint
    session = await session_manager.create_session(session_id, user_id)
  File "/app/src/backend/core/session_manager.py", line 141, in create_session
    await self.db.execute(query)
  File "/app/src/backend/core/database/manager.py", line 64, in _ensure_connection
    raise RuntimeError("Database connection is not available.")
RuntimeError: Database connection is not available."""
DB_APP_ERROR = (
    "Database connection requested but no active connection is available."
    " Call connect() before executing queries."
)


def failing_request_lines(at: float, trace: str, instance: str = INSTANCE) -> list[dict[str, Any]]:
    """One failing HTTP request as Cloud Run logs it: request row, access echo, app echo, error, traceback."""
    path = "/api/gmail/read-reports"
    return [
        request(at, f"{path}?max_results=3", 500, "0.214s", "POST", trace=trace, instance=instance),
        access_echo(at + 0.002, "POST", f"{path}?max_results=3", 500, instance=instance),
        json_line(at + 0.003, DB_APP_ERROR, "ERROR", trace=trace, instance=instance),
        json_line(
            at + 0.004,
            f"Request completed: POST {path} status_code=500 duration_ms=213.9",
            "ERROR",
            trace=trace,
            instance=instance,
        ),
        text_line(
            at + 0.005,
            DB_TRACEBACK.replace("websockets/websockets_impl", "http/httptools_impl"),
            "ERROR",
            instance=instance,
        ),
    ]


def split_traceback(at: float, instance: str = INSTANCE, text: str = DB_TRACEBACK) -> list[dict[str, Any]]:
    """A traceback written unstructured to stderr: one entry per line, no severity, a millisecond apart."""
    return [text_line(at + i * 0.001, line, instance=instance) for i, line in enumerate(text.splitlines())]
