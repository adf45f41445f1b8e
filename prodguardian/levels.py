"""The severity a plain stdout/stderr line states in its own text.

Cloud Run gives a line written to stdout/stderr without a structured payload no severity (DEFAULT), though
the line often says it: `ERROR:root:…`. `stated_severity` reads that statement, after `strip_markup` removes
ANSI colour codes and loguru/rich markup. It looks only at the start of the first line (the first ~200
characters: a logging format puts the level near the start), so prose that merely mentions an error
("0 errors found", "error_count=0", "Handling errors gracefully") states nothing. The forms, with the rank
of `prodguardian.rules.SEVERITY_RANKS` each gives:

- a level word, optionally after a timestamp (`2025-10-11 12:00:01,123`, `2025/10/11 12:00:01`,
  `2025-10-11T12:00:01.000Z`, bracketed or not) and a bracketed pid/thread (`[8]`, `[main]`), delimited
  by ` - `, ` | `, a tab or spaces: Python logging (`ERROR:root:msg`, `… - app - ERROR - msg`), Flask
  (`[…] ERROR in app: msg`), loguru (`… | ERROR    | …`), gunicorn (`[…] [8] [ERROR] …`), uvicorn
  (`ERROR:    …`), Go log/slog (`2025/10/11 12:00:01 ERROR msg`), zap console (`…Z\\tERROR\\tmsg`), zerolog
  console (`2024-11-01T03:37:57Z ERR msg`, `3:04PM FTL msg`: TRC DBG INF WRN ERR FTL PNC),
  logback/log4j (`… ERROR 1 --- [main] …`, `… [main] ERROR c.e.App - …`), structlog (`… [error    ] msg`),
  JUL (`SEVERE: msg`). A bare word must be upper case (`ERROR`, `WARN`); a bracketed one (`[error]`) may
  be any case. logrus' `ERRO[0000]` too.
- logfmt within the first 200 characters: `level=error`, `lvl=eror`, `severity=WARNING`, quoted or not.
- glog/klog: `E1011 12:00:01.123 …` (I, W, E, F).
- Ruby Logger: `E, [2025-10-11T12:00:01.123 #1] ERROR -- : msg`.
- PHP: `PHP Fatal error:` / `PHP Parse error:` → CRITICAL, `PHP Warning:` → WARNING, `PHP Notice:` → NOTICE.
- Crashes: Go `panic: …` and `fatal error: …` → CRITICAL (a recovered `http: panic serving …` → ERROR);
  Python `Traceback (most recent call last):` → ERROR; Java `Exception in thread "…" …` → ERROR; Node's
  `UnhandledPromiseRejection` → ERROR; a Node or Java exception line (`TypeError: x is not a function`,
  `java.lang.IllegalStateException: …`) → ERROR only when the text goes on with `at` frames.

Words: TRACE/TRC/DEBUG/DBG → DEBUG; INFO/INF/SUCCESS → INFO; NOTICE; WARN/WRN/WARNING → WARNING;
ERROR/ERR/ERRO/EROR/SEVERE → ERROR; CRITICAL/CRIT/FATAL/FTL/PANIC/PNC/DPANIC → CRITICAL; ALERT;
EMERG/EMERGENCY → EMERGENCY.

The pipeline uses the stated severity of a DEFAULT line where it would use the entry's own; a rule can opt
out with `match.infer_severity: false`, so its `severity` tests only what the entry itself carries.

Every pattern is anchored (or, for logfmt, starts with a literal) and runs on at most ~1000 characters, with
no nested or overlapping quantifiers: a hostile 32 KiB line costs microseconds.
"""

from __future__ import annotations

import re

from prodguardian import tracebacks
from prodguardian.rules import SEVERITY_RANKS

HEAD_CHARS = 200  # the level is always near the start
_RAW_HEAD_CHARS = 1000  # what markup stripping reads to give HEAD_CHARS of text

_WORDS = {
    "trace": "DEBUG",
    "trce": "DEBUG",
    "trc": "DEBUG",
    "debug": "DEBUG",
    "dbg": "DEBUG",
    "dbug": "DEBUG",
    "debu": "DEBUG",
    "info": "INFO",
    "inf": "INFO",
    "success": "INFO",
    "notice": "NOTICE",
    "warn": "WARNING",
    "wrn": "WARNING",
    "warning": "WARNING",
    "error": "ERROR",
    "err": "ERROR",
    "erro": "ERROR",
    "eror": "ERROR",
    "severe": "ERROR",
    "critical": "CRITICAL",
    "crit": "CRITICAL",
    "fatal": "CRITICAL",
    "fata": "CRITICAL",
    "ftl": "CRITICAL",
    "panic": "CRITICAL",
    "pnc": "CRITICAL",
    "pani": "CRITICAL",
    "dpanic": "CRITICAL",
    "alert": "ALERT",
    "emerg": "EMERGENCY",
    "emergency": "EMERGENCY",
}
RANKS = {word: SEVERITY_RANKS[level] for word, level in _WORDS.items()}
_GLOG = {"I": "INFO", "W": "WARNING", "E": "ERROR", "F": "CRITICAL"}
_PHP = {
    "Fatal error": "CRITICAL",
    "Parse error": "CRITICAL",
    "Catchable fatal error": "CRITICAL",
    "Warning": "WARNING",
    "Deprecated": "WARNING",
    "Notice": "NOTICE",
}

# Longest first, so the alternation takes `warning` before `warn`.
_ANY = "|".join(sorted(_WORDS, key=len, reverse=True))
_UPPER = "|".join(
    sorted((w.upper() for w in _WORDS if w not in ("trce", "debu", "pani", "fata")), key=len)[::-1]
)

_COLOUR = r"(?:bright_)?(?:black|red|green|yellow|blue|magenta|cyan|white)"
_RICH_TOKEN = (
    rf"(?:not )?(?:bold|dim|italic|underline|blink2?|reverse|strike|conceal|overline)"
    rf"|(?:on )?(?:{_COLOUR}|gr[ae]y\d{{1,3}}|#[0-9a-fA-F]{{6}}|color\(\d{{1,3}}\)"
    r"|rgb\(\d{1,3},\d{1,3},\d{1,3}\))"
    r"|link(?:=[^\]\s]*)?"
)
_LOGURU_TOKEN = (
    r"(?:light-)?(?:black|red|green|yellow|blue|magenta|cyan|white)(?:-ex)?"
    r"|bold|dim|normal|italic|underline|strike|reverse|blink|hide|level|lvl"
    r"|[bdnisuvlhkregymcw]|(?:fg|bg) [#\w(),]{1,20}"
)
_MARKUP = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves
    r"|\x1b\][^\x07\x1b]{0,512}(?:\x07|\x1b\\)"  # OSC: hyperlinks, titles
    r"|\x1b[@-Z\\-_]"  # other two-byte escapes
    rf"|\[/?(?:{_RICH_TOKEN})(?: (?:{_RICH_TOKEN})){{0,7}}\]|\[/\]"  # rich
    rf"|</?(?:{_LOGURU_TOKEN})>|</>"  # loguru
)

_TIMESTAMP = (
    r"\d{4}[-/]\d\d[-/]\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d{1,9})?(?:Z| ?[+-]\d\d:?\d\d)?"
    r"|\d\d:\d\d:\d\d(?:[.,]\d{1,9})?"
    r"|\d{1,2}:\d\d[AP]M"  # zerolog's console default (Go's time.Kitchen)
)
_LEVEL_TOKEN = rf"\[(?i:({_ANY})) *\]|({_UPPER})(?=[\s|:\]\[]|$)"
_PREFIXED = re.compile(
    rf"^(?:\[?(?:{_TIMESTAMP})\]?(?: \[[^\]]{{1,80}}\])?(?: \| | - |\t| +|:))?(?:{_LEVEL_TOKEN})"
)
_PYTHON_NAMED = re.compile(rf"^(?:{_TIMESTAMP}) - [^ ]{{1,200}} - ({_UPPER}) - ")
_LOGRUS = re.compile(r"^(DEBU|INFO|WARN|ERRO|FATA|PANI|TRAC)\[\d+\]")
_LOGFMT = re.compile(rf'(?:^| )(?:level|lvl|severity|loglevel)="?(?i:({_ANY}))(?:"| |$)')
_GLOG_LINE = re.compile(r"^([IWEF])\d{4} \d\d:\d\d:\d\d(?:\.\d{1,9})? ")
_RUBY = re.compile(rf"^[DIWEFA], \[[^\]]{{1,60}}\] +({_UPPER}) -- ")
_PHP_LINE = re.compile(r"^PHP (Fatal error|Parse error|Catchable fatal error|Warning|Deprecated|Notice): ")
_GO_CRASH = re.compile(r"^(?:panic|fatal error): ")
_GO_RECOVERED = re.compile(rf"^(?:{_TIMESTAMP}) http: panic serving ")
# Node's unhandled rejections, and an emitter's unhandled 'error' event (`[ioredis] Unhandled error event:`).
_UNHANDLED = re.compile(
    r"^(?:\(node:\d+\) |\[)?UnhandledPromiseRejection|^(?:\[[\w.-]{1,40}\] )?Unhandled '?error'? event"
)
_FRAME_AT = re.compile(r"^\s+at \S")


def strip_markup(text: str) -> str:
    """`text` without ANSI escape sequences and loguru/rich markup tags; `[ERROR]`, `list[int]` stay."""
    if "\x1b" not in text and "[" not in text and "<" not in text:
        return text
    return _MARKUP.sub("", text)


def stated_severity(text: str) -> int | None:
    """The rank (`SEVERITY_RANKS`) the start of `text` states, or None when it states none."""
    if not isinstance(text, str) or not text:
        return None
    head = strip_markup(text[:_RAW_HEAD_CHARS])[:HEAD_CHARS]
    first = head.partition("\n")[0].rstrip("\r")
    rank = _line_severity(first)
    if rank is not None:
        return rank
    if "\n" in text and tracebacks.is_start(first) and _has_at_frame(text):
        return SEVERITY_RANKS["ERROR"]
    return None


def _line_severity(line: str) -> int | None:
    if not line:
        return None
    if line.startswith(tracebacks.PYTHON_STARTS[0]) or line.startswith('Exception in thread "'):
        return SEVERITY_RANKS["ERROR"]
    if _GO_CRASH.match(line):
        return SEVERITY_RANKS["CRITICAL"]
    if _GO_RECOVERED.match(line) or _UNHANDLED.match(line):
        return SEVERITY_RANKS["ERROR"]
    match = _PYTHON_NAMED.match(line) or _RUBY.match(line)
    if match:
        return RANKS[match[1].lower()]
    match = _PREFIXED.match(line)
    if match:
        return RANKS[(match[1] or match[2]).lower()]
    match = _GLOG_LINE.match(line)
    if match:
        return SEVERITY_RANKS[_GLOG[match[1]]]
    match = _LOGRUS.match(line)
    if match:
        return RANKS[match[1].lower()] if match[1] != "TRAC" else SEVERITY_RANKS["DEBUG"]
    match = _PHP_LINE.match(line)
    if match:
        return SEVERITY_RANKS[_PHP[match[1]]]
    if "=" in line:
        match = _LOGFMT.search(line)
        if match:
            return RANKS[match[1].lower()]
    return None


def _has_at_frame(text: str) -> bool:
    """Whether the line after the first is a Node/Java `at` frame."""
    start = text.find("\n") + 1
    end = text.find("\n", start, start + _RAW_HEAD_CHARS)
    return _FRAME_AT.match(text[start : end if end >= 0 else start + _RAW_HEAD_CHARS]) is not None
