"""`invoke build-apk` and the APK checks of `invoke validate`, with real APKs.

APKs are made with Debian's `aapt` and signed with `apksigner` using keys from `keytool`; the fake
`tests/fakes/gradlew` writes such APKs where the Android Gradle plugin would. The inspection code is
checked against `aapt dump badging` and `apksigner verify --print-certs` on the same files.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import FAKES, REPO, World, alive, real_apk
from prodval.apk import find_output, plan_build
from prodval.apkcheck import app_id_mismatches, recorded_apk
from prodval.apkfile import inspect_apk
from prodval.errors import ApkError, ConfigError
from prodval.flows import Flow
from prodval.results import RunRecord
from prodval.settings import BuildSettings, load_build

FRAMEWORK_RES = Path("/usr/share/android-framework-res/framework-res.apk")
TOOLS = ("aapt", "apksigner", "keytool")
IN_CI = bool(os.environ.get("CI"))  # read before the guard fixture clears it
MISSING = [t for t in TOOLS if shutil.which(t) is None] + ([] if FRAMEWORK_RES.is_file() else [str(FRAMEWORK_RES)])
if MISSING and IN_CI:
    raise RuntimeError(f"CI must install {', '.join(MISSING)} (.ci/run: apt-get install aapt apksigner "
                       "android-framework-res default-jdk-headless)")


@pytest.fixture(scope="module")
def sdk_tools() -> None:
    """The tests that make real APKs need Debian's SDK tools; skipped only outside CI."""
    if MISSING:
        pytest.skip(f"needs {', '.join(MISSING)} (apt-get install aapt apksigner android-framework-res)")

APP_ID = "com.example.exerciselog"
STORE_PASSWORD = "Store-Pass-7d1e"
KEY_ALIAS = "prod-upload-key"


# ---- helpers ---------------------------------------------------------------------------------------

def keytool_sha256(keystore: Path, password: str, alias: str) -> str:
    out = subprocess.run(["keytool", "-list", "-v", "-keystore", str(keystore), "-storepass", password, "-alias", alias],
                         capture_output=True, text=True, check=True).stdout
    match = re.search(r"SHA256:\s*([0-9A-F:]+)", out)
    assert match, out
    return match.group(1).replace(":", "").lower()


def make_keystore(folder: Path, password: str = STORE_PASSWORD, alias: str = KEY_ALIAS) -> Path:
    path = folder / "release.p12"
    subprocess.run(["keytool", "-genkeypair", "-keystore", str(path), "-storetype", "PKCS12", "-storepass", password,
                    "-keypass", password, "-alias", alias, "-keyalg", "RSA", "-keysize", "2048", "-validity", "3650",
                    "-dname", "CN=Exercise Log Release,O=Example"], capture_output=True, check=True)
    return path


def aapt_apk(folder: Path, name: str, *, package: str = APP_ID, version_code: str = "3", version_name: str = "2.1.0",
             min_sdk: str = "24", target_sdk: str = "34", strings: dict[str, str] | None = None) -> Path:
    """A resource-only APK built by aapt (unsigned)."""
    work = folder / f"src-{name}"
    work.mkdir(parents=True)
    (work / "AndroidManifest.xml").write_text(
        '<manifest xmlns:android="http://schemas.android.com/apk/res/android" '
        f'package="{package}" android:versionCode="{version_code}" android:versionName="{version_name}">'
        f'<uses-sdk android:minSdkVersion="{min_sdk}" android:targetSdkVersion="{target_sdk}"/>'
        '<application android:label="Exercise Log" android:hasCode="false"/></manifest>')
    args = ["aapt", "package", "-f", "-M", str(work / "AndroidManifest.xml"), "-I", str(FRAMEWORK_RES)]
    if strings:
        (work / "res" / "values").mkdir(parents=True)
        (work / "res" / "values" / "strings.xml").write_text(
            "<resources>" + "".join(f'<string name="{k}">{v}</string>' for k, v in strings.items()) + "</resources>")
        args += ["-S", str(work / "res")]
    out = folder / f"{name}.apk"
    subprocess.run([*args, "-F", str(out)], capture_output=True, check=True)
    return out


def sign(apk: Path, keystore: Path, *schemes: str, password: str = STORE_PASSWORD, alias: str = KEY_ALIAS) -> Path:
    out = apk.with_name(apk.stem + "-signed.apk")
    flags = []
    for scheme in ("v1", "v2", "v3"):
        flags += [f"--{scheme}-signing-enabled", "true" if scheme in schemes else "false"]
    subprocess.run(["apksigner", "sign", "--ks", str(keystore), "--ks-pass", f"pass:{password}", "--ks-key-alias",
                    alias, *flags, "--out", str(out), str(apk)], capture_output=True, check=True)
    return out


def badging(apk: Path) -> dict[str, str]:
    out = subprocess.run(["aapt", "dump", "badging", str(apk)], capture_output=True, text=True, check=True).stdout
    facts = dict(re.findall(r"\b(name|versionCode|versionName)='([^']*)'", out.splitlines()[0]))
    facts.update(re.findall(r"^(sdkVersion|targetSdkVersion):'([^']*)'", out, re.M))
    return facts


def apksigner_sha256(apk: Path) -> str:
    done = subprocess.run(["apksigner", "verify", "--print-certs", str(apk)], capture_output=True, text=True, check=False)
    match = re.search(r"Signer #1 certificate SHA-256 digest: ([0-9a-f]+)", done.stdout)
    return match.group(1) if match else ""


@pytest.fixture(scope="module")
def keystore(sdk_tools: None, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = make_keystore(tmp_path_factory.mktemp("keys"))
    return path, keytool_sha256(path, STORE_PASSWORD, KEY_ALIAS)


class App:
    """The sample Android project copied into a World, with the fake gradlew as its wrapper."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.dir = world.root / "android"
        shutil.copytree(REPO / "android", self.dir, ignore=shutil.ignore_patterns("build", ".gradle"))
        shutil.copy2(FAKES / "gradlew", self.dir / "gradlew")
        shutil.copytree(REPO / ".maestro", world.flows, dirs_exist_ok=True)
        self.gradle_log = world.root / "fake-gradle-log.jsonl"
        self.scenario_path = world.root / "fake-gradle-scenario.json"
        world.extra_env.update({"FAKE_GRADLE_LOG": str(self.gradle_log), "FAKE_GRADLE_SCENARIO": str(self.scenario_path)})

    @property
    def build_script(self) -> Path:
        return self.dir / "app" / "build.gradle.kts"

    def edit_build_script(self, old: str, new: str) -> None:
        text = self.build_script.read_text()
        assert old in text
        self.build_script.write_text(text.replace(old, new, 1))

    def scenario(self, **data: Any) -> None:
        self.scenario_path.write_text(json.dumps(data))

    def gradle_runs(self) -> list[dict[str, Any]]:
        if not self.gradle_log.exists():
            return []
        return [json.loads(line) for line in self.gradle_log.read_text().splitlines() if line.strip()]

    def signing_env(self, keystore: Path) -> dict[str, str]:
        return {
            "ANDROID_KEYSTORE_BASE64": base64.b64encode(keystore.read_bytes()).decode(),
            "ANDROID_KEYSTORE_PASSWORD": STORE_PASSWORD,
            "ANDROID_KEY_ALIAS": KEY_ALIAS,
        }


@pytest.fixture
def app(sdk_tools: None, world: World) -> App:
    return App(world)


# ---- inspection agrees with the SDK tools ----------------------------------------------------------

@pytest.mark.parametrize("kind", ["v2+v3", "v1 only", "versionName from resources", "unsigned"])
def test_inspection_agrees_with_aapt_and_apksigner(kind: str, tmp_path: Path, keystore: tuple[Path, str]) -> None:
    store, expected_signer = keystore
    if kind == "versionName from resources":
        apk = sign(aapt_apk(tmp_path, "res", version_name="@string/version_name", version_code="12",
                            strings={"version_name": "3.4.5-prod", "app": "Exercise Log"}), store, "v2", "v3")
    elif kind == "v1 only":
        apk = sign(aapt_apk(tmp_path, "v1", min_sdk="21", target_sdk="29", version_code="41"), store, "v1")
    elif kind == "unsigned":
        apk = aapt_apk(tmp_path, "plain", package="com.example.other.debug")
    else:
        apk = sign(aapt_apk(tmp_path, "v23"), store, "v2", "v3")

    info = inspect_apk(apk)
    facts = badging(apk)
    assert info.package == facts["name"]
    assert str(info.version_code) == facts["versionCode"]
    assert info.version_name == facts["versionName"]
    assert str(info.min_sdk) == facts["sdkVersion"]
    assert str(info.target_sdk) == facts["targetSdkVersion"]
    assert info.sha256 == hashlib.sha256(apk.read_bytes()).hexdigest()
    assert info.size == apk.stat().st_size
    assert info.signer_sha256 == apksigner_sha256(apk)
    if kind == "unsigned":
        assert not info.signed and info.schemes == ()
    else:
        assert info.signer_sha256 == expected_signer
    if kind == "v1 only":
        assert info.schemes == ("v1",)
    if kind == "versionName from resources":
        assert info.version_name == "3.4.5-prod"


def test_a_file_that_is_not_an_apk_is_an_apk_error(tmp_path: Path) -> None:
    junk = tmp_path / "app.apk"
    junk.write_text("not a zip")
    with pytest.raises(ApkError, match="cannot read"):
        inspect_apk(junk)


def with_entries(apk: Path, entries: dict[str, bytes]) -> Path:
    """A copy of `apk` (a real zip) with these entries replaced or added."""
    out = apk.with_name(apk.stem + "-damaged.apk")
    with zipfile.ZipFile(apk) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            target.writestr(info, entries.pop(info.filename, None) or source.read(info))
        for name, data in entries.items():
            target.writestr(name, data)
    return out


@pytest.mark.parametrize("damage", ["4-byte v1 block", "resources.arsc", "signing block size", "compressed manifest"])
def test_a_damaged_apk_is_an_apk_error_naming_the_file(damage: str, tmp_path: Path,
                                                       keystore: tuple[Path, str]) -> None:
    built = aapt_apk(tmp_path, "app", version_name="@string/version_name", strings={"version_name": "3.4.5"})
    if damage == "4-byte v1 block":
        apk = with_entries(built, {"META-INF/CERT.RSA": b"\x30\x82\x01\x00"})
    elif damage == "resources.arsc":  # read only when a @string reference is looked up
        apk = with_entries(built, {"resources.arsc": bytes(8)})
    elif damage == "signing block size":
        apk = sign(built, keystore[0], "v2")
        data = bytearray(apk.read_bytes())
        magic = data.rfind(b"APK Sig Block 42")
        data[magic - 8:magic] = (1 << 40).to_bytes(8, "little")
        apk.write_bytes(data)
    else:
        apk = built
        data = bytearray(apk.read_bytes())
        with zipfile.ZipFile(apk) as archive:
            entry = archive.getinfo("AndroidManifest.xml")
        assert entry.compress_type == zipfile.ZIP_DEFLATED
        start = entry.header_offset + 30 + len(entry.filename) + len(entry.extra)
        data[start:start + entry.compress_size] = bytes(b ^ 0x5A for b in data[start:start + entry.compress_size])
        apk.write_bytes(data)
    with pytest.raises(ApkError) as caught:
        inspect_apk(apk)
    if damage == "compressed manifest":
        assert f"cannot read {apk} as an APK" in str(caught.value)
    else:
        assert f"{apk} is damaged: cannot parse it" in str(caught.value) and caught.value.fix == "rebuild the APK"


# ---- build-apk end to end --------------------------------------------------------------------------

def test_release_build_is_signed_from_secrets_found_inspected_and_recorded(
        app: App, world: World, keystore: tuple[Path, str]) -> None:
    store, expected_signer = keystore
    secrets = app.signing_env(store)
    # A careless build script that prints the signing properties: their values must still never show.
    app.scenario(print_properties=["RELEASE_STORE_PASSWORD", "RELEASE_KEY_ALIAS", "API_BASE_URL"])
    done = world.invoke("build-apk", "--property", "API_BASE_URL=https://api.prod.example.com", **secrets)
    assert done.returncode == 0, done.stdout + done.stderr

    (run,) = app.gradle_runs()
    assert run["argv"] == [":app:assembleRelease", "-PAPI_BASE_URL=https://api.prod.example.com"]
    assert run["cwd"] == str(app.dir)
    assert run["properties"]["RELEASE_STORE_PASSWORD"] == STORE_PASSWORD  # arrived as ORG_GRADLE_PROJECT_*
    assert run["properties"]["RELEASE_KEY_PASSWORD"] == STORE_PASSWORD  # defaults to the store password
    assert run["properties"]["RELEASE_KEY_ALIAS"] == KEY_ALIAS
    assert run["keystore_mode"] == "0o600"
    assert run["raw_secret_vars"] == []  # the raw secrets are not handed to the build
    temp_keystore = Path(run["properties"]["RELEASE_STORE_FILE"])
    assert not temp_keystore.exists() and not temp_keystore.parent.exists()

    record = world.record()
    copy = world.results / "app-production.apk"
    apk = record["apk"]
    assert apk["packageName"] == APP_ID
    assert (apk["versionCode"], apk["versionName"]) == (1, "1.0.0")
    assert apk["size"] == copy.stat().st_size
    assert apk["sha256"] == hashlib.sha256(copy.read_bytes()).hexdigest()
    assert apk["signerCertificateSha256"] == expected_signer
    assert apk["sourcePath"] == "android/app/build/outputs/apk/release/app-release.apk"
    assert apk["file"] == "app-production.apk"
    assert record["environment"]["apkBuildPath"] == "build/validation/app-production.apk"
    assert record["stages"]["build"]["outcome"] == "pass"
    assert record["verdict"] is None
    assert "BUILD SUCCESSFUL" in (world.results / "build" / "stdout.log").read_text()
    # every flow of the sample tests this app
    flows = [yaml.safe_load(p.read_text().split("\n---", 1)[0]) for p in world.flows.glob("*.yml")]
    assert flows and {f["appId"] for f in flows} == {apk["packageName"]}

    shown = done.stdout + done.stderr + world.files_text()
    assert "https://api.prod.example.com" in done.stdout  # the echoed command and the printed property
    assert "RELEASE_STORE_PASSWORD=***" in done.stdout
    for secret in (STORE_PASSWORD, KEY_ALIAS, secrets["ANDROID_KEYSTORE_BASE64"][:40]):
        assert secret not in shown


def test_without_a_keystore_the_project_signing_config_is_used_with_a_warning(app: App, world: World) -> None:
    done = world.invoke("build-apk")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ANDROID_KEYSTORE_BASE64 is not set" in done.stderr
    debug_key = Path(world.env()["HOME"]) / ".android" / "debug.keystore"
    assert world.record()["apk"]["signerCertificateSha256"] == keytool_sha256(debug_key, "android", "androiddebugkey")
    assert not any(k.startswith("RELEASE_") for k in app.gradle_runs()[0]["properties"])


def test_flavors_and_abi_splits(app: App, world: World, keystore: tuple[Path, str]) -> None:
    app.edit_build_script("    signingConfigs {", """    flavorDimensions += "environment"
    productFlavors {
        create("production") {
            dimension = "environment"
        }
        create("staging") {
            dimension = "environment"
            applicationIdSuffix = ".staging"
            versionNameSuffix = "-staging"
        }
    }

    splits {
        abi {
            isEnable = true
            reset()
            include("arm64-v8a", "x86_64")
            isUniversalApk = false
        }
    }

    signingConfigs {""")
    secrets = app.signing_env(keystore[0])
    done = world.invoke("build-apk", "--variant", "productionRelease", **secrets)
    assert done.returncode == 0, done.stdout + done.stderr
    assert app.gradle_runs()[-1]["argv"][0] == ":app:assembleProductionRelease"
    apk = world.record()["apk"]
    assert apk["sourcePath"] == "android/app/build/outputs/apk/production/release/app-production-x86_64-release.apk"
    assert (apk["abi"], apk["variant"], apk["packageName"]) == ("x86_64", "productionRelease", APP_ID)

    done = world.invoke("build-apk", "--variant", "stagingRelease", "--abi", "armeabi-v7a", **secrets)
    assert done.returncode == 2
    error = world.record()["stages"]["build"]["error"]
    assert "none is for 'armeabi-v7a'" in error and "app-staging-arm64-v8a-release.apk (arm64-v8a)" in error
    assert "build.abi" in error
    assert not (world.results / "app-production.apk").exists()

    done = world.invoke("build-apk", "--variant", "release", **secrets)
    assert done.returncode == 2
    assert "Cannot locate tasks that match ':app:assembleRelease'" in world.record()["stages"]["build"]["error"]


def test_outputs_without_metadata_are_found_by_folder(tmp_path: Path, keystore: tuple[Path, str]) -> None:
    settings = BuildSettings(project_dir=tmp_path / "android", variant="freeProductionRelease")
    plan = plan_build(settings)
    folder = plan.apk_root / "freeProduction" / "release"
    folder.mkdir(parents=True)
    built = sign(aapt_apk(tmp_path, "x"), keystore[0], "v2")
    shutil.copy(built, folder / "app-free-production-release.apk")
    assert find_output(settings, plan).path == folder / "app-free-production-release.apk"
    assert plan.argv == ("./gradlew", ":app:assembleFreeProductionRelease")


def test_abi_splits_without_metadata_are_read_from_the_file_names(tmp_path: Path, keystore: tuple[Path, str]) -> None:
    settings = BuildSettings(project_dir=tmp_path / "android", variant="release", abi="x86")
    plan = plan_build(settings)
    folder = plan.apk_root / "release"
    folder.mkdir(parents=True)
    built = sign(aapt_apk(tmp_path, "x"), keystore[0], "v2")
    for abi in ("arm64-v8a", "x86_64"):
        shutil.copy(built, folder / f"app-{abi}-release.apk")
    with pytest.raises(ApkError, match=r"none is for 'x86': app-arm64-v8a-release.apk \(arm64-v8a\)"):
        find_output(settings, plan)
    shutil.copy(built, folder / "app-x86-release.apk")
    assert find_output(settings, plan).path == folder / "app-x86-release.apk"
    (folder / "app-x86-release.apk").unlink()
    shutil.copy(built, folder / "app-universal-release.apk")
    assert find_output(settings, plan).path == folder / "app-universal-release.apk"


def test_a_lone_split_for_another_abi_is_not_taken(tmp_path: Path) -> None:
    settings = BuildSettings(project_dir=tmp_path / "android", variant="release")  # build.abi: x86_64
    plan = plan_build(settings)
    folder = plan.apk_root / "release"
    folder.mkdir(parents=True)
    (folder / "app-arm64-v8a-release.apk").write_bytes(b"PK")
    with pytest.raises(ApkError, match=r"none is for 'x86_64': app-arm64-v8a-release.apk \(arm64-v8a\)"):
        find_output(settings, plan)


def test_unsigned_release_is_an_error_naming_the_settings(app: App, world: World) -> None:
    app.edit_build_script('else signingConfigs.getByName("debug")', "else null")
    done = world.invoke("build-apk")
    assert done.returncode == 2
    record = world.record()
    error = record["stages"]["build"]["error"]
    assert "unsigned APK (android/app/build/outputs/apk/release/app-release-unsigned.apk)" in error
    assert "ANDROID_KEYSTORE_BASE64" in error
    assert record["verdict"] == "error" and record["stages"]["build"]["outcome"] == "error"
    assert record["apk"] is None


def test_unsigned_apk_is_recognised_from_its_bytes(app: App, world: World, tmp_path: Path) -> None:
    unsigned = aapt_apk(tmp_path, "eas-output")
    done = world.invoke("build-apk", "--command", "true", "--output", str(unsigned))
    assert done.returncode == 2
    assert "is not signed (no v1, v2 or v3 signature)" in world.record()["stages"]["build"]["error"]


def test_an_app_bundle_is_an_error_that_says_what_to_change(app: App, world: World, tmp_path: Path) -> None:
    done = world.invoke("build-apk", "--command", "./gradlew :app:bundleRelease")
    assert done.returncode == 2
    error = world.record()["stages"]["build"]["error"]
    assert "Android App Bundle (android/app/build/outputs/bundle/release/app-release.aab)" in error
    assert "assembleRelease" in error and '"buildType": "apk"' in error

    aab = tmp_path / "app-production.aab"
    shutil.copy(app.dir / "app/build/outputs/bundle/release/app-release.aab", aab)
    done = world.invoke("build-apk", "--command", "true", "--output", str(aab))
    assert done.returncode == 2
    assert "Android App Bundle" in world.record()["stages"]["build"]["error"]


def test_bad_keystore_secret_is_a_configuration_error(app: App, world: World) -> None:
    done = world.invoke("build-apk", ANDROID_KEYSTORE_BASE64="%%% not base64 %%%", ANDROID_KEYSTORE_PASSWORD="pw-1234",
                        ANDROID_KEY_ALIAS="alias-1")
    assert done.returncode == 2
    assert "ANDROID_KEYSTORE_BASE64 is not valid base64" in done.stderr
    assert app.gradle_runs() == []
    done = world.invoke("build-apk", ANDROID_KEYSTORE_BASE64=base64.b64encode(b"keystore").decode())
    assert done.returncode == 2
    assert "ANDROID_KEYSTORE_PASSWORD and ANDROID_KEY_ALIAS are not" in done.stderr


def test_failed_build_is_recorded_and_validate_runs_nothing(app: App, world: World) -> None:
    world.device().scenario()
    app.scenario(fail="compile", warnings=800)  # the error sits amid ~90 KB of warnings
    world.extra_env["VALIDATION_RUN_ID"] = "run-1"  # one run: its build decides its validate
    done = world.invoke("build-apk")
    assert done.returncode == 2
    assert "BUILD FAILED" in done.stderr
    record = world.record()
    build = record["stages"]["build"]
    assert build["outcome"] == "error" and record["verdict"] == "error"
    errors = build["error"].split("\n  errors:\n", 1)[1]  # read from the whole log, past what the record keeps
    assert "Unresolved reference: exerciseList" in errors
    assert "FAILURE: Build failed with an exception." in build["error"]
    assert not (world.results / "app-production.apk").exists()

    done = world.invoke("validate")
    assert done.returncode == 2, done.stdout + done.stderr
    record = world.record()
    assert record["verdict"] == "error"
    assert record["flows"] and all(f["status"] == "not_run" and f["errorSummary"] == "not run: build failed"
                                   for f in record["flows"])
    assert world.maestro_calls() == []


def test_a_new_build_starts_a_new_record(app: App, world: World) -> None:
    app.scenario(fail="compile")
    world.invoke("build-apk")
    first = world.record()["runId"]
    app.scenario()
    done = world.invoke("build-apk")
    assert done.returncode == 0, done.stdout + done.stderr
    record = world.record()
    assert record["runId"] != first
    assert list(record["stages"]) == ["build"] and record["stages"]["build"]["outcome"] == "pass"


# ---- validate: the recorded APK and the appId check ------------------------------------------------

def test_validate_installs_the_recorded_apk(app: App, world: World) -> None:
    world.device().scenario()
    world.extra_env["VALIDATION_RUN_ID"] = "run-1"  # one run (as the CI shards): validate takes its build's APK
    assert world.invoke("build-apk").returncode == 0
    done = world.invoke("validate")
    assert done.returncode == 0, done.stdout + done.stderr
    installs = [argv for argv in world.adb_calls() if "install" in argv]
    assert installs and installs[0][-1].endswith("build/validation/app-production.apk")
    assert world.record()["apk"]["packageName"] == APP_ID


def test_validate_with_apk_records_that_apk_not_the_build_s(app: App, world: World, tmp_path: Path) -> None:
    world.device().scenario()
    assert world.invoke("build-apk").returncode == 0
    other = real_apk(tmp_path / "hotfix.apk", version_code=42, version_name="9.9.9")
    done = world.invoke("validate", "--apk", str(other))
    assert done.returncode == 0, done.stdout + done.stderr
    apk = world.record()["apk"]
    assert (apk["versionName"], apk["versionCode"], apk["packageName"]) == ("9.9.9", 42, APP_ID)
    assert "file" not in apk  # not the results folder's copy: a later validate does not take it for the build


def test_validate_refuses_an_apk_whose_package_is_not_the_flows_app_id(world: World, tmp_path: Path,
                                                                        keystore: tuple[Path, str]) -> None:
    world.device().scenario()
    first = world.flow("first.yaml")
    second = world.flow("second.yaml")
    debug = sign(aapt_apk(tmp_path, "debug", package=f"{APP_ID}.debug"), keystore[0], "v2")
    done = world.invoke("validate", "--apk", str(debug))
    assert done.returncode == 2
    error = world.record()["stages"]["validate"]["error"]
    for flow in (first, second):
        assert f"{flow.name}: appId {APP_ID}, but the APK's package is {APP_ID}.debug" in error
    assert "applicationIdSuffix" in error
    assert world.maestro_calls() == []
    assert not [argv for argv in world.adb_calls() if "install" in argv]


def test_app_id_mismatches_lists_every_flow(tmp_path: Path) -> None:
    flows = [Flow(tmp_path / n, n, n, app) for n, app in
             (("a.yaml", APP_ID), ("b.yaml", f"{APP_ID}.staging"), ("c.yaml", "org.other"))]
    problems = app_id_mismatches(APP_ID, flows)
    assert len(problems) == 2
    assert "b.yaml: appId com.example.exerciselog.staging" in problems[0] and "suffix" in problems[0]
    assert "c.yaml: appId org.other" in problems[1] and "suffix" not in problems[1]


def test_recorded_apk_only_after_a_passing_build(tmp_path: Path) -> None:
    assert recorded_apk(None, tmp_path) is None
    data = {"runId": "r", "job": {"jobId": "j"}, "apk": {"file": "app-production.apk"},
            "stages": {"build": {"outcome": "error", "startTime": "t"}}}
    assert recorded_apk(RunRecord.from_json(data), tmp_path) is None
    data["stages"]["build"]["outcome"] = "pass"
    with pytest.raises(ConfigError, match="the file is gone"):
        recorded_apk(RunRecord.from_json(data), tmp_path)
    (tmp_path / "app-production.apk").write_bytes(b"PK")
    assert recorded_apk(RunRecord.from_json(data), tmp_path) == tmp_path / "app-production.apk"


# ---- settings --------------------------------------------------------------------------------------

def test_build_settings_precedence_and_checks() -> None:
    settings = load_build({"variant": "productionRelease", "properties": {"API_BASE_URL": "https://a"}},
                          {"results_dir": "out/v"}, {"property": ["API_BASE_URL=https://b", "FLAG=1"]})
    assert settings.variant == "productionRelease"
    assert dict(settings.properties) == {"API_BASE_URL": "https://b", "FLAG": "1"}
    assert settings.results_dir == Path("out/v")
    with pytest.raises(ConfigError, match="did you mean 'variant'"):
        load_build({"varient": "release"}, {}, {})
    with pytest.raises(ConfigError, match="not NAME=VALUE"):
        load_build({}, {}, {"property": ["API_BASE_URL"]})
    with pytest.raises(ConfigError, match=r"build\.apk_name"):
        load_build({"apk_name": "../x.apk"}, {}, {})
    eas = load_build({"command": "eas build --local --platform android --profile production --output app.apk",
                      "properties": {"API_BASE_URL": "https://p"}}, {}, {})
    plan = plan_build(eas)
    assert plan.argv[:2] == ("eas", "build") and not plan.gradle
    assert plan.property_env == (("ORG_GRADLE_PROJECT_API_BASE_URL", "https://p"),)


# ---- the sample app matches the flows --------------------------------------------------------------

def _flow_documents(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _walk(node: Any) -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    if isinstance(node, list):
        for item in node:
            found += _walk(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            found.append((key, value))
            found += _walk(value)
    return found


def test_the_gradle_wrapper_is_the_official_one_and_pins_its_distribution() -> None:
    wrapper = REPO / "android" / "gradle" / "wrapper"
    # the published SHA-256 of Gradle 9.4's gradle-wrapper.jar (what gradle/actions/wrapper-validation accepts)
    official = "55243ef57851f12b070ad14f7f5bb8302daceeebc5bce5ece5fa6edb23e1145c"
    assert hashlib.sha256((wrapper / "gradle-wrapper.jar").read_bytes()).hexdigest() == official
    properties = dict(line.split("=", 1) for line in (wrapper / "gradle-wrapper.properties").read_text().splitlines()
                      if "=" in line and not line.startswith("#"))
    assert properties["distributionUrl"] == "https\\://services.gradle.org/distributions/gradle-8.7-bin.zip"
    assert properties["distributionSha256Sum"] == "544c35d6bd849ae8a5ed0bcea39ba677dc40f49df7d1835561582da2009b961d"
    gradlew = REPO / "android" / "gradlew"
    assert gradlew.stat().st_mode & 0o111 and "gradle/wrapper/gradle-wrapper.jar" in gradlew.read_text()


def test_sample_app_matches_every_flow() -> None:
    app = REPO / "android" / "app"
    script = (app / "build.gradle.kts").read_text()
    application_id = re.search(r'applicationId\s*=\s*"([^"]+)"', script)
    assert application_id and application_id.group(1) == APP_ID
    release = script[script.index('getByName("release")'):script.index('getByName("debug") {')]
    assert "applicationIdSuffix" not in release
    assert re.search(r'gradleProperty\("API_BASE_URL"\)', script) and 'buildConfigField("String", "API_BASE_URL"' in script
    for name in ("RELEASE_STORE_FILE", "RELEASE_STORE_PASSWORD", "RELEASE_KEY_ALIAS", "RELEASE_KEY_PASSWORD"):
        assert f'gradleProperty("{name}")' in script
    res = app / "src" / "main" / "res"
    strings = set(re.findall(r"<string name=\"\w+\">([^<]*)</string>", (res / "values" / "strings.xml").read_text()))
    ids = {i for layout in (res / "layout").glob("*.xml") for i in re.findall(r'@\+id/(\w+)', layout.read_text())}
    kotlin = "\n".join(p.read_text() for p in (app / "src" / "main" / "java").rglob("*.kt"))

    files = sorted((REPO / ".maestro").rglob("*.y*ml"))
    texts, id_refs, app_ids, arguments = set(), set(), set(), set()
    for path in files:
        if path.name in ("config.yaml", "config.yml"):
            continue
        documents = _flow_documents(path)
        if isinstance(documents[0], dict) and "appId" in documents[0]:
            app_ids.add(documents[0]["appId"])
        for key, value in _walk(documents[-1]):
            if key in ("tapOn", "assertVisible", "assertNotVisible", "visible"):
                if isinstance(value, str):
                    texts.add(value)
                elif isinstance(value, dict):
                    if isinstance(value.get("text"), str):
                        texts.add(value["text"])
                    if isinstance(value.get("id"), str):
                        id_refs.add(value["id"])
            if key in ("launchApp", "stopApp", "killApp", "clearState") and isinstance(value, str):
                app_ids.add(value)
            if key == "launchApp" and isinstance(value, dict):
                app_ids.add(value.get("appId", APP_ID))
                arguments.update(value.get("arguments", {}))
    literal = {t for t in texts if "${" not in t}
    assert literal >= {"Exercises", "No exercises yet", "Add exercise", "Save", "Delete"}
    assert literal <= strings, literal - strings
    assert id_refs and id_refs <= ids, id_refs - ids
    assert app_ids == {APP_ID}
    assert arguments == {"isTestUser", "validationRunId"}
    for argument in arguments:
        assert f'"{argument}"' in kotlin  # read from the launch intent's extras
    manifest = (app / "src" / "main" / "AndroidManifest.xml").read_text()
    assert "android.permission.INTERNET" in manifest and 'android:name=".MainActivity"' in manifest


def test_gradle_output_cannot_run_workflow_commands(app: App, world: World) -> None:
    """A build script printing a value with a line break: `::set-output` from Gradle is shown, not run."""
    from test_faults import outputs, runner_commands

    output = world.root / "github-output.txt"
    app.scenario(print_properties=["API_BASE_URL"])
    done = world.invoke("build-apk", "--property", "API_BASE_URL=https://x\n::set-output name=verdict::pass",
                        GITHUB_ACTIONS="true", GITHUB_OUTPUT=str(output))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "::set-output name=verdict::pass" in done.stdout.splitlines()  # a line of its own, as a command would be
    assert "set-output" not in [command for command, _ in runner_commands(done.stdout + done.stderr)]
    assert "verdict" not in (outputs(output) if output.exists() else {})


# ---- a killed build ----------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_killed_build_stops_gradle_and_the_next_build_removes_its_keystore(
        app: App, world: World, keystore: tuple[Path, str]) -> None:
    tmp = world.root / "tmp"
    tmp.mkdir()
    app.scenario(sleep=600)
    proc = world.start("build-apk", TMPDIR=str(tmp), **app.signing_env(keystore[0]))
    try:
        deadline = time.monotonic() + 60
        while not app.gradle_runs():  # gradle runs, with the decoded keystore on disk
            assert time.monotonic() < deadline and proc.poll() is None, "the build did not start"
            time.sleep(0.05)
        [left] = list(tmp.glob("prodval-keystore-*"))
        assert (left / "release.keystore").is_file()
        proc.kill()  # SIGKILL: no finally of ours runs
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    deadline = time.monotonic() + 30
    while _gradle_processes(app):  # the watchdog stops the build's whole process group
        assert time.monotonic() < deadline, "gradle outlived the killed build"
        time.sleep(0.05)
    assert left.is_dir()  # nothing could remove it at the kill ...
    app.scenario()
    done = world.invoke("build-apk", TMPDIR=str(tmp), **app.signing_env(keystore[0]))
    assert done.returncode == 0, done.stderr
    assert not left.exists() and list(tmp.glob("prodval-keystore-*")) == []  # ... the next build did
    assert f"removed the decoded keystore a killed build left in {left}" in done.stderr


def _gradle_processes(app: App) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes() if entry.name.isdigit() else b""
        except OSError:
            continue
        if str(app.dir / "gradlew").encode() in cmdline and alive(int(entry.name)):
            found.append(int(entry.name))
    return found
