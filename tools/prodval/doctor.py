"""`invoke doctor`: one row per requirement, `ok`, `missing` or `warning`, with the command that fixes it.

`invoke validate` runs the same checks for what it needs before doing any work:
`require(check(..., needs=VALIDATE_NEEDS))`, plus `BOOT_NEEDS` when it has to boot an emulator.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from . import sdk
from .commands import run
from .console import Console
from .devices import ADB_INSTALL_HINT, find_adb
from .errors import CommandFailed, RequirementsMissing, ToolNotFound
from .host import JAVA_FIX, KVM_DEVICE, KVM_FIX, MIN_FREE_GB, MIN_JAVA, MIN_PYTHON, find_java, free_gb, java_major, kvm_problem
from .maestro import KEEP_DRIVER_SINCE, MAESTRO_FIX, PARALLEL_SINCE, find_maestro, installed_version, version_tuple
from .settings import EmulatorSettings

OK, MISSING, WARNING = "ok", "missing", "warning"
ALL = ("python", "java", "android_home", "adb", "emulator", "sdk_tools", "system_image", "kvm", "maestro", "disk")
# What `validate` needs on a connected device (a maestro that answers --version has its Java), and
# what it needs on top to boot an emulator itself.
VALIDATE_NEEDS = ("adb", "maestro")
BOOT_NEEDS = ("android_home", "emulator", "sdk_tools", "system_image", "kvm", "disk")


@dataclass(frozen=True)
class Check:
    key: str
    name: str
    status: str  # ok | missing | warning
    detail: str
    fix: str = ""
    tool: Path | None = None  # the executable the check found (adb, maestro), for the caller to use
    version: str = ""  # the version the tool reported (maestro), for the caller to gate features on


@dataclass(frozen=True)
class _Context:
    settings: EmulatorSettings
    environ: Mapping[str, str]
    console: Console
    adb: str
    maestro: str
    kvm_device: Path
    min_free_gb: float


def _first_line(text: str, containing: str = "") -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for line in lines:
        if containing.lower() in line.lower():
            return line
    return lines[0] if lines else ""


def _python(ctx: _Context) -> Check:
    version = ".".join(str(v) for v in sys.version_info[:3])
    if sys.version_info[:2] >= MIN_PYTHON:
        return Check("python", "Python", OK, version)
    return Check("python", "Python", MISSING, f"{version} (3.11+ needed)", "install Python 3.11 or newer")


def _java(ctx: _Context) -> Check:
    try:
        java = find_java(ctx.environ)
        done = run(ctx.console, [java, "-version"], check=False, env=ctx.environ, timeout=60, echo=False)
    except (ToolNotFound, CommandFailed) as exc:
        return Check("java", "Java", MISSING, exc.message, JAVA_FIX)
    output = done.stderr + done.stdout
    major = java_major(output)
    line = _first_line(output, "version")
    if major is None or done.returncode != 0:
        return Check("java", "Java", MISSING, f"`{java} -version` did not say its version: {line}", JAVA_FIX)
    if major < MIN_JAVA:
        return Check("java", "Java", MISSING, f"{line} at {java}: Maestro and the SDK tools need {MIN_JAVA}+", JAVA_FIX)
    return Check("java", "Java", OK, f"{line} ({java})")


def _android_home(ctx: _Context) -> Check:
    fix = "install the Android SDK command-line tools and `export ANDROID_HOME=/path/to/sdk`"
    home = sdk.android_home(ctx.environ)
    var = "ANDROID_HOME" if ctx.environ.get("ANDROID_HOME") else "ANDROID_SDK_ROOT"
    if home is None:
        return Check("android_home", "ANDROID_HOME", MISSING, "neither ANDROID_HOME nor ANDROID_SDK_ROOT is set", fix)
    if not home.is_dir():
        return Check("android_home", "ANDROID_HOME", MISSING, f"${var}={home} is not a folder", fix)
    return Check("android_home", "ANDROID_HOME", OK, f"${var}={home}")


def _tool_version(ctx: _Context, key: str, name: str, locate: Callable[[], Path], args: Sequence[str],
                  containing: str, fix: str) -> Check:
    try:
        tool = locate()
        done = run(ctx.console, [tool, *args], check=False, env=ctx.environ, timeout=120, echo=False)
    except (ToolNotFound, CommandFailed) as exc:
        return Check(key, name, MISSING, exc.message, fix)
    if done.returncode != 0:
        tail = _first_line(done.stderr or done.stdout)
        return Check(key, name, MISSING, f"`{tool} {' '.join(args)}` exited with {done.returncode}: {tail}", fix)
    return Check(key, name, OK, f"{_first_line(done.stdout + done.stderr, containing)} ({tool})", tool=tool)


def _adb(ctx: _Context) -> Check:
    return _tool_version(ctx, "adb", "adb", lambda: find_adb(ctx.adb, ctx.environ), ["version"], "version",
                         ADB_INSTALL_HINT)


def _emulator(ctx: _Context) -> Check:
    return _tool_version(ctx, "emulator", "emulator", lambda: sdk.find_emulator(ctx.environ), ["-version"],
                         "emulator version", sdk.sdk_install_hint("emulator"))


def _sdk_tools(ctx: _Context) -> Check:
    found, missing = [], []
    for finder in (sdk.find_sdkmanager, sdk.find_avdmanager):
        try:
            found.append(str(finder(ctx.environ)))
        except ToolNotFound as exc:
            missing.append(exc.message)
    if missing:
        return Check("sdk_tools", "avdmanager, sdkmanager", MISSING, "; ".join(missing), sdk.CMDLINE_TOOLS_HINT)
    return Check("sdk_tools", "avdmanager, sdkmanager", OK, ", ".join(found))


def _system_image(ctx: _Context) -> Check:
    name = "system image"
    try:
        folder = sdk.require_system_image(ctx.environ, ctx.settings)
    except ToolNotFound as exc:
        return Check("system_image", name, MISSING, f"{ctx.settings.system_image} is not installed ({exc.message})",
                     exc.fix)
    return Check("system_image", name, OK, f"{ctx.settings.system_image} ({folder})")


def _kvm(ctx: _Context) -> Check:
    if not sys.platform.startswith("linux"):
        return Check("kvm", "/dev/kvm", OK, f"not used on {sys.platform}")
    why = kvm_problem(ctx.kvm_device)
    if not why:
        return Check("kvm", "/dev/kvm", OK, f"{ctx.kvm_device} is readable and writable")
    return Check("kvm", "/dev/kvm", WARNING,
                 f"{ctx.kvm_device} {why}: the emulator would run without acceleration (-accel off), very slowly",
                 KVM_FIX)


def _maestro(ctx: _Context) -> Check:
    try:
        tool = find_maestro(ctx.maestro, ctx.environ)
        version = installed_version(tool, ctx.environ, ctx.console)
    except ToolNotFound as exc:
        return Check("maestro", "maestro", MISSING, exc.message, MAESTRO_FIX)
    except CommandFailed as exc:  # one line for the table: what failed, then its first words
        detail = f"{exc.message.splitlines()[0]}: {_first_line(exc.stderr or exc.stdout)}"
        return Check("maestro", "maestro", MISSING, detail, exc.fix)
    pinned = ctx.settings.maestro_version
    fix = "`invoke setup` installs the pinned version"
    if version_tuple(version) < KEEP_DRIVER_SINCE:
        return Check("maestro", "maestro", WARNING,
                     f"{version} ({tool}) is older than {_dotted(KEEP_DRIVER_SINCE)}: it reinstalls its driver for every "
                     f"flow (no --no-reinstall-driver), and parallel devices need {_dotted(PARALLEL_SINCE)}+",
                     fix, tool=tool, version=version)
    if version_tuple(version) < PARALLEL_SINCE:
        return Check("maestro", "maestro", WARNING,
                     f"{version} ({tool}): parallel devices (--devices > 1) need {_dotted(PARALLEL_SINCE)}+ "
                     "(older ones share one driver port and session)", fix, tool=tool, version=version)
    if version != pinned:
        return Check("maestro", "maestro", WARNING, f"{version} ({tool}), but the pinned version is {pinned}",
                     fix, tool=tool, version=version)
    return Check("maestro", "maestro", OK, f"{version} ({tool})", tool=tool, version=version)


def _dotted(version: tuple[int, ...]) -> str:
    return ".".join(str(n) for n in version) + ".0"


def maestro_version(checks: Sequence[Check]) -> str:
    """The version the maestro check found ('' when it did not run or found none)."""
    return next((c.version for c in checks if c.key == "maestro"), "")


def _disk(ctx: _Context) -> Check:
    folder, free = free_gb(sdk.avd_home(ctx.environ))
    detail = f"{free:.1f} GB free in {folder}"
    if free < ctx.min_free_gb:
        return Check("disk", "free disk", WARNING, f"{detail} ({ctx.min_free_gb:g} GB recommended for an emulator)",
                     "free space on that file system, or point ANDROID_AVD_HOME at a larger one")
    return Check("disk", "free disk", OK, detail)


_CHECKS: dict[str, Callable[[_Context], Check]] = {
    "python": _python, "java": _java, "android_home": _android_home, "adb": _adb, "emulator": _emulator,
    "sdk_tools": _sdk_tools, "system_image": _system_image, "kvm": _kvm, "maestro": _maestro, "disk": _disk,
}


def check(settings: EmulatorSettings, environ: Mapping[str, str], *, console: Console,
          needs: Iterable[str] | None = None, adb: str = "", maestro: str = "", kvm_device: Path = KVM_DEVICE,
          min_free_gb: float = MIN_FREE_GB) -> list[Check]:
    """Run the checks named in `needs` (default: all of ALL), in ALL's order.

    `adb` and `maestro` are the configured paths (validation.adb, validation.maestro), if any.
    """
    wanted = set(ALL if needs is None else needs)
    unknown = wanted - set(ALL)
    if unknown:
        raise ValueError(f"unknown checks: {', '.join(sorted(unknown))}")  # a programming error
    ctx = _Context(settings, environ, console, adb, maestro, kvm_device, min_free_gb)
    keys = [key for key in ALL if key in wanted]
    with ThreadPoolExecutor(max_workers=max(1, len(keys))) as pool:  # each check mostly waits on a tool
        return list(pool.map(lambda key: _CHECKS[key](ctx), keys))


def exit_code(checks: Sequence[Check]) -> int:
    """0 when nothing required is missing (warnings allowed), else 2."""
    return 2 if any(c.status == MISSING for c in checks) else 0


def require(checks: Sequence[Check]) -> dict[str, Path]:
    """RequirementsMissing listing every missing row with its fix; warnings do not stop the run.
    Otherwise the tools the checks found, by check key (`adb`, `maestro`)."""
    missing = [(c.name, c.detail, c.fix) for c in checks if c.status == MISSING]
    if missing:
        raise RequirementsMissing(missing)
    return {c.key: c.tool for c in checks if c.tool is not None}


def render(checks: Sequence[Check]) -> str:
    """A plain-text table; each row that is not ok is followed by its fix."""
    width = max([len("requirement")] + [len(c.name) for c in checks])
    lines = [f"{'requirement':<{width}}  {'status':<8} found"]
    for c in checks:
        lines.append(f"{c.name:<{width}}  {c.status:<8} {c.detail}")
        if c.status != OK and c.fix:
            lines.append(f"{'':<{width}}  {'':<8} fix: {c.fix}")
    return "\n".join(lines)


def render_markdown(checks: Sequence[Check]) -> str:
    rows = ["| requirement | status | found | fix |", "|---|---|---|---|"]
    for c in checks:
        cells = [c.name, c.status, c.detail, c.fix if c.status != OK else ""]
        rows.append("| " + " | ".join(cell.replace("|", "\\|").replace("\n", " ") for cell in cells) + " |")
    return "### invoke doctor\n\n" + "\n".join(rows)
