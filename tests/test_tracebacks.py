"""Stack traces of Python, Node, Go and Java: starts, continuations, descriptions."""

# ruff: noqa: E501  (verbatim published traces)

from __future__ import annotations

import itertools

from prodguardian.tracebacks import continues, describe, has_trace, is_start
from tests import logs

# Node crash as printed to a container's stderr, from
# https://github.com/IBM-Cloud/get-started-node/issues/23 (old Node: core modules without a directory).
NODE_CRASH = """TypeError: Cloudant is not a function
    at Object.<anonymous> (/app/server.js:170:14)
    at Module._compile (module.js:577:32)
    at Object.Module._extensions..js (module.js:586:10)
    at Module.load (module.js:494:32)
    at tryModuleLoad (module.js:453:12)
    at Function.Module._load (module.js:445:3)
    at Module.runMain (module.js:611:10)
    at run (bootstrap_node.js:394:7)
    at startup (bootstrap_node.js:160:9)
    at bootstrap_node.js:507:3"""

# https://github.com/googlecodelabs/cloud-cardboard-viewer/issues/26: the innermost frames are a library's.
NODE_LIBRARY_FIRST = """TypeError: require(...).runInDebugContext is not a function
    at Object.<anonymous> (/home/borbeamihai/cloud-cardboard-viewer/node_modules/@google-cloud/debug-agent/src/agent/state.js:24:31)
    at Module._compile (internal/modules/cjs/loader.js:689:30)
    at Object.Module._extensions..js (internal/modules/cjs/loader.js:700:10)
    at require (internal/modules/cjs/helpers.js:22:18)
    at Object.<anonymous> (/home/borbeamihai/cloud-cardboard-viewer/index.js:17:1)"""

NODE_MODERN = """TypeError: Cannot read properties of undefined (reading 'id')
    at getUser (file:///app/src/users.mjs:12:25)
    at async handler (/app/src/server.js:42:13)
    at process.processTicksAndRejections (node:internal/process/task_queues:95:5)"""

# A recovered panic in a Cloud Run service's log, from
# https://github.com/google/exposure-notifications-verification-server/issues/326 (a -trimpath build).
GO_RECOVERED = """2020/08/22 23:57:15 http: panic serving 169.254.8.129:17611: runtime error: invalid memory address or nil pointer dereference
goroutine 113 [running]:
net/http.(*conn).serve.func1(0xc00085c320)
\tnet/http/server.go:1801 +0x147
panic(0x11d3c40, 0x1d62310)
\truntime/panic.go:975 +0x3e9
github.com/google/exposure-notifications-verification-server/pkg/controller/codestatus.(*Controller).HandleCheckCodeStatus.func1(0x3e1039aebb58, 0xc0008c07b0, 0xc000176e00)
\tgithub.com/google/exposure-notifications-verification-server/pkg/controller/codestatus/api.go:40 +0x1a9
net/http.HandlerFunc.ServeHTTP(0xc000989670, 0x3e1039aebb58, 0xc0008c07b0, 0xc000176e00)
\tnet/http/server.go:2042 +0x44"""

# https://github.com/maxcnunes/gaper/issues/9 (GOROOT and GOPATH paths), the frames' tabs restored.
GO_PANIC = """panic: runtime error: invalid memory address or nil pointer dereference
[signal SIGSEGV: segmentation violation code=0x1 addr=0xa0 pc=0x4d0ca6]

goroutine 154 [running]:
os/exec.(*Cmd).Wait(0x0, 0x5bc683, 0xc42000a060)
\t/usr/local/go/src/os/exec/exec.go:453 +0x26
github.com/maxcnunes/gaper.(*runner).runBin.func1(0xc4200b2000)
\t/go/src/github.com/maxcnunes/gaper/runner.go:159 +0x2f
created by github.com/maxcnunes/gaper.(*runner).runBin
\t/go/src/github.com/maxcnunes/gaper/runner.go:158 +0x25d"""

GO_APP = """panic: assignment to entry in nil map

goroutine 1 [running]:
main.handler(0xc000010000)
\t/app/main.go:12 +0x1d
main.main()
\t/app/main.go:20 +0x25
exit status 2"""

# https://github.com/spring-projects/spring-boot/issues/8717, shortened.
JAVA_CHAINED = """Exception in thread "main" org.springframework.context.ApplicationContextException: Unable to start embedded container; nested exception is org.springframework.boot.context.embedded.EmbeddedServletContainerException: Unable to start embedded Tomcat
\tat org.springframework.boot.context.embedded.EmbeddedWebApplicationContext.onRefresh(EmbeddedWebApplicationContext.java:133)
\tat org.springframework.boot.SpringApplication.run(SpringApplication.java:946)
\tat com.teamtreehouse.core.Application.main(Application.java:10)
Caused by: org.springframework.boot.context.embedded.EmbeddedServletContainerException: Unable to start embedded Tomcat
\tat org.springframework.boot.context.embedded.tomcat.TomcatEmbeddedServletContainer.initialize(TomcatEmbeddedServletContainer.java:98)
\t... 2 more"""

# https://github.com/spring-projects/spring-framework/issues/31581: module prefixes, spaces for the tab.
JAVA_NPE = """java.lang.NullPointerException: null
        at com.ncs.secureconnect.iam.service.services.impl.LoginServiceImpl.login(LoginServiceImpl.java:66)
        at java.base@17.0.8/java.lang.reflect.Method.invoke(Method.java:568)
        at org.apache.tomcat.util.threads.TaskThread$WrappingRunnable.run(TaskThread.java:61)"""

PY_CHAINED = """Traceback (most recent call last):
  File "/app/api/store.py", line 14, in load
    return cache[key]
KeyError: 'user:1'

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "/app/api/views.py", line 30, in get
    user = store.load(key)
  File "/app/api/store.py", line 16, in load
    raise UserNotFoundError(key) from None
api.store.UserNotFoundError: user:1"""


def test_starts_of_each_language() -> None:
    for line in (
        "Traceback (most recent call last):",
        "ERROR:    Exception in ASGI application",
        "TypeError: x is not a function",
        "Error: boom",
        "Error [ERR_HTTP_HEADERS_SENT]: Cannot set headers after they are sent to the client",
        "Uncaught ReferenceError: foo is not defined",
        "panic: runtime error: index out of range [3] with length 3",
        "fatal error: all goroutines are asleep - deadlock!",
        GO_RECOVERED.splitlines()[0],
        'Exception in thread "main" java.lang.IllegalStateException: boom',
        "java.lang.IllegalStateException: Failed to load ApplicationContext",
        "com.example.billing.InvoiceException",
    ):
        assert is_start(line), line
    for line in (
        "0 errors found",
        "Error handling request",
        "error: boom",
        "INFO:     Started server process [1]",
        '  File "/app/main.py", line 1, in <module>',
        "java.lang.String is a class",
        "panicked at nothing",
        "",
    ):
        assert not is_start(line), line


def _fold(lines: list[str]) -> int:
    """How many lines after the first continue the trace."""
    count = 0
    for previous, line in itertools.pairwise(lines):
        if not continues(lines[0], previous, line):
            break
        count += 1
    return count


def test_python_continuation_is_events_semantics() -> None:
    lines = [*logs.DB_TRACEBACK.splitlines(), 'INFO:     10.0.0.1:0 - "GET / HTTP/1.1" 200 OK']
    assert _fold(lines) == len(lines) - 2
    chained = [*PY_CHAINED.splitlines(), "Request completed status_code=500"]
    assert _fold(chained) == len(chained) - 2
    # After a blank line only a new traceback continues.
    assert not continues("Traceback (most recent call last):", "", "next request")


def test_node_continuation_needs_at_frames() -> None:
    lines = [*NODE_MODERN.splitlines(), "", "Node.js v18.17.0", "Server listening on 8080"]
    assert _fold(lines) == len(lines) - 2
    assert not continues("Error: boom", "Error: boom", "retrying in 5s")
    assert not continues("Error: boom", "Error: boom", "")


def test_go_continuation() -> None:
    lines = [*GO_PANIC.splitlines(), "exit status 2", "Container called exit(2)."]
    assert _fold(lines) == len(lines) - 2
    lines = [*GO_APP.splitlines(), "2025/10/11 12:00:03 listening on :8080"]
    assert _fold(lines) == len(lines) - 2


def test_java_continuation() -> None:
    lines = [*JAVA_CHAINED.splitlines(), "\tSuppressed: java.io.IOException: closed", "Started App in 3.2s"]
    assert _fold(lines) == len(lines) - 2
    assert not continues(JAVA_NPE.splitlines()[0], "x", object())


def test_has_trace() -> None:
    for text in (logs.DB_TRACEBACK, PY_CHAINED, NODE_CRASH, NODE_MODERN, GO_PANIC, GO_RECOVERED, JAVA_NPE):
        assert has_trace(text)
    for text in ("Error: boom", "goroutine leak suspected", "meet me at noon\n    at the station", ""):
        assert not has_trace(text)


def test_python_root_exception_of_a_chain() -> None:
    assert describe(PY_CHAINED) == ("KeyError", "'user:1'", "api/store.py", 14, "load")
    exc_type, _, file, _, _ = describe(logs.DB_TRACEBACK)
    assert exc_type is not None and file is not None and "site-packages" not in file


def test_node_descriptions() -> None:
    assert describe(NODE_CRASH) == (
        "TypeError",
        "Cloudant is not a function",
        "server.js",
        170,
        "Object.<anonymous>",
    )
    assert describe(NODE_LIBRARY_FIRST)[2:] == ("cloud-cardboard-viewer/index.js", 17, "Object.<anonymous>")
    assert describe(NODE_MODERN) == (
        "TypeError",
        "Cannot read properties of undefined (reading 'id')",
        "src/users.mjs",
        12,
        "getUser",
    )
    assert describe("Error: boom\n    at /app/src/server.js:42:13")[2:] == ("src/server.js", 42, None)


def test_go_descriptions() -> None:
    assert describe(GO_RECOVERED) == (
        "panic",
        "runtime error: invalid memory address or nil pointer dereference",
        "github.com/google/exposure-notifications-verification-server/pkg/controller/codestatus/api.go",
        40,
        "codestatus.(*Controller).HandleCheckCodeStatus.func1",
    )
    assert describe(GO_PANIC)[2:] == (
        "/go/src/github.com/maxcnunes/gaper/runner.go",
        159,
        "gaper.(*runner).runBin.func1",
    )
    assert describe(GO_APP) == ("panic", "assignment to entry in nil map", "main.go", 12, "main.handler")
    assert describe("fatal error: all goroutines are asleep - deadlock!")[:2] == (
        "fatal error",
        "all goroutines are asleep - deadlock!",
    )


def test_java_root_cause() -> None:
    exc_type, message, file, line, function = describe(JAVA_CHAINED)
    assert exc_type == "org.springframework.boot.context.embedded.EmbeddedServletContainerException"
    assert message == "Unable to start embedded Tomcat"
    # The root cause shows only Spring frames; its `... 2 more` are the enclosing exception's last two.
    assert (file, line, function) == ("com/teamtreehouse/core/Application.java", 10, "Application.main")
    assert describe(JAVA_NPE) == (
        "java.lang.NullPointerException",
        "null",
        "com/ncs/secureconnect/iam/service/services/impl/LoginServiceImpl.java",
        66,
        "LoginServiceImpl.login",
    )


def test_nothing_to_describe() -> None:
    assert describe("all good") == (None, None, None, None, None)


def test_hostile_lines_are_linear() -> None:
    hostile = [
        "a." * 16_384,
        "TypeError: " + "(" * 32_768,
        "    at " + "x:1" * 10_922,
        "\t" + "a:1" * 10_922 + "x",
        'Exception in thread "' + "a" * 32_768,
        "a" * 32_760 + "Error",
        "main." + "(" * 32_768,
    ]
    for line in hostile:
        is_start(line)
        has_trace(line + "\n    at x")
        describe(line + "\n" + line)
        for start in (
            "panic: x",
            "Error: x",
            "java.lang.IllegalStateException: x",
            "Traceback (most recent call last):",
        ):
            continues(start, "  x", line)
