"""validation.quarantine: its entries checked (each error names the entry, what is wrong and the fix), flows
held by an entry in force do not gate (verdict, headline, JUnit, annotations, failed-flows), and an entry stops
holding its flow the day after `until` (dates here are relative to today, UTC)."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from datetime import date, timedelta
from pathlib import Path

import pytest
import yaml
from prodval.console import Console
from prodval.errors import ConfigError
from prodval.flowlint import quarantine_warnings
from prodval.flows import Flow
from prodval.outcomes import Status, Verdict
from prodval.results import (
    Attempt,
    FlowResult,
    Job,
    RecordWriter,
    RunRecord,
    Stage,
    apply_quarantine,
    headline,
    junit_xml,
)
from prodval.secrets import Redactor
from prodval.settings import QuarantineEntry, Settings, load, utc_today
from prodval.stage import announce

TODAY = utc_today()


def entry(flow: str = "checkout.yaml", until: object = None, **extra: object) -> dict[str, object]:
    return {"flow": flow, "reason": "sandbox times out (JIRA-1)", "owner": "@payments",
            "until": (TODAY + timedelta(days=30)).isoformat() if until is None else until, **extra}


def quarantine(*entries: object, origin_env: bool = False) -> tuple[QuarantineEntry, ...]:
    if origin_env:
        return load({}, {}, environ={"INVOKE_VALIDATION_QUARANTINE": yaml.safe_dump(list(entries))}).quarantine
    return load({"quarantine": list(entries)}, {}).quarantine


# --- parsing ---------------------------------------------------------------------------------------------

def test_entries_from_invoke_yaml_and_from_the_environment() -> None:
    assert load({}, {}).quarantine == () == Settings().quarantine
    # invoke.yaml as YAML reads it: an unquoted date is a date
    parsed = yaml.safe_load("quarantine:\n  - {flow: a.yaml, reason: r, owner: '@o', until: 2031-01-02}\n"
                            "  - {flow: sub/b.yaml, reason: r2, owner: me, until: '2031-02-03'}\n")
    first, second = load(parsed, {}).quarantine
    assert first == QuarantineEntry("a.yaml", "r", "@o", date(2031, 1, 2), position=1)
    assert (second.flow, second.until, second.position) == ("sub/b.yaml", date(2031, 2, 3), 2)
    assert first.to_record() == {"reason": "r", "owner": "@o", "until": "2031-01-02"}
    [from_env] = quarantine(entry("x.yaml"), origin_env=True)
    assert from_env.flow == "x.yaml" and from_env.until == TODAY + timedelta(days=30)


@pytest.mark.parametrize(("entries", "message"), [
    ([entry(until=None, owner=None)], r"entry 1 \(flow 'checkout.yaml'\): 'owner' is missing or empty"),
    ([entry(), {"flow": "b.yaml", "reason": "r"}], r"entry 2 \(flow 'b.yaml'\): 'owner' and 'until' are missing"),
    ([{"reason": "r", "owner": "o", "until": "2030-01-01"}], r"entry 1: 'flow' is missing or empty"),
    ([entry(reason="  ")], r"entry 1 \(flow 'checkout.yaml'\): 'reason' is missing or empty"),
    ([entry(until="31/12/2030")], r"'until' must be a day written YYYY-MM-DD, got '31/12/2030'"),
    ([entry(until="2030-02-30")], r"'until' must be a day written YYYY-MM-DD, got '2030-02-30'"),
    ([entry(until="20301231")], r"'until' must be a day written YYYY-MM-DD, got '20301231'"),
    ([entry(until=20301231)], r"'until' must be a day written YYYY-MM-DD, got 20301231"),
    ([entry(ownr="x")], r"entry 1 \(flow 'checkout.yaml'\): unknown key 'ownr' \(did you mean 'owner'\?\)"),
    ([entry(flow=["a.yaml"])], r"entry 1: 'flow' must be text"),
    (["checkout.yaml"], r"entry 1 is not a mapping of flow, reason, owner, until, got 'checkout.yaml'"),
    ([entry(), entry()], r"entries 1 and 2 both name flow 'checkout.yaml'"),
])
def test_a_bad_entry_is_a_config_error_naming_it_and_the_fix(entries: list[object], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        load({"quarantine": entries}, {})
    assert str(caught.value).startswith("validation.quarantine in invoke.yaml")
    assert caught.value.exit_code == 2 and caught.value.fix
    if "both name" not in message:
        assert "flow, reason, owner and until" in caught.value.fix or "mapping" in caught.value.fix


def test_not_a_list_and_bad_environment_text_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"validation.quarantine in invoke.yaml must be a list of entries"):
        load({"quarantine": {"flow": "a.yaml"}}, {})
    with pytest.raises(ConfigError, match=r"validation.quarantine \(INVOKE_VALIDATION_QUARANTINE\) is not valid YAML"):
        load({}, {}, environ={"INVOKE_VALIDATION_QUARANTINE": "[{flow: a.yaml"})
    with pytest.raises(ConfigError, match=r"\(INVOKE_VALIDATION_QUARANTINE\): entry 1 \(flow 'a.yaml'\): 'reason'"):
        load({}, {}, environ={"INVOKE_VALIDATION_QUARANTINE": "[{flow: a.yaml}]"})
    with pytest.raises(ConfigError, match=r"validation.quarantine in invoke.yaml: entry 1 .*'until' must be a day"):
        load({"quarantine": [entry(until="2030-01-01T10:00:00")]}, {})


# --- expiry, by date --------------------------------------------------------------------------------------

def flows(*statuses: str) -> list[FlowResult]:
    return [FlowResult(flowFileName=f"f{n}.yaml", name=f"f{n}", status=status) for n, status in enumerate(statuses)]


@pytest.mark.parametrize(("until", "held"), [(0, True), (1, True), (365, True), (-1, False), (-30, False)])
def test_an_entry_holds_its_flow_through_until_and_not_the_day_after(until: int, held: bool) -> None:
    [rule] = quarantine(entry("f0.yaml", until=(TODAY + timedelta(days=until)).isoformat()))
    [flow, other] = flows(Status.FAILED, Status.PASSED)
    expired = apply_quarantine([flow, other], [rule], TODAY)
    assert flow.quarantined is held and not other.quarantined
    assert flow.quarantine == (rule.to_record() if held else None)
    assert expired == ([] if held else [rule])
    assert rule.expired(TODAY) is not held


def test_the_expiry_warning_names_the_flow_owner_date_and_fix() -> None:
    [rule] = quarantine(entry("f0.yaml", until=(TODAY - timedelta(days=2)).isoformat()))
    text = rule.expiry_warning()
    for part in ("f0.yaml", "@payments", (TODAY - timedelta(days=2)).isoformat(), "gates again",
                 "renew it", "remove validation.quarantine entry 1 (flow 'f0.yaml') from invoke.yaml"):
        assert part in text, part


# --- the verdict and what says it -------------------------------------------------------------------------

def hold(flow: FlowResult, days: int = 30) -> FlowResult:
    flow.quarantined = True
    flow.quarantine = {"reason": "flaky sandbox", "owner": "@payments", "until": (TODAY + timedelta(days)).isoformat()}
    return flow


def record(*flow_list: FlowResult) -> RunRecord:
    run = RunRecord(runId="r1", job=Job(jobId="j"), flows=list(flow_list))
    run.verdict = run.decide()
    return run


def test_quarantined_flows_do_not_count_in_the_verdict() -> None:
    a, b = flows(Status.PASSED, Status.FAILED)
    assert record(a, b).decide() == Verdict.FAIL
    assert record(a, hold(b)).decide() == Verdict.PASS
    for status in (Status.ERROR, Status.TIMED_OUT, Status.NOT_RUN):
        [broken] = flows(status)
        assert record(a, broken).decide() == Verdict.ERROR
        assert record(a, hold(broken)).decide() == Verdict.PASS
    c, d = flows(Status.FAILED, Status.FAILED)
    assert record(c, hold(d)).decide() == Verdict.FAIL  # a gating failure still fails
    assert RunRecord(runId="r", job=Job(jobId="j")).decide() == Verdict.ERROR  # no flow at all: nothing validated


def test_every_flow_quarantined_passes_and_the_headline_says_nothing_gates() -> None:
    a, b = flows(Status.FAILED, Status.PASSED)
    run = record(hold(a), hold(b))
    assert run.verdict == Verdict.PASS
    assert headline(run) == "No flow gates this run: all 2 flows are quarantined, 1 of them failing"


def test_the_headline_counts_the_gating_flows_and_says_the_quarantined_apart() -> None:
    a, b, c = flows(Status.PASSED, Status.FAILED, Status.FAILED)
    assert headline(record(a, b, hold(c))) == ("1 of 2 flows failed against production; "
                                               "1 quarantined, 1 of them failing")
    a, b, c = flows(Status.PASSED, Status.PASSED, Status.FAILED)
    assert headline(record(a, b, hold(c))) == "All 2 flows passed against production; 1 quarantined, 1 of them failing"
    a, b, c = flows(Status.PASSED, Status.PASSED, Status.PASSED)
    assert headline(record(a, b, hold(c))) == "All 2 flows passed against production; 1 quarantined"
    assert headline(record(*flows(Status.PASSED, Status.FAILED))) == "1 of 2 flows failed against production"


def test_junit_writes_a_quarantined_failure_as_skipped_with_its_quarantine() -> None:
    a, b, c = flows(Status.FAILED, Status.FAILED, Status.PASSED)
    b.errorSummary, b.stdout = "Element not found: Pay", "maestro output"
    b.attempts = [Attempt(1, Status.FAILED, 1, 10, "emulator-5554", "t", "Element not found: Pay")]
    suite = ET.fromstring(junit_xml(record(a, hold(b), hold(c)))).find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == ("3", "1", "0", "1")
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    held = cases["f1"]
    assert held.find("failure") is None
    skipped = held.find("skipped")
    assert skipped is not None
    assert skipped.get("message", "").startswith(f"quarantined until {(TODAY + timedelta(30)).isoformat()} (@payments: "
                                                 "flaky sandbox); failed: Element not found: Pay")
    assert held.findtext("system-out") == "maestro output"
    props = {p.get("name"): p.get("value") for p in held.iter("property")}
    assert props["quarantined"] == "true" and props["quarantine.owner"] == "@payments"
    passed = cases["f2"]  # a quarantined flow that passed is a pass, with its quarantine said
    assert passed.find("skipped") is None and {p.get("name") for p in passed.iter("property")} >= {"quarantined"}
    assert cases["f0"].find("failure") is not None


def test_announce_warns_about_a_quarantined_failure_and_leaves_it_out_of_failed_flows(tmp_path: Path) -> None:
    out, outputs = io.StringIO(), tmp_path / "outputs"
    console = Console({"GITHUB_ACTIONS": "true", "GITHUB_OUTPUT": str(outputs)}, out=out)
    a, b, c = flows(Status.FAILED, Status.FAILED, Status.PASSED)
    b.errorSummary = "Element not found: Pay"
    run = record(a, hold(b), c)
    announce(run, console, RecordWriter(tmp_path, Redactor()), {"f1.yaml": ".maestro/f1.yaml"})
    text = out.getvalue()
    assert "failed-flows=f0.yaml\n" in outputs.read_text()
    assert "::error file=f0.yaml,title=f0.yaml failed::" in text
    assert "title=f1.yaml failed::" not in text and text.count("::error") == 1
    warning = next(line for line in text.splitlines() if line.startswith("::warning"))
    assert "file=.maestro/f1.yaml" in warning and "title=f1.yaml failed (quarantined)" in warning
    assert "Element not found: Pay (quarantined until" in warning and "it does not gate the run" in warning
    # every flow quarantined: nothing failed for the workflow
    outputs.unlink()
    announce(record(hold(flows(Status.FAILED)[0])), console, RecordWriter(tmp_path, Redactor()), {})
    assert "failed-flows=\n" in outputs.read_text() and "verdict=pass" in outputs.read_text()


def test_more_than_ten_quarantined_failures_take_ten_warnings(tmp_path: Path) -> None:
    out = io.StringIO()
    console = Console({"GITHUB_ACTIONS": "true"}, out=out)
    run = record(*(hold(f) for f in flows(*[Status.FAILED] * 14)))
    announce(run, console, RecordWriter(tmp_path, Redactor()), {})
    warnings = [line for line in out.getvalue().splitlines() if line.startswith("::warning")]
    assert len(warnings) == 10 and "5 more quarantined flows did not pass" in warnings[-1]


# --- what lint-flows says ------------------------------------------------------------------------------------

def flow(name: str) -> Flow:
    return Flow(path=Path("/x") / name, file_name=name, name=name.removesuffix(".yaml"), app_id="a", tags=())


def test_lint_flows_names_an_entry_that_names_no_selected_flow_and_a_selection_nothing_gates() -> None:
    rules = quarantine(entry("checkuot.yaml"), entry("login.yaml"))
    [unknown] = quarantine_warnings(rules, [flow("checkout.yaml"), flow("login.yaml")], TODAY)
    assert unknown.startswith("validation.quarantine entry 1 (flow 'checkuot.yaml') names no flow this selection has "
                              "(did you mean 'checkout.yaml'?)")
    assert "remove the entry" in unknown
    [everything] = quarantine_warnings(rules[1:], [flow("login.yaml")], TODAY)
    assert everything.startswith("every selected flow is quarantined (login.yaml)")
    expired = quarantine(entry("login.yaml", until=(TODAY - timedelta(days=1)).isoformat()))
    assert quarantine_warnings(expired, [flow("login.yaml")], TODAY) == []  # expired: said apart, and it gates


def test_merge_results_keeps_each_shards_quarantine_and_its_verdict(tmp_path: Path) -> None:
    """Each shard marks its own flows; the merged record is judged with the same rule."""
    from prodval.merge import merge

    paths = []
    for index, flow_list in ((1, [hold(flows(Status.FAILED)[0])]), (2, flows(Status.PASSED, Status.PASSED)[1:])):
        for f in flow_list:
            f.flowFileName = f"s{index}-{f.flowFileName}"
        shard = record(*flow_list)
        shard.shard = {"index": index, "count": 2, "attempt": 1}
        shard.job.startTime = shard.job.endTime = "2026-11-30T06:00:00.000Z"
        shard.stages["validate"] = Stage(shard.verdict or "", "t", "t")
        folder = tmp_path / f"shard-{index}"
        RecordWriter(folder, Redactor()).save(shard)
        paths.append(folder / "results.json")
    merged = merge(paths, tmp_path / "merged", {})
    assert merged.verdict == Verdict.PASS
    [held] = [f for f in merged.flows if f.quarantined]
    assert held.flowFileName == "s1-f0.yaml" and held.quarantine and held.quarantine["owner"] == "@payments"
