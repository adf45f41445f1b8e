"""The plugin in the real Claude Code CLI (the `@anthropic-ai/claude-code` npm package), offline.

`.ci/run` installs the CLI into `.ci/cache/claude-code` when npm is present and names its `claude` in
PRODGUARDIAN_CLAUDE_CODE; without it these tests are skipped. A copy of the repository under a path with a
space is added as a marketplace and the plugin installed from it into a temporary HOME; then `claude -p
"/check_prod --source FILE"` runs against a loopback stand-in for the Anthropic Messages API that records
what the model receives and answers from a script: no account, no network.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from prodguardian import simulate
from prodguardian.source import write_export

ROOT = Path(__file__).resolve().parents[1]
CLAUDE = os.environ.get("PRODGUARDIAN_CLAUDE_CODE", "")
ROLLBACK = (  # what the bad-deploy report recommends; the stand-in model tries to run it
    "gcloud run services update-traffic emergence-app --to-revisions=emergence-app-00297-6pr=100 "
    "--region=europe-west1 --project=emergence-469005"
)

needs_claude = pytest.mark.skipif(
    not CLAUDE,
    reason="the real Claude Code CLI is not installed: .ci/run installs it with npm "
    "and names its `claude` in PRODGUARDIAN_CLAUDE_CODE",
)


def test_ci_runs_the_readmes_test_commands() -> None:
    """What installs the CLI for this file is in the README's Tests section and in .ci/run alike."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Tests\n", 1)[1].split("\n## ", 1)[0]
    commands = re.search(r"```sh\n(.*?)```", section, re.S)
    assert commands, "the Tests section starts with its commands"
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert ci.endswith("\n" + commands[1]), "the commands end .ci/run, as they are"
    assert "PRODGUARDIAN_CLAUDE_CODE" in commands[1] and "/.ci/cache/" in (ROOT / ".gitignore").read_text()


# --- a stand-in for the Anthropic Messages API -------------------------------------------------------------


@dataclass
class StandInModel:
    """Answers POST /v1/messages: the agent's turns (requests that offer tools) from `script`, one step each
    (a tool call or a text), anything else with a short text; records every request body."""

    script: list[dict[str, Any]]
    requests: list[dict[str, Any]] = field(default_factory=list)
    _steps: Iterator[int] = field(default_factory=itertools.count)

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        self.requests.append(request)
        if not request.get("tools"):
            return {"text": "ok"}
        return self.script[min(next(self._steps), len(self.script) - 1)]

    def agent_turns(self) -> list[dict[str, Any]]:
        return [request for request in self.requests if request.get("tools")]


def _message(step: dict[str, Any], model: str) -> dict[str, Any]:
    if "tool" in step:
        block = {"type": "tool_use", "id": f"toolu_{abs(hash(json.dumps(step))):x}", "name": step["tool"]}
        block["input"] = step["input"]
        stop = "tool_use"
    else:
        block, stop = {"type": "text", "text": step["text"]}, "end_turn"
    return {
        "id": "msg_stand_in",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [block],
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": 100, "output_tokens": 10},
    }


def _events(message: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The message as the streaming API sends it (server-sent events)."""
    block = message["content"][0]
    yield "message_start", {"message": {**message, "content": [], "stop_reason": None}}
    if block["type"] == "text":
        yield "content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}
        yield "content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": block["text"]}}
    else:
        yield "content_block_start", {"index": 0, "content_block": {**block, "input": {}}}
        delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
        yield "content_block_delta", {"index": 0, "delta": delta}
    yield "content_block_stop", {"index": 0}
    stop = {"stop_reason": message["stop_reason"], "stop_sequence": None}
    yield "message_delta", {"delta": stop, "usage": {"output_tokens": 10}}
    yield "message_stop", {}


def _handler(model: StandInModel) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            request = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
            if "count_tokens" in self.path:
                return self._json({"input_tokens": 100})
            message = _message(model.answer(request), str(request.get("model", "claude")))
            if not request.get("stream"):
                return self._json(message)
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.end_headers()
            for name, data in _events(message):
                self.wfile.write(f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n".encode())

        def do_GET(self) -> None:
            self.send_response(404)
            self.end_headers()

        def _json(self, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


Start = Callable[[list[dict[str, Any]]], tuple[StandInModel, str]]


@pytest.fixture
def stand_in() -> Iterator[Start]:
    """Starts a StandInModel on a script; gives it and its base URL."""
    servers: list[ThreadingHTTPServer] = []

    def start(script: list[dict[str, Any]]) -> tuple[StandInModel, str]:
        model = StandInModel(script)
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(model))
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return model, f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


# --- the installed plugin ---------------------------------------------------------------------------------


@dataclass
class Install:
    repo: Path  # the repository's copy, the marketplace
    home: Path
    project: Path  # a git repository, where claude runs
    bin: Path  # put first on PATH: python3 (this interpreter) and a gcloud that logs to $GCLOUD_CALLS
    export: Path  # a CRITICAL export from the simulator


def _claude(
    install: Install, *args: str, cwd: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CLAUDE", "ANTHROPIC_", "PRODGUARDIAN_", "GOOGLE_", "GCP_", "LOGGING_EMULATOR"))
    }
    clean.update(
        HOME=str(install.home),
        USERPROFILE=str(install.home),
        PATH=os.pathsep.join([str(install.bin), os.environ.get("PATH", "")]),
        NO_PROXY="127.0.0.1,localhost",
        DISABLE_TELEMETRY="1",
        DISABLE_ERROR_REPORTING="1",
        DISABLE_AUTOUPDATER="1",
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
    )
    clean.update(env)
    return subprocess.run(
        [CLAUDE, *args],
        cwd=cwd or install.project,
        env=clean,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def install(tmp_path_factory: pytest.TempPathFactory) -> Install:
    """The repository as it is now (tracked and new files, not ignored ones) under a path with a space,
    added as a marketplace and its plugin installed, in a fresh HOME."""
    if not os.access(CLAUDE, os.X_OK):
        pytest.fail(f"PRODGUARDIAN_CLAUDE_CODE={CLAUDE} is not an executable")
    base = tmp_path_factory.mktemp("claude code") / "with space"
    repo, home, project, bin_dir = (
        base / "prodguardian repo",
        base / "home dir",
        base / "my app",
        base / "bin",
    )
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        if (ROOT / name).is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, repo / name)
    home.mkdir()
    (project / "src").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    bin_dir.mkdir()
    (bin_dir / "python3").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (bin_dir / "gcloud").write_text('#!/bin/sh\necho "$@" >> "$GCLOUD_CALLS"\necho done\n')
    for tool in ("python3", "gcloud"):
        (bin_dir / tool).chmod(0o755)
    export = base / "db outage.json"
    write_export(simulate.generate("db-outage", hours=3), str(export))
    found = Install(repo, home, project, bin_dir, export)

    for manifest in (repo, repo / "claude-plugin"):
        done = _claude(found, "plugin", "validate", str(manifest))
        assert done.returncode == 0 and "Validation passed" in done.stdout, done.stdout + done.stderr
    for command in (("marketplace", "add", str(repo)), ("install", "prodguardian@prodguardian")):
        done = _claude(found, "plugin", *command)
        assert done.returncode == 0 and "Successfully" in done.stdout, done.stdout + done.stderr
    installed = json.loads((home / ".claude" / "plugins" / "installed_plugins.json").read_text())
    assert "prodguardian@prodguardian" in installed["plugins"]
    return found


def _text(request: dict[str, Any]) -> str:
    """Everything the user turns of a request say (text blocks and tool results)."""
    parts = []
    for message in request["messages"]:
        content = message["content"]
        for block in [{"type": "text", "text": content}] if isinstance(content, str) else content:
            if block.get("type") == "text":
                parts.append(block["text"])
            elif block.get("type") == "tool_result":
                inner = block.get("content")
                parts.append(inner if isinstance(inner, str) else json.dumps(inner))
    return "\n".join(parts)


def _tool_results(request: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        block
        for message in request["messages"]
        if isinstance(message["content"], list)
        for block in message["content"]
        if block.get("type") == "tool_result"
    ]


@needs_claude
def test_check_prod_reaches_the_model_and_production_stays_read_only(
    install: Install, stand_in: Start, tmp_path: Path
) -> None:
    """`/check_prod` as typed: the CRITICAL report and its evidence reach the model, inside fences; the
    model's attempt at the report's rollback is denied by the plugin's hook, with its reason."""
    model, url = stand_in([{"tool": "Bash", "input": {"command": ROLLBACK}}, {"text": "Rolled back? No."}])
    done = _claude(
        install,
        "-p",
        f"/check_prod --source '{install.export}'",
        cwd=install.project / "src",
        ANTHROPIC_BASE_URL=url,
        ANTHROPIC_API_KEY="dummy",
        GCLOUD_CALLS=str(tmp_path / "gcloud calls.log"),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Unknown command" not in done.stdout
    first, second = model.agent_turns()[:2]
    prompt = _text(first)
    assert "<command-name>/prodguardian:check_prod</command-name>" in prompt
    fenced = re.search(
        r"^(`{3,})\n(## 🔴 Production Status: CRITICAL — `emergence-app`.*?)^\1$", prompt, re.S | re.M
    )
    assert fenced, prompt[:3000]
    report = fenced[2]
    assert (
        "Database connection is not available" in report
        and "`src/backend/core/database/manager.py:64` in `_ensure_connection`" in report
    )
    json_report = install.project / "reports" / "prod_report.json"  # the git top-level, not src/
    assert f"check_prod_logs.py: exit code 2 (CRITICAL) · JSON report: {json_report}" in prompt
    assert json.loads(json_report.read_text(encoding="utf-8"))["status"] == "CRITICAL"

    (denied,) = _tool_results(second)
    assert denied["is_error"] is True
    assert "ProdGuardian keeps production read-only" in _text(second)
    assert not (tmp_path / "gcloud calls.log").exists(), "gcloud never ran"


@needs_claude
def test_prodguardian_check_prod_and_the_skills_own_deny_rules(
    install: Install, stand_in: Start, tmp_path: Path
) -> None:
    """The namespaced name resolves too. With hooks off and every gcloud command allowed, the skill's
    disallowed-tools still deny the rollback, and a read-only gcloud command runs."""
    describe = "gcloud run services describe emergence-app --region=europe-west1"
    model, url = stand_in(
        [
            {"tool": "Bash", "input": {"command": ROLLBACK}},
            {"tool": "Bash", "input": {"command": describe}},
            {"text": "Done."},
        ]
    )
    done = _claude(
        install,
        "-p",
        f"/prodguardian:check_prod --source '{install.export}' --lang fr",
        "--settings",
        json.dumps({"disableAllHooks": True}),
        "--allowedTools",
        "Bash(gcloud:*)",
        ANTHROPIC_BASE_URL=url,
        ANTHROPIC_API_KEY="dummy",
        GCLOUD_CALLS=str(tmp_path / "gcloud calls.log"),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    turns = model.agent_turns()
    assert "## 🔴 État de la production\u00a0: CRITICAL" in _text(turns[0]) and "Fenêtre" in _text(turns[0])
    rollback, read = _tool_results(turns[-1])  # the last turn holds the whole conversation
    assert rollback["is_error"] is True and "has been denied" in json.dumps(rollback)
    assert "ProdGuardian keeps production" not in json.dumps(rollback), "the hook was off: the rule denied it"
    assert not read.get("is_error")
    calls = (tmp_path / "gcloud calls.log").read_text().splitlines()
    assert calls == [describe.removeprefix("gcloud ")]
