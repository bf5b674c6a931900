"""Nothing outlives a killed run: after SIGKILL of `invoke validate` its maestro and logcat die too, and
logcat.txt holds no secret, because it is masked as it is written."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import World, alive

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
