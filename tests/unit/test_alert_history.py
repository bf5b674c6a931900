"""Alerts with the run history (issue 16): headlines that tell new failures from old ones, flow lines with
`new` / `still failing since` / `slow`, quarantined flows apart, and when a scheduled run speaks (the
decision table of alerts/cadence.py, with the clock passed in)."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prodval.alerts import RetryPolicy, cadence, pagerduty, slack
from prodval.alerts.cadence import Turn
from prodval.alerts.message import AlertContext, build_alert, history_note, masked, text_body
from prodval.console import Console
from prodval.errors import NotifyError
from prodval.notify import clock, find_previous, plan
from prodval.results import Attempt, FlowResult, Job, RecordWriter, RunRecord, headline
from prodval.secrets import Redactor
from prodval.settings import load_notify

EVERY = ("slack", "email", "pagerduty", "github-status")
SHA_A = "abc1234def5678abc1234def5678abc1234def56"
SHA_B = "bbb2222def5678abc1234def5678abc1234def56"


def since(commit: str, runs_ago: int) -> dict[str, Any]:
    return {"runId": f"run-{runs_ago}", "commit": commit, "startTime": "2026-05-01T02:00:00Z", "runsAgo": runs_ago}


def flow(name: str, status: str, *, state: str = "", failing_since: dict[str, Any] | None = None,
         slow: bool = False, history: bool = True) -> FlowResult:
    attempts = [Attempt(1, status if status != "flaky" else "failed", 1, 1000, "emulator-5554",
                        "2026-05-01T02:00:00Z", "boom")]
    result = FlowResult(name, name.removesuffix(".yaml"), status, 1, duration=1000, attempts=attempts,
                        errorSummary="" if status == "passed" else "Element not found: Save")
    if history:
        result.history = {"strip": [status], "runs": 3, "passRate": 0.5, "flakyRate": 0.0, "failRate": 0.5,
                          "failingSince": failing_since, "state": state, "p50": 900, "p95": 950, "slow": slow,
                          "durations": [900, 950, 1000]}
    return result


def run(*flows: FlowResult, verdict: str = "fail", trigger: str = "", stored: int = 5) -> RunRecord:
    """A record; with flows that have history, the run's own `history` says `stored` runs came before."""
    record = RunRecord(runId="r-9", job=Job(jobId="9/validate", commit=SHA_B, trigger=trigger), flows=list(flows))
    record.verdict = verdict
    if any(f.history for f in flows):
        record.history = {"path": "h.sqlite", "runs": stored, "note": "", "previous": None}
    return record


def passing(n: int) -> list[FlowResult]:
    return [flow(f"ok-{i}.yaml", "passed") for i in range(n)]


# ---- headlines and flow lines ----------------------------------------------------------------------------

def test_new_failures_are_told_apart_in_the_headline() -> None:
    record = run(flow("a.yaml", "failed", state="new", failing_since=since(SHA_B, 0)),
                 flow("b.yaml", "failed", state="new", failing_since=since(SHA_B, 0)), *passing(7))
    alert = build_alert(record, "fail", AlertContext())
    assert alert.headline == "2 new failures: 2 of 9 flows failed against production"
    assert [line.detail() for line in alert.failed] == ["failed (1 attempt), new: Element not found: Save"] * 2


def test_old_failures_say_since_which_commit_and_how_many_runs() -> None:
    record = run(flow("a.yaml", "failed", state="still failing", failing_since=since(SHA_A, 2)), *passing(8))
    alert = build_alert(record, "fail", AlertContext())
    assert alert.headline == "1 still failing since abc1234 (3 runs): 1 of 9 flows failed against production"
    [line] = alert.failed
    assert line.detail() == "failed (1 attempt), still failing since abc1234 (3 runs): Element not found: Save"
    assert "a.yaml: failed (1 attempt), still failing since abc1234 (3 runs)" in text_body(alert)


def test_mixed_new_and_old_failures_and_several_streaks() -> None:
    record = run(flow("a.yaml", "failed", state="still failing", failing_since=since(SHA_A, 4)),
                 flow("b.yaml", "failed", state="still failing", failing_since=since(SHA_B, 1)),
                 flow("c.yaml", "failed", state="new", failing_since=since(SHA_B, 0)),
                 flow("d.yaml", "timed_out", state="new", failing_since=since(SHA_B, 0)), *passing(3),
                 verdict="fail")
    alert = build_alert(record, "fail", AlertContext())
    # the `fail` headline counts assertion failures: its history note speaks of the same three flows
    assert alert.headline == ("1 new failure; 2 still failing, the oldest since abc1234 (5 runs): "
                              "3 of 7 flows failed against production")
    assert alert.failed[-1].detail().startswith("timed out (1 attempt), new")  # the line still says it
    # an error run keeps its own headline; the history of every broken flow follows it
    error = build_alert(record, "error", AlertContext())
    assert error.headline == (f"{headline(record, 'error')} (2 new failures; 2 still failing, the oldest since "
                              "abc1234 (5 runs))")


def test_a_history_with_no_earlier_run_claims_nothing_new() -> None:
    """A fresh history (the first run, or the cache evicted) calls every failure new: it cannot know."""
    record = run(flow("a.yaml", "failed", state="new", failing_since=since(SHA_B, 0)), *passing(2), stored=0)
    alert = build_alert(record, "fail", AlertContext())
    assert alert.headline == headline(record, "fail") == "1 of 3 flows failed against production"
    assert alert.failed[0].detail() == "failed (1 attempt): Element not found: Save"


def test_a_streak_without_a_commit_names_its_first_run() -> None:
    record = run(flow("a.yaml", "failed", state="still failing", failing_since={**since("", 1), "runId": "local-7"}))
    assert history_note(build_alert(record, "fail", AlertContext()).failed) == (
        "1 still failing since run local-7 (2 runs)")


def test_slow_is_marked_on_failed_and_flaky_lines() -> None:
    record = run(flow("a.yaml", "failed", state="new", failing_since=since(SHA_B, 0), slow=True),
                 flow("f.yaml", "flaky", slow=True), *passing(2))
    alert = build_alert(record, "fail", AlertContext())
    assert alert.failed[0].detail() == "failed (1 attempt), new, slow: Element not found: Save"
    assert alert.flaky[0].detail() == "flaky (1 attempt), slow: Element not found: Save"


def test_without_history_an_alert_reads_as_before() -> None:
    record = run(flow("a.yaml", "failed", history=False), *[flow(f"ok-{i}.yaml", "passed", history=False)
                                                            for i in range(2)])
    alert = build_alert(record, "fail", AlertContext())
    assert alert.headline == headline(record, "fail") == "1 of 3 flows failed against production"
    assert alert.failed[0].detail() == "failed (1 attempt): Element not found: Save"
    assert [fact.label for fact in alert.facts] == ["Environment", "Run"]
    assert alert.title == "[production-validation] FAIL: 1 of 3 flows failed against production"


def test_a_recovery_and_a_pass_carry_no_failure_history() -> None:
    record = run(*passing(3), verdict="pass")
    assert build_alert(record, "recovery", AlertContext()).headline == headline(record, "recovery")


def test_quarantined_flows_are_listed_apart_and_never_in_what_pages() -> None:
    quarantined = flow("q.yaml", "failed", state="still failing", failing_since=since(SHA_A, 9))
    quarantined.quarantined = True  # type: ignore[attr-defined]  # RunRecord gains it with quarantine (H2)
    quarantined.quarantine = {"reason": "login flaky upstream", "owner": "alice", "until": "2026-12-31"}  # type: ignore[attr-defined]
    passed_quarantined = flow("q-ok.yaml", "passed")
    passed_quarantined.quarantined = True  # type: ignore[attr-defined]
    record = run(flow("a.yaml", "failed", state="new", failing_since=since(SHA_B, 0)), quarantined,
                 passed_quarantined, *passing(2))
    alert = build_alert(record, "fail", AlertContext())
    assert [line.file for line in alert.failed] == ["a.yaml"]
    assert [line.file for line in alert.quarantined] == ["q.yaml"]  # one that passed says nothing
    assert alert.headline.startswith("1 new failure: ")  # the quarantined streak is not the headline's
    assert alert.quarantined[0].detail() == (
        "failed (1 attempt), still failing since abc1234 (10 runs), quarantined until 2026-12-31 "
        "(alice: login flaky upstream): Element not found: Save")
    text = text_body(alert)
    assert text.index("Failed flows:") < text.index("Quarantined flows (not counted, never page):\n  - q.yaml")
    blocks = json.dumps(slack.payload(alert)["blocks"])
    assert "Quarantined flows (not counted, never page)" in blocks and "`q.yaml`" in blocks
    [event] = pagerduty.PagerDuty("k" * 32, "dedup", "ci").events(alert)
    details = event["payload"]["custom_details"]
    assert [f.split(":")[0] for f in details["failed_flows"]] == ["a.yaml"]
    assert details["quarantined_flows"][0].startswith("q.yaml: failed")
    # masked like the rest: a secret in the quarantine's reason does not leave
    secret = masked(alert, lambda text: text.replace("alice", "***"))
    assert "alice" not in secret.quarantined[0].detail()


def test_trigger_reminder_and_history_note_are_facts() -> None:
    record = run(flow("a.yaml", "failed", state="still failing", failing_since=since(SHA_A, 3)), trigger="schedule")
    record.history = {"path": "h.sqlite", "runs": 4, "previous": None,
                      "note": "history corrupt: set aside as h.sqlite.corrupt-1; started fresh"}
    alert = build_alert(record, "fail", AlertContext(), reminder="still failing; said again every 24h")
    facts = {fact.label: fact.value for fact in alert.facts}
    assert facts["Trigger"] == "scheduled re-validation"
    assert facts["Reminder"] == "still failing; said again every 24h"
    assert facts["History"].startswith("history corrupt")
    assert alert.title.startswith("[production-validation] FAIL (reminder): 1 still failing since abc1234 (4 runs)")


# ---- when a scheduled run speaks --------------------------------------------------------------------------

NOW = datetime(2026, 5, 2, 12, 0, tzinfo=UTC)
DAY = timedelta(hours=24)


@pytest.mark.parametrize(("verdict", "previous", "last", "expected"), [
    ("fail", "pass", None, Turn.CHANGE),
    ("error", "pass", NOW - timedelta(hours=1), Turn.CHANGE),  # a new streak speaks whatever was said before
    ("fail", None, NOW, Turn.CHANGE),  # unknown previous: counted as a change
    ("fail", "fail", NOW - timedelta(hours=6), Turn.STILL_FAILING),
    ("fail", "error", NOW - timedelta(hours=23, minutes=59), Turn.STILL_FAILING),  # fail <-> error is no change
    ("error", "fail", NOW - DAY, Turn.REMINDER),  # exactly remind_every after the last alert
    ("fail", "fail", NOW - timedelta(hours=30), Turn.REMINDER),
    ("fail", "fail", None, Turn.REMINDER),  # this streak never alerted (a failed delivery, a lost history)
    ("pass", "fail", NOW, Turn.RECOVERY),
    ("pass", "error", None, Turn.RECOVERY),
    ("pass", "pass", None, Turn.STILL_PASSING),
    ("pass", None, None, Turn.STILL_PASSING),
])
def test_the_turn_of_a_scheduled_run(verdict: str, previous: str | None, last: datetime | None,
                                     expected: Turn) -> None:
    assert cadence.turn(verdict, previous, last, NOW, DAY) is expected
    assert cadence.explain(expected, previous, last, DAY)  # the console says why, every time


@pytest.mark.parametrize(("verdict", "previous", "turn", "on", "expected"), [
    ("fail", "pass", Turn.CHANGE, "failure", [(c, "fail") for c in EVERY]),
    ("error", None, Turn.CHANGE, "failure", [(c, "error") for c in EVERY]),
    # a reminder: Slack and email only; PagerDuty's incident is still open under the same key
    ("fail", "fail", Turn.REMINDER, "failure", [("slack", "fail"), ("email", "fail"), ("github-status", "fail")]),
    ("fail", "fail", Turn.STILL_FAILING, "failure", [("github-status", "fail")]),
    ("fail", "fail", Turn.STILL_FAILING, "always", [("slack", "fail"), ("email", "fail"), ("github-status", "fail")]),
    ("pass", "fail", Turn.RECOVERY, "failure",
     [("slack", "recovery"), ("email", "recovery"), ("pagerduty", "pass"), ("github-status", "pass")]),
    ("pass", "pass", Turn.STILL_PASSING, "failure", [("github-status", "pass")]),
    ("pass", None, Turn.STILL_PASSING, "failure", [("pagerduty", "pass"), ("github-status", "pass")]),
    ("pass", "pass", Turn.STILL_PASSING, "always",
     [("slack", "pass"), ("email", "pass"), ("github-status", "pass")]),
])
def test_which_channels_speak_on_a_scheduled_run(verdict: str, previous: str | None, turn: Turn, on: str,
                                                 expected: list[tuple[str, str]]) -> None:
    assert plan(verdict, previous, on, EVERY, turn) == expected


def test_deployments_and_manual_runs_alert_as_before() -> None:
    assert plan("fail", "fail", "failure", EVERY) == [(c, "fail") for c in EVERY]  # every fail, no turn
    assert plan("pass", "pass", "failure", EVERY) == [("pagerduty", "pass"), ("github-status", "pass")]


def test_reminders_follow_the_clock() -> None:
    """A failing streak that alerted at 00:00 (a deploy): scheduled runs every 6 hours stay quiet until the
    reminder is due, 24 hours after that alert; then quiet again for 24 hours."""
    start = alerted = datetime(2026, 5, 1, 0, 0, tzinfo=UTC)
    turns = []
    for hours in (6, 12, 18, 24, 30, 36, 42, 48):
        now = start + timedelta(hours=hours)
        which = cadence.turn("fail", "fail", alerted, now, DAY)
        if which is Turn.REMINDER:
            alerted = now  # notify records the reminder it sent
        turns.append(which)
    assert turns == [Turn.STILL_FAILING] * 3 + [Turn.REMINDER] + [Turn.STILL_FAILING] * 3 + [Turn.REMINDER]
    # remind_every 0: every failing scheduled run reminds
    assert cadence.turn("fail", "fail", NOW, NOW, timedelta(0)) is Turn.REMINDER


@pytest.mark.parametrize(("last", "expected"), [
    (None, None),
    ({"runId": "r-1", "kind": "fail", "channel": "slack", "at": "2026-05-01T00:00:00Z"},
     datetime(2026, 5, 1, tzinfo=UTC)),
    ({"runId": "r-1", "kind": "reminder", "channel": "email", "at": "2026-05-01T06:30:00+00:00"},
     datetime(2026, 5, 1, 6, 30, tzinfo=UTC)),
    # the newest alert was a recovery or a pass: this streak has not alerted yet
    ({"runId": "r-1", "kind": "recovery", "channel": "slack", "at": "2026-05-01T00:00:00Z"}, None),
    ({"runId": "r-1", "kind": "pass", "channel": "pagerduty", "at": "2026-05-01T00:00:00Z"}, None),
    ({"runId": "r-1", "kind": "fail", "channel": "slack", "at": "yesterday"}, None),
])
def test_the_streak_alert_read_from_the_history(last: dict[str, Any] | None, expected: datetime | None) -> None:
    assert cadence.streak_alert(last) == expected


def test_the_clock_is_injected_through_one_variable() -> None:
    assert clock({"PRODVAL_NOW": "2026-05-01T12:00:00Z"}) == datetime(2026, 5, 1, 12, tzinfo=UTC)
    assert clock({"PRODVAL_NOW": "2026-05-01T12:00:00"}) == datetime(2026, 5, 1, 12, tzinfo=UTC)  # UTC
    before = datetime.now(UTC)
    assert before <= clock({}) <= datetime.now(UTC)
    with pytest.raises(NotifyError, match="PRODVAL_NOW='noon' is not an ISO 8601 time") as caught:
        clock({"PRODVAL_NOW": "noon"})
    assert "it is for tests" in caught.value.fix


def test_the_previous_verdict_comes_from_the_flag_then_the_history(tmp_path: Path) -> None:
    record = run(flow("a.yaml", "passed"), verdict="pass")
    record.history = {"path": "h.sqlite", "runs": 4, "note": "",
                      "previous": {"runId": "r-8", "verdict": "fail", "commit": SHA_A, "trigger": "schedule",
                                   "endTime": "2026-05-01T00:00:00Z"}}
    out = io.StringIO()
    console = Console({}, out=out, err=out)
    settings = load_notify({}, {}, {})
    assert find_previous(settings, {}, RetryPolicy(), console, record) == "fail"  # no flag, no API
    assert "previous run (from the history): fail (run r-8, schedule)" in out.getvalue()
    # --previous, when given, is what was asked for
    earlier = run(flow("a.yaml", "passed"), verdict="pass")
    RecordWriter(tmp_path, Redactor()).save(earlier)
    flagged = load_notify({}, {}, {"previous": str(tmp_path / "results.json")})
    assert find_previous(flagged, {}, RetryPolicy(), console, record) == "pass"
    # a fresh history (no previous run) outside Actions: unknown
    record.history = {**record.history, "previous": None}
    assert find_previous(settings, {}, RetryPolicy(), console, record) is None
