#!/usr/bin/env python3
"""Check production with ProdGuardian, for Claude Code's `/check_prod` (or by hand).

    python3 check_prod_logs.py [--service NAME] [--freshness 1h] [--lang en|fr] [--format markdown|text|json]
                               [--project ID] [--source cloud|FILE|-] [--until TIME] [--report PATH]
                               [--deadline SECONDS] [--agent] [any other `prodguardian check` option, as is]

Prints the report (markdown by default) on stdout and writes the JSON report to
`<project>/reports/prod_report.json` (and, when matplotlib, the `html` extra, is installed, the HTML report
with its charts beside it, `prod_report.html`), where <project> is $CLAUDE_PROJECT_DIR when set, else the
git top-level of the working directory, else the working directory (Claude Code does not set
CLAUDE_PROJECT_DIR for a `!` command: there the git top-level applies). `--report PATH` changes the file; a
relative PATH is under <project> too. The report of an earlier run is removed first, so the file never
outlives the check. `GCP_PROJECT_ID` is the project when neither `--project` nor `PRODGUARDIAN_PROJECT`
says one.

The check runs in a child process, `python -m prodguardian check`, stopped at the deadline: `--deadline`, by
default five sixths of the time Claude Code gives a `!` command (its Bash tool's timeout,
BASH_DEFAULT_TIMEOUT_MS, 120 s unless set), so 100 s. A live read is also capped at the entries Cloud Logging
can serve in half that time (`--max-entries`, unless given): a slow read gives a partial report that says so,
and a check stopped at the deadline gives an UNKNOWN one, never no report.

Exit codes: 0 OK, 1 DEGRADED, 2 CRITICAL, 3 UNKNOWN or error. When the check cannot run (no credentials, bad
input, not installed, too slow…) stdout gets a short "⚪ UNKNOWN" block saying why and what to do, and the
error is not printed again on stderr.

`--agent` is what /check_prod uses: one stream (the CLI's warnings first), all of it between fences that
nothing inside can close, a last line giving the exit code and the JSON report's path, and exit 0, because
Claude Code aborts the command, report and all, when a `!` command exits non-zero.

From a checkout of ProdGuardian it runs the checkout's package; from an installed plugin it needs the package
installed for this Python (not on PyPI: the missing-package block gives the `pip install` command for the
marketplace's clone of the repository) at the plugin's major.minor version. Standard library only.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import NoReturn, TextIO

REPORT = Path("reports") / "prod_report.json"
STATUS = {0: "OK", 1: "DEGRADED", 2: "CRITICAL", 3: "UNKNOWN"}
MIN_PYTHON = (3, 11)
BASH_TIMEOUT = 120.0  # seconds: Claude Code's Bash tool default for a `!` command
DEADLINE_SHARE = 5 / 6  # of that timeout: the rest starts Python and prints the report
ENTRIES_PER_SECOND = 1000  # a live read's pace: one page of 1,000 a second (prodguardian.cloud)
_HERE = Path(__file__).resolve()
PLUGIN = _HERE.parents[1]

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


@dataclass
class _Outcome:
    code: int
    out: str  # stdout: the report, or the UNKNOWN block
    notes: str = ""  # stderr: the CLI's warnings
    report: Path | None = None  # the JSON report, when the check wrote one
    page: Path | None = None  # the HTML report beside it, when the html extra is installed


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
        "--deadline",
        type=float,
        help="seconds after which the check is stopped with an UNKNOWN report (default: 5/6 of Claude "
        f"Code's Bash timeout, BASH_DEFAULT_TIMEOUT_MS or 120 s: {_deadline():.0f} s here)",
    )
    parser.add_argument(
        "--agent", action="store_true", help="for /check_prod: one fenced stream, and always exit 0"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):
        _utf8(stream)
    argv = sys.argv[1:] if argv is None else argv
    outcome = _check(argv)
    if "--agent" not in argv:
        sys.stdout.write(outcome.out)
        sys.stderr.write(outcome.notes)
        return outcome.code
    where = f" · JSON report: {outcome.report}" if outcome.report is not None else ""
    where += f" · HTML report (charts): {outcome.page}" if outcome.page is not None else ""
    body = outcome.notes + ("\n" if outcome.notes else "") + outcome.out
    fence = _fence(body)
    sys.stdout.write(f"{fence}\n{body.rstrip()}\n{fence}\n\n")
    sys.stdout.write(f"check_prod_logs.py: exit code {outcome.code} ({STATUS[outcome.code]}){where}\n")
    return 0


def _check(argv: list[str]) -> _Outcome:
    try:
        args, extra = _parser().parse_known_args(argv)
    except _UsageError as exc:
        return _cannot_run([f"check_prod_logs.py: error: {exc}"], ["Run `check_prod_logs.py --help`."])
    fmt = args.format
    if sys.version_info < MIN_PYTHON:
        wanted = ".".join(map(str, MIN_PYTHON))
        why = f"ProdGuardian needs Python {wanted} or newer; {sys.executable} is {sys.version.split()[0]}."
        return _cannot_run([f"check_prod_logs.py: {why}"], [f"Run it with Python {wanted} or newer."], fmt)
    project_dir = _project_dir()
    package = _import_package(project_dir)
    if isinstance(package, str):
        why = f"check_prod_logs.py: {package} for {sys.executable}."
        todo = f"Install it (it is not on PyPI): {_install_command()}, then run the check again."
        return _cannot_run([why], [todo], fmt)
    module, pythonpath = package
    mismatch = _version_mismatch(module.__version__)
    if mismatch:
        return _cannot_run([mismatch], [f"Install the plugin's version: {_install_command()}."], fmt)
    report = Path(args.report) if args.report else REPORT
    report = report if report.is_absolute() else project_dir / report
    deadline = args.deadline if args.deadline is not None else _deadline()
    page = report.with_suffix(".html") if importlib.util.find_spec("matplotlib") else None
    for stale in (report, page):
        with contextlib.suppress(OSError):
            if stale is not None:
                stale.unlink(missing_ok=True)  # a stale report must not pass for this run's
    ran = _run_cli(_check_command(args, extra, report, deadline, page), pythonpath, deadline)
    if ran is None:
        return _too_slow(deadline, fmt)
    code, out, err = ran
    written = report if report.is_file() else None
    # a report is on stdout (or, with --output, in the JSON report); else the check could not run, whatever
    # its exit code says (a crash before the CLI's own error handling exits 1)
    if not out.strip() and not (code in (0, 1, 2) and written is not None):
        return _cannot_run(err.splitlines() or [f"prodguardian exited with code {code}"], None, fmt, written)
    drawn = page if page is not None and page.is_file() else None
    return _Outcome(code if code in STATUS else 3, out, err, written, drawn)


def _check_command(
    args: argparse.Namespace, extra: list[str], report: Path, deadline: float, page: Path | None = None
) -> list[str]:
    """The `prodguardian check` command line for these options (and the HTML report to write, if any)."""
    command = ["check", "--format", args.format, "--json-report", str(report)]
    command += ["--html-report", str(page)] if page is not None else []
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
            command += [name, value]
    given = any(word == "--max-entries" or word.startswith("--max-entries=") for word in extra)
    if args.source in (None, "cloud") and not given and not os.environ.get("PRODGUARDIAN_MAX_ENTRIES"):
        # half the deadline for reading, the other half for retries and the check itself
        command += ["--max-entries", str(max(1000, int(deadline / 2 * ENTRIES_PER_SECOND)))]
    return command + extra


def _run_cli(command: list[str], pythonpath: Path | None, deadline: float) -> tuple[int, str, str] | None:
    """`python -m prodguardian COMMAND`: its exit code, stdout and stderr; None if stopped at the deadline."""
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    if pythonpath is not None:  # the checkout's package, not one installed elsewhere
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath), env.get("PYTHONPATH")]))
    # -P: not the working directory's `prodguardian` folder either; a new session, to stop the workers too
    with subprocess.Popen(
        [sys.executable, "-P", "-m", "prodguardian", *command],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
    ) as child:
        try:
            out, err = child.communicate(timeout=deadline)
        except subprocess.TimeoutExpired:
            return None
        finally:
            if child.poll() is None:
                _stop(child)
    return child.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def _stop(child: subprocess.Popen[bytes]) -> None:
    """Ends the check and the worker processes it forked for a large export (Linux only forks them)."""
    with contextlib.suppress(OSError):
        if hasattr(os, "killpg"):
            os.killpg(child.pid, signal.SIGKILL)
        else:
            child.kill()


def _deadline() -> float:
    ms = os.environ.get("BASH_DEFAULT_TIMEOUT_MS", "").strip()
    timeout = int(ms) / 1000 if ms.isdigit() and int(ms) > 0 else BASH_TIMEOUT
    return timeout * DEADLINE_SHARE


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


def _import_package(project_dir: Path) -> tuple[ModuleType, Path | None] | str:
    """prodguardian and the checkout it comes from (None: installed), or why it cannot be imported.

    The checkout around this script first, else the installed package, else the project when it is a
    checkout of ProdGuardian."""
    around = _HERE.parents[2] if len(_HERE.parents) > 2 else None
    candidates: list[Path | None] = [around] if around is not None and _is_checkout(around) else []
    candidates += [None, project_dir] if _is_checkout(project_dir) else [None]
    for folder in candidates:
        if folder is not None:
            sys.path.insert(0, str(folder))
        try:
            return importlib.import_module("prodguardian"), folder
        except ModuleNotFoundError as exc:
            if folder is not None:
                sys.path.remove(str(folder))
            if exc.name not in ("prodguardian", None):
                return f"prodguardian's dependency `{exc.name}` is missing"
        except ImportError as exc:
            return f"prodguardian could not be imported ({exc})"
    return "the prodguardian package is not installed"


def _version_mismatch(installed: str) -> str | None:
    """Why the package cannot serve this plugin: not the plugin's major.minor version (or None)."""
    try:
        manifest = (PLUGIN / ".claude-plugin" / "plugin.json").read_text(encoding="utf-8")
        wanted = json.loads(manifest)["version"]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # the script outside a plugin (copied by hand): nothing to compare with
    if str(wanted).split(".")[:2] == installed.split(".")[:2]:
        return None
    return (
        f"check_prod_logs.py: prodguardian {installed} is installed for {sys.executable}, "
        f"but this plugin is version {wanted}."
    )


def _install_command() -> str:
    """A `pip install` that works from what is here: the checkout or marketplace clone holding the plugin."""
    pip = f'"{sys.executable}" -m pip install --upgrade'
    for folder in _HERE.parents:
        if (folder / "setup.cfg").is_file() and _is_checkout(folder):
            return f'`{pip} "{folder}"`'
    # an installed plugin: ~/.claude/plugins/cache/<marketplace>/<plugin>/<version>/scripts/this; the
    # marketplace's clone of the repository is ~/.claude/plugins/marketplaces/<marketplace>
    if len(_HERE.parents) > 5 and _HERE.parents[4].name == "cache":
        clone = _HERE.parents[5] / "marketplaces" / _HERE.parents[3].name
        if _is_checkout(clone):
            return f'`{pip} "{clone}"`'
    return f'`{pip} "<a checkout of the ProdGuardian repository>"` (or `git+<its git URL>`)'


def _cannot_run(
    errors: list[str], todo: list[str] | None, fmt: str = "markdown", report: Path | None = None
) -> _Outcome:
    """What the agent reads when the check produced no report: the error and what to do about it."""
    lines = [line.rstrip() for line in "\n".join(errors).replace("\r", "\n").splitlines() if line.strip()]
    named = [line for line in lines if "error" in line.lower()]
    shown = (named or lines)[-5:] or ["(no error message)"]
    if todo is None:
        said = " ".join(shown).lower()
        todo = [hint for words, hint in _HINTS if any(word in said for word in words)]
        if "no module named" in said:
            todo.append(f"Install ProdGuardian with its dependencies: {_install_command()}.")
        todo = todo or ["Fix what the error says, then run the check again."]
    return _unknown("the check could not run", shown, todo, fmt, report)


def _too_slow(deadline: float, fmt: str) -> _Outcome:
    why = [f"check_prod_logs.py: the check did not finish within {deadline:.0f} s, so it was stopped."]
    todo = [
        "Check a shorter window (`--freshness 15m`) or fewer entries (`--max-entries 20000`).",
        "Or run `prodguardian check` with the same options in a terminal: it has no deadline.",
    ]
    return _unknown("the check took too long", why, todo, fmt)


def _unknown(title: str, shown: list[str], todo: list[str], fmt: str, report: Path | None = None) -> _Outcome:
    """The "⚪ UNKNOWN" block on stdout; with --format json, stdout stays JSON-only and stderr says why."""
    if fmt == "json":
        return _Outcome(3, "", "\n".join([*shown, *todo]) + "\n", report)
    heading = f"⚪ Production Status: UNKNOWN — {title}"
    why = "No report: nothing is known about production's health (this is not a sign that it is OK)."
    todo = [f"- {hint}" for hint in todo]
    if fmt == "text":
        return _Outcome(3, "\n".join([heading, "", *shown, "", why, *todo]) + "\n", report=report)
    fence = _fence("\n".join(shown))
    block = ["## " + heading, "", fence + "text", *shown, fence, "", why, "", *todo]
    return _Outcome(3, "\n".join(block) + "\n", report=report)


def _fence(text: str) -> str:
    """A code fence that no line of `text` can close: longer than any run of backticks in it."""
    return "`" * max([3, *(len(run) + 1 for run in re.findall(r"`+", text))])


if __name__ == "__main__":
    sys.exit(main())
