"""The state store: what checks have read, per service, revision and minute, kept in one SQLite file.

Writes replace a range: `StateStore.replace` deletes a service's facts in the minutes [start, end), inserts
the new ones, extends the coverage and moves the read cursor in one `BEGIN IMMEDIATE` transaction, so two
processes serialise, a killed one leaves the old facts or the new ones, and writing the same range twice
leaves what writing it once did. In frames, `minute` is a unix minute and instants are ns since the epoch
(UTC); in arguments, times are aware datetimes and range bounds are whole minutes.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import sys
import time
import zlib
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import platformdirs

from prodguardian.errors import ProdGuardianError
from prodguardian.sketch import LatencySketch

APPLICATION_ID = int.from_bytes(b"PGRD", "big")
DEFAULT_BUSY_TIMEOUT = 30.0
DEFAULT_RETENTION = timedelta(days=35)
SAMPLES_PER_GROUP = 60  # one sample per minute a group failed in: an hour of its evidence
MAX_TEXT = 2000  # characters kept of any one string of a sample or an example: log lines can be huge
_NS_PER_MINUTE = 60_000_000_000
# Every time zone is a whole number of quarter hours from UTC, so SQLite sums minutes per quarter hour and
# each quarter still falls in one local hour: 15 times fewer rows cross into Python.
_QUARTER = 15
_QUARTER_OF_MINUTE = f"minute / {_QUARTER} * {_QUARTER}"
_SQLITE_MAGIC = b"SQLite format 3\x00"

MINUTE_COLUMNS = (
    "revision",
    "minute",
    "requests",
    "failed_requests",
    "websocket",
    "websocket_failed",
    "entries",
    "echoes",
    "suppressed",
    "latency",
    "failed_latency",
    "last_success",  # ns: the minute's last request or session that succeeded began then (recovered bursts)
    "last_request",  # ns: the minute's last request or session began then (silence)
)
RULE_MINUTE_COLUMNS = ("revision", "minute", "rule", "category", "grp", "caused_by", "failures", "events")
ERROR_GROUP_COLUMNS = ("rule", "grp", "first_seen", "last_seen", "example")
REVISION_COLUMNS = ("revision", "first_traffic", "last_traffic", "created")
SAMPLE_COLUMNS = ("minute", "rule", "grp", "payload")
# Distinct failures per category ("" for every category): a failure matched by rules of two categories
# counts once in "" and once in each category, so rates and error counts need no failure ids.
FAILURE_MINUTE_COLUMNS = ("revision", "minute", "category", "failures")
FOLDED_MINUTE_COLUMNS = ("minute", "reason", "entries")  # entries folded away: merged, duplicates...
TEMPLATE_MINUTE_COLUMNS = ("minute", "template_id", "failures")  # unknown errors' failures per template
COUNT_COLUMNS = MINUTE_COLUMNS[2:9]
# What each column holds, wherever it appears: a column name means one thing in every table.
_KINDS = {
    **dict.fromkeys(("revision", "rule", "category", "grp", "caused_by", "reason", "template_id"), "text"),
    "example": "line",
    **dict.fromkeys((*COUNT_COLUMNS, "failures", "events", "entries"), "count"),
    **dict.fromkeys(("minute", "first_seen", "last_seen"), "integer"),
    **dict.fromkeys(("first_traffic", "last_traffic", "created", "last_success", "last_request"), "integer?"),
    **dict.fromkeys(("latency", "failed_latency"), "sketch?"),
    "payload": "json",
}
_DTYPES = {
    "text": "object",
    "line": "object",
    "count": "int64",
    "integer": "int64",
    "integer?": "Int64",
    "sketch?": "object",
    "json": "object",
}

# Each migration takes the schema from its position in the list to the next; never edit a released one.
Migration = tuple[str, ...]
_SCHEMA_V1: Migration = (
    """CREATE TABLE minutes (
        service TEXT NOT NULL, minute INTEGER NOT NULL, revision TEXT NOT NULL,
        requests INTEGER NOT NULL, failed_requests INTEGER NOT NULL,
        websocket INTEGER NOT NULL, websocket_failed INTEGER NOT NULL,
        entries INTEGER NOT NULL, echoes INTEGER NOT NULL, suppressed INTEGER NOT NULL,
        latency BLOB, failed_latency BLOB,
        PRIMARY KEY (service, minute, revision)) WITHOUT ROWID""",
    """CREATE TABLE rule_minutes (
        service TEXT NOT NULL, minute INTEGER NOT NULL, revision TEXT NOT NULL,
        rule TEXT NOT NULL, category TEXT NOT NULL, grp TEXT NOT NULL, caused_by TEXT NOT NULL,
        failures INTEGER NOT NULL, events INTEGER NOT NULL,
        PRIMARY KEY (service, minute, revision, rule, grp, caused_by)) WITHOUT ROWID""",
    """CREATE TABLE error_groups (
        service TEXT NOT NULL, fingerprint TEXT NOT NULL, rule TEXT NOT NULL, grp TEXT NOT NULL,
        first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL, example TEXT NOT NULL,
        PRIMARY KEY (service, fingerprint)) WITHOUT ROWID""",
    """CREATE TABLE revisions (
        service TEXT NOT NULL, revision TEXT NOT NULL,
        first_traffic INTEGER, last_traffic INTEGER, created INTEGER,
        PRIMARY KEY (service, revision)) WITHOUT ROWID""",
    """CREATE TABLE samples (
        service TEXT NOT NULL, minute INTEGER NOT NULL, rule TEXT NOT NULL, grp TEXT NOT NULL,
        payload TEXT NOT NULL)""",
    """CREATE TABLE coverage (
        service TEXT NOT NULL, start_minute INTEGER NOT NULL, end_minute INTEGER NOT NULL,
        PRIMARY KEY (service, start_minute)) WITHOUT ROWID""",
    """CREATE TABLE cursors (
        query_key TEXT PRIMARY KEY, read_until INTEGER NOT NULL, updated INTEGER NOT NULL) WITHOUT ROWID""",
)
_FAILURES_AND_FOLDED: Migration = (
    """CREATE TABLE failure_minutes (
        service TEXT NOT NULL, minute INTEGER NOT NULL, revision TEXT NOT NULL, category TEXT NOT NULL,
        failures INTEGER NOT NULL,
        PRIMARY KEY (service, minute, revision, category)) WITHOUT ROWID""",
    """CREATE TABLE folded_minutes (
        service TEXT NOT NULL, minute INTEGER NOT NULL, reason TEXT NOT NULL, entries INTEGER NOT NULL,
        PRIMARY KEY (service, minute, reason)) WITHOUT ROWID""",
)
_TEMPLATES_AND_LAST_SUCCESS: Migration = (
    """CREATE TABLE template_minutes (
        service TEXT NOT NULL, minute INTEGER NOT NULL, template_id TEXT NOT NULL, failures INTEGER NOT NULL,
        PRIMARY KEY (service, minute, template_id)) WITHOUT ROWID""",
    "ALTER TABLE minutes ADD COLUMN last_success INTEGER",
    "ALTER TABLE minutes ADD COLUMN last_request INTEGER",
)
# The alert lifecycle's state (prodguardian.alert_state): instants in ns since the epoch, JSON as text.
_ALERTS: Migration = (
    """CREATE TABLE alerts (
        alert TEXT PRIMARY KEY, service TEXT NOT NULL, rule TEXT NOT NULL, category TEXT NOT NULL,
        revision TEXT, state TEXT NOT NULL, severity TEXT NOT NULL, title TEXT NOT NULL,
        since INTEGER NOT NULL, changed INTEGER NOT NULL, last_seen INTEGER NOT NULL,
        evaluated INTEGER NOT NULL, runs INTEGER NOT NULL, firing_since INTEGER, notified INTEGER)
        WITHOUT ROWID""",
    """CREATE TABLE notification_log (
        at INTEGER NOT NULL, notification TEXT NOT NULL, alert TEXT NOT NULL, event TEXT NOT NULL,
        outcome TEXT NOT NULL, detail TEXT NOT NULL, logged INTEGER NOT NULL)""",
    """CREATE TABLE silences (
        id TEXT PRIMARY KEY, matchers TEXT NOT NULL, ends INTEGER NOT NULL, reason TEXT NOT NULL,
        created INTEGER NOT NULL, expired INTEGER) WITHOUT ROWID""",
    """CREATE TABLE outbox (
        notification TEXT NOT NULL, channel TEXT NOT NULL, payload TEXT NOT NULL, alert TEXT NOT NULL,
        queued INTEGER NOT NULL, tries INTEGER NOT NULL, next_try INTEGER NOT NULL, last_error TEXT,
        state TEXT NOT NULL, PRIMARY KEY (notification, channel)) WITHOUT ROWID""",
)
# A live read's last entries (its lateness margin), so the next read pulls only what arrived since.
_READ_TAILS: Migration = (
    """CREATE TABLE read_tails (
        query_key TEXT PRIMARY KEY, start INTEGER NOT NULL, read_until INTEGER NOT NULL,
        received_until INTEGER NOT NULL, entries BLOB NOT NULL)""",
    # The first minute the query's newest read replaced: an older read that writes later keeps off them.
    "ALTER TABLE cursors ADD COLUMN read_from INTEGER",
)
MIGRATIONS: tuple[Migration, ...] = (
    _SCHEMA_V1,
    _FAILURES_AND_FOLDED,
    _TEMPLATES_AND_LAST_SUCCESS,
    _ALERTS,
    _READ_TAILS,
)
# The tables of per-minute facts, which a replace or a prune cuts by minute.
_MINUTE_TABLES = (
    "minutes",
    "rule_minutes",
    "failure_minutes",
    "folded_minutes",
    "template_minutes",
    "samples",
)
# `reset` forgets these tables; the alerting tables stay, so a reset never notifies a firing alert again.
_TABLES = (*_MINUTE_TABLES, "error_groups", "revisions", "coverage", "cursors", "read_tails")
# What `prune` removes of the alerting tables: only what is over (firing, pending and queued rows stay).
_OLD_ALERTING = {
    "alerts": "state = 'resolved' AND changed < ?",
    "notification_log": "at < ?",
    "silences": "ends < ?",
    "outbox": "state != 'pending' AND queued < ?",
}


class StateError(ProdGuardianError):
    """A state file that cannot be used as it is (not ours, newer, corrupt, locked): never reset silently."""


def default_state_path() -> Path:
    """The per-user state file: ~/.local/state on Linux, ~/Library/Application Support, %LOCALAPPDATA%."""
    return platformdirs.user_state_path("prodguardian", appauthor=False) / "state.sqlite"


def fingerprint(rule: str, grp: str) -> str:
    """The stable id of an error group: alerts and silences can name it across runs and machines."""
    return hashlib.blake2b(f"{rule}\x00{grp}".encode(), digest_size=8).hexdigest()


def _dtype(column: str) -> str:
    return _DTYPES[_KINDS.get(column, "text")]


def _empty(columns: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype=_dtype(name)) for name in columns})


@dataclass(frozen=True)
class MinuteFacts:
    """What one read found for one service in a range of minutes: one frame per table (service left out)."""

    minutes: pd.DataFrame = field(default_factory=lambda: _empty(MINUTE_COLUMNS))
    rule_minutes: pd.DataFrame = field(default_factory=lambda: _empty(RULE_MINUTE_COLUMNS))
    error_groups: pd.DataFrame = field(default_factory=lambda: _empty(ERROR_GROUP_COLUMNS))
    revisions: pd.DataFrame = field(default_factory=lambda: _empty(REVISION_COLUMNS))
    samples: pd.DataFrame = field(default_factory=lambda: _empty(SAMPLE_COLUMNS))
    failure_minutes: pd.DataFrame = field(default_factory=lambda: _empty(FAILURE_MINUTE_COLUMNS))
    folded_minutes: pd.DataFrame = field(default_factory=lambda: _empty(FOLDED_MINUTE_COLUMNS))
    template_minutes: pd.DataFrame = field(default_factory=lambda: _empty(TEMPLATE_MINUTE_COLUMNS))


@dataclass(frozen=True)
class ReadTail:
    """The entries a live read pulled that were stamped from `start` (its cursor less the lateness margin)
    up to `read_until` (the read's end), and the newest reception time among all it pulled: the next read
    asks Cloud Logging only for what was received since, and takes the rest from here."""

    start: datetime
    read_until: datetime
    received_until: datetime
    entries: list[dict[str, Any]]


@dataclass(frozen=True)
class Cursor:
    """How far a query has read: the next read starts there, less a lateness margin. `tail`: the read's
    entries in that margin (None: the next read pulls the margin again)."""

    key: str
    read_until: datetime
    tail: ReadTail | None = None
    after: datetime | None = None  # the end of the stored tail this read followed (None: it followed none)


@dataclass(frozen=True)
class CursorInfo:
    key: str
    read_until: pd.Timestamp
    updated: pd.Timestamp
    tail_bytes: int | None = None  # the compressed entries of its read's margin, if kept


@dataclass(frozen=True)
class ServiceInfo:
    service: str
    ranges: list[tuple[pd.Timestamp, pd.Timestamp]]
    minute_rows: int
    revisions: int
    error_groups: int


@dataclass(frozen=True)
class StateInfo:
    path: Path
    size_bytes: int  # the file and its write-ahead log
    schema_version: int
    services: list[ServiceInfo]
    cursors: list[CursorInfo]


@dataclass(frozen=True)
class Pruned:
    horizon: pd.Timestamp
    rows: dict[str, int]  # rows removed per table (coverage: ranges removed)
    freed_bytes: int | None  # when vacuumed


# One key per (table, columns) the facts fill: the rows a replace must not hold twice.
_FACT_TABLES: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("minutes", MINUTE_COLUMNS, ("minute", "revision")),
    ("rule_minutes", RULE_MINUTE_COLUMNS, ("minute", "revision", "rule", "grp", "caused_by")),
    ("error_groups", ERROR_GROUP_COLUMNS, ("rule", "grp")),
    ("revisions", REVISION_COLUMNS, ("revision",)),
    ("samples", SAMPLE_COLUMNS, ()),
    ("failure_minutes", FAILURE_MINUTE_COLUMNS, ("minute", "revision", "category")),
    ("folded_minutes", FOLDED_MINUTE_COLUMNS, ("minute", "reason")),
    ("template_minutes", TEMPLATE_MINUTE_COLUMNS, ("minute", "template_id")),
)


class StateStore:
    """One open state file. Opening checks that it is ours, intact and not newer, and migrates it."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        migrations: Sequence[Migration] = MIGRATIONS,
        samples_per_group: int = SAMPLES_PER_GROUP,
    ) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self.samples_per_group = samples_per_group
        self._db = _connect(self.path, busy_timeout)
        try:
            with self._errors():
                self.schema_version = _open(self._db, self.path, migrations, busy_timeout)
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- writing ----------------------------------------------------------------------------------------

    def replace(
        self,
        service: str,
        start: datetime,
        end: datetime,
        facts: MinuteFacts,
        cursor: Cursor | None = None,
        late: pd.DataFrame | None = None,
    ) -> None:
        """Make the service's facts in the minutes [start, end) these, mark them covered, move the cursor.

        With a cursor, the minutes a newer read of its query already replaced stay as it wrote them: this
        read, which ended earlier, holds no entry that one lacks (a slower concurrent check writing last).
        `late`: `minutes` rows of entries that arrived after their stored minute, added to it (counts
        summed, sketches merged, last instants the latest) where the store covers it, unless another read
        of the cursor's query has written since this one began (it added them: an entry adds once)."""
        first, stop = _minute(start, "start"), _minute(end, "end")
        if stop < first:
            raise ValueError(f"the range ends ({end}) before it starts ({start})")
        rows = _fact_rows(facts, service, first, stop)
        added = _late_rows(late, service, first)
        with self._writing() as db:
            if cursor is not None and _followed_the_newest_tail(db, cursor):
                _add_minutes(db, service, added)
            if cursor is not None and (newer := _newer_read_from(db, cursor)) < stop:
                stop = max(first, newer)
                rows = _before(rows, stop)
            for table in _MINUTE_TABLES:
                db.execute(
                    f"DELETE FROM {table} WHERE service = ? AND minute >= ? AND minute < ?",
                    (service, first, stop),
                )
            for table, columns, _ in _FACT_TABLES:
                db.executemany(_UPSERTS.get(table) or _insert(table, columns), rows[table])
            _keep_newest_samples(db, service, self.samples_per_group)
            if stop > first:
                _extend_coverage(db, service, first, stop)
            if cursor is not None:
                db.execute(_MOVE_CURSOR, (cursor.key, _ns(cursor.read_until), time.time_ns(), first))
                _keep_tail(db, cursor)

    def prune(
        self, older_than: timedelta = DEFAULT_RETENTION, *, now: datetime | None = None, vacuum: bool = False
    ) -> Pruned:
        """Remove what is older than `older_than` before `now`; VACUUM (give the space back) when asked."""
        horizon_ns = _ns(now or datetime.now(UTC)) - int(older_than / timedelta(microseconds=1)) * 1000
        horizon = horizon_ns // _NS_PER_MINUTE
        removed = {}
        with self._writing() as db:
            for table in _MINUTE_TABLES:
                removed[table] = db.execute(f"DELETE FROM {table} WHERE minute < ?", (horizon,)).rowcount
            removed["coverage"] = db.execute(
                "DELETE FROM coverage WHERE end_minute <= ?", (horizon,)
            ).rowcount
            db.execute("UPDATE coverage SET start_minute = ? WHERE start_minute < ?", (horizon, horizon))
            for table, last in (
                ("error_groups", "last_seen"),
                ("revisions", "coalesce(last_traffic, created, 0)"),
                ("cursors", "updated"),
            ):
                removed[table] = db.execute(f"DELETE FROM {table} WHERE {last} < ?", (horizon_ns,)).rowcount
            db.execute("DELETE FROM read_tails WHERE query_key NOT IN (SELECT query_key FROM cursors)")
            for table, old in _OLD_ALERTING.items():
                removed[table] = db.execute(f"DELETE FROM {table} WHERE {old}", (horizon_ns,)).rowcount
        freed = None
        if vacuum:
            before = self._size()
            with self._errors():
                self._db.execute("VACUUM")
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            freed = before - self._size()
        return Pruned(_timestamp(horizon * _NS_PER_MINUTE), removed, freed)

    def reset(self) -> None:
        """Forget everything (the file stays, with its identity and schema)."""
        with self._writing() as db:
            for table in _TABLES:
                db.execute(f"DELETE FROM {table}")

    # -- reading ----------------------------------------------------------------------------------------

    def minutes(self, service: str, start: datetime, end: datetime) -> pd.DataFrame:
        return self._range("minutes", MINUTE_COLUMNS, service, start, end)

    def rule_minutes(self, service: str, start: datetime, end: datetime) -> pd.DataFrame:
        return self._range("rule_minutes", RULE_MINUTE_COLUMNS, service, start, end)

    def failure_minutes(self, service: str, start: datetime, end: datetime) -> pd.DataFrame:
        return self._range("failure_minutes", FAILURE_MINUTE_COLUMNS, service, start, end)

    def folded_minutes(self, service: str, start: datetime, end: datetime) -> pd.DataFrame:
        return self._range("folded_minutes", FOLDED_MINUTE_COLUMNS, service, start, end, "minute, reason")

    def template_minutes(self, service: str, start: datetime, end: datetime) -> pd.DataFrame:
        return self._range(
            "template_minutes", TEMPLATE_MINUTE_COLUMNS, service, start, end, "minute, template_id"
        )

    def samples(self, service: str) -> pd.DataFrame:
        """The kept failure events of each (rule, grp), newest first."""
        return self._query(
            SAMPLE_COLUMNS,
            "SELECT minute, rule, grp, payload FROM samples WHERE service = ?"
            " ORDER BY minute DESC, rowid DESC",
            (service,),
        )

    def revisions(self, service: str) -> pd.DataFrame:
        return self._query(
            REVISION_COLUMNS,
            f"SELECT {', '.join(REVISION_COLUMNS)} FROM revisions WHERE service = ? ORDER BY revision",
            (service,),
        )

    def error_groups(self, service: str) -> pd.DataFrame:
        """Each error group: fingerprint, rule, grp, first and last seen (ever), example, and the count of
        failures and the revisions in the stored minutes (exact: derived, never a running total)."""
        with self._reading() as db:
            groups = _frame(
                db.execute(
                    "SELECT fingerprint, rule, grp, first_seen, last_seen, example FROM error_groups"
                    " WHERE service = ? ORDER BY first_seen, fingerprint",
                    (service,),
                ).fetchall(),
                ("fingerprint", *ERROR_GROUP_COLUMNS),
            )
            counts = pd.DataFrame(
                db.execute(
                    "SELECT rule, grp, revision, SUM(failures) FROM rule_minutes WHERE service = ?"
                    " GROUP BY rule, grp, revision ORDER BY revision",
                    (service,),
                ).fetchall(),
                columns=["rule", "grp", "revision", "count"],
            )
        per_group = counts.groupby(["rule", "grp"]).agg(count=("count", "sum"), revisions=("revision", list))
        out = groups.join(per_group, on=["rule", "grp"])
        out["count"] = out["count"].fillna(0).astype("int64")
        out["revisions"] = [r if isinstance(r, list) else [] for r in out["revisions"]]
        return out

    def coverage(self, service: str) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
        """The ranges [start, end) whose facts are stored complete, oldest first."""
        return [(_at_minute(a), _at_minute(b)) for a, b in self._coverage(service)]

    def missing(
        self, service: str, start: datetime, end: datetime
    ) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
        """The parts of [start, end) that the store does not cover: what a check must read."""
        first, stop = _minute(start, "start"), _minute(end, "end")
        gaps, at = [], first
        for a, b in self._coverage(service):
            if b <= at or a >= stop:
                continue
            if a > at:
                gaps.append((at, a))
            at = max(at, b)
        if at < stop:
            gaps.append((at, stop))
        return [(_at_minute(a), _at_minute(b)) for a, b in gaps]

    def cursor(self, key: str) -> pd.Timestamp | None:
        with self._errors():
            row = self._db.execute("SELECT read_until FROM cursors WHERE query_key = ?", (key,)).fetchone()
        return None if row is None else _timestamp(row[0])

    def read_tail(self, key: str) -> ReadTail | None:
        """The last entries the query's newest read pulled (see `ReadTail`), if it kept them."""
        with self._errors():
            row = self._db.execute(
                "SELECT start, read_until, received_until, entries FROM read_tails WHERE query_key = ?",
                (key,),
            ).fetchone()
        if row is None:
            return None
        try:
            entries = orjson.loads(zlib.decompress(row[3]))
        except (zlib.error, orjson.JSONDecodeError) as exc:
            problem = f"corrupt read tail of {key} ({exc}): move the file away to start a new one"
            raise StateError(problem, str(self.path)) from None
        start, read_until, received_until = (_timestamp(ns).to_pydatetime() for ns in row[:3])
        return ReadTail(start, read_until, received_until, entries)

    def hourly(self, service: str, start: datetime, end: datetime, tz: str = "UTC") -> pd.DataFrame:
        """Traffic per hour, every revision together, for each hour of [start, end) the store covers.

        Columns: hour (the unix minute it starts), hour_of_day and weekday (0 is Monday) in `tz` (so a
        daily cycle stays put across daylight saving time), covered_minutes, and the sums of COUNT_COLUMNS.
        An hour covered with no traffic is a row of zeros: for statistics, a quiet hour is an observation.
        """
        sums = ", ".join(f"SUM({c})" for c in COUNT_COLUMNS)
        covered, traffic = self._by_quarter(
            f"SELECT {_QUARTER_OF_MINUTE}, {sums} FROM minutes"
            " WHERE service = ? AND minute >= ? AND minute < ? GROUP BY 1",
            ("minute", *COUNT_COLUMNS),
            service,
            start,
            end,
        )
        quarters, minutes_in = np.unique(covered // _QUARTER * _QUARTER, return_counts=True)
        hours = _local_hours(quarters, tz).assign(covered_minutes=minutes_in)
        keys = ["hour", "hour_of_day", "weekday"]
        out: pd.DataFrame = hours.groupby(keys)["covered_minutes"].sum().reset_index()
        per_hour = traffic.assign(hour=_local_hours(traffic["minute"].to_numpy(), tz)["hour"].to_numpy())
        out = out.join(per_hour.groupby("hour")[list(COUNT_COLUMNS)].sum(), on="hour")
        out[list(COUNT_COLUMNS)] = out[list(COUNT_COLUMNS)].fillna(0).astype("int64")
        return out

    def hourly_rules(self, service: str, start: datetime, end: datetime, tz: str = "UTC") -> pd.DataFrame:
        """Failures and events per hour and (rule, category, grp), hours as in `hourly`; absent means 0."""
        _, rules = self._by_quarter(
            f"SELECT {_QUARTER_OF_MINUTE}, rule, category, grp, SUM(failures), SUM(events) FROM rule_minutes"
            " WHERE service = ? AND minute >= ? AND minute < ? GROUP BY 1, rule, category, grp",
            ("minute", "rule", "category", "grp", "failures", "events"),
            service,
            start,
            end,
        )
        hours = _local_hours(rules["minute"].to_numpy(), tz)
        keyed = pd.concat([hours.drop(columns="minute"), rules.drop(columns="minute")], axis=1)
        keys = ["hour", "hour_of_day", "weekday", "rule", "category", "grp"]
        return keyed.groupby(keys, sort=True)[["failures", "events"]].sum().reset_index()

    def info(self) -> StateInfo:
        """What the file holds: for `prodguardian state info`."""
        with self._reading() as db:
            ranges: dict[str, list[tuple[pd.Timestamp, pd.Timestamp]]] = {}
            for service, a, b in db.execute(
                "SELECT service, start_minute, end_minute FROM coverage ORDER BY service, start_minute"
            ):
                ranges.setdefault(service, []).append((_at_minute(a), _at_minute(b)))
            counts = {
                table: dict(db.execute(f"SELECT service, COUNT(*) FROM {table} GROUP BY service").fetchall())
                for table in ("minutes", "revisions", "error_groups")
            }
            cursors = [
                CursorInfo(key, _timestamp(until), _timestamp(updated), tail)
                for key, until, updated, tail in db.execute(
                    "SELECT query_key, cursors.read_until, updated, length(entries) FROM cursors"
                    " LEFT JOIN read_tails USING (query_key) ORDER BY query_key"
                )
            ]
        names = sorted(set(ranges).union(*counts.values()))
        services = [
            ServiceInfo(
                name,
                ranges.get(name, []),
                counts["minutes"].get(name, 0),
                counts["revisions"].get(name, 0),
                counts["error_groups"].get(name, 0),
            )
            for name in names
        ]
        return StateInfo(self.path, self._size(), self.schema_version, services, cursors)

    # -- plumbing ---------------------------------------------------------------------------------------

    def _range(
        self,
        table: str,
        columns: Sequence[str],
        service: str,
        start: datetime,
        end: datetime,
        order: str = "minute, revision",
    ) -> pd.DataFrame:
        return self._query(
            columns,
            f"SELECT {', '.join(columns)} FROM {table} WHERE service = ? AND minute >= ? AND minute < ?"
            f" ORDER BY {order}",
            (service, _minute(start, "start"), _minute(end, "end")),
        )

    def _query(self, columns: Sequence[str], sql: str, parameters: tuple[Any, ...]) -> pd.DataFrame:
        with self._errors():
            return _frame(self._db.execute(sql, parameters).fetchall(), columns)

    def _by_quarter(
        self, sql: str, columns: Sequence[str], service: str, start: datetime, end: datetime
    ) -> tuple[np.ndarray, pd.DataFrame]:
        """The covered minutes of [start, end) and the rows of `sql` (per quarter hour): one snapshot."""
        first, stop = _minute(start, "start"), _minute(end, "end")
        with self._reading() as db:
            spans = db.execute(
                "SELECT max(start_minute, ?), min(end_minute, ?) FROM coverage"
                " WHERE service = ? AND end_minute > ? AND start_minute < ?",
                (first, stop, service, first, stop),
            ).fetchall()
            rows = db.execute(sql, (service, first, stop)).fetchall()
        covered = np.concatenate(
            [np.arange(a, b, dtype=np.int64) for a, b in spans] or [np.zeros(0, np.int64)]
        )
        return covered, _frame(rows, columns)

    def _coverage(self, service: str) -> list[tuple[int, int]]:
        with self._errors():
            return self._db.execute(
                "SELECT start_minute, end_minute FROM coverage WHERE service = ? ORDER BY start_minute",
                (service,),
            ).fetchall()

    def _size(self) -> int:
        wal = self.path.with_name(self.path.name + "-wal")
        return sum(p.stat().st_size for p in (self.path, wal) if p.exists())

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """SQLite's errors as one StateError naming the file."""
        try:
            yield
        except sqlite3.Error as error:
            raise _state_error(error, self.path, self.busy_timeout) from error

    def writing(self) -> AbstractContextManager[sqlite3.Connection]:
        """One write transaction, for the modules that keep their own tables here (alert_state)."""
        return self._writing()

    def reading(self) -> AbstractContextManager[sqlite3.Connection]:
        """Several reads from one snapshot, for the modules that keep their own tables here."""
        return self._reading()

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (BEGIN IMMEDIATE): writers wait for each other in turn."""
        with self._errors():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """Several reads from one snapshot (WAL readers never wait for a writer)."""
        with self._errors():
            self._db.execute("BEGIN")
            try:
                yield self._db
            finally:
                self._db.execute("COMMIT")


# -- opening ----------------------------------------------------------------------------------------------


def _connect(path: Path, busy_timeout: float) -> sqlite3.Connection:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _check_header(path)
        return sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
    except OSError as error:
        raise StateError(f"cannot open the state store: {error.strerror or error}", str(path)) from error
    except sqlite3.Error as error:
        raise _state_error(error, path, busy_timeout) from error


def _check_header(path: Path) -> None:
    """A file that exists and is not SQLite is refused before SQLite sees it (it would be overwritten)."""
    try:
        with path.open("rb") as file:
            head = file.read(len(_SQLITE_MAGIC))
    except FileNotFoundError:
        return
    if head and head != _SQLITE_MAGIC:
        raise StateError("not a SQLite database, so not a ProdGuardian state store", str(path))


def _open(db: sqlite3.Connection, path: Path, migrations: Sequence[Migration], busy_timeout: float) -> int:
    """Check the file's identity, version and integrity; create or migrate it; switch it to WAL."""
    latest = len(migrations)
    # One read transaction: a first open racing another's creation must see the id and the tables of the
    # same moment, not the id from before its commit and the tables from after.
    db.execute("BEGIN")
    try:
        version = _identify(db, path, latest)
    finally:
        db.execute("COMMIT")
    if version:
        problem = db.execute("PRAGMA quick_check").fetchone()[0]
        if problem != "ok":
            detail = next((line for line in problem.splitlines() if not line.startswith("***")), problem)
            raise StateError(f"corrupt ({detail[:200]}): move it away to start a new one", str(path))
    if version < latest:
        db.execute("BEGIN IMMEDIATE")
        try:
            version = _migrate(db, path, migrations)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    _use_wal(db, busy_timeout)
    # In WAL mode, NORMAL survives any crash of the process; a power loss may undo the last commits, whole.
    db.execute("PRAGMA synchronous = NORMAL")
    return version


def _identify(db: sqlite3.Connection, path: Path, latest: int) -> int:
    """The file's schema version (0: a new file), or a StateError if the file is not ours or is newer."""
    application_id = db.execute("PRAGMA application_id").fetchone()[0]
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if application_id == 0:
        if db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            raise StateError(
                "a SQLite database of another application (tables but no ProdGuardian id),"
                " not a ProdGuardian state store",
                str(path),
            )
        return 0
    if application_id != APPLICATION_ID:
        raise StateError(
            f"a SQLite database of another application (application_id {application_id:#010x}),"
            " not a ProdGuardian state store",
            str(path),
        )
    if version > latest:
        raise StateError(
            f"written by a newer ProdGuardian (schema {version}, this one knows {latest}):"
            " upgrade prodguardian",
            str(path),
        )
    return version


def _migrate(db: sqlite3.Connection, path: Path, migrations: Sequence[Migration]) -> int:
    """Apply the migrations from the file's version on, inside the caller's write transaction."""
    version = _identify(db, path, len(migrations))  # another process may have got there first
    for number in range(version, len(migrations)):
        try:
            for statement in migrations[number]:
                db.execute(statement)
        except sqlite3.Error as error:
            raise StateError(
                f"migration to schema {number + 1} failed ({error}); the file is unchanged", str(path)
            ) from error
    db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    db.execute(f"PRAGMA user_version = {len(migrations)}")
    return len(migrations)


def _use_wal(db: sqlite3.Connection, busy_timeout: float) -> None:
    """Switch to write-ahead logging. The switch does not wait on a busy file (two first opens at once
    make it fail at once), so it is retried until the busy timeout."""
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _state_error(error: sqlite3.Error, path: Path, busy_timeout: float) -> StateError:
    text = str(error)
    if "locked" in text or "busy" in text:
        return StateError(f"locked by another process for more than {busy_timeout:g} s", str(path))
    if isinstance(error, sqlite3.DatabaseError) and ("malformed" in text or "not a database" in text):
        return StateError(f"corrupt ({text}): move it away to start a new one", str(path))
    return StateError(f"cannot use the state store: {text}", str(path))


# -- writing facts ----------------------------------------------------------------------------------------


def _merged(column: str, how: str) -> str:
    """The upsert of a nullable time kept by min or max (SQLite's min(x, NULL) is NULL: coalesce)."""
    return f"{column} = coalesce({how}({column}, excluded.{column}), {column}, excluded.{column})"


_UPSERTS = {
    "error_groups": (
        "INSERT INTO error_groups (service, fingerprint, rule, grp, first_seen, last_seen, example)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (service, fingerprint) DO UPDATE SET"
        " example = CASE WHEN excluded.first_seen < first_seen THEN excluded.example ELSE example END,"
        " first_seen = min(first_seen, excluded.first_seen), last_seen = max(last_seen, excluded.last_seen)"
    ),
    "revisions": (
        "INSERT INTO revisions (service, revision, first_traffic, last_traffic, created)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (service, revision) DO UPDATE SET "
        + ", ".join(
            _merged(column, how)
            for column, how in (("first_traffic", "min"), ("last_traffic", "max"), ("created", "min"))
        )
    ),
}
# The cursor only moves forward: a slower concurrent check, or a backfill, never sends it back.
_MOVE_CURSOR = (
    "INSERT INTO cursors (query_key, read_until, updated, read_from) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (query_key) DO UPDATE SET read_until = max(read_until, excluded.read_until),"
    " read_from = CASE WHEN excluded.read_until >= read_until THEN excluded.read_from ELSE read_from END,"
    " updated = excluded.updated"
)


def _late_rows(late: pd.DataFrame | None, service: str, first: int) -> list[tuple[Any, ...]]:
    """The `minutes` rows to add to stored ones, checked as any facts; ValueError if one is not before
    `first` (the replaced range)."""
    if late is None or late.empty:
        return []
    minutes = late["minute"]
    return _fact_rows(MinuteFacts(minutes=late), service, int(minutes.min()), first)["minutes"]


def _followed_the_newest_tail(db: sqlite3.Connection, cursor: Cursor) -> bool:
    row = db.execute("SELECT read_until FROM read_tails WHERE query_key = ?", (cursor.key,)).fetchone()
    return cursor.after is not None and row is not None and row[0] == _ns(cursor.after)


def _add_minutes(db: sqlite3.Connection, service: str, rows: list[tuple[Any, ...]]) -> None:
    """Add each row to the stored row of its minute and revision, in a minute the store covers."""
    names = ", ".join(MINUTE_COLUMNS)
    at_minute, at_revision = 1 + MINUTE_COLUMNS.index("minute"), 1 + MINUTE_COLUMNS.index("revision")
    for row in rows:
        minute, revision = row[at_minute], row[at_revision]
        covered = db.execute(
            "SELECT 1 FROM coverage WHERE service = ? AND start_minute <= ? AND end_minute > ?",
            (service, minute, minute),
        ).fetchone()
        if covered is None:  # a later read of the gap gets it with the rest
            continue
        stored = db.execute(
            f"SELECT {names} FROM minutes WHERE service = ? AND minute = ? AND revision = ?",
            (service, minute, revision),
        ).fetchone()
        merged = row[1:] if stored is None else _added(stored, row[1:])
        db.execute(_insert("minutes", MINUTE_COLUMNS, "INSERT OR REPLACE"), (service, *merged))


def _added(stored: Sequence[Any], late: Sequence[Any]) -> tuple[Any, ...]:
    """One `minutes` row with another added to it."""
    out = []
    for column, mine, more in zip(MINUTE_COLUMNS, stored, late, strict=True):
        kind = _KINDS[column]
        if kind == "count":
            out.append(mine + more)
        elif kind == "sketch?":
            out.append(
                None if mine is None and more is None else LatencySketch.merged((mine, more)).to_bytes()
            )
        elif kind == "integer?":
            out.append(max((v for v in (mine, more) if v is not None), default=None))
        else:
            out.append(mine)
    return tuple(out)


def _newer_read_from(db: sqlite3.Connection, cursor: Cursor) -> int:
    """The first minute a read of the cursor's query that ended later replaced (no limit if none did)."""
    row = db.execute(
        "SELECT read_from FROM cursors WHERE query_key = ? AND read_until > ? AND read_from IS NOT NULL",
        (cursor.key, _ns(cursor.read_until)),
    ).fetchone()
    return sys.maxsize if row is None else int(row[0])


def _before(rows: dict[str, list[tuple[Any, ...]]], stop: int) -> dict[str, list[tuple[Any, ...]]]:
    """The fact rows of the minutes before `stop` (the tables without minutes whole: they merge)."""
    out = {}
    for table, columns, _ in _FACT_TABLES:
        at = columns.index("minute") + 1 if "minute" in columns else None  # after the service
        out[table] = rows[table] if at is None else [row for row in rows[table] if row[at] < stop]
    return out


# Like the cursor, a tail only gives way to a newer read's; no tail means the margin is read again.
_KEEP_TAIL = (
    "INSERT INTO read_tails (query_key, start, read_until, received_until, entries) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (query_key) DO UPDATE SET start = excluded.start, read_until = excluded.read_until,"
    " received_until = excluded.received_until, entries = excluded.entries"
    " WHERE excluded.read_until >= read_tails.read_until"
)
TAIL_COMPRESSION = 1  # zlib level: a tail is rewritten by every check, and level 1 is already 8x smaller


def _keep_tail(db: sqlite3.Connection, cursor: Cursor) -> None:
    tail = cursor.tail
    if tail is None:
        db.execute("DELETE FROM read_tails WHERE query_key = ?", (cursor.key,))
        return
    blob = zlib.compress(orjson.dumps(tail.entries), TAIL_COMPRESSION)
    times = (_ns(tail.start), _ns(tail.read_until), _ns(tail.received_until))
    db.execute(_KEEP_TAIL, (cursor.key, *times, blob))


def _insert(table: str, columns: Sequence[str], verb: str = "INSERT") -> str:
    return f"{verb} INTO {table} (service, {', '.join(columns)}) VALUES (?{', ?' * len(columns)})"


def _fact_rows(facts: MinuteFacts, service: str, first: int, stop: int) -> dict[str, list[tuple[Any, ...]]]:
    """The facts as rows to insert, each starting with the service; ValueError on a malformed frame."""
    if not isinstance(service, str):
        raise ValueError(f"the service must be a string, not {service!r}")
    rows = {}
    for table, columns, key in _FACT_TABLES:
        frame: pd.DataFrame = getattr(facts, table)
        name = f"MinuteFacts.{table}"
        if tuple(frame.columns) != columns:
            raise ValueError(f"{name} has the columns {list(frame.columns)}, not {list(columns)}")
        if key and frame.duplicated(list(key)).any():
            raise ValueError(f"{name} holds a ({', '.join(key)}) twice")
        values = [_column(frame[c], _KINDS[c], f"{name}.{c}") for c in columns]
        minutes = values[columns.index("minute")] if "minute" in columns else []
        if minutes and not (first <= min(minutes) and max(minutes) < stop):
            raise ValueError(f"{name}.minute holds minutes outside the replaced range [{first}, {stop})")
        if table == "error_groups":
            prints = [fingerprint(r, g) for r, g in zip(values[0], values[1], strict=True)]
            values = [prints, *values]
        rows[table] = [(service, *row) for row in zip(*values, strict=True)]
    return rows


def _column(series: pd.Series, kind: str, name: str) -> list[Any]:
    """A column's values as SQLite parameters, checked against its kind."""
    values = series.tolist()
    if not values:
        return values
    if kind in ("count", "integer"):
        if not pd.api.types.is_integer_dtype(series) or series.isna().any():
            raise ValueError(f"{name} must hold integers (dtype {series.dtype})")
        if kind == "count" and series.min() < 0:
            raise ValueError(f"{name} must not be negative")
        return values
    if kind == "integer?":
        if not (pd.api.types.is_integer_dtype(series) or series.isna().all()):
            raise ValueError(f"{name} must hold integers or nulls (dtype {series.dtype})")
        return [None if pd.isna(v) else int(v) for v in values]
    if kind == "sketch?":
        return [None if value is None else _sketch(value, name) for value in values]
    if kind == "json":
        return [_json(value, name) for value in values]
    texts = [value if isinstance(value, str) else _not(name, "a string", value) for value in values]
    return [text[:MAX_TEXT] for text in texts] if kind == "line" else texts


def _sketch(value: Any, name: str) -> bytes:
    if not isinstance(value, bytes):
        _not(name, "an encoded LatencySketch", value)
    try:
        LatencySketch.from_bytes(value)
    except ValueError as error:
        raise ValueError(f"{name}: {error}") from error
    return bytes(value)


def _not(name: str, expected: str, value: Any) -> Any:
    raise ValueError(f"{name} holds {type(value).__name__} {str(value)[:50]!r}, not {expected}")


def _json(value: Any, name: str) -> str:
    if not isinstance(value, dict):
        _not(name, "a dict", value)
    try:
        return orjson.dumps(_bounded(value), option=orjson.OPT_SERIALIZE_NUMPY).decode()
    except TypeError as error:
        raise ValueError(f"{name} is not JSON: {error}") from error


def _bounded(value: Any) -> Any:
    """The value with every string cut to MAX_TEXT characters, at any depth."""
    if isinstance(value, str):
        return value[:MAX_TEXT]
    if isinstance(value, dict):
        return {str(k)[:MAX_TEXT]: _bounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_bounded(v) for v in value]
    return value


def _keep_newest_samples(db: sqlite3.Connection, service: str, keep: int) -> None:
    db.execute(
        "DELETE FROM samples WHERE rowid IN (SELECT rowid FROM (SELECT rowid, ROW_NUMBER() OVER"
        " (PARTITION BY rule, grp ORDER BY minute DESC, rowid DESC) AS place FROM samples WHERE service = ?)"
        " WHERE place > ?)",
        (service, keep),
    )


def _extend_coverage(db: sqlite3.Connection, service: str, first: int, stop: int) -> None:
    """Add [first, stop) to the service's covered ranges, merged with those it overlaps or touches."""
    touching = "FROM coverage WHERE service = ? AND end_minute >= ? AND start_minute <= ?"
    low, high = db.execute(
        f"SELECT min(start_minute), max(end_minute) {touching}", (service, first, stop)
    ).fetchone()
    db.execute(f"DELETE {touching}", (service, first, stop))
    merged = (min(first, low if low is not None else first), max(stop, high if high is not None else stop))
    db.execute("INSERT INTO coverage VALUES (?, ?, ?)", (service, *merged))


# -- reading ----------------------------------------------------------------------------------------------


def _frame(rows: list[tuple[Any, ...]], columns: Sequence[str]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(columns))
    frame = frame.astype({c: _dtype(c) for c in columns}) if len(frame) else _empty(columns)
    if "payload" in frame:
        frame["payload"] = [orjson.loads(p) for p in frame["payload"]]
    return frame


def _local_hours(minutes: np.ndarray, tz: str) -> pd.DataFrame:
    """Each minute's hour in `tz`: the unix minute that hour starts, its hour of day and weekday."""
    utc = pd.to_datetime(pd.Series(minutes, dtype="int64") * 60, unit="s", utc=True)
    local = utc.dt.tz_convert(tz).dt.tz_localize(None)
    return pd.DataFrame(
        {
            "minute": minutes,
            "hour": minutes - local.dt.minute.to_numpy(),
            "hour_of_day": local.dt.hour.to_numpy(),
            "weekday": local.dt.day_of_week.to_numpy(),
        }
    )


# -- time -------------------------------------------------------------------------------------------------


def _ns(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError(f"{moment} has no time zone: pass an aware datetime (UTC)")
    return int(pd.Timestamp(moment).value)


def _minute(moment: datetime, name: str) -> int:
    """The unix minute of a range bound, which must be a whole minute."""
    ns = _ns(moment)
    if ns % _NS_PER_MINUTE:
        raise ValueError(f"the range's {name} {moment} is not a whole minute")
    return ns // _NS_PER_MINUTE


def _timestamp(ns: int) -> pd.Timestamp:
    return pd.Timestamp(ns, unit="ns", tz="UTC")


def _at_minute(minute: int) -> pd.Timestamp:
    return _timestamp(minute * _NS_PER_MINUTE)
