"""The exit-code promise: no input, environment or bug makes the CLI exit 1 (DEGRADED) or print a traceback.

Every failure is one line on stderr starting `prodguardian: ` and exit 3; a check that fails writes the
UNKNOWN report to --json-report. Cases that need a real process (stdin closed, stdout a broken pipe or a
full disk) run the CLI as a subprocess; the rest run it in this process.
"""

from __future__ import annotations

import gzip
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import IO

import pytest

from prodguardian import cli
from prodguardian.cli import main
from tests.fake_logging_server import FakeLoggingServer, Fault

REAL = Path(__file__).parent / "fixtures" / "real"
CRITICAL = REAL / "database-psycopg2-every-minute.json"  # a small real export whose status is CRITICAL
SEVERAL = REAL / "multi-service-go-java-node.json"
POSIX = pytest.mark.skipif(os.name != "posix", reason="POSIX file descriptors and pipes")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    """The single line of stderr, checked to be a ProdGuardian message and no traceback."""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("prodguardian: "), err
    assert "Traceback" not in err and "Exception ignored" not in err
    return lines[0]


def run_process(*argv: str, stdout: int | IO[bytes]) -> subprocess.CompletedProcess[bytes]:
    """The CLI in a process of its own, writing to `stdout`; its stderr captured."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRODGUARDIAN_")}
    command = [sys.executable, "-m", "prodguardian", *argv]
    return subprocess.run(command, stdout=stdout, stderr=subprocess.PIPE, env=env, timeout=120, check=False)


def _gzip_header() -> bytes:
    return gzip.compress(b"")[:10]


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        pytest.param(lambda packed: packed[: len(packed) // 2], "Compressed file ended", id="truncated"),
        pytest.param(lambda packed: packed[:-8] + b"\0" * 8, "CRC check failed", id="bad-checksum"),
        pytest.param(lambda packed: _gzip_header() + b"\xff" * 64, "invalid block type", id="corrupt-body"),
    ],
)
def test_a_corrupt_gzip_export_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, damage: object, said: str
) -> None:
    broken = tmp_path / "export.json.gz"
    broken.write_bytes(damage(gzip.compress(CRITICAL.read_bytes(), mtime=0)))  # type: ignore[operator]
    output = tmp_path / "status.txt"
    code, out, err = run(capsys, "check", "--source", str(broken), "--output", str(output))
    line = one_error_line(err)
    assert code == 3 and out == "" and not output.exists()
    assert line.startswith(f"prodguardian: error: {broken}: cannot read: ") and said in line


def test_json_nested_too_deep_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text('[{"jsonPayload": ' + "[" * 100_000 + "]" * 100_000 + "}]", encoding="utf-8")
    code, _, err = run(capsys, "check", "--source", str(deep))
    assert code == 3 and "nested too deeply" in one_error_line(err)


@pytest.mark.parametrize(
    ("content", "said"),
    [
        pytest.param("[1, 2, 3]", "none of its 3 values is a log entry", id="numbers"),
        pytest.param(
            '{"error": {"code": 403, "message": "Permission denied", "status": "PERMISSION_DENIED"}}',
            "its one value is not a log entry",
            id="an-api-error-saved-as-the-export",
        ),
    ],
)
def test_input_that_is_not_an_export_gives_no_report(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: str, said: str
) -> None:
    source = tmp_path / "export.json"
    source.write_text(content, encoding="utf-8")
    output = tmp_path / "status.md"
    code, out, err = run(capsys, "check", "--source", str(source), "--output", str(output))
    line = one_error_line(err)
    assert code == 3 and out == "" and not output.exists()
    assert line.startswith(f"prodguardian: error: {source}: not a Cloud Logging export: ") and said in line


def test_a_service_the_input_does_not_hold_says_which_it_does(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "check", "--source", str(SEVERAL), "--service", "nope")
    line = one_error_line(err)
    assert code == 3 and out == ""
    assert f"{SEVERAL}: no entries of service 'nope'; the input holds " in line
    assert all(name in line for name in ("go-gateway (", "java-billing (", "web-frontend ("))


def test_an_output_that_cannot_be_written_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "a-file").write_text("", encoding="utf-8")
    output = tmp_path / "a-file" / "status.txt"
    code, out, err = run(capsys, "check", "--source", str(CRITICAL), "--output", str(output))
    assert code == 3 and out == ""
    assert one_error_line(err).startswith(f"prodguardian: error: {output}: cannot write: ")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux device numbers")
def test_output_to_a_full_device_is_exit_3_and_the_device_stays(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    full = tmp_path / "full"  # a /dev/full of its own: the real one is never at risk
    try:
        os.mknod(full, stat.S_IFCHR | 0o666, os.makedev(1, 7))
        full.open("rb").close()
    except OSError as exc:
        pytest.skip(f"cannot make a device node here: {exc}")
    code, _, err = run(capsys, "check", "--source", str(CRITICAL), "--output", str(full))
    assert code == 3 and "cannot write: No space left on device" in one_error_line(err)
    assert stat.S_ISCHR(full.stat().st_mode)


def test_a_bug_is_one_line_and_exit_3(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def bug(*_: object) -> None:
        raise KeyError("thread_id\nsecond line \x1b[31m")  # a bug, with a message quoting a log

    monkeypatch.setattr(cli, "run_check", bug)
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    report = tmp_path / "status.json"
    code, out, err = run(capsys, "check", "--source", str(CRITICAL), "--json-report", str(report))
    assert code == 3 and out == ""
    assert one_error_line(err) == (
        "prodguardian: internal error: KeyError: 'thread_id\\nsecond line \\x1b[31m'"
        " — set PRODGUARDIAN_DEBUG=1 for the traceback"
    )
    written = json.loads(report.read_text(encoding="utf-8"))
    assert written["status"] == "UNKNOWN" and written["reason"].startswith("internal error: KeyError: ")
    monkeypatch.setenv(cli.DEBUG_ENV, "1")
    code, _, err = run(capsys, "check", "--source", str(CRITICAL))
    assert code == 3 and err.startswith("Traceback (most recent call last):")
    assert (
        err.splitlines()[-1] == "prodguardian: internal error: KeyError: 'thread_id\\nsecond line \\x1b[31m'"
    )


def test_a_failed_check_replaces_the_json_report_with_unknown(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    report, text = tmp_path / "status.json", tmp_path / "status.txt"
    code, _, _ = run(
        capsys, "check", "--source", str(CRITICAL), "--json-report", str(report), "--output", str(text)
    )
    assert code == 2 and json.loads(report.read_text(encoding="utf-8"))["status"] == "CRITICAL"
    gone = tmp_path / "gone.json"
    code, out, err = run(
        capsys, "check", "--source", str(gone), "--json-report", str(report), "--output", str(text)
    )
    assert code == 3 and out == "" and f"{gone}: No such file or directory" in one_error_line(err)
    written = json.loads(report.read_text(encoding="utf-8"))
    assert written["status"] == "UNKNOWN" and written["reason"] == f"{gone}: No such file or directory"
    assert written["findings"] == [] and written["service"] is None
    assert text.read_text(encoding="utf-8").startswith("🔴"), "the text report is only ever written whole"


def test_logs_that_cannot_be_fetched_replace_the_json_report_with_unknown(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    fake_logging_server: FakeLoggingServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A cron job whose credentials lost their role: the status file says UNKNOWN and why."""
    monkeypatch.setenv("LOGGING_EMULATOR_HOST", fake_logging_server.host)
    fake_logging_server.inject_always(Fault(status=403))
    report = tmp_path / "status.json"
    report.write_text('{"status": "OK"}', encoding="utf-8")
    argv = [
        "check",
        "--service",
        "emergence-app",
        "--project",
        "emergence-469005",
        "--json-report",
        str(report),
    ]
    code, out, err = run(capsys, *argv, "--until", "2025-10-11T12:04:00Z", "--quiet")
    assert code == 3 and out == "" and "roles/logging.viewer" in one_error_line(err)
    written = json.loads(report.read_text(encoding="utf-8"))
    assert written["status"] == "UNKNOWN" and "roles/logging.viewer" in written["reason"]
    assert (written["service"], written["window"]["end"]) == ("emergence-app", "2025-10-11T12:04:00.000Z")


def test_bare_prodguardian_prints_its_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys)
    assert code == 0 and err == ""
    assert out.startswith("Usage: prodguardian") and "check" in out and "Examples:" in out


def test_every_message_has_the_prefix(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    mixed = tmp_path / "mixed.json"
    mixed.write_text(json.dumps([*json.loads(CRITICAL.read_text(encoding="utf-8")), 1]), encoding="utf-8")
    empty = tmp_path / "empty-rules"
    empty.mkdir()
    (tmp_path / "bad.yaml").write_text("rules:\n  - id: x\n    category: nope\n", encoding="utf-8")
    lines = []
    for argv in (
        ["check", "--source", str(mixed)],  # a warning
        ["demo", "--scenario", "healthy", "--export", str(tmp_path / "healthy.json")],  # what it wrote
        ["rules", "validate", str(empty), str(tmp_path)],  # a warning and errors
        ["fetch", "--until", "yesterday"],  # an error
    ):
        _, _, err = run(capsys, *argv)
        assert err, argv
        lines += err.splitlines()
    assert all(line.startswith("prodguardian: ") for line in lines), lines


@POSIX
def test_stdin_closed_is_one_line() -> None:
    done = subprocess.run(
        ["sh", "-c", 'exec "$0" -m prodguardian check --source - <&-', sys.executable],
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 3 and done.stdout == b""
    assert (
        one_error_line(done.stderr.decode()) == "prodguardian: error: <stdin>: cannot read: stdin is closed"
    )


@POSIX
def test_a_reader_that_stops_reading_ends_quietly(tmp_path: Path) -> None:
    """`prodguardian check | head -1`: no traceback, no "Exception ignored"; the check's status still
    stands (and its JSON report is written), a listing that could not be written whole exits 3."""
    report = tmp_path / "status.json"
    for argv, status in (
        (["check", "--source", str(CRITICAL), "--json-report", str(report)], 2),
        (["demo", "--list"], 3),
    ):
        reader, writer = os.pipe()
        os.close(reader)  # the reader is gone before anything is written
        try:
            done = run_process(*argv, stdout=writer)
        finally:
            os.close(writer)
        assert (done.returncode, done.stderr) == (status, b""), argv
    assert json.loads(report.read_text(encoding="utf-8"))["status"] == "CRITICAL"


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
def test_a_full_disk_on_stdout_is_one_line() -> None:
    with open("/dev/full", "wb") as full:  # opened, written to: never replaced
        done = run_process("check", "--source", str(CRITICAL), stdout=full)
    assert done.returncode == 3
    line = one_error_line(done.stderr.decode())
    assert line == "prodguardian: error: <stdout>: cannot write: No space left on device"
