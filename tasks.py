"""Invoke tasks: production validation of the app. Thin: flags and help here, work in `tools/prodval`.

    invoke build-apk validate notify   the chain: build, run every flow against production, alert; exits
                                       with the verdict (0 pass, 1 fail, 2 error)
    invoke --list                      every task (emulator.*, doctor, setup, lint-flows, report, merge-results)
"""

from __future__ import annotations

import sys
from pathlib import Path

from invoke import Collection, Context, Exit, task

# Works from a plain checkout too; `pip install -e tools` is the normal way.
sys.path.insert(0, str(Path(__file__).resolve().parent / "tools"))

from prodval.boundary import install_invoke_hooks
from prodval.settings import (
    BUILD_INVOKE_DEFAULTS,
    BUILD_SECTION,
    EMULATOR_INVOKE_DEFAULTS,
    EMULATOR_SECTION,
    INVOKE_DEFAULTS,
    NOTIFY_INVOKE_DEFAULTS,
    NOTIFY_SECTION,
    SECTION,
)


def _exit(code: int) -> None:
    if code:
        raise Exit(code=code)


def _deployed_sha(c: Context) -> str | None:
    """notify.deployed_sha (invoke.yaml or INVOKE_NOTIFY_DEPLOYED_SHA): the commit every stage records."""
    value = (c.config.get(NOTIFY_SECTION) or {}).get("deployed_sha")
    return None if value is None else str(value)


@task(
    iterable=["env"],
    help={
        "flows": "Folder of Maestro flows, or one flow file (default .maestro)",
        "apk": "APK to install (adb install -r -g) before running",
        "device": "adb serial of the device to run on (default: the single booted device)",
        "results_dir": "Where results.json, junit.xml, summary.md and artifacts go (default build/validation)",
        "include_tags": "Run only flows with one of these tags (comma-separated; adds to config.yaml)",
        "exclude_tags": "Skip flows with any of these tags (comma-separated; adds to config.yaml)",
        "config": "Maestro workspace config (default: config.yaml, then config.yml, in the flows folder)",
        "retries": "Retries of a flow that did not pass (default 1); a pass after a failure is 'flaky'",
        "flow_timeout": "Seconds before a flow's whole process tree is killed (default 600)",
        "env": "KEY=VALUE flow variable passed to Maestro with -e (repeatable)",
        "devices": "Run flows from one queue on N devices at once (default 1)",
        "shard": "Run only share I of N of the flows (e.g. 2/4), balanced by recorded durations",
        "timings": "results.json or timings.json whose durations order the flows (default: the results folder's)",
    },
)
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
    from prodval import cli

    flags = dict(flows=flows, apk=apk, device=device, results_dir=results_dir, include_tags=include_tags,
                 exclude_tags=exclude_tags, config=config, retries=retries, flow_timeout=flow_timeout, env=env,
                 devices=devices, shard=shard, timings=timings)
    _exit(cli.validate(c.config.get(SECTION, {}), flags, emulator_section=c.config.get(EMULATOR_SECTION, {}),
                       deployed_sha=_deployed_sha(c)))


@task(
    positional=["shards"],
    help={
        "shards": "Folder holding the shards' results folders (each with a results.json), or a glob of them",
        "results_dir": "Where the merged results.json, junit.xml and summary.md go (default build/validation)",
    },
)
def merge_results(c: Context, shards: str, results_dir: str | None = None) -> None:
    """Merge the run records of the shards of one run into one record and verdict; exit with the verdict."""
    from prodval import cli

    _exit(cli.merge_results(c.config.get(SECTION, {}), shards, results_dir))


@task(help={"results_dir": "The results folder holding results.json; report.html is written there (default build/validation)"})
def report(c: Context, results_dir: str | None = None) -> None:
    """Render report.html (one self-contained page: verdict, timeline, a card per flow) from a run record."""
    from prodval import cli

    _exit(cli.report(c.config.get(SECTION, {}), results_dir, _deployed_sha(c)))


@task(
    iterable=["env"],
    help={
        "flows": "Folder of Maestro flows, or one flow file (default .maestro)",
        "env": "KEY=VALUE flow variable the run will pass with -e, so flows may use it (repeatable)",
        "include_tags": "Lint only flows with one of these tags, as validate selects them (comma-separated)",
        "exclude_tags": "Skip flows with any of these tags, as validate does (comma-separated)",
        "config": "Maestro workspace config (default: config.yaml, then config.yml, in the flows folder)",
    },
)
def lint_flows(c: Context, flows: str | None = None, env: list[str] | None = None, include_tags: str | None = None,
               exclude_tags: str | None = None, config: str | None = None) -> None:
    """Check the flows a run would select, and their sub-flows, without a device; exit 2 on any problem."""
    from prodval import cli

    _exit(cli.lint_flows(c.config.get(SECTION, {}), dict(flows=flows, env=env, include_tags=include_tags,
                                                         exclude_tags=exclude_tags, config=config)))


@task(
    iterable=["property"],
    help={
        "variant": "Build variant (default release; with flavors e.g. productionRelease)",
        "property": "NAME=VALUE Gradle project property, a production setting such as API_BASE_URL (repeatable)",
        "command": "Build command instead of ./gradlew :app:assemble<Variant> (e.g. an EAS local build)",
        "output": "Where a custom command writes the APK (path or glob); default: Gradle's outputs",
        "abi": "Which ABI split to take when the build splits APKs by ABI (default x86_64)",
        "project_dir": "Folder the build runs in (default android)",
        "results_dir": "The chain's results folder: results.json and app-production.apk go there (default build/validation)",
    },
)
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
    from prodval import cli

    flags = dict(variant=variant, properties=property, command=command, output=output, abi=abi,
                 project_dir=project_dir, results_dir=results_dir)
    _exit(cli.build_apk(c.config.get(BUILD_SECTION, {}), c.config.get(SECTION, {}), flags, deployed_sha=_deployed_sha(c)))


@task(
    help={
        "results_dir": "The results folder holding results.json (default: validation.results_dir, build/validation)",
        "on": "failure (default): alert on fail and error, and a recovery message after a failed run; always: every run",
        "previous": "The previous run's results.json, to tell a recovery (in GitHub Actions the API says it)",
        "test": "Send a clearly marked test alert to every configured channel and report delivery per channel",
        "dry_run": "Print what would be sent, and to whom, with secrets masked; send nothing",
    },
)
def notify(
    c: Context,
    results_dir: str | None = None,
    on: str | None = None,
    previous: str | None = None,
    test: bool = False,
    dry_run: bool = False,
) -> None:
    """Alert Slack, email and PagerDuty and set the commit status from the run record; delivery never changes the verdict."""
    from prodval import cli

    flags = dict(results_dir=results_dir, on=on, previous=previous, test=test, dry_run=dry_run)
    _exit(cli.notify(c.config.get(NOTIFY_SECTION, {}), c.config.get(SECTION, {}), flags))


@task(
    help={
        "avd": "AVD name (default prodval-api<level>-<target>-<arch>; further emulators add -2, -3, ...)",
        "api_level": "API level of the system image (default 34)",
        "target": "System image target: google_apis (default), default, google_apis_playstore, ...",
        "arch": "System image ABI (default x86_64)",
        "count": "How many emulators to start, each with its own port and serial (default 1)",
        "port": "First console port, even (default 5554); further emulators take the next free even ports",
        "boot_timeout": "Seconds to wait for a boot before the one cold-boot retry (default 600)",
        "emulator_options": "Emulator options replacing the defaults "
                            "(-no-window -gpu swiftshader_indirect -noaudio -no-boot-anim -no-snapshot-save)",
        "wipe": "Wipe the AVDs' user data (-wipe-data) before booting",
        "results_dir": "Where emulators.json (what we started) and the emulator logs go (default build/validation)",
    },
)
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
    from prodval import cli

    flags = dict(avd=avd, api_level=api_level, target=target, arch=arch, count=count, port=port,
                 boot_timeout=boot_timeout, emulator_options=emulator_options, wipe=True if wipe else None)
    _exit(cli.emulator_start(c.config.get(SECTION, {}), c.config.get(EMULATOR_SECTION, {}), flags, results_dir))


@task(
    iterable=["serial"],
    help={
        "serial": "Stop only this emulator (repeatable); it must be one this tool started",
        "results_dir": "The results folder whose emulators.json lists what we started (default build/validation)",
    },
)
def emulator_stop(c: Context, serial: list[str] | None = None, results_dir: str | None = None) -> None:
    """Stop the emulators this tool started (emu kill, then the whole process group). Exit 0, or 2."""
    from prodval import cli

    _exit(cli.emulator_stop(c.config.get(SECTION, {}), c.config.get(EMULATOR_SECTION, {}), serial, results_dir))


@task(help={"results_dir": "The results folder whose emulators.json lists what we started (default build/validation)"})
def emulator_status(c: Context, results_dir: str | None = None) -> None:
    """The devices adb sees, their state and boot status, and which ones this tool started."""
    from prodval import cli

    _exit(cli.emulator_status(c.config.get(SECTION, {}), results_dir))


@task
def doctor(c: Context) -> None:
    """Check every requirement (Java, SDK, adb, emulator, system image, KVM, maestro, disk); exit 0, or 2 if one is missing."""
    from prodval import cli

    _exit(cli.doctor(c.config.get(SECTION, {}), c.config.get(EMULATOR_SECTION, {})))


@task(
    help={
        "maestro_version": "Maestro version to install (default emulator.maestro_version, 2.8.0)",
        "maestro_url": "Download URL of maestro.zip; {version} is replaced (default: the GitHub release)",
        "maestro_sha256": "SHA-256 the download must have (default emulator.maestro_sha256; built in for the official 2.8.0)",
        "api_level": "API level of the system image to install (default 34)",
        "target": "System image target (default google_apis)",
        "arch": "System image ABI (default x86_64)",
        "skip_maestro": "Do not install Maestro",
        "skip_sdk": "Do not install SDK packages",
    },
)
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
    from prodval import cli

    flags = dict(maestro_version=maestro_version, maestro_url=maestro_url, maestro_sha256=maestro_sha256,
                 api_level=api_level, target=target, arch=arch)
    _exit(cli.setup(c.config.get(EMULATOR_SECTION, {}), flags, maestro=not skip_maestro, sdk=not skip_sdk))


ns = Collection(validate, merge_results, report, build_apk)
ns.add_task(lint_flows)
ns.configure({SECTION: INVOKE_DEFAULTS})
ns.configure({BUILD_SECTION: BUILD_INVOKE_DEFAULTS})
ns.add_task(notify)
ns.configure({NOTIFY_SECTION: NOTIFY_INVOKE_DEFAULTS})
emulator_tasks = Collection("emulator")
emulator_tasks.add_task(emulator_start, name="start")
emulator_tasks.add_task(emulator_stop, name="stop")
emulator_tasks.add_task(emulator_status, name="status")
ns.add_collection(emulator_tasks)
ns.add_task(doctor)
ns.add_task(setup)
ns.configure({EMULATOR_SECTION: EMULATOR_INVOKE_DEFAULTS})
# Invoke's own errors (an unknown flag, an invoke.yaml that does not parse) end like any failed run:
# one message, exit 2, the record and $GITHUB_OUTPUT saying `error`, `notify` still run. Invoke imports
# this file before it parses the tasks' flags and reads invoke.yaml; see prodval/boundary.py.
install_invoke_hooks(sorted(ns.task_names))
