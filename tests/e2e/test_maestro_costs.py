"""Each maestro process as it really costs, end to end against the fake maestro's cost model: the driver
installed once per device, the stale session after a SIGKILL, executionOrder, appId from --env."""

from __future__ import annotations

import json

import pytest
from conftest import World, real_apk
from prodval.doctor import OK, WARNING, check
from prodval.settings import load_emulator

DRIVER = ("dev.mobile.maestro", "dev.mobile.maestro.test")
COSTS = {"jvm": 0.01, "driver_install": 0.05, "driver_uninstall": 0.01, "session_window": 1.0}


def device_state(world: World, serial: str = "emulator-5554") -> dict:
    return json.loads(world.adb_state.read_text())["devices"][serial]


@pytest.fixture
def three(world: World) -> World:
    stale = {p: {"path": "old.apk", "flags": [], "installed_at": 0} for p in DRIVER}
    world.device(packages=stale)
    for name in ("a.yaml", "b.yaml", "c.yaml"):
        world.flow(name)
    return world


def test_driver_is_installed_once_per_device_and_kept(three: World) -> None:
    run = three.scenario(costs=COSTS).invoke("validate", "--retries", "0")
    assert run.returncode == 0, run.stderr
    calls = three.maestro_calls()
    assert len(calls) == 3 and all("--no-reinstall-driver" in c["argv"] for c in calls)
    for package in DRIVER:  # the stale driver is removed at preparation, before any flow
        assert ["-s", "emulator-5554", "uninstall", package] in three.adb_calls()
    state = device_state(three)
    assert state["maestro_driver_installs"] == 1
    assert set(DRIVER) <= set(state["packages"]) and state["packages"][DRIVER[0]]["path"] != "old.apk"
    assert "maestro_session" not in state


def test_a_maestro_older_than_2_1_reinstalls_per_flow_and_is_not_given_the_flag(three: World) -> None:
    run = three.scenario(costs=COSTS).invoke("validate", "--retries", "0", FAKE_MAESTRO_VERSION="2.0.0",
                                             FAKE_MAESTRO_UNKNOWN_OPTIONS="--no-reinstall-driver")
    assert run.returncode == 0, run.stderr
    assert not any("--no-reinstall-driver" in c["argv"] for c in three.maestro_calls())
    assert device_state(three)["maestro_driver_installs"] == 3  # and each process removed it at exit
    assert not set(DRIVER) & set(device_state(three)["packages"])


def test_parallel_devices_need_maestro_2_6(world: World) -> None:
    world.device("emulator-5554").device("emulator-5556").flow("a.yaml")
    run = world.scenario().invoke("validate", "--devices", "2", FAKE_MAESTRO_VERSION="2.5.1")
    assert run.returncode == 2
    assert "2.5.1 runs flows on several devices at once only from 2.6.0" in run.stderr
    assert world.maestro_calls() == []


@pytest.mark.parametrize(("version", "status", "words"), [
    ("2.8.0", OK, "2.8.0"), ("2.5.1", WARNING, "parallel devices (--devices > 1) need 2.6.0+"),
    ("2.0.0", WARNING, "reinstalls its driver for every flow"),
])
def test_doctor_checks_the_maestro_version(world: World, version: str, status: str, words: str) -> None:
    from prodval.console import Console

    env = world.env(FAKE_MAESTRO_VERSION=version)
    [row] = check(load_emulator({}, {}), env, console=Console(env), needs=("maestro",), maestro=str(world.bin / "maestro"))
    assert row.status == status and words in row.detail, row


@pytest.mark.slow
def test_after_a_killed_flow_the_device_waits_out_the_stale_session(three: World) -> None:
    three.scenario({"a.yaml": ["hang:ignore-term"]}, costs=COSTS)
    # without the wait, the fake reproduces Maestro: the next process on that device cannot start its driver
    # (no screen recording: stopping and pulling the killed flow's video would outlast the 1 s session window)
    bare = three.invoke("validate", "--retries", "0", "--flow-timeout", "1.5", INVOKE_VALIDATION_SESSION_WAIT="0",
                        INVOKE_VALIDATION_VIDEO="false")
    assert three.flow_result("a.yaml")["status"] == "timed_out"
    assert three.flow_result("b.yaml")["status"] == "error", bare.stdout
    assert "did not start up in time" in three.flow_result("b.yaml")["errorSummary"]
    (three.state_dir / "attempts.json").unlink()
    (three.results / "timings.json").unlink()  # same order as the first run
    run = three.invoke("validate", "--retries", "0", "--flow-timeout", "1.5", INVOKE_VALIDATION_SESSION_WAIT="1.2",
                       INVOKE_VALIDATION_VIDEO="false")
    assert run.returncode == 2, run.stderr
    assert three.flow_result("a.yaml")["status"] == "timed_out", run.stdout
    assert [three.flow_result(n)["status"] for n in ("b.yaml", "c.yaml")] == ["passed", "passed"], run.stdout
    assert "for the killed flow's Maestro session to expire before the next flow on this device" in run.stdout


def test_execution_order_runs_first_and_stops_the_rest(world: World) -> None:
    world.device()
    for name in ("a.yaml", "b.yaml", "z-setup.yaml"):
        world.flow(name)
    (world.flows / "config.yaml").write_text(
        "executionOrder:\n  continueOnFailure: false\n  flowsOrder: [z-setup, b]\n")
    run = world.scenario({"b.yaml": ["fail:Element not found: Save"]}).invoke("validate", "--retries", "0")
    assert run.returncode == 1, run.stderr
    files = [c["argv"][c["argv"].index("test") + 1].rsplit("/", 1)[-1] for c in world.maestro_calls()]
    assert files == ["z-setup.yaml", "b.yaml"]
    a = world.flow_result("a.yaml")
    assert a["status"] == "not_run"
    assert a["errorSummary"].startswith("not run: b.yaml (b), an executionOrder flow, ended failed")
    refused = world.invoke("validate", "--devices", "2")
    assert refused.returncode == 2 and "cannot run with --devices 2" in refused.stderr
    (world.root / "plain.yaml").write_text("excludeTags: [wip]\n")  # --config replaces the folder's config
    (world.state_dir / "attempts.json").unlink()
    run = world.scenario().invoke("validate", "--retries", "0", "--config", "plain.yaml")
    assert run.returncode == 0, run.stderr
    assert sorted(f["status"] for f in world.record()["flows"]) == ["passed"] * 3


def test_app_id_from_env_matches_the_apk(world: World) -> None:
    world.device()
    world.flow("login.yaml", app_id="${APP_ID}")
    real_apk(world.root / "app.apk")
    missing = world.scenario().invoke("validate", "--apk", "app.apk")
    assert missing.returncode == 2
    assert "appId '${APP_ID}' is empty because APP_ID is not set: pass --env APP_ID=<package>" in missing.stderr
    assert world.maestro_calls() == []
    run = world.invoke("validate", "--apk", "app.apk", "--env", "APP_ID=com.example.exerciselog")
    assert run.returncode == 0, run.stderr
    wrong = world.invoke("validate", "--apk", "app.apk", "--env", "APP_ID=com.example.other")
    assert wrong.returncode == 2 and "appId com.example.other, but the APK's package is" in wrong.stderr


def test_the_fake_selects_a_folders_flows_as_maestro_does(world: World) -> None:
    world.device()
    for name in ("top.yaml", "auth/login.yaml", "cart/add.yaml", "nested/config.yml"):
        world.flow(name)
    (world.flows / "config.yaml").write_text("flows:\n  - '**/*.yaml'\n")
    (world.flows / "auth" / "settings.yaml").write_text("excludeTags: [wip]\n")  # a config by content
    import subprocess

    done = subprocess.run(["maestro", "test", str(world.flows), "--format", "junit", "--output",
                           str(world.root / "r.xml")], env=world.env(), cwd=world.root, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    report = (world.root / "r.xml").read_text()
    assert 'name="login"' in report and 'name="add"' in report
    assert 'name="top"' not in report and "settings" not in report and 'tests="2"' in report
