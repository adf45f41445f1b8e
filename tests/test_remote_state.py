"""The state kept in Cloud Storage: the real google-cloud-storage client against the loopback fake.

The payload is a real SQLite file in WAL mode with one row per run that worked on it, so a lost update
(a run missing) and a double one (a run twice) both show.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from prodguardian.errors import ConfigError, ProdGuardianError
from prodguardian.remote_state import (
    GcsObject,
    RemoteStateError,
    StateConflict,
    parse_gcs_url,
    remote_state,
    with_remote_state,
)
from tests.fake_gcs_server import FakeGcsServer, fake_gcs_server, gcs_client  # noqa: F401 - the fixture

BUCKET, NAME = "state-bucket", "jobs/prodguardian.sqlite"
URL = f"gs://{BUCKET}/{NAME}"


@pytest.fixture
def server(fake_gcs_server: FakeGcsServer) -> FakeGcsServer:  # noqa: F811 - the imported fixture
    return fake_gcs_server


@pytest.fixture
def client(server: FakeGcsServer) -> Any:
    return gcs_client(server)


def record_run(path: Path, run: str) -> None:
    """One check's work on the store: a transaction in WAL mode, then the store closed."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA journal_mode=WAL")
        with db:
            db.execute("CREATE TABLE IF NOT EXISTS runs (run TEXT NOT NULL)")
            db.execute("INSERT INTO runs VALUES (?)", (run,))


def runs_in(path: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return sorted(row[0] for row in db.execute("SELECT run FROM runs"))


def remote_runs(server: FakeGcsServer, tmp_path: Path) -> list[str]:
    """The runs recorded in the object as it is now in the bucket."""
    copy = tmp_path / f"remote-{server.generation(BUCKET, NAME)}.sqlite"
    copy.write_bytes(server.data(BUCKET, NAME))
    return runs_in(copy)


def store_with(tmp_path: Path, *runs: str) -> bytes:
    """The bytes of a state file holding these runs (what another run would have uploaded)."""
    path = tmp_path / f"store-{len(list(tmp_path.iterdir()))}.sqlite"
    for run in runs:
        record_run(path, run)
    return path.read_bytes()


def one_line(error: BaseException) -> str:
    text = str(error)
    assert "\n" not in text and "Traceback" not in text
    return text


# ------------------------------------------------------------------------------------------- happy path


def test_first_run_creates_the_object(server: FakeGcsServer, client: Any, tmp_path: Path) -> None:
    with remote_state(URL, client=client) as path:
        assert not path.exists()  # no object yet: a new store
        record_run(path, "first")
    assert remote_runs(server, tmp_path) == ["first"]
    upload = next(c for c in server.calls if c.method == "POST")
    assert upload.params["ifGenerationMatch"] == "0" and upload.status == 200  # only if still absent
    assert server.uploads() == ["multipart"]


def test_second_run_updates_it_and_the_generation_moves(
    server: FakeGcsServer, client: Any, tmp_path: Path
) -> None:
    server.put(BUCKET, NAME, store_with(tmp_path, "first"))
    before = server.generation(BUCKET, NAME)
    with remote_state(URL, client=client) as path:
        assert runs_in(path) == ["first"]
        record_run(path, "second")
    assert server.generation(BUCKET, NAME) > before
    assert remote_runs(server, tmp_path) == ["first", "second"]
    upload = next(c for c in server.calls if c.method == "POST")
    assert upload.params["ifGenerationMatch"] == str(before)


def test_local_paths_pass_through_untouched(tmp_path: Path) -> None:
    local = tmp_path / "prodguardian.sqlite"
    for location in (local, str(local)):
        with remote_state(location) as path:
            assert path == local
    assert with_remote_state(local, lambda path: path.name) == "prodguardian.sqlite"
    assert not local.exists()


def test_the_default_client_honours_the_storage_emulator(
    server: FakeGcsServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", server.url)
    assert with_remote_state(URL, lambda path: record_run(path, "scheduled")) is None
    assert remote_runs(server, tmp_path) == ["scheduled"]


def test_a_big_state_round_trips_through_a_resumable_upload(
    server: FakeGcsServer, client: Any, tmp_path: Path
) -> None:
    payload = os.urandom(9 * 1024 * 1024)  # above the client's 8 MiB multipart limit
    with remote_state(URL, client=client) as path:
        path.write_bytes(payload)
    assert server.uploads() == ["resumable"] and server.data(BUCKET, NAME) == payload
    with remote_state(URL, client=client) as path:
        assert path.read_bytes() == payload  # downloaded whole, checksum verified by the client


def test_a_big_state_upload_honours_the_precondition(server: FakeGcsServer, client: Any) -> None:
    server.put(BUCKET, NAME, b"small")
    server.after_download = lambda bucket, name: server.put(bucket, name, b"another run's")
    with pytest.raises(StateConflict), remote_state(URL, client=client) as path:
        path.write_bytes(os.urandom(9 * 1024 * 1024))
    assert server.uploads() == ["resumable"] and server.data(BUCKET, NAME) == b"another run's"


def test_a_lost_upload_answer_is_not_a_conflict(server: FakeGcsServer, client: Any, tmp_path: Path) -> None:
    server.put(BUCKET, NAME, store_with(tmp_path, "first"))
    server.drop_next_upload_response = True  # saved, but the answer never comes back
    with remote_state(URL, client=client) as path:
        record_run(path, "second")
    assert [c.status for c in server.calls if c.method == "POST"] == [0, 412]  # the retry finds it changed
    assert remote_runs(server, tmp_path) == ["first", "second"]  # ... by its own write: saved once


# ------------------------------------------------------------------------------------------ failed runs


def test_failed_work_uploads_nothing(server: FakeGcsServer, client: Any, tmp_path: Path) -> None:
    server.put(BUCKET, NAME, store_with(tmp_path, "first"))
    before = server.generation(BUCKET, NAME)
    with pytest.raises(ZeroDivisionError), remote_state(URL, client=client) as path:
        record_run(path, "half-done")
        _ = 1 / 0
    assert server.generation(BUCKET, NAME) == before and server.uploads() == []
    assert remote_runs(server, tmp_path) == ["first"]


def test_a_store_left_open_is_not_uploaded(server: FakeGcsServer, client: Any) -> None:
    with contextlib.ExitStack() as still_open:
        with (
            pytest.raises(RuntimeError, match="close the state store"),
            remote_state(URL, client=client) as path,
        ):
            db = still_open.enter_context(contextlib.closing(sqlite3.connect(path)))
            db.execute("PRAGMA journal_mode=WAL")
            with db:
                db.execute("CREATE TABLE runs (run TEXT NOT NULL)")  # in the -wal file while open
        assert server.uploads() == []


# ----------------------------------------------------------------------------------------------- races


def overlapping(runs: list[str], work: Callable[[str], None]) -> dict[str, BaseException]:
    """Run `work(run)` for every run in its own thread, at the same time; the errors by run."""
    errors: dict[str, BaseException] = {}

    def one(run: str) -> None:
        try:
            work(run)
        except BaseException as error:
            errors[run] = error

    threads = [threading.Thread(target=one, args=(run,)) for run in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_two_overlapping_runs_one_wins_the_other_saves_nothing(
    server: FakeGcsServer, client: Any, tmp_path: Path
) -> None:
    server.put(BUCKET, NAME, store_with(tmp_path, "first"))
    both_downloaded = threading.Barrier(2, timeout=30)

    def check(run: str) -> None:
        with remote_state(URL, client=client) as path:
            record_run(path, run)
            both_downloaded.wait()  # neither uploads before both have read the same generation

    errors = overlapping(["a", "b"], check)
    assert len(errors) == 1
    loser, conflict = next(iter(errors.items()))
    assert isinstance(conflict, StateConflict) and isinstance(conflict, ProdGuardianError)
    assert one_line(conflict) == (
        f"the state in {URL} changed during this check (another run?): nothing was saved; run again"
    )
    winner = ({"a", "b"} - {loser}).pop()
    assert remote_runs(server, tmp_path) == sorted(["first", winner])


def test_overlapping_runs_retry_and_no_update_is_lost(
    server: FakeGcsServer, client: Any, tmp_path: Path
) -> None:
    server.put(BUCKET, NAME, store_with(tmp_path, "first"))
    all_downloaded = threading.Barrier(3, timeout=30)
    attempts: list[str] = []

    def check(run: str) -> None:
        def work(path: Path) -> None:
            record_run(path, run)
            attempts.append(run)
            if attempts.count(run) == 1:
                all_downloaded.wait()  # the first attempts all read the same generation

        with_remote_state(URL, work, client=client, attempts=3)

    assert overlapping(["a", "b", "c"], check) == {}
    assert remote_runs(server, tmp_path) == ["a", "b", "c", "first"]  # each run once, none lost
    refused = [c for c in server.calls if c.method == "POST" and c.status == 412]
    assert len(attempts) == 3 + len(refused) and len(refused) >= 2  # every loser redid its work


def test_the_retry_helper_gives_up_after_its_attempts(
    server: FakeGcsServer, client: Any, tmp_path: Path
) -> None:
    server.put(BUCKET, NAME, store_with(tmp_path, "first"))
    others = iter(["x", "y"])

    def another_run_saves(bucket: str, name: str) -> None:
        server.put(bucket, name, store_with(tmp_path, "first", next(others)))
        server.after_download = another_run_saves  # again at the next download

    server.after_download = another_run_saves
    attempts: list[Path] = []
    with pytest.raises(StateConflict) as caught:
        with_remote_state(URL, lambda path: attempts.append(path), client=client, attempts=2)
    assert len(attempts) == 2
    assert one_line(caught.value) == (
        f"the state in {URL} changed during each of this check's 2 attempts (another run?): "
        "nothing was saved; run again"
    )
    assert remote_runs(server, tmp_path) == ["first", "y"]  # the other runs' state, untouched


# ---------------------------------------------------------------------------------------------- errors


def test_permission_denied_names_the_role(server: FakeGcsServer, client: Any) -> None:
    server.fail_always(403)
    with pytest.raises(RemoteStateError) as caught, remote_state(URL, client=client):
        pytest.fail("no work without the state")
    text = one_line(caught.value)
    assert text.startswith(f"{URL}: permission denied reading the state (HTTP 403: ")
    assert text.endswith(f"roles/storage.objectUser) on the bucket {BUCKET}")


def test_permission_denied_on_save_leaves_the_object(
    server: FakeGcsServer, client: Any, tmp_path: Path
) -> None:
    server.put(BUCKET, NAME, store_with(tmp_path, "first"))
    with pytest.raises(RemoteStateError) as caught, remote_state(URL, client=client) as path:
        record_run(path, "second")
        server.fail_always(403)  # e.g. roles/storage.objectViewer only
    assert "permission denied saving the state" in one_line(caught.value)
    server.fail_always(None)
    assert remote_runs(server, tmp_path) == ["first"]


def test_a_missing_bucket_is_named_before_any_work(client: Any) -> None:
    with (
        pytest.raises(RemoteStateError) as caught,
        remote_state("gs://no-such-bucket/s.sqlite", client=client),
    ):
        pytest.fail("no work without a bucket")
    assert one_line(caught.value) == (
        "gs://no-such-bucket/s.sqlite: the bucket no-such-bucket does not exist "
        "(HTTP 404: The specified bucket does not exist.): create it, or fix the --state URL"
    )


def test_a_passing_outage_is_retried(server: FakeGcsServer, client: Any, tmp_path: Path) -> None:
    server.fail_next(503)
    with remote_state(URL, client=client) as path:
        record_run(path, "first")
    assert remote_runs(server, tmp_path) == ["first"]


def test_a_lasting_outage_gives_up_in_one_line(server: FakeGcsServer, client: Any) -> None:
    server.fail_always(503)
    with pytest.raises(RemoteStateError) as caught, remote_state(URL, client=client, give_up_after=0.5):
        pytest.fail("no work without the state")
    assert one_line(caught.value) == (
        f"{URL}: Cloud Storage is failing (HTTP 503: We encountered an internal error. Please try again.); "
        "gave up after 0.5 s of retries"
    )


def test_an_unreachable_endpoint_is_one_line() -> None:
    with FakeGcsServer() as stopped:
        client = gcs_client(stopped)
    with pytest.raises(RemoteStateError) as caught, remote_state(URL, client=client, give_up_after=0.5):
        pytest.fail("no work without the state")
    assert one_line(caught.value).startswith(f"{URL}: Cloud Storage is unreachable (connection refused)")


def test_no_credentials_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "nowhere" / "adc.json"))
    with pytest.raises(RemoteStateError) as caught, remote_state(URL):
        pytest.fail("no work without credentials")
    assert one_line(caught.value).startswith(
        f"{URL}: no Google credentials: run `gcloud auth application-default login` ("
    )


# ------------------------------------------------------------------------------------------------ URLs


@pytest.mark.parametrize(
    ("url", "bucket", "name"),
    [
        ("gs://state-bucket/prodguardian.sqlite", "state-bucket", "prodguardian.sqlite"),
        ("gs://state.example.com/a/b/état.sqlite", "state.example.com", "a/b/état.sqlite"),
        ("GS://my_bucket-1/x", "my_bucket-1", "x"),
    ],
)
def test_valid_urls(url: str, bucket: str, name: str) -> None:
    assert parse_gcs_url(url) == GcsObject(bucket, name)
    assert GcsObject(bucket, name).url == f"gs://{bucket}/{name}"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("gs:/state-bucket/s.sqlite", "is not a Cloud Storage URL: write it gs://BUCKET/prodguardian.sqlite"),
        ("gs://", "no bucket name"),
        ("gs:///s.sqlite", "no bucket name"),
        ("gs://state-bucket", "no object name after the bucket"),
        ("gs://state-bucket/", "no object name after the bucket"),
        ("gs://state-bucket/jobs/", "no object name after the bucket"),
        ("gs://ab/s.sqlite", "must be 3 to 63 characters long"),
        ("gs://" + "b" * 64 + "/s.sqlite", "must be 3 to 63 characters long"),
        ("gs://State-Bucket/s.sqlite", "may hold only lowercase letters"),
        ("gs://state-bucket-/s.sqlite", "must start and end with a letter or digit"),
        ("gs://state..bucket/s.sqlite", "each dot-separated part must be 1 to 63 characters long"),
        ("gs://192.168.1.10/s.sqlite", "cannot be an IP address"),
        ("gs://goog-state/s.sqlite", "cannot start with 'goog' or contain 'google'"),
        ("gs://my-google-state/s.sqlite", "cannot start with 'goog' or contain 'google'"),
        ("gs://state-bucket/..", "is reserved by Cloud Storage"),
        ("gs://state-bucket/a\nb", "contains a control character"),
        ("gs://state-bucket/" + "x" * 1025, "longer than 1,024 bytes"),
    ],
)
def test_invalid_urls_say_what_is_wrong(url: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught, remote_state(url):
        pytest.fail("no work on an invalid URL")
    assert problem in one_line(caught.value)


def test_other_urls_are_not_taken_for_local_paths(tmp_path: Path) -> None:
    with (
        pytest.raises(ConfigError, match="the state is a local path or a gs:// URL"),
        remote_state("s3://b/s"),
    ):
        pytest.fail("no work on an s3:// URL")
