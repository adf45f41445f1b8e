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

from prodguardian import source
from prodguardian.decode import decode_entries
from prodguardian.errors import InputError
from prodguardian.source import FileSource, ReadOptions, read_entries, write_export
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
    for decode in (source.orjson.loads, decode_entries):
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
    write_export(ENTRIES * 20, str(path))  # about 4 MiB: four parts of 1 MiB
    monkeypatch.setattr(source, "PARALLEL_MIN_BYTES", 1 << 20)
    monkeypatch.setattr(source.threading, "active_count", lambda: 1)
    read = ReadOptions(workers=2, part_bytes=1 << 20)
    assert len(source._plan_parts(str(path), read) or []) > 2
    assert list(FileSource(str(path), read).map_parts(_count_or_die)) == [len(ENTRIES) * 20]


# LogEntry objects pasted one after another, as copying several entries from the Logs Explorer gives.
PRETTY = [json.dumps(entry, indent=2) for entry in ENTRIES]


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("\n".join(PRETTY), id="newlines"),
        pytest.param("\n\n\n".join(PRETTY) + "\n", id="blank-lines"),
        pytest.param(",\n".join(PRETTY), id="commas"),
        pytest.param("\n,\n\n".join(PRETTY) + ",\n", id="commas-on-their-own-lines-and-a-trailing-one"),
        pytest.param("".join(PRETTY), id="glued"),
        pytest.param("\n\n" + " ".join(PRETTY), id="leading-blank-lines"),
        pytest.param("".join(json.dumps(entry) for entry in ENTRIES), id="compact-glued"),
        pytest.param(",\n".join(json.dumps(entry) for entry in ENTRIES), id="compact-with-commas"),
        pytest.param("\n".join(json.dumps(entry, indent=0) for entry in ENTRIES), id="indent-0"),
        pytest.param("\n".join("  " + t.replace("\n", "\n  ") for t in PRETTY), id="indented"),
    ],
)
def test_pasted_objects_read_as_entries(text: str) -> None:
    assert read(text.encode()) == ENTRIES


def test_pasted_objects_stream_in_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(source, "CHUNK_BYTES", 4096)
    entries = [logs.request(i, f"/api/item/{i}") for i in range(2000)]
    path = tmp_path / "pasted.json"
    path.write_text("\n\n".join(json.dumps(entry, indent=2) for entry in entries), encoding="utf-8")
    batches = list(FileSource(str(path)).batches())
    assert len(batches) > 100 and max(len(batch) for batch in batches) < 10
    assert [entry for batch in batches for entry in batch] == entries
    read_back = list(FileSource(str(path)).batches(decode_entries))  # the check's decoder too
    assert sum(len(batch) for batch in read_back) == len(entries)


def _line_of(text: str, marker: str) -> int:
    return text[: text.index(marker)].count("\n") + 1


@pytest.mark.parametrize("chunk", [97, 8 << 20])
def test_a_broken_pasted_object_is_named_by_its_line(monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    monkeypatch.setattr(source, "CHUNK_BYTES", chunk)
    broken = PRETTY[:]
    broken[8] = broken[8].replace('"requestMethod": "GET"', '"requestMethod" "GET"', 1)
    assert broken[8] != PRETTY[8]
    text = "\n\n".join(broken)
    got: list[Any] = []
    with pytest.raises(InputError) as caught:
        for batch in source.read_batches(io.BytesIO(text.encode()), "pasted.json"):
            got.extend(batch)
    line = _line_of(text, '"requestMethod" "GET"')
    assert str(caught.value) == f"pasted.json:{line}: invalid JSON: Expecting ':' delimiter"
    assert got == ENTRIES[:8]  # the entries before the broken one are handed over first


THREE = "\n".join(PRETTY[:3])
AFTER_ENTRY = "invalid JSON: expected ',' or the next entry's '{' after an entry"


@pytest.mark.parametrize(
    ("text", "message", "marker"),
    [
        (THREE + "\n]\n" + PRETTY[3], AFTER_ENTRY, "\n]"),
        (",\n".join(PRETTY[:2]) + ",\n,\n" + PRETTY[2], AFTER_ENTRY, "\n,\n"),
        (THREE + '\n"some text"', AFTER_ENTRY, '\n"some text"'),
        (THREE[:-20], "truncated JSON", None),
    ],
    ids=["stray-bracket", "two-commas", "not-an-object", "truncated"],
)
def test_bad_pasted_objects_name_the_line(text: str, message: str, marker: str | None) -> None:
    with pytest.raises(InputError) as caught:
        read(text.encode())
    line = text.count("\n") + 1 if marker is None else _line_of(text, marker) + 1  # the line after the \n
    assert str(caught.value) == f"export.json:{line}: {message}"


# Byte order marks: UTF-16 (Windows PowerShell 5's `>` writes UTF-16 LE with FF FE) and UTF-8.
JSON_LINES = "\n".join(json.dumps(entry, ensure_ascii=False) for entry in ENTRIES) + "\r\n"


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(json.dumps(ENTRIES, indent=2, ensure_ascii=False), id="pretty-array"),
        pytest.param(json.dumps(ENTRIES, ensure_ascii=False), id="compact-array"),
        pytest.param(JSON_LINES, id="json-lines"),
        pytest.param("\r\n".join(PRETTY), id="pasted"),
        pytest.param(json.dumps({"entries": ENTRIES}, indent=2), id="entries-list"),
    ],
)
@pytest.mark.parametrize(
    "encode",
    [
        pytest.param(lambda t: t.encode("utf-16"), id="utf-16-native-bom"),
        pytest.param(lambda t: b"\xff\xfe" + t.encode("utf-16-le"), id="utf-16-le-bom"),
        pytest.param(lambda t: b"\xfe\xff" + t.encode("utf-16-be"), id="utf-16-be-bom"),
        pytest.param(lambda t: t.encode("utf-16-le"), id="utf-16-le-no-bom"),
        pytest.param(lambda t: b"\xef\xbb\xbf" + t.encode(), id="utf-8-bom"),
        pytest.param(lambda t: gzip.compress(b"\xff\xfe" + t.encode("utf-16-le")), id="gzip-utf-16-le"),
    ],
)
def test_text_with_a_byte_order_mark_reads_as_utf8(text: str, encode: Any) -> None:
    assert read(encode(text)) == ENTRIES


def test_a_powershell_export_file_reads_and_is_not_cut_into_parts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "export.json"
    path.write_bytes(b"\xff\xfe" + json.dumps(ENTRIES * 20, indent=2).encode("utf-16-le"))
    monkeypatch.setattr(source, "PARALLEL_MIN_BYTES", 1024)
    assert source._plan_parts(str(path), ReadOptions()) is None
    assert list(FileSource(str(path))) == ENTRIES * 20


@pytest.mark.parametrize(
    ("data", "message", "where"),
    [
        (
            b"\xff\xfe" + (JSON_LINES + '{"insertId": \n').encode("utf-16-le"),
            "invalid JSON Lines entry",
            f"export.json:{len(ENTRIES) + 1}",
        ),
        (
            b"\xff\xfe" + json.dumps(ENTRIES).encode("utf-16-le")[:-80],
            "truncated",
            "export.json: byte",
        ),
        (b"\xff\xfe[\x00{\x00\x00\xd8}\x00]\x00", "not UTF-16 text", "export.json: byte 6"),
        (b"\xff\xfe[\x00]", "not UTF-16 text", "export.json: byte"),
    ],
    ids=["broken-jsonl-line", "truncated-array", "lone-surrogate", "odd-length"],
)
def test_bad_utf16_input_names_the_place(data: bytes, message: str, where: str) -> None:
    with pytest.raises(InputError) as caught:
        read(data)
    assert message in str(caught.value)
    assert str(caught.value).startswith(where)
    assert "\n" not in str(caught.value)


def test_utf16_byte_offsets_say_they_count_utf8() -> None:
    with pytest.raises(
        InputError, match=r"^export.json: byte \d+ of its text as UTF-8 \(the file is UTF-16\)"
    ):
        read(b"\xff\xfe" + b'[{"a": 1} {"b": 2}]'.decode().encode("utf-16-le"))


# entries:list responses: a page with a nextPageToken is one of several.
def _page(entries: list[Any], token: str | None = None, indent: int | None = 2) -> str:
    page: dict[str, Any] = {"entries": entries}
    if token is not None:
        page["nextPageToken"] = token
    return json.dumps(page, indent=indent)


TOKEN = "EAA4suKu3qnLwbtrSg"


@pytest.mark.parametrize("indent", [2, None], ids=["pretty", "compact"])
def test_a_page_with_a_next_page_token_is_read_with_a_warning(tmp_path: Path, indent: int | None) -> None:
    path = tmp_path / "page.json"
    path.write_text(_page(ENTRIES, TOKEN, indent), encoding="utf-8")
    export = FileSource(str(path))
    assert export.warnings == []
    assert list(export) == ENTRIES
    assert export.warnings == [source.PAGE_WARNING]
    assert "later pages are not in the file" in source.PAGE_WARNING
    assert list(export) == ENTRIES and export.warnings == [source.PAGE_WARNING]  # once, however often read
    export = FileSource(str(path))
    results = list(export.map_parts(lambda batches: sum(len(batch) for batch in batches), decode_entries))
    assert results == [len(ENTRIES)] and export.warnings == [source.PAGE_WARNING]


@pytest.mark.parametrize(
    ("text", "entries", "warned"),
    [
        pytest.param(_page(ENTRIES), ENTRIES, False, id="one-page-no-token"),
        pytest.param(_page(ENTRIES, ""), ENTRIES, False, id="empty-token"),
        pytest.param(_page(ENTRIES[:5], TOKEN) + "\n" + _page(ENTRIES[5:]), ENTRIES, False, id="all-pages"),
        pytest.param(
            _page(ENTRIES[:5], TOKEN, None) + "\n" + _page(ENTRIES[5:], None, None),
            ENTRIES,
            False,
            id="all-pages-compact-lines",
        ),
        pytest.param(
            _page(ENTRIES[:5], TOKEN) + _page(ENTRIES[5:], TOKEN), ENTRIES, True, id="pages-missing"
        ),
        pytest.param(json.dumps({"nextPageToken": TOKEN}), [], True, id="empty-page-with-token"),
        pytest.param("\n".join(PRETTY), ENTRIES, False, id="pasted-entries"),
        pytest.param(JSON_LINES, ENTRIES, False, id="json-lines"),
        pytest.param(json.dumps(ENTRIES, indent=2), ENTRIES, False, id="array"),
    ],
)
def test_warnings_only_for_a_page_with_more_pages_after_it(
    text: str, entries: list[Any], warned: bool
) -> None:
    warnings: list[str] = []
    assert list(read_entries(io.BytesIO(text.encode()), "page.json", warnings)) == entries
    assert warnings == ([source.PAGE_WARNING] if warned else [])


def test_part_warnings_reach_the_file_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What reading a part warns of travels back with its result (parts give none today)."""
    path = tmp_path / "export.json"
    write_export(ENTRIES * 200, str(path))
    monkeypatch.setattr(source, "PARALLEL_MIN_BYTES", 1024)
    monkeypatch.setattr(source, "_can_fork", lambda workers: False)
    real = source.part_batches

    def warning_parts(part: source._PartSpec, decode: Any, warnings: list[str]) -> Iterator[list[Any]]:
        warnings.append("a warning")
        return real(part, decode, warnings)

    monkeypatch.setattr(source, "part_batches", warning_parts)
    export = FileSource(str(path), ReadOptions(part_bytes=64 << 10))
    counts = list(export.map_parts(lambda batches: sum(len(batch) for batch in batches)))
    assert len(counts) > 1 and sum(counts) == len(ENTRIES) * 200
    assert export.warnings == ["a warning"]
