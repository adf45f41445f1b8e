"""The public Python API: `import prodguardian` is cheap, its names are documented and typed, the README's
example runs as printed, and `check_logs` gives the CLI's report from every kind of source."""

from __future__ import annotations

import contextlib
import importlib
import io
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import prodguardian
from prodguardian.check import LogInput
from prodguardian.cli import main
from prodguardian.cloud import CloudSource
from prodguardian.simulate import generate
from prodguardian.source import write_export
from tests.fake_logging_server import FakeLoggingServer

ROOT = Path(__file__).resolve().parent.parent
UNTIL = "2025-10-11T12:04:00Z"
PROJECT = "emergence-469005"


@pytest.fixture(scope="module")
def outage() -> list[dict[str, Any]]:
    """Two hours of the emergence-app outage."""
    return list(generate("db-outage", hours=2))


@pytest.fixture(scope="module")
def export(outage: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("api") / "outage.json"
    write_export(outage, str(path))
    return path


def test_importing_the_package_loads_neither_pandas_nor_google() -> None:
    code = (
        "import sys, prodguardian; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'pandas', 'numpy', 'google', 'click'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert done.stdout.strip() == "[]"


def test_every_public_name_loads_and_says_what_it_is() -> None:
    for name in prodguardian.__all__:
        value = getattr(prodguardian, name)
        if callable(value) and name not in ("Status", "Severity"):  # Literals: their values say it
            doc = (value.__doc__ or "").strip()
            assert doc and not doc.startswith(f"{name}("), f"{name} has no docstring of its own"
    assert set(prodguardian.__all__) <= set(dir(prodguardian))
    with pytest.raises(AttributeError, match="no attribute 'check'"):
        prodguardian.__getattr__("check")  # the submodule's name is not a public function
    check_module = importlib.import_module("prodguardian.check")  # `import prodguardian.check` still works
    assert check_module.check_logs is prodguardian.check_logs
    assert importlib.import_module("prodguardian.render").render is prodguardian.render_report
    assert (ROOT / "prodguardian" / "py.typed").is_file()


def _readme_api_blocks() -> tuple[str, str]:
    """The README's Python API example and the output it shows."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Python API") :]
    found = re.search(r"```python\n(.*?)```\n\nprints\n\n```\n(.*?)```", section, re.DOTALL)
    assert found, "the Python API section shows an example and what it prints"
    return found[1], found[2]


def test_the_readmes_example_prints_what_the_readme_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exports: dict[str, Path]
) -> None:
    code, printed = _readme_api_blocks()
    monkeypatch.chdir(tmp_path)
    shutil.copy(exports["db-outage"], "outage.json")  # what `prodguardian demo --export outage.json` writes
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {"__name__": "readme_example"})
    assert out.getvalue() == printed


def test_every_kind_of_source_gives_the_commands_report(
    outage: list[dict[str, Any]], export: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "--source", str(export), "--until", UNTIL, "--format", "json"]) == 2
    expected = capsys.readouterr().out
    pack = prodguardian.load_pack()
    paris = timezone(timedelta(hours=2))
    reports = [  # a path as str or Path, a FileSource, a list, an iterator; times and durations every way
        prodguardian.check_logs(str(export), until=UNTIL, read=prodguardian.ReadOptions(workers=1)),
        prodguardian.check_logs(export, until=datetime(2025, 10, 11, 12, 4, tzinfo=UTC), rules=pack),
        prodguardian.check_logs(
            prodguardian.FileSource(str(export)), until=datetime(2025, 10, 11, 14, 4, tzinfo=paris)
        ),
        prodguardian.check_logs(outage, until=datetime(2025, 10, 11, 12, 4), freshness="60m"),  # naive: UTC
        prodguardian.check_logs(iter(outage), until=UNTIL, freshness=timedelta(hours=1), baseline="1d"),
    ]
    for report in reports:
        assert report.status == "CRITICAL" and report.exit_code == 2
        assert prodguardian.render_report(report, "json") == expected


class _Partial:
    """A LogInput of its own: the entries of a read that stopped early."""

    name = "my-collector"
    truncated = True
    covers_window = False

    def __init__(self, entries: list[dict[str, Any]]) -> None:
        self.entries = entries
        self.warnings = ["the collector dropped some lines"]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.entries)


def test_a_log_input_says_what_it_knows_of_its_entries(outage: list[dict[str, Any]]) -> None:
    assert isinstance(_Partial([]), LogInput) and not isinstance(outage, LogInput)
    report = prodguardian.check_logs(_Partial(outage), until=UNTIL)
    assert report.context.totals["truncated"] is True
    assert "the collector dropped some lines" in [warning.message for warning in report.context.warnings]
    with pytest.raises(prodguardian.InputError, match=r"^my-collector: not a Cloud Logging export"):
        prodguardian.check_logs(_Partial([{"no": "timestamp"}]))


def test_a_live_check_reads_the_window_and_its_baseline(
    fake_logging_server: FakeLoggingServer, outage: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    fake_logging_server.add(outage)
    live = prodguardian.CloudLogging(project=PROJECT, emulator=fake_logging_server.host, calls_per_second=1e3)
    report = prodguardian.check_logs(live, service="emergence-app", until=UNTIL, baseline="1h")
    assert report.status == "CRITICAL" and report.context.totals["truncated"] is False
    sent = fake_logging_server.requests[0]["filter"]
    assert 'timestamp>="2025-10-11T10:04:00Z"' in sent and 'timestamp<"2025-10-11T12:04:00Z"' in sent
    window = report.context.window
    options = prodguardian.CheckOptions(
        service="emergence-app", until=window.end, baseline=timedelta(hours=1)
    )
    source = importlib.import_module("prodguardian.check").live_source(
        options, prodguardian.load_pack(), live
    )
    assert isinstance(source, CloudSource) and isinstance(source, LogInput) and source.filter == sent


def test_errors_are_the_domain_errors(export: Path) -> None:
    with pytest.raises(prodguardian.ConfigError, match="freshness: 'soon' is not a duration"):
        prodguardian.check_logs(export, freshness="soon")
    with pytest.raises(prodguardian.ConfigError, match=r"until: 'noon' is not an ISO 8601 time"):
        prodguardian.check_logs(export, until="noon")
    with pytest.raises(prodguardian.InputError, match=r"missing\.json"):
        prodguardian.check_logs(export.parent / "missing.json")
    with pytest.raises(prodguardian.ConfigError, match="workers must be at least 1"):
        prodguardian.ReadOptions(workers=0)
    with pytest.raises(prodguardian.ConfigError, match="choose one"):
        prodguardian.CloudLogging(emulator="127.0.0.1:1", endpoint="https://logging.googleapis.com")
    with pytest.raises(prodguardian.ConfigError, match="unknown format 'pdf'"):
        prodguardian.render_report(prodguardian.check_logs(export), "pdf")


def test_the_library_reads_no_prodguardian_variable(
    export: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Tuning is the caller's: a command's settings (environment, config file) never steer the library."""
    monkeypatch.chdir(tmp_path)
    Path("prodguardian.yaml").write_text("freshness: 5m\n", encoding="utf-8")
    for name, value in {"PRODGUARDIAN_WORKERS": "abc", "PRODGUARDIAN_FRESHNESS": "5m"}.items():
        monkeypatch.setenv(name, value)
    report = prodguardian.check_logs(export, until=UNTIL)
    assert report.context.window.end - report.context.window.start == timedelta(hours=1)
    assert report.status == "CRITICAL"


def test_a_multivariate_check_is_the_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    export = tmp_path / "slow.json"
    write_export(generate("slow", scale=0.1), str(export))
    assert main(["check", "--source", str(export), "--multivariate", "--format", "json"]) == 1
    expected = capsys.readouterr().out
    report = prodguardian.check_logs(export, multivariate=True)
    assert prodguardian.render_report(report, "json") == expected
    mix = next(f for f in report.findings if f.kind == "mix")
    assert mix.severity == "DEGRADED" and mix.features[0].name == "latency_p95_ms"
    assert not [f for f in prodguardian.check_logs(export).findings if f.kind == "mix"]
