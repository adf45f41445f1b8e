"""Score `prodguardian.series.score_series` on the Numenta Anomaly Benchmark (standard profile).

    python3 benchmarks/bench_nab.py [NAB_DIR]   # default ../shared/data/nab (data/*/*.csv, labels/)

One configuration for every file (the constants in prodguardian/series.py), no threshold tuned per file
or per detector. Prints per file: rows, windows, windows detected, false positives, raw score and the
file's normalised score; then the corpus's normalised score (0 = detecting nothing, 100 = perfect).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from prodguardian.evaluation import FileScore, normalised, score_file
from prodguardian.series import read_series_csv, score_series

DEFAULT_NAB = Path("..") / "shared" / "data" / "nab"  # from the repository's root


def main() -> None:
    nab = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_NAB
    windows = json.loads((nab / "labels" / "combined_windows.json").read_text(encoding="utf-8"))
    scores: list[FileScore] = []
    began = time.perf_counter()
    print(f"{'file':58} {'rows':>6} {'win':>4} {'hit':>4} {'fp':>4} {'raw':>7} {'score':>7}")
    for path in sorted((nab / "data").glob("*/*.csv")):
        name = path.relative_to(nab / "data").as_posix()
        series = read_series_csv(path)
        result = score_series(series.timestamps, series.values)
        labelled = [(np.datetime64(start, "ns"), np.datetime64(end, "ns")) for start, end in windows[name]]
        file_score = score_file(np.asarray(series.timestamps, dtype="datetime64[ns]"), result.flags, labelled)
        scores.append(file_score)
        one = f"{normalised([file_score]):7.1f}" if file_score.windows else "      -"
        print(
            f"{name:58} {len(series.values):6} {file_score.windows:4} {file_score.detected:4} "
            f"{file_score.false_positives:4} {file_score.raw:7.2f} {one}"
        )
    rows = sum(len(read_series_csv(p).values) for p in (nab / "data").glob("*/*.csv"))
    detected, false_positives = sum(s.detected for s in scores), sum(s.false_positives for s in scores)
    print(f"\n{len(scores)} files, {sum(s.windows for s in scores)} windows, {detected} detected, ", end="")
    print(f"{false_positives} false positives; {rows} rows in {time.perf_counter() - began:.1f} s")
    print(f"NAB score, standard profile: {normalised(scores):.1f}")


if __name__ == "__main__":
    main()
