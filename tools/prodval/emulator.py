"""Emulators as a managed resource: created, booted, prepared, recorded, and always stopped.

What android-emulator-runner does, without the places where its users get hurt
(shared/reference/android-emulator.md):

- One AVD per concurrent emulator (NAME, NAME-2, ...): the emulator refuses a second instance of an
  AVD unless `-read-only`, which its own message calls experimental and which discards everything the
  run writes to the AVD; separate AVDs also keep each one's cold-boot retry (`-wipe-data`) to itself.
- `config.ini` keys are set in place (no duplicates on reuse); $ANDROID_AVD_HOME is explicit and created.
- Each emulator runs in its own process group, output to a log file in the results folder (never our
  stdio, which would keep a CI step open), on its own even console port that no other device uses.
- Boot: poll `getprop sys.boot_completed`, tolerating adb's early failures; fail fast when the process
  exits (with the tail of its log); one cold-boot retry after a timeout.
- Stop: `adb emu kill`, a bounded wait, then SIGTERM and SIGKILL to the whole group (crashpad_handler
  and qemu children outlive `emu kill`). Only emulators recorded in `<results>/emulators.json` are
  ever stopped, so a device someone else started is left alone.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from . import sdk
from .commands import TERM_WAIT, display, run, start_background, stop_process_group
from .console import Console, relative_display
from .devices import Adb
from .errors import CommandFailed, DeviceError, ValidationError
from .results import atomic_write, now_iso
from .secrets import Redactor
from .settings import LAST_CONSOLE_PORT, EmulatorSettings

STATE_FILE = "emulators.json"
LOG_DIR = "emulators"
KVM_DEVICE = Path("/dev/kvm")
UNLOCK_ATTEMPTS = 5
LOG_TAIL_LINES = 15
PROGRESS_EVERY = 30.0  # seconds between "still booting" lines
COLD_BOOT_OPTIONS = ("-no-snapshot-load", "-wipe-data")
ANIMATION_SETTINGS = ("window_animation_scale", "transition_animation_scale", "animator_duration_scale")
KVM_FIX = ("give the runner access to /dev/kvm: on GitHub-hosted Linux runners add the udev rule step "
           "(KERNEL==\"kvm\", MODE=\"0666\"; see docs/devices.md), elsewhere `sudo usermod -aG kvm $USER`")


# ---- planning (pure) -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Launch:
    """One emulator to start: which AVD, on which port, with which command line, logging where."""

    serial: str
    port: int
    avd: str
    argv: tuple[str, ...]
    log: Path
    cold: bool = False


def avd_names(settings: EmulatorSettings, count: int) -> list[str]:
    return [settings.avd] + [f"{settings.avd}-{n}" for n in range(2, count + 1)]


def emulator_options(settings: EmulatorSettings, *, kvm: bool, cold: bool = False) -> list[str]:
    options = list(settings.emulator_options)
    extra: list[str] = []
    if cold:
        extra += [o for o in COLD_BOOT_OPTIONS if o not in options]
    elif settings.wipe and "-wipe-data" not in options:
        extra.append("-wipe-data")
    if not kvm and "-accel" not in options:
        extra += ["-accel", "off"]
    return options + extra


def plan_launches(settings: EmulatorSettings, emulator: Path, ports: Sequence[int], results_dir: Path, *,
                  kvm: bool) -> list[Launch]:
    """The emulators to start on `ports` (one AVD each), without touching anything."""
    options = emulator_options(settings, kvm=kvm)
    return [
        Launch(serial=f"emulator-{port}", port=port, avd=name,
               argv=(str(emulator), "-avd", name, "-port", str(port), *options),
               log=results_dir / LOG_DIR / f"emulator-{port}.log")
        for port, name in zip(ports, avd_names(settings, len(ports)), strict=True)
    ]


def cold_boot(launch: Launch, settings: EmulatorSettings, *, kvm: bool) -> Launch:
    """The same emulator again, cold: no snapshot, wiped data, its own log."""
    options = emulator_options(settings, kvm=kvm, cold=True)
    return replace(launch, argv=(*launch.argv[:5], *options), cold=True,
                   log=launch.log.with_name(f"{launch.serial}-cold-boot.log"))


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def choose_ports(first: int, count: int, taken_serials: Iterable[str], *,
                 is_free: Callable[[int], bool] = port_is_free) -> list[int]:
    """`count` even console ports from `first`, skipping devices adb already sees and bound ports."""
    taken = {int(m.group(1)) for s in taken_serials if (m := re.fullmatch(r"emulator-(\d+)", s))}
    ports: list[int] = []
    port = first
    while len(ports) < count:
        if port > LAST_CONSOLE_PORT:
            raise DeviceError(f"not enough free emulator ports: {count} needed from {first} to {LAST_CONSOLE_PORT} "
                              f"(in use: {', '.join(f'emulator-{p}' for p in sorted(taken)) or 'ports bound by other programs'})",
                              fix="stop emulators you no longer need (`invoke emulator.status`), or start fewer")
        if port not in taken and is_free(port) and is_free(port + 1):
            ports.append(port)
        port += 2
    return ports


def config_values(settings: EmulatorSettings) -> dict[str, str]:
    values = {"hw.cpu.ncore": str(settings.cores)}
    for key, value in (("hw.ramSize", settings.ram_size), ("hw.heapSize", settings.heap_size),
                       ("disk.dataPartition.size", settings.data_partition_size)):
        if value:
            values[key] = value
    return values


def merge_config(text: str, values: Mapping[str, str]) -> str:
    """config.ini with `values` set: each key's first line replaced, its duplicates dropped, new keys appended."""
    out: list[str] = []
    seen: set[str] = set()
    for line in text.splitlines():
        key = line.split("=", 1)[0].strip() if "=" in line else ""
        if key in values:
            if key not in seen:
                out.append(f"{key}={values[key]}")
                seen.add(key)
            continue
        out.append(line)
    out += [f"{key}={value}" for key, value in values.items() if key not in seen]
    return "\n".join(out) + "\n"


def kvm_usable(device: Path = KVM_DEVICE, platform: str = sys.platform) -> bool:
    """Linux needs read and write access to /dev/kvm for an accelerated emulator; other systems use their own."""
    if not platform.startswith("linux"):
        return True
    return device.exists() and os.access(device, os.R_OK | os.W_OK)


# ---- the record of emulators we started -------------------------------------------------------------------

@dataclass
class StartedEmulator:
    serial: str
    port: int
    avd: str
    pid: int
    pgid: int
    start_ticks: int | None  # /proc start time, so a recycled pid is never mistaken for ours
    log: Path
    startedAt: str
    process: subprocess.Popen[bytes] | None = field(default=None, compare=False, repr=False)
    # The run that booted it for itself ({"pid", "startTicks"}), which stops it at its end; None for
    # `invoke emulator.start`, whose emulators outlive it on purpose.
    owner: dict[str, int | None] | None = None

    def to_json(self, results_dir: Path) -> dict[str, Any]:
        return {"serial": self.serial, "port": self.port, "avd": self.avd, "pid": self.pid, "pgid": self.pgid,
                "startTicks": self.start_ticks, "log": relative_display(self.log, results_dir), "startedAt": self.startedAt,
                **({"owner": self.owner} if self.owner else {})}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], results_dir: Path) -> StartedEmulator:
        ticks = data.get("startTicks")
        return cls(serial=str(data["serial"]), port=int(data["port"]), avd=str(data.get("avd", "")),
                   pid=int(data["pid"]), pgid=int(data.get("pgid", data["pid"])),
                   start_ticks=int(ticks) if ticks is not None else None,
                   log=results_dir / str(data.get("log", "")), startedAt=str(data.get("startedAt", "")),
                   owner=data.get("owner") if isinstance(data.get("owner"), dict) else None)

    def orphaned(self) -> bool:
        """Booted by a run for itself, and that run is gone (killed) without stopping it."""
        if not self.owner or not isinstance(self.owner.get("pid"), int):
            return False
        pid, ticks = int(self.owner["pid"] or 0), self.owner.get("startTicks")
        fields = _proc_stat(pid)
        return fields is None or fields[0] == "Z" or (ticks is not None and _start_ticks(pid) != ticks)


def state_path(results_dir: Path) -> Path:
    return results_dir / STATE_FILE


@contextlib.contextmanager
def _state_lock(results_dir: Path) -> Iterator[None]:
    results_dir.mkdir(parents=True, exist_ok=True)
    with open(results_dir / f".{STATE_FILE}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _read_state(results_dir: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(state_path(results_dir).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise DeviceError(f"{state_path(results_dir)} is unreadable: {exc}",
                          fix="stop the emulators by hand (`adb emu kill`) and delete the file") from None
    return list(data.get("emulators", []))


def load_started(results_dir: Path) -> list[StartedEmulator]:
    """The emulators this tool started with `results_dir` (recorded in emulators.json)."""
    return [StartedEmulator.from_json(item, results_dir) for item in _read_state(results_dir)]


def _update_state(results_dir: Path, *, add: StartedEmulator | None = None, remove: Iterable[str] = ()) -> None:
    gone = set(remove) | ({add.serial} if add else set())
    with _state_lock(results_dir):
        items = [item for item in _read_state(results_dir) if item.get("serial") not in gone]
        if add is not None:
            items.append(add.to_json(results_dir))
        atomic_write(state_path(results_dir), json.dumps({"emulators": items}, indent=2) + "\n")


# ---- processes -----------------------------------------------------------------------------------------

def _proc_stat(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/<pid>/stat (state, ppid, pgrp, ...), or None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _start_ticks(pid: int) -> int | None:
    fields = _proc_stat(pid)
    return int(fields[19]) if fields and len(fields) > 19 else None


def _leader_alive(em: StartedEmulator) -> bool:
    if em.process is not None:
        return em.process.poll() is None
    if not Path("/proc").is_dir():
        try:
            os.kill(em.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    fields = _proc_stat(em.pid)
    if fields is None or fields[0] == "Z":
        return False
    return em.start_ticks is None or _start_ticks(em.pid) == em.start_ticks


def _group_members(em: StartedEmulator) -> list[int]:
    """Live (non-zombie) processes in the emulator's process group; [] when it is gone or not ours."""
    if not Path("/proc").is_dir():
        try:
            os.killpg(em.pgid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [em.pgid]
    leader = _proc_stat(em.pgid)
    if leader is not None and em.start_ticks is not None and _start_ticks(em.pgid) != em.start_ticks:
        return []  # the group id belongs to a new process now: whatever it leads is not ours
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _proc_stat(int(entry.name))
            if fields is not None and len(fields) > 2 and fields[2] == str(em.pgid) and fields[0] != "Z":
                members.append(int(entry.name))
    return members


def _leader_gone(em: StartedEmulator) -> bool:
    return not _leader_alive(em)


def _group_gone(em: StartedEmulator) -> bool:
    return not _group_members(em)


def _signal_group(em: StartedEmulator, sig: signal.Signals) -> None:
    if _group_members(em):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(em.pgid, sig)


def _reap(em: StartedEmulator) -> None:
    if em.process is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            em.process.wait(timeout=1)


def _wait_until(condition: Callable[[], bool], deadline: float, step: float = 0.1) -> bool:
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)


def stop_emulators(started_or_serials: Iterable[StartedEmulator | str], *, console: Console, results_dir: Path,
                   adb: Adb | None, timeout: float = 20.0) -> None:
    """Stop emulators this tool started: `emu kill` (unless there is no `adb`), up to `timeout` s for them
    to exit, then SIGTERM and SIGKILL to each whole process group; each is removed from the record once
    nothing of it runs.

    A serial that is not in the record is never touched: DeviceError names it (after the others stopped).
    """
    recorded = {em.serial: em for em in load_started(results_dir)}
    targets: list[StartedEmulator] = []
    not_ours: list[str] = []
    for item in started_or_serials:
        if isinstance(item, StartedEmulator):
            targets.append(item)
        elif item in recorded:
            targets.append(recorded[item])
        else:
            not_ours.append(item)
    survivors: list[StartedEmulator] = []
    if targets:
        try:
            # Wait only for those whose console took `emu kill` (adb talks to it over TCP, whatever the
            # device's state; very early in a boot it is not listening yet).
            killed = []
            for em in targets:
                if adb is not None and _leader_alive(em) and adb.emu_kill(em.serial):
                    killed.append(em)
            deadline = time.monotonic() + timeout
            for em in killed:
                if not _wait_until(partial(_leader_gone, em), deadline):
                    console.warning(f"{em.serial} still runs {timeout:g}s after `emu kill`; terminating its process group")
            for em in targets:
                _signal_group(em, signal.SIGTERM)
            term_deadline = time.monotonic() + TERM_WAIT
            for em in targets:
                _wait_until(partial(_group_gone, em), term_deadline)
        finally:
            for em in targets:
                _signal_group(em, signal.SIGKILL)
            kill_deadline = time.monotonic() + TERM_WAIT
            for em in targets:
                _wait_until(partial(_group_gone, em), kill_deadline)
                _reap(em)
            survivors = [em for em in targets if _group_members(em)]
            _update_state(results_dir, remove=[em.serial for em in targets if em not in survivors])
        for em in targets:
            if em not in survivors:
                console.info(f"stopped {em.serial} (AVD {em.avd})")
    if survivors:
        raise DeviceError("could not stop " + ", ".join(f"{em.serial} (process group {em.pgid})" for em in survivors),
                          fix="kill them by hand (`kill -KILL -- -PGID`); they stay in emulators.json until gone")
    if not_ours:
        known = ", ".join(sorted(recorded)) or "none"
        raise DeviceError(f"{', '.join(not_ours)}: not started by this tool (not recorded in "
                          f"{relative_display(state_path(results_dir))}), so it was left alone",
                          fix=f"emulators this tool started: {known}; stop others yourself with `adb -s SERIAL emu kill`")


def stop_orphans(results_dir: Path, *, console: Console, adb: Adb | None, timeout: float = 20.0) -> list[str]:
    """Stop the emulators that a run booted for itself and did not stop because it was killed; their serials.

    Without this the next run would find them booted and adopt them, and nobody would ever stop them.
    """
    try:
        orphans = [em for em in load_started(results_dir) if em.orphaned()]
    except DeviceError as exc:  # booting will say so again; a run on connected devices need not stop here
        console.warning(f"{exc.message} (fix: {exc.fix})", title="emulators.json")
        return []
    for em in orphans:
        assert em.owner is not None
        console.warning(f"{em.serial} was booted by a run (pid {em.owner.get('pid')}) that ended without stopping "
                        "it (killed?); stopping it now", title="emulator left behind")
    if orphans:
        stop_emulators(orphans, console=console, results_dir=results_dir, adb=adb, timeout=timeout)
    return [em.serial for em in orphans]


# ---- AVDs -----------------------------------------------------------------------------------------------

def ensure_avd(settings: EmulatorSettings, name: str, *, env: Mapping[str, str], console: Console) -> Path:
    """Create the AVD `name` when it is missing (or built on another system image); set config.ini keys."""
    home = Path(env["ANDROID_AVD_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    ini = home / f"{name}.ini"
    folder = home / f"{name}.avd"
    with contextlib.suppress(OSError):
        for line in ini.read_text(encoding="utf-8").splitlines():
            if line.startswith("path="):
                folder = Path(line.split("=", 1)[1].strip())
    config = folder / "config.ini"
    expected = "/".join(settings.system_image.split(";"))
    current = ""
    with contextlib.suppress(OSError):
        for line in config.read_text(encoding="utf-8").splitlines():
            if line.startswith("image.sysdir.1="):
                current = line.split("=", 1)[1].strip().strip("/")
    if not (ini.is_file() and config.is_file() and current == expected):
        if current:
            console.info(f"AVD {name} uses {current}, not {expected}: creating it again")
        avdmanager = sdk.find_avdmanager(env)
        argv: list[str | Path] = [avdmanager, "create", "avd", "--force", "-n", name, "--package", settings.system_image]
        if settings.device_profile:
            argv += ["--device", settings.device_profile]
        # "no" answers "Do you wish to create a custom hardware profile? [no]".
        run(console, argv, env=env, timeout=300, input="no\n", stage="device",
            what=f"avdmanager could not create the AVD {name}",
            fix=f"check that {settings.system_image} is installed (`invoke doctor`, `invoke setup`)")
        folder = home / f"{name}.avd"
        config = folder / "config.ini"
        if not config.is_file():
            raise DeviceError(f"avdmanager reported success but {config} does not exist",
                              fix="set ANDROID_AVD_HOME to a writable folder and run again")
    text = config.read_text(encoding="utf-8")
    merged = merge_config(text, config_values(settings))
    if merged != text:
        atomic_write(config, merged)
    return folder


# ---- start ---------------------------------------------------------------------------------------------

def _launch(launch: Launch, env: Mapping[str, str], console: Console, results_dir: Path,
            owner: dict[str, int | None] | None = None) -> StartedEmulator:
    launch.log.parent.mkdir(parents=True, exist_ok=True)
    launch.log.write_text(f"# {display(launch.argv)}\n", encoding="utf-8")
    console.command(f"{display(launch.argv)} > {relative_display(launch.log)} 2>&1 &")
    proc = start_background(launch.argv, log_path=launch.log, env=env)
    try:
        started = StartedEmulator(serial=launch.serial, port=launch.port, avd=launch.avd, pid=proc.pid,
                                  pgid=proc.pid, start_ticks=_start_ticks(proc.pid), log=launch.log,
                                  startedAt=now_iso(), process=proc, owner=owner)
        _update_state(results_dir, add=started)
    except BaseException:  # not yet in the caller's list: nobody else would stop it
        stop_process_group(proc)
        raise
    return started


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("# ")][-lines:]


def _died_fix(tail: list[str], log: Path) -> str:
    text = "\n".join(tail)
    if "hardware acceleration" in text:
        return KVM_FIX + ", or add -accel off to emulator.emulator_options (very slow)"
    if "Unknown AVD name" in text:
        return "the AVD is not where the emulator looks: set ANDROID_AVD_HOME (we pass it to avdmanager and the emulator)"
    if "same AVD" in text:
        return "another emulator uses this AVD: stop it (`invoke emulator.status`) or choose another --avd"
    if "system path" in text.lower():
        return "the AVD's system image is missing: `invoke setup`, or sdkmanager the package named in `invoke doctor`"
    return f"read the whole emulator log: {relative_display(log)}"


def _wait_for_boot(started: list[StartedEmulator], launches: list[Launch], settings: EmulatorSettings, *,
                   adb: Adb, env: Mapping[str, str], console: Console, results_dir: Path, kvm: bool) -> None:
    """Poll each emulator until sys.boot_completed=1; one cold-boot retry per emulator after a timeout.
    `started` is updated in place, so the caller can always stop exactly what runs."""
    begun = time.monotonic()
    deadlines = {i: begun + settings.boot_timeout for i in range(len(started))}
    retried: set[int] = set()
    next_note = begun + PROGRESS_EVERY
    console.info(f"waiting for {', '.join(e.serial for e in started)} to boot (up to {settings.boot_timeout:g}s)")
    while deadlines:
        for i in sorted(deadlines):
            em = started[i]
            code = em.process.poll() if em.process is not None else None
            if code is not None:
                tail = log_tail(em.log)
                raise DeviceError(f"the emulator {em.serial} exited with code {code} before it booted; "
                                  f"the last lines of {relative_display(em.log)}:\n" + "\n".join(f"    {ln}" for ln in tail),
                                  fix=_died_fix(tail, em.log))
            if adb.boot_completed(em.serial):
                console.info(f"{em.serial} booted ({time.monotonic() - begun:.0f}s)")
                del deadlines[i]
                continue
            if time.monotonic() < deadlines[i]:
                continue
            if i in retried:
                raise DeviceError(f"{em.serial} did not boot within {settings.boot_timeout:g}s, even on a cold-boot retry; "
                                  f"see {relative_display(em.log)}",
                                  fix="raise emulator.boot_timeout (--boot-timeout), check KVM (`invoke doctor`), "
                                      "or try another system image")
            console.warning(f"{em.serial} did not boot within {settings.boot_timeout:g}s; "
                            f"retrying once with a cold boot ({' '.join(COLD_BOOT_OPTIONS)})", title="slow boot")
            stop_emulators([em], console=console, results_dir=results_dir, adb=adb, timeout=settings.stop_timeout)
            launches[i] = cold_boot(launches[i], settings, kvm=kvm)
            started[i] = _launch(launches[i], env, console, results_dir)
            retried.add(i)
            deadlines[i] = time.monotonic() + settings.boot_timeout
        if deadlines:
            if time.monotonic() >= next_note:
                waiting = ", ".join(started[i].serial for i in sorted(deadlines))
                console.info(f"still waiting for {waiting} ({time.monotonic() - begun:.0f}s)")
                next_note += PROGRESS_EVERY
            time.sleep(settings.boot_poll)


def prepare(adb: Adb, serial: str, settings: EmulatorSettings) -> None:
    """Unlock the screen (retried: it fails intermittently right after boot) and turn animations off."""
    problem = ""
    for attempt in range(1, UNLOCK_ATTEMPTS + 1):
        try:
            done = adb.press_key(serial, 82, echo=attempt == 1)
            problem = (done.stderr or done.stdout).strip()
            if done.returncode == 0:
                break
        except CommandFailed as exc:
            problem = exc.message
        if attempt == UNLOCK_ATTEMPTS:
            raise DeviceError(f"could not unlock {serial}: `input keyevent 82` failed {UNLOCK_ATTEMPTS} times ({problem})",
                              fix="the device booted but its input service is not up: retry, or raise boot_timeout")
        time.sleep(settings.boot_poll)
    puts = []
    if settings.disable_animations:
        puts += [("global", key, "0.0") for key in ANIMATION_SETTINGS]
    if settings.disable_spell_checker:
        puts.append(("secure", "spell_checker_enabled", "0"))
    for namespace, key, value in puts:
        try:
            adb.put_setting(serial, namespace, key, value)
        except CommandFailed as exc:
            raise DeviceError(exc.message, fix="the device may have gone offline: check `adb devices`") from None


def start_emulators(settings: EmulatorSettings, count: int, *, console: Console, environ: Mapping[str, str],
                    results_dir: Path, adb: Adb, kvm_device: Path = KVM_DEVICE,
                    for_this_run: bool = False) -> list[StartedEmulator]:
    """Create the AVDs if missing, launch `count` emulators on free even ports, wait for each to boot
    (one cold-boot retry), prepare them and record them in `<results_dir>/emulators.json`.

    On any failure or interrupt (Ctrl-C, SIGTERM turned into an exception) everything started here is
    stopped before the exception propagates: DeviceError for a device that would not come up.
    `for_this_run` records this process as their owner: if it dies without stopping them, the next run
    does (`stop_orphans`).
    """
    env = sdk.tool_env(environ)
    emulator = sdk.find_emulator(environ)
    sdk.require_system_image(environ, settings)
    kvm = kvm_usable(kvm_device)
    if not kvm and "-accel" not in settings.emulator_options:
        console.warning(f"{kvm_device} is not readable and writable: starting without acceleration (-accel off); "
                        f"booting will be very slow. Fix: {KVM_FIX}", title="no KVM")
    recorded = [em.serial for em in load_started(results_dir) if _group_members(em)]
    ports = choose_ports(settings.port, count, [s for s, _ in adb.devices()] + recorded)
    launches = plan_launches(settings, emulator, ports, results_dir, kvm=kvm)
    for launch in launches:
        ensure_avd(settings, launch.avd, env=env, console=console)
    started: list[StartedEmulator] = []
    try:
        for launch in launches:
            owner = {"pid": os.getpid(), "startTicks": _start_ticks(os.getpid())} if for_this_run else None
            started.append(_launch(launch, env, console, results_dir, owner))
        _wait_for_boot(started, launches, settings, adb=adb, env=env, console=console, results_dir=results_dir,
                       kvm=kvm)
        for em in started:
            prepare(adb, em.serial, settings)
    except BaseException:
        try:
            stop_emulators(started, console=console, results_dir=results_dir, adb=adb, timeout=settings.stop_timeout)
        except ValidationError as stop_failed:  # the original error matters more; say this one too
            console.error(str(stop_failed), title="cleanup")
        raise
    return started


# ---- status and logcat ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class StatusRow:
    serial: str
    state: str  # adb's state, or "not connected"
    booted: bool | None  # None: not asked (not in state `device`)
    ours: bool
    avd: str = ""
    pid: int | None = None
    running: bool = True


def status(adb: Path, *, console: Console, environ: Mapping[str, str], results_dir: Path) -> list[StatusRow]:
    """Every device adb sees, plus every recorded emulator adb does not see (still starting, or gone)."""
    client = Adb(adb, console, environ)
    recorded = {em.serial: em for em in load_started(results_dir)}
    rows = []
    for device in client.states():
        em = recorded.pop(device.serial, None)
        booted = device.booted if device.state == "device" else None
        rows.append(StatusRow(device.serial, device.state, booted, em is not None, em.avd if em else "",
                              em.pid if em else None, bool(em is None or _group_members(em))))
    for serial, em in recorded.items():
        rows.append(StatusRow(serial, "not connected", None, True, em.avd, em.pid, bool(_group_members(em))))
    return rows


def render_status(rows: Sequence[StatusRow]) -> str:
    if not rows:
        return "no devices (adb sees none, and this tool started none)"
    table = [("serial", "state", "booted", "started by us", "avd", "pid")]
    for row in rows:
        booted = "-" if row.booted is None else ("yes" if row.booted else "no")
        ours = ("yes" if row.running else "yes (exited)") if row.ours else "no"
        table.append((row.serial, row.state, booted, ours, row.avd or "-", str(row.pid or "-")))
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    return "\n".join("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r)).rstrip() for r in table)


@contextlib.contextmanager
def capture_logcat(adb: Adb, serial: str, path: Path, *, redact: Redactor | None = None) -> Iterator[Path]:
    """Stream `adb -s SERIAL logcat` to `path` while the block runs; stopped (whole group) on exit, or
    when this process dies. Secrets known to `redact` are masked as the lines are written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    proc = adb.start_logcat(serial, path, redact)
    try:
        yield path
    finally:
        stop_process_group(proc)

