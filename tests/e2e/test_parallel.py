"""Flows across several devices from one queue, shards across runners, and merging shard records."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from conftest import World
from prodval.flows import Flow
from prodval.schedule import longest_first, shard, shard_loads

SERIALS = ("emulator-5554", "emulator-5556", "emulator-5558", "emulator-5560")


def _flow(name: str) -> Flow:
    return Flow(path=Path(name), file_name=name, name=name, app_id="com.example.exerciselog")


# -- planning (pure) ------------------------------------------------------------------------------


def test_shards_without_durations_have_equal_counts_and_cover_everything() -> None:
    flows = [_flow(f"f{i:02}.yaml") for i in range(11)]
    shares = [shard(flows, {}, i, 3) for i in (1, 2, 3)]
    assert sorted(len(s) for s in shares) == [3, 4, 4]
    assert sorted(f.file_name for s in shares for f in s) == [f.file_name for f in flows]
    assert shares == [shard(list(reversed(flows)), {}, i, 3) for i in (1, 2, 3)]  # order of input is irrelevant


def test_shards_with_durations_are_balanced() -> None:
    durations = [120, 95, 90, 80, 64, 60, 45, 40, 33, 30, 22, 20, 15, 12, 9, 7, 5, 3]
    flows = [_flow(f"f{i:02}.yaml") for i in range(len(durations))]
    timings = {f.file_name: d * 1000 for f, d in zip(flows, durations, strict=True)}
    loads = shard_loads(flows, timings, 4)
    ideal = sum(durations) * 1000 / 4
    assert max(loads) <= ideal * 1.10


def test_unknown_flows_count_as_the_mean_and_longest_go_first() -> None:
    flows = [_flow(n) for n in ("a.yaml", "b.yaml", "c.yaml", "new.yaml")]
    ordered = longest_first(flows, {"a.yaml": 100, "b.yaml": 5000, "c.yaml": 300})
    assert [f.file_name for f in ordered] == ["b.yaml", "new.yaml", "c.yaml", "a.yaml"]
    assert longest_first(flows, {}) == flows


# -- several devices on one runner ----------------------------------------------------------------


@pytest.fixture
def farm(world: World) -> World:
    for serial in SERIALS:
        world.device(serial)
    for i in range(8):
        world.flow(f"flow-{i}.yaml")
    world.scenario(default="sleep:0.3")
    return world


def test_one_queue_feeds_every_device(farm: World) -> None:
    run = farm.invoke("validate", "--devices", "4")
    assert run.returncode == 0, run.stderr
    record = farm.record()
    assert record["devices"] == list(SERIALS)
    per_device = Counter(f["device"] for f in record["flows"])
    assert set(per_device) == set(SERIALS)
    assert all(f["status"] == "passed" and len(f["attempts"]) == 1 for f in record["flows"])
    # each flow is still its own maestro process, on the device the record names
    calls = {c["argv"][c["argv"].index("test") + 1].rsplit("/", 1)[1]: c["argv"][c["argv"].index("--device") + 1]
             for c in farm.maestro_calls()}
    assert calls == {f["flowFileName"]: f["device"] for f in record["flows"]}
    # whole folds, not interleaved lines
    assert run.stdout.count("--- flow-") == 8


def test_devices_listed_explicitly(farm: World) -> None:
    run = farm.invoke("validate", "--device", "emulator-5556,emulator-5560")
    assert run.returncode == 0, run.stderr
    assert {f["device"] for f in farm.record()["flows"]} == {"emulator-5556", "emulator-5560"}


def test_not_enough_devices(farm: World) -> None:
    run = farm.invoke("validate", "--devices", "5")
    assert run.returncode == 2
    assert "4 of 5 booted device(s) connected, and no emulator can be booted here" in run.stderr


def test_longest_flows_start_first_from_recorded_timings(world: World) -> None:
    world.device()
    for name in ("a.yaml", "b.yaml", "c.yaml"):
        world.flow(name)
    timings = world.root / "old-results.json"
    timings.write_text(json.dumps({"flows": [
        {"flowFileName": n, "status": "passed", "attempts": [{"duration": d}]}
        for n, d in (("a.yaml", 100), ("b.yaml", 5000), ("c.yaml", 300))
    ]}))
    run = world.scenario().invoke("validate", "--timings", str(timings))
    assert run.returncode == 0, run.stderr
    order = [c["argv"][c["argv"].index("test") + 1].rsplit("/", 1)[1] for c in world.maestro_calls()]
    assert order == ["b.yaml", "c.yaml", "a.yaml"]
    # this run's durations are kept for the next one, even though the next chain starts a new record
    assert set(json.loads((world.results / "timings.json").read_text())) == {"a.yaml", "b.yaml", "c.yaml"}


def test_infrastructure_error_is_retried_on_another_device(world: World) -> None:
    world.device("emulator-5554").device("emulator-5556")
    world.flow("login.yaml")
    run = world.scenario({"login.yaml": ["infra:driver", "pass"]}).invoke("validate", "--devices", "2")
    assert run.returncode == 0, run.stderr
    flow = world.flow_result("login.yaml")
    assert flow["status"] == "flaky"
    first, second = flow["attempts"]
    assert first["status"] == "error" and second["status"] == "passed"
    assert first["device"] != second["device"]


def test_a_device_that_keeps_breaking_leaves_the_rotation(world: World) -> None:
    # it drops off after its first flow (after the run picked it): on an event, whatever the machine's load
    world.device("emulator-5554").device("emulator-5556", offline_after_runs=1)
    for i in range(8):
        world.flow(f"flow-{i}.yaml")
    world.scenario(default="sleep:1.5")
    proc = world.start("validate", "--devices", "2", "--retries", "2")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    record = world.record()
    assert record["retiredDevices"] == [{"serial": "emulator-5556", "reason": "2 infrastructure errors in a row"}]
    assert all(f["status"] in ("passed", "flaky") for f in record["flows"])
    broken = [a for f in record["flows"] for a in f["attempts"] if a["status"] == "error"]
    assert broken and {a["device"] for a in broken} == {"emulator-5556"}
    assert "emulator-5556 leaves the rotation" in err
    assert "Left the rotation</dt><dd>emulator-5556: 2 infrastructure errors in a row" in (
        world.results / "report.html").read_text()


# -- shards across runners, merged --------------------------------------------------------------


@pytest.fixture
def sharded(world: World) -> World:
    world.device()
    for i in range(5):
        world.flow(f"flow-{i}.yaml")
    return world


def _run_shards(world: World, count: int, run_id: str = "gh-42-1", **env: str) -> list[Path]:
    folders = []
    for index in range(1, count + 1):
        folder = world.root / "shards" / f"shard-{index}"
        world.invoke("validate", "--shard", f"{index}/{count}", "--results-dir", str(folder),
                     VALIDATION_RUN_ID=run_id, **env)
        folders.append(folder)
    return folders


def test_shards_split_the_flows_and_merge_into_one_verdict(sharded: World) -> None:
    sharded.scenario({"flow-3.yaml": ["fail:Element not found: Save"]})
    folders = _run_shards(sharded, 2)
    names = [[f["flowFileName"] for f in json.loads((d / "results.json").read_text())["flows"]] for d in folders]
    assert sorted(names[0] + names[1]) == [f"flow-{i}.yaml" for i in range(5)]
    assert sorted(len(n) for n in names) == [2, 3]
    assert json.loads((folders[0] / "results.json").read_text())["shard"] == {"index": 1, "count": 2, "attempt": 1}

    merged_dir = sharded.root / "merged"
    run = sharded.invoke("merge-results", str(sharded.root / "shards"), "--results-dir", str(merged_dir))
    assert run.returncode == 1, run.stderr
    merged = json.loads((merged_dir / "results.json").read_text())
    assert merged["verdict"] == "fail" and merged["runId"] == "gh-42-1"
    assert [f["flowFileName"] for f in merged["flows"]] == [f"flow-{i}.yaml" for i in range(5)]
    for flow in merged["flows"]:
        for path in flow["artifactPaths"]:
            assert (merged_dir / path).is_file(), path
    job_paths = merged["job"]["artifactPaths"]
    assert all((merged_dir / path).exists() for path in job_paths), job_paths
    assert {"../shards/shard-1/results.json", "../shards/shard-2/results.json"} <= set(job_paths)
    assert "1 of 5 flows failed against production" in (merged_dir / "summary.md").read_text()
    assert (merged_dir / "junit.xml").read_text().count("<testcase") == 5


def test_same_inputs_give_the_same_shards(sharded: World) -> None:
    first = [json.loads((d / "results.json").read_text())["flows"] for d in _run_shards(sharded, 3)]
    again = [json.loads((d / "results.json").read_text())["flows"] for d in _run_shards(sharded, 3)]
    assert [[f["flowFileName"] for f in s] for s in first] == [[f["flowFileName"] for f in s] for s in again]


def test_merge_refuses_records_of_different_runs(sharded: World) -> None:
    _run_shards(sharded, 2)
    other = sharded.root / "shards" / "shard-2"
    sharded.invoke("validate", "--shard", "2/2", "--results-dir", str(other), VALIDATION_RUN_ID="gh-43-1")
    run = sharded.invoke("merge-results", str(sharded.root / "shards"), "--results-dir", str(sharded.root / "m"))
    assert run.returncode == 2
    assert "belong to different runs" in run.stderr


def test_a_missing_shard_makes_the_merged_verdict_an_error(sharded: World) -> None:
    folders = _run_shards(sharded, 3)
    for path in folders[2].iterdir():
        if path.is_file():
            path.unlink()
    run = sharded.invoke("merge-results", str(sharded.root / "shards"), "--results-dir", str(sharded.root / "m"))
    assert run.returncode == 2
    merged = json.loads((sharded.root / "m" / "results.json").read_text())
    assert merged["verdict"] == "error"
    assert "shard 3/3 is missing" in merged["stages"]["validate"]["error"]


def test_a_re_run_shard_replaces_its_first_attempt(sharded: World) -> None:
    """"Re-run failed jobs": the failed shard runs again as attempt 2 beside attempt 1's records; the merge
    keeps the newest attempt of each shard, so the old failure neither decides the verdict nor alerts again."""
    sharded.scenario({"flow-3.yaml": ["fail:Element not found: Save"]})
    for index in (1, 2):  # as GitHub runs them: the run's id and attempt, no VALIDATION_RUN_ID
        sharded.invoke("validate", "--shard", f"{index}/2", "--results-dir", str(sharded.root / "shards" / f"shard-{index}"),
                       GITHUB_RUN_ID="42", GITHUB_RUN_ATTEMPT="1")
    failing = next(i for i in (1, 2) if "flow-3.yaml" in (sharded.root / "shards" / f"shard-{i}" / "results.json").read_text())
    sharded.scenario()  # production recovered
    rerun = sharded.root / "shards" / f"shard-{failing}-attempt-2"
    sharded.invoke("validate", "--shard", f"{failing}/2", "--results-dir", str(rerun), GITHUB_RUN_ID="42",
                   GITHUB_RUN_ATTEMPT="2")
    assert json.loads((rerun / "results.json").read_text())["shard"]["attempt"] == 2
    run = sharded.invoke("merge-results", str(sharded.root / "shards"), "--results-dir", str(sharded.root / "m"))
    assert run.returncode == 0, run.stderr
    merged = json.loads((sharded.root / "m" / "results.json").read_text())
    assert merged["verdict"] == "pass" and len(merged["flows"]) == 5
    # two records of one attempt for one shard are still a mistake
    twice = sharded.root / "shards" / "copy"
    sharded.invoke("validate", "--shard", f"{failing}/2", "--results-dir", str(twice), GITHUB_RUN_ID="42",
                   GITHUB_RUN_ATTEMPT="2")
    again = sharded.invoke("merge-results", str(sharded.root / "shards"), "--results-dir", str(sharded.root / "m2"))
    assert again.returncode == 2 and "appears twice" in again.stderr


@pytest.mark.parametrize("shards", ["missing", "empty"])
def test_no_shard_record_is_an_error_record_and_notify_still_runs(world: World, shards: str) -> None:
    folder = world.root / "shards"
    if shards == "empty":
        folder.mkdir()
    run = world.invoke("merge-results", str(folder), "notify", "--dry-run",
                       INVOKE_NOTIFY_DEPLOYED_SHA="c" * 40, SLACK_WEBHOOK_URL="https://hooks.slack.test/services/T/B/x")
    assert run.returncode == 2, run.stdout + run.stderr
    record = world.record()
    assert record["verdict"] == "error" and record["flows"] == []
    assert "no run record to merge" in record["stages"]["validate"]["error"]
    assert record["job"]["commit"] == "c" * 40
    assert "chain: `merge-results` exited with code 2; going on" in run.stderr
    assert "slack" in run.stdout + run.stderr  # notify ran and planned the error alert


def test_bad_shard_value(sharded: World) -> None:
    run = sharded.invoke("validate", "--shard", "3/2")
    assert run.returncode == 2 and "validation.shard must be I/N" in run.stderr


# -- bounded memory -------------------------------------------------------------------------------


def test_large_output_streams_to_disk_and_the_record_keeps_head_and_tail(world: World) -> None:
    world.device()
    world.flow("chatty.yaml")
    run = world.scenario({"chatty.yaml": ["spam:3000000"]}).invoke("validate")
    assert run.returncode == 0, run.stderr
    flow = world.flow_result("chatty.yaml")
    assert (world.results / "flows/chatty.yaml/attempt-1/stdout.log").stat().st_size > 3_000_000
    assert len(flow["stdout"]) < 100_000
    assert "bytes cut; the whole stream is in stdout.log" in flow["stdout"]
    assert flow["stdout"].rstrip().endswith("1/1 Flow Passed in 0s")
