"""The time-series scorer: online (no look-ahead), quiet on daily cycles and rare counts, loud on spikes and
shifts; its CSV reader and command; and NAB's scoring rules."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from prodguardian.cli import main
from prodguardian.errors import InputError
from prodguardian.evaluation import FileScore, normalised, probation_rows, scaled_sigmoid, score_file
from prodguardian.series import read_series_csv, score_series

START = datetime(2025, 10, 1)
STEP = timedelta(minutes=5)
PER_DAY = 288


def requests_per_5_minutes(days: int, seed: int = 0) -> tuple[list[datetime], np.ndarray]:
    """Poisson counts with a daily cycle: ~5 per 5 minutes at night, ~60 in the afternoon."""
    rng = np.random.default_rng(seed)
    n = days * PER_DAY
    hour = (np.arange(n) % PER_DAY) / 12
    rate = 5 + 55 * (0.5 - 0.5 * np.cos(2 * np.pi * (hour - 3) / 24)) ** 2
    return [START + i * STEP for i in range(n)], rng.poisson(rate).astype(float)


def test_a_point_is_scored_from_earlier_points_only() -> None:
    times, values = requests_per_5_minutes(10)
    values[2000] = 400
    whole = score_series(times, values)
    for cut in (300, 1999, 2001, 2500):
        head = score_series(times[:cut], values[:cut])
        np.testing.assert_array_equal(head.scores, whole.scores[:cut])
        np.testing.assert_array_equal(head.flags, whole.flags[:cut])


def test_a_daily_cycle_is_no_anomaly_and_a_spike_in_it_is() -> None:
    times, values = requests_per_5_minutes(14)
    assert not score_series(times, values).flags[PER_DAY:].any()
    values[10 * PER_DAY + 100] = 0  # the service went silent for 10 minutes at 08:20, when ~20 are usual
    values[10 * PER_DAY + 101] = 0
    values[12 * PER_DAY + 180] = 250  # a burst at 15:00
    flagged = np.flatnonzero(score_series(times, values).flags[PER_DAY:]) + PER_DAY
    assert list(flagged) == [12 * PER_DAY + 180]  # two zeros among Poisson(20) values are a dip, not a
    # certainty; the burst is four times the busiest usual value


def test_a_level_shift_is_flagged_once_at_its_start() -> None:
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.normal(40, 2, 5 * PER_DAY), rng.normal(55, 2, 2 * PER_DAY)])
    times = [START + i * STEP for i in range(len(values))]
    result = score_series(times, values)
    flagged = np.flatnonzero(result.flags)
    assert len(flagged) >= 1 and 5 * PER_DAY <= flagged[0] <= 5 * PER_DAY + 6
    assert result.scores[5 * PER_DAY + 1] >= 0.5 and (result.scores >= 0).all() and (result.scores < 1).all()


def test_rare_events_are_counts_not_outliers() -> None:
    """Errors per 5 minutes on a quiet service: mostly 0, a 1 or 2 now and then, never an anomaly."""
    rng = np.random.default_rng(5)
    values = rng.poisson(0.05, 7 * PER_DAY).astype(float)
    values[6 * PER_DAY] = 2
    times = [START + i * STEP for i in range(len(values))]
    assert not score_series(times, values).flags.any()
    values[6 * PER_DAY + 50] = 30
    assert score_series(times, values).flags[6 * PER_DAY + 50]


def test_a_clock_set_back_does_not_break_the_order() -> None:
    times, values = requests_per_5_minutes(3)
    times[400:412] = [t - timedelta(hours=1) for t in times[400:412]]
    result = score_series(times, values)
    assert len(result.scores) == len(values) and not result.flags[PER_DAY:].any()


def test_series_score_prints_the_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    times, values = requests_per_5_minutes(3)
    values[2 * PER_DAY + 150] = 300
    path = tmp_path / "requests.csv"
    rows = [f"{t:%Y-%m-%dT%H:%M:%SZ},{int(v)}" for t, v in zip(times, values, strict=True)]
    path.write_text("timestamp,value\n" + "\n".join(rows) + "\n", encoding="utf-8")
    assert main(["series", "score", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "timestamp,value,anomaly_score,is_anomaly"
    assert len(lines) == len(values) + 1
    assert [line.split(",")[:2] for line in lines[1:]] == [row.split(",") for row in rows]
    flagged = [i for i, line in enumerate(lines[1:]) if line.endswith(",1")]
    assert flagged == [2 * PER_DAY + 150]
    assert float(lines[1 + 2 * PER_DAY + 150].split(",")[2]) >= 0.5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "timestamp,value\n2025-10-01T00:00:00Z,1\n2025-10-01T00:05:00Z,many\n",
            ":3: value 'many' is not a number",
        ),
        ("2025-10-01T00:00:00Z,1,2\n", ":1: expected 2 fields (timestamp,value), found 3"),
        ("yesterday,1\n", ":1: timestamp 'yesterday' is not ISO 8601"),
        ("2025-10-01T00:00:00Z,nan\n", ":1: value 'nan' is not a finite number"),
        ("timestamp,value\n", ": no rows of timestamp,value"),
    ],
)
def test_a_bad_row_is_one_line_naming_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError):
        read_series_csv(path)
    assert main(["series", "score", str(path)]) == 3
    out, err = capsys.readouterr()
    assert (out, err) == ("", f"prodguardian: error: {path}{message}\n")


def test_nab_scoring_rules() -> None:
    times = np.array([np.datetime64("2025-10-01T00:00") + np.timedelta64(5 * i, "m") for i in range(1000)])
    window = [(times[500], times[599])]
    assert probation_rows(1000) == 150 and probation_rows(100_000) == 750
    assert scaled_sigmoid(-1.0) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    assert scaled_sigmoid(3.5) == -1.0

    def score(*rows: int) -> FileScore:
        flags = np.zeros(1000, dtype=bool)
        flags[list(rows)] = True
        return score_file(times, flags, window)

    assert score().raw == -1.0  # a missed window
    assert score(500).raw == pytest.approx(scaled_sigmoid(-1.0))  # detected at its start: 0.987
    assert score(500, 520, 590).raw == pytest.approx(scaled_sigmoid(-1.0))  # only the first counts
    assert score(100, 500).raw == pytest.approx(scaled_sigmoid(-1.0))  # in the probation: ignored
    assert score(200, 500).raw == pytest.approx(scaled_sigmoid(-1.0) - 0.11)  # before any window: −A_FP
    just_after = score(500, 600).raw - scaled_sigmoid(-1.0)
    assert -0.11 * 0.1 < just_after < 0  # a detection just after a window costs almost nothing
    assert score(500, 950).raw == pytest.approx(scaled_sigmoid(-1.0) - 0.11)  # 3.5 lengths after
    assert normalised([score()]) == 0.0
    assert normalised([score(500)]) == pytest.approx(100 * (1 + scaled_sigmoid(-1.0)) / 2)
