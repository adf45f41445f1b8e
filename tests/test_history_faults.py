"""A check killed at any point, or two checks at once on one store, never lose nor double count an entry.

A child process runs a warm check on a copy of a store and SIGKILLs itself at a chosen point: while reading
its entries, after reading them and before writing, in the middle of the write (at a SQLite instruction),
and after the write, before the report. The next check then starts where the store's cursor says, as a
live check does, and must give the stateless check's answer. Two checks that read overlapping ranges of one
store at the same time must leave it giving that answer too.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import prodguardian.check as check_module
from prodguardian.check import run_check
from prodguardian.history import History, read_start
from prodguardian.state import StateStore
from tests.reports import builtin_pack
from tests.test_history import BASELINE, _entries, _options, _same_metrics, _summary

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="SIGKILL is POSIX")

SERVICE = "emergence-app"
KEY = "logging:p:*:emergence-app"
FIRST, SECOND = timedelta(minutes=20, seconds=30), timedelta(minutes=7)  # reads stop this long before the end


def _die(*_: Any) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _warm_check(path: Path, until: datetime, die_reading: bool = False) -> Any:
    """The check a cron job makes: from the store's cursor less the margin, up to `until`."""
    entries, stamps, _ = _entries("db-outage")
    with StateStore(path) as store:
        since = read_start(store, SERVICE, KEY, until - timedelta(hours=1) - BASELINE)
        new = [e for e, t in zip(entries, stamps, strict=True) if since <= t < until]
        read = _dying_halfway(new) if die_reading else new
        return run_check(read, _options(until), builtin_pack(), history=History(store, since, KEY)).report


def _dying_halfway(entries: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for i, entry in enumerate(entries):
        if i == len(entries) // 2:
            _die()
        yield entry


def _dying_mid_write(replace: Callable[..., None]) -> Callable[..., None]:
    """`StateStore.replace`, killed at its 2,000th SQLite instruction."""

    def replace_and_die(store: StateStore, *args: Any) -> None:
        steps = [0]

        def step() -> int:
            steps[0] += 1
            if steps[0] == 2000:
                _die()
            return 0

        store._db.set_progress_handler(step, 1)
        replace(store, *args)
        raise AssertionError("the write took fewer than 2,000 instructions: nothing was killed mid-write")

    return replace_and_die


def _killed_check(path: str, until: datetime, point: str) -> None:
    """In the child: the warm check, killed at `point`."""
    if point == "before writing":
        StateStore.replace = _die  # type: ignore[method-assign]
    elif point == "writing":
        StateStore.replace = _dying_mid_write(StateStore.replace)  # type: ignore[method-assign]
    elif point == "after writing":
        check_module.stored_aggregates = _die  # type: ignore[assignment]
    _warm_check(Path(path), until, die_reading=point == "reading")


@pytest.fixture(scope="module")
def warm_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, datetime]:
    """A store holding the cold check up to FIRST before the end, and the end."""
    _, _, end = _entries("db-outage")
    path = tmp_path_factory.mktemp("warm") / "state.sqlite"
    _warm_check(path, end - FIRST)
    return path, end


@pytest.mark.parametrize("point", ["reading", "before writing", "writing", "after writing"])
def test_a_check_killed_at_any_point_loses_and_doubles_nothing(
    point: str, warm_store: tuple[Path, datetime], tmp_path: Path
) -> None:
    template, end = warm_store
    path = tmp_path / "state.sqlite"
    shutil.copy(template, path)
    child = multiprocessing.get_context("fork").Process(
        target=_killed_check, args=(str(path), end - SECOND, point)
    )
    child.start()
    child.join()
    assert child.exitcode == -signal.SIGKILL
    with StateStore(path) as store:
        cursor = store.cursor(KEY)
    assert cursor is not None
    written = cursor.to_pydatetime() == end - SECOND
    assert written == (point == "after writing")
    report = _warm_check(path, end)
    entries, _, _ = _entries("db-outage")
    expected = run_check(entries, _options(end), builtin_pack()).report
    assert _summary(report) == _summary(expected)
    _same_metrics(report.metrics, expected.metrics)


def _check_in_child(path: str, until: datetime, ready: Any) -> None:
    ready.wait()
    _warm_check(Path(path), until)


def test_two_checks_at_once_on_one_store_count_each_entry_once(
    warm_store: tuple[Path, datetime], tmp_path: Path
) -> None:
    template, end = warm_store
    path = tmp_path / "state.sqlite"
    shutil.copy(template, path)
    fork = multiprocessing.get_context("fork")
    ready = fork.Event()
    children = [
        fork.Process(target=_check_in_child, args=(str(path), end - cut, ready))
        for cut in (SECOND, timedelta(minutes=3, seconds=10))
    ]
    for child in children:
        child.start()
    ready.set()
    for child in children:
        child.join()
    assert [c.exitcode for c in children] == [0, 0]
    report = _warm_check(path, end)
    entries, _, _ = _entries("db-outage")
    expected = run_check(entries, _options(end), builtin_pack()).report
    assert _summary(report) == _summary(expected)
    _same_metrics(report.metrics, expected.metrics)


def test_a_slower_check_that_writes_last_does_not_undo_a_newer_ones_minutes(
    warm_store: tuple[Path, datetime], tmp_path: Path
) -> None:
    """Two checks start from the same cursor; the one ending earlier, mid-minute, writes last: its partial
    last minute must not replace the newer check's whole one, which no later read rebuilds."""
    template, end = warm_store
    path = tmp_path / "state.sqlite"
    shutil.copy(template, path)
    entries, stamps, _ = _entries("db-outage")
    newer, older = end - timedelta(minutes=7, seconds=40), end - timedelta(minutes=13, seconds=20)
    with StateStore(path) as store:
        since = read_start(store, SERVICE, KEY, older - timedelta(hours=1) - BASELINE)
        reads = {
            until: [e for e, t in zip(entries, stamps, strict=True) if since <= t < until]
            for until in (newer, older)
        }
        for until in (newer, older):  # the older one's write comes second
            history = History(store, since, KEY)
            run_check(reads[until], _options(until), builtin_pack(), history=history)
    report = _warm_check(path, end)
    expected = run_check(entries, _options(end), builtin_pack()).report
    assert _summary(report) == _summary(expected)
    _same_metrics(report.metrics, expected.metrics)
