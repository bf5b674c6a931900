"""`invoke validate` end to end: the real task, as a subprocess, against the fake adb and maestro."""

from __future__ import annotations

import io
import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest
from conftest import World, alive, real_apk
from prodval import commands
from prodval.console import Console
from prodval.errors import CommandFailed
from prodval.secrets import Redactor

FAILURE = "fail:Element not found: Text matching regex: Save"


@pytest.fixture
def two_flows(world: World) -> World:
    world.device()
    world.flow("login.yaml", tags=("production", "smoke"))
    world.flow("add-exercise.yaml", tags=("production",), commands="""\
        - launchApp
        - tapOn: "Add exercise"
        - inputText: ${EXERCISE}
        - assertVisible: "Save"
        - takeScreenshot: added
        """, header="env:\n  EXERCISE: Squats")
    return world


def test_all_flows_pass(two_flows: World) -> None:
    run = two_flows.scenario().invoke("validate")
    assert run.returncode == 0, run.stderr
    record = two_flows.record()
    assert record["verdict"] == "pass"
    assert record["job"]["status"] == "success"
    assert record["job"]["workflow"] == "Production Validation"
    assert record["job"]["startTime"] <= record["job"]["endTime"]
    assert record["environment"]["SKIP_DATA_CLEANUP"] is True
    assert record["environment"]["maestroFlowPaths"] == [".maestro/add-exercise.yaml", ".maestro/login.yaml"]
    assert record["devices"] == ["emulator-5554"]
    flow = two_flows.flow_result("add-exercise.yaml")
    assert flow["status"] == "passed" and flow["exitCode"] == 0 and flow["device"] == "emulator-5554"
    assert "[Passed] add-exercise" in flow["stdout"]
    assert isinstance(flow["duration"], int) and flow["duration"] >= 0
    assert len(flow["attempts"]) == 1
    assert "flows/add-exercise.yaml/attempt-1/report.xml" in flow["artifactPaths"]
    assert any(p.endswith("takeScreenshot/added.png") for p in flow["artifactPaths"])
    for path in flow["artifactPaths"]:
        assert (two_flows.results / path).is_file()
    assert (two_flows.results / "junit.xml").is_file()
    assert "All 2 flows passed" in (two_flows.results / "summary.md").read_text()
    # each flow is its own maestro process, on the selected device, with the production settings
    version, *calls = two_flows.maestro_calls(everything=True)
    assert version["argv"] == ["--version"]  # the preflight check, before any work
    assert version["analytics_disabled"]
    assert len(calls) == 2
    argv = calls[0]["argv"]
    assert argv[argv.index("--device") + 1] == "emulator-5554"
    assert argv[argv.index("test") + 1].endswith(".maestro/add-exercise.yaml")
    assert "SKIP_DATA_CLEANUP=true" in argv
    assert f"VALIDATION_RUN_ID={record['runId']}" in argv
    assert {"--format", "junit", "--flatten-debug-output"} <= set(argv)
    assert calls[0]["analytics_disabled"] and calls[0]["update_check_disabled"]
    assert "PASSED  login.yaml" in run.stdout


def test_assertion_failure_is_retried_and_fails(two_flows: World) -> None:
    run = two_flows.scenario({"add-exercise.yaml": [FAILURE]}).invoke("validate")
    assert run.returncode == 1, run.stderr
    record = two_flows.record()
    assert record["verdict"] == "fail" and record["job"]["status"] == "failure"
    flow = two_flows.flow_result("add-exercise.yaml")
    assert flow["status"] == "failed"
    assert flow["exitCode"] == 1
    assert flow["errorSummary"] == "Element not found: Text matching regex: Save"
    assert [a["status"] for a in flow["attempts"]] == ["failed", "failed"]
    assert flow["duration"] == sum(a["duration"] for a in flow["attempts"])
    assert any("/attempt-2/debug/" in p and "/screenshots/step-" in p for p in flow["artifactPaths"])
    assert two_flows.flow_result("login.yaml")["status"] == "passed"
    assert "1 of 2 flows failed against production" in (two_flows.results / "summary.md").read_text()


def test_flaky_flow_passes_loudly(two_flows: World) -> None:
    run = two_flows.scenario({"login.yaml": [FAILURE, "pass"]}).invoke("validate")
    assert run.returncode == 0, run.stderr
    flow = two_flows.flow_result("login.yaml")
    assert flow["status"] == "flaky"
    assert [a["status"] for a in flow["attempts"]] == ["failed", "passed"]
    assert flow["errorSummary"] == "Element not found: Text matching regex: Save"
    assert "FLAKY" in run.stderr
    junit = (two_flows.results / "junit.xml").read_text()
    assert "flakyFailure" in junit and 'name="flaky" value="true"' in junit


@pytest.mark.parametrize("kind", ["driver", "offline", "grpc", "launch"])
def test_infrastructure_error_is_an_error_verdict(two_flows: World, kind: str) -> None:
    run = two_flows.scenario({"login.yaml": [f"infra:{kind}"]}).invoke("validate", "--retries", "2")
    assert run.returncode == 2, run.stderr
    flow = two_flows.flow_result("login.yaml")
    assert flow["status"] == "error"
    assert len(flow["attempts"]) == 3
    assert flow["errorSummary"]
    assert two_flows.record()["verdict"] == "error"


def test_assertion_failure_beats_infrastructure_error(two_flows: World) -> None:
    run = two_flows.scenario({"login.yaml": ["crash"], "add-exercise.yaml": [FAILURE]}).invoke("validate")
    assert run.returncode == 1
    assert two_flows.flow_result("login.yaml")["errorSummary"].startswith("maestro crashed:")


@pytest.mark.slow
@pytest.mark.parametrize("outcome", ["hang", "hang:ignore-term"])
def test_hang_past_the_timeout_kills_the_process_tree(two_flows: World, outcome: str) -> None:
    run = two_flows.scenario({"login.yaml": [outcome]}).invoke("validate", "--flow-timeout", "1.5", "--retries", "0")
    assert run.returncode == 2, run.stderr
    flow = two_flows.flow_result("login.yaml")
    assert flow["status"] == "timed_out"
    assert flow["errorSummary"] == "no result after 1.5s; the flow's process tree was killed"
    assert 1500 <= flow["duration"] < 15000
    pids = two_flows.hung_pids()
    assert len(pids) == 2
    assert not [pid for pid in pids if alive(pid)]
    assert two_flows.flow_result("add-exercise.yaml")["status"] == "passed"


def test_malformed_flow_stops_before_anything_runs(two_flows: World) -> None:
    (two_flows.flows / "broken.yaml").write_text("appId: com.example.exerciselog\n---\n- tapOn: [Save\n")
    run = two_flows.scenario().invoke("validate")
    assert run.returncode == 2
    assert ".maestro/broken.yaml:3: invalid YAML" in run.stderr
    assert two_flows.maestro_calls() == []
    record = two_flows.record()
    assert record["verdict"] == "error"
    assert "broken.yaml:3" in record["stages"]["validate"]["error"]


@pytest.mark.parametrize("tool", ["maestro", "adb"])
def test_missing_tool_says_where_it_looked(two_flows: World, tool: str) -> None:
    (two_flows.bin / tool).unlink()
    run = two_flows.invoke("validate", PATH=f"{two_flows.bin}{os.pathsep}/usr/bin{os.pathsep}/bin")
    assert run.returncode == 2
    assert f"Couldn't find '{tool}'" in run.stderr
    assert "~/.maestro/bin" in run.stderr if tool == "maestro" else "$ANDROID_HOME (unset)" in run.stderr
    assert "fix: install" in run.stderr


def test_adb_from_android_home(two_flows: World) -> None:
    sdk = two_flows.root / "sdk" / "platform-tools"
    sdk.mkdir(parents=True)
    (sdk / "adb").symlink_to((two_flows.bin / "adb").resolve())
    (two_flows.bin / "adb").unlink()
    run = two_flows.invoke("validate", ANDROID_HOME=str(sdk.parent))
    assert run.returncode == 0, run.stderr
    assert f"+ {sdk}/adb devices" in run.stdout


def test_tag_filters(two_flows: World) -> None:
    run = two_flows.invoke("validate", "--include-tags", "smoke")
    assert run.returncode == 0, run.stderr
    assert [f["flowFileName"] for f in two_flows.record()["flows"]] == ["login.yaml"]
    run = two_flows.invoke("validate", "--exclude-tags", "smoke,nightly")
    assert [f["flowFileName"] for f in two_flows.record()["flows"]] == ["add-exercise.yaml"]
    run = two_flows.invoke("validate", "--include-tags", "nightly")
    assert run.returncode == 2
    assert "no flow selected" in run.stderr and "2 flow(s) filtered out by tags" in run.stderr


def test_env_passed_to_flows_and_config_precedence(two_flows: World) -> None:
    config = two_flows.root / "ci.yaml"  # invoke -f: the same `validation:` section as invoke.yaml
    config.write_text("validation:\n  retries: 3\n  env:\n    API_BASE_URL: https://api.example.com\n")
    two_flows.scenario({"login.yaml": [FAILURE]})
    run = two_flows.invoke("-f", str(config), "validate", "--env", "EXERCISE=Lunges",
                           "--env", "LOGIN_PASSWORD=hunter2secret", "--retries", "0")
    assert run.returncode == 1, run.stderr
    argv = two_flows.maestro_calls()[0]["argv"]
    assert {"EXERCISE=Lunges", "LOGIN_PASSWORD=hunter2secret", "API_BASE_URL=https://api.example.com"} <= set(argv)
    assert len(two_flows.flow_result("login.yaml")["attempts"]) == 1  # the flag beat the file
    # the password reached maestro, and nowhere else
    assert "hunter2secret" not in run.stdout + run.stderr
    assert "hunter2secret" not in two_flows.files_text()
    assert "LOGIN_PASSWORD=***" in run.stdout


def test_the_deployed_commit_from_invoke_yaml_reaches_the_record_and_the_report(two_flows: World) -> None:
    deployed, head = "fedcba9876543210fedcba9876543210fedcba98", "0123456789abcdef0123456789abcdef01234567"
    config = two_flows.root / "ci.yaml"  # invoke -f: the project's notify: section
    config.write_text(f"notify:\n  deployed_sha: {deployed}\n")
    run = two_flows.invoke("-f", str(config), "validate", GITHUB_SHA=head)
    assert run.returncode == 0, run.stderr
    assert two_flows.record()["job"]["commit"] == deployed
    assert deployed in (two_flows.results / "report.html").read_text()
    run = two_flows.invoke("validate", GITHUB_SHA=head)  # nothing configured: GITHUB_SHA
    assert two_flows.record()["job"]["commit"] == head
    run = two_flows.invoke("validate", GITHUB_SHA=head, INVOKE_NOTIFY_DEPLOYED_SHA=deployed)  # the workflow's way
    assert two_flows.record()["job"]["commit"] == deployed


def test_environment_variables_override_defaults(two_flows: World) -> None:
    run = two_flows.scenario({"login.yaml": [FAILURE]}).invoke("validate", INVOKE_VALIDATION_RETRIES="2",
                                                                 INVOKE_VALIDATION_RESULTS_DIR="out")
    assert run.returncode == 1
    flows = json.loads((two_flows.root / "out" / "results.json").read_text())["flows"]
    assert [len(f["attempts"]) for f in flows] == [1, 3]


def test_bad_settings_are_reported_with_the_fix(two_flows: World) -> None:
    run = two_flows.invoke("validate", INVOKE_VALIDATION_RETRIES="x")
    assert run.returncode == 2
    assert "validation.retries must be a whole number, got 'x'" in run.stderr
    config = two_flows.root / "ci.yaml"
    config.write_text("validation:\n  flow_timout: 30\n")
    run = two_flows.invoke("-f", str(config), "validate")
    assert run.returncode == 2
    assert "unknown setting 'validation.flow_timout' (did you mean 'flow_timeout'?)" in run.stderr
    assert two_flows.maestro_calls() == []


def test_several_devices_need_a_choice(two_flows: World) -> None:
    two_flows.device("emulator-5556")
    run = two_flows.invoke("validate")
    assert run.returncode == 2
    assert "2 booted devices are connected" in run.stderr and "--device" in run.stderr
    assert two_flows.maestro_calls() == []
    run = two_flows.invoke("validate", "--device", "emulator-5556")
    assert run.returncode == 0, run.stderr
    assert {c["argv"][c["argv"].index("--device") + 1] for c in two_flows.maestro_calls()} == {"emulator-5556"}


def test_device_states(world: World) -> None:
    world.flow("login.yaml")
    run = world.invoke("validate")  # no device, and no SDK to boot an emulator with
    assert run.returncode == 2
    assert "0 of 1 booted device(s) connected (adb sees: none); booting 1 emulator(s)" in run.stdout
    assert "0 of 1 booted device(s) connected, and no emulator can be booted here" in run.stderr
    assert "ANDROID_HOME: neither ANDROID_HOME nor ANDROID_SDK_ROOT is set" in run.stderr
    world.device("emulator-5554", booted=False).device("0123456789ABCDEF", state="unauthorized")
    run = world.invoke("validate")
    assert "(adb sees: emulator-5554 (device), 0123456789ABCDEF (unauthorized))" in run.stdout
    run = world.invoke("validate", "--device", "emulator-5554")
    assert run.returncode == 2 and "not booted" in run.stderr
    run = world.invoke("validate", "--device", "emulator-9999")
    assert run.returncode == 2 and "device 'emulator-9999' is not connected" in run.stderr


def test_apk_is_installed_first(two_flows: World) -> None:
    real_apk(two_flows.root / "app.apk")
    run = two_flows.invoke("validate", "--apk", "app.apk")
    assert run.returncode == 0, run.stderr
    assert ["-s", "emulator-5554", "install", "-r", "-g", "app.apk"] in two_flows.adb_calls()
    assert two_flows.record()["environment"]["apkBuildPath"] == "app.apk"


def test_apk_problems(two_flows: World) -> None:
    run = two_flows.invoke("validate", "--apk", "missing.apk")
    assert run.returncode == 2 and "the APK 'missing.apk' does not exist" in run.stderr
    real_apk(two_flows.root / "app.apk")
    two_flows.device(install_result="INSTALL_FAILED_UPDATE_INCOMPATIBLE: signatures do not match")
    run = two_flows.invoke("validate", "--apk", "app.apk")
    assert run.returncode == 2
    assert "installing app.apk on emulator-5554 failed" in run.stderr
    assert "Failure [INSTALL_FAILED_UPDATE_INCOMPATIBLE" in run.stderr
    assert two_flows.maestro_calls() == []


def test_unexplained_maestro_exit_is_an_error(two_flows: World) -> None:
    run = two_flows.scenario({"login.yaml": ["unknown-outcome"]}).invoke("validate", "--retries", "0")
    assert run.returncode == 2
    assert "unknown scenario outcome" in two_flows.flow_result("login.yaml")["errorSummary"]


def test_maestro_usage_error_stops_the_run_without_retries_or_blaming_a_device(two_flows: World) -> None:
    # A Maestro older than an option we pass: picocli says so and exits 2, whatever the device.
    two_flows.device("emulator-5556")
    run = two_flows.invoke("validate", "--devices", "2", "--retries", "2",
                           FAKE_MAESTRO_UNKNOWN_OPTIONS="--flatten-debug-output")
    assert run.returncode == 2, run.stderr
    usage = "maestro rejected its command line (exit 2): Unknown option: '--flatten-debug-output'"
    record = two_flows.record()
    assert record["verdict"] == "error"
    assert record["retiredDevices"] == []
    assert record["stages"]["validate"]["error"].startswith(usage)
    tried = [f for f in record["flows"] if f["attempts"]]
    assert tried and all(len(f["attempts"]) == 1 and f["errorSummary"] == usage for f in tried)
    assert all(f["errorSummary"] == f"not run: {usage}" for f in record["flows"] if not f["attempts"])
    assert "invoke setup" in run.stderr
    assert "retrying" not in run.stderr and "rotation" not in run.stderr


def test_flat_debug_layout_is_collected(two_flows: World) -> None:
    run = two_flows.scenario({"login.yaml": [FAILURE]}).invoke("validate", "--retries", "0",
                                                                 FAKE_MAESTRO_LAYOUT="flat")
    assert run.returncode == 1
    paths = two_flows.flow_result("login.yaml")["artifactPaths"]
    assert any("screenshot-❌-" in p for p in paths)


def _wait_for(predicate: object, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.mark.slow
def test_crash_mid_run_keeps_finished_flows(two_flows: World) -> None:
    two_flows.scenario({"login.yaml": ["hang"]})
    proc = two_flows.start("validate")
    _wait_for(lambda: len(two_flows.hung_pids()) == 2)
    proc.kill()  # SIGKILL: no handler runs, only what is already on disk survives
    proc.communicate(timeout=10)
    record = two_flows.record()
    assert record["verdict"] is None and record["job"]["status"] == "running"
    assert two_flows.flow_result("add-exercise.yaml")["status"] == "passed"
    assert two_flows.flow_result("login.yaml")["status"] == "not_run"


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_interrupt_during_a_flow_stops_it_and_finishes_the_record(two_flows: World, sig: signal.Signals) -> None:
    two_flows.scenario({"login.yaml": ["hang"]})
    proc = two_flows.start("validate")
    _wait_for(lambda: len(two_flows.hung_pids()) == 2)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "validation interrupted by" in err
    record = two_flows.record()
    assert record["verdict"] == "error" and record["job"]["status"] == "failure"
    assert two_flows.flow_result("add-exercise.yaml")["status"] == "passed"
    assert not [pid for pid in two_flows.hung_pids() if alive(pid)]
    assert (two_flows.results / "junit.xml").is_file()


def test_github_actions_integration(two_flows: World) -> None:
    summary, output = two_flows.root / "summary.md", two_flows.root / "output.txt"
    many = {f"f{i:02}.yaml": [FAILURE] for i in range(12)}
    for name in many:
        two_flows.flow(name)
    run = two_flows.scenario(many).invoke(
        "validate", "--retries", "0", GITHUB_ACTIONS="true", GITHUB_STEP_SUMMARY=str(summary),
        GITHUB_OUTPUT=str(output), GITHUB_RUN_ID="987", GITHUB_RUN_ATTEMPT="2", GITHUB_JOB="validate",
        GITHUB_REPOSITORY="acme/app", GITHUB_SERVER_URL="https://github.com")
    assert run.returncode == 1
    assert "::group::login.yaml · attempt 1/1 · emulator-5554" in run.stdout
    assert run.stdout.count("::endgroup::") == 14
    errors = [line for line in run.stdout.splitlines() if line.startswith("::error ")]
    assert len(errors) == 10  # GitHub's limit per step: 9 flows, then one naming the rest
    assert errors[0].startswith("::error file=.maestro/f00.yaml,title=f00.yaml failed::Element not found")
    assert errors[-1] == "::error title=more failed flows::3 more flows: f09.yaml, f10.yaml, f11.yaml"
    assert "12 of 14 flows failed against production" in summary.read_text()
    outputs = dict(line.split("=", 1) for line in output.read_text().splitlines())
    assert outputs["verdict"] == "fail"
    assert outputs["failed-flows"].split(",")[0] == "f00.yaml"
    assert outputs["results-path"] == "build/validation"
    record = two_flows.record()
    assert record["job"]["jobId"] == "987/validate"
    assert record["runId"] == "gh-987"  # one id for every attempt of the workflow run
    assert record["job"]["url"] == "https://github.com/acme/app/actions/runs/987"


def test_secrets_from_the_environment_never_appear(two_flows: World) -> None:
    hook = "https://hooks.slack.com/services/T0/B0/abcdefSECRET"
    run = two_flows.scenario({"login.yaml": [f"fail:Element not found: {hook}"]}).invoke(
        "validate", "--retries", "0", SLACK_WEBHOOK_URL=hook)
    assert run.returncode == 1
    assert hook not in run.stdout + run.stderr
    assert hook not in two_flows.files_text()
    record = two_flows.record()
    assert record["environment"]["alertChannels"] == ["slack"]
    assert json.dumps(record).count("***") >= 1


def test_a_command_that_times_out_keeps_secrets_out_of_its_error() -> None:
    secret = "abcdefSECRET"
    console = Console({}, Redactor([secret]), out=io.StringIO(), err=io.StringIO())
    script = "import os, time; print('token', os.environ['TOKEN'], flush=True); time.sleep(30)"
    with pytest.raises(CommandFailed) as failed:
        commands.run(console, [sys.executable, "-c", script], env={**os.environ, "TOKEN": secret}, timeout=1)
    assert "timed out after 1s" in str(failed.value)
    assert "token ***" in str(failed.value)
    assert secret not in str(failed.value) + failed.value.stdout


def test_project_flows_run_in_the_demo_setup(world: World) -> None:
    """The README's demo: the project's own .maestro on the simulated toolchain."""
    world.device()
    repo = Path(__file__).resolve().parents[2]
    run = world.invoke("validate", "--flows", str(repo / ".maestro"))
    assert run.returncode == 0, run.stderr
    assert len(world.record()["flows"]) >= 2
