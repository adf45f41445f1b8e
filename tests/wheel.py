"""The package's wheel as the image's first stage builds it (from only what the Dockerfile's COPY lines bring
in), installed in a folder once per run: tests/test_wheel.py and tests/test_deploy.py's image build share it,
and so do xdist's workers (under a file lock, like tests/reports.py's reports)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "deploy" / "Dockerfile"


def dockerfile() -> Any:
    parser = pytest.importorskip("dockerfile_parse").DockerfileParser
    return parser(str(DOCKERFILE))


def instructions(name: str) -> list[str]:
    return [i["value"] for i in dockerfile().structure if i["instruction"] == name]


def first_stage_copies() -> list[str]:
    sources = []
    for value in instructions("COPY"):
        if not value.startswith("--from="):
            sources += value.split()[:-1]
    return sources


def installed_once(folder: Path) -> Path:
    """`folder`/site: the wheel built from the Dockerfile's context, installed there by the first caller."""
    folder.mkdir(exist_ok=True)
    site = folder / "site"
    with FileLock(folder / "wheel.lock"):
        if not (folder / "installed").exists():
            _build_and_install(folder, site)
            (folder / "installed").touch()
    return site


def _build_and_install(folder: Path, site: Path) -> None:
    context = folder / "src"
    shutil.rmtree(context, ignore_errors=True)
    context.mkdir()
    for source in first_stage_copies():
        if (ROOT / source).is_dir():
            shutil.copytree(ROOT / source, context / source, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / source, context / source)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    build = [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(folder / "wheels"), str(context)]
    _run(build, cwd=folder)
    (wheel,) = (folder / "wheels").glob("prodguardian-*.whl")
    _run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], cwd=folder)


def _run(command: list[str], cwd: Path) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=300, cwd=cwd)
    assert result.returncode == 0, result.stderr
