"""Render a Report: jinja2 templates for text and markdown, a dict for JSON; English and French.

Templates hold loops and conditions only; wording lives in `templates/i18n/<lang>.yaml` and number formats
in the filters here. Every string that comes from a log is cleaned of control characters first, so a log
line can neither move the terminal's cursor nor break out of a markdown code span.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from functools import cache
from typing import Any

import jinja2
import yaml

from prodguardian.detect import Finding, ObjectiveResult
from prodguardian.errors import ConfigError
from prodguardian.resources import data_dir
from prodguardian.verdict import STATUS_ICONS, Recommendation, Report

FORMATS = ("text", "markdown", "json")
LANGUAGES = ("en", "fr")
SCHEMA_VERSION = 1
PRIORITY_ICONS = {"HIGH": "🔴", "MEDIUM": "🟡", "LOW": "🔵"}
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def clean(text: Any) -> str:
    """A log-derived string made safe to print: no control characters, no bidi overrides."""
    return _CONTROL.sub("\ufffd", str(text))


@cache
def catalog(lang: str) -> dict[str, Any]:
    if lang not in LANGUAGES:
        raise ConfigError(f"unknown language {lang!r}; choose one of: {', '.join(LANGUAGES)}")
    path = data_dir("templates") / "i18n" / f"{lang}.yaml"
    loaded: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return loaded


class Translator:
    """Wording and number formats of one language."""

    def __init__(self, lang: str) -> None:
        self.lang = lang
        self.words = catalog(lang)
        self.decimal: str = self.words["format"]["decimal"]
        self.thousands: str = self.words["format"]["thousands"]
        self.percent: str = self.words["format"]["percent"]

    def __call__(self, key: str, **params: Any) -> str:
        if params.get("count") == 1 and self.lookup(key + "_one") is not None:
            key += "_one"
        text = self.lookup(key)
        if not isinstance(text, str):
            return clean(params.get("default", key))
        values = {k: clean(v) if isinstance(v, str) else v for k, v in params.items()}
        return text.format_map(_Blank(values))

    def lookup(self, key: str) -> Any:
        text: Any = self.words
        for part in key.split("."):
            text = text.get(part) if isinstance(text, dict) else None
        return text

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
        return f"{self.num(value / 1000, 1)} s" if value >= 1000 else f"{self.num(value)} ms"

    def hours(self, delta: float) -> str:
        return (
            self.num(delta, 0 if delta == int(delta) else 1) + " h"
            if delta >= 1
            else f"{round(delta * 60)} min"
        )


class _Blank(dict[str, Any]):
    """format_map values with a missing key rendered empty, so a catalog typo never crashes a report."""

    def __missing__(self, key: str) -> str:
        return ""


def render(report: Report, fmt: str = "text", lang: str = "en") -> str:
    """The report in a format and language; a check of several services shows each, worst first."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    t = Translator(lang)
    if fmt == "json":
        document = report_dict(report, t)
        if report.services:
            document["services"] = [report_dict(service, t) for service in report.services]
        text = json.dumps(document, ensure_ascii=False, indent=2)
        # The same data once parsed, but no bidi override or C1 control can reach a terminal printing it.
        return _CONTROL.sub(lambda found: f"\\u{ord(found.group()):04x}", text) + "\n"
    template = _environment().get_template(f"report.{'md' if fmt == 'markdown' else 'txt'}.j2")
    if not report.services:
        return template.render(**_view(report, t))
    overview = t(
        "services_overview",
        n=len(report.services),
        list=", ".join(f"{STATUS_ICONS[s.status]} {clean(s.context.service)}" for s in report.services),
    )
    rule = "\n---\n\n" if fmt == "markdown" else "\n" + "─" * 60 + "\n\n"
    pages = [template.render(**_view(service, t)) for service in report.services]
    return overview + "\n\n" + rule.join(pages)


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(data_dir("templates"))),
        autoescape=False,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["clean"] = clean
    env.filters["code"] = _inline_code
    env.filters["cell"] = lambda text: clean(text).replace("|", "\\|")
    return env


def _inline_code(text: Any) -> str:
    """A markdown code span that no backtick inside the text can close early."""
    body = clean(text).replace("\n", " ")
    fence = "`" * (max((len(m) for m in re.findall(r"`+", body)), default=0) + 1)
    return (
        f"{fence} {body} {fence}" if body.startswith("`") or body.endswith("`") else f"{fence}{body}{fence}"
    )


def _view(report: Report, t: Translator) -> dict[str, Any]:
    """What the templates show, already worded: the templates only loop and choose."""
    ctx = report.context
    return {
        "t": t,
        "status": report.status,
        "icon": STATUS_ICONS[report.status],
        "title": _title(report, t),
        "window_line": _window_line(report, t),
        "warnings": report.context.warnings,
        "reason": report.reason,
        "blocks": _blocks(report, t),
        "ok_lines": _ok_lines(report, t),
        "all_ok": not report.problems and report.status == "OK",
        "objectives": [_objective_row(o, t) for o in report.objectives],
        "recommendations": [_recommendation(r, t) for r in report.recommendations],
        "service": ctx.service,
    }


def _title(report: Report, t: Translator) -> str:
    ctx = report.context
    where = f" ({ctx.region})" if ctx.region else ""
    service = clean(ctx.service) if ctx.service else t("unnamed_service")
    return f"{STATUS_ICONS[report.status]} Production Status: {report.status} — {service}{where}"


def _window_line(report: Report, t: Translator) -> str:
    ctx, window = report.context, report.context.window
    parts = [
        t(
            "window",
            start=f"{_minute(window.start):%H:%M}",
            end=f"{_minute(window.end):%H:%M}",
            date=f"{window.start:%Y-%m-%d}",
            length=t.hours(window.requested_hours),
        )
    ]
    if window.partial:
        parts.append(
            t(
                "coverage",
                start=f"{window.covered_start:%H:%M}",  # floored: the data begins within that minute
                end=f"{_minute(window.end):%H:%M}",
                minutes=t.num(round(window.hours * 60)),
                total=t.num(round(window.requested_hours * 60)),
            )
        )
    if report.baseline_available and window.baseline_partial:
        parts.append(t("baseline_partial", length=t.hours(window.baseline_hours)))
    elif report.baseline_available:
        parts.append(t("baseline", length=t.hours(window.baseline_hours)))
    else:
        parts.append(t("no_baseline"))
    parts.append(t("entries", n=t.num(ctx.totals.get("entries", 0))))
    if ctx.totals.get("suppressed"):
        parts.append(t("suppressed", n=t.num(ctx.totals["suppressed"])))
    if ctx.totals.get("truncated"):
        parts.append(t("truncated"))
    return " · ".join(parts)


def _minute(moment: datetime) -> datetime:
    """The nearest whole minute: a window that ends just after 12:03:59.9 reads as ending at 12:04."""
    return (moment + timedelta(seconds=30)).replace(second=0, microsecond=0)


def finding_title(finding: Finding, t: Translator) -> str:
    title = t(f"rules.{finding.rule}", default=finding.description.rstrip("."))
    return f"{title}: {clean(finding.group)}" if finding.group else title


def _headline(finding: Finding, t: Translator, hours: float) -> str:
    usual = "" if finding.baseline_per_hour is None else t("usual", rate=t.rate(finding.baseline_per_hour))
    if finding.kind == "latency":
        usual = "" if finding.baseline_ms is None else t("usual_ms", value=t.ms(finding.baseline_ms))
        return t("latency_headline", value=t.ms(finding.value_ms), n=t.num(finding.count), usual=usual)
    if finding.kind == "metric":
        objective = finding.threshold or {}
        target = t.rate(objective["per_hour_below"]) if objective else ""
        return t("metric_headline", n=t.num(finding.count), length=t.hours(hours), target=target, usual=usual)
    share = _share(finding, t)
    headline = t(
        "failure_headline",
        n=t.num(finding.count),
        count=finding.count,
        length=t.hours(hours),
        share=share,
        usual=usual,
    )
    if finding.serving_revision:
        headline += t("deploy_failed", revision=clean(finding.serving_revision))
    return headline


def _blocks(report: Report, t: Translator) -> list[dict[str, Any]]:
    """Problem findings as blocks; a root cause carries its symptoms as sub-lines, counted once."""
    hours = report.context.window.hours
    problems = report.problems
    shown_roots = {f.rule for f in problems if not f.caused_by}
    blocks = []
    for finding in problems:
        if finding.caused_by in shown_roots:
            continue
        symptoms = _symptoms_of(report.findings, finding)
        evidence = finding.evidence
        worst = "CRITICAL" if "CRITICAL" in {f.severity for f in [finding, *symptoms]} else "DEGRADED"
        blocks.append(
            {
                "mark": "❌" if worst == "CRITICAL" else "⚠️",
                "title": finding_title(finding, t),
                "headline": _headline(finding, t, hours),
                "example": evidence.examples[0] if evidence and evidence.examples else None,
                "frame": frame_text(evidence.frame, t) if evidence and evidence.frame else None,
                "seen": _seen_line(finding, t),
                "symptoms": [_symptom_line(s, t) for s in symptoms],
            }
        )
    return blocks


def _symptoms_of(findings: list[Finding], root: Finding) -> list[Finding]:
    """The symptoms standing right after `root` in the report's order (see `verdict.order_findings`)."""
    after = findings[findings.index(root) + 1 :]
    symptoms = []
    for finding in after:
        if finding.caused_by != root.rule:
            break
        symptoms.append(finding)
    return symptoms


def _seen_line(finding: Finding, t: Translator) -> str | None:
    evidence = finding.evidence
    if evidence is None:
        return None
    parts = [f"{evidence.first_seen:%H:%M:%S} → {evidence.last_seen:%H:%M:%S}"]
    if evidence.revisions:
        key = "revision" if len(evidence.revisions) == 1 else "revisions"
        parts.append(t(key, names=", ".join(evidence.revisions)))
    if evidence.instances:
        parts.append(t("instances", n=evidence.instances, count=evidence.instances))
    return " · ".join(parts)


def _share(finding: Finding, t: Translator) -> str:
    """`: 4% of 301 requests (8.1% of rev-2's)`, or nothing when the rule has no denominator."""
    if finding.rate is None or not finding.denominator:
        return ""
    share = t(f"share_of.{finding.denominator_of}", pct=t.pct(finding.rate), n=t.num(finding.denominator))
    if finding.worst_revision:
        revision, revision_share, _ = finding.worst_revision
        share += t("revision_share", pct=t.pct(revision_share), revision=revision)
    return share


def _symptom_line(symptom: Finding, t: Translator) -> str:
    if symptom.kind == "latency":
        return t("causes_latency", value=t.ms(symptom.value_ms), n=t.num(symptom.count))
    caused = symptom.caused_count
    count = (
        t.num(caused) if caused >= symptom.count else t("n_of", n=t.num(caused), total=t.num(symptom.count))
    )
    return t("causes", n=count, count=caused, what=finding_title(symptom, t), share=_share(symptom, t))


def frame_text(frame: str, t: Translator) -> str:
    """`src/app.py:64 in connect`, worded in the report's language."""
    location, _, function = frame.partition(" in ")
    return t("frame", location=location, function=function) if function else location


def _ok_lines(report: Report, t: Translator) -> list[str]:
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
                    t(
                        "ok.http",
                        pct=t.pct(metrics.error_rate),
                        n=t.num(metrics.failed_requests),
                        total=t.num(metrics.requests),
                    )
                )
            else:
                lines.append(t("ok.http_none"))
        elif area.id == "latency":
            if metrics.latency_ms:
                usual = ""
                if metrics.baseline_latency_ms and report.baseline_available:
                    usual = t("usual_ms", value=t.ms(metrics.baseline_latency_ms["p95"]))
                lines.append(t("ok.latency", value=t.ms(metrics.latency_ms["p95"]), usual=usual))
        elif area.id == "websocket":
            lines.append(t("ok.websocket", n=t.num(metrics.websocket_connections)))
        else:
            lines.append(t(f"ok.{area.id}"))
    return lines


def _objective_value(result: ObjectiveResult, t: Translator, value: float | None) -> str:
    metric = result.objective.metric
    if metric.endswith("_rate"):
        return t.pct(value)
    if metric.endswith("_ms"):
        return t.ms(value)
    return t.rate(value)


def _objective_row(result: ObjectiveResult, t: Translator) -> dict[str, str]:
    objective = result.objective
    target = _objective_value(result, t, objective.target)
    comparison = ("≤ " if objective.target else "") if objective.inclusive else "< "
    mark = {True: "✅", False: "❌", None: "—"}[result.met]
    label = t(f"objectives.{objective.id}", default=objective.id.replace("_", " "))
    return {
        "label": label,
        "value": _objective_value(result, t, result.value),
        "target": comparison + target,
        "mark": mark,
    }


def _recommendation(item: Recommendation, t: Translator) -> dict[str, Any]:
    return {
        "icon": PRIORITY_ICONS[item.priority],
        "priority": item.priority,
        "action": t(f"advice.{item.advice}", **{k: v for k, v in item.params.items() if v is not None}),
        "command": clean(item.command) if item.command else None,
    }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def report_dict(report: Report, t: Translator) -> dict[str, Any]:
    """The JSON report: the contract other tools rely on (templates/report.schema.json)."""
    ctx = report.context
    metrics = report.metrics
    return {
        "schema_version": SCHEMA_VERSION,
        "status": report.status,
        "reason": report.reason,
        "service": ctx.service,
        "project": ctx.project,
        "region": ctx.region,
        "window": {
            "start": _iso(ctx.window.start),
            "end": _iso(ctx.window.end),
            "covered_start": _iso(ctx.window.covered_start),
            "partial": ctx.window.partial,
        },
        "warnings": ctx.warnings,
        "baseline": {
            "start": _iso(ctx.window.baseline_start),
            "end": _iso(ctx.window.start),
            "available": report.baseline_available,
            "covered_start": _iso(ctx.window.baseline_covered_start),
            "partial": ctx.window.baseline_partial,
        },
        "totals": {
            "entries": int(ctx.totals.get("entries", 0)),
            "requests": metrics.requests if metrics else 0,
            "errors": metrics.errors if metrics else 0,
            "skipped": int(ctx.totals.get("skipped", 0)),
            "suppressed": int(ctx.totals.get("suppressed", 0)),
            "echoes": int(ctx.totals.get("echoes", 0)),
            "duplicates": int(ctx.totals.get("duplicates", 0)),
            "other_resources": int(ctx.totals.get("other_resources", 0)),
            "truncated": bool(ctx.totals.get("truncated", False)),
        },
        "findings": [_finding_dict(f, t, ctx.window.hours) for f in report.findings],
        "metrics": None
        if metrics is None
        else {
            "requests": metrics.requests,
            "errors": metrics.errors,
            "error_rate": metrics.error_rate,
            "websocket_connections": metrics.websocket_connections,
            "websocket_failures": metrics.websocket_failures,
            "websocket_error_rate": metrics.websocket_error_rate,
            "latency_ms": metrics.latency_ms,
            "failed_latency_ms": metrics.failed_latency_ms,
            "db_reconnections": metrics.db_reconnections,
        },
        "objectives": [
            {
                "id": o.objective.id,
                "metric": o.objective.metric,
                "value": o.value,
                "target": o.objective.target,
                "inclusive": o.objective.inclusive,
                "met": o.met,
            }
            for o in report.objectives
        ],
        "recommendations": [
            {"priority": r.priority, "action": _recommendation(r, t)["action"], "command": r.command}
            for r in report.recommendations
        ],
    }


def _finding_dict(finding: Finding, t: Translator, hours: float) -> dict[str, Any]:
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
        "first_seen": _iso(evidence.first_seen) if evidence else None,
        "last_seen": _iso(evidence.last_seen) if evidence else None,
        "revisions": evidence.revisions if evidence else [],
        "instances": evidence.instances if evidence else 0,
        "examples": evidence.examples if evidence else [],
        "frame": evidence.frame if evidence else None,
        "caused_by": finding.caused_by,
        "caused_count": finding.caused_count,
        "threshold": finding.threshold,
        "summary": f"{finding_title(finding, t)} — {_headline(finding, t, hours)}",
    }
