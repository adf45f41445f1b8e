"""The HTML report as a page: self-contained, escaped, accessible, in both languages, deterministic."""

from __future__ import annotations

import re
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from prodguardian.charts import zoom_start
from prodguardian.cli import main
from prodguardian.errors import ConfigError
from prodguardian.render import catalog
from prodguardian.render_html import render_html
from prodguardian.timelines import Signal, Timeline
from tests.html_reports import SCENARIOS, html_of, report_of
from tests.reports import HOSTILE_REVISION


class _Page(HTMLParser):
    """The tags and attributes of a page, to look at what it would load."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def named(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.tags if name == tag]


@pytest.mark.parametrize("name", SCENARIOS)
def test_a_page_loads_nothing_from_anywhere(name: str) -> None:
    """No script, stylesheet, image, font or frame to fetch: every link is to the page itself."""
    page = _Page(html_of(name))
    assert not {"script", "link", "img", "iframe", "object", "embed", "image"} & {t for t, _ in page.tags}
    for _, attrs in page.tags:
        assert "src" not in attrs
        for link in ("href", "xlink:href"):  # a chart's tick marks are <use> of its own definitions
            assert (attrs.get(link) or "#").startswith("#"), attrs
    style = re.findall(r"<style>(.*?)</style>", html_of(name), re.DOTALL)
    assert style and not any(word in style[0] for word in ("url(", "@import", "@font-face"))


@pytest.mark.parametrize("name", SCENARIOS)
def test_each_signal_is_a_chart_named_and_described(name: str) -> None:
    report = report_of(name)
    pages = report.services or [report]
    page = _Page(html_of(name))
    charts = [attrs for attrs in page.named("svg") if attrs.get("role") == "img"]
    assert len(charts) == sum(len(p.timeline.signals) for p in pages if p.timeline)
    ids = [attrs["id"] for _, attrs in page.tags if "id" in attrs]
    assert len(ids) == len(set(ids)), "ids are unique on the page (clip paths of every chart included)"
    titles = {attrs["id"] for attrs in page.named("title") if attrs.get("id")}
    descriptions = {attrs["id"] for attrs in page.named("desc") if attrs.get("id")}
    for chart in charts:
        assert chart["aria-labelledby"] in titles and chart["aria-describedby"] in descriptions
    assert len(page.named("figcaption")) == len(charts)  # the text alternative, visible


def test_the_outage_page_shows_the_findings_the_band_and_the_anomalous_buckets() -> None:
    text = html_of("db-outage")
    assert "<h1" in text and "CRITICAL" in text
    report = report_of("db-outage")
    assert report.timeline is not None
    errors = next(s for s in report.timeline.signals if s.name == "errors:database")
    words = catalog("en")["html"]
    anomalous = words["chart_anomalous"]["other"].split("{n}")[1].split(",")[0]
    assert f"{len(errors.anomalous)}{anomalous}" in text
    assert words["legend"]["band"].replace("'", "&#39;") in text
    assert text.count("var(--chart-anomaly") >= 1 and text.count("var(--chart-band") >= 1


def test_the_deploy_is_a_labelled_revision_line() -> None:
    text = html_of("bad-deploy")
    assert ">00298-xyz</text>" in text  # matplotlib keeps text as text (svg.fonttype none)
    assert (
        "revision emergence-app-00298-xyz from 2025-10-11 11:33" in text
    )  # the text alternative names it whole


def test_a_revision_named_like_a_script_tag_is_text() -> None:
    text = html_of("hostile-revision")
    assert "<script" not in text
    escaped = HOSTILE_REVISION.replace("<", "&lt;").replace(">", "&gt;")
    assert f"revision {escaped} ·" in text  # the finding's evidence
    assert f">{escaped}</text>" in text  # its label in the chart, escaped too


def test_several_services_have_an_overview_then_a_section_each() -> None:
    page = _Page(html_of("two-services"))
    links = [attrs["href"] for attrs in page.named("a")]
    sections = [attrs["id"] for attrs in page.named("section")]
    assert links == ["#p0", "#p1"] and sections == ["p0", "p1"]
    text = html_of("two-services")
    assert text.index("emergence-worker") < text.index('id="p0"')  # the overview names it first
    first, second = "Status: CRITICAL — emergence-app", "Status: OK — emergence-worker"
    assert text.index(first) < text.index('id="p1"') < text.index(second)


def test_french_is_french() -> None:
    text = html_of("db-outage", "fr")
    words = catalog("fr")
    assert '<html lang="fr">' in text
    for heading in (words["html"]["charts_title"], words["objectives_title"], words["recommendations_title"]):
        assert f">{heading}<" in text
    assert catalog("en")["html"]["charts_title"] not in text


def test_the_page_is_the_same_each_time() -> None:
    assert render_html(report_of("bad-deploy"), "en") == html_of("bad-deploy")


def test_without_inline_charts_the_text_alternatives_stand_alone() -> None:
    text = render_html(report_of("db-outage"), "en", inline_charts=False)
    page = _Page(text)
    assert not page.named("svg")
    assert len(page.named("figcaption")) == len(page.named("figure")) > 0


def test_a_close_up_only_when_the_baseline_dwarfs_the_window() -> None:
    timeline = report_of("db-outage").timeline
    assert timeline is not None
    assert zoom_start(timeline) == timeline.size - 36  # the hour's 12 buckets and the two hours before
    short = Timeline(timeline.start, timeline.bucket, 18, [Signal("requests", "count", [1.0] * 30, None, [])])
    assert zoom_start(short) == 0  # 2 h 30 min in 5-minute buckets: readable whole


def test_check_writes_the_page_to_output(
    capsys: pytest.CaptureFixture[str], exports: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "report.html"
    code = main(["check", "--source", str(exports["db-outage-2h"]), "--format", "html", "--output", str(out)])
    assert code == 2 and capsys.readouterr().out == ""
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_without_matplotlib_a_one_line_error_naming_the_extra(
    capsys: pytest.CaptureFixture[str], exports: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what `import matplotlib` meets when not installed
    with pytest.raises(ConfigError, match=r"prodguardian\[html\]"):
        render_html(report_of("healthy"), "en")
    code = main(["check", "--source", str(exports["healthy-2h"]), "--format", "html"])
    err = capsys.readouterr().err
    assert code == 3 and err.count("\n") == 1 and "pip install 'prodguardian[html]'" in err
