"""One run per results folder, and one run per device across folders.

Both are `flock` locks on small files: the kernel drops them when the process that holds them dies
(killed, crashed), so a lock left by a dead run is simply taken over. Python opens files
non-inheritable, so no child process (maestro, an emulator) keeps a lock alive after its run.

- `hold_folder`: `<results folder>/.prodval.lock`, held by `validate`, `build-apk`, `merge-results` and `notify` for
  their whole stage; a second one on the same folder exits 2 at once, naming the run that holds it.
- `hold_device`: `<lock folder>/<serial>.lock`, machine-wide (`PRODVAL_LOCK_DIR`, else a folder in the
  system's temporary folder), held while `validate` drives the device; a run in another folder waits
  for it, up to `validation.device_wait` seconds, then gives up with exit 2.

The lock file says who holds it (pid, run id, stage, start time, results folder), for those messages.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from .errors import ConfigError, DeviceError

FOLDER_LOCK = ".prodval.lock"
_held: dict[Path, tuple[IO[str], dict[str, Any]]] = {}  # lock file -> (open file, what it says), this process


def _owner(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _describe(owner: Mapping[str, Any]) -> str:
    parts = [f"pid {owner.get('pid', '?')}", f"run id {owner.get('runId') or '(not known yet)'}"]
    if owner.get("stage"):
        parts.append(f"{owner['stage']} since {owner.get('since', '?')}")
    if owner.get("resultsDir"):
        parts.append(f"results folder {owner['resultsDir']}")
    return ", ".join(parts)


class FolderInUse(ConfigError):
    """Another live run holds the results folder (exit 2 at once)."""


def _write(fh: IO[str], info: Mapping[str, Any]) -> None:
    """Say who holds the lock; best effort: the lock itself needs no disk space (a full disk must not stop
    the stage that would record it)."""
    with contextlib.suppress(OSError):
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps(info) + "\n")
        fh.flush()


def _try_lock(path: Path, info: dict[str, Any]) -> IO[str] | None:
    """The open, locked file; None when another process holds the lock. OSError when the lock file cannot
    be made at all (the folder is a file, a dangling symlink or loop, or read-only)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "a+", encoding="utf-8")  # noqa: SIM115 (kept open: the lock lives as long as the file)
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        return None
    except BaseException:
        fh.close()
        raise
    _write(fh, info)
    return fh


def _release(path: Path) -> None:
    fh, _ = _held.pop(path, (None, None))
    if fh is not None:
        with contextlib.suppress(OSError):
            fh.seek(0)
            fh.truncate()
        fh.close()  # closing drops the flock


def close_in_child() -> None:
    """In a process forked without exec (notify's delivery processes): close its copies of the held lock
    files. Closing, never unlocking: a flock belongs to the open file the fork shares, so LOCK_UN or
    `_release` (which also empties the file) would free the parent's lock; a close drops only this copy."""
    for fh, _ in _held.values():
        with contextlib.suppress(OSError, ValueError):
            fh.close()
    _held.clear()


def _info(stage: str, run_id: str, results_dir: Path) -> dict[str, Any]:
    return {"pid": os.getpid(), "runId": run_id, "stage": stage,
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "resultsDir": str(results_dir)}


@contextlib.contextmanager
def hold_folder(results_dir: Path, stage: str, run_id: str = "", *, required: bool = True) -> Iterator[None]:
    """Hold the results folder for one stage; FolderInUse (exit 2) at once when another run holds it.

    A folder where no lock file can be made raises that OSError (the stage could not write there either,
    and the error boundary says so), unless not `required`: `notify` then goes on without the lock, since
    it must still alert with the record this chain kept in memory."""
    path = (results_dir / FOLDER_LOCK).absolute()
    info = _info(stage, run_id, results_dir)
    try:
        fh = _try_lock(path, info)
    except OSError:
        if required:
            raise
        yield
        return
    if fh is None:
        raise FolderInUse(
            f"the results folder '{results_dir}' is in use by another run ({_describe(_owner(path))})",
            fix="wait for that run to finish, or give this one its own folder (--results-dir)")
    _held[path] = (fh, info)
    try:
        yield
    finally:
        _release(path)


def note_run_id(results_dir: Path, run_id: str) -> None:
    """Name the run in the folder's lock, once the stage knows its run id (no-op when not held here)."""
    path = (results_dir / FOLDER_LOCK).absolute()
    if path in _held:
        fh, info = _held[path]
        info["runId"] = run_id
        _write(fh, info)


def device_lock_dir(environ: Mapping[str, str]) -> Path:
    configured = environ.get("PRODVAL_LOCK_DIR", "")
    return Path(configured) if configured else Path(tempfile.gettempdir()) / f"prodval-devices-{os.getuid()}"


@contextlib.contextmanager
def hold_device(serial: str, *, lock_dir: Path, run_id: str, results_dir: Path, wait: float,
                on_wait: Callable[[str], None], poll: float = 0.2) -> Iterator[None]:
    """Hold a device while this run drives it. Another run holding it: wait up to `wait` seconds
    (saying so once through `on_wait`), then DeviceError (exit 2) naming that run."""
    path = (lock_dir / f"{serial.replace('/', '_').replace(':', '_')}.lock").absolute()
    info = _info("validate", run_id, results_dir)
    deadline = time.monotonic() + wait
    told = False
    while (fh := _try_lock(path, info)) is None:
        owner = _describe(_owner(path))
        if time.monotonic() >= deadline:
            raise DeviceError(
                f"{serial} is in use by another run ({owner}); waited {wait:g}s for it",
                fix="let that run finish first, run on another device (--device), or wait longer "
                    "(validation.device_wait)")
        if not told:
            on_wait(f"{serial} is in use by another run ({owner}); waiting up to {wait:g}s for it")
            told = True
        time.sleep(min(poll, max(0.0, deadline - time.monotonic())))
    _held[path] = (fh, info)
    try:
        yield
    finally:
        _release(path)
