"""Fixtures that fake the world only at its edge: executables on PATH, never our own modules.

The autouse guard gives every test an empty HOME, no Android SDK variables and a PATH whose first
entry is tests/fakes, so no test can reach a real emulator, device or the user's ~/.maestro.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
FAKES = REPO / "tests" / "fakes"
REAL_TOOLS = ("adb", "maestro", "emulator", "avdmanager", "sdkmanager")
# Fakes that ignore SIGTERM are SIGKILLed after 2 s, not 5 (commands.TERM_WAIT); set before prodval is imported.
os.environ["PRODVAL_TERM_WAIT"] = "2"
MARKER_VAR = "PRODVAL_TEST_MARKER"  # every process a test starts inherits it: see `leftovers`
# A suite run in the background (`pytest &`, a non-interactive shell) starts with SIGINT ignored, and every
# child would inherit that: a Python child that starts with SIGINT ignored never raises KeyboardInterrupt,
# so the interrupt tests would hang. A handler (unlike SIG_IGN) is reset to the default in an exec'd child.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN and threading.current_thread() is threading.main_thread():
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _fake_module(name: str) -> Any:
    """A helper module of the fakes (tests/fakes/_*.py), loaded from its file."""
    spec = importlib.util.spec_from_file_location(name, FAKES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


alive: Callable[[int], bool] = _fake_module("_fakestate").pid_alive  # a zombie counts as gone


def _clean_path() -> str:
    keep = []
    for entry in os.environ.get("PATH", "").split(os.pathsep):
        if entry and not any((Path(entry) / tool).exists() for tool in REAL_TOOLS):
            keep.append(entry)
    return os.pathsep.join(keep)


def _environ(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:  # gone, or not ours
        return b""


def leftovers(marker: str) -> list[int]:
    """The live processes (not zombies) whose environment carries `marker`, but for this process's own
    watchdog (commands.py: it lives as long as this process, by design)."""
    needle = f"{MARKER_VAR}={marker}".encode() + b"\0"
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid() or needle not in _environ(int(entry.name)):
            continue
        with contextlib.suppress(OSError):
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if parent == os.getpid() and b"groups = set()" in (entry / "cmdline").read_bytes():
                continue
        found.append(int(entry.name))
    return [pid for pid in found if alive(pid)]


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:200]
    except OSError:
        return "?"


def _no_leftovers(marker: str) -> None:
    """Fail the test if any process it started outlives it (after a short grace to exit), and kill them."""
    deadline = time.monotonic() + 10
    while (pids := leftovers(marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    if not pids:
        return
    described = []
    for pid in pids:
        described.append(f"{pid}: {_command_line(pid)}")
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    pytest.fail("processes outlived the test (killed now):\n" + "\n".join(described), pytrace=False)


@pytest.fixture(scope="session")
def python_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder whose `python3` is the interpreter running the tests, first on every test's PATH: the fakes'
    `#!/usr/bin/env python3` then starts Python at once, not through a version manager's shim (pyenv runs
    about ten shell processes per call, which made the fakes several times slower to start)."""
    folder = tmp_path_factory.mktemp("python-bin")
    (folder / "python3").symlink_to(sys.executable)
    return folder


@pytest.fixture(autouse=True)
def guard(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, python_bin: Path) -> Iterator[None]:
    marker = f"{os.getpid()}-{uuid.uuid4().hex}"
    monkeypatch.setenv(MARKER_VAR, marker)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in list(os.environ):
        if name.startswith(("ANDROID_", "GITHUB_", "INVOKE_", "MAESTRO_", "FAKE_", "RUNNER_")) or name in (
            "SLACK_WEBHOOK_URL", "PAGERDUTY_ROUTING_KEY", "SMTP_PASSWORD", "CI",
        ):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PATH", f"{python_bin}{os.pathsep}{_clean_path()}")
    monkeypatch.setenv("PRODVAL_LOCK_DIR", str(tmp_path / "device-locks"))  # every test has its own devices
    yield
    _no_leftovers(marker)


class World:
    """A project folder with flows, a fake device state and the fake toolchain on PATH."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.flows = root / ".maestro"
        self.flows.mkdir()
        self.results = root / "build" / "validation"
        self.adb_state = root / "fake-adb-state.json"
        self.scenario_path = root / "fake-maestro-scenario.json"
        self.state_dir = root / "fake-state"
        self.state_dir.mkdir()
        self.maestro_log = root / "fake-maestro-log.jsonl"
        self.adb_log = root / "fake-adb-log.jsonl"
        self.bin = root / "bin"  # fakes are linked here, so a test can take one away
        self.bin.mkdir()
        for tool in ("adb", "maestro"):
            (self.bin / tool).symlink_to(FAKES / tool)
        self.devices: dict[str, dict[str, Any]] = {}
        # The project's invoke.yaml requires the `production` tag (validation.require_tags); most tests' flows
        # carry no tags, so the guard is off here: tests/e2e/test_flags_and_config.py runs with the project's own.
        self.extra_env: dict[str, str] = {"INVOKE_VALIDATION_REQUIRE_TAGS": ""}
        self.started: list[subprocess.Popen[str]] = []  # killed at the end of the test, whatever happened

    # the device state the fake adb and maestro share
    def device(self, serial: str = "emulator-5554", state: str = "device", booted: bool = True,
               **extra: Any) -> World:
        self.devices[serial] = {"state": state, "boot_completed": "1" if booted else "", "packages": {}, **extra}
        self.adb_state.write_text(json.dumps({"devices": self.devices}))
        return self

    def scenario(self, flows: Mapping[str, list[str]] | None = None, default: str = "pass", **extra: Any) -> World:
        self.scenario_path.write_text(json.dumps({"default": default, "flows": dict(flows or {}), **extra}))
        return self

    def flow(self, name: str, *, app_id: str = "com.example.exerciselog", tags: tuple[str, ...] = (),
             commands: str = '- launchApp\n- assertVisible: "Exercises"\n', header: str = "") -> Path:
        lines = [f"appId: {app_id}"] if app_id else []
        if tags:
            lines.append("tags:\n" + "".join(f"  - {t}\n" for t in tags).rstrip("\n"))
        if header:
            lines.append(textwrap.dedent(header).strip("\n"))
        path = self.flows / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n---\n" + textwrap.dedent(commands))
        return path

    def env(self, **overrides: str) -> dict[str, str]:
        env = dict(os.environ)
        env["PATH"] = f"{self.bin}{os.pathsep}{env['PATH']}"
        env.update({
            "FAKE_ADB_STATE": str(self.adb_state),
            "FAKE_MAESTRO_SCENARIO": str(self.scenario_path),
            "FAKE_MAESTRO_STATE_DIR": str(self.state_dir),
            "FAKE_MAESTRO_LOG": str(self.maestro_log),
            "FAKE_ADB_LOG": str(self.adb_log),
            "PYTHONDONTWRITEBYTECODE": "1",
        })
        env.update(self.extra_env)
        env.update(overrides)
        return env

    def invoke_argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "invoke", "--search-root", str(REPO), *args]

    def invoke(self, *args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.invoke_argv(*args), cwd=self.root, env=self.env(**env), capture_output=True,
                              text=True, timeout=timeout)

    def start(self, *args: str, **env: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(self.invoke_argv(*args), cwd=self.root, env=self.env(**env),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.started.append(proc)
        return proc

    def record(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.results / "results.json").read_text())
        return data

    def flow_result(self, file_name: str) -> dict[str, Any]:
        return next(f for f in self.record()["flows"] if f["flowFileName"] == file_name)

    def maestro_calls(self, *, everything: bool = False) -> list[dict[str, Any]]:
        """The fake maestro's `test` invocations (one per flow attempt); `everything` adds `--version` checks."""
        if not self.maestro_log.exists():
            return []
        calls = [json.loads(line) for line in self.maestro_log.read_text().splitlines() if line.strip()]
        return calls if everything else [c for c in calls if "test" in c["argv"]]

    def adb_calls(self) -> list[list[str]]:
        if not self.adb_log.exists():
            return []
        return [json.loads(line)["argv"] for line in self.adb_log.read_text().splitlines() if line.strip()]

    def hung_pids(self) -> list[int]:
        return [int(p) for f in self.state_dir.glob("hang-*.pids") for p in f.read_text().split()]

    def files_text(self) -> str:
        """Everything the run wrote, as one string (for secret checks)."""
        return "\n".join(p.read_text(errors="replace") for p in self.results.rglob("*") if p.is_file())


def write(path: Path, text: str) -> Path:
    """A file with its folders, for tests that build flow trees."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    project = tmp_path / "project"
    project.mkdir()
    w = World(project)
    yield w
    for proc in w.started:  # a test that failed (or timed out) before its process ended
        if proc.poll() is None:
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.communicate(timeout=10)
    for pid in w.hung_pids():  # never leave a fake behind, even when a test fails
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def which_fake(tool: str) -> str:
    found = shutil.which(tool, path=str(FAKES))
    assert found, f"tests/fakes/{tool} is missing"
    return found


FRAMEWORK_RES = Path("/usr/share/android-framework-res/framework-res.apk")
_IN_CI = bool(os.environ.get("CI"))  # read at import: the guard fixture clears CI for each test


def real_apk(path: Path, package: str = "com.example.exerciselog", version_code: int = 1,
             version_name: str = "1.0.0") -> Path:
    """A real (unsigned, resource-only) APK made with Debian's aapt, as `validate` reads the APK it installs.

    Skips when aapt is missing outside CI; .ci/run installs it (aapt, android-framework-res).
    """
    if shutil.which("aapt") is None or not FRAMEWORK_RES.is_file():
        assert not _IN_CI, "aapt and android-framework-res must be installed in CI (.ci/run)"
        pytest.skip("needs aapt and android-framework-res (apt-get install aapt android-framework-res)")
    source = path.with_name(f".{path.name}.src")
    source.mkdir(parents=True)
    manifest = source / "AndroidManifest.xml"  # aapt wants this very name
    manifest.write_text(
        f'<manifest xmlns:android="http://schemas.android.com/apk/res/android" package="{package}" '
        f'android:versionCode="{version_code}" android:versionName="{version_name}">'
        '<application android:hasCode="false"/></manifest>')
    subprocess.run(["aapt", "package", "-f", "-M", str(manifest), "-I", str(FRAMEWORK_RES), "-F", str(path)],
                   capture_output=True, check=True)
    shutil.rmtree(source)
    return path


class AndroidSdk:
    """A fake $ANDROID_HOME laid out as the real SDK: platform-tools/adb, emulator/emulator,
    cmdline-tools/latest/bin/{sdkmanager,avdmanager} (links to tests/fakes) and the system image
    system-images/android-34/google_apis/x86_64 with the files avdmanager and the emulator read."""

    PACKAGES = ("platform-tools", "emulator", "cmdline-tools;latest", "system-images;android-34;google_apis;x86_64")

    def __init__(self, root: Path, packages: tuple[str, ...] = PACKAGES) -> None:
        self.root = root
        self.logs = {tool: root.parent / f"fake-{tool}-log.jsonl" for tool in ("avdmanager", "sdkmanager", "emulator")}
        self._sdk = _fake_module("_fakesdk")
        root.mkdir(parents=True, exist_ok=True)
        for package in packages:
            self.install(package)

    def install(self, package: str) -> Path:
        return Path(self._sdk.install_package(str(self.root), package))

    def env(self) -> dict[str, str]:
        return {"ANDROID_HOME": str(self.root), **{f"FAKE_{t.upper()}_LOG": str(p) for t, p in self.logs.items()}}

    def calls(self, tool: str) -> list[dict[str, Any]]:
        path = self.logs[tool]
        return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()] if path.exists() else []


def fake_emulator_processes(adb_state: Path) -> list[dict[str, Any]]:
    """Every process the fake emulator started (it records them in the adb state file)."""
    if not adb_state.exists():
        return []
    processes: list[dict[str, Any]] = json.loads(adb_state.read_text() or "{}").get("emulator_processes", [])
    return processes


@pytest.fixture
def android_sdk(world: World) -> Iterator[AndroidSdk]:
    """The fake SDK, wired into `world`'s environment; no fake emulator outlives the test."""
    sdk = AndroidSdk(world.root.parent / "android-sdk")
    world.extra_env.update(sdk.env())
    yield sdk
    for proc in fake_emulator_processes(world.adb_state):
        for pid in (proc["pid"], proc["child_pid"]):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
