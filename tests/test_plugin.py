"""The Claude Code plugin: its manifests, the /check_prod command, and check_prod_logs.py run for real."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import jsonschema
import pytest
import yaml

import prodguardian
from prodguardian import simulate
from prodguardian.source import write_export

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "claude-plugin"
MANIFEST = PLUGIN / ".claude-plugin" / "plugin.json"
MARKETPLACE = ROOT / ".claude-plugin" / "marketplace.json"
COMMAND = PLUGIN / "commands" / "check_prod.md"
SCRIPT = PLUGIN / "scripts" / "check_prod_logs.py"
SCHEMA = ROOT / "templates" / "report.schema.json"
KEBAB = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
COMPONENT_KEYS = ("commands", "agents", "skills", "hooks", "mcpServers", "outputStyles", "lspServers")


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


# --- manifests ---------------------------------------------------------------------------------------------


def test_plugin_manifest() -> None:
    manifest = _json(MANIFEST)
    assert manifest["name"] == "prodguardian" and KEBAB.match(manifest["name"])
    assert manifest["version"] == prodguardian.__version__
    assert isinstance(manifest["description"], str) and len(manifest["description"]) > 20
    assert manifest["author"]["name"].strip()
    assert manifest["license"] == "MIT"
    assert manifest["keywords"] and all(isinstance(k, str) and k for k in manifest["keywords"])
    for key in COMPONENT_KEYS:  # custom component paths, if any: ./relative, inside the plugin, existing
        values = manifest.get(key, [])
        for value in [values] if isinstance(values, str) else values if isinstance(values, list) else []:
            assert value.startswith("./") and ".." not in Path(value).parts, (key, value)
            assert _inside(PLUGIN / value, PLUGIN) and (PLUGIN / value).exists(), (key, value)
    # .claude-plugin/ holds the manifest only; the components sit at the plugin root
    assert [p.name for p in MANIFEST.parent.iterdir()] == ["plugin.json"]
    assert COMMAND.is_file() and SCRIPT.is_file()


def test_marketplace_lists_the_plugin_by_relative_path() -> None:
    market = _json(MARKETPLACE)
    assert KEBAB.match(market["name"])
    assert market["owner"]["name"].strip()
    names = [entry["name"] for entry in market["plugins"]]
    assert len(names) == len(set(names)) and all(KEBAB.match(name) for name in names)
    entry = next(e for e in market["plugins"] if e["name"] == _json(MANIFEST)["name"])
    source = entry["source"]
    assert isinstance(source, str) and source.startswith("./") and ".." not in Path(source).parts
    assert source == "./claude-plugin"
    # relative sources resolve from the marketplace root: the folder that holds .claude-plugin/
    resolved = (MARKETPLACE.parent.parent / source).resolve()
    assert resolved == PLUGIN.resolve() and _inside(resolved, ROOT)
    assert (resolved / ".claude-plugin" / "plugin.json").is_file()
    if "version" in entry:
        assert entry["version"] == prodguardian.__version__


# --- the command -------------------------------------------------------------------------------------------


def _frontmatter(path: Path) -> tuple[dict[str, Any], str]:
    text = path.read_text(encoding="utf-8")
    assert text.startswith("---\n"), "a command starts with YAML frontmatter"
    head, body = text[4:].split("\n---\n", 1)
    meta = yaml.safe_load(head)
    assert isinstance(meta, dict)
    return meta, body


def _tools(spec: str) -> list[str]:
    """`Bash(a:*), Read` → ["Bash(a:*)", "Read"]: commas inside parentheses do not split."""
    tools, depth, word = [], 0, ""
    for char in spec:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            tools.append(word.strip())
            word = ""
        else:
            word += char
    return [*tools, word.strip()] if word.strip() else tools


def test_command_frontmatter_and_allowed_tools_cover_what_it_runs() -> None:
    meta, body = _frontmatter(COMMAND)
    assert isinstance(meta["description"], str) and meta["description"].strip()
    hint = meta["argument-hint"]
    assert isinstance(hint, str) and all(option in hint for option in ("--service", "--freshness", "--lang"))
    tools = _tools(meta["allowed-tools"])
    bash = [tool for tool in tools if tool.startswith("Bash(")]
    assert set(tools) - set(bash) <= {"Read", "Grep", "Glob"}, "besides the script, reading only"
    prefixes = []
    for rule in bash:
        found = re.fullmatch(r"Bash\((.+):\*\)", rule)
        assert found, f"{rule}: a prefix rule, Bash(COMMAND:*)"
        prefixes.append(found[1])
    assert all("check_prod_logs.py" in prefix for prefix in prefixes), "no Bash beyond the script"

    commands = re.findall(r"!`([^`]+)`", body)
    assert len(commands) == 1, "the body pre-executes exactly one command"
    command = commands[0]
    assert any(command == p or command.startswith(p + " ") for p in prefixes), (command, prefixes)
    assert "$ARGUMENTS" in command and "--agent" in command
    words = command.split()
    assert words[0] == "python3"
    script = Path(words[1].replace("${CLAUDE_PLUGIN_ROOT}", str(PLUGIN)))
    assert script.resolve() == SCRIPT.resolve() and _inside(script, PLUGIN)

    lowered = body.lower()
    for needed in (
        "status line",
        "innermost frame",
        "never run a command that changes production",
        "gcloud auth application-default login",
        "roles/logging.viewer",
        "reports/prod_report.json",
        "ready-to-paste commands",
    ):
        assert needed.lower() in lowered, needed


# --- check_prod_logs.py as a subprocess ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Simulated gcloud small_exports, 3 hours each (the newest is the checked window), made once."""
    folder = tmp_path_factory.mktemp("small_exports")
    files = {}
    for name in ("db-outage", "healthy", "slow"):
        files[name] = folder / f"{name}.json"
        write_export(simulate.generate(name, hours=3), str(files[name]))
    files["empty"] = folder / "empty.json"
    files["empty"].write_bytes(b"")
    return files


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PRODGUARDIAN_", "CLAUDE_", "GCP_PROJECT_ID", "GOOGLE_", "LOGGING_EMULATOR"))
    }
    env["PYTHONIOENCODING"] = "cp1252"  # a legacy Windows console: the script must still write UTF-8
    env.update(extra)
    return env


def _script(
    *args: str, project: Path, cwd: Path | None = None, **env: str
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=cwd or project,
        env=_env(CLAUDE_PROJECT_DIR=str(project), **env) if project else _env(**env),
        capture_output=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )


def _schema_valid(report: dict[str, Any]) -> None:
    if not SCHEMA.is_file():  # the schema is another change; until it lands, only this assertion is skipped
        return
    schema = _json(SCHEMA)
    validator = jsonschema.validators.validator_for(schema)
    validator.check_schema(schema)
    validator(schema).validate(report)


@pytest.mark.parametrize(
    ("scenario", "code", "status", "badge"),
    [("db-outage", 2, "CRITICAL", "🔴"), ("healthy", 0, "OK", "🟢"), ("slow", 1, "DEGRADED", "🟡")],
)
def test_status_exit_code_and_json_report(
    small_exports: dict[str, Path], tmp_path: Path, scenario: str, code: int, status: str, badge: str
) -> None:
    done = _script("--source", str(small_exports[scenario]), project=tmp_path)
    out = done.stdout.decode("utf-8")  # UTF-8 although PYTHONIOENCODING says cp1252
    assert done.returncode == code, done.stderr.decode("utf-8", "replace")
    assert out.splitlines()[0].startswith(f"## {badge} Production Status: {status}"), out[:300]
    report = tmp_path / "reports" / "prod_report.json"
    data = _json(report)
    assert data["status"] == status
    _schema_valid(data)
    if scenario == "db-outage":
        assert "RuntimeError: Database connection is not available." in out
        assert "manager.py:64" in out


@pytest.mark.parametrize("case", ["outside-window", "empty-file"])
def test_unknown_exits_3(small_exports: dict[str, Path], tmp_path: Path, case: str) -> None:
    if case == "outside-window":  # every entry is older than the window that ends at --until
        args = ["--source", str(small_exports["healthy"]), "--until", "2025-10-20T00:00:00Z"]
    else:
        args = ["--source", str(small_exports["empty"])]
    done = _script(*args, project=tmp_path)
    assert done.returncode == 3
    assert done.stdout.decode("utf-8").splitlines()[0].startswith("## ⚪ Production Status: UNKNOWN")
    data = _json(tmp_path / "reports" / "prod_report.json")
    assert data["status"] == "UNKNOWN"
    _schema_valid(data)


def test_error_still_gives_the_agent_an_unknown_block(tmp_path: Path) -> None:
    """No credentials: stdout (what `!` captures) says UNKNOWN, why, and how to log in; no stale report."""
    stale = tmp_path / "reports" / "prod_report.json"
    stale.parent.mkdir()
    stale.write_text('{"status": "OK"}', encoding="utf-8")
    missing_key = str(tmp_path / "no-such-key.json")
    args = ("--project", "demo-project", "--service", "emergence-app")
    done = _script(*args, project=tmp_path, GOOGLE_APPLICATION_CREDENTIALS=missing_key)
    out = done.stdout.decode("utf-8")
    assert done.returncode == 3
    assert "prodguardian: error:" in done.stderr.decode("utf-8")
    assert out.startswith("## ⚪ Production Status: UNKNOWN — the check could not run")
    assert "prodguardian: error: no Google credentials" in out
    assert "gcloud auth application-default login" in out and "roles/logging.viewer" in out
    assert not stale.exists(), "a report from an earlier run must not pass for this one"

    agent = _script("--agent", "--source", str(tmp_path / "no-such-export.json"), project=tmp_path)
    assert agent.returncode == 0, "Claude Code drops the output of a `!` command that exits non-zero"
    said = agent.stdout.decode("utf-8")
    assert agent.stderr == b"", "with --agent, stderr is folded into stdout"
    assert said.startswith("prodguardian: error:") and "## ⚪ Production Status: UNKNOWN" in said
    assert said.rstrip().splitlines()[-1] == "_check_prod_logs.py: exit code 3 (UNKNOWN)_"


def test_agent_mode_exits_0_and_names_the_report(small_exports: dict[str, Path], tmp_path: Path) -> None:
    done = _script("--agent", "--source", str(small_exports["db-outage"]), "--lang", "fr", project=tmp_path)
    out = done.stdout.decode("utf-8")
    assert done.returncode == 0
    assert out.startswith("## 🔴 État de la production\u00a0: CRITICAL")  # a French report
    report = (tmp_path / "reports" / "prod_report.json").resolve()
    assert (
        out.rstrip().splitlines()[-1]
        == f"_check_prod_logs.py: exit code 2 (CRITICAL) · JSON report: {report}_"
    )


def test_report_goes_to_the_git_top_level(small_exports: dict[str, Path], tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "src" / "deep").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    # no CLAUDE_PROJECT_DIR: the project is the git top-level, not the working directory
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--source", str(small_exports["healthy"]), "--format", "json"],
        cwd=repo / "src" / "deep",
        env=_env(),
        capture_output=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr.decode("utf-8", "replace")
    assert json.loads(done.stdout)["status"] == "OK"
    assert _json(repo / "reports" / "prod_report.json")["status"] == "OK"
    assert not (repo / "src" / "deep" / "reports").exists()


@pytest.mark.parametrize("agent", [False, True])
def test_missing_package_prints_one_install_line(tmp_path: Path, agent: bool) -> None:
    """The installed plugin without the package: -S -I hides site-packages; no checkout around the copy."""
    copy = tmp_path / "plugin" / "scripts" / "check_prod_logs.py"
    copy.parent.mkdir(parents=True)
    shutil.copy(SCRIPT, copy)
    project = tmp_path / "project"
    project.mkdir()
    env = {"PATH": os.environ.get("PATH", ""), "CLAUDE_PROJECT_DIR": str(project)}
    env.update({k: os.environ[k] for k in ("SYSTEMROOT", "TEMP", "TMP") if k in os.environ})
    isolated = [sys.executable, "-S", "-I"]
    probe = subprocess.run(
        [*isolated, "-c", "import prodguardian"], cwd=project, env=env, capture_output=True
    )
    assert probe.returncode != 0, "this interpreter setup must not see prodguardian"
    args = ["--agent"] if agent else []
    done = subprocess.run(
        [*isolated, str(copy), *args], cwd=project, env=env, capture_output=True, timeout=60
    )
    lines = done.stdout.decode("utf-8").strip().splitlines()
    assert "pip install prodguardian" in lines[0] and "not installed" in lines[0]
    if agent:
        assert done.returncode == 0 and lines[-1] == "_check_prod_logs.py: exit code 3 (UNKNOWN)_"
    else:
        assert done.returncode == 3 and len(lines) == 1, lines


# --- option passing, in-process (no check runs) -------------------------------------------------------------


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_prod_logs_under_test", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        ([], {"GCP_PROJECT_ID": "legacy-project"}, ["--project", "legacy-project"]),
        (["--project", "given"], {"GCP_PROJECT_ID": "legacy-project"}, ["--project", "given"]),
        ([], {"GCP_PROJECT_ID": "legacy-project", "PRODGUARDIAN_PROJECT": "configured"}, []),
        (
            ["--service", "api", "--freshness", "15m", "--lang", "fr", "--until", "2025-10-11T12:04:00Z"],
            {},
            ["--lang", "fr", "--service", "api", "--freshness", "15m", "--until", "2025-10-11T12:04:00Z"],
        ),
        (
            ["--region", "europe-west1", "--baseline", "6h"],
            {},
            ["--region", "europe-west1", "--baseline", "6h"],
        ),
        (["--format", "json", "--source", "logs.json"], {}, ["--source", "logs.json"]),
    ],
)
def test_options_reach_prodguardian_check(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, argv: list[str], env: dict[str, str], expected: list[str]
) -> None:
    module = _load_script()
    seen: list[list[str]] = []
    fake_cli = SimpleNamespace(main=lambda check: seen.append(check) or 0)
    monkeypatch.setattr(module, "_import_cli", lambda project_dir: fake_cli)
    for name in ("GCP_PROJECT_ID", "PRODGUARDIAN_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CLAUDE_PROJECT_DIR", str(tmp_path))
    assert module.main(argv) == 0
    report = str(tmp_path.resolve() / "reports" / "prod_report.json")
    fmt = argv[argv.index("--format") + 1] if "--format" in argv else "markdown"
    assert seen == [["check", "--format", fmt, "--json-report", report, *expected]]


@pytest.mark.parametrize("where", ["absolute", "relative"])
def test_report_option(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, where: str) -> None:
    """--report PATH: an absolute PATH as is, a relative one under the project directory (not the cwd)."""
    module = _load_script()
    seen: list[list[str]] = []
    monkeypatch.setattr(
        module, "_import_cli", lambda project_dir: SimpleNamespace(main=lambda c: seen.append(c) or 0)
    )
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.setenv("CLAUDE_PROJECT_DIR", str(project))
    monkeypatch.chdir(tmp_path)
    given = str(tmp_path / "elsewhere" / "r.json") if where == "absolute" else "out/mine.json"
    assert module.main(["--report", given]) == 0
    wanted = Path(given) if where == "absolute" else project.resolve() / "out" / "mine.json"
    assert seen[0][seen[0].index("--json-report") + 1] == str(wanted)
