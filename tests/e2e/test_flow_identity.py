"""Every result lands on the flow that produced it, whatever order the queue runs the flows in.

Recorded durations reorder the queue (longest first) and the shards; the record keeps selection order.
These runs put a failing flow at a different position in each, and check every place that names it.
"""

from __future__ import annotations

import html
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from alert_servers import HttpServer, serve_http, slack
from conftest import World

WEBHOOK = "/services/T0/B0/identity"
FAILURE = "fail:Element not found: Text matching regex: Save"


@pytest.fixture
def http() -> Iterator[HttpServer]:
    yield from serve_http()


def _failed_in_junit(folder: Path) -> list[str]:
    suite = ET.parse(folder / "junit.xml").getroot()
    return sorted(case.get("file", "") for case in suite.iter("testcase") if case.find("failure") is not None)


def _check_flow_folders(record: dict[str, Any], folder: Path) -> None:
    """Every artifact of a flow is under its own folder and is that flow's own output."""
    for flow in record["flows"]:
        for attempt in flow["attempts"]:
            assert attempt["artifactPaths"], flow
            key = flow["flowFileName"].replace("%", "%25").replace("/", "%2F")
            own = f"flows/{key}/attempt-{attempt['number']}/"
            for path in attempt["artifactPaths"]:
                assert own in path, (flow["flowFileName"], path)
            if attempt["status"] in ("passed", "failed"):
                report = next(p for p in attempt["artifactPaths"] if p.endswith("report.xml"))
                assert f'file=".maestro/{flow["flowFileName"]}"' in (folder / report).read_text()
            # the fake maestro's own log names the flow file (by base name) and the attempt it counted
            log = next(p for p in attempt["artifactPaths"] if p.endswith("/debug/maestro.log"))
            base = flow["flowFileName"].rsplit("/", 1)[-1]
            assert f"Fake scenario: {base} attempt {attempt['number']} ->" in (folder / log).read_text()


def test_recorded_durations_reordering_the_queue_do_not_move_results(world: World, http: HttpServer) -> None:
    """The issue's repro: c-delete runs first (it took longest last time), b-add is the one that fails."""
    http.script(WEBHOOK, slack)
    world.device()
    for name in ("a-login.yml", "b-add.yml", "c-delete.yml"):
        world.flow(name)
    world.results.mkdir(parents=True)
    (world.results / "timings.json").write_text(json.dumps({"a-login.yml": 10, "b-add.yml": 10, "c-delete.yml": 9000}))
    world.scenario({"b-add.yml": [FAILURE]})
    step_summary = world.root / "step-summary.md"
    run = world.invoke("validate", "--retries", "0", "notify", GITHUB_ACTIONS="true",
                       GITHUB_STEP_SUMMARY=str(step_summary), SLACK_WEBHOOK_URL=http.url(WEBHOOK))
    assert run.returncode == 1, run.stderr
    order = [c["argv"][c["argv"].index("test") + 1].rsplit("/", 1)[1] for c in world.maestro_calls()]
    assert order == ["c-delete.yml", "a-login.yml", "b-add.yml"]  # the queue really was reordered

    record = world.record()
    assert {f["flowFileName"]: f["status"] for f in record["flows"]} == {
        "a-login.yml": "passed", "b-add.yml": "failed", "c-delete.yml": "passed"}
    assert world.flow_result("b-add.yml")["errorSummary"] == "Element not found: Text matching regex: Save"
    _check_flow_folders(record, world.results)
    assert _failed_in_junit(world.results) == ["b-add.yml"]
    errors = [line for line in run.stdout.splitlines() if line.startswith("::error ")]
    assert len(errors) == 1 and "title=b-add.yml failed::" in errors[0], errors
    assert "`b-add.yml` | failed" in step_summary.read_text()
    assert "`c-delete.yml` | passed" in (world.results / "summary.md").read_text()
    [post] = [r.json() for r in http.hits(WEBHOOK)]
    blocks = json.dumps(post["blocks"])
    assert "b-add.yml" in blocks and "c-delete.yml" not in blocks and "a-login.yml" not in blocks
    # durations are kept under the names that produced them
    timings = json.loads((world.results / "timings.json").read_text())
    assert timings == {f["flowFileName"]: f["attempts"][-1]["duration"] for f in record["flows"]}


def test_shards_ordered_by_timings_keep_results_on_their_flows(world: World) -> None:
    world.device()
    names = ["a.yaml", "b.yaml", "c.yaml", "d.yaml"]
    for name in names:
        world.flow(name)
    timings = world.root / "timings.json"
    timings.write_text(json.dumps({"a.yaml": 10, "b.yaml": 9000, "c.yaml": 20, "d.yaml": 8000}))
    world.scenario({"b.yaml": [FAILURE], "c.yaml": [FAILURE]})
    shards = world.root / "shards"
    for index in (1, 2):
        run = world.invoke("validate", "--retries", "0", "--shard", f"{index}/2", "--timings", str(timings),
                           "--results-dir", str(shards / f"shard-{index}"), VALIDATION_RUN_ID="gh-7-1")
        assert run.returncode == 1, run.stderr
        shard = json.loads((shards / f"shard-{index}" / "results.json").read_text())
        assert {f["flowFileName"]: f["status"] for f in shard["flows"]} == {
            f["flowFileName"]: "failed" if f["flowFileName"] in ("b.yaml", "c.yaml") else "passed"
            for f in shard["flows"]}
        _check_flow_folders(shard, shards / f"shard-{index}")
    merged_dir = world.root / "merged"
    run = world.invoke("merge-results", str(shards), "--results-dir", str(merged_dir))
    assert run.returncode == 1, run.stderr
    merged = json.loads((merged_dir / "results.json").read_text())
    assert {f["flowFileName"]: f["status"] for f in merged["flows"]} == {
        "a.yaml": "passed", "b.yaml": "failed", "c.yaml": "failed", "d.yaml": "passed"}
    _check_flow_folders(merged, merged_dir)
    assert _failed_in_junit(merged_dir) == ["b.yaml", "c.yaml"]


def test_every_flow_file_gets_its_own_folder(world: World) -> None:
    """`x.yaml`/`x.yml` and `a/b.yaml`/`a__b.yaml` once shared a folder: one's report.xml classified the other."""
    world.device()
    for name in ("x.yaml", "x.yml", "a/b.yaml", "a__b.yaml"):
        world.flow(name)
    (world.flows / "config.yaml").write_text("flows:\n  - '*'\n  - 'a/*'\n")
    world.scenario({"x.yaml": [FAILURE], "x.yml": ["infra:driver"], "b.yaml": [FAILURE], "a__b.yaml": ["crash"]})
    run = world.invoke("validate", "--retries", "0")
    assert run.returncode == 1, run.stderr
    record = world.record()
    assert {f["flowFileName"]: f["status"] for f in record["flows"]} == {
        "x.yaml": "failed", "x.yml": "error", "a/b.yaml": "failed", "a__b.yaml": "error"}
    folders = {f["flowFileName"]: {p.split("/attempt-")[0] for p in f["artifactPaths"]} for f in record["flows"]}
    assert folders == {"x.yaml": {"flows/x.yaml"}, "x.yml": {"flows/x.yml"}, "a/b.yaml": {"flows/a%2Fb.yaml"},
                       "a__b.yaml": {"flows/a__b.yaml"}}
    _check_flow_folders(record, world.results)
    # the report's links reach those files (a browser decodes %25 back to the % of the folder's name)
    links = re.findall(r'href="(flows/[^"#]+)"', (world.results / "report.html").read_text())
    assert any("a%252Fb.yaml" in link for link in links)
    assert all((world.results / unquote(html.unescape(link))).is_file() for link in links), links
