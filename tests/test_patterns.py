"""Templates of log messages: the miner, the unknown errors' new-error findings, `prodguardian patterns`."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import io
import json
import sys
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from prodguardian import patterns
from prodguardian.check import CheckOptions, run_check
from prodguardian.cli import main
from prodguardian.history import History
from prodguardian.patterns import TemplateMiner, template_id, tokens
from prodguardian.render import render
from prodguardian.rules import RulePack
from prodguardian.simulate import generate
from prodguardian.state import StateStore
from prodguardian.tracebacks import trace_group
from prodguardian.verdict import Report
from tests import logs
from tests.reports import scenario_report

BENCHMARK = Path(__file__).parent.parent / "benchmarks" / "bench_patterns.py"
KEYERROR = "KeyError at src/backend/features/threads/service.py in get_thread"


def mine(*messages: str) -> list[str]:
    miner = TemplateMiner()
    assigned = miner.add_all(messages)
    return [miner.templates[index].text for index in assigned]


def test_variables_are_masked_whatever_their_kind() -> None:
    found = mine(
        "Fetch 3f2b9c1e-8d4a-4f6b-9e2d-1a2b3c4d5e6f from 10.0.0.12:8080 failed after 1.5 s (0x7f3a)",
        "Fetch 0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d from 192.168.1.1 failed after 30 s (0xdeadbeef)",
    )
    assert found == ["Fetch <*> from <*> failed after <*> s (<*>)"] * 2
    assert tokens("read /var/lib/app/db.sqlite at https://x.example/a?b=1 id=9f86d081884c7d65")[1:] == [
        "<*>",
        "at",
        "<*>",
        "id=<*>",
    ]
    # Names that end in digits are words, not numbers; a list of variables is one variable.
    assert tokens("eth0 up, ssh2 ok") == ["eth0", "up,", "ssh2", "ok"]
    assert tokens("delete blk_1 blk_-2 blk_3 now") == ["delete", "blk_<*>", "now"]


def test_messages_group_by_what_they_say() -> None:
    found = mine(
        "Failed to sync 12 items for user alice",
        "Connection reset by peer",
        "Failed to sync 3 items for user bob",
        "Failed to sync 40 items for user carol",
    )
    assert found == [
        "Failed to sync <*> items for user <*>",
        "Connection reset by peer",
        "Failed to sync <*> items for user <*>",
        "Failed to sync <*> items for user <*>",
    ]


def test_template_ids_are_stable_hashes() -> None:
    text = "Failed to sync <*> items for user <*>"
    assert template_id(text) == hashlib.sha256(text.encode()).hexdigest()[:12] == "d48b56ee8055"
    assert patterns.Template(text.split()).id == template_id(text)


def test_hostile_lines_cost_bounded_work(monkeypatch: pytest.MonkeyPatch) -> None:
    huge = "x=1 " * 500_000 + "\x1b[31m\x00\u202e"
    assert len(tokens(huge)) <= patterns.MAX_TOKENS
    assert all(not any(ord(c) < 32 for c in word) for word in tokens("a\x00b\x1b[2Jc"))
    monkeypatch.setattr(patterns, "MAX_TEMPLATES", 5)
    miner = TemplateMiner()
    miner.add_all(f"word{i} apple{i} pear{i}" for i in range(50))
    assert len(miner.templates) == 5  # full: a message joins the most similar template of its leaf
    miner.add_all(f"{i} of a new length" for i in range(3))
    assert len(miner.templates) == 6 and miner.templates[-1].tokens == ["<*>"]  # or the one catch-all
    assert sum(t.count for t in miner.templates) == 53


def test_a_traceback_is_grouped_by_exception_and_innermost_frame() -> None:
    assert (
        trace_group("KeyError", "src/threads.py", "get_thread") == "KeyError at src/threads.py in get_thread"
    )
    assert trace_group("KeyError", None, None) == "KeyError"


def test_grouping_reaches_published_accuracy_on_loghub(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.spec_from_file_location("bench_patterns", BENCHMARK)
    assert spec and spec.loader
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, bench)  # its dataclasses look their module up
    spec.loader.exec_module(bench)
    if not bench.DEFAULT_DATA.is_dir():
        pytest.skip(f"no loghub-2k data at {bench.DEFAULT_DATA} (../shared/data, beside the clone)")
    scores = [
        bench.score_system(folder) for folder in sorted(bench.DEFAULT_DATA.iterdir()) if folder.is_dir()
    ]
    assert len(scores) == 14
    accuracy = sum(s.grouping_accuracy for s in scores) / len(scores)
    f1 = sum(s.template_f1 for s in scores) / len(scores)
    assert accuracy > bench.PUBLISHED_DRAIN["grouping_accuracy"]
    assert f1 > bench.PUBLISHED_DRAIN["template_f1"]


# -- new errors in the check -------------------------------------------------------------------------------


def test_a_bad_deploys_keyerror_is_a_new_error_with_its_evidence() -> None:
    report = scenario_report("bad-deploy")
    new = [f for f in report.findings if f.kind == "new_error"]
    assert [(f.group, f.count, f.severity) for f in new] == [(KEYERROR, 12, "DEGRADED")]
    assert new[0].template_id == template_id(KEYERROR)
    evidence = new[0].evidence
    assert evidence is not None and evidence.revisions == ["emergence-app-00298-xyz"]
    assert evidence.examples == ["KeyError: 'thread_id'"]
    assert f"{evidence.first_seen:%H:%M:%S}" == "11:35:14"
    # The same failures are not told twice: no unknown-error finding beside the new error.
    assert not [f for f in report.findings if f.rule == "unknown-error" and f.kind == "failure"]
    http = next(f for f in report.findings if f.rule == "http-5xx")
    assert http.caused_by == "unknown-error"  # its 500s stand under the new error
    document = json.loads(render(report, "json"))
    assert document["patterns"] == [
        {
            "id": template_id(KEYERROR),
            "template": KEYERROR,
            "kind": "traceback",
            "count": 12,
            "baseline_count": 0,
            "new": True,
            "first_seen": "2025-10-11T11:35:14.469Z",
            "last_seen": "2025-10-11T12:02:11.809Z",
            "revisions": ["emergence-app-00298-xyz"],
            "example": "KeyError: 'thread_id'",
            "summary": f"12 failures: {KEYERROR} · new",
        }
    ]
    text = render(report, "text")
    assert f"❌ New error: {KEYERROR} — 12 failures in 1 h (usual: 0/h)" in text
    assert f"Unknown errors by template\n  12 failures: {KEYERROR} · new\n" in text
    assert f"- 12 échecs\u00a0: `{KEYERROR}` · nouvelle" in render(report, "markdown", "fr")


def test_a_template_the_store_knows_is_not_new() -> None:
    options = CheckOptions(known_templates=frozenset({template_id(KEYERROR)}))
    report = run_check(generate("bad-deploy", hours=2), options).report  # the window and an hour
    assert not [f for f in report.findings if f.kind == "new_error"]
    assert [(p.template, p.new) for p in report.patterns] == [(KEYERROR, False)]
    assert report.status == "CRITICAL"  # still a spike of unknown errors behind 4% of requests failing


def unknown_report(entries: list[dict[str, Any]], pack: RulePack) -> Report:
    return run_check(entries, CheckOptions(until=logs.T0 + _HALF_HOUR), pack).report


_HALF_HOUR = timedelta(minutes=30)


def hourly(text: str, hours: range, per_hour: int = 2) -> list[dict[str, Any]]:
    return [
        logs.text_line(-hour * 3600 + i * 600, text.format(n=hour * 10 + i), "ERROR")
        for hour in hours
        for i in range(per_hour)
    ]


def test_a_template_seen_in_the_baseline_does_not_re_alert(pack: RulePack) -> None:
    traffic = [logs.request(i * 30, "/api/threads") for i in range(-60, 60)]
    usual = hourly("Sync job {n} gave up after 3 retries", range(1, 24))
    now = hourly("Sync job {n} gave up after 3 retries", range(0, 1))
    report = unknown_report(traffic + usual + now, pack)
    assert report.status == "OK"
    assert not [f for f in report.findings if f.kind == "new_error"]
    assert [(p.template, p.count, p.baseline_count, p.new) for p in report.patterns] == [
        ("Sync job <*> gave up after <*> retries", 2, 46, False)
    ]
    assert "2 failures: Sync job <*> gave up after <*> retries · 46 in the baseline" in render(report, "text")
    # A message the baseline never held is new, even once, beside the known one.
    fresh = [logs.text_line(120, "Invoice 8812 has no customer", "ERROR")]
    report = unknown_report(traffic + usual + now + fresh, pack)
    new = [(f.group, f.count, f.severity) for f in report.findings if f.kind == "new_error"]
    assert new == [("Invoice <*> has no customer", 1, "DEGRADED")]
    assert report.status == "DEGRADED"


def _templates(report: Report) -> list[tuple[str, str, bool]]:
    return sorted((p.id, p.template, p.new) for p in report.patterns)


def test_incremental_checks_mine_the_templates_of_one_read_of_everything(
    tmp_path: Path, pack: RulePack
) -> None:
    """A check with a state store reads only what is new: its miner starts from the stored errors, so a
    message that generalises a stored template takes that template's id, and a baseline's is not new."""
    minute = 60
    traffic = [logs.request(i * 30, "/api/threads") for i in range(-6 * 60, 2 * 20)]
    baseline = [
        logs.text_line(-(150 - 20 * i) * minute, f"Sync for user {name} gave up", "ERROR")
        for i, name in enumerate(("alice", "bob", "alice", "bob"))
    ]
    first_part = [
        logs.text_line(-10 * minute, "Sync for user carol gave up", "ERROR"),
        logs.text_line(-5 * minute, "Refund for customer dave failed", "ERROR"),
    ]
    second_part = [
        logs.text_line(2 * minute, "Sync for user erin gave up", "ERROR"),
        logs.text_line(4 * minute, "Refund for customer frank failed", "ERROR"),
    ]
    export = sorted(traffic + baseline + first_part + second_part, key=lambda e: e["timestamp"])
    cut, end = logs.T0, logs.T0 + timedelta(minutes=10)

    def options(until: datetime) -> CheckOptions:
        return CheckOptions(until=until, baseline=timedelta(hours=2))

    def before(moment: datetime) -> list[dict[str, Any]]:
        return [e for e in export if e["timestamp"] < logs.stamp(moment)]

    with StateStore(tmp_path / "state.sqlite") as store:
        first = run_check(before(cut), options(cut), pack, history=History(store)).report
        rest = [e for e in export if e["timestamp"] >= logs.stamp(cut)]
        second = run_check(rest, options(end), pack, history=History(store)).report
    sync, refund = "Sync for user <*> gave up", "Refund for customer <*> failed"
    assert _templates(first) == _templates(run_check(before(cut), options(cut), pack).report)
    assert _templates(first) == [
        (template_id("Refund for customer dave failed"), "Refund for customer dave failed", True),
        (template_id(sync), sync, False),
    ]
    # The second read holds one Sync and one Refund message, each generalising what the first one stored.
    everything = run_check(export, options(end), pack).report
    assert _templates(second) == _templates(everything)
    assert sorted((p.template, p.count) for p in second.patterns) == sorted(
        (p.template, p.count) for p in everything.patterns
    )
    assert _templates(second) == sorted(
        [(template_id(refund), refund, True), (template_id(sync), sync, False)]
    )
    assert [f.group for f in second.findings if f.kind == "new_error"] == [refund]
    assert next(p for p in second.patterns if p.template == sync).count == 2  # carol's stored, erin's read
    # dave's failure was stored under his own template, which the second read generalised: it counts in it
    assert next(p for p in second.patterns if p.template == refund).count == 2
    assert [(f.group, f.count) for f in second.findings if f.kind == "new_error"] == [(refund, 2)]


def test_without_a_baseline_nothing_is_new(pack: RulePack) -> None:
    entries = [logs.request(i * 30, "/api/threads") for i in range(60)]
    entries.append(logs.text_line(120, "Invoice 8812 has no customer", "ERROR"))
    report = unknown_report(entries, pack)
    assert not [f for f in report.findings if f.kind == "new_error"]
    assert [p.new for p in report.patterns] == [False]


# -- prodguardian patterns -------------------------------------------------------------------------------


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["patterns", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_patterns_prints_each_lines_template_and_the_top_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(
        b"Failed to sync 12 items for user alice\n\nConnection reset by peer\r\n"
        b'Failed to sync 3 items for user bob\n=HYPERLINK("x")\n\xff\xfe broken bytes 7\n'
    )
    code, out, err = run_cli(capsys, str(log), "--top", "2")
    assert code == 0
    rows = list(csv.reader(io.StringIO(out)))
    sync, formula = "Failed to sync <*> items for user <*>", '=HYPERLINK("x")'
    assert rows == [
        ["line", "template_id", "template"],
        ["1", template_id(sync), sync],
        ["3", template_id("Connection reset by peer"), "Connection reset by peer"],
        ["4", template_id(sync), sync],
        ["5", template_id('=HYPERLINK("x")'), '\'=HYPERLINK("x")'],  # never a formula in a spreadsheet
        ["6", template_id("\ufffd\ufffd broken bytes <*>"), "\ufffd\ufffd broken bytes <*>"],
    ]
    assert err.splitlines() == [
        "prodguardian: 5 messages, 4 templates; top 2:",
        f"        2  {template_id(sync)}  {sync}",
        f"        1  {template_id(formula)}  {formula}",  # ties: by text
    ]


def test_patterns_of_an_export_groups_tracebacks_by_frame(
    exports: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(capsys, "--source", str(exports["bad-deploy-2h"]), "--top", "0")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    keyerrors = [row for row in rows if row["template"] == KEYERROR]
    assert len(keyerrors) == 12 and {row["template_id"] for row in keyerrors} == {template_id(KEYERROR)}
    assert err.startswith("prodguardian: ") and "templates" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("missing.log",), "prodguardian: error: missing.log: cannot read: No such file or directory\n"),
        (
            (),
            "prodguardian: error: give either FILE or --source EXPORT (try 'prodguardian patterns --help')\n",
        ),
    ],
)
def test_patterns_bad_input_is_one_line_and_exit_3(
    args: tuple[str, ...], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, *args)
    assert (code, out, err) == (3, "", message)


def test_an_export_that_is_not_one_is_an_input_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    code, out, err = run_cli(capsys, "--source", str(bad))
    assert code == 3 and out == "" and err.startswith(f"prodguardian: error: {bad}") and err[-1] == "\n"
    assert err.count("\n") == 1


def test_a_report_without_unknown_errors_lists_no_templates() -> None:
    report = scenario_report("healthy")
    assert report.patterns == [] and "Unknown errors by template" not in render(report, "text")
    assert json.loads(render(replace(report, services=[]), "json"))["patterns"] == []


def test_a_report_lists_the_top_five_templates_and_keeps_them_all(pack: RulePack) -> None:
    entries = [logs.request(i * 30, "/api/threads") for i in range(60)]
    kinds = ("Invoice", "Refund", "Coupon", "Order", "Basket", "Voucher", "Receipt")
    for n, kind in enumerate(kinds):  # Invoice 7 failures, Refund 6, ... Receipt 1
        entries += [
            logs.text_line(100 + n * 100 + i * 10, f"{kind} {i} has no customer", "ERROR")
            for i in range(7 - n)
        ]
    report = unknown_report(entries, pack)
    assert [(p.template, p.count) for p in report.patterns] == [
        (f"{kind} <*> has no customer", 7 - n) for n, kind in enumerate(kinds)
    ]
    document = json.loads(render(report, "json"))
    assert [p["template"] for p in document["patterns"]] == [p.template for p in report.patterns[:5]]
    section = render(report, "text").split("Unknown errors by template\n")[1].split("\n\n")[0]
    assert section.splitlines() == [f"  {p.count} failures: {p.template}" for p in report.patterns[:5]]
