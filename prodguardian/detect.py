"""Findings from the aggregate tables and the unknown errors' templates: thresholds, the baseline,
objectives, new errors. Reads nothing else."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import msgspec
import pandas as pd

from prodguardian import stats
from prodguardian.aggregate import QUANTILES, Aggregates, Evidence
from prodguardian.multivariate import RULE as MIX_RULE
from prodguardian.multivariate import Feature, unusual_hour
from prodguardian.reference import Reference, from_baseline
from prodguardian.rules import Objective, Rule, RulePack, Threshold
from prodguardian.unknown_errors import ErrorTemplate, UnknownErrors

Severity = Literal["CRITICAL", "DEGRADED", "INFO"]  # a finding's: INFO is under the thresholds
SEVERITIES: tuple[Severity, ...] = ("CRITICAL", "DEGRADED", "INFO")
# Minimum evidence, so that a quiet service is judged on what its counts can show (docs/design.md).
SPIKE_P_VALUE = 0.01  # a rule's `above_baseline`: the count must also be this surprising for the usual rate
SHARE_EVIDENCE_P_VALUE = 0.01  # below a share threshold's min_count, the binomial tail at its share
SHARE_MIN_COUNT = 2  # a share threshold never fires on fewer failures, whatever the rule's min_count
HISTORY_MIN_COUNT = 3  # a rate above its own history: at least this many failures,
HISTORY_RATIO = 3.0  # this many times the usual rate (or share),
HISTORY_P_VALUE = 1e-4  # and this surprising for it; then DEGRADED even under the rule's thresholds
LATENCY_MIN_SAMPLES = 50  # latency compared with the baseline's: samples in each,
LATENCY_RATIO = 2.0  # the quantile this many times the usual one,
LATENCY_P_VALUE = 1e-4  # and the whole distribution shifted up this surely (Mann-Whitney)
DROP_RATIO = 3.0  # traffic this many times below the reference's quietest hour,
DROP_P_VALUE = 1e-6  # and this surprising for it
SILENCE_MIN = timedelta(minutes=10)  # no request for this long, when the quietest usual hour makes that
SILENCE_P_VALUE = 1e-6  # this unlikely, is a finding of its own


@dataclass
class Finding:
    """What one rule found in the window: its severity, count, rate and evidence."""

    rule: str
    category: str
    severity: Severity
    kind: str  # failure | metric | latency | new_error | probe | traffic | mix
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
    p_value: float | None = None  # how surprising the count (or latency) is for the reference's
    features: list[Feature] = field(default_factory=list)  # an unusual mix: what made the hour unusual
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
    reference: Reference | None = None
    patterns: list[ErrorTemplate] = field(default_factory=list)  # the window's unknown-error templates


@dataclass(frozen=True)
class _Observed:
    """A finding's numbers, as its thresholds and the comparison with usual read them."""

    count: int
    rate: float | None  # the share judged (the worst revision's, when it fails more of its traffic)
    per_hour: float
    usual_per_hour: float | None
    p_value: float | None
    usual_ratio: float | None  # rate (or share) over the usual one; inf when the usual is 0
    hours: float
    instances: int
    recovered_minutes: float
    denominator: int | None = None  # the requests or sessions a share is of


def detect(
    aggs: Aggregates,
    pack: RulePack,
    unknown: UnknownErrors | None = None,
    reference: Reference | None = None,
    *,
    multivariate: bool = False,
) -> Detection:
    """Findings of the window's tables against `reference` (default: the input's own baseline period).

    `unknown`: the templates of the errors no rule knows; a new one is a finding of its own, in place of
    the fallback findings whose failures it holds. `multivariate` adds the unusual-mix finding (an
    IsolationForest over the hours, scikit-learn)."""
    unknown = unknown or UnknownErrors()
    reference = reference or from_baseline(aggs)
    window_counts = aggs.counts[aggs.counts["period"] == "window"]
    metrics = _metrics(aggs, window_counts, pack, reference)
    findings: list[Finding] = []
    for rule in pack.rules:
        if rule.is_failure:
            found = _failure_findings(rule, aggs, window_counts, metrics, reference)
            if rule.type == "fallback":
                found = [f for f in found if f.group not in unknown.superseded]
                findings.extend(_new_error(rule, aggs, t, reference is not None) for t in unknown.new)
            findings.extend(found)
        elif rule.type == "latency":
            findings.extend(_latency_finding(rule, aggs, reference))
    objectives = [
        ObjectiveResult(o, _objective_value(o, aggs, window_counts, metrics), _objective_category(o, pack))
        for o in pack.objectives
    ]
    findings.extend(_metric_findings(pack, aggs, window_counts, objectives, reference))
    findings.extend(_traffic_findings(aggs, metrics, reference))
    if multivariate:
        findings.extend(_mix_finding(aggs))
    return Detection(
        findings,
        metrics,
        objectives,
        _revision_stats(aggs),
        reference is not None,
        reference,
        unknown.templates,
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
    rule: Rule, aggs: Aggregates, window: pd.DataFrame, metrics: Metrics, reference: Reference | None
) -> list[Finding]:
    mine = window[window["rule"] == rule.id]
    findings = []
    for group, part in mine.groupby("group", sort=False):
        count = _failures(part)
        of = _denominator_of(rule)
        denominator = (
            None if of is None else (metrics.requests if of == "requests" else metrics.websocket_connections)
        )
        rate = count / denominator if denominator else None
        worst = _worst_revision(part, aggs, of) if of else None
        judged_rate = max(rate or 0.0, worst[1]) if worst and worst[2] >= _min_count(rule) else rate
        evidence = aggs.evidence.get((rule.id, str(group)))
        observed = _observe(
            count,
            judged_rate,
            denominator,
            of,
            aggs,
            evidence,
            reference,
            reference.failures.get((rule.id, str(group)), 0) if reference else 0,
        )
        severity, threshold = _judge(rule, observed)
        caused = part[part["caused_by"] != ""]
        findings.append(
            _finding(
                rule,
                aggs,
                severity=severity,
                kind="failure",
                count=count,
                baseline_per_hour=observed.usual_per_hour,
                p_value=observed.p_value,
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


def _observe(
    count: int,
    rate: float | None,
    denominator: int | None,
    of: str | None,
    aggs: Aggregates,
    evidence: Evidence | None,
    reference: Reference | None,
    usual_count: int,
) -> _Observed:
    """A count's numbers and how it compares with the reference: a share against the usual share (Fisher's
    exact test) when the rule has a denominator the reference also has, else a rate (the conditional test)."""
    hours = aggs.window.hours
    per_hour = count / hours
    instances = evidence.instances if evidence else 0
    recovered = evidence.recovered_minutes if evidence else 0.0
    if reference is None:
        return _Observed(count, rate, per_hour, None, None, None, hours, instances, recovered, denominator)
    usual_per_hour = reference.per_hour(usual_count)
    usual_denominator = (
        None if of is None else reference.requests if of == "requests" else reference.websocket
    )
    if denominator and usual_denominator:
        p_value = stats.share_test(count, denominator, usual_count, usual_denominator)
        ratio = _ratio(count / denominator, usual_count / usual_denominator)
    else:
        p_value = stats.rate_ratio_test(count, hours, usual_count, reference.hours)
        ratio = _ratio(per_hour, usual_per_hour)
    return _Observed(
        count, rate, per_hour, usual_per_hour, p_value, ratio, hours, instances, recovered, denominator
    )


def _ratio(now: float, usual: float) -> float:
    return now / usual if usual > 0 else (float("inf") if now > 0 else 0.0)


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


def _judge(rule: Rule, observed: _Observed) -> tuple[Severity, dict[str, Any] | None]:
    """The severity of a count: CRITICAL or DEGRADED when that threshold is crossed; DEGRADED when it is
    clearly above its own history; else INFO."""
    for severity, threshold in _alerting_thresholds(rule):
        if threshold is not None and _crossed(threshold, observed):
            return severity, _describe(threshold)
    if _above_history(observed):
        return "DEGRADED", {"above_usual": HISTORY_RATIO, "p_below": HISTORY_P_VALUE}
    return "INFO", None


def _crossed(threshold: Threshold, observed: _Observed) -> bool:
    count, rate = observed.count, observed.rate
    if count < threshold.min_count and not _share_beyond_doubt(threshold, observed):
        return False
    if threshold.share is not None and count < SHARE_MIN_COUNT:
        return False
    if threshold.instances is not None and observed.instances < threshold.instances:
        return False
    if threshold.ongoing_minutes is not None and observed.recovered_minutes > threshold.ongoing_minutes:
        return False
    if threshold.count is not None and count < threshold.count:
        return False
    if threshold.per_hour is not None and observed.per_hour <= threshold.per_hour:
        return False
    if threshold.share is not None and rate is not None and rate <= threshold.share:
        return False
    if threshold.above_baseline is not None and observed.usual_per_hour is not None:
        return (
            observed.per_hour >= threshold.above_baseline * observed.usual_per_hour
            and observed.p_value is not None
            and observed.p_value < SPIKE_P_VALUE
        )
    return True


def _share_beyond_doubt(threshold: Threshold, observed: _Observed) -> bool:
    """Too many failures of few calls to be chance at the threshold's share (4 of 4 scheduled runs, 2 of 2
    calls): the share's evidence stands in for the rule's minimum count."""
    return (
        threshold.share is not None
        and bool(observed.denominator)
        and observed.count >= SHARE_MIN_COUNT
        and stats.binomial_upper_tail(observed.count, observed.denominator or 0, threshold.share)
        < SHARE_EVIDENCE_P_VALUE
    )


def _above_history(observed: _Observed) -> bool:
    """Clearly above its own history: enough failures, several times the usual, beyond doubt."""
    return (
        observed.count >= HISTORY_MIN_COUNT
        and observed.p_value is not None
        and observed.p_value < HISTORY_P_VALUE
        and (observed.usual_ratio or 0.0) >= HISTORY_RATIO
    )


def _describe(threshold: Threshold) -> dict[str, Any]:
    return {
        k: v
        for k, v in msgspec.structs.asdict(threshold).items()
        if v is not None and not (k == "of" and threshold.share is None)
    }


def _latency_finding(rule: Rule, aggs: Aggregates, reference: Reference | None) -> list[Finding]:
    now = _latency_row(aggs, "window")
    if now is None:
        return []
    quantile_key = f"p{round(rule.quantile * 100)}"
    value = _quantile(aggs, "window", rule.quantile) if quantile_key not in now else float(now[quantile_key])
    samples = int(now["samples"])
    usual = reference.latency if reference else None
    baseline_ms = reference.usual_latency(rule.quantile) if reference else None
    severity: Severity = "INFO"
    threshold = None
    for name, limit in _alerting_thresholds(rule):
        if limit is not None and limit.ms is not None and samples >= limit.min_count and value > limit.ms:
            severity, threshold = name, _describe(limit)
            break
    p_value = None
    if usual is not None and baseline_ms is not None and "sketch" in now:
        p_value = _latency_shift(now["sketch"].counts, usual.counts, samples, usual.count)
        if severity == "INFO" and _slower_than_usual(value, baseline_ms, p_value):
            severity, threshold = "DEGRADED", {"above_usual": LATENCY_RATIO, "p_below": LATENCY_P_VALUE}
    return [
        _finding(
            rule,
            aggs,
            severity=severity,
            kind="latency",
            count=samples,
            threshold=threshold,
            p_value=p_value,
            value_ms=value,
            baseline_ms=baseline_ms,
        )
    ]


def _latency_shift(window: Any, usual: Any, samples: int, usual_samples: int) -> float | None:
    """How surely the window's latencies run above the usual ones (None on too few samples to tell)."""
    if min(samples, usual_samples) < LATENCY_MIN_SAMPLES:
        return None
    return stats.rank_test(window, usual).p_value


def _slower_than_usual(value: float, usual: float, p_value: float | None) -> bool:
    return p_value is not None and p_value < LATENCY_P_VALUE and value >= LATENCY_RATIO * usual


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
    objectives: list[ObjectiveResult],
    reference: Reference | None,
) -> list[Finding]:
    missed = {r.objective.finding_rule: r for r in objectives if r.objective.finding_rule and r.met is False}
    findings = []
    for rule in pack.rules:
        if rule.type != "metric":
            continue
        count = int(window.loc[window["rule"] == rule.id, "events"].sum())
        if count == 0:
            continue
        result = missed.get(rule.id)
        usual = reference.events.get(rule.id, 0) if reference else 0
        findings.append(
            _finding(
                rule,
                aggs,
                severity="DEGRADED" if result else "INFO",
                kind="metric",
                count=count,
                baseline_per_hour=reference.per_hour(usual) if reference else None,
                p_value=stats.rate_ratio_test(count, aggs.window.hours, usual, reference.hours)
                if reference
                else None,
                threshold={"per_hour_below": result.objective.target} if result else None,
                evidence=aggs.evidence.get((rule.id, "")),
            )
        )
    return findings


TRAFFIC_RULE = "traffic-drop"
SILENCE_RULE = "traffic-silence"


def _traffic_findings(aggs: Aggregates, metrics: Metrics, reference: Reference | None) -> list[Finding]:
    """No traffic for a long stretch, or far less than in the quietest usual hour: a dead service logs
    nothing, so its silence is a finding of its own."""
    if reference is None or not reference.quietest_per_hour:
        return []
    quietest = reference.quietest_per_hour
    silence = aggs.window.end - max(aggs.last_request or aggs.window.covered_start, aggs.window.covered_start)
    silent_hours = silence / timedelta(hours=1)
    p_silence = math.exp(-quietest * silent_hours)  # no request in that time, at the quietest usual rate
    served = metrics.requests + metrics.websocket_connections
    hours = aggs.window.hours
    if silence >= SILENCE_MIN and p_silence < SILENCE_P_VALUE:
        rule, count, p_value = SILENCE_RULE, round(silence / timedelta(minutes=1)), p_silence
    else:
        p_value = stats.rate_drop_test(served, hours, round(quietest), 1.0)
        if not (served * DROP_RATIO <= quietest * hours and p_value < DROP_P_VALUE):
            return []
        rule, count = TRAFFIC_RULE, served
    return [
        Finding(
            rule=rule,
            category="traffic",
            severity="DEGRADED",
            kind="traffic",
            description="Traffic far below usual" if rule == TRAFFIC_RULE else "No traffic",
            count=count,
            per_hour=served / hours,
            baseline_per_hour=quietest,
            p_value=p_value,
            threshold={"below_quietest_hour": 1 / DROP_RATIO, "p_below": DROP_P_VALUE}
            if rule == TRAFFIC_RULE
            else {"silent_minutes": SILENCE_MIN / timedelta(minutes=1), "p_below": SILENCE_P_VALUE},
        )
    ]


def _mix_finding(aggs: Aggregates) -> list[Finding]:
    unusual = unusual_hour(aggs)
    if unusual is None:
        return []
    return [
        Finding(
            rule=MIX_RULE,
            category="mix",
            severity=unusual.severity,
            kind="mix",
            description="An hour unlike the baseline's",
            count=unusual.baseline_hours,
            per_hour=0.0,
            baseline_per_hour=None,
            features=unusual.features,
        )
    ]


def _metrics(aggs: Aggregates, window: pd.DataFrame, pack: RulePack, reference: Reference | None) -> Metrics:
    traffic = aggs.traffic[aggs.traffic["period"] == "window"]
    requests = int(traffic["requests"].sum())
    ws_attempts = int(traffic["websocket"].sum())
    failed = int(traffic["failed_requests"].sum())
    units = aggs.failures[aggs.failures["period"] == "window"]
    ws_failures = int(units.loc[units["category"] == "websocket", "unit"].nunique())
    metric_rules = {r.id for r in pack.rules if r.type == "metric" and r.category == "database"}
    latency = _latency_row(aggs, "window")
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
        baseline_latency_ms=_usual_quantiles(reference),
        db_reconnections=int(window.loc[window["rule"].isin(metric_rules), "events"].sum()),
    )


def _quantiles(row: Any) -> dict[str, float] | None:
    return None if row is None else {k: float(row[k]) for k in ("p50", "p95", "p99")}


def _usual_quantiles(reference: Reference | None) -> dict[str, float] | None:
    """The reference's latency quantiles (the same hours' when seasonal), as the latency finding's."""
    if reference is None:
        return None
    usual = {f"p{round(q * 100)}": reference.usual_latency(q) for q in QUANTILES}
    return {k: v for k, v in usual.items() if v is not None} or None


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
