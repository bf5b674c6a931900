"""The released app's rerun (impact triage) is evidence, not one of the build's attempts: the history, the
timings, the card's own screenshots and the merged record count and show the build's attempts only; and
triage leaves alone what is not worth two installs (quarantined flows, a device that left the run, a
"released" APK that is this build)."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

from conftest import real_apk
from prodval.apkfile import inspect_apk
from prodval.console import Console
from prodval.devices import Adb
from prodval.history import History
from prodval.impact import UNKNOWN, Released, Rerun, choose_released, triage
from prodval.merge import merge
from prodval.outcomes import Status
from prodval.report import attempt_images
from prodval.results import NEW, RELEASED, Attempt, FlowResult, Job, RecordWriter, RunRecord, Stage
from prodval.schedule import timings_from_record
from prodval.secrets import Redactor

APP_ID = "com.example.exerciselog"
SERIAL = "emulator-5554"


def attempt(number: int, status: str, apk: str = NEW, duration: int = 1000, paths: tuple[str, ...] = (),
            video: str = "") -> Attempt:
    return Attempt(number, status, 0 if status == Status.PASSED else 1, duration, SERIAL, "t", "",
                   artifactPaths=list(paths), apk=apk, video=video)


def failed_twice_then_released(name: str = "checkout.yaml") -> FlowResult:
    return FlowResult(name, name.removesuffix(".yaml"), status=Status.FAILED, device=SERIAL, duration=2000,
                      attempts=[attempt(1, Status.FAILED, duration=900), attempt(2, Status.FAILED, duration=1100),
                                attempt(1, Status.FAILED, RELEASED, duration=40)])


def test_the_history_stores_the_builds_attempts_not_the_released_rerun(tmp_path: Path) -> None:
    record = RunRecord(runId="r1", job=Job(jobId="r1", commit="abc", startTime="s", endTime="e"), verdict="fail",
                       flows=[failed_twice_then_released()])
    history = History.open(tmp_path / "h.sqlite", warn=lambda text: None)
    try:
        history.append(record)
        [run] = history.flow_runs("checkout.yaml", 5)
    finally:
        history.close()
    assert run["attempts"] == 2


def test_timings_come_from_the_builds_last_attempt_not_the_released_rerun() -> None:
    data = {"flows": [{"flowFileName": "checkout.yaml", "status": "failed",
                       "attempts": [{"duration": 900, "apk": "new"}, {"duration": 1100, "apk": "new"},
                                    {"duration": 40, "apk": "released"}]}]}
    assert timings_from_record(data) == {"checkout.yaml": 1100}
    # an old record's attempts say no apk: they are the build's
    assert timings_from_record({"flows": [{"flowFileName": "a.yaml", "status": "passed",
                                           "attempts": [{"duration": 700}]}]}) == {"a.yaml": 700}


def test_the_cards_own_screenshots_come_from_the_builds_last_attempt(tmp_path: Path) -> None:
    paths = {}
    for folder in ("attempt-1", "released-1"):
        png = tmp_path / "flows" / "profile.yaml" / folder / "debug" / "profile" / "takeScreenshot" / f"{folder}.png"
        png.parent.mkdir(parents=True)
        png.write_bytes(b"\x89PNG\r\n\x1a\n")
        paths[folder] = png.relative_to(tmp_path).as_posix()
    flow = FlowResult("profile.yaml", "profile", status=Status.FAILED, device=SERIAL,
                      attempts=[attempt(1, Status.FAILED, paths=(paths["attempt-1"],)),
                                attempt(1, Status.PASSED, RELEASED, paths=(paths["released-1"],))])
    _, own = attempt_images(tmp_path, flow)
    assert [shot.path.name for shot in own] == ["attempt-1.png"]


def test_merge_prefixes_each_attempts_video_with_its_shard_folder(tmp_path: Path) -> None:
    paths = []
    for index in (1, 2):
        name = f"s{index}.yaml"
        video = f"flows/{name}/attempt-1/video-1.mp4"
        flow = FlowResult(name, name.removesuffix(".yaml"), status=Status.FAILED, device=SERIAL,
                          attempts=[attempt(1, Status.FAILED, paths=(video,), video=video)], artifactPaths=[video])
        shard = RunRecord(runId="r1", job=Job(jobId="j", startTime="2026-11-30T06:00:00.000Z",
                                              endTime="2026-11-30T06:00:00.000Z"), flows=[flow])
        shard.verdict = shard.decide()
        shard.shard = {"index": index, "count": 2, "attempt": 1}
        shard.stages["validate"] = Stage(shard.verdict or "", "t", "t")
        folder = tmp_path / f"shard-{index}"
        RecordWriter(folder, Redactor()).save(shard)
        paths.append(folder / "results.json")
    merged = merge(paths, tmp_path / "merged", {})
    for flow in merged.flows:
        [only] = flow.attempts
        assert only.video == f"../shard-{flow.flowFileName[1]}/flows/{flow.flowFileName}/attempt-1/video-1.mp4"
        assert only.video in only.artifactPaths and only.video in flow.artifactPaths


def test_a_released_apk_that_is_this_build_is_no_released_app(tmp_path: Path) -> None:
    new = real_apk(tmp_path / "new" / "app-production.apk", APP_ID, 2, "2.0.0")
    same = tmp_path / "released" / "app-2.apk"
    same.parent.mkdir()
    shutil.copy(new, same)
    digest = inspect_apk(new).sha256
    chosen = choose_released(str(same), APP_ID, digest)
    assert chosen.apk is None
    assert "the released app is this build" in chosen.note and "app-2.apk" in chosen.note
    # among a glob's files, this build is skipped and the released one taken
    real_apk(tmp_path / "released" / "app-1.apk", APP_ID, 1, "1.0.0")
    chosen = choose_released(str(tmp_path / "released" / "app-*.apk"), APP_ID, digest)
    assert chosen.apk is not None and chosen.apk.path.name == "app-1.apk" and chosen.apk.version_code == 1
    assert "app-2.apk is this run's build" in chosen.note
    # without the new build's digest (no APK of its own) nothing is skipped
    assert choose_released(str(same), APP_ID).apk is not None


def _adb_that_logs(tmp_path: Path) -> tuple[Path, Path]:
    """An adb that only writes down that it was called (triage must not call it here)."""
    calls = tmp_path / "adb-calls.txt"
    adb = tmp_path / "bin" / "adb"
    adb.parent.mkdir()
    adb.write_text(f"#!/bin/sh\necho \"$*\" >> '{calls}'\nexit 1\n")
    adb.chmod(adb.stat().st_mode | stat.S_IXUSR)
    return adb, calls


def test_triage_skips_quarantined_flows_and_devices_that_left_the_run(tmp_path: Path) -> None:
    released_apk = real_apk(tmp_path / "released" / "app-1.apk", APP_ID, 1, "1.0.0")
    new_apk = real_apk(tmp_path / "app-production.apk", APP_ID, 2, "2.0.0")
    adb_path, calls = _adb_that_logs(tmp_path)
    held = FlowResult("held.yaml", "held", status=Status.FAILED, device=SERIAL, attempts=[attempt(1, Status.FAILED)],
                      quarantined=True, quarantine={"reason": "flaky", "owner": "@o", "until": "2099-01-01"})
    gone = FlowResult("gone.yaml", "gone", status=Status.FAILED, device="emulator-5556",
                      attempts=[attempt(1, Status.ERROR), attempt(2, Status.FAILED)])
    record = RunRecord(runId="r1", job=Job(jobId="j"), flows=[held, gone],
                       retiredDevices=[{"serial": "emulator-5556", "reason": "2 infrastructure errors in a row"}])
    console = Console({})
    results = tmp_path / "results"
    writer = RecordWriter(results, Redactor())
    rerun = Rerun(tmp_path / "bin" / "maestro", (), 60, results, {})
    triage(record, writer, console, Adb(adb_path, console, {}), [], new_apk,
           Released(inspect_apk(released_apk), pattern=str(released_apk)), rerun)
    assert not calls.exists()  # no install: nothing worth two installs
    assert (held.impact, held.impactReason) == ("", "")  # a quarantined flow never pages: not triaged
    assert gone.impact == UNKNOWN
    assert gone.impactReason == "the device left the run: emulator-5556 left the rotation (2 infrastructure errors in a row)"
    assert [a.apk for a in gone.attempts] == [NEW, NEW]
    saved = (results / "results.json").read_text()
    assert "the device left the run" in saved
