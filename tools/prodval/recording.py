"""Screen recordings of flow attempts: `adb shell screenrecord`, kept only for attempts that did not pass.

Facts (AOSP frameworks/av cmds/screenrecord/screenrecord.cpp): `--time-limit` defaults to and is capped at
180 s, so a longer attempt is recorded as a chain of segments; the file is created at once and only gets its
`moov` box (without which no player opens it) when screenrecord stops on SIGINT/SIGHUP or at its limit.
Stopping the host's adb client instead may end the connection before the device has finished the file, so
the stop is `adb shell pkill -INT screenrecord` on the device, then a bounded wait for the client to exit,
and only then the client's process group is terminated. A device without screenrecord answers
`/system/bin/sh: screenrecord: inaccessible or not found` (exit 127).

Recording never fails a flow: whatever goes wrong (no screenrecord, one that dies, a failed pull, a cut-off
file, the run's disk budget used up) the attempt goes on and `Attempt.noVideo` says why there is no video.
Every segment is deleted from the device when its attempt ends.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .commands import run, start_background, stop_process_group
from .console import Console
from .errors import CommandFailed

SEGMENT_SECONDS = 180  # screenrecord's --time-limit maximum (kMaxTimeLimitSec)
BIT_RATE = "4M"  # 4 Mbps (screenrecord's default is 20): about 90 MB for a full 3-minute segment
REMOTE_DIR = "/sdcard"
MISSING_EXIT = 127  # the device's shell: command not found
UNREACHABLE_WAIT = 2.0  # seconds for the client to notice a device adb cannot reach any more
VIDEO_NAME = re.compile(r"(^|/)video-\d+\.mp4$")
OFF = "screen recording is off (validation.video: false)"
PASSED_NOTE = "not kept: the attempt passed"


@dataclass(frozen=True)
class VideoPolicy:
    """How a run records: on or off, the bytes of video it may keep, and every wait (seconds)."""

    enabled: bool = False
    budget_bytes: int = 0
    stop_wait: float = 15.0  # for screenrecord to finish its file and the adb client to exit
    adb_timeout: float = 30.0  # pkill, rm
    pull_timeout: float = 300.0
    segment_seconds: int = SEGMENT_SECONDS

    @property
    def budget_text(self) -> str:
        return f"{self.budget_bytes / 1_000_000:g} MB"


class Budget:
    """The bytes of video a run may keep, shared by every device's worker."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def take(self, size: int) -> bool:
        """Count `size` bytes if they fit; False (nothing counted) if they would go over the limit."""
        with self._lock:
            if self.used + size > self.limit:
                return False
            self.used += size
            return True

    def exhausted(self) -> bool:
        with self._lock:
            return self.used >= self.limit


def segment_end(returncode: int, lasted: float, stopping: bool, stderr: str) -> str:
    """What a segment's end means for the chain: "" to start the next segment (it reached its time limit),
    "stopped" when the attempt ended (we stopped it), else why recording ends for this attempt."""
    detail = stderr.strip().splitlines()[-1] if stderr.strip() else ""
    if returncode == MISSING_EXIT:  # even when the attempt ended before the shell's answer came
        return f"screenrecord is not available on this device ({detail or f'exit {MISSING_EXIT}'})"
    if stopping:
        return "stopped"
    if returncode != 0:
        return f"screenrecord exited with code {returncode} after {lasted:.0f}s" + (f": {detail}" if detail else "")
    if lasted < 1:  # a screenrecord that ends at once would otherwise be restarted in a tight loop
        return f"screenrecord ended after {lasted:.1f}s without being stopped"
    return ""


def is_complete_mp4(path: Path) -> bool:
    """The file is a sequence of MP4 boxes that ends where the file ends and holds `moov` and `mdat`: what
    screenrecord writes when it stops properly (a cut-off recording has no `moov`, and no player opens it)."""
    seen: set[bytes] = set()
    try:
        with open(path, "rb") as fh:
            size = path.stat().st_size
            offset = 0
            while offset < size:
                fh.seek(offset)
                header = fh.read(16)
                if len(header) < 8:
                    return False
                length, kind = int.from_bytes(header[:4], "big"), header[4:8]
                if length == 1 and len(header) == 16:
                    length = int.from_bytes(header[8:16], "big")
                elif length == 0:
                    length = size - offset
                if length < 8 or offset + length > size:
                    return False
                seen.add(kind)
                offset += length
    except OSError:
        return False
    return {b"ftyp", b"moov", b"mdat"} <= seen


def remote_path(run_id: str, number: int) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", run_id).strip("-") or "run"
    return f"{REMOTE_DIR}/prodval-{safe}-{number}.mp4"


def videos_of(paths: Sequence[str]) -> list[str]:
    """The kept videos among an attempt's artifact paths, in order (video-1.mp4, video-2.mp4, ...)."""
    found = [p for p in paths if VIDEO_NAME.search(p)]
    return sorted(found, key=lambda p: int(re.findall(r"\d+", p.rsplit("/", 1)[-1])[0]))


@dataclass
class _Segment:
    remote: str
    proc: subprocess.Popen[bytes]
    log_from: int  # offset of its output in the device's screenrecord.log
    started: float
    returncode: int | None = None
    end: str = ""  # segment_end()'s answer


@dataclass
class Settled:
    """One attempt's video: the kept files (relative to the results folder) and why there is none / some."""

    videos: list[str] = field(default_factory=list)
    no_video: str = ""

    @property
    def video(self) -> str:
        return self.videos[0] if self.videos else ""


class Recording:
    """One attempt's recording on one device: a thread that chains segments until `stop()`."""

    def __init__(self, recorder: Recorder, serial: str) -> None:
        self.recorder, self.serial = recorder, serial
        self.segments: list[_Segment] = []
        self.reason = ""  # why recording ended before the attempt did
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._chain, name=f"screenrecord-{serial}", daemon=True)
        self._thread.start()

    # The segments are started and stopped in this thread: a child started with die_with_us is killed by
    # the kernel when the thread that forked it ends (commands.die_with_parent), so it must not end first.
    def _chain(self) -> None:
        rec = self.recorder
        try:
            while not self._stop.is_set():
                segment = rec.start_segment(self.serial)
                self.segments.append(segment)
                while segment.proc.poll() is None and not self._stop.wait(0.2):
                    pass
                stopping = segment.proc.poll() is None  # the attempt ended first: stop it on the device
                if stopping:
                    rec.stop_segment(self.serial, segment)
                segment.returncode = segment.proc.poll()
                stop_process_group(segment.proc)
                lasted = time.monotonic() - segment.started
                segment.end = segment_end(segment.returncode if segment.returncode is not None else -1, lasted,
                                          stopping, rec.output(self.serial, segment))
                if segment.end and segment.end != "stopped":
                    self.reason = segment.end
                    return
        except Exception as exc:  # recording must never fail the flow
            self.reason = f"screen recording failed: {exc}"
        finally:
            for segment in self.segments:
                if segment.proc.poll() is None:
                    stop_process_group(segment.proc)

    def stop(self) -> None:
        """Stop the current segment properly (bounded: stop_wait, then the process group is ended)."""
        self._stop.set()
        self._thread.join()

    def discard(self) -> None:
        """Stop and delete everything on the device (the attempt was cut short: nothing to keep)."""
        self.stop()
        self.recorder.remove(self.serial, [s.remote for s in self.segments])

    def settle(self, folder: Path, results_dir: Path, *, keep: bool) -> Settled:
        """After `stop()`: pull the segments into `folder` (video-1.mp4, ...) when `keep`, within the run's
        budget; delete them on the device in every case."""
        rec = self.recorder
        try:
            if not keep:
                return Settled(no_video=PASSED_NOTE)
            return self._pull(folder, results_dir)
        finally:
            rec.remove(self.serial, [s.remote for s in self.segments])

    def _pull(self, folder: Path, results_dir: Path) -> Settled:
        rec = self.recorder
        kept: list[str] = []
        why: list[str] = []
        for index, segment in enumerate(self.segments, start=1):
            name = f"segment {index}" if len(self.segments) > 1 else "the recording"
            if segment.returncode == MISSING_EXIT:
                break
            if rec.budget.exhausted():
                why.append(rec.budget_note)
                break
            local = folder / f"video-{len(kept) + 1}.mp4"
            problem = rec.pull(self.serial, segment.remote, local)
            if not problem and not is_complete_mp4(local):
                problem = (f"{name} is unplayable: screenrecord did not finish it within "
                           f"{rec.policy.stop_wait:g}s of the stop (exit {segment.returncode})"
                           if segment.end == "stopped" else
                           f"{name} is unplayable: it was cut off ({segment.end})")
            if not problem and not rec.budget.take(local.stat().st_size):
                problem = rec.budget_note
            if problem:
                local.unlink(missing_ok=True)
                why.append(problem)
                continue
            kept.append(local.relative_to(results_dir).as_posix())
        if self.reason and self.reason not in " ".join(why):
            why.insert(0, self.reason)
        note = "; ".join(dict.fromkeys(why))
        if kept and note:
            note = "some of the recording is missing: " + note
        return Settled(videos=kept, no_video=note if note or kept else "no recording was made")


class Recorder:
    """A run's screen recordings: one `Recording` per attempt, the disk budget shared by all devices."""

    def __init__(self, adb: Path, env: Mapping[str, str], run_id: str, policy: VideoPolicy, console: Console,
                 results_dir: Path) -> None:
        self.adb, self.env, self.policy, self.console = adb, dict(env), policy, console
        self.env.pop("ANDROID_SERIAL", None)
        self.run_id = run_id
        self.results_dir = results_dir  # screenrecord's output: devices/<serial>/screenrecord.log there
        self.budget = Budget(policy.budget_bytes)
        self._numbers = iter(range(1, 1 << 62))
        self._lock = threading.Lock()

    @property
    def budget_note(self) -> str:
        return (f"the run's video budget (validation.video_budget_mb: {self.policy.budget_text}) is used up; "
                "no more video is kept")

    @contextlib.contextmanager
    def recording(self, serial: str) -> Iterator[Recording | str]:
        """Record while the block runs: yields the Recording (stopped when the block ends, and its segments
        deleted if the block raises), or, when nothing is recorded, why."""
        if not self.policy.enabled:
            yield OFF
            return
        if self.budget.exhausted():
            yield self.budget_note
            return
        recording = Recording(self, serial)
        try:
            yield recording
        except BaseException:
            with contextlib.suppress(Exception):
                recording.discard()
            raise
        recording.stop()

    def settle(self, recording: Recording | str, folder: Path, *, passed: bool) -> Settled:
        """The attempt's video: kept (pulled) when it did not pass, else deleted; or why there is none."""
        if isinstance(recording, str):
            return Settled(no_video=recording)
        return recording.settle(folder, self.results_dir, keep=not passed)

    def _log(self, serial: str) -> Path:
        return self.results_dir / "devices" / serial / "screenrecord.log"

    def start_segment(self, serial: str) -> _Segment:
        with self._lock:
            remote = remote_path(self.run_id, next(self._numbers))
        log = self._log(serial)
        log.parent.mkdir(parents=True, exist_ok=True)
        offset = log.stat().st_size if log.exists() else 0
        argv: list[str | Path] = [self.adb, "-s", serial, "shell", "screenrecord",
                                  "--time-limit", str(self.policy.segment_seconds), "--bit-rate", BIT_RATE, remote]
        proc = start_background(argv, log_path=log, env=self.env, die_with_us=True)
        return _Segment(remote=remote, proc=proc, log_from=offset, started=time.monotonic())

    def output(self, serial: str, segment: _Segment) -> str:
        try:
            with open(self._log(serial), "rb") as fh:
                fh.seek(segment.log_from)
                return fh.read(4096).decode("utf-8", errors="replace")
        except OSError:
            return ""

    def _adb(self, serial: str, *args: str, timeout: float) -> tuple[int, str]:
        """Run one short adb command; (exit code, its output), or (-1, why) when it timed out."""
        try:
            done = run(self.console, [self.adb, "-s", serial, *args], check=False, env=self.env, timeout=timeout,
                       echo=False, stage="device")
        except CommandFailed as exc:
            return -1, str(exc)
        return done.returncode, (done.stderr.strip() or done.stdout.strip())

    def stop_segment(self, serial: str, segment: _Segment) -> None:
        """SIGINT on the device finishes the file, then the client exits; bounded by stop_wait (the caller
        then ends the client's process group). SIGINT goes again only while no screenrecord matched (it may
        not have started yet): a second one would kill a screenrecord that is finishing its file."""
        deadline = time.monotonic() + self.policy.stop_wait
        matched = False
        while segment.proc.poll() is None:
            if not matched:
                code, out = self._adb(serial, "shell", "pkill", "-INT", "screenrecord", timeout=self.policy.adb_timeout)
                matched = code == 0
                if code != 0 and out:  # adb itself failed (device offline, gone): no use asking again
                    deadline = min(deadline, time.monotonic() + UNREACHABLE_WAIT)
                    matched = True
            left = deadline - time.monotonic()
            if left <= 0:
                return
            with contextlib.suppress(subprocess.TimeoutExpired):
                segment.proc.wait(timeout=min(left, 0.5) if not matched else left)

    def pull(self, serial: str, remote: str, local: Path) -> str:
        local.parent.mkdir(parents=True, exist_ok=True)
        code, out = self._adb(serial, "pull", remote, str(local), timeout=self.policy.pull_timeout)
        if code != 0:
            local.unlink(missing_ok=True)
            return f"adb pull failed ({out.splitlines()[-1] if out else f'exit {code}'})"
        return ""

    def remove(self, serial: str, remotes: Sequence[str]) -> None:
        if remotes:
            code, out = self._adb(serial, "shell", "rm", "-f", *remotes, timeout=self.policy.adb_timeout)
            if code != 0:
                self.console.warning(f"{serial}: could not delete the screen recording(s) {' '.join(remotes)} "
                                     f"on the device: {out}")
