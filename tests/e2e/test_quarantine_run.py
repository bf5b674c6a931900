"""validation.quarantine end to end: `invoke validate` and `invoke lint-flows` as subprocesses against the fakes.

A quarantined flow still runs and is recorded, but its failure neither fails the run (exit 0) nor lands in
`failed-flows`; it is a warning and has its own section in summary.md and report.html. The day after `until`
(UTC) it gates again, and both tasks say so loudly. Dates are relative to today. The history shown beside
it comes from the real history store that `validate` keeps (build/history.sqlite).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from conftest import World
from prodval.settings import utc_today

FAILURE = "fail:Element not found: Text matching regex: Pay"
TODAY = utc_today()


def entries(*items: dict[str, str]) -> str:
    return yaml.safe_dump(list(items))


def entry(flow: str = "checkout.yaml", days: int = 30, **extra: str) -> dict[str, str]:
    return {"flow": flow, "reason": "payment sandbox times out (JIRA-123)", "owner": "@payments",
            "until": (TODAY + timedelta(days=days)).isoformat(), **extra}


@pytest.fixture
def shop(world: World, tmp_path: Path) -> World:
    world.device()
    world.flow("login.yaml")
    world.flow("checkout.yaml", commands='- launchApp\n- tapOn: "Pay"\n')
    world.scenario({"checkout.yaml": [FAILURE]})
    world.extra_env.update({"GITHUB_ACTIONS": "true", "GITHUB_OUTPUT": str(tmp_path / "outputs"),
                            "GITHUB_STEP_SUMMARY": str(tmp_path / "step-summary.md")})
    return world


def outputs(tmp_path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in (tmp_path / "outputs").read_text().splitlines() if "=" in line)


def test_a_failing_quarantined_flow_runs_is_recorded_and_does_not_fail_the_run(shop: World, tmp_path: Path) -> None:
    run = shop.invoke("validate", INVOKE_VALIDATION_QUARANTINE=entries(entry()))
    assert run.returncode == 0, run.stdout + run.stderr
    record = shop.record()
    assert record["verdict"] == "pass"
    held = shop.flow_result("checkout.yaml")
    assert held["status"] == "failed" and len(held["attempts"]) == 2  # it ran, retries included
    assert held["quarantined"] is True
    assert held["quarantine"] == {"reason": "payment sandbox times out (JIRA-123)", "owner": "@payments",
                                  "until": (TODAY + timedelta(days=30)).isoformat()}
    assert shop.flow_result("login.yaml")["quarantined"] is False
    assert len(shop.maestro_calls()) == 3
    # the workflow: nothing failed; the failure is a warning on the flow's file, no error annotation
    assert outputs(tmp_path)["verdict"] == "pass" and outputs(tmp_path)["failed-flows"] == ""
    assert "::error" not in run.stdout
    assert "::warning file=.maestro/checkout.yaml,title=checkout.yaml failed (quarantined)::Element not found" in run.stdout
    assert "1 quarantined flow(s) run but do not gate: checkout.yaml" in run.stdout
    # summary.md shows it apart, and so does the step summary
    summary = (shop.results / "summary.md").read_text()
    assert "**All 1 flows passed against production; 1 quarantined, 1 of them failing**" in summary
    gate, _, section = summary.partition("### Quarantined (they ran, but do not gate the run)")
    assert "`checkout.yaml`" not in gate and "`login.yaml`" in gate
    assert f"| `checkout.yaml` | failed | {(TODAY + timedelta(days=30)).isoformat()} | @payments |" in section
    assert "| 🆕 new · Element not found: Text matching regex: Pay |" in section
    assert "### Quarantined" in (tmp_path / "step-summary.md").read_text()
    # junit: skipped, not a failure (a test report must not go red on a run that passed)
    suite = ET.parse(shop.results / "junit.xml").getroot().find("testsuite")
    assert suite is not None and (suite.get("failures"), suite.get("skipped")) == ("0", "1")
    # report.html: its own section
    page = (shop.results / "report.html").read_text()
    assert page.index('<h2 id="quarantined">') < page.index("<code class=\"file\">checkout.yaml</code>")


def test_an_expired_quarantine_gates_again_and_both_tasks_say_so(shop: World, tmp_path: Path) -> None:
    ended = (TODAY - timedelta(days=1)).isoformat()
    rules = entries(entry(days=-1))
    run = shop.invoke("validate", INVOKE_VALIDATION_QUARANTINE=rules)
    assert run.returncode == 1, run.stdout + run.stderr
    held = shop.flow_result("checkout.yaml")
    assert held["quarantined"] is False and held["quarantine"] is None
    assert outputs(tmp_path)["failed-flows"] == "checkout.yaml"
    loud = next(line for line in run.stdout.splitlines() if line.startswith("::warning title=quarantine of checkout"))
    for said in ("checkout.yaml: its quarantine (owner @payments", f"ended on {ended}", "the flow gates again",
                 "renew it", "remove validation.quarantine entry 1 (flow 'checkout.yaml') from invoke.yaml"):
        assert said in loud, said
    assert "::error file=.maestro/checkout.yaml,title=checkout.yaml failed::" in run.stdout

    lint = shop.invoke("lint-flows", INVOKE_VALIDATION_QUARANTINE=rules)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert f"ended on {ended}" in lint.stdout and "::warning title=quarantine of checkout.yaml expired::" in lint.stdout


def test_the_last_day_still_holds(shop: World) -> None:
    run = shop.invoke("validate", INVOKE_VALIDATION_QUARANTINE=entries(entry(days=0)), INVOKE_VALIDATION_RETRIES="0")
    assert run.returncode == 0, run.stdout + run.stderr
    assert shop.flow_result("checkout.yaml")["quarantined"] is True


def test_lint_flows_names_entries_for_no_flow_and_what_is_held(shop: World) -> None:
    rules = entries(entry(), entry("chekout-v2.yaml"), entry("gone.yaml", days=-3))
    lint = shop.invoke("lint-flows", INVOKE_VALIDATION_QUARANTINE=rules)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    out = lint.stdout
    assert ("::warning title=validation.quarantine::validation.quarantine entry 2 (flow 'chekout-v2.yaml') names no "
            "flow this selection has (did you mean 'checkout.yaml'?)") in out
    assert "entry 3 (flow 'gone.yaml') names no flow" in out and "quarantine of gone.yaml expired" in out
    assert f"quarantined (they run, but do not gate): checkout.yaml until {(TODAY + timedelta(days=30)).isoformat()} " \
           "(@payments)" in out


def test_every_flow_quarantined_passes_and_says_nothing_gates(shop: World, tmp_path: Path) -> None:
    rules = entries(entry(), entry("login.yaml"))
    run = shop.invoke("validate", INVOKE_VALIDATION_QUARANTINE=rules, INVOKE_VALIDATION_RETRIES="0")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "::warning title=nothing gates this run::every selected flow is quarantined" in run.stdout
    assert "No flow gates this run: all 2 flows are quarantined, 1 of them failing" in (
        shop.results / "summary.md").read_text()
    lint = shop.invoke("lint-flows", INVOKE_VALIDATION_QUARANTINE=rules)
    assert "every selected flow is quarantined (checkout.yaml, login.yaml)" in lint.stdout


@pytest.mark.parametrize(("rule", "said"), [
    ({"flow": "checkout.yaml", "reason": "r", "owner": "o"}, "entry 1 (flow 'checkout.yaml'): 'until' is missing"),
    ({"flow": "checkout.yaml", "reason": "r", "owner": "o", "until": "next week"},
     "entry 1 (flow 'checkout.yaml'): 'until' must be a day written YYYY-MM-DD, got 'next week'"),
    ({"flow": "checkout.yaml", "reason": "r", "owner": "o", "util": "2030-01-01"}, "unknown key 'util'"),
])
def test_a_bad_entry_stops_validate_with_exit_2_before_any_flow(shop: World, rule: dict[str, str], said: str) -> None:
    run = shop.invoke("validate", INVOKE_VALIDATION_QUARANTINE=entries(rule))
    assert run.returncode == 2, run.stdout + run.stderr
    assert said in run.stdout and "fix: give every entry flow, reason, owner and until (YYYY-MM-DD)" in run.stdout
    assert shop.maestro_calls() == []
    assert shop.record()["verdict"] == "error"
    lint = shop.invoke("lint-flows", INVOKE_VALIDATION_QUARANTINE=entries(rule))
    assert lint.returncode == 2 and said in lint.stdout


def test_the_history_of_runs_is_shown_in_the_summary_and_report(shop: World) -> None:
    """Three real runs (pass, fail, fail) into the real history store: the third says 'still failing since'
    the second, with its commit, and draws the three outcomes."""
    commits = ["aaaaaaa1111", "bbbbbbb2222", "ccccccc3333"]
    for number, (outcome, commit) in enumerate(zip(["pass", FAILURE, FAILURE], commits, strict=True)):
        shop.scenario({"checkout.yaml": [outcome]})
        (shop.state_dir / "attempts.json").unlink(missing_ok=True)
        run = shop.invoke("validate", GITHUB_SHA=commit, INVOKE_VALIDATION_RETRIES="0")
        assert run.returncode == (0 if number == 0 else 1), run.stdout + run.stderr
    checkout = shop.flow_result("checkout.yaml")["history"]
    assert checkout["strip"] == ["passed", "failed", "failed"] and checkout["state"] == "still failing"
    summary = (shop.results / "summary.md").read_text()
    assert "| still failing since bbbbbbb, 1 run ago · Element not found: Text matching regex: Pay |" in summary
    assert "| `checkout.yaml` | failed |" in summary
    history = summary[summary.index("### History"):]
    row = next(line for line in history.splitlines() if "`checkout.yaml`" in line)
    assert row.startswith("| `checkout.yaml` | 🟩🟥🟥 | 33% | 0% | still failing since bbbbbbb, 1 run ago |"), row
    page = (shop.results / "report.html").read_text()
    assert page.count('<g class="sq st-') == 6  # two flows, three runs each
    assert "<title>this run: failed" in page and "still failing</span> since bbbbbbb, 1 run ago" in page
    json.dumps(checkout)  # plain JSON in the record
