"""Impact triage's decisions without a device: the decision table, which released APK a glob gives, what
pages, and how the impact reads in the headline, the alerts and summary.md."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import real_apk
from prodval.alerts.message import AlertContext, build_alert
from prodval.alerts.slack import payload
from prodval.errors import ConfigError
from prodval.impact import CURRENT_USERS, NEW_BUILD_ONLY, UNKNOWN, choose_released, decide
from prodval.notify import pages_for, plan
from prodval.outcomes import Status, Verdict
from prodval.results import Attempt, FlowResult, Job, RunRecord, headline, summary_markdown
from prodval.settings import load_notify

APP_ID = "com.example.exerciselog"
CHANNELS = ["slack", "email", "pagerduty", "github-status"]


def attempt(status: str, apk: str = "released", summary: str = "") -> Attempt:
    return Attempt(1, status, 0 if status == Status.PASSED else 1, 1000, "emulator-5554", "2026-01-01T00:00:00Z",
                   summary, apk=apk)


@pytest.mark.parametrize(("rerun", "problem", "impact", "reason"), [
    (None, "validation.released_apk is not set", UNKNOWN, "validation.released_apk is not set"),
    (None, "", UNKNOWN, "not run again with the released app"),
    (attempt(Status.PASSED), "", NEW_BUILD_ONLY, "the released app passes this flow"),
    (attempt(Status.FAILED, summary="Element not found: Pay"), "", CURRENT_USERS,
     "the released app fails too: Element not found: Pay"),
    (attempt(Status.ERROR, summary="device offline"), "", UNKNOWN, "the released app's rerun error: device offline"),
    (attempt(Status.TIMED_OUT, summary="no result after 300s"), "", UNKNOWN,
     "the released app's rerun timed out: no result after 300s"),
])
def test_decision_table(rerun: Attempt | None, problem: str, impact: str, reason: str) -> None:
    assert decide(rerun, problem) == (impact, reason)


def test_a_glob_takes_the_highest_version_code_and_says_which(tmp_path: Path) -> None:
    for code in (3, 12, 7):
        real_apk(tmp_path / f"app-{code}.apk", APP_ID, code, f"1.{code}.0")
    chosen = choose_released(str(tmp_path / "app-*.apk"), APP_ID)
    assert chosen.apk is not None and chosen.apk.version_code == 12  # not the last by name (app-7)
    assert "3 APKs match" in chosen.note and "app-12.apk (versionCode 12, the highest)" in chosen.note
    assert chosen.to_record()["versionName"] == "1.12.0"


def test_a_glob_skips_other_apps_and_files_that_are_not_apks(tmp_path: Path) -> None:
    real_apk(tmp_path / "app-9.apk", "com.example.other", 9)
    real_apk(tmp_path / "app-2.apk", APP_ID, 2)
    (tmp_path / "app-99.apk").write_text("not a zip")
    chosen = choose_released(str(tmp_path / "app-*.apk"), APP_ID)
    assert chosen.apk is not None and chosen.apk.version_code == 2
    assert "is com.example.other, not the new build's com.example.exerciselog" in chosen.note
    assert "app-99.apk" in chosen.note


def test_equal_version_codes_take_the_newest_file(tmp_path: Path) -> None:
    old, new = real_apk(tmp_path / "a.apk", APP_ID, 5), real_apk(tmp_path / "b.apk", APP_ID, 5)
    os.utime(old, (2_000_000_000, 2_000_000_000))
    os.utime(new, (1_000_000_000, 1_000_000_000))
    chosen = choose_released(str(tmp_path / "*.apk"), APP_ID)
    assert chosen.apk is not None and chosen.apk.path.name == "a.apk"


@pytest.mark.parametrize(("pattern", "says"), [
    ("", "validation.released_apk is not set (impact triage is off"),
    ("{tmp}/nothing-*.apk", "matches no file"),
    ("{tmp}/missing.apk", "matches no file"),
    ("{tmp}/other.apk", "other.apk is com.example.other, not the new build's com.example.exerciselog"),
])
def test_no_usable_released_apk_says_why(tmp_path: Path, pattern: str, says: str) -> None:
    real_apk(tmp_path / "other.apk", "com.example.other", 1)
    chosen = choose_released(pattern.format(tmp=tmp_path), APP_ID)
    assert chosen.apk is None and says in chosen.note


def failing_record(*impacts: str, errors: int = 0) -> RunRecord:
    flows = [FlowResult(f"flow-{i}.yaml", f"flow-{i}", Status.FAILED, 1, errorSummary="Element not found",
                        attempts=[attempt(Status.FAILED, "new"), attempt(Status.FAILED, "new"),
                                  attempt(Status.PASSED)], impact=impact)
             for i, impact in enumerate(impacts)]
    flows += [FlowResult(f"error-{i}.yaml", f"error-{i}", Status.ERROR, 1, errorSummary="device offline")
              for i in range(errors)]
    flows.append(FlowResult("ok.yaml", "ok", Status.PASSED, 0))
    record = RunRecord(runId="r1", job=Job(jobId="j"), flows=flows)
    record.verdict = record.decide()
    return record


DEFAULT_PAGE_ON = ("current-users", "unknown")


@pytest.mark.parametrize(("impacts", "errors", "page_on", "pages"), [
    ((CURRENT_USERS,), 0, DEFAULT_PAGE_ON, True),
    ((NEW_BUILD_ONLY,), 0, DEFAULT_PAGE_ON, False),
    ((UNKNOWN,), 0, DEFAULT_PAGE_ON, True),
    (("",), 0, DEFAULT_PAGE_ON, True),  # not triaged (an old record): counts as unknown
    ((NEW_BUILD_ONLY, CURRENT_USERS), 0, DEFAULT_PAGE_ON, True),
    ((NEW_BUILD_ONLY,), 1, DEFAULT_PAGE_ON, True),  # an infrastructure error beside it: impact unknown
    ((UNKNOWN,), 0, ("current-users",), False),
    ((NEW_BUILD_ONLY,), 0, ("new-build-only",), True),
    ((CURRENT_USERS,), 0, (), False),
])
def test_what_pages(impacts: tuple[str, ...], errors: int, page_on: tuple[str, ...], pages: bool) -> None:
    record = failing_record(*impacts, errors=errors)
    assert record.verdict == Verdict.FAIL
    assert pages_for(record, page_on) is pages
    planned = plan(record.verdict, None, "failure", CHANNELS, pages=pages)
    assert ("pagerduty", "fail") in planned if pages else ("pagerduty", "fail") not in planned
    assert {("slack", "fail"), ("email", "fail"), ("github-status", "fail")} <= set(planned)  # the gate fails


def test_an_error_always_pages() -> None:
    record = failing_record(errors=1)
    assert record.verdict == Verdict.ERROR and pages_for(record, ())
    record.verdict = None  # a stage that never finished: notify says `error`
    assert pages_for(record, ())
    record.verdict = Verdict.PASS
    assert not pages_for(record, DEFAULT_PAGE_ON)


def test_page_on_impact_names_known_impacts_only() -> None:
    assert load_notify({"page_on_impact": "current-users"}, {}, {}).page_on_impact == ("current-users",)
    assert load_notify({}, {}, {}).page_on_impact == DEFAULT_PAGE_ON
    with pytest.raises(ConfigError, match=r"notify.page_on_impact names an unknown impact 'current_users' "
                                          r"\(did you mean 'current-users'\?\)"):
        load_notify({"page_on_impact": "current_users"}, {}, {})


def test_the_impact_reads_in_the_headline_the_alert_and_the_summary() -> None:
    record = failing_record(CURRENT_USERS, NEW_BUILD_ONLY, NEW_BUILD_ONLY)
    record.environment.releasedApk = {"path": "released/app-1.apk", "versionName": "1.0.0", "versionCode": 1}
    assert headline(record) == "3 of 4 flows failed against production (1 hits current users, 2 new build only)"
    alert = build_alert(record, "fail", AlertContext())
    assert alert.failed[0].describe() == "flow-0.yaml: failed (2 attempts; impact: current-users): Element not found"
    assert any(f.label == "Released app" and f.value == "1.0.0 (1), released/app-1.apk" for f in alert.facts)
    assert "<!here>" not in str(payload(alert))
    assert payload(replace(alert, here=True))["text"].startswith("<!here> ")
    summary = summary_markdown(record)
    assert "**Impact** (released app: 1.0.0 (1), released/app-1.apk):" in summary
    assert "- `flow-0.yaml`: **current-users**, current users affected: the released app fails too" in summary
    assert "| `flow-0.yaml` | failed | 2 |" in summary  # the new build's attempts, not the released rerun


def test_every_attempt_says_which_apk_ran() -> None:
    record = failing_record(CURRENT_USERS)
    assert [a.apk for a in record.flows[0].attempts] == ["new", "new", "released"]
    assert [a.folder for a in record.flows[0].attempts] == ["attempt-1", "attempt-1", "released-1"]
    loaded = RunRecord.from_json(record.to_json())
    assert loaded.flows[0].impact == CURRENT_USERS and loaded.flows[0].attempts[2].apk == "released"
    old = record.to_json()
    for flow in old["flows"]:
        del flow["impact"], flow["impactReason"]
        for each in flow["attempts"]:
            del each["apk"]
    assert RunRecord.from_json(old).flows[0].impact == ""  # records from before triage still load
