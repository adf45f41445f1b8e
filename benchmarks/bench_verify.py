"""What `prodguardian verify` costs next to `prodguardian check` on the same input.

For each simulator scale, the bad-deploy scenario (25 hours: the previous revisions in the baseline, the new
one in the second half of the window) is generated once into a list; then `run_check` and `run_verify` read
it, each 3 times, and the medians are printed: seconds, entries per second, and verify / check. Verify
builds the events once, as a check does, then runs classify → aggregate → detect on each revision's slice
(two or three slices), so its extra cost is those slices, not a second read.

Run: .venv/bin/python benchmarks/bench_verify.py [--scales 1,3] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from prodguardian.check import CheckOptions, run_check  # noqa: E402 - after the path set-up
from prodguardian.rules import load_pack  # noqa: E402
from prodguardian.simulate import generate  # noqa: E402
from prodguardian.verify import VerifyOptions, run_verify  # noqa: E402


def median_seconds(work: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="1,3", help="simulator scales, comma-separated")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    pack = load_pack()
    print(f"{'scale':>5} {'entries':>9} {'check s':>8} {'verify s':>9} {'verify/check':>13} {'verdict':>8}")
    for scale in (float(s) for s in args.scales.split(",")):
        entries = list(generate("bad-deploy", scale=scale))
        check_s = median_seconds(lambda: run_check(entries, CheckOptions(), pack), args.runs)  # noqa: B023
        verify_s = median_seconds(lambda: run_verify(entries, VerifyOptions(), pack), args.runs)  # noqa: B023
        verdict = run_verify(entries, VerifyOptions(), pack).verdict
        print(
            f"{scale:>5g} {len(entries):>9,} {check_s:>8.2f} {verify_s:>9.2f} {verify_s / check_s:>12.2f}×"
            f" {verdict:>8}"
        )


if __name__ == "__main__":
    main()
