"""One run per results folder; one run per device across folders; a dead run's locks are taken over."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from conftest import World, alive


def _wait_for(condition: object, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _hanging_run(world: World, run_id: str) -> subprocess.Popen[str]:
    """A validate that holds the default results folder and emulator-5554 until it is stopped."""
    world.device()
    world.flow("login.yaml")
    world.scenario({"login.yaml": ["hang", "pass"]})
    proc = world.start("validate", "--retries", "0", VALIDATION_RUN_ID=run_id)
    _wait_for(lambda: world.hung_pids() or proc.poll() is not None, "the first run's flow to start")
    assert proc.poll() is None, proc.communicate()
    return proc


def _stop(proc: subprocess.Popen[str], sig: signal.Signals = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
    proc.communicate(timeout=60)


def _kill_hung(world: World) -> None:
    for pid in world.hung_pids():
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_a_second_run_on_a_folder_in_use_stops_at_once_naming_the_first(world: World) -> None:
    first = _hanging_run(world, "run-a")
    try:
        second = world.invoke("validate", VALIDATION_RUN_ID="run-b")
        assert second.returncode == 2
        assert f"in use by another run (pid {first.pid}, run id run-a, validate since" in second.stderr
        assert "give this one its own folder (--results-dir)" in second.stderr
        merge = world.invoke("merge-results", str(world.root / "shards"), "--results-dir", str(world.results))
        assert merge.returncode == 2 and f"(pid {first.pid}, run id run-a" in merge.stderr
        build = world.invoke("build-apk")
        assert build.returncode == 2 and f"(pid {first.pid}, run id run-a" in build.stderr
        notify = world.invoke("notify", SLACK_WEBHOOK_URL="http://127.0.0.1:9/never")  # not on a half-done run
        assert notify.returncode == 2 and f"(pid {first.pid}, run id run-a" in notify.stderr
        assert len(world.maestro_calls()) == 1  # the second run never ran a flow
        assert world.record()["runId"] == "run-a"  # nor touched the first one's record
    finally:
        _stop(first)
    assert first.returncode == 2  # interrupted: SIGTERM
    record = world.record()
    assert record["runId"] == "run-a" and record["verdict"] == "error"
    assert "SIGTERM" in record["stages"]["validate"]["error"]


def test_the_lock_of_a_killed_run_is_taken_over(world: World) -> None:
    first = _hanging_run(world, "run-a")
    try:
        first.kill()  # SIGKILL: no cleanup; its lock files stay behind, naming it
        first.communicate(timeout=30)
    finally:
        _kill_hung(world)  # its maestro, in its own process group
    assert json.loads((world.results / ".prodval.lock").read_text())["pid"] == first.pid
    again = world.invoke("validate", VALIDATION_RUN_ID="run-c")  # login.yaml's attempt 2 passes
    assert again.returncode == 0, again.stderr
    assert world.record()["runId"] == "run-c"


def test_a_device_in_use_by_a_run_in_another_folder_is_waited_for_or_refused(world: World) -> None:
    first = _hanging_run(world, "run-a")
    other = world.root / "other-results"
    try:
        refused = world.invoke("validate", "--results-dir", str(other), VALIDATION_RUN_ID="run-b",
                               INVOKE_VALIDATION_DEVICE_WAIT="0.3")
        assert refused.returncode == 2
        assert f"emulator-5554 is in use by another run (pid {first.pid}, run id run-a" in refused.stderr
        assert "waited 0.3s for it" in refused.stderr
        assert len(world.maestro_calls()) == 1
        record = json.loads((other / "results.json").read_text())
        assert record["verdict"] == "error" and "emulator-5554 is in use" in record["stages"]["validate"]["error"]

        waiter = world.start("validate", "--results-dir", str(other), VALIDATION_RUN_ID="run-d")
        waiting = threading.Event()
        lines: list[str] = []

        def read() -> None:
            assert waiter.stderr is not None
            for line in waiter.stderr:
                lines.append(line)
                if "waiting up to 600s for it" in line:
                    waiting.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            assert waiting.wait(timeout=60), "".join(lines)
            assert len(world.maestro_calls()) == 1  # it waits: no flow on the busy device
            _stop(first)  # the first run ends; the waiting one goes on
            waiter.wait(timeout=120)
            reader.join(timeout=10)
        finally:
            if waiter.poll() is None:
                waiter.kill()
                waiter.wait()
        assert waiter.returncode == 0, "".join(lines)
    finally:
        _stop(first)
    ended = world.record()["job"]["endTime"]
    [attempt] = json.loads((other / "results.json").read_text())["flows"][0]["attempts"]
    assert attempt["startTime"] >= ended  # never on the device while the first run drove it


def test_a_folder_lock_is_released_after_every_stage(world: World, tmp_path: Path) -> None:
    """The chain `validate notify` and a re-run in the same folder do not lock themselves out."""
    world.device()
    world.flow("login.yaml")
    world.scenario()
    for _ in range(2):
        run = world.invoke("validate", "notify", "--dry-run")
        assert run.returncode == 0, run.stderr
    assert json.loads((world.results / ".prodval.lock").read_text() or "{}") == {}


@pytest.mark.parametrize("wait", ["-1", "soon"])
def test_bad_device_wait(world: World, wait: str) -> None:
    world.device()
    world.flow("login.yaml")
    run = world.invoke("validate", INVOKE_VALIDATION_DEVICE_WAIT=wait)
    assert run.returncode == 2 and "validation.device_wait" in run.stderr
