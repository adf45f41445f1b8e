"""How long `prodguardian check` takes on a large export, and how that compares with reading the file at all.

Generates db-outage exports with the simulator at several sizes (`scale` grows the background traffic:
request logs, access-log echoes, WebSocket sessions, app logs, tracebacks, the incident), writes each once
with `prodguardian.source.write_export` (gcloud's pretty-printed JSON array), then measures on each file,
every measurement `--repeats` times and reporting the median:

- `prodguardian check --source FILE --format json`, end to end, as a subprocess (`sys.executable -m
  prodguardian`): wall time, and the peak RSS of its largest process (os.wait4's ru_maxrss, KiB on Linux;
  the check's worker processes are its children, so they are included) and of the whole process tree
  (sampled every 20 ms from /proc: a sum, so pages shared between processes count more than once);
- the check's stages in this process (`run_check(...).seconds`, plus rendering), and the parse alone
  (iterating `FileSource(path)` here, one process, with the check's decoder: `decode.decode_entries`);
- two references on the same file, each in a subprocess: (a) `orjson.loads` of the whole file, the floor
  for any tool that must read it; (b) a naive check: `json.load`, then a Python loop applying every built-in
  rule's message regex (`Rule.match.message`, with the `re` module) to textPayload / jsonPayload.message.

Run from a clone (nothing to install beyond the dependencies):

    python3 benchmarks/bench_check.py                         # 100k, 300k and 1M entries, 3 repeats
    python3 benchmarks/bench_check.py --sizes 100000 --repeats 5
    python3 benchmarks/bench_check.py --keep /tmp/exports     # reuse (or keep) the generated exports

The 1M run needs about 6 GB of free memory for the references (a whole-file parse holds every entry) and
takes about ten minutes on two cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from prodguardian import simulate  # noqa: E402 - after the path set-up
from prodguardian.check import CheckOptions, run_check  # noqa: E402
from prodguardian.decode import decode_entries  # noqa: E402
from prodguardian.render import render  # noqa: E402
from prodguardian.rules import load_pack  # noqa: E402
from prodguardian.source import FileSource, write_export  # noqa: E402

SCENARIO = "db-outage"
STAGES = ("parse", "events", "classify", "aggregate", "detect", "render")

RAW_PARSE = """
import sys, time, orjson
start = time.perf_counter()
with open(sys.argv[1], "rb") as f:
    entries = orjson.loads(f.read())
print(time.perf_counter() - start, len(entries))
"""

NAIVE = """
import json, re, sys, time
sys.path.insert(0, sys.argv[2])
from prodguardian.rules import load_pack
patterns = []
for rule in load_pack().rules:
    if rule.match.message:
        try:
            patterns.append((rule.id, re.compile(rule.match.message)))
        except re.error:
            pass
start = time.perf_counter()
with open(sys.argv[1], encoding="utf-8") as f:
    entries = json.load(f)
counts = dict.fromkeys((rule for rule, _ in patterns), 0)
for entry in entries:
    message = entry.get("textPayload")
    payload = entry.get("jsonPayload")
    if isinstance(payload, dict):
        message = payload.get("message")
    if not isinstance(message, str):
        continue
    for rule, pattern in patterns:
        if pattern.search(message):
            counts[rule] += 1
print(time.perf_counter() - start, len(entries))
"""


def scale_for(size: int) -> float:
    """The simulator scale whose export holds about `size` entries."""
    low, high = 0.0, 1.0
    while simulate.count_hint(SCENARIO, scale=high) < size:
        high *= 2
    for _ in range(50):
        middle = (low + high) / 2
        if simulate.count_hint(SCENARIO, scale=middle) < size:
            low = middle
        else:
            high = middle
    return high


def export(size: int, folder: Path) -> tuple[Path, int]:
    path = folder / f"{SCENARIO}-{size}.json"
    count_file = path.with_suffix(".count")
    if path.exists() and count_file.exists():
        return path, int(count_file.read_text())
    count = write_export(simulate.generate(SCENARIO, scale=scale_for(size)), str(path))
    count_file.write_text(str(count))
    return path, count


class TreeRss:
    """Peak of the summed RSS of a process and its descendants, sampled from /proc (Linux only)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak_kib, self.done = pid, 0, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def stop(self) -> int:
        self.done.set()
        self.thread.join()
        return self.peak_kib

    def _run(self) -> None:
        while not self.done.wait(0.02):
            self.peak_kib = max(self.peak_kib, sum(_rss_kib(pid) for pid in _tree(self.pid)))


def _tree(pid: int) -> list[int]:
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        queue.extend(int(child) for child in children)
    return found


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def end_to_end(path: Path, scratch: Path) -> tuple[float, int, int]:
    """Wall seconds, peak RSS of the largest process (KiB) and of the process tree (KiB, sampled)."""
    command = [sys.executable, "-m", "prodguardian", "check", "--source", str(path), "--format", "json"]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out_path = scratch / "report.json"
    with open(out_path, "wb") as out:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.PIPE, cwd=ROOT, env=env)
        sampler = TreeRss(process.pid) if sys.platform.startswith("linux") else None
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
    tree = sampler.stop() if sampler else 0
    code = os.waitstatus_to_exitcode(status)
    process.returncode = code
    stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
    if code not in (0, 1, 2):
        raise SystemExit(f"prodguardian check failed (exit {code}): {stderr.strip()}")
    json.loads(out_path.read_text(encoding="utf-8"))  # a whole report came out
    return seconds, usage.ru_maxrss, tree


def in_process(path: Path, pack: Any) -> dict[str, float]:
    start = time.perf_counter()
    entries = sum(len(batch) for batch in FileSource(str(path)).batches(decode_entries))
    seconds = {"parse": time.perf_counter() - start, "entries": float(entries)}
    run = run_check(FileSource(str(path)), CheckOptions(), pack)
    seconds.update(run.seconds)
    start = time.perf_counter()
    render(run.report, "json", "en")
    seconds["render"] = time.perf_counter() - start
    return seconds


def reference(script: str, path: Path) -> tuple[float, int]:
    """Seconds the script reports, and the peak RSS of its process (KiB)."""
    process = subprocess.Popen(
        [sys.executable, "-c", script, str(path), str(ROOT)], stdout=subprocess.PIPE, cwd=ROOT
    )
    assert process.stdout is not None
    output = process.stdout.read().decode()
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"reference run failed: {output}")
    return float(output.split()[0]), usage.ru_maxrss


def median(runs: list[Any], pick: Callable[[Any], float]) -> float:
    return statistics.median(pick(run) for run in runs)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    memory = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return (
        f"{cpu}, {cores} cores, {memory} RAM, Python {platform.python_version()} "
        f"({platform.system()} {platform.release()})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", default="100000,300000,1000000", help="entries per export, comma-separated"
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs of each measurement (median reported)")
    parser.add_argument(
        "--keep", metavar="DIR", help="write (or reuse) the exports in DIR instead of a temp dir"
    )
    parser.add_argument(
        "--no-references", action="store_true", help="skip the raw-parse and naive references"
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    print(f"Machine: {machine()}")
    print(f"Scenario {SCENARIO}, medians of {args.repeats} runs; RSS in MiB\n")
    pack = load_pack()
    with tempfile.TemporaryDirectory(prefix="prodguardian-bench-") as temporary:
        folder = Path(args.keep) if args.keep else Path(temporary)
        folder.mkdir(parents=True, exist_ok=True)
        tiny = folder / "tiny.json"
        write_export(simulate.generate(SCENARIO, hours=2, scale=0.1), str(tiny))
        fixed = statistics.median(end_to_end(tiny, Path(temporary))[0] for _ in range(args.repeats))
        print(f"  fixed cost (a check of a 2-hour, 3,198-entry export): {fixed:.2f} s", flush=True)
        rows = []
        for size in sizes:
            start = time.perf_counter()
            path, count = export(size, folder)
            megabytes = path.stat().st_size / 1e6
            print(
                f"  {count:,} entries, {megabytes:,.0f} MB ({time.perf_counter() - start:.0f} s to write)",
                flush=True,
            )
            e2e = [end_to_end(path, Path(temporary)) for _ in range(args.repeats)]
            stages = [in_process(path, pack) for _ in range(args.repeats)]
            raw = naive = None
            if not args.no_references:
                raw = [reference(RAW_PARSE, path) for _ in range(args.repeats)]
                naive = [reference(NAIVE, path) for _ in range(max(1, min(args.repeats, 2)))]
            rows.append((count, megabytes, e2e, stages, raw, naive))
            print(f"    check {median(e2e, lambda r: r[0]):.2f} s", flush=True)
    print()
    print_table(rows, fixed)


def print_table(rows: list[Any], fixed: float) -> None:
    header = [
        "entries",
        "MB",
        "check (s)",
        "µs/entry",
        "net µs/entry",
        "peak RSS",
        "tree RSS",
        *(f"{stage}" for stage in STAGES),
        "orjson.loads (s)",
        "its RSS",
        "naive (s)",
        "check / raw parse",
        "naive / check",
    ]
    lines = []
    for count, megabytes, e2e, stages, raw, naive in rows:
        check = median(e2e, lambda r: r[0])
        raw_s = median(raw, lambda r: r[0]) if raw else float("nan")
        naive_s = median(naive, lambda r: r[0]) if naive else float("nan")
        lines.append(
            [
                f"{count:,}",
                f"{megabytes:,.0f}",
                f"{check:.2f}",
                f"{check / count * 1e6:.1f}",
                f"{(check - fixed) / count * 1e6:.1f}",
                f"{median(e2e, lambda r: r[1]) / 1024:,.0f}",
                f"{median(e2e, lambda r: r[2]) / 1024:,.0f}",
                *(f"{median(stages, lambda r, s=stage: r.get(s, 0.0)):.2f}" for stage in STAGES),
                f"{raw_s:.2f}",
                f"{median(raw, lambda r: r[1]) / 1024:,.0f}" if raw else "-",
                f"{naive_s:.2f}",
                f"{check / raw_s:.2f}×",
                f"{naive_s / check:.1f}×",
            ]
        )
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for line in lines:
        print("| " + " | ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)) + " |")
    first, last = lines[0], lines[-1]
    if len(lines) > 1:
        growth, net = float(last[3]) / float(first[3]), float(last[4]) / float(first[4])
        print(
            f"\nTime per entry, {first[0]} → {last[0]} entries: ×{growth:.2f}; "
            f"net of the fixed cost: ×{net:.2f}"
        )
    print(
        "check: `prodguardian check --source FILE --format json` end to end (interpreter start, imports and "
        f"rule loading included);\nnet: less the fixed cost of a check on a tiny export ({fixed:.2f} s); "
        "parse: iterating FileSource in one process; the other stages are "
        "run_check's, in process (events includes the parse, in worker processes on a large file);\n"
        "peak RSS: the largest process of the check; tree RSS: all its processes summed (sampled)."
    )


if __name__ == "__main__":
    main()
