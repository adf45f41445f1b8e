"""Findings from the aggregate tables and the unknown errors' templates: thresholds, the baseline,
objectives, new errors. Reads nothing else."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import msgspec
import pandas as pd

from prodguardian.aggregate import Aggregates, Evidence
from prodguardian.rules import Objective, Rule, RulePack, Threshold
from prodguardian.unknown_errors import ErrorTemplate, UnknownErrors

Severity = Literal["CRITICAL", "DEGRADED", "INFO"]  # a finding's: INFO is under the thresholds
SEVERITIES: tuple[Severity, ...] = ("CRITICAL", "DEGRADED", "INFO")
SPIKE_P_VALUE = 0.01


@dataclass
class Finding:
    """What one rule found in the window: its severity, count, rate and evidence."""

    rule: str
    category: str
    severity: Severity
    kind: str  # failure | metric | latency | new_error
    description: str
    count: int
    per_hour: float
    baseline_per_hour: float | None
    rate: float | None = None
    denominator: int | None = None
    denominator_of: str | None = None
    group: str | None = None
    caused_by: str | None = None
    caused_count: int = 0
    threshold: dict[str, Any] | None = None
    value_ms: float | None = None
    baseline_ms: float | None = None
    evidence: Evidence | None = None
    advice: str | None = None
    worst_revision: tuple[str, float, int] | None = None  # (revision, share of its traffic, failures)
    serving_revision: str | None = None  # a failed deploy: the revision that still serves the traffic
    template_id: str | None = None  # a new error's template (`patterns.template_id`)


@dataclass
class Metrics:
    requests: int
    errors: int
    failed_requests: int
    error_rate: float | None
    websocket_connections: int
    websocket_failures: int
    websocket_error_rate: float | None
    latency_ms: dict[str, float] | None
    baseline_latency_ms: dict[str, float] | None
    db_reconnections: int
    failed_latency_ms: dict[str, float] | None = None  # the failed requests' own, apart from the objective


@dataclass
class ObjectiveResult:
    objective: Objective
    value: float | None
    category: str | None = None  # the category of failures the objective measures, for the report's areas

    @property
    def met(self) -> bool | None:
        return None if self.value is None else self.objective.met(self.value)


@dataclass
class RevisionStats:
    revision: str
    first_seen: datetime
    failures: int
    requests: int
    baseline_failures: int
    baseline_requests: int
    first_failure: datetime | None = None


@dataclass
class Detection:
    findings: list[Finding]
    metrics: Metrics
    objectives: list[ObjectiveResult]
    revisions: list[RevisionStats] = field(default_factory=list)
    baseline_available: bool = False
    patterns: list[ErrorTemplate] = field(default_factory=list)  # the window's unknown-error templates


def detect(aggs: Aggregates, pack: RulePack, unknown: UnknownErrors | None = None) -> Detection:
    """`unknown`: the templates of the errors no rule knows; a new one is a finding of its own, in place of
    the fallback findings whose failures it holds."""
    unknown = unknown or UnknownErrors()
    window_counts = aggs.counts[aggs.counts["period"] == "window"]
    baseline_counts = aggs.counts[aggs.counts["period"] == "baseline"]
    baseline_available = aggs.baseline_entries > 0
    metrics = _metrics(aggs, window_counts, pack)
    findings: list[Finding] = []
    for rule in pack.rules:
        if rule.is_failure:
            found = _failure_findings(rule, aggs, window_counts, baseline_counts, metrics, baseline_available)
            if rule.type == "fallback":
                found = [f for f in found if f.group not in unknown.superseded]
                findings.extend(_new_error(rule, aggs, t, baseline_available) for t in unknown.new)
            findings.extend(found)
        elif rule.type == "latency":
            findings.extend(_latency_finding(rule, aggs, baseline_available))
    objectives = [
        ObjectiveResult(o, _objective_value(o, aggs, window_counts, metrics), _objective_category(o, pack))
        for o in pack.objectives
    ]
    findings.extend(
        _metric_findings(pack, aggs, window_counts, baseline_counts, objectives, baseline_available)
    )
    return Detection(
        findings, metrics, objectives, _revision_stats(aggs), baseline_available, unknown.templates
    )


def _alerting_thresholds(rule: Rule) -> tuple[tuple[Severity, Threshold | None], ...]:
    """The rule's thresholds, CRITICAL first: the first one crossed is the finding's severity."""
    return ("CRITICAL", rule.critical), ("DEGRADED", rule.degraded)


def _finding(
    rule: Rule, aggs: Aggregates, *, severity: Severity, kind: str, count: int, **fields: Any
) -> Finding:
    """A finding of `rule`: what every kind of finding takes from the rule and the window."""
    return Finding(
        rule=rule.id,
        category=rule.category,
        severity=severity,
        kind=kind,
        description=rule.description,
        advice=rule.advice,
        count=count,
        per_hour=count / aggs.window.hours,
        **{"baseline_per_hour": None, **fields},
    )


def _failures(counts: pd.DataFrame) -> int:
    """Distinct failures in a slice of the counts table (a failure spans buckets at most once per rule)."""
    return int(counts["failures"].sum())


def _failure_findings(
    rule: Rule,
    aggs: Aggregates,
    window: pd.DataFrame,
    baseline: pd.DataFrame,
    metrics: Metrics,
    baseline_available: bool,
) -> list[Finding]:
    mine = window[window["rule"] == rule.id]
    findings = []
    for group, part in mine.groupby("group", sort=False):
        count = _failures(part)
        base = baseline[(baseline["rule"] == rule.id) & (baseline["group"] == group)]
        baseline_rate = _failures(base) / aggs.window.baseline_hours if baseline_available else None
        of = _denominator_of(rule)
        denominator = (
            None if of is None else (metrics.requests if of == "requests" else metrics.websocket_connections)
        )
        rate = count / denominator if denominator else None
        worst = _worst_revision(part, aggs, of) if of else None
        judged_rate = max(rate or 0.0, worst[1]) if worst and worst[2] >= _min_count(rule) else rate
        evidence = aggs.evidence.get((rule.id, str(group)))
        severity, threshold = _judge(
            rule,
            count,
            judged_rate,
            count / aggs.window.hours,
            baseline_rate,
            aggs.window.hours,
            evidence.instances if evidence else 0,
            evidence.recovered_minutes if evidence else 0.0,
        )
        caused = part[part["caused_by"] != ""]
        findings.append(
            _finding(
                rule,
                aggs,
                severity=severity,
                kind="failure",
                count=count,
                baseline_per_hour=baseline_rate,
                rate=rate,
                denominator=denominator,
                denominator_of=of,
                group=str(group) or None,
                caused_by=_most_failures(caused, "caused_by"),
                caused_count=_failures(caused),
                threshold=threshold,
                evidence=evidence,
                worst_revision=worst if worst and judged_rate != rate else None,
            )
        )
    return findings


def _new_error(rule: Rule, aggs: Aggregates, template: ErrorTemplate, baseline_available: bool) -> Finding:
    """An error never seen before: DEGRADED from its first failure, titled by its template."""
    return _finding(
        rule,
        aggs,
        severity="DEGRADED",
        kind="new_error",
        count=template.count,
        baseline_per_hour=0.0 if baseline_available else None,
        group=template.template,
        evidence=template.evidence,
        template_id=template.id,
    )


def _min_count(rule: Rule) -> int:
    return min(t.min_count for t in (rule.critical, rule.degraded) if t is not None)


def _worst_revision(part: pd.DataFrame, aggs: Aggregates, of: str) -> tuple[str, float, int] | None:
    """The revision failing the largest share of its own traffic: a bad deploy still rolling out."""
    traffic = aggs.traffic[aggs.traffic["period"] == "window"]
    served = traffic.groupby("revision")["requests" if of == "requests" else "websocket"].sum()
    failures = part.groupby("revision")["failures"].sum()
    served_by = {str(rev): int(n) for rev, n in served.items()}
    shares = [
        (str(rev), n / served_by[str(rev)], int(n)) for rev, n in failures.items() if served_by.get(str(rev))
    ]
    return max(shares, key=lambda item: item[1]) if len(served[served > 0]) > 1 and shares else None


def _most_failures(part: pd.DataFrame, column: str) -> str | None:
    if part.empty:
        return None
    return str(part.groupby(column)["failures"].sum().idxmax())


def _denominator_of(rule: Rule) -> str | None:
    for threshold in (rule.critical, rule.degraded):
        if threshold is not None and threshold.share is not None:
            return threshold.of
    return None


def _judge(
    rule: Rule,
    count: int,
    rate: float | None,
    per_hour: float,
    baseline_rate: float | None,
    hours: float,
    instances: int,
    recovered_minutes: float,
) -> tuple[Severity, dict[str, Any] | None]:
    """The severity of a count: CRITICAL or DEGRADED when that threshold is crossed, else INFO."""
    for severity, threshold in _alerting_thresholds(rule):
        if threshold is not None and _crossed(
            threshold, count, rate, per_hour, baseline_rate, hours, instances, recovered_minutes
        ):
            return severity, _describe(threshold)
    return "INFO", None


def _crossed(
    threshold: Threshold,
    count: int,
    rate: float | None,
    per_hour: float,
    baseline_rate: float | None,
    hours: float,
    instances: int,
    recovered_minutes: float,
) -> bool:
    if count < threshold.min_count:
        return False
    if threshold.instances is not None and instances < threshold.instances:
        return False
    if threshold.ongoing_minutes is not None and recovered_minutes > threshold.ongoing_minutes:
        return False
    if threshold.count is not None and count < threshold.count:
        return False
    if threshold.per_hour is not None and per_hour <= threshold.per_hour:
        return False
    if threshold.share is not None and rate is not None and rate <= threshold.share:
        return False
    if threshold.above_baseline is not None and baseline_rate is not None:
        expected = baseline_rate * hours
        return (
            per_hour >= threshold.above_baseline * baseline_rate
            and poisson_tail(count, expected) < SPIKE_P_VALUE
        )
    return True


def _describe(threshold: Threshold) -> dict[str, Any]:
    return {
        k: v
        for k, v in msgspec.structs.asdict(threshold).items()
        if v is not None and not (k == "of" and threshold.share is None)
    }


def poisson_tail(k: int, expected: float) -> float:
    """P(X >= k) for X ~ Poisson(expected): how surprising k events are when `expected` are usual."""
    if k <= 0:
        return 1.0
    if expected <= 0:
        return 0.0
    log_expected = math.log(expected)
    below = sum(math.exp(i * log_expected - expected - math.lgamma(i + 1)) for i in range(k))
    return max(0.0, 1.0 - below)


def _latency_finding(rule: Rule, aggs: Aggregates, baseline_available: bool) -> list[Finding]:
    now = _latency_row(aggs, "window")
    if now is None:
        return []
    quantile_key = f"p{round(rule.quantile * 100)}"
    value = _quantile(aggs, "window", rule.quantile) if quantile_key not in now else float(now[quantile_key])
    samples = int(now["samples"])
    base = _latency_row(aggs, "baseline") if baseline_available else None
    baseline_ms = None if base is None else _quantile(aggs, "baseline", rule.quantile, base)
    severity: Severity = "INFO"
    threshold = None
    for name, limit in _alerting_thresholds(rule):
        if limit is not None and limit.ms is not None and samples >= limit.min_count and value > limit.ms:
            severity, threshold = name, _describe(limit)
            break
    return [
        _finding(
            rule,
            aggs,
            severity=severity,
            kind="latency",
            count=samples,
            threshold=threshold,
            value_ms=value,
            baseline_ms=baseline_ms,
        )
    ]


def _latency_row(aggs: Aggregates, period: str, outcome: str = "ok") -> Any:
    latency = aggs.latency
    rows = latency[
        (latency["period"] == period) & (latency["revision"] == "*") & (latency["outcome"] == outcome)
    ]
    return None if rows.empty or int(rows.iloc[0]["samples"]) == 0 else rows.iloc[0]


def _quantile(aggs: Aggregates, period: str, quantile: float, row: Any = None) -> float:
    row = _latency_row(aggs, period) if row is None else row
    key = f"p{round(quantile * 100)}"
    return float(row[key]) if key in row else float(row["p95"])


def _metric_findings(
    pack: RulePack,
    aggs: Aggregates,
    window: pd.DataFrame,
    baseline: pd.DataFrame,
    objectives: list[ObjectiveResult],
    baseline_available: bool,
) -> list[Finding]:
    missed = {r.objective.finding_rule: r for r in objectives if r.objective.finding_rule and r.met is False}
    findings = []
    for rule in pack.rules:
        if rule.type != "metric":
            continue
        count = int(window.loc[window["rule"] == rule.id, "events"].sum())
        if count == 0:
            continue
        base = int(baseline.loc[baseline["rule"] == rule.id, "events"].sum())
        result = missed.get(rule.id)
        findings.append(
            _finding(
                rule,
                aggs,
                severity="DEGRADED" if result else "INFO",
                kind="metric",
                count=count,
                baseline_per_hour=base / aggs.window.baseline_hours if baseline_available else None,
                threshold={"per_hour_below": result.objective.target} if result else None,
                evidence=aggs.evidence.get((rule.id, "")),
            )
        )
    return findings


def _metrics(aggs: Aggregates, window: pd.DataFrame, pack: RulePack) -> Metrics:
    traffic = aggs.traffic[aggs.traffic["period"] == "window"]
    requests = int(traffic["requests"].sum())
    ws_attempts = int(traffic["websocket"].sum())
    failed = int(traffic["failed_requests"].sum())
    units = aggs.failures[aggs.failures["period"] == "window"]
    ws_failures = int(units.loc[units["category"] == "websocket", "unit"].nunique())
    metric_rules = {r.id for r in pack.rules if r.type == "metric" and r.category == "database"}
    latency = _latency_row(aggs, "window")
    base_latency = _latency_row(aggs, "baseline")
    return Metrics(
        requests=requests,
        errors=int(units["unit"].nunique()),
        failed_requests=failed,
        error_rate=failed / requests if requests else None,
        websocket_connections=ws_attempts,
        websocket_failures=ws_failures,
        websocket_error_rate=ws_failures / ws_attempts if ws_attempts else None,
        latency_ms=_quantiles(latency),
        failed_latency_ms=_quantiles(_latency_row(aggs, "window", "failed")),
        baseline_latency_ms=None
        if base_latency is None
        else {k: float(base_latency[k]) for k in ("p50", "p95", "p99")},
        db_reconnections=int(window.loc[window["rule"].isin(metric_rules), "events"].sum()),
    )


def _quantiles(row: Any) -> dict[str, float] | None:
    return None if row is None else {k: float(row[k]) for k in ("p50", "p95", "p99")}


def _objective_value(
    objective: Objective, aggs: Aggregates, window: pd.DataFrame, metrics: Metrics
) -> float | None:
    kind, _, name = objective.metric.partition(":")
    if kind == "websocket_error_rate":
        return metrics.websocket_error_rate
    if kind == "http_error_rate":
        return metrics.error_rate
    if kind == "latency_p95_ms":
        return None if metrics.latency_ms is None else metrics.latency_ms["p95"]
    if kind == "per_hour":
        return float(window.loc[window["rule"] == name, "events"].sum()) / aggs.window.hours
    units = aggs.failures[(aggs.failures["period"] == "window") & (aggs.failures["category"] == name)]
    return units["unit"].nunique() / aggs.window.hours


_METRIC_CATEGORIES = {
    "websocket_error_rate": "websocket",
    "http_error_rate": "http_5xx",
    "latency_p95_ms": "latency",
}


def _objective_category(objective: Objective, pack: RulePack) -> str | None:
    kind, _, name = objective.metric.partition(":")
    if kind == "per_hour":
        return next((rule.category for rule in pack.rules if rule.id == name), None)
    return _METRIC_CATEGORIES.get(kind, name)


def _revision_stats(aggs: Aggregates) -> list[RevisionStats]:
    """Failures and traffic per revision, oldest revision first, for rollback advice."""
    stats = []
    for revision, first_seen in sorted(aggs.revision_first_seen.items(), key=lambda item: item[1]):
        if revision:
            stats.append(
                RevisionStats(
                    revision=revision,
                    first_seen=first_seen,
                    failures=_revision_total(aggs.failures, "window", revision, "unit"),
                    requests=_revision_total(aggs.traffic, "window", revision, "requests", "websocket"),
                    baseline_failures=_revision_total(aggs.failures, "baseline", revision, "unit"),
                    baseline_requests=_revision_total(
                        aggs.traffic, "baseline", revision, "requests", "websocket"
                    ),
                    first_failure=aggs.revision_first_failure.get(revision),
                )
            )
    return stats


def _revision_total(frame: pd.DataFrame, period: str, revision: str, *columns: str) -> int:
    part = frame[(frame["period"] == period) & (frame["revision"] == revision)]
    if columns == ("unit",):
        return int(part["unit"].nunique())
    return int(sum(part[c].sum() for c in columns))
