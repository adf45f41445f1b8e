"""The channels file: a YAML list of channels, each with a name, a type, a minimum severity, an optional
service filter and its type's settings. Secrets come from environment variables (`url_env`) or files
(`url_file`), never written in the file itself; every problem is a ConfigError at `file:line:column`."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args
from urllib.parse import urlsplit

from prodguardian.channels.delivery import DEFAULT_TIMEOUT, Route
from prodguardian.errors import ConfigError, Location
from prodguardian.notification import AlertSeverity, Channel
from prodguardian.yamlfile import LocatedDict, load_located, locate

EXAMPLE = "channels:\n  - name: team-slack\n    type: slack\n    url_env: SLACK_WEBHOOK_URL"


@dataclass
class Spec:
    """One channel's settings as written, read field by field; each problem is located at its field."""

    path: str
    node: LocatedDict
    keys: list[str | int]
    read: set[str] = field(default_factory=set)

    @property
    def name(self) -> str:
        return str(self.node.get("name", ""))

    def where(self, key: str | None = None) -> Location:
        return locate(self.path, self.node, [] if key is None else [key])

    def error(self, key: str | None, message: str) -> ConfigError:
        label = f"channel {self.name!r}" if self.name else f"channel {int(self.keys[-1]) + 1}"
        return ConfigError(f"{label}: {key + ': ' if key else ''}{message}", self.where(key))

    def value(
        self, key: str, kind: type | tuple[type, ...], default: Any = None, *, required: bool = False
    ) -> Any:
        self.read.add(key)
        if key not in self.node:
            if required:
                raise self.error(None, f"{key} is required")
            return default
        found = self.node[key]
        if not isinstance(found, kind) or (isinstance(found, bool) and bool not in _kinds(kind)):
            raise self.error(key, f"expected {_kind_words(kind)}, got {type(found).__name__}")
        return found

    def text(self, key: str, default: str | None = None, *, required: bool = False) -> str | None:
        found = self.value(key, str, default, required=required)
        if found is not None and not found.strip():
            raise self.error(key, "is empty")
        return None if found is None else str(found)

    def number(self, key: str, default: float) -> float:
        found = float(self.value(key, (int, float), default))
        if found <= 0:
            raise self.error(key, "must be above 0")
        return found

    def flag(self, key: str, default: bool) -> bool:
        return bool(self.value(key, bool, default))

    def names(self, key: str) -> list[str] | None:
        """A list of names, or one name written alone."""
        found = self.value(key, (str, list))
        if found is None:
            return None
        names = [found] if isinstance(found, str) else found
        if not names or not all(isinstance(name, str) and name.strip() for name in names):
            raise self.error(key, "expected a name or a list of names")
        return [str(name) for name in names]

    def secret(self, key: str, *, required: bool = True) -> str | None:
        """A secret from `<key>_env` (an environment variable's name) or `<key>_file` (a file's path,
        relative to the channels file); writing it in the file is refused."""
        self.read.update((key, f"{key}_env", f"{key}_file"))
        if key in self.node:
            raise self.error(
                key, f"a secret is not written in the file: use {key}_env (a variable) or {key}_file"
            )
        variable, file = self.text(f"{key}_env"), self.text(f"{key}_file")
        if variable and file:
            raise self.error(f"{key}_file", f"give {key}_env or {key}_file, not both")
        if variable:
            return self._from_environment(f"{key}_env", variable)
        if file:
            return self._from_file(f"{key}_file", file)
        if required:
            raise self.error(None, f"{key}_env or {key}_file is required")
        return None

    def address(self, key: str = "url") -> str:
        """A secret URL (`url_env`, `url_file`), which must be http or https."""
        url = self.secret(key) or ""
        if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
            raise self.error(
                f"{key}_env" if f"{key}_env" in self.node else f"{key}_file", "not an http(s) URL"
            )
        return url

    def _from_environment(self, key: str, variable: str) -> str:
        found = os.environ.get(variable, "").strip()
        if not found:
            raise self.error(key, f"the environment variable {variable} is not set")
        return found

    def _from_file(self, key: str, file: str) -> str:
        path = Path(self.path).parent / Path(file).expanduser()
        try:
            found = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise self.error(key, f"cannot read {file}: {getattr(exc, 'strerror', None) or exc}") from None
        if not found:
            raise self.error(key, f"{file} is empty")
        return found

    def route(self, default: AlertSeverity = "DEGRADED") -> Route:
        severity = self.text("min_severity", default) or default
        severities: tuple[str, ...] = get_args(AlertSeverity)
        if severity not in severities:
            raise self.error("min_severity", f"{severity!r} is not one of {', '.join(severities)}")
        services = self.names("services")
        return Route(severity, None if services is None else frozenset(services))  # type: ignore[arg-type]

    def timeout(self) -> float:
        return self.number("timeout", DEFAULT_TIMEOUT)

    def unknown_keys(self) -> list[str]:
        return [key for key in self.node if key not in self.read]


Builder = Callable[[Spec], Channel]


def _kinds(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _kind_words(kind: type | tuple[type, ...]) -> str:
    words = {str: "text", int: "a number", float: "a number", bool: "true or false", list: "a list"}
    return " or ".join(dict.fromkeys(words[k] for k in _kinds(kind)))


def load_channels(path: str | os.PathLike[str], builders: dict[str, Builder]) -> list[Channel]:
    """The channels a file describes, each built by its type's builder."""
    name = str(path)
    document = load_located(Path(path), ConfigError)
    entries = document.get("channels") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ConfigError(
            f"a channels file holds a list `channels:`, like:\n{EXAMPLE}", locate(name, document)
        )
    if extra := [key for key in document if key != "channels"]:
        raise ConfigError(
            f"unknown setting {extra[0]!r}; a channels file holds `channels:`",
            locate(name, document, [extra[0]]),
        )
    channels = [
        _channel(Spec(name, entry, ["channels", index]), builders) for index, entry in enumerate(entries)
    ]
    _refuse_duplicates(name, document, channels)
    return channels


def _channel(spec: Spec, builders: dict[str, Builder]) -> Channel:
    if not isinstance(spec.node, LocatedDict):
        raise ConfigError("a channel is a mapping with `name:` and `type:`", locate(spec.path, spec.node))
    spec.text("name", required=True)
    kind = spec.text("type", required=True) or ""
    if kind not in builders:
        raise spec.error("type", f"unknown type {kind!r}; the types are: {', '.join(sorted(builders))}")
    channel = builders[kind](spec)
    if unknown := spec.unknown_keys():
        fields = ", ".join(sorted(spec.read - {"name", "type"}))
        raise spec.error(
            unknown[0], f"unknown field for a {kind} channel; its fields are: name, type, {fields}"
        )
    return channel


def _refuse_duplicates(path: str, document: Any, channels: Iterable[Channel]) -> None:
    seen: set[str] = set()
    for index, channel in enumerate(channels):
        if channel.name in seen:
            where = locate(path, document, ["channels", index, "name"])
            raise ConfigError(f"channel {channel.name!r}: name: another channel has this name", where)
        seen.add(channel.name)
