"""Render a Report: jinja2 templates for text and markdown, a dict for JSON; English and French.

Templates hold loops and conditions only; wording lives in `templates/i18n/<lang>.yaml`, plural forms follow
Babel's CLDR plural rules, and number formats are the filters here. Every string that comes from a log is
cleaned of control characters, and in markdown it stands in a code span that no backtick inside it can close,
so a log line can neither move the terminal's cursor nor add a link, HTML or formatting to a report.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import cache
from typing import Any

import babel
import babel.dates
import jinja2
import yaml
from wcwidth import wcswidth

from prodguardian.detect import SILENCE_RULE, Finding, ObjectiveResult
from prodguardian.errors import ConfigError
from prodguardian.multivariate import Feature
from prodguardian.probes import ProbeResult
from prodguardian.reference import Reference
from prodguardian.resources import data_dir
from prodguardian.sparkline import recent, sparkline
from prodguardian.timelines import Timeline
from prodguardian.unknown_errors import TOP_TEMPLATES, ErrorTemplate
from prodguardian.verdict import STATUS_ICONS, LogText, Reason, Recommendation, Report

FORMATS = ("text", "markdown", "json")
LANGUAGES = ("en", "fr")
SCHEMA_VERSION = 1
TIMELINE_DIGITS = 6  # a timeline's values in JSON: a rate to a millionth, milliseconds to the nanosecond
PRIORITY_ICONS = {"HIGH": "🔴", "MEDIUM": "🟡", "LOW": "🔵"}
OK_MARK, INFO_MARK = "✅", "ℹ️"
SECONDS_UNDER_HOURS = 5 / 60  # a window shorter than 5 minutes shows its times to the second
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_PLURAL_KEYS = frozenset(("zero", "one", "two", "few", "many", "other"))


def clean(text: Any) -> str:
    """A log-derived string made safe to print: no control characters, no bidi overrides."""
    return _CONTROL.sub("\ufffd", str(text))


@cache
def catalog(lang: str) -> dict[str, Any]:
    """The wording of one language, with its typography (`format.spacing`) applied to every entry."""
    if lang not in LANGUAGES:
        raise ConfigError(f"unknown language {lang!r}; choose one of: {', '.join(LANGUAGES)}")
    path = data_dir("templates") / "i18n" / f"{lang}.yaml"
    loaded: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    spacing: dict[str, str] = loaded["format"].get("spacing", {})
    if not spacing:
        return loaded
    before = re.compile(f" ([{re.escape(''.join(spacing))}])")

    def space(text: str) -> str:
        return before.sub(lambda found: spacing[found.group(1)] + found.group(1), text)

    return {key: value if key == "format" else _map_strings(value, space) for key, value in loaded.items()}


def _map_strings(value: Any, change: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return change(value)
    if isinstance(value, dict):
        return {key: _map_strings(item, change) for key, item in value.items()}
    return value


def is_plural(entry: Any) -> bool:
    """Whether a catalog entry is a set of plural forms (keyed by CLDR plural category)."""
    return isinstance(entry, dict) and "other" in entry and set(entry) <= _PLURAL_KEYS


class Translator:
    """Wording, plural forms and number formats of one language; `markdown` quotes log text in code spans."""

    def __init__(self, lang: str, markdown: bool = False) -> None:
        self.lang = lang
        self.markdown = markdown
        self.words = catalog(lang)
        number = self.words["format"]
        self.decimal: str = number["decimal"]
        self.thousands: str = number["thousands"]
        self.percent: str = number["percent"]
        self.unit: str = number["unit"]
        self.plural_form: Callable[[float], str] = babel.Locale.parse(lang).plural_form
        self.elisions: dict[str, str] = number.get("elide", {})
        words = "|".join(re.escape(word) for word in self.elisions) or "(?!)"
        self.elided = re.compile(rf"\b(?P<word>{words}) \{{(?P<name>\w+)\}}")

    def __call__(self, key: str, **params: Any) -> str:
        """The entry `key` with its placeholders filled; log text (`LogText`) quoted, other text cleaned."""
        entry = self.lookup(key)
        if is_plural(entry):
            count = params.get("count")
            entry = entry["other"] if count is None else entry.get(self.plural_form(count), entry["other"])
        if not isinstance(entry, str):
            return clean(params.get("default", key))
        values = {
            k: self.quote(v) if isinstance(v, LogText) else clean(v) if isinstance(v, str) else v
            for k, v in params.items()
        }
        return self.elide(entry, values).format_map(_Blank(values))

    def elide(self, entry: str, values: dict[str, Any]) -> str:
        """`de {revision}` written `d'{revision}` when the value starts with a vowel (`format.elide`)."""
        if not self.elisions:
            return entry

        def join(found: re.Match[str]) -> str:
            value = str(values.get(found["name"], "")).lstrip("` ")
            vowel = value[:1].lower() in self.words["format"]["vowels"]
            return f"{self.elisions[found['word']]}{{{found['name']}}}" if vowel else found[0]

        return self.elided.sub(join, entry)

    def lookup(self, key: str) -> Any:
        text: Any = self.words
        for part in key.split("."):
            text = text.get(part) if isinstance(text, dict) else None
        return text

    def quote(self, text: Any) -> str:
        """Log text as data, on one line: cleaned, and in markdown a code span."""
        return inline_code(text) if self.markdown else clean(text).replace("\n", " ")

    def num(self, value: float | int | None, digits: int = 0) -> str:
        if value is None:
            return "—"
        text = f"{value:,.{digits}f}"
        return text.replace(",", "\x00").replace(".", self.decimal).replace("\x00", self.thousands)

    def pct(self, value: float | None) -> str:
        if value is None:
            return "—"
        digits = 2 if 0 < value * 100 < 100 and round(value * 100, 1) != value * 100 else 1
        return self.num(value * 100, digits).rstrip("0").rstrip(self.decimal) + self.percent

    def rate(self, value: float | None) -> str:
        if value is None:
            return "—"
        return self.num(value, 0 if value == int(value) else 1) + "/h"

    def ms(self, value: float | None) -> str:
        if value is None:
            return "—"
        if value >= 1000:
            return f"{self.num(value / 1000, 1)}{self.unit}s"
        return f"{self.num(value)}{self.unit}ms"

    def hours(self, delta: float) -> str:
        if delta >= 1:
            return self.num(delta, 0 if delta == int(delta) else 1) + f"{self.unit}h"
        if round(delta * 60) >= 1:
            return f"{round(delta * 60)}{self.unit}min"
        return f"{max(1, round(delta * 3600))}{self.unit}s"


class _Blank(dict[str, Any]):
    """format_map values with a missing key rendered empty, so a catalog typo never crashes a report."""

    def __missing__(self, key: str) -> str:
        return ""


def inline_code(text: Any) -> str:
    """A markdown code span that no backtick inside the text can close early; newlines folded."""
    body = clean(text).replace("\n", " ")
    fence = "`" * (max((len(m) for m in re.findall(r"`+", body)), default=0) + 1)
    padded = body.startswith("`") or body.endswith("`")
    return f"{fence} {body} {fence}" if padded else f"{fence}{body}{fence}"


def pad(text: str, width: int) -> str:
    """`text` followed by spaces up to `width` terminal columns (wide characters take two)."""
    return text + " " * max(0, width - wcswidth(text))


def render(report: Report, fmt: str = "text", lang: str = "en") -> str:
    """The report in a format and language; a check of several services shows each, worst first."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    if fmt == "json":
        t = Translator(lang)
        document = report_dict(report, t)
        if report.services:
            document["services"] = [report_dict(service, t) for service in report.services]
        return json_text(document)
    t = Translator(lang, markdown=fmt == "markdown")
    template = template_environment().get_template(f"report.{'md' if fmt == 'markdown' else 'txt'}.j2")
    if not report.services:
        return template.render(**report_view(report, t))
    overview = t(
        "services_overview",
        n=len(report.services),
        count=len(report.services),
        list=", ".join(f"{STATUS_ICONS[s.status]} {service_name(s, t)}" for s in report.services),
    )
    rule = "\n---\n\n" if fmt == "markdown" else "\n" + "─" * 60 + "\n\n"
    pages = [template.render(**report_view(service, t)) for service in report.services]
    return overview + "\n\n" + rule.join(pages)


def json_text(document: Any) -> str:
    """A JSON document, indented: the same data once parsed, but no bidi override or C1 control can reach a
    terminal printing it."""
    text = json.dumps(_whole_numbers(document), ensure_ascii=False, indent=2)
    return _CONTROL.sub(lambda found: f"\\u{ord(found.group()):04x}", text) + "\n"


def _whole_numbers(value: Any) -> Any:
    """The document with every whole float an integer: `above_baseline: 3` in a rule reads 3, not 3.0."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _whole_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(item) for item in value]
    return value


@cache
def template_environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(data_dir("templates"))),
        autoescape=False,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["cell"] = lambda text: clean(text).replace("|", "\\|")
    return env


def report_view(report: Report, t: Translator) -> dict[str, Any]:
    """What the templates show, already worded and quoted: the templates only loop and choose."""
    blocks, shown = _blocks(report, t)
    notes = _notes(report, t, shown)
    objectives = [objective_row(o, t) for o in report.objectives]
    recommendations = [_recommendation(r, t) for r in report.recommendations]
    width = max(wcswidth(word) for word in t.words["priorities"].values()) + 1  # the same in every report
    for item in recommendations:
        item["padded"] = pad(item["priority"], width)
        item["indent"] = " " * (2 + wcswidth(item["icon"]) + 1 + width + 1)  # under the action's first letter
    return {
        "t": t,
        "title": _title(report, t),
        "window_line": _window_line(report, t),
        "warnings": [_worded(warning, "warnings", t) for warning in report.context.warnings],
        "reason": _reason(report, t),
        "blocks": blocks,
        "notes": notes,
        "area_lines": _area_lines(report, t),
        "all_ok": report.status == "OK" and not report.problems and not notes,
        "patterns": [_pattern_line(template, report, t) for template in report.patterns[:TOP_TEMPLATES]],
        "objectives": objectives,
        "objective_lines": _objective_lines(objectives, t),
        "recommendations": recommendations,
        "probes": [probe_line(p, t) for p in report.probes],
        "sparklines": sparkline_lines(report, t),
    }


def sparkline_lines(report: Report, t: Translator) -> list[str]:
    """One line per signal of the report's timeline: its name per bucket (padded, so the bars line up), its
    last bars, its range."""
    timeline = report.timeline
    if timeline is None or not timeline.size:
        return []
    bucket = t.hours(timeline.bucket / timedelta(hours=1)).replace(t.unit, "")
    labels = [t("sparkline_label", name=signal_name(s.name, t), bucket=bucket) for s in timeline.signals]
    width = max(map(len, labels))
    lines = []
    for label, signal in zip(labels, timeline.signals, strict=True):
        values, start = recent(signal.values, timeline.window_index)
        known = [v for v in values if v is not None]
        low, high = (min(known), max(known)) if known else (None, None)
        lines.append(
            t(
                "sparkline_line",
                label=label.ljust(width),
                bars=LogText(sparkline(values, start)),
                low=figure(low, signal.unit, t),
                high=figure(high, signal.unit, t),
            )
        )
    return lines


def signal_name(name: str, t: Translator) -> str:
    """A timeline signal's name in the report's language (`errors:database`: database errors)."""
    kind, _, category = name.partition(":")
    if not category:
        return t(f"signals.{kind}")
    return t(f"signals.errors_by.{category}", default=t("signals.errors_of", category=category))


def figure(value: float | None, unit: str, t: Translator) -> str:
    """A timeline value: a count, a share (rate) or milliseconds."""
    if unit == "rate":
        return t.pct(value)
    return t.ms(value) if unit == "ms" else t.num(value)


def probe_line(result: ProbeResult, t: Translator) -> dict[str, str]:
    """A probe's row: its mark and `URL — outcome`."""
    text = t("probe_line", url=LogText(result.url), outcome=probe_outcome(result, t))
    return {"mark": OK_MARK if result.ok else "❌", "text": text}


def probe_outcome(result: ProbeResult, t: Translator) -> str:
    """What the endpoint answered (`200 (healthy) in 35 ms`, `HTTP 503, not 200`...)."""
    health = LogText(result.health or "")
    return t(
        f"probe.{result.problem or 'ok'}",
        health=t("probe_health", health=health) if result.ok and result.health else health,
        status=result.status,
        elapsed=t.ms(result.elapsed_ms),
        detail=LogText(result.detail or ""),
    )


def service_name(report: Report, t: Translator) -> str:
    service = report.context.service
    return t.quote(service) if service else t("unnamed_service")


def _title(report: Report, t: Translator) -> str:
    region = report.context.region
    return t(
        "title",
        icon=STATUS_ICONS[report.status],
        status=report.status,
        service=service_name(report, t),
        region=t("region", region=LogText(region)) if region else "",
    )


def _reason(report: Report, t: Translator) -> str | None:
    return None if report.reason is None else _worded(report.reason, "reasons", t)


def _worded(reason: Reason, section: str, t: Translator) -> str:
    """A reason or a warning in the report's language: its catalog entry (`section.key`), or its message."""
    if reason.key is None:
        return t.quote(reason.message or "")
    values = {k: t.num(v) if isinstance(v, int) else v for k, v in reason.params.items()}
    return t(
        f"{section}.{reason.key}",
        **values,
        count=reason.params.get("n"),
        default=reason.message or reason.key,
    )


def _window_line(report: Report, t: Translator) -> str:
    ctx, window = report.context, report.context.window
    # A window of a few minutes is read to the second; a longer one to the nearest minute.
    seconds = window.requested_hours < SECONDS_UNDER_HOURS
    start, end = (window.start, window.end) if seconds else (_minute(window.start), _minute(window.end))
    clock = "%H:%M:%S" if seconds else "%H:%M"
    length = t.hours(window.requested_hours)
    if start.date() == end.date():
        span = t(
            "window", start=f"{start:{clock}}", end=f"{end:{clock}}", date=f"{start:%Y-%m-%d}", length=length
        )
    else:
        span = t(
            "window_days",
            start_date=f"{start:%Y-%m-%d}",
            start=f"{start:{clock}}",
            end_date=f"{end:%Y-%m-%d}",
            end=f"{end:{clock}}",
            length=length,
        )
    parts = [span]
    if window.data_start is not None and window.data_start >= window.end:  # it covers none of the window
        parts.append(t("coverage_none", start=f"{window.data_start:%Y-%m-%d %H:%M}"))
    elif window.partial:
        minutes, total = round(window.hours * 60), round(window.requested_hours * 60)
        parts.append(
            t(
                "coverage",
                start=f"{window.covered_start:%H:%M}",  # floored: the data begins within that minute
                end=f"{end:%H:%M}",
                minutes=t.num(minutes),
                total=t.num(total),
                count=total,
            )
        )
    if report.reference is not None and report.reference.seasonal:
        weeks = report.reference.weeks
        when = seasonal_hour(report.reference, t)
        parts.append(t("baseline_seasonal", when=when, n=t.num(weeks), count=weeks))
    elif report.baseline_available and window.baseline_partial:
        parts.append(t("baseline_partial", length=t.hours(window.baseline_hours)))
    elif report.baseline_available:
        parts.append(t("baseline", length=t.hours(window.baseline_hours)))
    else:
        parts.append(t("no_baseline" if window.baseline_start < window.start else "baseline_none"))
    entries = int(ctx.totals.get("entries", 0))
    parts.append(t("entries", n=t.num(entries), count=entries))
    if ctx.totals.get("suppressed"):
        suppressed = int(ctx.totals["suppressed"])
        parts.append(t("suppressed", n=t.num(suppressed), count=suppressed))
    if ctx.totals.get("truncated"):
        parts.append(t("truncated"))
    if ctx.totals.get("read"):
        parts.append(_read_from_state(ctx.totals["read"], t))
    return " · ".join(parts)


def _read_from_state(read: dict[str, Any], t: Translator) -> str:
    """ "2 API calls, 1,412 new entries; baseline from state: 24 h" (a file's read has no calls)."""
    entries = t("new_entries", n=t.num(read["entries"]), count=read["entries"])
    calls = read["calls"]
    what = entries if calls is None else f"{t('api_calls', n=t.num(calls), count=calls)}, {entries}"
    if not read["baseline_from_state_hours"]:  # a first check, or a file read whole: all of it was read
        return what
    return t("read_from_state", read=what, length=t.hours(read["baseline_from_state_hours"]))


def _minute(moment: datetime) -> datetime:
    """The nearest whole minute: a window that ends just after 12:03:59.9 reads as ending at 12:04."""
    return (moment + timedelta(seconds=30)).replace(second=0, microsecond=0)


def finding_title(finding: Finding, t: Translator) -> str:
    """The finding's heading: its rule's title (a neutral one for latency within its thresholds)."""
    if finding.kind == "latency" and finding.severity == "INFO":
        title = t("latency_title")
    elif finding.kind == "new_error":
        title = t("new_error_title")
    else:
        title = t(f"rules.{finding.rule}.title", default=finding.description.rstrip("."))
    return t("titled", title=title, group=LogText(finding.group)) if finding.group else title


def p_value_text(p_value: float, t: Translator) -> str:
    """`p < 1e-6`, `p = 3e-4`, `p = 0.04`: how surprising a count is for the usual rate."""
    if p_value < 1e-6:
        return t("p_below", p="1e-6")
    if p_value < 1e-3:
        mantissa, exponent = f"{p_value:.0e}".split("e")
        return t("p_equal", p=f"{mantissa}e-{int(exponent[1:])}")
    return t("p_equal", p=f"{p_value:.2g}".replace(".", t.decimal))


def _usual(finding: Finding, report: Report, t: Translator) -> str:
    """How the finding compares with usual: ` (usual: 0/h, p < 1e-6)`, naming a seasonal reference."""
    if finding.kind == "latency":
        if finding.baseline_ms is None:
            return ""
        if finding.p_value is None:
            return t("usual_ms", value=t.ms(finding.baseline_ms))
        value, p = t.ms(finding.baseline_ms), p_value_text(finding.p_value, t)
        if report.reference is not None and report.reference.seasonal:
            return t("usual_ms_seasonal", when=seasonal_hour(report.reference, t), value=value, p=p)
        return t("usual_ms_compared", value=value, p=p)
    if finding.baseline_per_hour is None:
        return ""
    rate = t.rate(finding.baseline_per_hour)
    if finding.p_value is None:
        return t("usual", rate=rate)
    p = p_value_text(finding.p_value, t)
    reference = report.reference
    if finding.kind == "traffic":
        return t("usual_quietest", rate=rate, p=p)
    if reference is not None and reference.seasonal:
        return t("usual_seasonal", when=seasonal_hour(reference, t), rate=rate, p=p)
    return t("usual_compared", rate=rate, p=p)


def seasonal_hour(reference: Reference, t: Translator) -> str:
    """`Tuesdays 14:04` (`le mardi à 14:04`): the hour a seasonal reference compares with."""
    assert reference.start is not None
    weekday = babel.dates.format_date(reference.start.date(), "EEEE", locale=t.lang)
    return t("seasonal_hour", weekday=weekday, time=f"{reference.start:%H:%M}")


def _feature_text(feature: Feature, t: Translator) -> str:
    """`WebSocket failure rate 5% (usual 0%)`: one number of an unusual hour, in its unit."""
    kind, _, category = feature.name.partition(":")
    name = t(f"features.{kind}", category=category)
    if kind.endswith("_rate"):
        value, usual = t.pct(feature.value), t.pct(feature.usual)
    elif kind.startswith("latency"):
        value, usual = t.ms(feature.value), t.ms(feature.usual)
    else:
        value, usual = t.rate(feature.value), t.rate(feature.usual)
    return t("mix_feature", name=name, value=value, usual=usual)


def _headline(finding: Finding, report: Report, t: Translator) -> str:
    window = report.context.window
    hours = min(window.hours, window.requested_hours)  # rates count a minute at least; a window may be less
    usual = _usual(finding, report, t)
    if finding.kind == "mix":
        features = ", ".join(_feature_text(feature, t) for feature in finding.features)
        return t("mix_headline", n=t.num(finding.count), count=finding.count, features=features)
    if finding.kind == "traffic":
        if finding.rule == SILENCE_RULE:
            return t("silence_headline", minutes=t.num(finding.count), usual=usual)
        return t(
            "drop_headline", n=t.num(finding.count), count=finding.count, length=t.hours(hours), usual=usual
        )
    if finding.kind == "latency":
        return t(
            "latency_headline",
            value=t.ms(finding.value_ms),
            n=t.num(finding.count),
            count=finding.count,
            usual=usual,
        )
    if finding.kind == "probe":
        result = next((p for p in report.probes if p.url == finding.group), None)
        return probe_outcome(result, t) if result else ""
    if finding.kind == "metric":
        target = next(
            (o.objective.target for o in report.objectives if o.objective.finding_rule == finding.rule), None
        )
        objective = "" if target is None else t("metric_objective", target=t.rate(target))
        return t(
            "metric_headline", n=t.num(finding.count), length=t.hours(hours), objective=objective, usual=usual
        )
    headline = t(
        "failure_headline",
        n=t.num(finding.count),
        count=finding.count,
        length=t.hours(hours),
        share=_share(finding, t),
        usual=usual,
    )
    if finding.serving_revision:
        headline += t("deploy_failed", revision=LogText(finding.serving_revision))
    return headline


def _blocks(report: Report, t: Translator) -> tuple[list[dict[str, Any]], set[int]]:
    """Problem findings as blocks, a root cause carrying its symptoms as sub-lines, counted once; and the
    ids of the findings the blocks show."""
    problems = report.problems
    shown_roots = {f.rule for f in problems if not f.caused_by}
    blocks: list[dict[str, Any]] = []
    shown: set[int] = set()
    for finding in problems:
        if finding.caused_by in shown_roots:
            continue
        symptoms = _symptoms_of(report.findings, finding)
        shown.update(id(f) for f in [finding, *symptoms])
        evidence = finding.evidence
        worst = "CRITICAL" if "CRITICAL" in {f.severity for f in [finding, *symptoms]} else "DEGRADED"
        blocks.append(
            {
                "mark": "❌" if worst == "CRITICAL" else "⚠️",
                "title": finding_title(finding, t),
                "headline": _headline(finding, report, t),
                "example": t.quote(evidence.examples[0]) if evidence and evidence.examples else None,
                "frame": t("at", frame=frame_text(evidence.frame, t))
                if evidence and evidence.frame
                else None,
                "seen": _seen_line(finding, t),
                "symptoms": [_symptom_line(s, t) for s in symptoms],
            }
        )
    return blocks, shown


def _symptoms_of(findings: list[Finding], root: Finding) -> list[Finding]:
    """The symptoms standing right after `root` in the report's order (see `verdict.order_findings`)."""
    after = findings[findings.index(root) + 1 :]
    symptoms = []
    for finding in after:
        if finding.caused_by != root.rule:
            break
        symptoms.append(finding)
    return symptoms


def _notes(report: Report, t: Translator, shown: set[int]) -> list[dict[str, Any]]:
    """Failures under the alert thresholds that no block shows, with their symptoms; and the latency when its
    objective is missed while its rule does not alert: never a ✅ for them."""
    latency_noted = any(area.id == "latency" and area.state == "noted" for area in report.areas)
    notes = []
    for finding in report.findings:
        listed = finding.kind in ("failure", "mix") or (finding.kind == "latency" and latency_noted)
        if finding.severity != "INFO" or not listed or id(finding) in shown:
            continue
        symptoms = [s for s in _symptoms_of(report.findings, finding) if id(s) not in shown]
        shown.update(id(f) for f in [finding, *symptoms])
        title, headline = finding_title(finding, t), _headline(finding, report, t)
        notes.append(
            {
                "text": f"{title} — {headline}{t('below_thresholds')}",
                "symptoms": [_symptom_line(s, t) for s in symptoms],
            }
        )
    return notes


def _seen_line(finding: Finding, t: Translator) -> str | None:
    evidence = finding.evidence
    if evidence is None:
        return None
    first, last = f"{evidence.first_seen:%H:%M:%S}", f"{evidence.last_seen:%H:%M:%S}"
    parts = [first if first == last else f"{first} → {last}"]
    if evidence.revisions:
        names = ", ".join(t.quote(name) for name in evidence.revisions)
        parts.append(t("revisions", names=names, count=len(evidence.revisions)))
    if evidence.instances:
        parts.append(t("instances", n=t.num(evidence.instances), count=evidence.instances))
    return " · ".join(parts)


def _share(finding: Finding, t: Translator) -> str:
    """`: 4% of 301 requests (12 of 148 in rev-2: 8.11%)`, or nothing when the rule has no denominator."""
    if finding.rate is None or not finding.denominator:
        return ""
    share = t(
        f"share_of.{finding.denominator_of}",
        pct=t.pct(finding.rate),
        n=t.num(finding.denominator),
        count=finding.denominator,
    )
    worst = _worst_revision(finding)
    if worst:
        share += t(
            "revision_share",
            pct=t.pct(worst["rate"]),
            n=t.num(worst["count"]),
            total=t.num(worst["denominator"]),
            revision=LogText(worst["revision"]),
        )
    return share


def _worst_revision(finding: Finding) -> dict[str, Any] | None:
    """The revision whose own share of failures judged the finding: its failures out of its traffic."""
    if not finding.worst_revision:
        return None
    revision, rate, count = finding.worst_revision
    return {"revision": revision, "count": count, "denominator": round(count / rate), "rate": rate}


def _symptom_line(symptom: Finding, t: Translator) -> str:
    if symptom.kind == "latency":
        return t("causes_latency", value=t.ms(symptom.value_ms), n=t.num(symptom.count), count=symptom.count)
    caused = symptom.caused_count
    count = (
        t.num(caused) if caused >= symptom.count else t("n_of", n=t.num(caused), total=t.num(symptom.count))
    )
    share = _share(symptom, t)
    if t.lookup(f"rules.{symptom.rule}.what") is None:
        return t("causes_untitled", n=count, title=finding_title(symptom, t), share=share)
    what = t(f"rules.{symptom.rule}.what", count=max(caused, symptom.count))  # "1 of 2 failed starts"
    what = t("titled", title=what, group=LogText(symptom.group)) if symptom.group else what
    return t("causes", n=count, what=what, share=share)


def frame_text(frame: str, t: Translator) -> str:
    """`src/app.py:64 in connect`, worded in the report's language, its names quoted as log text."""
    location, _, function = frame.partition(" in ")
    if not function:
        return t.quote(location)
    return t("frame", location=LogText(location), function=LogText(function))


def _area_lines(report: Report, t: Translator) -> list[dict[str, str]]:
    """A line for each area with nothing to show: ✅ when it has traffic and no failure, ℹ️ when idle."""
    metrics = report.metrics
    if metrics is None:
        return []
    lines = []
    for area in report.areas:
        if area.state != "ok":
            continue
        if area.id == "http":
            if metrics.requests:
                lines.append(
                    _ok(
                        t(
                            "ok.http",
                            pct=t.pct(metrics.error_rate),
                            n=t.num(metrics.failed_requests),
                            total=t.num(metrics.requests),
                            count=metrics.requests,
                        )
                    )
                )
            else:
                lines.append(_idle(t("idle.http")))
        elif area.id == "latency":
            if metrics.latency_ms:
                usual = ""
                if metrics.baseline_latency_ms and report.baseline_available:
                    usual = t("usual_ms", value=t.ms(metrics.baseline_latency_ms["p95"]))
                lines.append(_ok(t("ok.latency", value=t.ms(metrics.latency_ms["p95"]), usual=usual)))
        elif area.id == "websocket":
            sessions = metrics.websocket_connections
            lines.append(
                _ok(t("ok.websocket", n=t.num(sessions), count=sessions))
                if sessions
                else _idle(t("idle.websocket"))
            )
        else:
            lines.append(_ok(t(f"ok.{area.id}")))
    return lines


def _pattern_line(template: ErrorTemplate, report: Report, t: Translator) -> str:
    """`12 failures: KeyError at src/app.py in get · new`: one of the window's top unknown-error templates
    (how many the baseline held when there is one)."""
    note = ""
    if template.new:
        note = t("pattern_new")
    elif report.baseline_available:
        note = t("pattern_baseline", n=t.num(template.baseline_count))
    return t(
        "pattern",
        n=t.num(template.count),
        count=template.count,
        template=LogText(template.template),
        note=note,
    )


def _pattern_dict(template: ErrorTemplate, report: Report, t: Translator) -> dict[str, Any]:
    evidence = template.evidence
    return {
        "id": template.id,
        "template": template.template,
        "kind": template.kind,
        "count": template.count,
        "baseline_count": template.baseline_count,
        "new": template.new,
        "first_seen": iso(evidence.first_seen),
        "last_seen": iso(evidence.last_seen),
        "revisions": evidence.revisions,
        "example": evidence.examples[0] if evidence.examples else None,
        "summary": _pattern_line(template, report, t),
    }


def _ok(text: str) -> dict[str, str]:
    return {"mark": OK_MARK, "text": text}


def _idle(text: str) -> dict[str, str]:
    return {"mark": INFO_MARK, "text": text}


def objective_value(result: ObjectiveResult, t: Translator, value: float | None) -> str:
    metric = result.objective.metric
    if metric.endswith("_rate"):
        return t.pct(value)
    if metric.endswith("_ms"):
        return t.ms(value)
    return t.rate(value)


def objective_row(result: ObjectiveResult, t: Translator) -> dict[str, str]:
    objective = result.objective
    target = objective_value(result, t, objective.target)
    comparison = ("≤ " if objective.target else "") if objective.inclusive else "< "
    mark = {True: "✅", False: "❌", None: "—"}[result.met]
    label = t(f"objectives.{objective.id}", default=objective.id.replace("_", " "))
    return {
        "label": label,
        "value": objective_value(result, t, result.value),
        "target": comparison + target,
        "mark": mark,
    }


def _objective_lines(rows: list[dict[str, str]], t: Translator) -> list[str]:
    """The objectives table for a terminal: each column as wide as its widest cell, in display columns."""
    header = [t("objectives_title"), t("objective_now"), t("objective_target"), ""]
    return aligned(
        [header] + [["  " + row["label"], row["value"], row["target"], row["mark"]] for row in rows]
    )


def aligned(table: list[list[str]]) -> list[str]:
    """A table's lines for a terminal: each column but the last as wide as its widest cell, plus two."""
    columns = len(table[0]) - 1
    widths = [max(wcswidth(line[column]) for line in table) + 2 for column in range(columns)]
    return [
        ("".join(pad(cell, width) for cell, width in zip(line[:-1], widths, strict=True)) + line[-1]).rstrip()
        for line in table
    ]


def _recommendation(item: Recommendation, t: Translator) -> dict[str, Any]:
    return {
        "icon": PRIORITY_ICONS[item.priority],
        "priority": t(f"priorities.{item.priority}", default=item.priority),
        "action": t(f"advice.{item.advice}", **{k: v for k, v in item.params.items() if v is not None}),
        "command": clean(item.command) if item.command else None,
    }


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def report_dict(report: Report, t: Translator) -> dict[str, Any]:
    """The JSON report: the contract other tools rely on (templates/report.schema.json)."""
    ctx = report.context
    metrics = report.metrics
    return {
        "schema_version": SCHEMA_VERSION,
        "status": report.status,
        "reason": _reason(report, t),
        "service": ctx.service,
        "project": ctx.project,
        "region": ctx.region,
        "window": {
            "start": iso(ctx.window.start),
            "end": iso(ctx.window.end),
            "covered_start": iso(ctx.window.covered_start),
            "partial": ctx.window.partial,
        },
        "warnings": [_worded(warning, "warnings", t) for warning in ctx.warnings],
        "baseline": {
            "start": iso(ctx.window.baseline_start),
            "end": iso(ctx.window.start),
            "available": report.baseline_available,
            "covered_start": iso(ctx.window.baseline_covered_start),
            "partial": ctx.window.baseline_partial,
        },
        "totals": {
            "entries": int(ctx.totals.get("entries", 0)),
            "requests": metrics.requests if metrics else 0,
            "errors": metrics.errors if metrics else 0,
            "skipped": int(ctx.totals.get("skipped", 0)),
            "suppressed": int(ctx.totals.get("suppressed", 0)),
            "echoes": int(ctx.totals.get("echoes", 0)),
            "merged_lines": int(ctx.totals.get("merged_lines", 0)),
            "duplicates": int(ctx.totals.get("duplicates", 0)),
            "other_resources": int(ctx.totals.get("other_resources", 0)),
            "truncated": bool(ctx.totals.get("truncated", False)),
            "read": ctx.totals.get("read"),
        },
        "findings": [_finding_dict(f, report, t) for f in report.findings],
        "metrics": None
        if metrics is None
        else {
            "requests": metrics.requests,
            "failed_requests": metrics.failed_requests,
            "error_rate": metrics.error_rate,
            "errors": metrics.errors,
            "websocket_connections": metrics.websocket_connections,
            "websocket_failures": metrics.websocket_failures,
            "websocket_error_rate": metrics.websocket_error_rate,
            "latency_ms": metrics.latency_ms,
            "failed_latency_ms": metrics.failed_latency_ms,
            "db_reconnections": metrics.db_reconnections,
        },
        "objectives": [_objective_dict(o, t) for o in report.objectives],
        "patterns": [_pattern_dict(template, report, t) for template in report.patterns[:TOP_TEMPLATES]],
        "probes": [probe_dict(p, t) for p in report.probes],
        "recommendations": [
            {"priority": r.priority, "action": _recommendation(r, t)["action"], "command": r.command}
            for r in report.recommendations
        ],
        "timeline": timeline_dict(report.timeline),
    }


def timeline_dict(timeline: Timeline | None) -> dict[str, Any] | None:
    """The key signals per bucket over baseline and window, as the HTML report charts them."""
    if timeline is None:
        return None
    return {
        "start": iso(timeline.start),
        "bucket_minutes": round(timeline.bucket / timedelta(minutes=1)),
        "window_index": timeline.window_index,
        "signals": [
            {
                "name": signal.name,
                "unit": signal.unit,
                "values": [None if v is None else round(v, TIMELINE_DIGITS) for v in signal.values],
                "band": None
                if signal.band is None
                else dict(zip(("low", "median", "high"), signal.band, strict=True)),
                "anomalous": signal.anomalous,
            }
            for signal in timeline.signals
        ],
        "revisions": [{"at": iso(change.at), "revision": change.revision} for change in timeline.revisions],
    }


def probe_dict(result: ProbeResult, t: Translator) -> dict[str, Any]:
    return {
        "url": result.url,
        "ok": result.ok,
        "problem": result.problem,
        "status": result.status,
        "health": result.health,
        "elapsed_ms": round(result.elapsed_ms, 1),
        "summary": probe_line(result, t)["text"],
    }


def _objective_dict(result: ObjectiveResult, t: Translator) -> dict[str, Any]:
    row = objective_row(result, t)
    objective = result.objective
    return {
        "id": objective.id,
        "metric": objective.metric,
        "value": result.value,
        "target": objective.target,
        "inclusive": objective.inclusive,
        "met": result.met,
        "summary": t("objective_summary", label=row["label"], value=row["value"], target=row["target"]),
    }


def _finding_dict(finding: Finding, report: Report, t: Translator) -> dict[str, Any]:
    evidence = finding.evidence
    return {
        "rule": finding.rule,
        "category": finding.category,
        "severity": finding.severity,
        "kind": finding.kind,
        "group": finding.group,
        "count": finding.count,
        "rate": finding.rate,
        "denominator": finding.denominator,
        "denominator_of": finding.denominator_of,
        "per_hour": finding.per_hour,
        "baseline_per_hour": finding.baseline_per_hour,
        "value_ms": finding.value_ms,
        "baseline_ms": finding.baseline_ms,
        "p_value": finding.p_value,
        "features": [
            {"name": f.name, "value": f.value, "usual": f.usual, "z": f.z} for f in finding.features
        ],
        "first_seen": iso(evidence.first_seen) if evidence else None,
        "last_seen": iso(evidence.last_seen) if evidence else None,
        "revisions": evidence.revisions if evidence else [],
        "instances": evidence.instances if evidence else 0,
        "examples": evidence.examples if evidence else [],
        "frame": evidence.frame if evidence else None,
        "worst_revision": _worst_revision(finding),
        "caused_by": finding.caused_by,
        "caused_count": finding.caused_count,
        "threshold": finding.threshold,
        "template_id": finding.template_id,
        "summary": f"{finding_title(finding, t)} — {_headline(finding, report, t)}",
    }
