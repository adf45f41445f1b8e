"""The state store: replace a range, exactly and idempotently; refuse files it must not touch; serialise
concurrent writers; survive SIGKILL at any point of a write."""

from __future__ import annotations

import itertools
import multiprocessing
import os
import random
import shutil
import signal
import sqlite3
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from prodguardian.classify import classify
from prodguardian.errors import ProdGuardianError
from prodguardian.events import build_events
from prodguardian.rules import RulePack
from prodguardian.simulate import generate
from prodguardian.sketch import ALPHA, LatencySketch
from prodguardian.state import (
    COUNT_COLUMNS,
    ERROR_GROUP_COLUMNS,
    MAX_TEXT,
    MIGRATIONS,
    MINUTE_COLUMNS,
    REVISION_COLUMNS,
    RULE_MINUTE_COLUMNS,
    SAMPLE_COLUMNS,
    SAMPLES_PER_GROUP,
    Cursor,
    MinuteFacts,
    StateError,
    StateStore,
    default_state_path,
)

SERVICE = "emergence-app"
NS = 60 * 10**9  # a minute
BASE = 29_340_000  # a unix minute: 2025-10-14 08:00 UTC


def at(minute: int) -> datetime:
    return datetime.fromtimestamp(minute * 60, UTC)


# -- facts of a simulated scenario, made the way a producer would (test-only) ----------------------------


class Recorded:
    """A scenario's events, classified, with each row's minute: facts for any range of its minutes."""

    def __init__(self, name: str, pack: RulePack) -> None:
        events = build_events(generate(name, hours=3))
        classified = classify(events.table, pack)
        table = classified.events
        ns = table["ts"].to_numpy().astype("datetime64[ns]").astype("int64")
        self.events = table.assign(ns=ns, minute=ns // NS)
        rows = classified.matches["row"].to_numpy()
        failure = self.events["failure"].to_numpy()[rows]
        self.matches = classified.matches.assign(
            grp=classified.matches["group"].fillna(""),
            unit=np.where(failure >= 0, failure, -1 - rows),
            ns=ns[rows],
            minute=ns[rows] // NS,
            revision=self.events["revision"].to_numpy()[rows],
            message=self.events["message"].to_numpy()[rows],
            trace=self.events["trace"].to_numpy()[rows],
        ).sort_values(["ns", "row"], kind="stable")
        self.first = int(self.events["minute"].min())
        self.stop = int(self.events["minute"].max()) + 1

    def ok_latencies_ms(self, first: int, stop: int) -> np.ndarray:
        rows = self.events[(self.events["minute"] >= first) & (self.events["minute"] < stop)]
        ok = rows[(rows["kind"] == "request") & (rows["status"].fillna(0) < 500) & rows["latency_s"].notna()]
        return ok["latency_s"].to_numpy() * 1000

    def facts(self, first: int, stop: int) -> MinuteFacts:
        rows = self.events[(self.events["minute"] >= first) & (self.events["minute"] < stop)]
        matches = self.matches[(self.matches["minute"] >= first) & (self.matches["minute"] < stop)]
        status = rows["status"].fillna(0)
        request, websocket = rows["kind"] == "request", rows["kind"] == "websocket"
        marked = rows.assign(
            requests=request,
            failed_requests=request & (status >= 500),
            websocket=websocket,
            websocket_failed=websocket & (status >= 400),
            entries=True,
            echoes=False,
            suppressed=rows["suppressed_by"].notna(),
        )
        minutes = marked.groupby(["revision", "minute"])[list(COUNT_COLUMNS)].sum().astype("int64")
        sketches = []
        for (revision, minute), part in marked.groupby(["revision", "minute"]):
            timed = part[part["requests"] & part["latency_s"].notna()]
            failed = timed["failed_requests"].to_numpy()
            latency = timed["latency_s"].to_numpy() * 1000
            sketches.append(
                {
                    "revision": revision,
                    "minute": minute,
                    "latency": _sketch(latency[~failed]),
                    "failed_latency": _sketch(latency[failed]),
                }
            )
        minutes = minutes.reset_index().merge(pd.DataFrame(sketches), on=["revision", "minute"])
        minutes["last_success"] = minutes["last_request"] = pd.array([None] * len(minutes), dtype="Int64")
        keys = ["revision", "minute", "rule", "category", "grp"]
        rule_minutes = (
            matches.groupby(keys).agg(failures=("unit", "nunique"), events=("row", "size")).reset_index()
        )
        rule_minutes.insert(5, "caused_by", "")
        groups = matches.groupby(["rule", "grp"], sort=False).agg(
            first_seen=("ns", "min"), last_seen=("ns", "max"), example=("message", "first")
        )
        groups["example"] = groups["example"].fillna("")
        traffic = marked[marked["requests"] | marked["websocket"]]
        revisions = traffic.groupby("revision").agg(first_traffic=("ns", "min"), last_traffic=("ns", "max"))
        revisions = revisions.reset_index().astype({"first_traffic": "Int64", "last_traffic": "Int64"})
        revisions["created"] = pd.array([None] * len(revisions), dtype="Int64")
        samples = pd.DataFrame(
            {
                "minute": matches["minute"].to_numpy(),
                "rule": matches["rule"].to_numpy(),
                "grp": matches["grp"].to_numpy(),
                "payload": [
                    {"example": m if isinstance(m, str) else "", "trace": t, "revision": r}
                    for m, t, r in zip(matches["message"], matches["trace"], matches["revision"], strict=True)
                ],
            }
        )
        return MinuteFacts(
            minutes[list(MINUTE_COLUMNS)],
            rule_minutes[list(RULE_MINUTE_COLUMNS)],
            groups.reset_index()[list(ERROR_GROUP_COLUMNS)],
            revisions[list(REVISION_COLUMNS)],
            samples,
        )


def _sketch(values: np.ndarray) -> bytes | None:
    return LatencySketch.from_values(values).to_bytes() if len(values) else None


@pytest.fixture(scope="module")
def recorded(pack: RulePack) -> Recorded:
    return Recorded("bad-deploy", pack)


def _dump(store: StateStore, service: str = SERVICE) -> dict[str, Any]:
    """Everything the store holds for a service, as comparable values."""
    wide = (at(0), at(10**8))
    return {
        "minutes": store.minutes(service, *wide).to_dict("records"),
        "rule_minutes": store.rule_minutes(service, *wide).to_dict("records"),
        "error_groups": store.error_groups(service).to_dict("records"),
        "revisions": store.revisions(service).astype(object).to_dict("records"),
        "samples": store.samples(service).to_dict("records"),
        "coverage": store.coverage(service),
    }


# -- writing and reading ----------------------------------------------------------------------------------


def test_a_range_reads_back_as_written(tmp_path: Path, recorded: Recorded) -> None:
    facts = recorded.facts(recorded.first, recorded.stop)
    with StateStore(tmp_path / "state.sqlite") as store:
        store.replace(
            SERVICE, at(recorded.first), at(recorded.stop), facts, Cursor("live", at(recorded.stop))
        )
        minutes = store.minutes(SERVICE, at(recorded.first), at(recorded.stop))
        pd.testing.assert_frame_equal(
            minutes, facts.minutes.sort_values(["minute", "revision"], ignore_index=True), check_dtype=False
        )
        assert set(minutes["revision"]) == {"emergence-app-00297-6pr", "emergence-app-00298-xyz"}
        groups = store.error_groups(SERVICE).set_index("rule")
        assert groups.loc["unknown-error", "grp"] == "KeyError: 'thread_id'"
        assert groups.loc["unknown-error", "count"] == 12
        assert groups.loc["unknown-error", "revisions"] == ["emergence-app-00298-xyz"]
        assert store.coverage(SERVICE) == [(at(recorded.first), at(recorded.stop))]
        assert store.cursor("live") == at(recorded.stop)
        assert store.cursor("other") is None
        # The stored sketches answer for any range as the raw latencies do, within 2%.
        window = (recorded.stop - 60, recorded.stop)
        merged = LatencySketch.merged(store.minutes(SERVICE, at(window[0]), at(window[1]))["latency"])
        exact = recorded.ok_latencies_ms(*window)
        assert merged.count == len(exact) > 100
        for q in (0.5, 0.95, 0.99):
            assert merged.quantile(q) == pytest.approx(np.quantile(exact, q), rel=ALPHA)


def test_replacing_the_same_range_again_changes_nothing(tmp_path: Path, recorded: Recorded) -> None:
    facts = recorded.facts(recorded.first, recorded.stop)
    with StateStore(tmp_path / "state.sqlite") as store:
        store.replace(SERVICE, at(recorded.first), at(recorded.stop), facts)
        once = _dump(store)
        store.replace(SERVICE, at(recorded.first), at(recorded.stop), facts)
        assert _dump(store) == once


@pytest.mark.parametrize("cuts", [(30,), (1, 59, 100, 179), (45, 46, 90, 150)])
def test_reading_in_pieces_with_a_lateness_margin_stores_what_one_read_does(
    tmp_path: Path, recorded: Recorded, cuts: tuple[int, ...]
) -> None:
    """Each piece re-reads the 2 minutes before its start, as a warm check does: nothing counts twice."""
    first, stop = recorded.first, recorded.stop
    with StateStore(tmp_path / "whole.sqlite") as store:
        store.replace(SERVICE, at(first), at(stop), recorded.facts(first, stop), Cursor("live", at(stop)))
        whole = _dump(store)
    bounds = [first, *(first + c for c in cuts), stop]
    with StateStore(tmp_path / "pieces.sqlite") as store:
        for a, b in itertools.pairwise(bounds):
            a = max(first, a - 2)
            store.replace(SERVICE, at(a), at(b), recorded.facts(a, b), Cursor("live", at(b)))
        assert _dump(store) == whole
        assert store.cursor("live") == at(stop)


def test_missing_ranges_are_what_a_check_must_read(tmp_path: Path) -> None:
    with StateStore(tmp_path / "state.sqlite") as store:
        for a, b in ((BASE, BASE + 10), (BASE + 20, BASE + 30), (BASE + 30, BASE + 40)):
            store.replace(SERVICE, at(a), at(b), MinuteFacts())
        assert store.coverage(SERVICE) == [(at(BASE), at(BASE + 10)), (at(BASE + 20), at(BASE + 40))]
        assert store.missing(SERVICE, at(BASE - 5), at(BASE + 50)) == [
            (at(BASE - 5), at(BASE)),
            (at(BASE + 10), at(BASE + 20)),
            (at(BASE + 40), at(BASE + 50)),
        ]
        assert store.missing(SERVICE, at(BASE + 2), at(BASE + 8)) == []
        assert store.missing("other", at(BASE), at(BASE + 1)) == [(at(BASE), at(BASE + 1))]


def test_samples_keep_the_newest_of_each_group(tmp_path: Path) -> None:
    def samples(minutes: range, grp: str) -> MinuteFacts:
        frame = pd.DataFrame(
            [(m, "unknown-error", grp, {"example": f"{grp} at {m}"}) for m in minutes], columns=SAMPLE_COLUMNS
        )
        return MinuteFacts(samples=frame)

    with StateStore(tmp_path / "state.sqlite", samples_per_group=3) as store:
        store.replace(SERVICE, at(BASE), at(BASE + 10), samples(range(BASE, BASE + 10), "A"))
        store.replace(SERVICE, at(BASE + 20), at(BASE + 25), samples(range(BASE + 20, BASE + 25), "A"))
        store.replace(SERVICE, at(BASE + 30), at(BASE + 32), samples(range(BASE + 30, BASE + 32), "B"))
        store.replace(SERVICE, at(BASE), at(BASE + 10), samples(range(BASE, BASE + 10), "A"))  # older again
        kept = store.samples(SERVICE)
    assert [(g, m - BASE) for g, m in zip(kept["grp"], kept["minute"], strict=True)] == [
        ("B", 31),
        ("B", 30),
        ("A", 24),
        ("A", 23),
        ("A", 22),
    ]
    assert kept["payload"].iloc[0] == {"example": "B at 29340031"}


def test_error_groups_and_revisions_merge_across_reads(tmp_path: Path) -> None:
    def read(first: int, seen: tuple[int, int], example: str, created: int | None) -> MinuteFacts:
        return MinuteFacts(
            rule_minutes=pd.DataFrame(
                [("rev-2", first, "db", "database", "", "", 2, 5)], columns=RULE_MINUTE_COLUMNS
            ),
            error_groups=pd.DataFrame([("db", "", *seen, example)], columns=ERROR_GROUP_COLUMNS),
            revisions=pd.DataFrame(
                {
                    "revision": ["rev-2"],
                    "first_traffic": pd.array([seen[0]], dtype="Int64"),
                    "last_traffic": pd.array([seen[1]], dtype="Int64"),
                    "created": pd.array([created], dtype="Int64"),
                }
            ),
        )

    with StateStore(tmp_path / "state.sqlite") as store:
        store.replace(SERVICE, at(BASE + 60), at(BASE + 120), read(BASE + 60, (70, 80), "later", None))
        store.replace(SERVICE, at(BASE), at(BASE + 60), read(BASE, (10, 20), "first", 5))
        group = store.error_groups(SERVICE).iloc[0]
        revision = store.revisions(SERVICE).iloc[0]
    assert (group["first_seen"], group["last_seen"], group["example"], group["count"]) == (10, 80, "first", 4)
    assert (revision["first_traffic"], revision["last_traffic"], revision["created"]) == (10, 80, 5)


def test_hours_of_the_day_follow_the_local_clock_across_daylight_saving(tmp_path: Path) -> None:
    """Paris leaves summer time at 01:00 UTC on 2025-10-26: local 02:00 happens twice, as two hours."""
    start = int(datetime(2025, 10, 25, 22, tzinfo=UTC).timestamp()) // 60
    quiet = start + 180  # an hour with no traffic, still covered: a row of zeros
    traffic = [m for m in range(start, start + 360) if not quiet <= m < quiet + 60]
    rows = [("rev", m, 2, 1, 0, 0, 3, 0, 0, None, None, None, None) for m in traffic]
    rules = [("rev", m, "db", "database", "", "", 1, 2) for m in traffic[::10]]
    facts = MinuteFacts(
        pd.DataFrame(rows, columns=MINUTE_COLUMNS), pd.DataFrame(rules, columns=RULE_MINUTE_COLUMNS)
    )
    with StateStore(tmp_path / "state.sqlite") as store:
        store.replace(SERVICE, at(start), at(start + 360), facts)
        paris = store.hourly(SERVICE, at(start - 60), at(start + 420), tz="Europe/Paris")
        india = store.hourly(SERVICE, at(start), at(start + 360), tz="Asia/Kolkata")
        utc_rules = store.hourly_rules(SERVICE, at(start), at(start + 360))
    assert paris["hour_of_day"].tolist() == [0, 1, 2, 2, 3, 4]
    assert paris["weekday"].tolist() == [6] * 6  # Sunday in Paris, though it starts on Saturday in UTC
    assert paris["covered_minutes"].tolist() == [60] * 6
    assert paris["requests"].tolist() == [120, 120, 120, 0, 120, 120]
    assert paris["failed_requests"].sum() == len(traffic)
    assert [h % 60 for h in india["hour"]] == [30] * 7  # India is 5 h 30 from UTC
    assert india["covered_minutes"].tolist() == [30, 60, 60, 60, 60, 60, 30]
    assert india["requests"].sum() == 2 * len(traffic)
    assert utc_rules["hour_of_day"].tolist() == [22, 23, 0, 2, 3]  # none in the quiet hour
    assert utc_rules["failures"].sum() == len(traffic[::10])


def test_info_prune_and_reset(tmp_path: Path) -> None:
    old, recent = BASE, BASE + 40 * 1440
    path = tmp_path / "state.sqlite"
    with StateStore(path) as store:
        for first, revision in ((old, "rev-1"), (recent, "rev-2")):
            rows = [
                (revision, m, 1, 0, 0, 0, 1, 0, 0, b"\x01\x01\x00\x00\x05", None, None, None)
                for m in range(first, first + 2880)
            ]
            groups = pd.DataFrame([(revision, "", first * NS, first * NS, "x")], columns=ERROR_GROUP_COLUMNS)
            revisions = pd.DataFrame(
                {
                    "revision": [revision],
                    "first_traffic": pd.array([first * NS], dtype="Int64"),
                    "last_traffic": pd.array([(first + 2879) * NS], dtype="Int64"),
                    "created": pd.array([None], dtype="Int64"),
                }
            )
            facts = MinuteFacts(
                pd.DataFrame(rows, columns=MINUTE_COLUMNS), error_groups=groups, revisions=revisions
            )
            store.replace(
                SERVICE, at(first), at(first + 2880), facts, Cursor(f"read {revision}", at(first + 2880))
            )
        info = store.info()
        assert info.path == path and info.schema_version == len(MIGRATIONS) and info.size_bytes > 0
        [service] = info.services
        assert (service.service, service.minute_rows, service.revisions, service.error_groups) == (
            SERVICE,
            5760,
            2,
            2,
        )
        assert service.ranges == [(at(old), at(old + 2880)), (at(recent), at(recent + 2880))]
        assert [c.key for c in info.cursors] == ["read rev-1", "read rev-2"]

        now = at(recent + 2880)
        horizon = at(recent + 2880 - 35 * 1440)
        pruned = store.prune(timedelta(days=35), now=now, vacuum=True)
        assert pruned.horizon == horizon
        assert pruned.rows == {
            "minutes": 2880,
            "rule_minutes": 0,
            "samples": 0,
            "failure_minutes": 0,
            "folded_minutes": 0,
            "template_minutes": 0,
            "coverage": 1,
            "error_groups": 1,
            "revisions": 1,
            "cursors": 0,  # cursors age by when they were last written, and both were just now
            "alerts": 0,
            "notification_log": 0,
            "silences": 0,
            "outbox": 0,
        }
        assert pruned.freed_bytes is not None and pruned.freed_bytes > 0
        assert store.coverage(SERVICE) == [(at(recent), at(recent + 2880))]
        assert store.revisions(SERVICE)["revision"].tolist() == ["rev-2"]
        assert store.error_groups(SERVICE)[["rule", "count", "revisions"]].values.tolist() == [
            ["rev-2", 0, []]
        ]
        assert store.prune(timedelta(days=1), now=at(recent + 1440 + 100)).rows["minutes"] == 100
        assert store.coverage(SERVICE) == [(at(recent + 100), at(recent + 2880))]

        store.reset()
        assert store.info().services == [] and store.info().cursors == []
    with StateStore(path) as store:
        assert store.schema_version == len(MIGRATIONS)


def test_log_data_is_stored_as_data(tmp_path: Path) -> None:
    hostile = "x'); DROP TABLE minutes; --"
    rules = pd.DataFrame([("r", BASE, hostile, "c", '"; DELETE', "", 1, 1)], columns=RULE_MINUTE_COLUMNS)
    groups = pd.DataFrame(
        [(hostile, '"; DELETE', 1, 1, "\x1b[31m" + "é" * 10**6)], columns=ERROR_GROUP_COLUMNS
    )
    samples = pd.DataFrame(
        [
            (
                BASE,
                hostile,
                '"; DELETE',
                {"example": "a" * 10**6, "nested": [{"deep": "b" * 10**5}], "n": np.int64(4)},
            )
        ],
        columns=SAMPLE_COLUMNS,
    )
    with StateStore(tmp_path / "state.sqlite") as store:
        store.replace(
            hostile,
            at(BASE),
            at(BASE + 1),
            MinuteFacts(rule_minutes=rules, error_groups=groups, samples=samples),
        )
        [group] = store.error_groups(hostile).to_dict("records")
        [sample] = store.samples(hostile)["payload"]
        assert store.rule_minutes(hostile, at(BASE), at(BASE + 1))["rule"].tolist() == [hostile]
        assert store.info().services[0].service == hostile
    assert (group["rule"], group["grp"], group["count"]) == (hostile, '"; DELETE', 1)
    assert len(group["example"]) == MAX_TEXT and group["example"].startswith("\x1b[31mé")
    assert len(sample["example"]) == MAX_TEXT and len(sample["nested"][0]["deep"]) == MAX_TEXT
    assert sample["n"] == 4


def _broken(**changes: Any) -> MinuteFacts:
    row = {c: 0 for c in MINUTE_COLUMNS} | {
        "revision": "r",
        "minute": BASE,
        "latency": None,
        "failed_latency": None,
        "last_success": None,
        "last_request": None,
    }
    return MinuteFacts(minutes=pd.DataFrame([row | changes], columns=MINUTE_COLUMNS))


@pytest.mark.parametrize(
    ("facts", "message"),
    [
        (MinuteFacts(minutes=pd.DataFrame({"minute": [BASE]})), "has the columns"),
        (_broken(requests=-1), "requests must not be negative"),
        (_broken(requests=1.5), "requests must hold integers"),
        (_broken(minute=BASE + 60), "outside the replaced range"),
        (_broken(revision=None), "revision holds NoneType"),
        (_broken(latency=b"\x09garbage"), "latency: not a latency sketch"),
        (_broken(latency="a string"), "not an encoded LatencySketch"),
        (MinuteFacts(minutes=pd.concat([_broken().minutes] * 2)), r"holds a \(minute, revision\) twice"),
        (MinuteFacts(samples=pd.DataFrame([(BASE, "r", "", [1])], columns=SAMPLE_COLUMNS)), "not a dict"),
        (
            MinuteFacts(samples=pd.DataFrame([(BASE, "r", "", {"t": object()})], columns=SAMPLE_COLUMNS)),
            "not JSON",
        ),
    ],
)
def test_malformed_facts_are_refused_before_anything_is_written(
    tmp_path: Path, facts: MinuteFacts, message: str
) -> None:
    with StateStore(tmp_path / "state.sqlite") as store:
        with pytest.raises(ValueError, match=message):
            store.replace(SERVICE, at(BASE), at(BASE + 60), facts)
        assert store.coverage(SERVICE) == []


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        (datetime(2025, 10, 14, 8), datetime(2025, 10, 14, 9), "no time zone"),
        (at(BASE) + timedelta(seconds=30), at(BASE + 5), "not a whole minute"),
        (at(BASE + 5), at(BASE), "ends .* before it starts"),
    ],
)
def test_range_bounds_are_whole_aware_minutes(
    tmp_path: Path, start: datetime, end: datetime, message: str
) -> None:
    with StateStore(tmp_path / "state.sqlite") as store, pytest.raises(ValueError, match=message):
        store.replace(SERVICE, start, end, MinuteFacts())


# -- where the file lives, and files it must not touch ---------------------------------------------------


def test_the_default_file_is_in_the_users_state_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = default_state_path()
    assert path.name == "state.sqlite" and path.parent.name == "prodguardian"
    assert path.parent.parent.name != "prodguardian"  # not %LOCALAPPDATA%\prodguardian\prodguardian
    if sys.platform.startswith("linux"):
        monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
        assert default_state_path() == tmp_path / "xdg" / "prodguardian" / "state.sqlite"


def test_opening_creates_the_folder_and_the_file(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "state.sqlite"
    with StateStore(path) as store:
        assert store.schema_version == len(MIGRATIONS)
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA application_id").fetchone()[0] == int.from_bytes(b"PGRD", "big")
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    raw.close()
    (tmp_path / "empty.sqlite").touch()  # an empty file is a new store
    StateStore(tmp_path / "empty.sqlite").close()


def _foreign_id(path: Path, _: Recorded) -> None:
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA application_id = 305419896")
    raw.execute("CREATE TABLE notes (text TEXT)")
    raw.commit()
    raw.close()


def _tables_no_id(path: Path, _: Recorded) -> None:
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE minutes (minute INTEGER)")
    raw.commit()
    raw.close()


def _newer(path: Path, _: Recorded) -> None:
    StateStore(path).close()
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA user_version = 9")
    raw.commit()
    raw.close()


def _store_with_data(path: Path, recorded: Recorded) -> None:
    with StateStore(path) as store:
        store.replace(
            SERVICE, at(recorded.first), at(recorded.stop), recorded.facts(recorded.first, recorded.stop)
        )


def _overwrite(path: Path, offset: int, data: bytes) -> None:
    with path.open("r+b") as file:
        file.seek(offset)
        file.write(data)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda p, r: p.write_text('[{"logName": "not a database"}]'),
            "not a SQLite database, so not a ProdGuardian",
        ),
        (_foreign_id, r"another application \(application_id 0x12345678\)"),
        (_tables_no_id, r"another application \(tables but no ProdGuardian id\)"),
        (
            _newer,
            rf"written by a newer ProdGuardian \(schema 9, this one knows {len(MIGRATIONS)}\):"
            " upgrade prodguardian",
        ),
        (
            lambda p, r: (_store_with_data(p, r), _overwrite(p, p.stat().st_size // 2, b"\xff" * 4096)),
            r"corrupt \(.+\): move it away to start a new one",
        ),
        (
            lambda p, r: (_store_with_data(p, r), os.truncate(p, p.stat().st_size // 2)),
            r"corrupt \(.+\): move it away",
        ),
        (lambda p, r: (_store_with_data(p, r), _overwrite(p, 100, os.urandom(400))), r"corrupt \(.+\)"),
    ],
    ids=[
        "not-sqlite",
        "other-application",
        "tables-without-id",
        "newer",
        "overwritten",
        "truncated",
        "page-one",
    ],
)
def test_a_file_that_is_not_a_usable_store_is_one_clear_error_and_left_as_it_was(
    tmp_path: Path, recorded: Recorded, make: Callable[[Path, Recorded], object], message: str
) -> None:
    path = tmp_path / "state.sqlite"
    make(path, recorded)
    before = path.read_bytes()
    with pytest.raises(StateError, match=message) as caught:
        StateStore(path)
    assert isinstance(caught.value, ProdGuardianError)  # the CLI's exit 3
    assert caught.value.where == str(path)
    assert "\n" not in str(caught.value) and str(caught.value).startswith(f"{path}: ")
    assert path.read_bytes() == before  # never reset, never "repaired"


def test_a_folder_where_the_file_should_be(tmp_path: Path) -> None:
    (tmp_path / "state.sqlite").mkdir()
    with pytest.raises(StateError, match="cannot open the state store"):
        StateStore(tmp_path / "state.sqlite")


# -- migrations -------------------------------------------------------------------------------------------

CPU_COLUMN = ("ALTER TABLE minutes ADD COLUMN cpu_ms INTEGER NOT NULL DEFAULT 0",)


def test_a_file_migrates_to_the_next_schema_keeping_its_facts(tmp_path: Path, recorded: Recorded) -> None:
    path = tmp_path / "state.sqlite"
    _store_with_data(path, recorded)
    with StateStore(path) as store:
        before = _dump(store)
    with StateStore(path, migrations=(*MIGRATIONS, CPU_COLUMN)) as store:
        assert store.schema_version == len(MIGRATIONS) + 1
        assert _dump(store) == before
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS) + 1
    assert raw.execute("SELECT count(*), sum(cpu_ms) FROM minutes").fetchone() == (len(before["minutes"]), 0)
    raw.close()
    with pytest.raises(StateError, match=rf"schema {len(MIGRATIONS) + 1}, this one knows {len(MIGRATIONS)}"):
        StateStore(path)


def test_a_schema_1_file_gains_the_later_tables(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    StateStore(path, migrations=MIGRATIONS[:1]).close()
    raw = sqlite3.connect(path)
    raw.execute("INSERT INTO minutes VALUES ('svc', ?, 'rev', 3, 0, 0, 0, 3, 0, 0, NULL, NULL)", (BASE,))
    raw.commit()
    raw.close()
    with StateStore(path) as store:
        assert store.schema_version == len(MIGRATIONS) == 5
        assert store.minutes("svc", at(BASE), at(BASE + 1))["requests"].tolist() == [3]
        assert store.failure_minutes("svc", at(BASE), at(BASE + 1)).empty
        assert store.folded_minutes("svc", at(BASE), at(BASE + 1)).empty
        assert store.read_tail("logging:p:*:svc") is None


def test_a_failed_migration_leaves_the_file_as_it_was(tmp_path: Path, recorded: Recorded) -> None:
    path = tmp_path / "state.sqlite"
    _store_with_data(path, recorded)
    with StateStore(path) as store:
        v1 = _dump(store)
    broken = ("ALTER TABLE minutes ADD COLUMN cpu_ms INTEGER", "CREATE TABLE minutes (minute INTEGER)")
    with pytest.raises(
        StateError,
        match=rf"migration to schema {len(MIGRATIONS) + 1} failed \(.*already exists\);"
        " the file is unchanged",
    ):
        StateStore(path, migrations=(*MIGRATIONS, broken))
    with StateStore(path) as store:
        assert store.schema_version == len(MIGRATIONS)
        assert _dump(store) == v1
    raw = sqlite3.connect(path)
    assert "cpu_ms" not in [row[1] for row in raw.execute("PRAGMA table_info(minutes)")]
    raw.close()


# -- concurrency and crashes ------------------------------------------------------------------------------


def _facts_of(first: int, stop: int, value: Callable[[int], int], tag: int = 0) -> MinuteFacts:
    """Facts whose every number is `value(minute)`: any torn or doubled write shows."""
    minutes = range(first, stop)
    rows = [("rev", m, value(m), 0, 0, 0, value(m), 0, 0, None, None, m * NS, m * NS) for m in minutes]
    rules = [("rev", m, "db", "database", "", "", value(m), value(m)) for m in minutes]
    samples = [(m, "db", "", {"value": value(m), "tag": tag}) for m in minutes]
    group = [("db", "", first * NS, stop * NS, f"tag {tag}")]
    return MinuteFacts(
        pd.DataFrame(rows, columns=MINUTE_COLUMNS),
        pd.DataFrame(rules, columns=RULE_MINUTE_COLUMNS),
        pd.DataFrame(group, columns=ERROR_GROUP_COLUMNS),
        samples=pd.DataFrame(samples, columns=SAMPLE_COLUMNS),
    )


def _by_minute(minute: int) -> int:
    return minute % 7 + 1


def _overlapping_writer(path: str, worker: int, rounds: int, ready: Any) -> None:
    ready.wait()
    with StateStore(path) as store:
        for k in range(rounds):
            first = BASE + (5 * k + 11 * worker) % 60
            store.replace(
                SERVICE,
                at(first),
                at(first + 20),
                _facts_of(first, first + 20, _by_minute),
                Cursor("live", at(first + 20)),
            )


def test_two_processes_writing_overlapping_ranges_serialise(tmp_path: Path) -> None:
    """Both open a new file at once, then replace overlapping ranges: no update lost, none counted twice."""
    path = tmp_path / "state.sqlite"
    ready = multiprocessing.Barrier(2)
    workers = [
        multiprocessing.Process(target=_overlapping_writer, args=(str(path), w, 25, ready)) for w in (0, 1)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert [w.exitcode for w in workers] == [0, 0]
    ranges = [BASE + (5 * k + 11 * w) % 60 for w in (0, 1) for k in range(25)]
    low, high = min(ranges), max(ranges) + 20
    with StateStore(path) as store:
        minutes = store.minutes(SERVICE, at(low), at(high))
        assert minutes["minute"].tolist() == list(range(low, high))
        assert minutes["requests"].tolist() == [_by_minute(m) for m in range(low, high)]
        assert store.coverage(SERVICE) == [(at(low), at(high))]
        assert store.error_groups(SERVICE)["count"].tolist() == [sum(map(_by_minute, range(low, high)))]
        assert store.cursor("live") == at(high)


def _generation(g: int) -> tuple[int, int]:
    first = BASE + (7 * g) % 40
    return first, first + 20


def _write_generation(store: StateStore, g: int) -> None:
    first, stop = _generation(g)
    store.replace(
        SERVICE,
        at(first),
        at(stop),
        _facts_of(first, stop, lambda _: g, g),
        Cursor("live", at(BASE) + timedelta(seconds=g)),
    )


def _generations_forever(path: str, start: int, started: Any) -> None:
    with StateStore(path) as store:
        for g in range(start, 10**9):
            _write_generation(store, g)
            started.set()


def _count_steps(store: StateStore, on_step: Callable[[int], None]) -> None:
    """Call `on_step` with the number of SQLite instructions run so far, at each one of the write."""
    steps = [0]

    def step() -> int:
        steps[0] += 1
        on_step(steps[0])
        return 0

    store._db.set_progress_handler(step, 1)  # SQLite restarts its own count at each statement


def _killed_at(path: str, kill_at: int) -> None:
    with StateStore(path) as store:
        _count_steps(store, lambda n: os.kill(os.getpid(), signal.SIGKILL) if n == kill_at else None)
        _write_generation(store, 2)


def _check_whole_generations(path: Path) -> int:
    """The file opens; every generation up to the cursor's is there whole, nothing of a later one."""
    with StateStore(path) as store:
        cursor = store.cursor("live")
        g = 0 if cursor is None else round((cursor - at(BASE)).total_seconds())
        minutes = store.minutes(SERVICE, at(BASE), at(BASE + 100))
        rules = store.rule_minutes(SERVICE, at(BASE), at(BASE + 100))
        coverage = store.coverage(SERVICE)
        groups = store.error_groups(SERVICE)
        samples = store.samples(SERVICE)
    first, stop = _generation(g)
    latest = minutes[(minutes["minute"] >= first) & (minutes["minute"] < stop)]
    assert latest["requests"].tolist() == [g] * 20
    assert minutes["requests"].max() == g
    joined = minutes.merge(rules, on=["revision", "minute"], validate="one_to_one")
    assert (joined["requests"] == joined["failures"]).all()  # one transaction wrote both
    covered = sorted({m for k in range(1, g + 1) for m in range(*_generation(k))})
    assert coverage == [(at(covered[0]), at(covered[-1] + 1))]
    assert minutes["minute"].tolist() == covered
    assert groups["count"].tolist() == [int(rules["failures"].sum())]
    # The newest minutes keep a sample, each written with its minute's row.
    assert samples["minute"].tolist() == covered[::-1][:SAMPLES_PER_GROUP]
    by_minute = dict(zip(minutes["minute"], minutes["requests"], strict=True))
    assert all(p["value"] == by_minute[m] for m, p in zip(samples["minute"], samples["payload"], strict=True))
    return g


posix_only = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="SIGKILL is POSIX")


@posix_only
def test_a_write_killed_at_any_step_leaves_the_old_facts_or_the_new(tmp_path: Path) -> None:
    fork = multiprocessing.get_context("fork")
    template = tmp_path / "generation-1.sqlite"
    with StateStore(template) as store:
        _write_generation(store, 1)
    counted = tmp_path / "counted.sqlite"
    shutil.copy(template, counted)
    steps = [0]
    with StateStore(counted) as store:
        _count_steps(store, lambda n: steps.__setitem__(0, n))
        _write_generation(store, 2)
    total = steps[0]
    assert total > 1000
    outcomes = []
    for kill_at in (
        1,
        total // 10,
        total // 3,
        total // 2,
        2 * total // 3,
        9 * total // 10,
        total - 3,
        total,
    ):
        path = tmp_path / f"killed-{kill_at}.sqlite"
        shutil.copy(template, path)
        child = fork.Process(target=_killed_at, args=(str(path), kill_at))
        child.start()
        child.join(60)
        assert child.exitcode == -signal.SIGKILL
        outcomes.append(_check_whole_generations(path))
    assert outcomes[:-2] == [1] * 6  # killed before the commit: the old facts, whole


@posix_only
def test_a_writer_killed_at_random_moments_never_leaves_half_a_write(tmp_path: Path) -> None:
    fork = multiprocessing.get_context("fork")
    path = tmp_path / "state.sqlite"
    moments = random.Random(11)
    written = 0
    for _ in range(5):
        started = fork.Event()
        child = fork.Process(target=_generations_forever, args=(str(path), written + 1, started))
        child.start()
        assert started.wait(60)
        time.sleep(moments.uniform(0, 0.05))  # where the kill lands, not a condition of the test
        os.kill(child.pid or 0, signal.SIGKILL)  # mid-transaction, mid-commit or between two
        child.join(60)
        g = _check_whole_generations(path)
        assert g > written
        written = g
    assert written >= 5


def test_a_writer_waits_for_another_and_says_so_when_it_waits_too_long(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    StateStore(path).close()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with StateStore(path, busy_timeout=0.1) as store:
            assert store.coverage(SERVICE) == []  # readers never wait
            with pytest.raises(StateError, match=r"locked by another process for more than 0.1 s"):
                store.replace(SERVICE, at(BASE), at(BASE + 1), MinuteFacts())
    finally:
        other.execute("ROLLBACK")
        other.close()
    with StateStore(path) as store:
        store.replace(SERVICE, at(BASE), at(BASE + 1), MinuteFacts())
        assert store.coverage(SERVICE) == [(at(BASE), at(BASE + 1))]


def test_a_schema_2_file_gains_the_template_minutes_and_last_times(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    StateStore(path, migrations=MIGRATIONS[:2]).close()
    raw = sqlite3.connect(path)
    raw.execute("INSERT INTO minutes VALUES ('svc', ?, 'rev', 3, 0, 0, 0, 3, 0, 0, NULL, NULL)", (BASE,))
    raw.commit()
    raw.close()
    with StateStore(path) as store:
        minutes = store.minutes("svc", at(BASE), at(BASE + 1))
        assert minutes["requests"].tolist() == [3] and minutes[["last_success", "last_request"]].isna().all(
            axis=None
        )
        assert store.template_minutes("svc", at(BASE), at(BASE + 1)).empty
