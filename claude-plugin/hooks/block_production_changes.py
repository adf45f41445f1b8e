#!/usr/bin/env python3
"""Claude Code `PreToolUse` hook: while ProdGuardian's plugin is enabled, the agent never changes production.

Claude Code sends each Bash (or PowerShell) call as JSON on stdin before running it. A command that would
change a Cloud Run service — the report's ready-to-paste `gcloud run services update-traffic …` rollback and
`gcloud run services update …` fixes, `gcloud run deploy`, `delete`, `replace`, … — is denied, and the reason
tells the agent to hand the command to the user instead. Reading (`describe`, `list`, `logs`, `gcloud logging
read`, `/check_prod` again) is never blocked. Standard library only; it never blocks anything but those.

It reads the command as a shell would split it: `a && b`, `a; b`, pipes, new lines, `$(…)`, backticks,
`bash -c "…"`, `sudo`/`env`/`VAR=x` prefixes, a path to gcloud, release tracks (`gcloud beta run …`) and flags
anywhere (`gcloud --project p run deploy`). It is a guard rail against the commands the report prints, not a
sandbox: a script file or another tool that calls the Cloud Run API is not seen.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from collections.abc import Iterator
from pathlib import PureWindowsPath

# `gcloud run` verbs that change something (services, jobs, revisions, domain mappings, worker pools, IAM).
WRITE_VERBS = frozenset(
    {
        "deploy",
        "update",
        "update-traffic",
        "delete",
        "replace",
        "create",
        "execute",
        "cancel",
        "up",
        "set-iam-policy",
        "add-iam-policy-binding",
        "remove-iam-policy-binding",
    }
)
OPERATORS = ";&|()<>`\n"  # what ends a simple command (and redirections, which hold no command)
# programs whose quoted arguments are command lines: `bash -c "…"`, `eval "…"`, `ssh host "…"`
SHELLS = frozenset(
    {"bash", "sh", "zsh", "dash", "ksh", "fish", "pwsh", "powershell", "cmd", "eval", "ssh", "su"}
)
MAX_DEPTH = 3  # quoted commands inside quoted commands: enough for `bash -c "echo \"$(…)\""`
REASON = (
    "ProdGuardian keeps production read-only for the agent: `{command}` changes the Cloud Run service, "
    "so it was not run. Give the user this command, what it does and when to run it; do not run it, "
    "and do not try another way to make this change."
)


def main() -> int:
    raw = sys.stdin.buffer.read().decode("utf-8", "replace")
    try:
        event = json.loads(raw)
        tool_input = event.get("tool_input") if isinstance(event, dict) else None
        command = tool_input.get("command") if isinstance(tool_input, dict) else None
        blocked = production_change(command) if isinstance(command, str) else None
    except Exception:  # a bug here must not let a rollback through: deny what may be one
        blocked = "gcloud run …" if re.search(r"gcloud.*\brun\b", raw) else None
    if blocked is not None:
        decision = {
            "hookEventName": "PreToolUse",
            "permissionDecision": "deny",
            "permissionDecisionReason": REASON.format(command=blocked),
        }
        sys.stdout.write(json.dumps({"hookSpecificOutput": decision}))
    return 0


def production_change(command: str) -> str | None:
    """The first `gcloud run …` write in a shell command line (its words, shortened), or None."""
    for words in simple_commands(command):
        found = _gcloud_run_write(words)
        if found is not None:
            return found
    return None


def simple_commands(text: str, depth: int = 0) -> Iterator[list[str]]:
    """The words of each simple command in `text`, and of the commands in its quoted words that run:
    `$(…)` and backticks anywhere, any argument of a shell (`bash -c "…"`)."""
    try:
        lexer = shlex.shlex(_without_heredoc_data(text), posix=True, punctuation_chars=OPERATORS)
        lexer.whitespace = " \t\r"  # a new line ends a command: it is an operator here
        lexer.whitespace_split = True
        tokens = list(lexer)
    except ValueError:  # an unclosed quote: read the words without quoting
        tokens = re.findall(rf"[^\s{re.escape(OPERATORS)}'\"]+|[{re.escape(OPERATORS)}]", text)
    words: list[str] = []
    for token in tokens:
        if token and all(char in OPERATORS for char in token):
            yield words
            words = []
            continue
        runs = "`" in token or "$(" in token or any(_program(word) in SHELLS for word in words)
        if runs and depth < MAX_DEPTH and token.strip():
            yield from simple_commands(token, depth + 1)
        words.append(token)
    yield words


def _without_heredoc_data(text: str) -> str:
    """`text` without the bodies of its here-documents (`cat <<'EOF' > notes.md`): data, not commands,
    unless a shell reads them (`bash <<EOF`)."""
    lines = text.split("\n")
    kept: list[str] = []
    at = 0
    while at < len(lines):
        line = lines[at]
        kept.append(line)
        at += 1
        tags = re.findall(r"(?<!<)<<(?!<)-?[ \t]*['\"]?([A-Za-z_]\w*)", line)
        if any(_program(word) in SHELLS for word in line.split()):
            continue
        for tag in tags:
            while at < len(lines) and lines[at].strip() != tag:
                at += 1
            at += 1  # the line that closes it
    return "\n".join(kept)


def _gcloud_run_write(words: list[str]) -> str | None:
    for at, word in enumerate(words):
        if _program(word) != "gcloud":
            continue
        positional = [w for w in words[at + 1 :] if not w.startswith("-")]
        # `run` first, or after a release track (`beta run`) or a flag's value (`--project p run`)
        if "run" in positional[:3]:
            after = positional[positional.index("run") + 1 :]
            if any(verb in WRITE_VERBS for verb in after):
                shown = " ".join(words[at:])
                return shown if len(shown) <= 160 else shown[:159] + "…"
    return None


def _program(word: str) -> str:
    """`/usr/bin/gcloud`, `C:\\…\\gcloud.cmd`, `gcloud.exe` → `gcloud`."""
    name = PureWindowsPath(word).name.lower()  # splits on / and \ alike
    return re.sub(r"\.(cmd|exe|bat|ps1)$", "", name)


if __name__ == "__main__":
    sys.exit(main())
