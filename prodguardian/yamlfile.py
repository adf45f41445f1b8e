"""YAML files whose errors say where: each mapping remembers the line and column of itself and its keys, so
a problem found after loading (a wrong type, an unknown field) is reported at `file:line:column`."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from prodguardian.errors import Location, ProdGuardianError


class LocatedDict(dict[str, Any]):
    """A YAML mapping that remembers where it and each of its keys stand in the file."""

    line = 0
    column = 0
    key_marks: dict[str, tuple[int, int]]


class LocatedLoader(yaml.SafeLoader):
    """The safe loader, building every mapping as a LocatedDict."""


def _construct_located(loader: LocatedLoader, node: yaml.MappingNode) -> LocatedDict:
    mapping = LocatedDict()
    mapping.line, mapping.column = node.start_mark.line + 1, node.start_mark.column + 1
    mapping.key_marks = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.key_marks[str(key)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
    return mapping


LocatedLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_located)


def load_located(path: Path, error: type[ProdGuardianError]) -> Any:
    """A YAML file's document, its mappings located; an unreadable or invalid file raises `error` at the
    position YAML reports."""
    name = str(path)
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=LocatedLoader)
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"cannot read: {exc}", Location(name)) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = Location(name, mark.line + 1, mark.column + 1) if mark else Location(name)
        raise error(f"invalid YAML: {exc.problem}", where) from None


def locate(path: str, node: Any, keys: Iterable[str | int] = ()) -> Location:
    """Where the deepest located mapping (or key) along `keys` stands in the file."""
    line, column = getattr(node, "line", 1), getattr(node, "column", 1)
    for key in keys:
        if isinstance(node, LocatedDict) and str(key) in node.key_marks:
            line, column = node.key_marks[str(key)]
        present = (isinstance(node, dict) and key in node) or (
            isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node)
        )
        if not present:
            break
        node = node[key]
        if isinstance(node, LocatedDict):
            line, column = node.line, node.column
    return Location(path, line, column)
