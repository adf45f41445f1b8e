"""What importing the library costs: `import prodguardian` alone, then its first use (`check_logs`, which
loads the pipeline: pandas, numpy, msgspec, RE2), and apart, the Google libraries the live source loads when
it reads; each in a fresh interpreter, medians of several runs.

    python3 benchmarks/bench_import.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = {
    "interpreter alone": "pass",
    "import prodguardian": "import prodguardian",
    "prodguardian.check_logs": "import prodguardian; prodguardian.check_logs",
    "the live source's Google": "import google.auth.transport.requests, google.api_core.exceptions",
}
TIMED = (
    "import time, sys; began = time.perf_counter(); {code}; elapsed = time.perf_counter() - began; "
    "print(elapsed, len(sys.modules))"
)


def measure(code: str, repeats: int) -> tuple[float, int]:
    """Median seconds of `code` in a fresh interpreter, and how many modules it left loaded."""
    runs = []
    modules = 0
    for _ in range(repeats):
        done = subprocess.run(
            [sys.executable, "-c", TIMED.format(code=code)],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        seconds, count = done.stdout.split()
        runs.append(float(seconds))
        modules = int(count)
    return statistics.median(runs), modules


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    print(f"{'step':<28} {'ms (median)':>12} {'modules':>8}")
    for label, code in STEPS.items():
        seconds, modules = measure(code, args.repeats)
        print(f"{label:<28} {seconds * 1000:>12.1f} {modules:>8}")


if __name__ == "__main__":
    main()
