"""Nox sessions: isolated environments for the project's own checks.

    nox                 lint, typecheck, tests (what CI runs)
    nox -s demo         the whole pipeline on the bundled SIMULATED toolchain (no device needed)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True

ROOT = Path(__file__).resolve().parent
FAKES = ROOT / "tests" / "fakes"


@nox.session
def tests(session: nox.Session) -> None:
    """pytest, with the fake toolchain of tests/fakes and real local servers."""
    session.install("-e", "tools[dev]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "tools", "tasks.py", "noxfile.py", "tests", *session.posargs)


@nox.session
def typecheck(session: nox.Session) -> None:
    session.install("-e", "tools[dev]")
    session.run("mypy", "--config-file", "tools/pyproject.toml", "tools/prodval", *session.posargs)


@nox.session(default=False)
def demo(session: nox.Session) -> None:
    """Run `invoke validate` end to end against the SIMULATED toolchain in tests/fakes.

    Nothing here touches a device or a server: tests/fakes/adb pretends one emulator is booted and
    tests/fakes/maestro plays the flows in .maestro/. Extra arguments go to `invoke validate`.
    """
    session.install("-e", "tools")
    work = ROOT / "build" / "demo"
    work.mkdir(parents=True, exist_ok=True)
    state = work / "fake-adb-state.json"
    state.write_text(json.dumps({"devices": {"emulator-5554": {"state": "device", "boot_completed": "1"}}}))
    session.log("SIMULATED toolchain: tests/fakes/adb and tests/fakes/maestro stand in for a device and Maestro")
    env = {
        "PATH": f"{FAKES}{os.pathsep}{os.environ.get('PATH', '')}",
        "FAKE_ADB_STATE": str(state),
        "FAKE_MAESTRO_STATE_DIR": str(work),
    }
    session.run("invoke", "validate", "--results-dir", "build/demo/validation", *session.posargs, env=env)
    session.log("Run record: build/demo/validation/results.json (summary.md and junit.xml beside it)")
