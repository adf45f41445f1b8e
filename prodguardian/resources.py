"""Where the shipped data folders (`rules/`, `templates/`) are, installed or in a checkout."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """The installed copy (`prodguardian/<name>` in a wheel), else the checkout's top-level folder."""
    installed = _PACKAGE / "_data" / name
    return installed if installed.is_dir() else _PACKAGE.parent / name
