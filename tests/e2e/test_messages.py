"""Messages that keep the cause (issue 15): a failed build says why, flows that did not run are said
once, email names every variable it needs, a dry run refuses what a real send refuses, the report shows
one run id and a legend for every bar it can draw.

The build cases run the real `invoke build-apk` (and the chain) against `tests/fakes/gradlew`, whose
failure outputs follow Gradle's and its wrapper's; the alerts go to a real HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alert_servers import HttpServer, serve_http, slack
from conftest import FAKES, REPO, World
from prodval.alerts.email import REQUIRED_VARS
from prodval.alerts.message import AlertContext, build_alert, text_body
from prodval.apk import build_failed, collapse_frames, gradle_failure
from prodval.outcomes import Status
from prodval.report import BAR_STATUSES, bar_status, render_report
from prodval.results import Attempt, FlowResult, Job, RunRecord, junit_xml, summary_markdown

WEBHOOK = "/services/T0AAA1111/B0BBB2222/messagesWebhookSecret7"
TRY_LINE = "> Run with --stacktrace option to get the stack trace."


@pytest.fixture
def http() -> Iterator[HttpServer]:
    yield from serve_http()


class Project:
    """The sample app's Android project with the fake gradlew, its flows, one device, Slack on 127.0.0.1."""

    def __init__(self, world: World, http: HttpServer) -> None:
        self.world = world
        self.android = world.root / "android"
        shutil.copytree(REPO / "android", self.android, ignore=shutil.ignore_patterns("build", ".gradle"))
        shutil.copy2(FAKES / "gradlew", self.android / "gradlew")
        shutil.copytree(REPO / ".maestro", world.flows, dirs_exist_ok=True)
        world.device().scenario()
        http.script(WEBHOOK, slack)
        self.http = http
        self.scenario_path = world.root / "fake-gradle-scenario.json"
        world.extra_env.update({"SLACK_WEBHOOK_URL": http.url(WEBHOOK), "FAKE_GRADLE_SCENARIO": str(self.scenario_path)})

    def scenario(self, **data: Any) -> None:
        self.scenario_path.write_text(json.dumps(data))

    def gradlew(self) -> tuple[Path, Path]:
        """Run the fake wrapper as build-apk would; its stdout and stderr as files (as build-apk keeps them)."""
        out, err = self.world.root / "gradle-stdout.log", self.world.root / "gradle-stderr.log"
        with open(out, "w") as stdout, open(err, "w") as stderr:
            done = subprocess.run([str(self.android / "gradlew"), ":app:assembleRelease"], cwd=self.android,
                                  stdout=stdout, stderr=stderr, env=self.world.env(), check=False, timeout=60)
        assert done.returncode == 1
        return out, err

    def slack_texts(self) -> list[str]:
        return [json.dumps(r.json()) for r in self.http.hits(WEBHOOK)]


@pytest.fixture
def project(world: World, http: HttpServer) -> Project:
    return Project(world, http)


# ---- 1. a failed build keeps its cause ----------------------------------------------------------------

def test_the_wrapper_that_cannot_download_gradle_says_the_build_needs_services_gradle_org(project: Project) -> None:
    """The wrapper prints `Downloading <url>`, the exception and 26 frames: the cause reaches the error,
    the record, summary.md, the console and the alert, and the fix says what to allow or cache."""
    world = project.world
    project.scenario(fail="wrapper-download")
    chain = world.invoke("build-apk", "validate", "notify")
    assert chain.returncode == 2, chain.stdout + chain.stderr
    error = world.record()["stages"]["build"]["error"]
    first = error.splitlines()[0]
    assert first == ("the build failed: it needs network access to services.gradle.org "
                     "(the Gradle wrapper downloads Gradle from there)")
    assert "  exception: java.net.UnknownHostException: services.gradle.org" in error
    assert "fix: allow the build to reach services.gradle.org, or cache ~/.gradle/wrapper" in error
    # the tail shows the exception and what the wrapper downloaded, not 15 of its stack frames
    assert "Exception in thread \"main\" java.net.UnknownHostException: services.gradle.org" in error
    assert "Downloading https://services.gradle.org/distributions/gradle-8.7-bin.zip" in error
    assert "\tat " not in error and "... 26 stack frames" in error
    assert "fix the build" not in error  # the generic fix is for causes it cannot name
    summary = (world.results / "summary.md").read_text()
    assert f"**Validation could not run: {first}**" in summary
    assert "exception: java.net.UnknownHostException: services.gradle.org" in summary
    assert first in chain.stderr  # the console's error
    [slack_message] = project.slack_texts()
    assert f"ERROR: Validation could not run: {first}" in slack_message
    assert "cache ~/.gradle/wrapper" in slack_message and "UnknownHostException: services.gradle.org" in slack_message


def test_a_connection_time_out_while_downloading_gradle_names_the_host_from_the_download(project: Project) -> None:
    project.scenario(fail="wrapper-download", exception="ConnectException")
    done = project.world.invoke("build-apk")
    assert done.returncode == 2
    error = project.world.record()["stages"]["build"]["error"]
    assert error.startswith("the build failed: it needs network access to services.gradle.org (the Gradle wrapper")
    assert "  exception: java.net.ConnectException: Connection timed out" in error
    assert "cache ~/.gradle/wrapper" in error


def test_a_dependency_gradle_cannot_download_names_its_host_and_the_gradle_cache(project: Project) -> None:
    project.scenario(fail="dependencies")
    done = project.world.invoke("build-apk")
    assert done.returncode == 2
    error = project.world.record()["stages"]["build"]["error"]
    assert error.splitlines()[0] == ("the build failed: it needs network access to dl.google.com (Gradle downloads "
                                     "the build's plugins and dependencies from there)")
    what = error.split("  what went wrong:\n", 1)[1]
    assert what.startswith("    Execution failed for task ':app:checkReleaseAarMetadata'.\n")
    assert "> dl.google.com: Name or service not known" in what
    assert "cache ~/.gradle/caches" in error and "~/.gradle/wrapper" not in error


def test_several_gradle_failures_keep_every_what_went_wrong_block_numbered(project: Project) -> None:
    project.scenario(fail="multiple")
    done = project.world.invoke("build-apk")
    assert done.returncode == 2
    error = project.world.record()["stages"]["build"]["error"]
    lines = error.splitlines()
    assert lines[0] == ("the build failed: Execution failed for task ':app:lintVitalAnalyzeRelease'. "
                        "(and 1 more failure)")
    assert lines[1] == "  what went wrong (2 failures):"
    assert lines[2] == "    1: Execution failed for task ':app:lintVitalAnalyzeRelease'."
    assert lines[3] == "       > Lint found errors in the project; aborting build."
    assert "    2: Execution failed for task ':app:compileReleaseKotlin'." in lines
    assert "Unresolved reference: exerciseList" in error.split("\n  errors:\n", 1)[1]
    assert TRY_LINE not in "\n".join(lines[:12])  # Gradle's advice is not the cause
    assert "fix: fix the build (its whole output is in build/validation/build/)" in error  # the generic fix


def test_a_compile_error_leads_with_what_went_wrong_and_keeps_the_generic_fix(project: Project) -> None:
    project.scenario(fail="compile")
    assert project.world.invoke("build-apk").returncode == 2
    error = project.world.record()["stages"]["build"]["error"]
    assert error.splitlines()[:3] == [
        "the build failed: Execution failed for task ':app:compileReleaseKotlin'.",
        "  what went wrong:",
        "    Execution failed for task ':app:compileReleaseKotlin'.",
    ]
    assert "  command: `./gradlew :app:assembleRelease -PAPI_BASE_URL=https://api.example.com` exited with code 1" \
        in error
    assert "exception:" not in error
    assert "fix: fix the build (its whole output is in build/validation/build/), then run it again" in error


def test_the_alert_text_shows_the_cause_within_its_first_lines(project: Project) -> None:
    """An email shows the first 20 lines of the stage's error: the cause is among them, not the frames."""
    project.scenario(fail="wrapper-download")
    project.world.invoke("build-apk")
    record = RunRecord.from_json(project.world.record())
    body = text_body(build_alert(record, "error", AlertContext()))
    why = body.split("Why it could not run:\n", 1)[1]
    assert "exception: java.net.UnknownHostException: services.gradle.org" in why
    assert "it needs network access to services.gradle.org" in body.splitlines()[0]


def test_gradle_failure_reads_the_real_shapes(project: Project) -> None:
    """The parser on the fake wrapper's and Gradle's own outputs, without a run."""
    project.scenario(fail="wrapper-download")
    wrapper = gradle_failure(*project.gradlew())
    assert (wrapper.host, wrapper.wrapper, wrapper.unreachable, wrapper.what_went_wrong) == (
        "services.gradle.org", True, True, ())
    assert wrapper.exception == "java.net.UnknownHostException: services.gradle.org"
    project.scenario(fail="multiple")
    many = gradle_failure(*project.gradlew())
    assert many.failures == 2 and len(many.what_went_wrong) == 2 and not many.unreachable
    assert all(TRY_LINE not in block and "=====" not in block for block in many.what_went_wrong)
    assert many.what_went_wrong[0].endswith("create a baseline to see only new errors.")
    project.scenario(fail="compile")
    one = gradle_failure(*project.gradlew())
    assert (one.failures, one.exception, one.host) == (0, "", "")


def test_a_failure_without_gradle_report_keeps_the_command_as_its_first_line(tmp_path: Path) -> None:
    out, err = tmp_path / "out", tmp_path / "err"
    out.write_text("building...\n")
    err.write_text("eas: build profile 'production' not found\n")
    failure = build_failed("eas build", 1, out.read_text(), err.read_text(), (out, err), "build/validation/build", str)
    assert failure.message.splitlines()[0] == "the build failed: `eas build` exited with code 1"
    assert "command:" not in failure.message and "what went wrong" not in failure.message


def test_a_refused_connection_that_names_no_server_keeps_gradles_own_words(tmp_path: Path) -> None:
    """Only a failure that names the server it could not reach is said to need the network."""
    out, err = tmp_path / "out", tmp_path / "err"
    out.write_text("> Task :app:installRelease FAILED\n")
    err.write_text("\nFAILURE: Build failed with an exception.\n\n* What went wrong:\nExecution failed for task "
                   "':app:installRelease'.\n> com.android.ddmlib.AdbCommandRejectedException: Connection refused\n\n"
                   "* Try:\n> Run with --stacktrace option to get the stack trace.\n\nBUILD FAILED in 2s\n")
    said = gradle_failure(out, err)
    assert (said.unreachable, said.host) == (False, "")
    assert said.cause() == "Execution failed for task ':app:installRelease'."
    assert said.fix("logs").startswith("fix the build")


def test_stack_frames_collapse_to_one_line_a_run() -> None:
    text = "Exception in thread \"main\" java.lang.RuntimeException: x\n\tat a.B.c(B.java:1)\n\tat a.B.d(B.java:2)\n" \
           "Caused by: java.net.ConnectException: Connection refused\n\tat e.F.g(F.java:3)\n\t... 4 more"
    assert collapse_frames(text).splitlines() == [
        "Exception in thread \"main\" java.lang.RuntimeException: x", "\t... 2 stack frames",
        "Caused by: java.net.ConnectException: Connection refused", "\t... 2 stack frames"]


# ---- 2. flows that did not run are said once -------------------------------------------------------------

def test_a_failed_build_says_once_that_the_flows_did_not_run(project: Project) -> None:
    world = project.world
    project.scenario(fail="compile")
    chain = world.invoke("build-apk", "validate", "notify", "--dry-run", GITHUB_ACTIONS="true")
    assert chain.returncode == 2, chain.stdout + chain.stderr
    flows = sorted(f["flowFileName"] for f in world.record()["flows"])
    assert len(flows) == 4
    # the annotations: one for the four flows, none that says "not_run: not run"
    [group] = re.findall(r"^::error title=4 flows not run%3A build failed::(.*)$", chain.stdout, re.M)
    assert sorted(group.split(", ")) == flows
    assert "not_run::" not in chain.stdout and "not run: not run" not in chain.stdout
    # summary.md: one line for the four, the table's rows without the repetition
    summary = (world.results / "summary.md").read_text()
    assert summary.count("not run: build failed") == 1
    assert "⏭️ 4 flows not run: build failed" in summary
    for name in flows:
        assert f"| ⏭️ | `{name}` | not_run | 0 | 0.0s |  |  |" in summary
    # junit: <skipped> already says skipped; its message is the reason
    skipped = [c.find("skipped") for c in ET.parse(world.results / "junit.xml").getroot().iter("testcase")]
    assert [s.get("message") if s is not None else None for s in skipped] == ["build failed"] * 4
    # the local console too
    local = world.invoke("build-apk", "validate")
    assert "not_run: not run" not in local.stderr and "error: 4 flows not run: build failed: " in local.stderr


def test_flows_not_run_for_different_reasons_get_a_line_each() -> None:
    flows = [FlowResult("a.yaml", "A", Status.FAILED, 1, attempts=[Attempt(1, "failed", 1, 5, "d", "t", "boom")],
                        errorSummary="boom"),
             FlowResult("b.yaml", "B", Status.NOT_RUN, errorSummary="not run: b.yaml (b), an executionOrder flow, "
                                                                    "ended failed"),
             FlowResult("c.yaml", "C", Status.NOT_RUN, errorSummary="not run: interrupted"),
             FlowResult("d.yaml", "D", Status.NOT_RUN, errorSummary="not run: interrupted")]
    record = RunRecord(runId="r", job=Job(jobId="j"), flows=flows, verdict="fail")
    summary = summary_markdown(record)
    assert "⏭️ 1 flow not run: b.yaml (b), an executionOrder flow, ended failed (`b.yaml`)" in summary
    assert "⏭️ 2 flows not run: interrupted (`c.yaml`, `d.yaml`)" in summary
    assert summary.count("interrupted") == 1 and "| boom |" in summary
    messages = [c.find("skipped") for c in ET.fromstring(junit_xml(record).split("\n", 1)[1]).iter("testcase")]
    assert [m.get("message") for m in messages if m is not None] == [
        "b.yaml (b), an executionOrder flow, ended failed", "interrupted", "interrupted"]


# ---- 3. email names every variable it needs -----------------------------------------------------------

def test_email_requires_exactly_the_variables_the_warning_names(world: World) -> None:
    world.results.mkdir(parents=True)
    (world.results / "results.json").write_text(json.dumps(_record().to_json()))
    full = {"SMTP_HOST": "smtp.example.com", "ALERT_EMAIL_TO": "a@example.com", "ALERT_EMAIL_FROM": "v@example.com"}
    assert set(full) == set(REQUIRED_VARS)
    run = world.invoke("notify", "--dry-run", **full)
    assert "dry run: email would get the error alert" in run.stdout and "half configured" not in run.stderr
    for name in REQUIRED_VARS:  # without any one of them no email goes, and what is said names it
        run = world.invoke("notify", "--dry-run", **{k: v for k, v in full.items() if k != name})
        assert "dry run: email would get" not in run.stdout, name
        assert f"{name} is not" in run.stderr or f"and {name} are not" in run.stderr, (name, run.stderr)


def test_the_half_configured_email_warning_names_every_variable(world: World) -> None:
    _record().job.startTime = ""
    world.results.mkdir(parents=True)
    (world.results / "results.json").write_text(json.dumps(_record().to_json()))
    run = world.invoke("notify", SMTP_HOST="smtp.example.com")
    assert ("email is half configured: SMTP_HOST is set but ALERT_EMAIL_TO and ALERT_EMAIL_FROM are not, so no "
            "email is sent (email needs SMTP_HOST, ALERT_EMAIL_TO and ALERT_EMAIL_FROM;") in run.stderr
    run = world.invoke("notify", ALERT_EMAIL_FROM="v@example.com")  # said, not silently ignored
    assert "ALERT_EMAIL_FROM is set but SMTP_HOST and ALERT_EMAIL_TO are not" in run.stderr
    run = world.invoke("notify", "--test")
    assert "SMTP_HOST + ALERT_EMAIL_TO + ALERT_EMAIL_FROM" in run.stderr


def _record() -> RunRecord:
    flow = FlowResult("a.yaml", "A", Status.ERROR, 1, attempts=[Attempt(1, "error", 1, 5, "d", "t", "x")],
                      errorSummary="x")
    return RunRecord(runId="r-1", job=Job(jobId="j"), flows=[flow], verdict="error")


# ---- 4. a dry run accepts only what a real send accepts -------------------------------------------------

@pytest.mark.parametrize("variable, value", [
    ("SLACK_WEBHOOK_URL", "http://hooks.slack.com/services/T0/B0/plainHttpSecret1"),
    ("PAGERDUTY_EVENTS_URL", "http://events.pagerduty.com/v2/enqueue"),
    ("GITHUB_API_URL", "http://api.github.com"),
])
def test_dry_run_refuses_a_plain_http_url_as_a_real_send_does(world: World, variable: str, value: str) -> None:
    world.results.mkdir(parents=True)
    (world.results / "results.json").write_text(json.dumps(_record().to_json()))
    # only the channel under test is configured: its real send is refused before any request, and no other
    # channel reaches for the network (there is none here)
    companions = {"SLACK_WEBHOOK_URL": {},
                  "PAGERDUTY_EVENTS_URL": {"PAGERDUTY_ROUTING_KEY": "R0UT1NGKEY0123456789abcdefR0UT1N"},
                  "GITHUB_API_URL": {"GITHUB_TOKEN": "ghs_SecretInstallationToken0123456789",
                                     "GITHUB_REPOSITORY": "acme/app",
                                     "GITHUB_SHA": "0123456789abcdef0123456789abcdef01234567"}}
    env = {**companions[variable], variable: value}
    refusal = f"{variable} must be an https URL (plain http is only allowed to 127.0.0.1 or localhost)"
    dry = world.invoke("notify", "--dry-run", **env)
    assert dry.returncode == 0, dry.stderr  # as a real send: a refused channel does not change notify's exit
    assert refusal in dry.stderr and "alert would not be delivered" in dry.stderr
    assert "plainHttpSecret1" not in dry.stdout + dry.stderr
    channel = {"SLACK_WEBHOOK_URL": "slack", "PAGERDUTY_EVENTS_URL": "pagerduty", "GITHUB_API_URL": "github-status"}
    assert f"dry run: {channel[variable]} would get" not in dry.stdout
    test = world.invoke("notify", "--test", "--dry-run", **env)
    assert test.returncode == 2 and refusal in test.stderr  # a --test that would not be delivered fails
    real = world.invoke("notify", **env)  # the real send refuses it before any request, with the same words
    assert refusal in real.stderr
    [refused] = [a for a in world.record()["alerts"] if a["channel"] == channel[variable]]
    assert refused["delivered"] is False and refusal in refused["detail"]


def test_dry_run_refuses_smtp_credentials_without_tls_as_a_real_send_does(world: World) -> None:
    world.results.mkdir(parents=True)
    (world.results / "results.json").write_text(json.dumps(_record().to_json()))
    env = {"SMTP_HOST": "smtp.example.com", "SMTP_SECURITY": "none", "SMTP_USERNAME": "bot", "SMTP_PASSWORD": "pw-1234",
           "ALERT_EMAIL_TO": "a@example.com", "ALERT_EMAIL_FROM": "v@example.com"}
    dry = world.invoke("notify", "--dry-run", **env)
    assert "refusing to send SMTP credentials to smtp.example.com without TLS" in dry.stderr
    assert "dry run: email would get" not in dry.stdout


def test_dry_run_still_shows_a_loopback_http_url(world: World, http: HttpServer) -> None:
    world.results.mkdir(parents=True)
    (world.results / "results.json").write_text(json.dumps(_record().to_json()))
    dry = world.invoke("notify", "--dry-run", SLACK_WEBHOOK_URL=http.url(WEBHOOK))
    assert dry.returncode == 0 and "dry run: slack would get the error alert" in dry.stdout
    assert "would not be delivered" not in dry.stderr and http.hits(WEBHOOK) == []


# ---- 5. the report: one run id, a legend for every bar ------------------------------------------------------

def _every_status() -> RunRecord:
    def attempt(number: int, status: str, start: str) -> Attempt:
        return Attempt(number, status, 0, 1000, "emulator-5554", f"2026-11-30T00:00:{start}Z")

    flows = [
        FlowResult("p.yaml", "P", Status.PASSED, 0, attempts=[attempt(1, "passed", "00")]),
        FlowResult("f.yaml", "F", Status.FAILED, 1, attempts=[attempt(1, "failed", "02")], errorSummary="no"),
        FlowResult("k.yaml", "K", Status.FLAKY, 0, attempts=[attempt(1, "failed", "04"), attempt(2, "passed", "06")],
                   errorSummary="once"),
        FlowResult("e.yaml", "E", Status.ERROR, 1, attempts=[attempt(1, "error", "08")], errorSummary="driver"),
        FlowResult("t.yaml", "T", Status.TIMED_OUT, None, attempts=[attempt(1, "timed_out", "10")]),
        FlowResult("n.yaml", "N", Status.NOT_RUN, errorSummary="not run: interrupted"),
    ]
    return RunRecord(runId="gh-77", job=Job(jobId="77/validate", url="https://github.com/a/b/actions/runs/77",
                                            startTime="2026-11-30T00:00:00Z"), flows=flows, verdict="fail")


def test_the_legend_lists_every_status_a_bar_can_have() -> None:
    record = _every_status()
    drawn = {bar_status(f, a) for f in record.flows for a in f.attempts}
    assert drawn == set(BAR_STATUSES) == set(Status) - {Status.NOT_RUN}  # a flow that did not run has no bar
    page = render_report(record, Path("/nonexistent"))
    legend = re.search(r'<ul class="chips legend">(.*?)</ul>', page)
    assert legend is not None
    assert re.findall(r'class="chip st-(\w+)"', legend.group(1)) == list(BAR_STATUSES)
    bars = set(re.findall(r'<g class="bar st-(\w+)">', page))
    assert bars == set(BAR_STATUSES)
    assert "svg .st-flaky rect{fill:var(--flaky)}" in page  # and each has its colour (checked in Chromium too)


def test_the_report_shows_one_run_id_linked_to_its_workflow_run() -> None:
    page = render_report(_every_status(), Path("/nonexistent"))
    facts = re.findall(r"<dt>([^<]*)</dt><dd>(.*?)</dd>", page)
    runs = [(name, value) for name, value in facts if name.startswith("Run")]
    assert runs == [("Run", '<a href="https://github.com/a/b/actions/runs/77"><code>gh-77</code></a>')]
    assert "77/validate" not in page
