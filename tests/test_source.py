"""Reading exports: every form gcloud and the API produce, streamed; bad input named by file and place."""

from __future__ import annotations

import gzip
import io
import itertools
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from prodguardian import events, source
from prodguardian.errors import InputError
from prodguardian.source import FileSource, read_entries, write_export
from tests import logs

ENTRIES = [
    logs.request(0, "/api/threads?page=2"),
    logs.json_line(1, "Thread loaded", nested={"ids": [{"a": 1}, {"b": "}\n,{"}]}),
    logs.text_line(2, logs.DB_TRACEBACK, "ERROR"),
    logs.text_line(3, "caf\u00e9 \u2014 \U0001f525 unicode line"),
] * 50


def read(data: bytes) -> list[object]:
    return list(read_entries(io.BytesIO(data), "export.json"))


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny chunks so that every test crosses many chunk boundaries (mid-entry, mid-character)."""
    monkeypatch.setattr(source, "CHUNK_BYTES", 97)


@pytest.mark.parametrize(
    "encode",
    [
        pytest.param(lambda e: json.dumps(e, indent=2).encode(), id="gcloud-pretty-array"),
        pytest.param(lambda e: json.dumps(e).encode(), id="compact-array"),
        pytest.param(lambda e: json.dumps(e, indent="\t").encode(), id="tab-indented-array"),
        pytest.param(lambda e: b"\n".join(json.dumps(x).encode() for x in e) + b"\n", id="json-lines"),
        pytest.param(lambda e: json.dumps({"entries": e, "nextPageToken": "x"}).encode(), id="entries-list"),
        pytest.param(lambda e: json.dumps({"entries": e}, indent=2).encode(), id="entries-list-pretty"),
        pytest.param(lambda e: gzip.compress(json.dumps(e, indent=2).encode()), id="gzip"),
        pytest.param(lambda e: b"\xef\xbb\xbf" + json.dumps(e).encode(), id="utf8-bom"),
    ],
)
def test_every_export_form_reads_back_the_same_entries(encode: object) -> None:
    assert read(encode(ENTRIES)) == ENTRIES  # type: ignore[operator]


def test_write_export_is_gcloud_shaped_and_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "out.json"
    assert write_export(iter(ENTRIES), str(path)) == len(ENTRIES)
    text = path.read_text(encoding="utf-8")
    assert text.startswith("[\n  {\n    ") and text.endswith("\n]\n")
    assert json.loads(text) == ENTRIES
    assert list(FileSource(str(path))) == ENTRIES


def test_jsonl_export_and_empty_export(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    write_export(iter(ENTRIES[:3]), str(path), jsonl=True)
    assert list(FileSource(str(path))) == ENTRIES[:3]
    write_export(iter([]), str(path))
    assert list(FileSource(str(path))) == []


@pytest.mark.parametrize(
    ("data", "message", "where"),
    [
        (json.dumps(ENTRIES, indent=2).encode()[:-40], "truncated", "export.json: byte"),
        (json.dumps(ENTRIES).encode()[:-40], "truncated", "export.json: byte"),
        (b"hello, this is not JSON", "not a JSON log export", "export.json:1"),
        (b"\x00\x01\x02\x03binary", "binary data", "export.json: byte 0"),
        (b'{"a": 1}\n{"b": \n{"c": 3}\n', "invalid JSON Lines entry", "export.json:2"),
        (b'[{"a": 1}, {"b": 2} {"c": 3}]', "invalid JSON", "export.json: byte"),
        (b"[" + b"\x80\x81" + b"]", "not UTF-8", "export.json: byte"),
    ],
    ids=[
        "truncated-pretty",
        "truncated-compact",
        "garbage",
        "binary",
        "broken-jsonl-line",
        "missing-comma",
        "bad-utf8",
    ],
)
def test_bad_input_names_the_file_and_place(data: bytes, message: str, where: str) -> None:
    with pytest.raises(InputError) as caught:
        read(data)
    assert message in str(caught.value)
    assert str(caught.value).startswith(where)
    assert "\n" not in str(caught.value)


def test_a_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="No such file"):
        list(FileSource(str(tmp_path / "missing.json")))


def test_large_export_streams_in_bounded_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reader hands entries over batch by batch instead of parsing the whole file first."""
    monkeypatch.setattr(source, "CHUNK_BYTES", 4096)
    path = tmp_path / "big.json"
    write_export((logs.request(i, f"/api/item/{i}") for i in range(3000)), str(path))
    reader = iter(FileSource(str(path)))
    first = next(reader)
    assert first["httpRequest"]["requestUrl"].endswith("/api/item/0")  # type: ignore[index]
    assert sum(1 for _ in reader) == 2999


def _parts(path: Path, cuts: list[int]) -> list[source._PartSpec]:
    bounds = [1, *cuts, path.stat().st_size]  # the first part starts after the "["
    last = len(bounds) - 2
    return [
        source._PartSpec(str(path), a, b, b"\n  }", first=i == 0, last=i == last)
        for i, (a, b) in enumerate(itertools.pairwise(bounds))
    ]


def test_parts_of_an_export_decode_in_place_to_its_entries(tmp_path: Path) -> None:
    """Each part becomes an array where it lies: the comma before it and the byte after it, its brackets."""
    path = tmp_path / "export.json"
    write_export(ENTRIES, str(path))
    data = path.read_bytes()
    closers = [at + 4 for at in range(len(data)) if data.startswith(b"\n  }", at)]
    for decode in (source.orjson.loads, events.decode_entries):
        parts = _parts(path, closers)  # a part an entry, and a last part of only the closing bracket
        read = [entry for part in parts for batch in source.part_batches(part, decode) for entry in batch]
        assert len(read) == len(ENTRIES)
    parts = _parts(path, closers[:-1])
    assert [e for p in parts for b in source.part_batches(p) for e in b] == ENTRIES


@pytest.mark.parametrize(
    "damage",
    [
        (b"},\n  {", b"}\n  {"),  # a missing comma between entries
        (b"}\n]", b"},\n]"),  # a trailing comma
    ],
)
def test_a_part_that_is_not_whole_comma_separated_entries_does_not_decode(
    tmp_path: Path, damage: tuple[bytes, bytes]
) -> None:
    path = tmp_path / "export.json"
    write_export(ENTRIES, str(path))
    before, after = damage
    data = path.read_bytes()
    at = data.rindex(before)
    path.write_bytes(data[:at] + after + data[at + len(before) :])
    data = path.read_bytes()
    cut = data.index(b"\n  }") + 4
    with pytest.raises(source._Unsplittable):
        for part in _parts(path, [cut]):
            list(source.part_batches(part))


_PARENT = os.getpid()


def _count_or_die(batches: Iterator[list[Any]]) -> int:
    """Entries of a part; in a worker, it dies without a word."""
    count = sum(len(batch) for batch in batches)
    if os.getpid() != _PARENT:
        os._exit(9)
    return count


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers are forked on Linux only")
def test_a_worker_that_dies_breaks_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A killed worker (out of memory, say) leaves nobody waiting: the file is read again in this process."""
    path = tmp_path / "export.json"
    write_export(ENTRIES * 4000, str(path))
    monkeypatch.setattr(source, "PARALLEL_MIN_BYTES", 1 << 20)
    monkeypatch.setattr(source, "PART_BYTES", 1 << 20)
    monkeypatch.setenv(source.WORKERS_ENV, "2")
    monkeypatch.setattr(source.threading, "active_count", lambda: 1)
    assert len(source._plan_parts(str(path)) or []) > 2
    assert list(FileSource(str(path)).map_parts(_count_or_die)) == [len(ENTRIES) * 4000]
