"""Who gets paged, and when (review of issues 16 and 17): a scheduled run pages only for a failure that pages
(notify.page_on_impact), a failing streak that worsens to `current-users` pages once, a reminder never
carries `<!here>`, and quarantined flows never decide paging, `<!here>` or the headline's impact counts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prodval.alerts import cadence
from prodval.alerts.cadence import Turn
from prodval.history import History
from prodval.notify import hits_here, pages_for, plan
from prodval.outcomes import Verdict
from prodval.results import Attempt, FlowResult, Job, RunRecord, headline, impact_note
from prodval.settings import IMPACTS

CURRENT_USERS, NEW_BUILD_ONLY, UNKNOWN = IMPACTS
EVERY = ("slack", "email", "pagerduty", "github-status")
PAGE_ON = ("current-users", "unknown")
NOW = datetime(2026, 5, 2, 12, 0, tzinfo=UTC)
DAY = timedelta(hours=24)


def failed(name: str, impact: str, *, quarantined: bool = False) -> FlowResult:
    flow = FlowResult(name, name.removesuffix(".yaml"), "failed", 1, errorSummary="Element not found: Save",
                      attempts=[Attempt(1, "failed", 1, 100, "emulator-5554", "2026-05-01T00:00:00Z", "boom")])
    flow.impact = impact
    if quarantined:
        flow.quarantined = True
        flow.quarantine = {"reason": "flaky", "owner": "@ana", "until": "2099-01-01"}
    return flow


def record(*flows: FlowResult) -> RunRecord:
    run = RunRecord(runId="r1", job=Job(jobId="j"), flows=[*flows, FlowResult("ok.yaml", "ok", "passed", 0)])
    run.verdict = run.decide()
    return run


# ---- 1. a scheduled change that does not page goes to Slack, email and the gate, not PagerDuty -----------

def test_a_scheduled_change_that_does_not_page_leaves_pagerduty_alone() -> None:
    planned = plan(Verdict.FAIL, Verdict.PASS, "failure", EVERY, Turn.CHANGE, pages=False)
    assert ("pagerduty", "fail") not in planned
    assert {("slack", "fail"), ("email", "fail"), ("github-status", "fail")} <= set(planned)
    assert ("pagerduty", "fail") in plan(Verdict.FAIL, Verdict.PASS, "failure", EVERY, Turn.CHANGE, pages=True)
    # a recovery still resolves the incident whatever paged
    assert ("pagerduty", "pass") in plan(Verdict.PASS, Verdict.FAIL, "failure", EVERY, Turn.RECOVERY, pages=False)


# ---- 2. a failing streak that worsens to a failure that pages is a change --------------------------------

@pytest.mark.parametrize(("last_alert", "unpaged", "expected"), [
    (NOW - timedelta(hours=6), True, Turn.CHANGE),  # worsened: pages now, PagerDuty never triggered
    (NOW - timedelta(hours=6), False, Turn.STILL_FAILING),
    (NOW - timedelta(hours=30), True, Turn.CHANGE),  # not a mere reminder: PagerDuty must hear of it
    (NOW - timedelta(hours=30), False, Turn.REMINDER),
])
def test_a_failure_that_now_pages_and_has_not_paged_is_a_change(last_alert: datetime, unpaged: bool,
                                                                 expected: Turn) -> None:
    assert cadence.turn("fail", "fail", last_alert, NOW, DAY, unpaged=unpaged) is expected
    assert cadence.turn("fail", "fail", last_alert, NOW, DAY) is not Turn.CHANGE  # the default: unchanged
    assert cadence.turn("pass", "fail", last_alert, NOW, DAY, unpaged=unpaged) is Turn.RECOVERY


def test_the_console_says_why_a_still_failing_run_pages() -> None:
    line = cadence.explain(Turn.CHANGE, "fail", NOW, DAY)
    assert "still failing, and now it pages" in line and "PagerDuty was not triggered" in line
    assert cadence.explain(Turn.CHANGE, "pass", None, DAY) == "scheduled run: pass -> failing, a change: alerting"


def test_the_history_tells_whether_the_streak_triggered_pagerduty(tmp_path: Path) -> None:
    with History.open(tmp_path / "h.sqlite", lambda text: None) as store:
        assert store.last_alert(cadence.RECORDED_KINDS, channel="pagerduty") is None
        store.record_alert("r0", "pass", "pagerduty", "2026-05-01T00:00:00Z")  # a pass resolved PagerDuty
        store.record_alert("r1", "fail", "slack", "2026-05-01T06:00:00Z")  # new-build-only: Slack only
        store.record_alert("r1", "fail", "email", "2026-05-01T06:00:00Z")
        last = store.last_alert(cadence.RECORDED_KINDS, channel="pagerduty")
        assert last == {"runId": "r0", "kind": "pass", "channel": "pagerduty", "at": "2026-05-01T00:00:00Z"}
        assert not cadence.streak_paged(last)
        assert store.last_alert(cadence.RECORDED_KINDS)["channel"] == "email"  # type: ignore[index]
        assert cadence.streak_alert(store.last_alert(cadence.RECORDED_KINDS)) == datetime(2026, 5, 1, 6, tzinfo=UTC)
        store.record_alert("r2", "fail", "pagerduty", "2026-05-01T12:00:00Z")
        store.record_alert("r3", "reminder", "slack", "2026-05-02T12:00:00Z")
        assert cadence.streak_paged(store.last_alert(cadence.RECORDED_KINDS, channel="pagerduty"))
        assert store.last_alert(["reminder"], channel="pagerduty") is None
        assert store.last_alert([], channel="slack")["kind"] == "reminder"  # type: ignore[index]
        store.record_alert("r4", "recovery", "pagerduty", "2026-05-02T18:00:00Z")
        assert not cadence.streak_paged(store.last_alert(cadence.RECORDED_KINDS, channel="pagerduty"))
    assert not cadence.streak_paged(None)


# ---- 3. `<!here>` only on a run that pages people -----------------------------------------------------------

@pytest.mark.parametrize(("turn", "here"), [
    (None, True), (Turn.CHANGE, True), (Turn.REMINDER, False), (Turn.STILL_FAILING, False)])
def test_only_a_run_that_pages_people_carries_here(turn: Turn | None, here: bool) -> None:
    run = record(failed("pay.yaml", CURRENT_USERS))
    assert hits_here(run, pages_for(run, PAGE_ON), turn) is here
    assert not hits_here(run, False, turn)  # page_on_impact without current-users: no page, no `<!here>`
    assert not hits_here(record(failed("pay.yaml", NEW_BUILD_ONLY), failed("x.yaml", UNKNOWN)), True, turn)


# ---- 4. quarantined flows never decide paging, `<!here>` or the impact counts ------------------------------

def test_a_quarantined_flow_hitting_current_users_does_not_page() -> None:
    run = record(failed("profile.yaml", NEW_BUILD_ONLY), failed("legacy.yaml", CURRENT_USERS, quarantined=True))
    assert run.verdict == Verdict.FAIL  # profile.yaml gates
    assert not pages_for(run, PAGE_ON)
    assert not hits_here(run, True, None)
    assert impact_note(run) == " (1 new build only)"
    assert "current users" not in headline(run)
    assert "1 quarantined, 1 of them failing" in headline(run)
    # the same flow, not quarantined: it pages and counts
    run = record(failed("profile.yaml", NEW_BUILD_ONLY), failed("legacy.yaml", CURRENT_USERS))
    assert pages_for(run, PAGE_ON) and hits_here(run, True, None)
    assert impact_note(run) == " (1 hits current users, 1 new build only)"


def test_an_unknown_quarantined_flow_does_not_page_either() -> None:
    run = record(failed("profile.yaml", NEW_BUILD_ONLY), failed("legacy.yaml", UNKNOWN, quarantined=True))
    assert not pages_for(run, PAGE_ON)
    assert impact_note(run) == " (1 new build only)"
