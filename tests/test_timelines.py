"""The report's timelines: built from the aggregate tables, or the state store's minutes, alike."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from prodguardian.check import CheckOptions, run_check
from prodguardian.history import History
from prodguardian.simulate import REVISION_BAD, REVISION_CURRENT, generate
from prodguardian.state import StateStore
from prodguardian.timelines import Timeline, bucket_minutes
from tests.reports import builtin_pack, scenario_report


def _timeline(name: str) -> Timeline:
    timeline = scenario_report(name).timeline
    assert timeline is not None
    return timeline


def _signal(timeline: Timeline, name: str) -> list[float | None]:
    return next(s.values for s in timeline.signals if s.name == name)


def test_a_day_is_cut_in_5_minute_buckets_the_window_a_whole_number_of_them() -> None:
    timeline = _timeline("db-outage")
    assert timeline.bucket == timedelta(minutes=5)
    assert timeline.size - timeline.window_index == 12  # the hour's window
    window = scenario_report("db-outage").context.window
    assert timeline.time_of(timeline.window_index) == window.start
    assert timeline.time_of(timeline.size) == window.end


def test_requests_sum_to_the_reports_counts() -> None:
    timeline, report = _timeline("healthy"), scenario_report("healthy")
    assert report.metrics is not None
    in_window = _signal(timeline, "requests")[timeline.window_index :]
    assert sum(v or 0 for v in in_window) == report.metrics.requests


def test_an_outage_marks_its_buckets_above_the_usual_band() -> None:
    timeline = _timeline("db-outage")
    errors = next(s for s in timeline.signals if s.name == "errors:database")
    assert errors.band == (0.0, 0.0, 0.0)
    assert errors.anomalous and min(errors.anomalous) >= timeline.window_index
    assert all((errors.values[i] or 0) > 0 for i in errors.anomalous)


def test_a_healthy_service_has_no_anomalous_bucket_and_a_latency_band() -> None:
    timeline = _timeline("healthy")
    assert not any(s.anomalous for s in timeline.signals)
    p95 = next(s for s in timeline.signals if s.name == "p95")
    assert p95.band is not None and p95.band[0] < p95.band[1] < p95.band[2]


def test_a_deploy_is_a_revision_change_in_the_window() -> None:
    timeline = _timeline("bad-deploy")
    window = scenario_report("bad-deploy").context.window
    # The simulator's baseline has a deploy of its own (the old revision to the current one).
    assert [c.revision for c in timeline.revisions] == [REVISION_CURRENT, REVISION_BAD]
    assert timeline.revisions[0].at < window.start <= timeline.revisions[1].at < window.end


@pytest.mark.parametrize(
    ("span", "window", "bucket"), [(1500, 60, 5), (10140, 60, 60), (60, 60, 1), (90, 7, 1), (600, 45, 5)]
)
def test_the_bucket_fits_the_span_and_divides_the_window(span: int, window: int, bucket: int) -> None:
    assert bucket_minutes(span, window) == bucket


def test_the_state_store_gives_the_same_timeline(tmp_path: Path) -> None:
    entries = list(generate("bad-deploy", hours=3))
    newest = max(pd.Timestamp(e["timestamp"]) for e in entries)
    # On a whole minute: the store keeps whole minutes, a read without one ends just after the newest entry.
    options = CheckOptions(until=newest.ceil("min").to_pydatetime(), baseline=timedelta(hours=2))
    read = run_check(entries, options, builtin_pack()).report.timeline
    with StateStore(tmp_path / "state.sqlite") as store:
        stored = run_check(entries, options, builtin_pack(), history=History(store)).report.timeline
    assert read is not None and stored is not None
    assert stored.bucket == read.bucket and stored.size == read.size
    assert _signal(stored, "requests") == _signal(read, "requests")
    assert _signal(stored, "errors") == _signal(read, "errors")
