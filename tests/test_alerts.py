"""The alert lifecycle over sequences of runs: simulator reports at a controlled clock, a real state store,
notifications POSTed to a local HTTP server (issue 13's run-sequence table)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest

from prodguardian import alert_state, watch
from prodguardian.alert_state import MAX_TRIES, retry_delay
from prodguardian.alerts import Policy, evaluate, parse_matchers
from prodguardian.state import StateStore
from prodguardian.verdict import Report
from tests.alerting import START, STEP, PostChannel, Receiver, failed_at, receiver, report_at

DB = "emergence-app/database-unavailable"
WS = "emergence-app/websocket-failed-upgrade"
UNKNOWN = "emergence-app/unknown"
TABLE: list[tuple[str, int, str, str, str]] = []  # (sequence, run, condition, expected, got)


@dataclass
class Runs:
    store: StateStore
    hook: Receiver
    policy: Policy = field(default_factory=Policy)  # the defaults: keep_firing_for 10 min

    def run(self, report: Report) -> list[tuple[str, str]]:
        """One watch run; what the receiver got during it."""
        before = len(self.hook.bodies)
        channels = [PostChannel(self.hook.url)]
        watch.update(self.store, report, channels, self.policy, "en")
        watch.deliver(self.store, channels, report.context.window.end)
        return self.hook.events()[before:]


@pytest.fixture
def runs(tmp_path: Path) -> Iterator[Runs]:
    with receiver() as hook, StateStore(tmp_path / "state.sqlite") as store:
        yield Runs(store, hook)


def _sequence(runs: Runs, name: str, steps: list[tuple[int, str, str, list[tuple[str, str]]]]) -> None:
    """Run each (run, scenario, condition, expected events) and record the table's rows; assert at the end
    so the table is whole even when a step fails."""
    got_all = []
    for run, scenario, condition, expected in steps:
        if scenario == "webhook down":
            runs.hook.down = True
            scenario = "db-outage"
        report = failed_at(run) if scenario == "failed" else report_at(scenario, run)
        got = runs.run(report)
        runs.hook.down = False
        TABLE.append((name, run, condition, _words(expected), _words(got)))
        got_all.append(got)
    assert got_all == [expected for *_, expected in steps]


def _words(events: list[tuple[str, str]]) -> str:
    return ", ".join(f"{event} {alert}" for event, alert in events) or "none"


def test_an_incident_notifies_once_reminds_after_the_repeat_interval_and_resolves(runs: Runs) -> None:
    _sequence(
        runs,
        "incident",
        [
            (0, "db-outage", "database outage starts", [("firing", DB)]),
            (1, "db-outage", "it continues", []),
            (2, "db-outage", "it continues", []),
            (49, "db-outage", "still there 4 h 5 min later", [("reminder", DB)]),
            (50, "healthy", "fixed (first clean run)", []),
            (51, "healthy", "clean for keep_firing_for (10 min)", [("resolved", DB)]),
            (52, "healthy", "still clean", []),
        ],
    )
    first = runs.hook.bodies[0]
    assert first["severity"] == "CRITICAL" and first["title"].startswith("🔴 CRITICAL emergence-app")
    assert [s["rule"] for s in first["symptoms"]] == ["websocket-failed-upgrade"]  # inhibited, shown inside
    assert first["findings"][0]["rule"] == "database-unavailable" and first["commands"]
    assert len({body["id"] for body in runs.hook.bodies}) == 3


def test_a_flapping_incident_sends_no_storm(runs: Runs) -> None:
    flaps = [(run, "db-outage" if run % 2 == 0 else "healthy", "flaps", []) for run in range(1, 7)]
    _sequence(
        runs,
        "flapping",
        [
            (0, "db-outage", "outage starts", [("firing", DB)]),
            *flaps,  # type: ignore[list-item]
            (7, "healthy", "clean", []),
            (8, "healthy", "clean for 10 min", [("resolved", DB)]),
        ],
    )


def test_a_webhook_down_for_three_runs_gets_the_notification_once_when_back(runs: Runs) -> None:
    _sequence(
        runs,
        "webhook down",
        [
            (0, "webhook down", "outage starts, webhook answers 503", []),
            (1, "webhook down", "webhook still down (retry after 1 min)", []),
            (2, "webhook down", "webhook still down (retry after 2 min)", []),
            (3, "db-outage", "webhook back", [("firing", DB)]),
            (4, "db-outage", "outage continues", []),
        ],
    )
    assert not alert_state.outbox(runs.store)


def test_a_silence_mutes_and_notifications_resume_when_it_expires(runs: Runs) -> None:
    alert_state.add_silence(
        runs.store, parse_matchers(["rule=database-*"]), START + 2 * STEP + timedelta(minutes=1), "migration"
    )
    _sequence(
        runs,
        "silence",
        [
            (0, "db-outage", "outage starts, silenced until 12:11", []),
            (1, "db-outage", "silenced", []),
            (2, "db-outage", "silenced", []),
            (3, "db-outage", "silence expired: the episode never notified", [("firing", DB)]),
            (4, "db-outage", "continues", []),
        ],
    )
    assert [a.state for a in alert_state.current_alerts(runs.store)] == ["firing", "firing"]


def test_a_check_that_fails_is_one_unknown_alert_after_three_runs(runs: Runs) -> None:
    _sequence(
        runs,
        "unknown",
        [
            (0, "failed", "source missing", []),
            (1, "failed", "source missing", []),
            (2, "failed", "source missing (3rd run)", [("firing", UNKNOWN)]),
            (3, "failed", "source missing", []),
            (4, "failed", "source missing", []),
            (5, "healthy", "check works again", [("resolved", UNKNOWN)]),
        ],
    )
    assert runs.hook.bodies[0]["severity"] == "UNKNOWN" and "cannot read" in runs.hook.bodies[0]["title"]


def test_the_default_keep_firing_for_resolves_on_the_second_clean_run_whatever_the_seconds() -> None:
    """A file's clock is its last entry: the second clean run may come a few seconds short of 10 minutes."""
    fired = evaluate([], report_at("db-outage", 0), START).alerts
    clean = report_at("healthy", 2)
    for late, resolved in [(timedelta(minutes=5), False), (timedelta(minutes=9, seconds=57), True)]:
        states = {a.state for a in evaluate(fired, clean, START + late).alerts}
        assert states == ({"resolved"} if resolved else {"firing"})


def test_degraded_fires_after_two_runs_and_a_duration_form_waits_for_its_time(runs: Runs) -> None:
    _sequence(
        runs,
        "degraded",
        [
            (0, "memory-oom", "out of memory (DEGRADED), 1st run", []),
            (1, "memory-oom", "2nd run in a row", [("firing", "emergence-app/memory-limit-exceeded")]),
        ],
    )
    timed = Policy(fire_after={"CRITICAL": timedelta(minutes=10), "DEGRADED": 2})
    outcome = evaluate([], report_at("db-outage", 0), START, timed)
    assert not outcome.notifications and {a.state for a in outcome.alerts} == {"pending"}


def test_a_replayed_or_concurrent_run_of_the_same_window_counts_once(runs: Runs) -> None:
    assert runs.run(report_at("memory-oom", 0)) == []
    assert runs.run(report_at("memory-oom", 0)) == []  # the same clock again: still the first run
    assert [a.runs for a in alert_state.current_alerts(runs.store)] == [1, 1]


def test_two_concurrent_runs_send_one_notification(tmp_path: Path) -> None:
    report = report_at("db-outage", 0)
    with receiver() as hook:
        hook.hold = threading.Event()

        def one_run() -> None:
            with StateStore(tmp_path / "state.sqlite") as store:
                Runs(store, hook).run(report)

        first = threading.Thread(target=one_run)
        first.start()
        assert hook.arrived.wait(10)  # the first run is sending, holding the store
        second = threading.Thread(target=one_run)
        second.start()
        hook.hold.set()
        first.join(20)
        second.join(20)
    assert hook.events() == [("firing", DB)]
    TABLE.append(
        ("concurrent", 0, "two runs of the same window at once", "firing " + DB, _words(hook.events()))
    )


def test_a_delivery_failing_every_time_is_dropped_visibly_after_the_last_try(runs: Runs) -> None:
    runs.hook.down = True
    runs.run(report_at("db-outage", 0))
    at = START
    outcomes = []
    for _ in range(MAX_TRIES - 1):
        at += timedelta(hours=1)
        outcomes += [d.outcome for d in watch.deliver(runs.store, [PostChannel(runs.hook.url)], at)]
    assert outcomes == ["failed"] * (MAX_TRIES - 2) + ["dropped"]
    dropped = alert_state.outbox(runs.store, ("dropped",))
    assert [(row.notification.alert, row.tries) for row in dropped] == [(DB, MAX_TRIES)]
    assert "503" in (dropped[0].last_error or "")
    assert alert_state.counts(runs.store).outbox_dropped == 1


def test_retries_back_off_from_a_minute_to_an_hour() -> None:
    assert [retry_delay(n) for n in (1, 2, 3, 7, 12, 40)] == [
        timedelta(minutes=1),
        timedelta(minutes=2),
        timedelta(minutes=4),
        timedelta(hours=1),
        timedelta(hours=1),
        timedelta(hours=1),
    ]


def test_an_expired_silence_no_longer_mutes(runs: Runs) -> None:
    silence = alert_state.add_silence(runs.store, {"service": "emergence-app"}, START + STEP * 100, "deploy")
    assert alert_state.list_silences(runs.store, START) == [silence]
    assert alert_state.expire_silence(runs.store, silence.id)
    assert not alert_state.expire_silence(runs.store, silence.id)
    assert runs.run(report_at("db-outage", 0)) == [("firing", DB)]


@pytest.mark.parametrize("bad", ["rule", "colour=red", "rule="])
def test_a_bad_matcher_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_matchers([bad])


def test_zz_print_the_run_sequence_table() -> None:
    """The table for the issue's note (run with -s to see it)."""
    width = max((len(row[2]) for row in TABLE), default=10)
    for name, run, condition, expected, got in TABLE:
        print(f"{name:<14} {run:>3}  {condition:<{width}}  {expected:<45} {got}")
