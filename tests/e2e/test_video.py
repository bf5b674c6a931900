"""Screen recordings of flow attempts: `invoke validate` against the fake adb's `screenrecord`.

The fake finishes a valid H.264 MP4 only when stopped on the device (`adb shell pkill -INT screenrecord`),
as the real one does; a stopped adb client leaves a file without `moov`. So a kept video that Chromium
plays proves the stop sequence, not just that a file was copied.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import World
from prodval.recording import is_complete_mp4
from test_report import DevTools, chromium  # noqa: F401 - the browser fixture

FAILURE = "fail:Element not found: Text matching regex: Save"
SERIAL = "emulator-5554"


def device_files(world: World) -> list[Path]:
    """What is left in the fake device's /sdcard."""
    root = Path(f"{world.adb_state}.files") / SERIAL / "sdcard"
    return sorted(root.iterdir()) if root.is_dir() else []


def screenrecord_calls(world: World) -> list[list[str]]:
    return [argv for argv in world.adb_calls() if "screenrecord" in argv and "pkill" not in argv]


def attempts(world: World, flow: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = world.flow_result(flow)["attempts"]
    return result


@pytest.fixture
def project(world: World) -> World:
    world.device()
    world.flow("login.yaml")
    world.flow("add-exercise.yaml")
    return world


def test_a_failed_attempt_keeps_its_video_and_a_passed_one_leaves_none(project: World) -> None:
    run = project.scenario({"add-exercise.yaml": [FAILURE]}).invoke("validate", "--retries", "0")
    assert run.returncode == 1, run.stderr
    failed, = attempts(project, "add-exercise.yaml")
    assert failed["video"] == "flows/add-exercise.yaml/attempt-1/video-1.mp4"
    assert failed["noVideo"] == ""
    assert failed["video"] in failed["artifactPaths"]
    assert failed["video"] in project.flow_result("add-exercise.yaml")["artifactPaths"]
    assert is_complete_mp4(project.results / failed["video"])  # stopped on the device: a finished file
    passed, = attempts(project, "login.yaml")
    assert passed["video"] == "" and passed["noVideo"] == "not kept: the attempt passed"
    assert not list((project.results / "flows" / "login.yaml").rglob("*.mp4"))
    assert device_files(project) == []  # every segment deleted on the device
    calls = screenrecord_calls(project)
    assert len(calls) == 2
    for argv in calls:
        assert argv[:6] == ["-s", SERIAL, "shell", "screenrecord", "--time-limit", "180"]
        assert argv[-1].startswith("/sdcard/prodval-") and argv[-1].endswith(".mp4")
    assert ["-s", SERIAL, "shell", "pkill", "-INT", "screenrecord"] in project.adb_calls()


def test_a_flaky_flow_keeps_only_the_failed_attempts_video(project: World) -> None:
    run = project.scenario({"add-exercise.yaml": [FAILURE, "pass"]}).invoke("validate", "--retries", "1")
    assert run.returncode == 0, run.stderr
    assert project.flow_result("add-exercise.yaml")["status"] == "flaky"
    first, second = attempts(project, "add-exercise.yaml")
    assert first["video"] == "flows/add-exercise.yaml/attempt-1/video-1.mp4"
    assert (project.results / first["video"]).is_file()
    assert second["video"] == "" and not list((project.results / "flows/add-exercise.yaml/attempt-2").glob("*.mp4"))
    assert device_files(project) == []


def test_a_long_attempt_is_recorded_in_chained_segments(project: World) -> None:
    # the fake's clock: 180 recorded seconds last 0.9 real ones, so a 2.5 s flow needs 3 segments or more
    project.device(screenrecord_time_scale=0.005)
    run = project.scenario({"add-exercise.yaml": [FAILURE]}, sleep=2.5).invoke(
        "validate", "--retries", "0", "--flows", ".maestro/add-exercise.yaml")
    assert run.returncode == 1, run.stderr
    failed, = attempts(project, "add-exercise.yaml")
    videos = [p for p in failed["artifactPaths"] if p.endswith(".mp4")]
    assert len(videos) >= 3, failed
    assert failed["video"] == "flows/add-exercise.yaml/attempt-1/video-1.mp4", failed["noVideo"]
    assert failed["noVideo"] == ""
    for path in videos:
        assert is_complete_mp4(project.results / path)
    names = [argv[-1] for argv in screenrecord_calls(project)]
    assert len(names) == len(set(names)) == len(videos)  # one file per segment
    assert device_files(project) == []


def test_a_missing_screenrecord_does_not_fail_the_flow_and_says_why(project: World) -> None:
    project.device(screenrecord_missing=True)
    run = project.scenario({"add-exercise.yaml": [FAILURE]}).invoke("validate", "--retries", "0")
    assert run.returncode == 1, run.stderr  # the flow's own failure, not an error
    failed, = attempts(project, "add-exercise.yaml")
    assert failed["status"] == "failed" and failed["errorSummary"] == "Element not found: Text matching regex: Save"
    assert failed["video"] == ""
    assert failed["noVideo"] == ("screenrecord is not available on this device "
                                 "(/system/bin/sh: screenrecord: inaccessible or not found)")
    assert project.flow_result("login.yaml")["status"] == "passed"


def test_a_screenrecord_that_dies_does_not_fail_the_flow_and_says_why(project: World) -> None:
    project.device(screenrecord_dies_after=0)
    run = project.scenario({"add-exercise.yaml": [FAILURE]}).invoke("validate", "--retries", "0")
    assert run.returncode == 1, run.stderr
    failed, = attempts(project, "add-exercise.yaml")
    assert failed["status"] == "failed" and failed["video"] == ""
    assert "screenrecord exited with code 137" in failed["noVideo"]
    assert "unplayable" in failed["noVideo"]
    assert not list(project.results.rglob("*.mp4"))  # the cut-off file is not kept
    assert project.flow_result("login.yaml")["status"] == "passed"
    assert device_files(project) == []


def test_the_budget_stops_keeping_videos(world: World) -> None:
    world.device()
    for name in ("a.yaml", "b.yaml", "c.yaml"):
        world.flow(name)
    size = len(_fakevideo().mp4(1000))
    run = world.scenario(default=FAILURE).invoke(
        "validate", "--retries", "0", INVOKE_VALIDATION_VIDEO_BUDGET_MB=str((size + 0.5) / 1_000_000))  # room for one
    assert run.returncode == 1, run.stderr
    kept = [a for f in world.record()["flows"] for a in f["attempts"] if a["video"]]
    refused = [a for f in world.record()["flows"] for a in f["attempts"] if not a["video"]]
    assert len(kept) == 1 and len(refused) == 2
    for attempt in refused:
        assert "video budget (validation.video_budget_mb" in attempt["noVideo"]
    assert len(list(world.results.rglob("*.mp4"))) == 1
    # once the budget is used up, the later attempts are not recorded at all
    assert len(screenrecord_calls(world)) == 1
    assert device_files(world) == []


def test_recording_can_be_turned_off(project: World) -> None:
    run = project.scenario({"add-exercise.yaml": [FAILURE]}).invoke("validate", "--retries", "0",
                                                                    INVOKE_VALIDATION_VIDEO="false")
    assert run.returncode == 1, run.stderr
    failed, = attempts(project, "add-exercise.yaml")
    assert failed["video"] == "" and failed["noVideo"] == "screen recording is off (validation.video: false)"
    assert screenrecord_calls(project) == []


def _fakevideo() -> Any:
    from conftest import _fake_module
    return _fake_module("_fakevideo")


def test_the_report_card_plays_the_failed_attempts_video_in_chromium(project: World,
                                                                   chromium: DevTools) -> None:  # noqa: F811
    run = project.scenario({"add-exercise.yaml": [FAILURE, FAILURE]}).invoke("validate", "--retries", "1")
    assert run.returncode == 1, run.stderr
    first, second = attempts(project, "add-exercise.yaml")
    page = (project.results / "report.html").read_text()
    for attempt in (first, second):
        assert f'<video controls preload="metadata" src="{attempt["video"]}"></video>' in page
    assert page.count("<video") == 2 and "<script" not in page  # the passed flow's card shows none

    page_url = (project.results / "report.html").resolve().as_uri()
    session = chromium.open(page_url)
    # each video's metadata, then a seek: the browser decodes a frame (a file without moov fails here)
    state = chromium.call("Runtime.evaluate", session, returnByValue=True, awaitPromise=True, expression="""
        Promise.all([...document.querySelectorAll('video')].map(v => new Promise(done => {
            const said = () => done({src: v.getAttribute('src'), error: v.error && v.error.message,
                                     width: v.videoWidth, height: v.videoHeight, duration: v.duration,
                                     ready: v.readyState, controls: v.controls});
            v.addEventListener('error', said);
            v.addEventListener('seeked', said);
            const seek = () => { v.currentTime = Math.min(0.1, v.duration / 2); };
            if (v.readyState >= 1) seek(); else v.addEventListener('loadedmetadata', seek);
            if (v.error) said();
        }))).then(JSON.stringify)""", timeout=60)
    videos = json.loads(state["result"]["value"])
    chromium.call("Browser.close")
    assert [v["src"] for v in videos] == [first["video"], second["video"]]
    for video in videos:
        assert video["error"] is None, video
        assert (video["width"], video["height"]) == (32, 64) and video["duration"] > 0 and video["controls"]
        assert video["ready"] >= 2, video  # HAVE_CURRENT_DATA: a frame was decoded
    requests = [p["request"]["url"] for p in chromium.of("Network.requestWillBeSent")]
    expected = {page_url} | {(project.results / v["src"]).resolve().as_uri() for v in videos}
    assert {url for url in requests if not url.startswith("data:")} == expected
    assert chromium.of("Network.loadingFailed") == []
    errors = [p["entry"] for p in chromium.of("Log.entryAdded") if p["entry"]["level"] == "error"]
    assert errors == []


def test_the_report_says_why_a_failed_attempt_has_no_video(project: World) -> None:
    project.device(screenrecord_missing=True)
    run = project.scenario({"add-exercise.yaml": [FAILURE]}).invoke("validate", "--retries", "0")
    assert run.returncode == 1, run.stderr
    page = (project.results / "report.html").read_text()
    assert "<video" not in page
    assert ("attempt 1: no screen recording: screenrecord is not available on this device "
            "(/system/bin/sh: screenrecord: inaccessible or not found)") in page


def test_the_alerts_name_the_failed_attempts_video(project: World) -> None:
    run = project.scenario({"add-exercise.yaml": [FAILURE]}).invoke("validate", "--retries", "0")
    assert run.returncode == 1, run.stderr
    failed, = attempts(project, "add-exercise.yaml")
    alert = project.invoke("notify", "--dry-run", SLACK_WEBHOOK_URL="https://hooks.slack.com/services/T0/B0/x",
                           PAGERDUTY_ROUTING_KEY="r" * 32)
    assert alert.returncode == 0, alert.stderr
    said = f"failed (1 attempt): Element not found: Text matching regex: Save [video: {failed['video']}]"
    assert alert.stdout.count(said) == 2  # Slack's and PagerDuty's payloads


def test_a_device_that_goes_offline_mid_attempt_costs_no_waiting_and_says_why(world: World) -> None:
    world.device(offline_after_runs=0).flow("a.yaml")  # offline as soon as maestro starts on it
    run = world.scenario(default="sleep:1").invoke("validate", "--retries", "0")
    assert run.returncode == 2, run.stderr  # maestro's infrastructure error, not the recording's
    attempt, = attempts(world, "a.yaml")
    assert attempt["status"] == "error" and attempt["video"] == ""
    assert "adb: device offline" in attempt["noVideo"], attempt["noVideo"]
    # adb cannot reach the device: the stop is not retried over and over
    assert len([c for c in world.adb_calls() if "pkill" in c]) <= 1
