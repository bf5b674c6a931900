"""The run history end to end: `invoke validate` (twice), shards, `merge-results` and `invoke history`, as
subprocesses against the fake adb and maestro, with the history file where the project keeps it."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from conftest import World

FAILURE = "fail:Element not found: Text matching regex: Save"
FIRST_SHA, SECOND_SHA = "a" * 40, "b" * 40


@pytest.fixture
def two_flows(world: World) -> World:
    world.device()
    world.flow("login.yaml")
    world.flow("add-exercise.yaml", commands='- launchApp\n- assertVisible: "Save"\n')
    return world.scenario({"add-exercise.yaml": [FAILURE] * 20})


def history_file(world: World) -> Path:
    return world.root / "build" / "history.sqlite"


def stored_runs(world: World) -> list[str]:
    db = sqlite3.connect(history_file(world))
    try:
        return [row[0] for row in db.execute("SELECT run_id FROM runs ORDER BY seq")]
    finally:
        db.close()


def flow_history(record: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(f for f in record["flows"] if f["flowFileName"] == name)["history"]
    return found


def test_two_runs_tell_new_from_still_failing_and_invoke_history_shows_them(two_flows: World) -> None:
    first = two_flows.invoke("validate", "--retries", "0", INVOKE_NOTIFY_DEPLOYED_SHA=FIRST_SHA,
                             GITHUB_EVENT_NAME="workflow_run")
    assert first.returncode == 1, first.stderr
    one = two_flows.record()
    assert one["job"]["trigger"] == "deploy"
    assert one["history"] == {"path": "build/history.sqlite", "runs": 0, "note": "", "previous": None}
    failing = flow_history(one, "add-exercise.yaml")
    assert failing["state"] == "new" and failing["strip"] == ["failed"]
    assert failing["failingSince"] == {"runId": one["runId"], "commit": FIRST_SHA, "startTime": one["job"]["startTime"],
                                       "runsAgo": 0}
    assert "history" not in first.stderr  # nothing to say about a new file

    second = two_flows.invoke("validate", "--retries", "0", INVOKE_NOTIFY_DEPLOYED_SHA=SECOND_SHA,
                              PRODVAL_TRIGGER="schedule")
    assert second.returncode == 1, second.stderr
    two = two_flows.record()
    assert two["job"]["trigger"] == "schedule" and two["runId"] != one["runId"]
    still = flow_history(two, "add-exercise.yaml")
    assert still["state"] == "still failing" and still["strip"] == ["failed", "failed"] and still["failRate"] == 1.0
    assert still["failingSince"] == {"runId": one["runId"], "commit": FIRST_SHA,
                                     "startTime": one["job"]["startTime"], "runsAgo": 1}
    passing = flow_history(two, "login.yaml")
    assert passing["strip"] == ["passed", "passed"] and passing["state"] == "" and passing["failingSince"] is None
    assert passing["runs"] == 1 and len(passing["durations"]) == 2
    assert two["history"]["runs"] == 1
    assert two["history"]["previous"] == {"runId": one["runId"], "verdict": "fail", "commit": FIRST_SHA,
                                          "trigger": "deploy", "endTime": one["job"]["endTime"]}
    assert stored_runs(two_flows) == [one["runId"], two["runId"]]

    table = two_flows.invoke("history")
    assert table.returncode == 0, table.stderr
    assert "2 run(s) stored" in table.stdout
    row = next(line for line in table.stdout.splitlines() if line.startswith("add-exercise.yaml"))
    assert row.split()[1:5] == ["2", "0%", "0%", "100%"] and f"{FIRST_SHA[:7]} (1 run ago)" in row
    assert "Quarantine candidates" in table.stdout

    data = json.loads(two_flows.invoke("history", "--json").stdout)
    assert data["runs"] == 2 and data["quarantineCandidates"] == []
    by_flow = {f["flow"]: f for f in data["flows"]}
    assert by_flow["add-exercise.yaml"]["failingSince"]["runId"] == one["runId"]
    assert by_flow["login.yaml"]["passRate"] == 1.0 and by_flow["login.yaml"]["p50"] is not None

    runs = json.loads(two_flows.invoke("history", "--flow", "add-exercise.yaml", "--last", "1", "--json").stdout)
    assert [r["runId"] for r in runs["runs"]] == [two["runId"]] and runs["runs"][0]["status"] == "failed"
    assert runs["runs"][0]["errorSummary"].startswith("Element not found")
    text = two_flows.invoke("history", "--flow", "add-exercise")  # the name without .yaml is enough
    assert text.returncode == 0 and text.stdout.count(SECOND_SHA[:7]) == 1 and FIRST_SHA[:7] in text.stdout

    unknown = two_flows.invoke("history", "--flow", "add-exercize.yaml")
    assert unknown.returncode == 2
    assert "no flow 'add-exercize.yaml' in the history" in unknown.stderr and "did you mean 'add-exercise.yaml'" in unknown.stderr
    bad = two_flows.invoke("history", "--last", "0")
    assert bad.returncode == 2 and "--last must be a whole number above 0" in bad.stderr


def test_shards_write_no_history_and_merge_results_writes_the_run_once(two_flows: World) -> None:
    two_flows.flow("third.yaml")
    shards = two_flows.root / "shards"
    for index in (1, 2):
        run = two_flows.invoke("validate", "--shard", f"{index}/2", "--retries", "0", "--results-dir",
                               str(shards / f"shard-{index}"), VALIDATION_RUN_ID="gh-77")
        assert run.returncode in (0, 1), run.stderr
        shard = json.loads((shards / f"shard-{index}" / "results.json").read_text())
        assert shard["history"] is None and all(f["history"] is None for f in shard["flows"])
    assert not history_file(two_flows).exists()

    merged_dir = two_flows.root / "merged"
    for _ in range(2):  # a merge run again (a re-run of the merge job) replaces the run, never adds one
        merge = two_flows.invoke("merge-results", str(shards), "--results-dir", str(merged_dir))
        assert merge.returncode == 1, merge.stderr
    assert stored_runs(two_flows) == ["gh-77"]
    merged = json.loads((merged_dir / "results.json").read_text())
    assert merged["history"]["runs"] == 0 and merged["history"]["previous"] is None
    assert flow_history(merged, "add-exercise.yaml")["state"] == "new"
    assert flow_history(merged, "third.yaml")["strip"] == ["passed"]


def test_a_corrupt_history_is_set_aside_and_the_run_goes_on(two_flows: World) -> None:
    history_file(two_flows).parent.mkdir(parents=True)
    history_file(two_flows).write_bytes(b"not a database at all " * 200)
    two_flows.scenario()
    run = two_flows.invoke("validate")
    assert run.returncode == 0, run.stderr
    [said] = [line for line in run.stderr.splitlines() if "history" in line]  # once
    assert said.startswith("warning: history: build/history.sqlite is corrupt (file is not a database): set aside "
                           "as history.sqlite.corrupt-") and said.endswith("; started fresh")
    record = two_flows.record()
    assert record["verdict"] == "pass" and "started fresh" in record["history"]["note"]
    [aside] = list(history_file(two_flows).parent.glob("history.sqlite.corrupt-*"))
    assert aside.read_bytes() == b"not a database at all " * 200
    assert stored_runs(two_flows) == [record["runId"]]


def test_invoke_history_without_a_file_says_where_and_how(world: World) -> None:
    run = world.invoke("history")
    assert run.returncode == 0, run.stderr
    assert "no run history yet at build/history.sqlite" in run.stdout and "invoke validate" in run.stdout
    data = json.loads(world.invoke("history", "--json", INVOKE_HISTORY_PATH="elsewhere/h.sqlite").stdout)
    assert data["path"] == "elsewhere/h.sqlite" and data["runs"] == 0 and data["flows"] == []


def test_invoke_history_on_a_corrupt_file_is_an_error_and_moves_nothing(world: World) -> None:
    path = world.root / "build" / "history.sqlite"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"junk" * 1000)
    run = world.invoke("history")
    assert run.returncode == 2
    assert "build/history.sqlite is corrupt" in run.stderr and "fix:" in run.stderr
    assert path.read_bytes() == b"junk" * 1000
