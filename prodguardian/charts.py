"""A timeline signal as an inline SVG chart, drawn by matplotlib's SVG backend (the `html` extra).

matplotlib is imported only here, and only when a chart is drawn, so the other formats neither need nor load
it. The charts are deterministic (a fixed hash salt per chart, no date in the metadata) and keep their text as
text (`svg.fonttype: none`). Colours are drawn in placeholder shades that the SVG then names as CSS variables
(`var(--chart-line, #1f5fa8)`), so the page's light and dark themes colour the same chart.
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prodguardian.errors import ConfigError
from prodguardian.timelines import Signal, Timeline

INSTALL_HINT = "pip install 'prodguardian[html]'"
# About 350 px wide at its own size: a phone's column shows it near 1:1, a wide page three to a row.
WIDTH_INCHES, HEIGHT_INCHES = 4.8, 2.4
FONT_SIZE = 8.5
ZOOM_MIN_BUCKETS = 12
ZOOM_WHEN = 3  # a timeline this many times longer than the close-up gets one
# Placeholder colour -> (CSS variable, light fallback): an email client without CSS variables keeps the
# light theme's colour.
PALETTE = {
    "#010101": ("--chart-text", "#1c1c1c"),
    "#020202": ("--chart-grid", "#d5d5d5"),
    "#030303": ("--chart-line", "#1f5fa8"),
    "#040404": ("--chart-band", "#7d8a99"),
    "#050505": ("--chart-window", "#e8b84a"),
    "#060606": ("--chart-anomaly", "#c62828"),
    "#070707": ("--chart-revision", "#6a3d9a"),
    "#080808": ("--bg", "#ffffff"),
}
TEXT, GRID, LINE, BAND, WINDOW, ANOMALY, REVISION, BACKGROUND = PALETTE
LABEL_GAP = 0.06  # revision labels closer than this share of the panel's width alternate top and bottom
STYLE: dict[str, Any] = {
    "svg.hashsalt": "prodguardian",  # the same ids each time: a deterministic page
    "svg.fonttype": "none",
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans"],  # shipped with matplotlib: the same layout everywhere
    "font.size": FONT_SIZE,
    "text.color": TEXT,
    "axes.edgecolor": GRID,
    "axes.labelcolor": TEXT,
    "xtick.color": TEXT,
    "ytick.color": TEXT,
    "axes.facecolor": "none",
    "figure.facecolor": "none",
    "savefig.facecolor": "none",
    "savefig.transparent": True,
}
_PROLOGUE = re.compile(r"^.*?(?=<svg)", re.DOTALL)
_METADATA = re.compile(r"\s*<metadata>.*?</metadata>", re.DOTALL)
_SIZE = re.compile(r'<svg([^>]*?) width="[^"]*" height="[^"]*"')
_REFERENCE = re.compile(r'(\bid="|href="#|url\(#)([^")]+)')  # an id, and the links and clip paths to ids
_PLACEHOLDER = re.compile("|".join(PALETTE))


@dataclass(frozen=True)
class ChartText:
    """What a chart says, already in the report's language."""

    title: str
    zoom_title: str  # the close-up panel's: "last 3 h"
    description: str  # the text alternative: the figures and events the chart shows
    tick: Callable[[float], str]  # a y-axis figure: a count, a share or milliseconds
    revision_label: Callable[[str], str]  # a revision's name as its line's label (shortened)


def require_matplotlib() -> Any:
    """matplotlib's pyplot on the SVG backend, or a ConfigError naming the extra to install."""
    try:
        import matplotlib
    except ImportError:
        raise ConfigError(f"the HTML report draws its charts with matplotlib: {INSTALL_HINT}") from None
    matplotlib.use("svg")
    import matplotlib.pyplot as plt

    return plt


def chart_svg(timeline: Timeline, signal: Signal, text: ChartText, chart_id: str) -> str:
    """The signal's chart as an `<svg>` element: the window shaded, the usual band behind the line, the
    revision changes as labelled vertical lines, the anomalous buckets highlighted. When the baseline is
    long, a second panel shows the window and the time just before it at a readable scale."""
    plt = require_matplotlib()
    zoom = zoom_start(timeline)
    with plt.rc_context(STYLE):
        ratios = {"width_ratios": [3, 2]} if zoom else None
        figure, panels = plt.subplots(
            1, 2 if zoom else 1, figsize=(WIDTH_INCHES, HEIGHT_INCHES), sharey=True, gridspec_kw=ratios
        )
        try:
            whole, *close = panels if zoom else [panels]
            _draw(whole, timeline, signal, text, 0)
            whole.set_title(
                text.title, loc="left", fontsize=FONT_SIZE + 1, fontweight="bold", parse_math=False
            )
            if zoom:
                _draw(close[0], timeline, signal, text, zoom)
                close[0].set_title(text.zoom_title, loc="left", fontsize=FONT_SIZE, parse_math=False)
                close[0].tick_params(axis="y", labelleft=False, length=0)
            figure.tight_layout(pad=0.4, w_pad=0.6)
            out = io.StringIO()
            figure.savefig(out, format="svg", metadata={"Date": None, "Creator": None})
        finally:
            plt.close(figure)
    return _accessible(_themed(out.getvalue(), chart_id), text, chart_id)


def zoom_start(timeline: Timeline) -> int:
    """The first bucket of the close-up panel (the window and twice its length before it), 0 for none: a
    timeline not much longer than that needs none."""
    shown = max(ZOOM_MIN_BUCKETS, 3 * (timeline.size - timeline.window_index))
    return timeline.size - shown if timeline.size > ZOOM_WHEN * shown else 0


def _draw(axes: Any, timeline: Timeline, signal: Signal, text: ChartText, first: int) -> None:
    """The signal from bucket `first` to the end on `axes`."""
    import matplotlib.dates as mdates
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    edges = [timeline.time_of(i) for i in range(timeline.size + 1)]
    values = [float("nan") if v is None else v for v in signal.values]
    axes.axvspan(edges[timeline.window_index], edges[-1], color=WINDOW, alpha=0.22, lw=0, zorder=0)
    if signal.band is not None:
        low, median, high = signal.band
        axes.axhspan(low, high, color=BAND, alpha=0.28, lw=0, zorder=1)
        axes.axhline(median, color=BAND, lw=1, ls="--", zorder=1)
    for start, last in _runs(signal.anomalous):
        axes.axvspan(edges[start], edges[last + 1], color=ANOMALY, alpha=0.3, lw=0, zorder=2)
    axes.stairs(values, edges, color=LINE, lw=1.4, baseline=None, zorder=3)
    _revisions(axes, timeline, text, edges[first])
    axes.set_xlim(edges[first], edges[-1])
    axes.set_ylim(bottom=0, top=_top(values, signal))
    axes.yaxis.set_major_locator(MaxNLocator(nbins=4, min_n_ticks=2))
    axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: text.tick(value)))
    # matplotlib.dates has no annotations: its calls are untyped to mypy --strict
    ticks = 4 if first else 5  # labels of 5 characters that never touch
    locator = mdates.AutoDateLocator(minticks=2, maxticks=ticks)  # type: ignore[no-untyped-call]
    axes.xaxis.set_major_locator(locator)
    concise = mdates.ConciseDateFormatter(  # type: ignore[no-untyped-call]
        locator, show_offset=not first, **_date_formats()
    )
    axes.xaxis.set_major_formatter(concise)
    axes.grid(axis="y", color=GRID, lw=0.6)
    axes.spines[["top", "right"]].set_visible(False)


def _date_formats() -> dict[str, list[str]]:
    """ISO 8601 dates (no month names, no day/month order to guess): the same in every language, and the
    report's own form (2025-10-11)."""
    return {
        "formats": ["%Y", "%Y-%m", "%m-%d", "%H:%M", "%H:%M", "%S"],
        "zero_formats": ["", "%Y-%m", "%m-%d", "%m-%d", "%H:%M", "%H:%M"],
        "offset_formats": ["", "%Y", "%Y-%m", "%Y-%m-%d UTC", "%Y-%m-%d UTC", "%Y-%m-%d %H:%M UTC"],
    }


def _top(values: list[float], signal: Signal) -> float:
    """The y axis's top: the highest value or band, a little above; 1 when everything is 0."""
    known = [v for v in values if v == v]
    highest = max([*known, signal.band[2] if signal.band else 0.0], default=0.0)
    if signal.unit == "rate":
        return min(1.0, highest * 1.15) if highest > 0 else 0.01
    return highest * 1.15 if highest > 0 else 1.0


def _runs(indexes: list[int]) -> list[tuple[int, int]]:
    """Consecutive indexes as (first, last) runs, so a highlighted stretch is one shape."""
    runs: list[tuple[int, int]] = []
    for index in sorted(indexes):
        if runs and runs[-1][1] == index - 1:
            runs[-1] = (runs[-1][0], index)
        else:
            runs.append((index, index))
    return runs


def _revisions(axes: Any, timeline: Timeline, text: ChartText, start: datetime) -> None:
    """Each revision change in view a vertical line, its name written up the line on the page's colour;
    labels too close alternate between the top and the bottom of the chart so they never overlap."""
    span = (timeline.time_of(timeline.size) - start).total_seconds()
    last_top: datetime | None = None
    for change in (c for c in timeline.revisions if c.at >= start):
        axes.axvline(change.at, color=REVISION, lw=1.2, zorder=4)
        crowded = last_top is not None and (change.at - last_top).total_seconds() < span * LABEL_GAP
        height, align = (0.03, "bottom") if crowded else (0.97, "top")
        if not crowded:
            last_top = change.at
        axes.text(
            change.at,
            height,
            text.revision_label(change.revision),
            transform=axes.get_xaxis_transform(),
            rotation=90,
            ha="right",
            va=align,
            color=REVISION,
            fontsize=FONT_SIZE - 0.5,
            zorder=5,
            bbox={"facecolor": BACKGROUND, "edgecolor": "none", "alpha": 0.85, "pad": 1.2},
            parse_math=False,  # log text: a `$` in a name is a dollar
        )


def _themed(svg: str, chart_id: str) -> str:
    """The SVG element alone (no XML prologue, no metadata), sized by the page, its colours CSS variables,
    its ids (matplotlib's `figure_1`, `axes_1`...) prefixed by the chart's so they are unique on a page."""
    svg = _METADATA.sub("", _PROLOGUE.sub("", svg, count=1))
    svg = _SIZE.sub(r"<svg\1", svg, count=1)
    svg = _REFERENCE.sub(lambda found: f"{found[1]}{chart_id}-{found[2]}", svg)

    def variable(found: re.Match[str]) -> str:
        name, fallback = PALETTE[found.group()]
        return f"var({name}, {fallback})"

    return _PLACEHOLDER.sub(variable, svg).strip()


def _accessible(svg: str, text: ChartText, chart_id: str) -> str:
    """The chart named for assistive technology: `role="img"`, its title and its text alternative."""
    title, desc = f"{chart_id}-title", f"{chart_id}-desc"
    opening = f'<svg role="img" aria-labelledby="{title}" aria-describedby="{desc}" id="{chart_id}"'
    head = (
        f'<title id="{title}">{html.escape(text.title)}</title>'
        f'<desc id="{desc}">{html.escape(text.description)}</desc>'
    )
    svg = svg.replace("<svg", opening, 1)
    end = svg.index(">") + 1
    return svg[:end] + head + svg[end:]
