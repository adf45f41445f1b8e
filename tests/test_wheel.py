"""A real, non-editable install from a built wheel ships rules/, templates/ and py.typed and works from
anywhere. The wheel is the one the image builds, from only what its Dockerfile copies (tests/wheel.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def test_wheel_installs_and_runs_from_any_directory(tmp_path: Path, wheel_site: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert (wheel_site / "prodguardian" / "py.typed").is_file(), "the wheel ships its types (PEP 561)"
    env = {**os.environ, "PYTHONPATH": str(wheel_site)}
    where = subprocess.run(
        [
            sys.executable,
            "-c",
            "import prodguardian, prodguardian.resources as r; print(r.data_dir('rules'))",
        ],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(wheel_site)
    demo = subprocess.run(
        [sys.executable, "-m", "prodguardian", "demo", "--format", "json", "--lang", "fr"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        check=False,
        timeout=300,
    )
    assert demo.returncode == 0, demo.stderr
    report = json.loads(demo.stdout)
    assert report["status"] == "CRITICAL"
    assert report["findings"][0]["summary"].startswith("Base de données indisponible")
