"""The app's own crash or ANR in a device's captured logcat, attributed to the attempt it happened in.

`invoke validate` captures each device's `adb logcat -v threadtime` into
`build/validation/devices/<serial>/logcat.txt` for the whole run (`emulator.capture_logcat`). An attempt
owns the lines logged between its start and its end:

- start: the capture file's size when the attempt starts. The previous attempt on the device waited for
  its end mark (below), so the capture has caught up to the device by then, give or take the few
  milliseconds between two attempts.
- end: after maestro exits, `log -t prodval <mark>` writes a unique mark into the device's own log, and we
  wait (bounded by `catch_up`, event by event as the capture writes) until the capture has written it. The
  marks go through one `adb -s SERIAL shell` per device kept open for the run (`Marks`: a line on its
  stdin each, as `echo cmd | adb shell` runs them), so a mark costs no new process. The device orders its
  log, so everything the app logged before maestro exited is before the mark, however late the capture
  writes it. When the mark cannot be logged (the device is gone, its shell session ended) or does not
  arrive in time, the attempt owns what the capture wrote so far.

In that window, the app's package (`is_app_process`: the package, or one of its processes
`package:name`) crashed when AndroidRuntime logged `FATAL EXCEPTION: <thread>` with `Process: <package>,
PID: <pid>` (AOSP `RuntimeInit.logUncaught`: one entry per line of the message and the stack trace, from
the crashing thread), or did not respond when ActivityManager logged `ANR in <package> (...)` (one
multi-line entry from system_server: `PID:`, `Reason:`, ...). A block that starts in the window is read
to its end even past the window. Crashes of other processes are not the app's: they stay in logcat.txt.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .commands import WATCHDOG, die_with_parent, stop_process_group
from .devices import Adb

MARK_TAG = "prodval"
CRASH_FILE = "crash.txt"
CATCH_UP = 10.0  # seconds the capture gets to write the end mark after maestro exits
POLL = 0.02  # seconds between two looks at the capture file while waiting for it
MAX_BLOCK_LINES = 400  # a crash block longer than this (a deep recursion's trace) is cut

# `logcat -v threadtime`: liblog's "%s %5d %5d %c %-8s: " prefix, the time as MM-DD HH:MM:SS.mmm
_LINE = re.compile(r"^(?P<time>\d\d-\d\d \d\d:\d\d:\d\d\.\d{3})\s+(?P<pid>\d+)\s+(?P<tid>\d+) "
                   r"(?P<level>[VDIWEFS]) (?P<tag>.*?)\s*: ?(?P<message>.*)$")
_PROCESS = re.compile(r"^(?:Process: (?P<process>.+?), )?PID: (?P<pid>\d+)$")
_ANR = re.compile(r"^ANR in (?P<process>\S+)(?: \((?P<component>.*)\))?$")


@dataclass(frozen=True)
class LogLine:
    text: str
    time: str
    pid: int
    tid: int
    level: str
    tag: str
    message: str


def parse_line(text: str) -> LogLine | None:
    """One `threadtime` line, or None (a `--------- beginning of crash` divider, or anything else)."""
    match = _LINE.match(text.rstrip("\r\n"))
    if match is None:
        return None
    return LogLine(text.rstrip("\r\n"), match["time"], int(match["pid"]), int(match["tid"]), match["level"],
                   match["tag"], match["message"])


@dataclass(frozen=True)
class Crash:
    kind: str  # "crash" (FATAL EXCEPTION) or "anr"
    process: str
    summary: str  # the attempt's errorSummary: the exception line, or "ANR in <process>: <reason>"
    lines: tuple[str, ...]  # the whole block, as logcat printed it

    @property
    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def is_app_process(process: str, package: str) -> bool:
    """The app's own: its package's process or one of its named processes (`android:process=":sync"`)."""
    return bool(package) and (process == package or process.startswith(package + ":"))


def _lines_from(text: str, position: int) -> Iterator[str]:
    """The lines of `text` from `position` (a line's start) on."""
    while position < len(text):
        newline = text.find("\n", position)
        stop = len(text) if newline < 0 else newline + 1
        yield text[position:stop]
        position = stop


def _positions(text: str, needles: tuple[str, ...], start: int) -> list[int]:
    """Where any of `needles` occurs in `text` from `start` on, in order (str.find: a regex alternation is
    twenty times slower on megabytes of log)."""
    found = []
    for needle in needles:
        at = text.find(needle, start)
        while at >= 0:
            found.append(at)
            at = text.find(needle, at + 1)
    return sorted(found)


def find_crashes(text: str, package: str, *, start: int = 0, end: int | None = None) -> list[Crash]:
    """The crashes and ANRs of `package` whose first line starts in text[start:end], in log order. Only
    the lines that can start a block, and the lines after one, are parsed: a chatty device logs
    hundreds of lines a second."""
    end = len(text) if end is None else end
    found, heads = [], set()
    for position in _positions(text, ("FATAL EXCEPTION: ", "ANR in "), start):
        head = text.rfind("\n", 0, position) + 1
        if head >= end:
            break
        if head < start or head in heads:
            continue
        heads.add(head)
        lines = _lines_from(text, head)
        line = parse_line(next(lines))
        rest = (parse_line(raw) for raw in lines)
        if line is None:
            continue
        if line.tag == "AndroidRuntime" and line.message.startswith("FATAL EXCEPTION: "):
            crash = _fatal(line, rest)
        elif line.tag == "ActivityManager" and _ANR.match(line.message):
            crash = _anr(line, rest)
        else:
            continue
        if is_app_process(crash.process, package):
            found.append(crash)
    return found


def _fatal(head: LogLine, rest: Iterable[LogLine | None]) -> Crash:
    """AndroidRuntime's lines from the crashing thread after the header, until that thread logs anything
    else (`Process: Sending signal`) or a new FATAL EXCEPTION; other threads' and processes' lines that
    the log interleaves are left out."""
    block = [head]
    for line in rest:
        if len(block) >= MAX_BLOCK_LINES:
            break
        if line is None or (line.pid, line.tid) != (head.pid, head.tid):
            continue
        if line.tag != "AndroidRuntime" or line.message.startswith("FATAL EXCEPTION: "):
            break
        block.append(line)
    process, body = "", block[1:]
    if body and (named := _PROCESS.match(body[0].message)):
        process, body = named["process"] or "", body[1:]
    exception = next((line.message.strip() for line in body if line.message.strip()), "")
    summary = exception or f"FATAL EXCEPTION in {process or f'pid {head.pid}'}"
    return Crash("crash", process, summary, tuple(line.text for line in block))


def _anr(head: LogLine, rest: Iterable[LogLine | None]) -> Crash:
    """system_server's one multi-line entry: the lines right after it with the very same prefix."""
    block = [head]
    for line in rest:
        same = line is not None and (line.time, line.pid, line.tid, line.level, line.tag) == \
            (head.time, head.pid, head.tid, head.level, head.tag)
        if not same or len(block) >= MAX_BLOCK_LINES:
            break
        assert line is not None
        block.append(line)
    match = _ANR.match(head.message)
    process = match["process"] if match else ""
    reason = next((line.message[len("Reason: "):].strip() for line in block if line.message.startswith("Reason: ")), "")
    summary = f"ANR in {process}: {reason}" if reason else f"ANR in {process}"
    return Crash("anr", process, summary, tuple(line.text for line in block))


# --- an attempt's window of a device's capture ----------------------------------------------------------


def capture_path(results_dir: Path, serial: str) -> Path:
    """Where `invoke validate` captures a device's logcat for the whole run."""
    return results_dir / "devices" / serial / "logcat.txt"


def window_start(capture: Path) -> int:
    """Where an attempt starts in the capture: its size now (0 when there is no capture yet)."""
    try:
        return capture.stat().st_size
    except OSError:
        return 0


def _mark_text(label: str) -> tuple[str, str]:
    """The message logged at an attempt's end and the unique token found again in the capture. Only
    characters a device shell takes as they are: adb hands the words to `sh -c`."""
    token = uuid.uuid4().hex
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", label)[:80]
    return f"end-of-attempt {safe} {token}", token


class MarkWriter(Protocol):
    def mark(self, serial: str, message: str) -> bool: ...  # written towards the device's log
    def alive(self, serial: str) -> bool: ...  # the way to the device is still open


class Marks:
    """Attempts' end marks into the devices' own logs: one `adb -s SERIAL shell` per device, opened when
    the `with` block starts (so the first mark waits for no start-up) and kept for the run, whose sh runs
    each line we write on its stdin. A session that ended (the device went offline) is opened again at
    the next mark. `close` (or the `with` block's end) ends them; they die with this process too."""

    def __init__(self, adb: Adb, serials: Iterable[str] = ()) -> None:
        self.adb, self.serials = adb, tuple(serials)
        self._shells: dict[str, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> Marks:
        for serial in self.serials:
            self._shell(serial)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _shell(self, serial: str) -> subprocess.Popen[bytes] | None:
        with self._lock:
            proc = self._shells.get(serial)
            if proc is not None and proc.poll() is None:
                return proc
            if proc is not None:
                stop_process_group(proc)
            try:
                proc = subprocess.Popen(
                    [str(self.adb.path), "-s", serial, "shell"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL, env=dict(self.adb.env), start_new_session=True,
                    preexec_fn=die_with_parent(os.getpid()))  # noqa: PLW1509
            except OSError:
                return None
            WATCHDOG.guard(proc.pid)
            self._shells[serial] = proc
            return proc

    def mark(self, serial: str, message: str) -> bool:
        proc = self._shell(serial)
        if proc is None or proc.stdin is None:
            return False
        try:
            proc.stdin.write(f"log -t {MARK_TAG} {message}\n".encode())
            proc.stdin.flush()
        except OSError:  # the session ended meanwhile
            return False
        return True

    def alive(self, serial: str) -> bool:
        proc = self._shells.get(serial)
        return proc is not None and proc.poll() is None

    def close(self) -> None:
        with self._lock:
            shells, self._shells = list(self._shells.values()), {}
        for proc in shells:
            with contextlib.suppress(OSError):
                if proc.stdin is not None:
                    proc.stdin.close()  # end of input: the shell exits
            stop_process_group(proc)


def wait_for_text(path: Path, start: int, needle: bytes, *, timeout: float, poll: float = POLL,
                  clock: Callable[[], float] = time.monotonic, going: Callable[[], bool] = lambda: True) -> bytes:
    """The capture's bytes from `start`, read as the capture writes them, until they hold `needle`,
    `timeout` seconds pass or `going()` turns false (then: what is there)."""
    deadline = clock() + timeout
    data = bytearray()
    while True:
        searched = max(0, len(data) - len(needle) + 1)  # only what came since the last look is searched
        try:
            with open(path, "rb") as fh:
                fh.seek(start + len(data))
                data += fh.read()
        except OSError:
            return bytes(data)
        if data.find(needle, searched) >= 0 or clock() >= deadline or not going():
            return bytes(data)
        time.sleep(poll)


@dataclass(frozen=True)
class AttemptLog:
    text: str  # the capture from the attempt's start on (blocks are read past `end`)
    end: int  # where the attempt ends in `text`: its end mark, else the end of what was captured
    logged: bool  # the end mark was written into the device's log
    seen: bool  # ... and the capture wrote it in time

    @property
    def lost(self) -> bool:
        """The device took the mark but the capture did not deliver it: the capture has stopped."""
        return self.logged and not self.seen


def attempt_log(marks: MarkWriter, serial: str, capture: Path, start: int, label: str, *,
                catch_up: float = CATCH_UP, poll: float = POLL) -> AttemptLog:
    """The attempt's part of the capture: the end mark is logged on the device and waited for (at most
    `catch_up` seconds, less when the way to the device closes); without it, the attempt ends where the
    capture is."""
    if not capture.is_file():
        return AttemptLog("", 0, logged=False, seen=False)
    message, token = _mark_text(label)
    written = marks.mark(serial, message)
    data = wait_for_text(capture, start, token.encode(), timeout=catch_up if written else 0.0, poll=poll,
                         going=lambda: marks.alive(serial))
    text = data.decode("utf-8", errors="replace")
    at = text.find(token)
    logged = at >= 0 or (written and marks.alive(serial))  # a shell that ended took the mark with it
    return AttemptLog(text, text.rfind("\n", 0, at) + 1 if at >= 0 else len(text), logged=logged, seen=at >= 0)


def attempt_crash(marks: MarkWriter, serial: str, capture: Path, start: int, package: str, label: str,
                  folder: Path, *, catch_up: float = CATCH_UP, poll: float = POLL) -> tuple[Crash | None, AttemptLog]:
    """The app's first crash or ANR during the attempt (None when it did not crash), its block written to
    `folder/crash.txt` (every block of the attempt, when there are several), and the attempt's log."""
    log = attempt_log(marks, serial, capture, start, label, catch_up=catch_up, poll=poll)
    crashes = find_crashes(log.text, package, end=log.end)
    if not crashes:
        return None, log
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CRASH_FILE).write_text("\n".join(crash.text for crash in crashes), encoding="utf-8")
    return crashes[0], log


def watch_attempt(marks: MarkWriter | None, lost: set[str], results_dir: Path, serial: str, start: int,
                  package: str, label: str, what: str, folder: Path, warn: Callable[[str], None]) -> Crash | None:
    """An attempt's crash check, the same for validate's attempts and the released app's rerun: None
    without `marks` (no capture). A device whose capture stopped delivering joins `lost` (said once through
    `warn`), and its later attempts read what was captured without waiting."""
    if marks is None:
        return None
    was_lost = serial in lost
    crash, log = attempt_crash(marks, serial, capture_path(results_dir, serial), start, package, label, folder,
                               catch_up=0.0 if was_lost else CATCH_UP)
    if log.lost and not was_lost:
        lost.add(serial)
        warn(f"{serial}: the logcat capture did not deliver the end of {what} within {CATCH_UP:g}s; the app's "
             "crashes are read from what it captured, without waiting, for the rest of the run")
    return crash
