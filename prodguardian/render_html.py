"""The HTML report: one self-contained page (CSS inline, charts inline SVG, no script, no external URL).

It shows what the text report shows, worded by the same catalogs (`render.report_view`), plus a chart per
timeline signal (prodguardian/charts.py, the `html` extra). The template is autoescaped: log text is data.
A check of several services gives an overview, then one section per service, worst first.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import cache
from typing import Any

import jinja2

from prodguardian.charts import ChartText, chart_svg, require_matplotlib, zoom_start
from prodguardian.render import (
    Translator,
    figure,
    report_view,
    service_name,
    signal_name,
)
from prodguardian.resources import data_dir
from prodguardian.timelines import Signal, Timeline
from prodguardian.verdict import STATUS_ICONS, Report

SHORT_REVISION = 14  # a revision label longer than this drops its service's prefix


def render_html(report: Report, lang: str, *, inline_charts: bool = True) -> str:
    """The report as an HTML page; without `inline_charts`, the charts' text alternatives stand alone (and
    matplotlib is not needed)."""
    if inline_charts:
        require_matplotlib()
    t = Translator(lang)
    pages = report.services or [report]
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            t=t,
            lang=lang,
            document_title=t("html.document_title", status=report.status, service=_services(pages, t)),
            overview=_overview(report, t) if report.services else None,
            pages=[_page(page, index, t, inline_charts) for index, page in enumerate(pages)],
        )
    )


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(data_dir("templates"))),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _services(pages: list[Report], t: Translator) -> str:
    return ", ".join(service_name(page, t) for page in pages)


def _overview(report: Report, t: Translator) -> dict[str, Any]:
    count = len(report.services)
    return {
        "line": t("services_overview", n=count, count=count, list=_services(report.services, t)),
        "services": [
            {
                "icon": STATUS_ICONS[s.status],
                "status": s.status,
                "name": service_name(s, t),
                "anchor": f"p{i}",
            }
            for i, s in enumerate(report.services)
        ],
    }


def _page(report: Report, index: int, t: Translator, inline_charts: bool) -> dict[str, Any]:
    view = report_view(report, t)
    view.pop("t")
    view["anchor"] = f"p{index}"
    view["status"] = report.status
    view["charts"] = _charts(report.timeline, f"p{index}", t, inline_charts)
    return view


def _charts(timeline: Timeline | None, prefix: str, t: Translator, inline: bool) -> list[dict[str, str]]:
    if timeline is None or not timeline.size:
        return []
    charts = []
    for number, signal in enumerate(timeline.signals):
        text = _chart_text(timeline, signal, t)
        svg = chart_svg(timeline, signal, text, f"{prefix}-chart{number}") if inline else ""
        charts.append({"title": text.title, "description": text.description, "svg": svg})
    return charts


def _chart_text(timeline: Timeline, signal: Signal, t: Translator) -> ChartText:
    bucket = t.hours(timeline.bucket / timedelta(hours=1))
    title = t("html.chart_title", name=signal_name(signal.name, t), bucket=bucket)
    zoom = timeline.size - zoom_start(timeline)
    return ChartText(
        title=title,
        zoom_title=t("html.chart_zoom", length=t.hours(zoom * timeline.bucket / timedelta(hours=1))),
        description=_description(timeline, signal, title, t),
        tick=lambda value: figure(value, signal.unit, t),
        revision_label=_short_revision,
    )


def _description(timeline: Timeline, signal: Signal, title: str, t: Translator) -> str:
    """The chart in words: the window's range, the usual band, the anomalous buckets, the revisions."""
    window = [v for v in signal.values[timeline.window_index :] if v is not None]
    parts = [
        t(
            "html.chart_window",
            title=title,
            start=_clock(timeline, timeline.start),
            end=_clock(timeline, timeline.time_of(timeline.size)),
            low=figure(min(window, default=None), signal.unit, t),
            high=figure(max(window, default=None), signal.unit, t),
        )
    ]
    if signal.band is not None:
        low, median, high = (figure(v, signal.unit, t) for v in signal.band)
        parts.append(t("html.chart_usual", low=low, median=median, high=high))
    if signal.anomalous:
        first = _clock(timeline, timeline.time_of(min(signal.anomalous)))
        n = len(signal.anomalous)
        parts.append(t("html.chart_anomalous", n=t.num(n), count=n, start=first))
    for change in timeline.revisions:
        parts.append(t("html.chart_revision", revision=change.revision, at=_clock(timeline, change.at)))
    return " · ".join(parts)


def _clock(timeline: Timeline, moment: datetime) -> str:
    """A time on the chart's scale: the minute, with its date when the timeline spans days."""
    days = timeline.bucket * timeline.size > timedelta(days=1)
    return f"{moment:%Y-%m-%d %H:%M}" if days else f"{moment:%H:%M}"


def _short_revision(revision: str) -> str:
    """`emergence-app-00298-xyz` labelled `00298-xyz`: Cloud Run's revision suffix, the part that changes."""
    head, _, tail = revision.rpartition("-")
    service, _, number = head.rpartition("-")
    if len(revision) > SHORT_REVISION and service and number.isdigit():
        return f"{number}-{tail}"
    return revision
