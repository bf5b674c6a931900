"""The run history (prodval/history.py) on real SQLite files: what a run learns, what is kept, and what
happens to a file that cannot be used. No process but the concurrent writers'."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from prodval.history import (
    _SCHEMA_1,
    HISTORY_SCHEMA,
    History,
    HistoryUnusable,
    annotate,
    flow_summaries,
    remember,
    render_summary,
)
from prodval.results import Attempt, FlowResult, Job, RunRecord, job_from_env, run_trigger
from prodval.secrets import Redactor
from prodval.settings import HistorySettings, load_history


def make_record(run_id: str, flows: dict[str, str], *, durations: dict[str, int] | None = None,
                commit: str = "", verdict: str = "pass", trigger: str = "deploy") -> RunRecord:
    record = RunRecord(runId=run_id, job=Job(jobId=run_id, commit=commit or f"{run_id}-sha", startTime=f"{run_id}-start",
                                             endTime=f"{run_id}-end", trigger=trigger), verdict=verdict)
    for name, status in flows.items():
        duration = (durations or {}).get(name, 1000)
        attempts = [Attempt(1, status, 0, duration, "emulator-5554", "t")]
        record.flows.append(FlowResult(name, name.removesuffix(".yaml"), status=status, duration=duration,
                                       attempts=attempts, device="emulator-5554"))
    return record


def settings(tmp_path: Path, **values: Any) -> HistorySettings:
    return load_history({"path": str(tmp_path / "history" / "h.sqlite"), **values}, {}, {})


def never(text: str) -> None:
    raise AssertionError(f"unexpected warning: {text}")


def test_pass_fail_fail_flaky_pass(tmp_path: Path) -> None:
    """The issue's sequence: strip, rates, failingSince (with its commit and runs ago), new vs still failing."""
    config = settings(tmp_path)
    seen = []
    for number, status in enumerate(["passed", "failed", "failed", "flaky", "passed"], 1):
        record = make_record(f"run{number}", {"login.yaml": status}, commit=f"c{number}abcdef")
        remember(record, config, never)
        seen.append(record)
    first = seen[0].flows[0].history
    assert first is not None and first["strip"] == ["passed"] and first["runs"] == 0 and first["state"] == ""
    assert seen[0].history == {"path": str(config.path), "runs": 0, "note": "", "previous": None}

    second = seen[1].flows[0].history
    assert second is not None and second["strip"] == ["passed", "failed"] and second["state"] == "new"
    assert second["failingSince"] == {"runId": "run2", "commit": "c2abcdef", "startTime": "run2-start", "runsAgo": 0}
    assert (second["passRate"], second["flakyRate"], second["failRate"]) == (0.5, 0.0, 0.5)

    third = seen[2].flows[0].history
    assert third is not None and third["state"] == "still failing"
    assert third["failingSince"] == {"runId": "run2", "commit": "c2abcdef", "startTime": "run2-start", "runsAgo": 1}
    assert third["strip"] == ["passed", "failed", "failed"] and third["failRate"] == pytest.approx(2 / 3, abs=1e-3)
    assert seen[2].history is not None and seen[2].history["runs"] == 2
    assert seen[2].history["previous"] == {"runId": "run2", "verdict": "pass", "commit": "c2abcdef",
                                           "trigger": "deploy", "endTime": "run2-end"}

    fourth = seen[3].flows[0].history
    assert fourth is not None and fourth["failingSince"] is None and fourth["state"] == ""
    assert fourth["strip"] == ["passed", "failed", "failed", "flaky"] and fourth["flakyRate"] == 0.25

    fifth = seen[4].flows[0].history
    assert fifth is not None and fifth["strip"] == ["passed", "failed", "failed", "flaky", "passed"]
    assert (fifth["passRate"], fifth["flakyRate"], fifth["failRate"]) == (0.4, 0.2, 0.4)
    assert fifth["runs"] == 4 and fifth["durations"] == [1000] * 5 and fifth["failingSince"] is None


def test_the_strip_covers_the_window_and_failing_since_looks_beyond_it(tmp_path: Path) -> None:
    config = settings(tmp_path, window=3)
    for number in range(1, 7):
        remember(make_record(f"r{number}", {"a.yaml": "passed" if number == 1 else "failed"}), config, never)
    record = make_record("r7", {"a.yaml": "error"})
    remember(record, config, never)
    found = record.flows[0].history
    assert found is not None and found["strip"] == ["failed", "failed", "failed", "error"] and found["runs"] == 3
    assert found["failingSince"] is not None and found["failingSince"]["runId"] == "r2"
    assert found["failingSince"]["runsAgo"] == 5 and found["state"] == "still failing"


def test_not_run_neither_breaks_nor_extends_a_streak(tmp_path: Path) -> None:
    config = settings(tmp_path)
    for number, status in enumerate(["passed", "failed", "not_run", "timed_out"], 1):
        record = make_record(f"r{number}", {"a.yaml": status, "b.yaml": "passed"})
        remember(record, config, never)
    found = record.flows[0].history
    assert found is not None and found["state"] == "still failing"  # the not_run did not break it
    assert found["failingSince"] is not None and found["failingSince"]["runId"] == "r2"
    assert found["failingSince"]["runsAgo"] == 2  # r3 counts as a run, though this flow did not run in it
    assert found["strip"] == ["passed", "failed", "timed_out"] and found["runs"] == 2

    idle = make_record("r5", {"a.yaml": "not_run", "b.yaml": "passed"})
    remember(idle, config, never)
    quiet = idle.flows[0].history
    assert quiet is not None and quiet["state"] == "" and quiet["failingSince"] is None
    assert quiet["strip"][-1] == "not_run" and quiet["failRate"] == pytest.approx(2 / 3, abs=1e-3)  # not_run not counted
    with History.open(config.path, never) as store:
        assert store.streak_start("a.yaml") is not None  # the stored streak goes on past the not_run run


@pytest.mark.parametrize("samples, slow", [(4, False), (5, True)])
def test_p50_p95_and_slow_need_five_passing_samples(tmp_path: Path, samples: int, slow: bool) -> None:
    config = settings(tmp_path)
    durations = [1000, 1100, 1200, 1300, 1400][:samples]
    for number, ms in enumerate(durations):
        remember(make_record(f"r{number}", {"a.yaml": "passed"}, durations={"a.yaml": ms}), config, never)
    remember(make_record("failed-one", {"a.yaml": "failed"}, durations={"a.yaml": 90000}), config, never)  # no sample
    record = make_record("now", {"a.yaml": "passed"}, durations={"a.yaml": 2200})  # > 1.5 x p95
    remember(record, config, never)
    found = record.flows[0].history
    assert found is not None and found["slow"] is slow
    assert found["p50"] == (1200 if samples == 5 else 1100) and found["p95"] == durations[-1]
    assert found["durations"] == [*durations, 90000, 2200]

    fast = make_record("later", {"a.yaml": "passed"}, durations={"a.yaml": 1400})
    remember(fast, config, never)
    assert fast.flows[0].history is not None and fast.flows[0].history["slow"] is False


def test_a_flaky_run_is_judged_slow_by_its_passing_attempt(tmp_path: Path) -> None:
    config = settings(tmp_path)
    for number in range(5):
        remember(make_record(f"r{number}", {"a.yaml": "passed"}), config, never)
    record = make_record("now", {"a.yaml": "flaky"}, durations={"a.yaml": 5000})
    record.flows[0].attempts = [Attempt(1, "failed", 1, 4000, "d", "t"), Attempt(2, "passed", 0, 1000, "d", "t")]
    remember(record, config, never)
    assert record.flows[0].history is not None and record.flows[0].history["slow"] is False


def test_keep_prunes_the_oldest_runs_and_their_alerts(tmp_path: Path) -> None:
    config = settings(tmp_path, keep=3)
    for number in range(1, 6):
        remember(make_record(f"r{number}", {"a.yaml": "passed"}), config, never)
        with History.open(config.path, never) as store:
            store.record_alert(f"r{number}", "fail", "slack", f"2026-01-0{number}T00:00:00Z")
    with History.open(config.path, never) as store:
        assert store.run_count() == 3
        assert [r["runId"] for r in store.flow_runs("a.yaml", 10)] == ["r5", "r4", "r3"]
        alerts = store.connection.execute("SELECT run_id FROM alerts ORDER BY id").fetchall()
    assert [a[0] for a in alerts] == ["r3", "r4", "r5"]  # r5's alert came after r5 was stored


def test_the_same_run_id_is_replaced_not_counted_twice(tmp_path: Path) -> None:
    """A GitHub re-run keeps its runId: its second copy replaces the first, and does not see it."""
    config = settings(tmp_path)
    remember(make_record("r1", {"a.yaml": "passed"}), config, never)
    remember(make_record("r2", {"a.yaml": "failed"}), config, never)
    again = make_record("r2", {"a.yaml": "passed", "b.yaml": "passed"})
    remember(again, config, never)
    found = again.flows[0].history
    assert found is not None and found["strip"] == ["passed", "passed"]  # not r2's first copy
    assert again.history is not None and again.history["runs"] == 1 and again.history["previous"]["runId"] == "r1"
    with History.open(config.path, never) as store:
        assert store.run_count() == 2
        assert [r["status"] for r in store.flow_runs("a.yaml", 10)] == ["passed", "passed"]
        assert store.connection.execute("SELECT COUNT(*) FROM flows").fetchone()[0] == 3


def test_what_is_stored_for_a_run_and_its_flows(tmp_path: Path) -> None:
    config = settings(tmp_path)
    record = make_record("r1", {"a.yaml": "failed"}, commit="abc1234", trigger="schedule", verdict="fail")
    record.apk = {"versionName": "1.4.2", "versionCode": 42}
    record.flows[0].errorSummary = "Assertion is false: token s3cr3t-value visible"
    record.flows[0].quarantined = True  # type: ignore[attr-defined]  # H2's field, where it is not merged yet
    remember(record, config, never, redact=Redactor(["s3cr3t-value"]))
    with History.open(config.path, never) as store:
        [run] = store.flow_runs("a.yaml", 5)
        previous = store.previous_run()
    assert run == {"runId": "r1", "commit": "abc1234", "trigger": "schedule", "startTime": "r1-start",
                   "endTime": "r1-end", "verdict": "fail", "status": "failed", "attempts": 1, "duration": 1000,
                   "device": "emulator-5554", "errorSummary": "Assertion is false: token *** visible",
                   "quarantined": True}
    assert previous is not None and (previous["versionName"], previous["versionCode"]) == ("1.4.2", "42")
    assert record.flows[0].errorSummary.endswith("s3cr3t-value visible")  # the record itself is masked when written


def test_alerts_are_recorded_and_the_newest_of_some_kinds_found(tmp_path: Path) -> None:
    with History.open(tmp_path / "h.sqlite", never) as store:
        assert store.last_alert(["fail"]) is None
        store.record_alert("r1", "fail", "slack", "2026-01-01T00:00:00Z")
        store.record_alert("r1", "fail", "pagerduty", "2026-01-01T00:00:01Z")
        store.record_alert("r2", "recovery", "slack", "2026-01-02T00:00:00Z")
        assert store.last_alert(["fail", "reminder"]) == {"runId": "r1", "kind": "fail", "channel": "pagerduty",
                                                          "at": "2026-01-01T00:00:01Z"}
        assert store.last_alert([]) is not None and store.last_alert([])["kind"] == "recovery"  # type: ignore[index]


def test_a_version_1_file_is_migrated_with_its_data(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    db = sqlite3.connect(path)
    db.executescript(_SCHEMA_1)
    db.execute("INSERT INTO runs (run_id, commit_sha, trigger, start_time, end_time, verdict) "
               "VALUES ('old1', 'aaa', 'deploy', 's1', 'e1', 'fail')")
    db.execute("INSERT INTO flows (seq, flow, name, status, attempts, duration, device, error_summary) "
               "VALUES (1, 'a.yaml', 'a', 'failed', 2, 1500, 'emulator-5554', 'boom')")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()

    record = make_record("new", {"a.yaml": "failed"})
    remember(record, load_history({"path": str(path)}, {}, {}), never)
    found = record.flows[0].history
    assert found is not None and found["state"] == "still failing"
    assert found["failingSince"] == {"runId": "old1", "commit": "aaa", "startTime": "s1", "runsAgo": 1}
    check = sqlite3.connect(path)
    try:
        assert check.execute("PRAGMA user_version").fetchone()[0] == HISTORY_SCHEMA
        assert check.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {row[0] for row in check.execute("SELECT name FROM sqlite_master")}
        assert {"alerts", "flows_by_flow", "alerts_by_kind"} <= tables
        assert check.execute("SELECT quarantined, error_summary FROM flows WHERE seq = 1").fetchone() == (0, "boom")
    finally:
        check.close()


def _aside(folder: Path, reason: str) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.startswith(f"h.sqlite.{reason}-") and not
                  p.name.endswith(("-wal", "-shm")))


@pytest.mark.parametrize("reason", ["corrupt", "newer-schema-v99", "unreadable"])
def test_an_unusable_file_is_set_aside_said_once_and_started_fresh(tmp_path: Path, reason: str) -> None:
    config = settings(tmp_path)
    config.path.parent.mkdir()
    if reason == "corrupt":
        config.path.write_bytes(b"this is not a database " * 300)
    elif reason == "unreadable":
        config.path.mkdir()  # root reads any file: a folder in its place is what cannot be opened here
    else:
        db = sqlite3.connect(config.path)
        db.execute("CREATE TABLE future (x)")
        db.execute("PRAGMA user_version = 99")
        db.commit()
        db.close()
    said: list[str] = []
    record = make_record("r1", {"a.yaml": "failed"})
    remember(record, config, said.append)
    [aside] = _aside(config.path.parent, reason)
    assert len(said) == 1 and aside.name in said[0] and "started fresh" in said[0]
    assert record.history is not None and aside.name in record.history["note"] and record.history["runs"] == 0
    assert record.flows[0].history is not None and record.flows[0].history["state"] == "new"
    follow = make_record("r2", {"a.yaml": "failed"})
    remember(follow, config, never)  # the fresh file works, and says nothing more
    assert follow.flows[0].history is not None and follow.flows[0].history["state"] == "still failing"
    assert follow.history is not None and follow.history["note"] == ""


def test_a_file_damaged_inside_is_found_by_the_check_and_set_aside(tmp_path: Path) -> None:
    config = settings(tmp_path)
    for number in range(30):
        remember(make_record(f"r{number}", {f"f{i}.yaml": "passed" for i in range(20)}), config, never)
    data = bytearray(config.path.read_bytes())
    data[4096 * 2:4096 * 4] = b"\xff" * 8192  # pages of the tables, not the header
    config.path.write_bytes(bytes(data))
    said: list[str] = []
    remember(make_record("after", {"a.yaml": "passed"}), config, said.append)
    assert len(said) == 1 and "corrupt" in said[0]
    assert _aside(config.path.parent, "corrupt")
    with History.open(config.path, never) as store:
        assert store.run_count() == 1


def test_a_read_only_user_gets_an_error_not_a_move(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    path.write_bytes(b"garbage" * 1000)
    with pytest.raises(HistoryUnusable, match="corrupt"):
        History.open(path, never, repair=False)
    assert path.read_bytes() == b"garbage" * 1000


def test_history_trouble_never_stops_the_run(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x")
    config = load_history({"path": str(tmp_path / "a-file" / "h.sqlite")}, {}, {})  # its folder cannot be made
    said: list[str] = []
    record = make_record("r1", {"a.yaml": "passed"})
    remember(record, config, said.append)
    assert len(said) == 1 and "history not kept" in said[0] and "a-file" in said[0]
    assert record.history is not None and record.history["note"] == said[0]


def _writer(path: str, prefix: str, count: int) -> None:
    config = load_history({"path": path}, {}, {})
    for number in range(count):
        flows = {f"f{i}.yaml": ("failed" if (number + i) % 3 == 0 else "passed") for i in range(10)}
        remember(make_record(f"{prefix}-{number}", flows), config, never)


def test_two_writer_processes_never_corrupt_the_file_nor_lose_a_run(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_writer, args=(str(path), name, 40)) for name in ("a", "b")]
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=300)
        assert [worker.exitcode for worker in workers] == [0, 0]
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.kill()
                worker.join()
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 80
        assert db.execute("SELECT COUNT(*) FROM flows").fetchone()[0] == 800
        ids = {row[0] for row in db.execute("SELECT run_id FROM runs")}
    finally:
        db.close()
    assert ids == {f"{p}-{n}" for p in "ab" for n in range(40)}


def test_the_summary_of_invoke_history(tmp_path: Path) -> None:
    config = settings(tmp_path, candidate_flaky_rate=0.3)
    for number, (a, b) in enumerate([("passed", "flaky"), ("failed", "passed"), ("failed", "flaky")]):
        remember(make_record(f"r{number}", {"a.yaml": a, "b.yaml": b}, commit=f"{number}" * 10), config, never)
    with History.open(config.path, never) as store:
        summaries = {s.flow: s for s in flow_summaries(store, 20)}
        text = render_summary(config.path, store.run_count(), 20, list(summaries.values()), 0.3)
    assert summaries["a.yaml"].failing_since == {"runId": "r1", "commit": "1" * 10, "startTime": "r1-start",
                                                 "runsAgo": 1}
    assert summaries["b.yaml"].rates["flakyRate"] == pytest.approx(2 / 3, abs=1e-3)
    assert "1111111 (1 run ago)" in text
    assert text.endswith("Quarantine candidates (flaky rate above 30% over the window):\n  b.yaml: flaky 67% of 3 run(s)")


@pytest.mark.parametrize("environ, trigger", [
    ({}, "manual"),
    ({"GITHUB_EVENT_NAME": "workflow_run"}, "deploy"),
    ({"GITHUB_EVENT_NAME": "push"}, "deploy"),
    ({"GITHUB_EVENT_NAME": "schedule"}, "schedule"),
    ({"GITHUB_EVENT_NAME": "workflow_dispatch"}, "manual"),
    ({"GITHUB_EVENT_NAME": "workflow_run", "PRODVAL_TRIGGER": "schedule"}, "schedule"),
    ({"GITHUB_EVENT_NAME": "schedule", "PRODVAL_TRIGGER": "bogus"}, "schedule"),
])
def test_the_trigger_of_a_run(environ: dict[str, str], trigger: str) -> None:
    assert run_trigger(environ) == trigger
    assert job_from_env(environ).trigger == trigger


def test_annotate_leaves_an_old_record_loadable(tmp_path: Path) -> None:
    """Records written before the history (no `history`, no `trigger`) still load; new ones round-trip."""
    record = make_record("r1", {"a.yaml": "passed"})
    data = record.to_json()
    for key in ("history",):
        data.pop(key)
    data["job"].pop("trigger")
    for flow in data["flows"]:
        flow.pop("history")
    old = RunRecord.from_json(data)
    assert old.history is None and old.job.trigger == "" and old.flows[0].history is None
    with History.open(tmp_path / "h.sqlite", never) as store:
        annotate(record, store, settings(tmp_path))
    again = RunRecord.from_json(record.to_json())
    assert again.history == record.history and again.flows[0].history == record.flows[0].history


def test_a_file_found_corrupt_half_way_is_set_aside_once_and_the_run_stored_afresh(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Damage the page check does not see shows up in a query: the run still lands, in a fresh file."""
    import prodval.history as history_module

    config = settings(tmp_path)
    remember(make_record("r1", {"a.yaml": "failed"}), config, never)
    real = history_module.annotate
    calls: list[int] = []

    def annotate_once_broken(record: RunRecord, store: History, values: HistorySettings) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise sqlite3.DatabaseError("database disk image is malformed")
        real(record, store, values)

    monkeypatch.setattr(history_module, "annotate", annotate_once_broken)
    said: list[str] = []
    record = make_record("r2", {"a.yaml": "failed"})
    remember(record, config, said.append)
    assert len(calls) == 2 and len(said) == 1 and "is corrupt (database disk image is malformed)" in said[0]
    assert record.history is not None and record.history["note"] == said[0] and record.history["runs"] == 0
    assert _aside(config.path.parent, "corrupt")
    with History.open(config.path, never) as store:
        assert [r["runId"] for r in store.flow_runs("a.yaml", 5)] == ["r2"]


def test_a_busy_file_is_said_once_and_the_run_goes_on(tmp_path: Path) -> None:
    """Another writer holding the file past the busy timeout: the run is not stored, said once, not raised."""
    config = settings(tmp_path)
    remember(make_record("r1", {"a.yaml": "passed"}), config, never)
    holder = sqlite3.connect(config.path, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        said: list[str] = []
        record = make_record("r2", {"a.yaml": "passed"})
        remember(record, config, said.append, busy_timeout=0.05)
        assert len(said) == 1 and said[0].startswith("history not kept:") and "locked" in said[0]
        assert record.history is not None and record.history["note"] == said[0]
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert not _aside(config.path.parent, "corrupt") and not _aside(config.path.parent, "unreadable")
    with History.open(config.path, never) as store:
        assert store.run_count() == 1


def test_a_version_2_file_gains_the_alerts_table(tmp_path: Path) -> None:
    from prodval.history import MIGRATIONS, _script

    path = tmp_path / "h.sqlite"
    db = sqlite3.connect(path, isolation_level=None)
    _script(db, _SCHEMA_1)
    _script(db, MIGRATIONS[0])
    db.execute("INSERT INTO runs (run_id, verdict) VALUES ('old', 'pass')")
    db.execute("INSERT INTO flows (seq, flow, status, quarantined) VALUES (1, 'a.yaml', 'flaky', 1)")
    db.execute("PRAGMA user_version = 2")
    db.close()
    with History.open(path, never) as store:
        store.record_alert("old", "fail", "slack", "2026-01-01T00:00:00Z")
        assert store.last_alert(["fail"]) == {"runId": "old", "kind": "fail", "channel": "slack",
                                              "at": "2026-01-01T00:00:00Z"}
        assert store.flow_runs("a.yaml", 1)[0]["quarantined"] is True
        assert store.connection.execute("PRAGMA user_version").fetchone()[0] == HISTORY_SCHEMA
