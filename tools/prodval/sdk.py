"""The Android SDK on this machine: where its tools and the system image are, and the environment to run them in.

SDK tools are looked up where the SDK puts them ($ANDROID_HOME, or the older $ANDROID_SDK_ROOT):
`emulator/emulator`, `cmdline-tools/latest/bin/{sdkmanager,avdmanager}`. AVDs live in
$ANDROID_AVD_HOME, which we always set for the tools we run: recent avdmanager versions otherwise
write to $XDG_CONFIG_HOME/.android/avd, where the emulator does not look (actions/runner-images#11482).

Finding and describing only: `install` (`invoke setup`) installs what is missing.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from .commands import find_tool
from .errors import ToolNotFound
from .settings import EmulatorSettings

CMDLINE_TOOLS_HINT = (
    "install the Android command-line tools into $ANDROID_HOME/cmdline-tools/latest "
    "(https://developer.android.com/studio#command-line-tools-only) and set ANDROID_HOME"
)


def android_home(environ: Mapping[str, str]) -> Path | None:
    """$ANDROID_HOME, else $ANDROID_SDK_ROOT (the older name); None when neither is set."""
    for var in ("ANDROID_HOME", "ANDROID_SDK_ROOT"):
        if environ.get(var):
            return Path(environ[var])
    return None


def sdk_candidates(environ: Mapping[str, str], *parts: str) -> list[tuple[str, str | Path | None]]:
    """Where `find_tool` looks for an SDK tool: $ANDROID_HOME/PARTS, $ANDROID_SDK_ROOT/PARTS, then PATH
    (by the last part's name)."""
    candidates: list[tuple[str, str | Path | None]] = []
    for var in ("ANDROID_HOME", "ANDROID_SDK_ROOT"):
        home = environ.get(var)
        label = f"${var}/{'/'.join(parts[:-1])}" if home else f"${var} (unset)"
        candidates.append((label, Path(home, *parts) if home else None))
    candidates.append(("PATH", parts[-1]))
    return candidates


def sdk_install_hint(package: str) -> str:
    return f"sdkmanager '{package}' (or `invoke setup`, which installs it)"


def find_emulator(environ: Mapping[str, str]) -> Path:
    return find_tool("emulator", sdk_candidates(environ, "emulator", "emulator"), sdk_install_hint("emulator"))


def find_sdkmanager(environ: Mapping[str, str]) -> Path:
    return find_tool("sdkmanager", sdk_candidates(environ, "cmdline-tools", "latest", "bin", "sdkmanager"),
                     CMDLINE_TOOLS_HINT)


def find_avdmanager(environ: Mapping[str, str]) -> Path:
    return find_tool("avdmanager", sdk_candidates(environ, "cmdline-tools", "latest", "bin", "avdmanager"),
                     CMDLINE_TOOLS_HINT)


def avd_home(environ: Mapping[str, str]) -> Path:
    """$ANDROID_AVD_HOME, else ~/.android/avd (the first place the emulator looks)."""
    if environ.get("ANDROID_AVD_HOME"):
        return Path(environ["ANDROID_AVD_HOME"])
    return Path(environ.get("HOME") or Path.home()) / ".android" / "avd"


def tool_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment for avdmanager and the emulator: the same, explicit, AVD folder for both."""
    env = dict(environ)
    env["ANDROID_AVD_HOME"] = str(avd_home(environ))
    home = android_home(environ)
    if home is not None:  # the emulator reads either name; give it both, consistently
        env.setdefault("ANDROID_HOME", str(home))
        env.setdefault("ANDROID_SDK_ROOT", str(home))
    return env


def system_image_dir(environ: Mapping[str, str], settings: EmulatorSettings) -> Path | None:
    home = android_home(environ)
    return None if home is None else home.joinpath(*settings.system_image.split(";"))


def require_system_image(environ: Mapping[str, str], settings: EmulatorSettings) -> Path:
    """The system image's folder, or ToolNotFound naming the sdkmanager package to install."""
    folder = system_image_dir(environ, settings)
    if folder is not None and (folder / "system.img").is_file():
        return folder
    where = str(folder) if folder is not None else "$ANDROID_HOME (unset)"
    raise ToolNotFound(f"system image {settings.system_image}", [where], sdk_install_hint(settings.system_image))
