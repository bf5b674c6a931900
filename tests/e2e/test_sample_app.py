"""The sample Android app (android/): what Google Play and the Android toolchain require of it, and the
code paths that keep the production flows honest.

There is no Android SDK, Kotlin compiler or Gradle distribution on these machines, so the Gradle and
Kotlin sources are checked as text against the documented rules, and the build itself through the
fake gradlew (tests/fakes/gradlew), which reads the project as Gradle would and writes a real APK.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from conftest import REPO, World
from test_apk import App, badging, sdk_tools  # noqa: F401  (sdk_tools: a fixture, used below)

ANDROID = REPO / "android"
APP = ANDROID / "app"
SOURCES = APP / "src" / "main" / "java" / "com" / "example" / "exerciselog"
RES = APP / "src" / "main" / "res"

# developer.android.com, "Android Gradle plugin 8.x release notes", Compatibility tables:
# AGP version -> (minimum Gradle, maximum API level it supports).
AGP = {(8, 5): ((8, 7), 34), (8, 6): ((8, 7), 35), (8, 7): ((8, 9), 35), (8, 8): ((8, 10, 2), 35),
       (8, 9): ((8, 11, 1), 35), (8, 10): ((8, 11, 1), 36)}
# Layout attributes added in API 26 (Android 8.0): ignored below it, so they need minSdk 26 or a -v26 folder.
API_26_ATTRIBUTES = ("paddingHorizontal", "paddingVertical", "layout_marginHorizontal", "layout_marginVertical")


def _script() -> str:
    return (APP / "build.gradle.kts").read_text()


def _int_setting(name: str) -> int:
    match = re.search(rf"\b{name}\s*=\s*(\d+)", _script())
    assert match, name
    return int(match.group(1))


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


def test_targets_api_35_with_a_plugin_and_gradle_that_support_it() -> None:
    """Google Play requires targetSdk 35 for new apps and updates; AGP 8.6 is the first to support API 35,
    and it needs Gradle 8.7 or newer."""
    assert _int_setting("targetSdk") == 35
    assert _int_setting("compileSdk") >= 35
    plugin = re.search(r'id\("com\.android\.application"\) version "([\d.]+)"', (ANDROID / "build.gradle.kts").read_text())
    assert plugin
    agp = _version(plugin.group(1))
    min_gradle, max_api = AGP[agp[:2]]
    assert _int_setting("compileSdk") <= max_api
    wrapper = (ANDROID / "gradle" / "wrapper" / "gradle-wrapper.properties").read_text()
    gradle = re.search(r"gradle-([\d.]+)-bin\.zip", wrapper)
    assert gradle and _version(gradle.group(1)) >= min_gradle


def test_layouts_use_no_attribute_newer_than_min_sdk() -> None:
    min_sdk = _int_setting("minSdk")
    for layout in (RES).glob("layout*/*.xml"):
        qualifier = re.search(r"-v(\d+)$", layout.parent.name)
        if min_sdk >= 26 or (qualifier and int(qualifier.group(1)) >= 26):
            continue
        for attribute in API_26_ATTRIBUTES:
            assert f"android:{attribute}=" not in layout.read_text(), f"{layout.name}: {attribute} needs API 26"


def test_edge_to_edge_is_handled() -> None:
    """From targetSdk 35 the app draws behind the status and navigation bars: the content is padded by
    the system bar insets (and enableEdgeToEdge() gives older releases the same look)."""
    activity = (SOURCES / "MainActivity.kt").read_text()
    assert "enableEdgeToEdge()" in activity
    assert "setOnApplyWindowInsetsListener" in activity and "WindowInsetsCompat.Type.systemBars()" in activity
    assert re.search(r'"androidx\.activity:activity-ktx:1\.(9|\d\d)\.', _script())  # enableEdgeToEdge: 1.8+


def test_a_release_build_refuses_the_placeholder_url() -> None:
    """The check lives in the build script (a real Gradle fails the configuration); here: the refused
    values include the placeholder the project ships and an empty URL, and nothing else supplies it."""
    script = _script()
    refused = re.search(r"val placeholderApiBaseUrls = setOf\(([^)]*)\)", script)
    assert refused
    values = set(re.findall(r'"([^"]*)"', refused.group(1)))
    assert {"", "https://api.example.com"} <= values
    check = script[script.index("androidComponents {"):]
    assert 'selector().withBuildType("release")' in check and "throw GradleException(" in check
    assert "apiBaseUrl.trim().trimEnd('/') in placeholderApiBaseUrls" in check
    assert 'getOrElse("")' in script  # no placeholder default for the property
    assert not re.search(r"^API_BASE_URL=", (ANDROID / "gradle.properties").read_text(), re.M)
    # the shipped invoke.yaml still names the placeholder: a real release build stops until it is set
    config = yaml.safe_load((REPO / "invoke.yaml").read_text())
    assert config["build"]["properties"]["API_BASE_URL"].rstrip("/") in values


@pytest.mark.usefixtures("sdk_tools")
def test_version_code_comes_from_ci(world: World) -> None:
    """The workflow passes its run number as ORG_GRADLE_PROJECT_VERSION_CODE; the build uses it."""
    App(world)  # the sample project with the fake gradlew
    done = world.invoke("build-apk", ORG_GRADLE_PROJECT_VERSION_CODE="417")
    assert done.returncode == 0, done.stdout + done.stderr
    assert world.record()["apk"]["versionCode"] == 417
    assert badging(world.results / "app-production.apk")["targetSdkVersion"] == "35"
    again = world.invoke("build-apk")
    assert again.returncode == 0
    assert world.record()["apk"]["versionCode"] == 1  # a local build without the property
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "production-validation.yml").read_text())
    builds = [s for job in workflow["jobs"].values() for s in job["steps"] if s.get("run") == "exec invoke build-apk"]
    assert builds and all(s["env"]["ORG_GRADLE_PROJECT_VERSION_CODE"] == "${{ github.run_number }}" for s in builds)


# ---- the app's code paths ---------------------------------------------------------------------------

def _kotlin(name: str) -> str:
    return (SOURCES / name).read_text()


def test_work_lives_in_a_view_model_with_coroutines() -> None:
    """Rotation recreates the Activity: adds, deletes and the loaded list live in the ViewModel's scope."""
    model = _kotlin("ExerciseViewModel.kt")
    assert re.search(r"class ExerciseViewModel\([^)]*\) : ViewModel\(\)", model)
    assert "viewModelScope.launch" in model and "Dispatchers.IO" in model
    activity = _kotlin("MainActivity.kt")
    assert "by viewModels" in activity and "repeatOnLifecycle(Lifecycle.State.STARTED)" in activity
    assert "Executors" not in activity and "Thread(" not in activity and "ApiClient(" not in activity.split("initializer")[0]


def test_each_state_has_its_own_view_and_the_empty_state_waits_for_data() -> None:
    layout = (RES / "layout" / "activity_main.xml").read_text()
    for view in ("loading", "error_state", "retry", "empty_state"):
        assert f'@+id/{view}"' in layout
    # the empty state and the add button are hidden until the list has loaded
    for view in ("empty_state", "add_exercise"):
        block = layout[layout.index(f'@+id/{view}"'):]
        block = block[:block.index("/>")]
        assert 'android:visibility="gone"' in block, view
    activity = _kotlin("MainActivity.kt")
    assert "loaded != null && loaded.exercises.isEmpty()" in activity
    assert "Toast" not in activity  # errors have their own view, not a toast the flows cannot see
    strings = (RES / "values" / "strings.xml").read_text()
    assert "%1$s" not in strings  # no message that embeds a server's text


def test_an_expired_token_signs_in_again_once() -> None:
    api = _kotlin("ApiClient.kt")
    authorized = api[api.index("private fun authorized("):api.index("private fun request(")]
    assert "if (e.code != 401) throw e" in authorized
    assert authorized.count("signIn(") == 1 and authorized.count("request(") == 2  # one retry, not a loop
    assert "sessions.clear()" in authorized


def test_the_test_user_flag_is_stored_with_the_session() -> None:
    api = _kotlin("ApiClient.kt")
    assert "data class Session(val userId: String, val token: String, val isTestUser: Boolean" in api
    request = api[api.index("private fun request("):api.index("class SessionStore")]
    assert "session.isTestUser" in request and "launch." not in request  # headers from the session only
    store = api[api.index("class SessionStore"):]
    assert 'putBoolean("isTestUser", session.isTestUser)' in store and 'getBoolean("isTestUser", false)' in store
    # re-signing in keeps the kind of user the session was created as
    assert "signIn(LaunchOptions(session.isTestUser, session.validationRunId))" in api


def test_an_empty_list_body_is_an_empty_list_and_server_bodies_are_never_shown() -> None:
    api = _kotlin("ApiClient.kt")
    assert 'JSONArray(authorized("GET", "/v1/exercises", null).ifBlank { "[]" })' in api
    request = api[api.index("private fun request("):api.index("class SessionStore")]
    assert "errorStream?.close()" in request
    assert "errorStream" not in request.replace("errorStream?.close()", "")  # the error body is never read
    assert re.search(r'throw ApiException\(code, "The server answered \$code to \$method \$path"\)', request)


@pytest.mark.parametrize("name", ["ApiClient.kt", "ExerciseViewModel.kt", "MainActivity.kt"])
def test_kotlin_sources_are_balanced(name: str) -> None:
    """A cheap guard without a compiler: braces and parentheses balance outside strings."""
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', _kotlin(name))
    text = re.sub(r"//[^\n]*", "", text)
    assert text.count("{") == text.count("}") and text.count("(") == text.count(")")


def test_the_sample_model_of_the_fakes_follows_the_app(tmp_path: Path) -> None:
    """tests/fakes/_sample_app.py shows what the app shows: the same texts and view ids."""
    model = (REPO / "tests" / "fakes" / "_sample_app.py").read_text()
    strings = dict(re.findall(r'<string name="(\w+)">([^<]*)</string>', (RES / "values" / "strings.xml").read_text()))
    for key in ("exercises_title", "empty_state", "add_exercise", "load_error", "retry", "save", "cancel", "delete"):
        assert f'"{strings[key]}"' in model, key
    for view in ("error_state", "empty_state", "add_exercise", "exercise_row_name", "exercise_row_delete", "retry"):
        assert f'"{view}"' in model, view
