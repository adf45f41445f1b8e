"""A fake Cloud Storage JSON API for tests: stdlib http.server, loopback only, port chosen by the OS.

It serves what the real google-cloud-storage client sends for one object: metadata
(`GET /storage/v1/b/B/o/O`), listings, media downloads (`alt=media`, with `x-goog-generation` and
`x-goog-hash`), multipart and resumable uploads (initiation, then the bytes in one request), each honouring
`ifGenerationMatch` (412 when it does not match; 0 means "the object must not exist"). Generations move on
every write, as in Cloud Storage, and uploads are checked against their declared checksums. A missing bucket
or object is a 404 with Cloud Storage's messages. Test controls:

- `fail_next(status, times)` / `fail_always(status)`: answer 403, 503, … instead;
- `after_download`: a callback run once, when a download has read the object and before it answers
  (another run uploading in between, for the race);
- `drop_next_upload_response`: store the next upload, then close the connection unanswered (a response lost
  on its way back);
- `put`, `data`, `generation`: the objects, directly; `calls`, `uploads()`: what was asked.

    from tests.fake_gcs_server import FakeGcsServer, gcs_client

    with FakeGcsServer(buckets=["b"]) as server:
        client = gcs_client(server)  # the real storage.Client, anonymous, on the fake
        ...

or the `fake_gcs_server` fixture (import it into the test module). The library also honours
`STORAGE_EMULATOR_HOST=server.url`, with anonymous credentials.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, quote, unquote, urlsplit

import google_crc32c
import pytest

NO_SUCH_BUCKET = "The specified bucket does not exist."
FORBIDDEN = (
    "checker@p.iam.gserviceaccount.com does not have {0} access to the Google Cloud Storage object. "
    "Permission '{0}' denied on resource (or it may not exist)."
)
UNAVAILABLE = "We encountered an internal error. Please try again."
_REASONS = {400: "invalid", 403: "forbidden", 404: "notFound", 412: "conditionNotMet", 503: "backendError"}
_BUCKET_PATH = re.compile(r"^/storage/v1/b/([^/]+)$")
_LIST_PATH = re.compile(r"^/storage/v1/b/([^/]+)/o$")
_OBJECT_PATH = re.compile(r"^(?:/download)?/storage/v1/b/([^/]+)/o/(.+)$")
_UPLOAD_PATH = re.compile(r"^/upload/storage/v1/b/([^/]+)/o$")


@dataclass
class StoredObject:
    """One object's current generation."""

    bucket: str
    name: str
    data: bytes
    generation: int
    created: datetime = field(default_factory=lambda: datetime.now(UTC))

    def resource(self, base_url: str) -> dict[str, Any]:
        """The object resource, as `objects.get` returns it."""
        path = f"b/{self.bucket}/o/{quote(self.name, safe='')}"
        stamp = self.created.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        return {
            "kind": "storage#object",
            "id": f"{self.bucket}/{self.name}/{self.generation}",
            "selfLink": f"{base_url}/storage/v1/{path}",
            "mediaLink": f"{base_url}/download/storage/v1/{path}?generation={self.generation}&alt=media",
            "name": self.name,
            "bucket": self.bucket,
            "generation": str(self.generation),
            "metageneration": "1",
            "contentType": "application/octet-stream",
            "storageClass": "STANDARD",
            "size": str(len(self.data)),
            "md5Hash": self.md5,
            "crc32c": self.crc32c,
            "etag": base64.b64encode(f"{self.generation}".encode()).decode(),
            "timeCreated": stamp,
            "updated": stamp,
        }

    @property
    def md5(self) -> str:
        return _md5(self.data)

    @property
    def crc32c(self) -> str:
        return _crc32c(self.data)


def _md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def _crc32c(data: bytes) -> str:
    return base64.b64encode(google_crc32c.Checksum(data).digest()).decode()


@dataclass(frozen=True)
class Call:
    """One request as received."""

    method: str
    path: str  # decoded, without the query
    params: dict[str, str]
    status: int  # the answer's HTTP status; 0 when the connection was closed unanswered


@dataclass
class _Session:
    """A resumable upload in progress."""

    bucket: str
    name: str
    if_generation_match: int | None


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class FakeGcs:
    """The buckets, objects and switches; the HTTP front is FakeGcsServer."""

    def __init__(self, buckets: Iterable[str] = ()) -> None:
        self.buckets = set(buckets)
        self.objects: dict[tuple[str, str], StoredObject] = {}
        self.calls: list[Call] = []
        # Called with (bucket, name) by the next download, after reading the object and before answering.
        self.after_download: Callable[[str, str], None] | None = None
        self.drop_next_upload_response = False
        self._failures: list[int] = []  # statuses to answer to the next calls, in order
        self._failing_always: int | None = None
        self._sessions: dict[str, _Session] = {}
        self._ids = itertools.count(1)
        self._last_generation = 0
        self.lock = threading.RLock()

    # -------------------------------------------------------------------------------- test controls

    def fail_next(self, status: int, times: int = 1) -> None:
        """Answer `status` (403, 503, …) to the next `times` calls."""
        self._failures += [status] * times

    def fail_always(self, status: int | None) -> None:
        """Answer `status` to every call from now on (None: stop)."""
        self._failing_always = status

    def put(self, bucket: str, name: str, data: bytes) -> int:
        """Write an object directly (as another run would); returns its new generation."""
        return self.write(bucket, name, bytes(data), None).generation

    def data(self, bucket: str, name: str) -> bytes:
        return self.objects[bucket, name].data

    def generation(self, bucket: str, name: str) -> int:
        """The object's generation; 0 when it does not exist (Cloud Storage's convention)."""
        stored = self.objects.get((bucket, name))
        return stored.generation if stored else 0

    def uploads(self) -> list[str]:
        """The uploadType of every upload started: "multipart" or "resumable"."""
        return [c.params["uploadType"] for c in self.calls if c.method == "POST" and "uploadType" in c.params]

    # ------------------------------------------------------------------------------------- semantics

    def _next_generation(self) -> int:
        # Like Cloud Storage: microseconds since the epoch, strictly increasing.
        self._last_generation = max(self._last_generation + 1, time.time_ns() // 1000)
        return self._last_generation

    def injected_failure(self) -> int | None:
        with self.lock:
            if self._failures:
                return self._failures.pop(0)
            return self._failing_always

    def names(self, bucket: str, prefix: str) -> list[str]:
        """The objects' names in a bucket under a prefix, sorted as Cloud Storage lists them."""
        with self.lock:
            self._require_bucket(bucket)
            return sorted(n for b, n in self.objects if b == bucket and n.startswith(prefix))

    def lookup(self, bucket: str, name: str, params: dict[str, str]) -> StoredObject:
        # An object in a missing bucket is just a missing object here: clients cannot tell the two apart.
        with self.lock:
            stored = self.objects.get((bucket, name))
            if stored is None or ("generation" in params and int(params["generation"]) != stored.generation):
                raise HttpError(404, f"No such object: {bucket}/{name}")
            self._check_precondition(bucket, name, _int_param(params, "ifGenerationMatch"))
            return stored

    def write(self, bucket: str, name: str, data: bytes, if_generation_match: int | None) -> StoredObject:
        with self.lock:
            self._require_bucket(bucket)
            self._check_precondition(bucket, name, if_generation_match)
            stored = StoredObject(bucket, name, data, self._next_generation())
            self.objects[bucket, name] = stored
            return stored

    def start_session(self, bucket: str, name: str, if_generation_match: int | None) -> str:
        with self.lock:
            self._require_bucket(bucket)
            self._check_precondition(bucket, name, if_generation_match)
            upload_id = f"upload-{next(self._ids)}"
            self._sessions[upload_id] = _Session(bucket, name, if_generation_match)
            return upload_id

    def finish_session(self, upload_id: str, data: bytes) -> StoredObject:
        with self.lock:
            if upload_id not in self._sessions:
                raise HttpError(404, "No such upload session.")
            session = self._sessions.pop(upload_id)
            return self.write(session.bucket, session.name, data, session.if_generation_match)

    def _require_bucket(self, bucket: str) -> None:
        if bucket not in self.buckets:
            raise HttpError(404, NO_SUCH_BUCKET)

    def _check_precondition(self, bucket: str, name: str, expected: int | None) -> None:
        if expected is not None and expected != self.generation(bucket, name):
            raise HttpError(412, "At least one of the pre-conditions you specified did not hold.")


def _int_param(params: dict[str, str], key: str) -> int | None:
    return int(params[key]) if key in params else None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HttpServer
    status: int

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no delayed-ACK stalls

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    # ----------------------------------------------------------------------------------------- routes

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        params = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        core = self.server.core
        self.status = 0  # no answer (a dropped response) unless _send says otherwise
        try:
            bucket = _BUCKET_PATH.match(path)
            if self.command == "GET" and bucket:  # the client's own background look-up: never failed
                self._bucket(bucket.group(1))
                return
            failure = core.injected_failure()
            if failure is not None:
                permission = "storage.objects.get" if self.command == "GET" else "storage.objects.create"
                raise HttpError(failure, FORBIDDEN.format(permission) if failure == 403 else UNAVAILABLE)
            self._route(path, params, body)
        except HttpError as error:
            self._send_json(error.status, _error_body(error.status, error.message))
        finally:
            with core.lock:
                core.calls.append(Call(self.command, path, params, self.status))

    def _route(self, path: str, params: dict[str, str], body: bytes) -> None:
        listing, item, upload = _LIST_PATH.match(path), _OBJECT_PATH.match(path), _UPLOAD_PATH.match(path)
        if self.command == "GET" and listing:
            self._list(listing.group(1), params)
        elif self.command == "GET" and item:
            self._get(*item.groups(), params)
        elif self.command == "POST" and upload:
            self._post(upload.group(1), params, body)
        elif self.command == "PUT" and upload:
            self._put(params, body)
        else:
            raise HttpError(404, f"no route {self.command} {path}")

    def _bucket(self, bucket: str) -> None:
        if bucket not in self.server.core.buckets:
            raise HttpError(404, NO_SUCH_BUCKET)
        resource = {"kind": "storage#bucket", "id": bucket, "name": bucket, "location": "EUROPE-WEST1"}
        self._send_json(200, resource | {"projectNumber": "123456789012", "storageClass": "STANDARD"})

    def _list(self, bucket: str, params: dict[str, str]) -> None:
        names = self.server.core.names(bucket, params.get("prefix", ""))[
            : int(params.get("maxResults", 1000))
        ]
        items = [self.server.core.objects[bucket, name].resource(self.server.base_url) for name in names]
        self._send_json(
            200, {"kind": "storage#objects", "items": items} if items else {"kind": "storage#objects"}
        )

    def _get(self, bucket: str, name: str, params: dict[str, str]) -> None:
        core = self.server.core
        stored = core.lookup(bucket, name, params)
        if params.get("alt") != "media":
            self._send_json(200, stored.resource(self.server.base_url))
            return
        with core.lock:
            callback, core.after_download = core.after_download, None
        if callback is not None:  # before the answer, so the client cannot upload first
            callback(bucket, name)
        self._send(
            200,
            stored.data,
            {
                "Content-Type": "application/octet-stream",
                "x-goog-generation": str(stored.generation),
                "x-goog-metageneration": "1",
                "x-goog-stored-content-length": str(len(stored.data)),
                "x-goog-hash": f"crc32c={stored.crc32c},md5={stored.md5}",
            },
        )

    def _post(self, bucket: str, params: dict[str, str], body: bytes) -> None:
        core = self.server.core
        precondition = _int_param(params, "ifGenerationMatch")
        if params.get("uploadType") == "multipart":
            metadata, data = _multipart(self.headers.get("Content-Type", ""), body)
            _verify_checksums(metadata, data)
            name = metadata.get("name") or params["name"]
            self._answer_upload(core.write(bucket, name, data, precondition))
        elif params.get("uploadType") == "resumable":
            name = params.get("name") or json.loads(body or b"{}").get("name")
            upload_id = core.start_session(bucket, name, precondition)
            query = f"uploadType=resumable&upload_id={upload_id}"
            self._send(
                200, b"", {"Location": f"{self.server.base_url}/upload/storage/v1/b/{bucket}/o?{query}"}
            )
        else:
            raise HttpError(400, f"unsupported uploadType {params.get('uploadType')!r}")

    def _put(self, params: dict[str, str], body: bytes) -> None:
        # The client sends a file of up to 100 MiB (its default chunk) in one request; so does this fake.
        whole = f"bytes 0-{len(body) - 1}/{len(body)}"
        if self.headers.get("Content-Range") != whole:
            raise HttpError(400, f"expected the whole upload in one request ({whole})")
        self._answer_upload(self.server.core.finish_session(params.get("upload_id", ""), body))

    def _answer_upload(self, stored: StoredObject) -> None:
        core = self.server.core
        if core.drop_next_upload_response:
            core.drop_next_upload_response = False
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._send_json(200, stored.resource(self.server.base_url))

    # ---------------------------------------------------------------------------------------- answers

    def _send_json(self, status: int, payload: dict[str, Any]) -> None:
        self._send(status, json.dumps(payload).encode(), {"Content-Type": "application/json; charset=UTF-8"})

    def _send(self, status: int, payload: bytes, headers: dict[str, str]) -> None:
        self.status = status
        try:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up
            pass


def _error_body(status: int, message: str) -> dict[str, Any]:
    reason = _REASONS.get(status, "unknown")
    return {
        "error": {
            "code": status,
            "message": message,
            "errors": [{"message": message, "domain": "global", "reason": reason}],
        }
    }


def _multipart(content_type: str, body: bytes) -> tuple[dict[str, Any], bytes]:
    """The metadata and the media of a `multipart/related` upload body."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if match is None:
        raise HttpError(400, "multipart upload without a boundary")
    delimiter = b"--" + match.group(1).encode()
    parts = [p for p in body.split(delimiter)[1:] if not p.startswith(b"--")]
    if len(parts) != 2:
        raise HttpError(400, f"multipart upload with {len(parts)} parts, not 2")
    contents = []
    for part in parts:
        _, _, content = part.partition(b"\r\n\r\n")
        contents.append(content.removesuffix(b"\r\n"))
    return json.loads(contents[0]), contents[1]


def _verify_checksums(metadata: dict[str, Any], data: bytes) -> None:
    """Refuse an upload whose declared checksum does not match its bytes, as Cloud Storage does."""
    for key, actual in (("crc32c", _crc32c(data)), ("md5Hash", _md5(data))):
        if key in metadata and metadata[key] != actual:
            raise HttpError(400, f"Provided {key} {metadata[key]!r} doesn't match calculated {actual!r}.")


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    core: FakeGcs
    base_url: str


class FakeGcsServer(FakeGcs):
    """The fake on http://127.0.0.1:PORT, in a background thread."""

    def __init__(self, buckets: Iterable[str] = ()) -> None:
        super().__init__(buckets)
        self._httpd: _HttpServer | None = None

    def start(self) -> Self:
        self._httpd = _HttpServer(("127.0.0.1", 0), _Handler)
        self._httpd.core = self
        self._httpd.base_url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """http://127.0.0.1:PORT, for client_options={"api_endpoint": …} or STORAGE_EMULATOR_HOST."""
        if self._httpd is None:
            raise RuntimeError("the fake Cloud Storage server is not started")
        return self._httpd.base_url


def gcs_client(server: FakeGcsServer) -> Any:
    """The real google-cloud-storage client, anonymous, talking to the fake."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(
        project="test-project",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": server.url},
    )


@pytest.fixture
def fake_gcs_server() -> Iterator[FakeGcsServer]:
    """A started FakeGcsServer holding one empty bucket, `state-bucket`; stopped after the test."""
    with FakeGcsServer(buckets=["state-bucket"]) as server:
        yield server
