"""`check --multivariate`: an IsolationForest over the hours names what made the window's hour unusual, never
a CRITICAL of its own, and a plain check never imports scikit-learn."""

from __future__ import annotations

import json
import subprocess
import sys

import jsonschema

from prodguardian.check import CheckOptions, run_check
from prodguardian.render import render
from prodguardian.resources import data_dir
from prodguardian.rules import RulePack
from prodguardian.simulate import generate

SCHEMA = json.loads((data_dir("templates") / "report.schema.json").read_text(encoding="utf-8"))


def test_a_slow_hour_is_unusual_for_its_latency(pack: RulePack) -> None:
    report = run_check(generate("slow"), CheckOptions(multivariate=True), pack).report
    mix = next(f for f in report.findings if f.kind == "mix")
    assert mix.severity == "DEGRADED" and mix.count == 24
    assert [f.name for f in mix.features] == ["latency_p95_ms", "latency_p50_ms"]
    assert mix.features[0].value > 2000 and 150 < mix.features[0].usual < 300
    text = render(report, "text")
    assert "⚠️ Unusual hour — unlike the baseline's 24 hours: p95 latency 2.4 s (hourly median 219 ms)" in text
    document = json.loads(render(report, "json"))
    jsonschema.validate(document, SCHEMA)
    assert (
        next(f for f in document["findings"] if f["kind"] == "mix")["features"][0]["name"] == "latency_p95_ms"
    )


def test_a_healthy_hour_is_not_unusual_and_a_mix_is_never_critical(pack: RulePack) -> None:
    healthy = run_check(generate("healthy", scale=0.1), CheckOptions(multivariate=True), pack).report
    assert healthy.status == "OK" and not [f for f in healthy.findings if f.kind == "mix"]
    outage = run_check(generate("db-outage", scale=0.1), CheckOptions(multivariate=True), pack).report
    mix = next(f for f in outage.findings if f.kind == "mix")
    assert mix.severity == "INFO" and mix.features[0].name == "failures_per_hour:database"


def test_a_plain_check_never_imports_scikit_learn() -> None:
    code = (
        "import sys\n"
        "from prodguardian.check import CheckOptions, run_check\n"
        "from prodguardian.simulate import generate\n"
        "run_check(generate('slow', scale=0.1), CheckOptions())\n"
        "print('sklearn' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
