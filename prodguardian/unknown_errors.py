"""The errors no rule knows, grouped into templates, and which of them are new: a stage after classify.

It reads the rows the pack's fallback rules matched (ERROR-or-worse lines no rule knows, in failures no
known root cause explains) and gives each failure one template: a traceback's is its exception type and
innermost application frame (`tracebacks.trace_group`), any other's the template its message mines to
(`patterns.TemplateMiner`, over the window and the baseline together, so a message of the window that
generalises a baseline template is that template). A template is new when the baseline holds none of its
failures and the known templates (a state store's, say) do not name it; without a baseline nor known
templates nothing can be new.

A check with a state store reads only what is new, so the miner is first seeded with the stored groups'
examples (`ErrorSeed`): a message that generalises a stored template joins it as it would have in one read
of everything, and a template a baseline seed joined is not new.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from prodguardian.aggregate import Evidence, Window, cut_line, periods
from prodguardian.classify import Classified
from prodguardian.patterns import TemplateMiner, template_id
from prodguardian.rules import RulePack
from prodguardian.tracebacks import trace_group

TOP_TEMPLATES = 5  # how many of the window's templates a report lists


@dataclass(frozen=True)
class ErrorTemplate:
    """One template of the window's unknown errors: failures counted once each."""

    id: str
    template: str
    kind: str  # traceback | message
    count: int  # failures in the window
    baseline_count: int  # failures in the baseline
    new: bool
    evidence: Evidence
    groups: frozenset[str]  # the fallback groups (`classify`) its window failures fall in


@dataclass(frozen=True)
class UnknownErrors:
    templates: list[ErrorTemplate] = field(default_factory=list)  # the window's, most failures first
    superseded: frozenset[str] = frozenset()  # fallback groups whose window failures are all new errors

    @property
    def new(self) -> list[ErrorTemplate]:
        return [template for template in self.templates if template.new]


@dataclass(frozen=True)
class ErrorSeed:
    """A stored unknown error's example line, mined before the read's; `in_baseline`: it failed there."""

    text: str
    in_baseline: bool


@dataclass
class _Unit:
    """One failure's rows (in time order) and the template it takes."""

    rows: list[int] = field(default_factory=list)
    key: str = ""
    kind: str = "message"


@dataclass(frozen=True)
class MinedErrors:
    """The fallback rules' failures in the window and baseline, each with its template: the costly part of
    the stage, made once; `judged` says which templates are new."""

    events: pd.DataFrame
    by_key: dict[str, list[_Unit]] = field(default_factory=dict)
    in_window: frozenset[int] = frozenset()
    groups: dict[int, set[str]] = field(default_factory=dict)
    seen_in_baseline: frozenset[str] = frozenset()  # ids of the templates a baseline seed joined
    # A seed's template id when it was mined → its id after this read generalised it: a store holds that
    # template's earlier failures under the older id.
    generalised: dict[str, str] = field(default_factory=dict)

    def sightings(self) -> pd.DataFrame:
        """When each failure began (ts) and its template's id: a state store keeps them, for `known`."""
        starts = [(unit.rows[0], template_id(key)) for key, units in self.by_key.items() for unit in units]
        rows = [row for row, _ in starts]
        return pd.DataFrame(
            {"ts": self.events["ts"].to_numpy()[rows], "template_id": [identity for _, identity in starts]}
        )

    def judged(
        self,
        baseline_available: bool,
        known: Collection[str] = frozenset(),
        counted: Mapping[str, tuple[int, int]] | None = None,
    ) -> UnknownErrors:
        """The window's templates; `known`: template ids seen before (never new); `counted`: each template's
        failures in the window and in the baseline, when a state store holds more than these rows."""
        comparable = baseline_available or bool(known)  # else nothing can be new
        known = frozenset(known) | self.seen_in_baseline
        templates = [
            template
            for key, members in self.by_key.items()
            if (template := _template(key, members, self, comparable, known)) is not None
        ]
        if counted is not None:
            counted = _under_generalised_ids(counted, self.generalised)
            templates = [_recounted(template, *counted.get(template.id, (0, 0))) for template in templates]
        templates.sort(key=lambda t: (-t.count, t.template))
        return UnknownErrors(templates, _superseded(templates))


def mine_errors(
    classified: Classified, pack: RulePack, window: Window, seeds: Sequence[ErrorSeed] = ()
) -> MinedErrors:
    """Each failure of the fallback rules' rows in the window and baseline, under its template; `seeds`
    are mined first (a state store's earlier errors)."""
    fallback = [rule.id for rule in pack.rules if rule.type == "fallback"]
    matches = classified.matches[classified.matches["rule"].isin(fallback)]
    events = classified.events
    if matches.empty:
        return MinedErrors(events)
    rows = np.unique(matches["row"].to_numpy())
    period = periods(events["ts"].iloc[rows], window)
    in_window = frozenset(rows[period == "window"].tolist())
    rows = rows[period != ""]
    groups: dict[int, set[str]] = {}
    for row, group in zip(matches["row"].tolist(), matches["group"].tolist(), strict=True):
        if group:
            groups.setdefault(row, set()).add(str(group))
    miner = TemplateMiner()
    seeded = [(miner.add(seed.text), seed.in_baseline) for seed in seeds]
    as_seeded = {index: template_id(miner.templates[index].text) for index, _ in seeded}
    by_key: dict[str, list[_Unit]] = {}
    for unit in _units(events, rows, miner):
        by_key.setdefault(unit.key, []).append(unit)
    seen = frozenset(template_id(miner.templates[index].text) for index, baseline in seeded if baseline)
    generalised = {
        before: after
        for index, before in as_seeded.items()
        if (after := template_id(miner.templates[index].text)) != before
    }
    return MinedErrors(events, by_key, in_window, groups, seen, generalised)


def _template(
    key: str, members: list[_Unit], mined: MinedErrors, comparable: bool, known: Collection[str]
) -> ErrorTemplate | None:
    """The template of the failures `members`, if any of them is in the window."""
    events, in_window, groups = mined.events, mined.in_window, mined.groups
    now = [unit for unit in members if in_window.intersection(unit.rows)]
    if not now:
        return None
    baseline = len(members) - len(now)
    identity = template_id(key)
    window_rows = [row for unit in now for row in unit.rows if row in in_window]
    return ErrorTemplate(
        id=identity,
        template=key,
        kind=members[0].kind,
        count=len(now),
        baseline_count=baseline,
        new=comparable and not baseline and identity not in known,
        evidence=_evidence(events, window_rows),
        groups=frozenset(group for row in window_rows for group in groups.get(row, ())),
    )


def _under_generalised_ids(
    counted: Mapping[str, tuple[int, int]], generalised: Mapping[str, str]
) -> dict[str, tuple[int, int]]:
    """The stored counts with those of each template this read generalised added to its new id, as one read
    of everything would have counted them."""
    out = dict(counted)
    for before, after in generalised.items():
        if before in out:
            window, baseline = out.pop(before)
            now_window, now_baseline = out.get(after, (0, 0))
            out[after] = (window + now_window, baseline + now_baseline)
    return out


def _recounted(template: ErrorTemplate, count: int, baseline_count: int) -> ErrorTemplate:
    """The template with the failures a store counted (never fewer than this read holds)."""
    count, baseline_count = max(count, template.count), max(baseline_count, template.baseline_count)
    return replace(
        template, count=count, baseline_count=baseline_count, new=template.new and not baseline_count
    )


def _units(events: pd.DataFrame, rows: np.ndarray, miner: TemplateMiner) -> list[_Unit]:
    """The failures of the rows (a row outside any failure is one of its own), each with its template.

    Each distinct text is mined once: a message the miner has seen joins the template it joined before.
    """
    failures = events["failure"].to_numpy()
    exc_types = events["exc_type"].to_numpy()
    units: dict[int, _Unit] = {}
    for row in rows.tolist():
        failure = int(failures[row])
        units.setdefault(failure if failure >= 0 else -1 - row, _Unit()).rows.append(row)
    by_text: dict[str, int] = {}
    mined: dict[int, int] = {}
    for row, text in zip(rows.tolist(), _texts(events, rows), strict=True):
        mined[row] = by_text[text] if text in by_text else by_text.setdefault(text, miner.add(text))
    traced = set(np.flatnonzero(_traced_rows(events)).tolist())
    for unit in units.values():
        first_traced = next((r for r in unit.rows if r in traced), None)
        if first_traced is not None:
            unit.key = _trace_key(events, first_traced)
            unit.kind = "traceback"
            continue
        described = next((r for r in unit.rows if isinstance(exc_types[r], str)), unit.rows[0])
        unit.key = miner.templates[mined[described]].text
    return list(units.values())


def logged_messages(events: pd.DataFrame) -> Iterator[tuple[int, str, str | None]]:
    """Every event's (number from 1, text, traceback group or None), for `patterns.group_messages`."""
    traced = _traced_rows(events)
    for row, text in enumerate(_texts(events, np.arange(len(events)))):
        if text:
            yield row + 1, text, _trace_key(events, row) if traced[row] else None


def _trace_key(events: pd.DataFrame, row: int) -> str:
    return trace_group(
        str(events.at[row, "exc_type"]),
        _string(events.at[row, "frame_file"]),
        _string(events.at[row, "frame_function"]),
    )


def _string(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _traced_rows(events: pd.DataFrame) -> np.ndarray:
    """Which rows are tracebacks with an application frame."""
    frames = events["traceback_frame"].fillna(False).to_numpy(dtype=bool)
    return np.asarray(events["exc_type"].notna().to_numpy() & frames, dtype=bool)


def _texts(events: pd.DataFrame, rows: np.ndarray) -> list[str]:
    """What each row says: a trace's exception line, else its message's first line."""
    columns = (events[name].to_numpy()[rows].tolist() for name in ("exc_type", "exc_message", "message"))
    return [
        _said(exc_type, exc_message, message) for exc_type, exc_message, message in zip(*columns, strict=True)
    ]


def _said(exc_type: Any, exc_message: Any, message: Any) -> str:
    if isinstance(exc_type, str):
        return f"{exc_type}: {exc_message}" if isinstance(exc_message, str) and exc_message else exc_type
    return message.strip().partition("\n")[0] if isinstance(message, str) else ""


def _evidence(events: pd.DataFrame, rows: list[int]) -> Evidence:
    part = events.iloc[rows]
    framed = part[part["traceback_frame"].fillna(False).astype(bool)]
    first: Any = framed.iloc[0] if len(framed) else None
    frame = (
        None if first is None else f"{first['frame_file']}:{first['frame_line']} in {first['frame_function']}"
    )
    return Evidence(
        first_seen=_moment(part["ts"].min()),
        last_seen=_moment(part["ts"].max()),
        revisions=sorted({r for r in part["revision"] if r}),
        instances=part["instance"].nunique(),
        examples=[cut_line(_texts(events, np.array(rows[:1]))[0])],
        frame=frame,
        exc_type=next((e for e in part["exc_type"] if isinstance(e, str)), None),
        captures=[],
        trace=next((t for t in part["trace"] if t), None),
    )


def _moment(stamp: pd.Timestamp) -> datetime:
    moment: datetime = stamp.to_pydatetime(warn=False)
    return moment


def _superseded(templates: list[ErrorTemplate]) -> frozenset[str]:
    """Fallback groups whose window failures are all new errors: the new-error findings tell them."""
    new = frozenset().union(*(t.groups for t in templates if t.new))
    known = frozenset().union(*(t.groups for t in templates if not t.new))
    return frozenset(new - known)
