"""Shared helpers for the fake `adb`, `maestro` and `emulator` executables (Python 3.11 stdlib only).

Locking protocol for every JSON file shared between processes (the adb state file named by
FAKE_ADB_STATE, the maestro attempt counter): take ``fcntl.flock`` on the sidecar file
``<file>.lock`` (shared to read, exclusive to modify), then read; writers write a temporary
file next to it and ``os.replace`` it. Readers therefore never see a half-written file, and
any other fake (e.g. a future fake emulator) only has to follow the same two rules.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import struct
import tempfile
import time
import zlib
from collections.abc import Iterator
from typing import Any, NoReturn


@contextlib.contextmanager
def _flock(path: str, mode: int) -> Iterator[None]:
    fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, mode)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _load(path: str, default: Any) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        return default
    return json.loads(text) if text.strip() else default


def _atomic_write(path: str, data: Any) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.write("\n")
    os.replace(tmp, path)


def read_json(path: str, default: Any = None) -> Any:
    """Read a shared JSON file under a shared lock; ``default`` if it does not exist."""
    with _flock(path, fcntl.LOCK_SH):
        return _load(path, default)


@contextlib.contextmanager
def update_json(path: str, default: Any = None) -> Iterator[Any]:
    """Read-modify-write a shared JSON file under an exclusive lock.

    The yielded object is written back when the block exits normally (not on exception).
    """
    with _flock(path, fcntl.LOCK_EX):
        data = _load(path, {} if default is None else default)
        yield data
        _atomic_write(path, data)


def read_adb_state(path: str | None) -> dict:
    """The fake adb state; ``{"devices": {}}`` when FAKE_ADB_STATE is unset or missing."""
    if not path or not os.path.exists(path):
        return {"devices": {}}
    state = read_json(path, {}) or {}
    state.setdefault("devices", {})
    return state


def live_devices(path: str | None) -> dict:
    """The devices adb lists: a device the fake emulator registered ("process_bound") is gone once its
    process has exited, as adb drops an emulator whose console connection closed."""
    return {serial: dev for serial, dev in read_adb_state(path)["devices"].items()
            if not (dev.get("process_bound") and dev.get("pid") and not pid_alive(int(dev["pid"])))}


def append_jsonl(path: str | None, record: dict) -> None:
    """Append one JSON line to ``path`` (no-op when ``path`` is empty)."""
    if not path:
        return
    line = json.dumps(record, sort_keys=True) + "\n"
    with open(path, "a", encoding="utf-8") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.write(line)
        fh.flush()
        fcntl.flock(fh, fcntl.LOCK_UN)


def bump_counter(folder: str, key: str) -> int:
    """Increment and return the attempt counter ``key`` kept in ``folder/attempts.json``."""
    os.makedirs(folder, exist_ok=True)
    with update_json(os.path.join(folder, "attempts.json")) as counts:
        counts[key] = int(counts.get(key, 0)) + 1
        return counts[key]


def write_png(path: str, rgb: tuple[int, int, int] = (220, 40, 40),
              width: int = 32, height: int = 64) -> None:
    """Write a valid solid-colour RGB PNG."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    row = b"\x00" + bytes(rgb) * width
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(row * height)) + chunk(b"IEND", b"")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n" + body)


# What a fresh device's logcat shows before anything else is logged (`-v threadtime`).
DEFAULT_LOGCAT = [
    "--------- beginning of main",
    "08-01 10:15:00.101  1234  1250 I ActivityManager: Start proc 4321:com.android.systemui/u0a88",
    "08-01 10:15:00.230   512   530 D SurfaceFlinger: Display 0 HWC layers:",
    "08-01 10:15:00.412  1234  1301 I ActivityTaskManager: Displayed com.android.launcher3/.Launcher",
    "08-01 10:15:01.007  4321  4321 W View    : requestLayout() improperly called during layout",
]


def logcat_lines(pid: int, tid: int, level: str, tag: str, message: str, when: float | None = None) -> list[str]:
    """One log entry as `logcat -v threadtime` prints it (liblog's logprint: "%s %5d %5d %c %-8s: " with
    the time as MM-DD HH:MM:SS.mmm); a message of several lines is one output line each, same prefix."""
    when = time.time() if when is None else when
    stamp = time.strftime("%m-%d %H:%M:%S", time.localtime(when)) + f".{int(when * 1000) % 1000:03d}"
    prefix = f"{stamp} {pid:5d} {tid:5d} {level} {tag:<8}: "
    return [prefix + line for line in message.split("\n")]


def append_logcat(state_path: str | None, serial: str, lines: list[str], section: str = "") -> bool:
    """Append lines to a device's log buffer in the adb state (the streaming `adb logcat` prints them as
    they come); False when there is no such device. `section` (e.g. "crash"): the lines come from that
    buffer, and logcat prints "--------- beginning of <section>" before the first entry it shows from it."""
    if not state_path or not os.path.exists(state_path):
        return False
    with update_json(state_path, {"devices": {}}) as state:
        dev = state.get("devices", {}).get(serial)
        if dev is None:
            return False
        log = dev.setdefault("logcat", list(DEFAULT_LOGCAT))
        if section and f"--------- beginning of {section}" not in log:
            log.append(f"--------- beginning of {section}")
        log.extend(lines)
    return True


def pid_alive(pid: int) -> bool:
    """True while `pid` runs (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


def sleep_forever() -> NoReturn:
    while True:
        time.sleep(3600)
