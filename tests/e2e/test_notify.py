"""`invoke notify` against real local servers: Slack, PagerDuty and the GitHub API over HTTP on 127.0.0.1,
and an aiosmtpd SMTP server with STARTTLS and AUTH (certificate from a throwaway `trustme` CA)."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from alert_servers import HttpServer, Reply, SmtpServer, free_port, github_status, pagerduty, serve_http, slack
from conftest import World
from prodval.alerts import RetryPolicy, check_url, retry_after
from prodval.alerts import slack as slack_channel
from prodval.alerts.github import explain_status, owner_name
from prodval.alerts.message import AlertContext, build_alert
from prodval.alerts.pagerduty import PagerDuty, dedup_key
from prodval.errors import ConfigError, DeliveryFailed
from prodval.notify import configure_channels, plan
from prodval.results import Attempt, FlowResult, Job, RecordWriter, RunRecord, Stage
from prodval.secrets import Redactor
from prodval.settings import load_notify

WEBHOOK_PATH = "/services/T0AAA1111/B0BBB2222/xoxWebhookSecret0123456789"
ROUTING_KEY = "R0UT1NGKEY0123456789abcdefR0UT1N"  # 32 characters, as PagerDuty's integration keys
TOKEN = "ghs_SecretInstallationToken0123456789"
SMTP_USER = "alerts-bot"
SMTP_PASSWORD = "smtp-Pa55word-XYZ"
REPO = "acme/exercise-log"
SHA = "0123456789abcdef0123456789abcdef01234567"
OTHER_SHA = "fedcba9876543210fedcba9876543210fedcba98"  # another commit of the repository
RUN_ID = "987654"
RUN_URL = f"https://github.com/{REPO}/actions/runs/{RUN_ID}"
STATUS_PATH = f"/repos/{REPO}/statuses/{SHA}"
FAILURE = "Element not found: Text matching regex: Save"


def record(folder: Path, *, total: int = 9, failed: int = 2, flaky: int = 1, errors: int = 0,
           verdict: str | None = None, stage_errors: dict[str, str] | None = None, job_url: str = RUN_URL,
           apk: dict[str, Any] | None = None) -> RunRecord:
    """A run record as validate leaves it (through the real writer), with `failed` failed flows etc."""
    flows = []
    for index in range(total):
        name = f"flow-{index:03d}.yaml"
        if index < failed:
            attempts = [Attempt(n, "failed", 1, 1500, "emulator-5554", "2026-05-01T02:00:00Z", FAILURE) for n in (1, 2)]
            flows.append(FlowResult(name, name[:-5], "failed", 1, duration=3000, attempts=attempts, errorSummary=FAILURE,
                                    device="emulator-5554"))
        elif index < failed + errors:
            attempts = [Attempt(1, "error", 1, 900, "emulator-5554", "2026-05-01T02:00:00Z", "Unable to launch app")]
            flows.append(FlowResult(name, name[:-5], "error", 1, duration=900, attempts=attempts,
                                    errorSummary="Unable to launch app"))
        elif index < failed + errors + flaky:
            attempts = [Attempt(1, "failed", 1, 1000, "emulator-5554", "2026-05-01T02:00:00Z", "Timed out tapping Add"),
                        Attempt(2, "passed", 0, 1000, "emulator-5554", "2026-05-01T02:00:05Z")]
            flows.append(FlowResult(name, name[:-5], "flaky", 0, duration=2000, attempts=attempts,
                                    errorSummary="Timed out tapping Add"))
        else:
            attempts = [Attempt(1, "passed", 0, 1000, "emulator-5554", "2026-05-01T02:00:00Z")]
            flows.append(FlowResult(name, name[:-5], "passed", 0, duration=1000, attempts=attempts))
    job = Job(jobId=f"{RUN_ID}/validate", status="failure", startTime="2026-05-01T02:00:00.000Z",
              endTime="2026-05-01T02:03:25.000Z", url=job_url)
    run = RunRecord(runId=f"gh-{RUN_ID}-1", job=job, flows=flows, apk=apk)
    run.stages["validate"] = Stage("done", job.startTime, job.endTime)
    for name, error in (stage_errors or {}).items():
        run.stages[name] = Stage("error", job.startTime, job.endTime, error)
    run.verdict = verdict or run.decide()
    run.stages["validate"].outcome = run.verdict
    RecordWriter(folder, Redactor()).save(run)
    return run


def plain_text(mail: Any) -> str:
    text: str = mail.get_body(("plain",)).get_content()
    return text.replace("\r\n", "\n")


@dataclass
class Channels:
    http: HttpServer
    smtp: SmtpServer
    env: dict[str, str]
    secrets: list[str] = field(default_factory=list)

    def slack_posts(self) -> list[dict[str, Any]]:
        return [r.json() for r in self.http.hits(WEBHOOK_PATH)]

    def pd_events(self) -> list[dict[str, Any]]:
        return [r.json() for r in self.http.hits("/v2/enqueue")]

    def statuses(self) -> list[dict[str, Any]]:
        return [r.json() for r in self.http.hits(STATUS_PATH)]

    def assert_no_secret(self, *texts: str) -> None:
        for raw in texts:
            # `::add-mask::VALUE` is the one line that must name it: the Actions runner swallows it
            text = "\n".join(line for line in raw.splitlines() if not line.startswith("::add-mask::"))
            for secret in self.secrets:
                assert secret not in text


@pytest.fixture
def http() -> Iterator[HttpServer]:
    yield from serve_http()


@pytest.fixture
def channels(http: HttpServer, tmp_path: Path, world: World) -> Iterator[Channels]:
    http.script(WEBHOOK_PATH, slack)
    http.script("/v2/enqueue", pagerduty)
    http.script(f"/repos/{REPO}/statuses/", github_status(TOKEN, commits=(SHA, OTHER_SHA)))
    with SmtpServer(tmp_path, user=SMTP_USER, password=SMTP_PASSWORD, refuse=("gone@example.com",)) as smtp:
        env = {
            "SLACK_WEBHOOK_URL": http.url(WEBHOOK_PATH),
            "PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
            "PAGERDUTY_EVENTS_URL": http.url("/v2/enqueue"),
            "GITHUB_TOKEN": TOKEN,
            "GITHUB_API_URL": http.base,
            "GITHUB_REPOSITORY": REPO,
            "GITHUB_SHA": SHA,
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(smtp.port),
            "SMTP_SECURITY": "starttls",
            "SMTP_USERNAME": SMTP_USER,
            "SMTP_PASSWORD": SMTP_PASSWORD,
            "ALERT_EMAIL_FROM": "validation@acme.example",
            "ALERT_EMAIL_TO": "oncall@acme.example, mobile@acme.example",
            "SSL_CERT_FILE": str(smtp.ca_file),
            "INVOKE_NOTIFY_RETRY_BACKOFF": "0.05",
            "INVOKE_NOTIFY_TIMEOUT": "5",
        }
        world.extra_env.update(env)
        yield Channels(http, smtp, env, [http.url(WEBHOOK_PATH), WEBHOOK_PATH, SMTP_PASSWORD, ROUTING_KEY, TOKEN])


def actions_env(world: World) -> Path:
    """Run the task as GitHub Actions would: annotations, a step summary file."""
    summary = world.root / "step-summary.md"
    world.extra_env.update({"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary), "GITHUB_RUN_ID": RUN_ID,
                            "GITHUB_SERVER_URL": "https://github.com"})
    return summary


# --- what each channel says ------------------------------------------------------------------------

def test_fail_alert_reaches_every_channel_with_what_people_need(world: World, channels: Channels) -> None:
    summary = actions_env(world)
    record(world.results, apk={"packageName": "com.example.exerciselog", "versionName": "1.4.2", "versionCode": 42})
    run = world.invoke("notify")
    assert run.returncode == 0, run.stderr

    [message] = channels.slack_posts()
    assert message["text"].startswith("[production-validation] FAIL: 2 of 9 flows failed against production")
    blocks = json.dumps(message["blocks"])
    assert "2 of 9 flows failed against production" in blocks
    assert "`flow-000.yaml` failed (2 attempts): Element not found: Text matching regex: Save" in blocks
    assert "Flaky flows" in blocks and "`flow-002.yaml` flaky (2 attempts): Timed out tapping Add" in blocks
    assert "1.4.2 (42), com.example.exerciselog" in blocks
    assert f"<https://github.com/{REPO}/commit/{SHA}|{SHA[:12]}>" in blocks and blocks.count(SHA) == 1
    assert "3m 25s" in blocks
    assert f"<{RUN_URL}|Workflow run>" in blocks and f"<{RUN_URL}#artifacts|Artifacts>" in blocks

    [(envelope, mail)] = channels.smtp.messages
    assert envelope.rcpt_tos == ["oncall@acme.example", "mobile@acme.example"]
    assert mail["Subject"] == "[production-validation] FAIL: 2 of 9 flows failed against production"
    assert mail["From"] == "validation@acme.example"
    text = plain_text(mail)
    html = mail.get_body(("html",)).get_content()
    assert "flow-001.yaml: failed (2 attempts): Element not found" in text
    assert "Flaky flows (passed on a retry):\n  - flow-002.yaml: flaky (2 attempts)" in text
    assert f"Workflow run: {RUN_URL}" in text and "App version: 1.4.2 (42)" in text
    assert "<code>flow-000.yaml</code>" in html and f'href="{RUN_URL}"' in html
    commit_url = f"https://github.com/{REPO}/commit/{SHA}"
    assert f"Deployed commit: {SHA[:12]} ({commit_url})" in text and text.count(SHA) == 1  # once
    assert f'<a href="{commit_url}">{SHA[:12]}</a>' in html and html.count(SHA) == 1
    assert channels.smtp.logins == [(SMTP_USER, True)]

    [event] = channels.pd_events()
    assert event["event_action"] == "trigger" and event["routing_key"] == ROUTING_KEY
    assert event["dedup_key"] == f"prodval/{REPO}/production/production-validation"
    assert event["payload"]["severity"] == "critical"
    assert event["payload"]["summary"].endswith("2 of 9 flows failed against production")
    assert event["payload"]["custom_details"]["failed_flows"][0].startswith("flow-000.yaml: failed (2 attempts)")
    assert event["payload"]["custom_details"]["deployed_commit"] == SHA
    assert {"href": RUN_URL, "text": "Workflow run"} in event["links"]

    [status] = channels.statuses()
    assert status == {"state": "failure", "context": "production-validation", "target_url": RUN_URL,
                      "description": "2 of 9 flows failed against production"}
    [status_request] = channels.http.hits(STATUS_PATH)
    assert status_request.headers["Accept"] == "application/vnd.github+json"

    saved = world.record()
    assert [(a["channel"], a["kind"], a["delivered"]) for a in saved["alerts"]] == [
        ("slack", "fail", True), ("email", "fail", True), ("pagerduty", "fail", True), ("github-status", "fail", True)]
    assert saved["stages"]["notify"]["outcome"] == "pass" and saved["verdict"] == "fail"
    assert saved["environment"]["alertChannels"] == ["slack", "email", "pagerduty", "github-status"]
    assert "| slack | fail | yes |" in summary.read_text()

    # no secret anywhere: console, files, step summary, and what each channel received
    channels.assert_no_secret(run.stdout, run.stderr, world.files_text(), summary.read_text(),
                              json.dumps(channels.slack_posts()), mail.as_string(), json.dumps(channels.statuses()),
                              json.dumps([e["payload"] for e in channels.pd_events()]))


def test_error_alert_says_validation_could_not_run(world: World, channels: Channels) -> None:
    record(world.results, failed=0, errors=0, flaky=0, verdict="error",
           stage_errors={"device": "emulator did not boot within 300s\n  fix: check KVM"})
    run = world.invoke("notify")
    assert run.returncode == 0, run.stderr
    [message] = channels.slack_posts()
    assert message["text"].startswith("[production-validation] ERROR: Validation could not run: emulator did not boot")
    assert "Why it could not run" in json.dumps(message["blocks"])
    [event] = channels.pd_events()
    assert event["payload"]["severity"] == "error" and event["event_action"] == "trigger"
    assert "emulator did not boot within 300s" in event["payload"]["custom_details"]["error"]
    [status] = channels.statuses()
    assert status["state"] == "error"
    assert status["description"] == "Validation could not run: emulator did not boot within 300s"
    [(_, mail)] = channels.smtp.messages
    assert "Why it could not run:\n  emulator did not boot within 300s" in plain_text(mail)


def test_infrastructure_errors_are_listed_per_flow(world: World, channels: Channels) -> None:
    record(world.results, failed=0, errors=3, flaky=0)
    assert world.invoke("notify").returncode == 0
    [message] = channels.slack_posts()
    assert "Validation could not run: 3 of 9 flows hit infrastructure errors" in message["text"]
    assert "`flow-000.yaml` infrastructure error (1 attempt): Unable to launch app" in json.dumps(message["blocks"])


def test_recovery_after_a_failed_previous_run(world: World, channels: Channels, tmp_path: Path) -> None:
    record(tmp_path / "previous", verdict="fail")
    record(world.results, failed=0, flaky=0)
    run = world.invoke("notify", "--previous", str(tmp_path / "previous" / "results.json"))
    assert run.returncode == 0, run.stderr
    [message] = channels.slack_posts()
    assert message["text"].startswith("[production-validation] RECOVERED: Recovered: all 9 flows pass against "
                                      "production again")
    [(_, mail)] = channels.smtp.messages
    assert mail["Subject"].startswith("[production-validation] RECOVERED")
    [event] = channels.pd_events()
    assert event == {"routing_key": ROUTING_KEY, "event_action": "resolve",
                     "dedup_key": f"prodval/{REPO}/production/production-validation"}
    assert channels.statuses()[0]["state"] == "success"


def test_a_pass_after_a_pass_is_quiet_but_still_opens_the_gate(world: World, channels: Channels,
                                                              tmp_path: Path) -> None:
    record(tmp_path / "previous", failed=0, flaky=0)
    record(world.results, failed=0, flaky=0)
    run = world.invoke("notify", "--previous", str(tmp_path / "previous" / "results.json"))
    assert run.returncode == 0, run.stderr
    assert channels.slack_posts() == [] and channels.smtp.messages == []
    assert [e["event_action"] for e in channels.pd_events()] == ["resolve"]
    assert channels.statuses()[0]["state"] == "success"
    assert "nothing to say on email, slack" in run.stdout
    # --on always: every run speaks
    assert world.invoke("notify", "--on", "always").returncode == 0
    [message] = channels.slack_posts()
    assert message["text"].startswith("[production-validation] PASS: All 9 flows passed against production")


def test_recovery_told_by_the_github_api_in_actions(world: World, channels: Channels) -> None:
    actions_env(world)
    world.extra_env["GITHUB_RUN_ATTEMPT"] = "1"
    http = channels.http
    http.script(f"/repos/{REPO}/actions/runs/{RUN_ID}",
                Reply(200, {"id": int(RUN_ID), "workflow_id": 77, "created_at": "2026-05-01T02:00:00Z"}))
    http.script(f"/repos/{REPO}/actions/workflows/77/runs", Reply(200, {"total_count": 3, "workflow_runs": [
        {"id": int(RUN_ID), "status": "completed", "conclusion": None, "created_at": "2026-05-01T02:00:00Z"},
        {"id": 555, "status": "completed", "conclusion": "cancelled", "created_at": "2026-04-30T02:00:00Z"},
        {"id": 444, "status": "completed", "conclusion": "failure", "created_at": "2026-04-29T02:00:00Z"},
    ]}))
    record(world.results, failed=0, flaky=0)
    run = world.invoke("notify")
    assert run.returncode == 0, run.stderr
    [message] = channels.slack_posts()
    assert "RECOVERED" in message["text"]
    [listing] = http.hits(f"/repos/{REPO}/actions/workflows/77/runs")
    assert listing.query["status"] == ["completed"]
    assert listing.headers["Authorization"] == f"Bearer {TOKEN}"


def test_a_rerun_asks_for_the_previous_attempt(world: World, channels: Channels) -> None:
    actions_env(world)
    world.extra_env["GITHUB_RUN_ATTEMPT"] = "2"
    channels.http.script(f"/repos/{REPO}/actions/runs/{RUN_ID}/attempts/1",
                         Reply(200, {"id": int(RUN_ID), "run_attempt": 1, "conclusion": "failure"}))
    record(world.results, failed=0, flaky=0)
    assert world.invoke("notify").returncode == 0
    assert "RECOVERED" in channels.slack_posts()[0]["text"]


def test_test_alert_goes_everywhere_clearly_marked(world: World, channels: Channels) -> None:
    record(world.results)
    before = world.record()
    run = world.invoke("notify", "--test")
    assert run.returncode == 0, run.stderr
    [message] = channels.slack_posts()
    assert message["text"].startswith("[production-validation] TEST: Test alert")
    [(_, mail)] = channels.smtp.messages
    assert mail["Subject"].startswith("[production-validation] TEST: Test alert")
    assert mail["X-Production-Validation"] == "test"
    trigger, resolve = channels.pd_events()
    assert trigger["payload"]["severity"] == "info" and trigger["dedup_key"].endswith("/test")
    assert resolve == {"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": trigger["dedup_key"]}
    [status] = channels.statuses()
    assert status["context"] == "production-validation/test"  # never the gate's own context
    for name in ("slack", "email", "pagerduty", "github-status"):
        assert f"{name}: test alert " in run.stdout
    assert world.record() == before  # a test changes nothing in the run record


def test_test_alert_fails_when_a_channel_fails_and_without_channels(world: World, http: HttpServer) -> None:
    http.script(WEBHOOK_PATH, Reply(404, "no_service"))
    run = world.invoke("notify", "--test", SLACK_WEBHOOK_URL=http.url(WEBHOOK_PATH))
    assert run.returncode == 2
    assert "no_service" in run.stderr
    none = world.invoke("notify", "--test")
    assert none.returncode == 2 and "no alert channel is configured" in none.stderr


def test_dry_run_prints_what_and_to_whom_and_sends_nothing(world: World, channels: Channels) -> None:
    record(world.results)
    before = world.record()
    run = world.invoke("notify", "--dry-run")
    assert run.returncode == 0, run.stderr
    assert channels.http.requests == [] and channels.smtp.messages == []
    assert "slack would get the fail alert -> Slack incoming webhook (SLACK_WEBHOOK_URL)" in run.stdout
    assert "email would get the fail alert -> email to oncall@acme.example, mobile@acme.example" in run.stdout
    assert f"commit status 'production-validation' on {REPO}@{SHA[:12]}" in run.stdout
    assert '"routing_key": "***"' in run.stdout and '"event_action": "trigger"' in run.stdout
    assert "2 of 9 flows failed against production" in run.stdout
    channels.assert_no_secret(run.stdout, run.stderr)
    assert world.record() == before


def test_a_secret_inside_the_record_is_masked_in_every_alert(world: World, channels: Channels) -> None:
    record(world.results)
    data = world.record()
    data["flows"][0]["errorSummary"] = f"login failed for token {TOKEN} and password {SMTP_PASSWORD}"
    (world.results / "results.json").write_text(json.dumps(data))
    run = world.invoke("notify")
    assert run.returncode == 0, run.stderr
    blocks = json.dumps(channels.slack_posts()[0]["blocks"])
    assert "login failed for token *** and password ***" in blocks
    [(_, mail)] = channels.smtp.messages
    channels.assert_no_secret(blocks, mail.as_string(), json.dumps([e["payload"] for e in channels.pd_events()]),
                              world.files_text(), run.stdout, run.stderr)


# --- delivery --------------------------------------------------------------------------------------

def test_slack_limits_with_200_failed_flows(world: World, channels: Channels) -> None:
    record(world.results, total=200, failed=200, flaky=0)
    run = world.invoke("notify")
    assert run.returncode == 0, run.stderr
    [request] = channels.http.hits(WEBHOOK_PATH)
    message = request.json()
    assert len(message["blocks"]) <= 50
    assert len(request.body) < 12000
    assert "...and 180 more" in json.dumps(message["blocks"])
    assert world.record()["alerts"][0]["delivered"] is True  # Slack's own checks accepted it
    # every flow still reaches people by email
    [(_, mail)] = channels.smtp.messages
    assert "...and 100 more" in plain_text(mail)


def test_slack_payload_stays_within_limits_whatever_the_flows_say() -> None:
    run = RunRecord(runId="r", job=Job(jobId="j"))
    long = "x" * 5000
    run.flows = [FlowResult(f"{'n' * 300}-{i}.yaml", "n", "failed", 1, errorSummary=long,
                            attempts=[Attempt(1, "failed", 1, 1, "d", "t", long)]) for i in range(200)]
    run.flows += [FlowResult(f"f{i}.yaml", "f", "flaky", 0, errorSummary=long) for i in range(200)]
    run.stages["build"] = Stage("error", "t", "t", long)
    run.verdict = "fail"
    body = slack_channel.payload(build_alert(run, "fail", AlertContext(run_url="https://x/" + "r" * 1000)))
    assert len(body["blocks"]) <= 50 and len(json.dumps(body)) < 12000
    for block in body["blocks"]:
        if block["type"] == "section" and "text" in block:
            assert len(block["text"]["text"]) <= 3000
    # a tighter budget was needed here; whatever is cut is counted
    failed_text = next(b["text"]["text"] for b in body["blocks"] if b.get("text", {}).get("text", "").startswith(
        "*Failed flows*"))
    shown = failed_text.count("\n• ")
    assert 0 < shown < 200 and f"...and {200 - shown} more" in failed_text
    assert re.search(r"\.\.\.and \d+ more", json.dumps(body).split("Flaky flows")[1])


def test_429_with_retry_after_then_success(world: World, channels: Channels) -> None:
    channels.http.script(WEBHOOK_PATH, Reply(429, "rate_limited", {"Retry-After": "1"}), slack)
    record(world.results)
    run = world.invoke("notify")
    assert run.returncode == 0, run.stderr
    first, second = channels.http.hits(WEBHOOK_PATH)
    assert second.at - first.at >= 0.9  # waited as the server asked, not the 0.05 s backoff
    [slack_alert] = [a for a in world.record()["alerts"] if a["channel"] == "slack"]
    assert slack_alert["delivered"] is True and slack_alert["attempts"] == 2


def test_retry_after_is_capped(world: World, channels: Channels) -> None:
    channels.http.script(WEBHOOK_PATH, Reply(429, "rate_limited", {"Retry-After": "3600"}), slack)
    record(world.results)
    run = world.invoke("notify", INVOKE_NOTIFY_MAX_RETRY_AFTER="0.2", timeout=60)
    assert run.returncode == 0, run.stderr
    assert len(channels.http.hits(WEBHOOK_PATH)) == 2


def test_500_twice_then_success(world: World, channels: Channels) -> None:
    channels.http.script("/v2/enqueue", Reply(500, {"status": "error"}), Reply(502, "Bad Gateway"), pagerduty)
    record(world.results)
    run = world.invoke("notify")
    assert run.returncode == 0, run.stderr
    assert len(channels.http.hits("/v2/enqueue")) == 3
    [pd] = [a for a in world.record()["alerts"] if a["channel"] == "pagerduty"]
    assert pd["delivered"] is True and pd["attempts"] == 3 and pd["httpStatus"] == 202


def test_5xx_until_retries_run_out(world: World, channels: Channels) -> None:
    channels.http.script(WEBHOOK_PATH, Reply(500, "rollup_error"))
    record(world.results)
    run = world.invoke("notify", INVOKE_NOTIFY_RETRIES="2")
    assert run.returncode == 0
    assert len(channels.http.hits(WEBHOOK_PATH)) == 3
    assert "server error (HTTP 500: rollup_error); gave up after 3 attempts" in run.stderr


def test_404_no_service_is_not_retried_and_the_others_still_go(world: World, channels: Channels) -> None:
    summary = actions_env(world)
    channels.http.script(WEBHOOK_PATH, Reply(404, "no_service"))
    record(world.results)
    run = world.invoke("notify")
    assert run.returncode == 0, run.stderr  # a delivery failure never changes the outcome
    assert len(channels.http.hits(WEBHOOK_PATH)) == 1
    assert "::error title=slack alert not delivered::Slack webhook refused the alert: channel misconfigured " \
           "(HTTP 404: no_service)" in run.stdout
    assert "the webhook was removed or disabled" in run.stdout
    assert len(channels.pd_events()) == 1 and len(channels.statuses()) == 1 and len(channels.smtp.messages) == 1
    saved = world.record()
    [failed] = [a for a in saved["alerts"] if not a["delivered"]]
    assert failed["channel"] == "slack" and failed["httpStatus"] == 404 and "no_service" in failed["detail"]
    assert saved["verdict"] == "fail" and saved["stages"]["notify"]["outcome"] == "error"
    assert "| slack | fail | **no** |" in summary.read_text()
    assert "Alerts: 3 of 4 delivered; not delivered: slack (the verdict stays fail)" in run.stdout
    channels.assert_no_secret(run.stdout, run.stderr, world.files_text(), summary.read_text())


def test_a_200_that_is_not_slacks_ok_is_not_a_delivery(world: World, channels: Channels) -> None:
    channels.http.script(WEBHOOK_PATH, Reply(200, "<html>Sign in to continue</html>"))  # a proxy's login page
    record(world.results)
    run = world.invoke("notify")
    assert run.returncode == 0
    [failed] = [a for a in world.record()["alerts"] if not a["delivered"]]
    assert failed["channel"] == "slack" and failed["httpStatus"] == 200
    assert "answered HTTP 200 without `ok`" in failed["detail"]
    channels.assert_no_secret(run.stdout, run.stderr, world.files_text())


def test_pagerduty_invalid_event_is_reported_with_the_answer(world: World, channels: Channels) -> None:
    record(world.results)
    run = world.invoke("notify", PAGERDUTY_ROUTING_KEY="too-short-key")
    assert run.returncode == 0
    assert len(channels.http.hits("/v2/enqueue")) == 1
    assert "Length of 'routing_key' is incorrect" in run.stderr
    assert "the 32-character integration key" in run.stderr


def test_connection_refused_is_retried_then_reported(world: World, channels: Channels) -> None:
    closed = f"http://127.0.0.1:{free_port()}{WEBHOOK_PATH}"
    record(world.results)
    run = world.invoke("notify", SLACK_WEBHOOK_URL=closed, INVOKE_NOTIFY_RETRIES="1")
    assert run.returncode == 0
    assert "Slack webhook: could not reach 127.0.0.1:" in run.stderr
    assert "connection refused; gave up after 2 attempts" in run.stderr
    assert WEBHOOK_PATH not in run.stdout + run.stderr + world.files_text()
    assert len(channels.pd_events()) == 1


def test_webhook_must_be_https_except_loopback(world: World, channels: Channels) -> None:
    record(world.results)
    run = world.invoke("notify", SLACK_WEBHOOK_URL=f"http://hooks.example.com{WEBHOOK_PATH}")
    assert run.returncode == 0
    assert "SLACK_WEBHOOK_URL must be an https URL" in run.stderr
    assert WEBHOOK_PATH not in run.stdout + run.stderr
    with pytest.raises(DeliveryFailed):
        check_url("http://10.0.0.1/x", "X")
    check_url("https://hooks.slack.com/services/x", "X")
    check_url("http://localhost:8080/x", "X")
    check_url("http://[::1]:8080/x", "X")


def test_smtp_auth_failure(world: World, channels: Channels) -> None:
    record(world.results)
    run = world.invoke("notify", SMTP_PASSWORD="wrong-password-123")
    assert run.returncode == 0
    # smtplib tries each mechanism the server offers (PLAIN, then LOGIN); we never retry a refused login
    assert channels.smtp.logins == [(SMTP_USER, False), (SMTP_USER, False)]
    assert "the SMTP server refused the login (535" in run.stderr
    assert "check SMTP_USERNAME and SMTP_PASSWORD" in run.stderr
    assert "wrong-password-123" not in run.stdout + run.stderr + world.files_text()
    assert channels.smtp.messages == [] and len(channels.slack_posts()) == 1
    [email] = [a for a in world.record()["alerts"] if a["channel"] == "email"]
    assert email["attempts"] == 1


def test_smtp_refused_recipients_are_reported(world: World, channels: Channels) -> None:
    record(world.results)
    run = world.invoke("notify", ALERT_EMAIL_TO="oncall@acme.example,gone@example.com")
    assert run.returncode == 0
    [(envelope, _)] = channels.smtp.messages
    assert envelope.rcpt_tos == ["oncall@acme.example"]
    assert "email delivered to 1 of 2 recipients; refused: gone@example.com (550 5.1.1" in run.stderr
    [email] = [a for a in world.record()["alerts"] if a["channel"] == "email"]
    assert email["delivered"] is False and "gone@example.com" in email["detail"]


def test_smtp_temporary_failure_is_retried(world: World, channels: Channels) -> None:
    channels.smtp.answer_data("451 4.3.0 Temporary local problem, try again")
    record(world.results)
    run = world.invoke("notify")
    assert run.returncode == 0, run.stderr
    assert channels.smtp.data_commands == 2 and len(channels.smtp.messages) == 1
    [email] = [a for a in world.record()["alerts"] if a["channel"] == "email"]
    assert email["delivered"] is True and email["attempts"] == 2


def test_smtp_gives_up_on_temporary_failures_and_never_retries_a_permanent_one(world: World,
                                                                                channels: Channels) -> None:
    record(world.results)
    channels.smtp.answer_data(*["451 4.3.0 Temporary local problem, try again"] * 2)
    run = world.invoke("notify", INVOKE_NOTIFY_RETRIES="1")
    assert ("email: temporary SMTP failure (451 4.3.0 Temporary local problem, try again); gave up after 2 attempts"
            in run.stderr)
    assert channels.smtp.data_commands == 2 and channels.smtp.messages == []
    channels.smtp.answer_data("554 5.7.1 Message rejected as spam")
    run = world.invoke("notify")
    assert "the SMTP server refused the message (554 5.7.1 Message rejected as spam)" in run.stderr
    assert channels.smtp.data_commands == 3 and channels.smtp.messages == []
    email = [a for a in world.record()["alerts"] if a["channel"] == "email"][-1]  # this run's
    assert email["delivered"] is False and email["attempts"] == 1


def test_smtp_connection_refused_is_retried_then_reported(world: World, channels: Channels) -> None:
    port = free_port()
    record(world.results)
    run = world.invoke("notify", SMTP_PORT=str(port), INVOKE_NOTIFY_RETRIES="1")
    assert run.returncode == 0
    assert f"email: could not reach 127.0.0.1:{port}: connection refused; gave up after 2 attempts" in run.stderr
    assert f"check SMTP_HOST and SMTP_PORT (127.0.0.1:{port}) and the network" in run.stderr
    [email] = [a for a in world.record()["alerts"] if a["channel"] == "email"]
    assert email["delivered"] is False and email["attempts"] == 2


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # aiosmtpd; the socket is TLS
def test_smtp_implicit_tls(world: World, channels: Channels) -> None:
    record(world.results)
    with SmtpServer(world.root, implicit_tls=True, user=SMTP_USER, password=SMTP_PASSWORD) as tls_server:
        run = world.invoke("notify", SMTP_PORT=str(tls_server.port), SMTP_SECURITY="ssl",
                           SSL_CERT_FILE=str(tls_server.ca_file))
        assert run.returncode == 0, run.stderr
        assert tls_server.messages, run.stdout + run.stderr
        [(_, mail)] = tls_server.messages
        assert mail["Subject"].startswith("[production-validation] FAIL")
        assert tls_server.logins == [(SMTP_USER, True)]


def test_smtp_certificate_must_be_trusted(world: World, channels: Channels) -> None:
    record(world.results)
    run = world.invoke("notify", SSL_CERT_FILE=str(world.root / "missing-ca.pem"))
    assert run.returncode == 0
    assert "TLS with the SMTP server 127.0.0.1" in run.stderr and "not trusted" in run.stderr
    assert channels.smtp.messages == []


# --- settings, plan, record ------------------------------------------------------------------------

def test_no_channel_is_a_warning(world: World) -> None:
    record(world.results)
    run = world.invoke("notify")
    assert run.returncode == 0
    assert "no alert channel is configured" in run.stderr
    assert world.record()["stages"]["notify"]["outcome"] == "pass"


def test_no_record_is_an_error(world: World) -> None:
    run = world.invoke("notify", "--results-dir", "nowhere")
    assert run.returncode == 2
    assert "no run record at nowhere/results.json" in run.stderr and "run `invoke validate` first" in run.stderr


def test_half_configured_email_is_named(world: World, http: HttpServer) -> None:
    record(world.results)
    run = world.invoke("notify", SMTP_HOST="127.0.0.1")
    assert "email is half configured: SMTP_HOST is set but ALERT_EMAIL_TO and ALERT_EMAIL_FROM are not" in run.stderr
    run = world.invoke("notify", SMTP_HOST="127.0.0.1", ALERT_EMAIL_TO="a@b.example")
    assert "SMTP_HOST and ALERT_EMAIL_TO are set but ALERT_EMAIL_FROM is not, so no email is sent" in run.stderr


def test_deployed_sha_from_configuration_beats_github_sha(world: World, channels: Channels) -> None:
    record(world.results)
    assert world.invoke("notify", INVOKE_NOTIFY_DEPLOYED_SHA=OTHER_SHA).returncode == 0
    assert channels.statuses() == [] and len(channels.http.hits(f"/repos/{REPO}/statuses/{OTHER_SHA}")) == 1
    assert all(a["delivered"] for a in world.record()["alerts"])


def test_a_deployed_commit_github_does_not_have_is_named_with_its_fix(world: World, channels: Channels) -> None:
    unknown = "1111111111111111111111111111111111111111"
    record(world.results)
    run = world.invoke("notify", INVOKE_NOTIFY_DEPLOYED_SHA=unknown)
    assert run.returncode == 0
    assert f"(HTTP 422: {{\"message\": \"No commit found for SHA: {unknown}\"" in run.stderr
    [status] = [a for a in world.record()["alerts"] if a["channel"] == "github-status"]
    assert status["delivered"] is False and status["httpStatus"] == 422 and status["attempts"] == 1
    assert status["fix"] == "the deployed commit is not in the repository: check notify.deployed_sha (or GITHUB_SHA)"
    # GitHub answers 422 to a status it finds invalid too: that one is not about the commit
    too_long = json.dumps({"message": "Validation Failed",
                           "errors": [{"message": "description is too long (maximum is 140 characters)"}]})
    assert "prodval bug" in explain_status(422, too_long) and "commit" not in explain_status(422, too_long)


def test_report_link_when_the_artifacts_url_is_known(world: World, channels: Channels) -> None:
    record(world.results)
    (world.results / "report.html").write_text("<html></html>")
    run = world.invoke("notify", INVOKE_NOTIFY_ARTIFACTS_URL="https://artifacts.example.com/{run_id}")
    assert run.returncode == 0, run.stderr
    blocks = json.dumps(channels.slack_posts()[0]["blocks"])
    assert f"<https://artifacts.example.com/gh-{RUN_ID}-1/report.html|HTML report>" in blocks
    assert f"<https://artifacts.example.com/gh-{RUN_ID}-1|Artifacts>" in blocks


def test_plan() -> None:
    everything = ["slack", "email", "pagerduty", "github-status"]
    assert plan("fail", None, "failure", everything) == [(c, "fail") for c in everything]
    assert plan("error", "pass", "failure", everything) == [(c, "error") for c in everything]
    assert plan("pass", None, "failure", everything) == [("pagerduty", "pass"), ("github-status", "pass")]
    assert plan("pass", "error", "failure", everything) == [
        ("slack", "recovery"), ("email", "recovery"), ("pagerduty", "pass"), ("github-status", "pass")]
    assert plan("pass", "pass", "always", ["slack"]) == [("slack", "pass")]


def test_pagerduty_lists_at_most_50_failed_and_50_flaky_flows_and_counts_the_rest() -> None:
    run = RunRecord(runId="r", job=Job(jobId="j"))
    run.flows = [FlowResult(f"f{i:03d}.yaml", "f", status, 1, errorSummary="boom")
                 for status in ("failed", "flaky") for i in range(60)]
    event = PagerDuty(ROUTING_KEY, "k", "ci").events(build_alert(run, "fail", AlertContext()))[0]
    details = event["payload"]["custom_details"]
    for key in ("failed_flows", "flaky_flows"):
        assert len(details[key]) == 51 and details[key][-1] == "...and 10 more"


def test_dedup_key_is_deterministic_per_repository_environment_and_check() -> None:
    key = dedup_key(REPO, "production", "production-validation")
    assert key == dedup_key(REPO, "production", "production-validation")
    assert len({key, dedup_key("acme/other", "production", "production-validation"),
                dedup_key(REPO, "staging", "production-validation"), dedup_key(REPO, "production", "smoke")}) == 4
    assert len(dedup_key("o/" + "r" * 400, "production", "c")) == 255


def git_checkout(folder: Path, origin: str = "") -> Path:
    """A real git checkout at `folder`, with `origin` as its origin remote when given."""
    folder.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(folder)], check=True)
    if origin:
        subprocess.run(["git", "-C", str(folder), "remote", "add", "origin", origin], check=True)
    return folder


def pagerduty_dedup(folder: Path, monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    """The dedup key `invoke notify` uses when run from `folder`."""
    monkeypatch.chdir(folder)
    [channel], _ = configure_channels(load_notify({}, {}, {}), {"PAGERDUTY_ROUTING_KEY": ROUTING_KEY, **env})
    assert isinstance(channel, PagerDuty)
    return channel.dedup


def test_two_checkouts_of_one_origin_share_the_dedup_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = f"prodval/{REPO}/production/production-validation"
    first = git_checkout(tmp_path / "exercise-log", f"https://github.com/{REPO}.git")
    second = git_checkout(tmp_path / "work" / "app-copy", f"git@github.com:{REPO}.git")
    (second / ".maestro").mkdir()
    assert pagerduty_dedup(first, monkeypatch) == key
    assert pagerduty_dedup(second, monkeypatch) == key
    assert pagerduty_dedup(second / ".maestro", monkeypatch) == key
    assert pagerduty_dedup(second, monkeypatch, GITHUB_REPOSITORY="acme/other") == \
        "prodval/acme/other/production/production-validation"  # GITHUB_REPOSITORY wins


def test_dedup_key_falls_back_to_the_folder_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    no_origin = git_checkout(tmp_path / "exercise-log-local")
    assert pagerduty_dedup(no_origin, monkeypatch) == "prodval/exercise-log-local/production/production-validation"
    local_clone = git_checkout(tmp_path / "mirror", str(no_origin))  # a local path names no owner/name
    assert pagerduty_dedup(local_clone, monkeypatch) == "prodval/mirror/production/production-validation"
    not_a_checkout = tmp_path / "unpacked"
    not_a_checkout.mkdir()
    assert pagerduty_dedup(not_a_checkout, monkeypatch, GIT_CEILING_DIRECTORIES=str(tmp_path)) == \
        "prodval/unpacked/production/production-validation"


@pytest.mark.parametrize("url", [
    f"https://github.com/{REPO}.git", f"https://github.com/{REPO}", f"https://github.com/{REPO}/",
    f"https://x-access-token:{TOKEN}@github.com/{REPO}.git", f"git@github.com:{REPO}.git", f"github.com:{REPO}",
    f"ssh://git@github.com/{REPO}.git", f"ssh://git@github.com:22/{REPO}.git", f"git@github.com:{REPO}.git\n",
])
def test_owner_name_from_remote_urls(url: str) -> None:
    assert owner_name(url) == REPO


def test_no_owner_name_from_local_or_short_remotes() -> None:
    for url in ("", "/srv/git/exercise-log.git", "../exercise-log", f"file:///srv/{REPO}.git",
                "https://github.com/exercise-log"):
        assert owner_name(url) == ""


def test_notify_settings() -> None:
    settings = load_notify({"alert_on": "always", "retries": "5"}, {"results_dir": "out"}, {})
    assert settings.on == "always" and settings.retries == 5 and settings.results_dir == Path("out")
    assert load_notify({"alert_on": "always"}, {}, {"on": "failure", "results_dir": "x"}).on == "failure"
    with pytest.raises(ConfigError, match="did you mean 'alert_on'"):
        load_notify({"alert_onn": "always"}, {}, {})
    with pytest.raises(ConfigError, match="did you mean 'always'"):
        load_notify({}, {}, {"on": "alwayz"})
    with pytest.raises(ConfigError, match=r"notify\.retries must be a whole number"):
        load_notify({"retries": "1.5"}, {}, {})


def test_retry_after_header() -> None:
    assert retry_after("7") == 7.0
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert retry_after("soon") is None and retry_after(None) is None
    assert RetryPolicy().max_wait == 30.0


def runner_view(stdout: str) -> tuple[list[str], list[str]]:
    """What the Actions runner makes of our stdout: (the lines it runs as workflow commands, the plain lines
    it shows outside any `::stop-commands::` fence). Both are ours to get right: every plain line fenced."""
    token, commands, unfenced = "", [], []
    for line in stdout.splitlines():
        if token:
            token = "" if line == f"::{token}::" else token
        elif line.startswith("::stop-commands::"):
            token = line.removeprefix("::stop-commands::")
        elif line.startswith("::"):
            commands.append(line)
        else:
            unfenced.append(line)
    return commands, unfenced


def test_a_warning_from_the_previous_run_lookup_keeps_the_actions_fence(world: World, channels: Channels) -> None:
    """The lookup runs in a child process: its warning is printed by notify, our own `::warning` outside the
    fence and every later plain line inside one (a child's `::<token>::` would leave them unfenced)."""
    actions_env(world)
    record(world.results, failed=0, flaky=0)  # a pass: notify asks the API for the previous run (404 here)
    run = world.invoke("notify")
    assert run.returncode == 0, run.stderr
    commands, unfenced = runner_view(run.stdout)
    assert unfenced == [], run.stdout
    [warning] = [c for c in commands if "could not read the previous run from the GitHub API" in c]
    assert warning.startswith("::warning::")
    later = run.stdout[run.stdout.index(warning):]
    assert "==> Alerts: 2 of 2 delivered" in later  # plain lines after it, fenced (asserted above)
    assert [c.split("::")[1] for c in commands if c.startswith("::warning")] == ["warning"]


def test_a_previous_run_answer_it_cannot_read_is_a_warning_and_the_alerts_still_go(world: World,
                                                                                   channels: Channels) -> None:
    actions_env(world)
    channels.http.script(f"/repos/{REPO}/actions/runs/{RUN_ID}", Reply(200, "[1]"))  # JSON, not an object
    record(world.results, failed=0, flaky=0)
    run = world.invoke("notify")
    assert run.returncode == 0, run.stderr
    assert "could not read the previous run from the GitHub API: the delivery process failed: AttributeError" \
        in run.stdout
    assert "Traceback" not in run.stdout + run.stderr
    assert [a["delivered"] for a in world.record()["alerts"]] == [True, True]
    assert runner_view(run.stdout)[1] == []
