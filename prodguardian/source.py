"""Sources of LogEntry dicts: exported files (JSON array, JSON Lines, entries:list responses, gzip, stdin).

Every source yields entries in the Cloud Logging API's JSON shape; nothing downstream knows where they came
from. Files are parsed in streaming batches so a 1 GB export never has to sit in memory whole.
"""

from __future__ import annotations

import codecs
import gzip
import itertools
import json
import sys
from collections.abc import Iterable, Iterator
from typing import IO, Any

import orjson

from prodguardian.errors import InputError
from prodguardian.files import atomic_writer

CHUNK_BYTES = 8 << 20
MAX_ENTRY_BYTES = 64 << 20  # Cloud Logging caps an entry at 256 KiB; anything this large is not a log entry


class FileSource:
    """Entries of one exported file (or `-` for stdin), in the order the file holds them."""

    truncated = False

    def __init__(self, path: str) -> None:
        self.path = path
        self.name = "<stdin>" if path == "-" else path

    def __iter__(self) -> Iterator[Any]:
        if self.path == "-":
            yield from read_entries(sys.stdin.buffer, self.name)
            return
        try:
            raw = open(self.path, "rb")  # noqa: SIM115 - closed below, wrapped in gzip when needed
        except OSError as exc:
            raise InputError(exc.strerror or str(exc), self.name) from None
        with raw:
            yield from read_entries(raw, self.name)


def read_entries(stream: IO[bytes], name: str) -> Iterator[Any]:
    """Detect the export's form from its first bytes and yield its entries (any JSON value, unchecked)."""
    head = stream.read(2)
    if head == b"\x1f\x8b":
        stream = gzip.GzipFile(fileobj=_Prefixed(head, stream), mode="rb")  # type: ignore[call-overload]
        head = b""
    reader = _Reader(stream, name, head)
    try:
        first = reader.first_significant_byte()
        if first == ord("["):
            yield from reader.json_array()
        elif first == ord("{"):
            yield from reader.object_or_lines()
        elif first == -1:
            return
        elif first < 0x20 or first >= 0x80:
            raise InputError("binary data, not a JSON log export", f"{name}: byte {reader.offset}")
        else:
            raise InputError(f"not a JSON log export (starts with {chr(first)!r})", f"{name}:1")
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise InputError(f"cannot read: {exc}", name) from None


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

    def __init__(self, stream: IO[bytes], name: str, head: bytes) -> None:
        self.stream, self.name = stream, name
        self.buf = head
        self.offset = 0  # file offset of self.buf[0]
        self.eof = False

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
            raise InputError("binary data, not a JSON log export", f"{self.name}: byte {at}")
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
            self.consume(len(self.buf) - len(stripped))
            if self.buf.startswith(b"\xef\xbb\xbf"):
                self.consume(3)
                continue
            if self.buf:
                return self.buf[0]
            if not self.fill():
                return -1

    def error(self, what: str, pos: int) -> InputError:
        at = self.offset + pos
        return InputError(what, f"{self.name}: byte {at}")

    def json_array(self) -> Iterator[Any]:
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
                    batch = orjson.loads(b"[" + self.buf[:end] + b"]")
                except orjson.JSONDecodeError:
                    yield from self._decode_incrementally()
                    return
                self.consume(end)
                self._skip_separator()
                yield from batch
            if not self.fill():
                break
        yield from self._array_tail()

    def _element_closer(self) -> bytes | None:
        brace = self.buf.find(b"{")
        newline = self.buf.rfind(b"\n", 0, brace)
        if brace < 0 or newline < 0 or self.buf[newline + 1 : brace].strip():
            return None
        return b"\n" + self.buf[newline + 1 : brace] + b"}"

    def _skip_separator(self) -> None:
        """whitespace, then a comma (consumed) or the closing bracket (kept for the tail)."""
        while True:
            stripped = self.buf.lstrip()
            self.consume(len(self.buf) - len(stripped))
            if self.buf or not self.fill():
                break
        if self.buf.startswith(b","):
            self.consume(1)
        elif self.buf and not self.buf.startswith(b"]"):
            raise self.error("invalid JSON: expected ',' or ']' after an entry", 0)

    def _array_tail(self) -> Iterator[Any]:
        try:
            tail = orjson.loads(b"[" + self.buf)
        except orjson.JSONDecodeError as exc:
            raise self.error(_describe(exc, len(self.buf) + 1), max(exc.pos - 1, 0)) from None
        self.consume(len(self.buf))
        yield from tail

    def _decode_incrementally(self) -> Iterator[Any]:
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
                raise InputError("truncated JSON array", f"{self.name}: byte {text_at + len(text.encode())}")
            if pos < len(text) and text[pos] == "]" and (first or not expect_value):
                return
            if not expect_value:
                if pos < len(text) and text[pos] == ",":
                    pos, expect_value = pos + 1, True
                    continue
                at = text_at + len(text[:pos].encode())
                raise InputError(
                    "invalid JSON: expected ',' or ']' after an entry", f"{self.name}: byte {at}"
                )
            try:
                value, pos = decoder.raw_decode(text, pos)
            except json.JSONDecodeError as exc:
                if self._has_more() and len(text) - pos < MAX_ENTRY_BYTES:
                    text += self._take_text(utf8, text_at)
                    continue
                at = text_at + len(text[: exc.pos].encode())
                raise InputError(_describe(exc, len(text)), f"{self.name}: byte {at}") from None
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
            raise InputError(
                "not UTF-8 text", f"{self.name}: byte {self.offset - len(data) + exc.start}"
            ) from None

    def object_or_lines(self) -> Iterator[Any]:
        """JSON Lines (one entry a line), or one document: an entries:list response or a single entry."""
        while b"\n" not in self.buf and self.fill():
            pass
        first_line = self.buf.split(b"\n", 1)[0]
        try:
            first = orjson.loads(first_line)
        except orjson.JSONDecodeError:
            yield from self._document()
            return
        if (
            isinstance(first, dict)
            and isinstance(first.get("entries"), list)
            and b"\n" not in self.buf.strip()
        ):
            yield from first["entries"]
            return
        yield from self._lines()

    def _document(self) -> Iterator[Any]:
        while self.fill():
            if len(self.buf) > MAX_ENTRY_BYTES * 16:
                raise self.error("a single JSON document this large must be a JSON array or JSON Lines", 0)
        try:
            doc = orjson.loads(self.buf)
        except orjson.JSONDecodeError as exc:
            raise self.error(_describe(exc, len(self.buf)), exc.pos) from None
        if isinstance(doc, dict) and isinstance(doc.get("entries"), list):
            yield from doc["entries"]
        else:
            yield doc

    def _lines(self) -> Iterator[Any]:
        line_no = 0
        while True:
            lines = self.buf.split(b"\n")
            complete = lines if self.eof else lines[:-1]
            for line in complete:
                line_no += 1
                if not line.strip():
                    continue
                try:
                    yield orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    raise InputError(
                        f"invalid JSON Lines entry: {exc.msg}", f"{self.name}:{line_no}"
                    ) from None
            self.consume(len(self.buf) - (0 if self.eof else len(lines[-1])))
            if not self.fill() and not self.buf:
                return
            if self.eof and not self.buf.strip():
                return


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
                out.write(orjson.dumps(entry) + b"\n")
            else:
                body = orjson.dumps(entry, option=orjson.OPT_INDENT_2).replace(b"\n", b"\n  ")
                out.write((b",\n  " if count else b"  ") + body)
            count += 1
        out.write(b"" if jsonl else (b"\n]\n" if count else b"]\n"))
    return count
