"""The released app's rerun (impact triage) gathers the evidence validate's attempts gather, end to end:
`invoke validate` on the fake device with real APKs. Its app crash is its failure (the exception line,
crash.txt), its screen is recorded (kept when it did not pass); a quarantined flow is not rerun, and a
"released" APK that is this build is no released app."""

from __future__ import annotations

import json

import test_impact
import yaml
from conftest import World
from prodval.recording import is_complete_mp4
from prodval.settings import utc_today
from test_impact import APP_ID, BOTH, NEW_ONLY, Apks, project

apks = test_impact.apks  # the module's real, signed APKs (a fixture)
CRASH = "java.lang.IllegalStateException: Cart is empty"
SIGN_OUT = '- launchApp\n- tapOn: "Sign out"\n- stopApp\n'  # no later step looks at the app: maestro passes


def released_attempt(world: World, flow: str) -> dict[str, object]:
    [attempt] = [a for a in world.flow_result(flow)["attempts"] if a["apk"] == "released"]
    return dict(attempt)


def installs(world: World) -> list[list[str]]:
    return [argv for argv in world.adb_calls() if "install" in argv]


def test_the_released_apps_crash_is_its_failure_with_the_exception_and_a_video(world: World, apks: Apks) -> None:
    """Maestro passes the flow on both builds, and the app logs FATAL EXCEPTION on both: users have it too."""
    world.device()
    world.flow("sign-out.yaml", commands=SIGN_OUT)
    world.scenario(logcat={"sign-out.yaml": {"crash": CRASH}})
    run = world.invoke("validate", "--apk", str(apks.new), "--retries", "0",
                       INVOKE_VALIDATION_RELEASED_APK=str(apks.released))
    assert run.returncode == 1, run.stdout[-3000:] + run.stderr
    flow = world.flow_result("sign-out.yaml")
    assert (flow["status"], flow["errorSummary"]) == ("failed", CRASH)
    assert flow["impact"] == "current-users", flow["impactReason"]
    assert flow["impactReason"] == f"the released app fails too: {CRASH}"
    rerun = released_attempt(world, "sign-out.yaml")
    assert (rerun["status"], rerun["crash"], rerun["errorSummary"]) == ("failed", True, CRASH)
    assert rerun["exitCode"] == 0  # maestro itself passed it
    assert "flows/sign-out.yaml/released-1/crash.txt" in rerun["artifactPaths"]  # type: ignore[operator]
    block = (world.results / "flows" / "sign-out.yaml" / "released-1" / "crash.txt").read_text().splitlines()
    assert block[0].endswith(" E AndroidRuntime: FATAL EXCEPTION: main")
    assert block[2].endswith(f" E AndroidRuntime: {CRASH}")
    video = str(rerun["video"])
    assert video.startswith("flows/sign-out.yaml/released-1/video-") and video.endswith(".mp4"), rerun["noVideo"]
    assert video in rerun["artifactPaths"] and video in flow["artifactPaths"]  # type: ignore[operator]
    assert is_complete_mp4(world.results / video)
    # the build's own attempt, with its own crash and video, is unchanged
    [built] = [a for a in flow["attempts"] if a["apk"] == "new"]
    assert built["crash"] and built["video"].startswith("flows/sign-out.yaml/attempt-1/video-")
    html = (world.results / "report.html").read_text()
    assert f'src="{video}"' in html
    assert "The app crashed during released app 1: " in html  # the card names the released app's rerun
    assert "The app crashed during attempt 1: " in html
    assert f"<figcaption>released app 1: <a href=\"{video}\"" in html


def test_a_passing_released_rerun_keeps_no_video_and_says_so(world: World, apks: Apks) -> None:
    project(world, {"profile.yaml": NEW_ONLY})
    run = world.invoke("validate", "--apk", str(apks.new), INVOKE_VALIDATION_RELEASED_APK=str(apks.released))
    assert run.returncode == 1, run.stdout[-3000:] + run.stderr
    assert world.flow_result("profile.yaml")["impact"] == "new-build-only"
    rerun = released_attempt(world, "profile.yaml")
    assert (rerun["status"], rerun["crash"]) == ("passed", False)
    assert (rerun["video"], rerun["noVideo"]) == ("", "not kept: the attempt passed")
    assert not list((world.results / "flows" / "profile.yaml" / "released-1").glob("*.mp4"))


def test_a_quarantined_failed_flow_is_not_run_again_with_the_released_app(world: World, apks: Apks) -> None:
    project(world, {"checkout.yaml": BOTH, "profile.yaml": NEW_ONLY})
    until = utc_today().replace(year=utc_today().year + 1).isoformat()
    quarantine = yaml.safe_dump([{"flow": "checkout.yaml", "reason": "sandbox (JIRA-1)", "owner": "@payments",
                                  "until": until}])
    run = world.invoke("validate", "--apk", str(apks.new), INVOKE_VALIDATION_RELEASED_APK=str(apks.released),
                       INVOKE_VALIDATION_QUARANTINE=quarantine)
    assert run.returncode == 1, run.stdout[-3000:] + run.stderr  # profile.yaml still gates
    held = world.flow_result("checkout.yaml")
    assert held["quarantined"] and held["status"] == "failed"
    assert (held["impact"], [a["apk"] for a in held["attempts"]]) == ("", ["new"])
    assert not (world.results / "flows" / "checkout.yaml" / "released-1").exists()
    assert "1 quarantined failed flow(s) not run again with the released app: checkout.yaml" in run.stdout
    assert world.flow_result("profile.yaml")["impact"] == "new-build-only"  # the gating one is still triaged
    checkout_runs = [c for c in world.maestro_calls() if any(a.endswith("checkout.yaml") for a in c["argv"])]
    assert len(checkout_runs) == 1


def test_a_released_apk_that_is_this_build_leaves_the_impact_unknown_without_a_rerun(world: World,
                                                                                      apks: Apks) -> None:
    project(world, {"checkout.yaml": BOTH})
    run = world.invoke("validate", "--apk", str(apks.new), INVOKE_VALIDATION_RELEASED_APK=str(apks.new))
    assert run.returncode == 1, run.stdout[-3000:] + run.stderr
    checkout = world.flow_result("checkout.yaml")
    assert checkout["impact"] == "unknown"
    assert "the released app is this build" in checkout["impactReason"]
    assert [a["apk"] for a in checkout["attempts"]] == ["new"]
    assert not (world.results / "flows" / "checkout.yaml" / "released-1").exists()
    assert len(installs(world)) == 1  # the new build, once: no released install, no reinstall
    assert "the released app is this build" in run.stdout + run.stderr  # said once, as a warning
    assert "the released app is this build" in json.dumps(world.record()["environment"]["releasedApk"])
    assert APP_ID in json.dumps(world.record()["apk"])
