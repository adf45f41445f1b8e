"""The fast path finds what the simple path finds: same events table, same matches, same report.

The events module extracts columns a batch at a time (and, for a large file, in worker processes), folds
tracebacks and echoes on sorted arrays and copies the table once. This file keeps a deliberately simple
reference of the same rules (one dict of fields per entry, one DataFrame, pandas all the way) and a naive
check (every rule's message regex with the `re` module over each raw entry) and holds the fast path to them
on a mid-size simulator export (db-outage: request logs, access-log echoes, WebSocket sessions, app logs,
split and whole tracebacks, the incident), cut into batches, chunks and parts a fraction of their usual size
so that the export makes many of each.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from prodguardian import events as events_module
from prodguardian import source
from prodguardian.check import CheckOptions, run_check
from prodguardian.classify import Classified, classify
from prodguardian.events import Events, build_events, infer_severities
from prodguardian.folding import DROP_REASONS, ECHO, MERGED
from prodguardian.linking import link_failures
from prodguardian.render import render
from prodguardian.rules import SEVERITY_RANKS, RulePack
from prodguardian.simulate import generate
from prodguardian.source import FileSource, ReadOptions, write_export
from prodguardian.tracebacks import app_relative, continues, describe, has_trace, is_start

SCALE, HOURS = 0.75, 6  # about 16,000 entries (16 MB): the window and 5 hours of baseline

_ACCESS = re.compile(r'^INFO: +\S+ - "[A-Z]+ \S+ HTTP/[\d.]+" \d{3}')
_APP_ECHO = re.compile(r"^Request completed\b.*\bstatus_code\b")
_WEBSOCKET_SEGMENT = re.compile(r"(?:^|/)(?:ws|wss|websocket|websockets)(?:/|$)")


# -- the simple reference ---------------------------------------------------------------------------------


def _message(entry: dict[str, Any]) -> Any:
    payload = entry.get("jsonPayload")
    if isinstance(payload, dict):
        return next(
            (payload[k] for k in ("message", "msg", "error", "text") if isinstance(payload.get(k), str)), None
        )
    return entry.get("textPayload")


def _reference_row(entry: dict[str, Any]) -> dict[str, Any]:
    labels = (entry.get("resource") or {}).get("labels") or {}
    log_name = entry.get("logName") or ""
    if log_name.endswith(("%2Fstdout", "%2Fstderr", "/stdout", "/stderr")):
        kind = "app"
    elif log_name.endswith("%2Frequests"):
        kind = "request"
    else:
        kind = "system" if "run.googleapis.com" in log_name else "app"
    payload = entry.get("jsonPayload") if isinstance(entry.get("jsonPayload"), dict) else None
    row: dict[str, Any] = dict.fromkeys(events_module.COLUMNS)
    http = entry.get("httpRequest")
    if isinstance(http, dict):
        url = http.get("requestUrl") or ""
        path = re.sub(r"^[a-z]+://[^/]*", "", url).split("?")[0].split("#")[0] or "/"
        latency = http.get("latency")
        status = http.get("status")
        protocol = http.get("protocol")
        websocket = (
            status == 101 or str(protocol).lower() == "websocket" or bool(_WEBSOCKET_SEGMENT.search(path))
        )
        kind = "websocket" if websocket else "request"
        row.update(
            method=http.get("requestMethod"),
            path=path,
            status=status,
            latency_s=float(latency[:-1]) if isinstance(latency, str) and latency.endswith("s") else None,
            user_agent=http.get("userAgent"),
        )
    location = (
        entry.get("sourceLocation") or (payload or {}).get("logging.googleapis.com/sourceLocation") or {}
    )
    message = _message(entry)
    resource_name = str((entry.get("protoPayload") or {}).get("resourceName") or "")
    audited = not labels.get("revision_name") and bool(resource_name.partition("/revisions/")[2])
    row.update(
        ts_text=entry["timestamp"],
        kind=kind,
        service=labels.get("service_name") or "",
        revision=resource_name.partition("/revisions/")[2] if audited else labels.get("revision_name") or "",
        instance=(entry.get("labels") or {}).get("instanceId") or "",
        trace=(entry.get("trace") or "").split("/")[-1],
        severity=SEVERITY_RANKS.get(str(entry.get("severity") or "DEFAULT").upper(), 0),
        message=message[: events_module.MAX_MESSAGE_CHARS] if isinstance(message, str) else None,
        payload=payload,
        source_file=location.get("file"),
        source_line=int(location["line"]) if location.get("line") not in (None, "") else None,
        source_function=location.get("function"),
        location=labels.get("location") or "",
        insert_id=entry.get("insertId"),
        audited=audited,
    )
    return row


def reference_events(entries: list[dict[str, Any]]) -> Events:
    """The events table the straightforward way: one row dict per entry, then pandas."""
    rows = [_reference_row(e) for e in entries]
    table = pd.DataFrame(
        {name: pd.Series([r[name] for r in rows], dtype=object) for name in events_module.COLUMNS}
    )
    parsed = pd.to_datetime(table.pop("ts_text"), utc=True, format="ISO8601")
    table.insert(0, "ts", parsed.dt.tz_localize(None).astype("datetime64[ns]"))
    table = table.astype({"status": "Int64", "latency_s": "float64", "severity": "int32", "audited": bool})
    table = table.sort_values("ts", kind="stable").reset_index(drop=True)
    everything = table[["ts", "service"]]
    totals = events_module.Totals(entries=len(entries))
    folded: list[int] = []
    for _, group in table[table["kind"] == "app"].groupby("instance", sort=False):
        index, lines = group.index.tolist(), group["message"].tolist()
        seconds = group["ts"].to_numpy().astype("int64") / 1e9
        i = 0
        while i < len(lines):
            j = i + 1
            if isinstance(lines[i], str) and is_start(lines[i]):
                while (
                    j < len(lines)
                    and seconds[j] - seconds[j - 1] <= 1.0
                    and continues(lines[i], lines[j - 1], lines[j])
                ):
                    j += 1
                if j > i + 1:
                    table.at[index[i], "message"] = "\n".join(m or "" for m in lines[i:j])
                    stated = int(table.at[index[i], "severity"])
                    table.at[index[i], "severity"] = max(stated, 500) if stated else 0
                    folded += index[i + 1 : j]
            i = j
    table = table.drop(index=folded)
    app_text = table["message"].where(table["kind"] == "app").fillna("")
    echo = app_text.str.match(_ACCESS) | app_text.str.match(_APP_ECHO)
    table = table[~echo]
    gone = everything.index.difference(table.index)
    dropped = everything.loc[gone].reset_index(drop=True)
    dropped["reason"] = pd.Categorical(np.where(gone.isin(folded), MERGED, ECHO), categories=DROP_REASONS)
    table = table.reset_index(drop=True)
    described = [
        describe(m) if isinstance(m, str) and has_trace(m) else (None,) * 5 for m in table["message"]
    ]
    for position, column in enumerate(
        ("exc_type", "exc_message", "frame_file", "frame_line", "frame_function")
    ):
        table[column] = pd.Series([d[position] for d in described], dtype=object)
    structured = table["frame_file"].isna() & table["source_file"].notna()
    table.loc[structured, "frame_file"] = table.loc[structured, "source_file"].map(app_relative)
    table.loc[structured, "frame_line"] = table.loc[structured, "source_line"]
    table.loc[structured, "frame_function"] = table.loc[structured, "source_function"]
    table["frame_line"] = table["frame_line"].astype("Int64")
    table["traceback_frame"] = ~structured & table["frame_file"].notna()
    table = table.drop(columns=["source_file", "source_line", "source_function"])
    table = infer_severities(table)
    table["failure"] = link_failures(table)
    services = {
        str(k): int(v) for k, v in pd.Series([r["service"] for r in rows]).value_counts(sort=False).items()
    }
    return Events(table, dropped, totals, services, "emergence-469005")


def naive_counts(entries: list[dict[str, Any]], pack: RulePack) -> dict[str, int]:
    """Per rule: raw entries whose message (textPayload or jsonPayload.message) matches its regex (`re`)."""
    patterns = {r.id: re.compile(r.match.message) for r in pack.rules if r.match.message}
    counts = dict.fromkeys(patterns, 0)
    for entry in entries:
        message = _message(entry)
        if isinstance(message, str):
            for rule, pattern in patterns.items():
                counts[rule] += bool(pattern.search(message))
    return counts


# -- the tests --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def entries() -> list[dict[str, Any]]:
    return list(generate("db-outage", scale=SCALE, hours=HOURS))


@pytest.fixture(scope="module")
def reference(entries: list[dict[str, Any]]) -> Events:
    return reference_events(entries)


@pytest.fixture(scope="module")
def reference_classified(reference: Events, pack: RulePack) -> Classified:
    return classify(reference.table, pack)


@pytest.fixture(scope="module")
def report_from_list(entries: list[dict[str, Any]], pack: RulePack) -> str:
    return render(run_check(entries, CheckOptions(), pack).report, "json", "en")


def small_parts(workers: int) -> ReadOptions:
    """Parts of 1 MiB, read by that many workers."""
    return ReadOptions(workers=workers, part_bytes=1 << 20)


@pytest.fixture
def small_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches and chunks small enough that the export makes many of each (about 16 batches, 4 chunks),
    and a file large enough for workers (read in `SMALL_PARTS`: about 16 parts)."""
    monkeypatch.setattr(events_module, "BATCH_ENTRIES", 1000)
    monkeypatch.setattr(events_module, "CHUNK_ROWS", 4096)
    monkeypatch.setattr(source, "PARALLEL_MIN_BYTES", 1 << 20)
    monkeypatch.setattr(source, "CHUNK_BYTES", 256 << 10)
    monkeypatch.setattr(source.threading, "active_count", lambda: 1)  # other tests' servers may be running


def assert_same_events(fast: Events, reference: Events) -> None:
    pd.testing.assert_frame_equal(fast.table, reference.table, check_exact=True)
    assert [str(t) for t in fast.table.dtypes] == [str(t) for t in reference.table.dtypes]
    pd.testing.assert_frame_equal(fast.dropped, reference.dropped, check_exact=True)
    assert vars(fast.totals) == vars(reference.totals)
    assert fast.services == reference.services and fast.project == reference.project


def test_the_export_is_mid_size_and_has_every_shape(entries: list[dict[str, Any]], reference: Events) -> None:
    assert 10_000 <= len(entries) <= 30_000
    dropped = reference.dropped["reason"].value_counts()
    assert dropped[ECHO] > 5_000 and dropped[MERGED] > 0
    assert set(reference.table["kind"]) == {"request", "websocket", "app", "system"}


def test_extracted_messages_match_the_naive_regex_counts(
    entries: list[dict[str, Any]], pack: RulePack
) -> None:
    """Before any folding: every rule regex matches as many extracted messages as raw entries.

    (Echo rows keep no text of their own once extracted; no rule regex matches an echo line, which the naive
    side checks.)
    """
    naive = naive_counts(entries, pack)
    part = events_module.extract_part(events_module._batched(entries))
    messages = part.columns["message"]
    echo = part.columns["echo"]
    patterns = {r.id: re.compile(r.match.message) for r in pack.rules if r.match.message}
    fast = {
        rule: sum(bool(p.search(m)) for m in messages[~echo] if isinstance(m, str))
        for rule, p in patterns.items()
    }
    assert fast == naive
    assert sum(naive.values()) > 0


@pytest.mark.usefixtures("small_pieces")
def test_fast_table_equals_the_reference(entries: list[dict[str, Any]], reference: Events) -> None:
    assert_same_events(build_events(entries), reference)
    assert_same_events(build_events(iter(entries)), reference)  # a plain iterator, cut into batches


@pytest.mark.usefixtures("small_pieces")
@pytest.mark.parametrize("workers", [2, 1], ids=["forked-workers", "this-process"])
@pytest.mark.parametrize("jsonl", [False, True], ids=["gcloud-array", "json-lines"])
def test_parts_read_the_same(
    entries: list[dict[str, Any]],
    reference: Events,
    reference_classified: Classified,
    report_from_list: str,
    pack: RulePack,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    jsonl: bool,
    workers: int,
) -> None:
    """A file cut into parts, read by forked workers or one after another here (as where fork is not
    available), gives the same table, matches and report."""
    path = tmp_path / ("export.jsonl" if jsonl else "export.json")
    write_export(entries, str(path), jsonl=jsonl)
    outcomes: list[tuple[str, int | None]] = []  # how many parts each read, None if it failed
    for name in ("_run_parts", "_run_parts_here"):
        run_parts = getattr(source, name)

        def recorded(*args: Any, _run: Any = run_parts, _name: str = name) -> Any:
            result = _run(*args)
            outcomes.append((_name, None if result is None else len(result)))
            return result

        monkeypatch.setattr(source, name, recorded)
    parallel = build_events(FileSource(str(path), small_parts(workers)))
    expected = "_run_parts" if workers == 2 else "_run_parts_here"
    assert [name for name, _ in outcomes] == [expected], "the parts were not read as planned"
    assert (outcomes[0][1] or 0) >= 12, "too few parts to hold each part's edges to the reference"
    assert_same_events(parallel, reference)
    fast = classify(parallel.table, pack)
    pd.testing.assert_frame_equal(fast.matches, reference_classified.matches, check_exact=True)
    pd.testing.assert_frame_equal(fast.events, reference_classified.events, check_exact=True)
    if jsonl:
        return
    from_file = run_check(FileSource(str(path), small_parts(workers)), CheckOptions(), pack)
    assert render(from_file.report, "json", "en") == report_from_list
    assert from_file.report.status == "CRITICAL"


@pytest.mark.usefixtures("small_pieces")
def test_a_part_that_does_not_parse_falls_back_to_the_exact_reader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entries: list[dict[str, Any]]
) -> None:
    """Broken input reads the same error with or without workers (they give up; the exact reader says why)."""
    path = tmp_path / "broken.json"
    write_export(entries, str(path))
    data = bytearray(path.read_bytes())
    middle = data.index(b'"timestamp"', len(data) // 2)
    data[middle : middle + 1] = b"!"
    path.write_bytes(bytes(data))
    with pytest.raises(source.InputError) as parallel:
        build_events(FileSource(str(path), small_parts(2)))
    with pytest.raises(source.InputError) as serial:
        build_events(FileSource(str(path), small_parts(1)))
    assert str(parallel.value) == str(serial.value) and "invalid JSON" in str(serial.value)
