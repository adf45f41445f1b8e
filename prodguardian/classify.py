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


@dataclass
class Classified:
    """Events with their suppression, and the long table of (event row, rule) matches."""

    events: pd.DataFrame  # the events table plus `suppressed_by`
    matches: pd.DataFrame  # row, rule, category, group, captures


class _Messages:
    """Messages factorised once, so a regex runs over each distinct message a single time."""

    def __init__(self, messages: pd.Series) -> None:
        codes, uniques = pd.factorize(messages, use_na_sentinel=True)
        self.codes = codes
        self.uniques = list(uniques)

    def matching(self, rows: np.ndarray, predicate: Callable[[str], bool]) -> np.ndarray:
        """A mask over all events: True where the row is in `rows` and its message satisfies `predicate`."""
        candidate_codes = np.unique(self.codes[rows & (self.codes >= 0)])
        hits = np.zeros(len(self.uniques) + 1, dtype=bool)  # index -1 (no message) stays False
        for code in candidate_codes:
            hits[code] = predicate(self.uniques[code])
        return rows & hits[self.codes]


def classify(events: pd.DataFrame, pack: RulePack) -> Classified:
    """Match every rule of the pack against the events."""
    messages = _Messages(events["message"])
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
                rows["group"] = [_group_key(events, r) for r in rows["row"]]
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


def _mask(events: pd.DataFrame, match: Match, messages: _Messages) -> np.ndarray:
    """Rows that satisfy every condition of `match`; regexes last, on the rows still standing."""
    mask = np.ones(len(events), dtype=bool)
    if match.kinds:
        mask &= events["kind"].isin(match.kinds).to_numpy()
    if match.min_severity:
        mask &= events["severity"].to_numpy() >= match.min_severity
    status = events["status"]
    if match.status_min is not None:
        mask &= (status >= match.status_min).fillna(False).to_numpy(dtype=bool)
    if match.status_max is not None:
        mask &= (status <= match.status_max).fillna(False).to_numpy(dtype=bool)
    if match.latency_ms is not None:
        mask &= (events["latency_s"] * 1000 >= match.latency_ms).to_numpy()
    if match.paths or match.path_prefixes or match.path_segments:
        mask &= _on_path(events["path"], match, mask)
    if match.user_agent and mask.any():
        agents = events["user_agent"].fillna("")
        regex = compile_regex(match.user_agent)
        mask &= agents.map(lambda text: regex.search(text) is not None).to_numpy(dtype=bool)
    if match.fields and mask.any():
        payloads = events["payload"].to_numpy()
        mask &= np.fromiter(
            (_fields_match(p, match.fields) for p in payloads), dtype=bool, count=len(payloads)
        )
    if match.message and mask.any():
        regex = compile_regex(match.message)
        mask = messages.matching(mask, lambda text: regex.search(text) is not None)
    return np.asarray(mask, dtype=bool)


def _on_path(paths: pd.Series, match: Match, rows: np.ndarray) -> np.ndarray:
    """Rows whose path is one of `paths`, starts with a prefix, or holds one of the whole segments."""
    on_path = paths.isin(match.paths).to_numpy(copy=True)
    for prefix in match.path_prefixes:
        on_path |= paths.str.startswith(prefix, na=False).to_numpy()
    if match.path_segments:
        codes, uniques = pd.factorize(paths[rows], use_na_sentinel=True)
        has_segment = np.array([not match.path_segments.isdisjoint(p.split("/")) for p in uniques] + [False])
        on_path[np.flatnonzero(rows)] |= has_segment[codes]
    return on_path


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
    messages: _Messages,
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


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _group_key(events: pd.DataFrame, row: int) -> str:
    """Exception type and the message's shape (numbers and ids blanked), e.g. `KeyError: 'thread_id'`."""
    exc_type = _text(events.at[row, "exc_type"])
    text = _text(events.at[row, "exc_message"] if exc_type else events.at[row, "message"]).strip()
    first_line = text.splitlines()[0] if text else ""
    for pattern, replacement in _SHAPE_SUBSTITUTIONS:
        first_line = pattern.sub(replacement, first_line)
    shape = first_line[:160]
    return f"{exc_type}: {shape}" if exc_type and shape else (exc_type or shape or "(no message)")
