"""The severity a plain stdout/stderr line states in its text."""

from __future__ import annotations

import pytest

from prodguardian.levels import stated_severity, strip_markup
from prodguardian.rules import SEVERITY_RANKS
from tests.test_tracebacks import GO_PANIC, JAVA_NPE, NODE_CRASH

DEBUG, INFO, NOTICE, WARNING, ERROR, CRITICAL = (
    SEVERITY_RANKS[name] for name in ("DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL")
)


@pytest.mark.parametrize(
    ("line", "rank"),
    [
        # Python logging
        ("ERROR:root:Failed to refresh token", ERROR),
        ("ERROR:app.db:connection pool exhausted", ERROR),
        ("WARNING:urllib3.connectionpool:Retrying (Retry(total=2))", WARNING),
        ("DEBUG:asyncio:Using selector: EpollSelector", DEBUG),
        ("2025-10-11 12:00:01,123 - app - ERROR - Payment failed", ERROR),
        ("2025-10-11 12:00:01,123 - app.api - CRITICAL - giving up", CRITICAL),
        ("[2025-10-11 12:00:01,123] ERROR in app: Exception on /api/items [GET]", ERROR),
        ("[2025-10-11 12:00:01,123] INFO in routes: ok", INFO),
        # loguru
        ("2025-10-11 12:00:01.123 | ERROR    | app.main:run:42 - boom", ERROR),
        ("2025-10-11 12:00:01.123 | SUCCESS  | app.main:run:42 - done", INFO),
        ("2025-10-11 12:00:01.123 | WARNING  | app.main:run:42 - slow", WARNING),
        # gunicorn, uvicorn
        ("[2025-10-11 12:00:01 +0000] [8] [ERROR] Exception in worker process", ERROR),
        ("[2025-10-11 12:00:01 +0000] [1] [CRITICAL] WORKER TIMEOUT (pid:8)", CRITICAL),
        ("[2025-10-11 12:00:01 +0000] [1] [INFO] Booting worker with pid: 8", INFO),
        ("ERROR:    Exception in ASGI application", ERROR),
        ("INFO:     Started server process [1]", INFO),
        ("WARNING:  Invalid HTTP request received.", WARNING),
        # logfmt, structlog, logrus
        ('level=error msg="db down"', ERROR),
        ('time="2025-10-11T12:00:01Z" level=warning msg="slow query"', WARNING),
        ('time=2025-10-11T12:00:01.000Z level=ERROR msg="request failed" status=500', ERROR),
        ('t=2025-10-11T12:00:01+0000 lvl=eror msg="failed"', ERROR),
        ("2025-10-11 12:00:01 [error    ] payment failed   order_id=7", ERROR),
        ("2025-10-11T12:00:01.123456Z [warning  ] retrying", WARNING),
        ("ERRO[0000] failed to connect", ERROR),
        # zerolog's console writer (cloudquery on Cloud Run), with its default Kitchen time too
        (
            "2024-11-01T03:37:57Z INF started call grpc.component=server grpc.method=GetVersions "
            "grpc.method_type=unary grpc.service=cloudquery.discovery.v1.Discovery",
            INFO,
        ),
        ("2024-11-01T03:37:57Z WRN slow destination", WARNING),
        ("2024-11-01T03:37:57Z FTL failed to start server", CRITICAL),
        ("3:04PM ERR failed to sync error=boom", ERROR),
        ("3:04PM PNC runtime error", CRITICAL),
        # Go
        ("panic: runtime error: invalid memory address or nil pointer dereference", CRITICAL),
        ("fatal error: concurrent map writes", CRITICAL),
        ("2025/10/11 12:00:01 ERROR msg=boom", ERROR),
        ("2020/08/22 23:57:15 http: panic serving 169.254.8.129:17611: runtime error: x", ERROR),
        ("2025-10-11T12:00:01.000Z\tERROR\tserver/handler.go:42\tquery failed", ERROR),
        ("2025-10-11T12:00:01.000+0000\tWARN\tcache miss", WARNING),
        ("E1011 12:00:01.123456       1 controller.go:114] sync failed", ERROR),
        ("W1011 12:00:01.123456       1 reflector.go:324] watch closed", WARNING),
        # Node
        ("(node:1) UnhandledPromiseRejectionWarning: Error: connect ECONNREFUSED", ERROR),
        (
            "[UnhandledPromiseRejection: This error originated either by throwing inside of an async …",
            ERROR,
        ),
        # Java
        ('Exception in thread "main" java.lang.IllegalStateException: boom', ERROR),
        (
            "2025-10-11 12:00:01.123 ERROR 1 --- [nio-8080-exec-1] o.a.c.c.C.[.[.[/].[dispatcherServlet] : x",
            ERROR,
        ),
        ("2025-10-11 12:00:01.123  WARN 1 --- [main] c.e.App : deprecated", WARNING),
        ("2025-10-11T12:00:01.123Z ERROR 1 --- [app] [main] c.e.App : failed", ERROR),
        ("2025-10-11 12:00:01,123 [main] ERROR com.example.App - failed", ERROR),
        ("SEVERE: Servlet.service() for servlet [jsp] threw exception", ERROR),
        # Others
        ("Traceback (most recent call last):", ERROR),
        ("E, [2025-10-11T12:00:01.123456 #1] ERROR -- : boom", ERROR),
        ("PHP Fatal error:  Uncaught Exception: boom in /var/www/index.php:3", CRITICAL),
        ("PHP Warning:  Undefined variable $x", WARNING),
        ("PHP Notice:  Undefined index: id", NOTICE),
        ("[ERROR] disk full", ERROR),
        ("[warn] slow", WARNING),
        ("FATAL could not bind :8080", CRITICAL),
        ("CRITICAL: out of memory", CRITICAL),
    ],
)
def test_stated_forms(line: str, rank: int) -> None:
    assert stated_severity(line) == rank


@pytest.mark.parametrize(
    "line",
    [
        "0 errors found",
        "error_count=0",
        "Handling errors gracefully",
        "Error handling request /api/items",
        "Error: boom",  # a Node exception line without frames states nothing
        "TypeError: x is not a function",
        "GET /api/errors 200",
        "Processed 10 items, 0 failed, warnings=0",
        "user said: ERROR is just a word here",
        "2025-10-11 12:00:01 request finished error=None",
        "ERRORS=0",
        "",
        "   ERROR: indented lines are not a log line's start",
        '{"level":50,"msg":"pino is structured already"}',
    ],
)
def test_prose_states_nothing(line: str) -> None:
    assert stated_severity(line) is None


def test_prose_with_a_lower_level_is_not_an_error() -> None:
    assert stated_severity("INFO: processed request with error=None") == INFO
    assert stated_severity('level=info msg="error budget ok"') == INFO


def test_markup_is_stripped_first() -> None:
    assert stated_severity("\x1b[31mERROR\x1b[0m:    Exception in ASGI application") == ERROR
    assert stated_severity("\x1b[32m2025-10-11 12:00:01.123\x1b[0m | \x1b[1;31mERROR   \x1b[0m | x") == ERROR
    assert stated_severity("<red>2025-10-11 12:00:01</red> | <level>ERROR</level> | x") == ERROR
    assert stated_severity("[bold red]ERROR[/bold red]: boom") == ERROR
    assert stated_severity("[bold red]error[/] count is 0") is None


def test_strip_markup_keeps_real_text() -> None:
    assert strip_markup("\x1b[1;31mboom\x1b[0m") == "boom"
    assert strip_markup("<red>boom</red> <level>x</level> <fg #ff0000>y</fg #ff0000> </>") == "boom x y "
    assert strip_markup("[bold red]boom[/bold red] [link=https://x.y/z]here[/link] [/]") == "boom here "
    kept = (
        '[ERROR] list[int] dict[str, Any] arr[i] [main] [8] <module> <anonymous> List<E> [error    ] "[red"'
    )
    assert strip_markup(kept) == kept


def test_traces_that_need_frames() -> None:
    assert stated_severity(NODE_CRASH) == ERROR
    assert stated_severity(JAVA_NPE) == ERROR
    assert stated_severity("java.lang.IllegalStateException: boom") is None
    assert stated_severity(GO_PANIC) == CRITICAL


def test_only_the_start_counts() -> None:
    assert stated_severity("x" * 300 + " ERROR: late") is None
    assert stated_severity("request handled\nERROR: on the second line") is None


def test_hostile_lines() -> None:
    for line in (
        "[bold " * 5_462,
        "\x1b[" + "1;" * 16_383,
        "2025-10-11 12:00:01 - " + "a" * 32_768,
        " level=" * 4_681,
        "<fg " * 8_192,
        "[" * 32_768,
        "Error: " + "x" * 32_768 + "\n" + "    at " * 4_681,
    ):
        stated_severity(line)
        strip_markup(line)


def test_an_unhandled_error_event_is_an_error() -> None:
    assert (
        stated_severity("[ioredis] Unhandled error event: Error: read ECONNRESET") == SEVERITY_RANKS["ERROR"]
    )
    assert stated_severity("Unhandled 'error' event") == SEVERITY_RANKS["ERROR"]
