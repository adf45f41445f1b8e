"""Shared fixtures: the rule pack once; simulator exports and the built wheel once a run for all xdist
workers, the fake Logging API's entries once a process; and xdist's scheduling, which keeps the tests of a
file whose fixtures are costly on one worker."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock
from xdist.scheduler import LoadScopeScheduling

from prodguardian.rules import RulePack, load_pack
from prodguardian.simulate import generate
from prodguardian.source import write_export
from tests import reports, wheel
from tests.fake_logging_server import FakeLoggingServer, fake_logging_server  # noqa: F401 - the shared fixture

os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
# Files whose tests all run on one xdist worker: their session or module fixture is costly and would be paid
# per worker (the browser's opened pages: half a minute; Claude Code's plugin install: 5 s). xdist_group
# marks cannot do it: pytest 9.2 ignores the node id xdist's loadgroup rewrites.
ONE_WORKER = ("tests/test_html_browser.py", "tests/test_claude_code.py")


class _Scheduling(LoadScopeScheduling):
    """xdist's `load` (each test to the next free worker), except that each of ONE_WORKER is one unit."""

    def _split_scope(self, nodeid: str) -> str:
        path = nodeid.split("::")[0]
        return path if path in ONE_WORKER else nodeid


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> LoadScopeScheduling | None:
    return _Scheduling(config, log) if config.getvalue("dist") == "load" else None


@pytest.fixture(autouse=True)
def own_state_folder(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Live checks keep their state in the user's state folder: each test gets its own, never the user's."""
    folder = tmp_path_factory.mktemp("state-home")
    for variable in ("XDG_STATE_HOME", "LOCALAPPDATA"):  # Linux and Windows (macOS: under HOME)
        monkeypatch.setenv(variable, str(folder))


@pytest.fixture(scope="session")
def pack() -> RulePack:
    return load_pack()


def _shared_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This run's temporary folder that every xdist worker sees (each worker's own one is below it)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if "PYTEST_XDIST_WORKER" in os.environ else base


@pytest.fixture(scope="session", autouse=True)
def shared_reports(tmp_path_factory: pytest.TempPathFactory) -> None:
    """tests/reports.py's scenario and sample reports, made once for all xdist workers."""
    if "PYTEST_XDIST_WORKER" in os.environ:  # one process needs no files: its functools.cache shares them
        reports.share_in(_shared_folder(tmp_path_factory) / "reports")


# The exports the CLI tests use: a scenario's 25 hours where a test needs a day of baseline, else its last 2
# (the window's hour and one of baseline: the same status, a tenth of the size; the same entries as the 25
# hours' last 2), for tests of how an input is read or what a command does with it.
EXPORTS: dict[str, tuple[str, int]] = {
    "db-outage": ("db-outage", 25),
    "db-outage-2h": ("db-outage", 2),
    "healthy-2h": ("healthy", 2),
    "slow-2h": ("slow", 2),
    "bad-deploy-2h": ("bad-deploy", 2),
}


@pytest.fixture(scope="session")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A gcloud-style JSON export of each of EXPORTS, written once for all xdist workers."""
    folder = _shared_folder(tmp_path_factory) / "exports"
    folder.mkdir(exist_ok=True)
    paths = {}
    for name, (scenario, hours) in EXPORTS.items():
        paths[name] = folder / f"{name}.json"
        with FileLock(folder / f"{name}.lock"):
            if not paths[name].exists():  # write_export writes whole or not at all
                write_export(generate(scenario, hours=hours), str(paths[name]))
    return paths


@pytest.fixture(scope="session")
def wheel_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the package's wheel is installed (tests/wheel.py), built once for all xdist workers."""
    return wheel.installed_once(_shared_folder(tmp_path_factory) / "wheel")


@pytest.fixture
def logging_api(
    fake_logging_server: FakeLoggingServer,  # noqa: F811 - pytest passes the fixture imported above
    monkeypatch: pytest.MonkeyPatch,
) -> FakeLoggingServer:
    """The fake Logging API holding the db-outage scenario, as the live source's emulator, unpaced."""
    return _serving(fake_logging_server, monkeypatch, hours=25)


@pytest.fixture
def outage_api(
    fake_logging_server: FakeLoggingServer,  # noqa: F811 - pytest passes the fixture imported above
    monkeypatch: pytest.MonkeyPatch,
) -> FakeLoggingServer:
    """The same with db-outage's last 2 hours only (its outage hour, the same entries, and one before): for
    tests of what a live read does, not of a day's baseline (a tenth of the entries to serve)."""
    return _serving(fake_logging_server, monkeypatch, hours=2)


def _serving(server: FakeLoggingServer, monkeypatch: pytest.MonkeyPatch, hours: int) -> FakeLoggingServer:
    monkeypatch.setenv("LOGGING_EMULATOR_HOST", server.host)
    monkeypatch.setenv("PRODGUARDIAN_CALLS_PER_SECOND", "1000")
    server.add(_db_outage(hours))
    return server


@cache
def _db_outage(hours: int) -> tuple[dict[str, Any], ...]:
    """db-outage's last `hours` hours, simulated once per process (the fake only reads them)."""
    return tuple(generate("db-outage", hours=hours))
