"""Writing reports and exports: whole or not at all wherever a file can be replaced.

A regular file (or a new one) is written to a temporary file beside it, which is renamed over it only once
everything is written: a reader sees the old content or the new, never half of it. The new file keeps the
mode of the one it replaces; a file that did not exist gets the mode the umask gives. A symlink is written
through to its target (the link stays a link), and a FIFO or a device (`/dev/stdout`, a named pipe) is
written directly: replacing it would put a regular file where a pipe or a device was. `-` is stdout.

Every failure to write is a `ProdGuardianError` naming the path, except a broken pipe on stdout: the reader
stopped reading, which the caller may not count as an error (`prodguardian check | head -1`).
"""

from __future__ import annotations

import os
import secrets
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import IO

from prodguardian.errors import ProdGuardianError

STDOUT = "-"
_NEW_FILE_MODE = 0o666  # what the umask is applied to, as for any file a program creates
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)


class Output:
    """A binary stream whose write errors name the file written."""

    def __init__(self, stream: IO[bytes] | _TextAsBinary, where: str) -> None:
        self.stream, self.where = stream, where

    def write(self, data: bytes) -> None:
        try:
            self.stream.write(data)
        except OSError as exc:
            raise _write_error(exc, self.where) from None

    def flush(self) -> None:
        try:
            self.stream.flush()
        except OSError as exc:
            raise _write_error(exc, self.where) from None


@contextmanager
def atomic_writer(path: str) -> Iterator[Output]:
    """A stream to `path` (`-`: stdout), written whole or not at all when `path` is a regular file."""
    if path == STDOUT:
        out = Output(_stdout_buffer(), "<stdout>")
        yield out
        out.flush()
        return
    target = os.path.realpath(path)  # through symlinks: the link stays, its target is written
    try:
        existing = os.stat(target)
    except FileNotFoundError:
        existing = None
    except OSError as exc:
        raise _write_error(exc, path) from None
    if existing is not None and stat.S_ISDIR(existing.st_mode):
        raise ProdGuardianError("cannot write: it is a folder", path)
    if existing is not None and not stat.S_ISREG(existing.st_mode):
        with _opened(target, path) as stream:
            out = Output(stream, path)
            yield out
            out.flush()
        return
    folder = os.path.dirname(target)
    _make_folder(folder, path)
    fd, tmp = _temporary(folder, os.path.basename(target), path)
    try:
        with os.fdopen(fd, "wb") as stream:
            out = Output(stream, path)
            yield out
            out.flush()
            _settle(stream, tmp, existing, path)
        _replace(tmp, target, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise


def write_text(path: str, text: str) -> None:
    """Write UTF-8 text to `path` (`-`: stdout), whole or not at all when `path` is a regular file."""
    with atomic_writer(path) as out:
        out.write(text.encode("utf-8"))


def _write_error(exc: OSError, where: str) -> OSError | ProdGuardianError:
    """The error to raise for a failed write: a broken pipe stays one, anything else names the file."""
    if isinstance(exc, BrokenPipeError):
        return exc
    return ProdGuardianError(f"cannot write: {exc.strerror or exc}", where)


def _stdout_buffer() -> IO[bytes] | _TextAsBinary:
    """The binary stdout, once the text printed before it is out."""
    if sys.stdout is None:
        raise ProdGuardianError("cannot write: stdout is closed", "<stdout>")
    try:
        sys.stdout.flush()
    except OSError as exc:
        raise _write_error(exc, "<stdout>") from None
    buffer = getattr(sys.stdout, "buffer", None)
    return buffer if buffer is not None else _TextAsBinary(sys.stdout)


class _TextAsBinary:
    """A text stdout without a binary buffer (a notebook, a redirect to StringIO), written as UTF-8 text."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def write(self, data: bytes) -> int:
        return self.stream.write(data.decode("utf-8"))

    def flush(self) -> None:
        self.stream.flush()


@contextmanager
def _opened(target: str, path: str) -> Iterator[IO[bytes]]:
    """A FIFO or a device, opened for writing as it is."""
    try:
        stream = open(target, "wb")  # noqa: SIM115 - closed below, its errors named
    except OSError as exc:
        raise _write_error(exc, path) from None
    try:
        yield stream
    finally:
        try:
            stream.close()
        except OSError as exc:
            raise _write_error(exc, path) from None


def _make_folder(folder: str, path: str) -> None:
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise _write_error(exc, path) from None


def _temporary(folder: str, name: str, path: str) -> tuple[int, str]:
    """A new file beside the target, created with the mode the umask gives a new file."""
    while True:
        tmp = os.path.join(folder, f".{name}.{secrets.token_hex(4)}.prodguardian-tmp")
        try:
            return os.open(tmp, _CREATE, _NEW_FILE_MODE), tmp
        except FileExistsError:
            continue
        except OSError as exc:
            raise _write_error(exc, path) from None


def _settle(stream: IO[bytes], tmp: str, existing: os.stat_result | None, path: str) -> None:
    """The new content on disk before it replaces the target (a crash then leaves the old file or the new,
    whole), with the mode of the file it replaces."""
    try:
        os.fsync(stream.fileno())
        if existing is not None:
            os.chmod(tmp, stat.S_IMODE(existing.st_mode))
    except OSError as exc:
        raise _write_error(exc, path) from None


def _replace(tmp: str, target: str, path: str) -> None:
    try:
        os.replace(tmp, target)
    except OSError as exc:
        raise _write_error(exc, path) from None
