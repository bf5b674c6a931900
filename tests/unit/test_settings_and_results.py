"""Settings precedence, failure classification, the run record's derived files, secret masking."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from prodval.errors import ConfigError
from prodval.maestro import classify, screenshots
from prodval.results import Attempt, FlowResult, Job, RunRecord, junit_xml, summary_markdown
from prodval.secrets import Redactor
from prodval.settings import DEFAULTS, INVOKE_DEFAULTS, load

# -- settings -------------------------------------------------------------------------------------


def test_defaults() -> None:
    # what invoke hands the task when invoke.yaml sets nothing: every key registered, as None
    settings = load(INVOKE_DEFAULTS, {})
    assert settings.flows == Path(".maestro")
    assert settings.results_dir == Path("build/validation")
    assert (settings.retries, settings.flow_timeout, settings.env) == (1, 600, ())


def test_command_line_beats_config_and_none_does_not_override() -> None:
    section = {**DEFAULTS, "retries": 3, "include_tags": "production, smoke", "env": {"API": "https://x"}}
    settings = load(section, {"retries": "0", "flows": None, "env": ["USER_NAME=a=b"]})
    assert settings.retries == 0
    assert settings.flows == Path(".maestro")
    assert settings.include_tags == ("production", "smoke")
    assert settings.flow_env == {"API": "https://x", "USER_NAME": "a=b"}


def test_unknown_key_gets_a_suggestion() -> None:
    with pytest.raises(ConfigError, match=r"unknown setting 'validation.retry' \(did you mean 'retries'\?\)"):
        load({**DEFAULTS, "retry": 2}, {})


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"retries": "-1"}, "retries must be at least 0"),
        ({"retries": "two"}, "retries must be a whole number"),
        ({"flow_timeout": "0"}, "flow_timeout must be a positive number"),
        ({"env": ["NOVALUE"]}, "'NOVALUE' is not KEY=VALUE"),
        ({"env": ["1BAD=x"]}, "'1BAD' is not a valid variable name"),
        ({"env": ["SKIP_DATA_CLEANUP=false"]}, "SKIP_DATA_CLEANUP is set by the harness itself"),
        ({"flows": "  "}, "validation.flows is empty"),
    ],
)
def test_bad_values_are_config_errors(flags: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(DEFAULTS, flags)


# -- classification -------------------------------------------------------------------------------

JUNIT_FAIL = """<?xml version='1.0' encoding='UTF-8'?>
<testsuites><testsuite name="Test Suite" device="emulator-5554" tests="1" failures="1" time="3">
<testcase id="Flow B" name="Flow B" classname="Flow B" file=".maestro/b.yaml" time="3" status="ERROR">
<failure>Element not found: Text matching regex: Save</failure></testcase></testsuite></testsuites>"""


def test_assertion_failure_comes_from_the_report(tmp_path: Path) -> None:
    report = tmp_path / "report.xml"
    report.write_text(JUNIT_FAIL)
    outcome = classify(1, False, "Assert that \"Save\" is visible... FAILED", "", report, 600)
    assert (outcome.status, outcome.summary) == ("failed", "Element not found: Text matching regex: Save")


@pytest.mark.parametrize(
    "output",
    [
        "Android driver did not start up in time",
        "maestro.drivers.DriverTimeoutException: timed out",
        "Device 'emulator-5556' not found",
        "adb: device offline",
        "io.grpc.StatusRuntimeException: UNAVAILABLE: io exception",
        "Unable to launch app com.example.exerciselog",
    ],
)
def test_infrastructure_signatures_without_report_are_errors(tmp_path: Path, output: str) -> None:
    outcome = classify(1, False, "Running on emulator-5554\n", output + "\n", tmp_path / "none.xml", 600)
    assert outcome.status == "error"
    assert outcome.summary == output


def test_unable_to_launch_in_the_report_is_still_infrastructure(tmp_path: Path) -> None:
    report = tmp_path / "report.xml"
    report.write_text(JUNIT_FAIL.replace("Element not found: Text matching regex: Save", "Unable to launch app com.x"))
    assert classify(1, False, "", "", report, 600).status == "error"


def test_crash_timeout_usage_and_silence(tmp_path: Path) -> None:
    none = tmp_path / "none.xml"
    crash = "Exception in thread \"main\" java.lang.IllegalStateException: boom\n\tat maestro.cli.App.main(App.kt:1)"
    assert classify(1, False, "", crash, none, 600).summary.startswith("maestro crashed: Exception in thread")
    assert classify(-9, True, "", "", none, 5).status == "timed_out"
    usage = classify(2, False, "", "Unknown option: '--bogus'\nUsage: maestro test", none, 600)
    assert (usage.status, usage.summary) == ("error", "maestro rejected its command line (exit 2): Unknown option: '--bogus'")
    assert classify(1, False, "", "", none, 600).summary == "maestro exited 1 without a report: no output"
    assert classify(0, False, "", "", none, 600).status == "passed"


def test_screenshots_in_both_layouts(tmp_path: Path) -> None:
    for rel in ("Flow/screenshots/step-003-assertVisible-Save.png", "Flow/takeScreenshot/added.png",
                "screenshot-❌-1722500000000-(Flow).png", "screenshot-✅-1722500000001-(Flow).png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"png")
    failures, own = screenshots(tmp_path)
    assert sorted(p.name for p in failures) == ["screenshot-❌-1722500000000-(Flow).png", "step-003-assertVisible-Save.png"]
    assert sorted(p.name for p in own) == ["added.png", "screenshot-✅-1722500000001-(Flow).png"]


# -- the record's derived files -------------------------------------------------------------------


def _record() -> RunRecord:
    first = Attempt(1, "failed", 1, 900, "emulator-5554", "t", "Element not found: Save")
    second = Attempt(2, "passed", 0, 800, "emulator-5554", "t")
    flows = [
        FlowResult("a.yaml", "A", "passed", 0, duration=1000, attempts=[second]),
        FlowResult("b.yaml", "B", "flaky", 0, duration=1700, attempts=[first, second], errorSummary="Element not found: Save"),
        FlowResult("c|d.yaml", "C", "failed", 1, stdout="out", duration=500, attempts=[first],
                   errorSummary="Element not found: Save"),
        FlowResult("e.yaml", "E", "not_run", None, errorSummary="not run: interrupted"),
    ]
    record = RunRecord(runId="local-1", job=Job(jobId="j", startTime="2026-11-25T00:00:00Z"), flows=flows)
    record.verdict = record.decide()
    return record


def test_verdict_rules() -> None:
    record = _record()
    assert record.verdict == "fail"
    record.flows = [f for f in record.flows if f.status in ("passed", "flaky")]
    assert record.decide() == "pass"
    record.flows[0].status = "timed_out"
    assert record.decide() == "error"
    record.flows = []
    assert record.decide() == "error"


def test_junit_marks_flaky_failed_and_skipped() -> None:
    suite = ET.fromstring(junit_xml(_record()).split("\n", 1)[1]).find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("4", "1", "1")
    cases = {c.get("file"): c for c in suite.iter("testcase")}
    assert cases["b.yaml"].find("flakyFailure") is not None
    assert cases["b.yaml"].find("failure") is None
    assert cases["c|d.yaml"].find("failure").get("message") == "Element not found: Save"  # type: ignore[union-attr]
    assert cases["e.yaml"].find("skipped") is not None


def test_summary_lists_failures_first_and_flaky_apart() -> None:
    text = summary_markdown(_record())
    assert "**1 of 4 flows failed against production**" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and ".yaml" in line]
    assert "c\\|d.yaml" in rows[0]
    assert "**Flaky**" in text and "`b.yaml`: 2 attempts" in text


def test_redactor_masks_secret_env_and_flow_variables() -> None:
    redact = Redactor.from_env({"SLACK_WEBHOOK_URL": "https://hooks.slack.test/T000/B000/XXXX", "HOME": "/root"},
                               {"LOGIN_PASSWORD": "hunter2!", "USER": "bob"})
    text = redact("post https://hooks.slack.test/T000/B000/XXXX with hunter2! as bob from /root")
    assert text == "post *** with *** as bob from /root"


def test_the_defaults_invoke_yaml_shows_in_comments_are_the_declared_ones() -> None:
    """invoke.yaml's commented `# key: value` lines show defaults (settings declared once, issue 14); a line
    whose own comment says 'default ...' or 'e.g.' describes one instead."""
    import yaml
    from prodval.settings import SECTIONS, defaults

    declared = {cls.SECTION: defaults(cls) for cls in SECTIONS}
    section, shown = "", 0
    for line in (Path(__file__).resolve().parents[2] / "invoke.yaml").read_text().splitlines():
        if re.match(r"^[a-z_]+:", line):
            section = line.split(":")[0]
        found = re.match(r"^  # ([a-z_]+): (.*?)(\s+#\s*(.*))?$", line)
        if not found or section not in declared or found[1] not in declared[section]:
            continue
        if found[4] and ("default" in found[4] or found[4].startswith("e.g.")):
            continue
        value, default = yaml.safe_load(found[2]), declared[section][found[1]]
        assert str(value if value is not None else "") == str(default), (section, found[1], value, default)
        shown += 1
    assert shown >= 10


def test_a_what_went_wrong_block_cut_off_at_the_end_of_stdout_does_not_swallow_stderr(tmp_path: Path) -> None:
    from prodval.apk import gradle_failure

    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    out.write_text("FAILURE: Build failed with an exception.\n\n* What went wrong:\nExecution failed for task ':app:x'.\n")
    err.write_text('Exception in thread "main" java.net.UnknownHostException: services.gradle.org\n'
                   "\tat java.base/java.net.Socket.connect(Socket.java:1)\n")
    found = gradle_failure(out, err)
    assert found.what_went_wrong == ("Execution failed for task ':app:x'.",)
    assert found.exception == "java.net.UnknownHostException: services.gradle.org"
