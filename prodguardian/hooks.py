"""Git hooks: a pre-push hook that checks production and blocks the push only while production is CRITICAL.

`install()` writes `<hooks dir>/pre-push` (git itself names the hooks dir, so `core.hooksPath` is respected):
a POSIX sh script, which git runs with its bundled sh on Windows too. It calls the Python interpreter found at
install time (path quoted) on `python -m prodguardian.hooks pre-push`, that is `main()` below, which runs
`prodguardian check` with the options given at install time and decides:

- CRITICAL blocks the push (and DEGRADED too with `block_on="degraded"`), saying why and how to bypass it
  once (`git push --no-verify`);
- OK, DEGRADED (by default) and UNKNOWN (the logs could not be fetched, or hold nothing in the window) let the
  push through; UNKNOWN warns, since a check that cannot see production must never stop a push;
- a hook that cannot run at all (interpreter gone, package uninstalled, crash) lets the push through too: the
  runner blocks with exit code BLOCK (10), which the sh script turns into 1, and any other code into 0.

An existing hook that ProdGuardian did not write is never overwritten, unless `force=True`, and then it is
backed up first. This module does not print (except `main`, the hook's runtime) and does not import click.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shlex
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from prodguardian import __version__
from prodguardian.errors import ProdGuardianError
from prodguardian.files import write_text

HOOKS = ("pre-push",)
BLOCK_ON = ("critical", "degraded")
MARKER = "prodguardian-hook:"  # how a hook written by ProdGuardian is recognised (and may be replaced)
ALLOW = 0
BLOCK = 10  # the runner's "block" exit code; 1 would be indistinguishable from a Python traceback
STATUS = {0: "OK", 1: "DEGRADED", 2: "CRITICAL", 3: "UNKNOWN"}
_BLOCKING = {"critical": frozenset({2}), "degraded": frozenset({1, 2})}
_BYPASS = "git push --no-verify"

CheckRunner = Callable[[list[str]], int]


class HookError(ProdGuardianError):
    """A hook that cannot be installed (not a git repository, a foreign hook in the way…)."""


@dataclass(frozen=True)
class Installed:
    """What `install()` did."""

    path: Path  # the hook written
    backup: Path | None  # where a foreign hook was moved (force=True)
    updated: bool  # an earlier ProdGuardian hook was replaced
    check_args: tuple[str, ...]
    block_on: str


def hooks_dir(repo: str | Path = ".") -> Path:
    """The directory git runs hooks from for the repository at `repo` (honours `core.hooksPath`)."""
    folder = Path(repo).resolve()
    try:
        found = subprocess.run(
            ["git", "rev-parse", "--git-path", "hooks"],
            check=False,
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError:
        raise HookError("git is not installed or not on PATH") from None
    except (OSError, subprocess.SubprocessError) as exc:
        raise HookError(f"could not run git: {exc}", str(folder)) from None
    if found.returncode != 0 or not found.stdout.strip():
        said = found.stderr.strip().splitlines()
        raise HookError("not inside a git repository" + (f" ({said[0]})" if said else ""), str(folder))
    return (folder / found.stdout.strip()).resolve()


def is_prodguardian_hook(path: Path) -> bool:
    try:
        head = path.read_bytes()[:4096]
    except OSError:
        return False
    return MARKER.encode() in head


def install(
    hook: str = "pre-push",
    *,
    repo: str | Path = ".",
    block_on: str = "critical",
    check_args: Sequence[str] = (),
    force: bool = False,
    python: str | None = None,
) -> Installed:
    """Write the hook into the repository's hooks directory; `check_args` are `prodguardian check` options."""
    if hook not in HOOKS:
        raise HookError(f"unknown hook {hook!r}; known: {', '.join(HOOKS)}")
    if block_on not in BLOCK_ON:
        raise HookError(f"block_on must be one of {', '.join(BLOCK_ON)}, not {block_on!r}")
    args = tuple(str(arg) for arg in check_args)
    if any(arg == "-" for arg in args):
        raise HookError("a hook cannot read logs from stdin (git writes the pushed refs there): use a file")
    interpreter = python or sys.executable
    if not interpreter:
        raise HookError("cannot tell which Python interpreter runs ProdGuardian: pass python=")
    folder = hooks_dir(repo)
    target = folder / hook
    backup = None
    updated = False
    if target.exists() or target.is_symlink():
        if is_prodguardian_hook(target):
            updated = True
        elif not force:
            raise HookError(
                f"a {hook} hook that ProdGuardian did not write is already there; "
                "rerun with --force to replace it (it is backed up first), or call prodguardian from it",
                str(target),
            )
        else:
            backup = _free_name(target.with_name(f"{hook}.prodguardian-backup"))
            target.rename(backup)
    text = hook_script(
        hook, python=interpreter, block_on=block_on, check_args=args, package_root=_package_root()
    )
    folder.mkdir(parents=True, exist_ok=True)
    write_text(str(target), text)
    target.chmod(0o755)
    return Installed(target, backup, updated, args, block_on)


def hook_script(
    hook: str,
    *,
    python: str,
    block_on: str,
    check_args: Sequence[str],
    package_root: str | None = None,
) -> str:
    """The POSIX sh text of the hook (LF line ends: git for Windows' sh reads them too)."""
    if package_root is None:
        call = [_sh(_posix(python)), "-P", "-m", "prodguardian.hooks"]
    else:  # a checkout that is not installed: import it from there
        code = (
            "import sys; sys.path.insert(0, sys.argv.pop(1)); "
            "from prodguardian.hooks import main; sys.exit(main())"
        )
        call = [_sh(_posix(python)), "-P", "-c", _sh(code), _sh(_posix(package_root))]
    call += [hook, "--block-on", block_on, "--", *(_sh(arg) for arg in check_args)]
    shown = " ".join(["prodguardian check", *(shlex.quote(arg) for arg in check_args)]).replace("\n", "\\n")
    lines = [
        "#!/bin/sh",
        f"# {MARKER} {hook}, written by `prodguardian hooks install {hook}` (prodguardian {__version__}).",
        f"# Before each push, runs: {shown}",
        f"# and blocks the push when production is {_blocking_words(block_on)}. UNKNOWN (logs that cannot be",
        "# fetched) never blocks, nor does a hook that cannot run. Push anyway, once: git push --no-verify",
        "# To change the options, run the install again; to remove the hook, delete this file.",
        " ".join(call),
        "status=$?",
        f'if [ "$status" -eq {BLOCK} ]; then',
        "    exit 1",
        f'elif [ "$status" -ne {ALLOW} ]; then',
        '    echo "prodguardian: the pre-push hook could not run the check (exit $status);" \\',
        '        "not blocking the push." >&2',
        "fi",
        "exit 0",
        "",
    ]
    return "\n".join(lines)


def run_pre_push(
    block_on: str,
    check_args: Sequence[str],
    *,
    check: CheckRunner | None = None,
    out: TextIO | None = None,
) -> int:
    """Run the check, print why the push goes on or not, and return ALLOW or BLOCK."""
    stream = out if out is not None else sys.stderr
    runner = check if check is not None else _cli_check
    with tempfile.TemporaryDirectory(prefix="prodguardian-hook-") as folder:
        report_file = Path(folder) / "report.txt"
        # The CLI returns 3 for anything that goes wrong, a bug included: that never blocks.
        code = runner(["check", *check_args, "--format", "text", "--output", str(report_file)])
        report = report_file.read_text(encoding="utf-8") if report_file.is_file() else ""
    status = STATUS.get(code, "UNKNOWN")
    if code == 0:
        first = report.strip().splitlines()[:1]
        print((first[0] if first else "🟢 Production Status: OK") + " · pushing", file=stream)
        return ALLOW
    if report:
        print(report.rstrip("\n"), file=stream)
        print(file=stream)
    if code in _BLOCKING.get(block_on, _BLOCKING["critical"]):
        print(
            f"prodguardian: push blocked: production is {status} (see the report above).\n"
            "  Fix or roll back first, and check again with `prodguardian check`;\n"
            f"  to push anyway, once: {_BYPASS}",
            file=stream,
        )
        return BLOCK
    if status == "UNKNOWN":
        print(
            "prodguardian: could not tell whether production is healthy (UNKNOWN: the logs could not be "
            "fetched, or hold nothing in the window); not blocking the push.",
            file=stream,
        )
    else:
        print(
            f"prodguardian: production is {status} (see the report above); the hook blocks only when it is "
            f"{_blocking_words(block_on)}, so the push goes on.",
            file=stream,
        )
    return ALLOW


def main(argv: Sequence[str] | None = None) -> int:
    """The hook's runtime: `python -m prodguardian.hooks pre-push --block-on critical -- CHECK OPTIONS…`."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if (
            reconfigure is not None
            and (getattr(stream, "encoding", "") or "").lower().replace("-", "") != "utf8"
        ):
            reconfigure(encoding="utf-8", errors="replace")
    words = list(sys.argv[1:] if argv is None else argv)
    own, check_args = (
        (words[: words.index("--")], words[words.index("--") + 1 :]) if "--" in words else (words, [])
    )
    parser = argparse.ArgumentParser(
        prog="python -m prodguardian.hooks",
        usage="%(prog)s pre-push [--block-on critical|degraded] [-- PRODGUARDIAN CHECK OPTIONS…]",
        allow_abbrev=False,
    )
    parser.add_argument("hook", choices=HOOKS)
    parser.add_argument("--block-on", choices=BLOCK_ON, default="critical")
    try:
        args = parser.parse_args(own)
    except SystemExit:
        return 3  # a usage error must not block (only BLOCK does)
    return run_pre_push(args.block_on, check_args)


def _cli_check(argv: list[str]) -> int:
    """`prodguardian check` in-process; the CLI (and click) is loaded only when a hook runs."""
    cli_main: CheckRunner = importlib.import_module("prodguardian.cli").main
    return cli_main(argv)


def _blocking_words(block_on: str) -> str:
    return "DEGRADED or CRITICAL" if block_on == "degraded" else "CRITICAL"


def _package_root() -> str | None:
    """The folder to put on sys.path for the hook, or None when the package is installed (site-packages)."""
    root = Path(__file__).resolve().parent.parent
    installed = {sysconfig.get_paths().get(key) for key in ("purelib", "platlib")}
    installed_dirs = {Path(p).resolve() for p in installed if p}
    return None if root in installed_dirs else str(root)


def _posix(path: str) -> str:
    """Windows paths with forward slashes: git's sh runs `C:/Python311/python.exe` as it is."""
    return path.replace("\\", "/") if os.name == "nt" else path


def _sh(text: str) -> str:
    """One sh word, single-quoted."""
    return "'" + text.replace("'", "'\\''") + "'"


def _free_name(path: Path) -> Path:
    candidate, n = path, 1
    while candidate.exists() or candidate.is_symlink():
        candidate = path.with_name(f"{path.name}.{n}")
        n += 1
    return candidate


if __name__ == "__main__":
    sys.exit(main())
