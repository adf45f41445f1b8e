"""Rules as data: schema-validated, RE2, errors that name file:line:column, rule and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from prodguardian.errors import RuleError
from prodguardian.rules import CATEGORIES, RulePack, collect_pack, compile_regex, load_pack
from prodguardian.ruletest import run_examples

GOOD = """\
rules:
  - id: payment-declined
    category: http_5xx
    description: The payment provider declined.
    match:
      kind: [app]
      severity: ERROR
      message: 'PaymentDeclined: card \\d+'
    thresholds:
      degraded: {count: 1}
    examples:
      match: ["PaymentDeclined: card 4242"]
      no_match: ["Payment accepted"]
"""


def write(folder: Path, text: str, name: str = "custom.yaml") -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_builtin_pack_loads_every_category(pack: RulePack) -> None:
    assert {r.category for r in pack.rules} == set(CATEGORIES)
    assert len({r.id for r in pack.rules}) == len(pack.rules)
    assert {o.id for o in pack.objectives} >= {"websocket_error_rate", "database_errors", "latency_p95"}


def test_builtin_rules_pass_their_own_examples(pack: RulePack) -> None:
    results = run_examples(pack)
    failed = [(r.rule, r.example) for r in results if not r.passed]
    assert failed == []
    assert sum(r.expected for r in results) >= 20 and sum(not r.expected for r in results) >= 15


def test_every_rule_regex_is_re2_and_pushable(pack: RulePack) -> None:
    for pattern in pack.pushdown_regexes():
        compile_regex(pattern)
    pushed = pack.pushdown_regexes()
    assert any("Memory limit" in p for p in pushed)
    assert not any("reconnection" in p for p in pushed)  # a WARNING rule: the severity clause pulls it


def test_extra_directory_adds_and_replaces_rules(tmp_path: Path) -> None:
    write(tmp_path, GOOD)
    write(
        tmp_path,
        GOOD.replace("payment-declined", "http-5xx").replace("PaymentDeclined: card \\d+", "x"),
        "override.yaml",
    )
    pack = load_pack([str(tmp_path)])
    assert pack.by_id("payment-declined").match.message == "PaymentDeclined: card \\d+"
    assert pack.by_id("http-5xx").origin.startswith(str(tmp_path))
    assert [r.id for r in pack.rules].count("http-5xx") == 1
    assert all(r.passed for r in run_examples(pack) if r.rule == "payment-declined")


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        (
            GOOD.replace("      severity: ERROR\n", "      severity: ERROR\n      colour: red\n"),
            ":8:7",
            "rule payment-declined: field match.colour: unknown field 'colour'",
        ),
        (
            GOOD.replace("category: http_5xx", "category: payments"),
            ":3:5",
            "rule payment-declined: field category: 'payments' is not one of",
        ),
        (
            GOOD.replace("'PaymentDeclined: card \\d+'", "'(?=lookahead)'"),
            ":8:7",
            "rule payment-declined: field match.message: not a valid RE2 regex: invalid perl operator: (?=",
        ),
        (
            GOOD.replace("    description: The payment provider declined.\n", ""),
            ":2:5",
            "rule payment-declined: field (file): 'description' is required",
        ),
        (
            GOOD.replace("id: payment-declined", "id: Payment Declined"),
            ":2:5",
            "field id: 'Payment Declined' does not match",
        ),
        ("rules:\n  - id: x\n    category: [unclosed\n", ":4:1", "invalid YAML"),
        (
            GOOD.replace("    thresholds:\n      degraded: {count: 1}\n", ""),
            ":2:5",
            "rule payment-declined: field thresholds: a failure rule needs thresholds",
        ),
    ],
    ids=["unknown-field", "bad-category", "not-re2", "missing-field", "bad-id", "bad-yaml", "no-thresholds"],
)
def test_rule_errors_name_file_line_column_rule_and_field(
    tmp_path: Path, text: str, where: str, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(RuleError) as caught:
        load_pack([str(tmp_path)])
    text_of_error = str(caught.value)
    assert text_of_error.startswith(f"{path}{where}"), text_of_error
    assert message in text_of_error


def test_validate_collects_every_error(tmp_path: Path) -> None:
    write(tmp_path, GOOD.replace("category: http_5xx", "category: nope"), "a.yaml")
    write(
        tmp_path,
        GOOD.replace("payment-declined", "second").replace("kind: [app]", "kind: [printer]"),
        "b.yaml",
    )
    _, errors = collect_pack([str(tmp_path)], builtin=False)
    assert len(errors) == 2
    assert {Path(str(e.where).split(":")[0]).name for e in errors} == {"a.yaml", "b.yaml"}


def test_a_hostile_line_cannot_hang_a_rule() -> None:
    """RE2 is linear: the classic catastrophic-backtracking pattern returns at once."""
    regex = compile_regex("(a+)+$")
    assert regex.search("a" * 100_000 + "!") is None
