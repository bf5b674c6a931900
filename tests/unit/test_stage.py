"""The one stage lifecycle (`prodval.stage`) and the facts that live in one place only (issue 14).

No subprocess here: the lifecycle runs in-process on a temporary results folder.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prodval import cli
from prodval.alerts import message
from prodval.alerts.message import AlertContext, build_alert
from prodval.apkcheck import check_flows_match_apk
from prodval.apkfile import require_apk
from prodval.console import Console
from prodval.devices import Adb
from prodval.errors import ConfigError, DeviceError, Interrupted
from prodval.notify import configure_channels, context
from prodval.outcomes import Kind
from prodval.results import (
    CHANNEL_VARS,
    RECORD_NAME,
    REPORT_NAME,
    Attempt,
    FlowResult,
    Job,
    RecordWriter,
    RunRecord,
    Stage,
    Status,
    Verdict,
    alert_channels,
    duration_text,
    headline,
    job_from_env,
    run_url,
    summary_markdown,
)
from prodval.secrets import Redactor
from prodval.settings import load_notify
from prodval.stage import stage


def quiet() -> Console:
    return Console({}, out=io.StringIO(), err=io.StringIO())


def never(record: RunRecord, entry: Stage) -> str | None:
    return None


def errors_only(record: RunRecord, entry: Stage) -> str | None:
    return Verdict.ERROR if entry.error else None


# --- the lifecycle -------------------------------------------------------------------------------------

def test_a_stage_that_goes_on_is_saved_without_a_verdict_or_derived_files(tmp_path: Path) -> None:
    writer = RecordWriter(tmp_path, Redactor())
    with stage(writer, "build", quiet(), {"VALIDATION_RUN_ID": "r1"}, new=True, decide=errors_only) as record:
        assert json.loads((tmp_path / RECORD_NAME).read_text())["stages"]["build"]["outcome"] == "running"
    saved = json.loads((tmp_path / RECORD_NAME).read_text())
    assert saved["runId"] == "r1" and saved["verdict"] is None
    assert saved["stages"]["build"]["outcome"] == "pass" and saved["stages"]["build"]["endTime"]
    assert saved["job"]["status"] == "success" and saved["job"]["endTime"] == saved["stages"]["build"]["endTime"]
    assert record.verdict is None
    assert not (tmp_path / "junit.xml").exists() and not (tmp_path / REPORT_NAME).exists()


def test_a_stage_error_is_recorded_once_with_every_derived_file(tmp_path: Path) -> None:
    out = io.StringIO()
    console = Console({}, out=out, err=out)
    writer = RecordWriter(tmp_path, Redactor())
    with stage(writer, "build", console, {"VALIDATION_RUN_ID": "r2"}, new=True, decide=errors_only,
               title="build-apk") as record:
        record.flows = [FlowResult("a.yaml", "a")]
        raise ConfigError("no gradlew", fix="add it")
    saved = json.loads((tmp_path / RECORD_NAME).read_text())
    assert saved["verdict"] == "error" and saved["stages"]["build"]["outcome"] == "error"
    assert saved["stages"]["build"]["error"] == "no gradlew\n  fix: add it"
    assert saved["flows"][0]["errorSummary"] == "not run: no gradlew"
    assert saved["job"]["status"] == "failure"
    for name in ("junit.xml", "summary.md", REPORT_NAME):  # the report is rendered by the finisher
        assert (tmp_path / name).is_file(), name
    assert REPORT_NAME in saved["job"]["artifactPaths"]
    assert out.getvalue().count("no gradlew") == 1
    assert "build-apk stopped (config)" in out.getvalue()


def test_ctrl_c_inside_a_stage_is_its_interrupted_error(tmp_path: Path) -> None:
    writer = RecordWriter(tmp_path, Redactor())
    with stage(writer, "validate", quiet(), {"VALIDATION_RUN_ID": "r3"}, decide=lambda r, e: Verdict.ERROR):
        raise KeyboardInterrupt
    saved = json.loads((tmp_path / RECORD_NAME).read_text())
    assert "interrupted by Ctrl-C (SIGINT)" in saved["stages"]["validate"]["error"]


def test_a_continued_record_keeps_its_verdict_and_job_and_its_errors_go_to_the_boundary(tmp_path: Path) -> None:
    writer = RecordWriter(tmp_path, Redactor())
    run = RunRecord(runId="r4", job=Job("j", status="failure", endTime="then"), verdict=Verdict.FAIL)
    with stage(writer, "notify", quiet(), {}, record=run, decide=never) as record:
        record.stages["notify"].outcome = Verdict.ERROR  # a delivery failed
    assert (run.verdict, run.job.status, run.job.endTime) == ("fail", "failure", "then")
    assert json.loads((tmp_path / RECORD_NAME).read_text())["stages"]["notify"]["outcome"] == "error"
    with pytest.raises(Interrupted), stage(writer, "notify", quiet(), {}, record=run, decide=never):
        raise Interrupted("SIGTERM")


def test_only_the_entry_point_turns_an_outcome_into_an_exit_code() -> None:
    run = RunRecord(runId="r", job=Job("j"), stages={"build": Stage("pass", "t")})
    assert cli.exit_code(run, "build") == 0
    run.stages["build"].outcome = Verdict.ERROR
    assert cli.exit_code(run, "build") == 2
    run.stages["validate"] = Stage("fail", "t")
    run.verdict = Verdict.FAIL
    assert cli.exit_code(run, "validate") == 1


def test_build_apk_and_merge_do_not_import_validate() -> None:
    code = ("import sys, prodval.apk, prodval.merge, prodval.stage, prodval.boundary; "
            "print(sorted(m for m in sys.modules if m in ('prodval.validate', 'prodval.emulator')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


# --- one fact, one place -----------------------------------------------------------------------------

def flow(name: str, status: str) -> FlowResult:
    return FlowResult(name, name, status, attempts=[Attempt(1, status, 0, 1000, "emulator-5554", "t")])


def test_statuses_and_verdicts_keep_the_record_json_byte_for_byte(tmp_path: Path) -> None:
    def make(statuses: list[str], verdict: str) -> str:
        run = RunRecord(runId="r", job=Job("j"), flows=[flow(f"{s}.yaml", s) for s in statuses], verdict=verdict,
                        stages={"validate": Stage(verdict, "t")})
        return json.dumps(run.to_json(), indent=2)

    assert make(list(Status), Verdict.ERROR) == make([s.value for s in Status], "error")
    assert [s.value for s in Status] == ["passed", "failed", "flaky", "error", "timed_out", "not_run"]
    assert isinstance(RunRecord(runId="r", job=Job("j"), flows=[flow("a", Status.FAILED)]).decide(), Verdict)


def test_the_alert_headline_is_the_summary_headline() -> None:
    assert message.headline is headline
    run = RunRecord(runId="r", job=Job("j"), flows=[flow("a.yaml", Status.NOT_RUN)], verdict=Verdict.ERROR)
    assert headline(run) == "Validation could not run: it did not finish"
    assert f"**{headline(run)}**" in summary_markdown(run)
    run.stages["notify"] = Stage("error", "t", error="slack down")  # notify reports; it never is the cause
    assert headline(run) == "Validation could not run: it did not finish"
    run.stages["validate"] = Stage("error", "t", error="  emulator did not boot\n  fix: KVM")
    assert build_alert(run, Kind.ERROR, AlertContext()).headline == headline(run) \
        == "Validation could not run: emulator did not boot"


def test_one_run_url_for_the_record_and_the_alerts(tmp_path: Path) -> None:
    environ = {"GITHUB_RUN_ID": "42", "GITHUB_REPOSITORY": "acme/app", "GITHUB_SERVER_URL": "https://ghe.example"}
    assert run_url(environ) == "https://ghe.example/acme/app/actions/runs/42"
    assert job_from_env(environ).url == run_url(environ)
    settings = load_notify({}, {"results_dir": str(tmp_path)}, {})
    assert context(settings, environ, None).run_url == run_url(environ)
    assert run_url({"GITHUB_RUN_ID": "42"}) == ""


_VALUES = st.sampled_from(["", "  ", "x"])


@given(st.fixed_dictionaries({var: _VALUES for needed in CHANNEL_VARS.values() for var in needed}))
def test_the_record_and_notify_agree_on_which_channels_are_configured(values: dict[str, str]) -> None:
    environ = {k: v for k, v in values.items() if v} | {"GITHUB_SHA": "abc"}
    settings = load_notify({}, {}, {})
    channels, _ = configure_channels(settings, environ)
    assert [c.name for c in channels] == alert_channels(environ)


def test_one_duration_format_for_the_report_and_the_alerts() -> None:
    assert [duration_text(s) for s in (4.25, 205, 3725)] == ["4.2s", "3m 25s", "1h 02m"]
    run = RunRecord(runId="r", job=Job("j", startTime="2026-05-01T02:00:00.000Z", endTime="2026-05-01T03:02:05.000Z"),
                    flows=[flow("a.yaml", Status.FAILED)], verdict=Verdict.FAIL)
    assert build_alert(run, Kind.FAIL, AlertContext()).duration == "1h 02m"


def test_one_apk_exists_check_for_validate_and_the_install(tmp_path: Path) -> None:
    missing = tmp_path / "app.apk"
    with pytest.raises(ConfigError) as checked:
        check_flows_match_apk(missing, [])
    with pytest.raises(ConfigError) as installed:
        Adb(tmp_path / "no-adb", quiet(), {}).install("emulator-5554", missing)  # adb is never run
    with pytest.raises(ConfigError) as required:
        require_apk(missing)
    assert str(checked.value) == str(installed.value) == str(required.value)
    assert f"the APK '{missing}' does not exist" in str(required.value)
    assert not isinstance(required.value, DeviceError)
