"""Run the examples that rules carry: each `match` example must trigger its rule, each `no_match` must not."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prodguardian.classify import classify
from prodguardian.errors import Location
from prodguardian.events import build_events
from prodguardian.rules import SEVERITY_RANKS, Rule, RulePack

EXAMPLE_TIME = "2025-10-11T12:00:00.000000000Z"
_LOGS = {
    "app": "projects/example/logs/run.googleapis.com%2Fstderr",
    "system": "projects/example/logs/run.googleapis.com%2Fvarlog%2Fsystem",
}
_RESOURCE = {
    "type": "cloud_run_revision",
    "labels": {"service_name": "example", "revision_name": "example-00001-abc", "location": "europe-west1"},
}


@dataclass(frozen=True)
class ExampleResult:
    rule: str
    expected: bool  # True for a `match` example
    matched: bool
    example: Any
    origin: Location
    problem: str | None = None

    @property
    def passed(self) -> bool:
        return self.problem is None and self.matched == self.expected


def run_examples(pack: RulePack, rule_id: str | None = None) -> list[ExampleResult]:
    """The examples of the pack's rules (or of rule `rule_id` only), each checked with the whole pack."""
    results = []
    for rule in pack.rules:
        if rule_id is not None and rule.id != rule_id:
            continue
        for expected, examples in ((True, rule.examples.match), (False, rule.examples.no_match)):
            for example in examples:
                results.append(_run_one(pack, rule, example, expected))
    return results


def _run_one(pack: RulePack, rule: Rule, example: Any, expected: bool) -> ExampleResult:
    entry = as_entry(rule, example)
    if entry is None:
        problem = "a text example needs a rule that matches app or system lines: give a LogEntry instead"
        return ExampleResult(rule.id, expected, False, example, rule.origin, problem)
    events = build_events([entry]).table
    classified = classify(events, pack)
    matched = rule.id in set(classified.matches["rule"]) or rule.id in set(classified.events["suppressed_by"])
    return ExampleResult(rule.id, expected, matched, example, rule.origin)


def as_entry(rule: Rule, example: Any) -> dict[str, Any] | None:
    """A LogEntry from an example: a text becomes a line of the kind the rule reads; a dict gets defaults."""
    if isinstance(example, dict):
        entry = {"timestamp": EXAMPLE_TIME, "resource": _RESOURCE, "logName": _LOGS["app"], **example}
        if "httpRequest" not in example:
            entry.setdefault("severity", _severity_for(rule))
        return entry
    kind = next((k for k in ("app", "system") if not rule.match.kinds or k in rule.match.kinds), None)
    if kind is None:
        return None
    return {
        "timestamp": EXAMPLE_TIME,
        "resource": _RESOURCE,
        "logName": _LOGS[kind],
        "severity": _severity_for(rule),
        "textPayload": str(example),
    }


def _severity_for(rule: Rule) -> str:
    """The lowest severity the rule accepts, at least ERROR for failure rules (as real error lines are)."""
    floor = max(rule.match.min_severity, SEVERITY_RANKS["ERROR"] if rule.is_failure else 0)
    return next(name for name, rank in SEVERITY_RANKS.items() if rank >= floor)
