"""Rules are data: YAML files checked against one typed description of the format, compiled into a RulePack.

The structs below are the rule format, described once: `msgspec.convert` validates a file against them and
builds them, their field descriptions document it, and `rule_file_schema()` derives from them the JSON schema
shipped as `rules/rules.schema.json`, with which editors check rule files. What a schema cannot say (RE2
syntax, ids unique within a file, objectives naming known rules) is checked after. Every error names
`file:line:column`, the rule and the field. Regexes are RE2, so a rule is also usable in a Cloud Logging `=~`
filter and cannot hang on a hostile line.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import msgspec
import msgspec.inspect as mi
import re2
from msgspec import Meta

from prodguardian.errors import Location, RuleError
from prodguardian.resources import data_dir
from prodguardian.yamlfile import load_located, locate

Category = Literal[
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
]
Kind = Literal["request", "websocket", "app", "system"]
# Cloud Logging's LogSeverity, in rank order: DEFAULT is 0, DEBUG 100, … EMERGENCY 800.
Severity = Literal["DEFAULT", "DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL", "ALERT", "EMERGENCY"]
RuleType = Literal["failure", "metric", "latency", "suppress", "fallback"]
# The advice texts the report knows (prodguardian.verdict.ADVICE; a test keeps the two equal).
Advice = Literal[
    "memory_limit",
    "database_reconnect",
    "database_locked",
    "database_pool",
    "database_flapping",
    "websocket",
    "http_5xx",
    "investigate",
    "crash",
    "timeout",
    "capacity",
    "startup",
    "latency",
]
CATEGORIES: tuple[str, ...] = get_args(Category)
KINDS: tuple[str, ...] = get_args(Kind)
SEVERITY_RANKS: dict[str, int] = {name: 100 * rank for rank, name in enumerate(get_args(Severity))}
SCHEMA_FILE = "rules.schema.json"

Regex = Annotated[
    str, Meta(min_length=1, description="An RE2 regular expression, searched anywhere in the text.")
]
UrlPath = Annotated[str, Meta(pattern="^/")]
Segment = Annotated[str, Meta(pattern="^[^/]+$")]
Count = Annotated[int, Meta(ge=1)]
Example = str | dict[str, Any]


class _Format(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A part of the rule format; an unknown key anywhere is an error.

    Each part states frozen and kw_only again: type checkers read them per class.
    """


# ------------------------------------------------------------------------------------------ the format


class Status(_Format, frozen=True, kw_only=True):
    """An HTTP status range, both ends included."""

    min: int | None = None
    max: int | None = None


class Match(_Format, frozen=True, kw_only=True):
    """What an event must be for the rule to apply: every condition given must hold."""

    kinds: Annotated[
        tuple[Kind, ...],
        Meta(
            min_length=1,
            description="Event kinds: request (HTTP request logs), websocket (WebSocket sessions), "
            "app (the container's stdout/stderr), system (Cloud Run's platform messages).",
        ),
    ] = msgspec.field(default=(), name="kind")
    severity: Annotated[Severity, Meta(description="The minimum severity.")] = "DEFAULT"
    status: Annotated[Status | None, Meta(description="The HTTP status range.")] = None
    latency_ms: Annotated[
        Annotated[float, Meta(ge=0)] | None, Meta(description="At least this latency, in milliseconds.")
    ] = None
    patterns: Annotated[
        Regex | Annotated[list[Regex], Meta(min_length=1)] | None,
        Meta(description="RE2 regexes on the line's text (any of them); named groups are captured."),
    ] = msgspec.field(default=None, name="message")
    fields: Annotated[
        dict[str, str | int | float | bool],
        Meta(description="jsonPayload fields and the values they must have."),
    ] = {}
    paths: Annotated[frozenset[UrlPath], Meta(min_length=1, description="Exact request paths.")] = frozenset()
    path_prefixes: Annotated[
        tuple[UrlPath, ...],
        Meta(min_length=1, description="Path prefixes; end one with / to match whole segments only."),
    ] = ()
    path_segments: Annotated[
        frozenset[Segment],
        Meta(min_length=1, description="Whole path segments anywhere in the path, e.g. .env."),
    ] = frozenset()
    user_agent: Annotated[Regex | None, Meta(description="An RE2 regex on the request's user agent.")] = None
    infer_severity: Annotated[
        bool,
        Meta(
            description="false: `severity` tests only the severity the entry carries, not what its text says."
        ),
    ] = True

    @property
    def min_severity(self) -> int:
        return SEVERITY_RANKS[self.severity]

    @property
    def status_min(self) -> int | None:
        return self.status.min if self.status else None

    @property
    def status_max(self) -> int | None:
        return self.status.max if self.status else None

    @property
    def message(self) -> str | None:
        """One regex from the alternatives (each kept whole by a non-capturing group)."""
        if self.patterns is None or isinstance(self.patterns, str):
            return self.patterns
        return self.patterns[0] if len(self.patterns) == 1 else "|".join(f"(?:{p})" for p in self.patterns)


class Threshold(_Format, frozen=True, kw_only=True):
    """When a rule's matches reach a severity: every condition given must hold."""

    count: Annotated[Count | None, Meta(description="At least this many failures in the window.")] = None
    per_hour: Annotated[
        Annotated[float, Meta(ge=0)] | None, Meta(description="More than this many failures an hour.")
    ] = None
    share: Annotated[
        Annotated[float, Meta(gt=0, le=1)] | None,
        Meta(description="More than this share of `of` failed (0.05 is 5 %)."),
    ] = None
    of: Annotated[Literal["requests", "websocket"], Meta(description="The denominator of `share`.")] = (
        "requests"
    )
    ms: Annotated[
        Annotated[float, Meta(gt=0)] | None, Meta(description="A latency rule's quantile above this.")
    ] = None
    min_count: Annotated[
        Count,
        Meta(
            description="Never with fewer failures (or latency samples); a share threshold also holds"
            " on fewer when at least 2 failed and the binomial tail at its share is under 1%."
        ),
    ] = 1
    instances: Annotated[
        Count | None, Meta(description="At least this many distinct instances failed (a crash loop).")
    ] = None
    above_baseline: Annotated[
        Annotated[float, Meta(ge=1)] | None,
        Meta(description="At least this many times the baseline's hourly rate, and surprising for it."),
    ] = None
    ongoing_minutes: Annotated[
        Count | None,
        Meta(
            description="Only while the failures go on: not when the last one came more than this many "
            "minutes before the window's end and requests have succeeded since (a burst that recovered)."
        ),
    ] = None


class Thresholds(_Format, frozen=True, kw_only=True):
    """CRITICAL is tried first; a rule's matches below both are an INFO finding."""

    degraded: Threshold | None = None
    critical: Threshold | None = None


class RuleObjective(_Format, frozen=True, kw_only=True):
    """A metric rule's objective; a miss is a DEGRADED finding and a line of the objectives table."""

    per_hour_below: Annotated[float, Meta(gt=0, description="Fewer matches an hour than this.")]


class Examples(_Format, frozen=True, kw_only=True):
    """Log lines the rule must and must not match: a text (a line of a kind the rule reads) or a LogEntry."""

    match: list[Example] = []
    no_match: list[Example] = []


class RuleFields(_Format, frozen=True, kw_only=True):
    """A rule as a file states it: what it matches, and when its matches are a finding."""

    id: Annotated[
        str,
        Meta(
            pattern="^[a-z0-9]+(-[a-z0-9]+)*$",
            description="kebab-case, unique in its file; a rule with a built-in rule's id replaces it.",
        ),
    ]
    type: Annotated[
        RuleType,
        Meta(
            description="failure: counted against thresholds; metric: counted, judged by its objective; "
            "latency: a quantile of request latency; suppress: noise, removed before counting; "
            "fallback: errors no rule knows, grouped by exception type and message shape."
        ),
    ] = "failure"
    category: Category
    description: Annotated[str, Meta(min_length=1, description="One sentence: what happened.")]
    match: Match = Match()
    thresholds: Annotated[Thresholds, Meta(description="Needed by failure, latency and fallback rules.")] = (
        Thresholds()
    )
    quantile: Annotated[
        float, Meta(gt=0, lt=1, description="The latency quantile a latency rule judges.")
    ] = 0.95
    objective: RuleObjective | None = None
    causes: Annotated[
        tuple[Category, ...],
        Meta(description="Categories this rule's failures cause: those matches are its symptoms."),
    ] = ()
    advice: Annotated[Advice | None, Meta(description="Which advice the report gives.")] = None
    examples: Annotated[Examples, Meta(description="Run by `prodguardian rules test`.")] = Examples()

    def __post_init__(self) -> None:
        if self.type in ("failure", "latency", "fallback") and self.thresholds == Thresholds():
            raise ValueError(f"a {self.type} rule needs thresholds")

    @property
    def is_failure(self) -> bool:
        return self.type in ("failure", "fallback")

    @property
    def degraded(self) -> Threshold | None:
        if self.type == "metric" and self.objective is not None:  # a metric rule's objective is its threshold
            return Threshold(per_hour=self.objective.per_hour_below)
        return self.thresholds.degraded

    @property
    def critical(self) -> Threshold | None:
        return self.thresholds.critical


class ObjectiveFields(_Format, frozen=True, kw_only=True):
    """A line of the report's objectives table: a metric and its target (exactly one of below, at_most)."""

    id: Annotated[str, Meta(pattern="^[a-z0-9]+(_[a-z0-9]+)*$", description="snake_case.")]
    metric: Annotated[
        str,
        Meta(
            pattern="^(websocket_error_rate|http_error_rate|latency_p95_ms|"
            "per_hour:[a-z0-9-]+|category_per_hour:[a-z0-9_]+)$",
            description="websocket_error_rate, http_error_rate, latency_p95_ms, per_hour:RULE_ID or "
            "category_per_hour:CATEGORY.",
        ),
    ]
    below: Annotated[float | None, Meta(description="Met when the value is below this.")] = None
    at_most: Annotated[float | None, Meta(description="Met when the value is at most this.")] = None

    def __post_init__(self) -> None:
        if (self.below is None) == (self.at_most is None):
            raise ValueError("give exactly one of below and at_most")

    @property
    def inclusive(self) -> bool:
        """at_most (<=) rather than below (<)."""
        return self.at_most is not None

    @property
    def target(self) -> float:
        return float(self.at_most if self.at_most is not None else self.below or 0.0)

    def met(self, value: float) -> bool:
        return value <= self.target if self.inclusive else value < self.target


class RuleFile(_Format, frozen=True, kw_only=True):
    """A ProdGuardian rule file (rules/*.yaml or a --rules directory): rules, objectives, or both."""

    rules: list[RuleFields] = []
    objectives: list[ObjectiveFields] = []


# ------------------------------------------------------------------------------------------ loaded


class Rule(RuleFields, frozen=True, kw_only=True):
    """A loaded rule: what its file states, and where."""

    origin: Location


class Objective(ObjectiveFields, frozen=True, kw_only=True):
    """A loaded objective; one a metric rule implies names it, and its miss is that rule's finding."""

    finding_rule: str | None = None


@dataclass(frozen=True)
class RulePack:
    """The rules and objectives a check applies, compiled once, and the files they come from."""

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


def rule_file_schema() -> dict[str, Any]:
    """The JSON schema of a rule file, derived from the structs above."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "ProdGuardian rule file",
        **msgspec.json.schema(RuleFile),
    }


def schema_text() -> str:
    """rules/rules.schema.json as shipped: the schema, indented, with a final newline."""
    return json.dumps(rule_file_schema(), indent=2, ensure_ascii=False) + "\n"


def write_schema(folder: str | os.PathLike[str] | None = None) -> Path:
    """(Re)write rules.schema.json, after a change to the format: `python -m prodguardian.rules`."""
    path = Path(folder or data_dir("rules")) / SCHEMA_FILE
    path.write_text(schema_text(), encoding="utf-8", newline="\n")
    return path


def compile_regex(pattern: str) -> re2._Regexp:
    """Compile an RE2 regex quietly (RE2 otherwise logs parse errors to stderr)."""
    options = re2.Options()
    options.log_errors = False
    return re2.compile(pattern, options)


# ------------------------------------------------------------------------------------------ loading


def rule_files(directory: str | os.PathLike[str]) -> list[Path]:
    folder = Path(directory)
    if not folder.is_dir():
        raise RuleError("not a directory of rule files", Location(str(directory)))
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
        below=threshold.per_hour or 0.0,
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
        doc = load_located(path, RuleError)
    except RuleError as exc:
        return [], [], [exc]
    if doc is None:
        return [], [], []
    try:
        file = msgspec.convert(doc, RuleFile)
    except msgspec.ValidationError as exc:
        return [], [], _every_error(name, doc, exc)
    rules: list[Rule] = []
    errors: list[RuleError] = []
    seen: set[str] = set()
    for index, fields in enumerate(file.rules):
        problems = [
            _problem(name, doc, ["rules", index, *keys], why) for keys, why in _regex_problems(fields)
        ]
        if fields.id in seen:
            problems.append(_problem(name, doc, ["rules", index, "id"], "duplicate id in this file"))
        seen.add(fields.id)
        errors.extend(problems)
        if not problems:
            origin = locate(name, doc, ["rules", index])
            rules.append(Rule(**msgspec.structs.asdict(fields), origin=origin))
    objectives = [Objective(**msgspec.structs.asdict(o)) for o in file.objectives]
    return rules, objectives, errors


def _every_error(name: str, doc: Any, first: msgspec.ValidationError) -> list[RuleError]:
    """One error for each rule or objective that does not convert (msgspec stops at a file's first)."""
    errors = []
    if isinstance(doc, dict):
        for section in msgspec.structs.fields(RuleFile):
            (item_type,) = get_args(section.type)
            items = doc.get(section.encode_name)
            for index, item in enumerate(items if isinstance(items, list) else []):
                try:
                    msgspec.convert(item, item_type)
                except msgspec.ValidationError as exc:
                    errors.append(_validation_error(name, doc, exc, [section.encode_name, index]))
    return errors or [_validation_error(name, doc, first, [])]


def _regex_problems(rule: RuleFields) -> Iterator[tuple[list[str | int], str]]:
    """The keys and reason of every pattern of the rule that RE2 refuses."""
    for key, patterns in (("message", rule.match.patterns), ("user_agent", rule.match.user_agent)):
        for index, pattern in enumerate([patterns] if isinstance(patterns, str) else patterns or []):
            try:
                compile_regex(pattern)
            except re2.error as exc:
                reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
                keys: list[str | int] = ["match", key] if isinstance(patterns, str) else ["match", key, index]
                yield keys, f"not a valid RE2 regex: {reason}"


# ------------------------------------------------------------------------------------------ errors

_STEP = re.compile(r"\.([^.\[]+)|\[(\d+)\]")
_UNKNOWN = re.compile(r"Object contains unknown field `(?P<key>[^`]*)`")
_MISSING = re.compile(r"Object missing required field `(?P<key>[^`]*)`")
_SUBJECTS = {"rules": "rule", "objectives": "objective"}


def _validation_error(name: str, doc: Any, exc: msgspec.ValidationError, base: list[str | int]) -> RuleError:
    """A msgspec error as `rule ID: field a.b: reason`, at the line and column of that field."""
    reason, _, path = str(exc).partition(" - at `$")
    path = path.removesuffix("`").split("[...]")[0]  # inside a mapping's values, the mapping is close enough
    keys: list[str | int] = [*base, *(m[1] if m[1] else int(m[2]) for m in _STEP.finditer(path))]
    if unknown := _UNKNOWN.fullmatch(reason):
        keys.append(unknown["key"])
        reason = f"unknown field {unknown['key']!r}"
    elif missing := _MISSING.fullmatch(reason):
        keys.append(missing["key"])
        reason = "is required"
    elif reason.startswith("Invalid enum value ") and (choices := _choices(keys)):
        reason = f"{reason.removeprefix('Invalid enum value ')} is not one of: {', '.join(choices)}"
    else:
        reason = reason[:1].lower() + reason[1:]  # msgspec's "Expected `int`, got `str`", mid-sentence
    return _problem(name, doc, keys, reason)


def _problem(name: str, doc: Any, keys: list[str | int], reason: str) -> RuleError:
    """An error about `keys` of the file: `rule ID: field a.b: reason`, at the deepest place they reach."""
    words = []
    field_keys = keys
    if len(keys) >= 2 and keys[0] in _SUBJECTS and isinstance(keys[1], int):
        item = doc[keys[0]][keys[1]]
        item_id = item.get("id") if isinstance(item, dict) else None
        label = item_id if isinstance(item_id, str) else f"#{keys[1] + 1}"
        words.append(f"{_SUBJECTS[str(keys[0])]} {label}")
        field_keys = keys[2:]
    if field_keys:
        words.append(f"field {_dotted(field_keys)}")
    return RuleError(": ".join([*words, reason]), locate(name, doc, keys))


def _dotted(keys: list[str | int]) -> str:
    """`match.message[1]`"""
    return "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in keys).removeprefix(".")


def _choices(keys: list[str | int]) -> list[str]:
    """The values an enum field at `keys` allows, found by following the keys through the format's types."""
    types = [mi.type_info(RuleFile)]
    for key in keys:
        types = [inner for t in types for inner in _inside(t, key)]
    return [
        str(v)
        for t in types
        for member in _members(t)
        if isinstance(member, mi.LiteralType)
        for v in member.values
    ]


def _members(info: mi.Type) -> list[mi.Type]:
    while isinstance(info, mi.Metadata):
        info = info.type
    return [m for t in info.types for m in _members(t)] if isinstance(info, mi.UnionType) else [info]


def _inside(info: mi.Type, key: str | int) -> Iterator[mi.Type]:
    """The types one step down `key`: a struct's field, a collection's items."""
    for member in _members(info):
        if isinstance(member, mi.StructType) and isinstance(key, str):
            yield from (f.type for f in member.fields if f.encode_name == key)
        elif isinstance(member, (mi.ListType, mi.VarTupleType, mi.FrozenSetType)) and isinstance(key, int):
            yield member.item_type


if __name__ == "__main__":
    print(f"wrote {write_schema()}")
