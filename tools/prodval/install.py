"""`invoke setup`: install what a fresh runner lacks, idempotently.

Maestro at the pinned version (download, SHA-256 check, unpack to ~/.maestro; only a verified archive
changes anything) and the Android SDK packages through sdkmanager (licences accepted). What is already
there is left alone, so a second run changes nothing. Where the tools are is `sdk`'s business.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath

from .commands import run
from .console import Console
from .errors import CommandFailed, SetupFailed
from .maestro import installed_version
from .sdk import CMDLINE_TOOLS_HINT, android_home, find_sdkmanager
from .settings import EmulatorSettings

MAESTRO_MARKER = ".prodval-install.json"  # what `invoke setup` installed, so a second run can skip it
DOWNLOAD_TIMEOUT = (15.0, 120.0)  # connect, read (seconds)


# ---- Android SDK packages ---------------------------------------------------------------------------------

def sdk_packages(settings: EmulatorSettings) -> tuple[str, ...]:
    return ("platform-tools", "emulator", settings.system_image)


def parse_list_installed(text: str) -> dict[str, str]:
    """`sdkmanager --list_installed`'s table -> {package path: version}."""
    packages: dict[str, str] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) < 2 or cells[0] in ("Path", "-------", "") or cells[0].startswith("-"):
            continue
        packages[cells[0]] = cells[1]
    return packages




def installed_packages(sdkmanager: Path, home: Path, environ: Mapping[str, str], console: Console) -> dict[str, str]:
    done = run(console, [sdkmanager, f"--sdk_root={home}", "--list_installed"], env=environ, timeout=300,
               what="sdkmanager could not list the installed packages", fix=CMDLINE_TOOLS_HINT, stage="setup")
    return parse_list_installed(done.stdout)


def install_sdk(settings: EmulatorSettings, environ: Mapping[str, str], console: Console) -> list[str]:
    """Install the SDK packages that are missing (licences accepted); return what was installed."""
    home = android_home(environ)
    if home is None:
        raise SetupFailed("ANDROID_HOME is not set, so there is no SDK to install packages into",
                          fix=f"{CMDLINE_TOOLS_HINT}, e.g. export ANDROID_HOME=$HOME/Android/Sdk")
    sdkmanager = find_sdkmanager(environ)
    wanted = sdk_packages(settings)
    installed = installed_packages(sdkmanager, home, environ, console)
    missing = [p for p in wanted if p not in installed]
    if not missing:
        console.info(f"SDK packages already installed: {', '.join(wanted)}")
        return []
    # `yes | sdkmanager --licenses`: one answer per prompt, more than there are licences.
    run(console, [sdkmanager, f"--sdk_root={home}", "--licenses"], env=environ, timeout=300, input="y\n" * 50,
        what="sdkmanager could not accept the licences", fix=CMDLINE_TOOLS_HINT, stage="setup")
    run(console, [sdkmanager, f"--sdk_root={home}", "--install", *missing], env=environ, timeout=3600,
        input="y\n" * 50, what="sdkmanager could not install the SDK packages",
        fix="read sdkmanager's message above (network, disk space, licence)", stage="setup")
    installed = installed_packages(sdkmanager, home, environ, console)
    still = [p for p in missing if p not in installed]
    if still:
        raise SetupFailed(f"sdkmanager finished but these packages are still not installed: {', '.join(still)}",
                          fix=f"run `sdkmanager --sdk_root={home} --install {' '.join(repr(p) for p in still)}` "
                              "and read its output")
    console.info(f"installed SDK packages: {', '.join(missing)}")
    return missing


# ---- Maestro ----------------------------------------------------------------------------------------------

def maestro_home(environ: Mapping[str, str]) -> Path:
    return Path(environ.get("HOME") or Path.home()) / ".maestro"


def installed_maestro(environ: Mapping[str, str], console: Console) -> str | None:
    """The version at ~/.maestro/bin/maestro: from our install marker, else `maestro --version`."""
    home = maestro_home(environ)
    binary = home / "bin" / "maestro"
    if not binary.is_file():
        return None
    with contextlib.suppress(OSError, ValueError):
        marker = json.loads((home / MAESTRO_MARKER).read_text(encoding="utf-8"))
        return str(marker["version"])
    try:
        return installed_version(binary, environ, console)
    except CommandFailed:
        return None  # a maestro that cannot say its version is as good as none: install over it


def _download(url: str, dest: Path) -> str:
    """Stream `url` to `dest`; return the SHA-256 of what was written."""
    import requests  # noqa: PLC0415 -- here, not at the top: it would cost every command ~60 ms at start-up

    digest = hashlib.sha256()
    try:
        with requests.get(url, stream=True, timeout=DOWNLOAD_TIMEOUT) as response:
            response.raise_for_status()
            with open(dest, "wb") as out:
                for chunk in response.iter_content(chunk_size=1 << 16):
                    digest.update(chunk)
                    out.write(chunk)
    except requests.RequestException as exc:
        raise SetupFailed(f"could not download Maestro from {url}: {exc}",
                          fix="check emulator.maestro_url and maestro_version, and the runner's network") from None
    return digest.hexdigest()


def _safe_members(archive: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    members = []
    for info in archive.infolist():
        path = PurePosixPath(info.filename)
        if path.is_absolute() or ".." in path.parts or "\\" in info.filename:
            raise SetupFailed(f"the Maestro archive holds an unsafe path: {info.filename!r}; nothing was installed",
                              fix="check emulator.maestro_url: it must be Maestro's release maestro.zip")
        members.append(info)
    names = {m.filename.rstrip("/") for m in members}
    if "maestro/bin/maestro" not in names:
        raise SetupFailed("the archive is not a Maestro release (no maestro/bin/maestro inside); nothing was installed",
                          fix="check emulator.maestro_url: it must be Maestro's release maestro.zip")
    return members


def _unpack(archive_path: Path, staging: Path) -> Path:
    """Unpack into `staging`; return the unpacked `maestro` folder (bin/, lib/)."""
    try:
        with zipfile.ZipFile(archive_path) as archive:
            for info in _safe_members(archive):
                target = staging / info.filename
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                mode = (info.external_attr >> 16) & 0o777
                target.chmod(mode or 0o644)
    except zipfile.BadZipFile as exc:
        raise SetupFailed(f"the Maestro download is not a zip archive ({exc}); nothing was installed",
                          fix="check emulator.maestro_url") from None
    unpacked = staging / "maestro"
    (unpacked / "bin" / "maestro").chmod(0o755)
    return unpacked


@contextlib.contextmanager
def _staging(parent: Path) -> Iterator[Path]:
    """A scratch folder beside ~/.maestro (same file system, so the final moves are renames)."""
    parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=".maestro-staging-", dir=parent))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def install_maestro(settings: EmulatorSettings, environ: Mapping[str, str], console: Console) -> bool:
    """Install Maestro `maestro_version` to ~/.maestro unless it is there; True when something changed.

    Nothing in ~/.maestro changes unless the download matches the expected SHA-256 and unpacks cleanly;
    only bin/ and lib/ are replaced (Maestro keeps its own state beside them).
    """
    home = maestro_home(environ)
    version = settings.maestro_version
    current = installed_maestro(environ, console)
    if current == version:
        console.info(f"Maestro {version} already installed at {home / 'bin' / 'maestro'}")
        return False
    url = settings.download_url
    console.info(f"downloading Maestro {version} from {url}")
    with _staging(home.parent) as staging:
        archive = staging / "maestro.zip"
        actual = _download(url, archive)
        expected = settings.expected_sha256
        if not expected:
            raise SetupFailed(f"emulator.maestro_sha256 is not set and Maestro {version} from {url} has no known "
                              f"checksum, so the download cannot be verified (it has SHA-256 {actual}); nothing was installed",
                              fix="check that checksum against the release you trust and pin it in invoke.yaml "
                                  "(emulator: maestro_sha256: ...) or pass --maestro-sha256")
        if actual != expected:
            raise SetupFailed(f"checksum mismatch for {url}: expected SHA-256 {expected}, got {actual}; "
                              "nothing was installed",
                              fix="make emulator.maestro_url, maestro_version and maestro_sha256 name the same release")
        unpacked = _unpack(archive, staging / "unpacked")
        old = staging / "old"
        old.mkdir()
        home.mkdir(exist_ok=True)
        for part in sorted(p.name for p in unpacked.iterdir()):
            if (home / part).exists():
                os.replace(home / part, old / part)
            os.replace(unpacked / part, home / part)
        (home / MAESTRO_MARKER).write_text(json.dumps({"version": version, "sha256": actual, "url": url}) + "\n",
                                           encoding="utf-8")
    console.info(f"installed Maestro {version} at {home / 'bin' / 'maestro'}"
                 + (f" (replacing {current})" if current else ""))
    return True


def run_setup(settings: EmulatorSettings, environ: Mapping[str, str], console: Console, *,
              maestro: bool = True, sdk: bool = True) -> list[str]:
    """`invoke setup`: what changed (empty when everything was already there)."""
    changed: list[str] = []
    if maestro:
        console.step(f"Maestro {settings.maestro_version}")
        if install_maestro(settings, environ, console):
            changed.append(f"maestro {settings.maestro_version}")
    if sdk:
        console.step("Android SDK packages")
        changed += install_sdk(settings, environ, console)
    return changed
