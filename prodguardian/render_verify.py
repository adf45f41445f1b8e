"""Render a Verification (`prodguardian verify`): text and markdown through templates, and JSON.

The same catalogs (`verify.*` in templates/i18n) and the same quoting of log text as a check's report.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prodguardian.errors import ConfigError
from prodguardian.render import (
    FORMATS,
    SCHEMA_VERSION,
    Translator,
    aligned,
    clean,
    finding_title,
    iso,
    json_text,
    objective_row,
    objective_value,
    probe_dict,
    probe_line,
    template_environment,
)
from prodguardian.verdict import LogText, shell_safe
from prodguardian.verify import MIN_TRAFFIC, CategoryChange, ObjectiveChange, Side, Verification

VERDICT_ICONS = {"PASS": "✅", "FAIL": "❌", "NOT ENOUGH DATA": "⚪"}


def render_verification(result: Verification, fmt: str = "text", lang: str = "en") -> str:
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    if fmt == "json":
        return json_text(verification_dict(result, Translator(lang)))
    t = Translator(lang, markdown=fmt == "markdown")
    template = template_environment().get_template(f"verify.{'md' if fmt == 'markdown' else 'txt'}.j2")
    return template.render(**_view(result, t))


def _view(result: Verification, t: Translator) -> dict[str, Any]:
    """What the templates show, already worded and quoted."""
    objectives = [_objective_cells(change, t) for change in result.objectives]
    categories = [_category_cells(change, t) for change in result.categories]
    header = [t("objectives_title"), t("verify.before"), t("verify.after"), t("verify.target"), ""]
    failures_header = [t("verify.categories_title"), t("verify.before"), t("verify.after"), ""]
    old, command = result.old, _command(result)
    return {
        "t": t,
        "title": _title(result, t),
        "warnings": [t.quote(warning) for warning in result.context.warnings],
        "revision_line": _side_line(result.new, t) if result.new else None,
        "against_line": _against_line(result, t) if result.new else None,
        "reason": _reason(result, t),
        "objectives": objectives,
        "objective_lines": aligned([header, *(["  " + row[0], *row[1:]] for row in objectives)]),
        "categories": categories,
        "category_lines": aligned([failures_header, *(["  " + row[0], *row[1:]] for row in categories)]),
        "new_groups_title": t("verify.new_groups_title", revision=LogText(old.revision)) if old else "",
        "new_groups": [
            t("verify.new_group", title=finding_title(f, t), n=t.num(f.count), count=f.count)
            for f in result.new_groups
        ],
        "probes": [probe_line(p, t) for p in result.probes],
        "advice": _advice(result, t),
        "command": clean(command) if command else None,
    }


def _title(result: Verification, t: Translator) -> str:
    context = result.context
    return t(
        "verify.title",
        icon=VERDICT_ICONS[result.verdict],
        verdict=result.verdict,
        service=LogText(context.service) if context.service else t("unnamed_service"),
        region=t("region", region=LogText(context.region)) if context.region else "",
    )


def _span(start: datetime, end: datetime) -> tuple[str, str]:
    return (
        f"{start:%Y-%m-%d %H:%M}",
        f"{end:%H:%M}" if end.date() == start.date() else f"{end:%Y-%m-%d %H:%M}",
    )


def _traffic(side: Side, t: Translator) -> str:
    return t("verify.traffic", n=t.num(side.traffic), count=side.traffic)


def _side_fields(side: Side, t: Translator) -> dict[str, Any]:
    """A side's revision, hours and traffic, as the catalog's lines about it take them."""
    start, end = _span(side.start, side.end)
    length = t.hours((side.end - side.start).total_seconds() / 3600)
    return {
        "revision": LogText(side.revision),
        "start": start,
        "end": end,
        "length": length,
        "traffic": _traffic(side, t),
    }


def _side_line(side: Side, t: Translator) -> str:
    return t("verify.revision", **_side_fields(side, t))


def _against_line(result: Verification, t: Translator) -> str:
    old = result.old
    if old is None:
        return t("verify.no_previous")
    if result.same_hours:
        return t("verify.same_hours", revision=LogText(old.revision), traffic=_traffic(old, t))
    return t("verify.before_deploy", **_side_fields(old, t))


def _reason(result: Verification, t: Translator) -> str | None:
    if result.reason is None:
        return None
    new = result.new
    return t(
        f"verify.reasons.{result.reason}",
        revision=LogText(new.revision) if new else "",
        n=t.num(new.traffic if new else 0),
        min=t.num(MIN_TRAFFIC),
        error=LogText(result.error or ""),
    )


def _objective_cells(change: ObjectiveChange, t: Translator) -> list[str]:
    after = objective_row(change.after, t)
    before = objective_value(change.before, t, change.before.value) if change.before else "—"
    return [after["label"], before, after["value"], after["target"], after["mark"]]


def _category_cells(change: CategoryChange, t: Translator) -> list[str]:
    label = t(f"verify.categories.{change.category}", default=change.category)
    before = (
        "—"
        if change.before is None
        else t("verify.failures", n=t.num(change.before), pct=t.pct(change.before_share))
    )
    after = t("verify.failures", n=t.num(change.after), pct=t.pct(change.after_share))
    return [label, before, after, "❌" if change.regressed else "✅"]


def _advice(result: Verification, t: Translator) -> str | None:
    old = result.old
    if result.verdict == "PASS":
        return t("verify.passed")
    if result.verdict == "NOT ENOUGH DATA":
        return t("verify.wait") if result.new else None
    if old is None:
        return t("verify.no_rollback")
    key = "verify.rollback" if result.rollback_helps else "verify.rollback_no_help"
    return t(key, revision=LogText(old.revision))


def _command(result: Verification) -> str | None:
    if result.verdict == "FAIL":
        return result.rollback
    service = result.context.service
    if result.verdict == "NOT ENOUGH DATA" and result.new and shell_safe(service):
        return f"prodguardian verify --service {service} --wait 15m"
    return None


def verification_dict(result: Verification, t: Translator) -> dict[str, Any]:
    """The JSON form: every number the text shows, and the words it shows them with."""
    context = result.context
    return {
        "schema_version": SCHEMA_VERSION,
        "verdict": result.verdict,
        "reason": _reason(result, t),
        "service": context.service,
        "project": context.project,
        "region": context.region,
        "warnings": context.warnings,
        "revision": _side_dict(result.new),
        "previous": _side_dict(result.old),
        "same_hours": result.same_hours,
        "objectives": [_objective_dict(change, t) for change in result.objectives],
        "categories": [
            {
                "category": c.category,
                "before": c.before,
                "after": c.after,
                "before_share": c.before_share,
                "after_share": c.after_share,
                "regressed": c.regressed,
            }
            for c in result.categories
        ],
        "new_error_groups": [
            {
                "rule": f.rule,
                "group": f.group,
                "category": f.category,
                "count": f.count,
                "title": finding_title(f, t),
            }
            for f in result.new_groups
        ],
        "probes": [probe_dict(p, t) for p in result.probes],
        "rollback": {"command": result.rollback, "helps": result.rollback_helps} if result.rollback else None,
        "summary": _advice(result, t),
    }


def _side_dict(side: Side | None) -> dict[str, Any] | None:
    if side is None:
        return None
    metrics = side.detection.metrics
    return {
        "name": side.revision,
        "start": iso(side.start),
        "end": iso(side.end),
        "requests": metrics.requests,
        "websocket_connections": metrics.websocket_connections,
        "failures": side.failures,
    }


def _objective_dict(change: ObjectiveChange, t: Translator) -> dict[str, Any]:
    after = change.after
    row = objective_row(after, t)
    return {
        "id": after.objective.id,
        "metric": after.objective.metric,
        "before": change.before.value if change.before else None,
        "after": after.value,
        "target": after.objective.target,
        "inclusive": after.objective.inclusive,
        "met": after.met,
        "label": row["label"],
    }
