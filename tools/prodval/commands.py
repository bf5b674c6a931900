"""The one way this project runs external commands.

Argument lists only (never a shell), the executable resolved first, `+ cmd` echoed with secrets masked,
and a failure that says the command, its exit code and the tail of both streams. Long-running children
get their own process group so that a timeout or an interrupt stops the whole tree, in stages.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .console import Console
from .errors import CommandFailed, ToolNotFound
from .secrets import Redactor

# How much of each stream the run record keeps in memory; the full stream is always on disk.
HEAD_BYTES = 8 * 1024
TAIL_BYTES = 8 * 1024
TERM_WAIT_VAR = "PRODVAL_TERM_WAIT"
TERM_WAIT_DEFAULT = 5.0


def term_wait(environ: Mapping[str, str]) -> float:
    """Seconds between SIGTERM and SIGKILL of a process group: 5, or $PRODVAL_TERM_WAIT (a number > 0).

    A parameter so that the tests' fakes that ignore SIGTERM cost less than 5 s each; a value that is not a
    number > 0 is named on stderr and the default is kept (it is read at import, before any console exists).
    """
    raw = environ.get(TERM_WAIT_VAR, "").strip()
    if not raw:
        return TERM_WAIT_DEFAULT
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        print(f"warning: {TERM_WAIT_VAR}={raw!r} is not a number of seconds > 0; using {TERM_WAIT_DEFAULT:g}",
              file=sys.stderr)
        return TERM_WAIT_DEFAULT
    return value


TERM_WAIT = term_wait(os.environ)  # seconds between SIGTERM and SIGKILL of a process group
LINE_PIECE = 64 * 1024  # a longer output line is read (and passed on) in pieces of this size


# ---- children die with us -------------------------------------------------------------------------------
# A SIGKILLed harness runs no handler. On Linux each child asks the kernel for SIGKILL when we die
# (PR_SET_PDEATHSIG); a child's own children, and every child on other systems, are stopped by the
# watchdog: a small process that holds a pipe from us and, when the pipe breaks, kills the process groups
# we registered with it and did not release.
_PR_SET_PDEATHSIG = 1
_prctl = None
if sys.platform == "linux":
    with contextlib.suppress(OSError, AttributeError):
        _prctl = ctypes.CDLL(None, use_errno=True).prctl


def die_with_parent(parent: int) -> Callable[[], None] | None:
    """The preexec function of a child that is to get SIGKILL when `parent` (this process) ends.

    preexec functions are unsafe with threads when they take locks or import; this one makes two system
    calls through a function pointer resolved at import, nothing else. The kernel sends the signal when the
    *thread* that forked the child ends (prctl(2)), so every caller waits for its child in the thread that
    started it (the device workers for maestro, the main thread for logcat).
    """
    if _prctl is None:
        return None
    prctl = _prctl

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:  # we died before the call: nobody would send the signal
            os._exit(137)

    return preexec


_WATCHDOG = r"""
import os, signal, sys, time
groups = set()
for line in sys.stdin:
    sign, pgid = line[:1], int(line[1:])
    (groups.add if sign == "+" else groups.discard)(pgid)
for sig in (signal.SIGTERM, signal.SIGKILL):
    for pgid in groups:
        try:
            os.killpg(pgid, sig)
        except OSError:
            pass
    if groups and sig == signal.SIGTERM:
        time.sleep(float(sys.argv[1]))
"""


class _Watchdog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None
        self._owner = 0
        self._guarded: set[int] = set()

    def _send(self, line: str) -> None:
        with self._lock:
            if self._proc is None or self._owner != os.getpid():  # started lazily; again in a forked child
                self._proc = subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(TERM_WAIT)],
                                              stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                              stderr=subprocess.DEVNULL, text=True, start_new_session=True)
                self._owner = os.getpid()
            assert self._proc.stdin is not None
            with contextlib.suppress(OSError):
                self._proc.stdin.write(line + "\n")
                self._proc.stdin.flush()

    def guard(self, pgid: int) -> None:
        self._guarded.add(pgid)
        self._send(f"+{pgid}")

    def release(self, pgid: int) -> None:
        self._guarded.discard(pgid)
        self._send(f"-{pgid}")

    def owns(self, pgid: int) -> bool:
        return pgid in self._guarded


WATCHDOG = _Watchdog()


def find_tool(name: str, candidates: Sequence[tuple[str, str | Path | None]], install: str) -> Path:
    """Return the first candidate that is an executable file.

    `candidates` are (label, path) pairs in the order we look; a path of None is skipped but still
    named in the error so the user sees where we looked. A bare name is looked up on PATH.
    """
    looked: list[str] = []
    for label, candidate in candidates:
        looked.append(label)
        if candidate is None or str(candidate) == "":
            continue
        text = str(candidate)
        if os.sep not in text:
            found = shutil.which(text)
            if found:
                return Path(found)
            continue
        path = Path(text).expanduser()
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise ToolNotFound(name, looked, install)


def display(argv: Sequence[str | Path]) -> str:
    return shlex.join(str(a) for a in argv)


@dataclass(frozen=True)
class Completed:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


def run(
    console: Console,
    argv: Sequence[str | Path],
    *,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    what: str = "",
    fix: str = "",
    stage: str = "validate",
    echo: bool = True,
    input: str | None = None,
) -> Completed:
    """Run a short command to completion and capture its output; `input` is fed to its stdin."""
    args = tuple(str(a) for a in argv)
    if echo:
        console.command(display(args))
    try:
        proc = subprocess.run(
            args,
            capture_output=True,
            text=True,
            errors="replace",
            env=dict(env) if env is not None else None,
            timeout=timeout,
            stdin=subprocess.DEVNULL if input is None else None,
            input=input,
            check=False,
            preexec_fn=die_with_parent(os.getpid()),
        )
    except subprocess.TimeoutExpired as exc:
        raise CommandFailed(
            console.redact(display(args)),
            -1,
            console.redact(_text(exc.stdout)),
            f"timed out after {timeout:g}s",
            what=what,
            fix=fix,
            stage=stage,
        ) from None
    done = Completed(args, proc.returncode, proc.stdout, proc.stderr)
    if check and proc.returncode != 0:
        raise CommandFailed(
            console.redact(display(args)),
            proc.returncode,
            console.redact(proc.stdout),
            console.redact(proc.stderr),
            what=what,
            fix=fix,
            stage=stage,
        )
    return done


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


class Captured:
    """A stream copied to a file in full, keeping only a bounded head and tail in memory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._head = bytearray()
        self._tail = bytearray()
        self.total = 0
        self.error: OSError | None = None  # writing the file failed (a full disk); `stream` raises it

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = HEAD_BYTES - len(self._head)
        if room > 0:
            self._head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            self._tail += chunk
            if len(self._tail) > TAIL_BYTES:
                del self._tail[: len(self._tail) - TAIL_BYTES]

    @property
    def cut(self) -> int:
        """Bytes of the stream that are on disk but not in `text`."""
        return self.total - len(self._head) - len(self._tail)

    @property
    def text(self) -> str:
        head = self._head.decode(errors="replace")
        if not self.cut:
            return head + self._tail.decode(errors="replace")
        marker = f"\n[... {self.cut} bytes cut; the whole stream is in {self.path.name} ...]\n"
        return head + marker + self._tail.decode(errors="replace")


class Cancelled(Exception):
    """`stream` stopped its command because the run is being interrupted."""


@dataclass
class Streamed:
    returncode: int
    timed_out: bool
    duration_ms: int
    stdout: Captured
    stderr: Captured


class CancelScope:
    """Stops every process group registered with it when the run is being interrupted.

    Worker threads block in `wait()` on their child; the main thread, which receives the signal,
    calls `cancel()`, which sends SIGTERM to each group now and SIGKILL a few seconds later.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._procs: set[subprocess.Popen[bytes]] = set()
        self._cancelled = threading.Event()

    def is_set(self) -> bool:
        return self._cancelled.is_set()

    def wait(self, timeout: float) -> bool:
        """Sleep up to `timeout` seconds, waking at once when cancelled; True when cancelled."""
        return self._cancelled.wait(timeout)

    def cancel(self) -> None:
        with self._lock:
            self._cancelled.set()
            procs = list(self._procs)
        for proc in procs:
            _stop_group_soon(proc)

    def register(self, proc: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._procs.add(proc)
            cancelled = self._cancelled.is_set()
        if cancelled:
            _stop_group_soon(proc)

    def unregister(self, proc: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._procs.discard(proc)


def _stop_group_soon(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the group now, SIGKILL it after TERM_WAIT if its leader still runs (from any thread)."""
    _kill_group(proc.pid, signal.SIGTERM)

    def kill() -> None:
        if proc.returncode is None:
            _kill_group(proc.pid, signal.SIGKILL)

    timer = threading.Timer(TERM_WAIT, kill)
    timer.daemon = True
    timer.start()


def stream(
    argv: Sequence[str | Path],
    *,
    env: Mapping[str, str],
    timeout: float,
    stdout_path: Path,
    stderr_path: Path,
    on_line: Callable[[str], None] | None = None,
    redact: Callable[[str], str] = str,
    cancel: CancelScope | None = None,
    cwd: Path | None = None,
) -> Streamed:
    """Run a long command in its own process group, streaming both pipes to files as they come.

    Each line passes through `redact` before it reaches the file, the memory copy or `on_line`.

    On timeout the whole process group is stopped (SIGTERM, then SIGKILL). On an exception in the
    caller's thread (KeyboardInterrupt, our SIGTERM handler) the group is stopped too and the exception
    propagates; when `cancel` is cancelled from another thread, the group is stopped and this raises
    `Cancelled`. The wait itself blocks in waitpid, so the end of the child is noticed at once.
    """
    args = [str(a) for a in argv]
    start = time.monotonic()
    proc = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=dict(env),
        cwd=cwd,
        start_new_session=True,
        preexec_fn=die_with_parent(os.getpid()),  # noqa: PLW1509 (see die_with_parent)
    )
    WATCHDOG.guard(proc.pid)
    captured_out, captured_err = Captured(stdout_path), Captured(stderr_path)
    assert proc.stdout is not None and proc.stderr is not None
    readers = [
        threading.Thread(target=_pump, args=(proc.stdout, captured_out, on_line, redact), daemon=True),
        threading.Thread(target=_pump, args=(proc.stderr, captured_err, on_line, redact), daemon=True),
    ]
    for reader in readers:
        reader.start()
    expired = threading.Event()

    def on_timeout() -> None:
        expired.set()
        _stop_group_soon(proc)

    timer = threading.Timer(timeout, on_timeout)
    timer.daemon = True
    timer.start()
    if cancel is not None:
        cancel.register(proc)
    try:
        proc.wait()
    except BaseException:
        stop_process_group(proc)
        raise
    finally:
        timer.cancel()
        if cancel is not None:
            cancel.unregister(proc)
        # A grandchild that left our process group may still hold a pipe open: don't wait for it.
        for reader in readers:
            reader.join(timeout=5)
    # Reap any member of the group that outlived its parent (it would keep pipes and devices busy).
    _kill_group(proc.pid, signal.SIGKILL)
    WATCHDOG.release(proc.pid)
    for captured in (captured_out, captured_err):
        if captured.error is not None:
            captured.error.filename = captured.error.filename or str(captured.path)
            raise captured.error
    if cancel is not None and cancel.is_set() and not expired.is_set():
        raise Cancelled()
    duration_ms = int((time.monotonic() - start) * 1000)
    return Streamed(proc.returncode, expired.is_set(), duration_ms, captured_out, captured_err)


def _pump(pipe: IO[bytes], captured: Captured, on_line: Callable[[str], None] | None,
          redact: Callable[[str], str]) -> None:
    sink = open(captured.path, "wb")  # noqa: SIM115 (closed below: a full disk fails the close too)
    with pipe:
        for data in _masked_pieces(pipe, redact):
            if captured.error is None:
                try:
                    sink.write(data)
                except OSError as exc:  # a full disk: keep draining the pipe (the child must not block), then raise
                    captured.error = exc
            captured.add(data)
            if on_line is not None:
                on_line(data.decode(errors="replace").rstrip("\r\n"))
    try:
        sink.close()
    except OSError as exc:
        captured.error = captured.error or exc


def _masked_pieces(pipe: IO[bytes], redact: Callable[[str], str]) -> Iterator[bytes]:
    """The stream as lines with secrets masked; a line longer than LINE_PIECE comes in pieces, so memory
    stays bounded whatever a tool prints, and no secret escapes through the cut between two pieces."""
    split = redact.split_safe if isinstance(redact, Redactor) else None
    rest = ""
    for raw in iter(lambda: pipe.readline(LINE_PIECE), b""):
        text = rest + raw.decode("utf-8", errors="surrogateescape")
        if raw.endswith(b"\n") or split is None:
            masked, rest = redact(text), ""
        else:
            masked, rest = split(text)
        if masked:
            yield masked.encode("utf-8", errors="surrogateescape")  # byte for byte what came, bar the masks
    if rest:
        yield redact(rest).encode("utf-8", errors="surrogateescape")


_PUMPS: weakref.WeakKeyDictionary[subprocess.Popen[bytes], threading.Thread] = weakref.WeakKeyDictionary()


def start_background(
    argv: Sequence[str | Path], *, log_path: Path, env: Mapping[str, str] | None = None,
    redact: Callable[[str], str] | None = None, die_with_us: bool = False,
) -> subprocess.Popen[bytes]:
    """Start a long-lived process (emulator, logcat) in its own group, its output to a log file.

    With `redact`, the output passes through it line by line on its way to the file (so a killed run
    leaves no secret there); with `die_with_us`, the group is stopped when this process dies, even by
    SIGKILL (an emulator is meant to outlive `invoke emulator.start`; logcat is not).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [str(a) for a in argv],
            stdout=log if redact is None else subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            start_new_session=True,
            preexec_fn=die_with_parent(os.getpid()) if die_with_us else None,  # noqa: PLW1509
        )
    if die_with_us:
        WATCHDOG.guard(proc.pid)
    if redact is not None:
        assert proc.stdout is not None
        pump = threading.Thread(target=_append_masked, args=(proc.stdout, log_path, redact), daemon=True)
        pump.start()
        _PUMPS[proc] = pump
    return proc


def _append_masked(pipe: IO[bytes], log_path: Path, redact: Callable[[str], str]) -> None:
    with open(log_path, "ab") as log, pipe:
        for data in _masked_pieces(pipe, redact):
            log.write(data)
            log.flush()  # what is in the file when we are killed is all there will be


def stop_process_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the group, wait up to TERM_WAIT for its leader, then SIGKILL the group."""
    if proc.poll() is None:
        _kill_group(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=TERM_WAIT)
    _kill_group(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=TERM_WAIT)
    pump = _PUMPS.pop(proc, None)
    if pump is not None:
        pump.join(TERM_WAIT)
    if WATCHDOG.owns(proc.pid):
        WATCHDOG.release(proc.pid)


def _kill_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
