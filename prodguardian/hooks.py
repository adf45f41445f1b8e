"""Git hooks: a pre-push hook that checks production and blocks the push only while production is CRITICAL.

`install()` writes `<hooks dir>/pre-push` (git itself names the hooks dir, so `core.hooksPath` is respected):
a POSIX sh script, which git runs with its bundled sh on Windows too. It calls the Python interpreter found at
install time (path quoted) on `python -P -m prodguardian _hook pre-push --block-on X -- CHECK OPTIONS…`, a
hidden command of the CLI, which runs `prodguardian check` with those options and asks `decide()`:

- CRITICAL blocks the push (and DEGRADED too with `block_on="degraded"`), saying why and how to bypass it
  once (`git push --no-verify`);
- OK, DEGRADED (by default) and UNKNOWN (the logs could not be fetched, or hold nothing in the window) let the
  push through; UNKNOWN warns, since a check that cannot see production must never stop a push;
- a hook that cannot run at all (interpreter gone, package uninstalled, crash) lets the push through too: the
  command blocks with exit code BLOCK (10), which the sh script turns into 1, and any other code into 0.

An existing hook that ProdGuardian did not write is never overwritten, unless `force=True`, and then it is
backed up first. This module is a core: it neither prints nor imports click (nor the CLI).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import sysconfig
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from prodguardian import __version__
from prodguardian.errors import ProdGuardianError
from prodguardian.files import write_text

HOOKS = ("pre-push",)
BLOCK_ON = ("critical", "degraded")
MARKER = "prodguardian-hook:"  # how a hook written by ProdGuardian is recognised (and may be replaced)
ALLOW = 0
BLOCK = 10  # the hook command's "block" exit code; 1 would be indistinguishable from a Python traceback
COMMAND = "_hook"  # the hidden CLI command the script runs
BYPASS = "git push --no-verify"
_BLOCKING = {"critical": ("CRITICAL",), "degraded": ("DEGRADED", "CRITICAL")}


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


@dataclass(frozen=True)
class Decision:
    """What the hook does with a check's status: block the push or not, and what it tells the user."""

    blocks: bool
    message: str  # for stderr, the report included when it says why

    @property
    def exit_code(self) -> int:
        return BLOCK if self.blocks else ALLOW


def blocking_statuses(block_on: str) -> str:
    """The statuses that block a push, in words: `CRITICAL`, or `DEGRADED or CRITICAL`."""
    return " or ".join(_BLOCKING[block_on])


def describe(block_on: str, check_args: Sequence[str]) -> list[str]:
    """What a hook with these settings does, a sentence a line (for its comment and the install's output)."""
    command = " ".join(["prodguardian check", *(shlex.quote(arg) for arg in check_args)])
    return [
        f"before each push, it runs: {command}".replace("\n", "\\n"),
        f"it blocks the push when production is {blocking_statuses(block_on)}; UNKNOWN (logs that cannot be "
        "fetched) never blocks, nor does a hook that cannot run",
        f"to push anyway, once: {BYPASS}",
    ]


def decide(status: str, block_on: str, report: str) -> Decision:
    """Whether a check that ended in `status`, with this text `report` (empty if none), blocks the push."""
    report = report.rstrip("\n")
    if status == "OK":
        first = report.strip().splitlines()[:1]
        return Decision(False, (first[0] if first else "🟢 Production Status: OK") + " · pushing")
    shown = f"{report}\n\n" if report else ""
    if status in _BLOCKING[block_on]:
        return Decision(
            True,
            f"{shown}prodguardian: push blocked: production is {status} (see the report above).\n"
            "  Fix or roll back first, and check again with `prodguardian check`;\n"
            f"  to push anyway, once: {BYPASS}",
        )
    if status == "UNKNOWN":
        return Decision(
            False,
            f"{shown}prodguardian: could not tell whether production is healthy (UNKNOWN: the logs could not "
            "be fetched, or hold nothing in the window); not blocking the push.",
        )
    return Decision(
        False,
        f"{shown}prodguardian: production is {status} (see the report above); the hook blocks only when it "
        f"is {blocking_statuses(block_on)}, so the push goes on.",
    )


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
    interpreter = _sh(_posix(python))
    if package_root is None:
        call = [interpreter, "-P", "-m", "prodguardian"]
    else:  # a checkout that is not installed: import it from there
        code = (
            "import sys; sys.path.insert(0, sys.argv.pop(1)); "
            "from prodguardian.cli import entry_point; entry_point()"
        )
        call = [interpreter, "-P", "-c", _sh(code), _sh(_posix(package_root))]
    call += [COMMAND, hook, "--block-on", block_on, "--", *(_sh(arg) for arg in check_args)]
    lines = [
        "#!/bin/sh",
        f"# {MARKER} {hook}, written by `prodguardian hooks install {hook}` (prodguardian {__version__}).",
        *(f"# {line}" for line in describe(block_on, check_args)),
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


def main(argv: Sequence[str] | None = None) -> int:
    """What hooks written by earlier versions run (`python -m prodguardian.hooks pre-push --block-on X -- …`,
    or `from prodguardian.hooks import main`): the same arguments, handed to today's hook command."""
    words = list(sys.argv[1:] if argv is None else argv)
    root = _package_root()
    env = dict(os.environ)
    if root is not None:
        env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    return subprocess.run([sys.executable, "-P", "-m", "prodguardian", COMMAND, *words], env=env).returncode


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
