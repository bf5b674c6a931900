"""What the invoke tasks call: settings from the invoke configuration, the work, and the exit code.

Each task here is a function of one `Call` (its name, the invoke configuration, its flags, the environment
and a console that masks secrets), wrapped by `entry`, the one place where a `ValidationError` becomes a
message and an exit code, except what the chain's boundary (`boundary.run_task`, around every task) must
record: a signal, and whatever stops a task that decides a verdict (`VERDICT_TASKS`), a bad setting before its
stage included; run_task finishes the run record with it, as it does with anything else that escapes (a bug, a
full disk). So a task is called as

    cli.TASKS["validate"](c.config, {"retries": "2", ...})    # or cli.validate(...): exit code 0, 1 or 2
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .console import Console, redacting_console
from .errors import EXIT_ERROR, EXIT_PASS, Interrupted, ValidationError
from .results import VERDICT_EXIT, RunRecord
from .runlock import FolderInUse, hold_folder
from .settings import (
    BUILD_SECTION,
    EMULATOR_SECTION,
    HISTORY_SECTION,
    NOTIFY_SECTION,
    SECTION,
    BuildSettings,
    EmulatorSettings,
    HistorySettings,
    NotifySettings,
    Settings,
    configured_deployed_sha,
    load,
    load_build,
    load_emulator,
    load_history,
    load_notify,
    project_root,
)

if TYPE_CHECKING:
    from invoke.config import Config

    Configuration = Config | Mapping[str, Any]  # invoke's `c.config`, or a mapping of sections


@dataclass
class Call:
    """One run of a task: what it was given, and the console it speaks through (always masking secrets)."""

    name: str
    config: Configuration
    flags: Mapping[str, Any]
    environ: Mapping[str, str]
    console: Console

    def section(self, name: str) -> Mapping[str, Any]:
        """A section of the configuration as invoke merged it (invoke.yaml < INVOKE_<SECTION>_*)."""
        return self.config.get(name) or {}

    @property
    def root(self) -> Path | None:
        """The project root: where invoke found tasks.py and invoke.yaml (None when called without invoke)."""
        return project_root(self.config)

    def validation(self) -> Settings:
        settings = load(self.section(SECTION), self.flags, self.environ, self.root)
        from .secrets import Redactor

        self.console.redact = Redactor.from_env(self.environ, settings.flow_env, settings.secret_env)
        return settings

    def build(self) -> BuildSettings:
        return load_build(self.section(BUILD_SECTION), self.section(SECTION), self.flags, self.environ, self.root)

    def notify(self) -> NotifySettings:
        from .notify import redactor

        settings = load_notify(self.section(NOTIFY_SECTION), self.section(SECTION), self.flags, self.environ,
                               self.root)
        self.console.redact = redactor(self.environ, settings.secret_env)
        return settings

    def emulator(self) -> EmulatorSettings:
        return load_emulator(self.section(EMULATOR_SECTION), self.flags, self.environ)

    def history(self) -> HistorySettings:
        return load_history(self.section(HISTORY_SECTION), self.flags, self.environ, self.root)

    @property
    def deployed_sha(self) -> str | None:
        """notify.deployed_sha (invoke.yaml or INVOKE_NOTIFY_DEPLOYED_SHA): the commit every stage records."""
        return configured_deployed_sha(self.section(NOTIFY_SECTION))

    def holding(self, folder: Path, *, required: bool = True) -> contextlib.AbstractContextManager[Any]:
        """The results folder, for this task alone (FolderInUse when another run holds it)."""
        return hold_folder(folder, self.name, required=required)


def exit_code(record: RunRecord, stage: str) -> int:
    """A stage's outcome as the exit code (only here): its verdict's (0 pass, 1 fail, 2 error)."""
    outcome = record.verdict or record.stages[stage].outcome
    return VERDICT_EXIT.get(outcome, EXIT_ERROR)


Task = Callable[..., int]
TASKS: dict[str, Task] = {}  # invoke's task name -> the entry point tasks.py calls


# Tasks that decide a verdict: whatever stops them, a bad setting before their stage included, is recorded (by
# `boundary.run_task`) with verdict `error`, so a chain's `notify` and the gate never read an older run's verdict.
VERDICT_TASKS = ("build-apk", "validate", "merge-results")


def entry(name: str) -> Callable[[Callable[[Call], int]], Task]:
    """The one error boundary of a task's own: a `ValidationError` is one message and its exit code. A signal,
    and for the tasks that decide a verdict any error, is raised instead, for the chain's boundary to record;
    not a results folder another run holds (FolderInUse: that run's record is not ours to touch)."""

    def wrap(body: Callable[[Call], int]) -> Task:
        @functools.wraps(body)
        def run(config: Configuration, flags: Mapping[str, Any] | None = None,
                environ: Mapping[str, str] | None = None) -> int:
            environ = os.environ if environ is None else environ
            call = Call(name, config, dict(flags or {}), environ, redacting_console(environ))
            try:
                return body(call)
            except ValidationError as exc:
                if isinstance(exc, Interrupted) or (name in VERDICT_TASKS and not isinstance(exc, FolderInUse)):
                    raise  # boundary.run_task records it
                call.console.error(str(exc), title=name)
                return exc.exit_code

        TASKS[name] = run
        return run

    return wrap


@entry("validate")
def validate(call: Call) -> int:
    from .validate import run_validation

    settings = call.validation()
    emulators = call.emulator()
    history = call.history()
    with call.holding(settings.results_dir):
        record = run_validation(settings, call.environ, call.console, emulators, deployed_sha=call.deployed_sha,
                                history=history)
    return exit_code(record, "validate")


@entry("merge-results")
def merge_results(call: Call) -> int:
    from .merge import find_shard_records, merge
    from .results import RecordWriter
    from .runlock import note_run_id
    from .stage import finish

    settings = call.validation()
    history = call.history()
    console = call.console
    with call.holding(settings.results_dir):  # the output folder, held until the merged record is written
        paths = find_shard_records(str(call.flags["shards"]), exclude=settings.results_dir)
        console.step(f"Merging {len(paths)} shard record(s) into {settings.results_dir}")
        merged = merge(paths, settings.results_dir)
        note_run_id(settings.results_dir, merged.runId)
        writer = RecordWriter(settings.results_dir, console.redact)
        repo_paths = merged.environment.maestroFlowPaths
        finish(merged, writer, console, {
            f.flowFileName: next((p for p in repo_paths if p == f.flowFileName or p.endswith("/" + f.flowFileName)),
                                 f.flowFileName)
            for f in merged.flows
        }, history)
    return exit_code(merged, "validate")


@entry("report")
def report(call: Call) -> int:
    """`invoke report`: render report.html again from the run record in the results folder."""
    from .errors import ReportError
    from .report import write_report
    from .results import RECORD_NAME, load_record

    settings = call.validation()
    record_path = settings.results_dir / RECORD_NAME
    record = load_record(record_path)
    if record is None:
        raise ReportError(f"no run record at {record_path}",
                          fix="run `invoke validate` first, or pass --results-dir with the folder holding results.json")
    try:
        path = write_report(record, settings.results_dir, call.console.redact, commit=(call.deployed_sha or "").strip())
    except OSError as exc:
        raise ReportError(f"could not write the report in {settings.results_dir}: {exc}",
                          fix="check that the results folder is writable and the disk is not full") from None
    call.console.info(f"report: {path}")
    return 0


@entry("lint-flows")
def lint_flows(call: Call) -> int:
    """`invoke lint-flows`: 0 when every flow is clean, 2 (and every problem as file:line) otherwise."""
    import re

    from .errors import FlowError
    from .flowlint import lint, quarantine_warnings
    from .settings import utc_today

    console = call.console
    settings = call.validation()
    today = utc_today()
    for entry in settings.quarantine:
        if entry.expired(today):
            console.warning(entry.expiry_warning(), title=f"quarantine of {entry.flow} expired")
    console.step(f"Checking the flows in {settings.flows}")
    try:
        checked = lint(settings.flows, settings.flow_env, settings.include_tags, settings.exclude_tags, settings.config,
                       call.environ, settings.require_tags)
    except FlowError as exc:
        for problem in exc.problems:
            where = re.match(r"(?P<file>.+?):(?P<line>\d+): (?P<message>.*)", problem, re.DOTALL)
            if where and console.actions:  # an annotation on the flow's line
                console.error(where["message"], file=where["file"], line=int(where["line"]), title="lint-flows")
            else:
                console.error(problem)
        console.info(f"{len(exc.problems)} problem(s) in the flows; fix: {exc.fix}")
        return exc.exit_code
    if checked.lacking_required:  # why they were not checked: no production run can select them
        console.info(f"not checked, as no production run selects them (they carry no tag of "
                     f"validation.require_tags: {', '.join(settings.require_tags)}): {', '.join(checked.lacking_required)}")
    for warning in quarantine_warnings(settings.quarantine, checked.flows, today):
        console.warning(warning, title="validation.quarantine")
    held = [e for e in settings.quarantine if not e.expired(today) and e.flow in {f.file_name for f in checked.flows}]
    if held:
        console.info("quarantined (they run, but do not gate): "
                     + "; ".join(f"{e.flow} until {e.until.isoformat()} ({e.owner})" for e in held))
    console.info(f"{len(checked.flows)} flow(s) and {len(checked.sub_flows)} sub-flow(s) checked: no problems")
    return 0


@entry("build-apk")
def build_apk(call: Call) -> int:
    """`invoke build-apk`: a new run record with the build stage; 0, or 2 when the build failed."""
    from .apk import run_build
    settings = call.build()
    with call.holding(settings.results_dir):
        # SIGTERM raises Interrupted inside run_build's stage, which records it
        record = run_build(settings, call.environ, call.console, deployed_sha=call.deployed_sha)
    return exit_code(record, "build")


@entry("notify")
def notify(call: Call) -> int:
    """`invoke notify`: 0 once every alert was tried (delivery failures are reported, never the verdict);
    2 when there is no run record or the settings are wrong, or when a --test alert was not delivered."""
    from .errors import ConfigError
    from .notify import run_notify

    settings = call.notify()
    try:  # the run history times a scheduled run's reminders; a bad history setting must not stop the alerts
        history: Path | None = call.history().path
    except ConfigError as exc:
        call.console.warning(f"{exc.message}; notify goes on without the run history", title="notify")
        history = None
    # never alert on a run still writing its record; a folder that takes no lock file still alerts
    with call.holding(settings.results_dir, required=False):
        notified = run_notify(settings, call.environ, call.console, history)
    return EXIT_ERROR if notified.test and not notified.delivered else EXIT_PASS


@entry("history")
def history(call: Call) -> int:
    """`invoke history [--flow NAME] [--last N] [--json]`: per flow over the last N runs (default
    history.window) the runs, pass/flaky/fail rates, p50/p95 and failing since, and the quarantine
    candidates; or one flow's last N runs, newest first. 0, also when there is no history yet (said plainly,
    with where it would be); 2 when the file cannot be read, --last is not a whole number above 0 or --flow
    names no stored flow."""
    import difflib
    import json

    from .errors import ConfigError
    from .history import History, flow_summaries, render_flow_runs, render_summary, summary_json

    settings = call.history()
    console = call.console
    raw_last = call.flags.get("last")
    try:
        last = settings.window if raw_last in (None, "") else int(str(raw_last))
    except ValueError:
        last = 0
    if last < 1:
        raise ConfigError(f"--last must be a whole number above 0, got {raw_last!r}", fix="pass e.g. --last 50")
    flow, as_json = str(call.flags.get("flow") or "").strip(), bool(call.flags.get("json"))
    if not settings.path.is_file():
        note = (f"no run history yet at {settings.path}: every finished `invoke validate` (or `invoke "
                f"merge-results` for shards) adds its run there; history.path in invoke.yaml says where")
        console.info(json.dumps({"path": str(settings.path), "runs": 0, "flows": [], "quarantineCandidates": [],
                                 "note": note}, indent=2) if as_json else note)
        return EXIT_PASS
    with History.open(settings.path, console.warning, keep=settings.keep, repair=False) as store:
        if flow:
            found = store.find_flow(flow)
            if found is None:
                close = difflib.get_close_matches(flow, store.flows(), n=1)
                raise ConfigError(f"no flow '{flow}' in the history {settings.path}"
                                  + (f" (did you mean '{close[0]}'?)" if close else ""),
                                  fix="pass a flow's file name as `invoke history` lists it")
            runs = store.flow_runs(found, last)
            console.info(json.dumps({"path": str(settings.path), "flow": found, "runs": runs}, indent=2)
                         if as_json else render_flow_runs(found, runs))
            return EXIT_PASS
        total = store.run_count()
        summaries = flow_summaries(store, last)
        render = summary_json if as_json else render_summary
        console.info(render(settings.path, total, last, summaries, settings.candidate_flaky_rate))
    return EXIT_PASS


# ---- device lifecycle: `invoke emulator.start|stop|status`, `doctor`, `setup` ----------------------------

@entry("emulator.start")
def emulator_start(call: Call) -> int:
    """`invoke emulator.start`: boot, prepare and record the emulators; print their serials. 0, or 2."""
    from .devices import Adb, find_adb
    from .emulator import start_emulators
    from .stage import signals_as_interrupts

    console = call.console
    settings = call.emulator()
    run_settings = call.validation()
    with signals_as_interrupts():  # SIGTERM raises inside start_emulators, which stops what it started
        console.step(f"Starting {settings.count} emulator(s): {settings.system_image}")
        adb = Adb(find_adb(run_settings.adb, call.environ), console, call.environ)
        started = start_emulators(settings, settings.count, console=console, environ=call.environ,
                                  results_dir=run_settings.results_dir, adb=adb)
    serials = [em.serial for em in started]
    console.step(f"Booted: {' '.join(serials)} (stop them with `invoke emulator.stop`)")
    for serial in serials:
        console.info(serial)
    console.set_outputs({"serials": ",".join(serials)})
    return 0


@entry("emulator.stop")
def emulator_stop(call: Call) -> int:
    """`invoke emulator.stop`: stop the emulators this tool started (or only --serial ones). 0, or 2."""
    from .devices import Adb, find_adb
    from .emulator import load_started, state_path, stop_emulators
    from .errors import ToolNotFound

    console = call.console
    settings = call.emulator()
    run_settings = call.validation()
    targets: list[str] = list(call.flags.get("serial") or [em.serial for em in load_started(run_settings.results_dir)])
    if not targets:
        console.info(f"no emulators recorded in {state_path(run_settings.results_dir)}: nothing to stop")
        return 0
    adb: Adb | None = None  # without adb, no `emu kill`: the process groups are still terminated
    with contextlib.suppress(ToolNotFound):
        adb = Adb(find_adb(run_settings.adb, call.environ), console, call.environ)
    console.step(f"Stopping {', '.join(targets)}")
    stop_emulators(targets, console=console, results_dir=run_settings.results_dir, adb=adb,
                   timeout=settings.stop_timeout)
    return 0


@entry("emulator.status")
def emulator_status(call: Call) -> int:
    """`invoke emulator.status`: the devices adb sees, their state and boot status, which ones we started."""
    from .devices import find_adb
    from .emulator import render_status, status

    run_settings = call.validation()
    rows = status(find_adb(run_settings.adb, call.environ), console=call.console, environ=call.environ,
                  results_dir=run_settings.results_dir)
    call.console.info(render_status(rows))
    return 0


@entry("doctor")
def doctor(call: Call) -> int:
    """`invoke doctor`: the requirements table; 0 when everything required is there, 2 otherwise."""
    from . import doctor as checks

    console = call.console
    settings = call.emulator()
    run_settings = call.validation()
    results = checks.check(settings, call.environ, console=console, adb=run_settings.adb, maestro=run_settings.maestro)
    console.info(checks.render(results))
    console.step_summary(checks.render_markdown(results))
    code = checks.exit_code(results)
    missing = [c.name for c in results if c.status == checks.MISSING]
    if missing:
        console.error(f"missing: {', '.join(missing)} (each row above says how to fix it)", title="doctor")
    else:
        console.step("Everything required is there")
    return code


@entry("setup")
def setup(call: Call) -> int:
    """`invoke setup`: install the pinned Maestro and the SDK packages; 0 (also when nothing changed), or 2."""
    from .install import run_setup

    settings = call.emulator()
    changed = run_setup(settings, call.environ, call.console, maestro=not call.flags.get("skip_maestro"),
                        sdk=not call.flags.get("skip_sdk"))
    call.console.step(f"Installed: {', '.join(changed)}" if changed else "Nothing to do: everything was already installed")
    return 0
