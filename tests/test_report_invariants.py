"""Reports that never contradict themselves, over every simulator scenario and every real Cloud Run sample.

Each report is computed once (tests/reports.py) and rendered once per format and language. The invariants:
text and markdown carry the same numbers, in both languages; the JSON says what the text says (every finding's
numbers, every objective's value and mark, the HTTP line's counts); every rate is its count over its
denominator; no area is ✅ while it holds a finding or a missed objective; the objectives table is aligned.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from functools import cache
from typing import Any

import jsonschema
import pytest
from wcwidth import wcswidth

from prodguardian.render import Translator, render
from prodguardian.resources import data_dir
from prodguardian.simulate import SCENARIOS
from prodguardian.verdict import AREAS, Report
from tests.markdown import outside_code
from tests.reports import EXPECTED, builtin_pack, real_report, scenario_report

SCHEMA = json.loads((data_dir("templates") / "report.schema.json").read_text(encoding="utf-8"))
CASES = [f"scenario:{name}" for name in SCENARIOS] + [f"real:{name}" for name in sorted(EXPECTED)]
LANGS = ("en", "fr")
SEVERE = ("CRITICAL", "DEGRADED")


@dataclass(frozen=True)
class Page:
    """One service's report, rendered in every format and language."""

    report: Report
    text: dict[str, str]
    markdown: dict[str, str]
    json: dict[str, Any]


@cache
def pages(case: str) -> list[Page]:
    kind, _, name = case.partition(":")
    report = scenario_report(name) if kind == "scenario" else real_report(name)
    document = json.loads(render(report, "json"))
    jsonschema.validate(document, SCHEMA)
    reports, documents = (
        (report.services, document["services"]) if report.services else ([report], [document])
    )
    return [
        Page(
            one,
            {lang: render(one, "text", lang) for lang in LANGS},
            {lang: render(one, "markdown", lang) for lang in LANGS},
            doc,
        )
        for one, doc in zip(reports, documents, strict=True)
    ]


def numbers(text: str) -> list[str]:
    return re.findall(r"\d+", text)


def localized_numbers(markdown: str, lang: str) -> Counter[str]:
    """The program's own numbers (log text left out), written the same way whatever the language."""
    t = Translator(lang)
    text = outside_code(markdown)
    found = re.findall(rf"\d+(?:[{re.escape(t.thousands + t.decimal)}]\d+)*", text)
    return Counter(n.replace(t.thousands, "").replace(t.decimal, ".") for n in found)


@pytest.mark.parametrize("case", CASES)
def test_text_and_markdown_carry_the_same_numbers_in_both_languages(case: str) -> None:
    for page in pages(case):
        for lang in LANGS:
            assert numbers(page.text[lang]) == numbers(page.markdown[lang]), lang
        assert localized_numbers(page.markdown["en"], "en") == localized_numbers(page.markdown["fr"], "fr")


@pytest.mark.parametrize("case", CASES)
def test_the_json_says_what_the_text_says(case: str) -> None:
    t = Translator("en")
    for page in pages(case):
        text, document = page.text["en"], page.json
        title = text.splitlines()[0]
        assert (document["service"] or "(unnamed service)") in title
        assert t.num(document["totals"]["entries"]) in text.splitlines()[1]
        for finding in document["findings"]:
            summary = finding["summary"]
            assert t.num(finding["count"]) in summary
            if finding["rate"] is not None:
                assert finding["rate"] == pytest.approx(finding["count"] / finding["denominator"])
                share = f"{t.pct(finding['rate'])} of {t.num(finding['denominator'])}"
                assert share in summary and share in text
            if not finding["caused_by"] and (finding["kind"] == "failure" or finding["severity"] in SEVERE):
                assert summary in text  # its block or its ℹ️ line
            if finding["value_ms"] is not None:
                assert t.ms(finding["value_ms"]) in summary
        rows = _objective_rows(text)
        for objective in document["objectives"]:
            label, _, rest = objective["summary"].partition(": ")
            value = rest.split(" (target ")[0]
            assert rows[label][:2] == [value, rest.split(" (target ")[1].rstrip(")")]
            assert rows[label][2] == {True: "✅", False: "❌", None: "—"}[objective["met"]]


@pytest.mark.parametrize("case", CASES)
def test_every_rate_is_its_count_over_its_denominator(case: str) -> None:
    t = Translator("en")
    for page in pages(case):
        metrics, totals = page.json["metrics"], page.json["totals"]
        if metrics is None:
            continue
        assert (totals["errors"], totals["requests"]) == (metrics["errors"], metrics["requests"])
        folded = (
            totals["echoes"] + totals["merged_lines"]
        )  # lines in `entries` that are no event of their own
        assert folded + totals["suppressed"] + totals["requests"] <= totals["entries"]
        for rate, count, denominator in (
            ("error_rate", "failed_requests", "requests"),
            ("websocket_error_rate", "websocket_failures", "websocket_connections"),
        ):
            if metrics[denominator]:
                assert metrics[rate] == pytest.approx(metrics[count] / metrics[denominator])
            else:
                assert metrics[rate] is None
        if metrics["requests"] and "✅ HTTP errors" in page.text["en"]:
            failed, requests = t.num(metrics["failed_requests"]), t.num(metrics["requests"])
            line = f"{t.pct(metrics['error_rate'])} ({failed} of {requests}"
            assert line in page.text["en"]


@pytest.mark.parametrize("case", CASES)
def test_no_area_is_ok_while_it_holds_a_finding_or_a_missed_objective(case: str) -> None:
    t = Translator("en")
    starts = {area: _fixed_start(t.lookup(f"ok.{area}")) for area in AREAS}
    for page in pages(case):
        text, document = page.text["en"], page.json
        ok_lines = [line[2:] for line in text.splitlines() if line.startswith("✅ ")]
        ok_areas = {area for area, start in starts.items() for line in ok_lines if line.startswith(start)}
        for area in ok_areas:
            categories = AREAS[area]
            mine = [f for f in document["findings"] if f["category"] in categories]
            assert not [f for f in mine if f["severity"] in SEVERE], (area, text)
            assert not [f for f in mine if f["kind"] == "failure"], (area, text)
            missed = [o for o in document["objectives"] if o["met"] is False]
            assert not [o for o in missed if _objective_category(o["metric"]) in categories], (area, text)
        if "✅ No anomaly detected" in text:
            assert document["status"] == "OK" and t("below_thresholds") not in text
        assert "(0 sessions)" not in text and "of 0 requests" not in text
        for lang in LANGS:  # the same checklist in both languages
            counts = [page.text[lang].count(mark) for mark in ("✅", "ℹ️", "❌", "⚠️")]
            assert counts == [page.text["en"].count(mark) for mark in ("✅", "ℹ️", "❌", "⚠️")]


@pytest.mark.parametrize("case", CASES)
def test_the_objectives_table_is_aligned_in_both_languages(case: str) -> None:
    for page in pages(case):
        for lang in LANGS:
            table = _objective_table(page.text[lang])
            if not table:
                continue
            columns = [_cell_columns(line) for line in table]
            assert all(len(c) == len(columns[1]) == 4 for c in columns[1:]), table
            assert len({tuple(c) for c in columns[1:]}) == 1, table
            assert columns[0][1:] == columns[1][1:3], table  # the header's "now" and "target" above them


@pytest.mark.parametrize("case", CASES)
def test_french_reports_use_french_typography(case: str) -> None:
    """A no-break space before ":", a narrow one before ";", "!" and "?" (log text, in code spans, aside)."""
    for page in pages(case):
        prose = outside_code(page.markdown["fr"])
        assert not re.search(r"[ \t][:;!?]", prose), prose
        assert not re.search(r"\d %", page.text["fr"]), page.text["fr"]


def _fixed_start(entry: Any) -> str:
    text = entry["other"] if isinstance(entry, dict) else entry
    return str(text).split("{")[0]


def _objective_category(metric: str) -> str:
    kind, _, name = metric.partition(":")
    if kind == "per_hour":
        return builtin_pack().by_id(name).category
    return {
        "websocket_error_rate": "websocket",
        "http_error_rate": "http_5xx",
        "latency_p95_ms": "latency",
    }.get(kind, name)


def _objective_table(text: str) -> list[str]:
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(("Objectives ", "Objectifs "))), None)
    if start is None:
        return []
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    return lines[start:end]


def _objective_rows(text: str) -> dict[str, list[str]]:
    """label → [now, target, mark] from the text report's objectives table."""
    rows = {}
    for line in _objective_table(text)[1:]:
        label, value, target, mark = re.split(r" {2,}", line.strip())
        rows[label] = [value, target, mark]
    return rows


def _cell_columns(line: str) -> list[int]:
    """The display column where each cell of a table line starts (cells are 2 or more spaces apart)."""
    return [wcswidth(line[: m.start()]) for m in re.finditer(r"(?:(?<= {2})|^ *)\S", line)]
