"""Stale state never decides a run: another run's build, and a results.json that cannot be read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import World, real_apk
from prodval.results import Attempt, FlowResult, Job, RecordWriter, RunRecord, Stage
from prodval.secrets import Redactor

APP_ID = "com.example.exerciselog"


def _old_build(folder: Path, outcome: str, run_id: str = "local-20250101T000000Z-0ld000") -> None:
    """What a `build-apk` of an earlier run left in the folder."""
    record = RunRecord(runId=run_id, job=Job(jobId="old", startTime="2025-01-01T00:00:00.000Z"))
    record.stages["build"] = Stage(outcome, "2025-01-01T00:00:00.000Z", "2025-01-01T00:05:00.000Z",
                                   "the build failed: compileReleaseKotlin" if outcome == "error" else "")
    if outcome == "pass":
        (folder / "app-production.apk").parent.mkdir(parents=True, exist_ok=True)
        (folder / "app-production.apk").write_bytes(b"not the APK anyone wants to test now")
        record.apk = {"file": "app-production.apk", "packageName": APP_ID, "versionName": "0.1", "versionCode": 1}
    record.verdict = "error" if outcome == "error" else None
    RecordWriter(folder, Redactor()).save(record)


@pytest.fixture
def ready(world: World) -> World:
    world.device().scenario()
    world.flow("login.yaml")
    return world


def test_an_older_runs_failed_build_never_blocks_validate(ready: World, tmp_path: Path) -> None:
    _old_build(ready.results, "error")
    apk = real_apk(tmp_path / "hotfix.apk")
    done = ready.invoke("validate", "--apk", str(apk))
    assert done.returncode == 0, done.stdout + done.stderr
    record = ready.record()
    assert record["verdict"] == "pass" and "build" not in record["stages"]
    assert record["apk"]["sourcePath"].endswith("hotfix.apk")
    assert "the build recorded in" in done.stderr and "is from another run (local-20250101T000000Z-0ld000, error)" in (
        done.stderr)
    # and without --apk: the flows run against the installed app, nothing blocks them
    _old_build(ready.results, "error")
    again = ready.invoke("validate")
    assert again.returncode == 0, again.stdout + again.stderr
    assert [f["status"] for f in ready.record()["flows"]] == ["passed"]


def test_a_failed_build_of_the_same_run_still_stops_validate(ready: World) -> None:
    _old_build(ready.results, "error", run_id="gh-5-1")
    done = ready.invoke("validate", VALIDATION_RUN_ID="gh-5-1")
    assert done.returncode == 2
    assert ready.record()["stages"]["validate"]["error"].startswith("build failed")
    assert ready.maestro_calls() == []


def test_an_older_runs_apk_is_not_installed(ready: World) -> None:
    _old_build(ready.results, "pass")
    done = ready.invoke("validate")
    assert done.returncode == 0, done.stdout + done.stderr
    assert not [argv for argv in ready.adb_calls() if "install" in argv]
    record = ready.record()
    assert record["apk"] is None and "build" not in record["stages"]
    assert "neither its outcome nor its APK is used; pass --apk to test an APK" in done.stderr


CORRUPT = '{"runId": "gh-1-1", "job": {"jobId": "x"'  # cut off mid-write (a full disk, a killed copy)
NEWER = json.dumps({"schemaVersion": 99, "runId": "gh-1-1", "job": {"jobId": "x"}, "flows": [], "fancy": {}})


@pytest.mark.parametrize(("text", "said"), [
    (CORRUPT, "is corrupt (not valid JSON: "),
    (NEWER, "has schema version 99, newer than this prodval reads (1)"),
    ('{"flows": []}', "is not a run record (missing 'runId')"),
])
def test_an_unreadable_record_is_reported_as_what_it_is(ready: World, text: str, said: str) -> None:
    ready.results.mkdir(parents=True)
    path = ready.results / "results.json"
    for task in (("notify",), ("report",)):
        path.write_text(text)
        done = ready.invoke(*task)
        assert done.returncode == 2
        assert f"the run record '{path.relative_to(ready.root)}' {said}" in done.stderr, done.stderr
        assert "no run record" not in done.stderr
    shards = ready.root / "shards" / "shard-1"
    shards.mkdir(parents=True)
    (shards / "results.json").write_text(text)
    merged = ready.invoke("merge-results", str(ready.root / "shards"), "--results-dir", str(ready.root / "m"))
    assert merged.returncode == 2 and said in merged.stderr
    # validate says what it found, then starts a new record (a run must not be blocked by old files)
    path.write_text(text)
    done = ready.invoke("validate")
    assert done.returncode == 0, done.stderr
    assert said in done.stderr and "starting a new run record" in done.stderr
    assert ready.record()["verdict"] == "pass"


def test_notify_previous_that_is_corrupt_is_named(ready: World, tmp_path: Path) -> None:
    record = RunRecord(runId="gh-2-1", job=Job(jobId="y", startTime="2026-01-01T00:00:00.000Z"),
                       flows=[FlowResult("login.yaml", "login", "passed", 0, attempts=[
                           Attempt(1, "passed", 0, 10, "emulator-5554", "2026-01-01T00:00:00.000Z")])])
    record.verdict = "pass"
    RecordWriter(ready.results, Redactor()).save(record)
    previous = tmp_path / "previous.json"
    previous.write_text(CORRUPT)
    done = ready.invoke("notify", "--previous", str(previous), "--dry-run",
                        SLACK_WEBHOOK_URL="http://127.0.0.1:9/hook")
    assert done.returncode == 0, done.stderr
    assert f"--previous: the run record '{previous}' is corrupt (not valid JSON" in done.stderr
