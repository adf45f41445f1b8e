"""Lines that are not events of their own, folded away: split tracebacks, echoes, entries read twice.

A traceback written one line per entry (same instance, a few ms apart) folds into its first line, and every
traceback is then read: its exception, message and innermost application frame. uvicorn's access line and
the app's "Request completed" line repeat a request log and fold away, as does an entry read twice (the
same insertId at the same timestamp: overlapping exports). Markup (ANSI colours, loguru/rich tags) is taken
out of every message first, so folding and rules see the text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from prodguardian import levels, tracebacks
from prodguardian.rules import SEVERITY_RANKS
from prodguardian.texts import per_distinct_text

TRACEBACK_GAP_S = 1.0
# Why an entry folded away (`Folded.dropped["reason"]`); an entry of another resource than Cloud Run's is
# extracted with the kind OTHER_RESOURCE, only to be counted.
DUPLICATE, OTHER_RESOURCE, MERGED, ECHO = "duplicate", "other_resource", "merged", "echo"
DROP_REASONS = (DUPLICATE, OTHER_RESOURCE, MERGED, ECHO)
_KEPT = -1


@dataclass
class Folded:
    """Which extracted rows stay events, in time order, with their texts; and which folded away, and why."""

    rows: np.ndarray  # the kept rows in time order (stable: one timestamp keeps the input's order)
    messages: np.ndarray  # theirs, markup out, each split traceback joined into its first line
    severities: np.ndarray  # theirs (a joined traceback is an error at least)
    dropped: pd.DataFrame  # ts, service, reason of each row folded away


def fold(columns: dict[str, Any]) -> Folded:
    """Fold the extracted columns (`ts` int64 nanoseconds, `kind`, `service`, `instance`, `message`,
    `severity`, `insert_id`, `echo`): rows are indices into them."""
    ts = columns["ts"]
    repeated = _read_again(columns["insert_id"], ts)
    if len(repeated):
        unique = np.ones(len(ts), dtype=bool)
        unique[repeated] = False
        first_reads = np.flatnonzero(unique)
        order = first_reads[np.argsort(ts[first_reads], kind="stable")]
    else:
        order = np.argsort(ts, kind="stable")
    kinds = columns["kind"][order]
    messages = _without_markup(columns["message"][order])
    severities = columns["severity"][order]
    merged_lines, merged = _join_split_tracebacks(
        kinds, messages, columns["instance"][order], severities, ts[order]
    )
    reasons = np.full(len(order), _KEPT, dtype=np.int8)
    reasons[kinds == OTHER_RESOURCE] = DROP_REASONS.index(OTHER_RESOURCE)
    reasons[merged_lines] = DROP_REASONS.index(MERGED)
    reasons[columns["echo"][order] & ~merged_lines] = DROP_REASONS.index(ECHO)
    kept = np.flatnonzero(reasons == _KEPT)
    if merged:
        at = np.searchsorted(kept, np.fromiter(merged, dtype=np.int64, count=len(merged)))
        messages = messages[kept]
        messages[at] = [text for text, _ in merged.values()]
        severities = severities[kept]
        severities[at] = [severity for _, severity in merged.values()]
    else:
        messages, severities = messages[kept], severities[kept]
    gone = np.flatnonzero(reasons != _KEPT)
    dropped = np.concatenate([order[gone], repeated])
    codes = np.concatenate(
        [reasons[gone], np.full(len(repeated), DROP_REASONS.index(DUPLICATE), dtype=np.int8)]
    )
    return Folded(
        order[kept],
        messages,
        severities,
        pd.DataFrame(
            {
                "ts": pd.Series(ts[dropped].view("datetime64[ns]"), dtype="datetime64[ns]"),
                "service": pd.Series(columns["service"][dropped], dtype=object),
                "reason": pd.Categorical.from_codes(codes, categories=pd.Index(DROP_REASONS)),
            }
        ),
    )


def _read_again(ids: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Rows of entries read before (overlapping exports, a file read from two fetches): the same insertId
    at the same timestamp; the first read is kept. Entries without an insertId are all kept."""
    known = np.flatnonzero(pd.notna(ids))
    if len(known) < 2:
        return np.array([], dtype=np.int64)
    keys = pd.DataFrame({"id": ids[known], "ts": ts[known]})
    repeated: np.ndarray = known[keys.duplicated().to_numpy()]
    return repeated


def _join_split_tracebacks(
    kinds: np.ndarray, messages: np.ndarray, instances: np.ndarray, severities: np.ndarray, ts: np.ndarray
) -> tuple[np.ndarray, dict[int, tuple[str, int]]]:
    """Find each traceback written one line per entry (same instance, a few ms apart), rows in time order.

    Returns which rows fold into the line before them, and the new (message, severity) of each first line.
    """
    folded = np.zeros(len(kinds), dtype=bool)
    merged: dict[int, tuple[str, int]] = {}
    is_app = kinds == "app"
    starts = is_app & per_distinct_text(messages, is_app, tracebacks.is_start)
    if not starts.any():
        return folded, merged
    # Only the app lines of instances where a traceback starts can fold.
    lines = np.flatnonzero(is_app & pd.Series(instances, dtype=object).isin(instances[starts]).to_numpy())
    codes, _ = pd.factorize(instances[lines])
    by_instance = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[by_instance])) + 1
    seconds = ts / 1e9  # as linking.epoch_seconds gives them: the gap test must round the same way
    for group in np.split(lines[by_instance], bounds):
        _merge_group(group, starts[group], messages, severities, seconds, folded, merged)
    return folded, merged


def _merge_group(
    index: np.ndarray,
    starts: np.ndarray,
    all_messages: np.ndarray,
    all_severities: np.ndarray,
    all_seconds: np.ndarray,
    folded: np.ndarray,
    merged: dict[int, tuple[str, int]],
) -> None:
    """Fold each split traceback of one instance's app lines (rows `index`, in time order)."""
    messages = all_messages[index].tolist()
    times = all_seconds[index]
    end = 0
    for i in np.flatnonzero(starts).tolist():
        if i < end:  # inside the traceback folded just before
            continue
        j = i + 1
        start = messages[i]
        while (
            j < len(index)
            and times[j] - times[j - 1] <= TRACEBACK_GAP_S
            and tracebacks.continues(start, messages[j - 1], messages[j])
        ):
            j += 1
        if j > i + 1:
            # A trace is an error at least; one written without severity gets the one its text states.
            stated = int(all_severities[index[i]])
            severity = max(stated, SEVERITY_RANKS["ERROR"]) if stated else 0
            merged[int(index[i])] = ("\n".join(m or "" for m in messages[i:j]), severity)
            folded[index[i + 1 : j]] = True
        end = j


def describe_exceptions(table: pd.DataFrame) -> pd.DataFrame:
    """Exception type, its message and the innermost application frame of every traceback.

    A traceback's text repeats (the same failure, again and again): each distinct one is read once.
    """
    messages = table["message"].to_numpy()
    rows = np.flatnonzero(
        per_distinct_text(messages, np.ones(len(messages), dtype=bool), tracebacks.has_trace)
    )
    described: dict[str, tuple[Any, ...]] = {}
    found = []
    for text in messages[rows].tolist():
        if text not in described:
            described[text] = tracebacks.describe(text)
        found.append(described[text])
    for column, position in (
        ("exc_type", 0),
        ("exc_message", 1),
        ("frame_file", 2),
        ("frame_line", 3),
        ("frame_function", 4),
    ):
        values = np.full(len(table), None, dtype=object)
        if found:
            values[rows] = [f[position] for f in found]
        table[column] = pd.Series(values, index=table.index, dtype=object)
    structured = table["frame_file"].isna() & table["source_file"].notna()
    if structured.any():
        table.loc[structured, "frame_file"] = table.loc[structured, "source_file"].map(
            tracebacks.app_relative
        )
        table.loc[structured, "frame_line"] = table.loc[structured, "source_line"]
    table["frame_line"] = table["frame_line"].astype("Int64")
    table["traceback_frame"] = ~structured & table["frame_file"].notna()
    if structured.any():
        table.loc[structured, "frame_function"] = table.loc[structured, "source_function"]
    return table.drop(columns=["source_file", "source_line", "source_function"])


def _without_markup(messages: np.ndarray) -> np.ndarray:
    """Messages with ANSI colour codes and loguru/rich markup taken out (rules and folding see the text)."""
    marked = per_distinct_text(messages, np.ones(len(messages), dtype=bool), _has_markup)
    if marked.any():
        messages = messages.copy()
        cleaned = {m: levels.strip_markup(m) for m in set(messages[marked].tolist())}
        messages[marked] = [cleaned[m] for m in messages[marked].tolist()]
    return messages


def _has_markup(text: str) -> bool:
    return "\x1b" in text or "[/" in text or "</" in text
