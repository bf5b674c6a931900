"""`invoke validate`: select and check the flows, pick the device, run each flow, record, decide.

Planning is pure (`make_plan`): which flows, in which order, on which device, with which arguments.
`run_validation` walks the plan, rewriting the run record after every flow, inside the stage lifecycle
(`stage.py`), which always finishes the record (verdict, junit.xml, summary.md, report.html, GitHub
outputs), whatever stopped the run.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from .apkcheck import check_flows_match_apk, recorded_apk
from .commands import Cancelled, CancelScope, Streamed, display, stream
from .console import Console, relative_display
from .crashes import Crash, Marks, capture_path, watch_attempt, window_start
from .devices import Adb
from .doctor import BOOT_NEEDS, VALIDATE_NEEDS, check, maestro_version, require
from .emulator import StartedEmulator, capture_logcat, start_emulators, stop_emulators, stop_orphans
from .errors import BuildFailed, DeviceError, Interrupted, RequirementsMissing, ValidationError, signals_ignored
from .flows import Flow, discover, required_text, shell_variables
from .impact import Rerun, released_for, triage
from .maestro import (
    DRIVER_PACKAGES,
    ERROR,
    FAILED,
    PARALLEL_SINCE,
    PASSED,
    TIMED_OUT,
    USAGE_FIX,
    Outcome,
    classify,
    keeps_driver,
    process_env,
    test_command,
    version_tuple,
)
from .outcomes import Status, Verdict
from .recording import Recorder, Recording, VideoPolicy
from .results import (
    BUILD_STAGE,
    NEW,
    RECORD_NAME,
    VALIDATE_STAGE,
    Attempt,
    FlowResult,
    RecordWriter,
    RunRecord,
    Stage,
    apply_quarantine,
    now_iso,
)
from .runlock import device_lock_dir, hold_device
from .schedule import (
    TIMINGS_NAME,
    check_execution_order,
    load_timings,
    order_flows,
    shard,
    stop_reason,
)
from .secrets import Redactor
from .settings import EmulatorSettings, HistorySettings, Settings, load_emulator, utc_today
from .stage import artifact_paths, stage


@dataclass(frozen=True)
class Plan:
    run_id: str
    serials: tuple[str, ...]
    maestro: Path
    flows: tuple[Flow, ...]  # in the order they are handed out: longest first when durations are known
    flow_env: tuple[tuple[str, str], ...]
    attempts: int
    timeout: float
    results_dir: Path
    keep_driver: bool = False  # Maestro 2.1+: --no-reinstall-driver, the driver installed once per device
    session_wait: float = 22.0  # seconds a device rests after a killed flow (Maestro's stale session)
    sequence: tuple[str, ...] = ()  # executionOrder flows (file names), run first in this order
    continue_on_failure: bool = True  # executionOrder.continueOnFailure
    adb: Path | None = None  # for the screen recordings (none without it)
    video: VideoPolicy = field(default_factory=VideoPolicy)

    def flow_dir(self, flow: Flow) -> Path:
        return self.results_dir / "flows" / flow.key

    def attempt_dir(self, flow: Flow, number: int) -> Path:
        return self.flow_dir(flow) / f"attempt-{number}"

    def command(self, flow: Flow, number: int, serial: str) -> list[str]:
        folder = self.attempt_dir(flow, number)
        return test_command(self.maestro, serial, flow.path, junit=folder / "report.xml",
                            debug_dir=folder / "debug", flow_env=self.flow_env, keep_driver=self.keep_driver)


def make_plan(settings: Settings, flows: list[Flow], maestro: Path, serials: list[str], run_id: str,
              timings: Mapping[str, int], *, keep_driver: bool = False, sequence: tuple[str, ...] = (),
              continue_on_failure: bool = True, adb: Path | None = None) -> Plan:
    flow_env = (("SKIP_DATA_CLEANUP", "true"), ("VALIDATION_RUN_ID", run_id), *settings.env)
    return Plan(run_id=run_id, serials=tuple(serials), maestro=maestro, flows=tuple(order_flows(flows, sequence, timings)),
                flow_env=flow_env, attempts=settings.retries + 1, timeout=settings.flow_timeout,
                results_dir=settings.results_dir, keep_driver=keep_driver, session_wait=settings.session_wait,
                sequence=sequence, continue_on_failure=continue_on_failure, adb=adb,
                video=VideoPolicy(enabled=settings.video, budget_bytes=int(settings.video_budget_mb * 1_000_000)))


def select_flows(settings: Settings, flows: list[Flow], timings: Mapping[str, int]) -> list[Flow]:
    """This runner's share of the flows: all of them, or shard I of N.

    Shares are balanced only by an explicit `--timings` file: every runner must see the same durations,
    or the shares would overlap and leave flows out. The results folder's own timings.json differs from
    runner to runner, so it only orders the flows within a share. `timings` come from `_timings`.
    """
    if settings.shard is None:
        return flows
    index, count = settings.shard
    return shard(flows, timings if settings.timings else {}, index, count)


def _exit_status(returncode: int) -> int:
    """Killed by a signal shows as 128+N, as a shell would report it."""
    return 128 - returncode if returncode < 0 else returncode


def _relative_files(folder: Path, base: Path) -> list[str]:
    return [p.relative_to(base).as_posix() for p in sorted(folder.rglob("*")) if p.is_file()]


@dataclass
class _Job:
    flow: Flow
    result: FlowResult  # this flow's entry in the record: the job carries it, never a position
    attempt: int = 1
    avoid: set[str] = field(default_factory=set)  # devices that hit an infrastructure error on it


class _Queue:
    """One shared queue: each device takes the next flow when it is free.

    A retry goes to the front. A flow whose last attempt hit an infrastructure error avoids that device
    while another healthy device exists.
    """

    def __init__(self, jobs: list[_Job], serials: tuple[str, ...]) -> None:
        self._jobs = deque(jobs)
        self._active = set(serials)
        self._running = 0
        self._cond = threading.Condition()
        self.cancelled = CancelScope()

    def take(self, serial: str) -> _Job | None:
        with self._cond:
            while not self.cancelled.is_set() and serial in self._active:
                for job in self._jobs:
                    if serial not in job.avoid or self._active <= job.avoid:
                        self._jobs.remove(job)
                        self._running += 1
                        return job
                if not self._jobs and not self._running:
                    return None
                self._cond.wait(timeout=0.5)
            return None

    def done(self, job: _Job, *, retry: bool) -> None:
        with self._cond:
            self._running -= 1
            if retry:
                self._jobs.appendleft(job)
            self._cond.notify_all()

    def retire(self, serial: str) -> None:
        with self._cond:
            self._active.discard(serial)
            self._cond.notify_all()

    def cancel(self) -> None:
        self.cancelled.cancel()
        with self._cond:
            self._cond.notify_all()

    def left(self) -> list[_Job]:
        with self._cond:
            return list(self._jobs)


# A device with this many infrastructure errors in a row leaves the rotation for the rest of the run.
RETIRE_AFTER = 2


class _Runner:
    """Walks the plan: one worker thread per device, the record rewritten after every attempt."""

    def __init__(self, plan: Plan, record: RunRecord, writer: RecordWriter, console: Console,
                 env: Mapping[str, str], marks: Marks | None = None) -> None:
        self.plan, self.record, self.writer, self.console, self.env = plan, record, writer, console, env
        self.marks = marks  # each attempt's end, marked in the device's log (crash detection); None: no detection
        self.capture_lost: set[str] = set()  # devices whose logcat capture stopped delivering: no more waits
        self.live = len(plan.serials) == 1  # stream output live; with several devices print whole folds
        results = {result.flowFileName: result for result in record.flows}
        self.queue = _Queue([_Job(f, results[f.file_name]) for f in plan.flows], plan.serials)
        self.lock = threading.Lock()
        self.done = threading.Condition()
        self.running = 0
        self.errors: list[BaseException] = []
        self.stopped = ""  # why the run stopped early on purpose (executionOrder, continueOnFailure: false)
        self.rest_until: dict[str, float] = {}  # device -> monotonic time its killed maestro's session expires
        self.videos = Recorder(plan.adb or Path("adb"), env, plan.run_id, plan.video if plan.adb else VideoPolicy(),
                               console, plan.results_dir)

    def run(self) -> None:
        for flow in self.plan.flows:
            shutil.rmtree(self.plan.flow_dir(flow), ignore_errors=True)
        workers = [threading.Thread(target=self._work, args=(s,), name=f"device-{s}", daemon=True)
                   for s in self.plan.serials]
        self.running = len(workers)
        for worker in workers:
            worker.start()
        try:
            # Wait on our own condition, not Thread.join: a signal handler raising inside join() can
            # leave the thread marked as stopped while it still runs (fixed only in Python 3.13).
            self._wait_for_workers(timeout=None)
        finally:
            self.queue.cancel()
            deadline = time.monotonic() + 60
            while self.running and time.monotonic() < deadline:
                try:  # the workers stop their process groups; a second Ctrl-C must not cut that short
                    self._wait_for_workers(timeout=deadline - time.monotonic())
                except (Interrupted, KeyboardInterrupt):
                    continue
        if self.errors:
            raise self.errors[0]
        if self.stopped:
            with self.lock:
                for result in self.record.flows:
                    if result.status == Status.NOT_RUN and not result.errorSummary:
                        result.errorSummary = self.stopped
                self.writer.save(self.record)
            self.console.warning(self.stopped, title="executionOrder")
            return
        left = self.queue.left()
        if left:
            raise DeviceError(
                f"every device left the rotation after repeated infrastructure errors; "
                f"{len(left)} flow(s) did not run",
                fix=f"check the devices (`invoke emulator.status`, `adb devices`) and the retired devices in {RECORD_NAME}",
            )

    def _wait_for_workers(self, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.done:
            while self.running and (deadline is None or time.monotonic() < deadline):
                self.done.wait(timeout=0.2)

    def _work(self, serial: str) -> None:
        try:
            self._serve(serial)
        finally:
            with self.done:
                self.running -= 1
                self.done.notify_all()

    def _serve(self, serial: str) -> None:
        in_a_row = 0
        try:
            while (job := self.queue.take(serial)) is not None:
                if self._rest(serial):  # a flow came back (a retry) before the stale session expired
                    self.queue.done(job, retry=True)
                    return
                outcome = self._attempt(job, serial)
                if outcome.usage:  # the same command line for every flow and device: stop, blame no device
                    self.queue.done(job, retry=False)
                    raise ValidationError(outcome.summary, fix=USAGE_FIX)
                infra = outcome.status in (ERROR, TIMED_OUT)
                retry = outcome.status != PASSED and job.attempt < self.plan.attempts
                if retry:
                    job.attempt += 1
                    if infra:
                        job.avoid.add(serial)
                self.queue.done(job, retry=retry)
                reason = "" if retry else stop_reason(job.flow, outcome.status, self.plan.sequence,
                                                      self.plan.continue_on_failure)
                if reason:
                    self.stopped = reason
                    self.queue.cancel()
                    return
                if self.queue.left() and self._rest(serial):  # rest now, while the others take the flows
                    return
                in_a_row = in_a_row + 1 if infra else 0
                if in_a_row >= RETIRE_AFTER and len(self.plan.serials) > 1:
                    reason = f"{in_a_row} infrastructure errors in a row"
                    with self.lock:
                        self.record.retiredDevices.append({"serial": serial, "reason": reason})
                        self.writer.save(self.record)
                    self.console.warning(f"{serial} leaves the rotation for the rest of the run: {reason}")
                    self.queue.retire(serial)
                    return
        except Cancelled:
            return
        except BaseException as exc:  # maestro's usage error, a bug or a disk problem: stop the run, keep what we have
            self.errors.append(exc)
            self.queue.cancel()

    def _rest(self, serial: str) -> bool:
        """A SIGKILLed maestro's session counts as alive for ~21 s (one stopped by SIGTERM closes it), and a
        maestro started on that device meanwhile fails to start its driver: this device waits it out before
        its next flow (the others go on). True if the run was cancelled meanwhile."""
        wait = self.rest_until.pop(serial, 0.0) - time.monotonic()
        if wait <= 0:
            return False
        self.console.info(f"{serial}: waiting {wait:.3g}s for the killed flow's Maestro session to expire "
                          "before the next flow on this device")
        return self.queue.cancelled.wait(wait)

    def _attempt(self, job: _Job, serial: str) -> Outcome:
        plan, flow, number = self.plan, job.flow, job.attempt
        folder = plan.attempt_dir(flow, number)
        folder.mkdir(parents=True, exist_ok=True)
        argv = plan.command(flow, number, serial)
        title = f"{flow.file_name} · attempt {number}/{plan.attempts} · {serial}"
        started = now_iso()
        log_start = window_start(capture_path(plan.results_dir, serial))
        if self.live:
            with self.console.group(title):
                self.console.command(display(argv))
                streamed, recording = self._stream(argv, folder, self.console.line, serial)
        else:
            streamed, recording = self._stream(argv, folder, None, serial)
            lines = [f"+ {self.console.redact(display(argv))}"]
            lines += streamed.stdout.text.splitlines() + streamed.stderr.text.splitlines()
            self.console.block(title, lines, streamed.duration_ms / 1000)
        if streamed.returncode == -signal.SIGKILL:
            self.rest_until[serial] = time.monotonic() + plan.session_wait
        outcome = classify(streamed.returncode, streamed.timed_out, streamed.stdout.text, streamed.stderr.text,
                           folder / "report.xml", plan.timeout)  # before the scrub: a secret may be `status`
        crash = None if outcome.usage else self._crash(flow, number, serial, log_start, folder)
        if crash is not None:  # the app itself died: the flow's failure, whatever maestro made of it
            outcome = Outcome(FAILED, crash.summary)
        self.console.redact.scrub_files(folder, skip=(folder / "stdout.log", folder / "stderr.log"))
        video = self.videos.settle(recording, folder, passed=outcome.status == PASSED)  # pulled or deleted
        attempt = Attempt(number=number, status=outcome.status, exitCode=_exit_status(streamed.returncode),
                          duration=streamed.duration_ms, device=serial, startTime=started,
                          errorSummary=outcome.summary, artifactPaths=_relative_files(folder, plan.results_dir),
                          apk=NEW, crash=crash is not None, video=video.video, noVideo=video.no_video)
        with self.lock:
            result = job.result
            result.attempts.append(attempt)
            result.exitCode = attempt.exitCode
            result.stdout, result.stderr = streamed.stdout.text, streamed.stderr.text
            result.duration += attempt.duration
            result.device = serial
            result.artifactPaths = [path for done in result.attempts for path in done.artifactPaths]
            if outcome.status == PASSED:
                result.status = Status.FLAKY if number > 1 else Status.PASSED
                result.errorSummary = result.attempts[0].errorSummary if number > 1 else ""
            else:
                result.status = outcome.status
                result.errorSummary = outcome.summary
            self.writer.save(self.record)
        if outcome.status != PASSED and number < plan.attempts and not outcome.usage:
            self.console.warning(f"{flow.file_name}: attempt {number} on {serial} {outcome.status} "
                                 f"({outcome.summary}); retrying")
        else:
            _report_flow(result, self.console)
        return outcome

    def _crash(self, flow: Flow, number: int, serial: str, log_start: int, folder: Path) -> Crash | None:
        """The app's crash or ANR in the device's logcat during this attempt (crashes.py); crash.txt written."""
        package = str((self.record.apk or {}).get("packageName") or flow.app_id)
        return watch_attempt(self.marks, self.capture_lost, self.plan.results_dir, serial, log_start, package,
                             f"{flow.file_name}.{number}", f"attempt {number} of {flow.file_name}", folder,
                             self.console.warning)

    def _stream(self, argv: list[str], folder: Path, on_line: Callable[[str], None] | None,
                serial: str) -> tuple[Streamed, Recording | str]:
        with self.videos.recording(serial) as recording:  # the screen, while maestro runs (recording.py)
            return stream(argv, env=self.env, timeout=self.plan.timeout, stdout_path=folder / "stdout.log",
                          stderr_path=folder / "stderr.log", on_line=on_line, redact=self.console.redact,
                          cancel=self.queue.cancelled), recording


def _report_flow(result: FlowResult, console: Console) -> None:
    took = f"{result.duration / 1000:.1f}s"
    if result.status == Status.PASSED:
        console.info(f"PASSED  {result.flowFileName} ({took})")
    elif result.status == Status.FLAKY:
        console.warning(f"{result.flowFileName} passed only on attempt {len(result.attempts)} "
                        f"after: {result.errorSummary}", title="FLAKY")
    else:
        console.info(f"{result.status.upper():7} {result.flowFileName} ({took}): {result.errorSummary}")


def _timings(settings: Settings) -> dict[str, int]:
    if settings.timings is not None:
        return load_timings(settings.timings)
    recorded = settings.results_dir / TIMINGS_NAME
    return load_timings(recorded) if recorded.is_file() else {}


def run_validation(settings: Settings, environ: Mapping[str, str], console: Console,
                   emulators: EmulatorSettings | None = None, *, deployed_sha: str | None = None,
                   history: HistorySettings | None = None) -> RunRecord:
    """Run the whole validation; return the finished record (its verdict). Never raises ValidationError.

    When fewer booted devices are connected than needed (and no --device names them), it boots
    emulators (`emulators` settings), and stops them at the end whatever happens. It never stops a
    device it did not start. With `history` the finished run is remembered in the run history (a shard's
    never: `merge-results` remembers the merged run).
    """
    emulators = emulators or load_emulator({}, {})
    redact = Redactor.from_env(environ, settings.flow_env, settings.secret_env)
    console.redact = redact
    writer = RecordWriter(settings.results_dir, redact)
    selected: list[Flow] = []
    started: list[StartedEmulator] = []
    adb: Adb | None = None

    def stop_started() -> None:
        if started and adb is not None:
            with signals_ignored():
                console.step(f"Stopping the emulator(s) this run started: {', '.join(em.serial for em in started)}")
                try:
                    stop_emulators(started, console=console, results_dir=settings.results_dir, adb=adb,
                                   timeout=emulators.stop_timeout)
                except ValidationError as exc:
                    console.error(str(exc), title="stopping emulators")

    with stage(writer, VALIDATE_STAGE, console, environ, deployed_sha=deployed_sha, title="validation",
               decide=_decide, paths=lambda: {f.file_name: relative_display(f.path) for f in selected},
               history=None if settings.shard is not None else history) as record, \
            contextlib.ExitStack() as logcats:
            logcats.callback(stop_started)  # last: after the device locks and logcat captures end
            console.step("Checking tools and flows")
            checks = check(emulators, environ, console=console, needs=VALIDATE_NEEDS, adb=settings.adb,
                           maestro=settings.maestro)
            tools = require(checks)
            maestro, version = tools["maestro"], maestro_version(checks)
            adb = Adb(tools["adb"], console, environ)
            variables = {**shell_variables(environ), "SKIP_DATA_CLEANUP": "true", "VALIDATION_RUN_ID": record.runId,
                         **settings.flow_env}  # what each flow gets: appId is evaluated with them
            record.environment.requiredTags = list(settings.require_tags)
            selection = discover(settings.flows, settings.include_tags, settings.exclude_tags, settings.config,
                                 variables, settings.require_tags)
            check_execution_order(selection.sequence, settings.shard, settings.devices)
            timings = _timings(settings)
            selected = select_flows(settings, selection.flows, timings)
            if settings.shard is not None:
                index, count = settings.shard
                # the run attempt: merge-results keeps each shard's newest ("Re-run failed jobs")
                attempt = environ.get("GITHUB_RUN_ATTEMPT", "")
                record.shard = {"index": index, "count": count, "attempt": int(attempt) if attempt.isdigit() else 1}
                console.info(f"shard {index}/{count}: {len(selected)} of {len(selection.flows)} flow(s)")
            record.environment.maestroFlowPaths = [relative_display(f.path) for f in selected]
            record.flows = [FlowResult(flowFileName=f.file_name, name=f.name, tags=list(f.tags)) for f in selected]
            note_quarantine(record, settings, console, utc_today())
            console.info(f"{len(selected)} flow(s) selected from {relative_display(settings.flows)}"
                         + (f"; {len(selection.filtered_out)} filtered out by tags" if selection.filtered_out else "")
                         + (f"; {len(selection.lacking_required)} never run in production: no required tag "
                            f"({required_text(selection)})" if selection.lacking_required else ""))
            writer.save(record)
            build = record.stages.get(BUILD_STAGE)
            if build is not None and build.outcome == Verdict.ERROR and not settings.apk:  # this run's build
                raise BuildFailed()
            apk = settings.apk or recorded_apk(record, settings.results_dir)  # --apk, else what build-apk built
            if apk is not None:
                info = check_flows_match_apk(apk, selected)  # every flow's appId is the APK's package
                if settings.apk:  # not what build-apk recorded: the record (and alerts) name this one
                    record.apk = {**info.to_record(), "sourcePath": relative_display(apk)}
            released = released_for(settings.released_apk, apk, record, console)  # impact triage, after the run
            if not selected:  # a shard with nothing to do (more shards than flows) passes trivially
                return record

            console.step("Selecting devices")
            stop_orphans(settings.results_dir, console=console, adb=adb, timeout=emulators.stop_timeout)
            serials, to_boot = adb.select(settings.device, settings.devices)
            if to_boot:
                try:
                    require(check(emulators, environ, console=console, needs=BOOT_NEEDS))
                except RequirementsMissing as exc:
                    raise DeviceError(
                        f"{len(serials)} of {len(serials) + to_boot} booted device(s) connected, and no emulator "
                        f"can be booted here (missing: {', '.join(name for name, _, _ in exc.missing)})\n"
                        + exc.message,
                        fix="connect a device or start one (`invoke emulator.start`), or install what is missing "
                            "(`invoke setup`, `invoke doctor`)") from None
                console.step(f"Starting {to_boot} emulator(s): {emulators.system_image}")
                # start_emulators stops what it started if it fails; `started` gets only booted ones
                started = start_emulators(emulators, to_boot, console=console, environ=environ,
                                          results_dir=settings.results_dir, adb=adb, for_this_run=True)
                serials += [em.serial for em in started]
                record.job.artifactPaths += [relative_display(em.log, settings.results_dir) for em in started]
            record.devices = serials
            console.info(f"device(s): {', '.join(serials)}")
            check_execution_order(selection.sequence, None, len(serials))  # --device A,B names several
            if len(serials) > 1 and version_tuple(version) < PARALLEL_SINCE:
                raise RequirementsMissing([(
                    "maestro", f"{version} runs flows on several devices at once only from "
                    f"{'.'.join(map(str, PARALLEL_SINCE))}.0 (older ones share one driver port and session)",
                    "`invoke setup` installs the pinned version, or run on one device")])
            for serial in sorted(serials):  # a run in another results folder may drive one: wait (bounded)
                logcats.enter_context(hold_device(serial, lock_dir=device_lock_dir(environ), run_id=record.runId,
                                                  results_dir=settings.results_dir, wait=settings.device_wait,
                                                  on_wait=console.warning))
            for serial in serials:
                log = logcats.enter_context(capture_logcat(
                    adb, serial, capture_path(settings.results_dir, serial), redact=redact))
                record.job.artifactPaths.append(relative_display(log, settings.results_dir))
            if apk:
                for serial in serials:
                    console.step(f"Installing {apk} on {serial}")
                    adb.install(serial, apk, settings.install_timeout)
                record.environment.apkBuildPath = relative_display(apk)
            keep_driver = keeps_driver(version)
            if keep_driver:  # one driver install per device per run: remove a stale one (any version) first
                for serial in serials:
                    console.step(f"Removing a stale Maestro driver from {serial} (installed once, by its first flow)")
                    for package in DRIVER_PACKAGES:
                        adb.uninstall(serial, package)
            writer.save(record)

            plan = make_plan(settings, selected, maestro, serials, record.runId, timings, keep_driver=keep_driver,
                             sequence=selection.sequence, continue_on_failure=selection.continue_on_failure,
                             adb=tools["adb"])
            env = process_env(environ, settings.driver_startup_timeout)
            console.step(f"Running {len(plan.flows)} flow(s) on {', '.join(serials)} (run id {plan.run_id})")
            runner = _Runner(plan, record, writer, console, env, logcats.enter_context(Marks(adb, serials)))
            runner.run()
            triage(record, writer, console, adb, plan.flows, apk, released,
                   Rerun(maestro, plan.flow_env, plan.timeout, plan.results_dir, env, settings.install_timeout,
                         keep_driver, plan.session_wait, runner.marks, runner.capture_lost, runner.videos),
                   runner.rest_until)
    return record


def note_quarantine(record: RunRecord, settings: Settings, console: Console, today: date) -> None:
    """Mark the quarantined flows of the run (validation.quarantine); an expired entry, whose flow gates again,
    and a run that nothing gates are said loudly (warning annotations)."""
    for entry in apply_quarantine(record.flows, settings.quarantine, today):
        console.warning(entry.expiry_warning(), title=f"quarantine of {entry.flow} expired")
    held = [flow.flowFileName for flow in record.flows if flow.quarantined]
    if held:
        console.info(f"{len(held)} quarantined flow(s) run but do not gate: {', '.join(held)}")
    if held and len(held) == len(record.flows):
        console.warning(f"every selected flow is quarantined ({', '.join(held)}): no failure can fail this run; "
                        "fix the flows, or shorten the quarantine in invoke.yaml (validation.quarantine)",
                        title="nothing gates this run")


def _decide(record: RunRecord, stage: Stage) -> str:
    """The verdict of the flows, `error` when the stage stopped; the job's artifacts listed."""
    verdict = record.decide()
    if stage.error and verdict == Verdict.PASS:
        verdict = Verdict.ERROR
    if not record.flows and not stage.error and record.shard is not None:
        verdict = Verdict.PASS  # this shard had no flow to run; the merged record judges the whole run
    record.job.artifactPaths = artifact_paths(record)
    return verdict
