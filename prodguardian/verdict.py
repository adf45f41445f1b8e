"""The verdict: status, findings in reading order (root causes before their symptoms), areas, advice.

Pure functions of the detection. Advice is ready-to-paste commands, never executed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, Literal

from prodguardian.aggregate import Window
from prodguardian.detect import SEVERITIES, Detection, Finding, Metrics, ObjectiveResult, RevisionStats
from prodguardian.probes import ProbeResult
from prodguardian.reference import Reference
from prodguardian.timelines import Timeline
from prodguardian.unknown_errors import ErrorTemplate

Status = Literal["OK", "DEGRADED", "CRITICAL", "UNKNOWN"]
Priority = Literal["HIGH", "MEDIUM", "LOW"]
PRIORITIES: tuple[Priority, ...] = ("HIGH", "MEDIUM", "LOW")
AreaState = Literal[
    "ok", "noted", "warn", "fail"
]  # noted: failures under the thresholds, or a missed objective
STATUS_ICONS: dict[Status, str] = {"OK": "🟢", "DEGRADED": "🟡", "CRITICAL": "🔴", "UNKNOWN": "⚪"}
EXIT_CODES: dict[Status, int] = {"OK": 0, "DEGRADED": 1, "CRITICAL": 2, "UNKNOWN": 3}
AREAS = {
    "database": ("database",),
    "websocket": ("websocket",),
    "http": ("http_5xx", "timeout", "capacity"),
    "latency": ("latency",),
    "platform": ("memory", "crash", "startup"),
    "unknown": ("unknown",),
}
MEMORY_STEPS_MIB = (512, 1024, 2048, 4096, 8192, 16384, 32768)
# Names that come from logs end up in ready-to-paste shell commands: only plain identifiers may.
_SHELL_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def shell_safe(*values: str | None) -> bool:
    """Whether every value is a plain identifier (service, revision, region, project, trace)."""
    return all(v is not None and _SHELL_SAFE.match(v) for v in values)


ROLLBACK_SHARE = 0.8
# A revision whose first failure came this soon after its first entry failed from the start.
FAILING_SINCE_START = timedelta(minutes=10)


class LogText(str):
    """Text taken from the logs (a revision, a frame, an error's message): a report quotes it as data, so in
    markdown it stands in a code span and can neither format nor link."""


@dataclass(frozen=True)
class Reason:
    """Why a report is UNKNOWN, or what it warns about: a key of the catalog's `reasons` (or `warnings`) and
    its values, or a message given as it is."""

    key: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    message: str | None = None


@dataclass
class Context:
    service: str | None  # None when the input names no service
    project: str | None
    region: str | None
    window: Window
    totals: dict[str, Any]
    warnings: list[Reason] = field(
        default_factory=list
    )  # about the input: future timestamps, one page of many


@dataclass
class Recommendation:
    priority: Priority
    advice: str  # key of the advice text in the report catalog
    params: dict[str, Any]
    command: str | None = None


@dataclass
class Area:
    """One line of the report's checklist: an area with a finding or a missed objective is never ✅."""

    id: str
    state: AreaState
    findings: list[Finding]


@dataclass
class Report:
    """A check's answer: the status, findings in reading order, metrics, objectives, advice (pure data)."""

    status: Status
    context: Context
    findings: list[Finding]
    metrics: Metrics | None
    objectives: list[ObjectiveResult]
    recommendations: list[Recommendation]
    areas: list[Area] = field(default_factory=list)
    baseline_available: bool = False
    reference: Reference | None = None  # what "usual" was, when a seasonal reference names its hour
    reason: Reason | None = None  # why the status is UNKNOWN
    services: list[Report] = field(default_factory=list)  # every service's report, worst first, when several
    # The window's unknown-error templates, most failures first (a report shows the top ones).
    patterns: list[ErrorTemplate] = field(default_factory=list)
    probes: list[ProbeResult] = field(
        default_factory=list
    )  # `check --probe`: each a row, a failure a finding
    timeline: Timeline | None = None  # the key signals over the baseline and window, for charts

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.severity != "INFO"]


def build_report(detection: Detection, context: Context) -> Report:
    findings = order_findings(_explained_latency(_failed_deploys(detection.findings, detection.revisions)))
    problems = [f for f in findings if f.severity != "INFO"]
    status = _status(problems)
    return Report(
        status=status,
        context=context,
        findings=findings,
        metrics=detection.metrics,
        objectives=detection.objectives,
        recommendations=recommend(status, problems, detection.revisions, context),
        areas=_areas(findings, detection.objectives),
        baseline_available=detection.baseline_available,
        patterns=detection.patterns,
        reference=detection.reference,
    )


def _status(problems: list[Finding]) -> Status:
    """The worst severity of the findings that alert; OK when none does."""
    if not problems:
        return "OK"
    return "CRITICAL" if any(f.severity == "CRITICAL" for f in problems) else "DEGRADED"


def _failed_deploys(findings: list[Finding], revisions: list[RevisionStats]) -> list[Finding]:
    """A new revision failing to start while another keeps serving is a failed deploy, not an outage: its
    startup finding is DEGRADED and names the revision still serving (CRITICAL only when none serves)."""
    serving = [r.revision for r in revisions if r.requests > r.failures]
    judged = []
    for finding in findings:
        failing = set(finding.evidence.revisions) if finding.evidence else set()
        others = [name for name in serving if name not in failing]
        if finding.category == "startup" and finding.severity == "CRITICAL" and failing and others:
            finding = replace(finding, severity="DEGRADED", serving_revision=others[-1])
        judged.append(finding)
    return judged


LATENCY_CAUSES = ("timeout", "startup", "capacity")


def _explained_latency(findings: list[Finding]) -> list[Finding]:
    """Slow requests while requests time out, instances fail to start or capacity runs out are that
    problem's symptom: the latency finding stands under it, DEGRADED at most, never a CRITICAL of its own."""
    causes = [
        f for f in findings if f.category in LATENCY_CAUSES and f.severity != "INFO" and not f.caused_by
    ]
    if not causes:
        return findings
    root = min(causes, key=_rank)
    return [
        replace(f, caused_by=root.rule, severity=max(f.severity, "DEGRADED", key=SEVERITIES.index))
        if f.kind == "latency" and f.severity != "INFO"
        else f
        for f in findings
    ]


def unknown_report(reason: Reason | str, context: Context) -> Report:
    """A report that says it cannot tell: no entries in the window, or the logs could not be read."""
    why = reason if isinstance(reason, Reason) else Reason(message=reason)
    return Report("UNKNOWN", context, [], None, [], [], reason=why)


def _rank(finding: Finding) -> tuple[int, int]:
    return SEVERITIES.index(finding.severity), -finding.count


def order_findings(findings: list[Finding]) -> list[Finding]:
    """Most severe first; a root cause is followed by the findings it causes."""
    present = {f.rule for f in findings}
    roots = sorted((f for f in findings if f.caused_by not in present), key=_rank)
    symptoms = [f for f in findings if f.caused_by in present]
    placed: set[int] = set()
    groups = []
    for root in roots:  # a symptom stands under the first (most severe) root of its cause, once
        mine = [s for s in symptoms if s.caused_by == root.rule and id(s) not in placed]
        placed.update(id(s) for s in mine)
        groups.append([root, *sorted(mine, key=_rank)])
    groups.sort(key=lambda group: min(_rank(f) for f in group))
    return [f for group in groups for f in group]


def _areas(findings: list[Finding], objectives: list[ObjectiveResult]) -> list[Area]:
    areas = []
    for area, categories in AREAS.items():
        mine = [f for f in findings if f.category in categories]
        missed = [o for o in objectives if o.met is False and o.category in categories]
        severities = {f.severity for f in mine}
        state: AreaState
        if "CRITICAL" in severities:
            state = "fail"
        elif "DEGRADED" in severities:
            state = "warn"
        elif missed or any(f.kind == "failure" for f in mine):
            state = "noted"
        else:
            state = "ok"
        areas.append(Area(area, state, mine))
    return areas


def recommend(
    status: Status, problems: list[Finding], revisions: list[RevisionStats], context: Context
) -> list[Recommendation]:
    advice: list[Recommendation] = []
    rollback = _rollback(problems, revisions, context)
    if rollback:
        advice.append(rollback)
    for finding in problems:
        builder = ADVICE.get(finding.advice or "")
        if finding.caused_by or builder is None:
            continue
        made = builder(finding, context)
        if made:
            advice.append(made)
    if status != "OK":
        command = _safe_command(
            f"prodguardian check --service {context.service} --freshness 15m", context.service
        )
        advice.append(Recommendation("MEDIUM", "check_again", {}, command))
    return sorted(_dedupe(advice), key=lambda r: PRIORITIES.index(r.priority))


def _dedupe(advice: list[Recommendation]) -> list[Recommendation]:
    seen: set[tuple[str, str | None]] = set()
    kept = []
    for item in advice:
        key = (item.advice, item.command or str(sorted(item.params.items())))
        if key not in seen:
            seen.add(key)
            kept.append(item)
    return kept


def _priority(finding: Finding) -> Priority:
    return "HIGH" if finding.severity == "CRITICAL" else "MEDIUM"


def _gcloud_suffix(context: Context) -> str:
    region = f" --region={context.region}" if shell_safe(context.region) else ""
    project = f" --project={context.project}" if shell_safe(context.project) else ""
    return region + project


def _safe_command(command: str, *names: str | None) -> str | None:
    return command if shell_safe(*names) else None


def _rollback(
    problems: list[Finding], revisions: list[RevisionStats], context: Context
) -> Recommendation | None:
    """Roll back when a revision new in this window holds the failures and an older one served cleanly."""
    if not problems or len(revisions) < 2:
        return None
    newest, older = revisions[-1], revisions[:-1]
    total = sum(r.failures for r in revisions)
    if not total or newest.failures < ROLLBACK_SHARE * total or not _failing_since_start(newest):
        return None
    clean = [
        r for r in older if r.requests + r.baseline_requests and not r.failures and not r.baseline_failures
    ]
    if not clean:
        return None
    target = clean[-1]
    command = rollback_command(context, target.revision)
    params = {
        "new": LogText(newest.revision),
        "old": LogText(target.revision),
        "failures": newest.failures,
        "total": total,
        "since": f"{newest.first_seen:%Y-%m-%d %H:%M}",
        "ago": _ago(context.window.end - newest.first_seen.replace(tzinfo=context.window.end.tzinfo)),
    }
    return Recommendation("HIGH", "rollback", params, command)


def rollback_command(context: Context, revision: str) -> str | None:
    """The command sending all traffic back to `revision` (None when a name is not a plain identifier)."""
    return _safe_command(
        f"gcloud run services update-traffic {context.service} --to-revisions={revision}=100"
        + _gcloud_suffix(context),
        context.service,
        revision,
    )


def _failing_since_start(revision: RevisionStats) -> bool:
    """Whether the revision's failures began with its first traffic: a bad deploy, however long ago it was
    made. One that served cleanly for a while and then began failing is not the deploy's fault."""
    if revision.first_failure is None:
        return False
    return revision.first_failure - revision.first_seen <= FAILING_SINCE_START


def _ago(delta: timedelta) -> str:
    minutes = max(0, round(delta.total_seconds() / 60))
    return f"{minutes} min" if minutes < 120 else f"{minutes // 60} h"


def memory_step(limit_mib: int, peak_mib: int) -> int:
    """New memory limit: max(2 × limit, ⌈1.25 × peak⌉), rounded up to a Cloud Run step."""
    wanted = max(2 * limit_mib, math.ceil(1.25 * peak_mib))
    return next((step for step in MEMORY_STEPS_MIB if step >= wanted), MEMORY_STEPS_MIB[-1])


def format_mib(mib: int) -> str:
    return f"{mib // 1024}Gi" if mib % 1024 == 0 else f"{mib}Mi"


def _memory(finding: Finding, context: Context) -> Recommendation:
    captures = finding.evidence.captures if finding.evidence else []
    limits = [int(c["limit_mib"]) for c in captures if "limit_mib" in c]
    peaks = [int(c["used_mib"]) for c in captures if "used_mib" in c]
    if not limits:
        return Recommendation(_priority(finding), "memory_unknown_limit", {})
    limit, peak = max(limits), max(peaks or limits)
    new = format_mib(memory_step(limit, peak))
    command = _safe_command(
        f"gcloud run services update {context.service} --memory={new}" + _gcloud_suffix(context),
        context.service,
    )
    return Recommendation(
        _priority(finding), "memory_limit", {"limit": limit, "peak": peak, "new": new}, command
    )


def _with_frame(key: str) -> Callable[[Finding, Context], Recommendation]:
    def build(finding: Finding, context: Context) -> Recommendation:
        frame = finding.evidence.frame if finding.evidence else None
        if not frame:
            return Recommendation(_priority(finding), f"{key}_no_frame", {})
        location, _, function = frame.partition(" in ")
        path, _, line = location.rpartition(":")
        params = {
            "call": LogText(f"{function}()"),
            "location": LogText(f"{path.rsplit('/', 1)[-1]}:{line}"),
            "frame": LogText(frame),
        }
        return Recommendation(_priority(finding), key, params)

    return build


def _logs_command(key: str, framed: bool = False) -> Callable[[Finding, Context], Recommendation]:
    """Advice with a `gcloud logging read` for the failure's own lines (by trace when one is known); a
    `framed` advice names the failure's frame, or says it has none (`<key>_no_frame`)."""

    def build(finding: Finding, context: Context) -> Recommendation:
        evidence = finding.evidence
        clauses = [f'resource.type="cloud_run_revision" AND resource.labels.service_name="{context.service}"']
        if evidence and evidence.trace and shell_safe(context.project, evidence.trace):
            clauses.append(f'trace="projects/{context.project}/traces/{evidence.trace}"')
        else:
            clauses.append("severity>=ERROR")
        command = f"gcloud logging read '{' AND '.join(clauses)}' --freshness=1h --limit=50"
        if shell_safe(context.project):
            command += f" --project={context.project}"
        frame = evidence.frame if evidence else None
        params = {"frame": _log_text(frame), "group": _log_text(finding.group)}
        advice = f"{key}_no_frame" if framed and not frame else key
        return Recommendation(_priority(finding), advice, params, _safe_command(command, context.service))

    return build


def _service_update(key: str, flags: str) -> Callable[[Finding, Context], Recommendation]:
    def build(finding: Finding, context: Context) -> Recommendation:
        command = f"gcloud run services update {context.service} {flags}" + _gcloud_suffix(context)
        return Recommendation(_priority(finding), key, {}, _safe_command(command, context.service))

    return build


def _startup(finding: Finding, context: Context) -> Recommendation:
    revision = finding.evidence.revisions[-1] if finding.evidence and finding.evidence.revisions else None
    command = _safe_command(f"gcloud run revisions describe {revision}" + _gcloud_suffix(context), revision)
    if revision is None:
        return Recommendation(_priority(finding), "startup_no_revision", {})
    return Recommendation(_priority(finding), "startup", {"revision": LogText(revision)}, command)


def _log_text(value: str | None) -> LogText | None:
    return None if value is None else LogText(value)


def _plain(key: str) -> Callable[[Finding, Context], Recommendation]:
    return lambda finding, context: Recommendation(_priority(finding), key, {})


ADVICE: dict[str, Callable[[Finding, Context], Recommendation]] = {
    "memory_limit": _memory,
    "database_reconnect": _with_frame("database_reconnect"),
    "database_locked": _with_frame("database_locked"),
    "database_pool": _with_frame("database_pool"),
    "database_flapping": _plain("database_flapping"),
    "websocket": _with_frame("websocket"),
    "http_5xx": _logs_command("http_5xx", framed=True),
    "investigate": _logs_command("investigate"),
    "crash": _logs_command("crash"),
    "timeout": _service_update("timeout", "--timeout=600"),
    "capacity": _service_update("capacity", "--min-instances=1"),
    "startup": _startup,
    "latency": _plain("latency"),
}
