"""Writing files whole or not at all."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO


@contextmanager
def atomic_writer(path: str) -> Iterator[IO[bytes]]:
    """Yield a binary stream whose content replaces `path` only if the block completes (`-` is stdout)."""
    if path == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".prodguardian-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_text(path: str, text: str) -> None:
    """Write UTF-8 text to `path` atomically."""
    with atomic_writer(path) as out:
        out.write(text.encode("utf-8"))
