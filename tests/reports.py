"""Reports computed once per test session: every simulator scenario and every real Cloud Run sample.

A scenario's check takes about two seconds; tests that read the same report share it (reports are never
changed by the tests that read them), and so do xdist's workers: conftest names a folder of the run that
every worker sees (`share_in`), where the first worker to need a report pickles it, under a file lock
(`made_once`; tests/html_reports.py keeps its rendered pages there too).
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import orjson
import yaml
from filelock import FileLock

from prodguardian.check import CheckOptions, run_check
from prodguardian.rules import RulePack, load_pack
from prodguardian.simulate import generate
from prodguardian.source import FileSource
from prodguardian.verdict import Report

REAL = Path(__file__).parent / "fixtures" / "real"
EXPECTED: dict[str, dict[str, Any]] = yaml.safe_load((REAL / "expected.yaml").read_text(encoding="utf-8"))


_shared: list[Path] = []  # the run's folder that every worker sees, once conftest names it
T = TypeVar("T")


def share_in(folder: Path) -> None:
    """Keep the reports in `folder` too, for the other workers of this run."""
    folder.mkdir(exist_ok=True)
    _shared[:] = [folder]


def made_once(kind: str, name: str, make: Callable[[], T]) -> T:
    """What `make` makes (a report, a page), made by this process or by another worker of the run if one
    already made it."""
    if not _shared:
        return make()
    path = _shared[0] / f"{kind}-{name}.pickle"
    with FileLock(path.with_name(path.name + ".lock")):
        if path.exists():
            made: T = pickle.loads(path.read_bytes())  # written by a worker of this run
            return made
        made = make()
        part = path.with_name(f"{path.name}.{os.getpid()}.part")
        part.write_bytes(pickle.dumps(made))
        part.replace(path)
        return made


@cache
def builtin_pack() -> RulePack:
    return load_pack()


@cache
def scenario_report(name: str) -> Report:
    """The report `prodguardian demo --scenario NAME` shows."""
    return made_once(
        "scenario", name, lambda: run_check(generate(name), CheckOptions(), builtin_pack()).report
    )


@cache
def real_report(name: str) -> Report:
    """The report of a real sample (tests/fixtures/real), for the service its expectation names."""
    options = CheckOptions(service=EXPECTED[name].get("service"))
    return made_once(
        "real", name, lambda: run_check(FileSource(str(REAL / name)), options, builtin_pack()).report
    )


def renamed(scenario: str, old: str, new: str) -> list[dict[str, Any]]:
    """A scenario's entries with every `old` in them written `new` (a service's or revision's name)."""
    return [
        orjson.loads(orjson.dumps(entry).replace(old.encode(), new.encode())) for entry in generate(scenario)
    ]


@cache
def two_service_report() -> Report:
    """db-outage's emergence-app beside a healthy emergence-worker, in one input (the worker's insertIds
    are its own: the same id at the same time is one entry read twice)."""
    return made_once("two-services", "db-outage-healthy", _two_service_check)


def _two_service_check() -> Report:
    worker = renamed("healthy", "emergence-app", "emergence-worker")
    entries = list(generate("db-outage")) + [{**e, "insertId": f"worker-{e['insertId']}"} for e in worker]
    return run_check(entries, CheckOptions(), builtin_pack()).report


HOSTILE_REVISION = "</text><script>alert(1)</script>"  # closes an SVG label, then a script


@cache
def hostile_revision_report() -> Report:
    """bad-deploy, its new revision named like a script tag: log text the HTML report must show as text."""
    return made_once("hostile-revision", "bad-deploy", _hostile_revision_check)


def _hostile_revision_check() -> Report:
    entries = renamed("bad-deploy", "emergence-app-00298-xyz", HOSTILE_REVISION)
    return run_check(entries, CheckOptions(), builtin_pack()).report
