"""Rules are data: YAML files validated against a schema and compiled once into a RulePack.

The engine knows no specific rule. Every error names `file:line:column`, the rule id and the field.
Regexes are RE2, so a rule is also usable in a Cloud Logging `=~` filter and cannot hang on a hostile line.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import jsonschema
import re2
import yaml

from prodguardian.errors import RuleError
from prodguardian.resources import data_dir

CATEGORIES = (
    "database",
    "websocket",
    "http_5xx",
    "timeout",
    "memory",
    "crash",
    "startup",
    "capacity",
    "latency",
    "unknown",
    "noise",
)
KINDS = ("request", "websocket", "app", "system")
SEVERITY_RANKS = {
    "DEFAULT": 0,
    "DEBUG": 100,
    "INFO": 200,
    "NOTICE": 300,
    "WARNING": 400,
    "ERROR": 500,
    "CRITICAL": 600,
    "ALERT": 700,
    "EMERGENCY": 800,
}
RuleType = Literal["failure", "metric", "latency", "suppress", "fallback"]
METRICS = ("websocket_error_rate", "http_error_rate", "latency_p95_ms")

_THRESHOLD = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "count": {"type": "integer", "minimum": 1},
        "per_hour": {"type": "number", "minimum": 0},
        "share": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        "of": {"enum": ["requests", "websocket"]},
        "ms": {"type": "number", "exclusiveMinimum": 0},
        "min_count": {"type": "integer", "minimum": 1},
        "instances": {"type": "integer", "minimum": 1},
        "above_baseline": {"type": "number", "minimum": 1},
    },
}
_PATHS = {"type": "array", "items": {"type": "string", "pattern": "^/"}, "minItems": 1}
_EXAMPLE = {"oneOf": [{"type": "string"}, {"type": "object"}]}
RULE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "category", "description"],
    "additionalProperties": False,
    "properties": {
        "id": {"type": "string", "pattern": "^[a-z0-9]+(-[a-z0-9]+)*$"},
        "type": {"enum": ["failure", "metric", "latency", "suppress", "fallback"]},
        "category": {"enum": list(CATEGORIES)},
        "description": {"type": "string", "minLength": 1},
        "match": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "kind": {"type": "array", "items": {"enum": list(KINDS)}, "minItems": 1},
                "severity": {"enum": list(SEVERITY_RANKS)},
                "status": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"min": {"type": "integer"}, "max": {"type": "integer"}},
                },
                "latency_ms": {"type": "number", "minimum": 0},
                "message": {
                    "oneOf": [
                        {"type": "string", "minLength": 1},
                        {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
                    ]
                },
                "fields": {
                    "type": "object",
                    "additionalProperties": {"type": ["string", "number", "boolean"]},
                },
                "paths": _PATHS,
                "path_prefixes": _PATHS,
                "path_segments": {
                    "type": "array",
                    "items": {"type": "string", "pattern": "^[^/]+$"},
                    "minItems": 1,
                },
                "user_agent": {"type": "string", "minLength": 1},
                "infer_severity": {"type": "boolean"},
            },
        },
        "thresholds": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"degraded": _THRESHOLD, "critical": _THRESHOLD},
        },
        "quantile": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        "objective": {
            "type": "object",
            "additionalProperties": False,
            "required": ["per_hour_below"],
            "properties": {"per_hour_below": {"type": "number", "exclusiveMinimum": 0}},
        },
        "causes": {"type": "array", "items": {"enum": list(CATEGORIES)}},
        "advice": {"type": "string"},
        "examples": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "match": {"type": "array", "items": _EXAMPLE},
                "no_match": {"type": "array", "items": _EXAMPLE},
            },
        },
    },
}
OBJECTIVE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "metric"],
    "additionalProperties": False,
    "properties": {
        "id": {"type": "string", "pattern": "^[a-z0-9]+(_[a-z0-9]+)*$"},
        "metric": {
            "type": "string",
            "pattern": "^(websocket_error_rate|http_error_rate|latency_p95_ms|"
            "per_hour:[a-z0-9-]+|category_per_hour:[a-z0-9_]+)$",
        },
        "below": {"type": "number"},
        "at_most": {"type": "number"},
    },
    "oneOf": [{"required": ["below"]}, {"required": ["at_most"]}],
}
FILE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "rules": {"type": "array", "items": {"type": "object"}},
        "objectives": {"type": "array", "items": OBJECTIVE_SCHEMA},
    },
}


@dataclass(frozen=True)
class Threshold:
    count: int | None = None
    per_hour: float | None = None
    share: float | None = None
    of: str = "requests"
    ms: float | None = None
    min_count: int = 1
    instances: int | None = None  # at least this many distinct instances (a crash loop, not one crash)
    above_baseline: float | None = None


@dataclass(frozen=True)
class Match:
    kinds: tuple[str, ...] = ()
    min_severity: int = 0
    status_min: int | None = None
    status_max: int | None = None
    latency_ms: float | None = None
    message: str | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)
    paths: frozenset[str] = frozenset()
    path_prefixes: tuple[str, ...] = ()
    path_segments: frozenset[str] = frozenset()  # whole segments anywhere in the path, e.g. ".env"
    user_agent: str | None = None
    infer_severity: bool = True  # False: `severity` tests only the severity the entry itself carries


@dataclass(frozen=True)
class Rule:
    id: str
    type: RuleType
    category: str
    description: str
    match: Match
    degraded: Threshold | None
    critical: Threshold | None
    quantile: float
    causes: tuple[str, ...]
    advice: str | None
    examples_match: tuple[Any, ...]
    examples_no_match: tuple[Any, ...]
    origin: str  # file:line

    @property
    def is_failure(self) -> bool:
        return self.type in ("failure", "fallback")


@dataclass(frozen=True)
class Objective:
    id: str
    metric: str
    target: float
    inclusive: bool  # at_most (<=) rather than below (<)
    finding_rule: str | None = None  # a metric rule whose objective miss is a DEGRADED finding

    def met(self, value: float) -> bool:
        return value <= self.target if self.inclusive else value < self.target


@dataclass(frozen=True)
class RulePack:
    rules: tuple[Rule, ...]
    objectives: tuple[Objective, ...]
    files: tuple[str, ...]

    def by_id(self, rule_id: str) -> Rule:
        return next(rule for rule in self.rules if rule.id == rule_id)

    def pushdown_regexes(self) -> tuple[str, ...]:
        """Message regexes of rules that may match lines below WARNING, for a server-side filter."""
        return tuple(
            r.match.message
            for r in self.rules
            if r.match.message and r.match.min_severity < SEVERITY_RANKS["WARNING"] and r.type != "suppress"
        )


def compile_regex(pattern: str) -> re2._Regexp:
    """Compile an RE2 regex quietly (RE2 otherwise logs parse errors to stderr)."""
    options = re2.Options()
    options.log_errors = False
    return re2.compile(pattern, options)


class _LocatedDict(dict[str, Any]):
    """A YAML mapping that remembers where it and each of its keys stand in the file."""

    line = 0
    column = 0
    key_marks: dict[str, tuple[int, int]]


class _Loader(yaml.SafeLoader):
    pass


def _construct_located(loader: _Loader, node: yaml.MappingNode) -> _LocatedDict:
    mapping = _LocatedDict()
    mapping.line, mapping.column = node.start_mark.line + 1, node.start_mark.column + 1
    mapping.key_marks = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.key_marks[str(key)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
    return mapping


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_located)


def _where(path: str, node: Any, keys: Iterable[Any] = ()) -> str:
    """`file:line:column` of the deepest located mapping (or key) along `keys`."""
    line, column = getattr(node, "line", 1), getattr(node, "column", 1)
    for key in keys:
        if isinstance(node, _LocatedDict) and str(key) in node.key_marks:
            line, column = node.key_marks[str(key)]
        if (isinstance(node, dict) and key in node) or (
            isinstance(node, list) and isinstance(key, int) and key < len(node)
        ):
            node = node[key]
        else:
            break
        if isinstance(node, _LocatedDict):
            line, column = node.line, node.column
    return f"{path}:{line}:{column}"


def rule_files(directory: str | os.PathLike[str]) -> list[Path]:
    folder = Path(directory)
    if not folder.is_dir():
        raise RuleError("not a directory of rule files", str(directory))
    return sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml"))


def load_pack(extra_dirs: Iterable[str] = (), *, builtin: bool = True) -> RulePack:
    """The built-in pack plus the rules of each extra directory; a later rule with the same id replaces it."""
    pack, errors = collect_pack(extra_dirs, builtin=builtin)
    if errors:
        raise errors[0]
    return pack


def collect_pack(extra_dirs: Iterable[str] = (), *, builtin: bool = True) -> tuple[RulePack, list[RuleError]]:
    """Load every file, collecting all errors instead of stopping at the first."""
    dirs = ([data_dir("rules")] if builtin else []) + [Path(d) for d in extra_dirs]
    rules: dict[str, Rule] = {}
    objectives: dict[str, Objective] = {}
    errors: list[RuleError] = []
    files: list[str] = []
    for directory in dirs:
        try:
            paths = rule_files(directory)
        except RuleError as exc:
            errors.append(exc)
            continue
        for path in paths:
            files.append(str(path))
            file_rules, file_objectives, file_errors = _load_file(path)
            errors.extend(file_errors)
            rules.update((r.id, r) for r in file_rules)
            objectives.update((o.id, o) for o in file_objectives)
    for rule in rules.values():
        if rule.type == "metric" and rule.degraded is not None:
            objectives.setdefault(rule.id, _objective_of(rule, rule.degraded))
    errors.extend(_cross_check(rules, objectives))
    return RulePack(tuple(rules.values()), tuple(objectives.values()), tuple(files)), errors


def _objective_of(rule: Rule, threshold: Threshold) -> Objective:
    return Objective(
        id=rule.id.replace("-", "_"),
        metric=f"per_hour:{rule.id}",
        target=threshold.per_hour or 0.0,
        inclusive=False,
        finding_rule=rule.id,
    )


def _cross_check(rules: Mapping[str, Rule], objectives: Mapping[str, Objective]) -> list[RuleError]:
    errors = []
    for objective in objectives.values():
        kind, _, name = objective.metric.partition(":")
        if kind == "per_hour" and name not in rules:
            errors.append(RuleError(f"objective {objective.id}: metric names unknown rule {name!r}"))
    return errors


def _load_file(path: Path) -> tuple[list[Rule], list[Objective], list[RuleError]]:
    name = str(path)
    try:
        doc = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
    except (OSError, UnicodeDecodeError) as exc:
        return [], [], [RuleError(f"cannot read: {exc}", name)]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
        return [], [], [RuleError(f"invalid YAML: {exc.problem}", where)]
    if doc is None:
        return [], [], []
    errors = [_schema_error(name, doc, e, FILE_SCHEMA, "") for e in _schema_errors(doc, FILE_SCHEMA)]
    if errors:
        return [], [], errors
    rules: list[Rule] = []
    seen: set[str] = set()
    for index, raw in enumerate(doc.get("rules", [])):
        rule_id = raw.get("id") if isinstance(raw.get("id"), str) else f"#{index + 1}"
        problems = [
            _schema_error(name, raw, e, RULE_SCHEMA, rule_id) for e in _schema_errors(raw, RULE_SCHEMA)
        ]
        if not problems:
            rule, problems = _build_rule(raw, f"{name}:{raw.line}:{raw.column}")
            if rule_id in seen:
                problems.append(
                    RuleError(f"rule {rule_id}: duplicate id in this file", _where(name, raw, ["id"]))
                )
            if not problems and rule is not None:
                rules.append(rule)
        seen.add(rule_id)
        errors.extend(problems)
    objectives = [_build_objective(raw) for raw in doc.get("objectives", [])]
    return rules, objectives, errors


def _schema_errors(doc: Any, schema: dict[str, Any]) -> Iterator[jsonschema.ValidationError]:
    validator = jsonschema.Draft202012Validator(schema)
    return iter(sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path))))


def _schema_error(
    path: str, doc: Any, error: jsonschema.ValidationError, schema: dict[str, Any], rule_id: str
) -> RuleError:
    keys = list(error.absolute_path)
    if error.validator == "additionalProperties":
        declared: Any = error.schema
        instance: Any = error.instance
        unknown = sorted(set(instance) - set(declared.get("properties", {})))
        keys.append(unknown[0])
        message = f"unknown field {unknown[0]!r}"
    elif error.validator == "required":
        message = error.message.replace("is a required property", "is required")
    else:
        message = error.message
    field_name = ".".join(map(str, keys)) or "(file)"
    prefix = f"rule {rule_id}: " if rule_id else ""
    return RuleError(f"{prefix}field {field_name}: {message}", _where(path, doc, keys))


def _threshold(raw: Mapping[str, Any] | None) -> Threshold | None:
    return Threshold(**raw) if raw else None


def _build_rule(raw: _LocatedDict, origin: str) -> tuple[Rule | None, list[RuleError]]:
    path = origin.rsplit(":", 2)[0]
    rule_id = raw["id"]
    match_raw = raw.get("match", {})
    errors = []
    for key in ("message", "user_agent"):
        patterns = match_raw.get(key, [])
        for index, pattern in enumerate([patterns] if isinstance(patterns, str) else patterns):
            try:
                compile_regex(pattern)
            except re2.error as exc:
                reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
                keys = ["match", key] if isinstance(patterns, str) else ["match", key, index]
                field_name = ".".join(map(str, keys))
                message = f"rule {rule_id}: field {field_name}: not a valid RE2 regex: {reason}"
                errors.append(RuleError(message, _where(path, raw, keys)))
    rule_type: RuleType = raw.get("type", "failure")
    needs_thresholds = rule_type in ("failure", "latency", "fallback")
    thresholds = raw.get("thresholds", {})
    if needs_thresholds and not thresholds:
        errors.append(
            RuleError(f"rule {rule_id}: field thresholds: a {rule_type} rule needs thresholds", origin)
        )
    if rule_type == "metric" and "objective" in raw:
        thresholds = {"degraded": {"per_hour": raw["objective"]["per_hour_below"]}}
    if errors:
        return None, errors
    severity = match_raw.get("severity", "DEFAULT")
    status = match_raw.get("status", {})
    examples = raw.get("examples", {})
    rule = Rule(
        id=rule_id,
        type=rule_type,
        category=raw["category"],
        description=raw["description"],
        match=Match(
            kinds=tuple(match_raw.get("kind", ())),
            min_severity=SEVERITY_RANKS[severity],
            status_min=status.get("min"),
            status_max=status.get("max"),
            latency_ms=match_raw.get("latency_ms"),
            message=_alternatives(match_raw.get("message")),
            fields=dict(match_raw.get("fields", {})),
            paths=frozenset(match_raw.get("paths", ())),
            path_prefixes=tuple(match_raw.get("path_prefixes", ())),
            path_segments=frozenset(match_raw.get("path_segments", ())),
            user_agent=match_raw.get("user_agent"),
            infer_severity=match_raw.get("infer_severity", True),
        ),
        degraded=_threshold(thresholds.get("degraded")),
        critical=_threshold(thresholds.get("critical")),
        quantile=raw.get("quantile", 0.95),
        causes=tuple(raw.get("causes", ())),
        advice=raw.get("advice"),
        examples_match=tuple(examples.get("match", ())),
        examples_no_match=tuple(examples.get("no_match", ())),
        origin=origin,
    )
    return rule, []


def _alternatives(patterns: str | list[str] | None) -> str | None:
    """One regex from a list of alternatives (each kept whole by a non-capturing group)."""
    if patterns is None or isinstance(patterns, str):
        return patterns
    return patterns[0] if len(patterns) == 1 else "|".join(f"(?:{p})" for p in patterns)


def _build_objective(raw: Mapping[str, Any]) -> Objective:
    inclusive = "at_most" in raw
    return Objective(
        id=raw["id"],
        metric=raw["metric"],
        target=float(raw["at_most"] if inclusive else raw["below"]),
        inclusive=inclusive,
    )
