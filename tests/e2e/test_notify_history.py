"""`invoke validate` then `invoke notify`, run after run, with a real SQLite run history (issue 16): scheduled
runs speak on a change of state and remind every `notify.remind_every` hours (the clock set by PRODVAL_NOW),
deployments alert on every failure, PagerDuty keeps one incident, and a recovery is read from the history
without `--previous` or the GitHub API.

The fake adb and maestro run the flows; real HTTP servers on 127.0.0.1 play Slack, PagerDuty and GitHub.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alert_servers import HttpServer, github_status, pagerduty, serve_http, slack
from conftest import World
from prodval.history import History

WEBHOOK = "/services/T0AAA1111/B0BBB2222/historyWebhookSecret7"
ROUTING_KEY = "R0UT1NGKEY0123456789abcdefR0UT1N"
TOKEN = "ghs_HistoryInstallationToken0123456789"
REPO = "acme/exercise-log"
SHA = "abc1234def5678abc1234def5678abc1234def56"
NEXT_SHA = "bbb2222def5678abc1234def5678abc1234def56"
DEDUP = f"prodval/{REPO}/production/production-validation"
FAILURE = "fail:Element not found: Text matching regex: Save"
T0 = datetime(2026, 5, 1, 0, 0, tzinfo=UTC)


@pytest.fixture
def http() -> Iterator[HttpServer]:
    yield from serve_http()


@pytest.fixture
def project(world: World, http: HttpServer, tmp_path: Path) -> World:
    world.device()
    world.flow("login.yaml")
    world.flow("add-exercise.yaml")
    http.script(WEBHOOK, slack)
    http.script("/v2/enqueue", pagerduty)
    http.script(f"/repos/{REPO}/statuses/", github_status(TOKEN, commits=(SHA, NEXT_SHA)))
    world.extra_env.update({
        "SLACK_WEBHOOK_URL": http.url(WEBHOOK),
        "PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
        "PAGERDUTY_EVENTS_URL": http.url("/v2/enqueue"),
        "GITHUB_TOKEN": TOKEN,
        "GITHUB_API_URL": http.base,
        "GITHUB_REPOSITORY": REPO,
        "INVOKE_HISTORY_PATH": str(tmp_path / "history.sqlite"),
        "INVOKE_NOTIFY_RETRY_BACKOFF": "0.05",
        "INVOKE_VALIDATION_RETRIES": "0",
    })
    return world


class Runs:
    """Runs validate then notify, and hands back what each channel received in between."""

    def __init__(self, world: World, http: HttpServer) -> None:
        self.world, self.http = world, http
        self.seen = 0

    def run(self, outcome: str, trigger: str, at: datetime, sha: str = SHA) -> dict[str, Any]:
        self.world.scenario({"login.yaml": [FAILURE]} if outcome == "fail" else {})
        env = {"PRODVAL_TRIGGER": trigger, "INVOKE_NOTIFY_DEPLOYED_SHA": sha}
        validate = self.world.invoke("validate", **env)
        assert validate.returncode == (1 if outcome == "fail" else 0), validate.stdout + validate.stderr
        notify = self.world.invoke("notify", PRODVAL_NOW=at.isoformat(), **env)
        assert notify.returncode == 0, notify.stdout + notify.stderr
        new = self.http.requests[self.seen:]
        self.seen = len(self.http.requests)
        return {
            "slack": [r.json()["text"] for r in new if r.path == WEBHOOK],
            "pagerduty": [(r.json()["event_action"], r.json()["dedup_key"]) for r in new if r.path == "/v2/enqueue"],
            "status": [(r.json()["state"], r.json()["context"]) for r in new if r.path.startswith("/repos/")],
            "console": notify.stdout + notify.stderr,
            "record": self.world.record(),
        }


@pytest.fixture
def runs(project: World, http: HttpServer) -> Runs:
    return Runs(project, http)


def test_scheduled_runs_speak_on_a_change_and_remind_once_a_day(runs: Runs, tmp_path: Path) -> None:
    scheduled = "production-validation/scheduled"

    # 1. pass, nothing before it: nobody hears of it; PagerDuty resolves (an unknown past never leaves an
    #    incident open); the status goes under the scheduled context, never the gate's
    first = runs.run("pass", "schedule", T0)
    assert first["slack"] == [] and first["pagerduty"] == [("resolve", DEDUP)]
    assert first["status"] == [("success", scheduled)]
    assert first["record"]["history"]["previous"] is None

    # 2. fail after a pass: a change, every channel speaks
    second = runs.run("fail", "schedule", T0 + timedelta(hours=6))
    [text] = second["slack"]
    assert text.startswith("[production-validation] FAIL: 1 new failure: 1 of 2 flows failed against production")
    assert second["pagerduty"] == [("trigger", DEDUP)]
    assert second["status"] == [("failure", scheduled)]

    # 3. still failing 6 hours later: quiet (the commit status is no message: it still tells the truth)
    third = runs.run("fail", "schedule", T0 + timedelta(hours=12))
    assert third["slack"] == [] and third["pagerduty"] == []
    assert third["status"] == [("failure", scheduled)]
    assert "quiet until the reminder at 2026-05-02T06:00:00Z" in third["console"]
    assert third["record"]["alerts"] == [
        {**third["record"]["alerts"][0], "channel": "github-status", "kind": "fail", "delivered": True}]

    # 4. still failing 24 hours after the alert: a reminder on Slack; PagerDuty's incident is still open
    fourth = runs.run("fail", "schedule", T0 + timedelta(hours=30))
    [text] = fourth["slack"]
    assert text.startswith("[production-validation] FAIL (reminder): 1 still failing since abc1234 (3 runs): "
                           "1 of 2 flows failed against production")
    assert fourth["pagerduty"] == []

    # 5. pass: a recovery, read from the history (no --previous, no GitHub API in this environment)
    fifth = runs.run("pass", "schedule", T0 + timedelta(hours=36))
    [text] = fifth["slack"]
    assert text.startswith("[production-validation] RECOVERED: Recovered: all 2 flows pass against production again")
    assert fifth["pagerduty"] == [("resolve", DEDUP)]
    assert "previous run (from the history): fail" in fifth["console"]
    assert fifth["record"]["history"]["previous"]["verdict"] == "fail"

    # the history remembers what people got, the reminder as one
    with History.open(tmp_path / "history.sqlite", lambda text: None, repair=False) as history:
        kinds = [history.last_alert([kind]) for kind in ("fail", "reminder", "recovery")]
    assert [(k or {}).get("at") for k in kinds] == ["2026-05-01T06:00:00Z", "2026-05-02T06:00:00Z",
                                                    "2026-05-02T12:00:00Z"]


def test_deployments_alert_every_failure_and_share_the_incident_with_scheduled_runs(runs: Runs) -> None:
    # a deployment fails: alerted as always, on the gate's context
    deploy = runs.run("fail", "deploy", T0)
    assert len(deploy["slack"]) == 1 and deploy["pagerduty"] == [("trigger", DEDUP)]
    assert deploy["status"] == [("failure", "production-validation")]
    # the scheduled run after it times its reminder from the deployment's alert: quiet
    scheduled = runs.run("fail", "schedule", T0 + timedelta(hours=6))
    assert scheduled["slack"] == [] and scheduled["pagerduty"] == []
    # the next deployment, still failing: alerted again, into the same incident
    again = runs.run("fail", "deploy", T0 + timedelta(hours=8), sha=NEXT_SHA)
    [text] = again["slack"]
    assert "1 still failing since abc1234 (3 runs)" in text
    assert again["pagerduty"] == [("trigger", DEDUP)]
    # a scheduled run recovers it: the one incident is resolved, the gate's status untouched
    fixed = runs.run("pass", "schedule", T0 + timedelta(hours=14), sha=NEXT_SHA)
    assert fixed["pagerduty"] == [("resolve", DEDUP)]
    assert fixed["status"] == [("success", "production-validation/scheduled")]
    assert json.dumps(fixed["record"]["alerts"]).count('"recovery"') == 1


def test_a_failing_scheduled_run_with_no_history_counts_as_a_change(runs: Runs, tmp_path: Path) -> None:
    runs.run("fail", "schedule", T0)
    # the cache was evicted: the next run starts a fresh history and cannot tell new from old
    for name in list(tmp_path.glob("history.sqlite*")):
        name.unlink()
    evicted = runs.run("fail", "schedule", T0 + timedelta(hours=6))
    assert len(evicted["slack"]) == 1 and evicted["pagerduty"] == [("trigger", DEDUP)]
    assert "the previous run is unknown (no history)" in evicted["console"]


def test_a_deployment_s_recovery_is_read_from_the_history(runs: Runs) -> None:
    runs.run("fail", "deploy", T0)
    fixed = runs.run("pass", "deploy", T0 + timedelta(hours=2), sha=NEXT_SHA)
    [text] = fixed["slack"]
    assert text.startswith("[production-validation] RECOVERED:")
    assert fixed["pagerduty"] == [("resolve", DEDUP)] and fixed["status"] == [("success", "production-validation")]
    assert "previous run (from the history): fail" in fixed["console"]


def test_a_history_notify_cannot_read_never_stops_the_alerts(runs: Runs, project: World, tmp_path: Path) -> None:
    runs.run("fail", "schedule", T0)
    runs.run("fail", "schedule", T0 + timedelta(hours=6))  # quiet: alerted 6 hours ago
    # the file is damaged after validate wrote it: notify says so and reminds rather than stay silent
    (tmp_path / "history.sqlite").write_bytes(b"not a database" * 100)
    notify = project.invoke("notify", PRODVAL_NOW=(T0 + timedelta(hours=7)).isoformat(), PRODVAL_TRIGGER="schedule",
                            INVOKE_NOTIFY_DEPLOYED_SHA=SHA)
    assert notify.returncode == 0, notify.stdout + notify.stderr
    assert "could not read the last alert from the history" in notify.stdout + notify.stderr
    assert "the alerts sent were not remembered in the history" in notify.stdout + notify.stderr
    assert len([r for r in runs.http.requests[runs.seen:] if r.path == WEBHOOK]) == 1


def test_a_clock_that_is_not_a_time_stops_notify_before_anything_is_sent(runs: Runs, project: World) -> None:
    runs.run("fail", "schedule", T0)
    sent = len(runs.http.requests)
    notify = project.invoke("notify", PRODVAL_NOW="tomorrow", INVOKE_NOTIFY_DEPLOYED_SHA=SHA)
    assert notify.returncode == 2
    assert "PRODVAL_NOW='tomorrow' is not an ISO 8601 time" in notify.stdout + notify.stderr
    assert len(runs.http.requests) == sent
