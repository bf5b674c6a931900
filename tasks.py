"""Invoke tasks: production validation of the app. Thin: the flags here; their help and the configuration
keys come from the settings' declarations (`prodval/settings.py`), the work from `prodval/cli.py`.

    invoke build-apk validate notify   the chain: build, run every flow against production, alert; exits
                                       with the verdict (0 pass, 1 fail, 2 error)
    invoke --list                      every task (emulator.*, doctor, setup, lint-flows, report, merge-results,
                                       history)
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from invoke import Collection, Context, Exit

# Works from a plain checkout too; `pip install -e tools` is the normal way.
sys.path.insert(0, str(Path(__file__).resolve().parent / "tools"))

from prodval.boundary import install_invoke_hooks
from prodval.flags import task  # invoke's @task with the short flags pinned (one letter, one meaning)
from prodval.settings import invoke_configuration, task_help


def _run(c: Context, task_name: str, flags: dict[str, Any]) -> None:
    """Run `invoke <task>` with the invoke configuration and the task's flags (its parameters); exit with its code."""
    from prodval import cli

    code = cli.TASKS[task_name](c.config, {name: value for name, value in flags.items() if name != "c"})
    if code:
        raise Exit(code=code)


@task(iterable=["env"], help=task_help("validate"))
def validate(
    c: Context,
    flows: str | None = None,
    apk: str | None = None,
    device: str | None = None,
    results_dir: str | None = None,
    include_tags: str | None = None,
    exclude_tags: str | None = None,
    config: str | None = None,
    retries: str | None = None,
    flow_timeout: str | None = None,
    env: list[str] | None = None,
    devices: str | None = None,
    shard: str | None = None,
    timings: str | None = None,
) -> None:
    """Run every selected Maestro flow against production; exit 0 pass, 1 fail, 2 error."""
    _run(c, "validate", locals())


@task(positional=["shards"], help=task_help(
    "merge-results", shards="Folder holding the shards' results folders (each with a results.json), or a glob of them"))
def merge_results(c: Context, shards: str, results_dir: str | None = None) -> None:
    """Merge the run records of the shards of one run into one record and verdict; exit with the verdict."""
    _run(c, "merge-results", locals())


@task(help=task_help("report"))
def report(c: Context, results_dir: str | None = None) -> None:
    """Render report.html (one self-contained page: verdict, timeline, a card per flow) from a run record."""
    _run(c, "report", locals())


@task(iterable=["env"], help=task_help("lint-flows"))
def lint_flows(c: Context, flows: str | None = None, env: list[str] | None = None, include_tags: str | None = None,
               exclude_tags: str | None = None, config: str | None = None) -> None:
    """Check the flows a run would select, and their sub-flows, without a device; exit 2 on any problem."""
    _run(c, "lint-flows", locals())


@task(help=task_help("history", flow="Show this flow's runs (its file name), newest first",
                     last="How many runs: the table's window (default history.window), or --flow's runs",
                     json="Print JSON instead of tables"))
def history(c: Context, flow: str | None = None, last: str | None = None, json: bool = False) -> None:
    """The run history: per flow its rates, p50/p95 and failing since, and quarantine candidates; exit 0, or 2."""
    _run(c, "history", locals())


@task(iterable=["property"], help=task_help("build-apk"))
def build_apk(
    c: Context,
    variant: str | None = None,
    property: list[str] | None = None,
    command: str | None = None,
    output: str | None = None,
    abi: str | None = None,
    project_dir: str | None = None,
    results_dir: str | None = None,
) -> None:
    """Build, sign and inspect the production APK; record it for validate. Exit 0, or 2 when the build failed."""
    _run(c, "build-apk", locals())


@task(help=task_help(
    "notify",
    previous="The previous run's results.json, to tell a recovery (in GitHub Actions the API says it)",
    test="Send a clearly marked test alert to every configured channel and report delivery per channel",
    dry_run="Print what would be sent, and to whom, with secrets masked; send nothing",
))
def notify(
    c: Context,
    results_dir: str | None = None,
    on: str | None = None,
    previous: str | None = None,
    test: bool = False,
    dry_run: bool = False,
) -> None:
    """Alert Slack, email and PagerDuty and set the commit status from the run record; delivery never changes the verdict."""
    _run(c, "notify", locals())


@task(help=task_help("emulator.start"))
def emulator_start(
    c: Context,
    avd: str | None = None,
    api_level: str | None = None,
    target: str | None = None,
    arch: str | None = None,
    count: str | None = None,
    port: str | None = None,
    boot_timeout: str | None = None,
    emulator_options: str | None = None,
    wipe: bool = False,
    results_dir: str | None = None,
) -> None:
    """Create the AVDs if missing, boot the emulators, prepare them; print their serials. Exit 0, or 2."""
    _run(c, "emulator.start", locals())


@task(iterable=["serial"], help=task_help(
    "emulator.stop", serial="Stop only this emulator (repeatable); it must be one this tool started"))
def emulator_stop(c: Context, serial: list[str] | None = None, results_dir: str | None = None) -> None:
    """Stop the emulators this tool started (emu kill, then the whole process group). Exit 0, or 2."""
    _run(c, "emulator.stop", locals())


@task(help=task_help("emulator.status"))
def emulator_status(c: Context, results_dir: str | None = None) -> None:
    """The devices adb sees, their state and boot status, and which ones this tool started."""
    _run(c, "emulator.status", locals())


@task
def doctor(c: Context) -> None:
    """Check every requirement (Java, SDK, adb, emulator, system image, KVM, maestro, disk); exit 0, or 2 if one is missing."""
    _run(c, "doctor", locals())


@task(help=task_help("setup", skip_maestro="Do not install Maestro", skip_sdk="Do not install SDK packages"))
def setup(
    c: Context,
    maestro_version: str | None = None,
    maestro_url: str | None = None,
    maestro_sha256: str | None = None,
    api_level: str | None = None,
    target: str | None = None,
    arch: str | None = None,
    skip_maestro: bool = False,
    skip_sdk: bool = False,
) -> None:
    """Install what a fresh runner lacks: the pinned Maestro (checksum verified) and the SDK packages. Idempotent."""
    _run(c, "setup", locals())


ns = Collection(validate, merge_results, report, build_apk)
ns.add_task(lint_flows)
ns.add_task(notify)
ns.add_task(history)
emulator_tasks = Collection("emulator")
emulator_tasks.add_task(emulator_start, name="start")
emulator_tasks.add_task(emulator_stop, name="stop")
emulator_tasks.add_task(emulator_status, name="status")
ns.add_collection(emulator_tasks)
ns.add_task(doctor)
ns.add_task(setup)
ns.configure(invoke_configuration())  # every declared key, so invoke reads invoke.yaml and INVOKE_<SECTION>_* for it
# Invoke's own errors (an unknown flag, an invoke.yaml that does not parse) end like any failed run:
# one message, exit 2, the record and $GITHUB_OUTPUT saying `error`, `notify` still run. Invoke imports
# this file before it parses the tasks' flags and reads invoke.yaml; see prodval/boundary.py.
install_invoke_hooks(sorted(ns.task_names))
