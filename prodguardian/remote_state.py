"""The state store kept in Cloud Storage (`--state gs://BUCKET/OBJECT`), for runs whose disk does not last.

On Cloud Run Jobs the container's disk is gone after each run, so the SQLite state file lives in a bucket.
`remote_state` downloads it to a temporary file, recording its generation, lets the check work on that copy,
and uploads it back only on a clean exit and only if the object is still at that generation
(`ifGenerationMatch`; 0 for a store that did not exist yet). Two overlapping runs cannot overwrite each other:
the later upload is refused and that run raises `StateConflict` having saved nothing, or, through
`with_remote_state`, downloads the winner's state and does its work again. A run that fails uploads nothing,
so the object is never half-written nor replaced by a failed run's copy.

Google libraries are imported lazily, as in prodguardian.cloud, so checks with a local state stay cheap.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import importlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from prodguardian import __version__
from prodguardian.cloud import (
    CALL_TIMEOUT,
    CONNECT_TIMEOUT,
    LOGIN_HINT,
    NO_CREDENTIALS,
    network_reason,
    one_line,
)
from prodguardian.errors import ConfigError, ProdGuardianError
from prodguardian.state import StateError

DEFAULT_ATTEMPTS = 3  # runs of the work by with_remote_state before it gives up on a busy state
GIVE_UP_AFTER = 60.0  # seconds one call may spend retrying transient faults (429, 5xx, network)
LOCAL_NAME = "state.sqlite"  # the downloaded copy's name, in a fresh temporary directory

T = TypeVar("T")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_GS_URL = re.compile(r"^gs://", re.IGNORECASE)
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]*[a-z0-9]$")
_IP_ADDRESS = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
_EXAMPLE = "gs://BUCKET/prodguardian.sqlite"


class RemoteStateError(ProdGuardianError):
    """The state object in Cloud Storage could not be read or saved."""


class StateConflict(RemoteStateError):
    """Another run saved the state object after this run read it; this run saved nothing."""

    def __init__(self, url: str, attempts: int = 1) -> None:
        during = "this check" if attempts == 1 else f"each of this check's {attempts} attempts"
        super().__init__(
            f"the state in {url} changed during {during} (another run?): nothing was saved; run again"
        )
        self.url = url


@dataclass(frozen=True)
class GcsObject:
    """Where a state lives in Cloud Storage."""

    bucket: str
    name: str

    @property
    def url(self) -> str:
        return f"gs://{self.bucket}/{self.name}"


def is_remote(location: str | os.PathLike[str]) -> bool:
    """Whether a --state location names Cloud Storage (`gs:`…) rather than a local path."""
    return os.fspath(location)[:3].lower() == "gs:"


def parse_gcs_url(url: str) -> GcsObject:
    """`gs://BUCKET/OBJECT`, validated against Cloud Storage's naming rules; ConfigError otherwise."""
    scheme = _GS_URL.match(url)
    if scheme is None:
        raise ConfigError(f"{url!r} is not a Cloud Storage URL: write it {_EXAMPLE}")
    bucket, _, name = url[scheme.end() :].partition("/")
    problem = _bucket_problem(bucket) or _object_problem(name)
    if problem:
        raise ConfigError(f"invalid state URL {url!r}: {problem}")
    return GcsObject(bucket, name)


def _bucket_problem(bucket: str) -> str | None:
    """What breaks Cloud Storage's bucket naming rules, if anything."""
    if not bucket:
        return f"no bucket name (write it {_EXAMPLE})"
    if not 3 <= len(bucket) <= (222 if "." in bucket else 63):
        return f"bucket name {bucket!r} must be 3 to 63 characters long (222 with dots)"
    if not _BUCKET.match(bucket):
        return (
            f"bucket name {bucket!r} may hold only lowercase letters, digits, '-', '_' and '.', "
            "and must start and end with a letter or digit"
        )
    if any(not 1 <= len(part) <= 63 for part in bucket.split(".")):
        return f"bucket name {bucket!r}: each dot-separated part must be 1 to 63 characters long"
    if _IP_ADDRESS.match(bucket):
        return f"bucket name {bucket!r} cannot be an IP address"
    if bucket.startswith("goog") or "google" in bucket:
        return f"bucket name {bucket!r} cannot start with 'goog' or contain 'google'"
    return None


def _object_problem(name: str) -> str | None:
    """What makes an object name unfit to hold a state file, if anything."""
    if not name or name.endswith("/"):
        return f"no object name after the bucket (write it {_EXAMPLE})"
    if len(name.encode()) > 1024:
        return "the object name is longer than 1,024 bytes"
    if name in (".", "..") or name.startswith(".well-known/acme-challenge/"):
        return f"object name {name!r} is reserved by Cloud Storage"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        return "the object name contains a control character"
    return None


@contextlib.contextmanager
def remote_state(
    location: str | os.PathLike[str], *, client: Any = None, give_up_after: float = GIVE_UP_AFTER
) -> Iterator[Path]:
    """A local path to the state at `location`, saved back to Cloud Storage on a clean exit.

    A local path is yielded as it is. For `gs://BUCKET/OBJECT` the object is downloaded to a temporary file
    (which does not exist when the object does not: a new store) and, if the block exits cleanly, uploaded
    back unless another run saved it in between (then `StateConflict`). The block must close the store
    before it ends. `client` is a `google.cloud.storage.Client` (default: one with the default credentials).
    """
    if not is_remote(location):
        if _URL.match(os.fspath(location)):
            raise ConfigError(f"{os.fspath(location)!r}: the state is a local path or a gs:// URL")
        yield Path(location)
        return
    transfer = _Transfer(parse_gcs_url(os.fspath(location)), client, give_up_after)
    with tempfile.TemporaryDirectory(prefix="prodguardian-state-", ignore_cleanup_errors=True) as folder:
        local = Path(folder) / LOCAL_NAME
        generation = transfer.download(local)
        yield local
        transfer.upload(local, generation)


@contextlib.contextmanager
def state_copy(
    location: str | os.PathLike[str], *, client: Any = None, give_up_after: float = GIVE_UP_AFTER
) -> Iterator[Path]:
    """A throwaway copy of the state at `location` (a dry run's): what is done to it is never saved, and
    the state itself is only read. The path does not exist when the state does not yet."""
    with tempfile.TemporaryDirectory(prefix="prodguardian-copy-", ignore_cleanup_errors=True) as folder:
        copy = Path(folder) / LOCAL_NAME
        if is_remote(location):
            _Transfer(parse_gcs_url(os.fspath(location)), client, give_up_after).download(copy)
        else:
            with remote_state(location) as path:  # refuses a URL that is not gs://
                _copy_local(path, copy)
        yield copy


def _copy_local(path: Path, copy: Path) -> None:
    """The file and its write-ahead log (the latest commits may be only there)."""
    for suffix in ("", "-wal"):
        source = path.with_name(path.name + suffix)
        try:
            shutil.copyfile(source, copy.with_name(copy.name + suffix))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StateError(f"cannot read the state store: {exc.strerror or exc}", str(source)) from None


def with_remote_state(
    location: str | os.PathLike[str],
    work: Callable[[Path], T],
    *,
    attempts: int = DEFAULT_ATTEMPTS,
    client: Any = None,
    give_up_after: float = GIVE_UP_AFTER,
) -> T:
    """`work(path)` on the state at `location`, saved; redone on a fresh copy if another run saved first.

    `work` may run up to `attempts` times, each time on the latest state, so it must act only on the file
    (send notifications after it returns). After the last attempt loses, StateConflict.
    """
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, not {attempts}")

    def attempt() -> T:
        with remote_state(location, client=client, give_up_after=give_up_after) as path:
            return work(path)

    for _ in range(attempts - 1):
        with contextlib.suppress(StateConflict):
            return attempt()
    try:
        return attempt()
    except StateConflict as conflict:
        raise StateConflict(conflict.url, attempts) from None


class _Transfer:
    """Download and conditional upload of one object through the real google-cloud-storage client."""

    def __init__(self, target: GcsObject, client: Any, give_up_after: float) -> None:
        self.target = target
        self.give_up_after = give_up_after
        self.api: Any = importlib.import_module("google.api_core.exceptions")
        retry: Any = importlib.import_module("google.cloud.storage.retry")
        # Every call here is idempotent (reads, or writes under a generation precondition): all may retry.
        self.options = {
            "retry": retry.DEFAULT_RETRY.with_timeout(give_up_after),
            "timeout": (CONNECT_TIMEOUT, CALL_TIMEOUT),
        }
        with self._translated("reaching"):
            self.client = client if client is not None else _default_client()
            self.blob = self.client.bucket(target.bucket).blob(target.name)

    def download(self, local: Path) -> int:
        """Download the object to `local`; its generation, 0 when there is no object yet."""
        with self._translated("reading"):
            try:
                self.blob.reload(**self.options)
            except self.api.NotFound:
                self._require_bucket()
                return 0
            generation = int(self.blob.generation)
            try:
                self.blob.download_to_filename(str(local), if_generation_match=generation, **self.options)
            except (self.api.PreconditionFailed, self.api.NotFound):  # replaced or deleted since the reload
                raise StateConflict(self.target.url) from None
            return generation

    def upload(self, local: Path, generation: int) -> None:
        """Upload `local` if the object is still at `generation`; StateConflict otherwise."""
        wal = local.with_name(local.name + "-wal")
        if wal.exists():  # a connection is still open: the main file lacks the changes kept in the WAL
            raise RuntimeError(f"{wal} exists: close the state store before leaving remote_state")
        if not local.exists():  # the work created no store: nothing to save
            return
        with self._translated("saving"):
            try:
                self.blob.upload_from_filename(str(local), if_generation_match=generation, **self.options)
            except self.api.PreconditionFailed:
                # A retried upload whose first answer was lost finds its own write: that is no conflict.
                if not self._holds(local):
                    raise StateConflict(self.target.url) from None

    def _require_bucket(self) -> None:
        """NotFound unless the bucket exists (a listing needs only object permissions)."""
        next(iter(self.client.list_blobs(self.target.bucket, max_results=1, **self.options)), None)

    def _holds(self, local: Path) -> bool:
        """Whether the object's latest generation holds exactly the bytes of `local`."""
        latest = self.client.bucket(self.target.bucket).blob(self.target.name)  # self.blob names a generation
        try:
            latest.reload(**self.options)
        except self.api.NotFound:  # deleted since
            return False
        with local.open("rb") as file:
            digest = base64.b64encode(hashlib.file_digest(file, "md5").digest()).decode()
        return bool(latest.md5_hash == digest)

    @contextlib.contextmanager
    def _translated(self, action: str) -> Iterator[None]:
        """Google client failures as one RemoteStateError line naming the URL."""
        try:
            yield
        except ProdGuardianError:
            raise
        except Exception as exc:
            message = _describe(exc, self.target.bucket, action, self.give_up_after)
            if message is None:
                raise
            raise RemoteStateError(message, where=self.target.url) from None


def _default_client() -> Any:
    """A storage client with the default credentials (STORAGE_EMULATOR_HOST is honoured by the library)."""
    storage: Any = importlib.import_module("google.cloud.storage")
    client_info: Any = importlib.import_module("google.api_core.client_info")
    # No project: reading and writing one object does not need one, and none need be configured.
    return storage.Client(
        project=None, client_info=client_info.ClientInfo(user_agent=f"prodguardian/{__version__}")
    )


def _describe(exc: BaseException, bucket: str, action: str, give_up_after: float) -> str | None:
    """What a client failure means for the user; None for an exception that is a bug here."""
    api: Any = importlib.import_module("google.api_core.exceptions")
    auth: Any = importlib.import_module("google.auth.exceptions")
    requests_errors: Any = importlib.import_module("requests.exceptions")
    storage_errors: Any = importlib.import_module("google.cloud.storage.exceptions")

    gave_up = ""
    if isinstance(exc, api.RetryError) and exc.cause is not None:
        exc, gave_up = exc.cause, f"; gave up after {give_up_after:g} s of retries"
    if isinstance(exc, storage_errors.InvalidResponse):  # a media transfer's HTTP error, before its mapping
        exc = api.from_http_status(exc.response.status_code, str(exc), response=exc.response)
    if isinstance(exc, api.GoogleAPICallError):
        said = f"HTTP {exc.code}: {_google_message(exc)}"
        if isinstance(exc, api.Forbidden):
            return (
                f"permission denied {action} the state ({said}): the account needs the Storage Object User "
                f"role (roles/storage.objectUser) on the bucket {bucket}"
            )
        if isinstance(exc, api.NotFound):
            return f"the bucket {bucket} does not exist ({said}): create it, or fix the --state URL"
        if isinstance(exc, api.Unauthorized):
            return f"Google credentials were rejected ({said}): {LOGIN_HINT}"
        if isinstance(exc, (api.TooManyRequests, api.ServerError)):
            return f"Cloud Storage is failing ({said}){gave_up}"
        return f"Cloud Storage refused {action} the state ({said})"
    if isinstance(exc, (requests_errors.ConnectionError, requests_errors.Timeout)):
        return (
            f"Cloud Storage is unreachable ({network_reason(exc)}){gave_up}: check the network and proxy "
            "settings (HTTPS_PROXY, NO_PROXY)"
        )
    if isinstance(exc, storage_errors.DataCorruption):
        return "the downloaded state does not match its checksum (corrupted on the way): run again"
    if isinstance(exc, auth.DefaultCredentialsError):
        return f"{NO_CREDENTIALS} ({one_line(str(exc))})"
    if isinstance(exc, auth.RefreshError):
        return f"Google credentials could not be refreshed ({one_line(str(exc))}): {LOGIN_HINT}"
    if isinstance(exc, auth.TransportError):
        return f"Google's token service is unreachable ({network_reason(exc)}): check the network"
    return None


def _google_message(exc: Any) -> str:
    """The error message Cloud Storage sent, on one line (the exception's text repeats the request URL)."""
    try:
        said = exc.response.json()["error"]["message"]
    except (AttributeError, KeyError, TypeError, ValueError):
        said = exc.message
    return one_line(str(said))[:300]
