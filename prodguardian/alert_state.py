"""The alerts, silences, notification log and outbox, kept in the state store's file (schema 4).

A run updates the alerts and queues its notifications in one write transaction (`record`), then delivers
each due outbox row in a transaction of its own (`deliver`): the row is read again, sent, and marked sent
or given its next try, all under the store's write lock. A second run at once waits for that lock (the
store's busy timeout), then finds the row sent. A process killed while sending leaves the row as it was,
so the next run sends it again: at most one duplicate, which receivers can drop by `Notification.id`.
A failed delivery is retried with exponential backoff on the alert clock (1 min doubling up to 1 h); after
`MAX_TRIES` it is dropped, and the drop is logged and shown by `prodguardian alerts`.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import orjson

from prodguardian.alerts import Alert, Outcome, Silence
from prodguardian.notification import Channel, DeliveryError, Notification
from prodguardian.state import StateStore

MAX_TRIES = 12
FIRST_RETRY = timedelta(minutes=1)
LONGEST_RETRY = timedelta(hours=1)
MAX_ERROR = 300  # characters of a delivery error kept
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ALERT_COLUMNS = (
    "alert, service, rule, category, revision, state, severity, title, since, changed, last_seen, evaluated,"
    " runs, firing_since, notified"
)
Delivered = Literal["sent", "failed", "dropped"]


@dataclass(frozen=True)
class Delivery:
    """What became of one outbox row in this run."""

    notification: Notification
    channel: str
    outcome: Delivered
    tries: int
    error: str | None = None
    next_try: datetime | None = None


@dataclass(frozen=True)
class OutboxRow:
    notification: Notification
    channel: str
    tries: int
    next_try: datetime
    last_error: str | None
    state: str


def ns(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1000


def at_ns(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value // 1000)


def _maybe_ns(moment: datetime | None) -> int | None:
    return None if moment is None else ns(moment)


def _maybe_at(value: int | None) -> datetime | None:
    return None if value is None else at_ns(value)


# -- alerts -------------------------------------------------------------------------------------------------


def load_alerts(db: sqlite3.Connection) -> list[Alert]:
    return [_alert(row) for row in db.execute(f"SELECT {_ALERT_COLUMNS} FROM alerts ORDER BY alert")]


def _alert(row: Sequence[Any]) -> Alert:
    key, service, rule, category, revision, state, severity, title, *times = row
    since, changed, last_seen, evaluated, runs, firing_since, notified = times
    return Alert(
        key,
        service,
        rule,
        category,
        revision,
        state,
        severity,
        title,
        since=at_ns(since),
        changed=at_ns(changed),
        last_seen=at_ns(last_seen),
        evaluated=at_ns(evaluated),
        runs=runs,
        firing_since=_maybe_at(firing_since),
        notified=_maybe_at(notified),
    )


def _alert_row(alert: Alert) -> tuple[Any, ...]:
    return (
        alert.key,
        alert.service,
        alert.rule,
        alert.category,
        alert.revision,
        alert.state,
        alert.severity,
        alert.title,
        ns(alert.since),
        ns(alert.changed),
        ns(alert.last_seen),
        ns(alert.evaluated),
        alert.runs,
        _maybe_ns(alert.firing_since),
        _maybe_ns(alert.notified),
    )


def update_alerts(
    store: StateStore,
    decide: Callable[[list[Alert], list[Silence]], Outcome],
    channels: Sequence[Channel],
    at: datetime,
) -> Outcome:
    """Judge the run against the stored alerts and store the outcome, the notifications queued for every
    channel that wants them, in one transaction: a crash leaves the run wholly done or not at all."""
    with store.writing() as db:
        outcome = decide(load_alerts(db), _silences(db, at))
        db.executemany(
            f"INSERT OR REPLACE INTO alerts ({_ALERT_COLUMNS}) VALUES ({', '.join('?' * 15)})",
            [_alert_row(alert) for alert in outcome.alerts],
        )
        db.executemany("DELETE FROM alerts WHERE alert = ?", [(key,) for key in outcome.removed])
        for notification in outcome.notifications:
            wanted = [c.name for c in channels if c.wants(notification)]
            payload = orjson.dumps(notification.to_dict()).decode()
            db.executemany(
                "INSERT OR IGNORE INTO outbox (notification, channel, payload, alert, queued, tries,"
                " next_try, last_error, state) VALUES (?, ?, ?, ?, ?, 0, ?, NULL, 'pending')",
                [(notification.id, name, payload, notification.alert, ns(at), ns(at)) for name in wanted],
            )
            _log(db, notification, "queued", ", ".join(wanted) or "no channel wants it")
        for muted in outcome.muted:
            _log(db, muted.notification, "muted", muted.why)
    return outcome


def _log(db: sqlite3.Connection, notification: Notification, outcome: str, detail: str) -> None:
    db.execute(
        "INSERT INTO notification_log (at, notification, alert, event, outcome, detail, logged)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            ns(notification.at),
            notification.id,
            notification.alert,
            notification.event,
            outcome,
            detail[:MAX_ERROR],
            ns(datetime.now(UTC)),
        ),
    )


def load_all(store: StateStore) -> list[Alert]:
    with store.reading() as db:
        return load_alerts(db)


def current_alerts(store: StateStore) -> list[Alert]:
    """The firing and pending alerts, firing first."""
    alerts = [a for a in load_all(store) if a.state != "resolved"]
    return sorted(alerts, key=lambda a: (a.state != "firing", a.key))


# -- silences -----------------------------------------------------------------------------------------------


def _silences(db: sqlite3.Connection, at: datetime | None) -> list[Silence]:
    """The silences not expired by hand (and, given `at`, still running then)."""
    rows = db.execute(
        "SELECT id, matchers, ends, reason, created FROM silences WHERE expired IS NULL"
        " AND ends > ? ORDER BY created",
        (ns(at) if at else -1,),
    )
    return [Silence(i, orjson.loads(m), at_ns(e), reason, at_ns(c)) for i, m, e, reason, c in rows]


def add_silence(store: StateStore, matchers: dict[str, str], ends: datetime, reason: str) -> Silence:
    silence = Silence(secrets.token_hex(4), matchers, ends, reason, datetime.now(UTC))
    with store.writing() as db:
        db.execute(
            "INSERT INTO silences (id, matchers, ends, reason, created, expired)"
            " VALUES (?, ?, ?, ?, ?, NULL)",
            (silence.id, orjson.dumps(matchers).decode(), ns(ends), reason, ns(silence.created)),
        )
    return silence


def list_silences(store: StateStore, at: datetime | None = None) -> list[Silence]:
    """The silences in force at `at` (all not expired by hand when None)."""
    with store.reading() as db:
        return _silences(db, at)


def expire_silence(store: StateStore, silence_id: str) -> bool:
    """End a silence now; False when no silence has that id."""
    with store.writing() as db:
        return bool(
            db.execute(
                "UPDATE silences SET expired = ? WHERE id = ? AND expired IS NULL",
                (ns(datetime.now(UTC)), silence_id),
            ).rowcount
        )


# -- outbox -------------------------------------------------------------------------------------------------


def _outbox_row(row: Sequence[Any]) -> OutboxRow:
    payload, channel, tries, next_try, last_error, state = row
    return OutboxRow(
        Notification.from_dict(orjson.loads(payload)), channel, tries, at_ns(next_try), last_error, state
    )


_OUTBOX_COLUMNS = "payload, channel, tries, next_try, last_error, state"


def outbox(store: StateStore, states: Sequence[str] = ("pending",)) -> list[OutboxRow]:
    """The outbox rows in these states, oldest first."""
    marks = ", ".join("?" * len(states))
    with store.reading() as db:
        rows = db.execute(
            f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE state IN ({marks}) ORDER BY queued, notification",
            tuple(states),
        ).fetchall()
    return [_outbox_row(row) for row in rows]


def due(store: StateStore, at: datetime) -> list[tuple[str, str]]:
    """(notification id, channel) of the pending rows due at `at`."""
    with store.reading() as db:
        return db.execute(
            "SELECT notification, channel FROM outbox WHERE state = 'pending' AND next_try <= ?"
            " ORDER BY queued, notification",
            (ns(at),),
        ).fetchall()


def deliver(store: StateStore, channels: Sequence[Channel], at: datetime) -> list[Delivery]:
    """Send every due row through its channel, each in its own transaction (see the module's doc)."""
    by_name = {channel.name: channel for channel in channels}
    done = []
    for notification_id, name in due(store, at):
        channel = by_name.get(name)
        if channel is not None:
            delivery = _deliver_one(store, notification_id, channel, at)
            if delivery is not None:
                done.append(delivery)
    return done


def _deliver_one(store: StateStore, notification_id: str, channel: Channel, at: datetime) -> Delivery | None:
    with store.writing() as db:
        found = db.execute(
            f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE notification = ? AND channel = ?"
            " AND state = 'pending' AND next_try <= ?",
            (notification_id, channel.name, ns(at)),
        ).fetchone()
        if found is None:
            return None  # another run sent it while this one waited for the store
        row = _outbox_row(found)
        tries = row.tries + 1
        try:
            channel.send(row.notification)
        except DeliveryError as exc:
            return _failed(db, row, tries, str(exc)[:MAX_ERROR], at)
        _set_row(db, row, "sent", tries, at, None)
        _log(db, row.notification, "sent", channel.name)
        return Delivery(row.notification, channel.name, "sent", tries)


def _failed(db: sqlite3.Connection, row: OutboxRow, tries: int, error: str, at: datetime) -> Delivery:
    if tries >= MAX_TRIES:
        _set_row(db, row, "dropped", tries, at, error)
        _log(db, row.notification, "dropped", f"{row.channel}: {error}")
        return Delivery(row.notification, row.channel, "dropped", tries, error)
    next_try = at + retry_delay(tries)
    _set_row(db, row, "pending", tries, next_try, error)
    _log(db, row.notification, "failed", f"{row.channel}: {error}")
    return Delivery(row.notification, row.channel, "failed", tries, error, next_try)


def retry_delay(tries: int) -> timedelta:
    """The wait after the `tries`-th failed try: 1 min, 2, 4… up to 1 h."""
    delay: timedelta = FIRST_RETRY * 2 ** min(tries - 1, 16)
    return min(delay, LONGEST_RETRY)


def _set_row(
    db: sqlite3.Connection, row: OutboxRow, state: str, tries: int, next_try: datetime, error: str | None
) -> None:
    db.execute(
        "UPDATE outbox SET state = ?, tries = ?, next_try = ?, last_error = ? WHERE notification = ?"
        " AND channel = ?",
        (state, tries, ns(next_try), error, row.notification.id, row.channel),
    )


@dataclass(frozen=True)
class AlertCounts:
    """What `state info` says of the alerting tables."""

    firing: int
    pending: int
    silences: int
    outbox_pending: int
    outbox_dropped: int


def counts(store: StateStore) -> AlertCounts:
    with store.reading() as db:
        states = dict(db.execute("SELECT state, COUNT(*) FROM alerts GROUP BY state").fetchall())
        boxes = dict(db.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state").fetchall())
        silences = len(_silences(db, datetime.now(UTC)))
    return AlertCounts(
        states.get("firing", 0),
        states.get("pending", 0),
        silences,
        boxes.get("pending", 0),
        boxes.get("dropped", 0),
    )
