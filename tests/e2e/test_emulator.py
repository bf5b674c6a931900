"""The emulator lifecycle against the fake SDK: plans without processes, then real (fake) emulators.

The fake emulator registers `emulator-P` in the adb state the fake adb serves, boots after a delay,
keeps a child in its process group (like crashpad_handler) and records every process it started, so
each test can check that nothing is left running.
"""

from __future__ import annotations

import io
import json
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import AndroidSdk, World, alive, fake_emulator_processes
from prodval.console import Console
from prodval.devices import Adb
from prodval.emulator import (
    StartedEmulator,
    capture_logcat,
    choose_ports,
    cold_boot,
    emulator_options,
    load_started,
    merge_config,
    plan_launches,
    start_emulators,
    stop_emulators,
)
from prodval.errors import CommandFailed, ConfigError, DeviceError, ToolNotFound
from prodval.host import kvm_usable
from prodval.secrets import Redactor
from prodval.settings import EmulatorSettings, load_emulator

FAST = {"boot_poll": 0.1, "stop_timeout": 5}
SYSTEM_IMAGE = "system-images;android-34;google_apis;x86_64"


def settings(**overrides: Any) -> EmulatorSettings:
    return load_emulator({**FAST, **overrides}, {})


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


class Run:
    """Library calls with the world's environment and a captured console."""

    def __init__(self, world: World, sdk: AndroidSdk) -> None:
        self.world, self.sdk = world, sdk
        self.out, self.err = io.StringIO(), io.StringIO()
        self.console = Console({}, Redactor(), out=self.out, err=self.err)

    def environ(self, **extra: str) -> dict[str, str]:
        return self.world.env(**extra)

    def adb(self, env: dict[str, str] | None = None) -> Adb:
        return Adb(self.world.bin / "adb", self.console, env or self.environ())

    def start(self, count: int = 1, *, env: dict[str, str] | None = None, **overrides: Any) -> list[StartedEmulator]:
        return start_emulators(settings(**overrides), count, console=self.console, environ=env or self.environ(),
                               results_dir=self.world.results, adb=self.adb(env))

    def stop(self, items: list[StartedEmulator] | list[str]) -> None:
        stop_emulators(items, console=self.console, results_dir=self.world.results, adb=self.adb(),
                       timeout=FAST["stop_timeout"])

    def state(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.world.adb_state.read_text())
        return data

    def processes(self) -> list[dict[str, Any]]:
        return fake_emulator_processes(self.world.adb_state)

    def nothing_running(self) -> bool:
        return not [pid for p in self.processes() for pid in (p["pid"], p["child_pid"]) if alive(pid)]

    @property
    def output(self) -> str:
        return self.out.getvalue() + self.err.getvalue()


@pytest.fixture
def lab(world: World, android_sdk: AndroidSdk) -> Run:
    world.adb_state.write_text(json.dumps({"devices": {}}))
    return Run(world, android_sdk)


# ---- settings and plans (no processes) ---------------------------------------------------------------------

def test_settings_defaults_precedence_and_errors() -> None:
    default = load_emulator({}, {})
    assert (default.api_level, default.target, default.arch) == (34, "google_apis", "x86_64")
    assert (default.port, default.count) == (5554, 1)
    assert default.avd == "prodval-api34-google_apis-x86_64"
    assert default.system_image == SYSTEM_IMAGE
    assert default.emulator_options == ("-no-window", "-gpu", "swiftshader_indirect", "-noaudio", "-no-boot-anim",
                                        "-no-snapshot-save")
    # invoke.yaml (or INVOKE_EMULATOR_*: raw strings) < flags
    merged = load_emulator({"api_level": "33", "wipe": "true", "count": 2, "ram_size": "4096M"},
                           {"api_level": "30", "emulator_options": "-no-window -accel off"})
    assert (merged.api_level, merged.wipe, merged.count, merged.ram_size) == (30, True, 2, "4096M")
    assert merged.avd == "prodval-api30-google_apis-x86_64"
    assert merged.emulator_options == ("-no-window", "-accel", "off")
    with pytest.raises(ConfigError, match="did you mean 'boot_timeout'"):
        load_emulator({"boot_timout": 5}, {})
    with pytest.raises(ConfigError, match="even console port"):
        load_emulator({"port": 5555}, {})
    with pytest.raises(ConfigError, match="did you mean 'x86_64'"):
        load_emulator({"arch": "x86-64"}, {})
    with pytest.raises(ConfigError, match="must not contain -port"):
        load_emulator({}, {"emulator_options": "-no-window -port 5560"})
    with pytest.raises(ConfigError, match="maestro_sha256"):
        load_emulator({"maestro_sha256": "abc"}, {})


def test_plan_launches_ports_avds_and_options(tmp_path: Path) -> None:
    s = settings(avd="ci", wipe=True)
    launches = plan_launches(s, Path("/sdk/emulator/emulator"), [5554, 5558], tmp_path, kvm=False)
    assert [(x.serial, x.avd, x.log.name) for x in launches] == [
        ("emulator-5554", "ci", "emulator-5554.log"), ("emulator-5558", "ci-2", "emulator-5558.log")]
    assert launches[1].argv == ("/sdk/emulator/emulator", "-avd", "ci-2", "-port", "5558", "-no-window", "-gpu",
                                "swiftshader_indirect", "-noaudio", "-no-boot-anim", "-no-snapshot-save",
                                "-wipe-data", "-accel", "off")
    assert "-accel" not in emulator_options(s, kvm=True)
    assert "-accel" not in emulator_options(settings(emulator_options="-accel on"), kvm=False)[2:]
    retry = cold_boot(launches[0], settings(avd="ci"), kvm=True)
    assert retry.cold and retry.log.name == "emulator-5554-cold-boot.log"
    assert retry.argv[:5] == launches[0].argv[:5]
    assert retry.argv[-2:] == ("-no-snapshot-load", "-wipe-data")


def test_choose_ports_skips_devices_adb_sees_and_bound_ports() -> None:
    assert choose_ports(5554, 2, ["emulator-5554", "R58M123ABC"], is_free=lambda p: True) == [5556, 5558]
    assert choose_ports(5554, 1, [], is_free=lambda p: p not in (5555,)) == [5556]  # the adb port counts too
    with pytest.raises(DeviceError, match="not enough free emulator ports"):
        choose_ports(5582, 3, [], is_free=lambda p: True)


def test_config_ini_keys_are_set_in_place_without_duplicates() -> None:
    text = "AvdId=ci\nhw.cpu.ncore=4\nhw.ramSize=1536\nhw.cpu.ncore=2\ntag.id=google_apis\n"
    values = {"hw.cpu.ncore": "2", "hw.ramSize": "2048M", "disk.dataPartition.size": "6G"}
    merged = merge_config(text, values)
    assert merged == "AvdId=ci\nhw.cpu.ncore=2\nhw.ramSize=2048M\ntag.id=google_apis\ndisk.dataPartition.size=6G\n"
    assert merge_config(merged, values) == merged


def test_kvm_usable(tmp_path: Path) -> None:
    device = tmp_path / "kvm"
    assert not kvm_usable(device, "linux")
    device.write_text("")
    assert kvm_usable(device, "linux")
    assert kvm_usable(tmp_path / "missing", "darwin")


# ---- real (fake) emulators -------------------------------------------------------------------------------

def test_start_creates_avd_boots_prepares_records_then_stop_leaves_nothing(lab: Run) -> None:
    started = lab.start(ram_size="3072M", data_partition_size="6G")
    assert [e.serial for e in started] == ["emulator-5554"]
    device = lab.state()["devices"]["emulator-5554"]
    assert device["boot_completed"] == "1" and device["state"] == "device"
    assert ["keyevent", "82"] in device["input"]
    assert device["settings"]["global"] == {"window_animation_scale": "0.0", "transition_animation_scale": "0.0",
                                            "animator_duration_scale": "0.0"}
    assert device["settings"]["secure"] == {"spell_checker_enabled": "0"}
    # the AVD went where the emulator looks (not ~/.config/.android/avd), created by avdmanager answering "no"
    home = Path(lab.environ()["HOME"])
    avd = home / ".android" / "avd" / "prodval-api34-google_apis-x86_64.avd"
    config = (avd / "config.ini").read_text()
    assert "hw.cpu.ncore=2\n" in config and "hw.ramSize=3072M\n" in config and "disk.dataPartition.size=6G\n" in config
    assert not (home / ".config").exists()
    creates = lab.sdk.calls("avdmanager")
    assert [c["argv"][:2] for c in creates] == [["create", "avd"]]
    assert creates[0]["stdin_answers"] == ["no"] and SYSTEM_IMAGE in creates[0]["argv"]
    launch = lab.sdk.calls("emulator")[0]["argv"]
    assert launch[:4] == ["-avd", "prodval-api34-google_apis-x86_64", "-port", "5554"]
    assert launch[4:10] == ["-no-window", "-gpu", "swiftshader_indirect", "-noaudio", "-no-boot-anim", "-no-snapshot-save"]
    # its output went to a log in the results folder, and it is recorded for a later `emulator.stop`
    assert "Boot completed" in (lab.world.results / "emulators" / "emulator-5554.log").read_text()
    assert [e.serial for e in load_started(lab.world.results)] == ["emulator-5554"]
    assert not lab.nothing_running()

    lab.stop(started)
    assert ["-s", "emulator-5554", "emu", "kill"] in lab.world.adb_calls()
    wait_for(lab.nothing_running)
    assert lab.nothing_running()  # the crashpad-like child too: its process group was terminated
    assert load_started(lab.world.results) == []
    assert "emulator-5554" not in lab.state()["devices"]


def test_second_start_reuses_the_avd_without_duplicate_config_keys(lab: Run) -> None:
    lab.stop(lab.start())
    lab.stop(lab.start(cores=4))
    assert len(lab.sdk.calls("avdmanager")) == 1
    config = (Path(lab.environ()["HOME"]) / ".android/avd/prodval-api34-google_apis-x86_64.avd/config.ini").read_text()
    assert config.count("hw.cpu.ncore=") == 1 and "hw.cpu.ncore=4\n" in config
    assert config.count("hw.ramSize=") == 1


def test_slow_boot_and_flaky_unlock_are_waited_out(lab: Run) -> None:
    env = lab.environ(FAKE_EMULATOR_BOOT_DELAY="1.5", FAKE_EMULATOR_INPUT_FAILURES="2")
    started = lab.start(env=env, boot_timeout=30)
    device = lab.state()["devices"][started[0].serial]
    assert device["boot_completed"] == "1" and device["input_failures"] == 0
    unlocks = [c for c in lab.world.adb_calls() if c[-2:] == ["keyevent", "82"]]
    assert len(unlocks) == 3  # two failures, then the unlock
    lab.stop(started)


@pytest.mark.slow
def test_never_boots_times_out_retries_cold_then_fails_and_leaves_nothing(lab: Run) -> None:
    env = lab.environ(FAKE_EMULATOR_BOOT_DELAY="never")
    with pytest.raises(DeviceError, match=r"did not boot within 1\.5s, even on a cold-boot retry"):
        lab.start(env=env, boot_timeout=1.5)
    processes = lab.processes()
    assert [p["cold"] for p in processes] == [False, True]
    assert processes[1]["argv"][-2:] == ["-no-snapshot-load", "-wipe-data"]
    wait_for(lab.nothing_running)
    assert load_started(lab.world.results) == []
    assert "retrying once with a cold boot" in lab.output
    assert (lab.world.results / "emulators" / "emulator-5554-cold-boot.log").exists()


def test_cold_boot_retry_can_rescue_a_hung_quick_boot(lab: Run) -> None:
    env = lab.environ(FAKE_EMULATOR_BOOT_DELAY="never", FAKE_EMULATOR_COLD_BOOT_DELAY="0.3")
    started = lab.start(env=env, boot_timeout=1)
    assert [p["cold"] for p in lab.processes()] == [False, True]
    assert not alive(lab.processes()[0]["pid"]) and not alive(lab.processes()[0]["child_pid"])
    assert started[0].log.name == "emulator-5554-cold-boot.log"
    assert [e.pid for e in load_started(lab.world.results)] == [lab.processes()[1]["pid"]]
    lab.stop(started)


def test_emulator_that_dies_at_start_fails_fast_with_its_log(lab: Run) -> None:
    env = lab.environ(FAKE_EMULATOR_DIE_AFTER="0")
    with pytest.raises(DeviceError) as caught:
        lab.start(env=env, boot_timeout=120)
    message = str(caught.value)
    assert "emulator-5554 exited with code 1 before it booted" in message
    assert "FATAL   | Failed to initialize the virtual machine" in message
    assert load_started(lab.world.results) == []


def test_emulator_dying_mid_boot_is_noticed_and_its_child_stopped(lab: Run) -> None:
    env = lab.environ(FAKE_EMULATOR_DIE_AFTER="0.5", FAKE_EMULATOR_BOOT_DELAY="never")
    with pytest.raises(DeviceError, match="QEMU main loop exited unexpectedly"):
        lab.start(env=env, boot_timeout=120)
    wait_for(lab.nothing_running)
    assert lab.nothing_running()


def test_no_kvm_starts_with_accel_off_and_warns(lab: Run, tmp_path: Path) -> None:
    env = lab.environ(FAKE_EMULATOR_KVM="0")
    started = start_emulators(settings(), 1, console=lab.console, environ=env, results_dir=lab.world.results,
                              adb=lab.adb(env), kvm_device=tmp_path / "no-kvm")
    assert lab.sdk.calls("emulator")[0]["argv"][-2:] == ["-accel", "off"]
    assert "starting without acceleration (-accel off)" in lab.output
    lab.stop(started)


def test_emu_kill_ignored_process_group_is_still_gone(lab: Run) -> None:
    env = lab.environ(FAKE_EMULATOR_IGNORE_SIGTERM="1")
    started = lab.start(env=env)
    stop_emulators(started, console=lab.console, results_dir=lab.world.results, adb=lab.adb(env), timeout=0.5)
    assert lab.nothing_running()  # SIGTERM was ignored too: SIGKILL to the group did it
    assert "still runs 0.5s after `emu kill`" in lab.output
    assert load_started(lab.world.results) == []


def test_two_emulators_each_with_its_own_port_avd_and_serial(lab: Run) -> None:
    started = lab.start(count=2)
    assert [(e.serial, e.avd) for e in started] == [("emulator-5554", "prodval-api34-google_apis-x86_64"),
                                                    ("emulator-5556", "prodval-api34-google_apis-x86_64-2")]
    devices = lab.state()["devices"]
    assert all(devices[e.serial]["boot_completed"] == "1" for e in started)
    assert len({e.pgid for e in started}) == 2
    lab.stop(started)
    wait_for(lab.nothing_running)
    assert lab.state()["devices"] == {}


def test_missing_system_image_names_the_package_to_install(world: World, tmp_path: Path) -> None:
    bare = AndroidSdk(tmp_path / "bare-sdk", packages=("platform-tools", "emulator", "cmdline-tools;latest"))
    console = Console({}, Redactor(), out=io.StringIO(), err=io.StringIO())
    env = world.env(**bare.env())
    with pytest.raises(ToolNotFound) as caught:
        start_emulators(settings(), 1, console=console, environ=env, results_dir=world.results,
                        adb=Adb(world.bin / "adb", console, env))
    assert f"sdkmanager '{SYSTEM_IMAGE}'" in caught.value.fix and "invoke setup" in caught.value.fix
    assert SYSTEM_IMAGE in caught.value.message


def test_device_goes_offline_mid_run(lab: Run) -> None:
    # offline once preparing the device (unlock, settings) is over: on an event, whatever the machine's load
    trigger = lab.world.root / "go-offline"
    started = lab.start(env=lab.environ(FAKE_EMULATOR_OFFLINE_WHEN=str(trigger)))
    trigger.touch()
    wait_for(lambda: lab.state()["devices"]["emulator-5554"]["state"] == "offline")
    lab.stop(started)
    wait_for(lab.nothing_running)
    # adb talks to the emulator console over TCP, offline or not: `emu kill` did it, no signal was needed
    assert ["-s", "emulator-5554", "emu", "kill"] in lab.world.adb_calls()
    assert "after `emu kill`" not in lab.output and lab.state().get("killed") == ["emulator-5554"]


def test_capture_logcat_streams_to_a_file_masks_secrets_and_stops(world: World) -> None:
    world.device(logcat=["I App: started", "D Net: token=s3cr3t-value sent"])
    adb = world.bin / "adb"
    path = world.results / "devices" / "emulator-5554" / "logcat.txt"
    with capture_logcat(Adb(adb, Console(world.env()), world.env()), "emulator-5554", path,
                        redact=Redactor(["s3cr3t-value"])) as out:
        wait_for(lambda: "token=" in out.read_text())
        logcat_pids = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
                       and "logcat" in _cmdline(int(p.name)) and str(adb) in _cmdline(int(p.name))]
        assert logcat_pids
    text = path.read_text()
    assert "I App: started" in text and "token=*** sent" in text and "s3cr3t-value" not in text
    assert ["-s", "emulator-5554", "logcat", "-v", "threadtime"] in world.adb_calls()
    assert not [pid for pid in logcat_pids if alive(pid)]


def test_adb_unlock_settings_and_emu_kill_on_the_serial_asked_for(world: World) -> None:
    world.device("emulator-5554").device("emulator-5556", booted=False)
    out = io.StringIO()
    # a stale $ANDROID_SERIAL must not pick the device: every command names its own with -s
    adb = Adb(world.bin / "adb", Console({}, Redactor(), out=out, err=io.StringIO()),
              world.env(ANDROID_SERIAL="emulator-5556"))
    assert adb.press_key("emulator-5554", 82).returncode == 0
    adb.put_setting("emulator-5554", "global", "window_animation_scale", "0.0")
    booting = adb.press_key("emulator-5556", 82, echo=False)  # still booting: input is not up yet
    assert (booting.returncode, booting.stderr.strip()) == (20, "cmd: Can't find service: input")
    with pytest.raises(CommandFailed, match="could not set secure spell_checker_enabled on emulator-5556"):
        adb.put_setting("emulator-5556", "secure", "spell_checker_enabled", "0")
    assert adb.emu_kill("emulator-5554")
    assert not adb.emu_kill("emulator-5554")  # gone now: nothing answers on its console port
    assert not adb.emu_kill("R58M123ABC")  # not an emulator serial: adb has no console port for it
    device = json.loads(world.adb_state.read_text())["devices"]
    assert list(device) == ["emulator-5556"] and "input" not in device["emulator-5556"]
    assert world.adb_calls()[:2] == [["-s", "emulator-5554", "shell", "input", "keyevent", "82"],
                                     ["-s", "emulator-5554", "shell", "settings", "put", "global",
                                      "window_animation_scale", "0.0"]]
    assert out.getvalue().count("input keyevent 82") == 1  # the unchecked retry is not echoed


def test_a_device_whose_adb_hangs_counts_as_not_booted(world: World) -> None:
    world.device("emulator-5554").device("emulator-5556", getprop_hangs=True)
    adb = Adb(world.bin / "adb", Console({}, Redactor(), out=io.StringIO(), err=io.StringIO()), world.env())
    adb.boot_check_timeout = 1
    assert adb.select((), 2) == (["emulator-5554"], 1)  # not a CommandFailed that stops the run
    with pytest.raises(DeviceError, match="'emulator-5556' is device and not booted"):
        adb.select(("emulator-5556",), 1)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    except OSError:
        return ""


# ---- the invoke tasks ------------------------------------------------------------------------------------

def test_invoke_start_status_stop_and_a_device_we_did_not_start(lab: Run) -> None:
    world = lab.world
    world.device("emulator-5554")  # someone else's emulator: never ours to stop
    world.extra_env.update({"INVOKE_EMULATOR_BOOT_POLL": "0.1", "INVOKE_EMULATOR_STOP_TIMEOUT": "5"})
    started = world.invoke("emulator.start")
    assert started.returncode == 0, started.stdout + started.stderr
    assert started.stdout.splitlines()[-1] == "emulator-5556"  # the next free port

    status = world.invoke("emulator.status")
    assert status.returncode == 0, status.stderr
    rows = {line.split()[0]: line for line in status.stdout.splitlines() if line.startswith("emulator-")}
    assert rows["emulator-5554"].split()[:4] == ["emulator-5554", "device", "yes", "no"]
    assert rows["emulator-5556"].split()[:4] == ["emulator-5556", "device", "yes", "yes"]

    refused = world.invoke("emulator.stop", "--serial", "emulator-5554")
    assert refused.returncode == 2
    assert "emulator-5554: not started by this tool" in refused.stderr

    stopped = world.invoke("emulator.stop")
    assert stopped.returncode == 0, stopped.stderr
    assert "stopped emulator-5556" in stopped.stdout
    assert ["-s", "emulator-5554", "emu", "kill"] not in world.adb_calls()
    assert list(lab.state()["devices"]) == ["emulator-5554"]
    wait_for(lab.nothing_running)
    again = world.invoke("emulator.stop")
    assert again.returncode == 0 and "nothing to stop" in again.stdout


@pytest.mark.slow
def test_sigterm_during_boot_stops_the_emulator(lab: Run) -> None:
    world = lab.world
    proc = world.start("emulator.start", FAKE_EMULATOR_BOOT_DELAY="never", INVOKE_EMULATOR_BOOT_POLL="0.1")
    wait_for(lambda: bool(lab.processes()))
    wait_for(lambda: bool(load_started(world.results)))
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "interrupted by SIGTERM" in stderr
    assert lab.nothing_running()
    assert load_started(world.results) == []
