"""The git pre-push hook: installed by `prodguardian hooks install pre-push`, run as git runs it."""

from __future__ import annotations

import ast
import gzip
import os
import subprocess
import sys
from pathlib import Path

import pytest

from prodguardian import cli, hooks, simulate
from prodguardian.cli import main
from prodguardian.source import write_export

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}


@pytest.fixture(scope="module")
def small_exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Simulated small_exports, made once: CRITICAL, DEGRADED, and UNKNOWN (an empty file)."""
    folder = tmp_path_factory.mktemp("hook-small_exports")
    files = {"critical": folder / "db-outage.json", "degraded": folder / "slow.json"}
    write_export(simulate.generate("db-outage", hours=3), str(files["critical"]))
    write_export(simulate.generate("slow", hours=3), str(files["degraded"]))
    files["unknown"] = folder / "empty.json"
    files["unknown"].write_bytes(b"")
    return files


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PRODGUARDIAN_", "GIT_", "GOOGLE_"))}
    env.update(GIT_ENV, HOME=os.environ.get("HOME", ""))
    return env


def _git(*args: str, cwd: Path) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, env=_env(), capture_output=True, text=True, check=True)
    return done.stdout


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "repo"
    folder.mkdir()
    _git("init", "-q", cwd=folder)
    monkeypatch.chdir(folder)
    for name in [k for k in os.environ if k.startswith("PRODGUARDIAN_")]:
        monkeypatch.delenv(name)
    return folder


def _install(*args: str) -> int:
    return main(["hooks", "install", "pre-push", *args])


def _run_hook(path: Path, repo: Path) -> subprocess.CompletedProcess[str]:
    """As git runs it: sh, at the top of the work tree, the remote on argv and the refs on stdin."""
    return subprocess.run(
        ["sh", str(path), "origin", "/nowhere.git"],
        cwd=repo,
        env=_env(),
        input="refs/heads/main 1111 refs/heads/main 0000\n",
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=180,
    )


def test_critical_blocks_a_real_push(
    repo: Path, small_exports: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    remote = repo.parent / "remote.git"
    _git("init", "-q", "--bare", str(remote), cwd=repo.parent)
    _git("commit", "-q", "--allow-empty", "-m", "first", cwd=repo)
    options = ("--service", "emergence-app", "--freshness", "1h")
    assert _install("--source", str(small_exports["critical"]), *options) == 0
    said = capsys.readouterr().out
    hook = repo / ".git" / "hooks" / "pre-push"
    assert f"installed the pre-push hook: {hook}" in said and "git push --no-verify" in said
    text = hook.read_text(encoding="utf-8")
    assert "'--service' 'emergence-app' '--freshness' '1h'" in text, "install options are passed to the check"
    assert text.startswith("#!/bin/sh\n") and "\r" not in text
    assert f"'{sys.executable}' -P" in text, "the interpreter found at install time, quoted"

    push = subprocess.run(
        ["git", "push", str(remote), "HEAD:main"],
        cwd=repo,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert push.returncode != 0, push.stderr
    assert "🔴 Production Status: CRITICAL" in push.stderr
    assert "push blocked: production is CRITICAL" in push.stderr and "git push --no-verify" in push.stderr
    assert "RuntimeError: Database connection is not available." in push.stderr, "it prints why"
    bypass = ["git", "push", "-q", "--no-verify", str(remote), "HEAD:main"]
    assert subprocess.run(bypass, cwd=repo, env=_env(), capture_output=True, timeout=60).returncode == 0


def test_degraded_lets_the_push_through(repo: Path, small_exports: dict[str, Path]) -> None:
    assert _install("--source", str(small_exports["degraded"])) == 0
    done = _run_hook(repo / ".git" / "hooks" / "pre-push", repo)
    assert done.returncode == 0, done.stderr
    assert "🟡 Production Status: DEGRADED" in done.stderr and "Latency high" in done.stderr
    assert "production is DEGRADED" in done.stderr and "the push goes on" in done.stderr
    assert "blocked" not in done.stderr


def test_block_on_degraded(repo: Path, small_exports: dict[str, Path]) -> None:
    assert _install("--source", str(small_exports["degraded"]), "--block-on", "degraded") == 0
    done = _run_hook(repo / ".git" / "hooks" / "pre-push", repo)
    assert done.returncode == 1
    assert "push blocked: production is DEGRADED" in done.stderr and "git push --no-verify" in done.stderr


@pytest.mark.parametrize("case", ["no-entries", "cannot-read"])
def test_unknown_never_blocks(repo: Path, small_exports: dict[str, Path], tmp_path: Path, case: str) -> None:
    source = small_exports["unknown"]
    if case == "cannot-read":  # the logs cannot be fetched: an error, no report at all
        source = tmp_path / "gone.json"
        source.write_text("[]", encoding="utf-8")
    assert _install("--source", str(source), "--block-on", "degraded") == 0
    if case == "cannot-read":
        source.unlink()
    done = _run_hook(repo / ".git" / "hooks" / "pre-push", repo)
    assert done.returncode == 0, done.stderr
    assert "UNKNOWN" in done.stderr and "not blocking the push" in done.stderr
    if case == "cannot-read":
        assert "prodguardian: error:" in done.stderr and "gone.json" in done.stderr, "it prints why"
    else:
        assert "silence is not health" in done.stderr


def test_a_hook_that_cannot_run_never_blocks(repo: Path) -> None:
    installed = hooks.install(repo=repo, python=str(repo / "no-such-python"), check_args=["--service", "x"])
    done = _run_hook(installed.path, repo)
    assert done.returncode == 0
    assert "could not run the check" in done.stderr and "not blocking the push" in done.stderr


def test_core_hooks_path_is_respected(
    repo: Path, small_exports: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _git("config", "core.hooksPath", "ci/githooks", cwd=repo)
    (repo / "sub").mkdir()
    monkeypatch.chdir(repo / "sub")  # the install finds the repository from a subfolder too
    assert _install("--source", str(small_exports["critical"])) == 0
    assert (repo / "ci" / "githooks" / "pre-push").is_file()
    assert not (repo / ".git" / "hooks" / "pre-push").exists()
    assert hooks.hooks_dir(repo) == (repo / "ci" / "githooks").resolve()


def test_refuses_a_foreign_hook_without_force(
    repo: Path, small_exports: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    hook = repo / ".git" / "hooks" / "pre-push"
    hook.parent.mkdir(parents=True, exist_ok=True)
    foreign = "#!/bin/sh\necho 'the team lint hook'\n"
    hook.write_text(foreign, encoding="utf-8")

    assert _install("--source", str(small_exports["critical"])) == 3
    err = capsys.readouterr().err
    assert "ProdGuardian did not write" in err and "--force" in err
    assert hook.read_text(encoding="utf-8") == foreign

    assert _install("--source", str(small_exports["critical"]), "--force") == 0
    backup = hook.with_name("pre-push.prodguardian-backup")
    assert backup.read_text(encoding="utf-8") == foreign
    assert f"moved the existing pre-push hook to {backup}" in capsys.readouterr().out
    assert hooks.is_prodguardian_hook(hook)

    # its own hook is replaced without --force (to change the options), and nothing more is backed up
    assert _install("--source", str(small_exports["degraded"])) == 0
    assert "updated the pre-push hook" in capsys.readouterr().out
    assert str(small_exports["degraded"]) in hook.read_text(encoding="utf-8")
    kept = sorted(p.name for p in hook.parent.glob("pre-push*") if p.suffix != ".sample")
    assert kept == ["pre-push", "pre-push.prodguardian-backup"]


def test_install_errors(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _install("--freshness", "soon") == 3
    assert "--freshness" in capsys.readouterr().err
    assert _install("--source", "-") == 3
    assert "stdin" in capsys.readouterr().err
    assert not (repo / ".git" / "hooks" / "pre-push").exists()
    outside = tmp_path / "not-a-repo"
    outside.mkdir()
    monkeypatch.chdir(outside)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    assert _install() == 3
    assert "not inside a git repository" in capsys.readouterr().err


def test_hook_script_quotes_windows_paths() -> None:
    text = hooks.hook_script(
        "pre-push",
        python="C:/Program Files/Python 3.11/python.exe",
        block_on="critical",
        check_args=["--service", "it's"],
        package_root="C:/Users/o'neil/prodguardian",
    )
    assert "'C:/Program Files/Python 3.11/python.exe' -P -c" in text
    assert "'C:/Users/o'\\''neil/prodguardian'" in text and "'it'\\''s'" in text
    assert "\r" not in text
    syntax = subprocess.run(["sh", "-n"], input=text, text=True, capture_output=True)
    assert syntax.returncode == 0, syntax.stderr


def test_a_corrupt_export_or_a_bug_never_blocks(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The check answers 3 (UNKNOWN) for anything that goes wrong, so the hook needs no guard of its own."""
    corrupt = tmp_path / "export.json.gz"
    corrupt.write_bytes(gzip.compress(b"")[:10] + b"\xff" * 64)  # a gzip header, then no valid deflate block
    assert _install("--source", str(corrupt), "--block-on", "degraded") == 0
    done = _run_hook(repo / ".git" / "hooks" / "pre-push", repo)
    assert done.returncode == 0, done.stderr
    assert "cannot read: Error -3 while decompressing data: invalid block type" in done.stderr
    assert "Traceback" not in done.stderr and "not blocking the push" in done.stderr

    def bug(*_: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(cli, "run_check", bug)
    capsys.readouterr()
    assert (
        main(["_hook", "pre-push", "--block-on", "degraded", "--", "--source", str(corrupt)]) == hooks.ALLOW
    )
    err = capsys.readouterr().err
    assert "prodguardian: internal error: RuntimeError: a bug" in err and "not blocking the push" in err


@pytest.mark.parametrize(
    ("status", "block_on", "blocks", "says"),
    [
        ("OK", "critical", False, "🟢 Production Status: OK — emergence-app · pushing"),
        ("OK", "degraded", False, "· pushing"),
        ("DEGRADED", "critical", False, "the hook blocks only when it is CRITICAL, so the push goes on"),
        ("DEGRADED", "degraded", True, "push blocked: production is DEGRADED"),
        ("CRITICAL", "critical", True, "push blocked: production is CRITICAL"),
        ("CRITICAL", "degraded", True, "to push anyway, once: git push --no-verify"),
        ("UNKNOWN", "critical", False, "not blocking the push"),
        ("UNKNOWN", "degraded", False, "could not tell whether production is healthy"),
    ],
)
def test_decide(status: str, block_on: str, blocks: bool, says: str) -> None:
    report = f"Production Status: {status} — emergence-app\nWindow 11:04–12:04 UTC\n"
    decision = hooks.decide(status, block_on, ("🟢 " if status == "OK" else "") + report)
    assert decision.blocks is blocks and decision.exit_code == (hooks.BLOCK if blocks else hooks.ALLOW)
    assert says in decision.message
    assert ("Window 11:04" in decision.message) is (status != "OK"), "the report, unless all is well"


def test_the_blocking_words_are_written_once(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The script's comment, the install's output and the decision say the same thing."""
    assert hooks.blocking_statuses("degraded") == "DEGRADED or CRITICAL"
    assert _install("--block-on", "degraded", "--service", "emergence-app") == 0
    said = capsys.readouterr().out
    comment = (repo / ".git" / "hooks" / "pre-push").read_text(encoding="utf-8")
    for line in hooks.describe("degraded", ["--service", "emergence-app"]):
        assert f"  {line}\n" in said
        assert f"# {line}\n" in comment
    assert "it blocks the push when production is DEGRADED or CRITICAL; UNKNOWN" in said


def test_the_hook_core_imports_no_click() -> None:
    """hooks.py decides and writes; the CLI alone prints, and nothing imports the CLI back."""
    probe = "import sys, prodguardian.hooks; print({'click', 'prodguardian.cli'} & set(sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "set()"
    tree = ast.parse(Path(hooks.__file__).read_text(encoding="utf-8"))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not imported & {"click", "importlib", "prodguardian.cli"}, (
        "no import of click or the CLI, even lazily"
    )
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    assert not names & {"print", "__import__"}, "a core never prints"


def test_the_installed_form_runs_the_hidden_command(repo: Path, small_exports: dict[str, Path]) -> None:
    """An installed package: `python -P -m prodguardian _hook pre-push …`, which `--help` does not list."""
    text = hooks.hook_script(
        "pre-push",
        python=sys.executable,
        block_on="critical",
        check_args=["--source", str(small_exports["critical"])],
    )
    assert f"'{sys.executable}' -P -m prodguardian _hook pre-push --block-on critical -- '--source'" in text
    hook = repo / ".git" / "hooks" / "pre-push"
    hook.write_text(text, encoding="utf-8")
    done = _run_hook(hook, repo)
    assert done.returncode == 1 and "push blocked: production is CRITICAL" in done.stderr
    assert (
        "_hook"
        not in subprocess.run(
            [sys.executable, "-m", "prodguardian", "--help"], capture_output=True, text=True, check=True
        ).stdout
    )


# What `prodguardian hooks install pre-push` wrote before the hook became a CLI command: the runner was
# `prodguardian.hooks`, run as a module (installed package) or imported from a checkout.
LEGACY_CALLS = {
    "installed": "{python} -P -m prodguardian.hooks pre-push --block-on critical -- '--source' {source}",
    "checkout": (
        "{python} -P -c 'import sys; sys.path.insert(0, sys.argv.pop(1)); "
        "from prodguardian.hooks import main; sys.exit(main())' {root} "
        "pre-push --block-on critical -- '--source' {source}"
    ),
}
LEGACY_SCRIPT = """#!/bin/sh
# prodguardian-hook: pre-push, written by `prodguardian hooks install pre-push` (prodguardian 0.1.0).
{call}
status=$?
if [ "$status" -eq 10 ]; then
    exit 1
elif [ "$status" -ne 0 ]; then
    echo "prodguardian: the pre-push hook could not run the check (exit $status);" \\
        "not blocking the push." >&2
fi
exit 0
"""


@pytest.mark.parametrize(
    ("form", "export", "blocks"), [("installed", "critical", True), ("checkout", "degraded", False)]
)
def test_hooks_written_by_an_older_version_keep_working(
    repo: Path, small_exports: dict[str, Path], form: str, export: str, blocks: bool
) -> None:
    """They call `prodguardian.hooks`, which hands their arguments to the hook command: same decision."""
    call = LEGACY_CALLS[form].format(
        python=f"'{sys.executable}'",
        source=f"'{small_exports[export]}'",
        root=f"'{Path(hooks.__file__).resolve().parent.parent}'",
    )
    hook = repo / ".git" / "hooks" / "pre-push"
    hook.write_text(LEGACY_SCRIPT.format(call=call), encoding="utf-8")
    done = _run_hook(hook, repo)
    assert done.returncode == (1 if blocks else 0), done.stderr
    assert ("push blocked: production is CRITICAL" in done.stderr) is blocks
    assert "could not run the check" not in done.stderr and "Traceback" not in done.stderr
