"""The one way this project runs external commands.

Argument lists only (never a shell), the executable resolved first, `+ cmd` echoed with secrets masked,
and a failure that says the command, its exit code and the tail of both streams. Long-running children
get their own process group so that a timeout or an interrupt stops the whole tree, in stages.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .console import Console
from .errors import CommandFailed, ToolNotFound

# How much of each stream the run record keeps in memory; the full stream is always on disk.
HEAD_BYTES = 8 * 1024
TAIL_BYTES = 8 * 1024
TERM_WAIT = 5.0  # seconds between SIGTERM and SIGKILL of a process group


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
    )
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
        for raw in iter(pipe.readline, b""):
            text = raw.decode(errors="replace")
            masked = redact(text)
            data = raw if masked == text else masked.encode()
            if captured.error is None:
                try:
                    sink.write(data)
                except OSError as exc:  # a full disk: keep draining the pipe (the child must not block), then raise
                    captured.error = exc
            captured.add(data)
            if on_line is not None:
                on_line(masked.rstrip("\r\n"))
    try:
        sink.close()
    except OSError as exc:
        captured.error = captured.error or exc


def start_background(
    argv: Sequence[str | Path], *, log_path: Path, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start a long-lived process (emulator, logcat) in its own group, its output to a log file."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [str(a) for a in argv],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            start_new_session=True,
        )


def stop_process_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the group, wait up to TERM_WAIT for its leader, then SIGKILL the group."""
    if proc.poll() is None:
        _kill_group(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=TERM_WAIT)
    _kill_group(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=TERM_WAIT)


def _kill_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
