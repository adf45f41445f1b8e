"""A warm live check pulls only what arrived since the last read: the store keeps the entries of the last
read's lateness margin (its tail), and the read asks Cloud Logging for the margin's late arrivals only.

Through the CLI and the real google-cloud-logging client against the fake Logging API, which serves what
Cloud Logging would hold at each check (`FakeLogging.now`: an entry received after the check is not there
yet), a cold check and warm checks at cursor positions on and off whole minutes give the stateless check's
answer at the end, each warm read pulling the entries received since the last one and few others.
"""

from __future__ import annotations

import json
import multiprocessing
import signal
import sqlite3
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from prodguardian.cli import main
from prodguardian.history import RECEPTION_SKEW
from prodguardian.simulate import generate
from prodguardian.sketch import ALPHA, LatencySketch
from prodguardian.state import MINUTE_COLUMNS, Cursor, MinuteFacts, ReadTail, StateError, StateStore
from tests.fake_logging_server import FakeLoggingServer
from tests.test_history_faults import _dying_mid_write

PROJECT, SERVICE = "emergence-469005", "emergence-app"
KEY = f"logging:{PROJECT}:*:{SERVICE}"
LIVE = ["--service", SERVICE, "--project", PROJECT, "--quiet", "--format", "json", "--baseline", "1h"]
# Minutes before the end at which each read stops, as in tests/test_history.py.
CUTS = (timedelta(minutes=41, seconds=17), timedelta(minutes=23), timedelta(minutes=5, seconds=1))


def _stamp(entry: dict[str, Any], field: str) -> pd.Timestamp:
    return pd.Timestamp(entry[field])


Serve = Callable[[str], datetime]


@pytest.fixture
def serve(fake_logging_server: FakeLoggingServer, monkeypatch: pytest.MonkeyPatch) -> Serve:
    """Serve two hours of a scenario through the fake Logging API, as the live source's emulator; returns
    their end."""
    monkeypatch.setenv("LOGGING_EMULATOR_HOST", fake_logging_server.host)
    monkeypatch.setenv("PRODGUARDIAN_CALLS_PER_SECOND", "1000")

    def add(name: str) -> datetime:
        entries = list(generate(name, hours=2))
        fake_logging_server.add(entries)
        return max(_stamp(e, "timestamp") for e in entries).ceil("min").to_pydatetime()

    return add


def _check(
    capsys: pytest.CaptureFixture[str], server: FakeLoggingServer, until: datetime, *state: str
) -> dict[str, Any]:
    server.reset()
    server.now(until)
    main(["check", *LIVE, "--until", until.isoformat(), *state])
    report: dict[str, Any] = json.loads(capsys.readouterr().out)
    return report


def _answer(report: dict[str, Any]) -> tuple[Any, ...]:
    findings = sorted((f["rule"], f["category"], f["severity"], f["count"]) for f in report["findings"])
    metrics = {k: v for k, v in report["metrics"].items() if "latency" not in k}
    return report["status"], findings, metrics


@pytest.mark.parametrize("name", ["db-outage", "slow", "bad-deploy"])
def test_warm_checks_pull_what_arrived_since_and_answer_as_the_stateless_check(
    name: str,
    capsys: pytest.CaptureFixture[str],
    fake_logging_server: FakeLoggingServer,
    serve: Serve,
    tmp_path: Path,
) -> None:
    end = serve(name)
    state = ["--state", str(tmp_path / "state.sqlite")]
    previous, late = end - CUTS[0], 0
    _check(capsys, fake_logging_server, previous, *state)
    for cut in (*CUTS[1:], timedelta(0)):
        with StateStore(tmp_path / "state.sqlite") as store:
            tail = store.read_tail(KEY)
        assert tail is not None and tail.read_until == previous and len(tail.entries) > 10
        warm = _check(capsys, fake_logging_server, end - cut, *state)
        sent = fake_logging_server.requests[0]["filter"]
        assert "receiveTimestamp>=" in sent
        # The full filter of this read, without the clause that skips what the tail holds.
        full = sent.replace(sent[sent.index("\nAND (timestamp>=") : sent.index("\nAND (\n")], "")
        every, pulled = fake_logging_server.matching(full), fake_logging_server.matching(sent)
        arrived = {e["insertId"] for e in every if _stamp(e, "receiveTimestamp") > pd.Timestamp(previous)}
        assert arrived <= {e["insertId"] for e in pulled}  # all received since the last read, late ones too
        late += sum(_stamp(e, "timestamp") < previous for e in every if e["insertId"] in arrived)
        # Read twice: only what was received within the skew before the newest entry the last read saw.
        skew = (pd.Timestamp(tail.received_until - RECEPTION_SKEW), pd.Timestamp(previous))
        again = [e for e in pulled if e["insertId"] not in arrived]
        assert all(skew[0] <= _stamp(e, "receiveTimestamp") <= skew[1] for e in again)
        assert len(again) < sum(_stamp(e, "timestamp") < previous for e in every) / 4  # the margin's
        assert warm["totals"]["read"]["entries"] == len(pulled) == fake_logging_server.served
        previous = end - cut
    assert late > 0  # entries stamped before a read that arrived after it
    stateless = _check(capsys, fake_logging_server, end, "--no-state")
    assert _answer(warm) == _answer(stateless)
    for key, value in stateless["metrics"].items():
        if "latency" in key and isinstance(value, float):
            assert warm["metrics"][key] == pytest.approx(value, rel=ALPHA), key


def _killed_mid_write(until: datetime, state: str) -> None:
    """In the child: a warm live check, killed at the 2,000th SQLite instruction of its write."""
    StateStore.replace = _dying_mid_write(StateStore.replace)  # type: ignore[method-assign]
    main(["check", *LIVE, "--until", until.isoformat(), "--state", state])


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="SIGKILL is POSIX")
def test_a_live_check_killed_mid_write_leaves_the_last_tail_and_the_next_check_answers_right(
    capsys: pytest.CaptureFixture[str],
    fake_logging_server: FakeLoggingServer,
    serve: Serve,
    tmp_path: Path,
) -> None:
    end = serve("db-outage")
    path, first = tmp_path / "state.sqlite", end - CUTS[0]
    _check(capsys, fake_logging_server, first, "--state", str(path))
    with StateStore(path) as store:
        tail = store.read_tail(KEY)
    fake_logging_server.now(end - CUTS[1])
    child = multiprocessing.get_context("fork").Process(
        target=_killed_mid_write, args=(end - CUTS[1], str(path))
    )
    child.start()
    child.join()
    assert child.exitcode == -signal.SIGKILL
    with StateStore(path) as store:  # the cursor and the tail of the read before, together
        assert store.cursor(KEY) == pd.Timestamp(first).ceil("min") and store.read_tail(KEY) == tail
    warm = _check(capsys, fake_logging_server, end, "--state", str(path))
    assert _answer(warm) == _answer(_check(capsys, fake_logging_server, end, "--no-state"))


def test_the_tail_is_kept_with_the_cursor_and_read_back(tmp_path: Path) -> None:
    start = datetime.fromisoformat("2025-10-11T11:57:00+00:00")
    tail = ReadTail(start, start + timedelta(minutes=2), start + timedelta(minutes=2, seconds=1), [{"a": 1}])
    with StateStore(tmp_path / "state.sqlite") as store:
        store.replace("svc", start, start, MinuteFacts(), Cursor(KEY, start + timedelta(minutes=2), tail))
        assert store.read_tail(KEY) == tail
        older = ReadTail(start, start + timedelta(minutes=1), start, [])
        store.replace("svc", start, start, MinuteFacts(), Cursor(KEY, start + timedelta(minutes=1), older))
        assert store.read_tail(KEY) == tail  # a slower concurrent check never sends the tail back
        store.replace("svc", start, start, MinuteFacts(), Cursor(KEY, start + timedelta(minutes=3)))
        assert store.read_tail(KEY) is None  # a read that kept none: the next one reads the margin again
        store.replace("svc", start, start, MinuteFacts(), Cursor(KEY, start + timedelta(minutes=3), tail))
        store.reset()
        assert store.read_tail(KEY) is None


def test_a_corrupt_tail_is_one_line_and_exit_3_and_the_store_is_left_as_it_was(
    capsys: pytest.CaptureFixture[str], fake_logging_server: FakeLoggingServer, serve: Serve, tmp_path: Path
) -> None:
    end, path = serve("db-outage"), tmp_path / "state.sqlite"
    _check(capsys, fake_logging_server, end - CUTS[0], "--state", str(path))
    raw = sqlite3.connect(path)
    raw.execute("UPDATE read_tails SET entries = ?", (b"not zlib",))
    raw.commit()
    raw.close()
    before = path.read_bytes()
    code = main(["check", *LIVE, "--until", end.isoformat(), "--state", str(path)])
    err = capsys.readouterr().err
    assert code == 3 and "corrupt read tail of logging:" in err and str(path) in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert path.read_bytes() == before
    with StateStore(path) as store, pytest.raises(StateError, match="corrupt read tail of logging:"):
        store.read_tail(KEY)


def _minute_row(minute: int, **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = {c: 0 for c in MINUTE_COLUMNS} | {"revision": "r", "minute": minute}
    row |= {"latency": None, "failed_latency": None, "last_success": None, "last_request": None}
    return row | values


def _rows(*rows: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=MINUTE_COLUMNS).astype(
        {"last_success": "Int64", "last_request": "Int64"}
    )


def test_late_request_logs_add_to_their_stored_minutes_once(tmp_path: Path) -> None:
    start = datetime.fromisoformat("2025-10-11T11:00:00+00:00")
    base = int(start.timestamp()) // 60
    sketch = LatencySketch.from_values(np.array([100.0, 200.0]))
    stored = _rows(
        _minute_row(base, requests=2, websocket=1, entries=3, latency=sketch.to_bytes(), last_request=5)
    )
    late = _rows(
        _minute_row(base, websocket=1, entries=1, last_request=9, last_success=9),
        _minute_row(base - 1, websocket=1, entries=1),  # a minute the store does not cover
    )
    tail = ReadTail(start, start + timedelta(minutes=3), start + timedelta(minutes=3), [])
    with StateStore(tmp_path / "state.sqlite") as store:
        store.replace(
            "svc",
            start,
            start + timedelta(minutes=3),
            MinuteFacts(minutes=stored),
            Cursor(KEY, start + timedelta(minutes=3), tail),
        )
        then = start + timedelta(minutes=3)
        store.replace(
            "svc", then, then, MinuteFacts(), Cursor(KEY, then + timedelta(minutes=1), tail, after=then), late
        )
        minutes = store.minutes("svc", start - timedelta(minutes=1), then)
        # A read that followed an older tail (another read wrote since) adds nothing: the other one did.
        store.replace(
            "svc",
            then,
            then,
            MinuteFacts(),
            Cursor(KEY, then + timedelta(minutes=1), None, after=start),
            late,
        )
        again = store.minutes("svc", start - timedelta(minutes=1), then)
        with pytest.raises(ValueError, match="outside the replaced range"):
            store.replace("svc", start, then, MinuteFacts(), Cursor(KEY, then, None, after=then), late)
    (row,) = minutes.to_dict("records")
    assert (row["minute"], row["requests"], row["websocket"], row["entries"]) == (base, 2, 2, 4)
    assert (row["last_request"], row["last_success"]) == (9, 9)
    assert LatencySketch.from_bytes(row["latency"]).count == 2
    assert again.to_dict("records") == minutes.to_dict("records")
