#!/usr/bin/env python3
"""Check production with ProdGuardian, for Claude Code's `/check_prod` command (or by hand).

    python3 check_prod_logs.py [--service NAME] [--freshness 1h] [--lang en|fr] [--format markdown|text|json]
                               [--project ID] [--source cloud|FILE|-] [--until TIME] [--report PATH] [--agent]
                               [any other `prodguardian check` option, passed as is]

Prints the report (markdown by default) on stdout and writes the JSON report to
`<project>/reports/prod_report.json`, where <project> is $CLAUDE_PROJECT_DIR when set, else the git top-level
of the working directory, else the working directory (`--report PATH` changes it; a relative PATH is taken
under <project> too). The report of an earlier run is removed first, so the file never outlives the check.
`GCP_PROJECT_ID` is the project when neither `--project` nor `PRODGUARDIAN_PROJECT` says one.

Exit codes: 0 OK, 1 DEGRADED, 2 CRITICAL, 3 UNKNOWN or error. When the check cannot run (no credentials, bad
input…) stdout still gets a short "⚪ UNKNOWN" block saying why and what to do.

`--agent` is what /check_prod uses: stderr goes to stdout, the last line gives the exit code and the report's
path, and the script exits 0, because Claude Code drops the output of a `!` command that exits non-zero.

It runs the check in-process through `prodguardian.cli.main`: from a checkout of ProdGuardian it uses the
checkout's package; from the installed plugin it needs the package (`pip install prodguardian`).
Only the standard library is used before that import, so a missing package gets one clear line.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, NoReturn, TextIO

REPORT = Path("reports") / "prod_report.json"
STATUS = {0: "OK", 1: "DEGRADED", 2: "CRITICAL", 3: "UNKNOWN"}
MIN_PYTHON = (3, 11)
_HERE = Path(__file__).resolve()

# Hints for the "⚪ UNKNOWN" block, chosen by words of the error.
_HINTS = (
    (
        ("credential", "application-default", "permission", "denied", "401", "403", "logging.viewer", "auth"),
        (
            "Google credentials: run `gcloud auth application-default login` with an account that has "
            "the Logs Viewer role (`roles/logging.viewer`) on the project, or set "
            "`GOOGLE_APPLICATION_CREDENTIALS` to a service-account key that has it; then run the check again."
        ),
    ),
    (
        ("project",),
        "Project: pass `--project PROJECT_ID` (or set `GCP_PROJECT_ID`).",
    ),
    (
        ("services", "--service"),
        "Service: pass `--service NAME` (the Cloud Run service to check).",
    ),
)


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse would exit 2, which means CRITICAL here
        raise _UsageError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="check_prod_logs.py",
        description="Check production with ProdGuardian and print the report (markdown by default).",
        epilog="Any other option is passed to `prodguardian check` as is. "
        "Exit codes: 0 OK, 1 DEGRADED, 2 CRITICAL, 3 UNKNOWN or error.",
        allow_abbrev=False,
    )
    parser.add_argument("--format", default="markdown", help="markdown (default), text or json")
    parser.add_argument("--lang", help="language of the report: en or fr")
    parser.add_argument("--service", help="Cloud Run service name")
    parser.add_argument("--freshness", help="length of the checked window (15m, 1h, 6h…)")
    parser.add_argument("--project", help="Google Cloud project (default: GCP_PROJECT_ID, then gcloud's)")
    parser.add_argument("--source", help="cloud (default), an export file, or - for stdin")
    parser.add_argument("--until", help="end of the window, ISO 8601")
    parser.add_argument(
        "--report", help=f"where to write the JSON report (default: <project>/{REPORT.as_posix()})"
    )
    parser.add_argument(
        "--agent", action="store_true", help="for /check_prod: fold stderr into stdout and always exit 0"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):
        _utf8(stream)
    agent = "--agent" in (sys.argv[1:] if argv is None else argv)
    saved = sys.stderr
    if agent:
        sys.stderr = sys.stdout  # one stream, in order: what the agent reads
    try:
        code, report = _run(argv)
    finally:
        sys.stdout.flush()
        sys.stderr = saved
    if not agent:
        return code
    where = f" · JSON report: {report}" if report is not None and report.is_file() else ""
    print(f"\n---\n_check_prod_logs.py: exit code {code} ({STATUS.get(code, 'UNKNOWN')}){where}_")
    return 0


def _run(argv: list[str] | None) -> tuple[int, Path | None]:
    try:
        args, extra = _parser().parse_known_args(argv)
    except _UsageError as exc:
        print(f"check_prod_logs.py: error: {exc}")
        return 3, None
    if sys.version_info < MIN_PYTHON:
        print(
            f"check_prod_logs.py: ProdGuardian needs Python {'.'.join(map(str, MIN_PYTHON))} or newer; "
            f"{sys.executable} is {sys.version.split()[0]}."
        )
        return 3, None
    project_dir = _project_dir()
    cli = _import_cli(project_dir)
    if cli is None:
        return 3, None
    report = Path(args.report) if args.report else REPORT
    report = report if report.is_absolute() else project_dir / report
    check = ["check", "--format", args.format, "--json-report", str(report)]
    project = args.project
    if not project and not os.environ.get("PRODGUARDIAN_PROJECT"):
        project = os.environ.get("GCP_PROJECT_ID")  # what the old check_prod_logs.py read
    for name, value in (
        ("--lang", args.lang),
        ("--service", args.service),
        ("--freshness", args.freshness),
        ("--project", project),
        ("--source", args.source),
        ("--until", args.until),
    ):
        if value:
            check += [name, value]
    check += extra
    with contextlib.suppress(OSError):
        report.unlink(missing_ok=True)  # a stale report must not pass for this run's
    recorder = _Recorder(sys.stderr)
    sys.stderr = recorder
    try:
        code = cli.main(check)
    except Exception as exc:  # a bug reads as UNKNOWN, never DEGRADED (a traceback exits 1)
        print(f"prodguardian: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        code = 3
    finally:
        sys.stderr = recorder.stream
    code = code if code in (0, 1, 2) else 3
    if code == 3 and not report.is_file() and args.format != "json":
        print(_unknown_block(recorder.text(), markdown=args.format != "text"))
    return code, report


def _utf8(stream: TextIO) -> None:
    """Reports carry emoji: a legacy console code page (Windows cp1252) must not turn them into a crash."""
    encoding = (getattr(stream, "encoding", "") or "").lower().replace("-", "")
    reconfigure = getattr(stream, "reconfigure", None)
    if encoding != "utf8" and reconfigure is not None:
        reconfigure(encoding="utf-8", errors="replace")


def _project_dir() -> Path:
    """$CLAUDE_PROJECT_DIR, else the git top-level of the working directory, else the working directory."""
    claude = os.environ.get("CLAUDE_PROJECT_DIR")
    if claude and Path(claude).is_dir():
        return Path(claude).resolve()
    try:
        found = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"],
            check=False,
            capture_output=True,
            text=True,
            timeout=15,
            stdin=subprocess.DEVNULL,
        )
        top = found.stdout.strip()
        if found.returncode == 0 and top and Path(top).is_dir():
            return Path(top).resolve()
    except (OSError, subprocess.SubprocessError):
        pass
    return Path.cwd().resolve()


def _is_checkout(folder: Path) -> bool:
    return (folder / "prodguardian" / "__init__.py").is_file() and (
        folder / "prodguardian" / "cli.py"
    ).is_file()


def _import_cli(project_dir: Path) -> Any:
    """prodguardian.cli: from the checkout around this script, else installed, else from the project."""
    checkout = _HERE.parents[2] if len(_HERE.parents) > 2 else None
    if checkout is not None and _is_checkout(checkout):
        sys.path.insert(0, str(checkout))  # the plugin and the package of one checkout go together
    try:
        cli = importlib.import_module("prodguardian.cli")
    except ModuleNotFoundError as exc:
        if exc.name != "prodguardian" or not _is_checkout(project_dir):
            _not_installed(exc.name)
            return None
        sys.path.append(str(project_dir))  # working in a checkout of ProdGuardian with the plugin installed
        try:
            cli = importlib.import_module("prodguardian.cli")
        except ModuleNotFoundError as again:
            _not_installed(again.name)
            return None
    except ImportError as exc:
        print(
            f"check_prod_logs.py: prodguardian could not be imported ({exc}); reinstall it: {_install_hint()}"
        )
        return None
    return cli


def _install_hint() -> str:
    return (
        f"`{sys.executable} -m pip install prodguardian` "
        "(or `pip install <path or git URL of the ProdGuardian repository>`)"
    )


def _not_installed(module: str | None) -> None:
    if module in (None, "prodguardian") or str(module).startswith("prodguardian."):
        what = "the prodguardian package is not installed"
    else:
        what = f"prodguardian's dependency `{module}` is missing"
    print(
        f"check_prod_logs.py: {what} for {sys.executable}: install it with {_install_hint()}, then run again."
    )


class _Recorder(io.TextIOBase):
    """Passes text through to a stream and keeps a copy (the CLI's one-line errors go to stderr)."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.stream = stream
        self._parts: list[str] = []

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.stream, "encoding", None) or "utf-8"

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return getattr(self.stream, "errors", None)

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return self.stream.isatty()

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError("text only")
        self._parts.append(text)
        self.stream.write(text)
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def text(self) -> str:
        return "".join(self._parts)


def _unknown_block(errors: str, markdown: bool) -> str:
    """What the agent reads when the check produced no report: the error and what to do about it."""
    lines = [line.rstrip() for line in errors.replace("\r", "\n").splitlines() if line.strip()]
    named = [line for line in lines if "error" in line.lower()]
    shown = (named or lines)[-5:] or ["(no error message)"]
    said = " ".join(shown).lower()
    hints = [hint for words, hint in _HINTS if any(word in said for word in words)]
    hints = hints or ["Fix what the error says, then run the check again."]
    title = "⚪ Production Status: UNKNOWN — the check could not run"
    why = "No report: nothing is known about production's health (this is not a sign that it is OK)."
    if not markdown:
        return "\n".join([title, "", *shown, "", why, *(f"- {hint}" for hint in hints)])
    return "\n".join(
        ["## " + title, "", "```text", *shown, "```", "", why, "", *(f"- {hint}" for hint in hints)]
    )


if __name__ == "__main__":
    sys.exit(main())
