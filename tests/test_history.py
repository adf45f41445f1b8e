"""A check that keeps its memory in the state store gives the stateless check's answer.

Each simulator scenario is read the way a cron job reads it: a cold check stores everything up to a first
cursor, then warm checks read only from the cursor less the lateness margin (entries already stored are read
again and replaced, never added) at cursor positions on and off whole minutes. The last check must give the
stateless check of all the entries the same status, findings (rule, category, severity, count) and metrics
(latency quantiles within the sketch's 2%).
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pandas as pd
import pytest

from prodguardian.aggregate import Window
from prodguardian.check import CheckOptions, run_check
from prodguardian.history import History, seasonal_reference
from prodguardian.render import render
from prodguardian.simulate import SCENARIOS, generate
from prodguardian.sketch import ALPHA
from prodguardian.state import MINUTE_COLUMNS, MinuteFacts, StateStore
from prodguardian.verdict import Report
from tests.reports import builtin_pack

SCHEMA = Path(__file__).parent.parent / "templates" / "report.schema.json"
HOURS = 2  # the window and an hour of baseline: every scenario's incident, a fraction of the entries
BASELINE = timedelta(hours=HOURS - 1)
MARGIN = timedelta(minutes=2)
# Minutes before the end at which each read stops: the last read starts mid-minute, the others on
# whole minutes or just after one.
CUTS = (timedelta(minutes=41, seconds=17), timedelta(minutes=23), timedelta(minutes=5, seconds=1))


@cache
def _entries(name: str) -> tuple[list[dict[str, Any]], list[pd.Timestamp], datetime]:
    entries = list(generate(name, hours=HOURS))
    stamps = [pd.Timestamp(e["timestamp"]) for e in entries]
    end = max(stamps).ceil("min").to_pydatetime()
    return entries, stamps, end


def _options(until: datetime) -> CheckOptions:
    return CheckOptions(until=until, baseline=BASELINE)


def _summary(report: Report) -> tuple[str, list[tuple[str, str, str, int]]]:
    findings = sorted((f.rule, f.category, f.severity, f.count) for f in report.findings)
    return report.status, findings


def _same_metrics(stored: Any, read: Any) -> None:
    for name, value in dataclasses.asdict(read).items():
        mine = getattr(stored, name)
        if isinstance(value, dict):
            assert mine is not None and mine.keys() == value.keys(), name
            for key, exact in value.items():
                assert mine[key] == pytest.approx(exact, rel=ALPHA), (name, key)
        else:
            assert mine == value, name


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_a_check_from_the_store_gives_the_stateless_answer(name: str, tmp_path: Path) -> None:
    entries, stamps, end = _entries(name)
    expected = run_check(entries, _options(end), builtin_pack()).report
    with StateStore(tmp_path / "state.sqlite") as store:
        cursor = end - CUTS[0]
        cold = [e for e, t in zip(entries, stamps, strict=True) if t < cursor]
        run_check(cold, _options(cursor), builtin_pack(), history=History(store))
        for cut in (*CUTS[1:], timedelta(0)):
            since, cursor = cursor - MARGIN, end - cut
            new = [e for e, t in zip(entries, stamps, strict=True) if since <= t < cursor]
            report = run_check(
                new, _options(cursor), builtin_pack(), history=History(store, since=since)
            ).report
    assert _summary(report) == _summary(expected)
    _same_metrics(report.metrics, expected.metrics)
    assert report.context.totals["entries"] == expected.context.totals["entries"]
    assert report.context.totals["read"] == {
        "calls": None,
        "entries": len(new),
        "baseline_from_state_hours": (BASELINE / timedelta(hours=1)),
    }


def test_the_header_says_what_was_read_and_what_came_from_the_state(tmp_path: Path) -> None:
    entries, stamps, end = _entries("db-outage")
    with StateStore(tmp_path / "state.sqlite") as store:
        cold = run_check(entries, _options(end - CUTS[-1]), builtin_pack(), history=History(store)).report
        since = end - CUTS[-1] - MARGIN
        new = [e for e, t in zip(entries, stamps, strict=True) if t >= since]
        report = run_check(new, _options(end), builtin_pack(), history=History(store, since=since)).report
    text, french = render(report, "text", "en"), render(report, "text", "fr")
    document = json.loads(render(report, "json", "en"))
    jsonschema.validate(document, json.loads(SCHEMA.read_text(encoding="utf-8")))
    header = text.splitlines()[1]
    assert header.startswith("Window 11:04–12:04 UTC, 2025-10-11 (1 h) · baseline: previous 1 h · ")
    assert header.endswith(f" · {len(new):,} new entries; baseline from state: 1 h")
    assert french.splitlines()[1].endswith(" nouvelles entrées\u202f; référence tirée de l'état\xa0: 1\xa0h")
    # A first check read it all: nothing of its baseline came from the state, and the header does not say 1 s.
    assert render(cold, "text", "en").splitlines()[1].endswith(f" · {len(entries):,} new entries")


def test_the_same_hours_and_weekdays_of_the_stored_weeks_are_the_seasonal_reference(tmp_path: Path) -> None:
    start = datetime(2025, 10, 1, tzinfo=UTC)  # a Wednesday
    minutes = pd.date_range(start, start + timedelta(days=15), freq="min", inclusive="left")
    requests = minutes.hour * 100 + minutes.day  # each hour's count names its day and hour
    frame = pd.DataFrame({c: 0 for c in MINUTE_COLUMNS}, index=range(len(minutes)))
    frame = frame.assign(
        revision="r",
        minute=minutes.as_unit("s").asi8 // 60,
        requests=requests,
        latency=None,
        failed_latency=None,
    )
    window = Window(start + timedelta(days=14, hours=10), start + timedelta(days=14, hours=11), start)
    with StateStore(tmp_path / "state.sqlite") as store:
        store.replace(
            "svc", start, start + timedelta(days=15), MinuteFacts(minutes=frame[list(MINUTE_COLUMNS)])
        )
        reference = seasonal_reference(store, "svc", window, weeks=2)
    assert reference.same_hour["requests"].tolist() == [60 * (1000 + day) for day in range(1, 15)]
    assert reference.same_weekday["requests"].tolist() == [60 * 1001, 60 * 1008]
    assert set(reference.same_weekday["weekday"]) == {2}
