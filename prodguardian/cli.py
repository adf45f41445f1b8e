"""The `prodguardian` command: parse options, call the core, render, map errors to exit codes.

Exit codes: 0 OK, 1 DEGRADED, 2 CRITICAL, 3 UNKNOWN — and 3 for every error (bad input, bad rules, bad
options, logs that could not be fetched), so a broken check never looks like a degraded service.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import yaml

from prodguardian import __version__
from prodguardian.check import CheckOptions, CheckRun, run_check
from prodguardian.errors import ConfigError, ProdGuardianError
from prodguardian.files import write_text
from prodguardian.render import FORMATS, LANGUAGES, render
from prodguardian.rules import collect_pack, load_pack
from prodguardian.source import FileSource, write_export

CONFIG_FILE = "prodguardian.yaml"
ENV_PREFIX = "PRODGUARDIAN_"
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)$")
_UNITS = {"s": "seconds", "m": "minutes", "min": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str, name: str = "duration") -> timedelta:
    """`90s`, `15m`, `1h`, `2d`, `1w` as a timedelta."""
    found = _DURATION.match(str(text).strip())
    if not found or float(found[1]) <= 0:
        raise ConfigError(f"{name}: {text!r} is not a duration like 15m, 1h, 24h or 7d")
    return timedelta(**{_UNITS[found[2]]: float(found[1])})


def parse_time(text: str, name: str = "time") -> datetime:
    try:
        moment = datetime.fromisoformat(str(text).strip())
    except ValueError:
        raise ConfigError(f"{name}: {text!r} is not an ISO 8601 time like 2025-10-11T12:04:00Z") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _env(name: str) -> str:
    return ENV_PREFIX + name.upper()


def _option(*names: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A click option that also reads PRODGUARDIAN_<NAME> and the config file."""
    long_name = next(n for n in names if n.startswith("--"))
    kwargs.setdefault("envvar", _env(long_name[2:].replace("-", "_")))
    kwargs.setdefault("show_envvar", True)
    return click.option(*names, **kwargs)


def _config_defaults(path: str | None) -> dict[str, Any]:
    """Settings from prodguardian.yaml (or --config), one flat mapping of option names to values."""
    file = Path(path) if path else Path(CONFIG_FILE)
    if not file.is_file():
        if path:
            raise ConfigError("config file not found", path)
        return {}
    try:
        loaded = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{file}:{mark.line + 1}:{mark.column + 1}" if mark else str(file)
        raise ConfigError(f"invalid YAML: {exc.problem}", where) from None
    if not isinstance(loaded, dict):
        raise ConfigError("a config file is a mapping of settings, like `service: emergence-app`", str(file))
    return {str(k).replace("-", "_"): v for k, v in loaded.items()}


class _Group(click.Group):
    """Applies config-file settings as defaults of every command that has the option."""

    def invoke(self, ctx: click.Context) -> Any:
        settings = _config_defaults(ctx.params.get("config"))
        known = {p.name for c in self.commands.values() for p in _all_params(c)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise ConfigError(f"unknown setting {unknown[0]!r}", ctx.params.get("config") or CONFIG_FILE)
        ctx.default_map = {name: settings for name in self.commands}
        for group in self.commands.values():
            if isinstance(group, click.Group):
                ctx.default_map[group.name or ""] = {sub: settings for sub in group.commands}
        return super().invoke(ctx)


def _all_params(command: click.Command) -> Iterable[click.Parameter]:
    yield from command.params
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            yield from _all_params(sub)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="prodguardian")
@click.option(
    "--config",
    type=click.Path(dir_okay=False),
    envvar="PRODGUARDIAN_CONFIG",
    help=f"Settings file (default: ./{CONFIG_FILE} when present).",
)
def cli(config: str | None) -> None:
    """Is production healthy right now? If not, why, and what to do.

    \b
    Examples:
      prodguardian demo                                   # the 2025-10-11 incident, offline
      prodguardian check --service emergence-app          # live, from Cloud Logging
      prodguardian check --source export.json --lang fr   # an exported window
    """


def _stack(*decorators: Callable[[Callable[..., Any]], Callable[..., Any]]) -> Callable[..., Any]:
    """One decorator applying several click options, in the order written."""

    def apply(command: Callable[..., Any]) -> Callable[..., Any]:
        for decorator in reversed(decorators):
            command = decorator(command)
        return command

    return apply


_report_options = _stack(
    _option(
        "--format",
        "fmt",
        type=click.Choice(FORMATS),
        default="text",
        show_default=True,
        help="text for a terminal, markdown for an agent or a chat, json for machines.",
    ),
    _option(
        "--lang",
        type=click.Choice(LANGUAGES),
        default="en",
        show_default=True,
        help="Language of the report.",
    ),
    _option(
        "--output",
        type=click.Path(dir_okay=False),
        default=None,
        help="Write the report to FILE (whole or not at all) instead of stdout.",
    ),
    _option(
        "--json-report",
        type=click.Path(dir_okay=False),
        default=None,
        help="Also write the JSON report to FILE (for tools, next to a text or markdown report).",
    ),
)
_rules_option = _option(
    "--rules",
    "rules_dirs",
    multiple=True,
    type=click.Path(file_okay=False),
    help="Extra rule directory (repeatable); a rule with a built-in id replaces it.",
)
_window_options = _stack(
    _option("--service", help="Cloud Run service name (required when the input holds several)."),
    _option(
        "--freshness", default="1h", show_default=True, help="Length of the checked window (15m, 1h, 6h…)."
    ),
    _option(
        "--until", help="End of the window, ISO 8601 (default: now for cloud, the newest entry for a file)."
    ),
    _option(
        "--baseline", default="24h", show_default=True, help="How far before the window 'normal' is measured."
    ),
)
_cloud_options = _stack(
    _option("--project", help="Google Cloud project (default: from the environment or gcloud)."),
    _option("--region", help="Cloud Run region, to narrow the read and for commands."),
    _option("--endpoint", envvar="PRODGUARDIAN_LOGGING_ENDPOINT", help="Logging API endpoint URL."),
    _option(
        "--max-entries",
        type=click.IntRange(min=1),
        default=200_000,
        show_default=True,
        help="Stop reading Cloud Logging after this many entries (the report says it is partial).",
    ),
    _option(
        "--show-filter", is_flag=True, help="Print the Cloud Logging filter that would be sent, and exit."
    ),
    _option("--quiet", "-q", is_flag=True, help="No progress or warnings on stderr."),
)


@cli.command()
@_option(
    "--source",
    default="cloud",
    show_default=True,
    help="cloud (Cloud Logging), an export file (JSON array, JSON Lines, entries:list, .gz), or - for stdin.",
)
@_window_options
@_report_options
@_rules_option
@_cloud_options
@click.pass_context
def check(ctx: click.Context, /, **opts: Any) -> None:
    """Check the service's logs and print a 🟢/🟡/🔴 report.

    \b
    Examples:
      prodguardian check --service emergence-app --freshness 15m
      prodguardian check --source logs.json --until 2025-10-11T12:04:00Z
      gcloud logging read '...' --format=json | prodguardian check --source - --format markdown
    """
    options = _check_options(opts)
    pack = load_pack(options.rules)
    if opts["source"] == "cloud":
        source: Any = _cloud_source(opts, options, pack)
        if opts["show_filter"]:
            click.echo(source.filter)
            ctx.exit(0)
    else:
        source = FileSource(opts["source"])
    run = run_check(source, options, pack)
    if getattr(source, "stats", None) and _shows_progress(opts):
        click.echo(err=True)  # end the progress line
    ctx.exit(_emit(run, opts))


def _check_options(opts: dict[str, Any]) -> CheckOptions:
    until = parse_time(opts["until"], "--until") if opts.get("until") else None
    if until is None and opts.get("source") == "cloud":
        until = datetime.now(UTC)
    return CheckOptions(
        service=opts.get("service") or None,
        freshness=parse_duration(opts["freshness"], "--freshness"),
        until=until,
        baseline=parse_duration(opts["baseline"], "--baseline"),
        rules=tuple(opts.get("rules_dirs") or ()),
    )


def _cloud_source(opts: dict[str, Any], options: CheckOptions, pack: Any) -> Any:
    from prodguardian import cloud  # imported here: the Google libraries take a while to load

    assert options.until is not None
    query = cloud.CloudQuery(
        start=options.until - options.freshness - options.baseline,
        end=options.until,
        project=opts.get("project") or None,
        service=options.service,
        region=opts.get("region") or None,
        message_regexes=pack.pushdown_regexes(),
        max_entries=opts.get("max_entries") or 200_000,
        endpoint=opts.get("endpoint") or None,
    )
    progress = _progress_line if _shows_progress(opts) else None
    return cloud.CloudSource(query, progress=progress)


@cli.command()
@_window_options
@_rules_option
@_cloud_options
@_option("--output", default="-", show_default=True, help="Where to write the export (- for stdout).")
@_option("--jsonl", is_flag=True, help="Write JSON Lines (one entry a line) instead of a JSON array.")
@click.pass_context
def fetch(ctx: click.Context, /, **opts: Any) -> None:
    """Write the window and its baseline, as read from Cloud Logging, to a gcloud-compatible export.

    The export replays offline with `prodguardian check --source FILE` and can be attached to a bug report.
    It holds what `check --source cloud` reads: the same filter, the same entries.

    \b
    Examples:
      prodguardian fetch --service emergence-app --output window.json
      prodguardian fetch --service emergence-app --freshness 15m --baseline 6h --jsonl --output w.jsonl
    """
    options = _check_options({**opts, "source": "cloud"})
    source = _cloud_source(opts, options, load_pack(options.rules))
    if opts["show_filter"]:
        click.echo(source.filter)
        ctx.exit(0)
    count = write_export(source, opts["output"], jsonl=opts["jsonl"])
    if not opts["quiet"]:
        click.echo(f"\nwrote {count:,} entries to {opts['output']}", err=True)
        if source.truncated:
            click.echo(
                f"warning: stopped at --max-entries {opts['max_entries']:,}: the export is partial", err=True
            )


def _shows_progress(opts: dict[str, Any]) -> bool:
    """Progress goes to a terminal only: never into a cron mail or an agent's context."""
    return not opts.get("quiet") and sys.stderr.isatty()


def _progress_line(stats: Any) -> None:
    click.echo(
        f"\rread {stats.entries:,} entries in {stats.pages} pages, {stats.elapsed:.0f} s", nl=False, err=True
    )


def _emit(run: CheckRun, opts: dict[str, Any]) -> int:
    report = run.report
    skipped = report.context.totals.get("skipped", 0)
    if skipped and not opts.get("quiet"):
        click.echo(
            f"warning: skipped {skipped} entries that are not objects or have no usable timestamp", err=True
        )
    text = render(report, opts["fmt"], opts["lang"])
    if opts.get("json_report"):
        write_text(opts["json_report"], render(report, "json", opts["lang"]))
    if opts.get("output"):
        write_text(opts["output"], text)
    else:
        click.echo(text, nl=False)
    return report.exit_code


@cli.command()
@click.option("--scenario", default="db-outage", show_default=True, help="Which incident to simulate.")
@click.option("--list", "list_only", is_flag=True, help="List the scenarios and exit.")
@click.option(
    "--export", type=click.Path(dir_okay=False), help="Write the scenario as a gcloud JSON export instead."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the simulator.")
@_report_options
@_rules_option
def demo(scenario: str, list_only: bool, export: str | None, seed: int, **opts: Any) -> None:
    """Run the check on simulated Cloud Run traffic (no Google account needed).

    The report's status is printed, not returned: the demo exits 0 unless something breaks.

    \b
    Examples:
      prodguardian demo                          # the 2025-10-11 database outage
      prodguardian demo --scenario bad-deploy --lang fr
      prodguardian demo --list
      prodguardian demo --scenario memory-oom --export oom.json && prodguardian check --source oom.json
    """
    from prodguardian import simulate

    if list_only:
        for item in simulate.SCENARIOS.values():
            click.echo(f"{item.name:<18} {item.expected_status:<9} {item.title}")
        return
    if scenario not in simulate.SCENARIOS:
        raise ConfigError(f"unknown scenario {scenario!r}; known: {', '.join(simulate.SCENARIOS)}")
    entries = simulate.generate(scenario, seed=seed)
    if export:
        count = write_export(entries, export)
        click.echo(f"wrote {count:,} entries to {export}", err=True)
        return
    options = CheckOptions(rules=tuple(opts.get("rules_dirs") or ()))
    _emit(run_check(entries, options), {**opts, "quiet": False})


@cli.group()
def rules() -> None:
    """List, validate and test rules (built-in pack plus --rules directories)."""


@rules.command("list")
@click.option(
    "--rules", "rules_dirs", multiple=True, type=click.Path(file_okay=False), help="Extra rule directory."
)
def rules_list(rules_dirs: tuple[str, ...]) -> None:
    """Print every rule: id, type, category, and where it comes from.

    \b
    Example:
      prodguardian rules list --rules ./my-rules
    """
    pack = load_pack(rules_dirs)
    for rule in pack.rules:
        click.echo(f"{rule.id:<30} {rule.type:<9} {rule.category:<10} {rule.origin}")
    for objective in pack.objectives:
        click.echo(f"{'objective ' + objective.id:<30} {objective.metric}")


@rules.command("validate")
@click.argument("directories", nargs=-1, type=click.Path(file_okay=False))
@click.pass_context
def rules_validate(ctx: click.Context, directories: tuple[str, ...]) -> None:
    """Check rule files against the schema and RE2; print every error (exit 3 if any).

    With no directory, checks the built-in pack.

    \b
    Example:
      prodguardian rules validate ./my-rules
    """
    pack, errors = collect_pack(directories, builtin=not directories)
    for error in errors:
        click.echo(f"error: {error}", err=True)
    if errors:
        ctx.exit(3)
    click.echo(f"{len(pack.rules)} rules and {len(pack.objectives)} objectives OK in {len(pack.files)} files")


@rules.command("test")
@click.argument("directories", nargs=-1, type=click.Path(file_okay=False))
@click.pass_context
def rules_test(ctx: click.Context, directories: tuple[str, ...]) -> None:
    """Run the examples the rules carry (built-in pack plus DIRECTORIES); exit 3 if one fails.

    \b
    Example:
      prodguardian rules test ./my-rules
    """
    from prodguardian.ruletest import run_examples

    results = run_examples(load_pack(directories))
    failed = [r for r in results if not r.passed]
    for result in failed:
        want = "should match" if result.expected else "should not match"
        why = result.problem or f"{want} but {'did' if result.matched else 'did not'}"
        click.echo(f"FAIL {result.rule} ({result.origin}): {why}: {str(result.example)[:120]!r}", err=True)
    click.echo(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    if failed:
        ctx.exit(3)


@cli.group()
def hooks() -> None:
    """Git hooks that check production: a pre-push hook that blocks pushes while production is CRITICAL."""


@hooks.command("install")
@click.argument("hook", type=click.Choice(["pre-push"]))
@click.option(
    "--block-on",
    type=click.Choice(["critical", "degraded"]),
    default="critical",
    show_default=True,
    help="Block the push when production is CRITICAL, or DEGRADED too. UNKNOWN never blocks.",
)
@click.option("--service", help="Cloud Run service the hook checks.")
@click.option("--freshness", help="Length of the checked window (15m, 1h…).")
@click.option("--project", help="Google Cloud project.")
@click.option("--region", help="Cloud Run region.")
@click.option("--source", help="cloud, or an export file (for demos and tests).")
@click.option("--force", is_flag=True, help="Replace a hook ProdGuardian did not write (backed up first).")
def hooks_install(hook: str, block_on: str, force: bool, **opts: Any) -> None:
    """Install a git hook in the current repository (where core.hooksPath says, if set).

    The pre-push hook runs `prodguardian check` with the options given here (the rest comes from
    prodguardian.yaml and PRODGUARDIAN_* at push time) and blocks the push only when production is CRITICAL,
    or DEGRADED too with --block-on degraded. It never blocks when the check cannot tell (UNKNOWN: no
    credentials, no logs in the window…). Push anyway, once, with `git push --no-verify`.

    \b
    Examples:
      prodguardian hooks install pre-push --service emergence-app --freshness 30m
      prodguardian hooks install pre-push --block-on degraded --force
    """
    from click.core import ParameterSource

    from prodguardian import hooks as git_hooks

    ctx = click.get_current_context()
    given = {
        k: v for k, v in opts.items() if v and ctx.get_parameter_source(k) is ParameterSource.COMMANDLINE
    }
    if "freshness" in given:
        parse_duration(given["freshness"], "--freshness")
    source = given.get("source")
    if source == "-":
        raise ConfigError("a hook cannot read logs from stdin (git writes the pushed refs there)", "--source")
    if source and source != "cloud":
        if not Path(source).is_file():
            raise ConfigError("export file not found", source)
        given["source"] = str(Path(source).resolve())  # the hook runs at the top of the work tree
    args: list[str] = []
    for name in ("service", "freshness", "project", "region", "source"):
        if name in given:
            args += [f"--{name}", str(given[name])]
    done = git_hooks.install(hook, repo=Path.cwd(), block_on=block_on, check_args=args, force=force)
    if done.backup is not None:
        click.echo(f"moved the existing {hook} hook to {done.backup}")
    click.echo(f"{'updated' if done.updated else 'installed'} the {hook} hook: {done.path}")
    click.echo(f"  before each push it runs: {' '.join(['prodguardian check', *args])}")
    blocking = "DEGRADED or CRITICAL" if block_on == "degraded" else "CRITICAL"
    click.echo(f"  and blocks the push when production is {blocking}; UNKNOWN never blocks")
    click.echo("  to push anyway, once: git push --no-verify")


def _utf8_streams() -> None:
    """Reports carry emoji: never let a legacy console code page (Windows cp1252) turn them into a crash."""
    for stream in (sys.stdout, sys.stderr):
        encoding = (getattr(stream, "encoding", "") or "").lower().replace("-", "")
        if encoding != "utf8" and hasattr(stream, "reconfigure"):
            stream.reconfigure(encoding="utf-8", errors="replace")


def main(argv: list[str] | None = None) -> int:
    _utf8_streams()
    try:
        code = cli.main(args=argv, prog_name="prodguardian", standalone_mode=False)
    except ProdGuardianError as exc:
        click.echo(f"prodguardian: error: {exc}", err=True)
        return 3
    except click.UsageError as exc:
        hint = f" (try '{exc.ctx.command_path} --help')" if exc.ctx else ""
        click.echo(f"prodguardian: error: {exc.format_message()}{hint}", err=True)
        return 3
    except click.ClickException as exc:
        click.echo(f"prodguardian: error: {exc.format_message()}", err=True)
        return 3
    except click.Abort:
        click.echo("prodguardian: aborted", err=True)
        return 3
    except KeyboardInterrupt:
        return 130
    return code if isinstance(code, int) else 0


def entry_point() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
