"""Model-based test of whole runs: random flows, scripts, recorded durations, devices, retries and shards.

Hypothesis generates a run: 1-30 flows, each with a scripted outcome per attempt (pass, assertion
failure, infrastructure error, a hang past the flow timeout, a slow pass), a `timings.json` (names of
flows that no longer exist included), 1-4 devices, 0-2 retries, and 1-3 shards merged back with
`merge-results`. The fake maestro plays each flow's script by its file name, whatever order the queue
runs the flows in. An oracle works out from the script alone what every flow must end as; the real
`invoke validate ... notify` (or the shards, `merge-results` and `notify`) must agree in the record, every
artifact, JUnit, summary.md, the annotations, timings.json and the alert payloads.

Profiles: `ci` (the default: derandomized, few examples, bounded for a 2-core machine) and `fuzz`
(`nox -s fuzz`, or `HYPOTHESIS_PROFILE=fuzz`: many random examples).
"""

from __future__ import annotations

import json
import os
import re
import signal
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from alert_servers import HttpServer, pagerduty, serve_http, slack
from conftest import World, alive
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

settings.register_profile(
    "ci", derandomize=True, max_examples=5, deadline=None, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large])
settings.register_profile(
    "fuzz", max_examples=150, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large])
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")

SERIALS = ("emulator-5554", "emulator-5556", "emulator-5558", "emulator-5560")
WEBHOOK = "/services/T0/B0/model"
ROUTING_KEY = "R0UT1NGKEY0123456789abcdefR0UT1N"
HANG_TIMEOUT = 4.0  # seconds: the flow timeout of a run with a hang; a pass takes well under it even on a loaded runner
MAX_HANGS = 1 if PROFILE == "ci" else 3  # hang attempts per run (each costs HANG_TIMEOUT)
SLOW = 0.2  # seconds a slow pass sleeps

# script word -> (what the fake maestro plays, the attempt status it must be recorded as)
PASS, FAIL, INFRA, HANG, SLOW_PASS = "pass", "fail", "infra", "hang", "slow"
ATTEMPT_STATUS = {PASS: "passed", SLOW_PASS: "passed", FAIL: "failed", INFRA: "error", HANG: "timed_out"}
FAKE_KIND = {PASS: "pass", SLOW_PASS: "sleep", FAIL: "fail", HANG: "hang"}  # infra: infra or crash
INFRA_OUTCOMES = ("infra:driver", "infra:offline", "infra:grpc", "infra:launch", "crash")


@dataclass(frozen=True)
class FlowScript:
    file_name: str
    attempts: tuple[tuple[str, str], ...]  # (script word, fake outcome) per attempt that will run

    @property
    def base(self) -> str:
        return self.file_name.rsplit("/", 1)[-1]

    @property
    def stem(self) -> str:
        """Maestro's default flow name: the file's base name without its extension."""
        return self.base.rsplit(".", 1)[0]

    @property
    def key(self) -> str:
        """The flow's folder under flows/ (docs/run-record.md: results keyed by flow)."""
        return self.file_name.replace("%", "%25").replace("/", "%2F")


@dataclass(frozen=True)
class Run:
    flows: tuple[FlowScript, ...]
    devices: int
    retries: int
    shards: int
    timings: dict[str, int]


def failure_message(flow: str, number: int) -> str:
    return f"Element not found: Text matching regex: {flow} attempt {number}"


@st.composite
def runs(draw: st.DrawFn) -> Run:
    # twins on purpose: x.yaml beside x.yml, sub/x.yaml beside sub__x.yaml (each its own flow and folder)
    files = draw(st.lists(st.tuples(st.sampled_from(("", "", "", "sub/", "sub__")), st.integers(0, 14),
                                    st.sampled_from((".yaml", ".yml"))), min_size=1, max_size=30, unique=True))
    retries = draw(st.integers(0, 2))
    devices = draw(st.integers(1, 4))
    shards = draw(st.integers(1, 3))
    names = [f"{folder}f{i:02d}{suffix}" for folder, i, suffix in files]
    words = st.sampled_from([PASS] * 5 + [FAIL] * 2 + [INFRA] * 2 + [SLOW_PASS] + [HANG])
    hangs = 0
    flows = []
    for name in names:
        planned: list[tuple[str, str]] = []
        for number in range(1, retries + 2):
            word = draw(words)
            if word == HANG and hangs >= MAX_HANGS:
                word = INFRA
            hangs += word == HANG
            outcome = {PASS: "pass", SLOW_PASS: f"sleep:{SLOW}", HANG: "hang",
                       FAIL: "fail:" + failure_message(name, number)}.get(word)
            planned.append((word, outcome or draw(st.sampled_from(INFRA_OUTCOMES))))
            if ATTEMPT_STATUS[word] == "passed":
                break  # no retry after a pass: the rest of the script never plays
        flows.append(FlowScript(name, tuple(planned)))
    known = draw(st.lists(st.sampled_from(names), unique=True))
    ghosts = draw(st.lists(st.sampled_from(["gone.yaml", "renamed.yml", "old/flow.yaml"]), unique=True))
    timings = {name: draw(st.integers(0, 20_000)) for name in known + ghosts}
    return Run(tuple(flows), devices, retries, shards, timings)


def _scripted(name: str, *words: str, infra: str = "infra:driver") -> FlowScript:
    outcomes = {PASS: "pass", SLOW_PASS: f"sleep:{SLOW}", HANG: "hang", INFRA: infra}
    return FlowScript(name, tuple((w, outcomes.get(w) or "fail:" + failure_message(name, n))
                                  for n, w in enumerate(words, 1)))


# The repro (one device; the longest-recorded flow runs first, the middle one fails), its shard
# path (timings put b and d first), flow files that once shared a folder, and every device leaving the
# rotation with flows still queued.
REPRO = Run((_scripted("a-login.yml", PASS), _scripted("b-add.yml", FAIL), _scripted("c-delete.yml", PASS)),
            devices=1, retries=0, shards=1, timings={"a-login.yml": 10, "b-add.yml": 10, "c-delete.yml": 9000})
REPRO_SHARDS = Run((_scripted("a.yaml", PASS), _scripted("b.yaml", FAIL), _scripted("c.yaml", FAIL),
                    _scripted("d.yaml", PASS)), devices=1, retries=0, shards=2,
                   timings={"a.yaml": 10, "b.yaml": 9000, "c.yaml": 20, "d.yaml": 8000})
TWINS = Run((_scripted("f01.yaml", FAIL, FAIL), _scripted("f01.yml", INFRA, PASS), _scripted("sub/f01.yaml", FAIL, PASS),
              _scripted("sub__f01.yaml", PASS)), devices=2, retries=1, shards=1, timings={"sub/f01.yaml": 5000})
ALL_RETIRED = Run(tuple(_scripted(f"r{i}.yaml", INFRA, INFRA, INFRA, infra="infra:offline") for i in range(3)),
                  devices=2, retries=2, shards=1, timings={"gone.yaml": 5})


# -- the oracle: from the script alone --------------------------------------------------------------


def expected_status(attempt_statuses: list[str]) -> str:
    if not attempt_statuses:
        return "not_run"
    last = attempt_statuses[-1]
    if last == "passed":
        return "flaky" if len(attempt_statuses) > 1 else "passed"
    return last


def verdict_of(statuses: list[str], stopped: bool) -> str:
    """fail on any assertion failure; error when anything else did not pass or the run stopped."""
    if "failed" in statuses:
        return "fail"
    if stopped or any(s not in ("passed", "flaky") for s in statuses):
        return "error"
    return "pass"


# -- running it ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def http() -> Iterator[HttpServer]:
    yield from serve_http()


def _setup(world: World, run: Run) -> None:
    for serial in SERIALS[: run.devices]:
        world.device(serial)
    for flow in run.flows:
        world.flow(flow.file_name)
    (world.flows / "config.yaml").write_text("flows:\n  - '*'\n  - 'sub/*'\n")
    # scripted by path: sub/x.yaml and x.yaml are different flows with their own scripts and attempt counts
    world.scenario({f".maestro/{flow.file_name}": [outcome for _, outcome in flow.attempts] for flow in run.flows})


def _invoke(world: World, *args: str, **env: str) -> Any:
    result = world.invoke(*args, timeout=300, **env)
    assert result.returncode in (0, 1, 2), result.stderr
    return result


def _execute(world: World, run: Run, http: HttpServer) -> tuple[Any, Path, list[Path]]:
    """Run it as CI would; the final step's process, the folder of the final record, the shard folders."""
    hang = any(word == HANG for flow in run.flows for word, _ in flow.attempts)
    flags = ["--retries", str(run.retries), "--devices", str(run.devices)]
    if hang:
        flags += ["--flow-timeout", str(HANG_TIMEOUT)]
    alerts = {"SLACK_WEBHOOK_URL": http.url(WEBHOOK), "PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
              "PAGERDUTY_EVENTS_URL": http.url("/v2/enqueue"), "INVOKE_NOTIFY_RETRY_BACKOFF": "0.05",
              "GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(world.root / "step-summary.md")}
    if run.shards == 1:
        world.results.mkdir(parents=True)
        (world.results / "timings.json").write_text(json.dumps(run.timings))
        return _invoke(world, "validate", *flags, "notify", "--on", "always", **alerts), world.results, []
    timings = world.root / "timings-in.json"
    timings.write_text(json.dumps(run.timings))
    folders = [world.root / "shards" / f"shard-{i}" for i in range(1, run.shards + 1)]
    for index, folder in enumerate(folders, 1):
        _invoke(world, "validate", *flags, "--shard", f"{index}/{run.shards}", "--timings", str(timings),
                "--results-dir", str(folder), VALIDATION_RUN_ID="gh-1-1")
    merged = world.root / "merged"
    final = _invoke(world, "merge-results", str(world.root / "shards"), "notify", "--on", "always",
                    INVOKE_VALIDATION_RESULTS_DIR=str(merged), **alerts)
    return final, merged, folders


# -- checks ---------------------------------------------------------------------------------------


def _fake_calls(world: World) -> dict[str, list[str]]:
    """flow file name -> the device of each maestro call for it, in call order (= the fake's attempt count)."""
    calls: dict[str, list[str]] = {}
    flows = world.flows.resolve()
    for call in world.maestro_calls():
        argv = call["argv"]
        name = (Path(call["cwd"]) / argv[argv.index("test") + 1]).resolve().relative_to(flows).as_posix()
        calls.setdefault(name, []).append(argv[argv.index("--device") + 1])
    return calls


def _check_devices(record: dict[str, Any], run: Run, calls: dict[str, list[str]]) -> None:
    """Each attempt on the device that ran it; retries avoid broken devices; a device retires at its
    first two infrastructure errors in a row (docs/validate.md: several devices on one runner)."""
    retired = {r["serial"] for r in record["retiredDevices"]}
    healthy = set(SERIALS[: run.devices]) - retired
    for flow in record["flows"]:
        devices = [a["device"] for a in flow["attempts"]]
        assert devices == calls.get(flow["flowFileName"], []), flow["flowFileName"]  # where it really ran
        if run.devices == 1:
            assert set(devices) <= {SERIALS[0]}
        avoid: set[str] = set()
        for attempt, following in zip(flow["attempts"], flow["attempts"][1:], strict=False):
            if attempt["status"] in ("error", "timed_out"):
                avoid.add(attempt["device"])
            # a retry goes back to a device that broke on it only when every device still in use did
            assert following["device"] not in avoid or healthy <= avoid, flow
    if run.devices > 1:
        per_device: dict[str, list[dict[str, Any]]] = {}
        for attempt in sorted((a for f in record["flows"] for a in f["attempts"]), key=lambda a: a["startTime"]):
            per_device.setdefault(attempt["device"], []).append(attempt)
        for serial, attempts in per_device.items():
            broke = [a["status"] in ("error", "timed_out") for a in attempts]
            twice = [i for i in range(1, len(broke)) if broke[i] and broke[i - 1]]
            assert (serial in retired) == bool(twice), (serial, broke)
            assert not twice or twice[0] == len(broke) - 1, (serial, broke)  # never used again


def _check_artifacts(record: dict[str, Any], folder: Path, flows: dict[str, FlowScript]) -> None:
    for flow in record["flows"]:
        script = flows[flow["flowFileName"]]
        paths: list[str] = []
        for attempt in flow["attempts"]:
            own = f"flows/{script.key}/attempt-{attempt['number']}/"
            assert attempt["artifactPaths"], attempt
            for path in attempt["artifactPaths"]:
                assert own in path and (folder / path).is_file(), (flow["flowFileName"], path)
                assert path.split(own)[0] in ("",) or path.startswith("../shards/shard-"), path
            word = script.attempts[attempt["number"] - 1][0]
            kind = FAKE_KIND.get(word) or script.attempts[attempt["number"] - 1][1].split(":")[0]
            log = next(p for p in attempt["artifactPaths"] if p.endswith(own + "debug/maestro.log"))
            line = f"Fake scenario: {script.base} attempt {attempt['number']} -> {kind}\n"
            assert line in (folder / log).read_text(), (log, line)
            paths += attempt["artifactPaths"]
        assert flow["artifactPaths"] == paths


def _check_record(record: dict[str, Any], run: Run) -> tuple[str, dict[str, str]]:
    """Every flow as the script says; the verdict the oracle gives. Returns (verdict, statuses)."""
    flows = {f.file_name: f for f in run.flows}
    assert sorted(f["flowFileName"] for f in record["flows"]) == sorted(flows)
    stopped = record["stages"]["validate"]["error"]
    statuses: dict[str, str] = {}
    for flow in record["flows"]:
        script = flows[flow["flowFileName"]]
        scripted = [ATTEMPT_STATUS[word] for word, _ in script.attempts]
        seen = [a["status"] for a in flow["attempts"]]
        assert [a["number"] for a in flow["attempts"]] == list(range(1, len(seen) + 1))
        assert seen == scripted[: len(seen)], flow["flowFileName"]
        if len(seen) < len(scripted):  # only when every device left the rotation
            assert "every device left the rotation" in stopped, (flow["flowFileName"], stopped)
        status = expected_status(seen)
        assert flow["status"] == status, flow["flowFileName"]
        statuses[flow["flowFileName"]] = status
        last = flow["attempts"][-1] if flow["attempts"] else None
        if status == "failed":
            assert flow["errorSummary"] == failure_message(script.file_name, len(seen))
            assert f"[Failed] {script.stem} (" in flow["stdout"]
        elif status in ("passed", "flaky"):
            assert f"[Passed] {script.stem} (" in flow["stdout"]
            assert last is not None and last["exitCode"] == 0
        elif status == "timed_out":
            assert flow["errorSummary"].startswith(f"no result after {HANG_TIMEOUT:g}s")
        if status == "flaky":
            assert flow["errorSummary"] == flow["attempts"][0]["errorSummary"]
        assert flow["device"] == (last["device"] if last else "")
        assert flow["duration"] == sum(a["duration"] for a in flow["attempts"])
    if stopped:  # nothing but every device leaving the rotation may stop a run of this model
        assert "every device left the rotation" in stopped, stopped
    verdict = verdict_of(list(statuses.values()), bool(stopped))
    assert record["verdict"] == verdict
    return verdict, statuses


def _check_outputs(folder: Path, statuses: dict[str, str], verdict: str, final: Any) -> None:
    broken = sorted(n for n, s in statuses.items() if s not in ("passed", "flaky"))
    failed = sorted(n for n, s in statuses.items() if s == "failed")
    # JUnit
    cases = {c.get("file"): c for c in ET.parse(folder / "junit.xml").getroot().iter("testcase")}
    assert sorted(cases) == sorted(statuses)
    for name, status in statuses.items():
        case = cases[name]
        assert (case.find("failure") is not None) == (status == "failed"), name
        assert (case.find("error") is not None) == (status in ("error", "timed_out")), name
        assert (case.find("skipped") is not None) == (status == "not_run"), name
        flaky = any(p.get("name") == "flaky" for p in case.iter("property"))
        assert flaky == (status == "flaky"), name
    # summary.md: one row per flow, with its status
    summary = (folder / "summary.md").read_text()
    for name, status in statuses.items():
        assert f"| `{name}` | {status} |" in summary, name
    # annotations: the failed flows (or, when none failed, the broken ones), each named once
    shown = failed or broken
    named = re.findall(r"^::error file=[^,]*,title=(\S+) (?:failed|error|timed_out|not_run)::", final.stdout, re.M)
    named += re.findall(r"^error: (\S+) (?:failed|error|timed_out|not_run): ", final.stderr, re.M)
    more = re.findall(r"^::error title=more failed flows::\d+ more flows: (.*)$", final.stdout, re.M)
    more += re.findall(r"^error: more failed flows: \d+ more flows: (.*)$", final.stderr, re.M)
    named += [n for line in more for n in line.split(", ")]
    not_run = re.findall(r"^::error title=\d+ flows? not run[^:]*::(.*)$", final.stdout, re.M)  # one a reason
    named += [n for line in not_run for n in line.split(", ")]
    assert sorted(named) == shown
    assert f"Verdict: {verdict.upper()}" in final.stdout


def _check_timings(folder: Path, record: dict[str, Any], before: dict[str, int]) -> None:
    expected = dict(before)
    for flow in record["flows"]:
        if flow["attempts"] and flow["status"] not in ("timed_out", "not_run"):
            expected[flow["flowFileName"]] = flow["attempts"][-1]["duration"]
    path = folder / "timings.json"
    assert (json.loads(path.read_text()) if expected or path.exists() else {}) == expected


def _check_alerts(http: HttpServer, seen: int, statuses: dict[str, str], verdict: str) -> None:
    broken = sorted(n for n, s in statuses.items() if s in ("failed", "error", "timed_out"))
    flaky = sorted(n for n, s in statuses.items() if s == "flaky")
    new = http.requests[seen:]
    [post] = [r.json() for r in new if r.path == WEBHOOK]
    [event] = [r.json() for r in new if r.path == "/v2/enqueue"]
    if verdict == "pass":
        assert event["event_action"] == "resolve"
    else:
        details = event["payload"]["custom_details"]
        assert sorted(line.split(": ")[0] for line in details.get("failed_flows", [])) == broken
        assert sorted(line.split(": ")[0] for line in details.get("flaky_flows", [])) == flaky
    # Slack lists as many as fit (then "...and N more"): only broken flows under "Failed flows"
    failed_section = [b["text"]["text"] for b in post["blocks"] if b.get("text", {}).get("text", "").startswith(
        "*Failed flows*")]
    in_failed = re.findall(r"• `([^`]+)`", "\n".join(failed_section))
    assert set(in_failed) <= set(broken)
    hidden = sum(int(n) for n in re.findall(r"\.\.\.and (\d+) more", "\n".join(failed_section)))
    assert len(in_failed) + hidden == len(broken)


@pytest.mark.parametrize("run", [REPRO, REPRO_SHARDS, TWINS, ALL_RETIRED],
                         ids=["repro", "repro-shards", "twins", "all-retired"])
def test_every_result_is_on_the_flow_that_produced_it_in_the_known_runs(run: Run, http: HttpServer,
                                                                       tmp_path: Path) -> None:
    """The issue's repros and the hard cases, each its own test (so pytest-xdist spreads them)."""
    check_run(run, http, tmp_path)


@settings(parent=settings.get_profile(PROFILE))
@given(run=runs())
def test_every_result_is_on_the_flow_that_produced_it(run: Run, http: HttpServer, tmp_path: Path) -> None:
    check_run(run, http, tmp_path)


def check_run(run: Run, http: HttpServer, tmp_path: Path) -> None:
    """Run `run` on the fakes and check everything the oracle derives from its scripts alone."""
    http.script(WEBHOOK, slack)
    http.script("/v2/enqueue", pagerduty)
    with tempfile.TemporaryDirectory(dir=tmp_path) as scratch:
        world = World(Path(scratch))
        try:
            _setup(world, run)
            seen = len(http.requests)
            final, folder, shard_folders = _execute(world, run, http)
            record = json.loads((folder / "results.json").read_text())
            verdict, statuses = _check_record(record, run)
            assert final.returncode == {"pass": 0, "fail": 1, "error": 2}[verdict], final.stderr
            flows = {f.file_name: f for f in run.flows}
            _check_artifacts(record, folder, flows)
            calls = _fake_calls(world)
            for part in [json.loads((s / "results.json").read_text()) for s in shard_folders] or [record]:
                _check_devices(part, run, calls)
            _check_outputs(folder, statuses, verdict, final)
            _check_alerts(http, seen, statuses, verdict)
            if shard_folders:
                for shard in shard_folders:
                    part = json.loads((shard / "results.json").read_text())
                    _check_artifacts(part, shard, flows)
                    _check_timings(shard, part, {})
                _check_timings(folder, record, {})
            else:
                _check_timings(folder, record, run.timings)
        finally:
            for pid in world.hung_pids():
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)
