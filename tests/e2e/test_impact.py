"""Impact triage with the released app, end to end: `invoke validate` on the fake device with real APKs
(aapt, signed by apksigner with keytool keys), then `invoke notify` against real HTTP servers for Slack,
PagerDuty and the GitHub commit status.

The fake adb reads each APK it installs (package, versionCode, signer) and refuses a downgrade without -d
and another signer, as the package manager does; the fake maestro's scenario fails a flow only while a
given versionCode is installed on the device it runs on.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from alert_servers import HttpServer, github_status, pagerduty, serve_http, slack
from conftest import World, real_apk

APP_ID = "com.example.exerciselog"
PASSWORD = "Impact-Store-Pass-1"
WEBHOOK_PATH = "/services/T0IMPACT/B0IMPACT/xoxImpactWebhookSecret01"
ROUTING_KEY = "IMPACTROUTINGKEY0123456789abcdef"  # 32 characters
TOKEN = "ghs_ImpactInstallationToken0123456789"
REPO = "acme/exercise-log"
SHA = "0123456789abcdef0123456789abcdef01234567"
BOTH = "fail:Element not found: Text matching regex: Pay now"  # fails whatever build is installed
NEW_ONLY = {"installed": {"versionCode": "2.."}, "then": "fail:Element not found: Text matching regex: Avatar",
            "else": "pass"}  # fails only while versionCode 2 (the new build) or later is installed
TOOLS = ("aapt", "apksigner", "keytool")


@dataclass(frozen=True)
class Apks:
    new: Path  # versionCode 2, key A: this run's build
    released: Path  # versionCode 1, key A: the app users have
    released_other_key: Path  # versionCode 1, key B (e.g. the store re-signed it)


def _keystore(folder: Path, alias: str) -> Path:
    path = folder / f"{alias}.p12"
    subprocess.run(["keytool", "-genkeypair", "-keystore", str(path), "-storetype", "PKCS12", "-storepass", PASSWORD,
                    "-keypass", PASSWORD, "-alias", alias, "-keyalg", "RSA", "-keysize", "2048", "-validity", "3650",
                    "-dname", f"CN={alias},O=Example"], capture_output=True, check=True)
    return path


def _signed(folder: Path, name: str, version_code: int, keystore: Path, alias: str) -> Path:
    unsigned = real_apk(folder / f"{name}-unsigned.apk", APP_ID, version_code, f"{version_code}.0.0")
    out = folder / f"{name}.apk"
    subprocess.run(["apksigner", "sign", "--ks", str(keystore), "--ks-pass", f"pass:{PASSWORD}", "--ks-key-alias",
                    alias, "--out", str(out), str(unsigned)], capture_output=True, check=True)
    unsigned.unlink()
    return out


@pytest.fixture(scope="module")
def apks(tmp_path_factory: pytest.TempPathFactory) -> Apks:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        assert not os.environ.get("CI"), f"CI must install {', '.join(missing)}"
        pytest.skip(f"needs {', '.join(missing)}")
    folder = tmp_path_factory.mktemp("impact-apks")
    key_a, key_b = _keystore(folder, "key-a"), _keystore(folder, "key-b")
    (folder / "released").mkdir()
    return Apks(new=_signed(folder, "app-production", 2, key_a, "key-a"),
                released=_signed(folder / "released", "app-1", 1, key_a, "key-a"),
                released_other_key=_signed(folder, "app-other-key", 1, key_b, "key-b"))


@pytest.fixture
def http() -> Iterator[HttpServer]:
    yield from serve_http()


def alerting(world: World, http: HttpServer) -> None:
    http.script(WEBHOOK_PATH, slack)
    http.script("/v2/enqueue", pagerduty)
    http.script(f"/repos/{REPO}/statuses/", github_status(TOKEN, commits=(SHA,)))
    world.extra_env.update({"SLACK_WEBHOOK_URL": http.url(WEBHOOK_PATH), "PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
                            "PAGERDUTY_EVENTS_URL": http.url("/v2/enqueue"), "GITHUB_TOKEN": TOKEN,
                            "GITHUB_API_URL": http.base, "GITHUB_REPOSITORY": REPO, "GITHUB_SHA": SHA,
                            "INVOKE_NOTIFY_RETRY_BACKOFF": "0.05", "INVOKE_NOTIFY_TIMEOUT": "5"})


def project(world: World, flows: dict[str, Any]) -> World:
    for name in ("checkout.yaml", "profile.yaml", "home.yaml"):
        world.flow(name)
    world.device().scenario(flows)
    world.extra_env["INVOKE_VALIDATION_RETRIES"] = "0"
    return world


def installed(world: World) -> dict[str, Any]:
    state = json.loads(world.adb_state.read_text())
    package: dict[str, Any] = state["devices"]["emulator-5554"]["packages"][APP_ID]
    return package


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_flow_failing_with_both_apps_hits_current_users_and_pages(world: World, apks: Apks, http: HttpServer) -> None:
    project(world, {"checkout.yaml": BOTH, "profile.yaml": NEW_ONLY})
    world.extra_env["INVOKE_VALIDATION_RETRIES"] = "1"
    run = world.invoke("validate", "--apk", str(apks.new),
                       INVOKE_VALIDATION_RELEASED_APK=str(apks.released.parent / "app-*.apk"))
    assert run.returncode == 1, run.stdout + run.stderr  # the verdict is the new build's: fail

    record = world.record()
    assert record["verdict"] == "fail"
    checkout, profile, home = (world.flow_result(n) for n in ("checkout.yaml", "profile.yaml", "home.yaml"))
    assert (checkout["status"], checkout["impact"]) == ("failed", "current-users")
    assert "the released app fails too: Element not found: Text matching regex: Pay now" in checkout["impactReason"]
    assert (profile["status"], profile["impact"]) == ("failed", "new-build-only")
    assert profile["errorSummary"] == "Element not found: Text matching regex: Avatar"  # the new build's failure
    assert (home["status"], home["impact"]) == ("passed", "")
    # two attempts with the new build, then one with the released app, in its own folder
    assert [(a["number"], a["apk"], a["status"]) for a in checkout["attempts"]] == [
        (1, "new", "failed"), (2, "new", "failed"), (1, "released", "failed")]
    assert [(a["apk"], a["status"]) for a in profile["attempts"]] == [("new", "failed"), ("new", "failed"),
                                                                       ("released", "passed")]
    assert [a["apk"] for a in home["attempts"]] == ["new"]
    released_dir = world.results / "flows" / "checkout.yaml" / "released-1"
    assert (released_dir / "report.xml").is_file() and (released_dir / "stdout.log").is_file()
    assert any(p.startswith("flows/checkout.yaml/released-1/") for p in checkout["artifactPaths"])
    assert record["environment"]["releasedApk"]["versionCode"] == 1
    assert record["environment"]["releasedApk"]["path"].endswith("app-1.apk")
    # the same flow, device and variables as the new build's attempts
    calls = world.maestro_calls()
    checkout_calls = [c["argv"] for c in calls if any(a.endswith("checkout.yaml") for a in c["argv"])]
    assert len(checkout_calls) == 3
    strip = [[a for a in argv if "attempt-" not in a and "released-" not in a] for argv in checkout_calls]
    assert strip[0] == strip[2]
    # the new build is back on the device afterwards
    assert installed(world)["sha256"] == sha256(apks.new)
    summary = (world.results / "summary.md").read_text()
    assert "(1 hits current users, 1 new build only)" in summary
    assert "- `checkout.yaml`: **current-users**" in summary and "- `profile.yaml`: **new-build-only**" in summary
    html = (world.results / "report.html").read_text()
    assert 'class="impact impact-current-users">current-users</span>' in html
    assert "released app 1" in html
    assert "<dt>Released app</dt><dd>1.0.0 (1), " in html and "app-1.apk</dd>" in html
    junit = (world.results / "junit.xml").read_text()
    assert '<property name="impact" value="current-users" />' in junit
    assert '<property name="attempts" value="2" />' in junit  # the new build's attempts

    alerting(world, http)
    notified = world.invoke("notify")
    assert notified.returncode == 0, notified.stdout + notified.stderr
    [event] = [r.json() for r in http.hits("/v2/enqueue")]
    assert event["event_action"] == "trigger"
    assert "1 hits current users" in event["payload"]["summary"]
    assert any("checkout.yaml: failed (2 attempts; impact: current-users)" in line
               for line in event["payload"]["custom_details"]["failed_flows"])
    [post] = [r.json() for r in http.hits(WEBHOOK_PATH)]
    assert post["text"].startswith("<!here> [production-validation] FAIL")
    blocks = json.dumps(post["blocks"])
    assert "<!here>" in blocks and "impact: new-build-only" in blocks and "Released app" in blocks


def test_a_flow_failing_only_with_the_new_build_blocks_the_deploy_without_paging(
        world: World, apks: Apks, http: HttpServer) -> None:
    project(world, {"profile.yaml": NEW_ONLY})
    run = world.invoke("validate", "--apk", str(apks.new), INVOKE_VALIDATION_RELEASED_APK=str(apks.released))
    assert run.returncode == 1, run.stdout + run.stderr
    profile = world.flow_result("profile.yaml")
    assert (profile["status"], profile["impact"]) == ("failed", "new-build-only")
    assert world.record()["verdict"] == "fail"
    assert (world.results / "flows" / "profile.yaml" / "released-1" / "report.xml").is_file()

    alerting(world, http)
    notified = world.invoke("notify")
    assert notified.returncode == 0, notified.stdout + notified.stderr
    assert http.hits("/v2/enqueue") == []  # nobody is paged: no user has this build yet
    assert "PagerDuty not paged" in notified.stdout
    [post] = [r.json() for r in http.hits(WEBHOOK_PATH)]
    assert "<!here>" not in json.dumps(post)
    assert "(1 new build only)" in post["text"]
    [status] = [r.json() for r in http.hits(f"/repos/{REPO}/statuses/{SHA}")]
    assert status["state"] == "failure"  # the frontend deploy gate stays closed


def test_no_released_apk_leaves_the_impact_unknown_and_pages(world: World, apks: Apks, http: HttpServer) -> None:
    project(world, {"checkout.yaml": BOTH})
    missing = world.root / "released" / "*.apk"
    run = world.invoke("validate", "--apk", str(apks.new), INVOKE_VALIDATION_RELEASED_APK=str(missing))
    assert run.returncode == 1, run.stdout + run.stderr
    assert "matches no file" in run.stdout + run.stderr  # a warning, not a stop
    checkout = world.flow_result("checkout.yaml")
    assert checkout["impact"] == "unknown" and "matches no file" in checkout["impactReason"]
    assert [a["apk"] for a in checkout["attempts"]] == ["new"]
    assert not (world.results / "flows" / "checkout.yaml" / "released-1").exists()
    assert "(1 impact unknown)" in (world.results / "summary.md").read_text()

    alerting(world, http)
    assert world.invoke("notify").returncode == 0
    [event] = [r.json() for r in http.hits("/v2/enqueue")]
    assert event["event_action"] == "trigger"  # unknown pages by default (notify.page_on_impact)
    [post] = [r.json() for r in http.hits(WEBHOOK_PATH)]
    assert "<!here>" not in json.dumps(post)  # @here says users are hurt: only a current-users flow says that


def test_another_signer_is_uninstalled_first_and_the_new_build_goes_back(world: World, apks: Apks) -> None:
    project(world, {"checkout.yaml": BOTH})
    run = world.invoke("validate", "--apk", str(apks.new), INVOKE_VALIDATION_RELEASED_APK=str(apks.released_other_key))
    assert run.returncode == 1, run.stdout + run.stderr
    assert world.flow_result("checkout.yaml")["impact"] == "current-users"
    assert "INSTALL_FAILED_UPDATE_INCOMPATIBLE" in run.stdout  # the package manager's refusal, said
    steps = [argv[2:] for argv in world.adb_calls() if argv[2:3] in (["install"], ["uninstall"])]
    apk_steps = [[a if not a.endswith(".apk") else Path(a).name for a in step] for step in steps
                 if step[-1].endswith(".apk") or step[-1] == APP_ID]
    assert apk_steps == [
        ["install", "-r", "-g", "app-production.apk"],  # the run's own install
        ["install", "-r", "-d", "-g", "app-other-key.apk"],  # refused: another signer
        ["uninstall", APP_ID],
        ["install", "-r", "-d", "-g", "app-other-key.apk"],
        ["install", "-r", "-d", "-g", "app-production.apk"],  # refused: another signer again
        ["uninstall", APP_ID],
        ["install", "-r", "-d", "-g", "app-production.apk"],
    ]
    assert installed(world)["sha256"] == sha256(apks.new)


def test_a_released_app_that_cannot_be_installed_or_an_infrastructure_error_leaves_the_impact_unknown(
        world: World, apks: Apks) -> None:
    project(world, {"checkout.yaml": BOTH, "profile.yaml": {"installed": {"versionCode": "..1"}, "then": "infra:driver",
                                                            "else": BOTH}})
    run = world.invoke("validate", "--apk", str(apks.new), INVOKE_VALIDATION_RELEASED_APK=str(apks.released))
    assert run.returncode == 1, run.stdout + run.stderr
    profile = world.flow_result("profile.yaml")
    assert profile["impact"] == "unknown"
    assert profile["impactReason"].startswith("the released app's rerun error: Maestro Android driver did not start")
    assert world.flow_result("checkout.yaml")["impact"] == "current-users"

    world.device(install_result=[None, "INSTALL_FAILED_INSUFFICIENT_STORAGE: Failed to override installation location"])
    run = world.invoke("validate", "--apk", str(apks.new), INVOKE_VALIDATION_RELEASED_APK=str(apks.released))
    assert run.returncode == 1, run.stdout + run.stderr
    checkout = world.flow_result("checkout.yaml")
    assert checkout["impact"] == "unknown"
    assert checkout["impactReason"] == ("the released app could not be installed on emulator-5554: "
                                        "INSTALL_FAILED_INSUFFICIENT_STORAGE: Failed to override installation location")
    assert installed(world)["sha256"] == sha256(apks.new)  # put back all the same


def test_a_downgrade_without_d_is_refused_by_the_fake_device(world: World, apks: Apks) -> None:
    """The fake adb refuses what the package manager refuses, with its words."""
    world.device()
    env = world.env()
    adb = [str(world.bin / "adb"), "-s", "emulator-5554", "install"]
    assert subprocess.run([*adb, "-r", str(apks.new)], env=env, capture_output=True, text=True).returncode == 0
    down = subprocess.run([*adb, "-r", str(apks.released)], env=env, capture_output=True, text=True)
    assert down.returncode == 1
    assert down.stderr.strip() == (f"adb: failed to install {apks.released}: Failure [INSTALL_FAILED_VERSION_DOWNGRADE: "
                                   "Downgrade detected: Update version code 1 is older than current 2]")
    other = subprocess.run([*adb, "-r", "-d", str(apks.released_other_key)], env=env, capture_output=True, text=True)
    assert other.returncode == 1
    assert (f"Failure [INSTALL_FAILED_UPDATE_INCOMPATIBLE: Existing package {APP_ID} signatures do not match newer "
            "version; ignoring!]") in other.stderr
    assert installed(world)["versionCode"] == 2
    certs = subprocess.run(["apksigner", "verify", "--print-certs", str(apks.new)], capture_output=True, text=True).stdout
    assert f"Signer #1 certificate SHA-256 digest: {installed(world)['signer']}" in certs  # the signer, as apksigner says
    assert subprocess.run([*adb, "-r", "-d", str(apks.released)], env=env, capture_output=True).returncode == 0
    assert (installed(world)["versionCode"], installed(world)["versionName"]) == (1, "1.0.0")


@pytest.mark.slow
def test_ctrl_c_during_triage_keeps_the_record_and_puts_the_new_build_back(world: World, apks: Apks) -> None:
    hang_on_released = {"installed": {"versionCode": "..1"}, "then": "hang", "else": BOTH}
    project(world, {"checkout.yaml": hang_on_released})
    proc = world.start("validate", "--apk", str(apks.new), INVOKE_VALIDATION_RELEASED_APK=str(apks.released))
    pids_file = world.state_dir / "hang-checkout.yaml.pids"
    assert proc.stdout is not None
    for line in proc.stdout:  # the released rerun has started and hangs: interrupt the run as Ctrl-C does
        if "checkout.yaml · released app" in line:
            break
    else:
        pytest.fail("the released rerun never started")
    while not pids_file.exists() or len(pids_file.read_text().split()) < 2:  # both processes registered
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, out + err  # the new build's failure is the verdict, interrupted or not
    assert "validation interrupted by Ctrl-C" in out + err
    checkout = world.flow_result("checkout.yaml")
    assert checkout["status"] == "failed"  # the new build's result is kept
    assert checkout["impact"] == "unknown" and checkout["impactReason"] == "impact triage was interrupted"
    assert installed(world)["sha256"] == sha256(apks.new)


# the workflow: the released app is the last passing run's APK ---------------------------------------

def test_the_workflow_triages_with_the_last_passing_runs_apk(tmp_path: Path) -> None:
    from test_workflows import PRODUCTION, load, run_script

    jobs = load(PRODUCTION)["jobs"]
    for job_name, validate_name in (("validate", "Validate, notify"), ("validate-shard", "Validate this shard")):
        steps = jobs[job_name]["steps"]
        names = [s.get("name") for s in steps]
        download = steps[names.index("Download the released app (the last passing run's APK)")]
        assert names.index(download["name"]) < names.index(validate_name)
        assert download["continue-on-error"] is True  # no released app is a warning, never a failed run
        assert steps[names.index(validate_name)]["env"]["INVOKE_VALIDATION_RELEASED_APK"] == (
            "${{ steps.released.outputs.apk }}")
        assert jobs[job_name]["permissions"]["actions"] == "read"
    uploads = [(job, s) for job, spec in jobs.items() for s in spec["steps"]
               if s.get("name") == "Upload the APK as the released app"]
    assert [job for job, _ in uploads] == ["validate", "merge-and-notify"]
    for _, upload in uploads:
        assert upload["with"]["name"] == "production-validation-released-apk"
        assert "verdict == 'pass'" in upload["if"] and "github.event_name == 'workflow_run'" in upload["if"]
    assert uploads[0][1]["with"]["path"] == "build/validation/*.apk"

    script = jobs["validate"]["steps"][[s.get("name") for s in jobs["validate"]["steps"]].index(
        "Download the released app (the last passing run's APK)")]["run"]
    output = tmp_path / "output"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "gh.log"
    # a fake gh: the artifacts API answers with an expired artifact, then the newest live one (run 41)
    (bin_dir / "gh").write_text(
        "#!/usr/bin/env python3\nimport json, subprocess, sys\n"
        f"open({str(log)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n"
        "if sys.argv[1] == 'api':\n"
        "    data = {'artifacts': [{'expired': True, 'workflow_run': {'id': 40}}, "
        "{'expired': False, 'workflow_run': {'id': 41}}, {'expired': False, 'workflow_run': {'id': 39}}], "
        "'workflow_runs': [{'id': 41, 'event': 'workflow_run', 'head_repository': {'full_name': 'o/a'}, "
        "'repository': {'full_name': 'o/a'}}]}\n"
        "    jq = sys.argv[sys.argv.index('--jq') + 1]\n"
        "    sys.stdout.write(subprocess.run(['jq', '-r', jq], input=json.dumps(data), capture_output=True, "
        "text=True).stdout)\n")
    (bin_dir / "gh").chmod(0o755)
    if shutil.which("jq") is None:
        pytest.skip("needs jq (as on GitHub's runners) to evaluate the step's --jq filter")
    done = run_script(script, tmp_path, {}, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
                      GITHUB_OUTPUT=str(output), GITHUB_REPOSITORY=REPO, DEST="build/released")
    assert done.returncode == 0, done.stderr
    assert "run download 41 --name production-validation-released-apk --dir build/released" in log.read_text()
    assert output.read_text() == "apk=build/released/*.apk\n"
    # no passing run has uploaded one yet: a warning, and validate is still told where to look (`unknown`)
    (bin_dir / "gh").write_text("#!/bin/sh\nexit 0\n")
    output.unlink()
    done = run_script(script, tmp_path, {}, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
                      GITHUB_OUTPUT=str(output), GITHUB_REPOSITORY=REPO, DEST="build/released")
    assert done.returncode == 0, done.stderr
    assert "::warning title=released app::no passing production run has uploaded its APK yet" in done.stdout
    assert output.read_text() == "apk=build/released/*.apk\n"
