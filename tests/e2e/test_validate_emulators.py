"""`invoke validate` with no device connected: it boots emulators from the fake SDK, runs, and always
stops them, whatever ends the run; devices it did not start are left alone."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable

import pytest
from conftest import AndroidSdk, World, alive, fake_emulator_processes
from prodval.emulator import load_started

FAST = {"INVOKE_EMULATOR_BOOT_POLL": "0.1", "INVOKE_EMULATOR_STOP_TIMEOUT": "5"}


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def nothing_running(world: World) -> bool:
    procs = fake_emulator_processes(world.adb_state)
    return bool(procs) and not [pid for p in procs for pid in (p["pid"], p["child_pid"]) if alive(pid)]


@pytest.fixture
def bare(world: World, android_sdk: AndroidSdk) -> World:
    """A project with flows and an SDK, but no device connected."""
    world.adb_state.write_text(json.dumps({"devices": {}}))
    world.flow("login.yaml")
    world.flow("add-exercise.yaml")
    world.extra_env.update(FAST)
    return world


def test_boots_an_emulator_runs_and_stops_it(bare: World) -> None:
    run = bare.scenario().invoke("validate")
    assert run.returncode == 0, run.stderr
    record = bare.record()
    assert record["verdict"] == "pass"
    assert record["devices"] == ["emulator-5554"]
    assert {f["device"] for f in record["flows"]} == {"emulator-5554"}
    logcat = "devices/emulator-5554/logcat.txt"
    assert logcat in record["job"]["artifactPaths"]
    assert (bare.results / logcat).is_file()
    assert any(p.startswith("emulators/") for p in record["job"]["artifactPaths"])  # the emulator's own log
    assert "Stopping the emulator(s) this run started: emulator-5554" in run.stdout
    assert nothing_running(bare)
    assert load_started(bare.results) == []
    assert "emulator-5554" not in json.loads(bare.adb_state.read_text())["devices"]


def test_boots_only_what_is_missing_and_leaves_other_devices_alone(bare: World) -> None:
    bare.device("R58M123ABC")  # a phone on USB, not ours
    run = bare.scenario(default="sleep:0.3").invoke("validate", "--devices", "2")
    assert run.returncode == 0, run.stderr
    record = bare.record()
    assert sorted(record["devices"]) == ["R58M123ABC", "emulator-5554"]
    # both devices are free when the two flows are handed out, and each flow takes 0.3 s: one each
    assert {f["device"] for f in record["flows"]} == {"R58M123ABC", "emulator-5554"}
    devices = json.loads(bare.adb_state.read_text())["devices"]
    assert "R58M123ABC" in devices and "emulator-5554" not in devices
    assert not any("R58M123ABC" in c and "emu kill" in c for c in map(" ".join, bare.adb_calls()))


def test_an_assertion_failure_still_stops_the_emulator(bare: World) -> None:
    run = bare.scenario({"login.yaml": ["fail:Element not found: Save"]}).invoke("validate", "--retries", "0")
    assert run.returncode == 1
    assert nothing_running(bare)


def test_an_emulator_that_never_boots_is_an_error_and_leaves_nothing(bare: World) -> None:
    run = bare.scenario().invoke("validate", INVOKE_EMULATOR_BOOT_TIMEOUT="1",
                                 FAKE_EMULATOR_BOOT_DELAY="never")
    assert run.returncode == 2
    record = bare.record()
    assert record["verdict"] == "error"
    assert all(f["status"] == "not_run" for f in record["flows"])
    assert "emulator-5554 did not boot within 1s, even on a cold-boot retry" in record["stages"]["validate"]["error"]
    assert nothing_running(bare)
    assert bare.maestro_calls() == []


def test_device_lost_mid_run_is_an_infrastructure_error_and_the_flow_is_retried(bare: World) -> None:
    # The device drops off when the third flow starts (after two maestro runs, not after a time) and stays
    # away, so the third flow starts on an offline device whatever the machine's speed.
    bare.flow("third.yaml")
    bare.scenario()
    run = bare.invoke("validate", "--retries", "1", FAKE_EMULATOR_OFFLINE_AFTER_RUNS="2")
    assert run.returncode == 2
    record = bare.record()
    attempts = [a for f in record["flows"] for a in f["attempts"]]
    errors = [a for a in attempts if a["status"] == "error"]
    assert errors, run.stdout
    assert all("emulator-5554 was requested, but it is not connected" in a["errorSummary"] for a in errors)
    assert any(len(f["attempts"]) == 2 for f in record["flows"])
    assert nothing_running(bare)


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["boot", "flow"])
def test_sigterm_stops_the_emulator_and_keeps_the_record(bare: World, moment: str) -> None:
    if moment == "boot":
        proc = bare.scenario().start("validate", FAKE_EMULATOR_BOOT_DELAY="never")
        # Our state file names it and the fake has registered itself and its child: it is really booting.
        wait_for(lambda: bool(load_started(bare.results)) and bool(fake_emulator_processes(bare.adb_state)))
    else:
        proc = bare.scenario({"login.yaml": ["hang"]}).start("validate")
        wait_for(lambda: len(bare.hung_pids()) == 2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "interrupted by SIGTERM" in err
    record = bare.record()
    assert record["verdict"] == "error"
    if moment == "flow":
        assert bare.flow_result("add-exercise.yaml")["status"] == "passed"
        assert not [pid for pid in bare.hung_pids() if alive(pid)]
    assert nothing_running(bare)
    assert load_started(bare.results) == []
