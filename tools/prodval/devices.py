"""Android devices through adb: discovery, selection, boot state and APK install."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .apkfile import require_apk
from .commands import Completed, find_tool, run, start_background
from .console import Console
from .errors import CommandFailed, DeviceError
from .sdk import sdk_candidates

ADB_INSTALL_HINT = (
    "install the Android SDK platform-tools (`sdkmanager platform-tools`, or `invoke setup`) and set "
    "ANDROID_HOME, or set validation.adb in invoke.yaml to the adb executable"
)


def find_adb(configured: str, environ: Mapping[str, str]) -> Path:
    """Configured path, else $ANDROID_HOME (or $ANDROID_SDK_ROOT)/platform-tools/adb, else PATH."""
    candidates: list[tuple[str, str | Path | None]] = [(f"validation.adb ({configured})", configured)] if configured else []
    return find_tool("adb", candidates + sdk_candidates(environ, "platform-tools", "adb"), ADB_INSTALL_HINT)


@dataclass(frozen=True)
class DeviceState:
    serial: str
    state: str
    booted: bool


class Adb:
    boot_check_timeout = 30.0  # seconds for one `getprop sys.boot_completed`

    def __init__(self, path: Path, console: Console, environ: Mapping[str, str]) -> None:
        self.path = path
        self.console = console
        # `-s SERIAL` beats $ANDROID_SERIAL; drop it so a stale value cannot pick a device for us.
        self.env = {k: v for k, v in environ.items() if k != "ANDROID_SERIAL"}

    def _run(self, *args: str, check: bool = True, timeout: float = 60, echo: bool = True,
             what: str = "", fix: str = "") -> Completed:
        return run(self.console, [self.path, *args], check=check, env=self.env, timeout=timeout,
                   echo=echo, what=what, fix=fix, stage="device")

    def devices(self) -> list[tuple[str, str]]:
        out = self._run("devices", what="adb could not list devices",
                        fix="restart the adb server with `adb kill-server && adb start-server`").stdout
        found = []
        for line in out.splitlines():
            if "\t" not in line or line.startswith(("List of devices", "*")):
                continue
            serial, state = line.split("\t", 1)
            found.append((serial.strip(), state.strip()))
        return found

    def boot_completed(self, serial: str) -> bool:
        """sys.boot_completed is 1; False while it is not, and when adb fails or hangs (early in a boot it does)."""
        try:
            done = self._run("-s", serial, "shell", "getprop", "sys.boot_completed", check=False,
                             timeout=self.boot_check_timeout, echo=False)
        except CommandFailed:  # adb timed out
            return False
        return done.returncode == 0 and done.stdout.strip() == "1"

    def press_key(self, serial: str, keycode: int, *, echo: bool = True) -> Completed:
        """`input keyevent KEYCODE`, unchecked: right after boot it fails for a while, the caller retries."""
        return self._run("-s", serial, "shell", "input", "keyevent", str(keycode), check=False, timeout=30, echo=echo)

    def put_setting(self, serial: str, namespace: str, key: str, value: str) -> None:
        self._run("-s", serial, "shell", "settings", "put", namespace, key, value, timeout=30,
                  what=f"could not set {namespace} {key} on {serial}")

    def emu_kill(self, serial: str) -> bool:
        """Ask an emulator to exit through its console; False when no console answered (not up yet, or gone) or it timed out."""
        try:
            return self._run("-s", serial, "emu", "kill", check=False, timeout=15).returncode == 0
        except CommandFailed:
            return False

    def start_logcat(self, serial: str, log_path: Path,
                     redact: Callable[[str], str] | None = None) -> subprocess.Popen[bytes]:
        """`logcat -v threadtime` appended to `log_path` (through `redact`), in its own process group: the
        caller stops it, and it dies with us."""
        return start_background([self.path, "-s", serial, "logcat", "-v", "threadtime"], log_path=log_path,
                                env=self.env, redact=redact, die_with_us=True)

    def states(self) -> list[DeviceState]:
        listed = self.devices()
        ready = [serial for serial, state in listed if state == "device"]
        with ThreadPoolExecutor(max_workers=max(1, len(ready))) as pool:  # one adb round trip, not N
            booted = dict(zip(ready, pool.map(self.boot_completed, ready), strict=True))
        return [DeviceState(serial, state, booted.get(serial, False)) for serial, state in listed]

    def select(self, requested: tuple[str, ...], count: int) -> tuple[list[str], int]:
        """The devices to run on and how many emulators to boot besides them.

        `requested` serials must all be connected and booted. Otherwise `count` booted devices are used
        (with count 1, more than one booted device is an error: which one?); when fewer are booted, the
        rest are to be booted as emulators.
        """
        states = self.states()
        listing = ", ".join(f"{d.serial} ({d.state}{', booted' if d.booted else ''})" for d in states) or "none"
        if requested:
            for serial in requested:
                match = next((d for d in states if d.serial == serial), None)
                if match is None:
                    raise DeviceError(f"device '{serial}' is not connected (adb sees: {listing})",
                                      fix="check the serial with `adb devices`, or leave --device out to use the booted device")
                if not match.booted:
                    raise DeviceError(f"device '{serial}' is {match.state} and not booted (sys.boot_completed != 1)",
                                      fix="wait for it to finish booting, or `invoke emulator.start`")
            return list(requested), 0
        booted = [d.serial for d in states if d.booted]
        if count == 1 and len(booted) > 1:
            raise DeviceError(f"{len(booted)} booted devices are connected ({listing}); which one should run the flows?",
                              fix=f"pass --device SERIAL (e.g. --device {booted[0]}), or --devices {len(booted)} to use them all")
        if len(booted) >= count:
            return booted[:count], 0
        self.console.info(f"{len(booted)} of {count} booted device(s) connected (adb sees: {listing}); "
                          f"booting {count - len(booted)} emulator(s)")
        return booted, count - len(booted)

    def uninstall(self, serial: str, package: str) -> bool:
        """`adb uninstall PACKAGE`; False when it was not installed (adb's `Failure [...]`)."""
        done = self._run("-s", serial, "uninstall", package, check=False, timeout=120)
        return done.returncode == 0 and "Failure" not in done.stdout

    def install(self, serial: str, apk: Path, timeout: float = 300) -> None:
        require_apk(apk)
        self._run("-s", serial, "install", "-r", "-g", str(apk), timeout=timeout,
                  what=f"installing {apk.name} on {serial} failed",
                  fix="read adb's message above: INSTALL_FAILED_UPDATE_INCOMPATIBLE means uninstall the app first "
                      "(signature changed); INSTALL_FAILED_VERSION_DOWNGRADE means an older versionCode")
