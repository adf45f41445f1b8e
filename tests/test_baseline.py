"""Comparison with usual: minimum evidence on quiet services, 0 against 0, a rate above its own history,
latency against the baseline's distribution, traffic drops and silence, and the seasonal reference."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from prodguardian.aggregate import Window, aggregate
from prodguardian.check import CheckOptions, run_check
from prodguardian.classify import classify
from prodguardian.detect import SILENCE_RULE, TRAFFIC_RULE, Detection, Finding, detect
from prodguardian.events import build_events
from prodguardian.history import History
from prodguardian.reference import from_baseline
from prodguardian.render import render
from prodguardian.rules import RulePack
from prodguardian.state import StateStore
from prodguardian.verdict import Context, Report, build_report
from tests import logs

HOUR = 3600.0
WEEK = 7 * 24 * HOUR
# T0 is 11:30 UTC on Saturday 2025-10-11: the window is 11:00–12:00, the baseline the 24 hours before.
WINDOW = Window(
    logs.T0 - timedelta(minutes=30), logs.T0 + timedelta(minutes=30), logs.T0 - timedelta(hours=24.5)
)
WINDOW_START = -1800.0  # seconds from T0


def requests(per_hour: float, start: float, end: float, **kwargs: Any) -> list[dict[str, Any]]:
    """Requests evenly spaced from `start` to `end` (seconds from T0)."""
    step = HOUR / per_hour
    count = round((end - start) / step)
    return [logs.request(start + (i + 0.5) * step, "/api/threads", **kwargs) for i in range(count)]


def baseline(per_hour: float, **kwargs: Any) -> list[dict[str, Any]]:
    return requests(per_hour, WINDOW_START - 24 * HOUR, WINDOW_START, **kwargs)


def check(entries: list[dict[str, Any]], pack: RulePack, window: Window = WINDOW) -> tuple[Detection, Report]:
    events = build_events(entries)
    aggs = aggregate(classify(events.table, pack), pack, window, events.dropped)
    detection = detect(aggs, pack)
    return detection, build_report(detection, Context("emergence-app", None, None, window, aggs.totals))


def finding(detection: Detection, rule: str) -> Finding:
    return next(f for f in detection.findings if f.rule == rule)


def test_a_quiet_service_never_goes_critical_on_one_error(pack: RulePack) -> None:
    """3 requests an hour, one of the window's three fails: 33%, but one failure is no evidence."""
    window = [logs.request(-1500, "/api/threads"), logs.request(-300, "/api/threads", 500)]
    window.append(logs.request(900, "/api/threads"))
    detection, report = check(baseline(3) + window, pack)
    http = finding(detection, "http-5xx")
    assert (http.count, http.rate, http.severity) == (1, pytest.approx(1 / 3), "INFO")
    assert http.p_value == pytest.approx(0.04, rel=0.05)  # 1 of 3 against 0 of 72: Fisher's exact test
    assert report.status == "OK"
    assert "(usual: 0/h, p = 0.04)" in render(report, "text")
    assert not [f for f in detection.findings if f.category == "traffic"]  # 25 quiet minutes are usual here


def test_zero_against_zero_is_no_finding(pack: RulePack) -> None:
    detection, report = check(baseline(3) + requests(3, WINDOW_START, 1800), pack)
    assert [f.kind for f in detection.findings] == ["latency"]  # the latency line, within its thresholds
    assert report.status == "OK"


def test_a_rate_clearly_above_its_own_history_is_flagged_under_the_threshold(pack: RulePack) -> None:
    """3 failures in 400 requests (0.75%, under the 1% threshold) where none failed in 9,600."""
    window = requests(400, WINDOW_START, 1800)
    for i in (50, 150, 250):
        window[i]["httpRequest"]["status"] = 500
    detection, report = check(baseline(400) + window, pack)
    http = finding(detection, "http-5xx")
    assert http.severity == "DEGRADED" and http.threshold == {"above_usual": 3.0, "p_below": 1e-4}
    assert http.p_value is not None and 5e-5 < http.p_value < 1e-4
    assert report.status == "DEGRADED"
    assert "⚠️ HTTP 5xx errors — 3 failures in 1 h: 0.75% of 400 requests (usual: 0/h, p = 6e-5)" in render(
        report, "text"
    )
    usual = baseline(400)
    for i in range(0, len(usual), 130):  # 74 of 9,600 failed in the baseline: 0.77% is usual
        usual[i]["httpRequest"]["status"] = 500
    assert finding(check(usual + window, pack)[0], "http-5xx").severity == "INFO"


def test_latency_above_the_baseline_distribution(pack: RulePack) -> None:
    def timed(per_hour: float, start: float, end: float, ms: int) -> list[dict[str, Any]]:
        made = requests(per_hour, start, end)
        for i, entry in enumerate(made):
            entry["httpRequest"]["latency"] = f"{(ms + i % 40) / 1000}s"
        return made

    usual = timed(100, WINDOW_START - 24 * HOUR, WINDOW_START, 200)
    detection, report = check(usual + timed(100, WINDOW_START, 1800, 450), pack)
    latency = finding(detection, "latency-p95")
    assert latency.severity == "DEGRADED" and latency.p_value is not None and latency.p_value < 1e-6
    assert (round(latency.value_ms or 0), round(latency.baseline_ms or 0)) == (487, 237)
    assert "Latency high — p95 487 ms over 100 requests (usual 237 ms, p < 1e-6)" in render(report, "text")
    few = check(usual + timed(30, WINDOW_START, 1800, 450), pack)[0]
    assert finding(few, "latency-p95").severity == "INFO"  # 30 requests: too few to compare


def test_no_traffic_for_half_an_hour_is_a_finding(pack: RulePack) -> None:
    detection, report = check(baseline(300) + requests(300, WINDOW_START, -300), pack)
    silence = finding(detection, SILENCE_RULE)
    assert (silence.severity, silence.count, silence.baseline_per_hour) == ("DEGRADED", 35, 300)
    assert "⚠️ No traffic — no traffic for 35 min (quietest usual hour: 300/h, p < 1e-6)" in render(
        report, "text"
    )


def test_traffic_far_below_the_quietest_usual_hour(pack: RulePack) -> None:
    detection, _ = check(baseline(300) + requests(20, WINDOW_START, 1800), pack)
    drop = finding(detection, TRAFFIC_RULE)
    assert (drop.severity, drop.count) == ("DEGRADED", 20)
    night = requests(30, WINDOW_START - 12 * HOUR, WINDOW_START - 11 * HOUR)  # a daily cycle's quiet hour
    usual = [e for e in baseline(300) if not -12 * HOUR <= _seconds(e) - WINDOW_START < -11 * HOUR]
    cycle, _ = check(usual + night + requests(40, WINDOW_START, 1800), pack)
    assert not [f for f in cycle.findings if f.category == "traffic"]


def _seconds(entry: dict[str, Any]) -> float:
    moment = datetime.fromisoformat(entry["timestamp"][:26] + "+00:00")
    return (moment - logs.T0).total_seconds()


def test_a_week_of_baseline_compares_with_the_same_weekday_and_hour(pack: RulePack) -> None:
    """A weekly job fails 4 times every Saturday 11:00–12:00: usual for that hour, not a new spike."""
    week = Window(WINDOW.start, WINDOW.end, WINDOW.start - timedelta(days=8))
    traffic = requests(6, WINDOW_START - 8 * 24 * HOUR, 1800)
    errors = [
        logs.text_line(start + i * 600, "KeyError: 'report_id'", "ERROR")
        for start in (WINDOW_START + 60, WINDOW_START + 60 - 7 * 24 * HOUR)
        for i in range(4)
    ]
    detection, report = check(traffic + errors, pack, week)
    reference = detection.reference
    assert reference is not None and reference.seasonal and reference.weeks == 1 and reference.hours == 1
    error = finding(detection, "unknown-error")
    assert (error.count, error.baseline_per_hour, error.severity) == (4, 4.0, "INFO")
    text, french = render(report, "text"), render(report, "text", "fr")
    assert "baseline: Saturdays 11:00, 1 week before" in text.splitlines()[1]
    assert "(usual for Saturdays 11:00: 4/h, p = 0.64)" in text
    assert "(habituel le samedi à 11:00\u00a0: 4/h, p = 0,64)" in french
    day, _ = check([e for e in traffic + errors if _seconds(e) > WINDOW_START - 24 * HOUR], pack)
    assert finding(day, "unknown-error").severity == "DEGRADED"  # against a plain day, 4 against 0 is news


def test_the_reference_is_the_baseline_period_without_a_week(pack: RulePack) -> None:
    events = build_events(baseline(6))
    aggs = aggregate(classify(events.table, pack), pack, WINDOW, events.dropped)
    reference = from_baseline(aggs)
    assert reference is not None and not reference.seasonal
    assert (reference.hours, reference.requests, reference.quietest_per_hour) == (24, 144, 6)


def test_a_new_error_is_flagged_once_it_repeats(pack: RulePack) -> None:
    """An error the baseline never logged: once is a note, three times in the hour is DEGRADED."""
    traffic = baseline(60) + requests(60, WINDOW_START, 1800)
    new = [
        logs.text_line(WINDOW_START + 300 + i * 600, "ValueError: invoice total is negative", "ERROR")
        for i in range(3)
    ]
    once, _ = check(traffic + new[:1], pack)
    assert finding(once, "unknown-error").severity == "INFO"
    thrice, report = check(traffic + new, pack)
    error = finding(thrice, "unknown-error")
    assert (error.count, error.baseline_per_hour, error.severity) == (3, 0.0, "DEGRADED")
    assert "3 failures in 1 h (usual: 0/h, p = 6e-5)" in render(report, "text")


def _weekly_job(weeks: int) -> list[dict[str, Any]]:
    """6 requests an hour over `weeks` weeks and a day before the window, and a job that fails 4 times every
    Saturday 11:00–12:00 (the window's hour included)."""
    start = WINDOW_START - (7 * weeks + 1) * 24 * HOUR
    errors = [
        logs.text_line(WINDOW_START + 60 + i * 600 - week * 7 * 24 * HOUR, "KeyError: 'report_id'", "ERROR")
        for week in range(weeks + 1)
        for i in range(4)
    ]
    return requests(6, start, 1800) + errors


def test_a_check_with_a_state_store_names_the_same_weekday_and_hour(pack: RulePack, tmp_path: Path) -> None:
    """Eight days stored a day at a time (as a backfill does), then a check that reads only its hour: the
    reference comes from the store's minutes, the same Saturday hour a week before."""
    entries = _weekly_job(1)
    report = _stored_check(entries, pack, tmp_path / "state.sqlite")
    text = render(report, "text")
    assert "baseline: Saturdays 11:00, 1 week before" in text.splitlines()[1]
    assert "(usual for Saturdays 11:00: 4/h, p = 0.64)" in text
    error = next(f for f in report.findings if f.rule == "unknown-error")
    assert (error.count, error.severity) == (4, "INFO")


def _moment(entry: dict[str, Any]) -> datetime:
    return logs.T0 + timedelta(seconds=_seconds(entry))


def _stored_check(entries: list[dict[str, Any]], pack: RulePack, path: Path) -> Report:
    """Store the days before the window a day at a time (as a backfill does), then check the window's hour
    with the store's 8 days as its baseline."""
    _backfill(entries, pack, path)
    return _window_check(entries, pack, path)


def _backfill(entries: list[dict[str, Any]], pack: RulePack, path: Path) -> None:
    """The days before the window stored a day at a time, as a backfill does."""
    days = [WINDOW.end - timedelta(days=d) for d in range(9, 0, -1)] + [WINDOW.start]
    with StateStore(path) as store:
        for start, end in pairwise(days):
            day = [e for e in entries if start <= _moment(e) < end]
            options = CheckOptions(logs.SERVICE, freshness=end - start, until=end, baseline=timedelta(0))
            run_check(day, options, pack, history=History(store, since=start))


def _window_check(entries: list[dict[str, Any]], pack: RulePack, path: Path) -> Report:
    """The window's hour checked with the store's 8 days as its baseline."""
    with StateStore(path) as store:
        window = [e for e in entries if _moment(e) >= WINDOW.start]
        options = CheckOptions(logs.SERVICE, until=WINDOW.end, baseline=timedelta(days=8))
        return run_check(window, options, pack, history=History(store, since=WINDOW.start)).report


def _copy_store(source: Path, target: Path) -> Path:
    with sqlite3.connect(source) as old, sqlite3.connect(target) as new:
        old.backup(new)
    return target


def _nightly_batch(window_ms: int) -> list[dict[str, Any]]:
    """6 requests an hour at 100 ms over 8 days and the window, and 120 more every Saturday 11:00–12:00 (a
    weekly batch) that take about 300 ms a week before and `window_ms` in the window's hour."""
    quiet = requests(6, WINDOW_START - 9 * 24 * HOUR, 1800, latency="0.1s")
    batch = []
    for week, ms in ((1, 300), (0, window_ms)):
        start = WINDOW_START - week * WEEK
        for i, entry in enumerate(requests(120, start, start + HOUR)):
            entry["httpRequest"]["latency"] = f"{(ms + i % 40) / 1000}s"
            batch.append(entry)
    return quiet + batch


def test_latency_is_compared_with_the_same_hour_of_the_week(pack: RulePack, tmp_path: Path) -> None:
    """The batch hour is slow every week: 3 times the rest of the days, but usual for that hour; twice as
    slow as usual for that hour (still under the 1 s objective) is a finding naming the hour."""
    _backfill(_nightly_batch(300), pack, tmp_path / "usual.sqlite")  # the days before the window: the same
    slow_store = _copy_store(tmp_path / "usual.sqlite", tmp_path / "slow.sqlite")  # for both windows
    usual = _window_check(_nightly_batch(300), pack, tmp_path / "usual.sqlite")
    latency = next(f for f in usual.findings if f.rule == "latency-p95")
    assert latency.severity == "INFO" and round(latency.baseline_ms or 0) in range(320, 345)
    assert usual.status == "OK"
    day = [e for e in _nightly_batch(300) if _seconds(e) > WINDOW_START - 24 * HOUR]
    assert finding(check(day, pack)[0], "latency-p95").severity == "DEGRADED"  # against a plain day: slow
    slow = _window_check(_nightly_batch(800), pack, slow_store)
    latency = next(f for f in slow.findings if f.rule == "latency-p95")
    assert latency.severity == "DEGRADED" and latency.threshold == {"above_usual": 2.0, "p_below": 1e-4}
    assert (latency.value_ms or 0) < 1000  # under the fixed objective: only the hour's own usual tells
    text, french = render(slow, "text"), render(slow, "text", "fr")
    assert "usual for Saturdays 11:00: 3" in text and "p < 1e-6)" in text
    assert "habituel le samedi à 11:00\u00a0: 3" in french
