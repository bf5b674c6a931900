"""The Maestro CLI: where it is, how we call it for one flow, and what its exit means.

Maestro exits 1 both for a failed assertion and for a broken environment, and writes no report after
an infrastructure exception (`maestro-cli/.../command/TestCommand.kt` in the Maestro sources,
https://github.com/mobile-dev-inc/maestro), so an attempt is classified from the JUnit report and the
output, never from the exit code alone.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .commands import display, find_tool, run
from .console import Console
from .errors import CommandFailed
from .outcomes import Status

MAESTRO_INSTALL_HINT = (
    "install Maestro with `invoke setup` (or `curl -Ls \"https://get.maestro.mobile.dev\" | bash`), "
    "or set validation.maestro in invoke.yaml to the maestro executable"
)
MAESTRO_FIX = MAESTRO_INSTALL_HINT + "; it needs Java 17+"  # for a maestro that is there but does not work
USAGE_FIX = ("this Maestro does not take the command line the harness gives it (its usage message is in the flow's "
             "stderr.log): install the pinned version with `invoke setup`; `invoke doctor` shows the installed one")

# Output that means "the environment broke", not "the app regressed". Matched case-insensitively;
# keep this the one list (tests/fakes/README.md, `infra:*`, shows each as the real maestro prints it).
INFRA_SIGNATURES = tuple(
    re.compile(p, re.I)
    for p in (
        r"Android driver did not start up in time",
        r"DriverTimeoutException",
        r"device '[^']*' not found",
        r"device offline",
        r"UNAVAILABLE: io exception",
        r"Unable to launch app",
        r"Not enough devices connected",
        r"io\.grpc\.StatusRuntimeException",
        r"No flows returned from the tag filter used",
        r"Device .* (?:was requested, but it )?is not connected",
    )
)
# The whole of a version line: "2.8.0", "1.39.13", "2.0.0-beta1".
_VERSION = re.compile(r"\d+(?:\.\d+)+(?:[-+][\w.+-]+)?")
VERSION_TIMEOUT = 120.0  # seconds: `--version` starts a JVM, slow on a busy runner
# Keeps Maestro from phoning home: no analytics, no update check (whose notice would mix with the output).
QUIET_ENV = {"MAESTRO_CLI_NO_ANALYTICS": "1", "MAESTRO_DISABLE_UPDATE_CHECK": "true"}
_STACK_FRAME = re.compile(r"^\s+at [\w.$<>]+\(.*\)\s*$")
_EXCEPTION_LINE = re.compile(r"^(?:Exception in thread \"[^\"]*\" )?([\w.$]+(?:Exception|Error))(?::\s*(.*))?$")

# Maestro's driver: two packages it installs on the device (AndroidDriver.kt).
DRIVER_PACKAGES = ("dev.mobile.maestro", "dev.mobile.maestro.test")
# Versions: `--no-reinstall-driver` is honoured on Android from 2.1.0; processes on different devices
# stop sharing a port and a session from 2.6.0 (https://github.com/mobile-dev-inc/maestro/releases).
KEEP_DRIVER_SINCE = (2, 1)
PARALLEL_SINCE = (2, 6)
# A SIGKILLed process's session counts as alive for 21 s (heartbeat); the next one on that device waits it out.
SESSION_WINDOW = 22.0


def version_tuple(version: str) -> tuple[int, ...]:
    """'2.8.0' -> (2, 8, 0); '2.0.0-beta1' -> (2, 0, 0)."""
    numbers = re.match(r"\d+(?:\.\d+)*", version)
    return tuple(int(n) for n in numbers.group().split(".")) if numbers else ()


def keeps_driver(version: str) -> bool:
    """Whether this Maestro honours `--no-reinstall-driver` (so the driver is installed once per device)."""
    return version_tuple(version) >= KEEP_DRIVER_SINCE


# The statuses an attempt can end with (the record's `Status`).
PASSED, FAILED, ERROR, TIMED_OUT = Status.PASSED, Status.FAILED, Status.ERROR, Status.TIMED_OUT


def find_maestro(configured: str, environ: Mapping[str, str]) -> Path:
    """Configured path, else PATH, else ~/.maestro/bin/maestro."""
    home = environ.get("HOME", "")
    candidates: list[tuple[str, str | Path | None]] = []
    if configured:
        candidates.append((f"validation.maestro ({configured})", configured))
    candidates.append(("PATH", "maestro"))
    candidates.append(("~/.maestro/bin", Path(home) / ".maestro" / "bin" / "maestro" if home else None))
    return find_tool("maestro", candidates, MAESTRO_INSTALL_HINT)


def parse_version(stdout: str) -> str | None:
    """The version in `maestro --version`'s stdout: the last line that is only a version.

    Maestro prints the bare version ("2.8.0"), but the launcher, the JVM or an update notice may print
    lines around it; None when no line is a version.
    """
    lines = [ln.strip() for ln in stdout.splitlines()]
    return next((ln for ln in reversed(lines) if _VERSION.fullmatch(ln)), None)


def installed_version(maestro: Path, environ: Mapping[str, str], console: Console) -> str:
    """Run `maestro --version` and return the version; CommandFailed when it fails, times out or prints none."""
    done = run(console, [maestro, "--version"], env={**environ, **QUIET_ENV}, timeout=VERSION_TIMEOUT, echo=False,
               what="maestro did not say its version", fix=MAESTRO_FIX)
    version = parse_version(done.stdout)
    if version is None:
        raise CommandFailed(console.redact(display(done.argv)), done.returncode, done.stdout, done.stderr,
                            what="maestro printed no version", fix=MAESTRO_FIX)
    return version


def test_command(
    maestro: Path,
    serial: str,
    flow: Path,
    *,
    junit: Path,
    debug_dir: Path,
    flow_env: Sequence[tuple[str, str]],
    keep_driver: bool = False,
) -> list[str]:
    """`maestro test` for one flow; `flow_env` already holds SKIP_DATA_CLEANUP and VALIDATION_RUN_ID.

    `keep_driver` (Maestro 2.1+) passes `--no-reinstall-driver`: without it every process uninstalls and
    reinstalls the driver's two APKs at start and uninstalls them at exit.
    """
    argv = [
        str(maestro), "--no-ansi", "--device", serial, "test", str(flow),
        "--format", "junit", "--output", str(junit),
        "--debug-output", str(debug_dir), "--flatten-debug-output",
    ]
    if keep_driver:
        argv.append("--no-reinstall-driver")
    for key, value in flow_env:
        argv += ["-e", f"{key}={value}"]
    return argv


def process_env(environ: Mapping[str, str], driver_startup_timeout_ms: int) -> dict[str, str]:
    env = {**environ, **QUIET_ENV}
    # CI emulators are slow to start Maestro's driver; 15 s (Maestro's default) fails often.
    env.setdefault("MAESTRO_DRIVER_STARTUP_TIMEOUT", str(driver_startup_timeout_ms))
    return env


@dataclass(frozen=True)
class Outcome:
    status: str
    summary: str
    usage: bool = False  # maestro rejected our command line (exit 2): the harness's problem, not the device's


def junit_failure(junit: Path) -> str | None:
    """The failure text of the report's (single) testcase, '' when it passed, None without a report."""
    try:
        data = junit.read_bytes()
        try:
            root = ET.fromstring(data)
        except ET.ParseError:  # control characters a flow's output put in a message make it malformed
            root = ET.fromstring(re.sub(rb"[\x00-\x08\x0b\x0c\x0e-\x1f]", b"", data))
    except (OSError, ET.ParseError):
        return None
    for case in root.iter("testcase"):
        failure = case.find("failure")
        if failure is None:
            failure = case.find("error")
        if failure is not None:
            return (failure.text or failure.get("message") or "assertion failed").strip()
        if case.get("status", "SUCCESS").upper() not in ("SUCCESS", "PASSED"):
            return f"flow ended with status {case.get('status')}"
    return ""


def _first_meaningful(text: str) -> str:
    for raw in text.splitlines():
        line = raw.strip()
        if line and not _STACK_FRAME.match(line):
            return line
    return ""


def _infra_line(text: str) -> str:
    for line in text.splitlines():
        if any(sig.search(line) for sig in INFRA_SIGNATURES):
            return line.strip()
    return ""


def classify(returncode: int, timed_out: bool, stdout: str, stderr: str, junit: Path, timeout: float) -> Outcome:
    """Tell a failed assertion from a broken environment (see the module docstring)."""
    if timed_out:
        return Outcome(TIMED_OUT, f"no result after {timeout:g}s; the flow's process tree was killed")
    if returncode == 0:
        return Outcome(PASSED, "")
    output = stdout + "\n" + stderr
    if returncode == 2:
        reason = _first_meaningful(stderr) or _first_meaningful(stdout)
        return Outcome(ERROR, f"maestro rejected its command line (exit 2): {reason}", usage=True)
    failure = junit_failure(junit)
    if failure:
        first = _first_meaningful(failure)
        if any(sig.search(failure) for sig in INFRA_SIGNATURES):
            return Outcome(ERROR, first)
        return Outcome(FAILED, first)
    infra = _infra_line(output)
    if infra:
        return Outcome(ERROR, infra)
    for line in output.splitlines():
        match = _EXCEPTION_LINE.match(line.strip())
        if match:
            return Outcome(ERROR, f"maestro crashed: {line.strip()}")
    last = [ln.strip() for ln in output.splitlines() if ln.strip()]
    tail = last[-1] if last else "no output"
    return Outcome(ERROR, f"maestro exited {returncode} without a report: {tail}")


def screenshots(debug_dir: Path) -> tuple[list[Path], list[Path]]:
    """(failure screenshots, the flow's own takeScreenshot images) in either debug-output layout.

    2.7+: `<flow>/screenshots/step-NNN-*.png` and `<flow>/takeScreenshot/**.png`.
    2.6 and earlier: flat `screenshot-❌-<millis>-(<flow>).png` (✅/⚠️ for the others).
    """
    failures: list[Path] = []
    own: list[Path] = []
    if not debug_dir.is_dir():
        return failures, own
    for png in sorted(debug_dir.rglob("*.png")):
        parts = png.relative_to(debug_dir).parts
        if "takeScreenshot" in parts:
            own.append(png)
        elif "screenshots" in parts or png.name.startswith("screenshot-❌"):
            failures.append(png)
        else:
            own.append(png)
    return failures, own
