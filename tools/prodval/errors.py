"""Every error the harness raises on purpose, each with its exit code and a fix.

Only the entry point (`prodval.cli`) turns these into exit codes. Exit codes follow the verdict:
0 pass, 1 fail (a flow failed its assertions), 2 error (the run could not validate).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType

EXIT_PASS = 0
EXIT_FAIL = 1
EXIT_ERROR = 2


class ValidationError(Exception):
    """Base class: the run could not validate. `stage` says where it stopped."""

    exit_code = EXIT_ERROR
    stage = "validate"

    def __init__(self, message: str, *, fix: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.message}\n  fix: {self.fix}" if self.fix else self.message


class ConfigError(ValidationError):
    """A setting in invoke.yaml, the environment or on the command line is wrong."""

    stage = "config"


class ToolNotFound(ValidationError):
    """An external tool (maestro, adb, ...) is not installed where we looked."""

    stage = "tools"

    def __init__(self, tool: str, looked_in: list[str], install: str) -> None:
        places = ", ".join(looked_in) if looked_in else "nowhere"
        super().__init__(f"Couldn't find '{tool}' (looked in {places})", fix=install)


class FlowError(ValidationError):
    """One or more flow files are malformed; the message lists every problem as file:line."""

    stage = "preflight"

    def __init__(self, problems: list[str], *, fix: str = "") -> None:
        count = len(problems)
        head = "a flow is malformed" if count == 1 else f"{count} problems in the flows"
        super().__init__(f"{head}:\n" + "\n".join(f"  {p}" for p in problems), fix=fix)
        self.problems = problems


class DeviceError(ValidationError):
    """No usable device, several without --device, or a device that went away."""

    stage = "device"


class CommandFailed(ValidationError):
    """An external command exited non-zero where success was required."""

    def __init__(
        self,
        argv_display: str,
        exit_code: int,
        stdout: str,
        stderr: str,
        *,
        what: str = "",
        fix: str = "",
        stage: str = "validate",
    ) -> None:
        lines = [f"{what or 'command failed'}: `{argv_display}` exited with code {exit_code}"]
        for label, text in (("stdout", stdout), ("stderr", stderr)):
            tail = _tail(text)
            if tail:
                lines.append(f"  {label}:\n" + "\n".join(f"    {ln}" for ln in tail))
        super().__init__("\n".join(lines), fix=fix)
        self.returncode = exit_code
        self.stdout = stdout
        self.stderr = stderr
        self.stage = stage


class BuildFailed(ValidationError):
    """`invoke validate` in a chain whose `build-apk` failed: no flow runs against a stale APK."""

    stage = "build"

    def __init__(self) -> None:
        super().__init__("build failed", fix="see the build stage's error in results.json and fix the build")


class ApkError(ValidationError):
    """`invoke build-apk` built no usable APK: none found, unsigned, a bundle, or not readable."""

    stage = "build"


class Interrupted(ValidationError):
    """The run was stopped by Ctrl-C or SIGTERM; everything gathered so far is kept."""

    stage = "interrupted"

    def __init__(self, signal_name: str) -> None:
        super().__init__(
            f"validation interrupted by {signal_name}; finished flows are kept in results.json",
            fix="run it again; nothing needs cleaning up",
        )
        self.signal_name = signal_name


class NotifyError(ValidationError):
    """`invoke notify` cannot run at all: no run record, or (with --test) no channel to test."""

    stage = "notify"


class DeliveryFailed(ValidationError):
    """One alert channel did not take the alert. Reported per channel; it never changes the verdict."""

    stage = "notify"

    def __init__(self, message: str, *, fix: str = "", attempts: int = 1, status: int | None = None) -> None:
        super().__init__(message, fix=fix)
        self.attempts = attempts
        self.status = status


class ReportError(ValidationError):
    """`invoke report` has no run record to render, or cannot write report.html."""

    stage = "report"


class RequirementsMissing(ValidationError):
    """`invoke doctor` (or validate's own check) found a required tool missing; lists each with its fix."""

    stage = "tools"

    def __init__(self, missing: list[tuple[str, str, str]]) -> None:
        lines = [f"  {name}: {detail}" + (f"\n    fix: {fix}" if fix else "") for name, detail, fix in missing]
        super().__init__("missing requirements:\n" + "\n".join(lines),
                         fix="run the commands above (`invoke setup` installs Maestro and the SDK packages), "
                             "then `invoke doctor`")
        self.missing = missing


class SetupFailed(ValidationError):
    """`invoke setup` could not install something (download, checksum, archive, sdkmanager)."""

    stage = "setup"


def _tail(text: str, lines: int = 15) -> list[str]:
    return [ln for ln in text.strip().splitlines()][-lines:]


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """SIGTERM raises `Interrupted` (as Ctrl-C raises KeyboardInterrupt), so every `finally` (process groups,
    the record) runs. Signal handlers belong to the main thread: elsewhere this does nothing."""
    if sys.platform == "win32" or threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise Interrupted("SIGTERM")

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def signals_ignored() -> Iterator[None]:
    """Ignore SIGTERM and Ctrl-C while we clean up (the record, stopping emulators), so a second signal
    cannot cut that short; the cleanup is bounded by its own timeouts. Main thread only, as above."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
