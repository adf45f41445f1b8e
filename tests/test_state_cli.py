"""`check` with a state store and the `state` commands, through the CLI and the real google-cloud-logging
client against the fake Logging API: a warm check reads only what is new, and answers as a cold one does."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from prodguardian.cli import main
from prodguardian.state import StateStore, default_state_path
from tests.fake_gcs_server import FakeGcsServer, fake_gcs_server  # noqa: F401 - the fixture
from tests.fake_logging_server import FakeLoggingServer

END = "2025-10-11T12:04:00Z"
EARLIER = "2025-10-11T11:59:00Z"
# A 3-hour baseline: the reads a store saves show as well as with 24 h, at an eighth of the entries.
LIVE = ["--service", "emergence-app", "--project", "emergence-469005", "--quiet", "--format", "json"]
LIVE += ["--baseline", "3h"]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, json.loads(out) if out.startswith("{") else out, err


def _answer(report: dict[str, Any]) -> tuple[Any, ...]:
    findings = sorted((f["rule"], f["category"], f["severity"], f["count"]) for f in report["findings"])
    metrics = {k: v for k, v in report["metrics"].items() if "latency" not in k}
    return report["status"], findings, metrics


def test_a_warm_live_check_reads_from_the_cursor_less_the_margin_and_answers_as_a_cold_one(
    capsys: pytest.CaptureFixture[str], logging_api: FakeLoggingServer, tmp_path: Path
) -> None:
    state = str(tmp_path / "state.sqlite")
    code, cold, _ = run(capsys, "check", *LIVE, "--until", EARLIER, "--state", state)
    assert code == 2 and cold["totals"]["read"]["baseline_from_state_hours"] == 0
    logging_api.reset()
    code, warm, _ = run(capsys, "check", *LIVE, "--until", END, "--state", state)
    calls = logging_api.requests
    assert 'timestamp>="2025-10-11T11:57:00' in calls[0]["filter"]  # the cursor, 11:59, less 2 minutes
    # ... and of the 2 minutes, only what arrived since the cold check (the store holds the rest)
    assert '(timestamp>="2025-10-11T11:59:00Z" OR receiveTimestamp>=' in calls[0]["filter"]
    assert warm["totals"]["read"] == {
        "calls": len(calls),
        "entries": warm["totals"]["read"]["entries"],
        "baseline_from_state_hours": 3,
    }
    assert len(calls) <= 2 and warm["totals"]["read"]["entries"] < 1000
    code_stateless, stateless, _ = run(capsys, "check", *LIVE, "--until", END, "--no-state")
    assert code == code_stateless == 2
    assert _answer(warm) == _answer(stateless)
    code, info, _ = run(capsys, "state", "info", "--state", state)
    assert (
        code == 0
        and "last read logging:emergence-469005:*:emergence-app: until 2025-10-11 12:04:00 UTC," in info
    )
    assert "its margin's entries kept (" in info


def test_a_live_check_of_one_service_keeps_its_state_in_the_user_folder(
    capsys: pytest.CaptureFixture[str], outage_api: FakeLoggingServer
) -> None:
    run(capsys, "check", *LIVE, "--until", END)
    with StateStore(default_state_path()) as store:
        assert [c.key for c in store.info().cursors] == ["logging:emergence-469005:*:emergence-app"]


def test_a_file_replays_into_the_state_only_with_state(
    capsys: pytest.CaptureFixture[str], exports: dict[str, Path], tmp_path: Path
) -> None:
    code, _, _ = run(capsys, "check", "--source", str(exports["db-outage"]), "--format", "json")
    assert code == 2 and not default_state_path().exists()
    state = str(tmp_path / "history.sqlite")
    code, _, _ = run(capsys, "check", "--source", str(exports["db-outage"]), "--state", state)
    assert code == 2
    code, info, _ = run(capsys, "state", "info", "--state", state)
    assert code == 0
    assert "service emergence-app:" in info and "stored 2025-10-10 11:04 – 2025-10-11 12:04 UTC" in info
    code, out, _ = run(capsys, "state", "prune", "--state", state)  # 35 days: all of 2025-10
    assert code == 0 and " minutes, " in out and " 1 coverage, " in out
    with StateStore(state) as store:
        assert store.coverage("emergence-app") == []


def test_reset_needs_yes(
    capsys: pytest.CaptureFixture[str], exports: dict[str, Path], tmp_path: Path
) -> None:
    state = str(tmp_path / "history.sqlite")
    run(capsys, "check", "--source", str(exports["healthy-2h"]), "--state", state)
    code, _, err = run(capsys, "state", "reset", "--state", state)
    assert code == 3 and "add --yes" in err
    code, out, _ = run(capsys, "state", "reset", "--state", state, "--yes")
    assert (code, out) == (0, f"reset {state}\n")
    with StateStore(state) as store:
        assert store.info().services == []


def test_a_state_that_is_not_ours_is_one_line_and_exit_3(
    capsys: pytest.CaptureFixture[str], exports: dict[str, Path], tmp_path: Path
) -> None:
    state = tmp_path / "notes.sqlite"
    state.write_text("not a database", encoding="utf-8")
    code, out, err = run(capsys, "check", "--source", str(exports["healthy-2h"]), "--state", str(state))
    assert code == 3 and out == ""
    assert err == f"prodguardian: error: {state}: not a SQLite database, so not a ProdGuardian state store\n"
    assert state.read_text(encoding="utf-8") == "not a database"


def test_a_state_in_cloud_storage_is_read_and_saved_by_each_check(
    capsys: pytest.CaptureFixture[str],
    exports: dict[str, Path],
    fake_gcs_server: FakeGcsServer,  # noqa: F811 - the imported fixture
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", fake_gcs_server.url)
    url = "gs://state-bucket/prodguardian.sqlite"
    code, _, _ = run(capsys, "check", "--source", str(exports["db-outage-2h"]), "--state", url)
    assert code == 2 and fake_gcs_server.generation("state-bucket", "prodguardian.sqlite")
    code, info, _ = run(capsys, "state", "info", "--state", url)
    assert code == 0 and info.startswith(f"file: {url}\n") and "service emergence-app:" in info


def test_a_gap_is_read_again_within_max_entries_and_what_is_left_is_said(
    capsys: pytest.CaptureFixture[str], logging_api: FakeLoggingServer, tmp_path: Path
) -> None:
    state = str(tmp_path / "state.sqlite")
    limit = ["--state", state, "--max-entries", "3000"]
    _, cold, _ = run(capsys, "check", *LIVE, "--until", EARLIER, *limit)
    assert cold["totals"]["truncated"]
    gaps = [w for w in cold["warnings"] if w.startswith("no logs stored or read for 2025-10-11 07:59–")]
    assert len(gaps) == 1 and gaps[0].endswith(
        "(not filled: --max-entries, or the logs are gone): its counts are missing"
    )
    logging_api.reset()
    _, warm, _ = run(capsys, "check", *LIVE, "--until", END, "--state", state)
    assert 'timestamp>="2025-10-11T08:04:00' in logging_api.requests[0]["filter"]  # the gap, read again
    assert not warm["totals"]["truncated"] and not [w for w in warm["warnings"] if w.startswith("no logs")]
    _, stateless, _ = run(capsys, "check", *LIVE, "--until", END, "--no-state")
    assert _answer(warm) == _answer(stateless)


def test_a_backfill_stops_at_its_entries_and_resumes_where_it_stopped(
    logging_api: FakeLoggingServer, tmp_path: Path
) -> None:
    from prodguardian import cloud
    from prodguardian.backfill import backfill, chunks_to_fill
    from tests.reports import builtin_pack

    end, start = datetime(2025, 10, 11, 12, 4, tzinfo=UTC), datetime(2025, 10, 10, 11, 4, tzinfo=UTC)

    def read(first: datetime, last: datetime, entries: int) -> Any:
        settings = cloud.CloudLogging(
            project="emergence-469005", emulator=logging_api.host, max_entries=entries, calls_per_second=1000
        )
        query = cloud.CloudQuery(start=first, end=last, service="emergence-app", settings=settings)
        return cloud.CloudSource(query)

    with StateStore(tmp_path / "state.sqlite") as store:
        todo = chunks_to_fill(store, "emergence-app", start, end)
        assert [b - a for a, b in todo] == [timedelta(hours=6)] * 4 + [timedelta(hours=1)]
        assert todo[0][1] == end  # newest first
        first = backfill(store, "emergence-app", todo, read, builtin_pack(), 20_000)
        assert first.entries == 20_000 and first.missing
        again = backfill(
            store,
            "emergence-app",
            chunks_to_fill(store, "emergence-app", start, end),
            read,
            builtin_pack(),
            200_000,
        )
        assert not again.missing and again.left == "nothing left to fill"
        assert store.coverage("emergence-app") == [(pd.Timestamp(start), pd.Timestamp(end))]
        stored = int(store.minutes("emergence-app", start, end)["requests"].sum())
    with StateStore(tmp_path / "once.sqlite") as store:
        backfill(
            store,
            "emergence-app",
            chunks_to_fill(store, "emergence-app", start, end),
            read,
            builtin_pack(),
            200_000,
        )
        assert int(store.minutes("emergence-app", start, end)["requests"].sum()) == stored
