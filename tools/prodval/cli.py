"""What the invoke tasks call: build settings, run, and turn errors into exit codes (only here)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from typing import Any

from .console import Console
from .errors import EXIT_ERROR, EXIT_PASS, Interrupted, ValidationError
from .results import VERDICT_EXIT, RunRecord
from .runlock import FolderInUse, hold_folder
from .settings import load


def exit_code(record: RunRecord, stage: str) -> int:
    """A stage's outcome as the exit code (only here): its verdict's (0 pass, 1 fail, 2 error)."""
    outcome = record.verdict or record.stages[stage].outcome
    return VERDICT_EXIT.get(outcome, EXIT_ERROR)


def validate(section: Mapping[str, Any], flags: Mapping[str, Any], environ: Mapping[str, str] | None = None,
             emulator_section: Mapping[str, Any] | None = None, deployed_sha: str | None = None) -> int:
    from .settings import load_emulator
    from .validate import run_validation

    environ = os.environ if environ is None else environ
    console = Console(environ)
    try:
        settings = load(section, flags)
        emulators = load_emulator(emulator_section or {}, {})
    except ValidationError as exc:
        console.error(str(exc), title="configuration")
        return exc.exit_code
    try:
        with hold_folder(settings.results_dir, "validate"):
            return exit_code(run_validation(settings, environ, console, emulators, deployed_sha=deployed_sha), "validate")
    except FolderInUse as exc:
        console.error(str(exc), title="validate")
        return exc.exit_code


def merge_results(section: Mapping[str, Any], shards: str, results_dir: str | None,
                  environ: Mapping[str, str] | None = None) -> int:
    with contextlib.ExitStack() as held:  # the output folder, held until the merged record is written
        return _merge_results(held, section, shards, results_dir, environ)


def _merge_results(held: contextlib.ExitStack[Any], section: Mapping[str, Any], shards: str,
                   results_dir: str | None, environ: Mapping[str, str] | None) -> int:
    from pathlib import Path

    from .merge import find_shard_records, merge
    from .results import RecordWriter
    from .runlock import note_run_id
    from .secrets import Redactor
    from .stage import finish

    environ = os.environ if environ is None else environ
    console = Console(environ, Redactor.from_env(environ))
    try:
        settings = load(section, {"results_dir": results_dir})
        console.redact = Redactor.from_env(environ, settings.flow_env, settings.secret_env)
        held.enter_context(hold_folder(settings.results_dir, "merge-results"))
        paths = find_shard_records(shards, exclude=settings.results_dir)
        console.step(f"Merging {len(paths)} shard record(s) into {settings.results_dir}")
        merged = merge(paths, settings.results_dir)
        note_run_id(settings.results_dir, merged.runId)
    except ValidationError as exc:
        console.error(str(exc), title="merge-results")
        return exc.exit_code
    writer = RecordWriter(Path(settings.results_dir), console.redact)
    repo_paths = merged.environment.maestroFlowPaths
    finish(merged, writer, console, {
        f.flowFileName: next((p for p in repo_paths if p == f.flowFileName or p.endswith("/" + f.flowFileName)),
                             f.flowFileName)
        for f in merged.flows
    })
    return exit_code(merged, "validate")


def report(section: Mapping[str, Any], results_dir: str | None, commit: str | None = None,
           environ: Mapping[str, str] | None = None) -> int:
    """`invoke report`: render report.html again from the run record in the results folder."""
    from .errors import ReportError
    from .report import write_report
    from .results import RECORD_NAME, load_record
    from .secrets import Redactor

    environ = os.environ if environ is None else environ
    console = Console(environ, Redactor.from_env(environ))
    try:
        settings = load(section, {"results_dir": results_dir})
        console.redact = Redactor.from_env(environ, settings.flow_env, settings.secret_env)
        record_path = settings.results_dir / RECORD_NAME
        record = load_record(record_path)
        if record is None:
            raise ReportError(f"no run record at {record_path}",
                              fix="run `invoke validate` first, or pass --results-dir with the folder holding results.json")
        try:
            path = write_report(record, settings.results_dir, console.redact, commit=(commit or "").strip())
        except OSError as exc:
            raise ReportError(f"could not write the report in {settings.results_dir}: {exc}",
                              fix="check that the results folder is writable and the disk is not full") from None
    except ValidationError as exc:
        console.error(str(exc), title="report")
        return exc.exit_code
    console.info(f"report: {path}")
    return 0


def lint_flows(section: Mapping[str, Any], flags: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> int:
    """`invoke lint-flows`: 0 when every flow is clean, 2 (and every problem as file:line) otherwise."""
    import re

    from .errors import FlowError
    from .flowlint import lint

    environ = os.environ if environ is None else environ
    console = Console(environ)
    try:
        settings = load(section, flags)
        console.step(f"Checking the flows in {settings.flows}")
        checked = lint(settings.flows, settings.flow_env, settings.include_tags, settings.exclude_tags, settings.config,
                       environ)
    except FlowError as exc:
        for problem in exc.problems:
            where = re.match(r"(?P<file>.+?):(?P<line>\d+): (?P<message>.*)", problem, re.DOTALL)
            if where and console.actions:  # an annotation on the flow's line
                console.error(where["message"], file=where["file"], line=int(where["line"]), title="lint-flows")
            else:
                console.error(problem)
        console.info(f"{len(exc.problems)} problem(s) in the flows; fix: {exc.fix}")
        return exc.exit_code
    except ValidationError as exc:
        console.error(str(exc), title="lint-flows")
        return exc.exit_code
    console.info(f"{len(checked.flows)} flow(s) and {len(checked.sub_flows)} sub-flow(s) checked: no problems")
    return 0


def build_apk(section: Mapping[str, Any], validation: Mapping[str, Any], flags: Mapping[str, Any],
              environ: Mapping[str, str] | None = None, deployed_sha: str | None = None) -> int:
    """`invoke build-apk`: a new run record with the build stage; 0, or 2 when the build failed."""
    from .apk import run_build
    from .secrets import Redactor
    from .settings import load_build

    environ = os.environ if environ is None else environ
    console = Console(environ, Redactor.from_env(environ))
    try:
        settings = load_build(section, validation, flags)
    except ValidationError as exc:
        console.error(str(exc), title="configuration")
        return exc.exit_code
    try:
        with hold_folder(settings.results_dir, "build-apk"):
            # SIGTERM raises Interrupted inside run_build's stage, which records it
            return exit_code(run_build(settings, environ, console, deployed_sha=deployed_sha), "build")
    except FolderInUse as exc:
        console.error(str(exc), title="build-apk")
        return exc.exit_code


def notify(section: Mapping[str, Any], validation: Mapping[str, Any], flags: Mapping[str, Any],
           environ: Mapping[str, str] | None = None) -> int:
    """`invoke notify`: 0 once every alert was tried (delivery failures are reported, never the verdict);
    2 when there is no run record or the settings are wrong, or when a --test alert was not delivered."""
    from .notify import redactor, run_notify
    from .settings import load_notify

    environ = os.environ if environ is None else environ
    console = Console(environ, redactor(environ))
    try:
        settings = load_notify(section, validation, flags)
        console.redact = redactor(environ, settings.secret_env)
    except ValidationError as exc:
        console.error(str(exc), title="configuration")
        return exc.exit_code
    try:
        # never alert on a run still writing its record; a folder that takes no lock file still alerts
        with hold_folder(settings.results_dir, "notify", required=False):
            notified = run_notify(settings, environ, console)
    except Interrupted:
        raise  # the boundary (boundary.run_task) says which task it stopped and records it
    except ValidationError as exc:  # the folder in use, no run record or a corrupt one, --test without channels
        console.error(str(exc), title="notify")
        return exc.exit_code
    return EXIT_ERROR if notified.test and not notified.delivered else EXIT_PASS


# ---- device lifecycle: `invoke emulator.start|stop|status`, `doctor`, `setup` ----------------------------

def emulator_start(validation: Mapping[str, Any], section: Mapping[str, Any], flags: Mapping[str, Any],
                   results_dir: str | None = None, environ: Mapping[str, str] | None = None) -> int:
    """`invoke emulator.start`: boot, prepare and record the emulators; print their serials. 0, or 2."""
    from .devices import Adb, find_adb
    from .emulator import start_emulators
    from .secrets import Redactor
    from .settings import load_emulator
    from .stage import signals_as_interrupts

    environ = os.environ if environ is None else environ
    console = Console(environ, Redactor.from_env(environ))
    try:
        settings = load_emulator(section, flags)
        run_settings = load(validation, {"results_dir": results_dir})
        with signals_as_interrupts():  # SIGTERM raises inside start_emulators, which stops what it started
            console.step(f"Starting {settings.count} emulator(s): {settings.system_image}")
            adb = Adb(find_adb(run_settings.adb, environ), console, environ)
            started = start_emulators(settings, settings.count, console=console, environ=environ,
                                      results_dir=run_settings.results_dir, adb=adb)
    except ValidationError as exc:
        console.error(str(exc), title="emulator.start")
        return exc.exit_code
    serials = [em.serial for em in started]
    console.step(f"Booted: {' '.join(serials)} (stop them with `invoke emulator.stop`)")
    for serial in serials:
        console.info(serial)
    console.set_outputs({"serials": ",".join(serials)})
    return 0


def emulator_stop(validation: Mapping[str, Any], section: Mapping[str, Any], serials: list[str] | None,
                  results_dir: str | None = None, environ: Mapping[str, str] | None = None) -> int:
    """`invoke emulator.stop`: stop the emulators this tool started (or only `serials`). 0, or 2."""
    from .devices import Adb, find_adb
    from .emulator import load_started, state_path, stop_emulators
    from .errors import ToolNotFound
    from .settings import load_emulator

    environ = os.environ if environ is None else environ
    console = Console(environ)
    try:
        settings = load_emulator(section, {})
        run_settings = load(validation, {"results_dir": results_dir})
        targets: list[str] = list(serials or [em.serial for em in load_started(run_settings.results_dir)])
        if not targets:
            console.info(f"no emulators recorded in {state_path(run_settings.results_dir)}: nothing to stop")
            return 0
        adb: Adb | None = None  # without adb, no `emu kill`: the process groups are still terminated
        with contextlib.suppress(ToolNotFound):
            adb = Adb(find_adb(run_settings.adb, environ), console, environ)
        console.step(f"Stopping {', '.join(targets)}")
        stop_emulators(targets, console=console, results_dir=run_settings.results_dir, adb=adb,
                       timeout=settings.stop_timeout)
    except ValidationError as exc:
        console.error(str(exc), title="emulator.stop")
        return exc.exit_code
    return 0


def emulator_status(validation: Mapping[str, Any], results_dir: str | None = None,
                    environ: Mapping[str, str] | None = None) -> int:
    """`invoke emulator.status`: the devices adb sees, their state and boot status, which ones we started."""
    from .devices import find_adb
    from .emulator import render_status, status

    environ = os.environ if environ is None else environ
    console = Console(environ)
    try:
        run_settings = load(validation, {"results_dir": results_dir})
        rows = status(find_adb(run_settings.adb, environ), console=console, environ=environ,
                      results_dir=run_settings.results_dir)
    except ValidationError as exc:
        console.error(str(exc), title="emulator.status")
        return exc.exit_code
    console.info(render_status(rows))
    return 0


def doctor(validation: Mapping[str, Any], section: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> int:
    """`invoke doctor`: the requirements table; 0 when everything required is there, 2 otherwise."""
    from . import doctor as checks
    from .settings import load_emulator

    environ = os.environ if environ is None else environ
    console = Console(environ)
    try:
        settings = load_emulator(section, {})
        run_settings = load(validation, {})
    except ValidationError as exc:
        console.error(str(exc), title="configuration")
        return exc.exit_code
    results = checks.check(settings, environ, console=console, adb=run_settings.adb, maestro=run_settings.maestro)
    console.info(checks.render(results))
    console.step_summary(checks.render_markdown(results))
    code = checks.exit_code(results)
    missing = [c.name for c in results if c.status == checks.MISSING]
    if missing:
        console.error(f"missing: {', '.join(missing)} (each row above says how to fix it)", title="doctor")
    else:
        console.step("Everything required is there")
    return code


def setup(section: Mapping[str, Any], flags: Mapping[str, Any], *, maestro: bool = True, sdk: bool = True,
          environ: Mapping[str, str] | None = None) -> int:
    """`invoke setup`: install the pinned Maestro and the SDK packages; 0 (also when nothing changed), or 2."""
    from .install import run_setup
    from .settings import load_emulator

    environ = os.environ if environ is None else environ
    console = Console(environ)
    try:
        settings = load_emulator(section, flags)
        changed = run_setup(settings, environ, console, maestro=maestro, sdk=sdk)
    except ValidationError as exc:
        console.error(str(exc), title="setup")
        return exc.exit_code
    console.step(f"Installed: {', '.join(changed)}" if changed else "Nothing to do: everything was already installed")
    return 0
