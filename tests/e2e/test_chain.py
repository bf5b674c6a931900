"""`invoke build-apk validate notify`: the chain always reaches notify, and exits with the verdict.

The real tasks, as subprocesses, with the project's own `invoke.yaml` (which sets the chain executor):
the fake gradlew builds (or fails to build) the sample app, the fake adb and maestro run its flows, and
a real HTTP server on 127.0.0.1 plays Slack.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from alert_servers import HttpServer, serve_http, slack
from conftest import FAKES, REPO, World

WEBHOOK = "/services/T0AAA1111/B0BBB2222/chainWebhookSecret42"
FAILURE = "fail:Element not found: Text matching regex: Squats"
FRAMEWORK_RES = Path("/usr/share/android-framework-res/framework-res.apk")
BUILD_TOOLS = [t for t in ("aapt", "apksigner", "keytool") if shutil.which(t) is None]
BUILD_TOOLS += [] if FRAMEWORK_RES.is_file() else [str(FRAMEWORK_RES)]
IN_CI = bool(os.environ.get("CI"))  # read before the guard fixture clears it


@pytest.fixture
def http() -> Iterator[HttpServer]:
    yield from serve_http()


@pytest.fixture
def project(world: World, http: HttpServer) -> World:
    """The sample app (its Android project with the fake gradlew, its flows), one booted device, Slack."""
    shutil.copytree(REPO / "android", world.root / "android", ignore=shutil.ignore_patterns("build", ".gradle"))
    shutil.copy2(FAKES / "gradlew", world.root / "android" / "gradlew")
    shutil.copytree(REPO / ".maestro", world.flows, dirs_exist_ok=True)
    world.device().scenario()
    http.script(WEBHOOK, slack)
    world.extra_env.update({
        "SLACK_WEBHOOK_URL": http.url(WEBHOOK),
        "FAKE_GRADLE_SCENARIO": str(world.root / "fake-gradle-scenario.json"),
    })
    return world


def posts(http: HttpServer) -> list[dict[str, object]]:
    return [r.json() for r in http.hits(WEBHOOK)]


def test_build_fails_validate_records_it_notify_still_sends_exit_2(project: World, http: HttpServer) -> None:
    (project.root / "fake-gradle-scenario.json").write_text(json.dumps({"fail": "compile"}))
    chain = project.invoke("build-apk", "validate", "notify")
    assert chain.returncode == 2, chain.stdout + chain.stderr
    assert "chain: `build-apk` exited with code 2; going on" in chain.stderr
    assert "chain: `validate` exited with code 2; going on" in chain.stderr
    record = project.record()
    assert record["verdict"] == "error"
    assert record["stages"]["build"]["outcome"] == "error" and "the build failed" in record["stages"]["build"]["error"]
    assert record["stages"]["validate"]["error"].startswith("build failed")
    assert record["stages"]["notify"]["outcome"] == "pass"
    assert all(f["status"] == "not_run" for f in record["flows"])
    assert project.maestro_calls() == []  # no flow ran against a stale APK
    [message] = posts(http)
    assert str(message["text"]).startswith("[production-validation] ERROR: Validation could not run: the build failed")
    assert [(a["channel"], a["kind"], a["delivered"]) for a in record["alerts"]] == [("slack", "error", True)]
    assert WEBHOOK not in chain.stdout + chain.stderr + project.files_text()


@pytest.mark.skipif(bool(BUILD_TOOLS) and not IN_CI, reason=f"needs {', '.join(BUILD_TOOLS)} to build a real APK")
def test_validate_fails_notify_sends_exit_1_and_each_task_alone_keeps_its_own_outcome(project: World,
                                                                                     http: HttpServer) -> None:
    project.scenario({"add-exercise-and-see-it-in-list.yml": [FAILURE]})
    chain = project.invoke("build-apk", "validate", "notify")
    assert chain.returncode == 1, chain.stdout + chain.stderr
    assert "chain: `validate` exited with code 1; going on" in chain.stderr
    record = project.record()
    assert record["verdict"] == "fail" and record["apk"]["packageName"] == "com.example.exerciselog"
    assert list(record["stages"]) == ["build", "validate", "notify"]
    [message] = posts(http)
    assert "1 of 4 flows failed against production" in str(message["text"])
    blocks = json.dumps(message["blocks"])
    assert "add-exercise-and-see-it-in-list.yml` failed (2 attempts): Element not found" in blocks
    assert "com.example.exerciselog" in blocks  # the app version came from the APK build-apk inspected

    # alone, each task exits with its own outcome: validate with the verdict, notify with its own (it ran)
    assert project.invoke("validate").returncode == 1
    assert project.invoke("notify").returncode == 0
    assert len(posts(http)) == 2


def test_a_passing_chain_exits_0(project: World, http: HttpServer) -> None:
    chain = project.invoke("validate", "notify")
    assert chain.returncode == 0, chain.stdout + chain.stderr
    assert "chain:" not in chain.stderr
    assert project.record()["stages"]["notify"]["outcome"] == "pass"
    assert posts(http) == []  # a pass after nothing failed is quiet with --on failure


def test_chain_executor_runs_every_task_and_exits_with_the_worst(tmp_path: Path, world: World) -> None:
    """The executor on its own, with a test-only collection beside a copy of the project's invoke.yaml."""
    folder = tmp_path / "collection"
    folder.mkdir()
    shutil.copy2(REPO / "invoke.yaml", folder / "invoke.yaml")
    (folder / "tasks.py").write_text(textwrap.dedent("""\
        from pathlib import Path
        from invoke import Collection, Exit, task

        @task
        def fails(c):
            raise Exit(code=1)

        @task
        def crashes(c):
            raise RuntimeError("a bug in a stage")

        @task
        def marks(c, name="marker"):
            Path(name).write_text("ran")

        ns = Collection(fails, crashes, marks)
        """))

    def invoke(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "invoke", "--search-root", str(folder), *args], cwd=world.root,
                              env=world.env(), capture_output=True, text=True, timeout=60)

    done = invoke("fails", "crashes", "marks")
    assert done.returncode == 2  # the crash counts as an error, the worst of the chain
    assert (world.root / "marker").read_text() == "ran"
    assert "RuntimeError: a bug in a stage" in done.stderr
    assert "chain: `fails` exited with code 1; going on" in done.stderr
    assert invoke("fails", "marks", "--name", "second").returncode == 1
    assert (world.root / "second").is_file()
    # alone, a task behaves as with invoke's own executor
    assert invoke("fails").returncode == 1
    assert invoke("marks").returncode == 0


def _build_once_then_shards(project: World, shards: int, rerun: int | None = None) -> Path:
    """The sharded workflow: one job builds (its results folder is the artifact), each shard validates
    its share in a copy of that folder, then merge-results; returns the merged folder. As on GitHub:
    GITHUB_RUN_ID and GITHUB_RUN_ATTEMPT, no VALIDATION_RUN_ID; `rerun` runs that shard again as attempt 2
    ("Re-run failed jobs": the build job is not re-run)."""
    build = project.root / "build" / "apk"
    project.invoke("build-apk", "--results-dir", str(build), GITHUB_RUN_ID="77", GITHUB_RUN_ATTEMPT="1")
    runs = [(index, 1) for index in range(1, shards + 1)] + ([(rerun, 2)] if rerun else [])
    for index, attempt in runs:
        folder = project.root / "build" / "shards" / (f"shard-{index}" + ("" if attempt == 1 else f"-attempt-{attempt}"))
        shutil.copytree(build, folder)  # download-artifact into the shard's results folder
        project.invoke("validate", "--shard", f"{index}/{shards}", "--results-dir", str(folder),
                       GITHUB_RUN_ID="77", GITHUB_RUN_ATTEMPT=str(attempt))
    merged = project.root / "build" / "validation"
    project.invoke("merge-results", str(project.root / "build" / "shards"), "--results-dir", str(merged))
    return merged


@pytest.mark.skipif(bool(BUILD_TOOLS) and not IN_CI, reason=f"needs {', '.join(BUILD_TOOLS)} to build a real APK")
def test_shards_validate_the_one_apk_the_build_job_built(project: World) -> None:
    merged = json.loads((_build_once_then_shards(project, 2) / "results.json").read_text())
    assert merged["verdict"] == "pass" and merged["runId"] == "gh-77"
    assert merged["stages"]["build"]["outcome"] == "pass" and merged["apk"]["packageName"] == "com.example.exerciselog"
    assert len(merged["flows"]) == 4
    installs = [c for c in project.adb_calls() if "install" in c]
    assert sorted(Path(c[-1]).parent.name for c in installs) == ["shard-1", "shard-2"]  # each from its download
    built = [json.loads((project.root / "build" / "shards" / f"shard-{i}" / "results.json").read_text())["apk"]
             for i in (1, 2)]
    assert built[0]["sha256"] == built[1]["sha256"]


def test_a_failed_build_job_makes_every_shard_an_error(project: World) -> None:
    (project.root / "fake-gradle-scenario.json").write_text(json.dumps({"fail": "compile"}))
    merged = json.loads((_build_once_then_shards(project, 2) / "results.json").read_text())
    assert merged["verdict"] == "error"
    assert merged["stages"]["build"]["outcome"] == "error"
    assert all(f["status"] == "not_run" for f in merged["flows"]) and len(merged["flows"]) == 4
    assert project.maestro_calls() == []


@pytest.mark.skipif(bool(BUILD_TOOLS) and not IN_CI, reason=f"needs {', '.join(BUILD_TOOLS)} to build a real APK")
def test_a_re_run_shard_installs_the_apk_of_the_first_attempts_build(project: World) -> None:
    """"Re-run failed jobs" re-runs a shard (attempt 2) but not the build job (attempt 1): the shard still
    takes that build's APK (one workflow run, one run id), and the merge keeps the newest attempt."""
    merged = json.loads((_build_once_then_shards(project, 2, rerun=2) / "results.json").read_text())
    assert merged["verdict"] == "pass" and merged["runId"] == "gh-77"
    rerun = json.loads((project.root / "build" / "shards" / "shard-2-attempt-2" / "results.json").read_text())
    assert rerun["shard"]["attempt"] == 2 and rerun["apk"]["packageName"] == "com.example.exerciselog"
    installs = [c for c in project.adb_calls() if "install" in c]
    assert sorted(Path(c[-1]).parent.name for c in installs) == ["shard-1", "shard-2", "shard-2-attempt-2"]


def test_a_bad_setting_of_validate_is_recorded_so_notify_never_reports_the_last_runs_pass(
        project: World, http: HttpServer) -> None:
    """The folder's last run passed; this run's validate stops on a bad flag before its stage starts. The
    record must say error (and the gate's output too), or notify would alert about the old pass."""
    first = project.invoke("validate", "--retries", "0")
    assert first.returncode == 0 and project.record()["verdict"] == "pass", first.stderr
    first_run = project.record()["runId"]
    output = project.root / "github-output"
    chain = project.invoke("validate", "--retries", "abc", "notify", "--on", "always",
                           GITHUB_ACTIONS="true", GITHUB_OUTPUT=str(output))
    assert chain.returncode == 2, chain.stdout + chain.stderr
    record = project.record()
    assert record["verdict"] == "error" and record["runId"] != first_run  # its own record, not the last run's
    assert record["flows"] == [] and "validation.retries" in record["stages"]["validate"]["error"]
    assert "verdict=error" in output.read_text() and "verdict=pass" not in output.read_text()
    [post] = posts(http)[-1:]
    assert "PASS" not in json.dumps(post) and "ERROR" in json.dumps(post), post
