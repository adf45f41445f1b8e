"""Sources of LogEntry dicts: exported files (JSON array, JSON Lines, entries:list responses, LogEntry objects
pasted one after another, gzip, UTF-16 or UTF-8 with a byte order mark, stdin).

Every source yields entries in the Cloud Logging API's JSON shape; nothing downstream knows where they came
from (a `decode` given by the caller may build lighter typed entries instead of dicts). Files are parsed in
streaming batches so a 1 GB export never has to sit in memory whole, and a large uncompressed export can be
cut at entry boundaries into parts, each mapped and decoded in place in one go, that worker processes read
in parallel where they can be forked (`FileSource.map_parts`).
"""

from __future__ import annotations

import codecs
import functools
import gc
import gzip
import itertools
import json
import mmap
import multiprocessing
import os
import sys
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import IO, Any, TypeVar

import orjson

from prodguardian.errors import ConfigError, InputError
from prodguardian.files import atomic_writer

CHUNK_BYTES = 8 << 20
MAX_ENTRY_BYTES = 64 << 20  # Cloud Logging caps an entry at 256 KiB; anything this large is not a log entry
PARALLEL_MIN_BYTES = 48 << 20  # below this, cutting into parts and starting workers costs more than it saves
PART_BYTES = 32 << 20  # a worker's unit of work (parts are handed out in file order)
MIN_PART_BYTES = 64 << 10  # smaller parts cost more in hand-offs than they could gain
_INCREMENTAL_BATCH = 1024
PAGE_WARNING = (
    "an entries:list page with a nextPageToken: this is one page of several, later pages are not in the file"
)
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")

T = TypeVar("T")
Decode = Callable[[bytes | memoryview], Any]  # bytes of JSON → its value, as orjson.loads (see read_batches)


@dataclass(frozen=True)
class ReadOptions:
    """How a large export is read: by how many worker processes, in parts of how many bytes."""

    workers: int | None = None  # None: as many as the CPUs this process may use; 1 reads in this process
    part_bytes: int = PART_BYTES

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"workers must be at least 1, not {self.workers}", "--workers")
        if self.part_bytes < MIN_PART_BYTES:
            raise ConfigError(
                f"the part size must be at least {MIN_PART_BYTES:,} bytes (64 KiB), not {self.part_bytes:,}",
                "--part-size",
            )

    def worker_count(self) -> int:
        """The worker processes to start for a large export."""
        if self.workers is not None:
            return self.workers
        try:
            return len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            return os.cpu_count() or 1


class FileSource:
    """Entries of one exported file (or `-` for stdin), in the order the file holds them.

    `warnings` collects what reading found worth telling but not wrong (one entries:list page of several),
    each once however often the file is read; it is complete once the entries have been read to the end.
    """

    truncated = False  # a file is read to its end
    covers_window = False  # an export may start after the window does (`gcloud ... --limit`)

    def __init__(self, path: str, read: ReadOptions = ReadOptions()) -> None:
        self.path = path
        self.read = read
        self.name = "<stdin>" if path == "-" else path
        self.warnings: list[str] = []

    def __iter__(self) -> Iterator[Any]:
        for batch in self.batches():
            yield from batch

    def batches(self, decode: Decode = orjson.loads) -> Iterator[list[Any]]:
        """The entries in batches (one parse each), in file order; see `read_batches` for `decode`."""
        if self.path == "-":
            if sys.stdin is None:  # the process was started with its stdin closed (`<&-`)
                raise InputError("cannot read: stdin is closed", self.name)
            yield from read_batches(sys.stdin.buffer, self.name, decode, self.warnings)
            return
        try:
            raw = open(self.path, "rb")  # noqa: SIM115 - closed below, wrapped in gzip when needed
        except OSError as exc:
            raise InputError(exc.strerror or str(exc), self.name) from None
        with raw:
            yield from read_batches(raw, self.name, decode, self.warnings)

    def map_parts(self, fn: Callable[[Iterator[list[Any]]], T], decode: Decode = orjson.loads) -> Iterator[T]:
        """`fn` applied to the batches of each part of the file, one call per part, results in file order.

        A large uncompressed export (a pretty-printed JSON array, as gcloud writes, or JSON Lines) is cut at
        entry boundaries into parts, each decoded in one go; where processes can be forked, worker processes
        read them and hand them to `fn` in parallel, so `fn` must be picklable and return something
        picklable (what a worker sends back). Anything else is one part read in this process. If any part
        fails, the whole file is read again here, so errors read exactly as they would without parts.
        """
        parts = _plan_parts(self.path, self.read)
        if parts:
            workers = min(self.read.worker_count(), len(parts))
            results = (
                _run_parts(parts, fn, decode, workers)
                if _can_fork(workers)
                else _run_parts_here(parts, fn, decode)
            )
            if results is not None:
                for result, warnings in results:
                    _add_warnings(self.warnings, warnings)
                    yield result
                return
        yield fn(self.batches(decode))


def read_entries(stream: IO[bytes], name: str, warnings: list[str] | None = None) -> Iterator[Any]:
    """Detect the export's form from its first bytes and yield its entries (any JSON value, unchecked)."""
    for batch in read_batches(stream, name, warnings=warnings):
        yield from batch


def read_batches(
    stream: IO[bytes], name: str, decode: Decode = orjson.loads, warnings: list[str] | None = None
) -> Iterator[list[Any]]:
    """The entries of `read_entries`, in batches of one parse each.

    `decode` parses the bulk of the entries: a JSON array of entries, or one JSON Lines line. It may give
    something other than dicts (typed entries that keep only some fields); it must raise
    `orjson.JSONDecodeError` where orjson would. A few entries come from orjson or json whatever `decode` is
    (a single document, pasted objects, the tail of an array, an array in a form that needs the exact
    decoder). What is worth telling but not wrong is appended to `warnings` (each message once), if given.

    UTF-16 text (a byte order mark, or a first character followed or preceded by a zero byte: what Windows
    PowerShell 5 writes with `>`) is read as the same text in UTF-8; its byte offsets then count UTF-8 bytes.
    """
    try:
        head = stream.read(2)
        if head == b"\x1f\x8b":
            stream = gzip.GzipFile(fileobj=_Prefixed(head, stream), mode="rb")  # type: ignore[call-overload]
            head = stream.read(2)
        encoding = _utf16(head)
        if encoding:
            stream = _Transcoded(_Prefixed(head, stream), encoding, name)  # type: ignore[assignment]
            head = b""
        reader = _Reader(stream, name, head, decode, warnings)
        reader.transcoded = encoding is not None
        first = reader.first_significant_byte()
        if first == ord("["):
            yield from reader.json_array()
        elif first == ord("{"):
            yield from reader.object_or_lines()
        elif first == -1:
            return
        elif first < 0x20 or first >= 0x80:
            raise InputError("binary data, not a JSON log export", reader.where(reader.offset))
        else:
            raise InputError(f"not a JSON log export (starts with {chr(first)!r})", f"{name}:1")
    except (OSError, EOFError, zlib.error) as exc:  # a truncated or corrupt gzip body, a read error
        raise InputError(f"cannot read: {exc}", name) from None


def _add_warnings(warnings: list[str], new: Iterable[str]) -> None:
    warnings.extend(message for message in new if message not in warnings)


def _utf16(head: bytes) -> str | None:
    """The codec of text that starts with these two bytes, if it is UTF-16: a byte order mark, or (without
    one) a JSON export's first character, ASCII, next to a zero byte."""
    if head in _UTF16_BOMS:
        return "utf-16"
    if len(head) == 2 and head.count(0) == 1:
        char = head[0] or head[1]
        if chr(char) in "[{ \t\r\n":
            return "utf-16-le" if head[1] == 0 else "utf-16-be"
    return None


class _Transcoded:
    """A read-only stream of UTF-8: the text of another stream decoded from UTF-16 (its byte order mark,
    if any, dropped)."""

    def __init__(self, stream: _Prefixed, encoding: str, name: str) -> None:
        self.stream, self.name = stream, name
        self.decoder = codecs.getincrementaldecoder(encoding)()
        self.at = 0  # bytes of the stream decoded so far

    def read(self, size: int = -1) -> bytes:
        while True:
            data = self.stream.read(size if size > 0 else CHUNK_BYTES)
            pending = len(self.decoder.getstate()[0])
            try:
                text = self.decoder.decode(data, final=not data)
            except UnicodeDecodeError as exc:
                at = self.at - pending + exc.start
                raise InputError("not UTF-16 text", f"{self.name}: byte {at}") from None
            self.at += len(data)
            if text or not data:
                return text.encode()


class _Prefixed:
    """A read-only stream that gives back bytes already read from the front of another stream."""

    def __init__(self, prefix: bytes, rest: IO[bytes]) -> None:
        self.prefix, self.rest = prefix, rest

    def read(self, size: int = -1) -> bytes:
        if not self.prefix:
            return self.rest.read(size)
        if size < 0:
            data, self.prefix = self.prefix + self.rest.read(), b""
            return data
        data, self.prefix = self.prefix[:size], self.prefix[size:]
        return data + self.rest.read(size - len(data)) if size > len(data) else data


class _Reader:
    """A buffered reader that knows the byte offset of its buffer, for error messages."""

    def __init__(
        self,
        stream: IO[bytes],
        name: str,
        head: bytes,
        decode: Decode = orjson.loads,
        warnings: list[str] | None = None,
    ) -> None:
        self.stream, self.name, self.decode = stream, name, decode
        self.warnings = warnings
        self.buf = head
        self.offset = 0  # file offset of self.buf[0]
        self.line = 1  # line of self.buf[0], kept up to date where errors are named by line
        self.eof = False
        self.transcoded = False  # the stream is UTF-16 text read as UTF-8: offsets count UTF-8 bytes

    def where(self, at: int) -> str:
        """The place of file offset `at`, for an error message."""
        if self.transcoded:
            return f"{self.name}: byte {at} of its text as UTF-8 (the file is UTF-16)"
        return f"{self.name}: byte {at}"

    def warn(self, message: str) -> None:
        if self.warnings is not None:
            _add_warnings(self.warnings, [message])

    def fill(self) -> bool:
        """Read one more chunk into the buffer; False at end of file."""
        if self.eof:
            return False
        chunk = self.stream.read(CHUNK_BYTES)
        if not chunk:
            self.eof = True
            return False
        if b"\x00" in chunk:
            at = self.offset + len(self.buf) + chunk.index(b"\x00")
            raise InputError("binary data, not a JSON log export", self.where(at))
        self.buf += chunk
        return True

    def consume(self, n: int) -> None:
        self.buf = self.buf[n:]
        self.offset += n

    def first_significant_byte(self) -> int:
        while len(self.buf) < 4 and self.fill():
            pass
        while True:
            stripped = self.buf.lstrip()
            self.line += self.buf.count(b"\n", 0, len(self.buf) - len(stripped))
            self.consume(len(self.buf) - len(stripped))
            if self.buf.startswith(b"\xef\xbb\xbf"):
                self.consume(3)
                continue
            if self.buf:
                return self.buf[0]
            if not self.fill():
                return -1

    def error(self, what: str, pos: int) -> InputError:
        return InputError(what, self.where(self.offset + pos))

    def json_array(self) -> Iterator[list[Any]]:
        """Stream a JSON array, cutting it into batches that orjson parses whole.

        Newlines cannot occur inside JSON strings, so in a pretty-printed export (gcloud's form) a line made
        of the first element's indentation and `}` closes a top-level element. Each batch is verified by
        parsing it; anything that does not fit that form falls back to the exact incremental decoder.
        """
        self.consume(1)  # "["
        while len(self.buf) < 4096 and self.fill():
            pass
        closer = self._element_closer()
        if closer is None:
            yield from self._decode_incrementally()
            return
        while True:
            cut = self.buf.rfind(closer)
            if cut >= 0:
                end = cut + len(closer)
                try:
                    batch = self.decode(b"[" + self.buf[:end] + b"]")
                except orjson.JSONDecodeError:
                    yield from self._decode_incrementally()
                    return
                self.consume(end)
                self._skip_separator()
                yield batch
            if not self.fill():
                break
        yield from self._array_tail()

    def _skip_blank(self) -> None:
        while True:
            stripped = self.buf.lstrip()
            self.consume(len(self.buf) - len(stripped))
            if self.buf or not self.fill():
                return

    def _element_closer(self) -> bytes | None:
        brace = self.buf.find(b"{")
        newline = self.buf.rfind(b"\n", 0, brace)
        if brace < 0 or newline < 0 or self.buf[newline + 1 : brace].strip():
            return None
        return b"\n" + self.buf[newline + 1 : brace] + b"}"

    def _skip_separator(self) -> None:
        """whitespace, then a comma (consumed) or the closing bracket (kept for the tail)."""
        self._skip_blank()
        if self.buf.startswith(b","):
            self.consume(1)
        elif self.buf and not self.buf.startswith(b"]"):
            raise self.error("invalid JSON: expected ',' or ']' after an entry", 0)

    def _array_tail(self) -> Iterator[list[Any]]:
        try:
            tail = self.decode(b"[" + self.buf)
        except orjson.JSONDecodeError as exc:
            raise self.error(_describe(exc, len(self.buf) + 1), max(exc.pos - 1, 0)) from None
        self.consume(len(self.buf))
        if tail:
            yield tail

    def _decode_incrementally(self) -> Iterator[list[Any]]:
        """Exact element-by-element decoding for compact or unusually formatted arrays, in small batches.

        The entries decoded before an error are handed over before it is raised, as one at a time would be.
        """
        pending: list[Any] = []
        try:
            for value in self._decode_values():
                pending.append(value)
                if len(pending) >= _INCREMENTAL_BATCH:
                    yield pending
                    pending = []
        except InputError:
            if pending:
                yield pending
            raise
        if pending:
            yield pending

    def _decode_values(self) -> Iterator[Any]:
        """Exact element-by-element decoding for compact or unusually formatted arrays."""
        decoder = json.JSONDecoder()
        utf8 = codecs.getincrementaldecoder("utf-8")()
        text, text_at, pos = "", self.offset, 0  # text_at: file offset of text[0]
        expect_value, first = True, True
        while True:
            if len(text) - pos < CHUNK_BYTES // 2 and self._has_more():
                text_at += len(text[:pos].encode())
                text, pos = text[pos:] + self._take_text(utf8, text_at), 0
            while pos < len(text) and text[pos] in " \t\r\n":
                pos += 1
            if pos >= len(text) and not self._has_more():
                raise InputError("truncated JSON array", self.where(text_at + len(text.encode())))
            if pos < len(text) and text[pos] == "]" and (first or not expect_value):
                return
            if not expect_value:
                if pos < len(text) and text[pos] == ",":
                    pos, expect_value = pos + 1, True
                    continue
                at = text_at + len(text[:pos].encode())
                raise InputError("invalid JSON: expected ',' or ']' after an entry", self.where(at))
            try:
                value, pos = decoder.raw_decode(text, pos)
            except json.JSONDecodeError as exc:
                if self._has_more() and len(text) - pos < MAX_ENTRY_BYTES:
                    text += self._take_text(utf8, text_at)
                    continue
                at = text_at + len(text[: exc.pos].encode())
                raise InputError(_describe(exc, len(text)), self.where(at)) from None
            except RecursionError:
                raise InputError(_TOO_DEEP, self.where(text_at + len(text[:pos].encode()))) from None
            expect_value, first = False, False
            yield value

    def _has_more(self) -> bool:
        return bool(self.buf) or not self.eof

    def _take_text(self, utf8: codecs.IncrementalDecoder, text_at: int) -> str:
        if not self.buf:
            self.fill()
        data = self.buf
        self.consume(len(data))
        try:
            return utf8.decode(data, final=self.eof)
        except UnicodeDecodeError as exc:
            raise InputError("not UTF-8 text", self.where(self.offset - len(data) + exc.start)) from None

    def object_or_lines(self) -> Iterator[list[Any]]:
        """JSON Lines (one entry a line), or objects one after another: LogEntry objects pasted from the Logs
        Explorer, an entries:list response (a page, or pages one after another) or a single entry."""
        yield from (self._lines() if self._is_lines() else self._objects())

    def _is_lines(self) -> bool:
        """Whether the text is JSON Lines, from its first line (read as far as that): not if that line is no
        JSON (the first line of a pretty-printed object), or is an entries:list response."""
        while b"\n" not in self.buf and self.fill():
            pass
        try:
            first = orjson.loads(self.buf.split(b"\n", 1)[0])
        except orjson.JSONDecodeError:
            return False
        return not _is_page(first)

    def _objects(self) -> Iterator[list[Any]]:
        """JSON objects one after another, separated by whitespace, one comma or nothing (`}{`), in batches
        of a buffer; an entries:list response among them gives its entries.

        Pasted objects are pretty-printed: each ends with a line `}` at the first column (newlines cannot
        occur inside JSON strings), so the text is cut after each such line and every piece is parsed by
        orjson, which proves the cut (a piece that parses is a whole object). A piece that does not parse
        (a broken entry, another layout) hands the rest to the exact incremental decoder, which names the
        line of an error. The buffer holds a batch and one object, unless no line closes an object.
        """
        pages = _Pages()
        after = comma = False  # after a value: reading the separator (and whether it had its comma)
        searched = 0  # where the search for the end of the next object resumes in the buffer
        exact = False
        while not exact:
            batch: list[Any] = []
            buf, at = self.buf, 0
            while True:
                if after:
                    while at < len(buf) and buf[at] in b" \t\r\n":
                        at += 1
                    if at == len(buf):
                        break
                    if buf[at] == ord(",") and not comma:
                        at, comma = at + 1, True
                        continue
                    if buf[at] != ord("{"):
                        line = self.line + buf.count(b"\n", 0, at)
                        raise InputError(_AFTER_OBJECT, f"{self.name}:{line}")
                    after = comma = False
                end = buf.find(b"\n}", max(at, searched))
                if end < 0:
                    searched = max(at, len(buf) - 1)
                    exact = len(buf) - at > MAX_ENTRY_BYTES  # no object ends: not pretty-printed
                    break
                end += 2
                try:
                    pages.add(orjson.loads(memoryview(buf)[at:end]), batch)
                except orjson.JSONDecodeError:
                    exact = True
                    break
                at, after = end, True
            self.line += buf.count(b"\n", 0, at)
            self.consume(at)
            searched -= at
            if batch:
                yield batch
            if not exact and not self.fill():
                if after or not self.buf:
                    break
                exact = True  # the last object does not end a line with `}`
        else:
            yield from self._objects_exactly(pages, after, comma)
        if pages.token:
            self.warn(PAGE_WARNING)

    def _objects_exactly(self, pages: _Pages, after: bool, comma: bool) -> Iterator[list[Any]]:
        """`_objects` from the start of the buffer, value by value with the exact decoder, in small batches.

        The entries decoded before an error are handed over before it is raised, as one at a time would be.
        """
        decoder = json.JSONDecoder()
        utf8 = codecs.getincrementaldecoder("utf-8")()
        text, pos, line = "", 0, self.line  # line: the line of text[0]
        batch: list[Any] = []
        try:
            while True:
                if len(text) - pos < CHUNK_BYTES // 2 and self._has_more():
                    line += text.count("\n", 0, pos)
                    text, pos = text[pos:] + self._take_text(utf8, 0), 0
                while pos < len(text) and text[pos] in " \t\r\n":
                    pos += 1
                if pos >= len(text):
                    if self._has_more():
                        continue
                    break
                if after and text[pos] == "," and not comma:
                    pos, comma = pos + 1, True
                    continue
                if text[pos] != "{":
                    what = _AFTER_OBJECT if after else "invalid JSON: expected an entry's '{'"
                    raise InputError(what, f"{self.name}:{line + text.count(chr(10), 0, pos)}")
                try:
                    value, pos = decoder.raw_decode(text, pos)
                except json.JSONDecodeError as exc:
                    if self._has_more() and len(text) - pos < MAX_ENTRY_BYTES * 16:
                        grown, wanted = 0, max(len(text) - pos, CHUNK_BYTES)  # double: linear time in all
                        while grown < wanted and self._has_more():
                            more = self._take_text(utf8, 0)
                            text, grown = text + more, grown + len(more)
                        continue
                    where = f"{self.name}:{line + text.count(chr(10), 0, exc.pos)}"
                    raise InputError(_describe(exc, len(text)), where) from None
                except RecursionError:
                    raise InputError(_TOO_DEEP, f"{self.name}:{line + text.count(chr(10), 0, pos)}") from None
                pages.add(value, batch)
                after, comma = True, False
                if len(batch) >= _INCREMENTAL_BATCH:
                    yield batch
                    batch = []
        except InputError:
            if batch:
                yield batch
            raise
        if batch:
            yield batch

    def _lines(self) -> Iterator[list[Any]]:
        """One batch per buffer of lines; the lines before a broken one are handed over before the error."""
        line_no = 0
        loads = self.decode
        while True:
            lines = self.buf.split(b"\n")
            complete = lines if self.eof else lines[:-1]
            batch = []
            for line in complete:
                line_no += 1
                if not line.strip():
                    continue
                try:
                    batch.append(loads(line))
                except orjson.JSONDecodeError as exc:
                    if batch:
                        yield batch
                    raise InputError(
                        f"invalid JSON Lines entry: {exc.msg}", f"{self.name}:{line_no}"
                    ) from None
            if batch:
                yield batch
            self.consume(len(self.buf) - (0 if self.eof else len(lines[-1])))
            if not self.fill() and not self.buf:
                return
            if self.eof and not self.buf.strip():
                return


_AFTER_OBJECT = "invalid JSON: expected ',' or the next entry's '{' after an entry"
_TOO_DEEP = "invalid JSON: a value nested too deeply to be a log entry"


class _Pages:
    """Objects read one after another into entries: an entries:list response gives its entries (a page with
    a nextPageToken and no entries, none), anything else is an entry; `token`: whether the last response
    read has a nextPageToken, so that pages of the response are missing."""

    def __init__(self) -> None:
        self.token = False

    def add(self, value: Any, batch: list[Any]) -> None:
        if _is_page(value):
            batch.extend(value.get("entries") or ())
            self.token = bool(value.get("nextPageToken"))
        else:
            batch.append(value)


def _is_page(value: Any) -> bool:
    """Whether a JSON value is an entries:list response (which a LogEntry never is)."""
    return isinstance(value, dict) and (
        isinstance(value.get("entries"), list) or (len(value) == 1 and "nextPageToken" in value)
    )


class _Unsplittable(Exception):
    """A part does not read as a run of whole entries: the file is read in one piece instead."""


class _Bounded:
    """The bytes of a stream up to a limit."""

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        self.stream, self.left = stream, limit

    def read(self, size: int = -1) -> bytes:
        size = self.left if size < 0 else min(size, self.left)
        data = self.stream.read(size) if size else b""
        self.left -= len(data)
        return data


@dataclass(frozen=True)
class _PartSpec:
    """Bytes [start, end) of an export: whole entries of a pretty-printed JSON array (entries end with
    `closer`, the part after the first begins at the `,` before its first entry), or whole JSON Lines."""

    path: str
    start: int
    end: int
    closer: bytes | None  # None: JSON Lines
    first: bool
    last: bool


def _can_fork(workers: int) -> bool:
    """Whether parts go to worker processes. They are forked (cheap: nothing to import again), so only where
    fork is safe: Linux, and a process with no other thread running."""
    return workers > 1 and sys.platform.startswith("linux") and threading.active_count() == 1


def _plan_parts(path: str, read: ReadOptions) -> list[_PartSpec] | None:
    """Cut a large plain export into parts at entry boundaries, or None to read it in one piece."""
    if path == "-":
        return None
    try:
        size = os.path.getsize(path)
        if size < PARALLEL_MIN_BYTES:
            return None
        with open(path, "rb") as raw:
            return _cut(raw, path, size, max(read.worker_count(), -(-size // read.part_bytes)))
    except (OSError, InputError):
        return None


def _cut(raw: IO[bytes], path: str, size: int, count: int) -> list[_PartSpec] | None:
    reader = _Reader(raw, path, raw.read(2))
    if reader.buf == b"\x1f\x8b" or _utf16(reader.buf):
        return None
    first = reader.first_significant_byte()
    if first == ord("["):
        reader.consume(1)
        while len(reader.buf) < 4096 and reader.fill():
            pass
        closer = reader._element_closer()
        if closer is None:
            return None
        mark = closer
    elif first == ord("{") and reader._is_lines():
        closer, mark = None, b"\n"
    else:
        return None
    start = reader.offset
    bounds = [start]
    for k in range(1, count):
        at = _find(raw, mark, max(start + (size - start) * k // count, bounds[-1]))
        if at < 0 or at + len(mark) >= size:
            break
        if at + len(mark) > bounds[-1]:
            bounds.append(at + len(mark))
    bounds.append(size)
    pairs = list(itertools.pairwise(bounds))
    if len(pairs) < 2:
        return None
    last = len(pairs) - 1
    return [_PartSpec(path, a, b, closer, first=i == 0, last=i == last) for i, (a, b) in enumerate(pairs)]


def _find(raw: IO[bytes], mark: bytes, at: int) -> int:
    """Offset of the first `mark` at or after `at` in the file, or -1."""
    raw.seek(at)
    window = b""
    while True:
        data = raw.read(1 << 20)
        if not data:
            return -1
        window += data
        found = window.find(mark)
        if found >= 0:
            return at + found
        keep = len(mark) - 1
        at += len(window) - keep
        window = window[len(window) - keep :]


def _run_parts(
    parts: list[_PartSpec], fn: Callable[[Iterator[list[Any]]], T], decode: Decode, workers: int
) -> list[tuple[T, list[str]]] | None:
    """`fn` over each part in worker processes, results (each with the part's warnings) in part order; None
    if any part failed.

    The workers are forked once, before this process holds any result, and each reads one part after
    another: memory a part freed serves the next instead of being asked of the kernel again. A worker that
    dies (killed, out of memory) breaks the pool, which says so instead of leaving anyone waiting.
    """
    context = multiprocessing.get_context("fork")
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=gc.disable)
    try:
        return list(pool.map(functools.partial(_read_part, fn, decode), parts))
    except Exception:  # any failure: the exact reader runs again, here, and says what is wrong
        return None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _read_part(
    fn: Callable[[Iterator[list[Any]]], T], decode: Decode, part: _PartSpec
) -> tuple[T, list[str]]:
    """`fn` over the batches of the part, and the warnings reading it gave (sent back with the result)."""
    warnings: list[str] = []
    return fn(part_batches(part, decode, warnings)), warnings


def _run_parts_here(
    parts: list[_PartSpec], fn: Callable[[Iterator[list[Any]]], T], decode: Decode
) -> list[tuple[T, list[str]]] | None:
    """`fn` over each part in turn, in this process; None if any part failed."""
    try:
        return [_read_part(fn, decode, part) for part in parts]
    except Exception:  # as with workers: the exact reader runs again and says what is wrong
        return None


def part_batches(
    part: _PartSpec, decode: Decode = orjson.loads, warnings: list[str] | None = None
) -> Iterator[list[Any]]:
    """The entries of one part, in batches; `_Unsplittable` if it is not a run of whole entries. Warnings
    reading it gives are appended to `warnings` (none do yet: pages and pasted objects are not split)."""
    with open(part.path, "rb") as raw:
        if part.closer is not None:
            yield _array_part(raw, part, decode)
            return
        raw.seek(part.start)
        bounded = _Bounded(raw, part.end - part.start)
        reader = _Reader(bounded, part.path, b"", decode, warnings)  # type: ignore[arg-type]
        reader.offset = part.start
        yield from reader._lines()


def _array_part(raw: IO[bytes], part: _PartSpec, decode: Decode) -> list[Any]:
    """The entries of one part of a pretty-printed array, in one decode.

    The file is mapped copy-on-write and the separators around the part become the brackets of an array in
    place: the array's own `[` before the first part, the comma before any other part's first entry, the
    byte after its last entry (the last part holds the array's own `]`). The text is neither read nor
    copied (the kernel maps page-cache pages, many a fault), and a part that is not a run of whole,
    comma-separated entries does not decode.
    """
    with mmap.mmap(raw.fileno(), 0, access=mmap.ACCESS_COPY) as mapped:
        begin, end = part.start, part.end
        while begin < end and mapped[begin] in b" \t\r\n":
            begin += 1
        if part.first:
            begin = part.start - 1
            if begin < 0 or mapped[begin] != ord("["):
                raise _Unsplittable
        elif begin < end and mapped[begin] == ord(","):
            mapped[begin] = ord("[")
        elif (
            part.last and mapped[begin:end].strip() == b"]"
        ):  # the last part may hold only the closing bracket
            return []
        else:
            raise _Unsplittable
        if not part.last:
            if end >= len(mapped):
                raise _Unsplittable
            mapped[end] = ord("]")
            end += 1
        with memoryview(mapped)[begin:end] as text:
            try:
                entries = decode(text)
            except orjson.JSONDecodeError:
                raise _Unsplittable from None
    if not isinstance(entries, list):
        raise _Unsplittable
    return entries


def _describe(exc: json.JSONDecodeError, length: int) -> str:
    """What went wrong, saying `truncated` when the error is at the very end of the data."""
    return "truncated JSON" if exc.pos >= length - 8 else f"invalid JSON: {exc.msg}"


def write_export(entries: Iterable[Any], path: str, *, jsonl: bool = False) -> int:
    """Write entries as a gcloud-style JSON array (or JSON Lines), whole or not at all; return the count.

    The first entry is read before anything is written, so a source that fails at once (no credentials)
    leaves even stdout untouched.
    """
    count = 0
    pending = iter(entries)
    first = list(itertools.islice(pending, 1))
    with atomic_writer(path) as out:
        out.write(b"" if jsonl else b"[\n")
        for entry in itertools.chain(first, pending):
            if jsonl:
                out.write(_dumps(entry, indent=False) + b"\n")
            else:
                body = _dumps(entry, indent=True).replace(b"\n", b"\n  ")
                out.write((b",\n  " if count else b"  ") + body)
            count += 1
        out.write(b"" if jsonl else (b"\n]\n" if count else b"]\n"))
    return count


def _dumps(entry: Any, *, indent: bool) -> bytes:
    """An entry as JSON; the standard library writes what orjson refuses (an integer beyond 64 bits)."""
    try:
        return orjson.dumps(entry, option=orjson.OPT_INDENT_2 if indent else None)
    except TypeError:
        return json.dumps(entry, indent=2 if indent else None, ensure_ascii=False).encode()
