"""Nothing outlives a killed run: after SIGKILL of `invoke validate` its maestro and logcat die too, and
logcat.txt holds no secret, because it is masked as it is written."""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import AndroidSdk, World, alive, fake_emulator_processes
from prodval.emulator import StartedEmulator, load_started

SECRET = "s3ss10n-C00kie-value"


def wait_for(predicate: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def processes_of(world: World, *words: str) -> list[int]:
    """Live processes started from this test's project whose command line holds every word."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(world.root) in cmdline and all(w in cmdline for w in words) and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


@pytest.mark.slow
def test_sigkill_of_validate_takes_maestro_and_logcat_with_it(world: World) -> None:
    encoded = base64.b64encode(SECRET.encode()).decode()
    world.device(logcat=[f"05-01 02:00:00.000  1  1 I App: cookie={SECRET}", f"05-01 I App: b64 {encoded}",
                         "05-01 I App: nothing secret"])
    world.flow("login.yaml")
    world.scenario({"login.yaml": ["hang"]})
    proc = world.start("validate", "--env", f"SESSION_COOKIE={SECRET}")
    try:
        wait_for(lambda: len(world.hung_pids()) == 2)
        logcat = world.results / "devices" / "emulator-5554" / "logcat.txt"
        wait_for(lambda: logcat.is_file() and "nothing secret" in logcat.read_text())
        assert processes_of(world, "logcat")
        proc.kill()  # SIGKILL: no handler of ours runs
        proc.communicate(timeout=30)
        wait_for(lambda: not [pid for pid in world.hung_pids() if alive(pid)])  # maestro and its child
        wait_for(lambda: not processes_of(world, "logcat"))
        text = logcat.read_text()
        assert "cookie=***" in text and "b64 ***" in text
        assert SECRET not in text and encoded not in text
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.mark.slow
def test_the_next_run_stops_the_emulator_a_killed_run_booted(world: World, android_sdk: AndroidSdk) -> None:
    world.adb_state.write_text(json.dumps({"devices": {}}))
    world.flow("login.yaml")
    world.extra_env.update({"INVOKE_EMULATOR_BOOT_POLL": "0.1", "INVOKE_EMULATOR_STOP_TIMEOUT": "5"})
    proc = world.scenario({"login.yaml": ["hang"]}).start("validate")
    try:
        wait_for(lambda: len(world.hung_pids()) == 2)
        proc.kill()
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    [left] = load_started(world.results)
    assert left.owner is not None and left.owner["pid"] == proc.pid  # the state names the dead owner
    assert left.orphaned() and alive(left.pid)
    first = fake_emulator_processes(world.adb_state)

    run = world.scenario().invoke("validate")
    assert run.returncode == 0, run.stderr
    assert "emulator-5554 was booted by a run" in run.stderr and "stopping it now" in run.stderr
    assert not [pid for p in first for pid in (p["pid"], p["child_pid"]) if alive(pid)]
    assert load_started(world.results) == []  # and this run stopped its own at its end


def test_an_emulator_started_on_purpose_is_no_orphan(tmp_path: Path) -> None:
    em = StartedEmulator("emulator-5554", 5554, "avd", 1, 1, None, tmp_path / "log", "")
    assert not em.orphaned()  # `invoke emulator.start` records no owner: it outlives that command on purpose
    em.owner = {"pid": os.getpid(), "startTicks": None}
    assert not em.orphaned()
