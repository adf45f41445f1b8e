"""The CLI: exit codes, options, config and env settings, errors on one line, every command documented."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from prodguardian.cli import cli, main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("name", "code", "head"),
    [
        ("db-outage-2h", 2, "🔴 Production Status: CRITICAL"),
        ("healthy-2h", 0, "🟢 Production Status: OK"),
        ("slow-2h", 1, "🟡 Production Status: DEGRADED"),
    ],
)
def test_check_exit_codes_follow_the_status(
    capsys: pytest.CaptureFixture[str], exports: dict[str, Path], name: str, code: int, head: str
) -> None:
    rc, out, err = run(capsys, "check", "--source", str(exports[name]))
    assert (rc, out.splitlines()[0].split(" — ")[0], err) == (code, head, "")


def test_unknown_is_exit_3_and_says_why(capsys: pytest.CaptureFixture[str], exports: dict[str, Path]) -> None:
    rc, out, _ = run(
        capsys, "check", "--source", str(exports["healthy-2h"]), "--until", "2030-01-01T00:00:00Z"
    )
    assert rc == 3
    assert out.startswith("⚪ Production Status: UNKNOWN") and "silence is not health" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["check", "--source", "missing.json"],
            "prodguardian: error: missing.json: No such file or directory",
        ),
        (["check", "--source", "{garbage}", "--freshness", "soon"], "--freshness: 'soon' is not a duration"),
        (
            ["check", "--source", "x.json", "--until", "yesterday"],
            "--until: 'yesterday' is not an ISO 8601 time",
        ),
        (["check", "--format", "pdf"], "Invalid value for '--format'"),
        (["check", "--no-such-option"], "No such option '--no-such-option'"),
        (["demo", "--scenario", "meteor-strike"], "unknown scenario 'meteor-strike'"),
        (["check", "--rules", "does-not-exist"], "does-not-exist"),
    ],
)
def test_errors_are_one_line_and_exit_3(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    rc, out, err = run(capsys, *argv)
    assert rc == 3 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_bad_export_is_exit_3_naming_file_and_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.jsonl"
    broken.write_text(
        '{"timestamp": "2025-10-11T11:00:00Z", "logName": "x"}\n{"timestamp": \n', encoding="utf-8"
    )
    rc, out, err = run(capsys, "check", "--source", str(broken))
    assert rc == 3 and out == ""
    assert err.strip() == f"prodguardian: error: {broken}:2: invalid JSON Lines entry: unexpected end of data"
    empty = tmp_path / "empty.json"
    empty.write_bytes(b"")
    rc, out, _ = run(capsys, "check", "--source", str(empty))
    assert rc == 3 and "UNKNOWN" in out


def test_skipped_entries_warn_once(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, exports: dict[str, Path]
) -> None:
    entries = json.loads(exports["healthy-2h"].read_text(encoding="utf-8"))  # the newest first
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps([*entries[:500], 1, "two", {"timestamp": "never"}]), encoding="utf-8")
    _rc, out, err = run(capsys, "check", "--source", str(path), "--format", "json")
    assert json.loads(out)["totals"]["skipped"] == 3
    assert err.count("warning: skipped 3 entries") == 1
    path.write_text(
        json.dumps([*entries[:500], {**entries[0], "timestamp": "0001-01-01T00:00:00.5Z"}]), "utf-8"
    )
    rc, out, err = run(capsys, "check", "--source", str(path), "--format", "json")
    assert rc == 0 and json.loads(out)["totals"]["skipped"] == 1
    assert "warning: skipped 1 entry with no usable timestamp" in err, "one line, in the singular"


@pytest.mark.parametrize(
    ("option", "said"),
    [
        (
            ("--until", "9999-01-01"),
            "--until: '9999-01-01' is out of range: a window ends between 1970 and 2261",
        ),
        (("--until", "0001-01-01T00:00:00Z"), "--until: '0001-01-01T00:00:00Z' is out of range"),
        (("--freshness", "1000000w"), "--freshness: '1000000w' is longer than Cloud Logging keeps logs"),
        (
            ("--baseline", "99999d"),
            "--baseline: '99999d' is longer than Cloud Logging keeps logs (3,650 days)",
        ),
        (("--freshness", "0s"), "--freshness: '0s' is not a duration like 15m"),
    ],
)
def test_times_no_check_can_hold_are_one_line_errors(
    capsys: pytest.CaptureFixture[str], exports: dict[str, Path], option: tuple[str, str], said: str
) -> None:
    rc, out, err = run(capsys, "check", "--source", str(exports["healthy-2h"]), *option)
    assert rc == 3 and out == ""
    assert err.startswith(f"prodguardian: error: {said}") and len(err.splitlines()) == 1, err


def test_baseline_zero_judges_without_usual(
    capsys: pytest.CaptureFixture[str], exports: dict[str, Path]
) -> None:
    rc, out, _ = run(capsys, "check", "--source", str(exports["db-outage-2h"]), "--baseline", "0")
    assert rc == 2 and " · no baseline (--baseline 0) · " in out.splitlines()[1]
    assert "(usual" not in out, "no baseline was asked for: nothing is compared with one"
    rc, out, _ = run(
        capsys, "check", "--source", str(exports["db-outage-2h"]), "--baseline", "0s", "--lang", "fr"
    )
    assert rc == 2 and " · pas de référence (--baseline 0) · " in out.splitlines()[1]


def test_gzip_and_stdin(capsys: pytest.CaptureFixture[str], tmp_path: Path, exports: dict[str, Path]) -> None:
    data = exports["db-outage-2h"].read_bytes()  # the outage hour and one before: how it is read is tested
    packed = tmp_path / "export.json.gz"
    packed.write_bytes(gzip.compress(data))
    rc, out, err = run(capsys, "check", "--source", str(packed), "--format", "json")
    assert rc == 2, err
    assert json.loads(out)["status"] == "CRITICAL"
    piped = subprocess.run(  # a real pipe on stdin: a process of its own
        [sys.executable, "-m", "prodguardian", "check", "--source", "-", "--format", "json"],
        input=data,
        capture_output=True,
        check=False,
        timeout=120,
    )
    assert piped.returncode == 2, piped.stderr
    assert json.loads(piped.stdout)["status"] == "CRITICAL"


def test_output_file_is_written_whole(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, exports: dict[str, Path]
) -> None:
    target = tmp_path / "reports" / "status.md"
    rc, out, _ = run(
        capsys,
        "check",
        "--source",
        str(exports["db-outage-2h"]),
        "--format",
        "markdown",
        "--output",
        str(target),
        "--json-report",
        str(tmp_path / "status.json"),
    )
    assert rc == 2 and out == ""
    assert target.read_text(encoding="utf-8").startswith("## 🔴 Production Status: CRITICAL")
    assert json.loads((tmp_path / "status.json").read_text(encoding="utf-8"))["status"] == "CRITICAL"
    assert [p.name for p in target.parent.iterdir()] == ["status.md"]  # no temporary file left behind


def test_failed_run_leaves_an_existing_output_untouched(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    target = tmp_path / "status.txt"
    target.write_text("previous report", encoding="utf-8")
    bad = tmp_path / "bad.json"
    bad.write_text("[{", encoding="utf-8")
    rc, _, _ = run(capsys, "check", "--source", str(bad), "--output", str(target))
    assert rc == 3 and target.read_text(encoding="utf-8") == "previous report"


def test_settings_from_config_file_and_environment(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    exports: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("prodguardian.yaml").write_text(f"source: {exports['db-outage-2h']}\nlang: fr\n", encoding="utf-8")
    rc, out, _ = run(capsys, "check")
    assert rc == 2 and "Base de données indisponible" in out
    monkeypatch.setenv("PRODGUARDIAN_LANG", "en")
    rc, out, _ = run(capsys, "check")
    assert "Database unavailable" in out  # the environment beats the file
    rc, out, _ = run(capsys, "check", "--lang", "fr")
    assert "Base de données indisponible" in out  # the command line beats both
    Path("prodguardian.yaml").write_text("colour: blue\n", encoding="utf-8")
    rc, _, err = run(capsys, "check")
    assert rc == 3 and "prodguardian.yaml:1: unknown setting 'colour'; the settings are: baseline," in err


def test_demo_list_export_and_replay(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc, out, _ = run(capsys, "demo", "--list")
    assert rc == 0 and out.splitlines()[0].startswith("db-outage")
    export = tmp_path / "oom.json"
    rc, _, err = run(capsys, "demo", "--scenario", "memory-oom", "--export", str(export))
    assert rc == 0 and "wrote" in err
    rc, out, _ = run(capsys, "check", "--source", str(export))
    assert rc == 1 and "--memory=2Gi" in out
    rc, out, _ = run(capsys, "demo", "--scenario", "memory-oom")
    assert rc == 0 and "--memory=2Gi" in out


def test_rules_commands(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc, out, _ = run(capsys, "rules", "list")
    assert rc == 0 and "database-unavailable" in out and "bot-scan" in out
    rc, out, _ = run(capsys, "rules", "validate")
    assert rc == 0 and "OK" in out
    rc, out, _ = run(capsys, "rules", "test")
    assert rc == 0 and out.strip().endswith("0 failed")
    (tmp_path / "bad.yaml").write_text(
        "rules:\n  - id: x\n    category: nope\n    description: d\n", encoding="utf-8"
    )
    rc, _, err = run(capsys, "rules", "validate", str(tmp_path))
    assert rc == 3 and f"{tmp_path / 'bad.yaml'}:3:5: rule x: field category" in err
    (tmp_path / "bad.yaml").write_text(
        "rules:\n  - id: x\n    category: database\n    description: d\n    match: {message: boom}\n"
        "    thresholds: {critical: {count: 1}}\n    examples: {match: [bang]}\n",
        encoding="utf-8",
    )
    rc, out, err = run(capsys, "rules", "test", str(tmp_path))
    assert rc == 3 and "FAIL x" in err and "should match but did not" in err


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The user's commands (the hidden one is what an installed git hook runs: tests/test_hooks.py)."""
    found = []
    for name, command in group.commands.items():
        if command.hidden:
            continue
        found.append((*prefix, name))
        if isinstance(command, click.Group):
            found.extend(_commands(command, (*prefix, name)))
    return found


@pytest.mark.parametrize("path", _commands(cli))
def test_every_command_has_help_with_examples(
    capsys: pytest.CaptureFixture[str], path: tuple[str, ...]
) -> None:
    rc, out, _ = run(capsys, *path, "--help")
    assert rc == 0 and "Usage:" in out
    command = cli
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    if not isinstance(command, click.Group):
        assert "Example" in out


def test_every_command_is_in_the_readme() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    for path in _commands(cli):
        assert f"prodguardian {' '.join(path)}" in readme, path


def test_windows_console_encoding_survives(exports: dict[str, Path]) -> None:
    """A legacy code page (cp1252, as on a Windows console) must not crash on the report's emoji."""
    env = {**os.environ, "PYTHONIOENCODING": "cp1252"}
    result = subprocess.run(
        [sys.executable, "-m", "prodguardian", "check", "--source", str(exports["db-outage-2h"])],
        capture_output=True,
        env=env,
        check=False,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert result.stdout.decode("utf-8").startswith("🔴 Production Status: CRITICAL")
