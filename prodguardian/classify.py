"""Apply a RulePack to the events table: suppression first, then one rule per category per event.

Matching is vectorised: conditions on columns are numpy masks, and each regex runs once per distinct
message (messages repeat a lot), never once per line.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from prodguardian.rules import Match, Rule, RulePack, compile_regex

_SHAPE_SUBSTITUTIONS = (
    (re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"), "<id>"),
    (re.compile(r"\b(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{8,}\b"), "<id>"),
    (re.compile(r"\d+(\.\d+)?"), "<n>"),
)


# A plain line's timestamp, pid and level before its text ("[2025-07-15 09:12:00 +0000] [1] [ERROR] ",
# "ERROR:root:", "2025-10-11 11:30:05.123 | ERROR    | app.main:run:42 - "): not part of what the error is.
_LEVEL_PREFIX = re.compile(
    r"^.{0,80}?(?:\[ERROR\]|\bERROR\b|\bCRITICAL\b|\bFATAL\b)(?: +\| \S{1,120} - | -|:[\w.]{0,60}:|:)? *"
)


@dataclass
class Classified:
    """Events with their suppression, and the long table of (event row, rule) matches."""

    events: pd.DataFrame  # the events table plus `suppressed_by`
    matches: pd.DataFrame  # row, rule, category, group, captures


_GROUP_NAME = re.compile(r"(?<!\\)\(\?P<\w+>")  # `(?P<name>` not after a backslash


def _screen(pack: RulePack) -> tuple[Any, frozenset[str]]:
    """One regex matching wherever any rule's message regex matches, and the patterns it covers.

    Group names are dropped (two rules may use one name; unnamed groups match the same); None if the
    combination does not compile, and each rule then runs its own regex.
    """
    covered = frozenset(rule.match.message for rule in pack.rules if rule.match.message)
    if len(covered) < 2:
        return None, frozenset()
    combined = "|".join(f"(?:{_GROUP_NAME.sub('(', pattern)})" for pattern in sorted(covered))
    try:
        return compile_regex(combined), covered
    except Exception:  # RE2 refuses it: no screen
        return None, frozenset()


class _Factorised:
    """A column's values factorised once: a test on its values runs once per distinct value, and only on
    the values of the rows still standing."""

    def __init__(self, column: pd.Series) -> None:
        self.codes, uniques = pd.factorize(column, use_na_sentinel=True)
        self.uniques = list(uniques)

    def where(self, rows: np.ndarray, test: Callable[[Any], bool], missing: bool = False) -> np.ndarray:
        """True where the row is in `rows` and `test` holds for its value (`missing` for a missing one)."""
        return self._tested(rows, self._present(rows), test, missing)

    def _present(self, rows: np.ndarray) -> np.ndarray:
        """The distinct codes (≥ 0) of the rows, in order: a count per code, which is linear, not a sort."""
        return np.flatnonzero(np.bincount(self.codes[rows] + 1, minlength=len(self.uniques) + 1)[1:])

    def _tested(
        self, rows: np.ndarray, codes: np.ndarray, test: Callable[[Any], bool], missing: bool = False
    ) -> np.ndarray:
        """`where`, the test run on the values of `codes` only (any other value fails it)."""
        hits = np.zeros(len(self.uniques) + 1, dtype=bool)
        hits[-1] = missing
        for code in codes.tolist():
            hits[code] = test(self.uniques[code])
        return rows & hits[self.codes]


class _Messages(_Factorised):
    """Messages factorised once, so a regex runs over each distinct message a single time.

    With `screen`, the pack's message regexes combined into one, a message that matches none of them is
    found out with one search instead of one per rule; a rule's own regex then runs on the others only.
    """

    def __init__(self, messages: pd.Series, screen: Any = None) -> None:
        super().__init__(messages)
        self.screen = screen
        self.screened = np.full(len(self.uniques), -1, dtype=np.int8)  # -1 not yet, 0 matches none, 1 may

    def matching(
        self, rows: np.ndarray, predicate: Callable[[str], bool], screened: bool = False
    ) -> np.ndarray:
        """A mask over all events: True where the row is in `rows` and its message satisfies `predicate`.

        `screened`: the predicate can only hold for a message the combined screen matches.
        """
        codes = self._present(rows)
        if screened and self.screen is not None:
            unknown = codes[self.screened[codes] < 0]
            search, uniques = self.screen.search, self.uniques
            self.screened[unknown] = [search(uniques[code]) is not None for code in unknown.tolist()]
            codes = codes[self.screened[codes] == 1]
        return self._tested(rows, codes, predicate)


class _Columns:
    """The columns rules test, prepared once per classification instead of once per rule."""

    def __init__(self, events: pd.DataFrame, pack: RulePack) -> None:
        self.count = len(events)
        screen, self.screened_patterns = _screen(pack)
        self.messages = _Messages(events["message"], screen)
        self.kinds = _Factorised(events["kind"])
        self.severity = events["severity"].to_numpy()
        inferred = events.get("severity_inferred")
        self.severity_inferred = (
            np.zeros(len(events), dtype=bool) if inferred is None else inferred.to_numpy(dtype=bool)
        )
        status = events["status"]
        self.status_known = status.notna().to_numpy()
        self.status = status.to_numpy(dtype="int64", na_value=0)  # read where status_known only
        self.latency_ms = events["latency_s"].to_numpy(dtype="float64") * 1000
        self.paths = _Factorised(events["path"])
        self.events = events
        self._agents: _Factorised | None = None

    @property
    def agents(self) -> _Factorised:
        if self._agents is None:
            self._agents = _Factorised(self.events["user_agent"])
        return self._agents


def classify(events: pd.DataFrame, pack: RulePack) -> Classified:
    """Match every rule of the pack against the events."""
    messages = _Columns(events, pack)
    suppressed = np.zeros(len(events), dtype=bool)
    suppressed_by = np.full(len(events), None, dtype=object)
    for rule in pack.rules:
        if rule.type == "suppress":
            hit = _mask(events, rule.match, messages) & ~suppressed
            suppressed_by[hit] = rule.id
            suppressed |= hit
    events = events.assign(suppressed_by=suppressed_by)
    pieces: list[pd.DataFrame] = []
    claimed: dict[str, np.ndarray] = {}
    for rule in pack.rules:
        if rule.type in ("suppress", "latency", "fallback"):
            continue
        slot = rule.category if rule.is_failure else f"metric:{rule.id}"
        taken = claimed.setdefault(slot, np.zeros(len(events), dtype=bool))
        hit = _mask(events, rule.match, messages) & ~suppressed & ~taken
        taken |= hit
        if hit.any():
            pieces.append(_match_rows(events, hit, rule))
    matched = pd.concat(pieces, ignore_index=True) if pieces else _empty_matches()
    for rule in pack.rules:
        if rule.type == "fallback":
            hit = _fallback_mask(events, rule, messages, suppressed, matched, pack)
            if hit.any():
                rows = _match_rows(events, hit, rule)
                rows["group"] = _failure_groups(events, rows["row"].to_numpy())
                matched = pd.concat([matched, rows], ignore_index=True)
    return Classified(events, matched)


def _empty_matches() -> pd.DataFrame:
    return pd.DataFrame(
        {"row": pd.Series(dtype="int64"), "rule": [], "category": [], "group": [], "captures": []}
    )


def _match_rows(events: pd.DataFrame, hit: np.ndarray, rule: Rule) -> pd.DataFrame:
    rows = np.flatnonzero(hit)
    captures: list[dict[str, str] | None] = [None] * len(rows)
    if rule.match.message and "(?P<" in rule.match.message:
        regex = compile_regex(rule.match.message)
        texts = events["message"].to_numpy()[rows]
        captures = [_captured(regex, text) for text in texts]
    return pd.DataFrame(
        {"row": rows, "rule": rule.id, "category": rule.category, "group": None, "captures": captures}
    )


def _captured(regex: Any, text: Any) -> dict[str, str] | None:
    found = regex.search(text) if isinstance(text, str) else None
    if not found:
        return None
    return {k: v for k, v in found.groupdict().items() if v is not None} or None


def _mask(events: pd.DataFrame, match: Match, columns: _Columns) -> np.ndarray:
    """Rows that satisfy every condition of `match`; regexes last, on the rows still standing.

    Every test on a column's values runs once per distinct value among the rows still standing.
    """
    mask = np.ones(columns.count, dtype=bool)
    if match.kinds:
        kinds = set(match.kinds)
        mask = columns.kinds.where(mask, lambda kind: kind in kinds)
    if match.min_severity:
        mask &= columns.severity >= match.min_severity
        if not match.infer_severity:
            mask &= ~columns.severity_inferred
    if match.status_min is not None:
        mask &= columns.status_known & (columns.status >= match.status_min)
    if match.status_max is not None:
        mask &= columns.status_known & (columns.status <= match.status_max)
    if match.latency_ms is not None:
        mask &= columns.latency_ms >= match.latency_ms
    if (match.paths or match.path_prefixes or match.path_segments) and mask.any():
        mask = columns.paths.where(mask, lambda path: _on_path(path, match))
    if match.user_agent and mask.any():
        regex = compile_regex(match.user_agent)
        mask = columns.agents.where(
            mask, lambda text: regex.search(text) is not None, missing=regex.search("") is not None
        )
    if match.fields and mask.any():
        payloads = events["payload"].to_numpy()
        rows = np.flatnonzero(mask)
        mask[rows] = [_fields_match(p, match.fields) for p in payloads[rows].tolist()]
    if match.message and mask.any():
        regex = compile_regex(match.message)
        screened = match.message in columns.screened_patterns
        mask = columns.messages.matching(mask, lambda text: regex.search(text) is not None, screened)
    return np.asarray(mask, dtype=bool)


def _on_path(path: Any, match: Match) -> bool:
    """Whether a path is one of `paths`, starts with a prefix, or holds one of the whole segments."""
    if path in match.paths:
        return True
    if not isinstance(path, str):
        return False
    if match.path_prefixes and path.startswith(tuple(match.path_prefixes)):
        return True
    return bool(match.path_segments) and not match.path_segments.isdisjoint(path.split("/"))


def _fields_match(payload: Any, fields: Any) -> bool:
    if not isinstance(payload, dict):
        return False
    for dotted, expected in fields.items():
        value: Any = payload
        for key in dotted.split("."):
            value = value.get(key) if isinstance(value, dict) else None
        if value is None or str(value) != str(expected):
            return False
    return True


def _fallback_mask(
    events: pd.DataFrame,
    rule: Rule,
    messages: _Columns,
    suppressed: np.ndarray,
    matched: pd.DataFrame,
    pack: RulePack,
) -> np.ndarray:
    """Error events no rule knows, in failures that no known root cause already explains."""
    mask = _mask(events, rule.match, messages) & ~suppressed
    failure_rules = {r.id for r in pack.rules if r.type == "failure"}
    known = matched[matched["rule"].isin(failure_rules)]
    mask[known["row"].to_numpy()] = False
    explained = known[~known["category"].isin(rule.causes)]
    failures = events["failure"].to_numpy()
    explained_failures = failures[explained["row"].to_numpy()]
    mask &= ~np.isin(failures, explained_failures[explained_failures >= 0])
    return np.asarray(mask, dtype=bool)


def _failure_groups(events: pd.DataFrame, rows: np.ndarray) -> list[str]:
    """The group of each unknown error row, one per failure: the lines of one failure (a "setup failed"
    line, its detail, the traceback) all take the group of its traceback's root exception, else of its
    first line, so one failure is one finding, counted once."""
    groups = [_group_key(events, r) for r in rows.tolist()]
    failures = events["failure"].to_numpy()[rows]
    traced = events["exc_type"].notna().to_numpy()[rows]
    first: dict[int, str] = {}
    traced_group: dict[int, str] = {}
    for failure, group, has_trace in zip(failures.tolist(), groups, traced.tolist(), strict=True):
        first.setdefault(failure, group)
        if has_trace:
            traced_group.setdefault(failure, group)
    return [
        traced_group.get(f, first[f]) if f >= 0 else g for f, g in zip(failures.tolist(), groups, strict=True)
    ]


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _group_key(events: pd.DataFrame, row: int) -> str:
    """Exception type and the message's shape (numbers and ids blanked), e.g. `KeyError: 'thread_id'`."""
    exc_type = _text(events.at[row, "exc_type"])
    text = _text(events.at[row, "exc_message"] if exc_type else events.at[row, "message"]).strip()
    first_line = text.splitlines()[0] if text else ""
    first_line = _LEVEL_PREFIX.sub("", first_line, count=1)
    for pattern, replacement in _SHAPE_SUBSTITUTIONS:
        first_line = pattern.sub(replacement, first_line)
    shape = first_line[:160]
    return f"{exc_type}: {shape}" if exc_type and shape else (exc_type or shape or "(no message)")
