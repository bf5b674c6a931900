"""Invoke tasks: production validation of the app. Thin: flags and help here, work in `tools/prodval`.

    invoke validate            run every Maestro flow against production and record the run
"""

from __future__ import annotations

import sys
from pathlib import Path

from invoke import Collection, Context, Exit, task

# Works from a plain checkout too; `pip install -e tools` is the normal way.
sys.path.insert(0, str(Path(__file__).resolve().parent / "tools"))

from prodval.settings import INVOKE_DEFAULTS, SECTION


def _exit(code: int) -> None:
    if code:
        raise Exit(code=code)


@task(
    iterable=["env"],
    help={
        "flows": "Folder of Maestro flows, or one flow file (default .maestro)",
        "apk": "APK to install (adb install -r -g) before running",
        "device": "adb serial of the device to run on (default: the single booted device)",
        "results_dir": "Where results.json, junit.xml, summary.md and artifacts go (default build/validation)",
        "include_tags": "Run only flows with one of these tags (comma-separated; adds to config.yaml)",
        "exclude_tags": "Skip flows with any of these tags (comma-separated; adds to config.yaml)",
        "retries": "Retries of a flow that did not pass (default 1); a pass after a failure is 'flaky'",
        "flow_timeout": "Seconds before a flow's whole process tree is killed (default 600)",
        "env": "KEY=VALUE flow variable passed to Maestro with -e (repeatable)",
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
    retries: str | None = None,
    flow_timeout: str | None = None,
    env: list[str] | None = None,
) -> None:
    """Run every selected Maestro flow against production; exit 0 pass, 1 fail, 2 error."""
    from prodval import cli

    flags = dict(flows=flows, apk=apk, device=device, results_dir=results_dir, include_tags=include_tags,
                 exclude_tags=exclude_tags, retries=retries, flow_timeout=flow_timeout, env=env)
    _exit(cli.validate(c.config.get(SECTION, {}), flags))


ns = Collection(validate)
ns.configure({SECTION: INVOKE_DEFAULTS})
