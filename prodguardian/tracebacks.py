"""Stack traces of Python, Node, Go and Java: where one starts, which lines continue it, what it says.

A trace reaches Cloud Run either as one multi-line entry or one entry per line (a process writing to stderr
without a logging library). `is_start` and `continues` find the second kind so it can be joined; `has_trace`
is a cheap test of a message; `describe` reads a joined trace.

What `describe` returns — (exception type, message, innermost application file, line, function):

- Python: the ROOT exception, the one raised first and printed first when the traceback is chained ("During
  handling of the above exception…" / "The above exception was the direct cause…"), and the innermost app
  frame of that first traceback; when it has none, the innermost app frame of the next traceback that has one.
  The exception line is the first unindented line after a traceback's frames.
- Node: the exception line (`TypeError: x is not a function`; an `Uncaught ` prefix dropped) and the first
  `at` frame (Node prints the innermost first) outside `node_modules/`, `node:` / `internal/` and the old
  core modules that have no directory (`module.js`). A `[cause]:` is ignored.
- Go: type `panic` (also for a recovered `http: panic serving …`) or `fatal error`, the message what follows
  (`runtime error: invalid memory address or nil pointer dereference`), and the first frame of the panicking
  goroutine whose file is neither under GOROOT, the module cache (`/go/pkg/mod/`, `@vX` in the path), nor
  a standard-library package (a `-trimpath` build prints `net/http/server.go`). The function is the frame's
  last path element, e.g. `main.handler` or `api.(*Server).Get`.
- Java: the ROOT cause (the last `Caused by:`), and its first frame whose class is not a library's
  (`JAVA_LIBRARY_PREFIXES`); when the root cause only shows library frames and `... N more`, its enclosing
  exception's last N frames are searched, outward. The file is the package path and source file
  (`com/example/App.java`), the function `Class.method`.

Paths are made app-relative by `app_relative` (`/app/`, `/workspace/`, `/usr/src/app/`, `/srv/`, `/code/`,
`/home/<user>/` stripped). Every pattern is anchored and free of nested or adjacent overlapping quantifiers:
a hostile 32 KiB line costs linear time.
"""

from __future__ import annotations

import re

Description = tuple[str | None, str | None, str | None, int | None, str | None]

PYTHON_STARTS = ("Traceback (most recent call last):", "ERROR:    Exception in ASGI application")
PYTHON_CHAIN = ("During handling of the above exception", "The above exception was the direct cause")
JAVA_LIBRARY_PREFIXES: tuple[str, ...] = (
    "java.",
    "javax.",
    "jakarta.",
    "sun.",
    "com.sun.",
    "jdk.",
    "kotlin.",
    "kotlinx.",
    "scala.",
    "org.springframework.",
    "org.apache.",
    "org.eclipse.jetty.",
    "org.hibernate.",
    "io.netty.",
    "io.grpc.",
    "io.micronaut.",
    "io.quarkus.",
    "io.undertow.",
    "reactor.",
    "com.fasterxml.",
    "com.google.",
    "com.zaxxer.",
    "ch.qos.logback.",
    "org.slf4j.",
    "lambdainternal.",
)
GO_LIBRARY_PREFIXES: tuple[str, ...] = ("/usr/local/go/", "/usr/lib/go/", "/usr/lib/golang/", "/opt/go/")
# Top-level standard-library directories: what a -trimpath build prints instead of GOROOT paths.
_GO_STD = """archive bufio builtin bytes cmp compress container context crypto database debug embed encoding
errors expvar flag fmt go hash html image index internal io iter log maps math mime net os path plugin reflect
regexp runtime slices sort strconv strings structs sync syscall testing text time unicode unique unsafe vendor
weak"""
GO_STD_PACKAGES = frozenset(_GO_STD.split())
MAX_LINE_CHARS = 8192  # a longer line never continues a trace (and is never parsed as a frame)

_APP_ROOT = re.compile(r"^(?:/app/|/workspace/|/usr/src/app/|/srv/|/code/|/home/[^/]+/)")
_PY_FRAME = re.compile(r'^\s*File "([^"]+)", line (\d+), in (\S+)')
_PY_EXCEPTION = re.compile(r"^([A-Za-z_][\w.]*)(?::\s?(.*))?$")
# The line that ends a Python traceback.
_PY_EXCEPTION_LINE = re.compile(
    r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Warning|Failure|Timeout)\w*)(?::\s?(.*))?$"
)
_PY_LIBRARY = re.compile(r"site-packages/|dist-packages/|/lib/python\d|^<frozen|^<string>")

_NODE_START = re.compile(r"^(?:Uncaught )?((?:[A-Z][\w$]*)?Error)(?: \[[A-Z0-9_]+\])?(?:: (.*)|$)")
_NODE_UNCAUGHT = re.compile(r"^Uncaught [A-Za-z]")
_NODE_FRAME = re.compile(r"^\s+at \S")
_NODE_MORE = re.compile(r"^\s+\.\.\. \d+ lines? matching cause stack trace")

_GO_START = re.compile(
    r"^(?:\d{4}/\d\d/\d\d \d\d:\d\d:\d\d(?:\.\d+)? )?"  # a Go log timestamp
    r"(?:(panic|fatal error): |http: (panic) serving \S+: )(.*)"
)
_GO_GOROUTINE = re.compile(r"^goroutine \d+ \[[^\]]*\]:$")
_GO_FUNCTION = re.compile(
    r"^(?:created by )?[^\s()]+(?:\([^\s()]*\)[^\s()]*)?(?:\([^()]*\))?(?: in goroutine \d+)?$"
)
_GO_FILE = re.compile(r"^\s+([^\s:]+):(\d+)(?: \+0x[0-9a-f]+)?\s*$")
_GO_MODULE_VERSION = re.compile(r"@v\d")
_GO_TAIL = re.compile(r"^(?:exit status \d+|\[signal [^\]]*\]|\.\.\.additional frames elided\.\.\.)$")

_JAVA_CLASS = r"(?:[a-z_$][\w$]*\.)+[A-Z][\w$]*"
_JAVA_START = re.compile(
    rf'^(?:Exception in thread "[^"]*" ({_JAVA_CLASS})|({_JAVA_CLASS}(?:Exception|Error|Throwable)))'
    r"(?::\s?(.*))?$"
)
_JAVA_CAUSE = re.compile(rf"^Caused by: ({_JAVA_CLASS})(?::\s?(.*))?$")
_JAVA_CONTINUATION = re.compile(
    r"^(?:\s+at \S|\s+\.\.\. \d+ (?:more|common frames omitted)$|\s*Caused by: \S|\s*Suppressed: \S)"
)
_JAVA_MORE = re.compile(r"^\s+\.\.\. (\d+) (?:more|common frames omitted)$")


def _kind(line: str) -> str | None:
    """Which language's trace `line` starts: "python", "node", "go", "java", or None."""
    if len(line) > MAX_LINE_CHARS:
        line = line[:MAX_LINE_CHARS]
    first = line.partition("\n")[0].rstrip("\r")
    if first in PYTHON_STARTS:
        return "python"
    if not first:
        return None
    lead = first[0]
    if lead in "pfh0123456789" and _GO_START.match(first):
        return "go"
    if (lead == "U" and _NODE_UNCAUGHT.match(first)) or (lead.isupper() and _NODE_START.match(first)):
        return "node"
    if (lead == "E" or lead.islower() or lead in "_$") and _JAVA_START.match(first):
        return "java"
    return None


def is_start(line: str) -> bool:
    """Whether `line` (an entry's text) is the first line of a trace of any of the four languages."""
    return isinstance(line, str) and _kind(line) is not None


def continues(start: str, previous: str | None, line: object) -> bool:
    """Whether `line`, the next entry's text, still belongs to the trace that began with `start`.

    `previous` is the line before `line` (the start itself for the first continuation).
    """
    if not isinstance(line, str) or len(line) > MAX_LINE_CHARS:
        return False
    kind = _kind(start) if isinstance(start, str) else None
    if kind == "python":
        return _python_continues(previous, line)
    if kind == "node":
        return _node_continues(start, previous, line)
    if kind == "go":
        return _go_continues(line)
    if kind == "java":
        return _JAVA_CONTINUATION.match(line) is not None
    return False


def _python_continues(previous: str | None, line: str) -> bool:
    """Frames, chain markers, blank lines, the final exception line."""
    if line in PYTHON_STARTS[:1] and previous in PYTHON_STARTS[1:]:
        return True
    if line.startswith((" ", "\t")) or line.startswith(PYTHON_CHAIN) or not line.strip():
        return True
    if (isinstance(previous, str) and previous.startswith(PYTHON_CHAIN)) or previous == "":
        return line.startswith(PYTHON_STARTS[:1])
    # The exception line ends the traceback; it follows a frame or its source line.
    return (
        _PY_EXCEPTION_LINE.match(line) is not None and isinstance(previous, str) and previous.startswith(" ")
    )


def _node_continues(start: str, previous: str | None, line: str) -> bool:
    if _NODE_FRAME.match(line) or _NODE_MORE.match(line):
        return True
    if previous is None or previous == start:  # a Node trace needs an `at` frame right after its first line
        return False
    stripped = line.lstrip()
    if stripped.startswith(("[cause]: ", "Caused by: ")) or stripped in ("}", "]"):
        return True
    if not line.strip():
        return previous is not None and _NODE_FRAME.match(previous) is not None
    return previous == "" and line.startswith("Node.js v")


def _go_continues(line: str) -> bool:
    if not line.strip() or line.startswith((" ", "\t")):
        return True
    return bool(_GO_GOROUTINE.match(line) or _GO_TAIL.match(line) or _GO_FUNCTION.match(line))


def has_trace(text: str) -> bool:
    """Whether `text` holds a trace worth describing: substring tests first, so cheap on every message."""
    if not isinstance(text, str):
        return False
    if "Traceback (most recent call last)" in text:
        return True
    if "\ngoroutine " in text and (text.startswith(("panic: ", "fatal error: ")) or _go_header(text)):
        return True
    for marker in ("\n    at ", "\n\tat ", "\n        at "):
        at = text.find(marker)
        if at < 0:
            continue
        before = text.rfind("\n", 0, at)
        if _kind(text[before + 1 : at]) in ("node", "java") or _kind(text) in ("node", "java"):
            return True
    return False


def _go_header(text: str) -> bool:
    return "\npanic: " in text or "\nfatal error: " in text or "http: panic serving " in text


def describe(text: str) -> Description:
    """(exception type, message, innermost app file, line, function) of a trace; all None if there is none."""
    if not isinstance(text, str):
        return None, None, None, None, None
    lines = text.splitlines()
    if "Traceback (most recent call last)" in text:
        return _describe_python(lines)
    for index, line in enumerate(lines):
        kind = _kind(line)
        if kind == "go":
            return _describe_go(lines[index:])
        if kind == "node":
            return _describe_node(lines[index:])
        if kind == "java":
            return _describe_java(lines[index:])
    return None, None, None, None, None


def trace_group(exc_type: str, file: str | None, function: str | None) -> str:
    """A trace's group: its root exception type and innermost application frame, by file and function but
    not line, which moves with every edit (`KeyError at src/threads.py in get_thread`)."""
    if not file:
        return exc_type
    return f"{exc_type} at {file} in {function}" if function else f"{exc_type} at {file}"


def app_relative(path: str) -> str:
    return _APP_ROOT.sub("", path)


def _describe_python(lines: list[str]) -> Description:
    # Per traceback of the chain, in print order: its exception line and its innermost app frame.
    exceptions: list[tuple[str, str | None] | None] = []
    frames: list[tuple[str, int, str] | None] = []
    in_frames = False
    for line in lines:
        if line.startswith(PYTHON_STARTS[0]):
            exceptions.append(None)
            frames.append(None)
            in_frames = True
            continue
        if not exceptions or len(line) > MAX_LINE_CHARS:
            continue
        frame = _PY_FRAME.match(line)
        if frame:
            if not _PY_LIBRARY.search(frame[1]):
                frames[-1] = (frame[1], int(frame[2]), frame[3])
            continue
        if line.startswith((" ", "\t")) or not line.strip() or line.startswith(PYTHON_CHAIN):
            continue
        if in_frames:
            exception = _PY_EXCEPTION.match(line) or _PY_EXCEPTION_LINE.match(line)
            if exception:
                exceptions[-1] = (exception[1], exception[2])
            in_frames = False
    root = next((e for e in exceptions if e is not None), (None, None))
    innermost = next((f for f in frames if f is not None), None)
    if not exceptions or innermost is None:
        return root[0], root[1], None, None, None
    return root[0], root[1], app_relative(innermost[0]), innermost[1], innermost[2]


def _node_library(path: str) -> bool:
    return (
        "node_modules/" in path
        or path.startswith(("node:", "internal/", "<anonymous>", "native", "<"))
        or "/" not in path
    )


def _node_frame(line: str) -> tuple[str | None, str, int] | None:
    """(function, path, line) of a Node `    at …` line."""
    if len(line) > MAX_LINE_CHARS or not _NODE_FRAME.match(line):
        return None
    rest = line.strip()[3:]
    if rest.startswith("async "):
        rest = rest[6:]
    function: str | None = None
    location = rest
    if rest.endswith(")") and " (" in rest:
        split = rest.rfind(" (")
        function, location = rest[:split], rest[split + 2 : -1]
    if location.startswith("file://"):
        location = location[7:]
    parts = location.rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
        return None
    return function, parts[0], int(parts[1])


def _describe_node(lines: list[str]) -> Description:
    start = _NODE_START.match(lines[0].removeprefix("Uncaught "))
    exc_type, exc_message = (start[1], start[2]) if start else (None, None)
    for line in lines[1:]:
        if line.lstrip().startswith(("[cause]: ", "Caused by: ")):
            break
        frame = _node_frame(line)
        if frame and not _node_library(frame[1]):
            return exc_type, exc_message, app_relative(frame[1]), frame[2], frame[0]
    return exc_type, exc_message, None, None, None


def _go_library(path: str) -> bool:
    if path.startswith(GO_LIBRARY_PREFIXES) or "/go/pkg/mod/" in path or _GO_MODULE_VERSION.search(path):
        return True
    if path.startswith("/") or path.startswith("<"):
        return path.startswith("<")
    return path.split("/", 1)[0] in GO_STD_PACKAGES  # a -trimpath build: no GOROOT, just the package path


def _describe_go(lines: list[str]) -> Description:
    start = _GO_START.match(lines[0])
    if start is None:
        return None, None, None, None, None
    exc_type = start[1] or start[2]
    exc_message = start[3].removesuffix(" [recovered]")
    function: str | None = None
    in_goroutine = False
    for line in lines[1:]:
        if len(line) > MAX_LINE_CHARS:
            continue
        if _GO_GOROUTINE.match(line):
            if in_goroutine:
                break  # only the goroutine that panicked
            in_goroutine = True
            continue
        if not in_goroutine:
            continue
        file_line = _GO_FILE.match(line)
        if file_line:
            if (
                function is not None
                and not function.startswith("created by ")
                and not _go_library(file_line[1])
            ):
                return (
                    exc_type,
                    exc_message,
                    app_relative(file_line[1]),
                    int(file_line[2]),
                    _go_name(function),
                )
            function = None
        elif _GO_FUNCTION.match(line):
            function = line
    return exc_type, exc_message, None, None, None


def _go_name(function: str) -> str:
    """`github.com/x/api.(*Server).Get(0xc0, …)` → `api.(*Server).Get`."""
    short = function.rsplit("/", 1)[-1]
    if short.endswith(")"):
        depth = 0
        for position in range(len(short) - 1, -1, -1):  # drop the argument list: the last balanced (…)
            depth += {")": 1, "(": -1}.get(short[position], 0)
            if depth == 0:
                return short[:position]
    return short


def _java_frame(line: str) -> tuple[str, str, str | None, int | None] | None:
    """(qualified class, method, source file, line) of a Java `\\tat …` line."""
    stripped = line.strip()
    if len(line) > MAX_LINE_CHARS or not stripped.startswith("at ") or not stripped.endswith(")"):
        return None
    rest = stripped[3:]
    paren = rest.rfind("(")
    if paren < 0:
        return None
    qualified, location = rest[:paren].rsplit("/", 1)[-1], rest[paren + 1 : -1]  # drop `java.base@17/`
    if "." not in qualified:
        return None
    cls, method = qualified.rsplit(".", 1)
    source, _, number = location.partition(":")
    return (
        cls,
        method,
        (source if source.endswith((".java", ".kt", ".scala", ".groovy")) else None),
        (int(number) if number.isdigit() else None),
    )


def _describe_java(lines: list[str]) -> Description:
    # Each exception of the chain: (type, message, frames, frames shared with the enclosing one).
    sections: list[
        tuple[str | None, str | None, list[tuple[str, str, str | None, int | None]], list[int]]
    ] = []
    start = _JAVA_START.match(lines[0])
    if start is None:
        return None, None, None, None, None
    sections.append((start[1] or start[2], start[3], [], [0]))
    frame_indent: str | None = None
    for line in lines[1:]:
        cause = _JAVA_CAUSE.match(line) if line.startswith("Caused by: ") else None
        if cause:
            sections.append((cause[1], cause[2], [], [0]))
            continue
        omitted = _JAVA_MORE.match(line)
        if omitted:
            sections[-1][3][0] = int(omitted[1])
            continue
        frame = _java_frame(line)
        if frame is None:
            continue
        indent = line[: len(line) - len(line.lstrip())]
        if frame_indent is None:
            frame_indent = indent
        if indent == frame_indent:  # deeper: a suppressed exception's frames
            sections[-1][2].append(frame)
    exc_type, exc_message = sections[-1][0], sections[-1][1]
    shared: int | None = None
    for _, _, frames, more in reversed(sections):
        candidates = frames if shared is None else frames[-shared:] if shared else []
        for cls, method, source, number in candidates:
            if not cls.startswith(JAVA_LIBRARY_PREFIXES):
                return exc_type, exc_message, _java_file(cls, source), number, f"{_simple(cls)}.{method}"
        shared = more[0]
        if not shared:
            break
    return exc_type, exc_message, None, None, None


def _simple(cls: str) -> str:
    return cls.rsplit(".", 1)[-1]


def _java_file(cls: str, source: str | None) -> str | None:
    """`com.example.App$Inner` in App.java → `com/example/App.java`."""
    if source is None:
        return None
    package = cls.rsplit(".", 1)[0] if "." in cls else ""
    return f"{package.replace('.', '/')}/{source}" if package else source
