"""The `prodguardian` command: parse options, call the core, render, map errors to exit codes.

Exit codes: 0 OK, 1 DEGRADED, 2 CRITICAL, 3 UNKNOWN — and 3 for every error (bad input, bad rules, bad
options, logs that could not be fetched), so a broken check never looks like a degraded service.
"""

from __future__ import annotations

import os
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click
import orjson
import yaml

from prodguardian import __version__
from prodguardian import hooks as git_hooks
from prodguardian.charts import require_matplotlib
from prodguardian.check import CheckOptions, failed_report, live_source, parse_duration, parse_time, run_check
from prodguardian.cloud import (
    CALLS_PER_SECOND,
    DEFAULT_TRANSPORT,
    EMULATOR_ENV,
    TRANSPORTS,
    CloudLogging,
    CloudSource,
    LateArrivals,
    ReadStats,
)
from prodguardian.errors import ConfigError, InputError, ProdGuardianError, SourceError
from prodguardian.files import STDOUT, write_text
from prodguardian.history import History, cursor_key, read_start, tailed_read
from prodguardian.patterns import csv_rows
from prodguardian.probes import TIMEOUT_S, ProbeResult, check_url, probe_all, service_probes
from prodguardian.render import FORMATS, LANGUAGES, clean, render
from prodguardian.render_html import render_html
from prodguardian.render_verify import render_verification
from prodguardian.rules import RulePack, collect_pack, load_pack
from prodguardian.source import PART_BYTES, FileSource, ReadOptions, write_export
from prodguardian.state import StateError, StateStore, default_state_path
from prodguardian.verdict import EXIT_CODES, Report
from prodguardian.verify import (
    Verification,
    VerifyOptions,
    failed_verification,
    run_verify,
    wait_for_traffic,
)

CONFIG_FILE = "prodguardian.yaml"
ENV_PREFIX = "PRODGUARDIAN_"
DEBUG_ENV = "PRODGUARDIAN_DEBUG"  # set (not 0): an internal error prints its traceback
T = TypeVar("T")
PREFIX = "prodguardian: "  # what every message on stderr starts with
CHECK_FORMATS = (*FORMATS, "html")  # a check's report can be a page with charts; a verification's cannot
WEBHOOK_SECRET_ENV = "PRODGUARDIAN_WEBHOOK_SECRET"  # the HMAC secret of `watch --webhook`: never an option
STATUSES = {code: status for status, code in EXIT_CODES.items()}  # a check's exit code, named


class _Setting(click.Option):
    """An option that is also a setting: `PRODGUARDIAN_<SETTING>` in the environment, `<setting>:` in the
    config file. Options of different commands that mean the same share a setting (`service`, `rules`);
    one that means something else on another command has its own (`fetch --output`: `fetch_output`)."""

    def __init__(self, *args: Any, setting: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.setting = setting


def _option(*names: str, setting: str | None = None, **kwargs: Any) -> Callable[[Callable[..., Any]], Any]:
    """A click option that is also a setting, named after its long name unless `setting` says otherwise."""
    long_name = next(n for n in names if n.startswith("--"))
    setting = setting or long_name[2:].replace("-", "_")
    kwargs.setdefault("envvar", ENV_PREFIX + setting.upper())
    kwargs.setdefault("show_envvar", True)
    return click.option(*names, cls=_Setting, setting=setting, **kwargs)


def _settings(
    command: click.Command, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], _Setting]]:
    """Every setting option under `command`, with the path of the subcommand that has it."""
    for param in command.params:
        if isinstance(param, _Setting):
            yield path, param
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from _settings(sub, (*path, name))


def _config_defaults(ctx: click.Context, path: str | None) -> dict[str, Any]:
    """The config file's settings (prodguardian.yaml, or --config) as click's `default_map`: each setting
    becomes the default of every command option that has it."""
    file = Path(path) if path else Path(CONFIG_FILE)
    if not file.is_file():
        if path:
            raise ConfigError("config file not found", path)
        return {}
    values, lines = _read_config(file)
    options = list(_settings(ctx.command))
    known = {option.setting: option for _, option in options}
    for key, value in values.items():
        where = f"{file}:{lines[key]}"
        if key not in known:
            raise ConfigError(f"unknown setting {key!r}; the settings are: {', '.join(sorted(known))}", where)
        if known[key].multiple and not isinstance(value, list):
            values[key] = value = [value]
        try:
            known[key].type_cast_value(ctx, value)
        except click.BadParameter as exc:
            raise ConfigError(f"{key}: {exc.message}", where) from None
    defaults: dict[str, Any] = {}
    for command_path, option in options:
        if option.setting in values and option.name:
            level = defaults
            for name in command_path:
                level = level.setdefault(name, {})
            level[option.name] = values[option.setting]
    return defaults


def _read_config(file: Path) -> tuple[dict[str, Any], dict[str, int]]:
    """The settings of a config file (keys written with `-` or `_`) and the line of each."""
    try:
        loader = yaml.SafeLoader(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {getattr(exc, 'strerror', None) or exc}", str(file)) from None
    try:
        node = loader.get_single_node()
        loaded = loader.construct_document(node) if node is not None else {}
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{file}:{mark.line + 1}:{mark.column + 1}" if mark else str(file)
        raise ConfigError(f"invalid YAML: {exc.problem}", where) from None
    finally:
        loader.dispose()
    if node is None:
        return {}, {}
    if not isinstance(loaded, dict) or not isinstance(node, yaml.MappingNode):
        raise ConfigError("a config file is a mapping of settings, like `service: emergence-app`", str(file))
    lines = {str(key.value).replace("-", "_"): key.start_mark.line + 1 for key, _ in node.value}
    return {str(k).replace("-", "_"): v for k, v in loaded.items()}, lines


@click.group(
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="prodguardian")
@click.option(
    "--config",
    type=click.Path(dir_okay=False),
    envvar="PRODGUARDIAN_CONFIG",
    help=f"Settings file (default: ./{CONFIG_FILE} when present).",
)
@click.pass_context
def cli(ctx: click.Context, config: str | None) -> None:
    """Is production healthy right now? If not, why, and what to do.

    \b
    Examples:
      prodguardian demo                                   # the 2025-10-11 incident, offline
      prodguardian check --service emergence-app          # live, from Cloud Logging
      prodguardian check --source export.json --lang fr   # an exported window
    """
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())
        return
    ctx.default_map = _config_defaults(ctx, config)


def _stack(*decorators: Callable[[Callable[..., Any]], Callable[..., Any]]) -> Callable[..., Any]:
    """One decorator applying several click options, in the order written."""

    def apply(command: Callable[..., Any]) -> Callable[..., Any]:
        for decorator in reversed(decorators):
            command = decorator(command)
        return command

    return apply


def _report_options(command: str = "", formats: tuple[str, ...] = FORMATS) -> Callable[..., Any]:
    """--format, --lang, --output and --json-report (and --html-report with the html format). The files are
    settings of their command (`demo` has `demo_output`, `demo_json_report`), so a check's settings never send
    another command's report there."""
    files = f"{command}_" if command else ""
    html = ", html a page with charts (the html extra)" if "html" in formats else ""
    return _stack(
        _option(
            "--format",
            "fmt",
            type=click.Choice(formats),
            default="text",
            show_default=True,
            help=f"text for a terminal, markdown for an agent or a chat, json for machines{html}.",
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
            setting=f"{files}output",
            type=click.Path(dir_okay=False),
            default=None,
            help="Write the report to FILE (whole or not at all) instead of stdout.",
        ),
        _option(
            "--json-report",
            setting=f"{files}json_report",
            type=click.Path(dir_okay=False),
            default=None,
            help="Also write the JSON report to FILE (for tools, next to a text or markdown report); a check "
            "that fails writes an UNKNOWN report there, a verification a NOT ENOUGH DATA one.",
        ),
        *([_html_report_option(files)] if "html" in formats else []),
    )


def _html_report_option(files: str) -> Callable[..., Any]:
    return _option(
        "--html-report",
        setting=f"{files}html_report",
        type=click.Path(dir_okay=False),
        default=None,
        help="Also write the HTML report, with its charts, to FILE (the html extra).",
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
        "--emulator",
        envvar=EMULATOR_ENV,
        help="HOST:PORT of a Logging emulator, read anonymously (instead of --endpoint).",
    ),
    _option(
        "--transport",
        envvar="PRODGUARDIAN_LOGGING_TRANSPORT",
        type=click.Choice(TRANSPORTS, case_sensitive=False),
        default=DEFAULT_TRANSPORT,
        show_default=True,
        help="How to call the Logging API: http (REST/JSON, faster here) or grpc.",
    ),
    _option(
        "--calls-per-second",
        type=click.FloatRange(min=0, min_open=True),
        default=CALLS_PER_SECOND,
        show_default=True,
        help="Pace of entries.list calls after a burst of 5 (the project's quota is about 1 a second).",
    ),
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


_state_option = _option(
    "--state",
    help="The state store: a SQLite file, or gs://BUCKET/OBJECT on Cloud Run Jobs (default for a live check "
    "of one service: a file in the user's state folder; a file source uses one only when given).",
)
_state_options = _stack(
    _state_option,
    _option("--no-state", is_flag=True, help="Use no state store: read the whole window and baseline."),
)


_source_option = _option(
    "--source",
    default="cloud",
    show_default=True,
    help="cloud (Cloud Logging), an export file (JSON array, JSON Lines, entries:list, .gz), or - for stdin.",
)
_read_options = _stack(
    _option(
        "--workers",
        type=click.IntRange(min=1),
        default=None,
        help="Worker processes reading a large export (default: one per CPU; 1 reads it in this process).",
    ),
    _option(
        "--part-size",
        type=click.IntRange(min=1),
        default=PART_BYTES >> 20,
        show_default=True,
        metavar="MIB",
        help="MiB of a large export a worker reads at a time.",
    ),
)
_probe_options = _stack(
    _option(
        "--probe",
        "probes",
        setting="probes",
        multiple=True,
        help="GET this health URL (repeatable): it must answer 200 and, for a JSON body, a healthy `status`.",
    ),
    _option(
        "--probe-timeout",
        type=click.FloatRange(min=0, min_open=True),
        default=TIMEOUT_S,
        show_default=True,
        metavar="SECONDS",
        help="How long each health probe may take before it fails as a timeout.",
    ),
)


_multivariate_option = _option(
    "--multivariate",
    is_flag=True,
    help="Also look for an hour whose mix of numbers no single test flags (IsolationForest; slower).",
)


@cli.command()
@_source_option
@_window_options
@_multivariate_option
@_probe_options
@_report_options(formats=CHECK_FORMATS)
@_rules_option
@_cloud_options
@_state_options
@_read_options
@click.pass_context
def check(ctx: click.Context, /, **opts: Any) -> None:
    """Check the service's logs and print a 🟢/🟡/🔴 report.

    \b
    Examples:
      prodguardian check --service emergence-app --freshness 15m
      prodguardian check --source logs.json --until 2025-10-11T12:04:00Z
      gcloud logging read '...' --format=json | prodguardian check --source - --format markdown
    """
    ctx.exit(_reporting_unknown(opts, _check))


def _reporting_unknown(opts: dict[str, Any], run: Callable[[dict[str, Any], list[ProbeResult]], int]) -> int:
    """`run(opts, probes)` of a check or watch; if it fails, the JSON report says UNKNOWN, with the probes
    `run` made before it failed."""
    probes: list[ProbeResult] = []

    def failed(reason: str) -> str:
        return render(failed_report(reason, _failed_options(opts), probes), "json", opts["lang"])

    return _reporting_failure(opts, lambda: run(opts, probes), failed)


def _reporting_failure(opts: dict[str, Any], run: Callable[[], int], failed: Callable[[str], str]) -> int:
    """Run a command that writes a JSON report; if it fails, write `failed(reason)` (the JSON of a report
    that cannot tell) to `--json-report` before the error goes on, so a reader never sees an older one."""
    try:
        return run()
    except Exception as exc:
        if opts["json_report"]:
            reason = str(exc) if isinstance(exc, ProdGuardianError) else _internal_error(exc)
            with suppress(ProdGuardianError):  # the error to tell is the one that failed the command
                write_text(opts["json_report"], failed(reason))
        raise


def _failed_options(opts: dict[str, Any]) -> CheckOptions:
    """The window a failed command meant, or the default one when its options are what failed."""
    try:
        return _check_options(opts)
    except ProdGuardianError:
        return CheckOptions(service=opts.get("service") or None)


def _check(opts: dict[str, Any], probes: list[ProbeResult]) -> int:
    """Run the check the options describe and emit its report; the exit code. `probes` gets the probes'
    results as soon as they are made, for the report of a check that fails after them."""
    options = _check_options(opts)
    _ready_to_render(opts)
    pack = load_pack(options.rules)
    if _showed_filter(opts, options, pack):
        return 0
    probes[:] = probe_all(opts["probes"], opts["probe_timeout"])
    location = _state_location(opts, options)
    if location is None:
        report = run_check(_open_source(opts, options, pack), options, pack, probes).report
    else:
        from prodguardian.remote_state import with_remote_state

        report = with_remote_state(
            location,
            lambda path: _on_store(path, lambda s: _check_with_state(s, opts, options, pack, probes)),
        )
    _end_live_progress(opts)
    return _emit(report, opts)


def _showed_filter(opts: dict[str, Any], options: CheckOptions, pack: RulePack) -> bool:
    """`--show-filter` of a live check: print the Cloud Logging filter instead of checking."""
    if opts["source"] == "cloud" and opts["show_filter"]:
        click.echo(_live_source(opts, options, pack).filter)
        return True
    return False


def _end_live_progress(opts: dict[str, Any]) -> None:
    if opts["source"] == "cloud" and _shows_progress(opts):
        _end_progress_line()


def _on_store(path: Path, work: Callable[[StateStore], T]) -> T:
    with StateStore(path) as store:
        return work(store)


def _open_source(opts: dict[str, Any], options: CheckOptions, pack: Any) -> Any:
    """The entries `--source` names: Cloud Logging, a file, or stdin."""
    if opts["source"] == "cloud":
        return _live_source(opts, options, pack)
    return FileSource(
        opts["source"], ReadOptions(workers=opts["workers"], part_bytes=opts["part_size"] << 20)
    )


def _state_location(opts: dict[str, Any], options: CheckOptions) -> str | None:
    """Where the check keeps its state: --state, else the default file for a live check of one service."""
    if opts.get("no_state"):
        return None
    if opts.get("state"):
        return str(opts["state"])
    if opts["source"] == "cloud" and options.service:
        return str(default_state_path())
    return None


def _check_with_state(
    store: StateStore, opts: dict[str, Any], options: CheckOptions, pack: RulePack, probes: list[ProbeResult]
) -> Report:
    """The check on `store`: a live check reads only what the store lacks."""
    if opts["source"] != "cloud":
        source = _open_source(opts, options, pack)
        return run_check(source, options, pack, probes, history=History(store)).report
    from prodguardian import cloud

    assert options.until is not None and options.service is not None
    project = cloud.resolve_project(opts.get("project") or None)
    key = cursor_key(project, opts.get("region") or None, options.service)
    since = read_start(store, options.service, key, options.until - options.freshness - options.baseline)
    read = tailed_read(
        store,
        key,
        since,
        options.until,
        lambda late: _live_source({**opts, "project": project}, options, pack, since, late),
    )
    return run_check(read, options, pack, probes, history=History(store, since, key, read)).report


def _check_options(opts: dict[str, Any]) -> CheckOptions:
    until = parse_time(opts["until"], "--until") if opts.get("until") else None
    if until is None and opts.get("source") == "cloud":
        until = datetime.now(UTC)
    return CheckOptions(
        service=opts.get("service") or None,
        freshness=parse_duration(opts["freshness"], "--freshness"),
        until=until,
        baseline=parse_duration(opts["baseline"], "--baseline", zero=True),  # 0: judge without "usual"
        rules=tuple(opts.get("rules_dirs") or ()),
        multivariate=bool(opts.get("multivariate")),
    )


def _live_source(
    opts: dict[str, Any],
    options: CheckOptions,
    pack: RulePack,
    start: datetime | None = None,
    late_only: LateArrivals | None = None,
) -> CloudSource:
    """The live read the cloud options describe, of the window and baseline or of what follows `start` (a
    check with a state; `late_only`: what arrived since the last read of its margin)."""
    settings = CloudLogging(
        project=opts.get("project") or None,
        region=opts.get("region") or None,
        endpoint=opts.get("endpoint") or None,
        emulator=opts.get("emulator") or None,
        transport=opts["transport"],
        max_entries=opts["max_entries"],
        calls_per_second=opts["calls_per_second"],
    )
    progress = _progress_line if _shows_progress(opts) else None
    return live_source(options, pack, settings, progress, start, late_only)


_watch_options = _stack(
    _option(
        "--channels",
        type=click.Path(dir_okay=False),
        help="Channels file (YAML: Slack, Google Chat, PagerDuty, webhooks…; see docs/alerting.md).",
    ),
    _option(
        "--webhook",
        "webhooks",
        setting="webhooks",
        multiple=True,
        help=f"POST each notification's JSON here (repeatable); signed with ${WEBHOOK_SECRET_ENV} when set.",
    ),
    click.option("--dry-run", is_flag=True, help="Check and print what would be sent; change nothing."),
    _option(
        "--repeat-interval",
        default="4h",
        show_default=True,
        help="Remind of a firing alert this often.",
    ),
    _option(
        "--keep-firing-for",
        default="10m",
        show_default=True,
        help="Resolve an alert once its condition has been gone this long (no flapping).",
    ),
    _option(
        "--critical-after",
        default="1",
        show_default=True,
        help="Fire a CRITICAL alert after this many runs in a row, or this long (10m).",
    ),
    _option(
        "--degraded-after",
        default="2",
        show_default=True,
        help="Fire a DEGRADED alert after this many runs in a row, or this long (15m).",
    ),
    _option(
        "--unknown-after",
        type=click.IntRange(min=1),
        default=3,
        show_default=True,
        help="Fire the UNKNOWN alert (could not check) after this many failed runs in a row.",
    ),
)


@cli.command("watch")
@_source_option
@_window_options
@_multivariate_option
@_probe_options
@_report_options("watch", formats=CHECK_FORMATS)
@_rules_option
@_cloud_options
@_option(
    "--state",
    help="The state store of the check and of the alerts: a SQLite file or gs://BUCKET/OBJECT (default: a "
    "file in the user's state folder).",
)
@_read_options
@_watch_options
@click.pass_context
def watch_command(ctx: click.Context, /, **opts: Any) -> None:
    """Check, update the alerts, and notify only when one fires, reminds or resolves (run it from cron).

    The report goes to stdout as `check` prints it (none with --quiet); what was queued, sent, muted, failed
    or dropped goes to stderr (with --quiet, only failures). Exit status: the check's (0/1/2), or 3 when it
    could not check (then the service's UNKNOWN alert counts the run) or an option, file or state is wrong
    (then nothing is changed).

    \b
    Examples:
      prodguardian watch --service emergence-app --channels channels.yaml --dry-run
      prodguardian watch --service emergence-app --channels channels.yaml --state gs://my-bucket/pg.sqlite
      prodguardian watch --source export.json --webhook http://localhost:8080/hook --state pg.sqlite
    """
    ctx.exit(_reporting_unknown(opts, _watch))


@dataclass(frozen=True)
class _Judged:
    """The first pass of a watch run: its report, the source's failure if any, and what it queued."""

    report: Report
    failure: ProdGuardianError | None
    lines: list[str]


def _watch(opts: dict[str, Any], probes: list[ProbeResult]) -> int:
    """One watch run: check and judge the alerts (one pass over the store), then deliver (another)."""
    options = _check_options(opts)
    _ready_to_render(opts)
    from prodguardian import watch
    from prodguardian.channels import load_channels
    from prodguardian.remote_state import with_remote_state

    names = ("repeat_interval", "keep_firing_for", "critical_after", "degraded_after", "unknown_after")
    policy = watch.policy(*(opts[name] for name in names))
    channels = load_channels(opts["channels"]) if opts["channels"] else []
    channels += watch.webhooks(opts["webhooks"], os.environ.get(WEBHOOK_SECRET_ENV) or None)
    if not channels and not opts["quiet"]:
        _say("warning: no channel (--channels FILE, --webhook URL): the alerts are kept, nothing is sent")
    pack = load_pack(options.rules)
    if _showed_filter(opts, options, pack):
        return 0
    probes[:] = probe_all(opts["probes"], opts["probe_timeout"])
    location = _state_of(opts)

    def judge(store: StateStore) -> _Judged:
        report, failure = _checked_or_failed(store, opts, options, pack, probes)
        if opts["dry_run"]:
            return _Judged(
                report, failure, watch.plan_lines(watch.plan(store, report, policy, opts["lang"]), channels)
            )
        return _Judged(
            report, failure, watch.outcome_lines(watch.update(store, report, channels, policy, opts["lang"]))
        )

    if opts["dry_run"]:
        judged = _dry(location, lambda path: _on_store(path, judge))
        lines = judged.lines
    else:
        judged = with_remote_state(location, lambda path: _on_store(path, judge))
        at = watch.clock(judged.report)
        sent = with_remote_state(
            location, lambda path: _on_store(path, lambda s: watch.deliver(s, channels, at))
        )
        lines = judged.lines + watch.delivery_lines(sent)
    _end_live_progress(opts)
    return _watch_output(judged, lines, opts)


def _checked_or_failed(
    store: StateStore, opts: dict[str, Any], options: CheckOptions, pack: RulePack, probes: list[ProbeResult]
) -> tuple[Report, ProdGuardianError | None]:
    """The check's report, or the UNKNOWN one of a check whose logs could not be read or fetched."""
    try:
        if opts["source"] == "cloud" and not options.service:  # every service: no read cursor to keep
            return run_check(_open_source(opts, options, pack), options, pack, probes).report, None
        return _check_with_state(store, opts, options, pack, probes), None
    except (SourceError, InputError) as exc:
        return failed_report(str(exc), options, probes), exc


def _dry(location: str, work: Callable[[Path], T]) -> T:
    """`work` on a throwaway copy of the state; its errors name the state, not the copy."""
    from prodguardian.remote_state import state_copy

    with state_copy(location) as path:
        try:
            return work(path)
        except StateError as exc:
            raise StateError(exc.message, location) from None


def _watch_output(judged: _Judged, lines: list[str], opts: dict[str, Any]) -> int:
    """The report (none for a failed check: its error instead), then the notification lines; the exit code."""
    if judged.failure is not None:
        _say(f"error: {judged.failure}")
        if opts["json_report"]:
            write_text(opts["json_report"], render(judged.report, "json", opts["lang"]))
        code = 3
    else:
        code = _emit(judged.report, {**opts, "no_stdout": opts["quiet"]})
    for line in lines:
        if not opts["quiet"] or line.startswith(("failed", "error")):
            _say(line)
    return code


@cli.command("alerts")
@_state_option
@click.option("--all", "show_all", is_flag=True, help="Also the resolved alerts the store still keeps.")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True, help="Output."
)
def alerts_command(show_all: bool, fmt: str, **opts: Any) -> None:
    """List the firing and pending alerts of `watch` (with --all, the resolved ones too, until `state prune`
    removes them).

    \b
    Examples:
      prodguardian alerts
      prodguardian alerts --all --format json --state gs://my-bucket/prodguardian.sqlite
    """
    from prodguardian import alert_state

    found = _open_state(opts, alert_state.load_all if show_all else alert_state.current_alerts)
    if fmt == "json":
        click.echo(orjson.dumps([_alert_dict(a) for a in found], option=orjson.OPT_INDENT_2).decode())
        return
    if not found:
        click.echo("no alert stored" if show_all else "no firing or pending alert")
    for alert in found:
        notified = f"{alert.notified:%Y-%m-%d %H:%M}" if alert.notified else "never"
        click.echo(
            f"{alert.state:<8} {alert.severity:<8} {alert.service:<20} {alert.rule:<28} since "
            f"{alert.since:%Y-%m-%d %H:%M} UTC, notified {notified}"
            + (f" ({alert.revision})" if alert.revision else "")
        )


def _alert_dict(alert: Any) -> dict[str, Any]:
    fields = ("key", "service", "rule", "category", "revision", "state", "severity", "title", "runs")
    times = ("since", "changed", "last_seen", "firing_since", "notified")
    return {
        **{name: getattr(alert, name) for name in fields},
        **{name: getattr(alert, name) and getattr(alert, name).isoformat() for name in times},
    }


@cli.group()
def silence() -> None:
    """Mute the notifications of matching alerts for a while (they still change state)."""


@silence.command("add")
@_state_option
@click.option(
    "--match",
    "matches",
    multiple=True,
    required=True,
    help="KEY=VALUE (repeatable, all must match; globs allowed): alert, service, rule, category, revision, "
    "severity.",
)
@click.option("--for", "duration", required=True, help="How long it mutes, from now (2h, 1d…).")
@click.option("--reason", required=True, help="Why (shown by `silence list`).")
def silence_add(matches: tuple[str, ...], duration: str, reason: str, **opts: Any) -> None:
    """Mute the matching alerts until the time --for says; print the silence's ID.

    \b
    Example:
      prodguardian silence add --match rule=database-unavailable --for 2h --reason "database migration"
    """
    from prodguardian import alert_state
    from prodguardian.alerts import parse_matchers

    try:
        matchers = parse_matchers(matches)
    except ValueError as exc:
        raise ConfigError(str(exc), "--match") from None
    if not reason.strip():
        raise ConfigError("a silence needs a reason", "--reason")
    ends = datetime.now(UTC) + parse_duration(duration, "--for")
    added = _open_state(opts, lambda store: alert_state.add_silence(store, matchers, ends, reason.strip()))
    click.echo(added.id)
    _say(f"silence {added.id} mutes {_matched(added.matchers)} until {ends:%Y-%m-%d %H:%M} UTC")


def _matched(matchers: dict[str, str]) -> str:
    return " ".join(f"{key}={value}" for key, value in matchers.items())


@silence.command("list")
@_state_option
def silence_list(**opts: Any) -> None:
    """Print the silences in force: ID, end, matchers and reason.

    \b
    Example:
      prodguardian silence list
    """
    from prodguardian import alert_state

    found = _open_state(opts, lambda store: alert_state.list_silences(store, datetime.now(UTC)))
    if not found:
        click.echo("no silence in force")
    for item in found:
        click.echo(
            f"{item.id}  until {item.ends:%Y-%m-%d %H:%M} UTC  {_matched(item.matchers)}  "
            + clean(item.reason)
        )


@silence.command("expire")
@_state_option
@click.argument("silence_id")
def silence_expire(silence_id: str, **opts: Any) -> None:
    """End a silence now: the next `watch` sends what it then owes.

    \b
    Example:
      prodguardian silence expire 3f2a9c1d
    """
    from prodguardian import alert_state

    if not _open_state(opts, lambda store: alert_state.expire_silence(store, silence_id)):
        raise ConfigError(
            f"no silence {silence_id!r} in force (see `prodguardian silence list`)", _state_of(opts)
        )
    click.echo(f"expired {silence_id}")


@cli.command()
@_window_options
@_rules_option
@_cloud_options
@_option(
    "--output",
    setting="fetch_output",
    default=STDOUT,
    show_default=True,
    help="Where to write the export (- for stdout).",
)
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
    source = _live_source(opts, options, load_pack(options.rules))
    if opts["show_filter"]:
        click.echo(source.filter)
        ctx.exit(0)
    count = write_export(source, opts["output"], jsonl=opts["jsonl"])
    if not opts["quiet"]:
        if _shows_progress(opts):
            _end_progress_line()
        _say(f"wrote {count:,} entries to {opts['output']}")
        if source.truncated:
            _say(f"warning: stopped at --max-entries {opts['max_entries']:,}: the export is partial")


def _shows_progress(opts: dict[str, Any]) -> bool:
    """Progress goes to a terminal only: never into a cron mail or an agent's context."""
    return not opts.get("quiet") and sys.stderr is not None and sys.stderr.isatty()


def _progress_line(stats: ReadStats) -> None:
    progress = f"read {stats.entries:,} entries in {stats.pages} pages, {stats.elapsed:.0f} s"
    _say(f"\r{PREFIX}{progress}", prefix="", nl=False)


def _end_progress_line() -> None:
    _say("", prefix="")


def _emit(report: Report, opts: dict[str, Any]) -> int:
    """Print or write the report (and the JSON report), all rendered first; the report's exit code."""
    skipped = report.context.totals.get("skipped", 0)
    if skipped and not opts.get("quiet"):
        entries = "entry" if skipped == 1 else "entries"
        _say(
            f"warning: skipped {skipped:,} {entries} with no usable timestamp (not a JSON object, no "
            "timestamp, or one that does not parse, is out of range or is in the future)"
        )
    _write_reports(lambda fmt: _render_report(report, fmt, opts["lang"]), opts)
    return report.exit_code


def _ready_to_render(opts: dict[str, Any]) -> None:
    """An HTML report without its extra fails now, not after a long read of the logs."""
    if opts["fmt"] == "html" or opts.get("html_report"):
        require_matplotlib()


def _render_report(report: Report, fmt: str, lang: str) -> str:
    return render_html(report, lang) if fmt == "html" else render(report, fmt, lang)


def _write_reports(rendering: Callable[[str], str], opts: dict[str, Any]) -> None:
    """The report in `--format` to stdout or `--output`, and as JSON to `--json-report`; rendered first."""
    text = rendering(opts["fmt"])
    document = rendering("json") if opts.get("json_report") else None
    page = rendering("html") if opts.get("html_report") else None
    with suppress(BrokenPipeError):  # the reader stopped reading (`| head -1`): the status still stands
        if opts.get("output") or not opts.get("no_stdout"):
            write_text(opts.get("output") or STDOUT, text)
    if document is not None:
        write_text(opts["json_report"], document)
    if page is not None:
        write_text(opts["html_report"], page)


@cli.command()
@_source_option
@_window_options
@click.option("--revision", help="The revision to verify (default: the newest revision serving).")
@_option(
    "--wait",
    help="Re-read Cloud Logging every minute until the revision has served enough traffic, for at most "
    "this long (15m).",
)
@_option(
    "--url",
    setting="service_url",
    help="The service's URL: probe its /api/health, /health/liveness and /health/readiness.",
)
@_probe_options
@_report_options("verify")
@_rules_option
@_cloud_options
@_read_options
@click.pass_context
def verify(ctx: click.Context, /, **opts: Any) -> None:
    """Verify a deploy: the revision against the one before it, judged by the objectives.

    Exit 0 PASS, 2 FAIL (with the command rolling back to the previous revision), 3 NOT ENOUGH DATA.

    \b
    Examples:
      prodguardian verify --service emergence-app --wait 15m --url https://emergence-app-47fmxpbtfq-ew.a.run.app
      prodguardian verify --source export.json --revision emergence-app-00298-xyz --format markdown
    """
    probes: list[ProbeResult] = []

    def failed(reason: str) -> str:
        options = VerifyOptions(_failed_options(opts), opts["revision"])
        return render_verification(failed_verification(reason, options, probes), "json", opts["lang"])

    ctx.exit(_reporting_failure(opts, lambda: _verify(opts, probes), failed))


def _verify(opts: dict[str, Any], probes: list[ProbeResult]) -> int:
    """Verify the deploy the options describe and write its report; the exit code. `probes` gets the latest
    probes' results as soon as they are made, for the report of a verification that fails after them."""
    wait = parse_duration(opts["wait"], "--wait") if opts["wait"] else None
    if wait and (opts["source"] != "cloud" or opts["until"]):
        raise ConfigError("--wait re-reads Cloud Logging up to now: use --source cloud, without --until")
    urls = [*(service_probes(opts["url"]) if opts["url"] else ()), *opts["probes"]]
    for url in urls:
        check_url(url)
    pack = load_pack(tuple(opts.get("rules_dirs") or ()))
    if opts["source"] == "cloud" and opts["show_filter"]:
        click.echo(_open_source(opts, _check_options(opts), pack).filter)
        return 0

    def attempt() -> Verification:
        options = _check_options(opts)
        source = _open_source(opts, options, pack)
        probes[:] = probe_all(urls, opts["probe_timeout"])
        return run_verify(source, VerifyOptions(options, opts["revision"]), pack, probes)

    result = wait_for_traffic(attempt, wait) if wait else attempt()
    if _shows_progress(opts) and opts["source"] == "cloud":
        _end_progress_line()
    _write_reports(lambda fmt: render_verification(result, fmt, opts["lang"]), opts)
    return result.exit_code


@cli.command()
@click.option("--scenario", default="db-outage", show_default=True, help="Which incident to simulate.")
@click.option("--list", "list_only", is_flag=True, help="List the scenarios and exit.")
@click.option(
    "--export", type=click.Path(dir_okay=False), help="Write the scenario as a gcloud JSON export instead."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the simulator.")
@_report_options("demo", CHECK_FORMATS)
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
        _say(f"wrote {count:,} entries to {export}")
        return
    _ready_to_render(opts)
    options = CheckOptions(rules=tuple(opts.get("rules_dirs") or ()))
    _emit(run_check(entries, options).report, {**opts, "quiet": False})


@cli.command()
@click.argument("file", required=False)
@click.option(
    "--source", "export", help="A Cloud Logging export (as check reads): group its entries' messages."
)
@click.option(
    "--top", type=click.IntRange(min=0), default=10, show_default=True, help="Templates in the summary."
)
def patterns(file: str | None, export: str | None, top: int) -> None:
    """Group log messages into templates: CSV `line,template_id,template` on stdout, the top templates on
    stderr.

    FILE holds one message a line (- for stdin); with --source, each entry of the export is a message (a
    traceback split over entries joined back, grouped by its exception type and innermost application
    frame) and `line` is its number in time order. `<*>` stands where the messages differ.

    \b
    Examples:
      prodguardian patterns app.log > templates.csv
      prodguardian patterns --source export.json 2>&1 >/dev/null | head
    """
    from prodguardian.events import build_events
    from prodguardian.patterns import group_messages, plain_messages
    from prodguardian.unknown_errors import logged_messages

    if (file is None) == (export is None):
        raise click.UsageError("give either FILE or --source EXPORT")
    if export is not None:
        grouping = group_messages(logged_messages(build_events(FileSource(export)).table))
    else:
        grouping = group_messages(plain_messages(file or "-"))
    with suppress(BrokenPipeError):
        write_text(STDOUT, csv_rows(grouping))
    total = sum(t.count for t in grouping.templates)
    _say(f"{total:,} messages, {len(grouping.templates):,} templates" + (f"; top {top}:" if top else ""))
    for template in grouping.templates[:top]:
        _say(f"{template.count:>9,}  {template.id}  {clean(template.text)}", prefix="")


@cli.group()
def rules() -> None:
    """List, validate and test the rules a check uses: the built-in pack plus --rules directories
    (PRODGUARDIAN_RULES, the config file's `rules`)."""


_rule_dirs_argument = click.argument("directories", nargs=-1, type=click.Path(file_okay=False))


@rules.command("list")
@_rules_option
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
@_rules_option
@_rule_dirs_argument
@click.pass_context
def rules_validate(ctx: click.Context, rules_dirs: tuple[str, ...], directories: tuple[str, ...]) -> None:
    """Check the rule files a check loads (plus DIRECTORIES) against the schema and RE2; print every error
    (exit 3 if any) and warn about a folder without rules.

    \b
    Example:
      prodguardian rules validate ./my-rules
    """
    folders = (*rules_dirs, *directories)
    pack, errors = collect_pack(folders)
    for folder in folders:
        own, own_errors = collect_pack([folder], builtin=False)
        if Path(folder).is_dir() and not (own.rules or own.objectives or own_errors):
            _say(f"warning: {folder}: no .yaml or .yml file in this folder defines a rule")
    for error in errors:
        _say(f"error: {error}")
    if errors:
        ctx.exit(3)
    click.echo(f"{len(pack.rules)} rules and {len(pack.objectives)} objectives OK in {len(pack.files)} files")


@rules.command("test")
@_rules_option
@_rule_dirs_argument
@click.pass_context
def rules_test(ctx: click.Context, rules_dirs: tuple[str, ...], directories: tuple[str, ...]) -> None:
    """Run the examples the rules carry (the pack a check loads, plus DIRECTORIES); exit 3 if one fails.

    \b
    Example:
      prodguardian rules test ./my-rules
    """
    from prodguardian.ruletest import run_examples

    results = run_examples(load_pack((*rules_dirs, *directories)))
    failed = [r for r in results if not r.passed]
    for result in failed:
        want = "should match" if result.expected else "should not match"
        why = result.problem or f"{want} but {'did' if result.matched else 'did not'}"
        _say(f"FAIL {result.rule} ({result.origin}): {why}: {str(result.example)[:120]!r}")
    click.echo(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    if failed:
        ctx.exit(3)


@cli.group("series")
def series_group() -> None:
    """Anomaly scores for a plain time series (requests or errors per 5 minutes, any metric)."""


@series_group.command("score")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
def series_score(file: str) -> None:
    """Score a `timestamp,value` CSV (FILE, or - for stdin) online: print `timestamp,value,anomaly_score,
    is_anomaly`, each point's score computed from the points before it only.

    \b
    Example:
      prodguardian series score requests_per_5min.csv > scored.csv
    """
    from prodguardian.series import read_series, read_series_csv, score_series, scores_csv

    data = read_series(sys.stdin, "<stdin>") if file == "-" else read_series_csv(Path(file))
    for line in scores_csv(data, score_series(data.timestamps, data.values)):
        click.echo(line)


@cli.group()
def state() -> None:
    """The state store a check keeps (see `check --state`): what it holds, pruning, backfill, reset."""


def _open_state(opts: dict[str, Any], work: Callable[[StateStore], T]) -> T:
    """`work` on the store --state names (default: the user's), saved back to gs:// when it is remote."""
    from prodguardian.remote_state import with_remote_state

    return with_remote_state(_state_of(opts), lambda path: _on_store(path, work))


def _state_of(opts: dict[str, Any]) -> str:
    return str(opts.get("state") or default_state_path())


@state.command("info")
@_state_option
def state_info(**opts: Any) -> None:
    """Print the store's file, size, alert counts, services, stored ranges and read cursors.

    \b
    Example:
      prodguardian state info --state gs://my-bucket/prodguardian.sqlite
    """
    from prodguardian import alert_state

    info, alerting = _open_state(opts, lambda store: (store.info(), alert_state.counts(store)))
    click.echo(f"file: {opts.get('state') or info.path}")
    click.echo(f"size: {info.size_bytes:,} bytes, schema {info.schema_version}")
    click.echo(
        f"alerts: {alerting.firing} firing, {alerting.pending} pending; {alerting.silences} silences in"
        f" force; outbox: {alerting.outbox_pending} to send, {alerting.outbox_dropped} dropped"
    )
    for service in info.services:
        click.echo(
            f"service {service.service}: {service.minute_rows:,} minute rows, {service.revisions} revisions,"
            f" {service.error_groups} error groups"
        )
        for start, end in service.ranges:
            click.echo(f"  stored {start:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M} UTC")
    for cursor in info.cursors:
        kept = (
            "" if cursor.tail_bytes is None else f", its margin's entries kept ({cursor.tail_bytes:,} bytes)"
        )
        click.echo(f"last read {cursor.key}: until {cursor.read_until:%Y-%m-%d %H:%M:%S} UTC{kept}")


@state.command("prune")
@_state_option
@_option("--older-than", default="35d", show_default=True, help="Remove what is older than this (35d, 90d…).")
@click.option(
    "--vacuum", is_flag=True, help="Also give the freed space back to the disk (rewrites the file)."
)
def state_prune(older_than: str, vacuum: bool, **opts: Any) -> None:
    """Remove minutes, groups, revisions and cursors older than --older-than.

    \b
    Example:
      prodguardian state prune --older-than 28d --vacuum
    """
    age = parse_duration(older_than, "--older-than")
    pruned = _open_state(opts, lambda store: store.prune(age, vacuum=vacuum))
    rows = ", ".join(f"{n:,} {table}" for table, n in pruned.rows.items() if n)
    click.echo(f"pruned before {pruned.horizon:%Y-%m-%d %H:%M} UTC: {rows or 'nothing'}")
    if pruned.freed_bytes is not None:
        click.echo(f"freed {pruned.freed_bytes:,} bytes")


@state.command("reset")
@_state_option
@click.option("--yes", is_flag=True, help="Yes, forget everything the store holds.")
def state_reset(yes: bool, **opts: Any) -> None:
    """Forget everything the store holds (the file stays); the next check reads its whole baseline again.

    The alerts, silences and outbox of `watch` stay: forgetting them would send every firing alert again as
    new, lift every silence and lose the notifications not yet delivered.

    \b
    Example:
      prodguardian state reset --yes
    """
    if not yes:
        raise ConfigError("state reset forgets every stored minute: add --yes to do it", "--yes")
    _open_state(opts, lambda store: store.reset())
    click.echo(f"reset {opts.get('state') or default_state_path()}")


@state.command("backfill")
@_option("--service", required=True, help="Cloud Run service name.")
@_option(
    "--freshness",
    setting="state_backfill_freshness",
    default="7d",
    show_default=True,
    help="How much history to fill (7d, 28d…).",
)
@_rules_option
@_cloud_options
@_state_option
def state_backfill(**opts: Any) -> None:
    """Read from Cloud Logging the history the store lacks, within the read quota and --max-entries.

    Stops at --max-entries and resumes where it stopped on the next run; newest hours first.

    \b
    Example:
      prodguardian state backfill --service emergence-app --freshness 7d
    """
    from prodguardian import cloud
    from prodguardian.backfill import backfill, chunks_to_fill

    until = datetime.now(UTC)
    start = until - parse_duration(opts["freshness"], "--freshness")
    pack = load_pack(tuple(opts.get("rules_dirs") or ()))
    project = cloud.resolve_project(opts.get("project") or None)

    def read(first: datetime, end: datetime, entries: int) -> Any:
        options = CheckOptions(service=opts["service"], freshness=end - first, until=end)
        return _live_source({**opts, "project": project, "max_entries": entries}, options, pack, start=first)

    def fill(store: StateStore) -> Any:
        todo = chunks_to_fill(store, opts["service"], start, until)
        with open(os.devnull, "w", encoding="utf-8") as null:  # no progress bar in cron mail or an agent
            shown = sys.stderr if _shows_progress(opts) else null
            with click.progressbar(length=len(todo), label="backfill", file=shown) as bar:
                entries = int(opts.get("max_entries") or 200_000)
                return backfill(store, opts["service"], todo, read, pack, entries, lambda: bar.update(1))

    done = _open_state(opts, fill)
    click.echo(f"backfilled {done.entries:,} entries in {done.calls} API calls; {done.left}")


@cli.group()
def hooks() -> None:
    """Git hooks that check production: a pre-push hook that blocks pushes while production is CRITICAL."""


@hooks.command("install")
@click.argument("hook", type=click.Choice(git_hooks.HOOKS))
@click.option(
    "--block-on",
    type=click.Choice(git_hooks.BLOCK_ON),
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
    for line in git_hooks.describe(block_on, args):
        click.echo(f"  {line}")


@cli.command(git_hooks.COMMAND, hidden=True)
@click.argument("hook", type=click.Choice(git_hooks.HOOKS))
@click.option("--block-on", type=click.Choice(git_hooks.BLOCK_ON), default="critical")
@click.argument("check_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def hook_command(ctx: click.Context, /, hook: str, block_on: str, check_args: tuple[str, ...]) -> None:
    """What an installed git hook runs: the check, then whether the push goes on (exit 0) or not (BLOCK)."""
    with tempfile.TemporaryDirectory(prefix="prodguardian-hook-") as folder:
        report_file = Path(folder) / "report.txt"
        words = [*check_args, "--format", "text", "--output", str(report_file)]
        # Whatever goes wrong in the check (a bug included) ends in 3, UNKNOWN, which never blocks.
        code = _guarded(lambda: check.main(words, "check", standalone_mode=False, parent=ctx.parent))
        report = report_file.read_text(encoding="utf-8") if report_file.is_file() else ""
    decision = git_hooks.decide(STATUSES.get(code, "UNKNOWN"), block_on, report)
    _say(decision.message, prefix="")
    ctx.exit(decision.exit_code)


def _utf8_streams() -> None:
    """Reports carry emoji: never let a legacy console code page (Windows cp1252) turn them into a crash."""
    for stream in (sys.stdout, sys.stderr):
        encoding = (getattr(stream, "encoding", "") or "").lower().replace("-", "")
        if encoding != "utf8" and hasattr(stream, "reconfigure"):
            stream.reconfigure(encoding="utf-8", errors="replace")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code: 0/1/2 for the status, 3 for UNKNOWN and anything else.

    Nothing escapes as a traceback: an error the user can act on is one line, and so is a bug (its
    traceback with PRODGUARDIAN_DEBUG=1), so a broken check never exits 1, which means DEGRADED.
    """
    _utf8_streams()
    return _guarded(lambda: cli.main(args=argv, prog_name="prodguardian", standalone_mode=False))


def _guarded(run: Callable[[], Any]) -> int:
    """Run a command and return its exit code; every error is one line on stderr and 3."""
    try:
        code = run()
    except ProdGuardianError as exc:
        _say(f"error: {exc}")
    except click.UsageError as exc:
        hint = f" (try '{exc.ctx.command_path} --help')" if exc.ctx else ""
        _say(f"error: {exc.format_message()}{hint}")
    except click.ClickException as exc:
        _say(f"error: {exc.format_message()}")
    except click.Abort:
        _say("aborted")
    except KeyboardInterrupt:
        return 130
    except SystemExit:
        pass  # click's answer to stdout's reader leaving before the output ended (`| head -1`): exit 1
    except Exception as exc:
        debug = os.environ.get(DEBUG_ENV, "") not in ("", "0")
        if debug and sys.stderr is not None:
            with suppress(OSError):
                traceback.print_exc()
        _say(_internal_error(exc) + ("" if debug else f" — set {DEBUG_ENV}=1 for the traceback"))
    else:
        return code if isinstance(code, int) else 0
    return 3


def _say(message: str, *, prefix: str = PREFIX, nl: bool = True) -> None:
    """A message on stderr; one that cannot be written (stderr closed, full) is not another failure."""
    with suppress(OSError):
        click.echo(prefix + message, err=True, nl=nl)


def _internal_error(exc: BaseException) -> str:
    """An unexpected exception in one line (its message may quote a log)."""
    message = clean(" ".join(str(exc).split()))
    return f"internal error: {type(exc).__name__}" + (f": {message[:300]}" if message else "")


def _settle_stdout() -> None:
    """Flush stdout before the interpreter does: if that fails (its reader left, the disk is full: already
    told), what is left goes to the null device instead of into an "Exception ignored" message."""
    if sys.stdout is None:
        return
    try:
        sys.stdout.flush()
    except OSError:
        with suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def entry_point() -> None:
    code = main()
    _settle_stdout()
    sys.exit(code)


if __name__ == "__main__":
    entry_point()
