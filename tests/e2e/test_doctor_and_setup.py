"""`invoke doctor` and `invoke setup` against the fake SDK, a fake `java`, and a real HTTP server on
127.0.0.1 serving Maestro archives (good, bad checksum, not a Maestro release, unsafe paths)."""

from __future__ import annotations

import hashlib
import io
import shlex
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import AndroidSdk, World
from prodval.console import Console
from prodval.doctor import BOOT_NEEDS, MISSING, OK, VALIDATE_NEEDS, WARNING, check, exit_code, require
from prodval.errors import RequirementsMissing
from prodval.host import java_major
from prodval.install import installed_maestro
from prodval.maestro import parse_version
from prodval.secrets import Redactor
from prodval.settings import MAESTRO_RELEASE_SHA256, load_emulator

SYSTEM_IMAGE = "system-images;android-34;google_apis;x86_64"


def fake_java(folder: Path, version: str) -> Path:
    """A `java` that answers `-version` on stderr as the JDK does; returns its JAVA_HOME."""
    java = folder / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text(f"#!/bin/sh\necho 'openjdk version \"{version}\" 2025-04-15' >&2\n"
                    f"echo 'OpenJDK Runtime Environment (build {version}+6)' >&2\n")
    java.chmod(0o755)
    return folder


def rows(stdout: str) -> dict[str, list[str]]:
    """The doctor table: requirement name -> [status, found...] (names as printed, first column)."""
    names = ("Python", "Java", "ANDROID_HOME", "adb", "emulator", "avdmanager, sdkmanager", "system image",
             "/dev/kvm", "maestro", "free disk")
    table = {}
    for line in stdout.splitlines():
        for name in names:
            if line.startswith(name + " "):
                table[name] = line[len(name):].split()
    return table


def console() -> Console:
    return Console({}, Redactor(), out=io.StringIO(), err=io.StringIO())


# ---- doctor ---------------------------------------------------------------------------------------------

def test_java_major_reads_both_version_schemes() -> None:
    assert java_major('openjdk version "17.0.15" 2025-04-15') == 17
    assert java_major('openjdk version "21" 2023-09-19') == 21
    assert java_major('java version "1.8.0_411"') == 8
    assert java_major("no java here") is None


def test_doctor_all_required_present(world: World, android_sdk: AndroidSdk, tmp_path: Path) -> None:
    java_home = fake_java(tmp_path / "jdk", "17.0.15")
    done = world.invoke("doctor", JAVA_HOME=str(java_home))
    assert done.returncode == 0, done.stdout + done.stderr
    table = rows(done.stdout)
    assert len(table) == 10
    for name in ("Python", "Java", "ANDROID_HOME", "adb", "emulator", "avdmanager, sdkmanager", "system image",
                 "maestro"):
        assert table[name][0] == OK, (name, table[name])
    for name in ("/dev/kvm", "free disk"):  # the host's own; a warning never fails the doctor
        assert table[name][0] in (OK, WARNING)
    assert "openjdk version \"17.0.15\"" in done.stdout
    assert "Android emulator version 35.1.20.0" in done.stdout
    assert SYSTEM_IMAGE in done.stdout
    assert "Everything required is there" in done.stdout


def test_doctor_names_what_is_missing_and_the_command_that_fixes_it(world: World, tmp_path: Path) -> None:
    java_home = fake_java(tmp_path / "old-jdk", "11.0.22")
    done = world.invoke("doctor", JAVA_HOME=str(java_home))
    assert done.returncode == 2
    table = rows(done.stdout)
    assert table["Java"][0] == MISSING and "need 17+" in done.stdout
    assert table["ANDROID_HOME"][0] == MISSING
    assert table["emulator"][0] == MISSING and table["system image"][0] == MISSING
    assert table["avdmanager, sdkmanager"][0] == MISSING
    assert table["adb"][0] == OK and table["maestro"][0] == OK  # the fakes on PATH
    assert f"fix: sdkmanager '{SYSTEM_IMAGE}' (or `invoke setup`" in done.stdout
    assert "fix: install a JDK 17 or newer" in done.stdout
    assert "missing: Java, ANDROID_HOME, emulator, avdmanager, sdkmanager, system image" in done.stderr


def test_warnings_do_not_fail_the_doctor(world: World, android_sdk: AndroidSdk, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", world.env()["PATH"])  # tools on PATH are looked up in our own PATH
    env = world.env(FAKE_MAESTRO_VERSION="2.7.0", JAVA_HOME=str(fake_java(tmp_path / "jdk", "21.0.3")))
    checks = check(load_emulator({}, {}), env, console=console(), kvm_device=tmp_path / "no-kvm", min_free_gb=10**9)
    by_key = {c.key: c for c in checks}
    assert by_key["maestro"].status == WARNING and "pinned version is 2.8.0" in by_key["maestro"].detail
    assert "invoke setup" in by_key["maestro"].fix
    assert by_key["kvm"].status == WARNING and "-accel off" in by_key["kvm"].detail and "udev" in by_key["kvm"].fix
    assert by_key["disk"].status == WARNING
    assert exit_code(checks) == 0
    require(checks)  # warnings never stop a run


def test_validate_checks_only_what_it_needs(world: World, android_sdk: AndroidSdk,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", world.env()["PATH"])  # tools on PATH are looked up in our own PATH
    settings = load_emulator({}, {})
    checks = check(settings, world.env(), console=console(), needs=VALIDATE_NEEDS)
    assert [c.key for c in checks] == ["adb", "maestro"] and all(c.status == OK for c in checks)
    (world.bin / "maestro").unlink()
    missing = check(settings, world.env(), console=console(), needs=VALIDATE_NEEDS + BOOT_NEEDS)
    assert [c.key for c in missing] == ["android_home", "adb", "emulator", "sdk_tools", "system_image", "kvm",
                                        "maestro", "disk"]
    with pytest.raises(RequirementsMissing) as caught:
        require(missing)
    assert [name for name, _, _ in caught.value.missing] == ["maestro"]
    assert "Couldn't find 'maestro'" in str(caught.value) and "invoke setup" in str(caught.value)


# What a real `maestro --version` may print around the version: the JVM's notice of JAVA_TOOL_OPTIONS
# and an update notice (when the update check is not disabled).
NOISY_VERSION = ("Picked up JAVA_TOOL_OPTIONS: -Xmx2g\n"
                 "A new version of the Maestro CLI is available (2.9.0). Upgrade command:\n"
                 "curl -Ls \"https://get.maestro.mobile.dev\" | bash\n\n2.8.0\n\n")


def fake_tool(path: Path, stdout: str, stderr: str = "", code: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\nprintf '%s' {shlex.quote(stdout)}\nprintf '%s' {shlex.quote(stderr)} >&2\n"
                    f"exit {code}\n")
    path.chmod(0o755)
    return path


def test_parse_version_takes_the_line_that_is_a_version() -> None:
    assert parse_version("2.8.0\n") == "2.8.0"
    assert parse_version(NOISY_VERSION) == "2.8.0"
    assert parse_version("1.39.13\nsomething after it\n") == "1.39.13"
    assert parse_version("2.0.0-beta1") == "2.0.0-beta1"
    assert parse_version("Error: JAVA_HOME is not set\n") is None
    assert parse_version("") is None


def test_doctor_and_setup_read_the_same_version(world: World) -> None:
    maestro = fake_tool(Path(world.env()["HOME"]) / ".maestro" / "bin" / "maestro", NOISY_VERSION,
                        stderr="WARNING: A terminally deprecated method in sun.misc.Unsafe has been called\n")
    [row] = check(load_emulator({}, {}), world.env(), console=console(), needs=["maestro"], maestro=str(maestro))
    assert (row.status, row.detail) == (OK, f"2.8.0 ({maestro})")
    assert installed_maestro(world.env(), console()) == "2.8.0"


@pytest.mark.parametrize(("stdout", "stderr", "code", "detail"), [
    ("", "ERROR: JAVA_HOME is set to an invalid directory\n", 1,
     "maestro did not say its version: `{maestro} --version` exited with code 1: ERROR: JAVA_HOME is set to an "
     "invalid directory"),
    ("Usage: maestro [-hv] [COMMAND]\n", "", 0,
     "maestro printed no version: `{maestro} --version` exited with code 0: Usage: maestro [-hv] [COMMAND]"),
])
def test_a_maestro_that_cannot_say_its_version_is_missing_and_setup_installs_over_it(
        world: World, stdout: str, stderr: str, code: int, detail: str) -> None:
    maestro = fake_tool(Path(world.env()["HOME"]) / ".maestro" / "bin" / "maestro", stdout, stderr, code)
    [row] = check(load_emulator({}, {}), world.env(), console=console(), needs=["maestro"], maestro=str(maestro))
    assert (row.status, row.detail) == (MISSING, detail.format(maestro=maestro))
    assert "invoke setup" in row.fix and "Java 17+" in row.fix
    assert installed_maestro(world.env(), console()) is None


# ---- setup: Maestro ----------------------------------------------------------------------------------------

def maestro_zip(version: str = "2.8.0", *, extra: tuple[tuple[str, str], ...] = ()) -> bytes:
    """An archive laid out as Maestro's release maestro.zip: maestro/bin/maestro, maestro/lib/*.jar."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        launcher = zipfile.ZipInfo("maestro/bin/maestro")
        launcher.external_attr = 0o755 << 16
        archive.writestr(launcher, f'#!/bin/sh\n[ "$1" = "--version" ] && echo {version} && exit 0\necho maestro\n')
        archive.writestr("maestro/bin/maestro.bat", "@echo off\r\n")
        archive.writestr("maestro/lib/maestro-cli.jar", b"PK\x03\x04 not really a jar")
        for name, text in extra:
            archive.writestr(name, text)
    return buffer.getvalue()


class ArchiveServer:
    """A real HTTP server on 127.0.0.1 serving `files` (path -> bytes); 404 otherwise."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                body = server.files.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", "application/zip")
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def publish(self, version: str, data: bytes) -> str:
        self.files[f"/cli-{version}/maestro.zip"] = data
        return hashlib.sha256(data).hexdigest()


@pytest.fixture
def server() -> Iterator[ArchiveServer]:
    srv = ArchiveServer()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


def setup_maestro(world: World, server: ArchiveServer, sha256: str, *args: str):  # type: ignore[no-untyped-def]
    return world.invoke("setup", "--skip-sdk", "--maestro-url", server.url + "/cli-{version}/maestro.zip",
                        "--maestro-sha256", sha256, *args)


def test_setup_installs_the_pinned_maestro_once(world: World, server: ArchiveServer) -> None:
    sha = server.publish("2.8.0", maestro_zip("2.8.0"))
    home = Path(world.env()["HOME"])
    done = setup_maestro(world, server, sha)
    assert done.returncode == 0, done.stdout + done.stderr
    launcher = home / ".maestro" / "bin" / "maestro"
    assert launcher.stat().st_mode & 0o111
    assert (home / ".maestro" / "lib" / "maestro-cli.jar").is_file()
    assert "installed Maestro 2.8.0" in done.stdout and "Installed: maestro 2.8.0" in done.stdout
    assert server.requests == ["/cli-2.8.0/maestro.zip"]
    # found where validate looks for it once it is not on PATH
    (world.bin / "maestro").unlink()
    found = check(load_emulator({}, {}), world.env(), console=console(), needs=["maestro"])[0]
    assert found.status == OK and str(launcher) in found.detail

    again = setup_maestro(world, server, sha)
    assert again.returncode == 0, again.stderr
    assert "Maestro 2.8.0 already installed" in again.stdout
    assert "Nothing to do: everything was already installed" in again.stdout
    assert server.requests == ["/cli-2.8.0/maestro.zip"]  # not downloaded again
    assert not list(home.glob(".maestro-staging-*"))


def test_setup_replaces_an_older_maestro_keeping_its_other_files(world: World, server: ArchiveServer) -> None:
    home = Path(world.env()["HOME"])
    (home / ".maestro" / "bin").mkdir(parents=True)
    (home / ".maestro" / "bin" / "maestro").write_text("#!/bin/sh\necho 2.7.0\n")
    (home / ".maestro" / "bin" / "maestro").chmod(0o755)
    (home / ".maestro" / "lib").mkdir()
    (home / ".maestro" / "lib" / "old.jar").write_text("old")
    (home / ".maestro" / "tests").mkdir()
    (home / ".maestro" / "tests" / "keep.txt").write_text("Maestro's own output")
    sha = server.publish("2.8.0", maestro_zip("2.8.0"))
    done = setup_maestro(world, server, sha)
    assert done.returncode == 0, done.stderr
    assert "(replacing 2.7.0)" in done.stdout
    assert not (home / ".maestro" / "lib" / "old.jar").exists()
    assert (home / ".maestro" / "tests" / "keep.txt").read_text() == "Maestro's own output"


def test_setup_with_a_wrong_checksum_installs_nothing(world: World, server: ArchiveServer) -> None:
    actual = server.publish("2.8.0", maestro_zip("2.8.0"))
    home = Path(world.env()["HOME"])
    done = setup_maestro(world, server, "0" * 64)
    assert done.returncode == 2
    assert f"checksum mismatch for {server.url}/cli-2.8.0/maestro.zip: expected SHA-256 {'0' * 64}, got {actual}" in done.stderr
    assert "nothing was installed" in done.stderr
    assert not (home / ".maestro").exists()
    assert not list(home.glob(".maestro-staging-*"))


def test_the_official_release_of_the_default_version_has_a_known_checksum() -> None:
    known = MAESTRO_RELEASE_SHA256["2.8.0"]
    assert load_emulator({}, {}).expected_sha256 == known
    assert load_emulator({}, {"maestro_version": "2.7.0"}).expected_sha256 == ""  # another release: pin it
    assert load_emulator({}, {"maestro_url": "https://mirror.example/{version}.zip"}).expected_sha256 == ""
    assert load_emulator({}, {"maestro_sha256": "A" * 64}).expected_sha256 == "a" * 64  # a pin always wins


def test_setup_without_a_pinned_checksum_refuses_and_shows_the_download_s(world: World, server: ArchiveServer) -> None:
    actual = server.publish("2.8.0", maestro_zip("2.8.0"))
    done = world.invoke("setup", "--skip-sdk", "--maestro-url", server.url + "/cli-{version}/maestro.zip")
    assert done.returncode == 2
    assert "maestro_sha256 is not set" in done.stderr and actual in done.stderr
    assert not (Path(world.env()["HOME"]) / ".maestro").exists()


@pytest.mark.parametrize(("entries", "message"), [
    ((("../evil.sh", "echo owned"),), "unsafe path: '../evil.sh'"),
    ((), "not a Maestro release"),
])
def test_setup_refuses_archives_that_are_not_a_safe_maestro_release(
        world: World, server: ArchiveServer, entries: tuple[tuple[str, str], ...], message: str) -> None:
    if entries:
        data = maestro_zip(extra=entries)
    else:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("README.txt", "hello")
        data = buffer.getvalue()
    sha = server.publish("2.8.0", data)
    done = setup_maestro(world, server, sha)
    assert done.returncode == 2 and message in done.stderr
    home = Path(world.env()["HOME"])
    assert not (home / ".maestro").exists() and not (home / "evil.sh").exists()
    assert not (home.parent / "evil.sh").exists()


def test_setup_reports_a_failed_download(world: World, server: ArchiveServer) -> None:
    done = setup_maestro(world, server, "a" * 64, "--maestro-version", "9.9.9")
    assert done.returncode == 2
    assert f"could not download Maestro from {server.url}/cli-9.9.9/maestro.zip" in done.stderr and "404" in done.stderr


# ---- setup: SDK packages -----------------------------------------------------------------------------------

def test_setup_installs_missing_sdk_packages_once(world: World, tmp_path: Path) -> None:
    sdk = AndroidSdk(tmp_path / "fresh-sdk", packages=("cmdline-tools;latest",))
    world.extra_env.update(sdk.env())
    done = world.invoke("setup", "--skip-maestro")
    assert done.returncode == 0, done.stdout + done.stderr
    calls = [c["argv"] for c in sdk.calls("sdkmanager")]
    root = f"--sdk_root={sdk.root}"
    assert calls == [[root, "--list_installed"], [root, "--licenses"],
                     [root, "--install", "platform-tools", "emulator", SYSTEM_IMAGE], [root, "--list_installed"]]
    licences = sdk.calls("sdkmanager")[1]["stdin_answers"]
    assert licences and set(licences) == {"y"}  # the review prompt, then every licence
    assert sorted(p.name for p in (sdk.root / "licenses").iterdir()) == [
        "android-googletv-license", "android-sdk-license", "android-sdk-preview-license"]
    assert (sdk.root / "platform-tools" / "adb").exists() and (sdk.root / "emulator" / "emulator").exists()
    assert (sdk.root / "system-images/android-34/google_apis/x86_64/system.img").is_file()
    assert f"Installed: platform-tools, emulator, {SYSTEM_IMAGE}" in done.stdout

    again = world.invoke("setup", "--skip-maestro")
    assert again.returncode == 0, again.stderr
    assert [c["argv"] for c in sdk.calls("sdkmanager")][4:] == [[root, "--list_installed"]]
    assert "SDK packages already installed" in again.stdout and "Nothing to do" in again.stdout


def test_setup_for_another_system_image_installs_only_that(world: World, android_sdk: AndroidSdk) -> None:
    done = world.invoke("setup", "--skip-maestro", "--api-level", "33", "--target", "google_apis_playstore")
    assert done.returncode == 0, done.stdout + done.stderr
    installs = [c["argv"] for c in android_sdk.calls("sdkmanager") if "--install" in c["argv"]]
    assert installs == [[f"--sdk_root={android_sdk.root}", "--install",
                         "system-images;android-33;google_apis_playstore;x86_64"]]


def test_setup_without_android_home_says_how_to_get_an_sdk(world: World) -> None:
    done = world.invoke("setup", "--skip-maestro")
    assert done.returncode == 2
    assert "ANDROID_HOME is not set" in done.stderr and "cmdline-tools/latest" in done.stderr
