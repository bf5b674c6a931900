"""Impact triage: does a failed flow fail with the app users already have, or only with the new build?

    choose_released   `validation.released_apk` (a path or a glob) -> the released APK (several match: the
                      highest versionCode), read and checked like the new build (its package must be the
                      new build's); a note that says which one was taken, or why there is none. Never a stop.
    decide            a failed flow's impact from its rerun with the released app (pure: the decision table)
    triage            after the run: per device, install the released APK over the new build (`adb install
                      -r -d`; a different signer is refused, so uninstall first), run each failed flow once
                      more (same device, flow and variables, its own folder `released-1`, with validate's
                      crash detection and screen recording), then put the new build back, whatever happened
                      (Ctrl-C included). Quarantined flows are not run again; a retired device's get `unknown`

The flow gets `impact`: `current-users` (the released app fails too: production is broken for users),
`new-build-only` (only the new build fails: block the frontend deploy, nobody is hurt yet) or `unknown`
(no released APK, or it is this build, the device left the run, or the rerun hit an infrastructure error or
timed out). Without `validation.released_apk`
triage is off and failed flows keep an empty `impact`. The rerun never changes a flow's status, the verdict
or the exit code; `notify` routes on the impact (`notify.page_on_impact`).
Each attempt records which APK ran (`apk`: `new` or `released`).
"""

from __future__ import annotations

import glob
import shutil
import signal
import time
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .apkfile import ApkInfo, inspect_apk
from .commands import display, run, stream
from .console import Console, relative_display
from .crashes import Marks, capture_path, watch_attempt, window_start
from .devices import Adb
from .errors import ApkError, CommandFailed, ConfigError, Interrupted, ValidationError, signals_ignored
from .flows import Flow
from .maestro import Outcome, classify, test_command
from .outcomes import Status
from .recording import Recorder, VideoPolicy
from .results import RELEASED, Attempt, FlowResult, RecordWriter, RunRecord, now_iso, released_text
from .settings import IMPACTS

CURRENT_USERS, NEW_BUILD_ONLY, UNKNOWN = IMPACTS
RERUN_NUMBER = 1  # one rerun with the released app: `released-1`
_NO_VIDEO = VideoPolicy()  # a rerun given no recorder records nothing (says: screen recording is off)
# What the package manager says when the released APK cannot simply replace the new build even with -d:
# another signer (always), or a downgrade a non-debuggable app refuses on a user build (Android 14+).
REPLACE_REFUSED = ("INSTALL_FAILED_UPDATE_INCOMPATIBLE", "INSTALL_FAILED_VERSION_DOWNGRADE")


@dataclass(frozen=True)
class Released:
    """The released APK impact triage runs, or why there is none (`apk` None)."""

    apk: ApkInfo | None
    note: str = ""  # which one of several was taken, or why none: said once as a warning, kept in the record
    pattern: str = ""

    def to_record(self) -> dict[str, Any]:
        data: dict[str, Any] = {"pattern": self.pattern, "note": self.note}
        if self.apk is not None:
            data.update(self.apk.to_record(), path=relative_display(self.apk.path))
        return data


def _has_magic(pattern: str) -> bool:
    return any(char in pattern for char in "*?[")


def choose_released(pattern: str, package: str | None, new_sha256: str = "") -> Released:
    """The released APK `pattern` names: a file, or among a glob's files the highest versionCode (the newest
    file among equal ones). Files that are not APKs, are another app (`package`, the new build's) or are the
    new build itself (`new_sha256`: rerunning it proves nothing) are skipped and named; nothing usable gives
    a `Released` without an APK whose note says why."""
    if not pattern:
        return Released(None, "validation.released_apk is not set (impact triage is off; set it to the APK users "
                              "have, a path or a glob)")
    found = sorted(glob.glob(pattern)) if _has_magic(pattern) else [pattern]
    files = [Path(p) for p in found if Path(p).is_file()]
    if not files:
        return Released(None, f"validation.released_apk '{pattern}' matches no file: failed flows' impact is "
                              "unknown (check the path, or that the released APK was downloaded)", pattern)
    usable: list[ApkInfo] = []
    skipped: list[str] = []
    this_build: list[str] = []
    for path in files:
        try:
            info = inspect_apk(path)
        except (ApkError, ConfigError) as exc:
            skipped.append(exc.message)
            continue
        if package and info.package != package:
            skipped.append(f"{relative_display(path)} is {info.package}, not the new build's {package}")
            continue
        if new_sha256 and info.sha256 == new_sha256:
            this_build.append(relative_display(path))
            skipped.append(f"{relative_display(path)} is this run's build (the same sha256)")
            continue
        usable.append(info)
    why_skipped = "; ".join(skipped)
    if not usable and this_build and len(this_build) == len(skipped):
        return Released(None, f"the released app is this build: validation.released_apk '{pattern}' matches only "
                              f"the APK this run validates ({', '.join(this_build)}, the same sha256), so a rerun "
                              "would prove nothing and failed flows' impact is unknown (point it at the APK users "
                              "have)", pattern)
    if not usable:
        return Released(None, f"validation.released_apk '{pattern}': no usable APK ({why_skipped}); failed flows' "
                              "impact is unknown", pattern)
    best = max(usable, key=lambda i: (i.version_code if i.version_code is not None else -1, i.path.stat().st_mtime))
    notes = []
    if len(usable) > 1:
        notes.append(f"{len(usable)} APKs match validation.released_apk '{pattern}': took {relative_display(best.path)} "
                     f"(versionCode {best.version_code}, the highest)")
    if skipped:
        notes.append(f"skipped: {why_skipped}")
    return Released(best, "; ".join(notes), pattern)


def decide(rerun: Attempt | None, problem: str = "") -> tuple[str, str]:
    """(impact, reason) of a failed flow from its rerun with the released app; `problem` says why there was
    no rerun (no released APK, the install failed, ...)."""
    if rerun is None:
        return UNKNOWN, problem or "not run again with the released app"
    if rerun.status == Status.PASSED:
        return NEW_BUILD_ONLY, "the released app passes this flow"
    if rerun.status == Status.FAILED:
        return CURRENT_USERS, "the released app fails too" + (f": {rerun.errorSummary}" if rerun.errorSummary else "")
    said = rerun.status.replace("_", " ")
    return UNKNOWN, f"the released app's rerun {said}" + (f": {rerun.errorSummary}" if rerun.errorSummary else "")


@dataclass(frozen=True)
class Rerun:
    """How validate runs a flow, for the released app's rerun: the same maestro, variables and bounds."""

    maestro: Path
    flow_env: tuple[tuple[str, str], ...]
    timeout: float
    results_dir: Path
    env: Mapping[str, str]
    install_timeout: float = 300
    keep_driver: bool = False
    session_wait: float = 22.0
    # The evidence validate's attempts gather, gathered the same way for the rerun: the devices' end-of-attempt
    # marks (crash detection; None: none), the devices whose capture stopped delivering, the run's recorder.
    marks: Marks | None = None
    capture_lost: set[str] = field(default_factory=set)
    videos: Recorder | None = None


def install_over(adb: Adb, console: Console, serial: str, apk: Path, package: str, timeout: float) -> str:
    """Install `apk` over whatever build of `package` the device has: `adb install -r -d -g`, and when the
    package manager refuses to replace it (another signer), `adb uninstall` and install again. "" when it
    is installed, else what went wrong."""
    problem = _install(adb, console, serial, apk, timeout)
    if problem and any(code in problem for code in REPLACE_REFUSED):
        console.info(f"{serial}: {apk.name} cannot replace the installed {package} ({problem.split(':')[0]}); "
                     "uninstalling it first")
        adb.uninstall(serial, package)
        problem = _install(adb, console, serial, apk, timeout)
    return problem


def _install(adb: Adb, console: Console, serial: str, apk: Path, timeout: float) -> str:
    try:
        done = run(console, [adb.path, "-s", serial, "install", "-r", "-d", "-g", str(apk)], check=False,
                   env=adb.env, timeout=timeout, stage="device")
    except CommandFailed as exc:  # timed out
        return exc.message.splitlines()[0]
    output = done.stdout + "\n" + done.stderr
    failure = next((line.strip() for line in output.splitlines() if "Failure [" in line or "error:" in line), "")
    if done.returncode != 0 or failure:
        return failure.split("Failure [", 1)[-1].rstrip("]") if failure else f"adb install exited {done.returncode}"
    return ""


def triage(record: RunRecord, writer: RecordWriter, console: Console, adb: Adb, flows: Sequence[Flow],
           new_apk: Path | None, released: Released, rerun: Rerun,
           rest_until: MutableMapping[str, float] | None = None) -> None:
    """Give every failed flow its impact, running it again with the released app where there is one.
    Quarantined flows are left alone (they never page: not worth two installs); a flow whose device left the
    rotation (`record.retiredDevices`) gets `unknown` without a rerun."""
    held = [r.flowFileName for r in record.flows if r.status == Status.FAILED and r.quarantined]
    if held and released.pattern:
        console.info(f"{len(held)} quarantined failed flow(s) not run again with the released app: {', '.join(held)}")
    failed = [result for result in record.flows if result.status == Status.FAILED and not result.quarantined]
    if not failed:
        return
    if not released.pattern:  # triage is off: the flows keep no impact (notify counts that as `unknown`)
        console.info(f"{len(failed)} failed flow(s) not run again with the released app: {released.note}")
        return
    if released.apk is None or new_apk is None:
        why = released.note if released.apk is None else (
            "this run installed no APK of its own (--apk or `invoke build-apk`), so the new build could not be put "
            "back after the released app: not run again with it")
        for result in failed:
            result.impact, result.impactReason = decide(None, why)
        writer.save(record)
        console.info(f"impact of {len(failed)} failed flow(s): unknown ({why})")
        return
    by_file = {flow.file_name: flow for flow in flows}
    retired = {entry.get("serial", ""): entry.get("reason", "") for entry in record.retiredDevices}
    devices: dict[str, list[FlowResult]] = {}
    for result in failed:
        if result.device in retired:
            result.impact, result.impactReason = decide(None, f"the device left the run: {result.device} left the "
                                                              f"rotation ({retired[result.device]})")
            continue
        devices.setdefault(result.device, []).append(result)
    rerun_count = sum(len(results) for results in devices.values())
    if rerun_count < len(failed):
        writer.save(record)
    if rerun_count:
        console.step(f"Impact triage: {rerun_count} failed flow(s) run again with the released app "
                     f"({released_text(released.to_record())})")
    for serial, results in devices.items():
        _triage_device(serial, results, record, writer, console, adb, by_file, new_apk, released.apk, rerun,
                       rest_until if rest_until is not None else {})
    for result in failed:
        console.info(f"impact {result.impact:14} {result.flowFileName}: {result.impactReason}")


def _triage_device(serial: str, results: list[FlowResult], record: RunRecord, writer: RecordWriter,
                   console: Console, adb: Adb, by_file: dict[str, Flow], new_apk: Path, released: ApkInfo,
                   rerun: Rerun, rest_until: MutableMapping[str, float]) -> None:
    pending = list(results)
    package = released.package
    try:
        console.step(f"Installing the released app {released.path.name} on {serial}")
        problem = install_over(adb, console, serial, released.path, package, rerun.install_timeout)
        if problem:
            for result in pending:
                result.impact, result.impactReason = decide(None, f"the released app could not be installed on "
                                                                  f"{serial}: {problem}")
            pending.clear()
            return
        for result in list(pending):
            flow = by_file.get(result.flowFileName)
            try:
                if flow is None:  # not this run's to run (a record continued from elsewhere)
                    raise ValidationError(f"{result.flowFileName} is not among the flows this run selected")
                _wait_for_session(serial, rest_until, console)
                attempt = run_released(flow, serial, rerun, console, rest_until, package)
            except Interrupted:
                raise
            except (ValidationError, OSError) as exc:  # never the run's problem: this flow's impact is unknown
                result.impact, result.impactReason = decide(None, f"the released app's rerun could not run: {exc}")
            else:
                result.attempts.append(attempt)
                result.artifactPaths = result.artifactPaths + attempt.artifactPaths
                result.impact, result.impactReason = decide(attempt)
            pending.remove(result)
            writer.save(record)
    finally:
        with signals_ignored():  # the new build goes back whatever stopped the triage
            for result in pending:
                result.impact, result.impactReason = decide(None, "impact triage was interrupted")
            console.step(f"Reinstalling the new build {new_apk.name} on {serial}")
            problem = install_over(adb, console, serial, new_apk, package, rerun.install_timeout)
            if problem:
                message = f"{serial}: the new build could not be put back after the released app: {problem}"
                console.error(message, title="impact triage")
                notes = (record.environment.releasedApk or {}).get("notes", [])
                record.environment.releasedApk = {**(record.environment.releasedApk or {}), "notes": [*notes, message]}
            writer.save(record)


def _wait_for_session(serial: str, rest_until: MutableMapping[str, float], console: Console) -> None:
    """A SIGKILLed maestro's session lingers on its device (see validate's `_rest`): wait it out."""
    wait = rest_until.pop(serial, 0.0) - time.monotonic()
    if wait > 0:
        console.info(f"{serial}: waiting {wait:.3g}s for a killed flow's Maestro session to expire")
        time.sleep(wait)


def run_released(flow: Flow, serial: str, rerun: Rerun, console: Console,
                 rest_until: MutableMapping[str, float], package: str = "") -> Attempt:
    """One run of `flow` on `serial` with the released app installed, into `flows/<flow>/released-1`, with
    the evidence of validate's attempts: the app's crash (`package`'s, in the device's logcat) is a failure
    whose errorSummary is the exception line (crash.txt kept), and the screen is recorded (kept when the
    rerun did not pass)."""
    folder = rerun.results_dir / "flows" / flow.key / f"{RELEASED}-{RERUN_NUMBER}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    argv = test_command(rerun.maestro, serial, flow.path, junit=folder / "report.xml", debug_dir=folder / "debug",
                        flow_env=rerun.flow_env, keep_driver=rerun.keep_driver)
    started = now_iso()
    log_start = window_start(capture_path(rerun.results_dir, serial))
    line: Callable[[str], None] = console.line
    videos = rerun.videos or Recorder(Path("adb"), rerun.env, "", _NO_VIDEO, console, rerun.results_dir)
    with console.group(f"{flow.file_name} · released app · {serial}"):
        console.command(display(argv))
        with videos.recording(serial) as recording:  # the screen, while maestro runs (recording.py)
            streamed = stream(argv, env=rerun.env, timeout=rerun.timeout, stdout_path=folder / "stdout.log",
                              stderr_path=folder / "stderr.log", on_line=line, redact=console.redact)
    if streamed.returncode == -signal.SIGKILL:
        rest_until[serial] = time.monotonic() + rerun.session_wait
    outcome = classify(streamed.returncode, streamed.timed_out, streamed.stdout.text, streamed.stderr.text,
                       folder / "report.xml", rerun.timeout)
    label = f"{flow.file_name}.{RELEASED}-{RERUN_NUMBER}"
    crash = None if outcome.usage else watch_attempt(
        rerun.marks, rerun.capture_lost, rerun.results_dir, serial, log_start, package or flow.app_id, label,
        f"the released app's rerun of {flow.file_name}", folder, console.warning)
    if crash is not None:  # the released app itself died: it fails this flow too, whatever maestro made of it
        outcome = Outcome(Status.FAILED, crash.summary)
    console.redact.scrub_files(folder, skip=(folder / "stdout.log", folder / "stderr.log"))
    video = videos.settle(recording, folder, passed=outcome.status == Status.PASSED)  # pulled or deleted
    code = streamed.returncode
    return Attempt(number=RERUN_NUMBER, status=outcome.status, exitCode=128 - code if code < 0 else code,
                   duration=streamed.duration_ms, device=serial, startTime=started, errorSummary=outcome.summary,
                   artifactPaths=[p.relative_to(rerun.results_dir).as_posix() for p in sorted(folder.rglob("*"))
                                  if p.is_file()], apk=RELEASED, crash=crash is not None, video=video.video,
                   noVideo=video.no_video)


def released_for(pattern: str, new_apk: Path | None, record: RunRecord, console: Console) -> Released:
    """The released APK for this run, checked before any flow runs; recorded, and a warning when the setting
    names something unusable (never a stop: the run goes on, failed flows get `unknown`)."""
    if not pattern:  # triage off: the new build need not be read again
        return choose_released(pattern, None)
    package, sha256 = None, ""
    if new_apk is not None:
        try:
            new = inspect_apk(new_apk)
            package, sha256 = new.package, new.sha256
        except (ApkError, ConfigError):
            package = None  # the new build's own check reports it
    released = choose_released(pattern, package, sha256)
    record.environment.releasedApk = released.to_record()
    if released.apk is None:
        console.warning(released.note, title="released app")
    else:
        console.info(f"released app for impact triage: {released_text(released.to_record())}"
                     + (f" ({released.note})" if released.note else ""))
    return released
