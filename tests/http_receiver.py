"""A local HTTP server that records what webhooks POST to it: a real peer for the channels' tests."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """The server's address, what it received, and how it answers (`status`, `answer`, `delay`)."""

    url: str
    received: list[Received] = field(default_factory=list)
    status: int = 200
    answer: bytes = b"ok"
    delay: threading.Event | None = None  # when set, each request waits for it (a hung receiver)
    on_request: Callable[[Received], None] | None = None  # called with each request before it is answered


@contextmanager
def http_receiver() -> Iterator[Receiver]:
    receiver: Receiver

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            request = Received(self.path, dict(self.headers.items()), body)
            receiver.received.append(request)
            if receiver.on_request is not None:
                receiver.on_request(request)
            if receiver.delay is not None:
                receiver.delay.wait(5)
            self.send_response(receiver.status)
            self.send_header("Content-Length", str(len(receiver.answer)))
            self.end_headers()
            self.wfile.write(receiver.answer)

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the tests assert what was received."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver = Receiver(f"http://127.0.0.1:{server.server_address[1]}")
    # polled every 50 ms: shutdown() waits for the poll, 0.5 s by default (half a second a test)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        if receiver.delay is not None:
            receiver.delay.set()
        server.shutdown()
        server.server_close()
