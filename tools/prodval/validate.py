"""`invoke validate`: select and check the flows, pick the device, run each flow, record, decide.

Planning is pure (`make_plan`): which flows, in which order, on which device, with which arguments.
`run_validation` walks the plan, rewriting the run record after every flow, and always finishes the
record (verdict, junit.xml, summary.md, GitHub outputs), whatever stopped the run.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import threading
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from .commands import display, stream
from .console import Console, relative_display
from .devices import Adb, find_adb
from .errors import BuildFailed, Interrupted, ValidationError
from .flows import Flow, discover
from .maestro import PASSED, classify, find_maestro, process_env, test_command
from .results import (
    PASSING,
    VERDICT_EXIT,
    Attempt,
    FlowResult,
    RecordWriter,
    RunRecord,
    Stage,
    headline,
    now_iso,
    start_record,
    summary_markdown,
)
from .secrets import Redactor
from .settings import Settings


@dataclass(frozen=True)
class Plan:
    run_id: str
    serial: str
    maestro: Path
    flows: tuple[Flow, ...]
    flow_env: tuple[tuple[str, str], ...]
    attempts: int
    timeout: float
    results_dir: Path

    def flow_dir(self, flow: Flow) -> Path:
        return self.results_dir / "flows" / flow.key

    def attempt_dir(self, flow: Flow, number: int) -> Path:
        return self.flow_dir(flow) / f"attempt-{number}"

    def command(self, flow: Flow, number: int) -> list[str]:
        folder = self.attempt_dir(flow, number)
        return test_command(self.maestro, self.serial, flow.path, junit=folder / "report.xml",
                            debug_dir=folder / "debug", flow_env=self.flow_env)


def new_run_id(environ: Mapping[str, str]) -> str:
    if environ.get("GITHUB_RUN_ID"):
        return f"gh-{environ['GITHUB_RUN_ID']}-{environ.get('GITHUB_RUN_ATTEMPT', '1')}"
    return f"local-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


def make_plan(settings: Settings, flows: list[Flow], maestro: Path, serial: str, run_id: str) -> Plan:
    flow_env = (("SKIP_DATA_CLEANUP", "true"), ("VALIDATION_RUN_ID", run_id), *settings.env)
    return Plan(run_id=run_id, serial=serial, maestro=maestro, flows=tuple(flows), flow_env=flow_env,
                attempts=settings.retries + 1, timeout=settings.flow_timeout, results_dir=settings.results_dir)


@contextlib.contextmanager
def signals_as_interrupts() -> Iterator[None]:
    """Turn SIGTERM and Ctrl-C into `Interrupted` so every `finally` (process groups, record) runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise Interrupted("SIGTERM")

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted("Ctrl-C (SIGINT)") from None
    finally:
        signal.signal(signal.SIGTERM, previous)


def _exit_status(returncode: int) -> int:
    """Killed by a signal shows as 128+N, as a shell would report it."""
    return 128 - returncode if returncode < 0 else returncode


def _relative_files(folder: Path, base: Path) -> list[str]:
    return [p.relative_to(base).as_posix() for p in sorted(folder.rglob("*")) if p.is_file()]


def run_flow(plan: Plan, flow: Flow, result: FlowResult, console: Console, env: Mapping[str, str]) -> FlowResult:
    """Run one flow with its retries; `result` is updated in place after every attempt."""
    shutil.rmtree(plan.flow_dir(flow), ignore_errors=True)
    for number in range(1, plan.attempts + 1):
        folder = plan.attempt_dir(flow, number)
        folder.mkdir(parents=True, exist_ok=True)
        argv = plan.command(flow, number)
        started = now_iso()
        with console.group(f"{flow.file_name} · attempt {number}/{plan.attempts} · {plan.serial}"):
            console.command(display(argv))
            streamed = stream(argv, env=env, timeout=plan.timeout, stdout_path=folder / "stdout.log",
                              stderr_path=folder / "stderr.log", on_line=console.line, redact=console.redact)
        console.redact.scrub_files(folder, skip=(folder / "stdout.log", folder / "stderr.log"))
        outcome = classify(streamed.returncode, streamed.timed_out, streamed.stdout.text, streamed.stderr.text,
                           folder / "report.xml", plan.timeout)
        attempt = Attempt(number=number, status=outcome.status, exitCode=_exit_status(streamed.returncode),
                          duration=streamed.duration_ms, device=plan.serial, startTime=started,
                          errorSummary=outcome.summary,
                          artifactPaths=_relative_files(folder, plan.results_dir))
        result.attempts.append(attempt)
        result.exitCode = attempt.exitCode
        result.stdout, result.stderr = streamed.stdout.text, streamed.stderr.text
        result.duration += attempt.duration
        result.device = plan.serial
        result.artifactPaths = _relative_files(plan.flow_dir(flow), plan.results_dir)
        if outcome.status == PASSED:
            result.status = "flaky" if number > 1 else "passed"
            result.errorSummary = result.attempts[0].errorSummary if number > 1 else ""
            break
        result.status = outcome.status
        result.errorSummary = outcome.summary
        if number < plan.attempts:
            console.warning(f"{flow.file_name}: attempt {number} {outcome.status} ({outcome.summary}); retrying")
    _report_flow(result, console)
    return result


def _report_flow(result: FlowResult, console: Console) -> None:
    took = f"{result.duration / 1000:.1f}s"
    if result.status == "passed":
        console.info(f"PASSED  {result.flowFileName} ({took})")
    elif result.status == "flaky":
        console.warning(f"{result.flowFileName} passed only on attempt {len(result.attempts)} "
                        f"after: {result.errorSummary}", title="FLAKY")
    else:
        console.info(f"{result.status.upper():7} {result.flowFileName} ({took}): {result.errorSummary}")


def run_validation(settings: Settings, environ: Mapping[str, str], console: Console) -> int:
    """Run the whole validation; return the verdict's exit code. Never raises ValidationError."""
    redact = Redactor.from_env(environ, settings.flow_env)
    console.redact = redact
    writer = RecordWriter(settings.results_dir, redact)
    record = start_record(writer, environ, "validate", new_run_id(environ))
    stage = record.stages["validate"]
    selected: list[Flow] = []
    try:
        with signals_as_interrupts():
            console.step("Checking tools and flows")
            maestro = find_maestro(settings.maestro, environ)
            adb = Adb(find_adb(settings.adb, environ), console, environ)
            selection = discover(settings.flows, settings.include_tags, settings.exclude_tags)
            selected = selection.flows
            record.environment.maestroFlowPaths = [relative_display(f.path) for f in selected]
            record.flows = [FlowResult(flowFileName=f.file_name, name=f.name, tags=list(f.tags)) for f in selected]
            console.info(f"{len(selected)} flow(s) selected from {relative_display(settings.flows)}"
                         + (f"; {len(selection.filtered_out)} filtered out by tags" if selection.filtered_out else ""))
            writer.save(record)
            build = record.stages.get("build")
            if build is not None and build.outcome == "error":
                raise BuildFailed()

            console.step("Selecting the device")
            serial = adb.select(settings.device)
            record.devices = [serial]
            console.info(f"device: {serial}")
            if settings.apk:
                console.step(f"Installing {settings.apk}")
                adb.install(serial, settings.apk)
                record.environment.apkBuildPath = relative_display(settings.apk)
            writer.save(record)

            plan = make_plan(settings, selected, maestro, serial, record.runId)
            env = process_env(environ, settings.driver_startup_timeout)
            console.step(f"Running {len(plan.flows)} flow(s) on {serial} (run id {plan.run_id})")
            for index, flow in enumerate(plan.flows):
                run_flow(plan, flow, record.flows[index], console, env)
                writer.save(record)
    except ValidationError as exc:
        stage.error = str(exc)
        console.error(str(exc), title=f"validation stopped ({exc.stage})")
        for flow_result in record.flows:
            if flow_result.status == "not_run" and not flow_result.errorSummary:
                flow_result.errorSummary = f"not run: {exc.message.splitlines()[0]}"
    finally:
        _finish(record, stage, writer, console, settings, selected)
    assert record.verdict is not None
    return VERDICT_EXIT[record.verdict]


def _finish(record: RunRecord, stage: Stage, writer: RecordWriter, console: Console, settings: Settings,
            flows: list[Flow]) -> None:
    verdict = record.decide()
    if stage.error and verdict == "pass":
        verdict = "error"
    record.verdict = verdict
    stage.outcome, stage.endTime = verdict, now_iso()
    record.job.endTime = stage.endTime
    record.job.status = "success" if verdict == "pass" else "failure"
    record.job.artifactPaths = ["results.json", "junit.xml", "summary.md"] + [
        path for flow in record.flows for path in flow.artifactPaths]
    writer.finish(record)

    paths = {f.file_name: relative_display(f.path) for f in flows}
    broken = [f for f in record.flows if f.status not in PASSING]
    failed = [f for f in broken if f.status == "failed"]
    for flow in (failed or broken)[:10]:
        console.error(flow.errorSummary or flow.status, title=f"{flow.flowFileName} {flow.status}",
                      file=paths.get(flow.flowFileName, flow.flowFileName))
    rest = (failed or broken)[10:]
    if rest:
        console.error(f"{len(rest)} more flows: " + ", ".join(f.flowFileName for f in rest),
                      title="more failed flows")
    console.step(f"Verdict: {verdict.upper()}: {headline(record)}")
    console.info(f"run record: {relative_display(writer.path)}")
    console.step_summary(summary_markdown(record))
    console.set_outputs({
        "verdict": verdict,
        "failed-flows": ",".join(f.flowFileName for f in broken),
        "results-path": str(settings.results_dir),
    })
