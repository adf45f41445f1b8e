"""Test helpers for alerting: a local HTTP receiver of notifications, a channel that really POSTs to it,
and simulator reports at a controlled clock."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prodguardian import simulate
from prodguardian.check import CheckOptions, failed_report, run_check
from prodguardian.notification import DeliveryError, Notification
from prodguardian.verdict import Report
from tests.reports import made_once

START = datetime(2025, 10, 11, 12, 0, tzinfo=UTC)
STEP = timedelta(minutes=5)


@dataclass
class Receiver:
    """What the local webhook server received; `down` makes it answer 503."""

    url: str = ""
    bodies: list[dict[str, Any]] = field(default_factory=list)
    down: bool = False
    hold: threading.Event | None = None  # set: the server waits on it before answering
    arrived: threading.Event = field(default_factory=threading.Event)

    def events(self) -> list[tuple[str, str]]:
        return [(body["event"], body["alert"]) for body in self.bodies]


@contextmanager
def receiver() -> Iterator[Receiver]:
    got = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            got.arrived.set()
            if got.hold is not None:
                got.hold.wait(10)
            if got.down:
                self.send_response(503)
            else:
                got.bodies.append(body)
                self.send_response(200)
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    got.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    try:
        yield got
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class PostChannel:
    """A channel that POSTs the notification's JSON to a URL (the generic webhook's shape)."""

    url: str
    name: str = "hook"
    min_severity: str = "DEGRADED"

    def wants(self, notification: Notification) -> bool:
        return True

    def send(self, notification: Notification) -> None:
        request = urllib.request.Request(
            self.url,
            json.dumps(notification.to_dict()).encode(),
            {"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=15):
                pass
        except (urllib.error.URLError, OSError) as exc:
            raise DeliveryError(f"{self.name}: {exc}") from None


@cache
def report_at(scenario: str, run: int) -> Report:
    """The check of `scenario` over the 15 minutes before run `run`'s clock (START + run × 5 min), made once
    a run for all xdist workers (tests/reports.py)."""
    return made_once("alerting", f"{scenario}-{run}", lambda: _check_at(scenario, run))


def _check_at(scenario: str, run: int) -> Report:
    end = START + run * STEP
    entries = list(simulate.generate(scenario, hours=2, end=end))
    options = CheckOptions(freshness=timedelta(minutes=15), baseline=timedelta(hours=1))
    return run_check(entries, options).report


def failed_at(run: int, service: str = "emergence-app") -> Report:
    """The UNKNOWN report of a check that could not read its logs at run `run`'s clock."""
    options = CheckOptions(service=service, freshness=timedelta(minutes=15), until=START + run * STEP)
    return failed_report("export.json: cannot read: No such file or directory", options)
