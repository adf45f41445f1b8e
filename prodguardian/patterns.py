"""Log message templates: a Drain-style online miner with RE2 masks and stable template ids.

A message is masked (ids, UUIDs, IPs, hex, paths, URLs and numbers become `<*>`), split on whitespace, and
routed down a fixed-depth tree (its token count, then its first tokens) to a leaf of templates; it joins
the most similar template of the leaf (the share of positions whose tokens are equal) when that share is
at least `similarity`, which turns the positions that differ into `<*>`, and starts a template of its own
otherwise (He et al., "Drain: An Online Log Parsing Approach with Fixed Depth Tree", ICWS 2017).

Log text is data: each message is cut to `MAX_MESSAGE_CHARS` characters and `MAX_TOKENS` tokens before any
work, the masks are RE2 (linear time), a leaf holds at most `MAX_LEAF_TEMPLATES` templates and the miner at
most `MAX_TEMPLATES`, so no line, however long or hostile, costs more than a bounded amount of work.
"""

from __future__ import annotations

import csv
import hashlib
import io
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import re2

from prodguardian.errors import InputError

WILDCARD = "<*>"
MAX_MESSAGE_CHARS = 4096
MAX_TOKENS = 64
MAX_LEAF_TEMPLATES = 256
MAX_TEMPLATES = 20_000
MAX_CHILDREN = 100  # distinct first tokens a tree node keeps before the rest share its wildcard child
PREFIX_TOKENS = 2  # how many first tokens route a message (the tree's depth, beyond its token count)
SIMILARITY = 0.7

# Each alternative is a kind of variable, tried in this order at each position: the first that matches
# wins, so a UUID is masked whole before its digits could be masked one run at a time.
_MASKS = (
    r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s\"'<>]+",  # URL
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",  # UUID
    r"(?:[0-9a-fA-F]{2}[:-]){5}[0-9a-fA-F]{2}",  # MAC address
    r"\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?",  # IPv4, with its port
    r"[\w-]+(?:\.[\w-]+)+:\d{1,5}\b",  # host and port
    # a date: `Fri Jun 17`
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun),? +(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) +\d{1,2}\b",
    r"0[xX][0-9a-fA-F]+",  # hex number
    r"(?:[\w.~@%+-]*/)+[\w.~@%+-]+/?",  # path, absolute or relative
    r"\b[0-9a-fA-F]*[0-9][0-9a-fA-F]*[a-fA-F][0-9a-fA-F]*\b",  # hex id with a digit and a letter
    r"(?P<name>[A-Za-z]+[0-9]+)",  # a name ending in digits (`eth0`, `ssh2`): kept as it is
    r"-?[0-9]+(?:[.,:-][0-9]+)*",  # number, decimal, date, time of day
)
_MASK = re2.compile("|".join(f"(?:{mask})" for mask in _MASKS))


def _masked(found: re2._Match) -> str:
    return str(found.group(0)) if found.group("name") else WILDCARD


_MAY_MASK = re2.compile(r"[0-9/]")  # every mask needs a digit or a slash (but a UUID or MAC of letters)
_CONTROL = re2.compile(r"[\x00-\x1f\x7f]")


def template_id(template: str) -> str:
    """A template's id: the first 12 hex digits of its text's SHA-256, the same on every run and machine."""
    return hashlib.sha256(template.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def tokens(message: str) -> list[str]:
    """A message's tokens with its variables masked: its first `MAX_TOKENS`, the rest one wildcard."""
    text = message[:MAX_MESSAGE_CHARS]
    if not text.isprintable():
        text = _CONTROL.sub(" ", text)
    if _MAY_MASK.search(text):  # RE2's Python substitution is slow: only where a mask can match
        text = _MASK.sub(_masked, text)
        while WILDCARD + WILDCARD in text:  # adjacent variables are one variable
            text = text.replace(WILDCARD + WILDCARD, WILDCARD)
    words: list[str] = text.split()
    # A list of variables (`blk_<*> blk_<*> blk_<*>`) is one variable, however long the list.
    words = [w for i, w in enumerate(words) if not (i and w == words[i - 1] and WILDCARD in w)]
    if len(words) > MAX_TOKENS:
        words = [*words[: MAX_TOKENS - 1], WILDCARD]
    return words


@dataclass
class Template:
    """One template: its tokens (`<*>` where its messages differ) and how many messages it holds."""

    tokens: list[str]
    count: int = 0

    @property
    def text(self) -> str:
        return " ".join(self.tokens)

    @property
    def id(self) -> str:
        return template_id(self.text)


@dataclass
class _Node:
    children: dict[str, _Node] = field(default_factory=dict)
    templates: list[int] = field(default_factory=list)  # indexes into TemplateMiner.templates (leaves)


class TemplateMiner:
    """Groups messages into templates, online: `add` each message, read `templates` at any time."""

    def __init__(self, similarity: float = SIMILARITY) -> None:
        self.similarity = similarity
        self.templates: list[Template] = []
        self._root = _Node()
        self._catch_all_index: int | None = None

    def add(self, message: str) -> int:
        """Mine one message; the index in `templates` of the template it joined or started."""
        words = tokens(message)
        leaf = self._leaf(words)
        best, score = self._most_similar(leaf, words)
        full = len(leaf.templates) >= MAX_LEAF_TEMPLATES or len(self.templates) >= MAX_TEMPLATES
        if best is None or (score < self.similarity and not full):
            if full:  # bounded: a hostile flood of distinct lines shares one catch-all template
                return self._catch_all()
            leaf.templates.append(len(self.templates))
            self.templates.append(Template(words, 1))
            return len(self.templates) - 1
        template = self.templates[best]
        template.tokens = [t if t == w else WILDCARD for t, w in zip(template.tokens, words, strict=True)]
        template.count += 1
        return best

    def add_all(self, messages: Iterable[str]) -> list[int]:
        return [self.add(message) for message in messages]

    def _leaf(self, words: list[str]) -> _Node:
        node = self._root.children.setdefault(str(len(words)), _Node())
        for word in words[:PREFIX_TOKENS]:
            key = WILDCARD if _variable(word) else word
            if key not in node.children and len(node.children) >= MAX_CHILDREN:
                key = WILDCARD
            node = node.children.setdefault(key, _Node())
        return node

    def _most_similar(self, leaf: _Node, words: list[str]) -> tuple[int | None, float]:
        """The leaf's template sharing most of the constant tokens of `words` (ties: the one with most
        wildcards); positions the masks made variables are no evidence either way."""
        best, best_key = None, (-1.0, -1)
        constants = sum(word != WILDCARD for word in words)
        for index in leaf.templates:
            same = wild = 0
            for mine, word in zip(self.templates[index].tokens, words, strict=True):
                if mine == WILDCARD:
                    wild += 1
                elif mine == word and word != WILDCARD:
                    same += 1
            key = (same / constants if constants else 1.0, wild)
            if key > best_key:
                best, best_key = index, key
        return best, best_key[0]

    def _catch_all(self) -> int:
        if self._catch_all_index is None:
            self._catch_all_index = len(self.templates)
            self.templates.append(Template([WILDCARD], 0))
        self.templates[self._catch_all_index].count += 1
        return self._catch_all_index


def _variable(word: str) -> bool:
    return WILDCARD in word or any(c.isdigit() for c in word)


@dataclass(frozen=True)
class Grouping:
    """Messages grouped: each message's line and template, and the templates, most messages first."""

    lines: list[tuple[int, Template]]
    templates: list[Template]


def group_messages(messages: Iterable[tuple[int, str, str | None]]) -> Grouping:
    """Group (line, message, fixed template) triples: a message with a fixed template (a traceback's
    group) takes it as it is, any other the template it mines to once every message is mined."""
    miner = TemplateMiner()
    fixed: dict[str, Template] = {}
    placed: list[tuple[int, Template | int]] = []
    for line, message, given in messages:
        if given is None:
            placed.append((line, miner.add(message)))
            continue
        known = fixed.setdefault(given, Template([given]))
        known.count += 1
        placed.append((line, known))
    by_text: dict[str, Template] = {}
    for mined in [*miner.templates, *fixed.values()]:  # two templates that ended up alike are one
        by_text.setdefault(mined.text, Template(mined.tokens, 0)).count += mined.count
    lines = [(line, by_text[(miner.templates[t] if isinstance(t, int) else t).text]) for line, t in placed]
    ranked = sorted((t for t in by_text.values() if t.count), key=lambda t: (-t.count, t.text))
    return Grouping(lines, ranked)


def plain_messages(path: str) -> Iterator[tuple[int, str, None]]:
    """The non-blank lines of a text file (- for stdin), numbered from 1, undecodable bytes replaced."""
    try:
        stream = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", path) from None
    with stream:
        try:
            for number, raw in enumerate(stream, 1):
                text = raw.decode("utf-8", "replace").rstrip("\r\n")
                if text.strip():
                    yield number, text, None
        except OSError as exc:
            raise InputError(f"cannot read: {exc.strerror or exc}", path) from None


# A spreadsheet runs a cell that starts with one of these as a formula: quoted so a log line cannot.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_rows(grouping: Grouping) -> str:
    """The CSV `line,template_id,template` of a grouping, a template that a spreadsheet would run as a
    formula prefixed with `'`."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("line", "template_id", "template"))
    for line, template in grouping.lines:
        text = template.text
        writer.writerow((line, template.id, "'" + text if text.startswith(_FORMULA_STARTS) else text))
    return out.getvalue()
