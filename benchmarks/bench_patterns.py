"""How well the template miner groups messages: Loghub-2.0's 2k samples of 14 systems, one configuration.

For each system, mines the `Content` column of `<Sys>_2k.log_structured_corrected.csv` (the message after
its header, as every published parser is given it) with `prodguardian.patterns.TemplateMiner` in its
default configuration, the same for every system, and compares the groups with the ground-truth
`EventTemplate`:

- grouping accuracy (GA, Zhu et al. ICSE-SEIP 2019): the share of messages whose predicted group holds
  exactly the messages of their true group;
- template-level F1 (FGA, Jiang et al. ISSTA 2024): a predicted group is correct when it holds exactly the
  messages of one true template; precision is over the predicted groups, recall over the true templates.

Prints a table, the averages and the messages per second; then the seconds a check's unknown-errors stage
takes on an error storm (`--storm N` distinct ERROR lines no rule knows in the window, a baseline of
traffic before it).

    python3 benchmarks/bench_patterns.py                       # ../shared/data/loghub-2k
    python3 benchmarks/bench_patterns.py --data /path/to/loghub-2k --systems HDFS Linux --storm 0
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from prodguardian.check import CheckOptions, run_check  # noqa: E402 - after the path set-up
from prodguardian.patterns import TemplateMiner  # noqa: E402

LOGHUB = Path("shared", "data", "loghub-2k")
# ../shared beside the clone, or beside a folder above it (a git worktree's).
DEFAULT_DATA = next((p / LOGHUB for p in ROOT.parents if (p / LOGHUB).is_dir()), ROOT.parent / LOGHUB)
PUBLISHED_DRAIN = {"grouping_accuracy": 0.85, "template_f1": 0.74}  # averages over the 14 systems


@dataclass(frozen=True)
class Score:
    system: str
    messages: int
    true_templates: int
    found_templates: int
    grouping_accuracy: float
    template_f1: float
    seconds: float


def grouping_scores(truth: Sequence[str], predicted: Sequence[object]) -> tuple[float, float]:
    """(grouping accuracy, template-level F1) of predicted group labels against true templates."""
    true_groups: dict[str, set[int]] = defaultdict(set)
    found_groups: dict[object, set[int]] = defaultdict(set)
    for index, (true, found) in enumerate(zip(truth, predicted, strict=True)):
        true_groups[true].add(index)
        found_groups[found].add(index)
    exact = {frozenset(group) for group in true_groups.values()}
    correct = [group for group in found_groups.values() if frozenset(group) in exact]
    accuracy = sum(len(group) for group in correct) / len(truth) if truth else 0.0
    precision = len(correct) / len(found_groups) if found_groups else 0.0
    recall = len(correct) / len(true_groups) if true_groups else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return accuracy, f1


def score_system(folder: Path) -> Score:
    system = folder.name
    with (folder / f"{system}_2k.log_structured_corrected.csv").open(encoding="utf-8", newline="") as file:
        rows = list(csv.DictReader(file))
    messages = [row["Content"] for row in rows]
    truth = [row["EventTemplate"] for row in rows]
    started = time.perf_counter()
    miner = TemplateMiner()
    assigned = miner.add_all(messages)
    seconds = time.perf_counter() - started
    # A message's group is its template's final text: two templates that end up alike are one group.
    labels = [miner.templates[index].text for index in assigned]
    accuracy, f1 = grouping_scores(truth, labels)
    return Score(system, len(rows), len(set(truth)), len(set(labels)), accuracy, f1, seconds)


STORM_END = datetime(2025, 10, 11, 12, 0, tzinfo=UTC)


def _entry(at: datetime, log: str, **fields: Any) -> dict[str, Any]:
    return {
        "logName": f"projects/p/logs/run.googleapis.com%2F{log}",
        "resource": {
            "type": "cloud_run_revision",
            "labels": {"service_name": "app", "revision_name": "app-1"},
        },
        "labels": {"instanceId": "i-1"},
        "timestamp": at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        **fields,
    }


def storm_seconds(count: int) -> float:
    """Seconds of the unknown-errors stage of a check whose window holds `count` distinct unknown errors."""
    start = STORM_END - timedelta(hours=1)
    entries = [
        _entry(
            STORM_END - timedelta(seconds=30 * i), "requests", httpRequest={"requestUrl": "/x", "status": 200}
        )
        for i in range(240)
    ]
    entries += [
        _entry(
            start + timedelta(seconds=3600 * i / count),
            "stderr",
            severity="ERROR",
            textPayload=f"Job {i} failed for tenant t{i % 50} after {i % 7} retries",
        )
        for i in range(count)
    ]
    return run_check(entries, CheckOptions(until=STORM_END)).seconds["unknown_errors"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the loghub-2k folder")
    parser.add_argument("--systems", nargs="*", help="only these systems (default: every folder)")
    parser.add_argument("--storm", type=int, default=20_000, help="unknown errors in the storm (0: none)")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        print(f"bench_patterns: no loghub-2k data at {args.data}", file=sys.stderr)
        return 2
    folders = sorted(
        p for p in args.data.iterdir() if p.is_dir() and (not args.systems or p.name in args.systems)
    )
    scores = [score_system(folder) for folder in folders]
    print("| system      | messages | true templates | found | grouping accuracy | template F1 |")
    print("|-------------|----------|----------------|-------|-------------------|-------------|")
    for s in scores:
        print(
            f"| {s.system:<11} | {s.messages:>8,} | {s.true_templates:>14} | {s.found_templates:>5} "
            f"| {s.grouping_accuracy:>17.3f} | {s.template_f1:>11.3f} |"
        )
    count = len(scores) or 1
    accuracy = sum(s.grouping_accuracy for s in scores) / count
    f1 = sum(s.template_f1 for s in scores) / count
    print(f"| average     |          |                |       | {accuracy:>17.3f} | {f1:>11.3f} |")
    print(
        f"\npublished Drain average: grouping accuracy {PUBLISHED_DRAIN['grouping_accuracy']:.2f},"
        f" template F1 {PUBLISHED_DRAIN['template_f1']:.2f}"
    )
    messages = sum(s.messages for s in scores)
    seconds = sum(s.seconds for s in scores)
    print(f"mining speed: {messages / seconds:,.0f} messages/s ({messages:,} messages in {seconds:.2f} s)")
    if args.storm:
        print(
            f"unknown-errors stage, {args.storm:,} distinct unknown errors: {storm_seconds(args.storm):.2f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
