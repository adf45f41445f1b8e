"""Rules as data: schema-validated, RE2, errors that name file:line:column, rule and field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import get_args

import jsonschema
import pytest
import yaml

from prodguardian.errors import Location, ProdGuardianError, RuleError
from prodguardian.resources import data_dir
from prodguardian.rules import (
    CATEGORIES,
    SCHEMA_FILE,
    Advice,
    RulePack,
    collect_pack,
    compile_regex,
    load_pack,
    schema_text,
)
from prodguardian.ruletest import run_examples
from prodguardian.verdict import ADVICE

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
    assert pack.by_id("http-5xx").origin == Location(str(tmp_path / "override.yaml"), 2, 5)
    assert [r.id for r in pack.rules].count("http-5xx") == 1
    assert all(r.passed for r in run_examples(pack, "payment-declined"))


RULE_LEVEL = GOOD.split("rules:\n", 1)[1]


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        (
            GOOD.replace("      severity: ERROR\n", "      severity: ERROR\n      colour: red\n"),
            (8, 7),
            "rule payment-declined: field match.colour: unknown field 'colour'",
        ),
        (
            GOOD.replace("category: http_5xx", "category: payments"),
            (3, 5),
            "rule payment-declined: field category: 'payments' is not one of: capacity, crash, database,",
        ),
        (
            GOOD.replace("'PaymentDeclined: card \\d+'", "'(?=lookahead)'"),
            (8, 7),
            "rule payment-declined: field match.message: not a valid RE2 regex: invalid perl operator: (?=",
        ),
        (
            GOOD.replace("'PaymentDeclined: card \\d+'", "['Payment', '(?=lookahead)']"),
            (8, 7),
            "rule payment-declined: field match.message[1]: not a valid RE2 regex",
        ),
        (
            GOOD.replace("    description: The payment provider declined.\n", ""),
            (2, 5),
            "rule payment-declined: field description: is required",
        ),
        (
            GOOD.replace("id: payment-declined", "id: Payment Declined"),
            (2, 5),
            "rule Payment Declined: field id: expected `str` matching regex",
        ),
        ("rules:\n  - id: x\n    category: [unclosed\n", (4, 1), "invalid YAML"),
        (
            GOOD.replace("    thresholds:\n      degraded: {count: 1}\n", ""),
            (2, 5),
            "rule payment-declined: a failure rule needs thresholds",
        ),
        (
            GOOD + "    advice: reboot\n",
            (14, 5),
            "rule payment-declined: field advice: 'reboot' is not one of: capacity, crash, database_flap",
        ),
        (
            GOOD.replace("kind: [app]", "kind: [app, printer]"),
            (6, 7),
            "rule payment-declined: field match.kind[1]: 'printer' is not one of: app, request, system,",
        ),
        (
            GOOD.replace("degraded: {count: 1}", "degraded: {count: 0}"),
            (10, 18),
            "rule payment-declined: field thresholds.degraded.count: expected `int` >= 1",
        ),
        (GOOD + RULE_LEVEL, (14, 5), "rule payment-declined: field id: duplicate id in this file"),
        (
            GOOD + "objectives:\n  - {id: p95, metric: latency_p95_ms, below: 900, at_most: 1000}\n",
            (15, 5),
            "objective p95: give exactly one of below and at_most",
        ),
        ("- id: payment-declined\n", (1, 1), "expected `object`, got `array`"),
    ],
    ids=[
        "unknown-field",
        "bad-category",
        "not-re2",
        "not-re2-in-a-list",
        "missing-field",
        "bad-id",
        "bad-yaml",
        "no-thresholds",
        "unknown-advice",
        "unknown-kind",
        "count-below-one",
        "duplicate-id",
        "objective-two-targets",
        "not-a-mapping",
    ],
)
def test_rule_errors_name_file_line_column_rule_and_field(
    tmp_path: Path, text: str, where: tuple[int, int], message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(RuleError) as caught:
        load_pack([str(tmp_path)])
    error = caught.value
    assert error.where == Location(str(path), *where), str(error)
    assert error.message.startswith(message), error.message
    assert str(error) == f"{path}:{where[0]}:{where[1]}: {error.message}"


OBJECTIVE = "objectives:\n  - {id: x, metric: http_error_rate, below: 1, extra: 1}\nrules:\n"
UNKNOWN_KEYS = {  # where: (text replaced, by what, the field the error names)
    "file": ("rules:\n", "extra: 1\nrules:\n", "field extra"),
    "rule": ("    category:", "    extra: 1\n    category:", "rule payment-declined: field extra"),
    "match": ("      kind:", "      extra: 1\n      kind:", "rule payment-declined: field match.extra"),
    "status": (
        "      kind: [app]",
        "      kind: [app]\n      status: {min: 500, extra: 1}",
        "rule payment-declined: field match.status.extra",
    ),
    "thresholds": (
        "    thresholds:\n",
        "    thresholds:\n      extra: {count: 1}\n",
        "rule payment-declined: field thresholds.extra",
    ),
    "threshold": (
        "{count: 1}",
        "{count: 1, extra: 1}",
        "rule payment-declined: field thresholds.degraded.extra",
    ),
    "examples": (
        "    examples:\n",
        "    examples:\n      extra: []\n",
        "rule payment-declined: field examples.extra",
    ),
    "objective": ("rules:\n", OBJECTIVE, "objective x: field extra"),
}


@pytest.mark.parametrize("where", UNKNOWN_KEYS)
def test_unknown_keys_are_rejected_everywhere_by_the_loader_and_by_the_shipped_schema(
    tmp_path: Path, where: str
) -> None:
    old, new, field = UNKNOWN_KEYS[where]
    text = GOOD.replace(old, new, 1)
    write(tmp_path, text)
    _, errors = collect_pack([str(tmp_path)], builtin=False)
    assert [e.message for e in errors] == [f"{field}: unknown field 'extra'"]
    shipped = json.loads((data_dir("rules") / SCHEMA_FILE).read_text(encoding="utf-8"))
    assert not jsonschema.Draft202012Validator(shipped).is_valid(yaml.safe_load(text))


def test_validate_collects_every_error(tmp_path: Path) -> None:
    write(tmp_path, GOOD.replace("category: http_5xx", "category: nope"), "a.yaml")
    write(
        tmp_path,
        GOOD.replace("payment-declined", "second").replace("kind: [app]", "kind: [printer]"),
        "b.yaml",
    )
    second = RULE_LEVEL.replace("payment-declined", "third") + "    advice: reboot\n"
    write(tmp_path, GOOD.replace("http_5xx", "nope") + second, "c.yaml")  # two errors in one file
    _, errors = collect_pack([str(tmp_path)], builtin=False)
    assert [(Path(e.where.path).name, e.where.line) for e in errors if isinstance(e.where, Location)] == [
        ("a.yaml", 3),
        ("b.yaml", 6),
        ("c.yaml", 3),
        ("c.yaml", 26),
    ]


def test_a_location_keeps_a_path_that_holds_colons(tmp_path: Path) -> None:
    """A structured location needs no parsing back: a Windows drive or a colon in a folder name is safe."""
    folder = tmp_path / "team:rules"
    path = write(folder, GOOD.replace("category: http_5xx", "category: payments"))
    _, errors = collect_pack([str(folder)], builtin=False)
    assert [e.where for e in errors] == [Location(str(path), 3, 5)]
    assert str(ProdGuardianError("message", "legacy.yaml:3")) == "legacy.yaml:3: message"
    assert (
        str(ProdGuardianError("message", Location("C:\\rules\\a.yaml", 3))) == "C:\\rules\\a.yaml:3: message"
    )


def test_shipped_schema_is_the_one_the_loader_uses() -> None:
    """rules/rules.schema.json is derived from the structs (`python -m prodguardian.rules` rewrites it)."""
    shipped = (data_dir("rules") / SCHEMA_FILE).read_text(encoding="utf-8")
    assert shipped == schema_text(), "rules/rules.schema.json is stale: run python -m prodguardian.rules"


def test_builtin_rule_files_point_editors_at_the_schema_and_pass_it() -> None:
    validator = jsonschema.Draft202012Validator(json.loads(schema_text()))
    files = sorted(data_dir("rules").glob("*.yaml"))
    assert files
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert text.startswith(f"# yaml-language-server: $schema=./{SCHEMA_FILE}\n"), path
        assert list(validator.iter_errors(yaml.safe_load(text))) == [], path


def test_advice_keys_are_the_ones_the_report_knows() -> None:
    assert set(get_args(Advice)) == set(ADVICE)


def test_readme_rule_example_is_a_valid_rule(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Writing a rule", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    write(tmp_path, example)
    rule = load_pack([str(tmp_path)], builtin=False).by_id("payment-declined")
    assert rule.match.kinds == ("app",) and rule.advice == "investigate"
    assert all(r.passed for r in run_examples(load_pack([str(tmp_path)]), "payment-declined"))


def test_a_hostile_line_cannot_hang_a_rule() -> None:
    """RE2 is linear: the classic catastrophic-backtracking pattern returns at once."""
    regex = compile_regex("(a+)+$")
    assert regex.search("a" * 100_000 + "!") is None
