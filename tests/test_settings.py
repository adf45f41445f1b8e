"""Settings: the config file's keys are the documented option names, each command's files are its own
(PRODGUARDIAN_OUTPUT is check's), and the `rules` commands load the pack `check` loads."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from prodguardian import cli
from prodguardian.cli import main
from prodguardian.simulate import generate
from prodguardian.source import FileSource, ReadOptions, write_export
from tests.fake_logging_server import FakeLoggingServer

README = Path(__file__).parent.parent / "README.md"
UNTIL = "2025-10-11T12:04:00Z"
RULE = """\
rules:
  - id: payment-declined
    category: http_5xx
    description: The payment provider declined a charge.
    match:
      kind: [app]
      severity: ERROR
      message: ['PaymentDeclined: card \\d+']
    thresholds:
      degraded: {count: 1}
    advice: ADVICE
    examples:
      match: ["PaymentDeclined: card 4242"]
      no_match: [EXAMPLE]
"""


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def outage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two hours of the emergence-app outage, as a gcloud export."""
    path = tmp_path_factory.mktemp("settings") / "outage.json"
    write_export(generate("db-outage", hours=2), str(path))
    return path


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory and no PRODGUARDIAN_ variable from the caller's environment."""
    monkeypatch.chdir(tmp_path)
    for name in [k for k in os.environ if k.startswith("PRODGUARDIAN_")]:
        monkeypatch.delenv(name)
    return tmp_path


def _rule_folder(folder: Path, *, advice: str = "investigate", no_match: str = "Payment accepted") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    text = RULE.replace("ADVICE", advice).replace("EXAMPLE", json.dumps(no_match))
    (folder / "payments.yaml").write_text(text, encoding="utf-8")
    return folder


def readme_config_example() -> str:
    """The config file example of the README, verbatim: the first yaml block after it names the file."""
    text = README.read_text(encoding="utf-8")
    after = text[text.index("from a `prodguardian.yaml`") :]
    found = re.search(r"```yaml\n(.*?)```", after, re.DOTALL)
    assert found, "the README shows a prodguardian.yaml"
    return found[1]


def test_the_readmes_config_example_loads(
    capsys: pytest.CaptureFixture[str], workdir: Path, outage: Path
) -> None:
    example = readme_config_example()
    Path("prodguardian.yaml").write_text(example, encoding="utf-8")
    for folder in re.findall(r"rules: \[(.*?)\]", example):
        _rule_folder(Path(folder))
    code, out, err = run(capsys, "check", "--source", str(outage), "--until", UNTIL)
    assert (code, err) == (2, "")
    assert out.startswith("🔴 État de la production\u00a0: CRITICAL — emergence-app"), "lang: fr"
    assert "Base de données indisponible" in out
    code, out, _ = run(capsys, "rules", "list")
    assert code == 0 and "payment-declined" in out, "rules: the README's folder"


def test_config_keys_values_and_where_errors_are(
    capsys: pytest.CaptureFixture[str], workdir: Path, outage: Path
) -> None:
    Path("prodguardian.yaml").write_text(
        f"source: {outage}\nuntil: {UNTIL}\nformat: json\nmax-entries: 5000\njson_report: status.json\n"
        "rules: ./ops/rules\n",  # one folder, not a list
        encoding="utf-8",
    )
    _rule_folder(Path("ops/rules"))
    code, out, _ = run(capsys, "check")
    assert code == 2 and json.loads(out)["status"] == "CRITICAL"
    assert json.loads(Path("status.json").read_text(encoding="utf-8"))["status"] == "CRITICAL"
    Path("prodguardian.yaml").write_text("service: emergence-app\nformat: pdf\n", encoding="utf-8")
    code, _, err = run(capsys, "check")
    assert code == 3 and err.startswith(
        "prodguardian: error: prodguardian.yaml:2: format: 'pdf' is not one of"
    )
    Path("prodguardian.yaml").write_text("service: [emergence-app\n", encoding="utf-8")
    code, _, err = run(capsys, "check")
    assert code == 3 and err.startswith("prodguardian: error: prodguardian.yaml:2:1: invalid YAML")


def test_output_settings_belong_to_their_command(
    capsys: pytest.CaptureFixture[str], workdir: Path, outage: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRODGUARDIAN_OUTPUT", "check.txt")
    monkeypatch.setenv("PRODGUARDIAN_JSON_REPORT", "check.json")
    monkeypatch.setenv("PRODGUARDIAN_DEMO_OUTPUT", "demo.txt")
    code, out, _ = run(capsys, "demo", "--scenario", "healthy")
    assert code == 0 and out == ""
    assert Path("demo.txt").read_text(encoding="utf-8").startswith("🟢 Production Status: OK")
    assert not Path("check.txt").exists() and not Path("check.json").exists()
    code, out, _ = run(capsys, "check", "--source", str(outage))
    assert code == 2 and out == "" and Path("check.txt").read_text(encoding="utf-8").startswith("🔴")
    assert json.loads(Path("check.json").read_text(encoding="utf-8"))["status"] == "CRITICAL"


def test_fetch_writes_where_its_own_setting_says(
    capsys: pytest.CaptureFixture[str],
    workdir: Path,
    fake_logging_server: FakeLoggingServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LOGGING_EMULATOR_HOST", fake_logging_server.host)
    fake_logging_server.add(generate("db-outage", hours=2))
    monkeypatch.setenv("PRODGUARDIAN_OUTPUT", "check.txt")
    Path("prodguardian.yaml").write_text(
        f"service: emergence-app\nproject: emergence-469005\nuntil: {UNTIL}\nfetch_output: window.json\n",
        encoding="utf-8",
    )
    code, _, err = run(capsys, "fetch", "--quiet")
    assert (code, err) == (0, "")
    assert not Path("check.txt").exists()
    assert len(json.loads(Path("window.json").read_text(encoding="utf-8"))) > 1000


def test_rules_commands_load_the_pack_check_loads(
    capsys: pytest.CaptureFixture[str], workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = _rule_folder(workdir / "team-rules", no_match="PaymentDeclined: card 1")  # an example that fails
    monkeypatch.setenv("PRODGUARDIAN_RULES", str(mine))
    code, out, _ = run(capsys, "rules", "list")
    assert code == 0 and "payment-declined" in out and str(mine / "payments.yaml") in out
    code, out, err = run(capsys, "rules", "test")
    assert code == 3 and "prodguardian: FAIL payment-declined" in err and "should not match but did" in err
    monkeypatch.delenv("PRODGUARDIAN_RULES")
    Path("prodguardian.yaml").write_text(f"rules: [{mine}]\n", encoding="utf-8")
    code, out, _ = run(capsys, "rules", "list")
    assert code == 0 and "payment-declined" in out
    code, out, _ = run(capsys, "rules", "validate")
    builtin = len(list((Path(__file__).parent.parent / "rules").glob("*.yaml")))
    assert code == 0 and out.strip().endswith(f"OK in {builtin + 1} files")


def test_rules_validate_rejects_unknown_advice_and_warns_on_an_empty_folder(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    mine = _rule_folder(workdir / "team-rules", advice="reboot-the-server")
    empty = workdir / "empty"
    empty.mkdir()
    code, out, err = run(capsys, "rules", "validate", str(mine), str(empty))
    assert code == 3 and out == ""
    lines = err.splitlines()
    assert lines[0] == f"prodguardian: warning: {empty}: no .yaml or .yml file in this folder defines a rule"
    assert lines[1].startswith(
        f"prodguardian: error: {mine / 'payments.yaml'}:11:5: rule payment-declined: field advice: "
        "'reboot-the-server' is not one of: "
    )
    assert "database_reconnect" in lines[1] and len(lines) == 2


def test_every_setting_is_in_the_readme() -> None:
    text = README.read_text(encoding="utf-8")
    table = text[text.index("| setting (file key) |") : text.index("### Output files")]
    for _, option in cli._settings(cli.cli):
        assert f"`{option.setting}`" in table and f"`{option.envvar}`" in table, option.setting


def test_read_knobs_come_from_option_then_environment_then_file(
    capsys: pytest.CaptureFixture[str], workdir: Path, outage: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[ReadOptions] = []

    def recorded(path: str, read: ReadOptions) -> FileSource:
        seen.append(read)
        return FileSource(path, read)

    monkeypatch.setattr(cli, "FileSource", recorded)
    Path("prodguardian.yaml").write_text(f"source: {outage}\nworkers: 1\npart-size: 8\n", encoding="utf-8")
    assert run(capsys, "check")[0] == 2
    monkeypatch.setenv("PRODGUARDIAN_WORKERS", "2")
    assert run(capsys, "check")[0] == 2
    assert run(capsys, "check", "--workers", "3", "--part-size", "64")[0] == 2
    assert seen == [
        ReadOptions(workers=1, part_bytes=8 << 20),
        ReadOptions(workers=2, part_bytes=8 << 20),
        ReadOptions(workers=3, part_bytes=64 << 20),
    ]


def test_live_knobs_reach_the_read(
    capsys: pytest.CaptureFixture[str],
    workdir: Path,
    fake_logging_server: FakeLoggingServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_logging_server.add(generate("db-outage", hours=2))
    monkeypatch.setenv("LOGGING_EMULATOR_HOST", fake_logging_server.start_grpc())
    Path("prodguardian.yaml").write_text("transport: grpc\ncalls_per_second: 1000\n", encoding="utf-8")
    code, out, err = run(
        capsys, "check", "--service", "emergence-app", "--project", "emergence-469005", "--until", UNTIL, "-q"
    )
    assert (code, err) == (2, "") and out.startswith("🔴 Production Status: CRITICAL")
    assert fake_logging_server.calls and {c.transport for c in fake_logging_server.calls} == {"grpc"}


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "PRODGUARDIAN_WORKERS",
            "abc",
            "'--workers' (env var: 'PRODGUARDIAN_WORKERS'): 'abc' is not a valid",
        ),
        ("PRODGUARDIAN_PART_SIZE", "0", "'--part-size' (env var: 'PRODGUARDIAN_PART_SIZE'): 0 is not in the"),
        ("PRODGUARDIAN_LOGGING_TRANSPORT", "pigeon", "'pigeon' is not one of 'http', 'grpc'"),
        (
            "PRODGUARDIAN_CALLS_PER_SECOND",
            "0",
            "'--calls-per-second' (env var: 'PRODGUARDIAN_CALLS_PER_SECOND')",
        ),
    ],
)
def test_a_bad_knob_is_one_line_and_exit_3(
    capsys: pytest.CaptureFixture[str],
    workdir: Path,
    outage: Path,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    message: str,
) -> None:
    monkeypatch.setenv(variable, value)
    code, out, err = run(capsys, "check", "--source", str(outage))
    assert (code, out) == (3, "")
    assert err.startswith("prodguardian: error: Invalid value for ") and message in err
    assert len(err.splitlines()) == 1
    monkeypatch.delenv(variable)
    Path("prodguardian.yaml").write_text("workers: many\n", encoding="utf-8")
    code, _, err = run(capsys, "check", "--source", str(outage))
    assert code == 3 and err.startswith("prodguardian: error: prodguardian.yaml:1: workers: 'many' is not a")
