"""Sparklines: the bars of a timeline's values, the checked window marked."""

from __future__ import annotations

import math

from prodguardian.render import render
from prodguardian.sparkline import MAX_BARS, recent, sparkline
from tests.reports import scenario_report


def test_values_scale_from_the_lowest_to_the_highest_bar() -> None:
    assert sparkline([0, 1, 2, 3, 4, 5, 6, 7], 8) == "▁▂▃▄▅▆▇█"


def test_the_window_is_marked_before_its_first_bucket() -> None:
    assert sparkline([0, 0, 7, 7], 2) == "▁▁│██"


def test_an_empty_series_is_an_empty_line() -> None:
    assert sparkline([], 0) == ""


def test_a_constant_series_is_flat() -> None:
    assert sparkline([3.0, 3.0, 3.0], 1) == "▁│▁▁"


def test_missing_and_nan_buckets_are_blank() -> None:
    assert sparkline([0, None, math.nan, 7], 3) == "▁  │█"


def test_one_bucket() -> None:
    assert sparkline([5.0], 0) == "│▁"


def test_recent_keeps_the_last_buckets_and_moves_the_window_start() -> None:
    values, start = recent(list(range(300)), 288)
    assert len(values) == MAX_BARS and values[-1] == 299 and start == 288 - (300 - MAX_BARS)


def test_the_text_and_markdown_reports_show_an_outage_in_the_window() -> None:
    report = scenario_report("db-outage")
    text = render(report, "text")
    line = next(x for x in text.splitlines() if "database errors/5min" in x)
    before, _, after = line.partition("│")
    assert set(before.split("/5min")[1].strip()) == {"▁"} and "█" in after
    section = text.split("Timelines")[1].split("\n\n")[0].splitlines()[1:]
    assert len({x.index("│") for x in section}) == 1, "the names are padded: every window marker lines up"
    markdown = render(report, "markdown", "fr")
    assert "- erreurs de base de données/5min `" in markdown
    assert "Chronologies" in markdown
