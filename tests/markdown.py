"""Reading markdown as a CommonMark renderer would, to test what a log line can do to a report."""

from __future__ import annotations

import re


def outside_code(markdown: str) -> str:
    """The markdown without its fenced blocks and code spans (CommonMark: a run of n backticks opens a span
    that the next run of exactly n backticks closes; a run nothing closes is literal text)."""
    text = re.sub(r"^ *```.*?^ *```$", "", markdown, flags=re.M | re.S)
    out, i = [], 0
    for run in re.finditer(r"`+", text):
        if run.start() < i:
            continue
        close = re.compile(rf"(?<!`){run.group()}(?!`)").search(text, run.end())
        if close:
            out.append(text[i : run.start()])
            i = close.end()
    return "".join(out) + text[i:]
