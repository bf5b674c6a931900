"""Who gets paged, end to end through `invoke notify` (review of issues 16 and 17): run records written as
validate leaves them (impact triage done, quarantine applied, a real SQLite run history holding the alerts
people already got), then notify against real HTTP servers for Slack, PagerDuty and the commit status.

- a scheduled change whose failure only the new build has does not page;
- a failing streak that began without paging and now hits current users pages once, with `<!here>`;
- a scheduled reminder never carries `<!here>`;
- a quarantined flow that hits current users neither pages nor counts in the headline.
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
from prodval.results import Attempt, FlowResult, Job, RecordWriter, RunRecord, Stage
from prodval.secrets import Redactor

WEBHOOK = "/services/T0PAGE111/B0PAGE222/pagingRulesWebhookSecret9"
ROUTING_KEY = "PAGINGRULESKEY0123456789abcdefAB"
TOKEN = "ghs_PagingRulesInstallationToken012345"
REPO = "acme/exercise-log"
SHA = "abc1234def5678abc1234def5678abc1234def56"
DEDUP = f"prodval/{REPO}/production/production-validation"
T0 = datetime(2026, 5, 1, 0, 0, tzinfo=UTC)


@pytest.fixture
def http() -> Iterator[HttpServer]:
    yield from serve_http()


class Notifier:
    """Writes a run record (and the history's view of the run before it), runs notify, and hands back what
    each channel received."""

    def __init__(self, world: World, http: HttpServer, history: Path) -> None:
        self.world, self.http, self.history = world, http, history
        self.seen = 0
        http.script(WEBHOOK, slack)
        http.script("/v2/enqueue", pagerduty)
        http.script(f"/repos/{REPO}/statuses/", github_status(TOKEN, commits=(SHA,)))
        world.extra_env.update({
            "SLACK_WEBHOOK_URL": http.url(WEBHOOK), "PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
            "PAGERDUTY_EVENTS_URL": http.url("/v2/enqueue"), "GITHUB_TOKEN": TOKEN, "GITHUB_API_URL": http.base,
            "GITHUB_REPOSITORY": REPO, "INVOKE_NOTIFY_DEPLOYED_SHA": SHA, "INVOKE_HISTORY_PATH": str(history),
            "INVOKE_NOTIFY_RETRY_BACKOFF": "0.05",
        })
        with History.open(history, lambda text: None):
            pass  # created: notify only reads and records alerts in an existing history

    def remember(self, run_id: str, kind: str, channels: tuple[str, ...], at: datetime) -> None:
        """Alerts an earlier run's notify sent."""
        with History.open(self.history, lambda text: None) as store:
            for channel in channels:
                store.record_alert(run_id, kind, channel, at.isoformat().replace("+00:00", "Z"))

    def notify(self, run_id: str, trigger: str, previous: str | None, flows: list[FlowResult],
               at: datetime) -> dict[str, Any]:
        start = at.isoformat().replace("+00:00", "Z")
        record = RunRecord(runId=run_id, job=Job(jobId=f"{run_id}/validate", commit=SHA, trigger=trigger,
                                                 startTime=start), flows=flows,
                           stages={"validate": Stage("fail", start)})
        record.verdict = record.decide()
        record.history = {"path": str(self.history), "runs": 3, "note": "", "previous": None if previous is None else
                          {"runId": "before", "verdict": previous, "commit": SHA, "trigger": "deploy", "endTime": ""}}
        RecordWriter(self.world.results, Redactor()).save(record)
        run = self.world.invoke("notify", PRODVAL_NOW=start)
        assert run.returncode == 0, run.stdout + run.stderr
        new = self.http.requests[self.seen:]
        self.seen = len(self.http.requests)
        return {
            "slack": [r.json() for r in new if r.path == WEBHOOK],
            "pagerduty": [(r.json()["event_action"], r.json()["dedup_key"]) for r in new if r.path == "/v2/enqueue"],
            "console": run.stdout + run.stderr,
        }


@pytest.fixture
def notifier(world: World, http: HttpServer, tmp_path: Path) -> Notifier:
    return Notifier(world, http, tmp_path / "history.sqlite")


def failed(name: str, impact: str, *, quarantined: bool = False) -> FlowResult:
    flow = FlowResult(name, name.removesuffix(".yaml"), "failed", 1, duration=900,
                      errorSummary="Element not found: Text matching regex: Pay now",
                      attempts=[Attempt(1, "failed", 1, 900, "emulator-5554", "2026-05-01T00:00:00Z",
                                        "Element not found: Text matching regex: Pay now")])
    flow.impact = impact
    if quarantined:
        flow.quarantined = True
        flow.quarantine = {"reason": "flaky since the redesign", "owner": "@ana", "until": "2099-01-01"}
    return flow


def passed(name: str) -> FlowResult:
    return FlowResult(name, name.removesuffix(".yaml"), "passed", 1, duration=800,
                      attempts=[Attempt(1, "passed", 0, 800, "emulator-5554", "2026-05-01T00:00:00Z")])


def test_a_scheduled_change_only_the_new_build_has_does_not_page(notifier: Notifier) -> None:
    sent = notifier.notify("r1", "schedule", "pass", [failed("profile.yaml", "new-build-only"), passed("home.yaml")],
                           T0)
    assert sent["pagerduty"] == []  # nobody is paged: no user has this build yet
    assert "PagerDuty not paged" in sent["console"]
    [post] = sent["slack"]  # but it is a change: Slack says it, without `<!here>`
    assert post["text"].startswith("[production-validation] FAIL")
    assert "(1 new build only)" in post["text"] and "<!here>" not in json.dumps(post)


def test_a_streak_that_worsens_to_current_users_pages_once(notifier: Notifier) -> None:
    # the deployment failed with the new build only: Slack and email heard of it, PagerDuty only resolved
    # (on the pass before it)
    notifier.remember("r0", "pass", ("pagerduty",), T0 - timedelta(hours=6))
    notifier.remember("r1", "fail", ("slack",), T0)
    # 6 hours later the backend drifted: the released app fails too. Users are hit: page now
    worse = [failed("profile.yaml", "current-users"), passed("home.yaml")]
    sent = notifier.notify("r2", "schedule", "fail", worse, T0 + timedelta(hours=6))
    assert sent["pagerduty"] == [("trigger", DEDUP)]
    [post] = sent["slack"]
    assert post["text"].startswith("<!here> [production-validation] FAIL")
    assert "(1 hits current users)" in post["text"]
    assert "still failing, and now it pages" in sent["console"]
    # the next scheduled run, still the same: PagerDuty's incident is open (the history holds its trigger)
    again = notifier.notify("r3", "schedule", "fail", worse, T0 + timedelta(hours=12))
    assert again["pagerduty"] == [] and again["slack"] == []
    assert "quiet until the reminder at 2026-05-02T06:00:00Z" in again["console"]
    # and its reminder a day after the page: Slack only, with no `<!here>`
    reminder = notifier.notify("r4", "schedule", "fail", worse, T0 + timedelta(hours=30))
    assert reminder["pagerduty"] == []
    [post] = reminder["slack"]
    assert post["text"].startswith("[production-validation] FAIL (reminder)")
    assert "<!here>" not in json.dumps(post)


def test_a_reminder_about_current_users_carries_no_here(notifier: Notifier) -> None:
    notifier.remember("r1", "fail", ("slack", "pagerduty"), T0)  # the change paged a day ago
    sent = notifier.notify("r2", "schedule", "fail", [failed("checkout.yaml", "current-users")],
                           T0 + timedelta(hours=25))
    assert sent["pagerduty"] == []
    [post] = sent["slack"]
    assert post["text"].startswith("[production-validation] FAIL (reminder)")
    assert "<!here>" not in json.dumps(post)


def test_a_quarantined_flow_hitting_current_users_neither_pages_nor_counts(notifier: Notifier) -> None:
    flows = [failed("profile.yaml", "new-build-only"),
             failed("legacy-checkout.yaml", "current-users", quarantined=True), passed("home.yaml")]
    sent = notifier.notify("r1", "deploy", None, flows, T0)
    assert sent["pagerduty"] == []
    [post] = sent["slack"]
    assert "<!here>" not in json.dumps(post)
    assert "(1 new build only)" in post["text"] and "current users" not in post["text"]
    assert "1 quarantined, 1 of them failing" in post["text"]
    # the same failure, not quarantined: it pages, with `<!here>`
    flows[1].quarantined, flows[1].quarantine = False, None
    paged = notifier.notify("r2", "deploy", "fail", flows, T0 + timedelta(hours=1))
    assert paged["pagerduty"] == [("trigger", DEDUP)]
    [post] = paged["slack"]
    assert post["text"].startswith("<!here> ") and "(1 hits current users, 1 new build only)" in post["text"]
